//! Noticing a damaged journal. sled takes damage in the middle of its log for a torn write and
//! silently recovers only what lies before it, so the journal keeps, beside sled's files, the
//! mark file [`MARK_FILE`]: per lane "every message below N was committed", written
//! (atomically, after a flush of sled) at most every [`MARK_EVERY_MS`] and at every
//! [`Journal::flush`]. At open, a lane that ends below its mark lost committed messages: the open
//! is refused ([`JournalError::Damaged`]) or, with [`OnDamage::StartWithSurvivors`], goes on
//! after one ERROR line with the count. A crash loses nothing the mark covers (it is written only
//! after sled flushed what it counts), so a restart after `kill -9` is silent.
//!
//! A journal written before lanes has the mark [`OLD_MARK_FILE`] (one number for its one FIFO):
//! it is checked against that FIFO before `legacy.rs` moves it into the lanes, and removed once
//! the move is done.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use log::error;

use super::layout::{OLD_GENERATION_PREFIX, OLD_WATERMARK_KEY};
use super::recovery::{recover, stored_watermark};
use super::{existing_tree, lock, Journal, JournalError, OnDamage, Result};
use crate::lanes::Lane;

/// The mark file in the buffer directory.
pub const MARK_FILE: &str = "awslink-committed-lanes";
/// The mark file of a journal written before lanes.
pub const OLD_MARK_FILE: &str = "awslink-committed";
/// The mark is written at most this often while messages are committed.
pub const MARK_EVERY_MS: u64 = 1000;
const MARK_PREFIX: &str = "awslink journal committed_below";

/// Per lane (indexed by [`Lane::index`]): every message below this was committed.
pub(super) type Committed = [u64; 3];

/// What the journal knows about its mark.
#[derive(Default)]
pub(super) struct Marks {
    /// Per lane: every message below this was written to sled by a commit.
    written_below: [AtomicU64; 3],
    /// When a mark was last asked for (unix ms).
    asked_ms: AtomicU64,
}

impl Marks {
    /// A commit wrote every message of `lane` below `seq` to sled.
    pub(super) fn written(&self, lane: Lane, seq: u64) {
        self.written_below[lane.index()].fetch_max(seq, Ordering::Relaxed);
    }

    fn committed(&self) -> Committed {
        Lane::ALL.map(|l| self.written_below[l.index()].load(Ordering::Relaxed))
    }
}

/// The text of the file `name` in `dir`: `Ok(None)` when there is none.
fn read_text(dir: &Path, name: &str) -> std::result::Result<Option<String>, String> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{name} is unreadable")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// The lanes' mark in `dir`: `Ok(None)` when there is none (a new directory, or one of an
/// earlier awslink), `Err` when it cannot be read.
fn read_mark(dir: &Path) -> std::result::Result<Option<Committed>, String> {
    let Some(text) = read_text(dir, MARK_FILE)? else {
        return Ok(None);
    };
    let unreadable = || format!("{MARK_FILE} is unreadable");
    let fields = text
        .strip_prefix(MARK_PREFIX)
        .and_then(|t| t.strip_suffix('\n'))
        .ok_or_else(unreadable)?;
    let mut committed = [0; 3];
    let mut seen = [false; 3];
    for field in fields.split_whitespace() {
        let (name, n) = field.split_once('=').ok_or_else(unreadable)?;
        let lane = Lane::from_name(name).ok_or_else(unreadable)?;
        committed[lane.index()] = n.parse().map_err(|_| unreadable())?;
        seen[lane.index()] = true;
    }
    if seen.contains(&false) {
        return Err(unreadable());
    }
    Ok(Some(committed))
}

/// The mark of a journal written before lanes (`committed_below=N`).
fn read_old_mark(dir: &Path) -> std::result::Result<Option<u64>, String> {
    let Some(text) = read_text(dir, OLD_MARK_FILE)? else {
        return Ok(None);
    };
    text.strip_prefix(MARK_PREFIX)
        .and_then(|t| t.strip_prefix('='))
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("{OLD_MARK_FILE} is unreadable"))
}

/// Writes the mark `committed` into `dir` (a new file synced, then renamed over the old one).
/// Two writers use two temporary files; the one renamed last may be the older mark, which only
/// makes the next check less strict, never wrong.
pub(super) fn write_mark(dir: &Path, committed: &Committed) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{MARK_FILE}.{n}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    let fields: Vec<String> = Lane::ALL
        .iter()
        .map(|l| format!(" {}={}", l.name(), committed[l.index()]))
        .collect();
    file.write_all(format!("{MARK_PREFIX}{}\n", fields.concat()).as_bytes())?;
    file.sync_data()?;
    std::fs::rename(&tmp, dir.join(MARK_FILE))
}

/// Removes the mark of a journal written before lanes (its FIFO was moved into the lanes).
pub(super) fn remove_old_mark(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(OLD_MARK_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Journal {
    /// Compares what recovery found with the marks (see the module docs).
    pub(super) fn check_damage(&self, on_damage: OnDamage) -> Result<()> {
        let found: Committed = {
            let mut lives = lock(&self.inner.queue.live);
            Lane::ALL.map(|l| lives.of(l).next_seq)
        };
        for lane in Lane::ALL {
            self.inner.queue.marks.written(lane, found[lane.index()]);
        }
        let path = &self.inner.path;
        let mut missing = Vec::new();
        let mut lost = 0;
        let mut unreadable = Vec::new();
        match read_mark(path) {
            Ok(None) => {}
            Ok(Some(committed)) => {
                for lane in Lane::ALL {
                    let (c, f) = (committed[lane.index()], found[lane.index()]);
                    if c > f {
                        lost += c - f;
                        missing.push(format!(
                            "{}: sequence numbers {f} to {}",
                            lane.name(),
                            c - 1
                        ));
                    }
                }
            }
            Err(detail) => unreadable.push(detail),
        }
        match read_old_mark(path) {
            Ok(None) => {}
            Ok(Some(committed)) => {
                let f = self.old_queue_end().map_err(|e| self.error(e))?;
                if committed > f {
                    lost += committed - f;
                    missing.push(format!(
                        "the queue of an earlier version: sequence numbers {f} to {}",
                        committed - 1
                    ));
                }
            }
            Err(detail) => unreadable.push(detail),
        }
        if missing.is_empty() && unreadable.is_empty() {
            return Ok(());
        }
        let mut detail = unreadable.join("; ");
        if lost > 0 {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&format!(
                "{lost} acknowledged messages ({}) are missing",
                missing.join("; ")
            ));
        }
        if on_damage == OnDamage::Refuse {
            return Err(JournalError::Damaged {
                path: path.clone(),
                detail,
            });
        }
        if lost > 0 {
            error!(
                "buffer directory {} is damaged: {detail}; {lost} messages lost, starting with the {} that survived (buffer.onDamage startWithSurvivors)",
                path.display(),
                self.queued_total()
            );
        } else {
            error!(
                "buffer directory {}: {detail}; starting with the {} messages found (buffer.onDamage startWithSurvivors)",
                path.display(),
                self.queued_total()
            );
        }
        self.mark_now(&found)?;
        remove_old_mark(path).map_err(|source| self.io_error(source))
    }

    /// Where the queue of a journal written before lanes ends (its watermark when it is empty).
    fn old_queue_end(&self) -> sled::Result<u64> {
        let meta = existing_tree(&self.inner.db, super::layout::META_TREE)?;
        let watermark = stored_watermark(meta.as_ref(), OLD_WATERMARK_KEY)?;
        Ok(recover(&self.inner.db, OLD_GENERATION_PREFIX, watermark)?
            .live
            .next_seq)
    }

    fn io_error(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// Writes the mark `committed` now (sled is flushed up to it).
    fn mark_now(&self, committed: &Committed) -> Result<()> {
        write_mark(&self.inner.path, committed).map_err(|source| self.io_error(source))
    }

    /// After a commit: asks the journal's thread to flush sled and write the mark, at most
    /// every [`MARK_EVERY_MS`].
    pub(super) fn mark_soon(&self) {
        let marks = &self.inner.queue.marks;
        let now = crate::clock::unix_ms();
        let asked = marks.asked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(asked) < MARK_EVERY_MS
            || marks
                .asked_ms
                .compare_exchange(asked, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.send_mark(marks.committed());
    }

    /// Asks the journal's thread to flush sled (and write the mark) now, without waiting: the
    /// drain calls it a second after it last moved a watermark, so that a `kill -9` does not
    /// make awslink send again everything delivered since the last local message.
    pub fn persist_soon(&self) {
        self.send_mark(self.inner.queue.marks.committed());
    }

    /// After a flush: writes the mark of everything written so far.
    pub(super) fn mark_flushed(&self) -> Result<()> {
        self.mark_now(&self.inner.queue.marks.committed())
    }
}

#[cfg(test)]
#[path = "damage_tests.rs"]
mod tests;

//! Noticing a damaged journal. sled takes damage in the middle of its log for a torn write and
//! silently recovers only what lies before it, so the journal keeps, beside sled's files, the
//! mark file [`MARK_FILE`]: "every message below N was committed", written (atomically, after a
//! flush of sled) at most every [`MARK_EVERY_MS`] and at every [`Journal::flush`]. At open,
//! a queue that ends below the mark lost committed messages: the open is refused
//! ([`JournalError::Damaged`]) or, with [`OnDamage::StartWithSurvivors`], goes on after one
//! ERROR line with the count. A crash loses nothing the mark covers (it is written only after
//! sled flushed what it counts), so a restart after `kill -9` is silent.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use log::error;

use super::{lock, Journal, JournalError, OnDamage, Result};

/// The mark file in the buffer directory.
pub const MARK_FILE: &str = "awslink-committed";
/// The mark is written at most this often while messages are committed.
pub const MARK_EVERY_MS: u64 = 1000;
const MARK_PREFIX: &str = "awslink journal committed_below=";

/// What the journal knows about its mark.
#[derive(Default)]
pub(super) struct Marks {
    /// Every message below this was written to sled by a commit.
    written_below: AtomicU64,
    /// When a mark was last asked for (unix ms).
    asked_ms: AtomicU64,
}

impl Marks {
    /// A commit wrote every message below `seq` to sled.
    pub(super) fn written(&self, seq: u64) {
        self.written_below.fetch_max(seq, Ordering::Relaxed);
    }
}

/// The mark in `dir`: `Ok(None)` when there is none (a new directory, or one of an earlier
/// awslink), `Err` when it cannot be read.
fn read_mark(dir: &Path) -> std::result::Result<Option<u64>, String> {
    let text = match std::fs::read(dir.join(MARK_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_prefix(MARK_PREFIX))
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("{MARK_FILE} is unreadable"))
}

/// Writes the mark `seq` into `dir` (a new file synced, then renamed over the old one). Two
/// writers use two temporary files; the one renamed last may be the older mark, which only
/// makes the next check less strict, never wrong.
pub(super) fn write_mark(dir: &Path, seq: u64) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{MARK_FILE}.{n}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{MARK_PREFIX}{seq}\n").as_bytes())?;
    file.sync_data()?;
    std::fs::rename(&tmp, dir.join(MARK_FILE))
}

impl Journal {
    /// Compares what recovery found with the mark (see the module docs).
    pub(super) fn check_damage(&self, on_damage: OnDamage) -> Result<()> {
        let found = lock(&self.inner.queue.live).next_seq;
        self.inner.queue.marks.written(found);
        let damaged = |detail: String| JournalError::Damaged {
            path: self.inner.path.clone(),
            detail,
        };
        let committed = match read_mark(&self.inner.path) {
            Ok(Some(committed)) => committed,
            Ok(None) => return Ok(()),
            Err(detail) if on_damage == OnDamage::Refuse => return Err(damaged(detail)),
            Err(detail) => {
                error!(
                    "buffer directory {}: {detail}; starting with the {} messages found (buffer.onDamage startWithSurvivors)",
                    self.inner.path.display(),
                    self.queued_total()
                );
                return self.mark_now(found);
            }
        };
        if committed <= found {
            return Ok(());
        }
        let lost = committed - found;
        let detail = format!(
            "{lost} acknowledged messages (sequence numbers {found} to {}) are missing",
            committed - 1
        );
        if on_damage == OnDamage::Refuse {
            return Err(damaged(detail));
        }
        error!(
            "buffer directory {} is damaged: {detail}; {lost} messages lost, starting with the {} that survived (buffer.onDamage startWithSurvivors)",
            self.inner.path.display(),
            self.queued_total()
        );
        self.mark_now(found)
    }

    /// Writes the mark `seq` now (sled is flushed up to it).
    fn mark_now(&self, seq: u64) -> Result<()> {
        write_mark(&self.inner.path, seq).map_err(|source| JournalError::Io {
            path: self.inner.path.clone(),
            source,
        })
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
        self.send_mark(marks.written_below.load(Ordering::Relaxed));
    }

    /// After a flush: writes the mark of everything written so far.
    pub(super) fn mark_flushed(&self) -> Result<()> {
        self.mark_now(self.inner.queue.marks.written_below.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
#[path = "damage_tests.rs"]
mod tests;

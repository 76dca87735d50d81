//! The uplink queue: appends staged into records and written by a commit, the generation trees
//! they go into, the durable watermark and the dropping of delivered generations, the
//! free-space cache that guards appends, and the drain announcement (one notice per burst).
//! What is on disk at open is read by `recovery.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use log::warn;

use super::damage::{write_mark, Marks};
use super::layout::{Generations, Live, GENERATION_PREFIX, META_TREE, WATERMARK_KEY};
use super::record::{self, decode, encode, RecordBuilder};
use super::recovery::recover;
use super::space::Space;
use super::{
    decode_key, lock, open_error, read, write, Durability, Journal, JournalConfig, JournalError,
    Limits, Result, WhenFull,
};
use crate::lanes::Lane;
use crate::model::CloudMessage;

/// A generation is closed after this many messages...
pub const GENERATION_MESSAGES: u64 = 8192;
/// ...or this many bytes, whichever comes first.
pub const GENERATION_BYTES: u64 = 4 * 1024 * 1024;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the new entry.
    pub seq: u64,
    /// Oldest entries removed to make room (`DropOldest`).
    pub dropped: u64,
    /// `RejectNew` and the queue is now at or over its limits, or the disk is below
    /// `min_free_bytes`: the caller must stop taking messages (the entry is kept: it was already
    /// received, and refusing it would lose it).
    pub full: bool,
}

/// Appends not yet written to sled (written by the next [`Journal::commit`]).
#[derive(Default)]
pub(super) struct Staged {
    /// Closed records, oldest first.
    closed: Vec<(u64, Vec<u8>)>,
    open: Option<RecordBuilder>,
}

impl Staged {
    /// True when no append waits for a commit.
    pub(super) fn is_empty(&self) -> bool {
        let open_empty = match &self.open {
            Some(open) => open.is_empty(),
            None => true,
        };
        self.closed.is_empty() && open_empty
    }
}

/// The queue's part of the journal.
pub(super) struct Queue {
    meta: sled::Tree,
    limits: Limits,
    pub(super) min_free_bytes: u64,
    pub(super) live: Mutex<Live>,
    pub(super) staged: Mutex<Staged>,
    /// Generations to drop, for the journal's own thread: `drop_tree` frees every page of the
    /// tree and may read them back from disk first; on the drain's thread it stalled delivery
    /// for 160–350 ms after a 100k-message burst (benchmark, scenario 1).
    to_drop: Mutex<std::sync::mpsc::Sender<Job>>,
    /// That thread, joined when the queue is dropped (so no handle of sled outlives it).
    thread: Option<std::thread::JoinHandle<()>>,
    pub(super) generations: RwLock<Generations>,
    /// Bytes written to the last generation.
    last_generation_bytes: AtomicU64,
    /// Appends not yet announced to the drain (one notification covers a burst).
    unannounced: AtomicBool,
    /// The free-space cache (`space.rs`).
    pub(super) space: Space,
    /// What the mark file says and when it was written (`damage.rs`).
    pub(super) marks: Marks,
    dropped: AtomicU64,
}

impl Queue {
    /// Recovers the queue of `db` and starts the thread that drops delivered generations.
    /// Also returns the records that cannot be part of the queue: (generation start, key).
    pub(super) fn open(
        path: &Path,
        db: &sled::Db,
        config: &JournalConfig,
    ) -> Result<(Queue, Vec<(u64, u64)>)> {
        let meta = db.open_tree(META_TREE).map_err(|e| open_error(path, e))?;
        let recovered = recover(db, Some(&meta)).map_err(|e| open_error(path, e))?;
        let (to_drop, thread) =
            start_dropper(db.clone(), path).map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let queue = Queue {
            meta,
            limits: config.limits,
            min_free_bytes: config.min_free_bytes,
            live: Mutex::new(recovered.live),
            staged: Mutex::new(Staged::default()),
            to_drop: Mutex::new(to_drop),
            thread: Some(thread),
            generations: RwLock::new(recovered.generations),
            last_generation_bytes: AtomicU64::new(recovered.last_generation_bytes),
            unannounced: AtomicBool::new(false),
            space: Space::default(),
            marks: Marks::default(),
            dropped: AtomicU64::new(0),
        };
        Ok((queue, recovered.misplaced))
    }
}

impl Journal {
    /// Appends a message (durable after the next [`Journal::commit`]). With `DropOldest` the
    /// oldest entries make room; with `RejectNew` the entry goes in and [`Appended::full`] tells
    /// the caller to pause its intake.
    pub fn append(&self, _lane: Lane, msg: &CloudMessage) -> Result<Appended> {
        if crate::fault::is(crate::fault::Fault::JournalFail) {
            return Err(JournalError::Other {
                path: self.inner.path.clone(),
                detail: "fault injection: the journal refuses every write".into(),
            });
        }
        self.append_encoded(&encode(msg))
    }

    pub(super) fn append_encoded(&self, value: &[u8]) -> Result<Appended> {
        let len = value.len() as u64;
        let (free, room) = self.free_and_room();
        if free < self.inner.queue.min_free_bytes / 2 {
            return Err(JournalError::DiskLow {
                path: self.inner.path.clone(),
                free,
            });
        }
        // Sequence numbers are handed out under the staging lock, so records stay contiguous.
        let mut staged = lock(&self.inner.queue.staged);
        let (seq, dropped, full, stored) = {
            let mut live = lock(&self.inner.queue.live);
            let dropped = self.make_room(&mut live, len);
            let seq = live.next_seq;
            live.next_seq += 1;
            live.sizes.push_back(len.min(u64::from(u32::MAX)) as u32);
            live.bytes += len;
            let full = (self.inner.queue.limits.when_full == WhenFull::RejectNew
                && !self.live_has_room(&live, 1.0))
                || room.saturating_sub(len) < self.inner.queue.min_free_bytes;
            let stored = if dropped > 0 {
                self.store_watermark(&mut live)
            } else {
                Ok(())
            };
            (seq, dropped, full, stored)
        };
        let open = staged.open.get_or_insert_with(|| RecordBuilder::new(seq));
        if open.is_full_for(value.len()) {
            let done = std::mem::replace(open, RecordBuilder::new(seq));
            staged.closed.push(done.finish());
        }
        if let Some(open) = staged.open.as_mut() {
            open.push(value);
        }
        drop(staged);
        // sled writes roughly 2.3x the entry; count that against the cached free space.
        self.inner.queue.space.appended(len * 3);
        if dropped > 0 {
            if let Err(e) = stored.and_then(|()| self.drop_finished_generations()) {
                warn!("cannot record the dropped messages in the journal: {e}");
            }
        }
        Ok(Appended { seq, dropped, full })
    }

    /// Writes every append so far to sled (one insert per record) and, in `fsync` mode, flushes
    /// it to disk: after `Ok` the appends survive a crash (`batched`: within `flush_every_ms`).
    /// On an error the appends stay staged and the next call tries again.
    pub fn commit(&self) -> Result<()> {
        self.write_staged()?;
        if self.inner.durability == Durability::Fsync {
            self.flush_db()?;
        }
        self.mark_soon();
        Ok(())
    }

    pub(super) fn write_staged(&self) -> Result<()> {
        let mut staged = lock(&self.inner.queue.staged);
        let mut end = None;
        if let Some(open) = staged.open.take() {
            if !open.is_empty() {
                end = Some(open.next_seq());
                staged.closed.push(open.finish());
            }
        }
        let mut written = 0;
        let mut result = Ok(());
        for (first, value) in &staged.closed {
            if let Err(e) = self.insert_record(*first, value) {
                result = Err(e);
                break;
            }
            written += 1;
        }
        staged.closed.drain(..written);
        if let (Some(end), Ok(())) = (end, &result) {
            self.inner.queue.marks.written(end);
        }
        result
    }

    /// Inserts one record into the last generation, opening a new one when it is full. Called
    /// with the staging lock held, so records go in in sequence order.
    fn insert_record(&self, first: u64, value: &[u8]) -> Result<()> {
        let last_start = read(&self.inner.queue.generations)
            .trees
            .keys()
            .next_back()
            .copied();
        let roll = match last_start {
            None => true,
            Some(start) => {
                first.saturating_sub(start) >= GENERATION_MESSAGES
                    || self
                        .inner
                        .queue
                        .last_generation_bytes
                        .load(Ordering::Relaxed)
                        >= GENERATION_BYTES
            }
        };
        if roll {
            let name = format!("{GENERATION_PREFIX}{first:020}");
            let tree = self.inner.db.open_tree(name).map_err(|e| self.error(e))?;
            write(&self.inner.queue.generations)
                .trees
                .insert(first, tree);
            self.inner
                .queue
                .last_generation_bytes
                .store(0, Ordering::Relaxed);
        }
        let generations = read(&self.inner.queue.generations);
        let Some((_, tree)) = generations.trees.iter().next_back() else {
            return Ok(());
        };
        tree.insert(first.to_be_bytes(), value)
            .map_err(|e| self.error(e))?;
        self.inner
            .queue
            .last_generation_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Sequence number of the newest entry appended to `lane` (0 when none was).
    pub fn last_seq(&self, _lane: Lane) -> u64 {
        lock(&self.inner.queue.live).next_seq.saturating_sub(1)
    }

    /// True while the queue is below `fraction` of both limits.
    pub fn has_room(&self, fraction: f64) -> bool {
        self.live_has_room(&lock(&self.inner.queue.live), fraction)
    }

    /// The quarantine's bytes count against the byte limit too.
    fn live_has_room(&self, live: &Live, fraction: f64) -> bool {
        let limits = self.inner.queue.limits;
        let bytes = live.bytes.saturating_add(self.inner.quarantine.bytes());
        (live.sizes.len() as f64) < limits.max_messages as f64 * fraction
            && (bytes as f64) < limits.max_bytes as f64 * fraction
    }

    /// Applies the full policy so that one more entry of `len` bytes fits, moving the watermark
    /// over the oldest entries (`DropOldest`); returns how many it dropped. An entry larger than
    /// the byte limit on its own still goes into an empty queue.
    fn make_room(&self, live: &mut Live, len: u64) -> u64 {
        let limits = self.inner.queue.limits;
        let quarantined = self.inner.quarantine.bytes();
        let mut dropped = 0;
        loop {
            let messages = live.sizes.len() as u64;
            // A queue at its limit under RejectNew still takes what was already received.
            let fits = messages < limits.max_messages
                && live.bytes.saturating_add(len).saturating_add(quarantined) <= limits.max_bytes;
            if fits || messages == 0 || limits.when_full == WhenFull::RejectNew {
                break;
            }
            if let Some(size) = live.sizes.pop_front() {
                live.bytes -= u64::from(size);
                live.watermark += 1;
                // A key missing from the middle of an old queue is not a dropped message.
                if size > 0 {
                    dropped += 1;
                }
            }
        }
        self.inner
            .queue
            .dropped
            .fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// The drain reports that every entry below `seq` is delivered or quarantined: they leave
    /// the queue, the watermark is stored, and generations wholly below it are dropped.
    /// A `seq` at or below the current watermark changes nothing (a late PUBACK after
    /// `dropOldest` moved past it), except that a store that failed before is tried again.
    pub fn delivered_below(&self, _lane: Lane, seq: u64) -> Result<()> {
        {
            let mut live = lock(&self.inner.queue.live);
            let target = seq.min(live.next_seq);
            if target > live.watermark {
                for _ in live.watermark..target {
                    if let Some(size) = live.sizes.pop_front() {
                        live.bytes -= u64::from(size);
                    }
                }
                live.watermark = target;
            } else if live.persisted >= live.watermark {
                return Ok(());
            }
            self.store_watermark(&mut live)?;
        }
        self.drop_finished_generations()
    }

    /// Stores the watermark if it moved since it was last stored. Under the live lock, so a
    /// lower value never overwrites a higher one.
    fn store_watermark(&self, live: &mut Live) -> Result<()> {
        if live.watermark > live.persisted {
            self.inner
                .queue
                .meta
                .insert(WATERMARK_KEY, &live.watermark.to_be_bytes())
                .map_err(|e| self.error(e))?;
            live.persisted = live.watermark;
        }
        Ok(())
    }

    /// Drops every generation except the last whose messages all lie below the stored
    /// watermark (the next generation starts at or below it): removed from the map here (no
    /// reader sees them afterwards), dropped from sled on the journal's own thread. The
    /// watermark is stored first, so a crash in between leaves a fully delivered generation
    /// behind, which the next open drops.
    pub(super) fn drop_finished_generations(&self) -> Result<()> {
        let watermark = lock(&self.inner.queue.live).persisted;
        // The generation holding the watermark is the newest one starting at or below it;
        // everything older is finished. Checked under the read lock first: this runs after
        // every burst of PUBACKs, and a write lock would hold up the intake's inserts.
        let holding = |trees: &BTreeMap<u64, sled::Tree>| {
            let mut at_or_below = trees.range(..=watermark).rev();
            let holding = at_or_below.next().map(|(start, _)| *start);
            at_or_below.next().and(holding)
        };
        if holding(&read(&self.inner.queue.generations).trees).is_none() {
            return Ok(());
        }
        let finished = {
            let mut generations = write(&self.inner.queue.generations);
            match holding(&generations.trees) {
                Some(start) => {
                    let rest = generations.trees.split_off(&start);
                    std::mem::replace(&mut generations.trees, rest)
                }
                None => BTreeMap::new(),
            }
        };
        for tree in finished.into_values() {
            if let Err(returned) = lock(&self.inner.queue.to_drop).send(Job::Drop(tree)) {
                // The thread is gone (it only ends with the journal): drop it here.
                let Job::Drop(tree) = returned.0 else {
                    continue;
                };
                self.inner
                    .db
                    .drop_tree(tree.name())
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    /// Marks that entries were appended; true when the drain must be told (no notice pending).
    pub fn announce(&self) -> bool {
        !self.inner.queue.unannounced.swap(true, Ordering::AcqRel)
    }

    /// The drain calls this before reading: later appends announce themselves again.
    pub fn take_announcement(&self) {
        self.inner.queue.unannounced.store(false, Ordering::Release);
    }

    /// Entries of `lane` removed by `dropOldest` since the journal was opened.
    pub fn dropped(&self, _lane: Lane) -> u64 {
        self.inner.queue.dropped.load(Ordering::Relaxed)
    }

    /// Entries of every lane removed by `dropOldest` since the journal was opened.
    pub fn dropped_total(&self) -> u64 {
        self.inner.queue.dropped.load(Ordering::Relaxed)
    }

    /// The first committed entry with sequence number ≥ `from` that is not behind the watermark.
    pub fn first_from(&self, lane: Lane, from: u64) -> Result<Option<(u64, CloudMessage)>> {
        match self.entries_from(lane, from, 1)?.into_iter().next() {
            None => Ok(None),
            Some((seq, Ok(msg))) => Ok(Some((seq, msg))),
            Some((seq, Err(detail))) => Err(JournalError::BadEntry { seq, detail }),
        }
    }

    /// Up to `max` committed entries with sequence number ≥ `from` (and not behind the
    /// watermark), in order. An entry that cannot be decoded comes back as its sequence number
    /// and what is wrong with it.
    pub fn entries_from(
        &self,
        _lane: Lane,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, std::result::Result<CloudMessage, String>)>> {
        let from = from.max(lock(&self.inner.queue.live).watermark);
        // Held while reading, so no generation is dropped under the scan.
        let generations = read(&self.inner.queue.generations);
        read_entries(&self.inner.path, &generations.trees, from, max)
    }

    /// The stored bytes of entry `seq`: its part of a record, or the whole value when the
    /// record that starts at `seq` cannot be split.
    pub(super) fn raw_entry(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let generations = read(&self.inner.queue.generations);
        let Some((_, tree)) = generations.trees.range(..=seq).next_back() else {
            return Ok(None);
        };
        let Some(item) = tree.range(..=seq.to_be_bytes()).next_back() else {
            return Ok(None);
        };
        let (key, value) = item.map_err(|e| self.error(e))?;
        let first = decode_key(&key);
        Ok(match record::split(&value) {
            Ok(parts) => usize::try_from(seq - first)
                .ok()
                .and_then(|i| parts.get(i))
                .map(|part| part.to_vec()),
            Err(_) if first == seq => Some(value.to_vec()),
            Err(_) => None,
        })
    }

    /// Number of messages of `lane` waiting for delivery.
    pub fn queued(&self, _lane: Lane) -> u64 {
        lock(&self.inner.queue.live).sizes.len() as u64
    }

    /// Encoded bytes of the messages of `lane` waiting for delivery.
    pub fn queued_bytes(&self, _lane: Lane) -> u64 {
        lock(&self.inner.queue.live).bytes
    }

    /// Number of messages of every lane waiting for delivery.
    pub fn queued_total(&self) -> u64 {
        lock(&self.inner.queue.live).sizes.len() as u64
    }

    /// Encoded bytes of the messages of every lane waiting for delivery.
    pub fn queued_bytes_total(&self) -> u64 {
        lock(&self.inner.queue.live).bytes
    }

    /// Enqueue time (unix ms) of the oldest message of `lane` waiting for delivery.
    pub fn oldest_enqueued_ms(&self, lane: Lane) -> Result<Option<u64>> {
        Ok(self.first_from(lane, 0)?.map(|(_, msg)| msg.enqueued_ms))
    }
}

/// Up to `max` entries with sequence number ≥ `from` in the generation `trees`, in order (see
/// [`Journal::entries_from`]).
pub(super) fn read_entries(
    path: &Path,
    trees: &BTreeMap<u64, sled::Tree>,
    from: u64,
    max: usize,
) -> Result<Vec<(u64, std::result::Result<CloudMessage, String>)>> {
    let mut out = Vec::with_capacity(max.min(256));
    let first_generation = trees
        .range(..=from)
        .next_back()
        .map_or(0, |(start, _)| *start);
    for tree in trees.range(first_generation..).map(|(_, t)| t) {
        // The record holding `from` may start before it.
        let start = match tree.range(..=from.to_be_bytes()).next_back() {
            Some(item) => decode_key(&item.map_err(|e| open_error(path, e))?.0),
            None => from,
        };
        for item in tree.range(start.to_be_bytes()..) {
            let (key, value) = item.map_err(|e| open_error(path, e))?;
            let first = decode_key(&key);
            match record::split(&value) {
                Ok(parts) => {
                    for (seq, part) in (first..).zip(parts) {
                        if seq >= from {
                            out.push((seq, decode(part)));
                            if out.len() >= max {
                                return Ok(out);
                            }
                        }
                    }
                }
                Err(detail) if first >= from => {
                    out.push((first, Err(detail)));
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

/// Work for the journal's own thread.
enum Job {
    /// Drop this delivered generation.
    Drop(sled::Tree),
    /// Flush sled, then write the mark file with this sequence number (`damage.rs`).
    Mark(u64),
}

impl Journal {
    /// Asks the journal's thread to flush sled and then write the mark `seq`.
    pub(super) fn send_mark(&self, seq: u64) {
        // A gone thread (it only ends with the journal) leaves the mark for the last flush.
        let _ = lock(&self.inner.queue.to_drop).send(Job::Mark(seq));
    }
}

/// Starts the thread that drops delivered generations and writes the mark file; it ends when
/// the journal is dropped.
fn start_dropper(
    db: sled::Db,
    path: &Path,
) -> std::io::Result<(std::sync::mpsc::Sender<Job>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let path = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("awslink-journal-gc".into())
        .spawn(move || {
            for job in rx {
                let tree = match job {
                    Job::Drop(tree) => tree,
                    Job::Mark(seq) => {
                        if let Err(e) = db.flush().map(|_| ()).map_err(|e| e.to_string()).and_then(|()| {
                            write_mark(&path, seq).map_err(|e| e.to_string())
                        }) {
                            warn!("cannot write the journal's mark file in {}: {e}", path.display());
                        }
                        continue;
                    }
                };
                let name = tree.name();
                drop(tree);
                if let Err(e) = db.drop_tree(&name) {
                    warn!(
                        "cannot drop the delivered journal generation {}: {e}; it is dropped at the next start",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        })?;
    Ok((tx, thread))
}

impl Drop for Queue {
    /// Ends the journal's thread after the work it was given.
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut *lock(&self.to_drop), closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

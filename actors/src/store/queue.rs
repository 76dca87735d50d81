//! The uplink queue, one FIFO per [`Lane`]: appends staged into records and written by a commit,
//! the generation trees they go into, the durable watermarks and the dropping of delivered
//! generations, the limits over all lanes (`dropOldest` from the lowest lane first, the reserve
//! of control under `rejectNew`), and the drain announcement (one notice per burst). What is on
//! disk at open is read by `recovery.rs`, reading entries is in `read.rs`, the journal's own
//! thread in `gc.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use log::warn;

use super::damage::Marks;
use super::gc::{start_dropper, Job};
use super::layout::{generation_name, watermark_key, Generations, Live, Lives, META_TREE};
use super::record::{encode, RecordBuilder};
use super::recovery::{recover_lanes, Recovered};
use super::space::Space;
use super::tail::Tail;
use super::{
    lock, open_error, read, write, Journal, JournalConfig, JournalError, Limits, Result, WhenFull,
};
use crate::lanes::Lane;
use crate::model::CloudMessage;

/// Records that cannot be part of their lane's queue: (lane, generation start, key).
pub(super) type Misplaced = Vec<(Lane, u64, u64)>;

/// A generation is closed after this many messages...
pub const GENERATION_MESSAGES: u64 = 8192;
/// ...or this many bytes, whichever comes first.
pub const GENERATION_BYTES: u64 = 4 * 1024 * 1024;
/// Under `rejectNew`, control appends are reported full only beyond the limits plus this
/// fraction of them, so a full telemetry or events backlog never holds control back.
pub const CONTROL_RESERVE: f64 = 0.1;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the new entry in its lane.
    pub seq: u64,
    /// Oldest entries removed to make room (`DropOldest`), from any lane.
    pub dropped: u64,
    /// `RejectNew` and the queue is now at or over its limits (for control: over the limits
    /// plus [`CONTROL_RESERVE`]), or the disk is below `min_free_bytes`: the caller must stop
    /// taking messages of this lane (the entry is kept: it was already received, and refusing
    /// it would lose it).
    pub full: bool,
}

/// Appends of one lane not yet written to sled (written by the next [`Journal::commit`]).
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

/// One lane's part of the queue (its live state is in [`Queue::live`]).
pub(super) struct LaneQueue {
    lane: Lane,
    pub(super) staged: Mutex<Staged>,
    pub(super) generations: RwLock<Generations>,
    /// The newest written records, which the drain reads without sled (`tail.rs`).
    pub(super) tail: Mutex<Tail>,
    /// Bytes written to the last generation.
    last_generation_bytes: AtomicU64,
    /// Entries removed by `dropOldest` since the journal was opened.
    dropped: AtomicU64,
}

/// The queue's part of the journal. Lock order: a lane's `staged`, then `live`, then a lane's
/// `generations`; never two lanes' `staged` at once. A lane's `tail` is taken last and no other
/// lock is taken while it is held.
pub(super) struct Queue {
    meta: sled::Tree,
    limits: Limits,
    pub(super) min_free_bytes: u64,
    pub(super) live: Mutex<Lives>,
    pub(super) lanes: [LaneQueue; 3],
    /// Work for the journal's own thread (`gc.rs`): `drop_tree` frees every page of the tree
    /// and may read them back from disk first; on the drain's thread it stalled delivery for
    /// 160–350 ms after a 100k-message burst (benchmark, scenario 1).
    pub(super) to_drop: Mutex<std::sync::mpsc::Sender<Job>>,
    /// That thread, joined when the queue is dropped (so no handle of sled outlives it).
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    /// Appends not yet announced to the drain (one notification covers a burst).
    unannounced: AtomicBool,
    /// The free-space cache (`space.rs`).
    pub(super) space: Space,
    /// What the mark file says and when it was written (`damage.rs`).
    pub(super) marks: Marks,
}

impl Queue {
    /// Recovers the lanes of `db` and starts the journal's thread. Also returns the records
    /// that cannot be part of their lane's queue: (lane, generation start, key).
    pub(super) fn open(
        path: &Path,
        db: &sled::Db,
        config: &JournalConfig,
    ) -> Result<(Queue, Misplaced)> {
        let meta = db.open_tree(META_TREE).map_err(|e| open_error(path, e))?;
        let recovered = recover_lanes(db, Some(&meta)).map_err(|e| open_error(path, e))?;
        let (to_drop, thread) =
            start_dropper(db.clone(), path).map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut misplaced = Vec::new();
        let mut lives = Vec::with_capacity(3);
        let mut lanes = Vec::with_capacity(3);
        for (lane, r) in Lane::ALL.into_iter().zip(recovered) {
            let Recovered {
                live,
                generations,
                last_generation_bytes,
                misplaced: lost,
            } = r;
            misplaced.extend(lost.into_iter().map(|(start, key)| (lane, start, key)));
            lives.push(live);
            lanes.push(LaneQueue {
                lane,
                staged: Mutex::new(Staged::default()),
                generations: RwLock::new(generations),
                tail: Mutex::new(Tail::default()),
                last_generation_bytes: AtomicU64::new(last_generation_bytes),
                dropped: AtomicU64::new(0),
            });
        }
        let (Ok(lives), Ok(lanes)) = (<[Live; 3]>::try_from(lives), lanes.try_into()) else {
            return Err(JournalError::Other {
                path: path.to_path_buf(),
                detail: "the journal's lanes could not be recovered".into(),
            });
        };
        let queue = Queue {
            meta,
            limits: config.limits,
            min_free_bytes: config.min_free_bytes,
            live: Mutex::new(Lives(lives)),
            lanes,
            to_drop: Mutex::new(to_drop),
            thread: Some(thread),
            unannounced: AtomicBool::new(false),
            space: Space::default(),
            marks: Marks::default(),
        };
        Ok((queue, misplaced))
    }

    /// The part of `lane`.
    pub(super) fn lane(&self, lane: Lane) -> &LaneQueue {
        &self.lanes[lane.index()]
    }
}

impl Journal {
    /// Appends a message to `lane` (durable after the next [`Journal::commit`]). With
    /// `DropOldest` the oldest entries of the lowest lane that holds any make room; with
    /// `RejectNew` the entry goes in and [`Appended::full`] tells the caller to pause the
    /// intake of this lane.
    pub fn append(&self, lane: Lane, msg: &CloudMessage) -> Result<Appended> {
        if crate::fault::is(crate::fault::Fault::JournalFail) {
            return Err(JournalError::Other {
                path: self.inner.path.clone(),
                detail: "fault injection: the journal refuses every write".into(),
            });
        }
        self.append_encoded(lane, &encode(msg))
    }

    pub(super) fn append_encoded(&self, lane: Lane, value: &[u8]) -> Result<Appended> {
        let len = value.len() as u64;
        let (free, room) = self.free_and_room();
        if free < self.inner.queue.min_free_bytes / 2 {
            return Err(JournalError::DiskLow {
                path: self.inner.path.clone(),
                free,
            });
        }
        // Sequence numbers are handed out under the lane's staging lock, so records stay
        // contiguous.
        let mut staged = lock(&self.inner.queue.lane(lane).staged);
        let (seq, dropped, full, stored) = {
            let mut lives = lock(&self.inner.queue.live);
            let (dropped, from) = self.make_room(&mut lives, len);
            let live = lives.of(lane);
            let seq = live.next_seq;
            live.next_seq += 1;
            live.sizes.push_back(len.min(u64::from(u32::MAX)) as u32);
            live.bytes += len;
            let has_room = match lane {
                Lane::Control => self.lives_within_reserve(&lives),
                Lane::Events | Lane::Telemetry => self.lives_have_room(&lives, 1.0),
            };
            let full = (self.inner.queue.limits.when_full == WhenFull::RejectNew && !has_room)
                || room.saturating_sub(len) < self.inner.queue.min_free_bytes;
            let mut stored = Ok(());
            for lane in Lane::ALL.into_iter().filter(|l| from[l.index()]) {
                stored = stored.and_then(|()| self.store_watermark(lane, lives.of(lane)));
            }
            (seq, dropped, full, stored.map(|()| from))
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
            let dropped_generations = stored.and_then(|from| {
                Lane::ALL
                    .into_iter()
                    .filter(|l| from[l.index()])
                    .try_for_each(|l| {
                        self.trim_tail(l);
                        self.drop_finished_generations(l)
                    })
            });
            if let Err(e) = dropped_generations {
                warn!("cannot record the dropped messages in the journal: {e}");
            }
        }
        Ok(Appended { seq, dropped, full })
    }

    /// Writes every append so far, of every lane, to sled (one insert per record) and, in
    /// `fsync` mode, flushes it to disk (one flush for all lanes): after `Ok` the appends survive
    /// a crash (`fsync`). In `batched` mode it flushes when the last flush is `flush_every_ms`
    /// old and was quick (`flusher.rs`); the journal's flusher thread covers the rest within about
    /// that time. On an error the appends stay staged and the next call tries again.
    pub fn commit(&self) -> Result<()> {
        self.write_staged()?;
        match &self.inner.flusher {
            // `fsync` mode: a journal without a flusher.
            None => self.flush_db()?,
            Some(flusher) => flusher.flush_inline(|| self.flush_db())?,
        }
        self.mark_soon();
        Ok(())
    }

    /// Writes the staged appends of every lane to sled.
    pub(super) fn write_staged(&self) -> Result<()> {
        Lane::ALL
            .into_iter()
            .try_for_each(|lane| self.write_staged_lane(self.inner.queue.lane(lane)))
    }

    fn write_staged_lane(&self, part: &LaneQueue) -> Result<()> {
        let mut staged = lock(&part.staged);
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
            if let Err(e) = self.insert_record(part, *first, value) {
                result = Err(e);
                break;
            }
            written += 1;
        }
        if written > 0 {
            let mut tail = lock(&part.tail);
            for (first, value) in staged.closed.drain(..written) {
                tail.push(first, value);
            }
        }
        if let (Some(end), Ok(())) = (end, &result) {
            self.inner.queue.marks.written(part.lane, end);
        }
        result
    }

    /// Inserts one record into the last generation of its lane, opening a new one when it is
    /// full. Called with the lane's staging lock held, so records go in in sequence order.
    fn insert_record(&self, part: &LaneQueue, first: u64, value: &[u8]) -> Result<()> {
        let last_start = read(&part.generations).trees.keys().next_back().copied();
        let roll = match last_start {
            None => true,
            Some(start) => {
                first.saturating_sub(start) >= GENERATION_MESSAGES
                    || part.last_generation_bytes.load(Ordering::Relaxed) >= GENERATION_BYTES
            }
        };
        if roll {
            let name = generation_name(part.lane, first);
            let tree = self.inner.db.open_tree(name).map_err(|e| self.error(e))?;
            write(&part.generations).trees.insert(first, tree);
            part.last_generation_bytes.store(0, Ordering::Relaxed);
        }
        let generations = read(&part.generations);
        let Some((_, tree)) = generations.trees.iter().next_back() else {
            return Ok(());
        };
        tree.insert(first.to_be_bytes(), value)
            .map_err(|e| self.error(e))?;
        part.last_generation_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Sequence number of the newest entry appended to `lane` (0 when none was).
    pub fn last_seq(&self, lane: Lane) -> u64 {
        lock(&self.inner.queue.live)
            .of(lane)
            .next_seq
            .saturating_sub(1)
    }

    /// True while the queue (all lanes together) is below `fraction` of both limits.
    pub fn has_room(&self, fraction: f64) -> bool {
        self.lives_have_room(&lock(&self.inner.queue.live), fraction)
    }

    /// The quarantine's bytes count against the byte limit too.
    fn lives_have_room(&self, lives: &Lives, fraction: f64) -> bool {
        let limits = self.inner.queue.limits;
        let bytes = lives.bytes().saturating_add(self.inner.quarantine.bytes());
        (lives.messages() as f64) < limits.max_messages as f64 * fraction
            && (bytes as f64) < limits.max_bytes as f64 * fraction
    }

    /// True while the queue is below both limits plus [`CONTROL_RESERVE`] of them (the
    /// quarantine's bytes included).
    fn lives_within_reserve(&self, lives: &Lives) -> bool {
        let limits = self.inner.queue.limits;
        let reserve = |max: u64| max.saturating_add((max as f64 * CONTROL_RESERVE) as u64);
        let bytes = lives.bytes().saturating_add(self.inner.quarantine.bytes());
        lives.messages() < reserve(limits.max_messages) && bytes < reserve(limits.max_bytes)
    }

    /// Applies the full policy so that one more entry of `len` bytes fits, moving the
    /// watermarks over the oldest entries (`DropOldest`): of telemetry first, then events, and of
    /// control only when no lower lane holds anything. Returns how many it dropped and from
    /// which lanes. An entry larger than the byte limit on its own still goes into an empty
    /// queue.
    fn make_room(&self, lives: &mut Lives, len: u64) -> (u64, [bool; 3]) {
        let limits = self.inner.queue.limits;
        let quarantined = self.inner.quarantine.bytes();
        let mut dropped = [0u64; 3];
        let mut from = [false; 3];
        loop {
            let messages = lives.messages();
            // A queue at its limit under RejectNew still takes what was already received.
            let fits = messages < limits.max_messages
                && lives
                    .bytes()
                    .saturating_add(len)
                    .saturating_add(quarantined)
                    <= limits.max_bytes;
            if fits || messages == 0 || limits.when_full == WhenFull::RejectNew {
                break;
            }
            let Some(victim) = Lane::ALL
                .into_iter()
                .rev()
                .find(|l| !lives.of(*l).sizes.is_empty())
            else {
                break;
            };
            let live = lives.of(victim);
            if let Some(size) = live.sizes.pop_front() {
                live.bytes -= u64::from(size);
                live.watermark += 1;
                from[victim.index()] = true;
                // A key missing from the middle of an old queue is not a dropped message.
                if size > 0 {
                    dropped[victim.index()] += 1;
                }
            }
        }
        for lane in Lane::ALL {
            self.inner
                .queue
                .lane(lane)
                .dropped
                .fetch_add(dropped[lane.index()], Ordering::Relaxed);
        }
        (dropped.iter().sum(), from)
    }

    /// The drain reports that every entry of `lane` below `seq` is delivered or quarantined:
    /// they leave the queue, the lane's watermark is stored, and its generations wholly below
    /// it are dropped. A `seq` at or below the current watermark changes nothing (a late
    /// PUBACK after `dropOldest` moved past it), except that a store that failed before is
    /// tried again.
    pub fn delivered_below(&self, lane: Lane, seq: u64) -> Result<()> {
        {
            let mut lives = lock(&self.inner.queue.live);
            let live = lives.of(lane);
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
            self.store_watermark(lane, live)?;
        }
        self.trim_tail(lane);
        self.drop_finished_generations(lane)
    }

    /// Lets `lane`'s in-memory tail go of what lies behind its watermark (delivered, expired,
    /// quarantined or dropped).
    fn trim_tail(&self, lane: Lane) {
        let watermark = lock(&self.inner.queue.live).of(lane).watermark;
        lock(&self.inner.queue.lane(lane).tail).trim_below(watermark);
    }

    /// Stores the watermark of `lane` if it moved since it was last stored. Under the live
    /// lock, so a lower value never overwrites a higher one.
    fn store_watermark(&self, lane: Lane, live: &mut Live) -> Result<()> {
        if live.watermark > live.persisted {
            self.inner
                .queue
                .meta
                .insert(watermark_key(lane), &live.watermark.to_be_bytes())
                .map_err(|e| self.error(e))?;
            live.persisted = live.watermark;
        }
        Ok(())
    }

    /// Drops every generation of `lane` except the last whose messages all lie below the
    /// stored watermark (the next generation starts at or below it): removed from the map here
    /// (no reader sees them afterwards), dropped from sled on the journal's own thread. The
    /// watermark is stored first, so a crash in between leaves a fully delivered generation
    /// behind, which the next open drops.
    pub(super) fn drop_finished_generations(&self, lane: Lane) -> Result<()> {
        let watermark = lock(&self.inner.queue.live).of(lane).persisted;
        let part = self.inner.queue.lane(lane);
        // The generation holding the watermark is the newest one starting at or below it;
        // everything older is finished. Checked under the read lock first: this runs after
        // every burst of PUBACKs, and a write lock would hold up the intake's inserts.
        let holding = |trees: &BTreeMap<u64, sled::Tree>| {
            let mut at_or_below = trees.range(..=watermark).rev();
            let holding = at_or_below.next().map(|(start, _)| *start);
            at_or_below.next().and(holding)
        };
        if holding(&read(&part.generations).trees).is_none() {
            return Ok(());
        }
        let finished = {
            let mut generations = write(&part.generations);
            match holding(&generations.trees) {
                Some(start) => {
                    let rest = generations.trees.split_off(&start);
                    std::mem::replace(&mut generations.trees, rest)
                }
                None => BTreeMap::new(),
            }
        };
        for tree in finished.into_values() {
            self.drop_tree_later(tree)?;
        }
        Ok(())
    }

    /// Drops the generations of every lane that lie wholly below its watermark.
    pub(super) fn drop_finished_generations_all(&self) -> Result<()> {
        Lane::ALL
            .into_iter()
            .try_for_each(|lane| self.drop_finished_generations(lane))
    }

    /// While the intake waits for disk space: the last generation of every lane that is empty
    /// (nothing queued, nothing staged, the watermark stored at its end) is dropped too (the
    /// next commit starts a new one). True when one was dropped.
    pub(super) fn drop_empty_last_generations(&self) -> Result<bool> {
        let mut any = false;
        for part in &self.inner.queue.lanes {
            let last = {
                let staged = lock(&part.staged);
                let mut lives = lock(&self.inner.queue.live);
                let live = lives.of(part.lane);
                if !staged.is_empty() || !live.sizes.is_empty() || live.persisted < live.next_seq {
                    None
                } else {
                    let mut generations = write(&part.generations);
                    match generations.trees.last_key_value() {
                        Some((start, _)) if *start <= live.persisted => {
                            generations.trees.pop_last().map(|(_, tree)| tree)
                        }
                        _ => None,
                    }
                }
            };
            if let Some(tree) = last {
                let name = tree.name();
                drop(tree);
                self.inner.db.drop_tree(name).map_err(|e| self.error(e))?;
                any = true;
            }
        }
        Ok(any)
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
    pub fn dropped(&self, lane: Lane) -> u64 {
        self.inner.queue.lane(lane).dropped.load(Ordering::Relaxed)
    }

    /// Entries of every lane removed by `dropOldest` since the journal was opened.
    pub fn dropped_total(&self) -> u64 {
        Lane::ALL.into_iter().map(|l| self.dropped(l)).sum()
    }
}

//! The sled journal: the durable queue between "acknowledged to Mosquitto" and "acknowledged by AWS".
//!
//! Invariant: an entry is appended and written by [`Journal::commit`] (flushed there in `fsync`
//! mode) before the local PUBACK, and leaves the queue only when the drain reports that
//! everything below it was delivered or quarantined ([`Journal::delivered_below`]).
//!
//! Layout, chosen so that a message costs a fraction of a sled operation instead of two (an
//! insert and a remove, ~25% of awslink's CPU in the benchmark profile):
//! - Messages get consecutive sequence numbers. A committed burst is stored as one record per up
//!   to [`record::RECORD_MAX_MESSAGES`] messages, under the key of its first (big-endian `u64`,
//!   so sled's key order is the publish order; see [`super::record`]).
//! - Records live in generation trees `uplink.<first seq>`, each closed after
//!   [`GENERATION_MESSAGES`] messages or [`GENERATION_BYTES`] bytes. Delivered messages are not
//!   removed one by one: a durable watermark ("everything below N is done") moves forward, and a
//!   generation that lies wholly below it is dropped with one `drop_tree`.
//! - The tree `uplink` of earlier versions (one message per key) is moved into generations when
//!   the journal opens (appended after what is queued, then flushed, then dropped), so a buffer
//!   left by an older awslink is still drained — also after a downgrade and a new upgrade.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use log::warn;

use super::record::{self, decode, encode, RecordBuilder};
use crate::messages::CloudMessage;

/// The tree of earlier versions: one message per key.
const LEGACY_QUEUE_TREE: &str = "uplink";
/// Prefix of the generation trees; the rest of the name is the first sequence number.
const GENERATION_PREFIX: &str = "uplink.";
const META_TREE: &str = "uplink-meta";
const WATERMARK_KEY: &[u8] = b"delivered_below";
const QUARANTINE_TREE: &str = "quarantine";
const DOWNLINK_TREE: &str = "downlink";
/// A generation is closed after this many messages...
pub const GENERATION_MESSAGES: u64 = 8192;
/// ...or this many bytes, whichever comes first.
pub const GENERATION_BYTES: u64 = 4 * 1024 * 1024;
/// The largest run of missing sequence numbers a queue read from disk may have (writes never
/// leave any: records are contiguous and a crash loses only a suffix).
const MAX_GAP: u64 = GENERATION_MESSAGES;
/// No sequence number goes beyond this (2^62: centuries at a million messages a second).
const MAX_SEQ: u64 = 1 << 62;
/// How long a free-space answer is reused.
pub const FREE_SPACE_REFRESH_MS: u64 = 100;

/// When an appended entry reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed by [`Journal::commit`] (survives power loss).
    Fsync,
    /// Flushed by sled's background flusher every `flush_every_ms`.
    Batched {
        /// Flush interval.
        flush_every_ms: u64,
    },
}

/// What to do when an append would exceed the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Remove the oldest entries to make room (counted as dropped).
    DropOldest,
    /// Refuse the append with [`JournalError::Full`]; the caller holds the message.
    RejectNew,
}

/// Size limits of the uplink queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries.
    pub max_messages: u64,
    /// Most encoded bytes.
    pub max_bytes: u64,
    /// Policy when full.
    pub when_full: WhenFull,
}

impl Limits {
    /// No practical limit.
    pub const UNLIMITED: Limits = Limits {
        max_messages: u64::MAX,
        max_bytes: u64::MAX,
        when_full: WhenFull::DropOldest,
    };
}

/// How to open the journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// When appends reach the disk.
    pub durability: Durability,
    /// Queue limits.
    pub limits: Limits,
    /// Free space the journal leaves on its filesystem: below it, appends ask the caller to pause
    /// and below half of it they are refused (sled does not recover from a full disk).
    pub min_free_bytes: u64,
}

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

/// Everything that can go wrong with the journal, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the database lock.
    #[error("buffer directory {path} is in use by another process (is a second awslink running?); stop it or choose another buffer.path")]
    Locked {
        /// The buffer directory.
        path: PathBuf,
    },
    /// sled found damaged files.
    #[error("buffer directory {path} is corrupt ({detail}); move it aside to start with an empty buffer")]
    Corrupt {
        /// The buffer directory.
        path: PathBuf,
        /// sled's description.
        detail: String,
    },
    /// Any other I/O error (permissions, disk full).
    #[error("buffer directory {path}: {source}")]
    Io {
        /// The buffer directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An entry that cannot be decoded.
    #[error("journal entry {seq} is unreadable: {detail}")]
    BadEntry {
        /// Key of the entry.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// The filesystem is nearly full; sled is not asked to write.
    #[error("buffer directory {path}: only {free} bytes free, below buffer.minFreeBytes/2; free disk space")]
    DiskLow {
        /// The buffer directory.
        path: PathBuf,
        /// Bytes available.
        free: u64,
    },
    /// Other sled errors.
    #[error("buffer directory {path}: {detail}")]
    Other {
        /// The buffer directory.
        path: PathBuf,
        /// sled's description.
        detail: String,
    },
}

/// Result alias for journal operations.
pub type Result<T> = std::result::Result<T, JournalError>;

/// A handle to the journal; cheap to clone and safe to use from any thread (the intake's, paho's callbacks, the actors').
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// The messages not yet behind the watermark.
struct Live {
    /// Everything below is delivered, quarantined or dropped.
    watermark: u64,
    /// The watermark as last stored in [`META_TREE`] (generations are dropped only behind it).
    persisted: u64,
    /// Sequence number of the next append.
    next_seq: u64,
    /// Encoded size of each message from `watermark` to `next_seq` (0 for a key that is
    /// missing, e.g. one an earlier version removed from the middle of its queue).
    sizes: VecDeque<u32>,
    /// Sum of `sizes`.
    bytes: u64,
}

/// Appends not yet written to sled (written by the next [`Journal::commit`]).
#[derive(Default)]
struct Staged {
    /// Closed records, oldest first.
    closed: Vec<(u64, Vec<u8>)>,
    open: Option<RecordBuilder>,
}

/// The generation trees by first sequence number; the last one takes new records.
struct Generations {
    trees: BTreeMap<u64, sled::Tree>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    quarantine: sled::Tree,
    downlink: sled::Tree,
    durability: Durability,
    limits: Limits,
    min_free_bytes: u64,
    live: Mutex<Live>,
    staged: Mutex<Staged>,
    /// Generations to drop, for the journal's own thread: `drop_tree` frees every page of the
    /// tree and may read them back from disk first; on the drain's thread it stalled delivery
    /// for 160–350 ms after a 100k-message burst (benchmark, scenario 1).
    to_drop: Mutex<std::sync::mpsc::Sender<sled::Tree>>,
    generations: RwLock<Generations>,
    /// Bytes written to the last generation.
    last_generation_bytes: AtomicU64,
    /// Appends not yet announced to the drain (one notification covers a burst).
    unannounced: AtomicBool,
    free_cached: AtomicU64,
    free_checked_ms: AtomicU64,
    appended_since_check: AtomicU64,
    dropped: AtomicU64,
}

/// One quarantined message with the reason it can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why it was quarantined.
    pub reason: String,
    /// The message (topic may be the local one when mapping failed).
    pub msg: CloudMessage,
}

/// What [`Journal::open`] finds in the generation trees.
struct Recovered {
    live: Live,
    generations: Generations,
    last_generation_bytes: u64,
    /// Records whose keys cannot be part of the queue: (generation start, key).
    misplaced: Vec<(u64, u64)>,
}

/// Locks a mutex, going on with the data if a thread panicked while holding it (every update
/// leaves the data consistent before anything that can panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Journal {
    /// Opens (or creates) the journal at `config.path`.
    pub fn open(config: &JournalConfig) -> Result<Journal> {
        let path = config.path.clone();
        let mut sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        sled_config = match config.durability {
            Durability::Fsync => sled_config.flush_every_ms(None),
            Durability::Batched { flush_every_ms } => {
                sled_config.flush_every_ms(Some(flush_every_ms.max(1)))
            }
        };
        let db = sled_config.open().map_err(|e| open_failure(&path, e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&path, e));
        let meta = tree(META_TREE)?;
        let quarantine = tree(QUARANTINE_TREE)?;
        let downlink = tree(DOWNLINK_TREE)?;
        let recovered = recover(&db, &meta).map_err(|e| open_error(&path, e))?;
        let to_drop = start_dropper(db.clone()).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        let recovered_misplaced = recovered.misplaced;
        let journal = Journal {
            inner: Arc::new(Inner {
                path,
                db,
                meta,
                quarantine,
                downlink,
                durability: config.durability,
                limits: config.limits,
                min_free_bytes: config.min_free_bytes,
                live: Mutex::new(recovered.live),
                staged: Mutex::new(Staged::default()),
                to_drop: Mutex::new(to_drop),
                generations: RwLock::new(recovered.generations),
                last_generation_bytes: AtomicU64::new(recovered.last_generation_bytes),
                unannounced: AtomicBool::new(false),
                free_cached: AtomicU64::new(0),
                free_checked_ms: AtomicU64::new(0),
                appended_since_check: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        };
        journal.quarantine_misplaced(&recovered_misplaced)?;
        journal.drop_finished_generations()?;
        if let Err(e) = journal.migrate_legacy_queue() {
            // Left in place and tried again at the next start; nothing is lost meanwhile.
            warn!("cannot move the queue of an earlier awslink version into this journal yet: {e}");
        }
        Ok(journal)
    }

    /// Appends a message (durable after the next [`Journal::commit`]). With `DropOldest` the
    /// oldest entries make room; with `RejectNew` the entry goes in and [`Appended::full`] tells
    /// the caller to pause its intake.
    pub fn append(&self, msg: &CloudMessage) -> Result<Appended> {
        self.append_encoded(&encode(msg))
    }

    fn append_encoded(&self, value: &[u8]) -> Result<Appended> {
        let len = value.len() as u64;
        let free = self.free_bytes();
        if free < self.inner.min_free_bytes / 2 {
            return Err(JournalError::DiskLow {
                path: self.inner.path.clone(),
                free,
            });
        }
        // Sequence numbers are handed out under the staging lock, so records stay contiguous.
        let mut staged = lock(&self.inner.staged);
        let (seq, dropped, full, stored) = {
            let mut live = lock(&self.inner.live);
            let dropped = self.make_room(&mut live, len);
            let seq = live.next_seq;
            live.next_seq += 1;
            live.sizes.push_back(len.min(u64::from(u32::MAX)) as u32);
            live.bytes += len;
            let full = (self.inner.limits.when_full == WhenFull::RejectNew
                && !self.live_has_room(&live, 1.0))
                || free.saturating_sub(len) < self.inner.min_free_bytes;
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
        self.inner
            .appended_since_check
            .fetch_add(len * 3, Ordering::Relaxed);
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
        Ok(())
    }

    fn write_staged(&self) -> Result<()> {
        let mut staged = lock(&self.inner.staged);
        if let Some(open) = staged.open.take() {
            if !open.is_empty() {
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
        result
    }

    /// Inserts one record into the last generation, opening a new one when it is full. Called
    /// with the staging lock held, so records go in in sequence order.
    fn insert_record(&self, first: u64, value: &[u8]) -> Result<()> {
        let last_start = read(&self.inner.generations)
            .trees
            .keys()
            .next_back()
            .copied();
        let roll = match last_start {
            None => true,
            Some(start) => {
                first.saturating_sub(start) >= GENERATION_MESSAGES
                    || self.inner.last_generation_bytes.load(Ordering::Relaxed) >= GENERATION_BYTES
            }
        };
        if roll {
            let name = format!("{GENERATION_PREFIX}{first:020}");
            let tree = self.inner.db.open_tree(name).map_err(|e| self.error(e))?;
            write(&self.inner.generations).trees.insert(first, tree);
            self.inner.last_generation_bytes.store(0, Ordering::Relaxed);
        }
        let generations = read(&self.inner.generations);
        let Some((_, tree)) = generations.trees.iter().next_back() else {
            return Ok(());
        };
        tree.insert(first.to_be_bytes(), value)
            .map_err(|e| self.error(e))?;
        self.inner
            .last_generation_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Moves records whose keys cannot be part of the queue (see [`recover`]) to the quarantine
    /// tree.
    fn quarantine_misplaced(&self, misplaced: &[(u64, u64)]) -> Result<()> {
        for &(start, key) in misplaced {
            let Some(tree) = read(&self.inner.generations).trees.get(&start).cloned() else {
                continue;
            };
            let Some(value) = tree.get(key.to_be_bytes()).map_err(|e| self.error(e))? else {
                continue;
            };
            warn!("journal record {key} does not follow the queue before it; quarantined");
            let reason = format!("journal record {key} out of sequence");
            self.inner
                .quarantine
                .insert(self.quarantine_key()?, quarantine_record(&reason, &value))
                .map_err(|e| self.error(e))?;
            tree.remove(key.to_be_bytes()).map_err(|e| self.error(e))?;
        }
        if !misplaced.is_empty() {
            self.flush_db()?;
        }
        Ok(())
    }

    /// Moves the queue of an earlier version (tree `uplink`, one message per key) behind what
    /// is queued here, flushes, and drops the old tree. After a downgrade and a new upgrade its
    /// messages are the newest, so behind is their place; a crash in the middle only duplicates.
    fn migrate_legacy_queue(&self) -> Result<()> {
        let has_legacy = self
            .inner
            .db
            .tree_names()
            .iter()
            .any(|n| &**n == LEGACY_QUEUE_TREE.as_bytes());
        if !has_legacy {
            return Ok(());
        }
        let old = self.tree(LEGACY_QUEUE_TREE)?;
        let mut moved = 0;
        for item in old.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            match record::split(&value) {
                Ok(parts) => {
                    for part in parts {
                        self.append_encoded(part)?;
                        moved += 1;
                    }
                }
                Err(detail) => {
                    let reason = format!(
                        "unreadable entry {} of an earlier version's queue: {detail}",
                        decode_key(&key)
                    );
                    self.inner
                        .quarantine
                        .insert(self.quarantine_key()?, quarantine_record(&reason, &value))
                        .map_err(|e| self.error(e))?;
                }
            }
        }
        self.commit()?;
        self.flush_db()?;
        self.inner
            .db
            .drop_tree(LEGACY_QUEUE_TREE)
            .map_err(|e| self.error(e))?;
        if moved > 0 {
            log::info!(
                "moved {moved} messages queued by an earlier awslink into this version's journal"
            );
        }
        Ok(())
    }

    /// Sequence number of the newest entry appended (0 when none was).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner.live).next_seq.saturating_sub(1)
    }

    /// True while the queue is below `fraction` of both limits.
    pub fn has_room(&self, fraction: f64) -> bool {
        self.live_has_room(&lock(&self.inner.live), fraction)
    }

    fn live_has_room(&self, live: &Live, fraction: f64) -> bool {
        let limits = self.inner.limits;
        (live.sizes.len() as f64) < limits.max_messages as f64 * fraction
            && (live.bytes as f64) < limits.max_bytes as f64 * fraction
    }

    /// Bytes available to this process on the buffer's filesystem (`u64::MAX` if unknown).
    /// Asked at most every [`FREE_SPACE_REFRESH_MS`] (a `statfs` per message cost ~4% of the CPU
    /// in the benchmark); in between, the bytes appended since are subtracted from the last answer.
    pub fn free_bytes(&self) -> u64 {
        let now = crate::clock::unix_ms();
        let checked = self.inner.free_checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(checked) < FREE_SPACE_REFRESH_MS {
            let since = self.inner.appended_since_check.load(Ordering::Relaxed);
            return self
                .inner
                .free_cached
                .load(Ordering::Relaxed)
                .saturating_sub(since);
        }
        let free = fs2::available_space(&self.inner.path).unwrap_or(u64::MAX);
        self.inner.free_cached.store(free, Ordering::Relaxed);
        self.inner.appended_since_check.store(0, Ordering::Relaxed);
        self.inner.free_checked_ms.store(now, Ordering::Relaxed);
        free
    }

    /// True when the filesystem has `factor` × `min_free_bytes` available (resume threshold).
    pub fn disk_ok(&self, factor: f64) -> bool {
        self.free_bytes() as f64 >= self.inner.min_free_bytes as f64 * factor
    }

    /// Applies the full policy so that one more entry of `len` bytes fits, moving the watermark
    /// over the oldest entries (`DropOldest`); returns how many it dropped. An entry larger than
    /// the byte limit on its own still goes into an empty queue.
    fn make_room(&self, live: &mut Live, len: u64) -> u64 {
        let limits = self.inner.limits;
        let mut dropped = 0;
        loop {
            let messages = live.sizes.len() as u64;
            // A queue at its limit under RejectNew still takes what was already received.
            let fits = messages < limits.max_messages
                && live.bytes.saturating_add(len) <= limits.max_bytes;
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
        self.inner.dropped.fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// The drain reports that every entry below `seq` is delivered or quarantined: they leave
    /// the queue, the watermark is stored, and generations wholly below it are dropped.
    /// A `seq` at or below the current watermark changes nothing (a late PUBACK after
    /// `dropOldest` moved past it), except that a store that failed before is tried again.
    pub fn delivered_below(&self, seq: u64) -> Result<()> {
        {
            let mut live = lock(&self.inner.live);
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
    fn drop_finished_generations(&self) -> Result<()> {
        let watermark = lock(&self.inner.live).persisted;
        // The generation holding the watermark is the newest one starting at or below it;
        // everything older is finished. Checked under the read lock first: this runs after
        // every burst of PUBACKs, and a write lock would hold up the intake's inserts.
        let holding = |trees: &BTreeMap<u64, sled::Tree>| {
            let mut at_or_below = trees.range(..=watermark).rev();
            let holding = at_or_below.next().map(|(start, _)| *start);
            at_or_below.next().and(holding)
        };
        if holding(&read(&self.inner.generations).trees).is_none() {
            return Ok(());
        }
        let finished = {
            let mut generations = write(&self.inner.generations);
            match holding(&generations.trees) {
                Some(start) => {
                    let rest = generations.trees.split_off(&start);
                    std::mem::replace(&mut generations.trees, rest)
                }
                None => BTreeMap::new(),
            }
        };
        for tree in finished.into_values() {
            if let Err(returned) = lock(&self.inner.to_drop).send(tree) {
                // The thread is gone (it only ends with the journal): drop it here.
                let tree = returned.0;
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
        !self.inner.unannounced.swap(true, Ordering::AcqRel)
    }

    /// The drain calls this before reading: later appends announce themselves again.
    pub fn take_announcement(&self) {
        self.inner.unannounced.store(false, Ordering::Release);
    }

    /// Entries removed by `dropOldest` since the journal was opened.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The first committed entry with sequence number ≥ `from` that is not behind the watermark.
    pub fn first_from(&self, from: u64) -> Result<Option<(u64, CloudMessage)>> {
        match self.entries_from(from, 1)?.into_iter().next() {
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
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, std::result::Result<CloudMessage, String>)>> {
        let from = from.max(lock(&self.inner.live).watermark);
        let mut out = Vec::with_capacity(max.min(256));
        // Held while reading, so no generation is dropped under the scan.
        let generations = read(&self.inner.generations);
        let first_generation = generations
            .trees
            .range(..=from)
            .next_back()
            .map_or(0, |(start, _)| *start);
        for tree in generations.trees.range(first_generation..).map(|(_, t)| t) {
            // The record holding `from` may start before it.
            let start = match tree.range(..=from.to_be_bytes()).next_back() {
                Some(item) => decode_key(&item.map_err(|e| self.error(e))?.0),
                None => from,
            };
            for item in tree.range(start.to_be_bytes()..) {
                let (key, value) = item.map_err(|e| self.error(e))?;
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

    /// Copies entry `seq` to the quarantine tree with `reason` (as stored, also when it cannot
    /// be decoded); it leaves the queue when the drain moves the watermark past it. A missing
    /// entry is not an error.
    pub fn quarantine_entry(&self, seq: u64, reason: &str) -> Result<()> {
        let Some(raw) = self.raw_entry(seq)? else {
            return Ok(());
        };
        self.inner
            .quarantine
            .insert(self.quarantine_key()?, quarantine_record(reason, &raw))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The stored bytes of entry `seq`: its part of a record, or the whole value when the
    /// record that starts at `seq` cannot be split.
    fn raw_entry(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let generations = read(&self.inner.generations);
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

    /// Stores a message that was refused at ingress in the quarantine tree.
    pub fn quarantine_new(&self, msg: &CloudMessage, reason: &str) -> Result<()> {
        self.inner
            .quarantine
            .insert(
                self.quarantine_key()?,
                quarantine_record(reason, &encode(msg)),
            )
            .map_err(|e| self.error(e))?;
        if self.inner.durability == Durability::Fsync {
            self.flush_db()?;
        }
        Ok(())
    }

    /// Every quarantined message, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let mut out = Vec::new();
        for item in self.inner.quarantine.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            let seq = decode_key(&key);
            let bad = |detail: String| JournalError::BadEntry { seq, detail };
            let reason_len = *value.first().ok_or_else(|| bad("empty record".into()))? as usize;
            let reason = value
                .get(1..1 + reason_len)
                .ok_or_else(|| bad("short record".into()))?;
            let mut reason = String::from_utf8_lossy(reason).into_owned();
            let stored = &value[1 + reason_len..];
            let msg = decode(stored).unwrap_or_else(|detail| {
                // Kept as stored (an entry the drain could not read): listed, never lost.
                reason.push_str(&format!(" ({detail})"));
                CloudMessage {
                    topic: "(unreadable)".into(),
                    payload: stored.to_vec(),
                    qos: 0,
                    enqueued_ms: 0,
                }
            });
            out.push(Quarantined { reason, msg });
        }
        Ok(out)
    }

    /// Deletes every quarantined message; returns how many there were.
    pub fn purge_quarantine(&self) -> Result<usize> {
        let n = self.inner.quarantine.len();
        self.inner.quarantine.clear().map_err(|e| self.error(e))?;
        self.flush()?;
        Ok(n)
    }

    /// Number of cloud messages stored for the local broker.
    pub fn downlink_len(&self) -> usize {
        self.inner.downlink.len()
    }

    /// Number of messages waiting for delivery.
    pub fn queued(&self) -> u64 {
        lock(&self.inner.live).sizes.len() as u64
    }

    /// Encoded bytes of the messages waiting for delivery.
    pub fn queued_bytes(&self) -> u64 {
        lock(&self.inner.live).bytes
    }

    /// Enqueue time (unix ms) of the oldest waiting message.
    pub fn oldest_enqueued_ms(&self) -> Result<Option<u64>> {
        Ok(self.first_from(0)?.map(|(_, msg)| msg.enqueued_ms))
    }

    /// Writes everything appended so far to disk.
    pub fn flush(&self) -> Result<()> {
        self.write_staged()?;
        self.flush_db()
    }

    fn flush_db(&self) -> Result<()> {
        self.inner.db.flush().map(|_| ()).map_err(|e| self.error(e))
    }

    /// Stores a message from the cloud until the local broker acknowledged it (flushed before
    /// the cloud's PUBACK in `fsync` mode). Returns its key.
    pub fn append_downlink(&self, msg: &CloudMessage) -> Result<u64> {
        let seq = self.inner.db.generate_id().map_err(|e| self.error(e))?;
        self.inner
            .downlink
            .insert(seq.to_be_bytes(), encode(msg))
            .map_err(|e| self.error(e))?;
        if self.inner.durability == Durability::Fsync {
            self.flush_db()?;
        }
        Ok(seq)
    }

    /// Forgets a downlink message the local broker acknowledged.
    pub fn remove_downlink(&self, seq: u64) -> Result<()> {
        self.inner
            .downlink
            .remove(seq.to_be_bytes())
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Every stored downlink message, oldest first (unreadable ones are skipped and removed).
    pub fn downlink_entries(&self) -> Result<Vec<(u64, CloudMessage)>> {
        let mut out = Vec::new();
        for item in self.inner.downlink.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            let seq = decode_key(&key);
            match decode(&value) {
                Ok(msg) => out.push((seq, msg)),
                Err(_) => self.remove_downlink(seq)?,
            }
        }
        Ok(out)
    }

    /// Another named tree in the same database (e.g. the shadow mapper's reported cache).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.inner.db.open_tree(name).map_err(|e| self.error(e))
    }

    /// The buffer directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn quarantine_key(&self) -> Result<[u8; 8]> {
        let id = self.inner.db.generate_id().map_err(|e| self.error(e))?;
        Ok(id.to_be_bytes())
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.inner.path, e)
    }
}

fn quarantine_record(reason: &str, encoded: &[u8]) -> Vec<u8> {
    let mut reason = reason.as_bytes();
    if reason.len() > 255 {
        reason = &reason[..255];
    }
    let mut record = Vec::with_capacity(1 + reason.len() + encoded.len());
    record.push(reason.len() as u8);
    record.extend_from_slice(reason);
    record.extend_from_slice(encoded);
    record
}

/// Errors while opening: anything that is not the lock or a plain I/O refusal means sled could
/// not make sense of the files.
fn open_failure(path: &Path, e: sled::Error) -> JournalError {
    match open_error(path, e) {
        JournalError::Io { path, source }
            if !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::AlreadyExists
            ) && source.raw_os_error().is_none() =>
        {
            JournalError::Corrupt {
                path,
                detail: source.to_string(),
            }
        }
        JournalError::Other { path, detail } => JournalError::Corrupt { path, detail },
        other => other,
    }
}

fn open_error(path: &Path, e: sled::Error) -> JournalError {
    let path = path.to_path_buf();
    match e {
        sled::Error::Io(source) => {
            let text = source.to_string();
            if text.contains("lock") {
                JournalError::Locked { path }
            } else {
                JournalError::Io { path, source }
            }
        }
        sled::Error::Corruption { .. } => JournalError::Corrupt {
            path,
            detail: e.to_string(),
        },
        other => JournalError::Other {
            path,
            detail: other.to_string(),
        },
    }
}

fn decode_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the thread that drops delivered generations; it ends when the journal is dropped.
fn start_dropper(db: sled::Db) -> std::io::Result<std::sync::mpsc::Sender<sled::Tree>> {
    let (tx, rx) = std::sync::mpsc::channel::<sled::Tree>();
    std::thread::Builder::new()
        .name("awslink-journal-gc".into())
        .spawn(move || {
            for tree in rx {
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
    Ok(tx)
}

/// Reads the stored watermark and every generation: the size of each message at or above the
/// watermark, and where appending goes on. A queue that starts above the stored watermark
/// starts the watermark there. A record whose key cannot follow the ones before it (a gap of
/// more than [`MAX_GAP`] sequence numbers, or a key near the end of the number space) comes
/// back in `misplaced` instead of being counted: it is quarantined, so that no stored key lies
/// beyond the next sequence number handed out.
fn recover(db: &sled::Db, meta: &sled::Tree) -> sled::Result<Recovered> {
    let mut watermark = match meta.get(WATERMARK_KEY)? {
        Some(v) if v.len() == 8 => decode_key(&v),
        _ => 0,
    };
    let persisted = watermark;
    let mut trees = BTreeMap::new();
    for name in db.tree_names() {
        let start = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(GENERATION_PREFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(start) = start {
            trees.insert(start, db.open_tree(&name)?);
        }
    }
    let last_start = trees.keys().next_back().copied();
    let mut next_seq = watermark;
    let mut sizes = VecDeque::new();
    let mut bytes = 0;
    let mut last_generation_bytes = 0;
    let mut misplaced = Vec::new();
    for (start, tree) in &trees {
        for item in tree.iter() {
            let (key, value) = item?;
            let first = decode_key(&key);
            let lens: Vec<u64> = match record::split(&value) {
                Ok(parts) => parts.iter().map(|p| p.len() as u64).collect(),
                // Counted as one entry; the drain quarantines it.
                Err(_) => vec![value.len() as u64],
            };
            let end = first.checked_add(lens.len() as u64);
            let plausible = end.is_some_and(|end| end <= MAX_SEQ)
                && (sizes.is_empty() || first <= next_seq.saturating_add(MAX_GAP));
            if !plausible {
                misplaced.push((*start, first));
                continue;
            }
            if Some(*start) == last_start {
                last_generation_bytes += value.len() as u64;
            }
            for (seq, len) in (first..).zip(lens) {
                if seq < next_seq {
                    continue;
                }
                if sizes.is_empty() {
                    watermark = seq;
                    next_seq = seq;
                }
                while next_seq < seq {
                    sizes.push_back(0);
                    next_seq += 1;
                }
                sizes.push_back(len.min(u64::from(u32::MAX)) as u32);
                bytes += len;
                next_seq = seq + 1;
            }
        }
    }
    Ok(Recovered {
        live: Live {
            watermark,
            persisted,
            next_seq,
            sizes,
            bytes,
        },
        generations: Generations { trees },
        last_generation_bytes,
        misplaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::record::test_message as msg;

    fn config(dir: &Path) -> JournalConfig {
        JournalConfig {
            path: dir.join("j"),
            cache_bytes: 1 << 20,
            durability: Durability::Fsync,
            limits: Limits::UNLIMITED,
            min_free_bytes: 0,
        }
    }

    /// sled releases its file lock when its background threads let go of the database, shortly
    /// after the last handle is dropped: poll for it (within this process only).
    fn reopen(cfg: &JournalConfig) -> Journal {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Journal::open(cfg) {
                Ok(j) => return j,
                Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
    }

    fn generation_trees(journal: &Journal) -> usize {
        journal
            .inner
            .db
            .tree_names()
            .iter()
            .filter(|n| n.starts_with(GENERATION_PREFIX.as_bytes()))
            .count()
    }

    /// Generations are dropped on the journal's own thread: poll until at most `n` are left.
    fn wait_for_generations(journal: &Journal, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while generation_trees(journal) > n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} generations left, wanted at most {n}",
                generation_trees(journal)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn all_entries(journal: &Journal) -> Vec<(u64, CloudMessage)> {
        journal
            .entries_from(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(seq, m)| (seq, m.unwrap()))
            .collect()
    }

    /// Random append / commit / deliver / reopen sequences against a VecDeque model.
    #[test]
    fn matches_a_fifo_model_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut journal = Journal::open(&cfg).unwrap();
        let mut model: VecDeque<(u64, CloudMessage)> = VecDeque::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut counter = 0;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 100 {
                0..=59 => {
                    // A burst, as the intake commits it.
                    for _ in 0..=(state >> 8) % 20 {
                        counter += 1;
                        let seq = journal.append(&msg(counter)).unwrap().seq;
                        if let Some((last, _)) = model.back() {
                            assert!(seq > *last, "keys must increase");
                        }
                        model.push_back((seq, msg(counter)));
                    }
                    journal.commit().unwrap();
                }
                60..=97 => {
                    let n = ((state >> 8) % 25) as usize;
                    let delivered: Vec<_> = model.drain(..n.min(model.len())).collect();
                    if let Some((last, _)) = delivered.last() {
                        journal.delivered_below(last + 1).unwrap();
                    }
                }
                _ => {
                    drop(journal);
                    journal = reopen(&cfg);
                }
            }
            assert_eq!(journal.queued(), model.len() as u64);
            assert_eq!(journal.first_from(0).unwrap(), model.front().cloned());
        }
        assert!(counter > GENERATION_MESSAGES * 2, "spans generations");
        wait_for_generations(&journal, 2);
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(all_entries(&journal), Vec::from(model.clone()));
        if let Some((seq, _)) = model.get(model.len() / 2) {
            let from_middle = journal.entries_from(*seq, 3).unwrap();
            let expected: Vec<u64> = model
                .iter()
                .map(|(s, _)| *s)
                .skip(model.len() / 2)
                .take(3)
                .collect();
            assert_eq!(
                from_middle.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                expected
            );
        }
    }

    #[test]
    fn appends_are_read_only_after_commit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let journal = Journal::open(&cfg).unwrap();
        for n in 0..5 {
            journal.append(&msg(n)).unwrap();
        }
        assert_eq!(journal.queued(), 5, "counted from the append");
        assert!(
            journal.first_from(0).unwrap().is_none(),
            "not written before the commit"
        );
        journal.commit().unwrap();
        let entries = all_entries(&journal);
        assert_eq!(
            entries.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            (0..5).map(msg).collect::<Vec<_>>()
        );
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(all_entries(&journal), entries);
        assert_eq!(journal.last_seq(), entries[4].0);
    }

    #[test]
    fn the_watermark_survives_a_reopen_so_nothing_delivered_is_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let journal = Journal::open(&cfg).unwrap();
        let seqs: Vec<u64> = (0..10)
            .map(|n| journal.append(&msg(n)).unwrap().seq)
            .collect();
        journal.commit().unwrap();
        journal.delivered_below(seqs[7]).unwrap();
        journal.delivered_below(seqs[3]).unwrap(); // a late acknowledgement changes nothing
        assert_eq!(journal.queued(), 3);
        journal.flush().unwrap();
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(journal.queued(), 3);
        assert_eq!(
            all_entries(&journal),
            (7..10)
                .map(|n| (seqs[n as usize], msg(n)))
                .collect::<Vec<_>>()
        );
        let next = journal.append(&msg(10)).unwrap().seq;
        assert!(next > seqs[9], "sequence numbers are never reused");
    }

    #[test]
    fn delivered_generations_are_dropped_and_their_bytes_leave_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&config(dir.path())).unwrap();
        let mut last = 0;
        for n in 0..(GENERATION_MESSAGES * 3) {
            last = journal.append(&msg(n)).unwrap().seq;
            if n % 50 == 49 {
                journal.commit().unwrap();
            }
        }
        journal.commit().unwrap();
        assert!(
            generation_trees(&journal) >= 3,
            "{}",
            generation_trees(&journal)
        );
        journal.delivered_below(last).unwrap();
        wait_for_generations(&journal, 1); // only the one still being written
        assert_eq!(journal.queued(), 1);
        assert_eq!(journal.first_from(0).unwrap().map(|(s, _)| s), Some(last));
        assert_eq!(
            journal.queued_bytes(),
            encode(&msg(GENERATION_MESSAGES * 3 - 1)).len() as u64
        );
    }

    fn legacy_queue(cfg: &JournalConfig, keys: &[u64]) {
        // A journal dropped just before lets go of the lock when its threads have ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match sled::open(&cfg.path) {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("open {}: {e}", cfg.path.display()),
            }
        };
        let old = db.open_tree(LEGACY_QUEUE_TREE).unwrap();
        for &n in keys {
            old.insert(n.to_be_bytes(), encode(&msg(n))).unwrap();
        }
        db.flush().unwrap();
    }

    fn tree_exists(journal: &Journal, name: &str) -> bool {
        journal
            .inner
            .db
            .tree_names()
            .iter()
            .any(|n| &**n == name.as_bytes())
    }

    #[test]
    fn a_queue_left_by_an_earlier_version_is_moved_and_drained() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        legacy_queue(&cfg, &[4, 5, 7]);
        let journal = reopen(&cfg);
        assert!(
            !tree_exists(&journal, LEGACY_QUEUE_TREE),
            "old tree dropped"
        );
        let entries = all_entries(&journal);
        assert_eq!(
            entries.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            vec![msg(4), msg(5), msg(7)]
        );
        assert_eq!(journal.queued(), 3);
        let seq = journal.append(&msg(8)).unwrap().seq;
        journal.commit().unwrap();
        assert_eq!(seq, entries[2].0 + 1, "new messages follow the moved ones");
        journal.delivered_below(seq + 1).unwrap();
        assert_eq!((journal.queued(), journal.queued_bytes()), (0, 0));
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(all_entries(&journal), vec![], "moved once, not again");
    }

    /// An older awslink, run after this one, writes its own tree from key 0 again: its
    /// messages are newer than what this version had queued, and below the stored watermark.
    #[test]
    fn messages_of_a_downgrade_are_sent_after_an_upgrade_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let journal = Journal::open(&cfg).unwrap();
        let seqs: Vec<u64> = (100..110)
            .map(|n| journal.append(&msg(n)).unwrap().seq)
            .collect();
        journal.commit().unwrap();
        journal.delivered_below(seqs[5]).unwrap();
        drop(journal);
        legacy_queue(&cfg, &[0, 1]);
        let journal = reopen(&cfg);
        let got: Vec<CloudMessage> = all_entries(&journal).into_iter().map(|(_, m)| m).collect();
        let mut expected: Vec<CloudMessage> = (105..110).map(msg).collect();
        expected.extend([msg(0), msg(1)]);
        assert_eq!(got, expected);
    }

    #[test]
    fn a_record_with_an_impossible_key_is_quarantined_at_open_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let journal = Journal::open(&cfg).unwrap();
        let first = journal.append(&msg(1)).unwrap().seq;
        journal.commit().unwrap();
        let generation = format!("{GENERATION_PREFIX}{first:020}");
        let tree = journal.inner.db.open_tree(&generation).unwrap();
        for bogus in [u64::MAX - 1, first + MAX_GAP + 10] {
            tree.insert(bogus.to_be_bytes(), encode(&msg(9))).unwrap();
        }
        drop(tree);
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(journal.queued(), 1);
        assert_eq!(all_entries(&journal), vec![(first, msg(1))]);
        let q = journal.quarantined().unwrap();
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(
            q.iter().all(|q| q.reason.contains("out of sequence")),
            "{q:?}"
        );
        let next = journal.append(&msg(2)).unwrap().seq;
        journal.commit().unwrap();
        assert_eq!(next, first + 1);
        assert_eq!(all_entries(&journal).len(), 2);
    }

    #[test]
    fn an_unreadable_entry_is_quarantined_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&config(dir.path())).unwrap();
        let seq = journal.append(&msg(1)).unwrap().seq;
        journal.commit().unwrap();
        let generation = format!("{GENERATION_PREFIX}{seq:020}");
        let garbage = vec![record::MESSAGE_VERSION, 0, 1];
        journal
            .inner
            .db
            .open_tree(generation)
            .unwrap()
            .insert(seq.to_be_bytes(), garbage.clone())
            .unwrap();
        let entries = journal.entries_from(0, 10).unwrap();
        assert!(
            matches!(&entries[..], [(s, Err(_))] if *s == seq),
            "{entries:?}"
        );
        journal
            .quarantine_entry(seq, "unreadable journal entry")
            .unwrap();
        journal.delivered_below(seq + 1).unwrap();
        let q = journal.quarantined().unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].msg.payload, garbage, "the stored bytes are kept");
        assert!(
            q[0].reason.starts_with("unreadable journal entry ("),
            "{}",
            q[0].reason
        );
    }

    #[test]
    fn drop_oldest_drops_whole_generations_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            limits: Limits {
                max_messages: 100,
                max_bytes: u64::MAX,
                when_full: WhenFull::DropOldest,
            },
            ..config(dir.path())
        };
        let journal = Journal::open(&cfg).unwrap();
        let total = GENERATION_MESSAGES * 3;
        for n in 0..total {
            journal.append(&msg(n)).unwrap();
            if n % 64 == 63 {
                journal.commit().unwrap();
            }
        }
        journal.commit().unwrap();
        assert_eq!(journal.queued(), 100);
        assert_eq!(journal.dropped(), total - 100);
        wait_for_generations(&journal, 2);
        let newest: Vec<CloudMessage> = ((total - 100)..total).map(msg).collect();
        let got: Vec<CloudMessage> = all_entries(&journal).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, newest);
    }

    #[test]
    fn quarantine_keeps_reason_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&config(dir.path())).unwrap();
        let seq = journal.append(&msg(1)).unwrap().seq;
        journal.commit().unwrap();
        journal.quarantine_entry(seq, "rejected by AWS").unwrap();
        journal.delivered_below(seq + 1).unwrap();
        journal
            .quarantine_new(&msg(2), "payload too large")
            .unwrap();
        assert_eq!(journal.queued(), 0);
        let q = journal.quarantined().unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(
            (q[0].reason.as_str(), &q[0].msg),
            ("rejected by AWS", &msg(1))
        );
        assert_eq!(
            (q[1].reason.as_str(), &q[1].msg),
            ("payload too large", &msg(2))
        );
    }

    #[test]
    fn downlink_entries_survive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let journal = Journal::open(&cfg).unwrap();
        let a = journal.append_downlink(&msg(1)).unwrap();
        let b = journal.append_downlink(&msg(2)).unwrap();
        assert!(b > a);
        drop(journal);
        let journal = reopen(&cfg);
        let entries = journal.downlink_entries().unwrap();
        assert_eq!(entries, vec![(a, msg(1)), (b, msg(2))]);
        journal.remove_downlink(a).unwrap();
        assert_eq!(journal.downlink_entries().unwrap(), vec![(b, msg(2))]);
        assert_eq!(
            journal.queued(),
            0,
            "downlink entries are not uplink queue entries"
        );
    }

    #[test]
    fn drop_oldest_keeps_the_newest_within_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_messages: 3,
            max_bytes: u64::MAX,
            when_full: WhenFull::DropOldest,
        };
        let cfg = JournalConfig {
            limits,
            ..config(dir.path())
        };
        let journal = Journal::open(&cfg).unwrap();
        let dropped: Vec<u64> = (1..=5)
            .map(|n| journal.append(&msg(n)).unwrap().dropped)
            .collect();
        journal.commit().unwrap();
        assert_eq!(dropped, [0, 0, 0, 1, 1]);
        assert_eq!(journal.queued(), 3);
        assert_eq!(journal.dropped(), 2);
        assert_eq!(journal.first_from(0).unwrap().unwrap().1, msg(3));
        journal.delivered_below(1).unwrap(); // the PUBACK of a dropped message
        assert_eq!(journal.queued(), 3);
        drop(journal);
        let journal = reopen(&cfg);
        assert_eq!(journal.queued(), 3, "the drops are stored");

        let one = encode(&msg(1)).len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_messages: 100,
            max_bytes: 2 * one + 1,
            when_full: WhenFull::DropOldest,
        };
        let journal = Journal::open(&JournalConfig {
            limits,
            ..config(dir.path())
        })
        .unwrap();
        for n in 1..=4 {
            journal.append(&msg(n)).unwrap();
        }
        assert_eq!(journal.queued(), 2);
        assert!(journal.queued_bytes() <= 2 * one + 1);
        let huge = CloudMessage {
            payload: vec![7; 1000],
            ..msg(9)
        };
        journal.append(&huge).unwrap();
        journal.commit().unwrap();
        assert_eq!(
            journal.queued(),
            1,
            "an oversize entry empties the queue and still goes in"
        );
        assert_eq!(all_entries(&journal).len(), 1);
    }

    #[test]
    fn reject_new_keeps_everything_and_says_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_messages: 2,
            max_bytes: u64::MAX,
            when_full: WhenFull::RejectNew,
        };
        let journal = Journal::open(&JournalConfig {
            limits,
            ..config(dir.path())
        })
        .unwrap();
        let first = journal.append(&msg(1)).unwrap();
        assert!(!first.full);
        assert!(
            journal.append(&msg(2)).unwrap().full,
            "at the limit: pause intake"
        );
        let over = journal.append(&msg(3)).unwrap();
        assert!(over.full && over.dropped == 0, "kept, never dropped");
        assert_eq!(journal.queued(), 3);
        journal.commit().unwrap();
        journal.delivered_below(over.seq).unwrap();
        assert!(journal.has_room(1.0), "1 of 2 queued");
        assert!(journal.append(&msg(4)).unwrap().full, "2 of 2 queued again");
        assert_eq!(journal.dropped(), 0);
    }

    #[test]
    fn second_open_of_the_same_directory_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Journal::open(&config(dir.path())).unwrap();
        let err = Journal::open(&config(dir.path()))
            .err()
            .expect("second open must fail");
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[test]
    fn unwritable_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let cfg = JournalConfig {
            path: file.join("sub"),
            ..config(dir.path())
        };
        let err = Journal::open(&cfg).err().expect("must fail");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}

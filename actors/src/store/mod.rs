//! The one sled database of awslink: opens it (configuration, cache, the directory lock, the
//! errors) and hands out the typed stores kept in it. No raw sled tree leaves this module.
//!
//! Its main store is the uplink queue ([`Journal`]), the durable queue between "acknowledged to
//! Mosquitto" and "acknowledged by AWS", one FIFO per [`Lane`](crate::lanes::Lane). Invariant:
//! an entry is appended and written by [`Journal::commit`] (one flush for every lane in `fsync`
//! mode) before the local PUBACK, and leaves its lane only when the drain reports that
//! everything below it in that lane was delivered or quarantined ([`Journal::delivered_below`]).
//!
//! Layout of the queue, chosen so that a message costs a fraction of a sled operation instead
//! of two (an insert and a remove, ~25% of awslink's CPU in the benchmark profile):
//! - Each lane has its own consecutive sequence numbers. A committed burst is stored as one
//!   record per up to [`record::RECORD_MAX_MESSAGES`] messages of a lane, under the key of its
//!   first (big-endian `u64`, so sled's key order is the publish order; see [`record`]).
//! - Records live in the lane's generation trees `uplink-<lane>.<first seq>`, each closed after
//!   [`GENERATION_MESSAGES`] messages or [`GENERATION_BYTES`] bytes. Delivered messages are not
//!   removed one by one: a durable watermark per lane ("everything below N is done") moves
//!   forward, and a generation that lies wholly below it is dropped with one `drop_tree`
//!   ([`queue`]).
//! - The limits count all lanes together; `dropOldest` takes room from telemetry first, then
//!   events, then control; under `rejectNew` control has a reserve ([`CONTROL_RESERVE`]).
//! - The queues of earlier versions (the one FIFO in generations `uplink.<seq>` with the
//!   watermark `delivered_below`, and the older tree `uplink`) are moved into the lanes by cloud
//!   topic when the journal opens (appended behind what is queued, then flushed, then dropped),
//!   so a buffer left by an older awslink is still drained — also after a downgrade and a new
//!   upgrade (`legacy.rs`).
//! - A record whose key cannot be part of its lane's queue is moved to the quarantine at open;
//!   so is every message the drain or the intake gives up on ([`quarantine`]).
//!
//! The other stores: commands from the cloud kept until the local broker has them
//! ([`DownlinkStore`]) and the shadow mapper's last reported state per shadow ([`ShadowCache`]).
//! [`inspect`] reads everything without changing anything.

mod damage;
pub mod downlink;
mod flusher;
mod gc;
mod inspect;
mod layout;
mod legacy;
pub mod quarantine;
pub mod queue;
mod read;
pub mod record;
mod recovery;
pub mod shadow_cache;
mod space;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{lock, read, write};

use log::warn;

pub use downlink::DownlinkStore;
pub use inspect::{inspect, Inspection, LaneInspection};
pub use quarantine::Quarantined;
pub use queue::{Appended, CONTROL_RESERVE, GENERATION_BYTES, GENERATION_MESSAGES};
pub use shadow_cache::ShadowCache;
pub use space::FREE_SPACE_REFRESH_MS;

use flusher::Flusher;
use quarantine::QuarantineStore;
use queue::Queue;

const QUARANTINE_TREE: &str = "quarantine";
const DOWNLINK_TREE: &str = "downlink";
const SHADOW_CACHE_TREE: &str = "shadow-reported";

/// When an appended entry reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed by [`Journal::commit`] (survives power loss).
    Fsync,
    /// Flushed about `flush_every_ms` after it was written (plus the flushes under way): by
    /// [`Journal::commit`] when the last flush is that old and was quick, else by the journal's
    /// flusher thread (`flusher.rs`).
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
    /// Keep every entry; [`Appended::full`] tells the caller to hold new messages.
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
    /// Most messages the quarantine keeps (the oldest beyond it are removed and counted).
    pub quarantine_max_messages: u64,
    /// What to do when the journal finds fewer messages than it had committed.
    pub on_damage: OnDamage,
}

#[cfg(test)]
impl JournalConfig {
    /// What the tests open: `fsync` mode, no limits, a 1 MiB cache, the default quarantine bound,
    /// damage refused.
    pub(crate) fn for_tests(path: impl Into<PathBuf>) -> Self {
        JournalConfig {
            path: path.into(),
            cache_bytes: 1 << 20,
            durability: Durability::Fsync,
            limits: Limits::UNLIMITED,
            min_free_bytes: 0,
            quarantine_max_messages: QUARANTINE_MAX_MESSAGES,
            on_damage: OnDamage::Refuse,
        }
    }
}

/// What [`Journal::open`] does with a journal that lost committed messages (damaged files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse to open ([`JournalError::Damaged`]).
    Refuse,
    /// Open with the messages that survived, after one ERROR line saying how many were lost.
    StartWithSurvivors,
}

/// Default of `buffer.quarantineMaxMessages`.
pub const QUARANTINE_MAX_MESSAGES: u64 = 10_000;

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
    #[error("buffer directory {path} is corrupt ({detail}); `awslink buffer inspect` shows what can still be read; move it aside to start with an empty buffer")]
    Corrupt {
        /// The buffer directory.
        path: PathBuf,
        /// sled's description.
        detail: String,
    },
    /// The journal holds fewer messages than it had committed (its files were damaged).
    #[error("buffer directory {path} is damaged: {detail}; `awslink buffer inspect` shows what survived; move the directory aside to start with an empty buffer, or set buffer.onDamage to \"startWithSurvivors\" to start with what survived")]
    Damaged {
        /// The buffer directory.
        path: PathBuf,
        /// What is missing.
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

/// A handle to the journal; cheap to clone and safe to use from any thread (the intake's, paho's
/// callbacks, the actors'). Its queue methods are in [`queue`], the quarantine's in
/// [`quarantine`].
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    durability: Durability,
    /// `batched` mode's flush schedule and thread (`None` in `fsync` mode).
    flusher: Option<Flusher>,
    queue: Queue,
    quarantine: QuarantineStore,
    downlink: DownlinkStore,
}

impl Journal {
    /// Opens (or creates) the journal at `config.path`: recovers the lanes, checks the marks,
    /// quarantines records that cannot be part of a lane, drops delivered generations and moves
    /// the queues of earlier versions into the lanes (see the module docs).
    pub fn open(config: &JournalConfig) -> Result<Journal> {
        let path = config.path.clone();
        let db = open_db(&path, config.cache_bytes)?;
        let flusher = match config.durability {
            Durability::Fsync => None,
            Durability::Batched { flush_every_ms } => Some(
                Flusher::start(db.clone(), Duration::from_millis(flush_every_ms.max(1))).map_err(
                    |source| JournalError::Io {
                        path: path.clone(),
                        source,
                    },
                )?,
            ),
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&path, e));
        let quarantine = QuarantineStore::new(
            &path,
            &db,
            tree(QUARANTINE_TREE)?,
            config.quarantine_max_messages,
        )?;
        let downlink = DownlinkStore::new(&path, &db, tree(DOWNLINK_TREE)?, config.durability);
        let (queue, misplaced) = Queue::open(&path, &db, config)?;
        let on_damage = config.on_damage;
        let journal = Journal {
            inner: Arc::new(Inner {
                path,
                db,
                durability: config.durability,
                flusher,
                queue,
                quarantine,
                downlink,
            }),
        };
        journal.check_damage(on_damage)?;
        journal.quarantine_misplaced(&misplaced)?;
        journal.drop_finished_generations_all()?;
        if let Err(e) = journal.migrate_earlier_queues() {
            // Left in place and tried again at the next start; nothing is lost meanwhile.
            warn!("cannot move the queue of an earlier awslink version into this journal yet: {e}");
        }
        Ok(journal)
    }

    /// The commands from the cloud kept in this database until the local broker has them.
    pub fn downlink(&self) -> DownlinkStore {
        self.inner.downlink.clone()
    }

    /// The shadow mapper's reported-state cache in this database.
    pub fn shadow_cache(&self) -> Result<ShadowCache> {
        let tree = self
            .inner
            .db
            .open_tree(SHADOW_CACHE_TREE)
            .map_err(|e| self.error(e))?;
        Ok(ShadowCache::new(&self.inner.path, tree))
    }

    /// Writes everything appended so far to disk.
    pub fn flush(&self) -> Result<()> {
        self.write_staged()?;
        self.flush_db()?;
        self.mark_flushed()
    }

    fn flush_db(&self) -> Result<()> {
        self.inner.db.flush().map(|_| ()).map_err(|e| self.error(e))
    }

    /// The buffer directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.inner.path, e)
    }
}

/// Opens the sled database at `path`, with sled's periodic flusher off: `fsync` mode flushes
/// in [`Journal::commit`], `batched` mode through `flusher.rs`.
fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .map_err(|e| open_failure(path, e))
}

/// Errors while opening: anything that is not the lock or a plain I/O refusal means sled could
/// not make sense of the files.
fn open_failure(path: &Path, e: sled::Error) -> JournalError {
    if is_locked(&e) {
        return JournalError::Locked {
            path: path.to_path_buf(),
        };
    }
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

/// Whether sled's open failed because another process holds the database lock: the vendored
/// sled keeps the lock call's error kind (`WouldBlock` from a contended `flock`).
fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock)
}

/// A sled error in the buffer directory `path`, as a [`JournalError`].
fn open_error(path: &Path, e: sled::Error) -> JournalError {
    let path = path.to_path_buf();
    match e {
        sled::Error::Io(source) => JournalError::Io { path, source },
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

/// The tree `name` of `db` if it exists (opening a missing tree would create it).
fn existing_tree(db: &sled::Db, name: &str) -> sled::Result<Option<sled::Tree>> {
    if db.tree_names().iter().any(|n| &**n == name.as_bytes()) {
        db.open_tree(name).map(Some)
    } else {
        Ok(None)
    }
}

/// The `u64` of a big-endian key (shorter keys are padded in front).
fn decode_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lanes_tests;

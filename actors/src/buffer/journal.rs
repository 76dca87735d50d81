//! The sled journal: the durable queue between "acknowledged to Mosquitto" and "acknowledged by AWS".
//!
//! Invariant: an entry is appended (and, in `fsync` mode, flushed by [`Journal::commit`]) before
//! the local PUBACK, and is removed only after AWS's PUBACK or when it is moved to the quarantine
//! tree. Keys are big-endian
//! `u64`s, so sled's key order is the publish order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::messages::CloudMessage;

const QUEUE_TREE: &str = "uplink";
const QUARANTINE_TREE: &str = "quarantine";
const DOWNLINK_TREE: &str = "downlink";
/// How long a free-space answer is reused.
pub const FREE_SPACE_REFRESH_MS: u64 = 100;
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8 + 2;

/// When an appended entry reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed before `append` returns (survives power loss).
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
    /// Key of the new entry.
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

struct Inner {
    path: PathBuf,
    db: sled::Db,
    queue: sled::Tree,
    quarantine: sled::Tree,
    downlink: sled::Tree,
    durability: Durability,
    limits: Limits,
    min_free_bytes: u64,
    /// Appends not yet announced to the drain (one notification covers a burst).
    unannounced: std::sync::atomic::AtomicBool,
    free_cached: AtomicU64,
    free_checked_ms: AtomicU64,
    appended_since_check: AtomicU64,
    dropped: AtomicU64,
    next_seq: AtomicU64,
    queued: AtomicU64,
    queued_bytes: AtomicU64,
}

/// One quarantined message with the reason it can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why it was quarantined.
    pub reason: String,
    /// The message (topic may be the local one when mapping failed).
    pub msg: CloudMessage,
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
        let queue = db.open_tree(QUEUE_TREE).map_err(|e| open_error(&path, e))?;
        let quarantine = db
            .open_tree(QUARANTINE_TREE)
            .map_err(|e| open_error(&path, e))?;
        let downlink = db
            .open_tree(DOWNLINK_TREE)
            .map_err(|e| open_error(&path, e))?;
        let mut next_seq = 0;
        let mut queued = 0;
        let mut queued_bytes = 0;
        for item in queue.iter() {
            let (key, value) = item.map_err(|e| open_error(&path, e))?;
            next_seq = decode_key(&key).saturating_add(1);
            queued += 1;
            queued_bytes += value.len() as u64;
        }
        Ok(Journal {
            inner: Arc::new(Inner {
                path,
                db,
                queue,
                quarantine,
                downlink,
                durability: config.durability,
                limits: config.limits,
                min_free_bytes: config.min_free_bytes,
                unannounced: std::sync::atomic::AtomicBool::new(false),
                free_cached: AtomicU64::new(0),
                free_checked_ms: AtomicU64::new(0),
                appended_since_check: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                next_seq: AtomicU64::new(next_seq),
                queued: AtomicU64::new(queued),
                queued_bytes: AtomicU64::new(queued_bytes),
            }),
        })
    }

    /// Appends a message (durable after the next [`Journal::commit`]). With `DropOldest` the
    /// oldest entries make room; with `RejectNew` the entry goes in and [`Appended::full`] tells
    /// the caller to pause its intake.
    pub fn append(&self, msg: &CloudMessage) -> Result<Appended> {
        let value = encode(msg);
        let len = value.len() as u64;
        let free = self.free_bytes();
        if free < self.inner.min_free_bytes / 2 {
            return Err(JournalError::DiskLow {
                path: self.inner.path.clone(),
                free,
            });
        }
        let dropped = self.make_room(len)?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::SeqCst);
        self.inner
            .queue
            .insert(seq.to_be_bytes(), value)
            .map_err(|e| self.error(e))?;
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        self.inner.queued_bytes.fetch_add(len, Ordering::Relaxed);
        // sled writes roughly 2.3x the entry; count that against the cached free space.
        self.inner
            .appended_since_check
            .fetch_add(len * 3, Ordering::Relaxed);
        let full = (self.inner.limits.when_full == WhenFull::RejectNew && !self.has_room(1.0))
            || free.saturating_sub(len) < self.inner.min_free_bytes;
        Ok(Appended { seq, dropped, full })
    }

    /// Makes every append so far durable in `fsync` mode (one flush for a whole burst); a no-op
    /// in `batched` mode, where sled flushes every `flush_every_ms`.
    pub fn commit(&self) -> Result<()> {
        if self.inner.durability == Durability::Fsync {
            self.flush()?;
        }
        Ok(())
    }

    /// Key of the newest entry appended (0 when none was).
    pub fn last_seq(&self) -> u64 {
        self.inner.next_seq.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// True while the queue is below `fraction` of both limits.
    pub fn has_room(&self, fraction: f64) -> bool {
        let limits = self.inner.limits;
        (self.queued() as f64) < limits.max_messages as f64 * fraction
            && (self.queued_bytes() as f64) < limits.max_bytes as f64 * fraction
    }

    /// Bytes available to this process on the buffer's filesystem (`u64::MAX` if unknown).
    /// Asked at most every [`FREE_SPACE_REFRESH_MS`] (a `statfs` per message cost ~4% of the CPU
    /// in the benchmark); in between, the bytes appended since are subtracted from the last answer.
    pub fn free_bytes(&self) -> u64 {
        let now = crate::metrics::unix_ms();
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

    /// Applies the full policy so that one more entry of `len` bytes fits. An entry larger than
    /// the byte limit on its own still goes into an empty queue.
    fn make_room(&self, len: u64) -> Result<u64> {
        let limits = self.inner.limits;
        let mut dropped = 0;
        loop {
            let (messages, bytes) = (self.queued(), self.queued_bytes());
            // A queue at its limit under RejectNew still takes what was already received.
            let fits =
                messages < limits.max_messages && bytes.saturating_add(len) <= limits.max_bytes;
            if fits || messages == 0 {
                return Ok(dropped);
            }
            match limits.when_full {
                WhenFull::RejectNew => return Ok(0),
                WhenFull::DropOldest => {
                    let Some((_, old)) = self.inner.queue.pop_min().map_err(|e| self.error(e))?
                    else {
                        return Ok(dropped);
                    };
                    self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                    self.inner
                        .queued_bytes
                        .fetch_sub(old.len() as u64, Ordering::Relaxed);
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    dropped += 1;
                }
            }
        }
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

    /// The first entry with key ≥ `from`, if any.
    pub fn first_from(&self, from: u64) -> Result<Option<(u64, CloudMessage)>> {
        let Some(item) = self.inner.queue.range(from.to_be_bytes()..).next() else {
            return Ok(None);
        };
        let (key, value) = item.map_err(|e| self.error(e))?;
        let seq = decode_key(&key);
        let msg = decode(&value).map_err(|detail| JournalError::BadEntry { seq, detail })?;
        Ok(Some((seq, msg)))
    }

    /// Up to `max` entries with key ≥ `from`, in key order, read with one range scan. An entry
    /// that cannot be decoded comes back as its key and what is wrong with it.
    pub fn entries_from(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, std::result::Result<CloudMessage, String>)>> {
        let mut out = Vec::with_capacity(max.min(256));
        for item in self.inner.queue.range(from.to_be_bytes()..).take(max) {
            let (key, value) = item.map_err(|e| self.error(e))?;
            out.push((decode_key(&key), decode(&value)));
        }
        Ok(out)
    }

    /// Removes a delivered entry. Removing a missing key is not an error (duplicate PUBACKs).
    pub fn remove(&self, seq: u64) -> Result<()> {
        if let Some(old) = self
            .inner
            .queue
            .remove(seq.to_be_bytes())
            .map_err(|e| self.error(e))?
        {
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
            self.inner
                .queued_bytes
                .fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Moves entry `seq` to the quarantine tree with `reason` (it will never be sent).
    pub fn quarantine_entry(&self, seq: u64, reason: &str) -> Result<()> {
        let key = seq.to_be_bytes();
        let Some(value) = self.inner.queue.get(key).map_err(|e| self.error(e))? else {
            return Ok(());
        };
        self.inner
            .quarantine
            .insert(self.quarantine_key()?, quarantine_record(reason, &value))
            .map_err(|e| self.error(e))?;
        self.remove(seq)
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
            self.flush()?;
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
            let msg = decode(&value[1 + reason_len..]).map_err(bad)?;
            out.push(Quarantined {
                reason: String::from_utf8_lossy(reason).into_owned(),
                msg,
            });
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
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Encoded bytes of the messages waiting for delivery.
    pub fn queued_bytes(&self) -> u64 {
        self.inner.queued_bytes.load(Ordering::Relaxed)
    }

    /// Enqueue time (unix ms) of the oldest waiting message.
    pub fn oldest_enqueued_ms(&self) -> Result<Option<u64>> {
        Ok(self.first_from(0)?.map(|(_, msg)| msg.enqueued_ms))
    }

    /// Writes everything appended so far to disk.
    pub fn flush(&self) -> Result<()> {
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
            self.flush()?;
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

/// Serializes a message: version, qos, enqueue time, topic length, topic, payload.
pub fn encode(msg: &CloudMessage) -> Vec<u8> {
    let topic = msg.topic.as_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + topic.len() + msg.payload.len());
    out.push(FORMAT_VERSION);
    out.push(msg.qos.clamp(0, 1) as u8);
    out.extend_from_slice(&msg.enqueued_ms.to_be_bytes());
    out.extend_from_slice(&(topic.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&topic[..topic.len().min(u16::MAX as usize)]);
    out.extend_from_slice(&msg.payload);
    out
}

/// Parses what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> std::result::Result<CloudMessage, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes is shorter than the header", bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(format!("unknown format version {}", bytes[0]));
    }
    let qos = i32::from(bytes[1]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&bytes[2..10]);
    let topic_len = u16::from_be_bytes([bytes[10], bytes[11]]) as usize;
    let topic_end = HEADER_LEN + topic_len;
    let topic = bytes
        .get(HEADER_LEN..topic_end)
        .ok_or("topic runs past the end")?;
    let topic = std::str::from_utf8(topic).map_err(|e| format!("topic is not UTF-8: {e}"))?;
    Ok(CloudMessage {
        topic: topic.to_string(),
        payload: bytes[topic_end..].to_vec(),
        qos,
        enqueued_ms: u64::from_be_bytes(time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn msg(n: u64) -> CloudMessage {
        CloudMessage {
            topic: format!("telemetry/t/d/{n}"),
            payload: n.to_string().into_bytes(),
            qos: (n % 2) as i32,
            enqueued_ms: 1_700_000_000_000 + n,
        }
    }

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

    #[test]
    fn encode_decode_round_trip() {
        for m in [
            msg(0),
            msg(7),
            CloudMessage {
                payload: vec![0, 255, 10],
                ..msg(3)
            },
        ] {
            assert_eq!(decode(&encode(&m)), Ok(m));
        }
        assert!(decode(&[1, 0]).is_err());
        assert!(decode(&[9; 20]).is_err());
        let mut short_topic = encode(&msg(1));
        short_topic[11] = 200;
        short_topic.truncate(30);
        assert!(decode(&short_topic).is_err());
    }

    /// Random append / deliver / reopen sequences against a VecDeque model.
    #[test]
    fn matches_a_fifo_model_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut journal = Journal::open(&cfg).unwrap();
        let mut model: VecDeque<(u64, CloudMessage)> = VecDeque::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut counter = 0;
        for _ in 0..600 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 10 {
                0..=5 => {
                    counter += 1;
                    let seq = journal.append(&msg(counter)).unwrap().seq;
                    if let Some((last, _)) = model.back() {
                        assert!(seq > *last, "keys must increase");
                    }
                    model.push_back((seq, msg(counter)));
                }
                6..=8 => {
                    if let Some((seq, _)) = model.pop_front() {
                        journal.remove(seq).unwrap();
                    }
                }
                _ => {
                    drop(journal);
                    journal = reopen(&cfg);
                }
            }
            assert_eq!(journal.queued(), model.len() as u64);
            let front = journal.first_from(0).unwrap();
            assert_eq!(front, model.front().cloned());
        }
        drop(journal);
        let journal = reopen(&cfg);
        let mut cursor = 0;
        for (seq, m) in &model {
            let (got_seq, got) = journal.first_from(cursor).unwrap().unwrap();
            assert_eq!((got_seq, &got), (*seq, m));
            cursor = got_seq + 1;
        }
        assert_eq!(journal.first_from(cursor).unwrap(), None);
    }

    #[test]
    fn quarantine_keeps_reason_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&config(dir.path())).unwrap();
        let seq = journal.append(&msg(1)).unwrap().seq;
        journal.quarantine_entry(seq, "rejected by AWS").unwrap();
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
        let journal = Journal::open(&JournalConfig {
            limits,
            ..config(dir.path())
        })
        .unwrap();
        let dropped: Vec<u64> = (1..=5)
            .map(|n| journal.append(&msg(n)).unwrap().dropped)
            .collect();
        assert_eq!(dropped, [0, 0, 0, 1, 1]);
        assert_eq!(journal.queued(), 3);
        assert_eq!(journal.dropped(), 2);
        assert_eq!(journal.first_from(0).unwrap().unwrap().1, msg(3));

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
        assert_eq!(
            journal.queued(),
            1,
            "an oversize entry empties the queue and still goes in"
        );
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
        journal.remove(first.seq).unwrap();
        journal.remove(over.seq).unwrap();
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

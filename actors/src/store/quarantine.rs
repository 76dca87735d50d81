//! The quarantine: messages that can never be delivered, each with the reason, kept until an
//! operator purges them with `awslink buffer purge --quarantine`. It keeps at most
//! `buffer.quarantineMaxMessages` (beyond that the oldest are removed and counted), its bytes
//! count against `buffer.maxBytes`, and nothing is quarantined below `buffer.minFreeBytes`.
//!
//! A record is one byte of reason length, the reason (at most 255 bytes) and the message as
//! stored in the queue (also when it cannot be decoded), under a key from sled's id generator.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;

use super::record::{decode, encode};
use super::{decode_key, open_error, Durability, Journal, JournalError, Result};
use crate::lanes::Lane;
use crate::model::CloudMessage;

/// One quarantined message with the reason it can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why it was quarantined.
    pub reason: String,
    /// The message (topic may be the local one when mapping failed).
    pub msg: CloudMessage,
}

/// The quarantine tree of the database, with its size.
pub(super) struct QuarantineStore {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    max_messages: u64,
    /// Records in the tree.
    count: AtomicU64,
    /// Bytes of the records in the tree.
    bytes: AtomicU64,
    /// Records removed to keep at most `max_messages` since the journal was opened.
    dropped: AtomicU64,
}

impl QuarantineStore {
    /// The quarantine kept in `tree` of `db` (the buffer directory `path`), at most
    /// `max_messages` records; reads the tree once to know its size.
    pub(super) fn new(
        path: &Path,
        db: &sled::Db,
        tree: sled::Tree,
        max_messages: u64,
    ) -> Result<Self> {
        let (mut count, mut bytes) = (0, 0);
        for item in tree.iter() {
            let (_, value) = item.map_err(|e| open_error(path, e))?;
            count += 1;
            bytes += value.len() as u64;
        }
        let store = QuarantineStore {
            path: path.to_path_buf(),
            db: db.clone(),
            tree,
            max_messages: max_messages.max(1),
            count: AtomicU64::new(count),
            bytes: AtomicU64::new(bytes),
            dropped: AtomicU64::new(0),
        };
        store.keep_limit()?;
        Ok(store)
    }

    /// Stores `encoded` (a message as the queue stores it) with `reason`; beyond
    /// `max_messages` the oldest records are removed.
    pub(super) fn put(&self, reason: &str, encoded: &[u8]) -> Result<()> {
        let key = self.db.generate_id().map_err(|e| self.error(e))?;
        let record = quarantine_record(reason, encoded);
        let len = record.len() as u64;
        let old = self
            .tree
            .insert(key.to_be_bytes(), record)
            .map_err(|e| self.error(e))?;
        if let Some(old) = old {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.keep_limit()
    }

    /// Removes the oldest records beyond `max_messages`, counting them.
    fn keep_limit(&self) -> Result<()> {
        let mut removed = 0;
        while self.count.load(Ordering::Relaxed) > self.max_messages {
            let Some((_, value)) = self.tree.pop_min().map_err(|e| self.error(e))? else {
                self.count.store(0, Ordering::Relaxed);
                self.bytes.store(0, Ordering::Relaxed);
                break;
            };
            self.count.fetch_sub(1, Ordering::Relaxed);
            let len = value.len() as u64;
            let _ = self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(len))
                });
            removed += 1;
        }
        if removed > 0 {
            self.dropped.fetch_add(removed, Ordering::Relaxed);
            warn!(
                "quarantine holds buffer.quarantineMaxMessages ({}) messages: removed the {removed} oldest",
                self.max_messages
            );
        }
        Ok(())
    }

    /// Bytes of the quarantined records.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Every quarantined message, oldest first.
    pub(super) fn list(&self) -> Result<Vec<Quarantined>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
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
                    batch: None,
                }
            });
            out.push(Quarantined { reason, msg });
        }
        Ok(out)
    }

    /// Deletes every quarantined message; returns how many there were.
    fn clear(&self) -> Result<usize> {
        let n = self.tree.len();
        self.tree.clear().map_err(|e| self.error(e))?;
        self.count.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        Ok(n)
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.path, e)
    }
}

impl Journal {
    /// Copies entry `seq` of `lane` to the quarantine tree with `reason` (as stored, also when it cannot
    /// be decoded); it leaves the queue when the drain moves the lane's watermark past it. A missing
    /// entry is not an error.
    /// Refused ([`JournalError::DiskLow`]) while the disk is below `buffer.minFreeBytes`.
    pub fn quarantine_entry(&self, lane: Lane, seq: u64, reason: &str) -> Result<()> {
        let Some(raw) = self.raw_entry(lane, seq)? else {
            return Ok(());
        };
        self.quarantine_room(raw.len())?;
        self.inner.quarantine.put(reason, &raw)
    }

    /// Stores a message that was refused at ingress in the quarantine tree; refused
    /// ([`JournalError::DiskLow`]) while the disk is below `buffer.minFreeBytes`.
    pub fn quarantine_new(&self, msg: &CloudMessage, reason: &str) -> Result<()> {
        let encoded = encode(msg);
        self.quarantine_room(encoded.len())?;
        self.inner.quarantine.put(reason, &encoded)?;
        if self.inner.durability == Durability::Fsync {
            self.flush_db()?;
        }
        Ok(())
    }

    /// `len` more quarantined bytes leave the journal the same floor as an append: half of
    /// `buffer.minFreeBytes`.
    fn quarantine_room(&self, len: usize) -> Result<()> {
        let (free, room) = self.free_and_room();
        let needed = (len as u64).saturating_mul(3);
        let floor = self.inner.queue.min_free_bytes / 2;
        if free < floor || room.saturating_sub(needed) < floor {
            return Err(JournalError::DiskLow {
                path: self.inner.path.clone(),
                free,
            });
        }
        self.inner.queue.space.appended(needed);
        Ok(())
    }

    /// Messages in the quarantine.
    pub fn quarantine_len(&self) -> u64 {
        self.inner.quarantine.count.load(Ordering::Relaxed)
    }

    /// Quarantined messages removed (oldest first) to keep at most
    /// `buffer.quarantineMaxMessages`, since the journal was opened.
    pub fn quarantine_dropped(&self) -> u64 {
        self.inner.quarantine.dropped.load(Ordering::Relaxed)
    }

    /// Every quarantined message, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        self.inner.quarantine.list()
    }

    /// Deletes every quarantined message; returns how many there were.
    pub fn purge_quarantine(&self) -> Result<usize> {
        let n = self.inner.quarantine.clear()?;
        self.flush()?;
        Ok(n)
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

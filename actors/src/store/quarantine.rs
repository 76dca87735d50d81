//! The quarantine: messages that can never be delivered, each with the reason, kept (never
//! lost) until an operator purges them with `awslink buffer purge --quarantine`.
//!
//! A record is one byte of reason length, the reason (at most 255 bytes) and the message as
//! stored in the queue (also when it cannot be decoded), under a key from sled's id generator.

use std::path::{Path, PathBuf};

use super::record::{decode, encode};
use super::{decode_key, open_error, Durability, Journal, JournalError, Result};
use crate::model::CloudMessage;

/// One quarantined message with the reason it can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why it was quarantined.
    pub reason: String,
    /// The message (topic may be the local one when mapping failed).
    pub msg: CloudMessage,
}

/// The quarantine tree of the database.
pub(super) struct QuarantineStore {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
}

impl QuarantineStore {
    /// The quarantine kept in `tree` of `db` (the buffer directory `path`).
    pub(super) fn new(path: &Path, db: &sled::Db, tree: sled::Tree) -> Self {
        QuarantineStore {
            path: path.to_path_buf(),
            db: db.clone(),
            tree,
        }
    }

    /// Stores `encoded` (a message as the queue stores it) with `reason`.
    pub(super) fn put(&self, reason: &str, encoded: &[u8]) -> Result<()> {
        let key = self.db.generate_id().map_err(|e| self.error(e))?;
        self.tree
            .insert(key.to_be_bytes(), quarantine_record(reason, encoded))
            .map_err(|e| self.error(e))?;
        Ok(())
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
        Ok(n)
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.path, e)
    }
}

impl Journal {
    /// Copies entry `seq` to the quarantine tree with `reason` (as stored, also when it cannot
    /// be decoded); it leaves the queue when the drain moves the watermark past it. A missing
    /// entry is not an error.
    pub fn quarantine_entry(&self, seq: u64, reason: &str) -> Result<()> {
        let Some(raw) = self.raw_entry(seq)? else {
            return Ok(());
        };
        self.inner.quarantine.put(reason, &raw)
    }

    /// Stores a message that was refused at ingress in the quarantine tree.
    pub fn quarantine_new(&self, msg: &CloudMessage, reason: &str) -> Result<()> {
        self.inner.quarantine.put(reason, &encode(msg))?;
        if self.inner.durability == Durability::Fsync {
            self.flush_db()?;
        }
        Ok(())
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

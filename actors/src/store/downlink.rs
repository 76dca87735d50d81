//! The downlink store: commands from the cloud kept until the local broker acknowledged them,
//! so that one the cloud was told is received survives a restart (replayed within the
//! downlink TTL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{decode, encode};
use super::{decode_key, open_error, Durability, JournalError, Result};
use crate::model::CloudMessage;

/// The `downlink` tree of the database; cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct DownlinkStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    durability: Durability,
}

impl DownlinkStore {
    /// The store kept in `tree` of `db` (the buffer directory `path`).
    pub(super) fn new(
        path: &Path,
        db: &sled::Db,
        tree: sled::Tree,
        durability: Durability,
    ) -> Self {
        DownlinkStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db: db.clone(),
                tree,
                durability,
            }),
        }
    }

    /// Stores a message from the cloud until the local broker acknowledged it (flushed before
    /// the cloud's PUBACK in `fsync` mode). Returns its key.
    pub fn append(&self, msg: &CloudMessage) -> Result<u64> {
        let seq = self.inner.db.generate_id().map_err(|e| self.error(e))?;
        self.inner
            .tree
            .insert(seq.to_be_bytes(), encode(msg))
            .map_err(|e| self.error(e))?;
        if self.inner.durability == Durability::Fsync {
            self.inner.db.flush().map_err(|e| self.error(e))?;
        }
        Ok(seq)
    }

    /// Forgets a downlink message the local broker acknowledged.
    pub fn remove(&self, seq: u64) -> Result<()> {
        self.inner
            .tree
            .remove(seq.to_be_bytes())
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Every stored downlink message, oldest first (unreadable ones are skipped and removed).
    pub fn entries(&self) -> Result<Vec<(u64, CloudMessage)>> {
        let mut out = Vec::new();
        for item in self.inner.tree.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            let seq = decode_key(&key);
            match decode(&value) {
                Ok(msg) => out.push((seq, msg)),
                Err(_) => self.remove(seq)?,
            }
        }
        Ok(out)
    }

    /// Number of stored messages.
    pub fn len(&self) -> usize {
        self.inner.tree.len()
    }

    /// True when no message is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.tree.is_empty()
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.inner.path, e)
    }
}

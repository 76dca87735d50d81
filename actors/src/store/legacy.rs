//! The queue of earlier awslink versions (tree `uplink`, one message or record per key): moved
//! behind the queue when the journal opens, so a buffer left by an older awslink is still
//! drained — also after a downgrade and a new upgrade.

use super::record;
use super::{decode_key, existing_tree, Journal, Result};

/// The tree of earlier versions: one message per key.
pub(super) const LEGACY_QUEUE_TREE: &str = "uplink";

/// The earlier version's tree, if `db` has one (never creates it).
fn legacy_tree(db: &sled::Db) -> sled::Result<Option<sled::Tree>> {
    existing_tree(db, LEGACY_QUEUE_TREE)
}

/// Messages and their encoded bytes waiting in the earlier version's tree (reads only; an
/// unreadable value counts as one message).
pub(super) fn waiting(db: &sled::Db) -> sled::Result<(u64, u64)> {
    let Some(old) = legacy_tree(db)? else {
        return Ok((0, 0));
    };
    let (mut messages, mut bytes) = (0, 0);
    for item in old.iter() {
        let (_, value) = item?;
        match record::split(&value) {
            Ok(parts) => {
                messages += parts.len() as u64;
                bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
            }
            Err(_) => {
                messages += 1;
                bytes += value.len() as u64;
            }
        }
    }
    Ok((messages, bytes))
}

impl Journal {
    /// Moves the queue of an earlier version (tree `uplink`, one message per key) behind what
    /// is queued here, flushes, and drops the old tree. After a downgrade and a new upgrade its
    /// messages are the newest, so behind is their place; a crash in the middle only duplicates.
    pub(super) fn migrate_legacy_queue(&self) -> Result<()> {
        let Some(old) = legacy_tree(&self.inner.db).map_err(|e| self.error(e))? else {
            return Ok(());
        };
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
                    self.inner.quarantine.put(&reason, &value)?;
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
}

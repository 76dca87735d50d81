//! The queues of earlier awslink versions, moved into the lanes when the journal opens, each
//! message into the lane its cloud topic gives ([`Lane::of_cloud_topic`]), behind what the lane
//! holds: the one FIFO of the version before lanes (generation trees `uplink.<seq>` and the
//! watermark `delivered_below`) and the older tree `uplink` (one message or record per key).
//! So a buffer left by an older awslink is still drained, also after a downgrade and a new
//! upgrade. Crash-safe: the old trees are dropped only after the moved messages are flushed, so
//! a crash in the middle duplicates messages, never loses one.

use super::damage::remove_old_mark;
use super::layout::{META_TREE, OLD_GENERATION_PREFIX, OLD_WATERMARK_KEY};
use super::record;
use super::recovery::{recover, stored_watermark};
use super::{decode_key, existing_tree, Journal, JournalError, Result};
use crate::lanes::Lane;

/// The tree of earlier versions: one message per key.
pub(super) const LEGACY_QUEUE_TREE: &str = "uplink";
/// Messages moved between two writes of the staged records (bounds the memory of a move).
const MOVE_BATCH: u64 = 4096;

/// The earlier version's tree, if `db` has one (never creates it).
fn legacy_tree(db: &sled::Db) -> sled::Result<Option<sled::Tree>> {
    existing_tree(db, LEGACY_QUEUE_TREE)
}

/// Messages and their encoded bytes waiting in the queues of earlier versions (reads only; an
/// unreadable value counts as one message).
pub(super) fn waiting(db: &sled::Db) -> sled::Result<(u64, u64)> {
    let meta = existing_tree(db, META_TREE)?;
    let watermark = stored_watermark(meta.as_ref(), OLD_WATERMARK_KEY)?;
    let old = recover(db, OLD_GENERATION_PREFIX, watermark)?;
    let (mut messages, mut bytes) = (old.live.sizes.len() as u64, old.live.bytes);
    let Some(old) = legacy_tree(db)? else {
        return Ok((messages, bytes));
    };
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
    /// Moves the queues of earlier versions into the lanes (see the module docs): first the
    /// generations of the version before lanes, then the older tree `uplink`.
    pub(super) fn migrate_earlier_queues(&self) -> Result<()> {
        self.migrate_old_generations()?;
        self.migrate_legacy_queue()
    }

    /// Appends one stored message to the lane of its cloud topic; an unreadable one goes to
    /// the quarantine with `what` in its reason.
    fn move_message(&self, part: &[u8], what: impl FnOnce() -> String) -> Result<()> {
        match record::decode(part) {
            Ok(msg) => self
                .append_encoded(Lane::of_cloud_topic(&msg.topic), part)
                .map(|_| ()),
            Err(detail) => {
                let reason = format!(
                    "unreadable entry {} of an earlier version's queue: {detail}",
                    what()
                );
                self.inner.quarantine.put(&reason, part)
            }
        }
    }

    /// Writes what was moved so far every [`MOVE_BATCH`] messages.
    fn moved_one(&self, moved: &mut u64) -> Result<()> {
        *moved += 1;
        if *moved % MOVE_BATCH == 0 {
            self.write_staged()?;
        }
        Ok(())
    }

    /// Makes the moved messages durable (flushed, and covered by the mark) before the old
    /// queue is removed.
    fn moved_durably(&self) -> Result<()> {
        self.commit()?;
        self.flush_db()?;
        self.mark_flushed()?;
        remove_old_mark(&self.inner.path).map_err(|source| JournalError::Io {
            path: self.inner.path.clone(),
            source,
        })
    }

    /// Moves the messages of the version before lanes (generations `uplink.<seq>`, from its
    /// watermark `delivered_below` on) into the lanes, then drops its trees and watermark.
    fn migrate_old_generations(&self) -> Result<()> {
        let db = &self.inner.db;
        let meta = existing_tree(db, META_TREE).map_err(|e| self.error(e))?;
        let watermark =
            stored_watermark(meta.as_ref(), OLD_WATERMARK_KEY).map_err(|e| self.error(e))?;
        let old = recover(db, OLD_GENERATION_PREFIX, watermark).map_err(|e| self.error(e))?;
        let has_key = match &meta {
            Some(meta) => meta
                .contains_key(OLD_WATERMARK_KEY)
                .map_err(|e| self.error(e))?,
            None => false,
        };
        if old.generations.trees.is_empty() && !has_key {
            return Ok(());
        }
        let from = old.live.watermark;
        let mut moved = 0;
        for (start, tree) in &old.generations.trees {
            for item in tree.iter() {
                let (key, value) = item.map_err(|e| self.error(e))?;
                let first = decode_key(&key);
                if old.misplaced.contains(&(*start, first)) {
                    let reason =
                        format!("journal record {first} of an earlier version out of sequence");
                    self.inner.quarantine.put(&reason, &value)?;
                    continue;
                }
                match record::split(&value) {
                    Ok(parts) => {
                        for (seq, part) in (first..).zip(parts).filter(|(s, _)| *s >= from) {
                            self.move_message(part, || seq.to_string())?;
                            self.moved_one(&mut moved)?;
                        }
                    }
                    Err(_) if first < from => {}
                    Err(detail) => {
                        let reason = format!(
                            "unreadable entry {first} of an earlier version's queue: {detail}"
                        );
                        self.inner.quarantine.put(&reason, &value)?;
                    }
                }
            }
        }
        self.moved_durably()?;
        let names: Vec<_> = old.generations.trees.values().map(|t| t.name()).collect();
        drop(old);
        for name in names {
            db.drop_tree(name).map_err(|e| self.error(e))?;
        }
        if let Some(meta) = meta {
            meta.remove(OLD_WATERMARK_KEY).map_err(|e| self.error(e))?;
        }
        self.flush_db()?;
        if moved > 0 {
            log::info!(
                "moved {moved} messages queued by an earlier awslink into this version's lanes"
            );
        }
        Ok(())
    }

    /// Moves the queue of the oldest versions (tree `uplink`, one message or record per key)
    /// into the lanes, flushes, and drops the old tree.
    fn migrate_legacy_queue(&self) -> Result<()> {
        let Some(old) = legacy_tree(&self.inner.db).map_err(|e| self.error(e))? else {
            return Ok(());
        };
        let mut moved = 0;
        for item in old.iter() {
            let (key, value) = item.map_err(|e| self.error(e))?;
            let key = decode_key(&key);
            match record::split(&value) {
                Ok(parts) => {
                    for part in parts {
                        self.move_message(part, || key.to_string())?;
                        self.moved_one(&mut moved)?;
                    }
                }
                Err(detail) => {
                    let reason =
                        format!("unreadable entry {key} of an earlier version's queue: {detail}");
                    self.inner.quarantine.put(&reason, &value)?;
                }
            }
        }
        self.moved_durably()?;
        drop(old);
        self.inner
            .db
            .drop_tree(LEGACY_QUEUE_TREE)
            .map_err(|e| self.error(e))?;
        if moved > 0 {
            log::info!(
                "moved {moved} messages queued by an earlier awslink into this version's lanes"
            );
        }
        Ok(())
    }
}

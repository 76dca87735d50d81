//! Looking into the database of a stopped awslink without changing it (`awslink buffer
//! inspect`): no tree is created, nothing is moved, quarantined, dropped or written; what a
//! normal open would do is reported instead.

use std::path::Path;

use super::layout::META_TREE;
use super::legacy;
use super::quarantine::{QuarantineStore, Quarantined};
use super::queue::read_entries;
use super::recovery::recover;
use super::{
    existing_tree, open_db, open_error, JournalError, Result, DOWNLINK_TREE, QUARANTINE_TREE,
};

/// What is in a buffer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Messages waiting for delivery.
    pub queued: u64,
    /// Encoded bytes of the messages waiting for delivery.
    pub queued_bytes: u64,
    /// Enqueue time (unix ms) of the oldest waiting message.
    pub oldest_enqueued_ms: Option<u64>,
    /// Commands from the cloud stored for the local broker.
    pub downlink: usize,
    /// Every quarantined message, oldest first.
    pub quarantined: Vec<Quarantined>,
    /// Messages in an earlier version's queue, moved behind the queue at the next start.
    pub legacy_messages: u64,
    /// Their encoded bytes.
    pub legacy_bytes: u64,
    /// Records whose keys cannot be part of the queue, quarantined at the next start.
    pub misplaced: usize,
}

/// Reads the database at `path` (it must exist; it is not created) without writing to it. A
/// running awslink holds its lock: that is [`JournalError::Locked`].
pub fn inspect(path: &Path) -> Result<Inspection> {
    if !path.is_dir() {
        return Err(JournalError::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let db = open_db(path, 1 << 20, None)?;
    let err = |e| open_error(path, e);
    let meta = existing_tree(&db, META_TREE).map_err(err)?;
    let recovered = recover(&db, meta.as_ref()).map_err(err)?;
    let live = &recovered.live;
    let first = read_entries(path, &recovered.generations.trees, live.watermark, 1)?
        .into_iter()
        .next()
        .filter(|(seq, _)| *seq < live.next_seq);
    let oldest_enqueued_ms = match first {
        None => None,
        Some((_, Ok(msg))) => Some(msg.enqueued_ms),
        Some((seq, Err(detail))) => return Err(JournalError::BadEntry { seq, detail }),
    };
    let downlink = existing_tree(&db, DOWNLINK_TREE)
        .map_err(err)?
        .map_or(0, |t| t.len());
    let quarantined = match existing_tree(&db, QUARANTINE_TREE).map_err(err)? {
        Some(tree) => QuarantineStore::new(path, &db, tree, u64::MAX)?.list()?,
        None => Vec::new(),
    };
    let (legacy_messages, legacy_bytes) = legacy::waiting(&db).map_err(err)?;
    Ok(Inspection {
        queued: live.sizes.len() as u64,
        queued_bytes: live.bytes,
        oldest_enqueued_ms,
        downlink,
        quarantined,
        legacy_messages,
        legacy_bytes,
        misplaced: recovered.misplaced.len(),
    })
}

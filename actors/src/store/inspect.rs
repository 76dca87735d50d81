//! Looking into the database of a stopped awslink without changing it (`awslink buffer
//! inspect`): no tree is created, nothing is moved, quarantined, dropped or written; what a
//! normal open would do is reported instead.

use std::path::Path;

use super::layout::META_TREE;
use super::legacy;
use super::quarantine::{QuarantineStore, Quarantined};
use super::read::read_entries;
use super::recovery::recover_lanes;
use super::{
    existing_tree, open_db, open_error, JournalError, Result, DOWNLINK_TREE, QUARANTINE_TREE,
};
use crate::lanes::Lane;

/// What is queued in one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneInspection {
    /// The lane.
    pub lane: Lane,
    /// Messages waiting for delivery.
    pub queued: u64,
    /// Their encoded bytes.
    pub queued_bytes: u64,
    /// Enqueue time (unix ms) of the oldest of them.
    pub oldest_enqueued_ms: Option<u64>,
}

/// What is in a buffer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Messages waiting for delivery, in all lanes.
    pub queued: u64,
    /// Encoded bytes of the messages waiting for delivery, in all lanes.
    pub queued_bytes: u64,
    /// Enqueue time (unix ms) of the oldest waiting message of any lane.
    pub oldest_enqueued_ms: Option<u64>,
    /// Each lane, highest priority first.
    pub lanes: Vec<LaneInspection>,
    /// Commands from the cloud stored for the local broker.
    pub downlink: usize,
    /// Every quarantined message, oldest first.
    pub quarantined: Vec<Quarantined>,
    /// Messages in an earlier version's queue, moved into the lanes at the next start.
    pub legacy_messages: u64,
    /// Their encoded bytes.
    pub legacy_bytes: u64,
    /// Records whose keys cannot be part of their lane's queue, quarantined at the next start.
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
    let db = open_db(path, 1 << 20)?;
    let err = |e| open_error(path, e);
    let meta = existing_tree(&db, META_TREE).map_err(err)?;
    let recovered = recover_lanes(&db, meta.as_ref()).map_err(err)?;
    let mut lanes = Vec::with_capacity(3);
    for (lane, r) in Lane::ALL.into_iter().zip(&recovered) {
        let live = &r.live;
        let first = read_entries(path, &r.generations.trees, live.watermark, 1)?
            .into_iter()
            .next()
            .filter(|(seq, _)| *seq < live.next_seq);
        let oldest_enqueued_ms = match first {
            None => None,
            Some((_, Ok(msg))) => Some(msg.enqueued_ms),
            Some((seq, Err(detail))) => return Err(JournalError::BadEntry { seq, detail }),
        };
        lanes.push(LaneInspection {
            lane,
            queued: live.sizes.len() as u64,
            queued_bytes: live.bytes,
            oldest_enqueued_ms,
        });
    }
    let downlink = existing_tree(&db, DOWNLINK_TREE)
        .map_err(err)?
        .map_or(0, |t| t.len());
    let quarantined = match existing_tree(&db, QUARANTINE_TREE).map_err(err)? {
        Some(tree) => QuarantineStore::new(path, &db, tree, u64::MAX)?.list()?,
        None => Vec::new(),
    };
    let (legacy_messages, legacy_bytes) = legacy::waiting(&db).map_err(err)?;
    Ok(Inspection {
        queued: lanes.iter().map(|l| l.queued).sum(),
        queued_bytes: lanes.iter().map(|l| l.queued_bytes).sum(),
        oldest_enqueued_ms: lanes.iter().filter_map(|l| l.oldest_enqueued_ms).min(),
        lanes,
        downlink,
        quarantined,
        legacy_messages,
        legacy_bytes,
        misplaced: recovered.iter().map(|r| r.misplaced.len()).sum(),
    })
}

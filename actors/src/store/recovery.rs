//! Reading the uplink queue from disk at open: per lane the stored watermark, the generation
//! trees and the size of every message still queued (also for the one FIFO of a journal written
//! before lanes, which `legacy.rs` moves into the lanes); records whose keys cannot be part of
//! the queue are set aside (and quarantined by a normal open). Reads only, so an inspection uses
//! it too.

use std::collections::{BTreeMap, VecDeque};

use log::warn;

use super::layout::{generation_prefix, watermark_key, Generations, Live};
use super::record;
use super::{decode_key, read, Journal, Result};
use crate::lanes::Lane;

/// The largest run of missing sequence numbers a queue read from disk may have (writes never
/// leave any: records are contiguous and a crash loses only a suffix).
pub(super) const MAX_GAP: u64 = super::GENERATION_MESSAGES;
/// No sequence number goes beyond this (2^62: centuries at a million messages a second).
const MAX_SEQ: u64 = 1 << 62;

/// What [`recover`] finds in the generation trees.
pub(super) struct Recovered {
    pub(super) live: Live,
    pub(super) generations: Generations,
    pub(super) last_generation_bytes: u64,
    /// Records whose keys cannot be part of the queue: (generation start, key).
    pub(super) misplaced: Vec<(u64, u64)>,
}

/// The watermark stored under `key` in `meta` (0 without a `meta` tree or a key).
pub(super) fn stored_watermark(meta: Option<&sled::Tree>, key: &[u8]) -> sled::Result<u64> {
    let stored = match meta {
        Some(meta) => meta.get(key)?,
        None => None,
    };
    Ok(match stored {
        Some(v) if v.len() == 8 => decode_key(&v),
        _ => 0,
    })
}

/// Recovers every lane of `db` (see [`recover`]), indexed by [`Lane::index`].
pub(super) fn recover_lanes(
    db: &sled::Db,
    meta: Option<&sled::Tree>,
) -> sled::Result<[Recovered; 3]> {
    let [control, events, telemetry] = Lane::ALL.map(|lane| {
        let watermark = stored_watermark(meta, &watermark_key(lane))?;
        recover(db, &generation_prefix(lane), watermark)
    });
    Ok([control?, events?, telemetry?])
}

/// Reads the generations named `<prefix><first seq>` from the stored `watermark` on: the size
/// of each message at or above the watermark, and where appending goes on. A queue that starts above the stored watermark
/// starts the watermark there. A record whose key cannot follow the ones before it (a gap of
/// more than [`MAX_GAP`] sequence numbers, or a key near the end of the number space) comes
/// back in `misplaced` instead of being counted: it is quarantined, so that no stored key lies
/// beyond the next sequence number handed out.
pub(super) fn recover(db: &sled::Db, prefix: &str, watermark: u64) -> sled::Result<Recovered> {
    let mut watermark = watermark;
    let persisted = watermark;
    let mut trees = BTreeMap::new();
    for name in db.tree_names() {
        let start = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(prefix))
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

impl Journal {
    /// Moves records whose keys cannot be part of the queue of their lane (see [`recover`]) to
    /// the quarantine tree.
    pub(super) fn quarantine_misplaced(&self, misplaced: &[(Lane, u64, u64)]) -> Result<()> {
        for &(lane, start, key) in misplaced {
            let Some(tree) = read(&self.inner.queue.lane(lane).generations)
                .trees
                .get(&start)
                .cloned()
            else {
                continue;
            };
            let Some(value) = tree.get(key.to_be_bytes()).map_err(|e| self.error(e))? else {
                continue;
            };
            let lane = lane.name();
            warn!("journal record {key} of lane {lane} does not follow the queue before it; quarantined");
            let reason = format!("journal record {key} of lane {lane} out of sequence");
            self.inner.quarantine.put(&reason, &value)?;
            tree.remove(key.to_be_bytes()).map_err(|e| self.error(e))?;
        }
        if !misplaced.is_empty() {
            self.flush_db()?;
        }
        Ok(())
    }
}

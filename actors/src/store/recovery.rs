//! Reading the uplink queue from disk at open: the stored watermark, the generation trees and
//! the size of every message still queued; records whose keys cannot be part of the queue are
//! set aside (and quarantined by a normal open). Reads only, so an inspection uses it too.

use std::collections::{BTreeMap, VecDeque};

use log::warn;

use super::layout::{Generations, Live, GENERATION_PREFIX, WATERMARK_KEY};
use super::record;
use super::{decode_key, read, Journal, Result};

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

/// Reads the stored watermark (none without a `meta` tree) and every generation: the size of each message at or above the
/// watermark, and where appending goes on. A queue that starts above the stored watermark
/// starts the watermark there. A record whose key cannot follow the ones before it (a gap of
/// more than [`MAX_GAP`] sequence numbers, or a key near the end of the number space) comes
/// back in `misplaced` instead of being counted: it is quarantined, so that no stored key lies
/// beyond the next sequence number handed out.
pub(super) fn recover(db: &sled::Db, meta: Option<&sled::Tree>) -> sled::Result<Recovered> {
    let stored = match meta {
        Some(meta) => meta.get(WATERMARK_KEY)?,
        None => None,
    };
    let mut watermark = match stored {
        Some(v) if v.len() == 8 => decode_key(&v),
        _ => 0,
    };
    let persisted = watermark;
    let mut trees = BTreeMap::new();
    for name in db.tree_names() {
        let start = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(GENERATION_PREFIX))
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
    /// Moves records whose keys cannot be part of the queue (see [`recover`]) to the quarantine
    /// tree.
    pub(super) fn quarantine_misplaced(&self, misplaced: &[(u64, u64)]) -> Result<()> {
        for &(start, key) in misplaced {
            let Some(tree) = read(&self.inner.queue.generations)
                .trees
                .get(&start)
                .cloned()
            else {
                continue;
            };
            let Some(value) = tree.get(key.to_be_bytes()).map_err(|e| self.error(e))? else {
                continue;
            };
            warn!("journal record {key} does not follow the queue before it; quarantined");
            let reason = format!("journal record {key} out of sequence");
            self.inner.quarantine.put(&reason, &value)?;
            tree.remove(key.to_be_bytes()).map_err(|e| self.error(e))?;
        }
        if !misplaced.is_empty() {
            self.flush_db()?;
        }
        Ok(())
    }
}

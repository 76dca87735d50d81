//! The uplink queue's names on disk and the state the queue and its recovery share: the
//! generation trees of each lane, the watermarks' tree and keys, what is live behind each
//! watermark. Its own file so that the queue (which writes) and the recovery (which reads at
//! open and for `buffer inspect`) both depend on it, not on each other.

use std::collections::{BTreeMap, VecDeque};

use crate::lanes::Lane;

/// The tree holding the watermarks.
pub(super) const META_TREE: &str = "uplink-meta";

/// Prefix of the generation trees of journals written before lanes existed (one FIFO); the rest
/// of the name is the first sequence number. Moved into the lanes at open (`legacy.rs`).
pub(super) const OLD_GENERATION_PREFIX: &str = "uplink.";
/// Key in [`META_TREE`] of the watermark of journals written before lanes existed.
pub(super) const OLD_WATERMARK_KEY: &[u8] = b"delivered_below";

/// Prefix of the generation trees of `lane`: `uplink-<lane>.`; the rest of the name is the
/// first sequence number (20 digits). Earlier versions, which parse `uplink.<number>`, ignore
/// these trees.
pub(super) fn generation_prefix(lane: Lane) -> String {
    format!("uplink-{}.", lane.name())
}

/// The name of the generation tree of `lane` whose first sequence number is `first`.
pub(super) fn generation_name(lane: Lane, first: u64) -> String {
    format!("{}{first:020}", generation_prefix(lane))
}

/// Key in [`META_TREE`] of the watermark of `lane`.
pub(super) fn watermark_key(lane: Lane) -> Vec<u8> {
    format!("delivered_below.{}", lane.name()).into_bytes()
}

/// The messages of one lane not yet behind its watermark.
pub(super) struct Live {
    /// Everything below is delivered, quarantined or dropped.
    pub(super) watermark: u64,
    /// The watermark as last stored in [`META_TREE`] (generations are dropped only behind it).
    pub(super) persisted: u64,
    /// Sequence number of the next append.
    pub(super) next_seq: u64,
    /// Encoded size of each message from `watermark` to `next_seq` (0 for a key that is
    /// missing, e.g. one an earlier version removed from the middle of its queue).
    pub(super) sizes: VecDeque<u32>,
    /// Sum of `sizes`.
    pub(super) bytes: u64,
}

/// What is live in every lane, indexed by [`Lane::index`]: one lock for all of them, because
/// the limits count all lanes together and `dropOldest` takes room from another lane.
pub(super) struct Lives(pub(super) [Live; 3]);

impl Lives {
    /// The live messages of `lane`.
    pub(super) fn of(&mut self, lane: Lane) -> &mut Live {
        &mut self.0[lane.index()]
    }

    /// Messages queued in every lane.
    pub(super) fn messages(&self) -> u64 {
        self.0.iter().map(|l| l.sizes.len() as u64).sum()
    }

    /// Encoded bytes queued in every lane.
    pub(super) fn bytes(&self) -> u64 {
        self.0.iter().map(|l| l.bytes).sum()
    }
}

/// The generation trees of one lane by first sequence number; the last one takes new records.
pub(super) struct Generations {
    pub(super) trees: BTreeMap<u64, sled::Tree>,
}

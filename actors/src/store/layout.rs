//! The uplink queue's names on disk and the state the queue and its recovery share: the
//! generation trees, the watermark's tree and key, what is live behind the watermark. Its own
//! file so that the queue (which writes) and the recovery (which reads at open and for
//! `buffer inspect`) both depend on it, not on each other.

use std::collections::{BTreeMap, VecDeque};

/// Prefix of the generation trees; the rest of the name is the first sequence number.
pub(super) const GENERATION_PREFIX: &str = "uplink.";
/// The tree holding the watermark.
pub(super) const META_TREE: &str = "uplink-meta";
/// Key of the watermark in [`META_TREE`].
pub(super) const WATERMARK_KEY: &[u8] = b"delivered_below";

/// The messages not yet behind the watermark.
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

/// The generation trees by first sequence number; the last one takes new records.
pub(super) struct Generations {
    pub(super) trees: BTreeMap<u64, sled::Tree>,
}

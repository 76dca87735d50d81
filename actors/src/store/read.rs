//! Reading the uplink queue: the committed entries of a lane from a sequence number on, one
//! entry's stored bytes (for the quarantine), and the sizes of the lanes.

use std::collections::BTreeMap;
use std::path::Path;

use super::record::{self, decode};
use super::{decode_key, lock, open_error, read, Journal, JournalError, Result};
use crate::lanes::Lane;
use crate::model::CloudMessage;

/// Entries read from a lane: sequence number and the message, or what makes it unreadable.
pub(super) type Entries = Vec<(u64, std::result::Result<CloudMessage, String>)>;

impl Journal {
    /// The first committed entry of `lane` with sequence number ≥ `from` that is not behind
    /// the lane's watermark.
    pub fn first_from(&self, lane: Lane, from: u64) -> Result<Option<(u64, CloudMessage)>> {
        match self.entries_from(lane, from, 1)?.into_iter().next() {
            None => Ok(None),
            Some((seq, Ok(msg))) => Ok(Some((seq, msg))),
            Some((seq, Err(detail))) => Err(JournalError::BadEntry { seq, detail }),
        }
    }

    /// Up to `max` committed entries of `lane` with sequence number ≥ `from` (and not behind
    /// the lane's watermark), in order: from the lane's in-memory tail when it holds `from`
    /// (`tail.rs`), otherwise from sled. An entry that cannot be decoded comes back as its
    /// sequence number and what is wrong with it.
    pub fn entries_from(&self, lane: Lane, from: u64, max: usize) -> Result<Entries> {
        let from = from.max(lock(&self.inner.queue.live).of(lane).watermark);
        if let Some(entries) = lock(&self.inner.queue.lane(lane).tail).read(from, max) {
            return Ok(entries);
        }
        // Held while reading, so no generation is dropped under the scan.
        let generations = read(&self.inner.queue.lane(lane).generations);
        read_entries(&self.inner.path, &generations.trees, from, max)
    }

    /// The stored bytes of entry `seq` of `lane`: its part of a record, or the whole value when
    /// the record that starts at `seq` cannot be split.
    pub(super) fn raw_entry(&self, lane: Lane, seq: u64) -> Result<Option<Vec<u8>>> {
        let generations = read(&self.inner.queue.lane(lane).generations);
        let Some((_, tree)) = generations.trees.range(..=seq).next_back() else {
            return Ok(None);
        };
        let Some(item) = tree.range(..=seq.to_be_bytes()).next_back() else {
            return Ok(None);
        };
        let (key, value) = item.map_err(|e| self.error(e))?;
        let first = decode_key(&key);
        Ok(match record::split(&value) {
            Ok(parts) => usize::try_from(seq - first)
                .ok()
                .and_then(|i| parts.get(i))
                .map(|part| part.to_vec()),
            Err(_) if first == seq => Some(value.to_vec()),
            Err(_) => None,
        })
    }

    /// Number of messages of `lane` waiting for delivery.
    pub fn queued(&self, lane: Lane) -> u64 {
        lock(&self.inner.queue.live).of(lane).sizes.len() as u64
    }

    /// Encoded bytes of the messages of `lane` waiting for delivery.
    pub fn queued_bytes(&self, lane: Lane) -> u64 {
        lock(&self.inner.queue.live).of(lane).bytes
    }

    /// Number of messages of every lane waiting for delivery.
    pub fn queued_total(&self) -> u64 {
        lock(&self.inner.queue.live).messages()
    }

    /// Encoded bytes of the messages of every lane waiting for delivery.
    pub fn queued_bytes_total(&self) -> u64 {
        lock(&self.inner.queue.live).bytes()
    }

    /// Enqueue time (unix ms) of the oldest message of `lane` waiting for delivery.
    pub fn oldest_enqueued_ms(&self, lane: Lane) -> Result<Option<u64>> {
        Ok(self.first_from(lane, 0)?.map(|(_, msg)| msg.enqueued_ms))
    }
}

/// Up to `max` entries with sequence number ≥ `from` in the generation `trees`, in order (see
/// [`Journal::entries_from`]).
pub(super) fn read_entries(
    path: &Path,
    trees: &BTreeMap<u64, sled::Tree>,
    from: u64,
    max: usize,
) -> Result<Entries> {
    let mut out = Vec::with_capacity(max.min(256));
    let first_generation = trees
        .range(..=from)
        .next_back()
        .map_or(0, |(start, _)| *start);
    for tree in trees.range(first_generation..).map(|(_, t)| t) {
        // The record holding `from` may start before it.
        let start = match tree.range(..=from.to_be_bytes()).next_back() {
            Some(item) => decode_key(&item.map_err(|e| open_error(path, e))?.0),
            None => from,
        };
        for item in tree.range(start.to_be_bytes()..) {
            let (key, value) = item.map_err(|e| open_error(path, e))?;
            if push_entries(decode_key(&key), &value, from, max, &mut out) {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Appends the entries of the stored value `value` under key `first` with sequence number ≥
/// `from` to `out`, until it holds `max`; a value that cannot be split is one unreadable entry
/// (if its key is ≥ `from`). True when `out` is full. Shared by the sled read and the tail's.
pub(super) fn push_entries(
    first: u64,
    value: &[u8],
    from: u64,
    max: usize,
    out: &mut Entries,
) -> bool {
    match record::split(value) {
        Ok(parts) => {
            for (seq, part) in (first..).zip(parts) {
                if seq >= from {
                    out.push((seq, decode(part)));
                    if out.len() >= max {
                        return true;
                    }
                }
            }
        }
        Err(detail) if first >= from => out.push((first, Err(detail))),
        Err(_) => {}
    }
    out.len() >= max
}

//! The newest records of each lane, kept in memory as they were written to sled, so that a drain
//! that keeps up reads what was just committed without a sled lookup (the Buffer's reads were
//! ~5% of awslink's CPU in `batched` mode and ~9% in `fsync` mode, benchmark scenario 1).
//!
//! A [`Tail`] holds copies of the very bytes that went to sled, for one contiguous run of
//! sequence numbers that ends at the last record written: a read from inside that run returns
//! what a sled read would, and any other read goes to sled. It is bounded by
//! [`TAIL_BYTES`] per lane (the oldest records leave first) and drops records wholly behind the
//! lane's watermark, so an idle journal keeps nothing here.

use std::collections::VecDeque;

use super::read::{push_entries, Entries};
use super::record::messages_in;

/// Most heap bytes a lane's tail keeps (about 1,000 messages of 200 bytes in full records,
/// at least 64 records; the drain has at most a few hundred messages in flight).
pub const TAIL_BYTES: usize = 256 * 1024;

/// One lane's newest written records: `(first sequence number, record)`, contiguous, oldest
/// first; `end` is the sequence number after the last one.
#[derive(Debug, Default)]
pub(super) struct Tail {
    records: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    /// Sequence number after the last record pushed; `None` until the first one (what was on
    /// disk at open is read from sled).
    end: Option<u64>,
}

impl Tail {
    /// The record starting at `first` was written to sled. A record that does not continue the
    /// run (the first one after open) starts a new run.
    pub(super) fn push(&mut self, first: u64, record: Vec<u8>) {
        let count = messages_in(&record);
        if self.end != Some(first) {
            self.records.clear();
            self.bytes = 0;
        }
        // What the record holds of the heap, not its length: a record of one small message
        // still has the 4 KiB a RecordBuilder starts with.
        self.bytes += record.capacity();
        self.records.push_back((first, record));
        self.end = Some(first + count);
        while self.bytes > TAIL_BYTES && self.records.len() > 1 {
            self.pop_front();
        }
    }

    /// Forgets the records whose messages all lie below `watermark`.
    pub(super) fn trim_below(&mut self, watermark: u64) {
        while self.records.len() > 1 && self.records[1].0 <= watermark {
            self.pop_front();
        }
        if self.end.is_some_and(|end| end <= watermark) {
            self.records.clear();
            self.bytes = 0;
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, record)) = self.records.pop_front() {
            self.bytes -= record.capacity();
        }
    }

    /// Up to `max` entries from `from` on, when the tail holds `from` (or `from` is at its end:
    /// then there is nothing to read); `None` when sled must be read instead.
    pub(super) fn read(&self, from: u64, max: usize) -> Option<Entries> {
        let end = self.end?;
        if from >= end {
            return Some(Vec::new());
        }
        let start = self.records.front().map_or(end, |(first, _)| *first);
        if from < start {
            return None;
        }
        let mut out = Vec::with_capacity(max.min((end - from) as usize));
        // The record holding `from` is the last one starting at or below it.
        let at = self.records.partition_point(|(first, _)| *first <= from) - 1;
        for (first, record) in self.records.range(at..) {
            if push_entries(*first, record, from, max, &mut out) {
                break;
            }
        }
        Some(out)
    }

    /// Heap bytes held by its records.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, test_message, RecordBuilder};

    /// A record of messages `first..first + count`, as the queue writes it.
    fn record(first: u64, count: u64) -> Vec<u8> {
        let mut b = RecordBuilder::new(first);
        for n in first..first + count {
            b.push(&encode(&test_message(n)));
        }
        b.finish().1
    }

    fn tail(records: &[(u64, u64)]) -> Tail {
        let mut t = Tail::default();
        for &(first, count) in records {
            t.push(first, record(first, count));
        }
        t
    }

    fn seqs(entries: Option<Entries>) -> Option<Vec<u64>> {
        entries.map(|e| {
            e.into_iter()
                .map(|(seq, msg)| {
                    assert_eq!(msg, Ok(test_message(seq)), "entry {seq}");
                    seq
                })
                .collect()
        })
    }

    #[test]
    fn reads_from_inside_the_run_return_the_written_messages_and_others_go_to_sled() {
        // Records 10..13, 13..18, 18..19.
        let t = tail(&[(10, 3), (13, 5), (18, 1)]);
        let cases: &[(u64, usize, Option<Vec<u64>>)] = &[
            (10, 100, Some((10..19).collect())),
            (11, 3, Some(vec![11, 12, 13])),
            (14, 2, Some(vec![14, 15])),
            (18, 5, Some(vec![18])),
            (19, 5, Some(vec![])),
            (40, 5, Some(vec![])),
            (9, 5, None),
            (0, 5, None),
        ];
        for (from, max, want) in cases {
            assert_eq!(&seqs(t.read(*from, *max)), want, "read({from}, {max})");
        }
        assert_eq!(seqs(Tail::default().read(0, 5)), None, "nothing pushed yet");
    }

    #[test]
    fn the_bound_counts_what_records_hold_of_the_heap_not_their_length() {
        // One small message per record, as a lightly loaded intake commits them: each record
        // keeps a RecordBuilder's 4 KiB.
        let mut t = Tail::default();
        for first in 0..10_000 {
            let r = record(first, 1);
            assert!(r.capacity() >= 4096);
            t.push(first, r);
        }
        assert!(t.bytes() <= TAIL_BYTES, "{} bytes", t.bytes());
        let held: usize = t.records.iter().map(|(_, r)| r.capacity()).sum();
        assert_eq!(held, t.bytes());
        assert!(t.records.len() >= 60, "{} records kept", t.records.len());
    }

    #[test]
    fn a_record_that_does_not_continue_the_run_starts_a_new_one() {
        let mut t = tail(&[(10, 3)]);
        t.push(20, record(20, 2));
        assert_eq!(seqs(t.read(12, 5)), None);
        assert_eq!(seqs(t.read(20, 5)), Some(vec![20, 21]));
    }

    #[test]
    fn records_behind_the_watermark_leave_and_an_all_delivered_tail_is_empty() {
        let mut t = tail(&[(10, 3), (13, 5), (18, 1)]);
        t.trim_below(12);
        assert_eq!(
            seqs(t.read(12, 100)),
            Some((12..19).collect()),
            "10..13 holds 12"
        );
        t.trim_below(13);
        assert_eq!(seqs(t.read(12, 100)), None, "10..13 is gone");
        assert_eq!(seqs(t.read(13, 100)), Some((13..19).collect()));
        t.trim_below(19);
        assert_eq!(t.bytes(), 0);
        assert_eq!(
            seqs(t.read(19, 100)),
            Some(vec![]),
            "the end is still known"
        );
        t.push(19, record(19, 2));
        assert_eq!(seqs(t.read(19, 100)), Some(vec![19, 20]));
    }

    #[test]
    fn the_oldest_records_leave_beyond_the_byte_bound_but_the_newest_stays() {
        let mut t = Tail::default();
        let mut first = 0;
        while first < 20_000 {
            t.push(first, record(first, 50));
            first += 50;
            assert!(t.bytes() <= TAIL_BYTES, "{} bytes after {first}", t.bytes());
        }
        assert_eq!(seqs(t.read(0, 10)), None, "the oldest left");
        assert!(t.bytes() > TAIL_BYTES / 2, "{} bytes kept", t.bytes());
        assert_eq!(seqs(t.read(19_990, 100)), Some((19_990..20_000).collect()));
        let mut big = Tail::default();
        let huge = vec![0u8; TAIL_BYTES + 1];
        let mut b = RecordBuilder::new(0);
        b.push(&huge);
        big.push(0, b.finish().1);
        assert!(
            big.read(0, 1).is_some(),
            "one record larger than the bound is kept"
        );
    }
}

//! The QoS 1 publishes one link has sent and the endpoint has not acknowledged yet: their MQTT
//! packet ids, and which of them the endpoint dropped.
//!
//! Pure (no I/O, no clock of its own), so it is tested by tables below. The link's publisher
//! allocates a packet id here for each QoS 1 publish, the link's I/O thread looks the journal key
//! up here when the PUBACK arrives.
//!
//! A publish the drain has given up on ([`InFlight::forget`]: it sends everything again) is
//! still on the wire: it keeps its packet id and counts in [`InFlight::len`], so the link does
//! not have more than the endpoint's limit unacknowledged, until its PUBACK comes (not reported)
//! or [`OVERTAKEN_GRACE`] has passed.
//!
//! A publish the endpoint dropped (AWS drops what exceeds its limits, without a PUBACK) is found
//! here too: MQTT has the server acknowledge QoS 1 publishes in the order it received them, so a
//! publish still unanswered when one sent after it was acknowledged was dropped. After
//! [`OVERTAKEN_GRACE`] (in case a server does acknowledge out of order) [`InFlight::overdue`]
//! gives it up, and the drain sends it again at once instead of holding its slot and its lane's
//! watermark until the link watchdog sees a keep-alive period without any answer, which a link
//! that keeps answering the other publishes never has.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a publish may stay unanswered after one published later was answered before it
/// counts as dropped.
pub const OVERTAKEN_GRACE: Duration = Duration::from_secs(1);

/// Packet ids 1..=65535 (0 is not a valid id).
const IDS: usize = 65536;

#[derive(Debug)]
struct Entry {
    pkid: u16,
    key: u64,
    /// When a publish sent after this one was acknowledged.
    overtaken_at: Option<Instant>,
    /// When the drain gave up on it ([`InFlight::forget`]): its PUBACK is not reported, but it
    /// still counts towards the endpoint's limit until it comes or the grace has passed.
    forgotten_at: Option<Instant>,
}

/// The unacknowledged QoS 1 publishes of one link, oldest first.
#[derive(Debug)]
pub struct InFlight {
    queue: VecDeque<Entry>,
    /// One bit per packet id in use.
    used: Vec<u64>,
    /// The id tried next: ids rotate, so a late PUBACK for a publish given up on is not taken
    /// for the next one.
    next: u16,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            queue: VecDeque::with_capacity(128),
            used: vec![0; IDS / 64],
            next: 1,
        }
    }
}

impl InFlight {
    /// Records journal entry `key` as sent and returns its packet id, or `None` when all 65,535
    /// ids are outstanding.
    pub fn start(&mut self, key: u64) -> Option<u16> {
        if self.queue.len() >= IDS - 1 {
            return None;
        }
        let mut pkid = self.next;
        while pkid == 0 || self.is_used(pkid) {
            pkid = pkid.wrapping_add(1);
        }
        self.next = pkid.wrapping_add(1);
        self.set_used(pkid, true);
        self.queue.push_back(Entry {
            pkid,
            key,
            overtaken_at: None,
            forgotten_at: None,
        });
        Some(pkid)
    }

    /// The endpoint acknowledged `pkid` at `now`: its journal key, if it was outstanding and
    /// not forgotten. Every publish sent before it and still unanswered counts as overtaken from
    /// `now`.
    pub fn acked(&mut self, pkid: u16, now: Instant) -> Option<u64> {
        // PUBACKs come in order, so the id is nearly always the oldest.
        let at = self.queue.iter().position(|e| e.pkid == pkid)?;
        for earlier in self.queue.iter_mut().take(at) {
            earlier.overtaken_at.get_or_insert(now);
        }
        let entry = self.queue.remove(at)?;
        self.set_used(pkid, false);
        entry.forgotten_at.is_none().then_some(entry.key)
    }

    /// Takes back packet id `pkid`, just started, whose publish could not be sent after all.
    pub fn cancel(&mut self, pkid: u16) {
        if let Some(at) = self.queue.iter().rposition(|e| e.pkid == pkid) {
            self.queue.remove(at);
            self.set_used(pkid, false);
        }
    }

    /// Hands `dropped` the key of every publish overtaken more than [`OVERTAKEN_GRACE`] before
    /// `now`, and forgets them; drops forgotten publishes older than the grace without a word.
    pub fn overdue(&mut self, now: Instant, mut dropped: impl FnMut(u64)) {
        let used = &mut self.used;
        let expired = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) >= OVERTAKEN_GRACE)
        };
        self.queue.retain(|e| {
            let gone = expired(e.overtaken_at) || expired(e.forgotten_at);
            if gone {
                used[e.pkid as usize / 64] &= !(1 << (e.pkid % 64));
                if e.forgotten_at.is_none() {
                    dropped(e.key);
                }
            }
            !gone
        });
    }

    /// Forgets every outstanding publish at `now` (the drain sends them again): their outcomes
    /// are never reported, but they count in [`Self::len`] until their PUBACK or the grace.
    pub fn forget(&mut self, now: Instant) {
        for entry in &mut self.queue {
            entry.forgotten_at.get_or_insert(now);
        }
    }

    /// How many publishes are unacknowledged on the connection (forgotten ones included).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn is_used(&self, pkid: u16) -> bool {
        self.used[pkid as usize / 64] & (1 << (pkid % 64)) != 0
    }

    fn set_used(&mut self, pkid: u16, on: bool) {
        let word = &mut self.used[pkid as usize / 64];
        if on {
            *word |= 1 << (pkid % 64);
        } else {
            *word &= !(1 << (pkid % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(f: &mut InFlight, now: Instant) -> Vec<u64> {
        let mut keys = Vec::new();
        f.overdue(now, |k| keys.push(k));
        keys
    }

    #[test]
    fn acknowledgements_in_any_order_return_each_key_once() {
        let mut f = InFlight::default();
        let ids: Vec<u16> = (10..15).map(|k| f.start(k).unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        let now = Instant::now();
        for (pkid, key) in [(3, 12), (1, 10), (5, 14), (2, 11), (4, 13)] {
            assert_eq!(f.acked(pkid, now), Some(key), "pkid {pkid}");
        }
        assert_eq!(f.acked(3, now), None, "a second PUBACK for the same id");
        assert!(f.is_empty());
    }

    #[test]
    fn an_overtaken_publish_is_dropped_after_the_grace_not_before() {
        // (acknowledged ids, seconds after the overtaking PUBACK, keys reported dropped)
        let table: &[(&[u16], f64, &[u64])] = &[
            (&[2], 0.5, &[]),
            (&[2], 1.0, &[100]),
            (&[3], 1.5, &[100, 101]),
            (&[1, 2, 3], 5.0, &[]),
            (&[], 5.0, &[]),
        ];
        for (acked, after, expect) in table {
            let mut f = InFlight::default();
            for key in 100..103 {
                f.start(key);
            }
            let t0 = Instant::now();
            for pkid in *acked {
                f.acked(*pkid, t0);
            }
            let got = dropped(&mut f, t0 + Duration::from_secs_f64(*after));
            assert_eq!(&got, expect, "acked {acked:?} after {after} s");
            assert_eq!(f.len(), 3 - acked.len() - expect.len());
        }
    }

    #[test]
    fn an_overtaken_publish_acknowledged_within_the_grace_is_delivered() {
        let mut f = InFlight::default();
        f.start(1);
        f.start(2);
        let t0 = Instant::now();
        assert_eq!(f.acked(2, t0), Some(2));
        assert_eq!(f.acked(1, t0 + Duration::from_millis(900)), Some(1));
        assert!(dropped(&mut f, t0 + Duration::from_secs(3)).is_empty());
    }

    #[test]
    fn a_publish_that_is_never_answered_does_not_hide_the_answers_after_it() {
        let mut f = InFlight::default();
        for key in 0..100 {
            f.start(key);
        }
        let now = Instant::now();
        for pkid in 2..=100 {
            assert_eq!(f.acked(pkid, now), Some(pkid as u64 - 1));
        }
        assert_eq!(f.len(), 1);
        assert_eq!(dropped(&mut f, now + OVERTAKEN_GRACE), vec![0]);
    }

    #[test]
    fn ids_rotate_skip_those_in_use_and_never_are_zero() {
        let mut f = InFlight::default();
        let first = f.start(0).unwrap();
        for key in 1..70_000u64 {
            let pkid = f.start(key).unwrap();
            assert_ne!(pkid, 0);
            assert_ne!(pkid, first, "id {first} is still in use");
            f.acked(pkid, Instant::now());
        }
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn all_ids_outstanding_refuses_the_next() {
        let mut f = InFlight::default();
        for key in 0..65_535u64 {
            assert!(f.start(key).is_some(), "key {key}");
        }
        assert_eq!(f.start(65_535), None);
        f.cancel(7);
        assert_eq!(f.start(65_535), Some(7), "a cancelled id is free again");
    }

    #[test]
    fn forgotten_publishes_are_never_reported_but_count_until_acked_or_the_grace() {
        let mut f = InFlight::default();
        for key in 0..3 {
            f.start(key);
        }
        let t0 = Instant::now();
        f.forget(t0);
        assert_eq!(f.len(), 3, "still on the wire");
        assert_eq!(f.acked(1, t0), None, "forgotten: no outcome");
        assert_eq!(f.len(), 2);
        let again = f.start(0).unwrap();
        assert_eq!(
            f.acked(again, t0),
            Some(0),
            "the publish sent again is reported"
        );
        assert!(dropped(&mut f, t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(f.len(), 2);
        assert!(
            dropped(&mut f, t0 + OVERTAKEN_GRACE).is_empty(),
            "forgotten ones expire without being reported"
        );
        assert!(f.is_empty());
    }
}

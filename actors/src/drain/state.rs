//! The drain's rules as a pure state machine (no actor, no MQTT client, no journal): which journal
//! entry to send next, how many may be in flight, how far the watermark may move, and what to do
//! when a publish completes or the link changes. The Buffer actor performs what it decides.
//!
//! The rules: entries are sent in key order from the cursor, at most `window` unanswered at once.
//! The watermark (everything below it is delivered or quarantined) stops at the oldest entry still
//! in flight and at any entry whose quarantine copy failed. A permanent failure quarantines its
//! entry and the drain moves on; a transient one sends again everything from the oldest failed or
//! unanswered entry, in order (re-sending only the failed one would reorder it behind its
//! successors). After a link change, everything not yet delivered is sent again from the oldest.

use std::collections::{BTreeMap, VecDeque};

use crate::model::Outcome;

/// What the Buffer does about one completed publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Count it as delivered; the watermark may pass it.
    Delivered,
    /// Copy the entry to the quarantine, for this reason; the drain goes on without it.
    Quarantine(String),
    /// It failed for this reason, which may pass: send it again after a pause (see
    /// [`Drain::end_of_burst`]).
    Retry(String),
}

/// The drain's position in the journal and its publishes in flight.
#[derive(Debug)]
pub struct Drain {
    window: usize,
    /// Next journal key to read; everything below it is either delivered or in flight.
    cursor: u64,
    /// Journal keys sent and not yet answered, in the order sent (ascending).
    in_flight: VecDeque<u64>,
    /// Everything below was reported to the journal as delivered (or quarantined).
    reported_done: u64,
    /// Entries to quarantine whose copy to the quarantine failed: the watermark stays below
    /// them until the copy succeeds.
    unquarantined: BTreeMap<u64, String>,
    /// A transient failure was seen in the current burst of completions.
    rewind: bool,
}

impl Drain {
    /// A drain that keeps at most `window` (at least 1) publishes unanswered.
    pub fn new(window: usize) -> Self {
        Drain {
            window: window.max(1),
            cursor: 0,
            in_flight: VecDeque::new(),
            reported_done: 0,
            unquarantined: BTreeMap::new(),
            rewind: false,
        }
    }

    /// Where to read the journal next and how many entries the window has room for; `None`
    /// while the window is full.
    pub fn next(&self) -> Option<(u64, usize)> {
        let room = self.window.saturating_sub(self.in_flight.len());
        (room > 0).then_some((self.cursor, room))
    }

    /// Entry `seq` (read from the journal at or after the cursor) was handed to the link.
    pub fn sent(&mut self, seq: u64) {
        self.cursor = seq + 1;
        self.in_flight.push_back(seq);
    }

    /// Entries `first..=last` were handed to the link as one publish (a batch), keyed by
    /// `first`: the watermark passes all of them only when that publish completes.
    pub fn sent_run(&mut self, first: u64, last: u64) {
        self.cursor = last.max(first) + 1;
        self.in_flight.push_back(first);
    }

    /// Entry `seq` cannot be decoded: the cursor moves past it; the Buffer quarantines it.
    pub fn unreadable(&mut self, seq: u64) {
        self.cursor = seq + 1;
    }

    /// Entry `seq` is not sent (it expired): the cursor moves past it and, once nothing older is
    /// in flight, the watermark too.
    pub fn skipped(&mut self, seq: u64) {
        self.cursor = seq + 1;
    }

    /// The publish of entry `seq` ended with `outcome`. `None` when `seq` is not in flight
    /// (its link was already given up on).
    pub fn completed(&mut self, seq: u64, outcome: Outcome) -> Option<Completion> {
        let at = if self.in_flight.front() == Some(&seq) {
            0
        } else {
            self.in_flight.iter().position(|&s| s == seq)?
        };
        self.in_flight.remove(at);
        Some(match outcome {
            Outcome::Delivered => Completion::Delivered,
            Outcome::Permanent(reason) => Completion::Quarantine(reason),
            Outcome::Transient(reason) => {
                self.cursor = self.cursor.min(seq);
                self.rewind = true;
                Completion::Retry(reason)
            }
        })
    }

    /// Call after every burst of [`Drain::completed`]: when one of them was transient, the
    /// cursor goes back to the oldest entry failed or still unanswered and those unanswered are
    /// given up on; returns how many were (the link must forget them), and the Buffer sends
    /// again after a pause.
    pub fn end_of_burst(&mut self) -> Option<usize> {
        if !std::mem::take(&mut self.rewind) {
            return None;
        }
        Some(self.give_up_in_flight())
    }

    /// Gives up every publish in flight (another lane's transient failure made the Buffer forget
    /// the link's outstanding publishes): they are sent again from the oldest. Returns how many.
    pub fn give_up(&mut self) -> usize {
        self.rewind = false;
        self.give_up_in_flight()
    }

    /// The link was replaced (or lost): whatever was in flight may or may not have arrived, so
    /// everything undelivered is sent again from the oldest. Returns how many were in flight.
    pub fn link_changed(&mut self) -> usize {
        self.rewind = false;
        let abandoned = self.give_up_in_flight();
        self.cursor = 0;
        abandoned
    }

    fn give_up_in_flight(&mut self) -> usize {
        if let Some(&oldest) = self.in_flight.front() {
            self.cursor = self.cursor.min(oldest);
        }
        let abandoned = self.in_flight.len();
        self.in_flight.clear();
        abandoned
    }

    /// The new watermark to report to the journal, when it moved: up to the oldest publish still
    /// in flight (or the cursor when none is), and below any entry still to be quarantined.
    pub fn delivered_below(&self) -> Option<u64> {
        let mut done_below = self
            .in_flight
            .front()
            .map_or(self.cursor, |&seq| seq.min(self.cursor));
        if let Some((&seq, _)) = self.unquarantined.first_key_value() {
            done_below = done_below.min(seq);
        }
        (done_below > self.reported_done).then_some(done_below)
    }

    /// The journal recorded everything below `seq` as delivered.
    pub fn reported(&mut self, seq: u64) {
        self.reported_done = seq;
    }

    /// Copying entry `seq` to the quarantine failed: keep the watermark below it and try again.
    pub fn quarantine_failed(&mut self, seq: u64, reason: String) {
        self.unquarantined.insert(seq, reason);
    }

    /// The oldest entry still to be quarantined, taken out (give it back with
    /// [`Drain::quarantine_failed`] if the copy fails again).
    pub fn take_unquarantined(&mut self) -> Option<(u64, String)> {
        self.unquarantined.pop_first()
    }

    /// Publishes in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests;

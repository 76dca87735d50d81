//! The drain of every lane, pure: one [`Drain`] per lane (cursor, watermark, resend, quarantine
//! of that lane's FIFO), one window of publishes in flight shared by all lanes (AWS counts them
//! per connection), the [`Scheduler`] that gives each publish slot to a lane, and expiry by the
//! lane's `maxAgeSecs`. The Buffer reads the journal into each lane's look-ahead, asks
//! [`LaneDrain::next`] what to do, and performs it.
//!
//! A publish is keyed by one `u64` on the link ([`publish_key`]): the lane in the top two bits,
//! the lane's sequence number (always below 2^62) in the rest.
//!
//! An expired entry is not sent: the lane's cursor moves past it and its watermark passes it as
//! soon as nothing older is in flight (the Buffer counts and logs it). A transient failure in
//! any lane makes the Buffer forget every publish outstanding on the link, so every lane sends
//! again from its oldest unanswered entry; so does a link change. Order is kept per lane.

use std::collections::VecDeque;

use super::schedule::{Backlog, Scheduler};
use super::state::{Completion, Drain};
use crate::lanes::{Lane, LaneRules};
use crate::model::{CloudMessage, Outcome};

/// Sequence numbers stay below 2^62; the lane takes the two bits above.
const SEQ_BITS: u32 = 62;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Most entries read ahead per lane (bounds the memory a lane's look-ahead holds).
pub const LOOKAHEAD: usize = 32;

/// A journal entry as read: the message, or what is wrong with its stored bytes.
pub type Entry = Result<CloudMessage, String>;

/// The key of the publish of entry `seq` of `lane` (`seq` < 2^62).
pub fn publish_key(lane: Lane, seq: u64) -> u64 {
    ((lane.index() as u64) << SEQ_BITS) | (seq & SEQ_MASK)
}

/// The lane and sequence number a publish key stands for.
pub fn split_key(key: u64) -> Option<(Lane, u64)> {
    let lane = Lane::ALL.get((key >> SEQ_BITS) as usize)?;
    Some((*lane, key & SEQ_MASK))
}

/// What the Buffer does next (see [`LaneDrain::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The head of `lane` goes next: check the quota for `bytes`, then [`LaneDrain::take`] it.
    Ready {
        /// The lane whose slot it is.
        lane: Lane,
        /// Topic and payload bytes, for the quota.
        bytes: u64,
    },
    /// Entry `seq` of `lane` was `age_ms` old, beyond its lane's `maxAgeSecs`: skipped.
    Expired {
        /// Its lane.
        lane: Lane,
        /// Its sequence number.
        seq: u64,
        /// How old it was.
        age_ms: u64,
    },
    /// Entry `seq` of `lane` cannot be decoded: skipped; the Buffer quarantines it.
    Unreadable {
        /// Its lane.
        lane: Lane,
        /// Its sequence number.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },
}

/// The drain of every lane under one shared window.
#[derive(Debug)]
pub struct LaneDrain {
    window: usize,
    drains: [Drain; 3],
    /// Entries read from the journal at or after the lane's cursor, not yet sent.
    ahead: [VecDeque<(u64, Entry)>; 3],
    scheduler: Scheduler,
    max_age_ms: [Option<u64>; 3],
    /// Entries each lane reads ahead at once (more than [`LOOKAHEAD`] for a lane that batches,
    /// so that a batch can fill).
    lookahead: [usize; 3],
    /// Lanes left out of the scheduling until [`LaneDrain::release`] (a batch waits to fill).
    held: [bool; 3],
}

impl LaneDrain {
    /// A drain that keeps at most `window` (at least 1) publishes unanswered over all lanes,
    /// with the minimum shares and maximum ages of `rules`.
    pub fn new(window: usize, rules: &LaneRules) -> Self {
        let window = window.max(1);
        LaneDrain {
            window,
            drains: Lane::ALL.map(|_| Drain::new(window)),
            ahead: Lane::ALL.map(|_| VecDeque::new()),
            scheduler: Scheduler::new(rules),
            max_age_ms: Lane::ALL.map(|l| {
                rules
                    .settings(l)
                    .max_age_secs
                    .map(|s| s.saturating_mul(1000))
            }),
            lookahead: [LOOKAHEAD; 3],
            held: [false; 3],
        }
    }

    /// `lane` reads up to `lookahead` entries ahead whenever the window has room (batching: one
    /// publish takes many entries).
    pub fn set_lookahead(&mut self, lane: Lane, lookahead: usize) {
        self.lookahead[lane.index()] = lookahead.max(1);
    }

    /// Most entries `lane` reads ahead at once.
    pub fn lookahead(&self, lane: Lane) -> usize {
        self.lookahead[lane.index()]
    }

    /// The `maxAgeSecs` of `lane`, in ms.
    pub fn max_age_ms(&self, lane: Lane) -> Option<u64> {
        self.max_age_ms[lane.index()]
    }

    /// The entries of `lane` read ahead and not yet sent, oldest first.
    pub fn peek(&self, lane: Lane) -> impl Iterator<Item = &(u64, Entry)> + '_ {
        self.ahead[lane.index()].iter()
    }

    /// Leaves `lane` out of the scheduling until [`LaneDrain::release`] and forgets what it
    /// read ahead (read again then, with whatever was appended meanwhile).
    pub fn hold(&mut self, lane: Lane) {
        self.held[lane.index()] = true;
        self.ahead[lane.index()].clear();
    }

    /// Forgets what `lane` read ahead: the next [`LaneDrain::reads`] reads it again from its
    /// cursor.
    pub fn unread(&mut self, lane: Lane) {
        self.ahead[lane.index()].clear();
    }

    /// Every held lane takes part in the scheduling again.
    pub fn release(&mut self) {
        self.held = [false; 3];
    }

    /// Takes the first `count` entries of `lane` (all readable; after [`Next::Ready`]) to send
    /// as one publish (the caller built it from [`LaneDrain::peek`]): its key (that of the first)
    /// and the seq of the last. The slot is `lane`'s.
    pub fn take_run(&mut self, lane: Lane, count: usize) -> Option<(u64, u64)> {
        let backlog = self.backlog();
        let i = lane.index();
        let count = count.max(1);
        if self.ahead[i].len() < count || self.ahead[i].iter().take(count).any(|(_, e)| e.is_err())
        {
            return None;
        }
        let first = self.ahead[i].front()?.0;
        let mut last = first;
        for (seq, _) in self.ahead[i].drain(..count) {
            last = seq;
        }
        self.drains[i].sent_run(first, last);
        self.scheduler.record(lane, backlog);
        Some((publish_key(lane, first), last))
    }

    /// How many more publishes the shared window allows now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.in_flight())
    }

    /// The lanes whose look-ahead is empty, with where to read their journal and how many
    /// entries; nothing while the window is full.
    pub fn reads(&self) -> Vec<(Lane, u64, usize)> {
        if self.room() == 0 {
            return Vec::new();
        }
        let max = |l: Lane| match self.lookahead[l.index()] {
            batching if batching > LOOKAHEAD => batching,
            _ => self.room().min(LOOKAHEAD),
        };
        Lane::ALL
            .into_iter()
            .filter(|l| !self.held[l.index()] && self.ahead[l.index()].is_empty())
            .filter_map(|l| {
                let (from, _) = self.drains[l.index()].next()?;
                Some((l, from, max(l)))
            })
            .collect()
    }

    /// `entries` were read from `lane`'s journal where [`LaneDrain::reads`] said (in order);
    /// none: the lane has nothing to send (it earns no share meanwhile).
    pub fn read(&mut self, lane: Lane, entries: Vec<(u64, Entry)>) {
        if entries.is_empty() {
            self.scheduler.idle(lane);
        }
        self.ahead[lane.index()].extend(entries);
    }

    fn backlog(&self) -> Backlog {
        Lane::ALL.map(|l| !self.held[l.index()] && !self.ahead[l.index()].is_empty())
    }

    /// What to do next at `now_ms` (Unix ms), `None` when the window is full or no look-ahead
    /// holds anything: the scheduler picks the lane; its head is skipped if it expired or
    /// cannot be decoded, else it is [`Next::Ready`].
    pub fn next(&mut self, now_ms: u64) -> Option<Next> {
        if self.room() == 0 {
            return None;
        }
        let lane = self.scheduler.pick(self.backlog())?;
        let i = lane.index();
        let (seq, entry) = self.ahead[i].front()?;
        let seq = *seq;
        match entry {
            Err(detail) => {
                let detail = detail.clone();
                self.ahead[i].pop_front();
                self.drains[i].unreadable(seq);
                Some(Next::Unreadable { lane, seq, detail })
            }
            Ok(msg) => {
                let age_ms = now_ms.saturating_sub(msg.enqueued_ms);
                if self.max_age_ms[i].is_some_and(|max| age_ms > max) {
                    self.ahead[i].pop_front();
                    self.drains[i].skipped(seq);
                    return Some(Next::Expired { lane, seq, age_ms });
                }
                let bytes = (msg.topic.len() + msg.payload.len()) as u64;
                Some(Next::Ready { lane, bytes })
            }
        }
    }

    /// Takes the head of `lane` to publish (after [`Next::Ready`]): its publish key and message.
    /// The slot is recorded as `lane`'s.
    pub fn take(&mut self, lane: Lane) -> Option<(u64, CloudMessage)> {
        let backlog = self.backlog();
        let i = lane.index();
        if !matches!(self.ahead[i].front(), Some((_, Ok(_)))) {
            return None;
        }
        let (seq, Ok(msg)) = self.ahead[i].pop_front()? else {
            return None;
        };
        self.drains[i].sent(seq);
        self.scheduler.record(lane, backlog);
        Some((publish_key(lane, seq), msg))
    }

    /// The publish keyed `key` ended with `outcome`: its lane and sequence number and what to do,
    /// `None` when it is not in flight (given up on) or not a key of [`publish_key`].
    pub fn completed(&mut self, key: u64, outcome: Outcome) -> Option<(Lane, u64, Completion)> {
        let (lane, seq) = split_key(key)?;
        let completion = self.drains[lane.index()].completed(seq, outcome)?;
        if matches!(completion, Completion::Retry(_)) {
            self.ahead[lane.index()].clear();
        }
        Some((lane, seq, completion))
    }

    /// Call after every burst of [`LaneDrain::completed`]: when one was transient (in any lane),
    /// every lane gives up what it has in flight and sends again from its oldest unanswered
    /// entry; returns how many were given up (the link must forget them all).
    pub fn end_of_burst(&mut self) -> Option<usize> {
        let rewound: Vec<Option<usize>> = self.drains.iter_mut().map(Drain::end_of_burst).collect();
        if rewound.iter().all(Option::is_none) {
            return None;
        }
        let mut abandoned = 0;
        for (drain, rewound) in self.drains.iter_mut().zip(rewound) {
            abandoned += rewound.unwrap_or_else(|| drain.give_up());
        }
        self.ahead.iter_mut().for_each(VecDeque::clear);
        Some(abandoned)
    }

    /// The link was replaced (or lost): every lane sends everything undelivered again from its
    /// oldest. Returns how many publishes were in flight.
    pub fn link_changed(&mut self) -> usize {
        self.ahead.iter_mut().for_each(VecDeque::clear);
        self.drains.iter_mut().map(Drain::link_changed).sum()
    }

    /// The lanes whose watermark moved, with the new watermark to record in the journal.
    pub fn delivered_below(&self) -> Vec<(Lane, u64)> {
        Lane::ALL
            .into_iter()
            .filter_map(|l| Some((l, self.drains[l.index()].delivered_below()?)))
            .collect()
    }

    /// The journal recorded everything of `lane` below `seq` as delivered.
    pub fn reported(&mut self, lane: Lane, seq: u64) {
        self.drains[lane.index()].reported(seq);
    }

    /// Copying entry `seq` of `lane` to the quarantine failed: its watermark stays below it.
    pub fn quarantine_failed(&mut self, lane: Lane, seq: u64, reason: String) {
        self.drains[lane.index()].quarantine_failed(seq, reason);
    }

    /// The oldest entry still to be quarantined, of the highest lane that has one, taken out.
    pub fn take_unquarantined(&mut self) -> Option<(Lane, u64, String)> {
        Lane::ALL.into_iter().find_map(|l| {
            let (seq, reason) = self.drains[l.index()].take_unquarantined()?;
            Some((l, seq, reason))
        })
    }

    /// Publishes in flight over all lanes.
    pub fn in_flight(&self) -> usize {
        self.drains.iter().map(Drain::in_flight).sum()
    }

    /// Publishes of `lane` in flight.
    pub fn in_flight_of(&self, lane: Lane) -> usize {
        self.drains[lane.index()].in_flight()
    }
}

#[cfg(test)]
mod tests;

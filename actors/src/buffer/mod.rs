//! The Buffer actor: drains the journal to the cloud in key order with a bounded in-flight
//! window, deletes an entry only on `Delivered`, and re-sends everything undelivered after a
//! reconnect (at-least-once, order kept).

pub mod journal;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, warn};

use crate::messages::{
    ActorMetrics, Delivered, Flush, GetMetrics, Journaled, LinkChanged, Publish, Rejected,
};
use crate::metrics::unix_ms;
use crate::quota::Quota;
use journal::Journal;

/// AWS IoT allows 100 unacknowledged QoS 1 publishes per connection.
pub const DEFAULT_WINDOW: usize = 100;

/// Owns the drain of the journal.
pub struct Buffer {
    journal: Journal,
    publisher: Option<Recipient<Publish>>,
    in_flight: BTreeSet<u64>,
    /// Next journal key to read; everything below it is either delivered or in flight.
    cursor: u64,
    window: usize,
    quota: Option<Quota>,
    /// A pump is scheduled for when the quota allows the next message.
    throttled: bool,
    throttle_waits: u64,
    throttle_wait_total: Duration,
    sent: u64,
    delivered: u64,
    quarantined: u64,
    retries: u64,
}

impl Buffer {
    /// A buffer over `journal` that keeps at most `window` publishes unacknowledged and, with a
    /// `quota`, never sends faster than it allows.
    pub fn new(journal: Journal, window: usize, quota: Option<Quota>) -> Self {
        Buffer {
            journal,
            publisher: None,
            in_flight: BTreeSet::new(),
            cursor: 0,
            window: window.max(1),
            quota,
            throttled: false,
            throttle_waits: 0,
            throttle_wait_total: Duration::ZERO,
            sent: 0,
            delivered: 0,
            quarantined: 0,
            retries: 0,
        }
    }

    /// Sends journal entries until the window is full, the quota says wait, or the journal is
    /// drained.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Some(publisher) = self.publisher.clone() else {
            return;
        };
        if self.throttled {
            return; // a pump is already scheduled for when the quota allows
        }
        while self.in_flight.len() < self.window {
            match self.journal.first_from(self.cursor) {
                Ok(Some((seq, msg))) => {
                    if let Some(quota) = &mut self.quota {
                        let now = Instant::now();
                        let bytes = (msg.topic.len() + msg.payload.len()) as u64;
                        let wait = quota.wait_for(bytes, now);
                        if !wait.is_zero() {
                            self.throttled = true;
                            self.throttle_waits += 1;
                            self.throttle_wait_total += wait;
                            ctx.run_later(wait, |act, ctx| {
                                act.throttled = false;
                                act.pump(ctx);
                            });
                            return;
                        }
                        quota.take(bytes, now);
                    }
                    self.cursor = seq + 1;
                    self.in_flight.insert(seq);
                    self.sent += 1;
                    publisher.do_send(Publish { seq, msg });
                }
                Ok(None) => break,
                Err(journal::JournalError::BadEntry { seq, detail }) => {
                    error!("journal entry {seq} is unreadable ({detail}); moving it to quarantine");
                    self.cursor = seq + 1;
                    self.quarantine(seq, &format!("unreadable journal entry: {detail}"));
                }
                Err(e) => {
                    error!("cannot read the journal: {e}");
                    break;
                }
            }
        }
    }

    fn quarantine(&mut self, seq: u64, reason: &str) {
        self.quarantined += 1;
        if let Err(e) = self.journal.quarantine_entry(seq, reason) {
            error!("cannot quarantine journal entry {seq}: {e}");
        }
    }
}

impl Actor for Buffer {
    type Context = Context<Self>;
}

impl Handler<Journaled> for Buffer {
    type Result = ();
    fn handle(&mut self, _msg: Journaled, ctx: &mut Self::Context) {
        self.journal.take_announcement(); // before reading, so no append goes unannounced
        self.pump(ctx);
    }
}

impl Handler<LinkChanged> for Buffer {
    type Result = ();
    fn handle(&mut self, msg: LinkChanged, ctx: &mut Self::Context) {
        // Whatever was in flight on the old link may or may not have arrived: send it again.
        self.retries += self.in_flight.len() as u64;
        self.in_flight.clear();
        self.cursor = 0;
        self.publisher = msg.publisher;
        self.pump(ctx);
    }
}

impl Handler<Delivered> for Buffer {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        if let Err(e) = self.journal.remove(msg.seq) {
            error!(
                "cannot remove delivered entry {} from the journal: {e}",
                msg.seq
            );
        }
        self.in_flight.remove(&msg.seq);
        self.delivered += 1;
        self.pump(ctx);
    }
}

impl Handler<Rejected> for Buffer {
    type Result = ();
    fn handle(&mut self, msg: Rejected, ctx: &mut Self::Context) {
        if !self.in_flight.remove(&msg.seq) {
            return; // from a link that is already gone; the entry is re-sent on the new one
        }
        if msg.permanent {
            warn!(
                "message {} can never be delivered ({}); quarantined",
                msg.seq, msg.reason
            );
            self.quarantine(msg.seq, &msg.reason);
        } else {
            warn!(
                "publish of message {} failed ({}); will retry",
                msg.seq, msg.reason
            );
            self.retries += 1;
            self.cursor = self.cursor.min(msg.seq);
        }
        self.pump(ctx);
    }
}

impl Handler<Flush> for Buffer {
    type Result = ();
    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) {
        if let Err(e) = self.journal.flush() {
            error!("cannot flush the journal: {e}");
        }
    }
}

impl Handler<GetMetrics> for Buffer {
    type Result = ActorMetrics;
    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        let oldest_age_ms = match self.journal.oldest_enqueued_ms() {
            Ok(Some(t)) => unix_ms().saturating_sub(t),
            _ => 0,
        };
        ActorMetrics {
            actor: "buffer",
            counters: vec![
                ("queued", self.journal.queued()),
                ("bytes", self.journal.queued_bytes()),
                ("in_flight", self.in_flight.len() as u64),
                ("sent", self.sent),
                ("delivered", self.delivered),
                ("retried", self.retries),
                ("dropped", self.journal.dropped()),
                ("throttle_waits", self.throttle_waits),
                (
                    "throttle_wait_ms",
                    self.throttle_wait_total.as_millis() as u64,
                ),
                ("quarantined", self.quarantined),
                ("oldest_age_ms", oldest_age_ms),
            ],
        }
    }
}

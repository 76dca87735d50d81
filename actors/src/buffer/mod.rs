//! The Buffer actor: drains the journal to the cloud in key order with a bounded in-flight
//! window, publishing on the current link's [`Publisher`] and keeping the delivery tokens;
//! moves the journal's watermark only over PUBACKed (or quarantined) entries, and re-sends
//! everything undelivered after a reconnect (at-least-once, order kept).

pub mod journal;
pub mod record;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, warn};
use paho_mqtt as mqtt;

use crate::clock::unix_ms;
use crate::messages::{ActorMetrics, Flush, GetMetrics, Journaled, LinkChanged};
use crate::publisher::{is_permanent, AckNotice, Acked, Publisher};
use crate::quota::Quota;
use journal::Journal;

/// AWS IoT allows 100 unacknowledged QoS 1 publishes per connection.
pub const DEFAULT_WINDOW: usize = 100;

/// After a publish failed for a reason that may pass (the link is going down), wait this long
/// before sending again, unless the Supervisor reports a new link first.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// A drained backlog of at least this many messages gives its freed heap back to the system.
const TRIM_AFTER_BACKLOG: u64 = 10_000;

/// Returns freed heap pages to the system (glibc keeps them otherwise: after a 100,000-message
/// burst awslink stayed at ~140 MB RSS with an empty journal).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One publish waiting for its PUBACK.
struct InFlight {
    seq: u64,
    token: mqtt::DeliveryToken,
}

/// Owns the drain of the journal.
pub struct Buffer {
    journal: Journal,
    publisher: Option<Publisher>,
    /// Oldest first; at most `window` entries.
    in_flight: VecDeque<InFlight>,
    notice: Arc<AckNotice>,
    waker: Waker,
    /// Next journal key to read; everything below it is either delivered or in flight.
    cursor: u64,
    /// Everything below was reported to the journal as delivered (or quarantined).
    reported_done: u64,
    /// Entries to quarantine whose copy to the quarantine tree failed: the watermark stays
    /// below them, and every pump tries again.
    unquarantined: BTreeMap<u64, String>,
    window: usize,
    quota: Option<Quota>,
    /// A pump is scheduled for later (the quota says wait, or a publish just failed).
    throttled: bool,
    throttle_waits: u64,
    throttle_wait_total: Duration,
    sent: u64,
    delivered: u64,
    quarantined: u64,
    retries: u64,
    /// Largest journal depth seen since the heap was last trimmed.
    backlog_peak: u64,
    trims: u64,
}

impl Buffer {
    /// A buffer over `journal` that keeps at most `window` publishes unacknowledged and, with a
    /// `quota`, never sends faster than it allows.
    pub fn new(journal: Journal, window: usize, quota: Option<Quota>) -> Self {
        let notice = Arc::new(AckNotice::default());
        let waker = notice.waker();
        Buffer {
            journal,
            publisher: None,
            in_flight: VecDeque::new(),
            notice,
            waker,
            cursor: 0,
            reported_done: 0,
            unquarantined: BTreeMap::new(),
            window: window.max(1),
            quota,
            throttled: false,
            throttle_waits: 0,
            throttle_wait_total: Duration::ZERO,
            sent: 0,
            delivered: 0,
            quarantined: 0,
            retries: 0,
            backlog_peak: 0,
            trims: 0,
        }
    }

    /// Sends what the window, the quota and the journal allow, then takes the publishes that
    /// already finished, until neither makes progress.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.retry_quarantine();
        loop {
            self.fill(ctx);
            if !self.reap(ctx) {
                break;
            }
        }
        self.report_done();
    }

    /// Tells the journal how far everything is delivered or quarantined: up to the oldest
    /// publish still in flight, or to the cursor when none is.
    fn report_done(&mut self) {
        let mut done_below = self
            .in_flight
            .front()
            .map_or(self.cursor, |f| f.seq.min(self.cursor));
        if let Some((&seq, _)) = self.unquarantined.first_key_value() {
            done_below = done_below.min(seq);
        }
        if done_below <= self.reported_done {
            return;
        }
        match self.journal.delivered_below(done_below) {
            Ok(()) => self.reported_done = done_below,
            Err(e) => error!("cannot record delivered messages in the journal: {e}"),
        }
        self.trim_after_backlog();
    }

    /// Sends journal entries until the window is full, the quota says wait, or the journal is
    /// drained. Reads the journal in one range scan per round.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.throttled || self.publisher.is_none() {
            return;
        }
        while self.in_flight.len() < self.window {
            let room = self.window - self.in_flight.len();
            let entries = match self.journal.entries_from(self.cursor, room) {
                Ok(entries) if entries.is_empty() => return,
                Ok(entries) => entries,
                Err(e) => {
                    error!("cannot read the journal: {e}");
                    return;
                }
            };
            for (seq, entry) in entries {
                let msg = match entry {
                    Ok(msg) => msg,
                    Err(detail) => {
                        error!(
                            "journal entry {seq} is unreadable ({detail}); moving it to quarantine"
                        );
                        self.cursor = seq + 1;
                        self.quarantine(seq, &format!("unreadable journal entry: {detail}"));
                        continue;
                    }
                };
                if let Some(quota) = &mut self.quota {
                    let now = Instant::now();
                    let bytes = (msg.topic.len() + msg.payload.len()) as u64;
                    let wait = quota.wait_for(bytes, now);
                    if !wait.is_zero() {
                        self.throttle_waits += 1;
                        self.throttle_wait_total += wait;
                        self.pump_later(wait, ctx);
                        return;
                    }
                    quota.take(bytes, now);
                }
                let Some(publisher) = &self.publisher else {
                    return;
                };
                self.cursor = seq + 1;
                self.sent += 1;
                let token = publisher.publish(msg);
                self.in_flight.push_back(InFlight { seq, token });
            }
        }
    }

    fn pump_later(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        self.throttled = true;
        ctx.run_later(wait, |act, ctx| {
            act.throttled = false;
            act.pump(ctx);
        });
    }

    /// Polls every outstanding delivery token (which also registers the waker on new ones):
    /// PUBACKed entries leave the journal, failed ones are quarantined (permanent) or sent again
    /// after [`RETRY_AFTER`]. True when the window has room again and sending may go on now.
    fn reap(&mut self, ctx: &mut Context<Self>) -> bool {
        let mut cx = std::task::Context::from_waker(&self.waker);
        let mut done = Vec::new();
        self.in_flight
            .retain_mut(|f| match Pin::new(&mut f.token).poll(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(result) => {
                    done.push((f.seq, result));
                    false
                }
            });
        if done.is_empty() {
            return false;
        }
        if let Some(publisher) = &self.publisher {
            publisher.answered(done.len());
        }
        let mut retry = false;
        for (seq, result) in done {
            match result {
                Ok(()) => self.delivered += 1,
                Err(e) if is_permanent(&e) => {
                    warn!("message {seq} can never be delivered ({e}); quarantined");
                    self.quarantine(seq, &e.to_string());
                }
                Err(e) => {
                    warn!("publish of message {seq} failed ({e}); will retry");
                    self.retries += 1;
                    self.cursor = self.cursor.min(seq);
                    retry = true;
                }
            }
        }
        if retry {
            // Send everything from the oldest failed or still unanswered entry again, in order
            // (as after a reconnect): re-sending only the failed one would reorder it behind
            // its successors and count the successors twice in the window.
            if let Some(oldest) = self.in_flight.iter().map(|f| f.seq).min() {
                self.cursor = self.cursor.min(oldest);
            }
            self.retries += self.in_flight.len() as u64;
            if let Some(publisher) = &self.publisher {
                publisher.answered(self.in_flight.len());
            }
            self.in_flight.clear();
            if !self.throttled {
                self.pump_later(RETRY_AFTER, ctx);
            }
        }
        !self.throttled
    }

    /// Once a large backlog is fully delivered, hands the memory it used back to the system.
    /// Only after a real backlog (not every N messages of a steady flow: a trim of a large,
    /// fragmented heap stalled the drain for tens of milliseconds).
    fn trim_after_backlog(&mut self) {
        let queued = self.journal.queued();
        self.backlog_peak = self.backlog_peak.max(queued);
        if queued == 0 && self.in_flight.is_empty() && self.backlog_peak >= TRIM_AFTER_BACKLOG {
            self.backlog_peak = 0;
            self.trims += 1;
            release_free_memory();
        }
    }

    /// Copies entry `seq` to the quarantine tree; if that fails, the entry stays in the queue
    /// (the watermark stops below it) and is tried again at every pump.
    fn quarantine(&mut self, seq: u64, reason: &str) {
        match self.journal.quarantine_entry(seq, reason) {
            Ok(()) => self.quarantined += 1,
            Err(e) => {
                error!("cannot quarantine journal entry {seq}: {e}; keeping it queued and trying again");
                self.unquarantined.insert(seq, reason.to_string());
            }
        }
    }

    fn retry_quarantine(&mut self) {
        while let Some((seq, reason)) = self.unquarantined.pop_first() {
            if let Err(e) = self.journal.quarantine_entry(seq, &reason) {
                warn!("still cannot quarantine journal entry {seq}: {e}");
                self.unquarantined.insert(seq, reason);
                return;
            }
            self.quarantined += 1;
        }
    }
}

impl Actor for Buffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.notice.attach(ctx.address().recipient());
    }
}

impl Handler<Journaled> for Buffer {
    type Result = ();
    fn handle(&mut self, _msg: Journaled, ctx: &mut Self::Context) {
        self.journal.take_announcement(); // before reading, so no append goes unannounced
        self.pump(ctx);
    }
}

impl Handler<Acked> for Buffer {
    type Result = ();
    fn handle(&mut self, _msg: Acked, ctx: &mut Self::Context) {
        self.notice.take(); // before polling, so no completion goes unnoticed
        self.pump(ctx);
    }
}

impl Handler<LinkChanged> for Buffer {
    type Result = ();
    fn handle(&mut self, msg: LinkChanged, ctx: &mut Self::Context) {
        // Whatever was in flight on the old link may or may not have arrived: send it again.
        self.retries += self.in_flight.len() as u64;
        self.in_flight.clear();
        if let Some(old) = self.publisher.take() {
            old.retire();
        }
        self.cursor = 0;
        self.publisher = msg.publisher;
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
                ("heap_trims", self.trims),
                ("oldest_age_ms", oldest_age_ms),
            ],
        }
    }
}

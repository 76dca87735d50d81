//! The Buffer actor: drains the journal to the cloud in key order with a bounded in-flight
//! window, publishing on the current link's [`Publish`](crate::model::Publish) handle. The rules (cursor, window,
//! watermark, resend, quarantine) are the pure [`state::Drain`]; this shell reads the journal,
//! paces with the quota, publishes, and records what the rules decide: the watermark moves only
//! over acknowledged (or quarantined) entries, and everything undelivered is sent again after a
//! reconnect (at-least-once, order kept).

pub mod lanes;
pub mod schedule;
pub mod state;

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, warn};

use crate::billing::Meter;
use crate::clock::unix_ms;
use crate::cloud::publisher::AckNotice;
use crate::fault::{self, Fault};
use crate::lanes::Lane;
use crate::messages::{Acked, ActorMetrics, Flush, GetMetrics, Journaled, LinkChanged};
use crate::model::{Link, Outcome};
use crate::quota::Quota;
use crate::store::Journal;
use state::{Completion, Drain};

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

/// Owns the drain of the journal.
pub struct Buffer {
    journal: Journal,
    publisher: Option<Link>,
    drain: Drain,
    notice: Arc<AckNotice>,
    waker: Waker,
    /// Completions taken from the link, reused between bursts.
    done: Vec<(u64, Outcome)>,
    quota: Option<Quota>,
    /// A pump is scheduled for later (the quota says wait, or a publish just failed).
    throttled: bool,
    throttle_waits: u64,
    throttle_wait_total: Duration,
    sent: u64,
    /// Billed units and Basic Ingest publishes of everything sent.
    meter: Meter,
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
            drain: Drain::new(window),
            notice,
            waker,
            done: Vec::new(),
            quota,
            throttled: false,
            throttle_waits: 0,
            throttle_wait_total: Duration::ZERO,
            sent: 0,
            meter: Meter::default(),
            delivered: 0,
            quarantined: 0,
            retries: 0,
            backlog_peak: 0,
            trims: 0,
        }
    }

    /// Counts the publishes with `meter` (billed units, Basic Ingest per rule).
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = meter;
        self
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

    /// Tells the journal how far everything is delivered or quarantined.
    fn report_done(&mut self) {
        let Some(done_below) = self.drain.delivered_below() else {
            return;
        };
        match self.journal.delivered_below(Lane::Telemetry, done_below) {
            Ok(()) => self.drain.reported(done_below),
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
        while let Some((from, room)) = self.drain.next() {
            let entries = match self.journal.entries_from(Lane::Telemetry, from, room) {
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
                        self.drain.unreadable(seq);
                        self.quarantine(seq, format!("unreadable journal entry: {detail}"));
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
                self.drain.sent(seq);
                self.sent += 1;
                self.meter.count(&msg.topic, msg.payload.len());
                publisher.publish(seq, msg);
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

    /// Takes the publishes the link completed (which also registers the waker on new ones):
    /// acknowledged entries leave the journal, failed ones are quarantined (permanent) or sent
    /// again after [`RETRY_AFTER`]. True when the window has room again and sending may go on now.
    fn reap(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(publisher) = &self.publisher else {
            return false;
        };
        let mut done = std::mem::take(&mut self.done);
        publisher.completed(&self.waker, &mut done);
        if done.is_empty() {
            self.done = done;
            return false;
        }
        publisher.answered(done.len());
        for (seq, outcome) in done.drain(..) {
            match self.drain.completed(seq, outcome) {
                None => {}
                Some(Completion::Delivered) => self.delivered += 1,
                Some(Completion::Quarantine(reason)) => {
                    warn!("message {seq} can never be delivered ({reason}); quarantined");
                    self.quarantine(seq, reason);
                }
                Some(Completion::Retry(e)) => {
                    warn!("publish of message {seq} failed ({e}); will retry");
                    self.retries += 1;
                }
            }
        }
        self.done = done;
        if let Some(abandoned) = self.drain.end_of_burst() {
            // Send everything from the oldest failed or still unanswered entry again, in order
            // (as after a reconnect).
            self.retries += abandoned as u64;
            if let Some(publisher) = &self.publisher {
                publisher.forget_outstanding();
                publisher.answered(abandoned);
            }
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
        let queued = self.journal.queued_total();
        self.backlog_peak = self.backlog_peak.max(queued);
        if queued == 0 && self.drain.in_flight() == 0 && self.backlog_peak >= TRIM_AFTER_BACKLOG {
            self.backlog_peak = 0;
            self.trims += 1;
            release_free_memory();
        }
    }

    /// Copies entry `seq` to the quarantine tree; if that fails, the entry stays in the queue
    /// (the watermark stops below it) and is tried again at every pump.
    fn quarantine(&mut self, seq: u64, reason: String) {
        match self.journal.quarantine_entry(Lane::Telemetry, seq, &reason) {
            Ok(()) => self.quarantined += 1,
            Err(e) => {
                error!("cannot quarantine journal entry {seq}: {e}; keeping it queued and trying again");
                self.drain.quarantine_failed(seq, reason);
            }
        }
    }

    fn retry_quarantine(&mut self) {
        while let Some((seq, reason)) = self.drain.take_unquarantined() {
            if let Err(e) = self.journal.quarantine_entry(Lane::Telemetry, seq, &reason) {
                warn!("still cannot quarantine journal entry {seq}: {e}");
                self.drain.quarantine_failed(seq, reason);
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
        match fault::active() {
            Some(Fault::BufferPanic) => panic!("fault injection: the Buffer panics"),
            Some(Fault::BufferStop) => return ctx.stop(),
            Some(Fault::ArbiterStop) => return System::current().stop(),
            Some(Fault::Wedge) => {
                log::warn!("fault injection: the Buffer wedges its thread");
                loop {
                    std::thread::park();
                }
            }
            _ => {}
        }
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
        self.retries += self.drain.link_changed() as u64;
        if let Some(old) = self.publisher.take() {
            old.forget_outstanding();
            old.retire();
        }
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
        let oldest_age_ms = Lane::ALL
            .into_iter()
            .filter_map(|lane| self.journal.oldest_enqueued_ms(lane).ok().flatten())
            .min()
            .map_or(0, |t| unix_ms().saturating_sub(t));
        let mut metrics = ActorMetrics {
            actor: "buffer",
            counters: vec![
                ("queued", self.journal.queued_total()),
                ("bytes", self.journal.queued_bytes_total()),
                ("in_flight", self.drain.in_flight() as u64),
                ("sent", self.sent),
                ("delivered", self.delivered),
                ("retried", self.retries),
                ("dropped", self.journal.dropped_total()),
                ("throttle_waits", self.throttle_waits),
                (
                    "throttle_wait_ms",
                    self.throttle_wait_total.as_millis() as u64,
                ),
                ("quarantined", self.quarantined),
                ("quarantine_kept", self.journal.quarantine_len()),
                ("quarantine_dropped", self.journal.quarantine_dropped()),
                ("heap_trims", self.trims),
                ("oldest_age_ms", oldest_age_ms),
            ],
        };
        metrics.counters.extend(self.meter.counters());
        metrics
    }
}

#[cfg(test)]
mod tests;

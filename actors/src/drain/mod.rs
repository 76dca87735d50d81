//! The Buffer actor: drains the journal's lanes to the cloud, each lane in key order, under one
//! bounded in-flight window and one quota, publishing on the current link's
//! [`Publish`](crate::model::Publish) handle. The rules are pure: [`state::Drain`] per lane
//! (cursor, watermark, resend, quarantine), [`schedule::Scheduler`] (which lane gets a publish
//! slot: strict priority, minimum shares), both under [`lanes::LaneDrain`] (shared window,
//! expiry). This shell reads the journal, paces with the quota, publishes, and records what the
//! rules decide: a lane's watermark moves only over acknowledged, quarantined or expired
//! entries, and everything undelivered is sent again after a reconnect (at-least-once, order
//! kept per lane).

pub mod batch;
pub mod lanes;
mod metrics;
pub mod schedule;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, warn};

use crate::batching::Batching;
use crate::billing::Meter;
use crate::clock::{unix_ms, LogLimiter};
use crate::cloud::publisher::AckNotice;
use crate::fault::{self, Fault};
use crate::lanes::{Lane, LaneRules};
use crate::messages::{Acked, Flush, Journaled, LinkChanged};
use crate::model::{Link, Outcome};
use crate::quota::Quota;
use crate::store::Journal;
use batch::Plan;
use lanes::{LaneDrain, Next};
use state::Completion;

/// AWS IoT allows 100 unacknowledged QoS 1 publishes per connection.
pub const DEFAULT_WINDOW: usize = 100;

/// After a publish failed for a reason that may pass (the link is going down), wait this long
/// before sending again, unless the Supervisor reports a new link first.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Entries the events and telemetry lanes read ahead when batching is configured: a 5 KB batch
/// holds up to ~155 of the smallest elements (`{"ts":…,"payload":1}`); the default look-ahead of
/// 32 would cut every batch short. Control is never batched and keeps the default.
const BATCH_LOOKAHEAD: usize = 160;

/// A moved watermark is made durable (sled flushed on the journal's thread) this long after.
const PERSIST_AFTER: Duration = Duration::from_secs(1);

/// At most one log line per lane about expired messages this often.
const EXPIRED_LOG_EVERY: Duration = Duration::from_secs(10);

/// A drained backlog of at least this many messages gives its freed heap back to the system.
const TRIM_AFTER_BACKLOG: u64 = 10_000;

/// How often the Buffer looks at its outstanding publishes when nothing else makes it.
const OUTSTANDING_CHECK: Duration = Duration::from_millis(500);

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
    window: usize,
    drain: LaneDrain,
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
    /// Publishes started per lane.
    lane_sent: [u64; 3],
    /// Billed messaging units of the publishes started, per lane (Basic Ingest: none).
    lane_billed: [u64; 3],
    /// Entries not sent because they were older than their lane's `maxAgeSecs`, per lane.
    expired: [u64; 3],
    /// Expired entries per lane not yet logged, and the limiter of those log lines.
    expired_unlogged: [u64; 3],
    expired_log: [LogLimiter; 3],
    /// Billed units and Basic Ingest publishes of everything sent.
    meter: Meter,
    delivered: u64,
    quarantined: u64,
    retries: u64,
    /// Largest journal depth seen since the heap was last trimmed.
    backlog_peak: u64,
    trims: u64,
    /// The `batching` rules (empty: nothing is batched) and the payload limit batches keep.
    batching: Batching,
    max_payload_bytes: usize,
    /// Per lane: the last read returned everything the lane held (a batch may wait to fill).
    caught_up: [bool; 3],
    /// Entries and the seq of the last entry per publish key of the batches in flight (a key not
    /// in it is one entry).
    batch_sizes: HashMap<u64, (usize, u64)>,
    /// When the pump scheduled for a waiting batch runs (Unix ms).
    batch_wake_ms: Option<u64>,
    batches_sent: u64,
    batched_messages: u64,
    /// A flush of the moved watermarks is scheduled.
    persist_pending: bool,
}

impl Buffer {
    /// A buffer over `journal` that keeps at most `window` publishes unacknowledged (over all
    /// lanes) and, with a `quota`, never sends faster than it allows; default lanes.
    pub fn new(journal: Journal, window: usize, quota: Option<Quota>) -> Self {
        let notice = Arc::new(AckNotice::default());
        let waker = notice.waker();
        Buffer {
            journal,
            publisher: None,
            window,
            drain: LaneDrain::new(window, &LaneRules::default()),
            notice,
            waker,
            done: Vec::new(),
            quota,
            throttled: false,
            throttle_waits: 0,
            throttle_wait_total: Duration::ZERO,
            sent: 0,
            lane_sent: [0; 3],
            lane_billed: [0; 3],
            expired: [0; 3],
            expired_unlogged: [0; 3],
            expired_log: Default::default(),
            meter: Meter::default(),
            delivered: 0,
            quarantined: 0,
            retries: 0,
            backlog_peak: 0,
            trims: 0,
            batching: Batching::default(),
            max_payload_bytes: usize::MAX,
            caught_up: [false; 3],
            batch_sizes: HashMap::new(),
            batch_wake_ms: None,
            batches_sent: 0,
            batched_messages: 0,
            persist_pending: false,
        }
    }

    /// Sends consecutive entries of one cloud topic journaled under a `batching` rule as one
    /// publish of at most `max_payload_bytes` (never in the control lane).
    pub fn with_batching(mut self, batching: Batching, max_payload_bytes: usize) -> Self {
        self.batching = batching;
        self.set_batch_lookahead();
        self.max_payload_bytes = max_payload_bytes;
        self
    }

    /// Counts the publishes with `meter` (billed units, Basic Ingest per rule).
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = meter;
        self
    }

    /// Drains the lanes with the minimum shares and maximum ages of `rules`.
    pub fn with_lanes(mut self, rules: &LaneRules) -> Self {
        self.drain = LaneDrain::new(self.window, rules);
        self.set_batch_lookahead();
        self
    }

    /// With batching, the lanes that batch (events, telemetry) read [`BATCH_LOOKAHEAD`] ahead.
    fn set_batch_lookahead(&mut self) {
        if !self.batching.is_empty() {
            self.drain.set_lookahead(Lane::Events, BATCH_LOOKAHEAD);
            self.drain.set_lookahead(Lane::Telemetry, BATCH_LOOKAHEAD);
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
        if self.report_done() && !self.persist_pending {
            self.persist_pending = true;
            ctx.run_later(PERSIST_AFTER, |act, _| {
                act.persist_pending = false;
                act.journal.persist_soon();
            });
        }
    }

    /// Tells the journal how far each lane is delivered, quarantined or expired; true when a
    /// watermark moved.
    fn report_done(&mut self) -> bool {
        let moved = self.drain.delivered_below();
        if moved.is_empty() {
            return false;
        }
        for (lane, done_below) in moved {
            match self.journal.delivered_below(lane, done_below) {
                Ok(()) => self.drain.reported(lane, done_below),
                Err(e) => error!(
                    "cannot record delivered messages of lane {} in the journal: {e}",
                    lane.name()
                ),
            }
        }
        self.trim_after_backlog();
        true
    }

    /// Sends journal entries until the window is full, the quota says wait, or every lane is
    /// drained; the scheduler gives each publish slot to a lane. Each lane's journal is read
    /// into its look-ahead in one range scan when the look-ahead runs empty.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.throttled || self.publisher.is_none() {
            return;
        }
        // A lane read empty in this round is not read again until the next one.
        let mut exhausted = [false; 3];
        self.drain.release();
        loop {
            for (lane, from, max) in self.drain.reads() {
                if exhausted[lane.index()] {
                    continue;
                }
                let entries = match self.journal.entries_from(lane, from, max) {
                    Ok(entries) => entries,
                    Err(e) => {
                        error!("cannot read lane {} of the journal: {e}", lane.name());
                        Vec::new()
                    }
                };
                exhausted[lane.index()] = entries.is_empty();
                self.caught_up[lane.index()] = entries.len() < max;
                self.drain.read(lane, entries);
            }
            match self.drain.next(unix_ms()) {
                None => break,
                Some(Next::Expired { lane, seq, age_ms }) => self.expired(lane, seq, age_ms),
                Some(Next::Unreadable { lane, seq, detail }) => {
                    error!(
                        "journal entry {seq} of lane {} is unreadable ({detail}); moving it to quarantine",
                        lane.name()
                    );
                    self.quarantine(lane, seq, format!("unreadable journal entry: {detail}"));
                }
                Some(Next::Ready { lane, bytes }) => {
                    let plan = self.batch_plan(lane);
                    let bytes = match &plan {
                        Plan::Wait { due_ms } => {
                            self.drain.hold(lane);
                            self.wake_at(*due_ms, ctx);
                            continue;
                        }
                        Plan::Refill => {
                            self.drain.unread(lane);
                            continue;
                        }
                        Plan::Batch { message, .. } => {
                            (message.topic.len() + message.payload.len()) as u64
                        }
                        Plan::Single => bytes,
                    };
                    if let Some(quota) = &mut self.quota {
                        let now = Instant::now();
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
                    let (key, msg) = match plan {
                        Plan::Batch { count, message } => {
                            let Some((key, last)) = self.drain.take_run(lane, count) else {
                                break;
                            };
                            self.batch_sizes.insert(key, (count, last));
                            self.batches_sent += 1;
                            self.batched_messages += count as u64;
                            (key, message)
                        }
                        _ => match self.drain.take(lane) {
                            Some(taken) => taken,
                            None => break,
                        },
                    };
                    self.sent += 1;
                    self.lane_sent[lane.index()] += 1;
                    self.lane_billed[lane.index()] +=
                        self.meter.count(&msg.topic, msg.payload.len());
                    publisher.publish(key, msg);
                }
            }
        }
        self.log_expired();
    }

    /// Whether the head of `lane` goes out alone, in a batch, or waits for its batch to fill.
    fn batch_plan(&self, lane: Lane) -> Plan {
        if self.batching.is_empty() || lane == Lane::Control {
            return Plan::Single;
        }
        let cx = batch::Context {
            max_payload_bytes: self.max_payload_bytes,
            caught_up: self.caught_up[lane.index()],
            lookahead: self.drain.lookahead(lane),
            max_age_ms: self.drain.max_age_ms(lane),
            now_ms: unix_ms(),
        };
        batch::plan(self.drain.peek(lane), &self.batching, cx)
    }

    /// Pumps again at `due_ms` (Unix ms), when a waiting batch is due.
    fn wake_at(&mut self, due_ms: u64, ctx: &mut Context<Self>) {
        if self.batch_wake_ms.is_some_and(|at| at <= due_ms) {
            return;
        }
        self.batch_wake_ms = Some(due_ms);
        let wait = Duration::from_millis(due_ms.saturating_sub(unix_ms()));
        ctx.run_later(wait, |act, ctx| {
            act.batch_wake_ms = None;
            act.pump(ctx);
        });
    }

    /// Entry `seq` of `lane` was not sent: older than the lane's `maxAgeSecs`.
    fn expired(&mut self, lane: Lane, seq: u64, age_ms: u64) {
        let i = lane.index();
        self.expired[i] += 1;
        self.expired_unlogged[i] += 1;
        if self.expired_unlogged[i] == 1 && self.expired_log[i].ready(EXPIRED_LOG_EVERY) {
            warn!(
                "message {seq} of lane {} expired ({} s old, beyond its maxAgeSecs); not sent",
                lane.name(),
                age_ms / 1000
            );
            self.expired_unlogged[i] = 0;
        }
    }

    /// One line per lane for the expired messages not logged yet, at most every
    /// [`EXPIRED_LOG_EVERY`].
    fn log_expired(&mut self) {
        for lane in Lane::ALL {
            let i = lane.index();
            let n = self.expired_unlogged[i];
            if n > 0 && self.expired_log[i].ready(EXPIRED_LOG_EVERY) {
                warn!(
                    "{n} more messages of lane {} expired (older than its maxAgeSecs); not sent ({} in all)",
                    lane.name(),
                    self.expired[i]
                );
                self.expired_unlogged[i] = 0;
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

    /// Takes the publishes the link completed (or found dropped by the endpoint):
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
        for (key, outcome) in done.drain(..) {
            let Some((lane, seq, completion)) = self.drain.completed(key, outcome) else {
                continue;
            };
            let (entries, last) = self.batch_sizes.remove(&key).unwrap_or((1, seq));
            match completion {
                Completion::Delivered => self.delivered += entries as u64,
                Completion::Quarantine(reason) => {
                    warn!(
                        "message {seq} of lane {} can never be delivered ({reason}); quarantined",
                        lane.name()
                    );
                    // Every entry of the run, first to last (consecutive: entries leave a lane
                    // only below its watermark or from its head).
                    for seq in seq..=last.max(seq) {
                        self.quarantine(lane, seq, reason.clone());
                    }
                }
                Completion::Retry(e) => {
                    warn!(
                        "publish of message {seq} of lane {} failed ({e}); will retry",
                        lane.name()
                    );
                    self.retries += 1;
                }
            }
        }
        self.done = done;
        if let Some(abandoned) = self.drain.end_of_burst() {
            self.batch_sizes.clear();
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

    /// Copies entry `seq` of `lane` to the quarantine tree; if that fails, the entry stays in
    /// the queue (the lane's watermark stops below it) and is tried again at every pump.
    fn quarantine(&mut self, lane: Lane, seq: u64, reason: String) {
        match self.journal.quarantine_entry(lane, seq, &reason) {
            Ok(()) => self.quarantined += 1,
            Err(e) => {
                error!(
                    "cannot quarantine journal entry {seq} of lane {}: {e}; keeping it queued and trying again",
                    lane.name()
                );
                self.drain.quarantine_failed(lane, seq, reason);
            }
        }
    }

    fn retry_quarantine(&mut self) {
        while let Some((lane, seq, reason)) = self.drain.take_unquarantined() {
            if let Err(e) = self.journal.quarantine_entry(lane, seq, &reason) {
                warn!(
                    "still cannot quarantine journal entry {seq} of lane {}: {e}",
                    lane.name()
                );
                self.drain.quarantine_failed(lane, seq, reason);
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
        // A publish the endpoint dropped is found by a reap once its grace has passed
        // (cloud/inflight.rs); while publishes are outstanding, reap at least this often, so that
        // also the last publish before a pause in the traffic is sent again on this link.
        ctx.run_interval(OUTSTANDING_CHECK, |act, ctx| {
            if act.publisher.is_some() && act.drain.in_flight() > 0 {
                act.pump(ctx);
            }
        });
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
        self.batch_sizes.clear();
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

#[cfg(test)]
mod tests;

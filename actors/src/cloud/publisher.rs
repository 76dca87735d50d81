//! The [`Publish`] side of a connected CloudLink, handed to the Buffer (through the Supervisor)
//! while the link is up.
//!
//! The Buffer publishes by calling [`Publisher::publish`] (no actor message per publish): the
//! packet is encoded on the Buffer's thread into the link's outbox, and the link's I/O thread
//! writes everything queued at each wake-up (one TLS record per 16 KiB, not one per publish). A
//! PUBACK wakes the Buffer through [`AckNotice`], which sends one [`Acked`] notice per burst of
//! completions. Measured in `bench/`: an actor message per publish and per PUBACK (plus a spawned
//! future per token) cost a mailbox hop, an allocation and a thread wake-up each, and kept
//! awslink's CPU per message at 3× the bridge's.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::QoS;

use super::inflight::OVERTAKEN_GRACE;
use super::session::{Outbox, Pending};
use crate::clock::mono_ms;
use crate::messages::Acked;
use crate::model::{CloudMessage, Outcome, Publish};

/// How far the endpoint is behind: written by the Buffer, read by the CloudLink's watchdog.
#[derive(Debug, Default)]
pub struct Progress {
    outstanding: AtomicUsize,
    /// Since when (monotonic ms) the endpoint has answered none of the outstanding publishes;
    /// 0 while nothing is outstanding.
    waiting_since_ms: AtomicU64,
}

impl Progress {
    /// One more publish is waiting for its PUBACK.
    pub fn sent(&self) {
        if self.outstanding.fetch_add(1, Ordering::AcqRel) == 0 {
            self.waiting_since_ms.store(mono_ms(), Ordering::Release);
        }
    }

    /// `n` publishes were answered (PUBACK or error): the endpoint is alive.
    pub fn answered(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Saturating: a count the drain makes twice must not wrap to a huge "outstanding".
        let before = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some(o.saturating_sub(n))
            })
            .unwrap_or(0);
        let since = if before > n { mono_ms() } else { 0 };
        self.waiting_since_ms.store(since, Ordering::Release);
    }

    /// The link was replaced: nothing is outstanding on this one any more.
    pub fn reset(&self) {
        self.outstanding.store(0, Ordering::Release);
        self.waiting_since_ms.store(0, Ordering::Release);
    }

    /// Publishes outstanding and how long the endpoint has been silent about them, if any are.
    pub fn stalled(&self) -> Option<(usize, Duration)> {
        let since = self.waiting_since_ms.load(Ordering::Acquire);
        let outstanding = self.outstanding.load(Ordering::Acquire);
        (since != 0 && outstanding > 0).then(|| {
            (
                outstanding,
                Duration::from_millis(mono_ms().saturating_sub(since)),
            )
        })
    }
}

/// Publishes on one connected cloud link: encodes each publish into the link's [`Outbox`] and
/// wakes its I/O thread ([`crate::cloud::session`]), which writes and completes them.
pub struct Publisher {
    outbox: Arc<Outbox>,
    progress: Arc<Progress>,
    attempt: u64,
    /// At most this many QoS 1 publishes unacknowledged on the connection (AWS: 100).
    max_in_flight: usize,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("attempt", &self.attempt)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Publisher {
    /// The publisher of link attempt `attempt` over `outbox`, whose watchdog reads `progress`;
    /// it keeps at most `max_in_flight` QoS 1 publishes unacknowledged.
    pub fn new(
        outbox: Arc<Outbox>,
        progress: Arc<Progress>,
        attempt: u64,
        max_in_flight: usize,
    ) -> Self {
        Publisher {
            outbox,
            progress,
            attempt,
            max_in_flight: max_in_flight.max(1),
        }
    }
}

impl Publish for Publisher {
    /// Encodes a publish (QoS 0 or 1) for the I/O thread; it completes on PUBACK (QoS 1) or once
    /// written (QoS 0). On a link whose I/O thread has ended it stays outstanding until the
    /// drain forgets it (the link is being replaced).
    fn publish(&self, seq: u64, msg: CloudMessage) {
        let qos = if msg.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut pending = self.outbox.lock();
        if pending.ended {
            return;
        }
        // Every outcome below is counted by the drain as an answer.
        self.progress.sent();
        if let Err(problem) = publish_problem(&msg) {
            pending.finish(seq, Outcome::Permanent(problem));
            return;
        }
        let pkid = match qos {
            QoS::AtMostOnce => 0,
            _ => {
                if pending.inflight.len() >= self.max_in_flight {
                    // Frees what has expired: publishes the drain gave up on, and dropped ones
                    // (whose outcome the drain is woken for).
                    if report_dropped(&mut pending) {
                        pending.wake_drain();
                    }
                }
                if pending.inflight.len() >= self.max_in_flight {
                    let detail = format!(
                        "{} publishes already unacknowledged on this connection (the limit is {})",
                        pending.inflight.len(),
                        self.max_in_flight
                    );
                    pending.finish(seq, Outcome::Transient(detail));
                    return;
                }
                match pending.inflight.start(seq) {
                    Some(pkid) => pkid,
                    None => {
                        let detail = "65,535 publishes unacknowledged".to_string();
                        pending.finish(seq, Outcome::Transient(detail));
                        return;
                    }
                }
            }
        };
        let packet = v4::Publish {
            dup: false,
            qos,
            retain: false,
            topic: msg.topic,
            pkid,
            payload: Bytes::from(msg.payload),
        };
        let before = pending.out.len();
        if let Err(e) = packet.write(&mut pending.out) {
            // Not reached (publish_problem checked the sizes): leave no partial packet behind.
            pending.out.truncate(before);
            pending.inflight.cancel(pkid);
            pending.finish(seq, Outcome::Permanent(format!("cannot encode: {e}")));
            return;
        }
        if qos == QoS::AtMostOnce {
            let epoch = pending.epoch;
            pending.out_qos0.push((epoch, seq));
        }
        drop(pending);
        self.outbox.wake();
    }

    /// Collects the publishes that finished since the last call, and gives up on those the
    /// endpoint dropped ([`crate::cloud::inflight`]).
    fn completed(&self, waker: &Waker, done: &mut Vec<(u64, Outcome)>) {
        let mut pending = self.outbox.lock();
        if !pending.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            pending.waker = Some(waker.clone());
        }
        report_dropped(&mut pending);
        done.append(&mut pending.done);
    }

    fn forget_outstanding(&self) {
        let mut pending = self.outbox.lock();
        pending.inflight.forget(Instant::now());
        pending.done.clear();
        // QoS 0 publishes still being written are not reported either.
        pending.epoch += 1;
    }

    fn answered(&self, n: usize) {
        self.progress.answered(n);
    }

    fn retire(&self) {
        self.progress.reset();
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }
}

/// Moves the publishes [`crate::cloud::inflight`] finds dropped by the endpoint to the finished
/// ones, as transient failures; true when there were any.
fn report_dropped(pending: &mut Pending) -> bool {
    let Pending { inflight, done, .. } = pending;
    let before = done.len();
    inflight.overdue(Instant::now(), |key| done.push((key, dropped())));
    done.len() > before
}

/// A publish the endpoint never acknowledged although it acknowledged one sent later: dropped
/// (AWS drops what exceeds its limits without a PUBACK). It is sent again.
fn dropped() -> Outcome {
    Outcome::Transient(format!(
        "no PUBACK {} s after a later publish was acknowledged: the endpoint dropped it (AWS drops publishes over its limits)",
        OVERTAKEN_GRACE.as_secs()
    ))
}

/// The largest MQTT packet body (the remaining length's four bytes).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Why `msg` can never be published: its topic ([`topic_problem`]), or a packet larger than MQTT
/// can frame. The drain quarantines such a message instead of sending it again.
fn publish_problem(msg: &CloudMessage) -> Result<(), String> {
    topic_problem(&msg.topic)?;
    let body = 2 + msg.topic.len() + 2 + msg.payload.len();
    if body > MAX_REMAINING_LENGTH {
        return Err(format!(
            "a payload of {} bytes is larger than an MQTT packet can be",
            msg.payload.len()
        ));
    }
    Ok(())
}

/// Why `topic` can never be published (MQTT 3.1.1, 4.7): empty, wildcards, NUL, over 65,535
/// bytes.
pub fn topic_problem(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("invalid topic: empty".into());
    }
    if topic.len() > u16::MAX as usize {
        return Err(format!(
            "invalid topic: {} bytes (at most 65,535)",
            topic.len()
        ));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "invalid topic {topic:?}: a topic name may not contain '+', '#' or NUL"
        ));
    }
    Ok(())
}

/// The Buffer's waker, which the link's I/O thread ([`crate::cloud::session`]) wakes when a
/// publish completes. Only the first completion after the Buffer last looked sends a notice, so
/// a burst of PUBACKs costs one actor message.
#[derive(Default)]
pub struct AckNotice {
    pending: AtomicBool,
    target: OnceLock<Recipient<Acked>>,
}

impl AckNotice {
    /// A notice that tells `target` (set once, when the actor starts).
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }

    /// Where the notices go.
    pub fn attach(&self, target: Recipient<Acked>) {
        let _ = self.target.set(target);
    }

    /// The receiver calls this before collecting the completions: completions after it notify
    /// again.
    pub fn take(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

impl Wake for AckNotice {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Before `attach` nothing can be pending: the actor polls once it has started.
        if let Some(target) = self.target.get() {
            if !self.pending.swap(true, Ordering::AcqRel) {
                target.do_send(Acked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str) -> CloudMessage {
        CloudMessage {
            topic: topic.into(),
            payload: b"{}".to_vec(),
            qos: 1,
            enqueued_ms: 0,
            batch: None,
        }
    }

    /// A publisher on an outbox no I/O thread reads, with its progress.
    fn unconnected(max_in_flight: usize) -> (Publisher, Arc<Progress>) {
        let progress = Arc::new(Progress::default());
        let outbox = Arc::new(Outbox::new().expect("eventfd"));
        let publisher = Publisher::new(outbox, progress.clone(), 1, max_in_flight);
        (publisher, progress)
    }

    fn collect(p: &Publisher) -> Vec<(u64, Outcome)> {
        let mut done = Vec::new();
        p.completed(Waker::noop(), &mut done);
        done
    }

    #[test]
    fn a_publish_that_fails_at_once_is_counted_so_the_watchdog_count_stays_true() {
        let (p, progress) = unconnected(100);
        p.publish(7, message("a/#"));
        let done = collect(&p);
        assert!(
            matches!(&done[..], [(7, Outcome::Permanent(_))]),
            "{done:?}"
        );
        p.answered(done.len());
        assert_eq!(progress.stalled(), None, "nothing outstanding");
        // Answers counted twice never wrap the count.
        p.answered(3);
        progress.sent();
        assert_eq!(progress.stalled().map(|s| s.0), Some(1));
    }

    #[test]
    fn at_the_in_flight_limit_a_dropped_publish_is_reported_and_frees_its_slot() {
        let (p, _) = unconnected(2);
        p.publish(1, message("dt/a"));
        p.publish(2, message("dt/a"));
        // The endpoint acknowledged the second long ago and never the first: it dropped it.
        let past = Instant::now() - 2 * OVERTAKEN_GRACE;
        assert_eq!(p.outbox.lock().inflight.acked(2, past), Some(2));
        p.publish(3, message("dt/a"));
        p.publish(4, message("dt/a"));
        let done = collect(&p);
        assert!(
            matches!(&done[..], [(1, Outcome::Transient(d))] if d.contains("dropped")),
            "{done:?}"
        );
    }

    #[test]
    fn publishes_beyond_the_in_flight_limit_fail_transiently_also_after_a_forget() {
        let (p, _) = unconnected(2);
        p.publish(1, message("dt/a"));
        p.publish(2, message("dt/a"));
        p.publish(3, message("dt/a"));
        let done = collect(&p);
        assert!(
            matches!(&done[..], [(3, Outcome::Transient(_))]),
            "{done:?}"
        );
        // Given up on by the drain, but still unacknowledged on the wire.
        p.forget_outstanding();
        p.publish(1, message("dt/a"));
        let done = collect(&p);
        assert!(
            matches!(&done[..], [(1, Outcome::Transient(_))]),
            "{done:?}"
        );
    }

    #[test]
    fn progress_reports_silence_only_while_publishes_are_outstanding() {
        let p = Progress::default();
        assert_eq!(p.stalled(), None);
        p.sent();
        p.sent();
        let (n, _) = p.stalled().expect("two outstanding");
        assert_eq!(n, 2);
        p.answered(1);
        assert_eq!(p.stalled().map(|s| s.0), Some(1));
        p.answered(1);
        assert_eq!(p.stalled(), None);
        p.sent();
        p.reset();
        assert_eq!(p.stalled(), None);
    }

    #[test]
    fn only_topics_mqtt_forbids_are_permanent_failures() {
        let long = "a".repeat(65_536);
        let table: &[(&str, bool)] = &[
            ("dt/gw/telemetry", true),
            ("$aws/rules/ingest/dt", true),
            ("", false),
            ("a/+/b", false),
            ("a/#", false),
            ("a\0b", false),
            (&long, false),
        ];
        for (topic, ok) in table {
            assert_eq!(topic_problem(topic).is_ok(), *ok, "{:.40}", topic);
        }
    }
}

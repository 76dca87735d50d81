//! The paho implementation of [`Publish`]: the publishing half of a connected CloudLink, handed
//! to the Buffer (through the Supervisor) while the link is up.
//!
//! The Buffer publishes on the link's paho client directly (no actor message per publish); the
//! [`Publisher`] keeps the delivery tokens, and a PUBACK wakes the Buffer through [`AckNotice`],
//! which sends one [`Acked`] notice per burst of completions. Measured in `bench/`: an actor
//! message per publish and per PUBACK (plus a spawned future per token) cost a mailbox hop, an
//! allocation and a thread wake-up each, and kept awslink's CPU per message at 3× the bridge's.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use actix::prelude::*;
use paho_mqtt as mqtt;

use crate::clock::mono_ms;
use crate::cloud::tokens::{Outstanding, OVERTAKEN_GRACE};
use crate::messages::Acked;
use crate::model::{CloudMessage, Outcome, Publish};
use crate::sync::lock;

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
        let before = self.outstanding.fetch_sub(n, Ordering::AcqRel);
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

/// Publishes on one connected cloud link and keeps the delivery token of every publish until it
/// completed.
pub struct Publisher {
    client: mqtt::AsyncClient,
    progress: Arc<Progress>,
    attempt: u64,
    /// The delivery token of each outstanding publish, by journal key. Only the Buffer touches
    /// it, so the lock is never contended.
    outstanding: Mutex<Outstanding<mqtt::DeliveryToken>>,
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
    /// The publisher of link attempt `attempt`, whose watchdog reads `progress`.
    pub fn new(client: mqtt::AsyncClient, progress: Arc<Progress>, attempt: u64) -> Self {
        Publisher {
            client,
            progress,
            attempt,
            outstanding: Mutex::new(Outstanding::default()),
        }
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, Outstanding<mqtt::DeliveryToken>> {
        lock(&self.outstanding)
    }
}

impl Publish for Publisher {
    /// Starts a publish (QoS 0 or 1); its token completes on PUBACK (QoS 1) or when written.
    fn publish(&self, seq: u64, msg: CloudMessage) {
        let qos = msg.qos.clamp(0, 1);
        let message = mqtt::Message::new(msg.topic, msg.payload, qos);
        let token = self.client.publish(message);
        self.progress.sent();
        self.outstanding().push(seq, token, qos == 1);
    }

    /// Polls the delivery tokens that completed since the last call (their wakers listed them).
    fn completed(&self, waker: &Waker, done: &mut Vec<(u64, Outcome)>) {
        self.outstanding()
            .reap(waker, Instant::now(), |seq, result| {
                done.push((seq, result.map_or_else(dropped, outcome)))
            });
    }

    fn forget_outstanding(&self) {
        self.outstanding().forget();
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

/// How a finished delivery token ended, for the drain.
fn outcome(result: mqtt::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Delivered,
        Err(e) if is_permanent(&e) => Outcome::Permanent(e.to_string()),
        Err(e) => Outcome::Transient(e.to_string()),
    }
}

/// A publish the endpoint never acknowledged although it acknowledged one sent later: dropped
/// (AWS drops what exceeds its limits without a PUBACK). It is sent again.
fn dropped() -> Outcome {
    Outcome::Transient(format!(
        "no PUBACK {} s after a later publish was acknowledged: the endpoint dropped it (AWS drops publishes over its limits)",
        OVERTAKEN_GRACE.as_secs()
    ))
}

/// True when a failed publish can never succeed (the message itself is invalid).
pub fn is_permanent(e: &mqtt::Error) -> bool {
    matches!(
        e,
        mqtt::Error::BadUtf8String | mqtt::Error::BadQos | mqtt::Error::TopicNameTruncated
    )
}

/// The Buffer's waker, which every delivery token's own waker ([`crate::cloud::tokens`]) wakes
/// on paho's thread when a publish completes. Only the first completion after the Buffer last
/// looked sends a notice, so a burst of PUBACKs costs one actor message.
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

    /// The receiver calls this before polling the tokens: completions after it notify again.
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
    fn permanent_errors_are_the_ones_about_the_message() {
        assert!(is_permanent(&mqtt::Error::BadUtf8String));
        assert!(is_permanent(&mqtt::Error::TopicNameTruncated));
        assert!(!is_permanent(&mqtt::Error::Disconnected));
        assert!(!is_permanent(&mqtt::Error::Timeout));
    }
}

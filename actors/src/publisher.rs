//! The publishing half of a connected CloudLink, handed to the Buffer while the link is up.
//!
//! The Buffer publishes on the link's paho client itself and keeps the delivery tokens; a PUBACK
//! wakes it through [`AckNotice`], which sends one [`Acked`] notice per burst of completions.
//! Measured in `bench/`: an actor message per publish and per PUBACK (plus a spawned future per
//! token) cost a mailbox hop, an allocation and a thread wake-up each, and kept awslink's CPU per
//! message at 3× the bridge's.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};
use std::time::Duration;

use actix::prelude::*;
use paho_mqtt as mqtt;

use crate::clock::mono_ms;
use crate::messages::CloudMessage;

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

/// Publishes on one connected cloud link. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    client: mqtt::AsyncClient,
    progress: Arc<Progress>,
    attempt: u64,
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
        }
    }

    /// Starts a publish (QoS 0 or 1); the token completes on PUBACK (QoS 1) or when written.
    pub fn publish(&self, msg: CloudMessage) -> mqtt::DeliveryToken {
        let message = mqtt::Message::new(msg.topic, msg.payload, msg.qos.clamp(0, 1));
        let token = self.client.publish(message);
        self.progress.sent();
        token
    }

    /// Tells the watchdog that `n` publishes were answered.
    pub fn answered(&self, n: usize) {
        self.progress.answered(n);
    }

    /// The link is being replaced: stop counting its publishes.
    pub fn retire(&self) {
        self.progress.reset();
    }

    /// Which connection attempt this link is.
    pub fn attempt(&self) -> u64 {
        self.attempt
    }
}

/// True when a failed publish can never succeed (the message itself is invalid).
pub fn is_permanent(e: &mqtt::Error) -> bool {
    matches!(
        e,
        mqtt::Error::BadUtf8String | mqtt::Error::BadQos | mqtt::Error::TopicNameTruncated
    )
}

/// A delivery token completed; poll the outstanding ones.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Acked;

/// The waker of every delivery token: paho calls it on its own thread when a publish completes.
/// Only the first completion after the Buffer last looked sends a notice, so a burst of PUBACKs
/// costs one actor message.
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

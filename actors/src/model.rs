//! The plain data the actors exchange, and the [`Publish`] contract between the drain and a cloud
//! link. No actix and no MQTT client here, so every module can depend on this one.

use std::fmt;
use std::sync::Arc;
use std::task::Waker;

/// A message on its way to AWS IoT: the already-mapped cloud topic and the untouched payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudMessage {
    /// Topic on AWS IoT (already mapped from the local topic).
    pub topic: String,
    /// Payload, byte-identical to what the local application published.
    pub payload: Vec<u8>,
    /// 0 or 1 (AWS IoT does not support QoS 2; local QoS 2 is sent as 1).
    pub qos: i32,
    /// Unix time in milliseconds when awslink accepted the message.
    pub enqueued_ms: u64,
    /// The `batching` rule (its index) whose filter matched the local topic: consecutive such
    /// messages of one cloud topic may be sent as one batch (`None`: always sent alone).
    pub batch: Option<u8>,
}

/// Who this gateway is: fills empty tenant/device segments and filters commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Hono tenant id (`tenantId`).
    pub tenant_id: String,
    /// Device id = AWS thing name (`deviceId`).
    pub device_id: String,
}

/// Why a connection to the cloud is not (or no longer) up, in Kanto's cause codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// Network, TLS or protocol failure (`CONNECTION_ERROR`).
    Error,
    /// The endpoint refused our identity (`CONNECTION_NOT_AUTHENTICATED`).
    NotAuthenticated,
    /// awslink is shutting down (`CONNECTION_CLOSED`).
    Closed,
}

impl DownCause {
    /// The cause code published on the status topic (Kanto's names).
    pub fn code(self) -> &'static str {
        match self {
            DownCause::Error => "CONNECTION_ERROR",
            DownCause::NotAuthenticated => "CONNECTION_NOT_AUTHENTICATED",
            DownCause::Closed => "CONNECTION_CLOSED",
        }
    }
}

/// A cause plus a human-readable detail, e.g. "tls handshake failed: certificate verify failed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReason {
    /// Kanto cause code.
    pub cause: DownCause,
    /// Exactly what went wrong.
    pub detail: String,
}

/// How one publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged by the endpoint (QoS 1) or written (QoS 0).
    Delivered,
    /// Can never succeed: the message itself is invalid.
    Permanent(String),
    /// Failed for a reason that may pass (the link is going down).
    Transient(String),
}

/// What the drain needs from a connected cloud link: start publishes and learn, in bursts, which
/// of them completed. The link keeps whatever per-publish state its client needs, so the drain
/// names no MQTT type and a publish costs the drain no allocation.
pub trait Publish: Send + Sync {
    /// Starts publishing journal entry `seq`; its [`Outcome`] comes from [`Publish::completed`].
    fn publish(&self, seq: u64, msg: CloudMessage);

    /// Appends `(seq, outcome)` of every publish that finished since the last call (in no
    /// particular order), and arranges for `waker` to be woken when another one finishes.
    fn completed(&self, waker: &Waker, done: &mut Vec<(u64, Outcome)>);

    /// Forgets every publish still outstanding: their outcomes will never be reported.
    fn forget_outstanding(&self);

    /// Tells the link's watchdog that `n` publishes were answered (or given up on).
    fn answered(&self, n: usize);

    /// The link is being replaced: stop counting its publishes.
    fn retire(&self);

    /// Which connection attempt this link is.
    fn attempt(&self) -> u64;
}

/// A shared handle on a connected link's [`Publish`] side. Cheap to clone.
#[derive(Clone)]
pub struct Link(Arc<dyn Publish>);

impl Link {
    /// A handle on `publisher`.
    pub fn new(publisher: Arc<dyn Publish>) -> Self {
        Link(publisher)
    }
}

impl std::ops::Deref for Link {
    type Target = dyn Publish;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("attempt", &self.0.attempt())
            .finish()
    }
}

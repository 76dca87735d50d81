//! Every message that crosses an actor boundary. Plain data (owned values, no trait objects),
//! except the link's [`Publisher`] handle that the Supervisor passes to the Buffer.

use actix::prelude::*;

use crate::publisher::Publisher;

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
}

/// LocalBroker → Buffer: new entries were appended to the journal (up to and including `last_seq`).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Journaled {
    /// Journal key of the newest entry appended.
    pub last_seq: u64,
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

/// CloudLink → Supervisor: the connection attempt `attempt` came up or went down.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// CONNACK accepted and subscriptions made.
    Up {
        /// The attempt number the Supervisor gave the link.
        attempt: u64,
        /// Where the Buffer publishes while this link is up.
        publisher: Publisher,
    },
    /// The attempt failed or the connection was lost; the link actor stops itself.
    Down {
        /// The attempt number the Supervisor gave the link.
        attempt: u64,
        /// Why.
        reason: DownReason,
    },
}

/// Supervisor → Buffer: where to publish now (`Some`) or that the link is gone (`None`).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct LinkChanged {
    /// The current CloudLink's publishing half, or `None` while disconnected.
    pub publisher: Option<Publisher>,
}

/// Supervisor → CloudLink: disconnect cleanly and stop (shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Disconnect;

/// A message received from AWS IoT.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct CloudInbound {
    /// Cloud topic.
    pub topic: String,
    /// Payload as received.
    pub payload: Vec<u8>,
    /// Key in the journal's downlink tree while it waits for the local broker's PUBACK.
    pub stored: Option<u64>,
    /// Unix ms when it was received from the cloud.
    pub received_ms: u64,
}

/// Anyone → LocalBroker: publish on the local Mosquitto. The answer comes when Mosquitto
/// acknowledged it (or the publish failed); `do_send` when the answer does not matter.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "Result<(), String>")]
pub struct LocalPublish {
    /// Local topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS 0 or 1.
    pub qos: i32,
    /// Retained on the local broker.
    pub retain: bool,
}

/// Supervisor → StatusPublisher: the remote connection state changed. Answered once the
/// status is published locally.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct ConnectionStatus {
    /// True when the cloud link is up.
    pub connected: bool,
    /// Unix seconds of the change.
    pub timestamp: u64,
    /// Why it is down (`None` when connected).
    pub reason: Option<DownReason>,
}

/// LocalBroker → StatusPublisher: a local application asked for the gateway parameters
/// on `edge/thing/request`, or the local session was (re)established.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ThingRequest;

/// StatusPublisher → every actor: report your counters.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ActorMetrics")]
pub struct GetMetrics;

/// One actor's counters, logged as one line at target `awslink::metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, MessageResponse)]
pub struct ActorMetrics {
    /// Actor name as it appears first on the line, e.g. `buffer`.
    pub actor: &'static str,
    /// Counter name and value, in a stable order.
    pub counters: Vec<(&'static str, u64)>,
}

/// Anyone → Flushable actor: flush what you hold to disk and answer when done (shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Flush;

/// app → Supervisor: stop reconnecting, close the cloud link cleanly, publish the shutdown status.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

//! Every actix message that crosses an actor boundary. Plain data (owned values), except the
//! link's [`Link`] handle that the Supervisor passes to the Buffer. The data they carry is
//! defined in [`crate::model`].

use actix::prelude::*;

use crate::model::Link;
/// Re-exported for the modules that still name them here; they are defined in [`crate::model`].
pub use crate::model::{CloudMessage, DownCause, DownReason};

/// The local intake → Buffer: a burst was committed to the journal. A wake-up: the Buffer reads
/// every lane from its own cursors.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Journaled {
    /// Newest sequence number of the telemetry lane after the burst (informational; each lane
    /// numbers its own entries).
    pub last_seq: u64,
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
        publisher: Link,
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
    pub publisher: Option<Link>,
}

/// A cloud link → Buffer: publishes completed; ask the link which ones (one notice per burst).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Acked;

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

/// `src/wiring.rs` (shutdown) → Supervisor: stop reconnecting, close the cloud link cleanly, publish the shutdown status.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

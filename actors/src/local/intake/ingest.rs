//! What the intake does with one local message, and with a burst of them: map its topic to the
//! cloud, through a Basic Ingest route when one matches (or hand a Ditto twin command to the
//! shadow service, or answer `edge/thing/request`), quarantine what AWS would refuse (oversize
//! payloads, invalid topics), append the rest to the journal, and make each burst durable with
//! one commit before it is acknowledged. Runs on the intake thread; knows nothing of MQTT
//! packets. The intake's [`Counters`] and [`IntakePeers`] live here because the ingest is what
//! holds them (the event loop borrows them from it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{debug, error, warn};

use super::hold::{RESUME_DISK_FACTOR, RESUME_FRACTION};
use super::sessions::{Session, SessionCounters};
use crate::batching::Batching;
use crate::clock::{mono_ms, unix_ms, LogLimiter};
use crate::fatal::fatal;
use crate::lanes::{Lane, LaneRules};
use crate::messages::{CloudMessage, Journaled, ThingRequest};
use crate::routes::Routes;
use crate::shadow::ShadowIngest;
use crate::store::{Journal, JournalError, CONTROL_RESERVE};
use crate::topics::{self, Identity, UplinkError, THING_REQUEST_TOPIC};

/// Counters of the local side, shared by the intake thread and the LocalBroker's metrics.
#[derive(Default)]
pub struct Counters {
    /// Uplink messages received from Mosquitto (one per message, whichever session journals it).
    pub received: AtomicU64,
    /// Entries appended to the journal.
    pub journaled: AtomicU64,
    /// Messages quarantined at ingress.
    pub quarantined: AtomicU64,
    /// Appends the journal refused.
    pub journal_errors: AtomicU64,
    /// Messages a session only acknowledged because the other one journals its own copy.
    pub skipped: AtomicU64,
    /// The connection counters of each session, indexed by [`Session::index`].
    pub sessions: [SessionCounters; 2],
    /// The intake thread ended (after a stop, or because it failed).
    pub exited: AtomicBool,
}

impl Counters {
    /// The counters of `session`.
    pub fn session(&self, session: Session) -> &SessionCounters {
        &self.sessions[session.index()]
    }

    /// True when every session is (`all`) or any session is (`!all`) in the state `flag` reads.
    pub fn sessions_where(&self, all: bool, flag: impl Fn(&SessionCounters) -> bool) -> bool {
        if all {
            self.sessions.iter().all(flag)
        } else {
            self.sessions.iter().any(flag)
        }
    }
}

/// Where the intake reports.
#[derive(Clone)]
pub struct IntakePeers {
    /// The Buffer, told after appends (one notice per burst).
    pub journaled: Recipient<Journaled>,
    /// The StatusPublisher, for `edge/thing/request`.
    pub thing_requests: Recipient<ThingRequest>,
}

/// Maps, quarantines and journals uplink messages. Runs on the intake thread.
pub struct Ingest {
    journal: Journal,
    peers: IntakePeers,
    identity: Identity,
    routes: Routes,
    batching: Batching,
    lanes: LaneRules,
    max_payload_bytes: usize,
    shadow: Option<Arc<ShadowIngest>>,
    /// Shared with the LocalBroker's metrics.
    pub counters: Arc<Counters>,
    error_log: LogLimiter,
    drop_log: LogLimiter,
    /// Monotonic ms since when every journal write failed (0 = the last one succeeded).
    refusing_since_ms: AtomicU64,
    /// Something was appended since the last successful commit (both sessions run on the
    /// intake thread, so no append falls between a commit and this flag's reset).
    appended: AtomicBool,
}

/// A journal that has refused every write this long is broken for good: awslink exits 1 so
/// that its supervisor restarts it (a fresh open often recovers; a full disk is not counted).
pub const JOURNAL_FATAL_AFTER: Duration = Duration::from_secs(10);

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Journaled, quarantined or not uplink traffic: acknowledge it.
    Yes,
    /// Journaled, and the journal is now at its limit: acknowledge it, hold the next ones.
    YesButFull,
    /// The journal refused it: hold it unacknowledged and try again later.
    No,
}

impl Ingest {
    /// An ingest that maps with `identity`, journals into `journal` and reports to `peers`.
    pub fn new(
        identity: Identity,
        max_payload_bytes: usize,
        shadow: Option<Arc<ShadowIngest>>,
        journal: Journal,
        peers: IntakePeers,
        counters: Arc<Counters>,
    ) -> Self {
        Ingest {
            journal,
            peers,
            identity,
            routes: Routes::default(),
            batching: Batching::default(),
            lanes: LaneRules::default(),
            max_payload_bytes,
            shadow,
            counters,
            error_log: LogLimiter::default(),
            drop_log: LogLimiter::default(),
            refusing_since_ms: AtomicU64::new(0),
            appended: AtomicBool::new(false),
        }
    }

    /// Sends the local topics `routes` match to their Basic Ingest rule (journaled with the
    /// final `$aws/rules/…` topic).
    pub fn with_routes(mut self, routes: Routes) -> Self {
        self.routes = routes;
        self
    }

    /// Marks each message with the `batching` rule its local topic matches (never in the
    /// control lane: command responses and shadow requests are not delayed).
    pub fn with_batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// Journals each message into the lane `lanes` gives its local topic (Ditto twin commands'
    /// shadow requests: control).
    pub fn with_lanes(mut self, lanes: LaneRules) -> Self {
        self.lanes = lanes;
        self
    }

    /// The lane rules the sessions' filters are made from.
    pub fn lanes(&self) -> &LaneRules {
        &self.lanes
    }

    /// Handles one local message `session` received: journals it ([`take`](Self::take)) when
    /// that session journals its lane ([`Session::journals`]; `covered`: see
    /// [`super::sessions`]), else only counts it (the other session journals its own copy).
    pub fn take_for(
        &self,
        session: Session,
        covered: bool,
        topic: &str,
        payload: &[u8],
        qos: i32,
    ) -> Taken {
        let journals = if topic == THING_REQUEST_TOPIC {
            session == Session::Main
        } else {
            session.journals(self.lanes.lane_of(topic), covered)
        };
        if !journals {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Taken::Yes;
        }
        self.take(topic, payload, qos)
    }

    /// Handles one local message received with `qos` (0, or 1 for QoS 1 and 2); nothing is
    /// durable before [`commit`](Self::commit).
    pub fn take(&self, topic: &str, payload: &[u8], qos: i32) -> Taken {
        if topic == THING_REQUEST_TOPIC {
            self.peers.thing_requests.do_send(ThingRequest);
            return Taken::Yes;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let enqueued_ms = unix_ms();
        let cloud = |topic: String| CloudMessage {
            topic,
            payload: payload.to_vec(),
            qos,
            enqueued_ms,
            batch: None,
        };
        match topics::uplink(topic, &self.identity) {
            Ok(Some(cloud_topic))
                if self.shadow.is_some()
                    && (cloud_topic.starts_with("telemetry/")
                        || cloud_topic.starts_with("event/")) =>
            {
                let shadow = self.shadow.as_ref();
                match shadow.and_then(|s| Some((s, s.on_local(payload, enqueued_ms)?))) {
                    Some((shadow, requests)) => {
                        let mut taken = Taken::Yes;
                        for request in requests {
                            let appended = self.append(Lane::Control, &request.message);
                            if appended != Taken::No {
                                shadow.journaled(&request);
                            }
                            taken = worse(taken, appended);
                        }
                        taken
                    }
                    None => self.forward(cloud(self.routes.cloud_topic(topic, cloud_topic)), topic),
                }
            }
            Ok(Some(cloud_topic)) => {
                self.forward(cloud(self.routes.cloud_topic(topic, cloud_topic)), topic)
            }
            Ok(None) => {
                debug!("ignoring local message on {topic:?}: not uplink traffic");
                Taken::Yes
            }
            Err(e @ (UplinkError::MalformedResponse(_) | UplinkError::CloudLimit(_))) => {
                self.quarantine(&cloud(topic.to_string()), &e.to_string())
            }
        }
    }

    /// Journals an uplink message, or quarantines it when AWS would refuse its size.
    fn forward(&self, msg: CloudMessage, local_topic: &str) -> Taken {
        if msg.payload.len() <= self.max_payload_bytes {
            let lane = self.lanes.lane_of(local_topic);
            let batch = match lane {
                Lane::Control => None,
                Lane::Events | Lane::Telemetry => self.batching.rule_for(local_topic),
            };
            return self.append(lane, &CloudMessage { batch, ..msg });
        }
        let reason = format!(
            "payload of {} bytes on {local_topic:?} exceeds quota.maxPayloadBytes ({})",
            msg.payload.len(),
            self.max_payload_bytes
        );
        self.quarantine(
            &CloudMessage {
                topic: local_topic.to_string(),
                ..msg
            },
            &reason,
        )
    }

    fn append(&self, lane: Lane, msg: &CloudMessage) -> Taken {
        match self.journal.append(lane, msg) {
            Ok(appended) => {
                self.appended.store(true, Ordering::Relaxed);
                self.counters.journaled.fetch_add(1, Ordering::Relaxed);
                if appended.dropped > 0 && self.drop_log.ready(Duration::from_secs(1)) {
                    warn!(
                        "buffer full: dropped the oldest queued messages (whenFull dropOldest, {} dropped so far)",
                        self.journal.dropped_total()
                    );
                }
                if appended.full {
                    Taken::YesButFull
                } else {
                    Taken::Yes
                }
            }
            Err(e) => {
                self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                self.refused(&e);
                if self.error_log.ready(Duration::from_secs(10)) {
                    error!("cannot journal a message for {:?}: {e}; holding it (unacknowledged) until the journal takes it", msg.topic);
                }
                Taken::No
            }
        }
    }

    /// Stores a message AWS would refuse; if even that fails, it is held like any other.
    fn quarantine(&self, msg: &CloudMessage, reason: &str) -> Taken {
        if let Err(e) = self.journal.quarantine_new(msg, reason) {
            self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
            error!(
                "cannot store the quarantined message on {:?} ({reason}): {e}",
                msg.topic
            );
            return Taken::No;
        }
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        warn!("message on {:?} quarantined: {reason}", msg.topic);
        Taken::Yes
    }

    /// Makes the burst durable (one flush in `fsync` mode) and tells the Buffer about it, if it
    /// appended anything (a burst of copies only acknowledged, or of markers, does not).
    pub fn commit(&self) -> Result<(), String> {
        if let Err(e) = self.journal.commit() {
            self.refused(&e);
            return Err(e.to_string());
        }
        self.refusing_since_ms.store(0, Ordering::Relaxed);
        if self.appended.swap(false, Ordering::Relaxed) && self.journal.announce() {
            self.peers.journaled.do_send(Journaled {
                last_seq: self.journal.last_seq(Lane::Telemetry),
            });
        }
        Ok(())
    }

    /// Counts a refused write; fatal once every write failed for [`JOURNAL_FATAL_AFTER`].
    fn refused(&self, e: &JournalError) {
        if matches!(e, JournalError::DiskLow { .. }) {
            return; // the disk-space pause, not a broken journal
        }
        let now = mono_ms();
        let since = match self.refusing_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        if now.saturating_sub(since) >= JOURNAL_FATAL_AFTER.as_millis() as u64 {
            fatal(&format!(
                "the journal has refused every write for {} s ({e})",
                JOURNAL_FATAL_AFTER.as_secs()
            ));
        }
    }

    /// True when a held `session` may take messages again (hysteresis: see [`super::hold`]):
    /// the main session below [`RESUME_FRACTION`] of the limits, the control session (whose
    /// lane is refused only beyond [`CONTROL_RESERVE`] above them) below the limits plus half
    /// the reserve. Short of disk space it first gives back what delivered messages occupy
    /// ([`crate::store::Journal::reclaim`]).
    pub fn has_room(&self, session: Session) -> bool {
        let fraction = match session {
            Session::Main => RESUME_FRACTION,
            Session::Control => 1.0 + CONTROL_RESERVE / 2.0,
        };
        if !self.journal.has_room(fraction) {
            return false;
        }
        if self.journal.disk_ok(RESUME_DISK_FACTOR) {
            return true;
        }
        if let Err(e) = self.journal.reclaim() {
            warn!("cannot give back the disk space of delivered messages: {e}");
        }
        self.journal.disk_ok(RESUME_DISK_FACTOR)
    }
}

/// The outcome of a message that became several appends: the worst of them.
fn worse(a: Taken, b: Taken) -> Taken {
    match (a, b) {
        (Taken::No, _) | (_, Taken::No) => Taken::No,
        (Taken::YesButFull, _) | (_, Taken::YesButFull) => Taken::YesButFull,
        _ => Taken::Yes,
    }
}

#[cfg(test)]
mod tests;

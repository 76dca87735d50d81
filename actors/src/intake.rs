//! The uplink intake: the persistent local session (fixed client id, `clean_session(false)`)
//! that receives everything local applications send to the cloud, on its own thread.
//!
//! It acknowledges manually (rumqttc's `manual_acks`): every message Mosquitto has delivered is
//! mapped and appended to the journal, and only then — after **one** flush for the whole burst
//! in `fsync` mode — acknowledged. Paho C acknowledges each message when its callback returns,
//! one at a time and under a process-wide lock, so with paho every message cost one `fdatasync`
//! and stalled the cloud link's threads while it ran (bench/RESULTS.md).
//!
//! Back-pressure without loss: when the journal is full (`whenFull: rejectNew`), below the
//! free-space floor, or refuses writes, new messages are held unacknowledged in memory; Mosquitto
//! stops sending once its in-flight window for the session is full and keeps the rest queued. A
//! crash while holding loses nothing: unacknowledged messages are delivered again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{debug, error, info, warn};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Packet, PubAck, PubRec, Publish, QoS,
    Request, TlsConfiguration, Transport,
};

use crate::clock::{unix_ms, LogLimiter};
use crate::local_broker::LocalConnection;
use crate::messages::{CloudMessage, Journaled, ThingRequest};
use crate::shadow::ShadowIngest;
use crate::status::THING_REQUEST_TOPIC;
use crate::store::Journal;
use crate::topics::{self, Identity, UplinkError};

/// Largest burst journaled before one flush and its acknowledgements.
const MAX_BATCH: usize = 512;
/// While holding, how often the journal is asked whether it has room again.
const RESUME_CHECK: Duration = Duration::from_millis(200);
/// Most messages (and bytes) held in memory while the journal has no room; beyond that the
/// intake disconnects and Mosquitto keeps the rest (with `max_inflight_messages 0` it would
/// otherwise push its whole queue).
const MAX_HELD_MESSAGES: usize = 1000;
const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;
/// A filter nobody subscribes to: unsubscribing from it wakes the event loop.
const WAKE_FILTER: &str = "awslink/intake/wake";
/// Largest packet the intake reads; bigger payloads than `maxPayloadBytes` must still arrive to
/// be quarantined, and Mosquitto's own default limit is 256 MB.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// Counters of the local side, shared by the intake thread and the LocalBroker's metrics.
#[derive(Default)]
pub struct Counters {
    /// Uplink messages received from Mosquitto.
    pub received: AtomicU64,
    /// Entries appended to the journal.
    pub journaled: AtomicU64,
    /// Messages quarantined at ingress.
    pub quarantined: AtomicU64,
    /// Appends the journal refused.
    pub journal_errors: AtomicU64,
    /// Intake (re)connections.
    pub connects: AtomicU64,
    /// Times the intake started holding messages.
    pub pauses: AtomicU64,
    /// Messages held unacknowledged right now.
    pub held: AtomicU64,
    /// True while the intake session is connected.
    pub connected: AtomicBool,
    /// True while the intake holds new messages back.
    pub paused: AtomicBool,
    /// The intake thread ended (after a stop, or because it failed).
    pub exited: AtomicBool,
}

/// Where the intake reports.
#[derive(Clone)]
pub struct IntakePeers {
    /// The Buffer, told after appends (one notice per burst).
    pub journaled: Recipient<Journaled>,
    /// The StatusPublisher, for `edge/thing/request`.
    pub thing_requests: Recipient<ThingRequest>,
}

/// What the intake needs.
#[derive(Clone)]
pub struct IntakeConfig {
    /// The local broker and the persistent session's client id.
    pub connection: LocalConnection,
    /// Tenant and device ids for topic mapping.
    pub identity: Identity,
    /// Largest payload AWS IoT accepts; larger messages are quarantined at ingress.
    pub max_payload_bytes: usize,
    /// Ditto twin commands on telemetry/event topics go to the shadow service when set.
    pub shadow: Option<Arc<ShadowIngest>>,
}

/// Maps, quarantines and journals uplink messages. Runs on the intake thread.
pub struct Ingest {
    journal: Journal,
    peers: IntakePeers,
    identity: Identity,
    max_payload_bytes: usize,
    shadow: Option<Arc<ShadowIngest>>,
    /// Shared with the LocalBroker's metrics.
    pub counters: Arc<Counters>,
    error_log: LogLimiter,
    drop_log: LogLimiter,
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Journaled, quarantined or not uplink traffic: acknowledge it.
    Yes,
    /// Journaled, and the journal is now at its limit: acknowledge it, hold the next ones.
    YesButFull,
    /// The journal refused it: hold it unacknowledged and try again later.
    No,
}

impl Ingest {
    fn new(
        config: &IntakeConfig,
        journal: Journal,
        peers: IntakePeers,
        counters: Arc<Counters>,
    ) -> Self {
        Ingest {
            journal,
            peers,
            identity: config.identity.clone(),
            max_payload_bytes: config.max_payload_bytes,
            shadow: config.shadow.clone(),
            counters,
            error_log: LogLimiter::default(),
            drop_log: LogLimiter::default(),
        }
    }

    fn take(&self, topic: &str, payload: &[u8], qos: QoS) -> Taken {
        if topic == THING_REQUEST_TOPIC {
            self.peers.thing_requests.do_send(ThingRequest);
            return Taken::Yes;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let enqueued_ms = unix_ms();
        let cloud = |topic: String| CloudMessage {
            topic,
            payload: payload.to_vec(),
            qos: if qos == QoS::AtMostOnce { 0 } else { 1 },
            enqueued_ms,
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
                            let appended = self.append(&request.message);
                            if appended != Taken::No {
                                shadow.journaled(&request);
                            }
                            taken = worse(taken, appended);
                        }
                        taken
                    }
                    None => self.forward(cloud(cloud_topic), topic),
                }
            }
            Ok(Some(cloud_topic)) => self.forward(cloud(cloud_topic), topic),
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
            return self.append(&msg);
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

    fn append(&self, msg: &CloudMessage) -> Taken {
        match self.journal.append(msg) {
            Ok(appended) => {
                self.counters.journaled.fetch_add(1, Ordering::Relaxed);
                if appended.dropped > 0 && self.drop_log.ready(Duration::from_secs(1)) {
                    warn!(
                        "buffer full: dropped the oldest queued messages (whenFull dropOldest, {} dropped so far)",
                        self.journal.dropped()
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

    /// Makes the burst durable (one flush in `fsync` mode) and tells the Buffer about it.
    fn commit(&self) -> Result<(), String> {
        self.journal.commit().map_err(|e| e.to_string())?;
        if self.journal.announce() {
            self.peers.journaled.do_send(Journaled {
                last_seq: self.journal.last_seq(),
            });
        }
        Ok(())
    }

    /// True when a held intake may take messages again (hysteresis: half the limits, 1.5× the
    /// free-space floor).
    fn has_room(&self) -> bool {
        self.journal.has_room(0.5) && self.journal.disk_ok(1.5)
    }
}

fn worse(a: Taken, b: Taken) -> Taken {
    match (a, b) {
        (Taken::No, _) | (_, Taken::No) => Taken::No,
        (Taken::YesButFull, _) | (_, Taken::YesButFull) => Taken::YesButFull,
        _ => Taken::Yes,
    }
}

/// Controls the intake thread.
pub struct IntakeHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl IntakeHandle {
    /// Acknowledges what is journaled, disconnects and ends the thread; resolves when it has.
    pub fn stop(&mut self) -> impl std::future::Future<Output = ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = self.done.take();
        async move {
            if let Some(done) = done {
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
        }
    }
}

/// Starts the intake on its own thread.
pub fn start(
    config: IntakeConfig,
    journal: Journal,
    peers: IntakePeers,
    counters: Arc<Counters>,
) -> Result<IntakeHandle, String> {
    let options = mqtt_options(&config)?;
    let ingest = Ingest::new(&config, journal, peers, counters);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let uri = config.connection.uri.clone();
    std::thread::Builder::new()
        .name("awslink-intake".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    ingest.counters.exited.store(true, Ordering::Release);
                    return error!("cannot start the intake runtime: {e}");
                }
            };
            let counters = ingest.counters.clone();
            let run = std::panic::AssertUnwindSafe(|| {
                runtime.block_on(run(options, ingest, uri, stop_rx));
            });
            if std::panic::catch_unwind(run).is_err() {
                error!("the local intake failed (panic); no more local messages are taken");
            }
            counters.exited.store(true, Ordering::Release);
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the intake thread: {e}"))?;
    Ok(IntakeHandle {
        stop: Some(stop_tx),
        done: Some(done_rx),
    })
}

fn mqtt_options(config: &IntakeConfig) -> Result<MqttOptions, String> {
    let c = &config.connection;
    let (tls, rest) = if let Some(rest) = c.uri.strip_prefix("tcp://") {
        (false, rest)
    } else if let Some(rest) = c
        .uri
        .strip_prefix("ssl://")
        .or_else(|| c.uri.strip_prefix("mqtts://"))
    {
        (true, rest)
    } else {
        return Err(format!(
            "local broker URI {:?}: use tcp:// or ssl://",
            c.uri
        ));
    };
    let (host, port) = rest
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.trim_end_matches('/').parse::<u16>().ok()?)))
        .ok_or_else(|| format!("local broker URI {:?} has no host:port", c.uri))?;
    let mut options = MqttOptions::new(c.client_id.clone(), host, port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024)
        .set_request_channel_capacity(1024);
    if let Some(user) = &c.username {
        options.set_credentials(user, c.password.clone().unwrap_or_default());
    }
    if tls {
        options.set_transport(Transport::Tls(tls_configuration(c)?));
    }
    Ok(options)
}

/// native-tls (OpenSSL underneath) with the configured CA, or the system's, and an optional
/// client certificate; peer and hostname verification stay on.
fn tls_configuration(c: &LocalConnection) -> Result<TlsConfiguration, String> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
    };
    let Some(ca_path) = &c.ca_cert else {
        return Ok(TlsConfiguration::Native);
    };
    let ca = read("localCACert", ca_path)?;
    let client_auth = match (&c.cert, &c.key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read("localCert", cert)?;
            let key_pem = read("localKey", key)?;
            let cert = openssl::x509::X509::from_pem(&cert_pem)
                .map_err(|e| format!("localCert {}: {e}", cert.display()))?;
            let key = openssl::pkey::PKey::private_key_from_pem(&key_pem)
                .map_err(|e| format!("localKey {}: not a PEM private key ({e})", key.display()))?;
            let p12 = openssl::pkcs12::Pkcs12::builder()
                .name("awslink")
                .pkey(&key)
                .cert(&cert)
                .build2("")
                .and_then(|p| p.to_der())
                .map_err(|e| format!("cannot use localCert/localKey together: {e}"))?;
            Some((p12, String::new()))
        }
        _ => None,
    };
    Ok(TlsConfiguration::SimpleNative { ca, client_auth })
}

/// True while the event loop already read more incoming messages than it handed out.
fn more_buffered(eventloop: &EventLoop) -> bool {
    eventloop
        .state
        .events
        .iter()
        .any(|e| matches!(e, Event::Incoming(Packet::Publish(_))))
}

/// Writes the acknowledgements of `batch`, in receive order, into the connection's outgoing
/// buffer. The event loop writes that buffer after every read and every request; so that the
/// last acknowledgements of a burst do not wait for the next read, one acknowledgement goes
/// through the request channel as a trigger — at most one at a time (`trigger` holds its packet
/// id until the loop reports it sent). Measured: queueing every burst's last acknowledgement
/// filled the channel under load, and the overflow path (`EventLoop::pending`, one timer tick
/// per request) then delayed every message by ~1 ms; a delayed acknowledgement also made
/// Mosquitto 2.0.11 deliver later messages out of order.
fn acknowledge(
    eventloop: &mut EventLoop,
    client: &AsyncClient,
    trigger: &mut Option<u16>,
    batch: &mut Vec<Publish>,
) {
    let mut acked: Vec<Publish> = batch
        .drain(..)
        .filter(|p| p.qos != QoS::AtMostOnce)
        .collect();
    let last = if trigger.is_none() { acked.pop() } else { None };
    let ack = |p: &Publish| match p.qos {
        QoS::ExactlyOnce => Request::PubRec(PubRec::new(p.pkid)),
        _ => Request::PubAck(PubAck::new(p.pkid)),
    };
    for p in &acked {
        if let Err(e) = eventloop.state.handle_outgoing_packet(ack(p)) {
            warn!("cannot acknowledge a local message: {e}");
        }
    }
    if let Some(last) = last {
        if client.try_ack(&last).is_ok() {
            *trigger = Some(last.pkid);
        } else {
            eventloop.pending.push_back(ack(&last));
        }
    }
}

struct Intake {
    ingest: Ingest,
    eventloop: EventLoop,
    client: AsyncClient,
    /// Packet id of the acknowledgement queued in the request channel, until it is sent.
    ack_trigger: Option<u16>,
    filters: Vec<String>,
    uri: String,
    /// Journaled and waiting for the burst's flush and acknowledgement.
    batch: Vec<Publish>,
    /// Received while the journal had no room: not journaled, not acknowledged, in order.
    held: VecDeque<Publish>,
    /// Shared with the wake-up task: while set, the event loop is woken every [`RESUME_CHECK`].
    holding: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    /// A wake-up (or the stop's DISCONNECT) is queued and not yet seen by the loop.
    wake_pending: Arc<AtomicBool>,
    /// Payload and topic bytes of `held`.
    held_bytes: usize,
    /// Too much is held: the intake disconnects and stays away until the journal has room.
    parking: bool,
    disconnect_queued: bool,
    connect_log: LogLimiter,
    refusal_log: LogLimiter,
}

impl Intake {
    fn start_holding(&mut self, why: &str) {
        if !self.holding.swap(true, Ordering::AcqRel) {
            let c = &self.ingest.counters;
            c.pauses.fetch_add(1, Ordering::Relaxed);
            c.paused.store(true, Ordering::Relaxed);
            warn!("{why}: holding new local messages unacknowledged; Mosquitto keeps the rest queued for the session");
        }
    }

    fn on_publish(&mut self, p: Publish) {
        if self.stopping.load(Ordering::Acquire) {
            // Not acknowledged: Mosquitto keeps it for the next start.
            return;
        }
        if self.holding.load(Ordering::Acquire) {
            self.held_bytes += p.payload.len() + p.topic.len();
            self.held.push_back(p);
            if !self.parking
                && (self.held.len() > MAX_HELD_MESSAGES || self.held_bytes > MAX_HELD_BYTES)
            {
                // A broker without an in-flight limit keeps sending: do not buffer it all.
                self.parking = true;
                self.commit();
                warn!("{} local messages held: disconnecting the intake until the journal has room; Mosquitto keeps them queued for the session", self.held.len());
                self.eventloop
                    .pending
                    .push_back(Request::Disconnect(rumqttc::Disconnect));
            }
        } else {
            self.take(p);
        }
        if self.batch.len() >= MAX_BATCH || !more_buffered(&self.eventloop) {
            self.commit();
        }
        self.ingest
            .counters
            .held
            .store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Journals one message; false when the journal is now full or refused it (the message
    /// then waits at the front of `held`), and the intake holds what follows.
    fn take(&mut self, p: Publish) -> bool {
        match self.ingest.take(&p.topic, &p.payload, p.qos) {
            Taken::Yes => {
                self.batch.push(p);
                true
            }
            Taken::YesButFull => {
                self.batch.push(p);
                self.start_holding(
                    "buffer full (whenFull rejectNew) or disk space below buffer.minFreeBytes",
                );
                false
            }
            Taken::No => {
                self.held_bytes += p.payload.len() + p.topic.len();
                self.held.push_front(p);
                self.start_holding("the journal refuses writes");
                false
            }
        }
    }

    /// While holding: once the journal has room (and takes writes), retry a burst whose flush
    /// failed, then journal the held messages in order.
    fn try_resume(&mut self) {
        if !self.holding.load(Ordering::Acquire) || !self.ingest.has_room() {
            return;
        }
        if !self.commit() {
            return;
        }
        // Still holding while these are taken, so `take` refusing one only keeps holding.
        while let Some(p) = self.held.pop_front() {
            self.held_bytes = self
                .held_bytes
                .saturating_sub(p.payload.len() + p.topic.len());
            if !self.take(p) {
                self.commit();
                return self.update_held();
            }
            if self.batch.len() >= MAX_BATCH && !self.commit() {
                return self.update_held();
            }
        }
        if self.commit() {
            self.holding.store(false, Ordering::Release);
            self.ingest.counters.paused.store(false, Ordering::Relaxed);
            info!("journal has room again: the local intake takes messages again");
        }
        self.update_held();
    }

    fn update_held(&self) {
        let held = self.held.len() as u64;
        self.ingest.counters.held.store(held, Ordering::Relaxed);
    }

    /// One flush for the burst, then its acknowledgements; false when the flush failed. Then
    /// nothing is acknowledged and the burst waits (holding) for the next try: Mosquitto resends
    /// unacknowledged messages only on a new connection, so dropping them would stall its
    /// in-flight window.
    fn commit(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        match self.ingest.commit() {
            Ok(()) => {
                acknowledge(
                    &mut self.eventloop,
                    &self.client,
                    &mut self.ack_trigger,
                    &mut self.batch,
                );
                true
            }
            Err(e) => {
                if self.refusal_log.ready(Duration::from_secs(10)) {
                    error!("cannot flush the journal ({e}): {} local messages stay unacknowledged until it works", self.batch.len());
                }
                self.start_holding("the journal cannot be flushed");
                false
            }
        }
    }

    fn on_connected(&mut self, session_present: bool) {
        let c = &self.ingest.counters;
        c.connects.fetch_add(1, Ordering::Relaxed);
        c.connected.store(true, Ordering::Relaxed);
        info!(
            "local intake session up ({}, session present: {session_present})",
            self.uri
        );
        // Subscriptions persist in the session, but a broker without persistence forgets them.
        let filters = self
            .filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        let subscribe = rumqttc::Subscribe::new_many(filters);
        self.eventloop
            .pending
            .push_back(Request::Subscribe(subscribe));
    }

    /// The connection broke: Mosquitto delivers everything unacknowledged again on the next
    /// one, so neither the burst nor the held messages may be acknowledged there (their packet
    /// ids belong to the old connection).
    fn on_lost(&mut self, e: &dyn std::fmt::Display) {
        let c = &self.ingest.counters;
        let was_connected = c.connected.swap(false, Ordering::Relaxed);
        if !self.batch.is_empty() {
            if let Err(e) = self.ingest.commit() {
                error!("cannot flush the journal: {e}");
            }
            self.batch.clear();
        }
        self.held.clear();
        self.held_bytes = 0;
        c.held.store(0, Ordering::Relaxed);
        // rumqttc would hand out what it had read and replay queued requests (acknowledgements
        // with the old connection's packet ids among them) on the next connection: drop both.
        self.eventloop.state.events.clear();
        self.eventloop.pending.clear();
        self.ack_trigger = None;
        self.wake_pending.store(false, Ordering::Release);
        self.disconnect_queued = false;
        if was_connected || self.connect_log.ready(Duration::from_secs(30)) {
            warn!("local intake session to {}: {e}; reconnecting", self.uri);
        }
    }
}

/// Wakes the event loop while the intake holds messages (an UNSUBSCRIBE of a filter nobody
/// uses: the broker answers it and `poll` returns), so a resume never waits for traffic, and
/// without ever cancelling a `poll` in the middle of a write. Only while connected, and at most
/// one at a time, so the request channel never fills up.
async fn wake_while_holding(
    client: AsyncClient,
    counters: Arc<Counters>,
    holding: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    wake_pending: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(RESUME_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stopping.load(Ordering::Acquire) {
        tick.tick().await;
        if holding.load(Ordering::Acquire)
            && counters.connected.load(Ordering::Relaxed)
            && !wake_pending.swap(true, Ordering::AcqRel)
            && client.try_unsubscribe(WAKE_FILTER).is_err()
        {
            wake_pending.store(false, Ordering::Release);
        }
    }
}

async fn run(
    options: MqttOptions,
    ingest: Ingest,
    uri: String,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let (client, eventloop) = AsyncClient::new(options, 64);
    let mut filters: Vec<String> = topics::UPLINK_FILTERS
        .iter()
        .map(|f| f.to_string())
        .collect();
    filters.push(THING_REQUEST_TOPIC.to_string());
    let holding = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    let wake_pending = Arc::new(AtomicBool::new(false));
    let counters = ingest.counters.clone();
    let mut intake = Intake {
        ingest,
        eventloop,
        client: client.clone(),
        ack_trigger: None,
        filters,
        uri,
        batch: Vec::new(),
        held: VecDeque::new(),
        held_bytes: 0,
        parking: false,
        holding: holding.clone(),
        stopping: stopping.clone(),
        wake_pending: wake_pending.clone(),
        disconnect_queued: false,
        connect_log: LogLimiter::default(),
        refusal_log: LogLimiter::default(),
    };
    tokio::spawn(wake_while_holding(
        client.clone(),
        counters.clone(),
        holding,
        stopping.clone(),
        wake_pending.clone(),
    ));
    let stop_requested = Arc::new(tokio::sync::Notify::new());
    {
        let (stopping, notify) = (stopping.clone(), stop_requested.clone());
        tokio::spawn(async move {
            let _ = stop.await;
            stopping.store(true, Ordering::Release);
            notify.notify_one();
            // Wake the loop; it queues the DISCONNECT itself, behind its acknowledgements.
            if counters.connected.load(Ordering::Relaxed)
                && !wake_pending.swap(true, Ordering::AcqRel)
            {
                let _ = client.try_unsubscribe(WAKE_FILTER);
            }
        });
    }
    let mut failures: u32 = 0;
    loop {
        if intake.stopping.load(Ordering::Acquire) {
            if !intake.ingest.counters.connected.load(Ordering::Relaxed) {
                break;
            }
            if !intake.disconnect_queued {
                intake.disconnect_queued = true;
                intake.commit(); // its acknowledgements go out before the DISCONNECT
                intake
                    .eventloop
                    .pending
                    .push_back(Request::Disconnect(rumqttc::Disconnect));
            }
        }
        match intake.eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => intake.on_publish(p),
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                failures = 0;
                intake.on_connected(ack.session_present);
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    error!("the local broker refused a subscription of the intake (check its ACL for client {:?})", intake.eventloop.mqtt_options.client_id());
                }
            }
            Ok(Event::Outgoing(
                rumqttc::Outgoing::PubAck(pkid) | rumqttc::Outgoing::PubRec(pkid),
            )) if intake.ack_trigger == Some(pkid) => {
                intake.ack_trigger = None;
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Unsubscribe(_))) => {
                intake.wake_pending.store(false, Ordering::Release);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if !intake.parking => break,
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Parked: what is held goes back to Mosquitto (unacknowledged, redelivered).
                intake.on_lost(&"parked until the journal has room");
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(RESUME_CHECK) => {}
                        _ = stop_requested.notified() => break,
                    }
                    if intake.stopping.load(Ordering::Acquire) || intake.ingest.has_room() {
                        break;
                    }
                }
                if intake.stopping.load(Ordering::Acquire) {
                    break;
                }
                intake.parking = false;
                intake.holding.store(false, Ordering::Release);
                intake
                    .ingest
                    .counters
                    .paused
                    .store(false, Ordering::Relaxed);
                info!("journal has room again: reconnecting the local intake");
            }
            Ok(_) => {}
            Err(e) => {
                intake.on_lost(&e);
                if intake.stopping.load(Ordering::Acquire) {
                    break;
                }
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis(250u64.saturating_mul(1 << failures.min(4)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop_requested.notified() => break,
                }
            }
        }
        if intake.holding.load(Ordering::Acquire) {
            intake.try_resume();
        }
    }
    // Acknowledge what is journaled (a failed flush acknowledges nothing).
    intake.commit();
    intake
        .ingest
        .counters
        .connected
        .store(false, Ordering::Relaxed);
    intake.stopping.store(true, Ordering::Release);
    info!("local intake stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(uri: &str) -> IntakeConfig {
        IntakeConfig {
            connection: LocalConnection {
                uri: uri.into(),
                client_id: "awslink".into(),
                username: None,
                password: None,
                ca_cert: None,
                cert: None,
                key: None,
            },
            identity: Identity {
                tenant_id: "t".into(),
                device_id: "d".into(),
            },
            max_payload_bytes: 128 * 1024,
            shadow: None,
        }
    }

    #[test]
    fn the_session_is_persistent_with_manual_acknowledgements() {
        let options = mqtt_options(&config("tcp://localhost:1883")).unwrap();
        assert_eq!(options.broker_address(), ("localhost".to_string(), 1883));
        assert_eq!(options.client_id(), "awslink");
        assert!(!options.clean_session());
        assert!(options.manual_acks());
    }

    #[test]
    fn a_bad_uri_or_a_missing_ca_file_says_what_to_fix() {
        let err = |uri: &str| mqtt_options(&config(uri)).err().unwrap_or_default();
        assert!(err("ws://localhost:1883").contains("use tcp:// or ssl://"));
        assert!(err("tcp://localhost").contains("no host:port"));
        let mut c = config("ssl://localhost:8883");
        c.connection.ca_cert = Some("/nonexistent/ca.pem".into());
        let e = mqtt_options(&c).err().unwrap_or_default();
        assert!(e.starts_with("localCACert /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn one_refused_append_holds_the_whole_message() {
        use Taken::*;
        assert_eq!(worse(Yes, Yes), Yes);
        assert_eq!(worse(Yes, YesButFull), YesButFull);
        assert_eq!(worse(YesButFull, No), No);
        assert_eq!(worse(No, Yes), No);
    }
}

//! The uplink intake: the two persistent local sessions (fixed client ids, `clean_session(false)`)
//! that receive everything local applications send to the cloud, on one thread of their own —
//! the main session and the control lane's session ([`sessions`] says which subscribes and
//! journals what). This is the only file that knows rumqttc: its options (the local URI and TLS
//! for it), the event loops, and the acknowledgement plumbing into their request channels and
//! `pending` queues. What a message becomes is [`ingest`]'s job, when to hold or park is
//! [`hold`]'s.
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
//! crash while holding loses nothing: unacknowledged messages are delivered again. Each session
//! holds on its own: a full telemetry lane holds the main session, while the control session
//! keeps taking control messages (the journal refuses those only beyond a reserve above its
//! limits, or when the disk is low).

pub mod hold;
pub mod ingest;
mod marker;
pub mod sessions;
pub mod thread;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Packet, PubAck, PubRec, Publish, QoS,
    Request, Transport,
};

use self::hold::{Arrival, Hold};
use self::ingest::{Counters, Ingest, Taken};
use self::marker::Granted;
use self::sessions::{marker_topic, Coordination, Record, Session};
use super::connection::LocalConnection;
use crate::address::LocalAddress;
use crate::clock::LogLimiter;
use crate::fault::{self, Fault};

/// Largest burst journaled before one flush and its acknowledgements.
const MAX_BATCH: usize = 512;
/// While holding, how often the journal is asked whether it has room again.
const RESUME_CHECK: Duration = Duration::from_millis(200);
/// How long the main session waits at start for the control session's first SUBACK.
const CONTROL_START: Duration = Duration::from_secs(5);
/// A filter nobody subscribes to: unsubscribing from it wakes the event loop.
const WAKE_FILTER: &str = "awslink/intake/wake";
/// Largest packet the intake reads; bigger payloads than `maxPayloadBytes` must still arrive to
/// be quarantined, and Mosquitto's own default limit is 256 MB.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// The rumqttc options of a persistent `session`: its client id, `clean_session(false)`, manual
/// acknowledgements, TLS for `ssl://` / `mqtts://`.
fn mqtt_options(c: &LocalConnection, session: Session) -> Result<MqttOptions, String> {
    let LocalAddress { tls, host, port } = LocalAddress::parse(&c.uri)?;
    let mut options = MqttOptions::new(session.client_id(&c.client_id), host, port);
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
        options.set_transport(Transport::Tls(
            c.tls().rumqttc_tls().map_err(|e| e.to_string())?,
        ));
    }
    Ok(options)
}

/// True while the event loop already read more incoming messages than it handed out.
fn more_buffered(eventloop: &EventLoop) -> bool {
    eventloop
        .state
        .events
        .iter()
        .any(|e| matches!(e, Event::Incoming(Packet::Publish(_))))
}

struct Intake {
    session: Session,
    client_id: String,
    ingest: Arc<Ingest>,
    coordination: Arc<Coordination>,
    /// Main session: the control session's breaks when it last learned that the control
    /// session has its own copy of every control message ([`sessions`]); `None`: not on this
    /// connection.
    covered_at: Option<u64>,
    /// Main session: the topic of its marker, the value of the one sent on this connection
    /// (and the control session's breaks then), the last value used.
    marker_topic: String,
    marker_sent: Option<(u64, u64)>,
    marker_seq: u64,
    /// Main session: when the marker last sent is overdue (monotonic ms, 0: none); the wake
    /// task wakes the loop then, so the warning comes on time on a quiet broker.
    marker_due_ms: Arc<AtomicU64>,
    /// Control session: where its granted filters are recorded.
    record: Record,
    eventloop: EventLoop,
    client: AsyncClient,
    /// Packet id of the acknowledgement queued in the request channel, until it is sent.
    ack_trigger: Option<u16>,
    filters: Vec<String>,
    uri: String,
    /// Journaled and waiting for the burst's flush and acknowledgement.
    batch: Vec<Publish>,
    /// Received while the journal had no room (not journaled, not acknowledged, in order), and
    /// whether the intake holds or parks.
    hold: Hold<Publish>,
    /// [`Hold::holding`] for the wake-up task: while set, the event loop is woken every
    /// [`RESUME_CHECK`].
    holding: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    /// A wake-up (or the stop's DISCONNECT) is queued and not yet seen by the loop.
    wake_pending: Arc<AtomicBool>,
    disconnect_queued: bool,
    connect_log: LogLimiter,
    refusal_log: LogLimiter,
}

impl Intake {
    /// Writes the acknowledgements of `batch`, in receive order, into the connection's outgoing
    /// buffer. The event loop writes that buffer after every read and every request; so that
    /// the last acknowledgements of a burst do not wait for the next read, one acknowledgement
    /// goes through the request channel as a trigger — at most one at a time (`ack_trigger`
    /// holds its packet id until the loop reports it sent). Measured: queueing every burst's
    /// last acknowledgement filled the channel under load, and the overflow path
    /// (`EventLoop::pending`, one timer tick per request) then delayed every message by ~1 ms;
    /// a delayed acknowledgement also made Mosquitto 2.0.11 deliver later messages out of
    /// order.
    fn acknowledge(&mut self) {
        let mut acked: Vec<Publish> = self
            .batch
            .drain(..)
            .filter(|p| p.qos != QoS::AtMostOnce)
            .collect();
        let last = if self.ack_trigger.is_none() {
            acked.pop()
        } else {
            None
        };
        let ack = |p: &Publish| match p.qos {
            QoS::ExactlyOnce => Request::PubRec(PubRec::new(p.pkid)),
            _ => Request::PubAck(PubAck::new(p.pkid)),
        };
        for p in &acked {
            if let Err(e) = self.eventloop.state.handle_outgoing_packet(ack(p)) {
                warn!("cannot acknowledge a local message: {e}");
            }
        }
        if let Some(last) = last {
            if self.client.try_ack(&last).is_ok() {
                self.ack_trigger = Some(last.pkid);
            } else {
                self.eventloop.pending.push_back(ack(&last));
            }
        }
    }

    /// Holds what follows (see [`Hold::start`]).
    fn start_holding(&mut self, why: &str) {
        let started = self.hold.start();
        self.report_hold(started, why);
    }

    /// Tells the wake-up task that the intake holds; counts and reports a hold that `started`.
    fn report_hold(&self, started: bool, why: &str) {
        self.holding.store(true, Ordering::Release);
        if started {
            let c = self.counters();
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
        let size = p.payload.len() + p.topic.len();
        match self.hold.arrive(p, size) {
            Arrival::Take(p) => {
                self.take(p);
            }
            Arrival::Held => {}
            Arrival::Park => {
                // A broker without an in-flight limit keeps sending: do not buffer it all.
                self.commit();
                warn!("{} local messages held: disconnecting the intake until the journal has room; Mosquitto keeps them queued for the session", self.hold.len());
                self.eventloop
                    .pending
                    .push_back(Request::Disconnect(rumqttc::Disconnect));
            }
        }
        if self.batch.len() >= MAX_BATCH || !more_buffered(&self.eventloop) {
            self.commit();
        }
        self.update_held();
    }

    /// Journals one message; false when the journal is now full or refused it (the message
    /// then waits before every other held one), and the intake holds what follows.
    fn take(&mut self, p: Publish) -> bool {
        if self.session == Session::Main && p.topic == self.marker_topic {
            self.on_marker(&p.payload);
            self.batch.push(p);
            return true;
        }
        if fault::is(Fault::IntakeExit) {
            // Ends the thread the way a failure would (no panic hook: resume_unwind).
            std::panic::resume_unwind(Box::new("fault injection: the intake ends"));
        }
        let qos = if p.qos == QoS::AtMostOnce { 0 } else { 1 };
        match self
            .ingest
            .take_for(self.session, self.covered(), &p.topic, &p.payload, qos)
        {
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
                let size = p.payload.len() + p.topic.len();
                let started = self.hold.refused(p, size);
                self.report_hold(started, "the journal refuses writes");
                false
            }
        }
    }

    /// While holding: once the journal has room (and takes writes), retry a burst whose flush
    /// failed, then journal the held messages in order.
    fn try_resume(&mut self) {
        if !self.hold.holding() || !self.ingest.has_room(self.session) {
            return;
        }
        if !self.commit() {
            return;
        }
        // Still holding while these are taken, so `take` refusing one only keeps holding.
        while let Some(p) = self.hold.take_next() {
            if !self.take(p) {
                self.commit();
                return self.update_held();
            }
            if self.batch.len() >= MAX_BATCH && !self.commit() {
                return self.update_held();
            }
        }
        if self.commit() {
            self.hold.resumed();
            self.holding.store(false, Ordering::Release);
            self.counters().paused.store(false, Ordering::Relaxed);
            info!(
                "journal has room again: the local {} session takes messages again",
                self.session.name()
            );
        }
        self.update_held();
    }

    fn update_held(&self) {
        let held = self.hold.len() as u64;
        self.counters().held.store(held, Ordering::Relaxed);
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
                self.acknowledge();
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

    /// Publishes the marker `seq` on this session's marker topic (QoS 1); false when the
    /// request channel is full (try again later).
    fn publish_marker(&self, seq: u64) -> bool {
        let topic = self.marker_topic.clone();
        let payload = seq.to_string().into_bytes();
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_ok()
    }

    fn on_connected(&mut self, session_present: bool) {
        let c = self.counters();
        c.connects.fetch_add(1, Ordering::Relaxed);
        c.connected.store(true, Ordering::Relaxed);
        info!(
            "local intake {} session up ({}, session present: {session_present})",
            self.session.name(),
            self.uri
        );
        self.connected_for_marker(session_present);
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
        self.control_lost();
        // A marker lost with the connection says nothing about the broker's ACL.
        self.marker_due_ms.store(0, Ordering::Release);
        let counters = self.ingest.counters.clone();
        let c = counters.session(self.session);
        let was_connected = c.connected.swap(false, Ordering::Relaxed);
        c.subscribed.store(false, Ordering::Relaxed);
        if !self.batch.is_empty() {
            if let Err(e) = self.ingest.commit() {
                error!("cannot flush the journal: {e}");
            }
            self.batch.clear();
        }
        self.hold.forget();
        c.held.store(0, Ordering::Relaxed);
        // rumqttc would hand out what it had read and replay queued requests (acknowledgements
        // with the old connection's packet ids among them) on the next connection: drop both.
        self.eventloop.state.events.clear();
        self.eventloop.pending.clear();
        self.ack_trigger = None;
        self.wake_pending.store(false, Ordering::Release);
        self.disconnect_queued = false;
        if was_connected || self.connect_log.ready(Duration::from_secs(30)) {
            warn!(
                "local intake {} session to {}: {e}; reconnecting",
                self.session.name(),
                self.uri
            );
        }
    }
}

/// Wakes the event loop while the session holds messages, or (main session) while a marker is
/// due (an UNSUBSCRIBE of a filter nobody uses: the broker answers it and `poll` returns), so a
/// resume never waits for traffic, and without ever cancelling a `poll` in the middle of a
/// write. Only while connected, and at most one at a time, so the request channel never fills.
fn wake_while_holding(
    intake: &Intake,
    counters: Arc<Counters>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let client = intake.client.clone();
    let session = intake.session;
    let coordination = intake.coordination.clone();
    let holding = intake.holding.clone();
    let (stopping, wake_pending) = (intake.stopping.clone(), intake.wake_pending.clone());
    let marker_due_ms = intake.marker_due_ms.clone();
    async move {
        let mut tick = tokio::time::interval(RESUME_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !stopping.load(Ordering::Acquire) {
            tick.tick().await;
            let marker_due = session == Session::Main
                && coordination.marker_wanted.load(Ordering::Acquire)
                && coordination.control_subscribed.load(Ordering::Acquire);
            let marker_overdue = match marker_due_ms.load(Ordering::Acquire) {
                0 => false,
                due => crate::clock::mono_ms() >= due,
            };
            if (holding.load(Ordering::Acquire) || marker_due || marker_overdue)
                && counters.session(session).connected.load(Ordering::Relaxed)
                && !wake_pending.swap(true, Ordering::AcqRel)
                && client.try_unsubscribe(WAKE_FILTER).is_err()
            {
                wake_pending.store(false, Ordering::Release);
            }
        }
    }
}

/// What one session's loop starts from.
struct Setup {
    session: Session,
    options: MqttOptions,
    filters: Vec<String>,
    ingest: Arc<Ingest>,
    coordination: Arc<Coordination>,
    marker_topic: String,
    record: Record,
    uri: String,
}

/// Both sessions of `connection`, journaling through `ingest` (and its lanes).
fn setups(
    connection: &LocalConnection,
    ingest: &Arc<Ingest>,
    coordination: &Arc<Coordination>,
    record: &Record,
) -> Result<[Setup; 2], String> {
    let [main, control] = Session::ALL.map(|session| {
        mqtt_options(connection, session).map(|options| Setup {
            session,
            options,
            filters: session.filters(ingest.lanes(), &connection.client_id),
            ingest: ingest.clone(),
            coordination: coordination.clone(),
            marker_topic: marker_topic(&connection.client_id),
            record: record.clone(),
            uri: connection.uri.clone(),
        })
    });
    Ok([main?, control?])
}

async fn run(setup: Setup, stop: tokio::sync::oneshot::Receiver<()>) {
    let options = setup.options;
    let client_id = options.client_id();
    let (client, eventloop) = AsyncClient::new(options, 64);
    let counters = setup.ingest.counters.clone();
    let session = setup.session;
    let mut intake = Intake {
        session,
        client_id,
        ingest: setup.ingest,
        coordination: setup.coordination,
        covered_at: None,
        marker_topic: setup.marker_topic,
        marker_sent: None,
        marker_due_ms: Arc::new(AtomicU64::new(0)),
        marker_seq: 0,
        record: setup.record,
        eventloop,
        client: client.clone(),
        ack_trigger: None,
        filters: setup.filters,
        uri: setup.uri,
        batch: Vec::new(),
        hold: Hold::default(),
        holding: Arc::new(AtomicBool::new(false)),
        stopping: Arc::new(AtomicBool::new(false)),
        wake_pending: Arc::new(AtomicBool::new(false)),
        disconnect_queued: false,
        connect_log: LogLimiter::default(),
        refusal_log: LogLimiter::default(),
    };
    tokio::spawn(wake_while_holding(&intake, counters.clone()));
    let stop_requested = Arc::new(tokio::sync::Notify::new());
    {
        let (stopping, notify) = (intake.stopping.clone(), stop_requested.clone());
        let wake_pending = intake.wake_pending.clone();
        tokio::spawn(async move {
            let _ = stop.await;
            stopping.store(true, Ordering::Release);
            notify.notify_one();
            // Wake the loop; it queues the DISCONNECT itself, behind its acknowledgements.
            if counters.session(session).connected.load(Ordering::Relaxed)
                && !wake_pending.swap(true, Ordering::AcqRel)
            {
                let _ = client.try_unsubscribe(WAKE_FILTER);
            }
        });
    }
    if session == Session::Main {
        // After a restart, what Mosquitto queued for the main session is left to the control
        // session only once that one's SUBACK says its subscriptions are there.
        let coordination = intake.coordination.clone();
        tokio::select! {
            _ = coordination.control_started.notified() => {}
            _ = tokio::time::sleep(CONTROL_START) => {}
            _ = stop_requested.notified() => {}
        }
    }
    let mut failures: u32 = 0;
    loop {
        if intake.stopping.load(Ordering::Acquire) {
            if !intake.counters().connected.load(Ordering::Relaxed) {
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
                use rumqttc::SubscribeReasonCode::{Failure, Success};
                let codes = &ack.return_codes;
                let granted = if codes.iter().any(|c| matches!(c, Failure)) {
                    Granted::Refused
                } else if codes.iter().any(|c| matches!(c, Success(QoS::AtMostOnce))) {
                    Granted::Downgraded
                } else {
                    Granted::All
                };
                intake.on_subscribed(granted, codes.len());
            }
            Ok(Event::Outgoing(
                rumqttc::Outgoing::PubAck(pkid) | rumqttc::Outgoing::PubRec(pkid),
            )) if intake.ack_trigger == Some(pkid) => {
                intake.ack_trigger = None;
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Unsubscribe(_))) => {
                intake.wake_pending.store(false, Ordering::Release);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if !intake.hold.parking() => break,
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Parked: what is held goes back to Mosquitto (unacknowledged, redelivered).
                intake.on_lost(&"parked until the journal has room");
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(RESUME_CHECK) => {}
                        _ = stop_requested.notified() => break,
                    }
                    if intake.stopping.load(Ordering::Acquire)
                        || intake.ingest.has_room(intake.session)
                    {
                        break;
                    }
                }
                if intake.stopping.load(Ordering::Acquire) {
                    break;
                }
                intake.hold.unparked();
                intake.holding.store(false, Ordering::Release);
                intake.counters().paused.store(false, Ordering::Relaxed);
                info!(
                    "journal has room again: reconnecting the local intake {} session",
                    session.name()
                );
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
        if intake.hold.holding() {
            intake.try_resume();
        }
        intake.send_marker_if_due();
        intake.warn_if_marker_overdue();
    }
    // Acknowledge what is journaled (a failed flush acknowledges nothing).
    intake.commit();
    intake.counters().connected.store(false, Ordering::Relaxed);
    intake.stopping.store(true, Ordering::Release);
    info!("local intake {} session stopped", session.name());
}

#[cfg(test)]
mod tests;

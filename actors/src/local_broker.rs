//! LocalBroker: the persistent session with the local Mosquitto. Every uplink message is mapped
//! and appended to the journal inside paho's message callback, so it is on disk before paho sends
//! the PUBACK. Publishes `LocalPublish` (commands, status). Reconnects to Mosquitto by itself.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use log::{debug, error, info, warn};
use paho_mqtt as mqtt;

use crate::buffer::journal::Journal;
use crate::messages::{
    ActorMetrics, CloudInbound, CloudMessage, Flush, GetMetrics, Journaled, LocalPublish,
    ThingRequest,
};
use crate::metrics::{unix_ms, LogLimiter};
use crate::shadow_mapper::ShadowIngest;
use crate::status_publisher::{last_will_payload, THING_REQUEST_TOPIC};
use crate::topics::{self, Downlink, Identity, UplinkError};

/// How to reach the local broker (the `local*` configuration keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConnection {
    /// paho URI: `tcp://host:port` or `ssl://host:port`.
    pub uri: String,
    /// Fixed client id of the persistent session.
    pub client_id: String,
    /// Optional credentials.
    pub username: Option<String>,
    /// Never logged.
    pub password: Option<String>,
    /// CA for a TLS local broker.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate for a TLS local broker.
    pub cert: Option<PathBuf>,
    /// Client key for a TLS local broker.
    pub key: Option<PathBuf>,
}

/// Everything the LocalBroker needs.
#[derive(Clone)]
pub struct LocalConfig {
    /// The broker and the session.
    pub connection: LocalConnection,
    /// Where the retained status (and the last will) goes.
    pub status_topic: String,
    /// Tenant and device ids for topic mapping.
    pub identity: Identity,
    /// Largest payload AWS IoT accepts; larger messages are quarantined at ingress.
    pub max_payload_bytes: usize,
    /// Ditto twin commands on telemetry/event topics go to the shadow service when set.
    pub shadow: Option<Arc<ShadowIngest>>,
    /// Stored commands older than this are not delivered after a restart.
    pub downlink_ttl: Duration,
}

/// Where the LocalBroker reports.
#[derive(Clone)]
pub struct LocalPeers {
    /// The Buffer, told after each append.
    pub journaled: Recipient<Journaled>,
    /// The StatusPublisher, for `edge/thing/request` and session (re)starts.
    pub thing_requests: Recipient<ThingRequest>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    journaled: AtomicU64,
    quarantined: AtomicU64,
    journal_errors: AtomicU64,
    commands_down: AtomicU64,
    jobs_down: AtomicU64,
    downlink_expired: AtomicU64,
    commands_dropped: AtomicU64,
    connects: AtomicU64,
}

/// State shared with paho's callback threads.
struct Ingest {
    journal: Journal,
    peers: LocalPeers,
    identity: Identity,
    max_payload_bytes: usize,
    shadow: Option<Arc<ShadowIngest>>,
    counters: Counters,
    drop_log: LogLimiter,
    error_log: LogLimiter,
    /// Messages received while the journal refused writes, oldest first (lost on a crash: the
    /// window is bounded by Mosquitto's in-flight limit, as the intake pauses at once).
    overflow: Mutex<VecDeque<CloudMessage>>,
    me: OnceLock<Recipient<Pause>>,
    /// Set from the pause request until the intake resumes.
    pausing: AtomicBool,
}

/// Why the local intake paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PauseReason {
    /// `rejectNew` and the journal is at its limits.
    Full,
    /// The journal refuses writes (disk full, permissions).
    JournalError,
}

/// Callback → actor: stop taking messages until the journal has room again.
#[derive(Message)]
#[rtype(result = "()")]
struct Pause(PauseReason);

impl Ingest {
    /// Runs on paho's thread before the PUBACK: map, journal, notify.
    fn on_message(&self, msg: &mqtt::Message) {
        let topic = msg.topic();
        if topic == THING_REQUEST_TOPIC {
            self.peers.thing_requests.do_send(ThingRequest);
            return;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let cloud = CloudMessage {
            topic: String::new(),
            payload: msg.payload().to_vec(),
            qos: (msg.qos() as i32).min(1),
            enqueued_ms: unix_ms(),
        };
        match topics::uplink(topic, &self.identity) {
            Ok(Some(cloud_topic))
                if self.shadow.is_some()
                    && (cloud_topic.starts_with("telemetry/")
                        || cloud_topic.starts_with("event/")) =>
            {
                let shadow = self
                    .shadow
                    .as_ref()
                    .map(|s| s.on_local(&cloud.payload, cloud.enqueued_ms));
                match shadow.flatten() {
                    Some(requests) => requests.into_iter().for_each(|r| self.append(r)),
                    None => self.forward(cloud_topic, cloud, topic),
                }
            }
            Ok(Some(cloud_topic)) => self.forward(cloud_topic, cloud, topic),
            Ok(None) => debug!("ignoring local message on {topic:?}: not uplink traffic"),
            Err(e @ (UplinkError::MalformedResponse(_) | UplinkError::CloudLimit(_))) => {
                self.quarantine(
                    CloudMessage {
                        topic: topic.to_string(),
                        ..cloud
                    },
                    &e.to_string(),
                );
            }
        }
    }

    /// Journals an uplink message, or quarantines it when AWS would refuse its size.
    fn forward(&self, cloud_topic: String, cloud: CloudMessage, local_topic: &str) {
        if cloud.payload.len() <= self.max_payload_bytes {
            return self.append(CloudMessage {
                topic: cloud_topic,
                ..cloud
            });
        }
        let reason = format!(
            "payload of {} bytes on {local_topic:?} exceeds quota.maxPayloadBytes ({})",
            cloud.payload.len(),
            self.max_payload_bytes
        );
        self.quarantine(
            CloudMessage {
                topic: local_topic.to_string(),
                ..cloud
            },
            &reason,
        );
    }

    /// Appends to the journal. Paho C holds its global lock while this callback runs (every
    /// client of the process, the cloud link included, waits), so it must never block: when the
    /// journal is full (`rejectNew`) or refuses (disk full), the message is kept (journal, or an
    /// in-memory overflow until the journal takes it again) and the actor pauses the local
    /// intake; Mosquitto then holds new messages in awslink's persistent session.
    fn append(&self, msg: CloudMessage) {
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if !overflow.is_empty() {
            overflow.push_back(msg); // keep the order behind what is already waiting
            return;
        }
        match self.journal.append(&msg) {
            Ok(appended) => {
                drop(overflow);
                self.journaled(appended.seq, appended.dropped);
                if appended.full {
                    self.request_pause(PauseReason::Full);
                }
            }
            Err(e) => {
                self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                if self.error_log.ready(Duration::from_secs(10)) {
                    error!("cannot journal a message for {:?}: {e}; keeping it in memory and pausing the local intake", msg.topic);
                }
                overflow.push_back(msg);
                drop(overflow);
                self.request_pause(PauseReason::JournalError);
            }
        }
    }

    fn journaled(&self, seq: u64, dropped: u64) {
        self.counters.journaled.fetch_add(1, Ordering::Relaxed);
        if dropped > 0 && self.drop_log.ready(Duration::from_secs(1)) {
            warn!(
                "buffer full: dropped the oldest queued messages (whenFull dropOldest, {} dropped so far)",
                self.journal.dropped()
            );
        }
        // One notice per burst: the Buffer reads everything appended up to when it handles it.
        if self.journal.announce() {
            self.peers.journaled.do_send(Journaled { last_seq: seq });
        }
    }

    /// Asks the actor to pause the intake. (Not from here: paho-mqtt runs this callback under
    /// its callback lock, and a `disconnect` from inside it deadlocks.)
    fn request_pause(&self, reason: PauseReason) {
        if self.pausing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(me) = self.me.get() {
            me.do_send(Pause(reason));
        }
    }

    /// Moves the in-memory overflow into the journal; true when it is empty.
    fn retry_overflow(&self) -> bool {
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(msg) = overflow.front() {
            match self.journal.append(msg) {
                Ok(appended) => {
                    overflow.pop_front();
                    self.journaled(appended.seq, appended.dropped);
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn quarantine(&self, msg: CloudMessage, reason: &str) {
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        warn!("message on {:?} quarantined: {reason}", msg.topic);
        if let Err(e) = self.journal.quarantine_new(&msg, reason) {
            error!("cannot store the quarantined message: {e}");
        }
    }
}

/// The local session actor.
pub struct LocalBroker {
    config: LocalConfig,
    ingest: Arc<Ingest>,
    client: Option<mqtt::AsyncClient>,
    /// Set while the intake is paused; the handle of the timer that checks for room.
    paused: Option<SpawnHandle>,
    pauses: u64,
    unrouted_log: LogLimiter,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ConnectResult(Result<(), String>);

impl LocalBroker {
    /// A broker session that journals into `journal` and reports to `peers`.
    pub fn new(config: LocalConfig, journal: Journal, peers: LocalPeers) -> Self {
        let ingest = Arc::new(Ingest {
            journal,
            peers,
            identity: config.identity.clone(),
            max_payload_bytes: config.max_payload_bytes,
            shadow: config.shadow.clone(),
            counters: Counters::default(),
            drop_log: LogLimiter::default(),
            error_log: LogLimiter::default(),
            overflow: Mutex::new(VecDeque::new()),
            me: OnceLock::new(),
            pausing: AtomicBool::new(false),
        });
        LocalBroker {
            config,
            ingest,
            client: None,
            paused: None,
            pauses: 0,
            unrouted_log: LogLimiter::default(),
        }
    }

    fn create_client(&self) -> Result<mqtt::AsyncClient, String> {
        let client = mqtt::CreateOptionsBuilder::new()
            .server_uri(&self.config.connection.uri)
            .client_id(&self.config.connection.client_id)
            .persistence(None)
            .send_while_disconnected(true)
            .allow_disconnected_send_at_anytime(true)
            .max_buffered_messages(10_000)
            .create_client()
            .map_err(|e| format!("cannot create the local MQTT client: {e}"))?;
        let ingest = self.ingest.clone();
        client.set_message_callback(move |_, msg| {
            if let Some(msg) = msg {
                ingest.on_message(&msg);
            }
        });
        let ingest = self.ingest.clone();
        client.set_connected_callback(move |cli| {
            ingest.counters.connects.fetch_add(1, Ordering::Relaxed);
            info!("local broker session up ({})", cli.server_uri());
            let mut filters: Vec<String> = topics::UPLINK_FILTERS
                .iter()
                .map(|f| f.to_string())
                .collect();
            filters.push(THING_REQUEST_TOPIC.to_string());
            // Subscriptions persist in the session, but a broker without persistence forgets them.
            drop(cli.subscribe_many_same_qos(&filters, 1));
            ingest.peers.thing_requests.do_send(ThingRequest);
        });
        client.set_connection_lost_callback(|cli| {
            warn!(
                "local broker connection lost ({}); reconnecting",
                cli.server_uri()
            );
        });
        Ok(client)
    }

    fn connect_options(&self) -> Result<mqtt::ConnectOptions, String> {
        let c = &self.config.connection;
        let will = mqtt::MessageBuilder::new()
            .topic(&self.config.status_topic)
            .payload(last_will_payload())
            .qos(1)
            .retained(true)
            .finalize();
        let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
        opts.clean_session(false)
            .keep_alive_interval(Duration::from_secs(30))
            .automatic_reconnect(Duration::from_millis(500), Duration::from_secs(5))
            .will_message(will);
        if let Some(user) = &c.username {
            opts.user_name(user);
        }
        if let Some(password) = &c.password {
            opts.password(password.as_str());
        }
        if c.uri.starts_with("ssl://") || c.uri.starts_with("mqtts://") {
            let mut ssl = mqtt::SslOptionsBuilder::new();
            ssl.enable_server_cert_auth(true).verify(true);
            if let Some(ca) = &c.ca_cert {
                ssl.trust_store(ca)
                    .map_err(|e| format!("localCACert {}: {e}", ca.display()))?;
            }
            if let Some(cert) = &c.cert {
                ssl.key_store(cert)
                    .map_err(|e| format!("localCert {}: {e}", cert.display()))?;
            }
            if let Some(key) = &c.key {
                ssl.private_key(key)
                    .map_err(|e| format!("localKey {}: {e}", key.display()))?;
            }
            opts.ssl_options(ssl.finalize());
        }
        Ok(opts.finalize())
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = &self.client else { return };
        let opts = match self.connect_options() {
            Ok(o) => o,
            Err(e) => {
                error!("{e}");
                return;
            }
        };
        let token = client.connect(opts);
        let addr = ctx.address();
        actix_rt::spawn(async move {
            let result = token.await.map(|_| ()).map_err(|e| e.to_string());
            addr.do_send(ConnectResult(result));
        });
    }
}

impl Actor for LocalBroker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let _ = self.ingest.me.set(ctx.address().recipient());
        self.replay_downlink(ctx);
        match self.create_client() {
            Ok(client) => self.client = Some(client),
            Err(e) => {
                error!("{e}");
                System::current().stop_with_code(1);
                return;
            }
        }
        self.connect(ctx);
    }
}

impl LocalBroker {
    /// Runs every 200 ms while paused: journal the overflow, reconnect when below 90% of the
    /// limits (hysteresis, so the intake does not flap).
    fn try_resume(&mut self, ctx: &mut Context<Self>) {
        let journal = &self.ingest.journal;
        if !journal.disk_ok(1.5) || !self.ingest.retry_overflow() || !journal.has_room(0.5) {
            return;
        }
        if let Some(handle) = self.paused.take() {
            ctx.cancel_future(handle);
        }
        info!("journal has room again: resuming the local intake");
        self.ingest.pausing.store(false, Ordering::SeqCst);
        self.connect(ctx);
    }
}

impl Handler<Pause> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: Pause, ctx: &mut Self::Context) {
        if self.paused.is_some() {
            return;
        }
        self.pauses += 1;
        let why = match msg.0 {
            PauseReason::Full => {
                "buffer full (whenFull rejectNew) or disk space below buffer.minFreeBytes"
            }
            PauseReason::JournalError => "the journal refuses writes",
        };
        warn!("{why}: pausing the local intake; Mosquitto holds new messages for the {:?} session until there is room", self.config.connection.client_id);
        if let Some(client) = &self.client {
            drop(client.disconnect(None));
        }
        self.paused =
            Some(ctx.run_interval(Duration::from_millis(200), |act, ctx| act.try_resume(ctx)));
    }
}

impl Handler<ConnectResult> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: ConnectResult, ctx: &mut Self::Context) {
        // paho reconnects by itself only after a first successful connect: retry that one here.
        if let Err(e) = msg.0 {
            if self.paused.is_some() {
                return;
            }
            warn!(
                "cannot connect to the local broker {}: {e}; retrying in 1 s",
                self.config.connection.uri
            );
            ctx.run_later(Duration::from_secs(1), |act, ctx| act.connect(ctx));
        }
    }
}

impl Handler<LocalPublish> for LocalBroker {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: LocalPublish, _ctx: &mut Self::Context) -> Self::Result {
        let Some(client) = &self.client else {
            return Box::pin(async { Err("local client not created".to_string()) });
        };
        let message = mqtt::MessageBuilder::new()
            .topic(msg.topic)
            .payload(msg.payload)
            .qos(msg.qos.clamp(0, 1))
            .retained(msg.retain)
            .finalize();
        let token = client.publish(message);
        Box::pin(async move { token.await.map(|_| ()).map_err(|e| e.to_string()) })
    }
}

impl Handler<CloudInbound> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: CloudInbound, ctx: &mut Self::Context) {
        let counters = &self.ingest.counters;
        let local_topics = match topics::downlink(&msg.topic, &self.config.identity) {
            Downlink::Command(local_topics) => {
                counters.commands_down.fetch_add(1, Ordering::Relaxed);
                local_topics
            }
            Downlink::Jobs(topic) => {
                counters.jobs_down.fetch_add(1, Ordering::Relaxed);
                vec![topic]
            }
            Downlink::NotForUs(device) => {
                counters.commands_dropped.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "dropping command for device {device:?}: not this gateway ({:?}) or its child",
                    self.config.identity.device_id
                );
                vec![]
            }
            Downlink::Unknown => {
                counters.commands_dropped.fetch_add(1, Ordering::Relaxed);
                if self.unrouted_log.ready(Duration::from_secs(1)) {
                    warn!("dropping cloud message on unrouted topic {:?}", msg.topic);
                }
                vec![]
            }
        };
        let requests: Vec<_> = local_topics
            .into_iter()
            .map(|topic| {
                ctx.address().send(LocalPublish {
                    topic,
                    payload: msg.payload.clone(),
                    qos: 1,
                    retain: false,
                })
            })
            .collect();
        let journal = self.ingest.journal.clone();
        // Forget the stored copy once Mosquitto has every local copy (or it was dropped); on
        // failure it stays and is delivered at the next start (within downlinkTtlSecs).
        actix_rt::spawn(async move {
            let mut delivered = true;
            for request in requests {
                if let Ok(Err(e)) | Err(e) = request.await.map_err(|e| e.to_string()) {
                    warn!(
                        "cannot deliver {:?} to the local broker yet: {e}",
                        msg.topic
                    );
                    delivered = false;
                }
            }
            if let (true, Some(seq)) = (delivered, msg.stored) {
                if let Err(e) = journal.remove_downlink(seq) {
                    warn!("cannot forget delivered downlink message {seq}: {e}");
                }
            }
        });
    }
}

impl LocalBroker {
    /// At start: deliver the commands a previous run stored but could not hand to Mosquitto,
    /// dropping (and counting) those older than the downlink TTL.
    fn replay_downlink(&mut self, ctx: &mut Context<Self>) {
        let journal = &self.ingest.journal;
        let entries = match journal.downlink_entries() {
            Ok(e) => e,
            Err(e) => return error!("cannot read stored downlink messages: {e}"),
        };
        let now = unix_ms();
        for (seq, msg) in entries {
            if now.saturating_sub(msg.enqueued_ms) > self.config.downlink_ttl.as_millis() as u64 {
                self.ingest
                    .counters
                    .downlink_expired
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    "dropping stored command on {:?}: older than the downlink TTL",
                    msg.topic
                );
                if let Err(e) = journal.remove_downlink(seq) {
                    warn!("cannot forget expired downlink message {seq}: {e}");
                }
                continue;
            }
            ctx.address().do_send(CloudInbound {
                topic: msg.topic,
                payload: msg.payload,
                stored: Some(seq),
                received_ms: msg.enqueued_ms,
            });
        }
    }
}

impl Handler<Flush> for LocalBroker {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        // Stop taking messages: a disconnect sends no PUBACK for anything not yet journaled.
        let token = self.client.as_ref().map(|c| {
            c.disconnect(
                mqtt::DisconnectOptionsBuilder::new()
                    .timeout(Duration::from_secs(1))
                    .finalize(),
            )
        });
        let journal = self.ingest.journal.clone();
        Box::pin(async move {
            if let Some(token) = token {
                let _ = token.await;
            }
            if let Err(e) = journal.flush() {
                error!("cannot flush the journal: {e}");
            }
        })
    }
}

impl Handler<GetMetrics> for LocalBroker {
    type Result = ActorMetrics;

    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        let c = &self.ingest.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ActorMetrics {
            actor: "local",
            counters: vec![
                (
                    "connected",
                    self.client.as_ref().is_some_and(|c| c.is_connected()) as u64,
                ),
                ("connects", get(&c.connects)),
                ("received", get(&c.received)),
                ("journaled", get(&c.journaled)),
                ("quarantined", get(&c.quarantined)),
                ("dropped", self.ingest.journal.dropped()),
                ("paused", self.paused.is_some() as u64),
                ("pauses", self.pauses),
                (
                    "overflow",
                    self.ingest
                        .overflow
                        .lock()
                        .map(|o| o.len() as u64)
                        .unwrap_or(0),
                ),
                ("journal_errors", get(&c.journal_errors)),
                ("commands_down", get(&c.commands_down)),
                ("jobs_down", get(&c.jobs_down)),
                ("downlink_expired", get(&c.downlink_expired)),
                ("commands_dropped", get(&c.commands_dropped)),
            ],
        }
    }
}

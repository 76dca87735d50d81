//! The LocalBroker actor: awslink's sessions with the local Mosquitto and the routing of cloud
//! messages to local topics. The uplink [`intake`] (the persistent session, on its own thread)
//! journals every message before acknowledging it; a second, paho session (options in
//! [`connection`]) publishes `LocalPublish` (commands, status, Ditto responses) and carries the
//! last will. Both reconnect to Mosquitto by themselves.

pub mod connection;
pub mod intake;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{error, info, warn};
use paho_mqtt as mqtt;

pub use self::connection::{publisher_client_id, LocalConnection};
use self::intake::ingest::{Counters, Ingest, IntakePeers};
use self::intake::sessions::{Session, SessionCounters};
use self::intake::thread::IntakeHandle;
use crate::batching::Batching;
use crate::clock::{unix_ms, LogLimiter};
use crate::fatal::fatal;
use crate::lanes::LaneRules;
use crate::messages::{
    ActorMetrics, CloudInbound, Flush, GetMetrics, Journaled, LocalPublish, ThingRequest,
};
use crate::routes::Routes;
use crate::shadow::ShadowIngest;
use crate::store::{DownlinkStore, Journal};
use crate::topics::{self, Downlink, Identity};

/// How often the LocalBroker checks that its intake thread still runs.
const INTAKE_CHECK: Duration = Duration::from_millis(200);

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
    /// Basic Ingest routes, applied at ingress (the journal holds the final topic).
    pub routes: Routes,
    /// Batching rules: each journaled message carries the rule its local topic matches.
    pub batching: Batching,
    /// The lane of each local topic; the control lane's filters get a session of their own.
    pub lanes: LaneRules,
    /// Ditto twin commands on telemetry/event topics go to the shadow service when set.
    pub shadow: Option<Arc<ShadowIngest>>,
    /// Stored commands older than this are not delivered after a restart.
    pub downlink_ttl: Duration,
}

/// Where the LocalBroker reports.
#[derive(Clone)]
pub struct LocalPeers {
    /// The Buffer, told after appends.
    pub journaled: Recipient<Journaled>,
    /// The StatusPublisher, for `edge/thing/request` and session (re)starts.
    pub thing_requests: Recipient<ThingRequest>,
}

#[derive(Default)]
struct DownCounters {
    commands_down: u64,
    jobs_down: u64,
    downlink_expired: u64,
    commands_dropped: u64,
    connects: Arc<AtomicU64>,
}

/// Where the LocalBroker publishes the local copies of cloud messages.
enum Sessions {
    /// Its own paho session `{id}-pub`; the intake and that session start with the actor.
    Mosquitto,
    /// Another recipient, and no session is started (tests of the routing alone).
    #[cfg(test)]
    Copies(Recipient<LocalPublish>),
}

/// The local broker actor: owns the uplink [`intake`] (the persistent session, on its own
/// thread) and a paho session for what awslink publishes locally (commands, status, Ditto
/// responses) that carries the status topic's last will.
pub struct LocalBroker {
    config: LocalConfig,
    journal: Journal,
    /// Where commands from the cloud wait until Mosquitto has them.
    downlink: DownlinkStore,
    peers: LocalPeers,
    sessions: Sessions,
    intake_counters: Arc<Counters>,
    intake: Option<IntakeHandle>,
    client: Option<mqtt::AsyncClient>,
    counters: DownCounters,
    unrouted_log: LogLimiter,
    /// Set once the intake was asked to stop (shutdown).
    stopping: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct ConnectResult(Result<(), String>);

impl LocalBroker {
    /// A broker session that journals into `journal` and reports to `peers`.
    pub fn new(config: LocalConfig, journal: Journal, peers: LocalPeers) -> Self {
        LocalBroker {
            config,
            downlink: journal.downlink(),
            journal,
            peers,
            sessions: Sessions::Mosquitto,
            intake_counters: Arc::new(Counters::default()),
            intake: None,
            client: None,
            counters: DownCounters::default(),
            unrouted_log: LogLimiter::default(),
            stopping: false,
        }
    }

    /// A broker that starts no session and publishes the local copies of cloud messages to
    /// `copies` (tests of the routing and the downlink store without Mosquitto).
    #[cfg(test)]
    fn routing_only(
        config: LocalConfig,
        journal: Journal,
        peers: LocalPeers,
        copies: Recipient<LocalPublish>,
    ) -> Self {
        LocalBroker {
            sessions: Sessions::Copies(copies),
            ..LocalBroker::new(config, journal, peers)
        }
    }

    fn create_client(&self) -> Result<mqtt::AsyncClient, String> {
        let client = connection::create_client(&self.config.connection)?;
        let thing_requests = self.peers.thing_requests.clone();
        let connects = self.counters.connects.clone();
        client.set_connected_callback(move |cli| {
            connects.fetch_add(1, Ordering::Relaxed);
            info!("local broker session up ({})", cli.server_uri());
            thing_requests.do_send(ThingRequest);
        });
        client.set_connection_lost_callback(|cli| {
            warn!(
                "local broker connection lost ({}); reconnecting",
                cli.server_uri()
            );
        });
        Ok(client)
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = &self.client else { return };
        let opts =
            match connection::connect_options(&self.config.connection, &self.config.status_topic) {
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

    fn start_intake(&mut self) -> Result<(), String> {
        let peers = IntakePeers {
            journaled: self.peers.journaled.clone(),
            thing_requests: self.peers.thing_requests.clone(),
        };
        let ingest = Ingest::new(
            self.config.identity.clone(),
            self.config.max_payload_bytes,
            self.config.shadow.clone(),
            self.journal.clone(),
            peers,
            self.intake_counters.clone(),
        )
        .with_routes(self.config.routes.clone())
        .with_lanes(self.config.lanes.clone())
        .with_batching(self.config.batching.clone());
        let handle = intake::thread::start(&self.config.connection, ingest, self.journal.path())?;
        self.intake = Some(handle);
        Ok(())
    }
}

impl Actor for LocalBroker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.replay_downlink(ctx);
        if !matches!(self.sessions, Sessions::Mosquitto) {
            return;
        }
        let started = self
            .create_client()
            .map(|client| self.client = Some(client))
            .and_then(|()| self.start_intake());
        if let Err(e) = started {
            self.stopping = true;
            return fatal(&format!("cannot start the local sessions: {e}"));
        }
        self.connect(ctx);
        // Without its intake awslink takes no local messages: exit non-zero so the service
        // manager (systemd, Docker) restarts it, rather than run on half alive.
        ctx.run_interval(INTAKE_CHECK, |act, _ctx| {
            if !act.stopping && act.intake_counters.exited.load(Ordering::Acquire) {
                act.stopping = true;
                fatal("the local intake thread ended unexpectedly");
            }
        });
    }
}

impl Handler<ConnectResult> for LocalBroker {
    type Result = ();

    fn handle(&mut self, msg: ConnectResult, ctx: &mut Self::Context) {
        // paho reconnects by itself only after a first successful connect: retry that one here.
        if let Err(e) = msg.0 {
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
        let counters = &mut self.counters;
        let (route, copies) = local_copies(&msg.topic, &msg.payload, &self.config.identity);
        match route {
            Route::Command => counters.commands_down += 1,
            Route::Jobs => counters.jobs_down += 1,
            Route::NotForUs(device) => {
                counters.commands_dropped += 1;
                warn!(
                    "dropping command for device {device:?}: not this gateway ({:?}) or its child",
                    self.config.identity.device_id
                );
            }
            Route::Unknown => {
                counters.commands_dropped += 1;
                if self.unrouted_log.ready(Duration::from_secs(1)) {
                    warn!("dropping cloud message on unrouted topic {:?}", msg.topic);
                }
            }
        }
        let target = match &self.sessions {
            Sessions::Mosquitto => ctx.address().recipient(),
            #[cfg(test)]
            Sessions::Copies(copies) => copies.clone(),
        };
        let requests: Vec<_> = copies.into_iter().map(|c| target.send(c)).collect();
        let downlink = self.downlink.clone();
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
                if let Err(e) = downlink.remove(seq) {
                    warn!("cannot forget delivered downlink message {seq}: {e}");
                }
            }
        });
    }
}

/// Where a cloud message goes locally (what it counts as).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// A command for this gateway or one of its children.
    Command,
    /// A Jobs reply or notification.
    Jobs,
    /// A command for another device: dropped.
    NotForUs(String),
    /// A topic awslink does not route: dropped.
    Unknown,
}

/// The route of a cloud message on `topic` and its local copies (QoS 1, not retained).
fn local_copies(topic: &str, payload: &[u8], identity: &Identity) -> (Route, Vec<LocalPublish>) {
    let (route, local_topics) = match topics::downlink(topic, identity) {
        Downlink::Command(local_topics) => (Route::Command, local_topics),
        Downlink::Jobs(topic) => (Route::Jobs, vec![topic]),
        Downlink::NotForUs(device) => (Route::NotForUs(device), vec![]),
        Downlink::Unknown => (Route::Unknown, vec![]),
    };
    let copies = local_topics
        .into_iter()
        .map(|topic| LocalPublish {
            topic,
            payload: payload.to_vec(),
            qos: 1,
            retain: false,
        })
        .collect();
    (route, copies)
}

impl LocalBroker {
    /// At start: deliver the commands a previous run stored but could not hand to Mosquitto,
    /// dropping (and counting) those older than the downlink TTL.
    fn replay_downlink(&mut self, ctx: &mut Context<Self>) {
        let downlink = self.downlink.clone();
        let entries = match downlink.entries() {
            Ok(e) => e,
            Err(e) => return error!("cannot read stored downlink messages: {e}"),
        };
        let now = unix_ms();
        for (seq, msg) in entries {
            if now.saturating_sub(msg.enqueued_ms) > self.config.downlink_ttl.as_millis() as u64 {
                self.counters.downlink_expired += 1;
                warn!(
                    "dropping stored command on {:?}: older than the downlink TTL",
                    msg.topic
                );
                if let Err(e) = downlink.remove(seq) {
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
        // Stop taking messages first (the intake acknowledges only what is journaled), then
        // close the publishing session cleanly (no last will) and flush.
        self.stopping = true;
        let intake = self.intake.as_mut().map(|i| i.stop());
        let client = self.client.clone();
        let journal = self.journal.clone();
        Box::pin(async move {
            if let Some(intake) = intake {
                intake.await;
            }
            if let Some(client) = client {
                let token = client.disconnect(
                    mqtt::DisconnectOptionsBuilder::new()
                        .timeout(Duration::from_secs(1))
                        .finalize(),
                );
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
        let c = &self.intake_counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let flag = |a: &std::sync::atomic::AtomicBool| a.load(Ordering::Relaxed) as u64;
        let sum = |f: fn(&SessionCounters) -> &AtomicU64| {
            c.sessions.iter().map(|s| get(f(s))).sum::<u64>()
        };
        let all = |f: fn(&SessionCounters) -> &std::sync::atomic::AtomicBool| {
            c.sessions_where(true, |s| f(s).load(Ordering::Relaxed)) as u64
        };
        let control = c.session(Session::Control);
        let intake_up = all(|s| &s.connected) == 1;
        let publisher_up = self.client.as_ref().is_some_and(|c| c.is_connected());
        ActorMetrics {
            actor: "local",
            counters: vec![
                ("connected", (intake_up && publisher_up) as u64),
                ("subscribed", all(|s| &s.subscribed)),
                (
                    "connects",
                    sum(|s| &s.connects) + get(&self.counters.connects),
                ),
                ("received", get(&c.received)),
                ("journaled", get(&c.journaled)),
                ("quarantined", get(&c.quarantined)),
                ("dropped", self.journal.dropped_total()),
                (
                    "paused",
                    c.sessions_where(false, |s| s.paused.load(Ordering::Relaxed)) as u64,
                ),
                ("pauses", sum(|s| &s.pauses)),
                ("overflow", sum(|s| &s.held)),
                ("control_connected", flag(&control.connected)),
                ("control_paused", flag(&control.paused)),
                ("control_overflow", get(&control.held)),
                ("skipped", get(&c.skipped)),
                ("journal_errors", get(&c.journal_errors)),
                ("commands_down", self.counters.commands_down),
                ("jobs_down", self.counters.jobs_down),
                ("downlink_expired", self.counters.downlink_expired),
                ("commands_dropped", self.counters.commands_dropped),
            ],
        }
    }
}

#[cfg(test)]
mod tests;

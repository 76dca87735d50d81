//! CloudLink: the one MQTT connection to AWS IoT. Mutual TLS with peer and hostname verification,
//! SNI, no automatic reconnect: on failure or loss it reports `LinkEvent::Down` and stops; the
//! Supervisor starts a fresh one. The connection itself is a session on a thread of its own
//! ([`super::session`]); once it is up the link hands a [`Publisher`] on its outbox to the Buffer
//! via the Supervisor, and watches that the endpoint answers what the Buffer sends.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{info, warn};
use tokio::sync::oneshot;

use super::publisher::{Progress, Publisher};
use super::session::{self, OnMessage, Outbox};
use crate::clock::unix_ms;
use crate::messages::{CloudInbound, Disconnect, LinkEvent};
use crate::model::{CloudMessage, DownCause, DownReason, Link};
use crate::store::DownlinkStore;
use crate::tls::TlsIdentity;
use crate::topics::is_shadow_topic;

/// How often the link checks that the endpoint still answers.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

/// How long a requested disconnect waits for the session to close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Everything the link needs to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Endpoint host name (also SNI and the name the server certificate must carry).
    pub host: String,
    /// Endpoint port (8883, or 443 with ALPN).
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// CA, client certificate and key, ALPN (see [`crate::tls`]).
    pub tls: TlsIdentity,
    /// Username (custom authorizers).
    pub username: Option<String>,
    /// Password (custom authorizers). Never logged.
    pub password: Option<String>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Time allowed for TCP + TLS + CONNACK.
    pub connect_timeout: Duration,
    /// Cloud topic filters to subscribe to.
    pub subscriptions: Vec<String>,
    /// Maximum unacknowledged QoS 1 publishes on the connection (AWS: 100), publishes the drain
    /// gave up on included; the drain's window is the same size.
    pub max_in_flight: usize,
}

/// Where the link reports.
#[derive(Clone)]
pub struct LinkPeers {
    /// The Supervisor.
    pub events: Recipient<LinkEvent>,
    /// Where commands from the cloud go.
    pub inbound: Recipient<CloudInbound>,
    /// Where Device Shadow replies (`$aws/things/…/shadow/…`) go, when the mapper runs.
    pub shadow_inbound: Option<Recipient<CloudInbound>>,
    /// Keeps commands from the cloud until the local broker has them.
    pub downlink_store: Option<DownlinkStore>,
}

fn store_downlink(store: &DownlinkStore, message: &CloudInbound) -> Option<u64> {
    let record = CloudMessage {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: 1,
        enqueued_ms: message.received_ms,
        batch: None,
    };
    match store.append(&record) {
        Ok(seq) => Some(seq),
        Err(e) => {
            warn!(
                "cannot store the command on {:?} ({e}); delivering it from memory only",
                message.topic
            );
            None
        }
    }
}

/// Delivers what the cloud published: shadow replies to the ShadowMapper, everything else stored
/// (when a downlink store is set) and then to the LocalBroker. Runs on the session's I/O thread,
/// before the PUBACK to the cloud is written.
fn deliver(peers: LinkPeers) -> OnMessage {
    Box::new(move |topic, payload| {
        let mut message = CloudInbound {
            topic,
            payload,
            stored: None,
            received_ms: unix_ms(),
        };
        match &peers.shadow_inbound {
            Some(shadow) if is_shadow_topic(&message.topic) => shadow.do_send(message),
            _ => {
                message.stored = peers
                    .downlink_store
                    .as_ref()
                    .and_then(|s| store_downlink(s, &message));
                peers.inbound.do_send(message)
            }
        }
    })
}

/// One connection attempt and, if it succeeds, the connection.
pub struct CloudLink {
    config: LinkConfig,
    peers: LinkPeers,
    attempt: u64,
    /// Shared with the session's I/O thread; `None` until started.
    outbox: Option<Arc<Outbox>>,
    /// Completes when the I/O thread has ended.
    ended: Option<oneshot::Receiver<()>>,
    reported_down: bool,
    /// Publishes the Buffer sent on this link and the endpoint has not answered yet.
    progress: Arc<Progress>,
}

#[derive(Message)]
#[rtype(result = "()")]
enum Internal {
    Up,
    Down(DownReason),
}

impl CloudLink {
    /// A link for attempt number `attempt`; it connects when started.
    pub fn new(config: LinkConfig, peers: LinkPeers, attempt: u64) -> Self {
        CloudLink {
            config,
            peers,
            attempt,
            outbox: None,
            ended: None,
            reported_down: false,
            progress: Arc::new(Progress::default()),
        }
    }

    fn report_down(&mut self, reason: DownReason, ctx: &mut Context<Self>) {
        if !self.reported_down {
            self.reported_down = true;
            info!(
                "cloud link down: {} ({})",
                reason.detail,
                reason.cause.code()
            );
            self.peers.events.do_send(LinkEvent::Down {
                attempt: self.attempt,
                reason,
            });
        }
        self.close();
        ctx.stop();
    }

    /// The session notices a dead connection only when a PINGREQ goes unanswered, up to two
    /// keep-alive periods after the last packet it *sent*. With publishes outstanding, silence for
    /// one keep-alive period is proof enough.
    fn check_progress(&mut self, ctx: &mut Context<Self>) {
        let Some((outstanding, silent)) = self.progress.stalled() else {
            return;
        };
        if silent > self.config.keep_alive {
            let detail = format!(
                "connection lost: keep-alive timeout ({outstanding} publishes unacknowledged for {} s)",
                self.config.keep_alive.as_secs()
            );
            self.report_down(
                DownReason {
                    cause: DownCause::Error,
                    detail,
                },
                ctx,
            );
        }
    }

    /// Has the I/O thread close the connection (not awaited: the actor is going away).
    fn close(&mut self) {
        if let Some(outbox) = &self.outbox {
            outbox.close();
        }
    }
}

impl Actor for CloudLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let outbox = match Outbox::new() {
            Ok(outbox) => Arc::new(outbox),
            Err(e) => {
                return self.report_down(
                    DownReason {
                        cause: DownCause::Error,
                        detail: format!("cannot create the cloud session's wake-up eventfd: {e}"),
                    },
                    ctx,
                )
            }
        };
        info!(
            "connecting to {}:{} as {:?} (attempt {})",
            self.config.host, self.config.port, self.config.client_id, self.attempt
        );
        self.outbox = Some(outbox.clone());
        let (ended_tx, ended_rx) = oneshot::channel();
        self.ended = Some(ended_rx);
        let config = self.config.clone();
        let on_message = deliver(self.peers.clone());
        let addr = ctx.address();
        let spawned = std::thread::Builder::new()
            .name(format!("awslink-cloud-{}", self.attempt))
            .spawn(move || {
                let reason = match session::connect(&config, &outbox) {
                    Ok(session) => {
                        addr.do_send(Internal::Up);
                        session::run(session, &outbox, on_message)
                    }
                    Err(reason) => Some(reason),
                };
                if let Some(reason) = reason {
                    addr.do_send(Internal::Down(reason));
                }
                let _ = ended_tx.send(());
            });
        if let Err(e) = spawned {
            self.report_down(
                DownReason {
                    cause: DownCause::Error,
                    detail: format!("cannot start the cloud session's thread: {e}"),
                },
                ctx,
            );
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.reported_down {
            self.reported_down = true;
            let reason = DownReason {
                cause: DownCause::Error,
                detail: "cloud link stopped".into(),
            };
            self.peers.events.do_send(LinkEvent::Down {
                attempt: self.attempt,
                reason,
            });
        }
        self.close();
    }
}

impl Handler<Internal> for CloudLink {
    type Result = ();

    fn handle(&mut self, msg: Internal, ctx: &mut Self::Context) {
        match msg {
            Internal::Up => {
                let Some(outbox) = &self.outbox else { return };
                ctx.run_interval(WATCHDOG_TICK, |act, ctx| act.check_progress(ctx));
                info!("cloud link up ({}:{})", self.config.host, self.config.port);
                let publisher = Link::new(Arc::new(Publisher::new(
                    outbox.clone(),
                    self.progress.clone(),
                    self.attempt,
                    self.config.max_in_flight,
                )));
                self.peers.events.do_send(LinkEvent::Up {
                    attempt: self.attempt,
                    publisher,
                });
            }
            // A failure while connecting already names its step ("… waiting for CONNACK").
            Internal::Down(reason) => self.report_down(reason, ctx),
        }
    }
}

impl Handler<Disconnect> for CloudLink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Disconnect, _ctx: &mut Self::Context) -> Self::Result {
        self.reported_down = true; // a requested close is not a failure to report
        self.close();
        let ended = self.ended.take();
        Box::pin(
            async move {
                if let Some(ended) = ended {
                    // The I/O thread writes the DISCONNECT within 2 s; a connect in progress
                    // gives up at its next step.
                    if actix_rt::time::timeout(CLOSE_WAIT, ended).await.is_err() {
                        warn!(
                            "the cloud session did not close within {} s",
                            CLOSE_WAIT.as_secs()
                        );
                    }
                }
            }
            .into_actor(self)
            .map(|_, _act, ctx| ctx.stop()),
        )
    }
}

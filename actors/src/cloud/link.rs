//! CloudLink: the one MQTT connection to AWS IoT. Mutual TLS with peer and hostname verification,
//! SNI, no automatic reconnect: on failure or loss it reports `LinkEvent::Down` and stops; the
//! Supervisor starts a fresh one. Once up it hands a [`Publisher`] (its paho client) to the
//! Buffer via the Supervisor, and watches that the endpoint answers what the Buffer sends.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{info, warn};
use paho_mqtt as mqtt;

use super::publisher::{Progress, Publisher};
use super::tls_probe::{self, ProbeTarget};
use crate::clock::unix_ms;
use crate::messages::{CloudInbound, Disconnect, LinkEvent};
use crate::model::{CloudMessage, DownCause, DownReason, Link};
use crate::store::DownlinkStore;
use crate::tls::TlsIdentity;
use crate::topics::is_shadow_topic;

/// How often the link checks that the endpoint still answers.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

/// How long a failed connect waits for its diagnosis before it is reported without one: the
/// next attempt (after the backoff) is never held back longer than this, also when the probe's
/// own handshake stalls (a black-holed endpoint, or one that is just coming back).
pub const DIAGNOSIS_BUDGET: Duration = Duration::from_millis(750);

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
    /// Maximum unacknowledged QoS 1 publishes.
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

/// One connection attempt and, if it succeeds, the connection.
pub struct CloudLink {
    config: LinkConfig,
    peers: LinkPeers,
    attempt: u64,
    client: Option<mqtt::AsyncClient>,
    up: bool,
    reported_down: bool,
    /// Publishes the Buffer sent on this link and the endpoint has not answered yet.
    progress: Arc<Progress>,
}

#[derive(Message)]
#[rtype(result = "()")]
enum Internal {
    Connected(Result<(), String>, Option<mqtt::ConnectReturnCode>),
    Subscribed(Result<(), String>),
    Lost,
    Down(DownReason),
}

impl CloudLink {
    /// A link for attempt number `attempt`; it connects when started.
    pub fn new(config: LinkConfig, peers: LinkPeers, attempt: u64) -> Self {
        CloudLink {
            config,
            peers,
            attempt,
            client: None,
            up: false,
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
        self.close_client();
        ctx.stop();
    }

    /// Paho notices a dead connection only after a PINGREQ goes unanswered, up to two keep-alive
    /// periods after the last packet it *sent*. With publishes outstanding, silence for one
    /// keep-alive period is proof enough.
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

    /// Starts a disconnect (not awaited: the actor is going away) and drops the client.
    fn close_client(&mut self) {
        if let Some(client) = self.client.take() {
            if client.is_connected() {
                drop(client.disconnect(None));
            }
        }
    }

    fn create_client(&self, addr: Addr<Self>) -> Result<mqtt::AsyncClient, String> {
        let uri = format!("ssl://{}:{}", self.config.host, self.config.port);
        let client = mqtt::CreateOptionsBuilder::new()
            .server_uri(uri)
            .client_id(&self.config.client_id)
            .persistence(None)
            .send_while_disconnected(false)
            .create_client()
            .map_err(|e| format!("cannot create the MQTT client: {e}"))?;
        let lost = addr.clone();
        client.set_connection_lost_callback(move |_| lost.do_send(Internal::Lost));
        let inbound = self.peers.inbound.clone();
        let shadow_inbound = self.peers.shadow_inbound.clone();
        let store = self.peers.downlink_store.clone();
        client.set_message_callback(move |_, msg| {
            let Some(msg) = msg else { return };
            let mut message = CloudInbound {
                topic: msg.topic().to_string(),
                payload: msg.payload().to_vec(),
                stored: None,
                received_ms: unix_ms(),
            };
            match &shadow_inbound {
                Some(shadow) if is_shadow_topic(&message.topic) => shadow.do_send(message),
                _ => {
                    // Stored before this callback returns, i.e. before paho's PUBACK to the cloud.
                    message.stored = store.as_ref().and_then(|s| store_downlink(s, &message));
                    inbound.do_send(message)
                }
            }
        });
        Ok(client)
    }

    fn connect_options(&self) -> Result<mqtt::ConnectOptions, String> {
        let c = &self.config;
        let ssl = c.tls.paho_ssl_options().map_err(|e| e.to_string())?;
        let mut opts = mqtt::ConnectOptionsBuilder::with_mqtt_version(mqtt::MqttVersion::V3_1_1);
        opts.ssl_options(ssl)
            .keep_alive_interval(c.keep_alive)
            .connect_timeout(c.connect_timeout)
            .clean_session(true)
            .max_inflight(c.max_in_flight.clamp(1, 65535) as i32);
        if let Some(user) = &c.username {
            opts.user_name(user);
        }
        if let Some(password) = &c.password {
            opts.password(password.as_str());
        }
        Ok(opts.finalize())
    }

    fn probe_target(&self) -> ProbeTarget {
        let c = &self.config;
        ProbeTarget {
            host: c.host.clone(),
            port: c.port,
            tls: c.tls.clone(),
            timeout: c.connect_timeout.min(Duration::from_secs(10)),
        }
    }
}

/// Turns a refused CONNACK into a status reason.
pub fn connack_reason(code: mqtt::ConnectReturnCode) -> DownReason {
    use mqtt::ConnectReturnCode::*;
    let (cause, text) = match code {
        NotAuthorized => (DownCause::NotAuthenticated, "not authorized"),
        BadUserNameOrPassword => (DownCause::NotAuthenticated, "bad user name or password"),
        IdentifierRejected => (DownCause::NotAuthenticated, "client identifier rejected"),
        UnacceptableProtocolVersion => (DownCause::Error, "unacceptable protocol version"),
        ServerUnavailable => (DownCause::Error, "server unavailable"),
        Accepted => (DownCause::Error, "accepted"),
    };
    DownReason {
        cause,
        detail: format!("connection refused: {text}"),
    }
}

impl Actor for CloudLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let prepared = self
            .create_client(ctx.address())
            .and_then(|c| Ok((c, self.connect_options()?)));
        let (client, opts) = match prepared {
            Ok(p) => p,
            Err(detail) => {
                return self.report_down(
                    DownReason {
                        cause: DownCause::Error,
                        detail,
                    },
                    ctx,
                )
            }
        };
        info!(
            "connecting to {}:{} as {:?} (attempt {})",
            self.config.host, self.config.port, self.config.client_id, self.attempt
        );
        let token = client.connect(opts);
        self.client = Some(client);
        let addr = ctx.address();
        actix_rt::spawn(async move {
            let result = match token.await {
                Ok(_) => Internal::Connected(Ok(()), None),
                Err(mqtt::Error::ConnectReturn(code)) => {
                    Internal::Connected(Err(code.to_string()), Some(code))
                }
                Err(e) => Internal::Connected(Err(e.to_string()), None),
            };
            addr.do_send(result);
        });
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
        self.close_client();
    }
}

impl Handler<Internal> for CloudLink {
    type Result = ();

    fn handle(&mut self, msg: Internal, ctx: &mut Self::Context) {
        match msg {
            Internal::Connected(Ok(()), _) => {
                let Some(client) = &self.client else { return };
                let filters = &self.config.subscriptions;
                let token = client.subscribe_many_same_qos(filters, 1);
                let addr = ctx.address();
                actix_rt::spawn(async move {
                    let result = match token.await {
                        Ok(response) => match response.subscribe_many_response() {
                            Some(granted) if granted.iter().any(|q| *q >= 0x80) => {
                                Err("subscription refused by the endpoint (check the policy's iot:Subscribe)".to_string())
                            }
                            _ => Ok(()),
                        },
                        Err(e) => Err(format!("subscribe failed: {e}")),
                    };
                    addr.do_send(Internal::Subscribed(result));
                });
            }
            Internal::Connected(Err(_), Some(code)) => self.report_down(connack_reason(code), ctx),
            Internal::Connected(Err(paho_error), None) => {
                let target = self.probe_target();
                let addr = ctx.address();
                let generic = DownReason {
                    cause: DownCause::Error,
                    detail: format!("connect failed: {paho_error}"),
                };
                let fallback = generic.clone();
                // Whichever comes first is reported (report_down reports once and stops the
                // link, which drops the other): the probe's precise reason, or after the budget
                // paho's own.
                std::thread::spawn(move || {
                    let reason = tls_probe::probe(&target).err().unwrap_or(generic);
                    addr.do_send(Internal::Down(reason));
                });
                ctx.run_later(DIAGNOSIS_BUDGET, move |act, ctx| {
                    let mut reason = fallback;
                    reason.detail.push_str(&format!(
                        " (no diagnosis within {} ms)",
                        DIAGNOSIS_BUDGET.as_millis()
                    ));
                    act.report_down(reason, ctx);
                });
            }
            Internal::Subscribed(Ok(())) => {
                let Some(client) = &self.client else { return };
                self.up = true;
                ctx.run_interval(WATCHDOG_TICK, |act, ctx| act.check_progress(ctx));
                info!("cloud link up ({}:{})", self.config.host, self.config.port);
                let publisher = Link::new(Arc::new(Publisher::new(
                    client.clone(),
                    self.progress.clone(),
                    self.attempt,
                )));
                self.peers.events.do_send(LinkEvent::Up {
                    attempt: self.attempt,
                    publisher,
                });
            }
            Internal::Subscribed(Err(detail)) => self.report_down(
                DownReason {
                    cause: DownCause::NotAuthenticated,
                    detail,
                },
                ctx,
            ),
            Internal::Lost => {
                let detail = if self.up {
                    "connection lost (network error, keep-alive timeout or closed by the endpoint)"
                } else {
                    "connection lost during connect"
                };
                self.report_down(
                    DownReason {
                        cause: DownCause::Error,
                        detail: detail.into(),
                    },
                    ctx,
                )
            }
            Internal::Down(reason) => self.report_down(reason, ctx),
        }
    }
}

impl Handler<Disconnect> for CloudLink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Disconnect, _ctx: &mut Self::Context) -> Self::Result {
        self.reported_down = true; // a requested close is not a failure to report
        let token = self.client.as_ref().filter(|c| c.is_connected()).map(|c| {
            c.disconnect(
                mqtt::DisconnectOptionsBuilder::new()
                    .timeout(Duration::from_secs(2))
                    .finalize(),
            )
        });
        Box::pin(
            async move {
                if let Some(token) = token {
                    if let Err(e) = token.await {
                        warn!("clean disconnect from the cloud failed: {e}");
                    }
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.client = None;
                ctx.stop();
            }),
        )
    }
}

//! StatusPublisher: the retained remote-connection status on the local broker, the gateway
//! parameters on `edge/thing/response`, and the periodic metrics (`awslink::metrics` log lines
//! and the JSON document on [`METRICS_TOPIC`]).

use std::time::Duration;

use actix::prelude::*;
use log::{info, warn};
use serde_json::json;

use crate::clock::unix_secs;
use crate::messages::{ActorMetrics, ConnectionStatus, GetMetrics, LocalPublish, ThingRequest};
use crate::metrics::{format_line, metrics_document, TARGET};
use crate::topics::{Identity, METRICS_TOPIC, THING_RESPONSE_TOPIC};

/// Status payload for a connection state: Kanto's keys plus `detail`.
pub fn status_payload(status: &ConnectionStatus) -> String {
    match &status.reason {
        None if status.connected => {
            json!({"connected": true, "timestamp": status.timestamp}).to_string()
        }
        None => json!({"connected": false, "timestamp": status.timestamp}).to_string(),
        Some(reason) => json!({
            "connected": status.connected,
            "timestamp": status.timestamp,
            "cause": reason.cause.code(),
            "detail": reason.detail,
        })
        .to_string(),
    }
}

/// The retained last will: what the status topic says if awslink dies without a word.
pub fn last_will_payload() -> String {
    json!({"connected": false, "cause": "CONNECTION_UNKNOWN", "detail": "awslink stopped unexpectedly"})
        .to_string()
}

/// Gateway parameters answered on `edge/thing/response`.
pub fn thing_payload(id: &Identity) -> String {
    json!({"deviceId": id.device_id, "tenantId": id.tenant_id}).to_string()
}

/// Publishes status and metrics locally.
pub struct StatusPublisher {
    local: Recipient<LocalPublish>,
    status_topic: String,
    identity: Identity,
    metrics_sources: Vec<Recipient<GetMetrics>>,
    metrics_interval: Duration,
    published: u64,
    connected: bool,
}

impl StatusPublisher {
    /// Publishes through `local`; asks `metrics_sources` every `metrics_interval`.
    pub fn new(
        local: Recipient<LocalPublish>,
        status_topic: String,
        identity: Identity,
        metrics_sources: Vec<Recipient<GetMetrics>>,
        metrics_interval: Duration,
    ) -> Self {
        StatusPublisher {
            local,
            status_topic,
            identity,
            metrics_sources,
            metrics_interval,
            published: 0,
            connected: false,
        }
    }

    /// This actor's own counters.
    fn own_metrics(&self) -> ActorMetrics {
        ActorMetrics {
            actor: "status",
            counters: vec![
                ("connected", self.connected as u64),
                ("published", self.published),
            ],
        }
    }

    /// Asks every actor for its counters, then logs one line per actor and publishes them all
    /// as one JSON document on [`METRICS_TOPIC`].
    fn report_metrics(&self, ctx: &mut Context<Self>) {
        let own = self.own_metrics();
        let requests: Vec<_> = self
            .metrics_sources
            .iter()
            .map(|s| s.send(GetMetrics))
            .collect();
        let local = self.local.clone();
        ctx.spawn(
            async move {
                let mut all = vec![own];
                for request in requests {
                    if let Ok(m) = request.await {
                        all.push(m);
                    }
                }
                for m in &all {
                    log::info!(target: TARGET, "{}", format_line(m));
                }
                local.do_send(LocalPublish {
                    topic: METRICS_TOPIC.into(),
                    payload: metrics_document(&all, unix_secs()).into_bytes(),
                    qos: 0,
                    retain: false,
                });
            }
            .into_actor(self),
        );
    }
}

impl Actor for StatusPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.metrics_interval.is_zero() {
            ctx.run_interval(self.metrics_interval, |act, ctx| act.report_metrics(ctx));
        }
    }
}

impl Handler<ConnectionStatus> for StatusPublisher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, status: ConnectionStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.connected = status.connected;
        self.published += 1;
        let payload = status_payload(&status);
        info!("remote connection status: {payload}");
        let request = self.local.send(LocalPublish {
            topic: self.status_topic.clone(),
            payload: payload.into_bytes(),
            qos: 1,
            retain: true,
        });
        Box::pin(async move {
            // Bounded: with the local broker away the publish waits in paho's queue, and
            // shutdown must not wait for it.
            match actix_rt::time::timeout(Duration::from_secs(1), request).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!("cannot publish the connection status locally: {e}"),
                Ok(Err(e)) => warn!("cannot publish the connection status locally: {e}"),
                Err(_) => warn!("local broker did not acknowledge the connection status within 1 s; it is queued"),
            }
        })
    }
}

impl Handler<GetMetrics> for StatusPublisher {
    type Result = ActorMetrics;

    /// The heartbeat asks every actor, this one too.
    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        self.own_metrics()
    }
}

impl Handler<ThingRequest> for StatusPublisher {
    type Result = ();

    fn handle(&mut self, _msg: ThingRequest, _ctx: &mut Self::Context) {
        self.local.do_send(LocalPublish {
            topic: THING_RESPONSE_TOPIC.into(),
            payload: thing_payload(&self.identity).into_bytes(),
            qos: 1,
            retain: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{DownCause, DownReason};
    use crate::testkit::{probe_answering, ProbeReceiver};
    use serde_json::Value;

    const WAIT: Duration = Duration::from_secs(2);
    const STATUS_TOPIC: &str = "edge/connection/remote/status";

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn payloads() {
        let up = ConnectionStatus {
            connected: true,
            timestamp: 17,
            reason: None,
        };
        assert_eq!(
            parse(&status_payload(&up)),
            json!({"connected": true, "timestamp": 17})
        );
        let down = ConnectionStatus {
            connected: false,
            timestamp: 18,
            reason: Some(DownReason {
                cause: DownCause::NotAuthenticated,
                detail: "connection refused: not authorized".into(),
            }),
        };
        assert_eq!(
            parse(&status_payload(&down)),
            json!({"connected": false, "timestamp": 18, "cause": "CONNECTION_NOT_AUTHENTICATED",
                   "detail": "connection refused: not authorized"})
        );
        assert_eq!(parse(&last_will_payload())["cause"], "CONNECTION_UNKNOWN");
        let id = Identity {
            tenant_id: "t".into(),
            device_id: "d".into(),
        };
        assert_eq!(
            parse(&thing_payload(&id)),
            json!({"deviceId": "d", "tenantId": "t"})
        );
    }

    fn identity() -> Identity {
        Identity {
            tenant_id: "tenant-1".into(),
            device_id: "gw-7".into(),
        }
    }

    /// A StatusPublisher whose local broker is a probe that acknowledges every publish.
    fn start(
        sources: Vec<Recipient<GetMetrics>>,
        interval: Duration,
    ) -> (Addr<StatusPublisher>, ProbeReceiver<LocalPublish>) {
        let (local, published) = probe_answering::<LocalPublish, _>(|_| Ok(()));
        let status =
            StatusPublisher::new(local, STATUS_TOPIC.into(), identity(), sources, interval).start();
        (status, published)
    }

    #[actix::test]
    async fn a_connection_status_is_one_retained_qos1_publish_on_the_status_topic() {
        let (status, mut published) = start(vec![], Duration::ZERO);
        let rows = [
            (
                ConnectionStatus {
                    connected: true,
                    timestamp: 1_700_000_000,
                    reason: None,
                },
                r#"{"connected":true,"timestamp":1700000000}"#,
            ),
            (
                ConnectionStatus {
                    connected: false,
                    timestamp: 1_700_000_005,
                    reason: Some(DownReason {
                        cause: DownCause::Error,
                        detail: "tls handshake failed".into(),
                    }),
                },
                r#"{"cause":"CONNECTION_ERROR","connected":false,"detail":"tls handshake failed","timestamp":1700000005}"#,
            ),
        ];
        for (change, payload) in rows {
            // Answered once the local broker acknowledged the publish.
            status.send(change).await.unwrap();
            let publish = published.expect(WAIT).await;
            assert_eq!(
                publish,
                LocalPublish {
                    topic: STATUS_TOPIC.into(),
                    payload: payload.as_bytes().to_vec(),
                    qos: 1,
                    retain: true,
                },
                "{}",
                String::from_utf8_lossy(&publish.payload)
            );
            published.expect_none(Duration::from_millis(50)).await;
        }
    }

    #[actix::test]
    async fn a_thing_request_is_answered_on_the_thing_response_topic() {
        let (status, mut published) = start(vec![], Duration::ZERO);
        status.send(ThingRequest).await.unwrap();
        assert_eq!(
            published.expect(WAIT).await,
            LocalPublish {
                topic: "edge/thing/response".into(),
                payload: br#"{"deviceId":"gw-7","tenantId":"tenant-1"}"#.to_vec(),
                qos: 1,
                retain: false,
            }
        );
        published.expect_none(Duration::from_millis(50)).await;
    }

    #[actix::test]
    async fn the_metrics_document_is_published_every_interval() {
        let (source, mut asked) = probe_answering::<GetMetrics, _>(|_| ActorMetrics {
            actor: "buffer",
            counters: vec![("queued", 3), ("bytes", 120)],
        });
        let (status, mut published) = start(vec![source], Duration::from_millis(20));
        status
            .send(ConnectionStatus {
                connected: true,
                timestamp: 1,
                reason: None,
            })
            .await
            .unwrap();
        let (metrics, _status) = published
            .expect_matching(WAIT, |p| p.topic == METRICS_TOPIC)
            .await;
        asked.expect(WAIT).await;
        assert_eq!((metrics.qos, metrics.retain), (0, false));
        let mut doc = parse(std::str::from_utf8(&metrics.payload).unwrap());
        let timestamp = doc["timestamp"].take();
        assert!(
            timestamp.as_u64().is_some_and(|t| t > 1_577_836_800),
            "{timestamp}"
        );
        assert_eq!(
            doc,
            json!({"timestamp": null, "status": {"connected": 1, "published": 1},
                   "buffer": {"queued": 3, "bytes": 120}})
        );
        // And again at the next interval.
        published
            .expect_matching(WAIT, |p| p.topic == METRICS_TOPIC)
            .await;
    }

    #[actix::test]
    async fn no_metrics_with_a_zero_interval() {
        let (source, mut asked) = probe_answering::<GetMetrics, _>(|_| ActorMetrics::default());
        let (_status, mut published) = start(vec![source], Duration::ZERO);
        published.expect_none(Duration::from_millis(100)).await;
        asked.expect_none(Duration::ZERO).await;
    }
}

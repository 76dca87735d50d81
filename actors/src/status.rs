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
use crate::topics::Identity;

/// Topic the gateway parameters are published on.
pub const THING_RESPONSE_TOPIC: &str = "edge/thing/response";
/// Topic local applications ask for the gateway parameters on.
pub const THING_REQUEST_TOPIC: &str = "edge/thing/request";

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

    /// Asks every actor for its counters, then logs one line per actor and publishes them all
    /// as one JSON document on [`METRICS_TOPIC`].
    fn report_metrics(&self, ctx: &mut Context<Self>) {
        let own = ActorMetrics {
            actor: "status",
            counters: vec![
                ("connected", self.connected as u64),
                ("published", self.published),
            ],
        };
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

/// Local topic of the periodic metrics JSON document.
pub const METRICS_TOPIC: &str = "edge/awslink/metrics";

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
    use serde_json::Value;

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
}

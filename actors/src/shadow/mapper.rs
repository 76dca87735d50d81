//! [`ShadowMapper`]: the actor half of the shadow mapping. It remembers pending requests by
//! clientToken (at most [`MAX_PENDING`], forgotten after [`PENDING_TTL`]) and turns the shadow
//! service's `accepted` / `rejected` / `delta` / `documents` into local Ditto messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, warn};
use serde_json::Value;

use super::convert::{
    accepted_status, delta_to_ditto, ditto_error, ditto_response, retrieve_value, Action, Pending,
    ShadowId,
};
use super::ingest::ShadowIngest;
use super::messages::{LocalDittoError, ShadowRequested};
use crate::messages::{ActorMetrics, CloudInbound, GetMetrics, LocalPublish};

/// Most pending requests remembered; the oldest are forgotten beyond this.
pub const MAX_PENDING: usize = 1000;
/// How long an unanswered request is remembered.
pub const PENDING_TTL: Duration = Duration::from_secs(300);

/// The actor half: answers local Ditto commands when the shadow service replies.
pub struct ShadowMapper {
    ingest: Arc<ShadowIngest>,
    local: Recipient<LocalPublish>,
    pending: HashMap<String, (Pending, Instant, usize)>,
    answered: u64,
    rejected: u64,
    deltas: u64,
    expired: u64,
}

impl ShadowMapper {
    /// A mapper that answers through `local`.
    pub fn new(ingest: Arc<ShadowIngest>, local: Recipient<LocalPublish>) -> Self {
        ShadowMapper {
            ingest,
            local,
            pending: HashMap::new(),
            answered: 0,
            rejected: 0,
            deltas: 0,
            expired: 0,
        }
    }

    /// Local topic for Ditto messages to thing `thing_id`: the Hono command topic.
    fn local_topic(thing_id: &str, action: &str) -> String {
        format!("command//{thing_id}/req//{action}")
    }

    fn publish(&self, thing_id: &str, action: &str, message: &Value) {
        self.local.do_send(LocalPublish {
            topic: Self::local_topic(thing_id, action),
            payload: message.to_string().into_bytes(),
            qos: 1,
            retain: false,
        });
    }

    fn thing_of(ditto_topic: &str) -> String {
        let mut parts = ditto_topic.split('/');
        match (parts.next(), parts.next()) {
            (Some(ns), Some(name)) => format!("{ns}:{name}"),
            _ => ditto_topic.to_string(),
        }
    }

    fn on_reply(&mut self, shadow: &ShadowId, rest: &str, payload: &Value) {
        match rest {
            "update/delta" => {
                self.deltas += 1;
                if let Some((thing, message)) =
                    delta_to_ditto(shadow, self.ingest.device_id(), payload)
                {
                    self.publish(&thing, "modify", &message);
                }
                return;
            }
            "update/documents" => {
                if self.pending.is_empty() {
                    if let Some(reported) = payload.pointer("/current/state/reported") {
                        self.ingest.refresh(shadow, reported);
                    }
                }
                return;
            }
            _ => {}
        }
        let accepted = rest.ends_with("/accepted");
        if !accepted && !rest.ends_with("/rejected") {
            return;
        }
        let Some(token) = payload.get("clientToken").and_then(Value::as_str) else {
            return;
        };
        let Some((pending, _, remaining)) = self.pending.get_mut(token) else {
            debug!("shadow reply for unknown clientToken {token:?}");
            return;
        };
        if accepted {
            *remaining = remaining.saturating_sub(1);
            if *remaining > 0 {
                return;
            }
            let pending = pending.clone();
            self.pending.remove(token);
            self.answered += 1;
            let value = (pending.action == Action::Retrieve)
                .then(|| retrieve_value(&pending, self.ingest.device_id(), payload));
            let response = ditto_response(&pending, accepted_status(pending.action), value);
            self.publish(&Self::thing_of(&pending.topic), "response", &response);
        } else {
            let pending = pending.clone();
            self.pending.remove(token);
            self.rejected += 1;
            let code = payload.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
            let message = payload
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("rejected by AWS IoT");
            let error = ditto_error(
                &pending.topic,
                &pending.path,
                &pending.correlation_id,
                code,
                message,
            );
            self.publish(&Self::thing_of(&pending.topic), "response", &error);
        }
    }

    fn expire(&mut self) {
        let before = self.pending.len();
        self.pending
            .retain(|_, (_, since, _)| since.elapsed() < PENDING_TTL);
        self.expired += (before - self.pending.len()) as u64;
    }
}

impl Actor for ShadowMapper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(10), |act, _| act.expire());
    }
}

impl Handler<ShadowRequested> for ShadowMapper {
    type Result = ();

    fn handle(&mut self, msg: ShadowRequested, _ctx: &mut Self::Context) {
        if self.pending.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                self.pending.remove(&oldest);
                self.expired += 1;
            }
        }
        self.pending
            .insert(msg.token, (msg.pending, Instant::now(), msg.requests));
    }
}

impl Handler<LocalDittoError> for ShadowMapper {
    type Result = ();

    fn handle(&mut self, msg: LocalDittoError, _ctx: &mut Self::Context) {
        let error = ditto_error(
            &msg.topic,
            &msg.path,
            &msg.correlation_id,
            msg.status,
            &msg.message,
        );
        self.publish(&Self::thing_of(&msg.topic), "response", &error);
    }
}

impl Handler<CloudInbound> for ShadowMapper {
    type Result = ();

    fn handle(&mut self, msg: CloudInbound, _ctx: &mut Self::Context) {
        let Some((shadow, rest)) = ShadowId::parse_topic(&msg.topic) else {
            return;
        };
        match serde_json::from_slice::<Value>(&msg.payload) {
            Ok(payload) => self.on_reply(&shadow, &rest, &payload),
            Err(e) => warn!("shadow service sent invalid JSON on {}: {e}", msg.topic),
        }
    }
}

impl Handler<GetMetrics> for ShadowMapper {
    type Result = ActorMetrics;

    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        let mut counters = self.ingest.counters().to_vec();
        counters.extend([
            ("pending", self.pending.len() as u64),
            ("answered", self.answered),
            ("rejected", self.rejected),
            ("deltas", self.deltas),
            ("expired", self.expired),
        ]);
        ActorMetrics {
            actor: "shadow",
            counters,
        }
    }
}

//! ShadowMapper: Eclipse Ditto twin commands from local applications → AWS Device Shadow
//! requests, and the shadow service's answers and deltas → Ditto responses and commands locally.
//!
//! Two halves, because a twin command must be journaled before the intake acknowledges it:
//! - [`ShadowIngest`] runs on the local intake's thread (`intake.rs`): it converts (pure
//!   [`convert`]), hands the requests back to be journaled like any uplink message, and keeps the
//!   last reported state per shadow in a sled tree (what `modify` needs to null removed keys; it
//!   survives restarts, so no `get` is needed at start).
//! - [`ShadowMapper`] is the actor: it remembers pending requests by clientToken (bounded, with a
//!   TTL) and turns `accepted` / `rejected` / `delta` / `documents` into local Ditto messages.

pub mod convert;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, warn};
use serde_json::Value;

use crate::clock::LogLimiter;
use crate::messages::{ActorMetrics, CloudInbound, CloudMessage, GetMetrics, LocalPublish};
use convert::{
    accepted_status, classify, delta_to_ditto, ditto_error, ditto_response, merge, retrieve_value,
    to_shadow_requests, Classified, Filters, Pending, ShadowId, ShadowOp, ShadowRules,
};

/// Most pending requests remembered; the oldest are forgotten beyond this.
pub const MAX_PENDING: usize = 1000;
/// How long an unanswered request is remembered.
pub const PENDING_TTL: Duration = Duration::from_secs(300);

/// Callback → actor: a request was journaled; answer the caller when AWS replies.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ShadowRequested {
    /// clientToken of the request(s).
    pub token: String,
    /// Who to answer.
    pub pending: Pending,
    /// Number of shadow requests sent for this command (a whole-thing modify fans out).
    pub requests: usize,
}

/// Callback → actor: answer a Ditto command with an error without contacting AWS.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LocalDittoError {
    /// Ditto topic of the command.
    pub topic: String,
    /// Its path.
    pub path: String,
    /// Correlation id to answer with.
    pub correlation_id: String,
    /// HTTP-like status.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

#[derive(Default)]
struct IngestCounters {
    commands: AtomicU64,
    requests: AtomicU64,
    invalid: AtomicU64,
    filtered: AtomicU64,
}

/// The part of the mapper that runs in the LocalBroker's callback (thread-safe, never blocks).
pub struct ShadowIngest {
    device_id: String,
    filters: Filters,
    rules: ShadowRules,
    reported: sled::Tree,
    mapper: OnceLock<Recipient<ShadowRequested>>,
    errors: OnceLock<Recipient<LocalDittoError>>,
    counters: IngestCounters,
    warn_log: LogLimiter,
}

impl ShadowIngest {
    /// An ingest for `device_id` that keeps the reported cache in `reported`.
    pub fn new(
        device_id: String,
        filters: Filters,
        rules: ShadowRules,
        reported: sled::Tree,
    ) -> Self {
        ShadowIngest {
            device_id,
            filters,
            rules,
            reported,
            mapper: OnceLock::new(),
            errors: OnceLock::new(),
            counters: IngestCounters::default(),
            warn_log: LogLimiter::default(),
        }
    }

    /// Connects the ingest to the running ShadowMapper actor.
    pub fn attach(&self, mapper: &Addr<ShadowMapper>) {
        let _ = self.mapper.set(mapper.clone().recipient());
        let _ = self.errors.set(mapper.clone().recipient());
    }

    fn cached(&self, shadow: &ShadowId) -> Option<Value> {
        let bytes = self.reported.get(shadow.prefix()).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn remember(&self, shadow: &ShadowId, op: ShadowOp, patch: Option<&Value>) {
        let key = shadow.prefix();
        let result = match (op, patch) {
            (ShadowOp::Delete, _) => self.reported.remove(key).map(|_| ()),
            (ShadowOp::Update, Some(patch)) => {
                let mut doc = self
                    .cached(shadow)
                    .unwrap_or(Value::Object(Default::default()));
                merge(&mut doc, patch);
                self.reported
                    .insert(key, doc.to_string().into_bytes())
                    .map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            warn!(
                "cannot update the shadow cache for {}: {e}",
                shadow.prefix()
            );
        }
    }

    /// Replaces the cached reported state of `shadow` (from a full document of the service).
    pub fn refresh(&self, shadow: &ShadowId, reported: &Value) {
        if let Err(e) = self
            .reported
            .insert(shadow.prefix(), reported.to_string().into_bytes())
        {
            warn!(
                "cannot refresh the shadow cache for {}: {e}",
                shadow.prefix()
            );
        }
    }

    /// `None` if `payload` is not a Ditto twin command (forward it as telemetry/event);
    /// otherwise the shadow requests to journal (possibly none, after an error or a filter).
    pub fn on_local(&self, payload: &[u8], enqueued_ms: u64) -> Option<Vec<CloudMessage>> {
        let cmd = match classify(payload) {
            Classified::NotDitto => return None,
            Classified::Invalid(e, correlation_id) => {
                self.reject(None, None, correlation_id, &e.0);
                return Some(vec![]);
            }
            Classified::Command(cmd) => cmd,
        };
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        let lookup = |id: &ShadowId| self.cached(id);
        let requests =
            match to_shadow_requests(&cmd, &self.device_id, &lookup, &self.filters, &self.rules) {
                Ok(r) => r,
                Err(e) => {
                    self.reject(
                        Some(&cmd.topic),
                        Some(&cmd.path),
                        cmd.correlation_id.clone(),
                        &e.0,
                    );
                    return Some(vec![]);
                }
            };
        if requests.is_empty() {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            debug!("Ditto command {} {} filtered out", cmd.topic, cmd.path);
            return Some(vec![]);
        }
        if let (Some(correlation_id), Some(mapper)) = (&cmd.correlation_id, self.mapper.get()) {
            if cmd.response_required {
                mapper.do_send(ShadowRequested {
                    token: convert::client_token(correlation_id),
                    pending: Pending {
                        topic: cmd.topic.clone(),
                        path: cmd.path.clone(),
                        action: cmd.action,
                        correlation_id: correlation_id.clone(),
                        response_required: true,
                    },
                    requests: requests.len(),
                });
            }
        }
        self.counters
            .requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        Some(
            requests
                .into_iter()
                .map(|r| {
                    self.remember(&r.shadow, r.op, r.reported_patch.as_ref());
                    CloudMessage {
                        topic: r.topic(),
                        payload: r.payload.to_string().into_bytes(),
                        qos: 1,
                        enqueued_ms,
                    }
                })
                .collect(),
        )
    }

    fn reject(
        &self,
        topic: Option<&str>,
        path: Option<&str>,
        correlation_id: Option<String>,
        message: &str,
    ) {
        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
        match (correlation_id, self.errors.get()) {
            (Some(correlation_id), Some(errors)) => {
                warn!("Ditto command refused ({message}); answering correlation-id {correlation_id:?} with 400");
                errors.do_send(LocalDittoError {
                    topic: topic
                        .unwrap_or("_/_/things/twin/commands/modify")
                        .to_string(),
                    path: path.unwrap_or("/").to_string(),
                    correlation_id,
                    status: 400,
                    message: message.to_string(),
                });
            }
            _ => {
                if self.warn_log.ready(Duration::from_secs(1)) {
                    warn!("Ditto command refused ({message}); no correlation-id to answer");
                }
            }
        }
    }
}

/// The actor half.
pub struct ShadowMapper {
    ingest: std::sync::Arc<ShadowIngest>,
    local: Recipient<LocalPublish>,
    pending: HashMap<String, (Pending, Instant, usize)>,
    answered: u64,
    rejected: u64,
    deltas: u64,
    expired: u64,
}

impl ShadowMapper {
    /// A mapper that answers through `local`.
    pub fn new(ingest: std::sync::Arc<ShadowIngest>, local: Recipient<LocalPublish>) -> Self {
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
                    delta_to_ditto(shadow, &self.ingest.device_id, payload)
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
            let value = (pending.action == convert::Action::Retrieve)
                .then(|| retrieve_value(&pending, &self.ingest.device_id, payload));
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
        let c = &self.ingest.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ActorMetrics {
            actor: "shadow",
            counters: vec![
                ("commands", get(&c.commands)),
                ("requests", get(&c.requests)),
                ("invalid", get(&c.invalid)),
                ("filtered", get(&c.filtered)),
                ("pending", self.pending.len() as u64),
                ("answered", self.answered),
                ("rejected", self.rejected),
                ("deltas", self.deltas),
                ("expired", self.expired),
            ],
        }
    }
}

#[cfg(test)]
mod tests;

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
    accepted_status, delta_to_ditto, ditto_error, ditto_response, rejected_status, retrieve_value,
    Action, Pending, ShadowId,
};
use super::ingest::ShadowIngest;
use super::messages::{LocalDittoError, ShadowRequested};
use crate::messages::{ActorMetrics, CloudInbound, GetMetrics, LocalPublish};

/// Most pending requests remembered; the oldest are forgotten beyond this.
pub const MAX_PENDING: usize = 1000;
/// How long an unanswered request is remembered.
pub const PENDING_TTL: Duration = Duration::from_secs(300);

/// How often forgotten requests are swept out by default.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One remembered request.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    pending: Pending,
    since: Instant,
    /// Shadow requests of the command not yet accepted (a whole-thing modify fans out).
    remaining: usize,
}

/// What a shadow reply means for the pending requests.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    /// No request with that clientToken is remembered (answered, expired or never sent).
    Unknown,
    /// Accepted, but other shadow requests of the same command are still unanswered.
    Waiting,
    /// The command's last answer (or a rejection): answer the caller; it is forgotten now.
    Done(Pending),
}

/// The requests waiting for the shadow service's answer, by clientToken: at most
/// [`MAX_PENDING`], each forgotten `ttl` after it was sent. Time is passed in.
#[derive(Debug)]
pub(super) struct PendingRequests {
    by_token: HashMap<String, Entry>,
    ttl: Duration,
}

impl PendingRequests {
    /// An empty table whose requests are forgotten after `ttl`.
    pub(super) fn new(ttl: Duration) -> Self {
        PendingRequests {
            by_token: HashMap::new(),
            ttl,
        }
    }

    /// Remembers a command of `requests` shadow requests sent at `now`; when the table is full,
    /// the oldest is forgotten first and `true` returned.
    pub(super) fn insert(
        &mut self,
        token: String,
        pending: Pending,
        requests: usize,
        now: Instant,
    ) -> bool {
        let mut evicted = false;
        if self.by_token.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .by_token
                .iter()
                .min_by_key(|(_, e)| e.since)
                .map(|(k, _)| k.clone())
            {
                self.by_token.remove(&oldest);
                evicted = true;
            }
        }
        self.by_token.insert(
            token,
            Entry {
                pending,
                since: now,
                remaining: requests,
            },
        );
        evicted
    }

    /// Takes an `accepted` (or a rejected) reply for `token`.
    pub(super) fn reply(&mut self, token: &str, accepted: bool) -> Reply {
        let Some(entry) = self.by_token.get_mut(token) else {
            return Reply::Unknown;
        };
        if accepted {
            entry.remaining = entry.remaining.saturating_sub(1);
            if entry.remaining > 0 {
                return Reply::Waiting;
            }
        }
        match self.by_token.remove(token) {
            Some(entry) => Reply::Done(entry.pending),
            None => Reply::Unknown,
        }
    }

    /// Forgets the requests older than the TTL at `now`; returns how many.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let before = self.by_token.len();
        let ttl = self.ttl;
        self.by_token
            .retain(|_, e| now.saturating_duration_since(e.since) < ttl);
        before - self.by_token.len()
    }

    /// Requests remembered.
    pub(super) fn len(&self) -> usize {
        self.by_token.len()
    }

    /// True when no request waits.
    pub(super) fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// The actor half: answers local Ditto commands when the shadow service replies.
pub struct ShadowMapper {
    ingest: Arc<ShadowIngest>,
    local: Recipient<LocalPublish>,
    pending: PendingRequests,
    sweep_every: Duration,
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
            pending: PendingRequests::new(PENDING_TTL),
            sweep_every: SWEEP_EVERY,
            answered: 0,
            rejected: 0,
            deltas: 0,
            expired: 0,
        }
    }

    /// The same mapper forgetting unanswered requests after `ttl`, swept every `sweep_every`
    /// (defaults: [`PENDING_TTL`], 10 s).
    pub fn with_expiry(mut self, ttl: Duration, sweep_every: Duration) -> Self {
        self.pending = PendingRequests::new(ttl);
        self.sweep_every = sweep_every;
        self
    }

    /// Local topic for Ditto messages to thing `thing_id`: the Hono command topic.
    fn local_topic(thing_id: &str, action: &str) -> String {
        crate::topics::ditto_command_topic(thing_id, action)
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
        let pending = match self.pending.reply(token, accepted) {
            Reply::Unknown => {
                debug!("shadow reply for unknown clientToken {token:?}");
                return;
            }
            Reply::Waiting => return,
            Reply::Done(pending) => pending,
        };
        if accepted {
            self.answered += 1;
            let value = (pending.action == Action::Retrieve)
                .then(|| retrieve_value(&pending, self.ingest.device_id(), payload));
            let response = ditto_response(&pending, accepted_status(pending.action), value);
            self.publish(&Self::thing_of(&pending.topic), "response", &response);
        } else {
            self.rejected += 1;
            let code = rejected_status(payload.get("code")).unwrap_or_else(|why| {
                warn!("shadow rejection for clientToken {token:?}: {why}; answering 500");
                500
            });
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
        self.expired += self.pending.expire(Instant::now()) as u64;
    }
}

impl Actor for ShadowMapper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.sweep_every, |act, _| act.expire());
    }
}

impl Handler<ShadowRequested> for ShadowMapper {
    type Result = ();

    fn handle(&mut self, msg: ShadowRequested, _ctx: &mut Self::Context) {
        if self
            .pending
            .insert(msg.token, msg.pending, msg.requests, Instant::now())
        {
            self.expired += 1;
        }
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

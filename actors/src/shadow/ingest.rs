//! [`ShadowIngest`]: the half of the shadow mapping that runs on the local intake's thread. It
//! turns a Ditto twin command into the shadow requests to journal, keeps the last reported
//! state per shadow (what `modify` needs to null removed keys) in step with what the journal
//! accepted, and tells the [`ShadowMapper`](super::ShadowMapper) whom to answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use log::{debug, warn};
use serde_json::Value;

use super::convert::{
    classify, client_token, merge, to_shadow_requests, Classified, Filters, Pending, ShadowId,
    ShadowOp, ShadowRules,
};
use super::messages::{LocalDittoError, ShadowRequested};
use crate::clock::LogLimiter;
use crate::messages::CloudMessage;
use crate::store::{self, ShadowCache};

/// The last reported state per shadow, kept in the store's [`ShadowCache`] and keyed by the
/// shadow's topic prefix.
struct ReportedCache(ShadowCache);

impl ReportedCache {
    fn get(&self, shadow: &ShadowId) -> Option<Value> {
        self.0.get(&shadow.prefix()).ok().flatten()
    }

    fn put(&self, shadow: &ShadowId, reported: &Value) -> store::Result<()> {
        self.0.put(&shadow.prefix(), reported)
    }

    fn remove(&self, shadow: &ShadowId) -> store::Result<()> {
        self.0.remove(&shadow.prefix())
    }
}

/// One shadow request for the journal, and what the reported cache learns once the journal has
/// accepted it ([`ShadowIngest::journaled`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowUplink {
    /// The message to journal (a `$aws/things/…/shadow/…` request).
    pub message: CloudMessage,
    shadow: ShadowId,
    op: ShadowOp,
    reported_patch: Option<Value>,
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
    reported: ReportedCache,
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
        reported: ShadowCache,
    ) -> Self {
        ShadowIngest {
            device_id,
            filters,
            rules,
            reported: ReportedCache(reported),
            mapper: OnceLock::new(),
            errors: OnceLock::new(),
            counters: IngestCounters::default(),
            warn_log: LogLimiter::default(),
        }
    }

    /// Connects the ingest to the running ShadowMapper actor (any actor taking both messages).
    pub fn attach<A>(&self, mapper: &Addr<A>)
    where
        A: Actor + Handler<ShadowRequested> + Handler<LocalDittoError>,
        A::Context: ToEnvelope<A, ShadowRequested> + ToEnvelope<A, LocalDittoError>,
    {
        let _ = self.mapper.set(mapper.clone().recipient());
        let _ = self.errors.set(mapper.clone().recipient());
    }

    /// The AWS thing name the shadows belong to.
    pub(super) fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The ingest's counters, by name, for the mapper's metrics line.
    pub(super) fn counters(&self) -> [(&'static str, u64); 4] {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("commands", get(&c.commands)),
            ("requests", get(&c.requests)),
            ("invalid", get(&c.invalid)),
            ("filtered", get(&c.filtered)),
        ]
    }

    fn cached(&self, shadow: &ShadowId) -> Option<Value> {
        self.reported.get(shadow)
    }

    fn remember(&self, shadow: &ShadowId, op: ShadowOp, patch: Option<&Value>) {
        let result = match (op, patch) {
            (ShadowOp::Delete, _) => self.reported.remove(shadow),
            (ShadowOp::Update, Some(patch)) => {
                let mut doc = self
                    .cached(shadow)
                    .unwrap_or(Value::Object(Default::default()));
                merge(&mut doc, patch);
                self.reported.put(shadow, &doc)
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
        if let Err(e) = self.reported.put(shadow, reported) {
            warn!(
                "cannot refresh the shadow cache for {}: {e}",
                shadow.prefix()
            );
        }
    }

    /// The journal accepted `uplink`: the reported cache takes its patch (or forgets a deleted
    /// shadow). Not called for a request the journal refused, so converting that command again
    /// later still sees the state it was converted against.
    pub fn journaled(&self, uplink: &ShadowUplink) {
        self.remember(&uplink.shadow, uplink.op, uplink.reported_patch.as_ref());
    }

    /// `None` if `payload` is not a Ditto twin command (forward it as telemetry/event);
    /// otherwise the shadow requests to journal (possibly none, after an error or a filter).
    /// Call [`journaled`](Self::journaled) for each request the journal accepts.
    pub fn on_local(&self, payload: &[u8], enqueued_ms: u64) -> Option<Vec<ShadowUplink>> {
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
                    token: client_token(correlation_id),
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
                .map(|r| ShadowUplink {
                    message: CloudMessage {
                        topic: r.topic(),
                        payload: r.payload.to_string().into_bytes(),
                        qos: 1,
                        enqueued_ms,
                        batch: None,
                    },
                    shadow: r.shadow,
                    op: r.op,
                    reported_patch: r.reported_patch,
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

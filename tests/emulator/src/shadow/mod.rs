//! The Device Shadow service: classic and named shadows on
//! `$aws/things/{thing}/shadow[/name/{shadow}]/{get,update,delete}`.
//!
//! [`document`] holds the pure document logic, [`ShadowStore`] routes a request topic and
//! payload to it and returns the replies, and [`service`] connects the store to the
//! private broker.

pub mod document;
pub mod service;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use document::{ShadowDocument, ShadowError, ShadowLimits};
pub use service::ShadowService;

use crate::rate::SlidingWindow;

/// The subscriptions that receive every shadow request.
pub const REQUEST_FILTERS: [&str; 2] = ["$aws/things/+/shadow/+", "$aws/things/+/shadow/name/+/+"];

/// A shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get`
    Get,
    /// `update`
    Update,
    /// `delete`
    Delete,
}

impl Op {
    /// The topic segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A parsed request topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowTopic {
    /// The thing name.
    pub thing: String,
    /// The shadow name; `None` for the classic shadow.
    pub shadow: Option<String>,
    /// The operation.
    pub op: Op,
}

impl ShadowTopic {
    /// `$aws/things/{thing}/shadow[/name/{shadow}]`.
    pub fn prefix(&self) -> String {
        match &self.shadow {
            None => format!("$aws/things/{}/shadow", self.thing),
            Some(s) => format!("$aws/things/{}/shadow/name/{}", self.thing, s),
        }
    }

    /// The reply topic `{prefix}/{op}/{suffix}`.
    pub fn reply(&self, suffix: &str) -> String {
        format!("{}/{}/{}", self.prefix(), self.op.as_str(), suffix)
    }

    /// The store key: `thing` or `thing/name/shadow`.
    pub fn key(&self) -> String {
        match &self.shadow {
            None => self.thing.clone(),
            Some(s) => format!("{}/name/{}", self.thing, s),
        }
    }

    /// The name AWS uses in "No shadow exists with name" messages.
    pub fn display_name(&self) -> String {
        match &self.shadow {
            None => self.thing.clone(),
            Some(s) => format!("{}~{}", self.thing, s),
        }
    }
}

/// Parses a request topic; `None` for anything that is not a get/update/delete request
/// (e.g. the service's own `.../accepted` replies).
pub fn parse_topic(topic: &str) -> Option<ShadowTopic> {
    let parts: Vec<&str> = topic.split('/').collect();
    let (thing, shadow, op) = match parts.as_slice() {
        ["$aws", "things", thing, "shadow", op] => (*thing, None, *op),
        ["$aws", "things", thing, "shadow", "name", shadow, op] => (*thing, Some(*shadow), *op),
        _ => return None,
    };
    let op = match op {
        "get" => Op::Get,
        "update" => Op::Update,
        "delete" => Op::Delete,
        _ => return None,
    };
    Some(ShadowTopic {
        thing: thing.to_string(),
        shadow: shadow.map(str::to_string),
        op,
    })
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Checks thing name `[a-zA-Z0-9:_-]{1,128}` and shadow name `[a-zA-Z0-9:_-]{1,64}`.
pub fn check_names(t: &ShadowTopic) -> Result<(), ShadowError> {
    if !valid_name(&t.thing, 128) {
        return Err(ShadowError::new(
            400,
            format!("Invalid thing name: '{}'", t.thing),
        ));
    }
    if let Some(s) = &t.shadow {
        if !valid_name(s, 64) {
            return Err(ShadowError::new(400, format!("Invalid shadow name: '{s}'")));
        }
    }
    Ok(())
}

/// One stored shadow; `document` is `None` after a delete (the version is kept, so a
/// re-created shadow continues from it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The live document, if the shadow exists.
    pub document: Option<ShadowDocument>,
    /// The last version (of the deleted document when `document` is `None`).
    pub version: u64,
}

/// A message the service publishes in answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Topic.
    pub topic: String,
    /// JSON payload.
    pub payload: Value,
}

/// What handling one request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// Messages to publish, in order.
    pub replies: Vec<Reply>,
    /// Outcome for the stats, e.g. `update_accepted` or `get_rejected_404`.
    pub outcome: String,
    /// Whether the store changed (to persist it).
    pub changed: bool,
}

/// All shadows, in memory.
#[derive(Debug, Clone, Default)]
pub struct ShadowStore {
    entries: BTreeMap<String, Entry>,
    limits: ShadowLimits,
    rates: HashMap<String, SlidingWindow>,
}

impl ShadowStore {
    /// An empty store.
    pub fn new(limits: ShadowLimits) -> Self {
        ShadowStore {
            entries: BTreeMap::new(),
            limits,
            rates: HashMap::new(),
        }
    }

    /// A store holding `entries` (loaded from a file).
    pub fn with_entries(limits: ShadowLimits, entries: BTreeMap<String, Entry>) -> Self {
        ShadowStore {
            entries,
            ..Self::new(limits)
        }
    }

    /// The stored entries, keyed by [`ShadowTopic::key`].
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Handles one request: `now` is Unix seconds for timestamps, `clock` drives the
    /// per-thing update rate. `None` when `topic` is not a shadow request.
    pub fn handle(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: u64,
        clock: Instant,
    ) -> Option<Handled> {
        let t = parse_topic(topic)?;
        let token = document::client_token_of(payload, &self.limits);
        let result = check_names(&t).and_then(|()| match t.op {
            Op::Get => self.get(&t, payload, now),
            Op::Update => self.update(&t, payload, now, clock),
            Op::Delete => self.delete(&t, payload, now),
        });
        Some(match result {
            Ok(h) => h,
            Err(e) => Handled {
                outcome: format!("{}_rejected_{}", t.op.as_str(), e.code),
                replies: vec![Reply {
                    topic: t.reply("rejected"),
                    payload: e.to_json(now, token.as_deref()),
                }],
                changed: false,
            },
        })
    }

    fn missing(t: &ShadowTopic) -> ShadowError {
        ShadowError::new(
            404,
            format!("No shadow exists with name: '{}'", t.display_name()),
        )
    }

    fn get(&mut self, t: &ShadowTopic, payload: &[u8], now: u64) -> Result<Handled, ShadowError> {
        let req = document::parse_get(payload, &self.limits)?;
        let doc = self
            .entries
            .get(&t.key())
            .and_then(|e| e.document.as_ref())
            .ok_or_else(|| Self::missing(t))?;
        Ok(Handled {
            replies: vec![Reply {
                topic: t.reply("accepted"),
                payload: doc.get_response(now, req.client_token.as_deref()),
            }],
            outcome: "get_accepted".into(),
            changed: false,
        })
    }

    fn update(
        &mut self,
        t: &ShadowTopic,
        payload: &[u8],
        now: u64,
        clock: Instant,
    ) -> Result<Handled, ShadowError> {
        if let Some(rate) = self.limits.updates_per_second {
            let w = self
                .rates
                .entry(t.thing.clone())
                .or_insert_with(|| SlidingWindow::per_second(rate.into()));
            if !w.try_admit(clock, 1) {
                return Err(ShadowError::new(429, "Too Many Requests"));
            }
        }
        let req = document::parse_update(payload, &self.limits)?;
        let key = t.key();
        let entry = self.entries.get(&key);
        let current = entry.and_then(|e| e.document.as_ref());
        let version = entry.map_or(0, |e| e.version);
        let out = document::apply_update(current, version, &req, now, &self.limits)?;
        let mut replies = vec![Reply {
            topic: t.reply("accepted"),
            payload: out.accepted,
        }];
        if let Some(d) = out.delta {
            replies.push(Reply {
                topic: t.reply("delta"),
                payload: d,
            });
        }
        replies.push(Reply {
            topic: t.reply("documents"),
            payload: out.documents,
        });
        self.entries.insert(
            key,
            Entry {
                version: out.document.version,
                document: Some(out.document),
            },
        );
        Ok(Handled {
            replies,
            outcome: "update_accepted".into(),
            changed: true,
        })
    }

    fn delete(
        &mut self,
        t: &ShadowTopic,
        payload: &[u8],
        now: u64,
    ) -> Result<Handled, ShadowError> {
        let req = document::parse_delete(payload, &self.limits)?;
        let entry = self
            .entries
            .get_mut(&t.key())
            .filter(|e| e.document.is_some())
            .ok_or_else(|| Self::missing(t))?;
        if let Some(v) = req.version {
            if v != entry.version {
                return Err(ShadowError::new(409, "Version conflict"));
            }
        }
        entry.document = None;
        let mut body = serde_json::json!({"version": entry.version, "timestamp": now});
        if let Some(tok) = &req.client_token {
            body["clientToken"] = serde_json::json!(tok);
        }
        Ok(Handled {
            replies: vec![Reply {
                topic: t.reply("accepted"),
                payload: body,
            }],
            outcome: "delete_accepted".into(),
            changed: true,
        })
    }
}

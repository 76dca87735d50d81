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

    /// Deletes the shadow. AWS ignores the request's content: the payload is not validated and
    /// a `version` in it is not checked; only a `clientToken`, when one can be read, is
    /// echoed (the device SDKs match replies by it).
    fn delete(
        &mut self,
        t: &ShadowTopic,
        payload: &[u8],
        now: u64,
    ) -> Result<Handled, ShadowError> {
        let token = document::client_token_of(payload, &self.limits);
        let entry = self
            .entries
            .get_mut(&t.key())
            .filter(|e| e.document.is_some())
            .ok_or_else(|| Self::missing(t))?;
        entry.document = None;
        let mut body = serde_json::json!({"version": entry.version, "timestamp": now});
        if let Some(tok) = token {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000;

    struct Fixture {
        store: ShadowStore,
        clock: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                store: ShadowStore::new(ShadowLimits::default()),
                clock: Instant::now(),
            }
        }

        /// Sends a request, one second apart (so the per-thing rate never interferes).
        fn send(&mut self, topic: &str, payload: Value) -> Handled {
            self.clock += Duration::from_secs(1);
            let bytes = if payload.is_null() {
                Vec::new()
            } else {
                payload.to_string().into_bytes()
            };
            self.store
                .handle(topic, &bytes, NOW, self.clock)
                .expect("a shadow request topic")
        }

        fn reply(&mut self, topic: &str, payload: Value, reply_topic: &str) -> Value {
            let h = self.send(topic, payload);
            h.replies
                .iter()
                .find(|r| r.topic == reply_topic)
                .unwrap_or_else(|| panic!("no {reply_topic} in {:#?}", h.replies))
                .payload
                .clone()
        }
    }

    const T: &str = "$aws/things/dev-1/shadow";

    fn topics(h: &Handled) -> Vec<&str> {
        h.replies.iter().map(|r| r.topic.as_str()).collect()
    }

    #[test]
    fn topic_table() {
        let rows = [
            ("$aws/things/t/shadow/update", Some(("t", None, Op::Update))),
            ("$aws/things/t/shadow/get", Some(("t", None, Op::Get))),
            ("$aws/things/t/shadow/delete", Some(("t", None, Op::Delete))),
            (
                "$aws/things/t/shadow/name/s/update",
                Some(("t", Some("s"), Op::Update)),
            ),
            ("$aws/things/t/shadow/update/accepted", None),
            ("$aws/things/t/shadow/name/s/update/delta", None),
            ("$aws/things/t/shadow/name", None),
            ("$aws/things/t/jobs/get", None),
        ];
        for (topic, expected) in rows {
            let got = parse_topic(topic);
            let expected = expected.map(|(thing, shadow, op)| ShadowTopic {
                thing: thing.into(),
                shadow: shadow.map(str::to_string),
                op,
            });
            assert_eq!(got, expected, "{topic}");
        }
    }

    #[test]
    fn first_update_creates_version_1_and_documents_without_previous() {
        let mut f = Fixture::new();
        let h = f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"temp": 21}}, "clientToken": "c1"}),
        );
        assert_eq!(
            topics(&h),
            [
                format!("{T}/update/accepted"),
                format!("{T}/update/documents")
            ]
        );
        assert_eq!(h.outcome, "update_accepted");
        assert_eq!(
            h.replies[0].payload,
            json!({
                "state": {"reported": {"temp": 21}},
                "metadata": {"reported": {"temp": {"timestamp": NOW}}},
                "version": 1, "timestamp": NOW, "clientToken": "c1"
            })
        );
        let docs = &h.replies[1].payload;
        assert_eq!(docs.get("previous"), None);
        assert_eq!(docs["current"]["version"], 1);
        assert_eq!(docs["current"]["state"], json!({"reported": {"temp": 21}}));
        assert_eq!(docs["clientToken"], "c1");
    }

    #[test]
    fn merge_null_delete_versions_and_documents_previous_current() {
        let mut f = Fixture::new();
        f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"a": 1, "b": {"x": 1, "y": 2}, "list": [1, 2]}}}),
        );
        let docs = f.reply(
            &format!("{T}/update"),
            json!({"state": {"reported": {"a": null, "b": {"y": 3}, "list": [9]}}}),
            &format!("{T}/update/documents"),
        );
        assert_eq!(docs["previous"]["version"], 1);
        assert_eq!(
            docs["previous"]["state"]["reported"],
            json!({"a": 1, "b": {"x": 1, "y": 2}, "list": [1, 2]})
        );
        assert_eq!(docs["current"]["version"], 2);
        assert_eq!(
            docs["current"]["state"]["reported"],
            json!({"b": {"x": 1, "y": 3}, "list": [9]})
        );
        let got = f.reply(
            &format!("{T}/get"),
            Value::Null,
            &format!("{T}/get/accepted"),
        );
        assert_eq!(got["version"], 2);
        assert_eq!(
            got["state"],
            json!({"reported": {"b": {"x": 1, "y": 3}, "list": [9]}})
        );
        assert_eq!(
            got["metadata"]["reported"]["b"]["y"],
            json!({"timestamp": NOW})
        );
    }

    #[test]
    fn version_conflict_is_409_and_matching_version_is_accepted() {
        let mut f = Fixture::new();
        f.send(
            &format!("{T}/update"),
            json!({"state": {"desired": {"a": 1}}}),
        );
        let rej = f.reply(
            &format!("{T}/update"),
            json!({"state": {"desired": {"a": 2}}, "version": 5, "clientToken": "tok"}),
            &format!("{T}/update/rejected"),
        );
        assert_eq!(
            rej,
            json!({"code": 409, "message": "Version conflict", "timestamp": NOW, "clientToken": "tok"})
        );
        let ok = f.reply(
            &format!("{T}/update"),
            json!({"state": {"desired": {"a": 2}}, "version": 1}),
            &format!("{T}/update/accepted"),
        );
        assert_eq!(ok["version"], 2);
    }

    #[test]
    fn delta_only_when_desired_differs_from_reported_nested() {
        let mut f = Fixture::new();
        let upd = format!("{T}/update");
        let delta_topic = format!("{T}/update/delta");
        // (request, expected delta or None)
        let rows = [
            (
                json!({"state": {"reported": {"led": {"on": false, "color": "red"}}}}),
                None,
            ),
            (
                json!({"state": {"desired": {"led": {"on": true, "color": "red"}}}}),
                Some(json!({"led": {"on": true}})),
            ),
            (json!({"state": {"reported": {"led": {"on": true}}}}), None),
            (
                json!({"state": {"desired": {"led": {"color": "red"}}}}),
                None,
            ),
            (
                json!({"state": {"desired": {"fan": [1, 2]}}}),
                Some(json!({"fan": [1, 2]})),
            ),
        ];
        for (i, (req, expected)) in rows.into_iter().enumerate() {
            let h = f.send(&upd, req);
            let delta = h
                .replies
                .iter()
                .find(|r| r.topic == delta_topic)
                .map(|r| r.payload.clone());
            match expected {
                None => assert_eq!(delta, None, "row {i}"),
                Some(state) => {
                    let d = delta.unwrap_or_else(|| panic!("row {i}: no delta"));
                    assert_eq!(d["state"], state, "row {i}");
                    assert_eq!(d["version"], (i + 1) as u64, "row {i}");
                    assert!(d["metadata"].is_object(), "row {i}");
                }
            }
        }
        // get shows the standing delta.
        let got = f.reply(
            &format!("{T}/get"),
            json!({"clientToken": "g"}),
            &format!("{T}/get/accepted"),
        );
        assert_eq!(got["state"]["delta"], json!({"fan": [1, 2]}));
        assert_eq!(got["clientToken"], "g");
    }

    #[test]
    fn reported_only_update_that_reopens_a_difference_publishes_a_delta() {
        let mut f = Fixture::new();
        let upd = format!("{T}/update");
        let delta_topic = format!("{T}/update/delta");
        f.send(
            &upd,
            json!({"state": {"desired": {"a": 1, "b": 2}, "reported": {"a": 1, "b": 2}}}),
        );
        // (reported-only request, expected delta state or None)
        let rows = [
            (json!({"a": 5}), Some(json!({"a": 1}))),
            // The difference on `a` already stands: nothing re-opened.
            (json!({"a": 6}), None),
            // Deleted from reported while still desired: re-opened.
            (json!({"b": null}), Some(json!({"a": 1, "b": 2}))),
            (json!({"a": 1, "b": 2}), None),
            (json!({"c": 3}), None),
        ];
        for (i, (reported, expected)) in rows.into_iter().enumerate() {
            let token = format!("r{i}");
            let h = f.send(
                &upd,
                json!({"state": {"reported": reported}, "clientToken": token}),
            );
            let delta = h.replies.iter().find(|r| r.topic == delta_topic);
            match expected {
                None => assert_eq!(delta, None, "row {i}"),
                Some(state) => {
                    let d = &delta.unwrap_or_else(|| panic!("row {i}: no delta")).payload;
                    assert_eq!(d["state"], state, "row {i}");
                    assert_eq!(d["clientToken"], token.as_str(), "row {i}");
                    assert_eq!(d["version"], (i + 2) as u64, "row {i}");
                }
            }
        }
    }

    #[test]
    fn delta_carries_the_request_client_token_only_when_sent() {
        let mut f = Fixture::new();
        let upd = format!("{T}/update");
        let with = f.reply(
            &upd,
            json!({"state": {"desired": {"a": 1}}, "clientToken": "tok-1"}),
            &format!("{T}/update/delta"),
        );
        assert_eq!(with["clientToken"], "tok-1");
        let without = f.reply(
            &upd,
            json!({"state": {"desired": {"a": 2}}}),
            &format!("{T}/update/delta"),
        );
        assert_eq!(without.get("clientToken"), None, "{without}");
    }

    #[test]
    fn delete_ignores_its_payload_and_version() {
        let mut f = Fixture::new();
        let del = format!("{T}/delete");
        // (payload, echoed clientToken)
        let rows: [(&[u8], Option<&str>); 4] = [
            (b"{oops", None),
            (br#"{"version":99,"clientToken":"d1"}"#, Some("d1")),
            (
                br#"{"version":"x","clientToken":"d2","extra":[null]}"#,
                Some("d2"),
            ),
            (b"", None),
        ];
        for (i, (payload, token)) in rows.into_iter().enumerate() {
            f.send(
                &format!("{T}/update"),
                json!({"state": {"reported": {"i": i}}}),
            );
            f.clock += Duration::from_secs(1);
            let h = f.store.handle(&del, payload, NOW, f.clock).unwrap();
            assert_eq!(h.outcome, "delete_accepted", "row {i}: {:?}", h.replies);
            let body = &h.replies[0].payload;
            assert_eq!(
                body.get("clientToken").and_then(Value::as_str),
                token,
                "row {i}"
            );
            assert_eq!(body["version"], (i + 1) as u64, "row {i}");
        }
    }

    #[test]
    fn get_and_delete_of_a_missing_shadow_are_404() {
        let mut f = Fixture::new();
        let rej = f.reply(
            &format!("{T}/get"),
            json!({"clientToken": "x"}),
            &format!("{T}/get/rejected"),
        );
        assert_eq!(rej["code"], 404);
        assert_eq!(rej["message"], "No shadow exists with name: 'dev-1'");
        assert_eq!(rej["clientToken"], "x");
        let h = f.send("$aws/things/dev-1/shadow/name/cfg/delete", Value::Null);
        assert_eq!(h.outcome, "delete_rejected_404");
        assert_eq!(
            h.replies[0].payload["message"],
            "No shadow exists with name: 'dev-1~cfg'"
        );
    }

    #[test]
    fn delete_removes_the_shadow_and_the_version_continues() {
        let mut f = Fixture::new();
        f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"a": 1}}}),
        );
        f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"a": 2}}}),
        );
        let del = f.reply(
            &format!("{T}/delete"),
            json!({"clientToken": "d"}),
            &format!("{T}/delete/accepted"),
        );
        assert_eq!(
            del,
            json!({"version": 2, "timestamp": NOW, "clientToken": "d"})
        );
        assert_eq!(
            f.send(&format!("{T}/get"), Value::Null).outcome,
            "get_rejected_404"
        );
        let again = f.reply(
            &format!("{T}/update"),
            json!({"state": {"reported": {"b": 1}}}),
            &format!("{T}/update/accepted"),
        );
        assert_eq!(again["version"], 3);
        let got = f.reply(
            &format!("{T}/get"),
            Value::Null,
            &format!("{T}/get/accepted"),
        );
        assert_eq!(
            got["state"],
            json!({"reported": {"b": 1}}),
            "old state is gone"
        );
    }

    #[test]
    fn named_and_classic_shadows_are_separate() {
        let mut f = Fixture::new();
        let named = "$aws/things/dev-1/shadow/name/config";
        f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"classic": true}}}),
        );
        let acc = f.reply(
            &format!("{named}/update"),
            json!({"state": {"reported": {"named": true}}}),
            &format!("{named}/update/accepted"),
        );
        assert_eq!(acc["version"], 1);
        let c = f.reply(
            &format!("{T}/get"),
            Value::Null,
            &format!("{T}/get/accepted"),
        );
        let n = f.reply(
            &format!("{named}/get"),
            Value::Null,
            &format!("{named}/get/accepted"),
        );
        assert_eq!(c["state"]["reported"], json!({"classic": true}));
        assert_eq!(n["state"]["reported"], json!({"named": true}));
        f.send(&format!("{named}/delete"), Value::Null);
        assert_eq!(
            f.send(&format!("{T}/get"), Value::Null).outcome,
            "get_accepted"
        );
    }

    #[test]
    fn rejections_table() {
        let mut f = Fixture::new();
        f.send(
            &format!("{T}/update"),
            json!({"state": {"reported": {"s": "x".repeat(4000)}}}),
        );
        let rows: Vec<(String, Vec<u8>, &str, u16)> = vec![
            (format!("{T}/update"), b"{oops".to_vec(), "update", 400),
            (
                format!("{T}/update"),
                json!({"state": {"reported": {"s2": "y".repeat(5000)}}})
                    .to_string()
                    .into_bytes(),
                "update",
                413,
            ),
            (format!("{T}/get"), b"not json".to_vec(), "get", 400),
            (
                "$aws/things/bad.name/shadow/get".into(),
                Vec::new(),
                "get",
                400,
            ),
            (
                "$aws/things/t/shadow/name/$reserved/get".into(),
                Vec::new(),
                "get",
                400,
            ),
        ];
        for (topic, payload, op, code) in rows {
            f.clock += Duration::from_secs(1);
            let h = f.store.handle(&topic, &payload, NOW, f.clock).unwrap();
            assert_eq!(
                h.outcome,
                format!("{op}_rejected_{code}"),
                "{topic}: {:?}",
                h.replies
            );
            assert!(
                h.replies[0].topic.ends_with(&format!("/{op}/rejected")),
                "{topic}"
            );
            assert_eq!(h.replies[0].payload["code"], code);
        }
        // The oversize update left the shadow unchanged.
        let got = f.reply(
            &format!("{T}/get"),
            Value::Null,
            &format!("{T}/get/accepted"),
        );
        assert_eq!(got["version"], 1);
    }

    #[test]
    fn more_than_10_updates_per_second_per_thing_are_429() {
        let mut f = Fixture::new();
        let t0 = Instant::now();
        let outcomes: Vec<String> = (0..11)
            .map(|i| {
                let p = json!({"state": {"reported": {"i": i}}}).to_string();
                f.store
                    .handle(&format!("{T}/update"), p.as_bytes(), NOW, t0)
                    .unwrap()
                    .outcome
            })
            .collect();
        assert!(
            outcomes[..10].iter().all(|o| o == "update_accepted"),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[10], "update_rejected_429");
        // Another thing is not affected; the same thing recovers after a second.
        let p = br#"{"state":{"reported":{"i":0}}}"#;
        assert_eq!(
            f.store
                .handle("$aws/things/other/shadow/update", p, NOW, t0)
                .unwrap()
                .outcome,
            "update_accepted"
        );
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            f.store
                .handle(&format!("{T}/update"), p, NOW, later)
                .unwrap()
                .outcome,
            "update_accepted"
        );
    }
}

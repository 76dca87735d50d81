//! Opt-in batching: consecutive journaled messages of one cloud topic sent as one publish, so a
//! gateway pays one billed message (5 KB unit) for many small readings and gets more than 100
//! readings a second through AWS's publish limit. Pure: the configured rules (local topic filter
//! → size target and delay), and the envelope a rule or Lambda unpacks:
//!
//! ```text
//! {"batch":[{"ts":<enqueue time, unix ms>,"payload":<the message's JSON value>}, …]}
//! ```
//!
//! with `{"ts":…,"b64":"<base64>"}` in place of `payload` for a message that is not JSON.
//! A batch is a run of journal entries; it leaves the journal only with its PUBACK, and after a
//! crash it may be sent again whole, never partly lost.

use crate::routes::filter_matches;

/// Default size target of a batch: payload + topic bytes (one AWS billing unit).
pub const DEFAULT_MAX_BYTES: usize = 5120;
/// Default longest wait of a batch's oldest message before the batch is sent.
pub const DEFAULT_MAX_DELAY_MS: u64 = 1000;
/// The envelope's opening: `{"batch":[`.
const OPEN: &[u8] = b"{\"batch\":[";
/// The envelope's end: `]}`.
const CLOSE: &[u8] = b"]}";

/// One `batching` entry: local topics matching `filter` are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRule {
    /// An MQTT topic filter over local topics.
    pub filter: String,
    /// Size target of a batch (payload + topic bytes); a batch is closed before it would exceed
    /// it (a single message larger than it is sent alone).
    pub max_bytes: usize,
    /// A batch is sent once its oldest message has waited this long.
    pub max_delay_ms: u64,
}

/// The configured batching rules in order (first match wins); empty: nothing is batched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batching {
    rules: Vec<BatchRule>,
}

impl Batching {
    /// Rules already validated (filters by [`check_filter`](crate::routes::check_filter),
    /// sizes within the payload limit). At most 255 rules (the journal keeps a rule's index in
    /// one byte; rules beyond are ignored).
    pub fn new(mut rules: Vec<BatchRule>) -> Self {
        rules.truncate(usize::from(u8::MAX));
        Batching { rules }
    }

    /// True when no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[BatchRule] {
        &self.rules
    }

    /// Index of the first rule whose filter matches the local topic `local`.
    pub fn rule_for(&self, local: &str) -> Option<u8> {
        self.rules
            .iter()
            .position(|r| filter_matches(&r.filter, local))
            .and_then(|i| u8::try_from(i).ok())
    }

    /// The rule at `index` (as [`Batching::rule_for`] gave it); `None` when the configuration no
    /// longer has it (the message is then sent alone).
    pub fn rule(&self, index: u8) -> Option<&BatchRule> {
        self.rules.get(usize::from(index))
    }
}

/// A batch being filled for one cloud topic.
#[derive(Debug)]
pub struct Envelope {
    topic_len: usize,
    bytes: Vec<u8>,
    count: usize,
}

impl Envelope {
    /// An empty batch for `topic`.
    pub fn new(topic: &str) -> Self {
        let mut bytes = Vec::with_capacity(DEFAULT_MAX_BYTES + 256);
        bytes.extend_from_slice(OPEN);
        Envelope {
            topic_len: topic.len(),
            bytes,
            count: 0,
        }
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Payload + topic bytes of the publish the batch makes now.
    pub fn billed_bytes(&self) -> usize {
        self.topic_len + self.bytes.len() + CLOSE.len()
    }

    /// Adds a message journaled at `ts` (unix ms) if the publish stays within `limit` payload +
    /// topic bytes; the first message always goes in. False: the batch is full, send it.
    pub fn try_push(&mut self, ts: u64, payload: &[u8], limit: usize) -> bool {
        let item = item(ts, payload);
        let separator = usize::from(self.count > 0);
        if self.count > 0 && self.billed_bytes() + separator + item.len() > limit {
            return false;
        }
        if separator == 1 {
            self.bytes.push(b',');
        }
        self.bytes.extend_from_slice(&item);
        self.count += 1;
        true
    }

    /// The publish's payload.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(CLOSE);
        self.bytes
    }
}

/// One element of the envelope's array: the payload as JSON if it is JSON, else as base64.
fn item(ts: u64, payload: &[u8]) -> Vec<u8> {
    let json = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    let mut out = Vec::with_capacity(payload.len() * 4 / 3 + 32);
    out.extend_from_slice(b"{\"ts\":");
    out.extend_from_slice(ts.to_string().as_bytes());
    if json {
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(payload);
    } else {
        out.extend_from_slice(b",\"b64\":\"");
        out.extend_from_slice(openssl::base64::encode_block(payload).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn envelope_holds_json_payloads_as_values_and_others_as_base64() {
        let rows: &[(&[u8], Value)] = &[
            (br#"{"t":21.5}"#, json!({"ts": 7, "payload": {"t": 21.5}})),
            (b"42", json!({"ts": 7, "payload": 42})),
            (b" [1, 2] ", json!({"ts": 7, "payload": [1, 2]})),
            (b"\"s\"", json!({"ts": 7, "payload": "s"})),
            (b"not json", json!({"ts": 7, "b64": "bm90IGpzb24="})),
            (b"", json!({"ts": 7, "b64": ""})),
            (&[0xff, 0x00, 0x7b], json!({"ts": 7, "b64": "/wB7"})),
            (
                b"{\"a\":1} trailing",
                json!({"ts": 7, "b64": "eyJhIjoxfSB0cmFpbGluZw=="}),
            ),
        ];
        for (payload, expected) in rows {
            let mut batch = Envelope::new("telemetry/t/d");
            assert!(batch.try_push(7, payload, DEFAULT_MAX_BYTES));
            assert_eq!(
                parse(&batch.finish()),
                json!({ "batch": [expected] }),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn a_batch_closes_before_it_would_exceed_its_size_target() {
        let topic = "telemetry/ten/dev";
        let payload = br#"{"temperature":21.5,"humidity":40}"#;
        let mut batch = Envelope::new(topic);
        let mut pushed = 0;
        while batch.try_push(1_700_000_000_000 + pushed, payload, DEFAULT_MAX_BYTES) {
            pushed += 1;
            assert!(batch.billed_bytes() <= DEFAULT_MAX_BYTES);
        }
        assert!(pushed > 50, "only {pushed} readings in a 5 KB batch");
        let len = batch.len();
        let body = batch.finish();
        assert!(body.len() + topic.len() <= DEFAULT_MAX_BYTES);
        let items = parse(&body)["batch"].as_array().unwrap().clone();
        assert_eq!(items.len(), len);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["ts"], json!(1_700_000_000_000u64 + i as u64));
            assert_eq!(item["payload"]["humidity"], json!(40));
        }
    }

    #[test]
    fn the_first_message_goes_in_even_when_larger_than_the_target() {
        let mut batch = Envelope::new("t");
        assert!(batch.try_push(1, &[b'7'; 100], 10));
        assert!(!batch.try_push(2, b"1", 10));
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn first_matching_rule_wins_and_unknown_indexes_are_none() {
        let rule = |filter: &str, max_bytes| BatchRule {
            filter: filter.into(),
            max_bytes,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
        };
        let batching = Batching::new(vec![rule("t/+/+/fast", 2048), rule("t/#", 5120)]);
        let rows = [
            ("t/ten/dev/fast", Some(0)),
            ("t/ten/dev", Some(1)),
            ("telemetry/ten/dev", None),
            ("e/ten/dev", None),
        ];
        for (topic, index) in rows {
            assert_eq!(batching.rule_for(topic), index, "{topic}");
        }
        assert_eq!(batching.rule(1).map(|r| r.max_bytes), Some(5120));
        assert_eq!(batching.rule(2), None);
        assert!(Batching::default().is_empty());
    }
}

//! The per-connection AWS IoT policy: decides for each packet from a device whether it is
//! forwarded to the broker, dropped as throttled, or ends the connection.
//!
//! Pure: the clock is an argument.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::mqtt_packet::{Connect, Packet, Publish};
use crate::rate::SlidingWindow;
use crate::rules::{counted_part, is_rules_filter, EMULATOR_PREFIX};

/// AWS IoT limits enforced on each connection; `None` switches a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// PUBLISH packets admitted per second (AWS: 100).
    pub publish_rate: Option<u32>,
    /// PUBLISH bytes (whole packets) admitted per second (AWS: 512 KiB).
    pub byte_rate: Option<u64>,
    /// Largest PUBLISH payload in bytes (AWS: 128 KB, read as 131072).
    pub max_payload: Option<usize>,
    /// Longest topic name or filter in bytes (AWS: 256), not counting the
    /// `$aws/rules/{rule}/` prefix of Basic Ingest topics.
    pub max_topic_bytes: Option<usize>,
    /// Most levels in a topic or filter (AWS: 8, i.e. 7 slashes), not counting the
    /// `$aws/rules/{rule}/` prefix of Basic Ingest topics.
    pub max_topic_levels: Option<usize>,
    /// Longest client id in bytes (AWS: 128).
    pub max_client_id: Option<usize>,
    /// Most topic filters in one SUBSCRIBE (AWS: 8).
    pub max_subscribe_filters: Option<usize>,
    /// Close connections that PUBLISH or SUBSCRIBE with QoS 2 (AWS: yes).
    pub reject_qos2: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::aws()
    }
}

impl Limits {
    /// The limits of AWS IoT Core (see the README).
    pub fn aws() -> Self {
        Limits {
            publish_rate: Some(100),
            byte_rate: Some(512 * 1024),
            max_payload: Some(128 * 1024),
            max_topic_bytes: Some(256),
            max_topic_levels: Some(8),
            max_client_id: Some(128),
            max_subscribe_filters: Some(8),
            reject_qos2: true,
        }
    }

    /// Every limit off: a transparent relay for raw-throughput benchmarks.
    pub fn none() -> Self {
        Limits {
            publish_rate: None,
            byte_rate: None,
            max_payload: None,
            max_topic_bytes: None,
            max_topic_levels: None,
            max_client_id: None,
            max_subscribe_filters: None,
            reject_qos2: false,
        }
    }
}

/// Why the emulator closed a connection or refused a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// PUBLISH with QoS 2.
    Qos2Publish,
    /// SUBSCRIBE requesting QoS 2.
    Qos2Subscribe,
    /// PUBLISH payload above the limit.
    PayloadTooLarge,
    /// Topic name or filter longer than allowed.
    TopicTooLong,
    /// Topic with too many levels.
    TopicTooManyLevels,
    /// SUBSCRIBE with too many filters.
    TooManyFilters,
    /// CONNECT with a client id that is too long (refused with CONNACK 2).
    ClientIdTooLong,
    /// CONNECT with an MQTT version other than 3.1 / 3.1.1 (refused with CONNACK 1).
    UnsupportedProtocol,
    /// First packet not a CONNECT, or a malformed packet.
    ProtocolError,
    /// SUBSCRIBE to Basic Ingest topics (`$aws/rules/…`), or PUBLISH / SUBSCRIBE on the
    /// emulator's own `$emulator/…` topics.
    ReservedTopic,
}

impl CloseReason {
    /// The snake_case name used in stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Qos2Publish => "qos2_publish",
            CloseReason::Qos2Subscribe => "qos2_subscribe",
            CloseReason::PayloadTooLarge => "payload_too_large",
            CloseReason::TopicTooLong => "topic_too_long",
            CloseReason::TopicTooManyLevels => "topic_too_many_levels",
            CloseReason::TooManyFilters => "too_many_filters",
            CloseReason::ClientIdTooLong => "client_id_too_long",
            CloseReason::UnsupportedProtocol => "unsupported_protocol",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ReservedTopic => "reserved_topic",
        }
    }
}

/// What to do with one packet from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it to the broker.
    Forward,
    /// Drop it silently (no PUBACK) and count it as throttled.
    Throttle,
    /// Close the connection.
    Close(CloseReason),
    /// Answer the CONNECT with a CONNACK carrying this return code, then close.
    Refuse(CloseReason, u8),
}

/// Checks a topic name or filter against the length and level limits. Only the
/// `$aws/rules/{rule}/` prefix of Basic Ingest topics is not counted; every other topic,
/// `$aws/things/…` included, is counted whole (AWS's own reserved topics fit in 8 levels).
pub fn check_topic(topic: &str, limits: &Limits) -> Result<(), CloseReason> {
    let counted = counted_part(topic);
    if let Some(max) = limits.max_topic_bytes {
        if counted.len() > max {
            return Err(CloseReason::TopicTooLong);
        }
    }
    if let Some(max) = limits.max_topic_levels {
        if counted.split('/').count() > max {
            return Err(CloseReason::TopicTooManyLevels);
        }
    }
    Ok(())
}

/// Whether a device may not use `topic` at all: the emulator's `$emulator/…` topics (where
/// rule messages are delivered) for PUBLISH and SUBSCRIBE, and Basic Ingest topics for
/// SUBSCRIBE (AWS: nothing can subscribe to them). Always enforced, whatever the limits.
pub fn reserved(topic: &str, subscribe: bool) -> bool {
    topic.starts_with(EMULATOR_PREFIX)
        || topic == "$emulator"
        || (subscribe && is_rules_filter(topic))
}

/// Whether a PUBLISH whose remaining length is `remaining_len` must be over the payload limit
/// whatever its topic: lets the relay close before buffering a huge packet.
pub fn surely_oversize(remaining_len: usize, limits: &Limits) -> bool {
    // Variable header is at most 2 + 65535 (topic) + 2 (packet id) bytes.
    limits
        .max_payload
        .is_some_and(|max| remaining_len > max + 2 + 65_535 + 2)
}

/// Per-connection policy state.
#[derive(Debug, Clone)]
pub struct Policy {
    limits: Limits,
    publishes: Option<SlidingWindow>,
    bytes: Option<SlidingWindow>,
    connected: bool,
}

impl Policy {
    /// Fresh state for a new connection.
    pub fn new(limits: Limits) -> Self {
        Policy {
            publishes: limits
                .publish_rate
                .map(|n| SlidingWindow::per_second(n.into())),
            bytes: limits.byte_rate.map(SlidingWindow::per_second),
            limits,
            connected: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Judges one packet from the device; `wire_len` is its full size on the wire.
    pub fn check(&mut self, packet: &Packet<'_>, wire_len: usize, now: Instant) -> Verdict {
        if !self.connected {
            return match packet {
                Packet::Connect(c) => self.check_connect(c),
                _ => Verdict::Close(CloseReason::ProtocolError),
            };
        }
        match packet {
            Packet::Publish(p) => self.check_publish(p, wire_len, now),
            Packet::Subscribe(s) => {
                if let Some(max) = self.limits.max_subscribe_filters {
                    if s.filters.len() > max {
                        return Verdict::Close(CloseReason::TooManyFilters);
                    }
                }
                for (filter, qos) in &s.filters {
                    if reserved(filter, true) {
                        return Verdict::Close(CloseReason::ReservedTopic);
                    }
                    if self.limits.reject_qos2 && *qos >= 2 {
                        return Verdict::Close(CloseReason::Qos2Subscribe);
                    }
                    if let Err(r) = check_topic(filter, &self.limits) {
                        return Verdict::Close(r);
                    }
                }
                Verdict::Forward
            }
            Packet::Connect(_) => Verdict::Close(CloseReason::ProtocolError),
            _ => Verdict::Forward,
        }
    }

    fn check_connect(&mut self, c: &Connect<'_>) -> Verdict {
        if c.protocol_level != 3 && c.protocol_level != 4 {
            return Verdict::Refuse(CloseReason::UnsupportedProtocol, 1);
        }
        if let Some(max) = self.limits.max_client_id {
            if c.client_id.len() > max {
                return Verdict::Refuse(CloseReason::ClientIdTooLong, 2);
            }
        }
        self.connected = true;
        Verdict::Forward
    }

    fn check_publish(&mut self, p: &Publish<'_>, wire_len: usize, now: Instant) -> Verdict {
        if reserved(p.topic, false) {
            return Verdict::Close(CloseReason::ReservedTopic);
        }
        if self.limits.reject_qos2 && p.qos == 2 {
            return Verdict::Close(CloseReason::Qos2Publish);
        }
        if let Some(max) = self.limits.max_payload {
            if p.payload.len() > max {
                return Verdict::Close(CloseReason::PayloadTooLarge);
            }
        }
        if let Err(r) = check_topic(p.topic, &self.limits) {
            return Verdict::Close(r);
        }
        let count_ok = self
            .publishes
            .as_mut()
            .is_none_or(|w| w.would_admit(now, 1));
        let bytes_ok = self
            .bytes
            .as_mut()
            .is_none_or(|w| w.would_admit(now, wire_len as u64));
        if !(count_ok && bytes_ok) {
            return Verdict::Throttle;
        }
        if let Some(w) = self.publishes.as_mut() {
            w.record(now, 1);
        }
        if let Some(w) = self.bytes.as_mut() {
            w.record(now, wire_len as u64);
        }
        Verdict::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt_packet::Subscribe;
    use std::time::Duration;

    fn connect(id: &[u8]) -> Packet<'_> {
        Packet::Connect(Connect {
            protocol_level: 4,
            clean_session: true,
            keep_alive: 30,
            client_id: id,
        })
    }

    fn publish<'a>(topic: &'a str, qos: u8, payload: &'a [u8]) -> Packet<'a> {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: (qos > 0).then_some(1),
            payload,
        })
    }

    fn connected(limits: Limits) -> Policy {
        let mut p = Policy::new(limits);
        assert_eq!(
            p.check(&connect(b"dev"), 20, Instant::now()),
            Verdict::Forward
        );
        p
    }

    #[test]
    fn topic_table() {
        let l = Limits::aws();
        let long = "a".repeat(257);
        let max = "a".repeat(256);
        let rule_max = format!("$aws/rules/{}/{max}", "r".repeat(128));
        let rule_long = format!("$aws/rules/r/{long}");
        let rows: [(&str, Result<(), CloseReason>); 14] = [
            ("a/b/c", Ok(())),
            ("1/2/3/4/5/6/7/8", Ok(())),
            ("1/2/3/4/5/6/7/8/9", Err(CloseReason::TopicTooManyLevels)),
            // AWS's deepest shadow topics (named shadow replies) have exactly 8 levels.
            ("$aws/things/t/shadow/name/s/update/accepted", Ok(())),
            ("$aws/things/t/shadow/name/s/#", Ok(())),
            (
                "$aws/things/t/shadow/name/s/update/x/y",
                Err(CloseReason::TopicTooManyLevels),
            ),
            (
                "$other/1/2/3/4/5/6/7/8",
                Err(CloseReason::TopicTooManyLevels),
            ),
            // Basic Ingest: `$aws/rules/{rule}/` is not counted, the rest is.
            ("$aws/rules/r/1/2/3/4/5/6/7/8", Ok(())),
            (
                "$aws/rules/r/1/2/3/4/5/6/7/8/9",
                Err(CloseReason::TopicTooManyLevels),
            ),
            (&rule_max, Ok(())),
            (&rule_long, Err(CloseReason::TopicTooLong)),
            (
                "$aws/rulesx/1/2/3/4/5/6/7",
                Err(CloseReason::TopicTooManyLevels),
            ),
            (&max, Ok(())),
            (&long, Err(CloseReason::TopicTooLong)),
        ];
        for (topic, expected) in rows {
            assert_eq!(check_topic(topic, &l), expected, "{topic}");
            assert_eq!(check_topic(topic, &Limits::none()), Ok(()), "{topic}");
        }
    }

    #[test]
    fn connect_table() {
        let rows: [(&[u8], u8, Verdict); 4] = [
            (b"dev", 4, Verdict::Forward),
            (&[b'x'; 128], 4, Verdict::Forward),
            (
                &[b'x'; 129],
                4,
                Verdict::Refuse(CloseReason::ClientIdTooLong, 2),
            ),
            (
                b"dev",
                5,
                Verdict::Refuse(CloseReason::UnsupportedProtocol, 1),
            ),
        ];
        for (id, level, expected) in rows {
            let mut p = Policy::new(Limits::aws());
            let c = Packet::Connect(Connect {
                protocol_level: level,
                clean_session: true,
                keep_alive: 30,
                client_id: id,
            });
            assert_eq!(
                p.check(&c, 10, Instant::now()),
                expected,
                "{} bytes",
                id.len()
            );
        }
        let mut p = Policy::new(Limits::none());
        assert_eq!(
            p.check(&connect(&[b'x'; 129]), 10, Instant::now()),
            Verdict::Forward
        );
    }

    #[test]
    fn first_packet_must_be_connect_and_only_once() {
        let mut p = Policy::new(Limits::aws());
        let now = Instant::now();
        assert_eq!(
            p.check(&publish("a", 0, b""), 5, now),
            Verdict::Close(CloseReason::ProtocolError)
        );
        let mut p = connected(Limits::aws());
        assert_eq!(
            p.check(&connect(b"x"), 5, now),
            Verdict::Close(CloseReason::ProtocolError)
        );
    }

    #[test]
    fn publish_table() {
        let big = vec![0u8; 128 * 1024 + 1];
        let max = vec![0u8; 128 * 1024];
        let now = Instant::now();
        let rows: [(Packet<'_>, Verdict); 8] = [
            (publish("a/b", 1, b"x"), Verdict::Forward),
            (publish("$aws/rules/r/a/b", 1, b"x"), Verdict::Forward),
            (
                publish("$emulator/rules/r/a", 1, b"x"),
                Verdict::Close(CloseReason::ReservedTopic),
            ),
            (
                publish("$emulator", 0, b"x"),
                Verdict::Close(CloseReason::ReservedTopic),
            ),
            (
                publish("a/b", 2, b"x"),
                Verdict::Close(CloseReason::Qos2Publish),
            ),
            (publish("a/b", 0, &max), Verdict::Forward),
            (
                publish("a/b", 0, &big),
                Verdict::Close(CloseReason::PayloadTooLarge),
            ),
            (
                publish("1/2/3/4/5/6/7/8/9", 1, b""),
                Verdict::Close(CloseReason::TopicTooManyLevels),
            ),
        ];
        for (i, (packet, expected)) in rows.iter().enumerate() {
            let mut limits = Limits::aws();
            limits.byte_rate = None;
            assert_eq!(
                connected(limits).check(packet, 10, now),
                *expected,
                "row {i}"
            );
            let reserved = matches!(expected, Verdict::Close(CloseReason::ReservedTopic));
            assert_eq!(
                connected(Limits::none()).check(packet, 10, now),
                if reserved {
                    *expected
                } else {
                    Verdict::Forward
                },
                "row {i}: reserved topics are refused whatever the limits"
            );
        }
    }

    #[test]
    fn subscribe_table() {
        let now = Instant::now();
        let sub = |filters: Vec<(&'static str, u8)>| {
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters,
            })
        };
        let nine: Vec<_> = (0..9).map(|_| ("a", 1)).collect();
        let rows = [
            (sub(vec![("a/#", 1), ("b/+", 0)]), Verdict::Forward),
            (
                sub(vec![("a", 1), ("b", 2)]),
                Verdict::Close(CloseReason::Qos2Subscribe),
            ),
            (sub(nine), Verdict::Close(CloseReason::TooManyFilters)),
            (
                sub(vec![("1/2/3/4/5/6/7/8/#", 1)]),
                Verdict::Close(CloseReason::TopicTooManyLevels),
            ),
            (
                sub(vec![("a", 1), ("$aws/rules/r/#", 1)]),
                Verdict::Close(CloseReason::ReservedTopic),
            ),
            (
                sub(vec![("$aws/rules/+/a", 0)]),
                Verdict::Close(CloseReason::ReservedTopic),
            ),
            (
                sub(vec![("$emulator/rules/#", 1)]),
                Verdict::Close(CloseReason::ReservedTopic),
            ),
            (
                sub(vec![("$aws/things/t/shadow/name/s/update/accepted", 1)]),
                Verdict::Forward,
            ),
        ];
        for (i, (packet, expected)) in rows.iter().enumerate() {
            assert_eq!(
                connected(Limits::aws()).check(packet, 10, now),
                *expected,
                "row {i}"
            );
        }
    }

    #[test]
    fn publish_rate_throttles_the_excess_within_one_second() {
        let t0 = Instant::now();
        let mut p = connected(Limits::aws());
        let admitted = (0..150)
            .filter(|i| {
                p.check(&publish("t", 1, b"x"), 10, t0 + Duration::from_millis(*i))
                    == Verdict::Forward
            })
            .count();
        assert_eq!(admitted, 100);
        assert_eq!(
            p.check(&publish("t", 1, b"x"), 10, t0 + Duration::from_millis(1000)),
            Verdict::Forward
        );
    }

    #[test]
    fn byte_rate_throttles_and_throttled_bytes_do_not_count() {
        let t0 = Instant::now();
        let mut limits = Limits::aws();
        limits.publish_rate = None;
        let mut p = connected(limits);
        let payload = vec![0u8; 100_000];
        let verdicts: Vec<_> = (0..7)
            .map(|_| p.check(&publish("t", 1, &payload), 100_010, t0))
            .collect();
        assert_eq!(&verdicts[..5], &[Verdict::Forward; 5]);
        assert_eq!(&verdicts[5..], &[Verdict::Throttle; 2]);
        // 24 278 bytes are left in this second.
        assert_eq!(
            p.check(&publish("t", 1, b"x"), 24_000, t0),
            Verdict::Forward
        );
    }
}

//! How uplink messages are laid out in sled.
//!
//! A stored value is either one message ([`encode`], format 1, written by awslink before
//! records existed) or a record of consecutive messages (format 2, [`RecordBuilder`]) stored
//! under the key of its first message: message `i` of a record at key `k` has sequence number
//! `k + i`. One sled insert per record instead of one per message is what makes a burst cheap.

use crate::model::CloudMessage;

/// Format byte of a single encoded message.
pub const MESSAGE_VERSION: u8 = 1;
/// Format byte of a record of several messages.
pub const RECORD_VERSION: u8 = 2;
/// Format byte of a single message with a batching rule: format 1 with the rule's index in one
/// byte after the topic length (messages without a rule keep format 1).
pub const BATCHED_MESSAGE_VERSION: u8 = 3;
const MESSAGE_HEADER_LEN: usize = 1 + 1 + 8 + 2;
const RECORD_HEADER_LEN: usize = 1 + 2;
/// A record holds at most this many messages.
pub const RECORD_MAX_MESSAGES: usize = 64;
/// A record is closed once it holds this many bytes (a larger message gets a record of its own).
pub const RECORD_MAX_BYTES: usize = 64 * 1024;

/// Serializes a message: version, qos, enqueue time, topic length, (format 3: batching rule),
/// topic, payload.
pub fn encode(msg: &CloudMessage) -> Vec<u8> {
    let topic = msg.topic.as_bytes();
    let topic = &topic[..topic.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(MESSAGE_HEADER_LEN + 1 + topic.len() + msg.payload.len());
    out.push(match msg.batch {
        Some(_) => BATCHED_MESSAGE_VERSION,
        None => MESSAGE_VERSION,
    });
    out.push(msg.qos.clamp(0, 1) as u8);
    out.extend_from_slice(&msg.enqueued_ms.to_be_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    if let Some(rule) = msg.batch {
        out.push(rule);
    }
    out.extend_from_slice(topic);
    out.extend_from_slice(&msg.payload);
    out
}

/// Parses what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<CloudMessage, String> {
    if bytes.len() < MESSAGE_HEADER_LEN {
        return Err(format!("{} bytes is shorter than the header", bytes.len()));
    }
    let (header_len, batch) = match bytes[0] {
        MESSAGE_VERSION => (MESSAGE_HEADER_LEN, None),
        BATCHED_MESSAGE_VERSION => {
            let rule = *bytes
                .get(MESSAGE_HEADER_LEN)
                .ok_or("batching rule runs past the end")?;
            (MESSAGE_HEADER_LEN + 1, Some(rule))
        }
        other => return Err(format!("unknown format version {other}")),
    };
    let qos = i32::from(bytes[1]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&bytes[2..10]);
    let topic_len = u16::from_be_bytes([bytes[10], bytes[11]]) as usize;
    let topic_end = header_len + topic_len;
    let topic = bytes
        .get(header_len..topic_end)
        .ok_or("topic runs past the end")?;
    let topic = std::str::from_utf8(topic).map_err(|e| format!("topic is not UTF-8: {e}"))?;
    Ok(CloudMessage {
        topic: topic.to_string(),
        payload: bytes[topic_end..].to_vec(),
        qos,
        enqueued_ms: u64::from_be_bytes(time),
        batch,
    })
}

/// Collects consecutive encoded messages into one record.
#[derive(Debug)]
pub struct RecordBuilder {
    first: u64,
    count: u16,
    bytes: Vec<u8>,
}

impl RecordBuilder {
    /// An empty record whose first message will have sequence number `first`.
    pub fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(&[RECORD_VERSION, 0, 0]);
        RecordBuilder {
            first,
            count: 0,
            bytes,
        }
    }

    /// Sequence number of the message after the last one pushed.
    pub fn next_seq(&self) -> u64 {
        self.first + u64::from(self.count)
    }

    /// True when a message of `len` encoded bytes should start a new record instead.
    pub fn is_full_for(&self, len: usize) -> bool {
        self.count > 0
            && (usize::from(self.count) >= RECORD_MAX_MESSAGES
                || self.bytes.len() + 4 + len > RECORD_MAX_BYTES)
    }

    /// Adds one encoded message.
    pub fn push(&mut self, encoded: &[u8]) {
        self.bytes
            .extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(encoded);
        self.count += 1;
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The key (first sequence number) and the value to store.
    pub fn finish(mut self) -> (u64, Vec<u8>) {
        self.bytes[1..3].copy_from_slice(&self.count.to_be_bytes());
        (self.first, self.bytes)
    }
}

/// How many messages a value written by this version holds (a record's count, 1 for a single
/// message), read from its header without splitting it.
pub fn messages_in(value: &[u8]) -> u64 {
    match value {
        [RECORD_VERSION, hi, lo, ..] => u64::from(u16::from_be_bytes([*hi, *lo])),
        _ => 1,
    }
}

/// The encoded messages of a stored value, in sequence order from the value's key.
pub fn split(value: &[u8]) -> Result<Vec<&[u8]>, String> {
    match value.first() {
        Some(&MESSAGE_VERSION | &BATCHED_MESSAGE_VERSION) => Ok(vec![value]),
        Some(&RECORD_VERSION) => {
            let count = value
                .get(1..RECORD_HEADER_LEN)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .ok_or("record shorter than its header")?;
            let mut parts = Vec::with_capacity(usize::from(count));
            let mut rest = &value[RECORD_HEADER_LEN..];
            for i in 0..count {
                let len = rest
                    .get(..4)
                    .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .ok_or_else(|| format!("record ends before message {i} of {count}"))?;
                let part = rest
                    .get(4..4 + len)
                    .ok_or_else(|| format!("message {i} of {count} runs past the record"))?;
                parts.push(part);
                rest = &rest[4 + len..];
            }
            if !rest.is_empty() {
                return Err(format!("{} bytes after the last message", rest.len()));
            }
            Ok(parts)
        }
        Some(other) => Err(format!("unknown format version {other}")),
        None => Err("empty value".into()),
    }
}

/// Message number `n` of the journal's unit tests (distinct topic, payload, QoS and time).
#[cfg(test)]
pub(crate) fn test_message(n: u64) -> CloudMessage {
    CloudMessage {
        topic: format!("telemetry/t/d/{n}"),
        payload: n.to_string().into_bytes(),
        qos: (n % 2) as i32,
        enqueued_ms: 1_700_000_000_000 + n,
        batch: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_message as msg;
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for m in [
            msg(0),
            msg(7),
            CloudMessage {
                payload: vec![0, 255, 10],
                ..msg(3)
            },
            CloudMessage {
                batch: Some(0),
                ..msg(4)
            },
            CloudMessage {
                batch: Some(254),
                ..msg(5)
            },
        ] {
            assert_eq!(decode(&encode(&m)), Ok(m));
        }
        assert!(decode(&[1, 0]).is_err());
        assert!(decode(&[9; 20]).is_err());
        let mut short_topic = encode(&msg(1));
        short_topic[11] = 200;
        short_topic.truncate(30);
        assert!(decode(&short_topic).is_err());
        // Without a rule the format stays the one earlier versions read.
        assert_eq!(encode(&msg(1))[0], MESSAGE_VERSION);
        let batched = encode(&CloudMessage {
            batch: Some(2),
            ..msg(1)
        });
        assert_eq!(batched[0], BATCHED_MESSAGE_VERSION);
        assert!(decode(&batched[..MESSAGE_HEADER_LEN]).is_err());
    }

    #[test]
    fn a_record_splits_into_its_messages_in_order() {
        let mut record = RecordBuilder::new(40);
        for n in 0..3 {
            record.push(&encode(&msg(n)));
        }
        assert_eq!(record.next_seq(), 43);
        let (key, value) = record.finish();
        assert_eq!(key, 40);
        let parts = split(&value).unwrap();
        let decoded: Vec<CloudMessage> = parts.iter().map(|p| decode(p).unwrap()).collect();
        assert_eq!(decoded, vec![msg(0), msg(1), msg(2)]);
    }

    #[test]
    fn a_single_message_value_is_a_record_of_one() {
        let value = encode(&msg(5));
        assert_eq!(split(&value).unwrap(), vec![&value[..]]);
    }

    #[test]
    fn damaged_records_are_refused() {
        let mut record = RecordBuilder::new(0);
        record.push(&encode(&msg(1)));
        record.push(&encode(&msg(2)));
        let (_, value) = record.finish();
        assert!(split(&value[..value.len() - 1]).is_err(), "truncated");
        let mut extra = value.clone();
        extra.push(0);
        assert!(split(&extra).is_err(), "trailing bytes");
        assert!(split(&[]).is_err());
        assert!(split(&[7, 0, 1]).is_err(), "unknown version");
        assert!(split(&[RECORD_VERSION, 0]).is_err(), "short header");
    }

    #[test]
    fn records_close_at_their_limits() {
        let mut record = RecordBuilder::new(0);
        assert!(
            !record.is_full_for(RECORD_MAX_BYTES * 2),
            "an empty record takes anything"
        );
        for _ in 0..RECORD_MAX_MESSAGES {
            record.push(&[1; 10]);
        }
        assert!(record.is_full_for(10));
        let mut record = RecordBuilder::new(0);
        record.push(&[1; 1000]);
        assert!(record.is_full_for(RECORD_MAX_BYTES - 1000));
        assert!(!record.is_full_for(1000));
    }
}

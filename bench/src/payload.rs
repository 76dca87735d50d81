//! The benchmark payload: sequence number and send time, padded to the requested size, as 16
//! binary bytes or as a JSON reading; and the unpacking of awslink's batch envelopes.

use serde_json::Value;

/// Bytes used by the binary header (sequence u64 LE, send time ns u64 LE).
pub const HEADER: usize = 16;

/// The start of a JSON payload (a binary header cannot begin so for any sequence below 2^48).
const JSON_PREFIX: &[u8] = b"{\"seq\":";

/// Builds a binary payload of `size` bytes (at least [`HEADER`]).
pub fn encode(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(HEADER));
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&sent_ns.to_le_bytes());
    p.resize(size.max(HEADER), b'x');
    p
}

/// Builds a JSON reading `{"seq":…,"sent":…,"pad":"xx…"}` of `size` bytes (longer when the
/// numbers alone do not fit), the shape of real telemetry.
pub fn encode_json(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"seq\":{seq},\"sent\":{sent_ns},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut p = head.into_bytes();
    p.resize(p.len() + pad, b'x');
    p.extend_from_slice(b"\"}");
    p
}

/// Reads (sequence, send time) back from a binary or JSON payload; `None` for foreign ones.
pub fn decode(p: &[u8]) -> Option<(u64, u64)> {
    if p.starts_with(JSON_PREFIX) {
        return decode_value(&serde_json::from_slice(p).ok()?);
    }
    let seq = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

fn decode_value(v: &Value) -> Option<(u64, u64)> {
    Some((v.get("seq")?.as_u64()?, v.get("sent")?.as_u64()?))
}

/// The messages of one publish as received: an awslink batch envelope
/// `{"batch":[{"ts":…,"payload":<JSON>}|{"ts":…,"b64":"…"}, …]}` gives one entry per packed
/// message (`None` for a foreign one), any other payload itself.
pub fn unpack(p: &[u8]) -> Vec<Option<(u64, u64)>> {
    if p.starts_with(b"{\"batch\":") {
        if let Ok(Value::Object(env)) = serde_json::from_slice::<Value>(p) {
            if let Some(Value::Array(items)) = env.get("batch") {
                return items.iter().map(unpack_item).collect();
            }
        }
    }
    vec![decode(p)]
}

fn unpack_item(item: &Value) -> Option<(u64, u64)> {
    if let Some(v) = item.get("payload") {
        return decode_value(v);
    }
    decode(&base64_decode(item.get("b64")?.as_str()?)?)
}

/// Standard base64 (with padding) to bytes; `None` on a character outside the alphabet.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// AWS IoT's billed messages for one publish: ⌈(payload + topic bytes) / 5,120⌉, at least 1.
pub fn billed_units(payload: usize, topic: usize) -> u64 {
    ((payload + topic).div_ceil(5120)).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = encode(42, 7, 200);
        assert_eq!(p.len(), 200);
        assert_eq!(decode(&p), Some((42, 7)));
        assert_eq!(decode(b"short"), None);
        let j = encode_json(42, 1_700_000_000_000_000_000, 200);
        assert_eq!(j.len(), 200);
        assert_eq!(decode(&j), Some((42, 1_700_000_000_000_000_000)));
    }

    #[test]
    fn envelopes_unpack_json_and_base64_items() {
        let bin = encode(3, 9, 20);
        let b64 = "AwAAAAAAAAAJAAAAAAAAAHh4eHg="; // base64 of `bin`
        assert_eq!(base64_decode(b64).as_deref(), Some(&bin[..]));
        let env = format!(
            "{{\"batch\":[{{\"ts\":1,\"payload\":{}}},{{\"ts\":2,\"b64\":\"{b64}\"}},{{\"ts\":3,\"b64\":\"!\"}}]}}",
            String::from_utf8(encode_json(1, 5, 60)).unwrap()
        );
        assert_eq!(
            unpack(env.as_bytes()),
            vec![Some((1, 5)), Some((3, 9)), None]
        );
        assert_eq!(unpack(&bin), vec![Some((3, 9))]);
    }

    #[test]
    fn billing_rounds_up_per_5120_bytes() {
        for (payload, topic, units) in [
            (0, 0, 1),
            (200, 19, 1),
            (5101, 19, 1),
            (5102, 19, 2),
            (10240, 0, 2),
        ] {
            assert_eq!(billed_units(payload, topic), units, "{payload}+{topic}");
        }
    }
}

//! The benchmark payload: sequence number and send time, padded to the requested size.

/// Bytes used by the header (sequence u64 LE, send time ns u64 LE).
pub const HEADER: usize = 16;

/// Builds a payload of `size` bytes (at least [`HEADER`]).
pub fn encode(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(HEADER));
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&sent_ns.to_le_bytes());
    p.resize(size.max(HEADER), b'x');
    p
}

/// Reads (sequence, send time) back; `None` for foreign payloads.
pub fn decode(p: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
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
    }
}

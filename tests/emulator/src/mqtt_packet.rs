//! MQTT 3.1.1 packet framing, parsing of the packets the policy looks at (CONNECT, PUBLISH,
//! SUBSCRIBE) and encoders for the few packets the emulator writes itself.
//!
//! Pure functions over byte slices: no sockets.

/// MQTT control packet types (the high nibble of the first byte).
pub mod kind {
    /// CONNECT
    pub const CONNECT: u8 = 1;
    /// CONNACK
    pub const CONNACK: u8 = 2;
    /// PUBLISH
    pub const PUBLISH: u8 = 3;
    /// PUBACK
    pub const PUBACK: u8 = 4;
    /// SUBSCRIBE
    pub const SUBSCRIBE: u8 = 8;
    /// SUBACK
    pub const SUBACK: u8 = 9;
    /// PINGREQ
    pub const PINGREQ: u8 = 12;
    /// DISCONNECT
    pub const DISCONNECT: u8 = 14;
}

/// The largest remaining length MQTT can encode (4 length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A packet that violates MQTT 3.1.1 framing or structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MQTT packet: {0}")]
pub struct PacketError(pub &'static str);

/// The fixed header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Control packet type, see [`kind`].
    pub packet_type: u8,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
    /// The remaining length (variable header + payload).
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Total bytes of the packet on the wire.
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Reads the fixed header at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, PacketError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    let mut multiplier = 1usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value += (b & 0x7f) as usize * multiplier;
        if b & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                packet_type: first >> 4,
                flags: first & 0x0f,
                header_len: 2 + i,
                remaining_len: value,
            }));
        }
        multiplier *= 128;
    }
    Err(PacketError("remaining length longer than 4 bytes"))
}

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol_level: u8,
    /// Clean-session flag.
    pub clean_session: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// The client identifier (raw bytes; MQTT says UTF-8).
    pub client_id: &'a [u8],
}

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS level as sent (0..=2; 3 is rejected while parsing).
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// The topic name.
    pub topic: &'a str,
    /// Packet identifier (QoS > 0 only).
    pub packet_id: Option<u16>,
    /// The application payload.
    pub payload: &'a [u8],
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters with their requested QoS.
    pub filters: Vec<(&'a str, u8)>,
}

/// A parsed packet; types the policy does not inspect are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT
    Connect(Connect<'a>),
    /// PUBLISH
    Publish(Publish<'a>),
    /// SUBSCRIBE
    Subscribe(Subscribe<'a>),
    /// PUBACK with its packet id.
    Puback(u16),
    /// CONNACK with session-present and return code.
    Connack {
        /// Session present flag.
        session_present: bool,
        /// Return code, 0 = accepted.
        return_code: u8,
    },
    /// Any other packet type.
    Other(u8),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, PacketError> {
        let b = *self.buf.get(self.pos).ok_or(PacketError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, PacketError> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], PacketError> {
        let n = self.u16()? as usize;
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(PacketError("truncated string"))?;
        self.pos += n;
        Ok(s)
    }
    fn str(&mut self) -> Result<&'a str, PacketError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| PacketError("string is not UTF-8"))
    }
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
}

/// Parses one complete packet; `packet` must hold exactly `header.total_len()` bytes.
pub fn parse_packet<'a>(header: &FixedHeader, packet: &'a [u8]) -> Result<Packet<'a>, PacketError> {
    let body = packet
        .get(header.header_len..header.total_len())
        .ok_or(PacketError("truncated packet"))?;
    let mut r = Reader { buf: body, pos: 0 };
    match header.packet_type {
        kind::CONNECT => {
            let name = r.bytes()?;
            if name != b"MQTT" && name != b"MQIsdp" {
                return Err(PacketError("unknown protocol name"));
            }
            let protocol_level = r.u8()?;
            let flags = r.u8()?;
            let keep_alive = r.u16()?;
            if protocol_level == 5 {
                // Skip MQTT 5 connect properties so the client id can still be read.
                let (len, used) = decode_varint(r.rest())?;
                r.pos += used + len;
            }
            let client_id = r.bytes()?;
            Ok(Packet::Connect(Connect {
                protocol_level,
                clean_session: flags & 0x02 != 0,
                keep_alive,
                client_id,
            }))
        }
        kind::PUBLISH => {
            let qos = (header.flags >> 1) & 0x03;
            if qos == 3 {
                return Err(PacketError("PUBLISH with QoS 3"));
            }
            let topic = r.str()?;
            let packet_id = if qos > 0 { Some(r.u16()?) } else { None };
            Ok(Packet::Publish(Publish {
                dup: header.flags & 0x08 != 0,
                qos,
                retain: header.flags & 0x01 != 0,
                topic,
                packet_id,
                payload: r.rest(),
            }))
        }
        kind::SUBSCRIBE => {
            let packet_id = r.u16()?;
            let mut filters = Vec::new();
            while r.pos < body.len() {
                let f = r.str()?;
                let q = r.u8()?;
                filters.push((f, q));
            }
            if filters.is_empty() {
                return Err(PacketError("SUBSCRIBE without filters"));
            }
            Ok(Packet::Subscribe(Subscribe { packet_id, filters }))
        }
        kind::PUBACK => Ok(Packet::Puback(r.u16()?)),
        kind::CONNACK => {
            let flags = r.u8()?;
            Ok(Packet::Connack {
                session_present: flags & 1 != 0,
                return_code: r.u8()?,
            })
        }
        t => Ok(Packet::Other(t)),
    }
}

fn decode_varint(buf: &[u8]) -> Result<(usize, usize), PacketError> {
    let mut value = 0usize;
    let mut multiplier = 1usize;
    for i in 0..4 {
        let b = *buf.get(i).ok_or(PacketError("truncated length"))?;
        value += (b & 0x7f) as usize * multiplier;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        multiplier *= 128;
    }
    Err(PacketError("variable integer longer than 4 bytes"))
}

/// Appends the MQTT remaining-length encoding of `len` to `out`.
pub fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    encode_remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNACK with a return code (0 accepted, 1 bad protocol, 2 identifier rejected, ...).
pub fn encode_connack(session_present: bool, return_code: u8) -> Vec<u8> {
    vec![0x20, 0x02, u8::from(session_present), return_code]
}

/// An MQTT 3.1.1 CONNECT without will or credentials.
pub fn encode_connect(client_id: &str, keep_alive: u16, clean_session: bool) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4);
    body.push(if clean_session { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    frame(0x10, &body)
}

/// A PUBLISH; `packet_id` is required for QoS > 0.
pub fn encode_publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_str(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A PUBACK.
pub fn encode_puback(packet_id: u16) -> Vec<u8> {
    let id = packet_id.to_be_bytes();
    vec![0x40, 0x02, id[0], id[1]]
}

/// A SUBSCRIBE for the given filters.
pub fn encode_subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (f, q) in filters {
        put_str(&mut body, f.as_bytes());
        body.push(*q);
    }
    frame(0x82, &body)
}

/// A PINGREQ.
pub fn encode_pingreq() -> Vec<u8> {
    vec![0xc0, 0x00]
}

/// A DISCONNECT.
pub fn encode_disconnect() -> Vec<u8> {
    vec![0xe0, 0x00]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Packet<'_> {
        let h = parse_fixed_header(bytes).unwrap().unwrap();
        assert_eq!(h.total_len(), bytes.len());
        parse_packet(&h, bytes).unwrap()
    }

    #[test]
    fn remaining_length_round_trips_at_every_boundary() {
        for len in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING_LENGTH,
        ] {
            let mut out = vec![0x30];
            encode_remaining_length(len, &mut out);
            let h = parse_fixed_header(&out).unwrap().unwrap();
            assert_eq!(
                (h.remaining_len, h.header_len),
                (len, out.len()),
                "len {len}"
            );
        }
    }

    #[test]
    fn fixed_header_needs_more_bytes_or_fails() {
        assert_eq!(parse_fixed_header(&[]), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30]), Ok(None));
        assert_eq!(parse_fixed_header(&[0x30, 0x80, 0x80]), Ok(None));
        assert!(parse_fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }

    #[test]
    fn packets_round_trip() {
        let c = encode_connect("dev-1", 30, true);
        assert_eq!(
            parse(&c),
            Packet::Connect(Connect {
                protocol_level: 4,
                clean_session: true,
                keep_alive: 30,
                client_id: b"dev-1"
            })
        );
        let p = encode_publish("a/b", b"hello", 1, 7, true);
        assert_eq!(
            parse(&p),
            Packet::Publish(Publish {
                dup: false,
                qos: 1,
                retain: true,
                topic: "a/b",
                packet_id: Some(7),
                payload: b"hello"
            })
        );
        let p0 = encode_publish("t", b"", 0, 0, false);
        assert!(matches!(
            parse(&p0),
            Packet::Publish(Publish {
                packet_id: None,
                ..
            })
        ));
        let s = encode_subscribe(3, &[("a/#", 1), ("b", 2)]);
        assert_eq!(
            parse(&s),
            Packet::Subscribe(Subscribe {
                packet_id: 3,
                filters: vec![("a/#", 1), ("b", 2)]
            })
        );
        assert_eq!(parse(&encode_puback(9)), Packet::Puback(9));
        assert_eq!(
            parse(&encode_connack(false, 2)),
            Packet::Connack {
                session_present: false,
                return_code: 2
            }
        );
        assert_eq!(parse(&encode_pingreq()), Packet::Other(kind::PINGREQ));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let qos3 = [0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01];
        let h = parse_fixed_header(&qos3).unwrap().unwrap();
        assert!(parse_packet(&h, &qos3).is_err());
        let short_topic = [0x30, 0x03, 0x00, 0x05, b't'];
        let h = parse_fixed_header(&short_topic).unwrap().unwrap();
        assert!(parse_packet(&h, &short_topic).is_err());
        let bad_proto = [0x10, 0x04, 0x00, 0x02, b'X', b'X'];
        let h = parse_fixed_header(&bad_proto).unwrap().unwrap();
        assert!(parse_packet(&h, &bad_proto).is_err());
    }
}

//! The private-broker connection shared by the emulator's services (Device Shadow,
//! provisioning): a blocking MQTT 3.1.1 client that connects, subscribes to its request topics
//! and then reads whole packets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::EmulatorError;
use crate::mqtt_packet::{encode_connect, encode_subscribe, kind, parse_fixed_header};

/// Reads whole MQTT packets from a blocking stream.
pub struct PacketReader {
    /// The socket packets are read from.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl PacketReader {
    /// The next whole packet (fixed header included).
    pub fn next_packet(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(h) = parse_fixed_header(&self.buf).map_err(std::io::Error::other)? {
                if self.buf.len() >= h.total_len() {
                    let rest = self.buf.split_off(h.total_len());
                    return Ok(std::mem::replace(&mut self.buf, rest));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next packet of `packet_type`, skipping others.
    pub fn next_packet_of(&mut self, packet_type: u8) -> std::io::Result<Vec<u8>> {
        loop {
            let p = self.next_packet()?;
            if p.first().map(|b| b >> 4) == Some(packet_type) {
                return Ok(p);
            }
        }
    }
}

/// A connected, subscribed service client.
pub struct ServiceConnection {
    /// Reads incoming packets (no read timeout).
    pub reader: PacketReader,
    /// Writes replies.
    pub writer: TcpStream,
    /// Another handle on the socket, to shut it down from outside the service thread.
    pub socket: TcpStream,
}

/// Connects `client_id` to the private broker, waits for CONNACK, subscribes to `filters` at
/// QoS 1 and waits for SUBACK; `service` names the service in errors.
pub fn connect(
    service: &str,
    broker: SocketAddr,
    client_id: &str,
    filters: &[&str],
) -> Result<ServiceConnection, EmulatorError> {
    let err = |what: &str, e: std::io::Error| EmulatorError::io(format!("{service}: {what}"), e);
    let stream = TcpStream::connect(broker).map_err(|e| err("connect to private broker", e))?;
    stream.set_nodelay(true).map_err(|e| err("nodelay", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| err("timeout", e))?;
    let mut writer = stream.try_clone().map_err(|e| err("clone socket", e))?;
    let socket = stream.try_clone().map_err(|e| err("clone socket", e))?;
    let mut reader = PacketReader {
        stream,
        buf: Vec::new(),
    };
    writer
        .write_all(&encode_connect(client_id, 0, true))
        .map_err(|e| err("send CONNECT", e))?;
    let connack = reader
        .next_packet_of(kind::CONNACK)
        .map_err(|e| err("read CONNACK", e))?;
    if connack.get(3) != Some(&0) {
        return Err(EmulatorError::Broker(format!(
            "{service}: CONNACK refused: {connack:?}"
        )));
    }
    let filters: Vec<(&str, u8)> = filters.iter().map(|f| (*f, 1)).collect();
    writer
        .write_all(&encode_subscribe(1, &filters))
        .map_err(|e| err("send SUBSCRIBE", e))?;
    let suback = reader
        .next_packet_of(kind::SUBACK)
        .map_err(|e| err("read SUBACK", e))?;
    if suback.iter().skip(4).any(|rc| *rc >= 0x80) {
        return Err(EmulatorError::Broker(format!(
            "{service}: SUBSCRIBE refused: {suback:?}"
        )));
    }
    reader
        .stream
        .set_read_timeout(None)
        .map_err(|e| err("timeout", e))?;
    Ok(ServiceConnection {
        reader,
        writer,
        socket,
    })
}

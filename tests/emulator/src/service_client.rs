//! The private-broker connection shared by the emulator's services (Device Shadow,
//! provisioning): a blocking MQTT 3.1.1 client that connects, subscribes to its request topics
//! and then reads whole packets.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use log::debug;

use crate::error::EmulatorError;
use crate::mqtt_packet::{
    encode_connect, encode_puback, encode_publish, encode_subscribe, kind, parse_fixed_header,
    parse_packet, Packet,
};
use crate::shadow::Reply;

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

/// A running service: a thread answering request PUBLISHes on the private broker; stopped on
/// drop.
pub struct Service {
    socket: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    /// Connects as `client_id`, subscribes to `filters`, and runs `handle(topic, payload)` for
    /// every request in a thread named `thread_name`; the replies it returns are published at
    /// QoS 1 after the request's PUBACK.
    pub fn start(
        service: &'static str,
        thread_name: &str,
        broker: SocketAddr,
        client_id: &str,
        filters: &[&str],
        mut handle: impl FnMut(&str, &[u8]) -> Vec<Reply> + Send + 'static,
    ) -> Result<Service, EmulatorError> {
        let ServiceConnection {
            mut reader,
            mut writer,
            socket,
        } = connect(service, broker, client_id, filters)?;
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let mut next_id: u16 = 1;
                loop {
                    let bytes = match reader.next_packet() {
                        Ok(b) => b,
                        Err(e) => return debug!("{service} stops: {e}"),
                    };
                    let Ok(Some(header)) = parse_fixed_header(&bytes) else {
                        continue;
                    };
                    let Ok(Packet::Publish(p)) = parse_packet(&header, &bytes) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    if let Some(id) = p.packet_id {
                        out.extend_from_slice(&encode_puback(id));
                    }
                    for r in handle(p.topic, p.payload) {
                        next_id = next_id.checked_add(1).unwrap_or(1);
                        let payload = r.payload.to_string();
                        out.extend_from_slice(&encode_publish(
                            &r.topic,
                            payload.as_bytes(),
                            1,
                            next_id,
                            false,
                        ));
                    }
                    if let Err(e) = writer.write_all(&out) {
                        return debug!("{service} stops: {e}");
                    }
                }
            })
            .map_err(|e| EmulatorError::io(format!("spawn {service} thread"), e))?;
        Ok(Service {
            socket,
            thread: Some(thread),
        })
    }

    /// Disconnects from the broker and waits for the service thread.
    pub fn stop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

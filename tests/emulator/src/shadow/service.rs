//! Runs a [`ShadowStore`] as a client of the private broker: subscribes to the request
//! topics, answers with QoS 1 publishes, counts outcomes and optionally persists to a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, warn};

use super::{Entry, ShadowLimits, ShadowStore, REQUEST_FILTERS};
use crate::error::EmulatorError;
use crate::mqtt_packet::{encode_puback, encode_publish, parse_fixed_header, parse_packet, Packet};
use crate::service_client::{self, PacketReader, ServiceConnection};
use crate::stats::StatsHandle;

/// The shadow service's MQTT client id on the private broker.
pub const CLIENT_ID: &str = "aws-iot-emulator-shadow-service";

/// The running service; stopped on drop.
pub struct ShadowService {
    socket: TcpStream,
    thread: Option<JoinHandle<()>>,
}

fn load(path: &Path) -> Result<BTreeMap<String, Entry>, EmulatorError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            EmulatorError::Config(format!(
                "shadow file {}: {e} (delete it or fix the JSON)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(EmulatorError::file(path, e)),
    }
}

fn save(path: &Path, store: &ShadowStore) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(store.entries()).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ShadowService {
    /// Connects to the broker at `broker`, subscribes, and serves until stopped.
    pub fn start(
        broker: SocketAddr,
        limits: ShadowLimits,
        file: Option<PathBuf>,
        stats: StatsHandle,
    ) -> Result<ShadowService, EmulatorError> {
        let entries = match &file {
            Some(p) => load(p)?,
            None => BTreeMap::new(),
        };
        let store = ShadowStore::with_entries(limits, entries);
        let ServiceConnection {
            reader,
            writer,
            socket,
        } = service_client::connect("shadow service", broker, CLIENT_ID, &REQUEST_FILTERS)?;
        let thread = std::thread::Builder::new()
            .name("emu-shadow".into())
            .spawn(move || serve(reader, writer, store, file, stats))
            .map_err(|e| EmulatorError::io("spawn shadow thread", e))?;
        Ok(ShadowService {
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

impl Drop for ShadowService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut reader: PacketReader,
    mut writer: TcpStream,
    mut store: ShadowStore,
    file: Option<PathBuf>,
    stats: StatsHandle,
) {
    let mut next_id: u16 = 1;
    loop {
        let bytes = match reader.next_packet() {
            Ok(b) => b,
            Err(e) => {
                debug!("shadow service stops: {e}");
                return;
            }
        };
        let header = match parse_fixed_header(&bytes) {
            Ok(Some(h)) => h,
            _ => continue,
        };
        let Ok(Packet::Publish(p)) = parse_packet(&header, &bytes) else {
            continue;
        };
        let mut out = Vec::new();
        if let Some(id) = p.packet_id {
            out.extend_from_slice(&encode_puback(id));
        }
        if let Some(handled) = store.handle(p.topic, p.payload, unix_now(), Instant::now()) {
            debug!("shadow {} -> {}", p.topic, handled.outcome);
            stats.shadow(&handled.outcome);
            for r in &handled.replies {
                next_id = next_id.checked_add(1).unwrap_or(1);
                out.extend_from_slice(&encode_publish(
                    &r.topic,
                    r.payload.to_string().as_bytes(),
                    1,
                    next_id,
                    false,
                ));
            }
            if handled.changed {
                if let Some(path) = &file {
                    if let Err(e) = save(path, &store) {
                        warn!("cannot save shadows to {}: {e}", path.display());
                    }
                }
            }
        }
        if let Err(e) = writer.write_all(&out) {
            debug!("shadow service stops: {e}");
            return;
        }
    }
}

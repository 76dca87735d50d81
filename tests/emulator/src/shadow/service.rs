//! Runs a [`ShadowStore`] as a client of the private broker: subscribes to the request
//! topics, answers with QoS 1 publishes, counts outcomes and optionally persists to a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, warn};

use super::{Entry, ShadowLimits, ShadowStore, REQUEST_FILTERS};
use crate::error::EmulatorError;
use crate::service_client::Service;
use crate::stats::StatsHandle;

/// The shadow service's MQTT client id on the private broker.
pub const CLIENT_ID: &str = "aws-iot-emulator-shadow-service";

/// The running service; stopped on drop.
pub struct ShadowService(Service);

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
        let mut store = ShadowStore::with_entries(limits, entries);
        let service = Service::start(
            "shadow service",
            "emu-shadow",
            broker,
            CLIENT_ID,
            &REQUEST_FILTERS,
            move |topic, payload| {
                let Some(handled) = store.handle(topic, payload, unix_now(), Instant::now()) else {
                    return Vec::new();
                };
                debug!("shadow {topic} -> {}", handled.outcome);
                stats.shadow(&handled.outcome);
                if handled.changed {
                    if let Some(path) = &file {
                        if let Err(e) = save(path, &store) {
                            warn!("cannot save shadows to {}: {e}", path.display());
                        }
                    }
                }
                handled.replies
            },
        )?;
        Ok(ShadowService(service))
    }

    /// Disconnects from the broker and waits for the service thread.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

//! An AWS IoT Core endpoint for awslink's tests, demo and benchmarks.
//!
//! No open-source broker behaves like AWS IoT Core, so this crate puts a TLS front with
//! AWS's connection policy ([`policy`]) and Basic Ingest ([`rules`]) before a private plain
//! Mosquitto ([`broker`]) and runs a Device Shadow service ([`shadow`]) and, given the CA
//! key, the fleet provisioning service ([`provisioning`]) on that broker. The behaviour
//! follows AWS's documentation; where AWS is unclear the stricter reading was chosen (see
//! README.md).
//!
//! ```no_run
//! use aws_iot_emulator::{testcerts, Emulator, EmulatorConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let certs = testcerts::generate(dir.path(), "device-1").unwrap();
//! let emu = Emulator::start(EmulatorConfig::from_certs(&certs)).unwrap();
//! println!("devices connect to ssl://localhost:{}", emu.port());
//! println!("the cloud side is mqtt://127.0.0.1:{}", emu.broker_port());
//! ```

#![warn(missing_docs)]

pub mod broker;
pub mod error;
pub mod mqtt_packet;
pub mod policy;
pub mod provisioning;
pub mod rate;
pub mod relay;
pub mod rules;
pub mod service_client;
pub mod shadow;
pub mod stats;
pub mod testcerts;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::EmulatorError;
pub use policy::{CloseReason, Limits};
pub use rules::RuleSet;
pub use stats::{ConnectionStats, Stats};

use broker::Broker;
use relay::{Relay, RelayContext};
use stats::StatsHandle;
use tls::TlsSettings;

/// How often the stats file is rewritten.
pub const STATS_INTERVAL: Duration = Duration::from_millis(200);

/// Everything [`Emulator::start`] needs. Start from [`EmulatorConfig::new`] or
/// [`EmulatorConfig::from_certs`]: AWS's limits are on by default.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// TLS listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// CA that must have signed device certificates.
    pub ca_cert: PathBuf,
    /// Server certificate offered to devices.
    pub server_cert: PathBuf,
    /// Server private key.
    pub server_key: PathBuf,
    /// When set, devices must send this SNI host name (AWS requires SNI).
    pub server_name: Option<String>,
    /// Refuse handshakes without ALPN `x-amzn-mqtt-ca` (AWS's port-443 behaviour).
    pub require_alpn: bool,
    /// Port of the private Mosquitto on 127.0.0.1; `None` picks a free one.
    pub broker_port: Option<u16>,
    /// The Mosquitto executable.
    pub mosquitto_bin: PathBuf,
    /// PUBLISH packets per second per connection (AWS: 100); `None` = unlimited.
    pub publish_rate: Option<u32>,
    /// PUBLISH bytes per second per connection (AWS: 512 KiB); `None` = unlimited.
    pub byte_rate: Option<u64>,
    /// Largest PUBLISH payload (AWS: 128 KB = 131072 bytes); `None` = unlimited.
    pub max_payload: Option<usize>,
    /// Enforce topic length (256 bytes) and depth (8 levels), Basic Ingest prefix not counted.
    pub check_topics: bool,
    /// Longest client id (AWS: 128 bytes); `None` = unlimited.
    pub max_client_id: Option<usize>,
    /// Most filters per SUBSCRIBE (AWS: 8); `None` = unlimited.
    pub max_subscribe_filters: Option<usize>,
    /// Close connections that PUBLISH or SUBSCRIBE with QoS 2.
    pub reject_qos2: bool,
    /// Run the Device Shadow service.
    pub shadows: bool,
    /// Shadow service limits.
    pub shadow_limits: shadow::ShadowLimits,
    /// Load shadows from and save them to this JSON file.
    pub shadow_file: Option<PathBuf>,
    /// Write [`Stats`] as JSON here every 200 ms and at stop.
    pub stats_file: Option<PathBuf>,
    /// The CA's private key: when set, the fleet provisioning service runs and issues
    /// certificates from `ca_cert`.
    pub ca_key: Option<PathBuf>,
    /// Provisioning templates RegisterThing knows (default: `awslink-demo`).
    pub provisioning_templates: Vec<provisioning::Template>,
    /// Basic Ingest rules that exist and are enabled (`[a-zA-Z0-9_]{1,128}`): their messages
    /// are delivered on `$emulator/rules/{rule}/{topic}`; any other rule's are dropped and
    /// counted in [`Stats::rule_not_found`]. Default: none.
    pub rules: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let l = Limits::aws();
        EmulatorConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ca_cert: PathBuf::new(),
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            server_name: None,
            require_alpn: false,
            broker_port: None,
            mosquitto_bin: PathBuf::from("mosquitto"),
            publish_rate: l.publish_rate,
            byte_rate: l.byte_rate,
            max_payload: l.max_payload,
            check_topics: true,
            max_client_id: l.max_client_id,
            max_subscribe_filters: l.max_subscribe_filters,
            reject_qos2: l.reject_qos2,
            shadows: true,
            shadow_limits: shadow::ShadowLimits::default(),
            shadow_file: None,
            stats_file: None,
            ca_key: None,
            provisioning_templates: vec![provisioning::Template::new(
                provisioning::DEFAULT_TEMPLATE,
            )],
            rules: Vec::new(),
        }
    }
}

impl EmulatorConfig {
    /// AWS defaults with the given CA, server certificate and key.
    pub fn new(
        ca_cert: impl Into<PathBuf>,
        server_cert: impl Into<PathBuf>,
        server_key: impl Into<PathBuf>,
    ) -> Self {
        EmulatorConfig {
            ca_cert: ca_cert.into(),
            server_cert: server_cert.into(),
            server_key: server_key.into(),
            ..Default::default()
        }
    }

    /// AWS defaults with certificates from [`testcerts::generate`].
    pub fn from_certs(certs: &testcerts::CertPaths) -> Self {
        Self::new(&certs.ca_cert, &certs.server_cert, &certs.server_key)
    }

    /// Switches every per-connection limit off (raw-throughput benchmarks); TLS and
    /// certificate checks stay.
    pub fn without_limits(mut self) -> Self {
        let n = Limits::none();
        self.publish_rate = n.publish_rate;
        self.byte_rate = n.byte_rate;
        self.max_payload = n.max_payload;
        self.check_topics = false;
        self.max_client_id = n.max_client_id;
        self.max_subscribe_filters = n.max_subscribe_filters;
        self.reject_qos2 = n.reject_qos2;
        self
    }

    /// Adds the Basic Ingest rule `name` (exists and is enabled).
    pub fn with_rule(mut self, name: impl Into<String>) -> Self {
        self.rules.push(name.into());
        self
    }

    /// The per-connection limits these settings describe.
    pub fn limits(&self) -> Limits {
        let aws = Limits::aws();
        Limits {
            publish_rate: self.publish_rate,
            byte_rate: self.byte_rate,
            max_payload: self.max_payload,
            max_topic_bytes: if self.check_topics {
                aws.max_topic_bytes
            } else {
                None
            },
            max_topic_levels: if self.check_topics {
                aws.max_topic_levels
            } else {
                None
            },
            max_client_id: self.max_client_id,
            max_subscribe_filters: self.max_subscribe_filters,
            reject_qos2: self.reject_qos2,
        }
    }
}

/// A running emulator: TLS front, private Mosquitto, shadow service and stats writer.
/// [`Emulator::stop`] or drop ends all of them.
pub struct Emulator {
    relay: Relay,
    shadow: Option<shadow::ShadowService>,
    provisioning: Option<provisioning::ProvisioningService>,
    broker: Broker,
    stats: StatsHandle,
    rules: RuleSet,
    writer: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    stats_file: Option<PathBuf>,
    stopped: bool,
}

impl Emulator {
    /// Starts Mosquitto, the shadow service, the stats writer and then the TLS listener.
    pub fn start(cfg: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        if let Some(bad) = cfg.rules.iter().find(|r| !rules::valid_rule_name(r)) {
            return Err(EmulatorError::Config(format!(
                "invalid rule name {bad:?}: AWS IoT rule names are 1 to 128 of a-z A-Z 0-9 _"
            )));
        }
        let rule_set = RuleSet::new(cfg.rules.iter().cloned());
        let tls_settings = TlsSettings {
            ca_cert: cfg.ca_cert.clone(),
            server_cert: cfg.server_cert.clone(),
            server_key: cfg.server_key.clone(),
            server_name: cfg.server_name.clone(),
            require_alpn: cfg.require_alpn,
        };
        let acceptor = tls::acceptor(&tls_settings)?;
        let provisioner = match &cfg.ca_key {
            Some(key) => Some(provisioning::Provisioner::load(
                &cfg.ca_cert,
                key,
                cfg.provisioning_templates.clone(),
            )?),
            None => None,
        };
        let broker = Broker::start(&cfg.mosquitto_bin, cfg.broker_port)?;
        let stats = StatsHandle::default();
        let shadow = if cfg.shadows {
            Some(shadow::ShadowService::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, broker.port())),
                cfg.shadow_limits.clone(),
                cfg.shadow_file.clone(),
                stats.clone(),
            )?)
        } else {
            None
        };
        let provisioning = match provisioner {
            Some(p) => Some(provisioning::ProvisioningService::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, broker.port())),
                p,
                stats.clone(),
            )?),
            None => None,
        };
        let writer = match &cfg.stats_file {
            Some(path) => Some(spawn_stats_writer(stats.clone(), path.clone())?),
            None => None,
        };
        let relay = Relay::start(
            cfg.listen,
            RelayContext {
                acceptor,
                tls: tls_settings,
                broker: SocketAddr::from((Ipv4Addr::LOCALHOST, broker.port())),
                limits: cfg.limits(),
                rules: rule_set.clone(),
                stats: stats.clone(),
            },
        )?;
        log::info!(
            "AWS IoT emulator on {} (private broker 127.0.0.1:{}), limits {:?}",
            relay.addr(),
            broker.port(),
            cfg.limits()
        );
        Ok(Emulator {
            relay,
            shadow,
            provisioning,
            broker,
            stats,
            rules: rule_set,
            writer,
            stats_file: cfg.stats_file,
            stopped: false,
        })
    }

    /// The TLS listen address.
    pub fn addr(&self) -> SocketAddr {
        self.relay.addr()
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.relay.addr().port()
    }

    /// The plain MQTT port of the private Mosquitto on 127.0.0.1 ("the cloud" side).
    pub fn broker_port(&self) -> u16 {
        self.broker.port()
    }

    /// The private Mosquitto's log file.
    pub fn broker_log(&self) -> PathBuf {
        self.broker.log_file()
    }

    /// Creates or enables the Basic Ingest rule `name` while running; false when `name` is
    /// not a valid rule name.
    pub fn enable_rule(&self, name: &str) -> bool {
        self.rules.enable(name)
    }

    /// Disables (or deletes) the Basic Ingest rule `name`: its messages are dropped from now on.
    pub fn disable_rule(&self, name: &str) {
        self.rules.disable(name)
    }

    /// The Basic Ingest rules that exist and are enabled now.
    pub fn rules(&self) -> Vec<String> {
        self.rules.names()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// Closes the listener and all connections, stops the shadow service and Mosquitto and
    /// writes the stats file a last time. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.relay.stop();
        if let Some(mut s) = self.shadow.take() {
            s.stop();
        }
        if let Some(mut p) = self.provisioning.take() {
            p.stop();
        }
        self.broker.stop();
        if let Some((stop, t)) = self.writer.take() {
            stop.store(true, Ordering::SeqCst);
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(path) = &self.stats_file {
            if let Err(e) = self.stats.write_file(path) {
                log::warn!("cannot write stats file {}: {e}", path.display());
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_stats_writer(
    stats: StatsHandle,
    path: PathBuf,
) -> Result<(Arc<AtomicBool>, JoinHandle<()>), EmulatorError> {
    stats
        .write_file(&path)
        .map_err(|e| EmulatorError::file(&path, e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::Builder::new()
        .name("emu-stats".into())
        .spawn(move || {
            let mut warned = false;
            while !s.load(Ordering::SeqCst) {
                std::thread::park_timeout(STATS_INTERVAL);
                if let Err(e) = stats.write_file(&path) {
                    if !warned {
                        log::warn!("cannot write stats file {}: {e}", path.display());
                        warned = true;
                    }
                }
            }
        })
        .map_err(|e| EmulatorError::io("spawn stats thread", e))?;
    Ok((stop, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Emulator>();
        send_sync::<Stats>();
    }

    #[test]
    fn config_limits_follow_the_flags() {
        let cfg = EmulatorConfig::new("ca.pem", "server.pem", "server.key");
        assert_eq!(cfg.limits(), Limits::aws());
        assert_eq!(cfg.clone().without_limits().limits(), Limits::none());
        let mut no_topics = cfg;
        no_topics.check_topics = false;
        let l = no_topics.limits();
        assert_eq!((l.max_topic_bytes, l.max_topic_levels), (None, None));
        assert_eq!(l.publish_rate, Some(100));
    }

    #[test]
    fn invalid_rule_name_is_a_config_error() {
        let cfg = EmulatorConfig::new("/nonexistent/ca.pem", "s.pem", "s.key").with_rule("a-b");
        let e = Emulator::start(cfg).err();
        assert!(
            matches!(&e, Some(EmulatorError::Config(m)) if m.contains("\"a-b\"")),
            "{e:?}"
        );
    }

    #[test]
    fn missing_certificate_file_is_named_in_the_error() {
        let e = Emulator::start(EmulatorConfig::new("/nonexistent/ca.pem", "s.pem", "s.key"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}

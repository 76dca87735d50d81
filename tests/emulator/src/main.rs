//! `aws-iot-emulator`: an AWS IoT Core endpoint for awslink's tests, demo and benchmarks.
//! Exit codes: 0 after SIGINT/SIGTERM, 2 for configuration errors, 1 for runtime errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_iot_emulator::provisioning::Template;
use aws_iot_emulator::shadow::ShadowLimits;
use aws_iot_emulator::{Emulator, EmulatorConfig, EmulatorError};
use clap::Parser;

/// An AWS IoT Core endpoint: mutual TLS, AWS's per-connection limits, Basic Ingest and the
/// Device Shadow service, in front of a private Mosquitto.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TLS listen address (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8883")]
    listen: SocketAddr,
    /// CA certificate (PEM) that must have signed device certificates.
    #[arg(long, required_unless_present = "write_test_certs")]
    ca_cert: Option<PathBuf>,
    /// Server certificate chain (PEM).
    #[arg(long, required_unless_present = "write_test_certs")]
    server_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, required_unless_present = "write_test_certs")]
    server_key: Option<PathBuf>,
    /// Write a test CA, a server certificate for localhost and a device certificate
    /// (ca.pem, ca.key, server.pem, server.key, client.pem, client.key) into DIR and exit.
    #[arg(long, value_name = "DIR")]
    write_test_certs: Option<PathBuf>,
    /// Common name of the device certificate written by --write-test-certs.
    #[arg(long, default_value = "device-1")]
    device_cn: String,
    /// Require this SNI host name from devices (AWS requires SNI).
    #[arg(long)]
    server_name: Option<String>,
    /// Refuse TLS handshakes without ALPN x-amzn-mqtt-ca (AWS port 443 behaviour).
    #[arg(long)]
    require_alpn: bool,
    /// Port of the private Mosquitto on 127.0.0.1 (default: a free port).
    #[arg(long)]
    broker_port: Option<u16>,
    /// Mosquitto executable.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: PathBuf,
    /// PUBLISH packets per second per connection; 0 = unlimited.
    #[arg(long, default_value_t = 100)]
    publish_rate: u32,
    /// PUBLISH bytes per second per connection; 0 = unlimited.
    #[arg(long, default_value_t = 512 * 1024)]
    byte_rate: u64,
    /// Largest PUBLISH payload in bytes; 0 = unlimited.
    #[arg(long, default_value_t = 128 * 1024)]
    max_payload: usize,
    /// Do not check topic length (256 bytes) and levels (8).
    #[arg(long)]
    no_topic_checks: bool,
    /// Longest client id in bytes; 0 = unlimited.
    #[arg(long, default_value_t = 128)]
    max_client_id: usize,
    /// Most filters per SUBSCRIBE; 0 = unlimited.
    #[arg(long, default_value_t = 8)]
    max_subscribe_filters: usize,
    /// Accept QoS 2 publishes and subscriptions instead of closing the connection.
    #[arg(long)]
    allow_qos2: bool,
    /// Switch every per-connection limit off (raw-throughput benchmarks).
    #[arg(long)]
    no_limits: bool,
    /// Do not run the Device Shadow service.
    #[arg(long)]
    no_shadows: bool,
    /// Keep shadows in this JSON file across restarts.
    #[arg(long)]
    shadow_file: Option<PathBuf>,
    /// Largest shadow state (desired + reported) in bytes.
    #[arg(long, default_value_t = 8 * 1024)]
    shadow_max_state: usize,
    /// Deepest nesting of desired / reported.
    #[arg(long, default_value_t = 6)]
    shadow_max_depth: usize,
    /// Shadow update requests per second per thing before 429; 0 = unlimited.
    #[arg(long, default_value_t = 10)]
    shadow_update_rate: u32,
    /// Write counters as JSON here every 200 ms and at exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// The CA's private key (PEM): runs the fleet provisioning service, which issues device
    /// certificates from --ca-cert.
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// A provisioning template RegisterThing knows, NAME or NAME=THING_NAME_PREFIX (the thing
    /// is named PREFIX + parameter SerialNumber); repeatable. Default: awslink-demo.
    #[arg(long, value_name = "NAME[=PREFIX]", value_parser = Template::parse)]
    provisioning_template: Vec<Template>,
    /// A Basic Ingest rule that exists and is enabled (repeatable): PUBLISHes to
    /// $aws/rules/NAME/TOPIC are delivered on the private broker as $emulator/rules/NAME/TOPIC.
    /// Messages for any other rule are dropped and counted (rule_not_found), as AWS does.
    #[arg(long = "rule", value_name = "NAME", value_parser = rule_name)]
    rules: Vec<String>,
}

fn rule_name(s: &str) -> Result<String, String> {
    if aws_iot_emulator::rules::valid_rule_name(s) {
        Ok(s.to_string())
    } else {
        Err("a rule name is 1 to 128 of a-z A-Z 0-9 _".into())
    }
}

fn nonzero<T: PartialEq + Default>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

fn config(cli: Cli) -> EmulatorConfig {
    let cfg = EmulatorConfig {
        listen: cli.listen,
        ca_cert: cli.ca_cert.unwrap_or_default(),
        server_cert: cli.server_cert.unwrap_or_default(),
        server_key: cli.server_key.unwrap_or_default(),
        server_name: cli.server_name,
        require_alpn: cli.require_alpn,
        broker_port: cli.broker_port,
        mosquitto_bin: cli.mosquitto,
        publish_rate: nonzero(cli.publish_rate),
        byte_rate: nonzero(cli.byte_rate),
        max_payload: nonzero(cli.max_payload),
        check_topics: !cli.no_topic_checks,
        max_client_id: nonzero(cli.max_client_id),
        max_subscribe_filters: nonzero(cli.max_subscribe_filters),
        reject_qos2: !cli.allow_qos2,
        shadows: !cli.no_shadows,
        shadow_limits: ShadowLimits {
            max_state_bytes: cli.shadow_max_state,
            max_depth: cli.shadow_max_depth,
            updates_per_second: nonzero(cli.shadow_update_rate),
            ..ShadowLimits::default()
        },
        shadow_file: cli.shadow_file,
        stats_file: cli.stats_file,
        ca_key: cli.ca_key,
        provisioning_templates: if cli.provisioning_template.is_empty() {
            EmulatorConfig::default().provisioning_templates
        } else {
            cli.provisioning_template
        },
        rules: cli.rules,
    };
    if cli.no_limits {
        cfg.without_limits()
    } else {
        cfg
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(dir) = &cli.write_test_certs {
        let written = std::fs::create_dir_all(dir)
            .map_err(|e| EmulatorError::file(dir, e))
            .and_then(|()| aws_iot_emulator::testcerts::generate(dir, &cli.device_cn));
        match written {
            Ok(p) => {
                println!(
                    "wrote {} {} {}",
                    p.ca_cert.display(),
                    p.server_cert.display(),
                    p.client_cert.display()
                );
                return;
            }
            Err(e) => {
                eprintln!("aws-iot-emulator: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut emu = match Emulator::start(config(cli)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aws-iot-emulator: {e}");
            let code = match e {
                EmulatorError::Config(_)
                | EmulatorError::File { .. }
                | EmulatorError::Tls { .. } => 2,
                _ => 1,
            };
            std::process::exit(code);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    println!(
        "aws-iot-emulator listening on {} (private broker 127.0.0.1:{})",
        emu.addr(),
        emu.broker_port()
    );
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    emu.stop();
}

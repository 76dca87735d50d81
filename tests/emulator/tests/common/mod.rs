//! Helpers shared by the emulator's integration tests: an emulator with fresh certificates,
//! paho clients for the device (TLS) and cloud (plain) sides, and deadline polling.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_iot_emulator::testcerts::{self, CertPaths};
use aws_iot_emulator::{Emulator, EmulatorConfig, Stats};
use paho_mqtt as mqtt;

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Cloud {
    pub emu: Emulator,
    pub certs: CertPaths,
    pub dir: tempfile::TempDir,
}

/// Starts an emulator with fresh certificates (device CN "device-1"); `tune` adjusts the config.
pub fn start(tune: impl FnOnce(&mut EmulatorConfig)) -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let certs = testcerts::generate(dir.path(), "device-1").unwrap();
    let mut cfg = EmulatorConfig::from_certs(&certs);
    tune(&mut cfg);
    let emu = Emulator::start(cfg).unwrap();
    Cloud { emu, certs, dir }
}

/// Polls `f` every 10 ms until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the emulator's stats satisfy `f`; returns them (panics with them on timeout).
pub fn wait_stats(cloud: &Cloud, what: &str, f: impl Fn(&Stats) -> bool) -> Stats {
    let mut last = cloud.emu.stats();
    let ok = eventually(TIMEOUT, || {
        last = cloud.emu.stats();
        f(&last)
    });
    assert!(ok, "timed out waiting for {what}; stats: {last:#?}");
    last
}

/// Every client made by [`client`], kept until the process exits. paho-mqtt deadlocks when a
/// token callback on paho's receive thread drops the last reference to a client
/// (`MQTTAsync_destroy` takes the mutex that thread holds), so tests never let that happen.
static KEEP_ALIVE: Mutex<Vec<mqtt::AsyncClient>> = Mutex::new(Vec::new());

pub fn client(uri: &str, client_id: &str) -> mqtt::AsyncClient {
    let opts = mqtt::CreateOptionsBuilder::new()
        .server_uri(uri)
        .client_id(client_id)
        .persistence(None)
        // paho's default of 100 queued-but-unsent messages fails fast bursts with -12.
        .max_buffered_messages(10_000)
        .finalize();
    let cli = mqtt::AsyncClient::new(opts).unwrap();
    KEEP_ALIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(cli.clone());
    cli
}

/// TLS options: trust `ca`, present `cert`/`key` when given, optionally offer ALPN.
pub fn ssl_options(ca: &Path, cert: Option<(&Path, &Path)>, alpn: bool) -> mqtt::SslOptions {
    let mut b = mqtt::SslOptionsBuilder::new();
    b.trust_store(ca).unwrap();
    if let Some((c, k)) = cert {
        b.key_store(c).unwrap();
        b.private_key(k).unwrap();
    }
    b.enable_server_cert_auth(true).verify(true);
    if alpn {
        b.alpn_protos(&["x-amzn-mqtt-ca"]);
    }
    b.finalize()
}

pub fn connect_options(ssl: Option<mqtt::SslOptions>) -> mqtt::ConnectOptions {
    let mut b = mqtt::ConnectOptionsBuilder::new_v3();
    b.clean_session(true)
        .max_inflight(1000)
        .connect_timeout(TIMEOUT)
        .keep_alive_interval(Duration::from_secs(30));
    if let Some(s) = ssl {
        b.ssl_options(s);
    }
    b.finalize()
}

/// Connects a device over TLS with the default client certificate.
pub fn try_device(
    cloud: &Cloud,
    client_id: &str,
    alpn: bool,
) -> (mqtt::AsyncClient, mqtt::Result<mqtt::ServerResponse>) {
    let c = &cloud.certs;
    let cli = client(&format!("ssl://localhost:{}", cloud.emu.port()), client_id);
    let opts = connect_options(Some(ssl_options(
        &c.ca_cert,
        Some((&c.client_cert, &c.client_key)),
        alpn,
    )));
    let r = cli.connect(opts).wait_for(TIMEOUT);
    (cli, r)
}

/// A connected device client.
pub fn device(cloud: &Cloud, client_id: &str) -> mqtt::AsyncClient {
    let (cli, r) = try_device(cloud, client_id, false);
    r.unwrap_or_else(|e| panic!("device {client_id} cannot connect: {e}"));
    cli
}

/// A plain client of the private broker: what "the cloud" sees.
pub fn cloud_client(cloud: &Cloud, client_id: &str) -> mqtt::AsyncClient {
    let cli = client(
        &format!("tcp://127.0.0.1:{}", cloud.emu.broker_port()),
        client_id,
    );
    cli.connect(connect_options(None))
        .wait_for(TIMEOUT)
        .unwrap();
    cli
}

pub fn subscribe(cli: &mqtt::AsyncClient, filter: &str) {
    cli.subscribe(filter, 1).wait_for(TIMEOUT).unwrap();
}

pub fn publish(
    cli: &mqtt::AsyncClient,
    topic: &str,
    payload: &[u8],
    qos: i32,
) -> mqtt::DeliveryToken {
    cli.publish(mqtt::Message::new(topic, payload, qos))
}

/// The next message on `rx` within the timeout.
pub fn recv(rx: &mqtt::Receiver<Option<mqtt::Message>>) -> mqtt::Message {
    match rx.recv_timeout(TIMEOUT) {
        Ok(Some(m)) => m,
        other => panic!("no message within {TIMEOUT:?}: {other:?}"),
    }
}

//! Test harness: real Mosquitto brokers on free ports in temp dirs, certificates made with the
//! `openssl` crate, the awslink binary as a child process, MQTT probes. Everything is killed on
//! drop. No sleeps as synchronisation: [`wait_until`] polls with a deadline.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use aws_iot_emulator::testcerts::Ca;
use paho_mqtt as mqtt;
use serde_json::{json, Value};

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Certificates for one test: a CA, a server certificate for `localhost`, a device certificate,
/// a server certificate for another name, and a device certificate from a CA nobody trusts.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub wrong_name_cert: PathBuf,
    pub wrong_name_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub untrusted_cert: PathBuf,
    pub untrusted_key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path, device_id: &str) -> Certs {
        let ca = Ca::new("awslink test CA").unwrap();
        let (ca_path, _) = ca.write(dir, "ca").unwrap();
        let (server_cert, server_key) = ca.write_server(dir, "localhost", "server").unwrap();
        let (wrong_name_cert, wrong_name_key) = ca
            .write_server(dir, "not-this-host.example", "wrong-name")
            .unwrap();
        let (client_cert, client_key) = ca.write_client(dir, device_id, "device").unwrap();
        let other = Ca::new("someone else's CA").unwrap();
        let (untrusted_cert, untrusted_key) =
            other.write_client(dir, device_id, "untrusted").unwrap();
        Certs {
            dir: dir.to_path_buf(),
            ca: ca_path,
            server_cert,
            server_key,
            wrong_name_cert,
            wrong_name_key,
            client_cert,
            client_key,
            untrusted_cert,
            untrusted_key,
        }
    }
}

/// TLS settings of a broker listener.
#[derive(Clone)]
pub struct TlsListener {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsListener {
    /// The listener of a broker that presents the generated server certificate (for
    /// `localhost`) and requires client certificates from the generated CA.
    pub fn server(c: &Certs) -> TlsListener {
        TlsListener {
            ca: c.ca.clone(),
            cert: c.server_cert.clone(),
            key: c.server_key.clone(),
        }
    }
}

/// A Mosquitto process with a generated config; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    tls: Option<TlsListener>,
    extra: String,
    child: Option<Child>,
}

impl Mosquitto {
    /// A plain broker (like the one next to awslink on a gateway), persistence on.
    pub fn plain() -> Mosquitto {
        Self::start(free_port(), None, String::new())
    }

    /// A plain broker like [`Mosquitto::plain`] with `extra` appended to its config (e.g. an
    /// `acl_file` line).
    pub fn plain_with(extra: &str) -> Mosquitto {
        Self::start(free_port(), None, extra.to_string())
    }

    /// A TLS broker that requires a client certificate from `tls.ca` (the "cloud").
    pub fn tls(tls: TlsListener) -> Mosquitto {
        Self::start(free_port(), Some(tls), String::new())
    }

    /// A TLS broker like [`Mosquitto::tls`] with `extra` appended to its config (e.g. an
    /// `acl_file` line).
    pub fn tls_with(tls: TlsListener, extra: &str) -> Mosquitto {
        Self::start(free_port(), Some(tls), extra.to_string())
    }

    /// A plain broker that tries `port` first; a port another listener holds is never taken
    /// for this broker: it moves on to a free one.
    pub fn plain_preferring(port: u16) -> Mosquitto {
        Self::start(port, None, String::new())
    }

    /// Starts on `port`; a port lost to another listener (a parallel test took the free port
    /// between choosing and binding) is retried on new free ports.
    fn start(port: u16, tls: Option<TlsListener>, extra: String) -> Mosquitto {
        let mut m = Mosquitto {
            port,
            dir: tempfile::tempdir().unwrap(),
            tls,
            extra,
            child: None,
        };
        for _ in 0..5 {
            match m.launch() {
                Ok(()) => return m,
                Err(Launch::PortTaken(log)) => {
                    eprintln!("mosquitto lost port {} to another listener:\n{log}", m.port);
                    m.port = free_port();
                }
                Err(Launch::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("mosquitto lost the port race 5 times");
    }

    /// (Re)starts the broker on the same port with the same persistence directory.
    pub fn restart(&mut self) {
        match self.launch() {
            Ok(()) => {}
            Err(Launch::PortTaken(log)) => panic!(
                "mosquitto cannot restart: another listener took port {}:\n{log}",
                self.port
            ),
            Err(Launch::Failed(why)) => panic!("{why}"),
        }
    }

    /// One start; ready once this process logged that it runs (Mosquitto logs "running" only
    /// after binding every listener), is alive and the port answers: a listener someone else
    /// opened on the port never counts.
    fn launch(&mut self) -> Result<(), Launch> {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             max_queued_messages 100000\nmax_inflight_messages 100\nuser root\nlog_dest file {}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            self.port,
            self.dir.path().display(),
            self.dir.path().display()
        );
        if let Some(tls) = &self.tls {
            text.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ));
        }
        text.push_str(&self.extra);
        text.push('\n');
        fs::write(&conf, text).unwrap();
        let log_path = self.dir.path().join("mosquitto.log");
        let logged_before = fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        let child = self.child.insert(child);
        let port = self.port;
        let this_start = || {
            let log = fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(log.get(logged_before..).unwrap_or_default()).into_owned()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = this_start();
                return Err(if log.contains("Address already in use") {
                    Launch::PortTaken(log)
                } else {
                    Launch::Failed(format!(
                        "mosquitto on port {port} exited ({status}) before it listened:\n{log}"
                    ))
                });
            }
            if this_start().contains(" running")
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
                && matches!(child.try_wait(), Ok(None))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Launch::Failed(format!(
                    "mosquitto on port {port} not running after 10 s:\n{}",
                    this_start()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM so it saves its sessions (persistent subscribers keep
    /// receiving what was published to them while it is away) and waits for it to exit.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            wait_until(Duration::from_secs(10), "mosquitto to exit", || {
                child.try_wait().ok().flatten()
            });
        }
    }

    /// Kills the broker (SIGKILL: an outage, not a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why one start of a [`Mosquitto`] gave no broker.
enum Launch {
    /// Another listener holds the port (the log says "Address already in use").
    PortTaken(String),
    /// Anything else, with the reason and the log.
    Failed(String),
}

/// An MQTT client for tests: publishes and collects what its subscriptions receive.
pub struct Probe {
    pub client: mqtt::Client,
    rx: mqtt::Receiver<Option<mqtt::Message>>,
}

/// TLS identity of a probe connecting to the cloud broker.
pub struct ProbeTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

impl Probe {
    /// Connects to `uri` (plain) and subscribes to `filters` at QoS 1.
    pub fn connect(uri: &str, id: &str, filters: &[&str]) -> Probe {
        Self::connect_with(uri, id, filters, None)
    }

    /// Connects to the TLS cloud broker on `port` with a client certificate, in a persistent
    /// session (what is published while the broker restarts still reaches it).
    pub fn cloud(port: u16, tls: ProbeTls<'_>, id: &str, filters: &[&str]) -> Probe {
        Self::connect_with(&format!("ssl://localhost:{port}"), id, filters, Some(tls))
    }

    /// A fresh plain probe in a clean session, or `None` while the broker is not there.
    pub fn try_connect(uri: &str, id: &str) -> Option<Probe> {
        let client = Self::new_client(uri, id).ok()?;
        let rx = client.start_consuming();
        let opts = mqtt::ConnectOptionsBuilder::new_v3()
            .clean_session(true)
            .connect_timeout(Duration::from_secs(5))
            .finalize();
        if client.connect(opts).is_err() {
            // A connect that timed out is still pending inside Paho C, whose token holds a clone
            // of this client. Dropping ours would leave the token with the last reference: its
            // failure callback then destroys the client while holding Paho C's global lock and
            // deadlocks every paho client of this test process (seen: the reliability binary
            // hung for 8 minutes). A failed probe client is leaked instead.
            std::mem::forget(client);
            return None;
        }
        Some(Probe { client, rx })
    }

    /// Reconnects after the broker restarted (the session resumes).
    pub fn reconnect(&self) {
        wait_until(Duration::from_secs(10), "probe to reconnect", || {
            self.client.reconnect().ok()
        });
    }

    /// A paho client without file persistence (not connected yet).
    fn new_client(uri: &str, id: &str) -> mqtt::Result<mqtt::Client> {
        mqtt::Client::new(
            mqtt::CreateOptionsBuilder::new()
                .server_uri(uri)
                .client_id(id)
                .persistence(None)
                .finalize(),
        )
    }

    fn connect_with(uri: &str, id: &str, filters: &[&str], tls: Option<ProbeTls<'_>>) -> Probe {
        let client = Self::new_client(uri, id).unwrap();
        let rx = client.start_consuming();
        let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
        opts.clean_session(tls.is_none())
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            let mut ssl = mqtt::SslOptionsBuilder::new();
            ssl.trust_store(tls.ca)
                .unwrap()
                .key_store(tls.cert)
                .unwrap()
                .private_key(tls.key)
                .unwrap();
            ssl.enable_server_cert_auth(true).verify(true);
            opts.ssl_options(ssl.finalize());
        }
        client
            .connect(opts.finalize())
            .unwrap_or_else(|e| panic!("probe {id} cannot connect to {uri}: {e}"));
        if !filters.is_empty() {
            client
                .subscribe_many(filters, &vec![1; filters.len()])
                .unwrap();
        }
        Probe { client, rx }
    }

    /// Publishes and waits for the broker's PUBACK.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: i32) {
        self.publish_retained(topic, payload, qos, false);
    }

    /// Publishes (optionally retained) and waits for the broker's PUBACK.
    pub fn publish_retained(&self, topic: &str, payload: &[u8], qos: i32, retain: bool) {
        let msg = mqtt::MessageBuilder::new()
            .topic(topic)
            .payload(payload)
            .qos(qos)
            .retained(retain)
            .finalize();
        self.client
            .publish(msg)
            .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
    }

    /// The next message, or `None` after `timeout`. Disconnect notices (paho queues a `None`
    /// when the broker goes away) are skipped: the probe reconnects and keeps listening.
    pub fn next(&self, timeout: Duration) -> Option<mqtt::Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Some(msg)) => return Some(msg),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next message, failing the test after `timeout`.
    pub fn expect(&self, timeout: Duration, what: &str) -> mqtt::Message {
        self.next(timeout)
            .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
    }

    /// Collects messages until `n` arrived; fails after `timeout` saying how many came.
    pub fn collect(&self, n: usize, timeout: Duration) -> Vec<mqtt::Message> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(m) => out.push(m),
                None => panic!(
                    "only {} of {n} messages arrived within {timeout:?}",
                    out.len()
                ),
            }
        }
        out
    }

    /// The next message on `topic` whose JSON payload satisfies `pred`, skipping others.
    pub fn expect_json(
        &self,
        topic: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .next(left)
                .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"));
            if msg.topic() != topic {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(msg.payload()) {
                if pred(&v) {
                    return v;
                }
            }
        }
    }
}

/// The awslink binary running with a generated config; SIGKILLed on drop if still running.
pub struct Awslink {
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    /// Extra environment of every start (e.g. `AWSLINK_FAULT`, `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Exit code and time, once [`Awslink::is_running`] saw the process gone.
    exited: Option<(Option<i32>, Instant)>,
}

/// The settings the tests vary.
pub struct AwslinkSetup<'a> {
    pub dir: &'a Path,
    pub cloud_port: u16,
    pub local_uri: String,
    pub certs: &'a Certs,
    pub device_id: &'a str,
    pub extra: Value,
}

impl AwslinkSetup<'_> {
    /// The config file awslink gets: the cloud on `localhost`, 50–400 ms backoff.
    pub fn config(&self) -> Value {
        let mut config = json!({
            "address": format!("mqtts://localhost:{}", self.cloud_port),
            "caCert": self.certs.ca,
            "cert": self.certs.client_cert,
            "key": self.certs.client_key,
            "tenantId": "tenant",
            "localAddress": self.local_uri,
            "localClientId": format!("awslink-{}", self.device_id),
            "logLevel": "DEBUG",
            "keepAliveSecs": 5,
            "metricsIntervalSecs": 1,
            "buffer": {"path": self.dir.join("buffer"), "cacheBytes": 1048576},
            "reconnect": {"minDelayMs": 50, "maxDelayMs": 400, "resetAfterMs": 5000}
        });
        merge(&mut config, &self.extra);
        config
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

impl Awslink {
    /// Writes the config and starts `awslink run`.
    pub fn start(setup: &AwslinkSetup<'_>) -> Awslink {
        Self::start_with_env(setup, &[])
    }

    /// Writes the config and starts `awslink run` with extra environment variables.
    pub fn start_with_env(setup: &AwslinkSetup<'_>, env: &[(&str, &str)]) -> Awslink {
        let config_path = setup.dir.join("awslink.json");
        fs::write(
            &config_path,
            serde_json::to_vec_pretty(&setup.config()).unwrap(),
        )
        .unwrap();
        let log_path = setup.dir.join("awslink.log");
        let mut a = Awslink {
            config_path,
            log_path,
            child: None,
            exited: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        a.restart();
        a
    }

    /// Starts the process again with the same config and buffer.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "awslink is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_awslink"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "debug,paho_mqtt=info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGTERM and wait; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("awslink is not running");
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = wait_until(
            Duration::from_secs(10),
            "awslink to exit after SIGTERM",
            || child.try_wait().ok().flatten(),
        );
        (status.code(), started.elapsed())
    }

    /// Waits up to `timeout` for awslink to exit by itself; its exit code and when it exited.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> (Option<i32>, Instant) {
        if let Some(exited) = self.exited.take() {
            self.child = None;
            return exited;
        }
        let child = self.child.as_mut().expect("awslink is not running");
        let status = wait_until(timeout, "awslink to exit by itself", || {
            child.try_wait().ok().flatten()
        });
        let exited = Instant::now();
        self.child = None;
        (status.code(), exited)
    }

    /// Whether the process is still running (once it exited, [`Self::wait_for_exit`] still
    /// reports its exit code and when it was first seen exited).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exited.get_or_insert((status.code(), Instant::now()));
                false
            }
            Err(_) => false,
        }
    }

    /// The process id of the running awslink.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("awslink is not running").id()
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything awslink logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        wait_until(timeout, &format!("awslink to log {needle:?}"), || {
            self.log().contains(needle).then_some(())
        });
    }

    /// Waits until both local intake sessions are subscribed. On a first start the intake's
    /// persistent sessions do not exist yet, so Mosquitto drops what is published before them;
    /// the cloud link (and with it the status) can be up first.
    pub fn wait_for_intake(&self, timeout: Duration) {
        self.wait_for_log("local intake subscribed", timeout);
    }
}

impl Drop for Awslink {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "---- awslink log ----\n{}", self.log());
        }
    }
}

/// Runs `awslink ARGS` to completion; returns (exit code, stdout, stderr).
pub fn awslink_command(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_awslink"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod cloud;
pub mod proxy;
pub mod swtpm;

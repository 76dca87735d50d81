//! awslink never runs half alive: systemd's notify protocol (READY, WATCHDOG, STOPPING) on a
//! socket the test itself listens on, and every internal failure a test build can provoke
//! (`AWSLINK_FAULT`, the `fault-injection` feature) ends the process with exit code 1 within
//! 2 s, one log line naming the cause, and the status topic's last will.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const DEVICE: &str = "gw-live";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(20);

/// A local broker, a cloud broker, certificates, and awslink between them.
struct Rig {
    awslink: Awslink,
    _cloud: Mosquitto,
    local: Mosquitto,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start(env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path(), DEVICE);
        let local = Mosquitto::plain();
        let cloud = Mosquitto::tls(TlsListener::server(&certs));
        let awslink = Awslink::start_with_env(
            &AwslinkSetup {
                dir: dir.path(),
                cloud_port: cloud.port,
                local_uri: local.uri(),
                certs: &certs,
                device_id: DEVICE,
                extra: json!({}),
            },
            env,
        );
        Rig {
            awslink,
            _cloud: cloud,
            local,
            dir,
        }
    }

    fn local_probe(&self, id: &str, filters: &[&str]) -> Probe {
        Probe::connect(&self.local.uri(), id, filters)
    }

    /// Waits until awslink reports the cloud connected on the status topic.
    fn wait_connected(&self) -> Probe {
        let status = self.local_probe("status-watch", &[STATUS]);
        status.expect_json(STATUS, T, "connected status", |v| {
            v["connected"] == json!(true)
        });
        self.awslink.wait_for_intake(T);
        status
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Systemd {
    socket: UnixDatagram,
    path: String,
}

impl Systemd {
    fn listen(dir: &std::path::Path) -> Systemd {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Systemd {
            socket,
            path: path.to_string_lossy().into_owned(),
        }
    }

    /// The next notification (one line per state), or `None` at the deadline.
    fn next(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).trim().to_string(),
        ))
    }

    /// Waits for a notification equal to `state`, skipping others; when it arrived.
    fn expect(&self, state: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left.max(Duration::from_millis(1))) {
                Some((at, s)) if s == state => return at,
                Some(_) => continue,
                None => panic!("no {state:?} from awslink within {timeout:?}"),
            }
        }
    }
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_and_stopping_at_sigterm() {
    let sd_dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::listen(sd_dir.path());
    let mut rig = Rig::start(&[
        ("NOTIFY_SOCKET", systemd.path.as_str()),
        ("WATCHDOG_USEC", "3000000"),
    ]);
    systemd.expect("READY=1", T);
    // WatchdogSec=3 → a ping at least every second.
    let mut pings = vec![systemd.expect("WATCHDOG=1", Duration::from_secs(3))];
    while pings.len() < 4 {
        pings.push(systemd.expect("WATCHDOG=1", Duration::from_millis(2500)));
    }
    let (code, took) = rig.awslink.terminate();
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    systemd.expect("STOPPING=1", Duration::from_secs(1));
}

/// Starts awslink with `fault`, waits for it to be connected, publishes one local message
/// (which provokes the fault) and returns when it was published.
fn provoke(fault: &str, env: &[(&str, &str)]) -> (Rig, Probe, Instant) {
    let mut all = vec![("AWSLINK_FAULT", fault)];
    all.extend_from_slice(env);
    let rig = Rig::start(&all);
    let status = rig.wait_connected();
    let sensor = rig.local_probe("sensor", &[]);
    let at = Instant::now();
    sensor.publish("telemetry", b"{\"n\":1}", 1);
    (rig, status, at)
}

/// Exit code 1 within `budget` of `since`, one `fatal:` line naming `cause`, and the last will.
fn assert_fatal(rig: &mut Rig, status: &Probe, since: Instant, budget: Duration, cause: &str) {
    let (code, exited) = rig.awslink.wait_for_exit(T);
    let log = rig.awslink.log();
    assert_eq!(code, Some(1), "exit code; log:\n{log}");
    let took = exited.duration_since(since);
    assert!(
        took <= budget,
        "exited {took:?} after the fault (budget {budget:?})"
    );
    let fatal: Vec<&str> = log.lines().filter(|l| l.contains("fatal: ")).collect();
    assert_eq!(fatal.len(), 1, "one fatal line: {fatal:?}");
    assert!(fatal[0].contains(cause), "{:?} names {cause:?}", fatal[0]);
    let will: Value = status.expect_json(STATUS, T, "the last will", |v| {
        v["cause"] == json!("CONNECTION_UNKNOWN")
    });
    assert_eq!(will["connected"], json!(false));
}

#[test]
fn the_intake_thread_ending_is_fatal() {
    let (mut rig, status, at) = provoke("intake-exit", &[]);
    assert_fatal(&mut rig, &status, at, Duration::from_secs(2), "intake");
}

#[test]
fn an_actor_panicking_is_fatal() {
    let (mut rig, status, at) = provoke("buffer-panic", &[]);
    assert_fatal(&mut rig, &status, at, Duration::from_secs(2), "panic");
}

#[test]
fn an_actor_stopping_is_fatal() {
    let (mut rig, status, at) = provoke("buffer-stop", &[]);
    assert_fatal(
        &mut rig,
        &status,
        at,
        Duration::from_secs(2),
        "buffer actor stopped",
    );
}

#[test]
fn the_arbiter_stopping_is_fatal() {
    let (mut rig, status, at) = provoke("arbiter-stop", &[]);
    assert_fatal(
        &mut rig,
        &status,
        at,
        Duration::from_secs(2),
        "actix system stopped",
    );
}

#[test]
fn a_journal_that_refuses_every_write_is_fatal() {
    let (mut rig, status, at) = provoke("journal-fail", &[]);
    // The intake holds and retries for a while before it gives up (a transient refusal, such as
    // a full disk that gets room back, is not fatal).
    assert_fatal(&mut rig, &status, at, Duration::from_secs(15), "journal");
}

#[test]
fn a_wedged_actor_stops_the_watchdog_pings_and_is_fatal() {
    let sd_dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::listen(sd_dir.path());
    let (mut rig, status, at) = provoke(
        "wedge",
        &[
            ("NOTIFY_SOCKET", systemd.path.as_str()),
            ("WATCHDOG_USEC", "1500000"),
        ],
    );
    // The wedge starts when the Buffer handles the message, one hop after the publish.
    rig.awslink
        .wait_for_log("fault injection: the Buffer wedges its thread", T);
    let at = Instant::now().max(at);
    // Every ping that arrives after the wedge must come from a round that started before it
    // (a round is 0.5 s here, its answers wait at most 0.5 s).
    let mut last_ping = None;
    let deadline = Instant::now() + T;
    while rig.awslink.is_running() && Instant::now() < deadline {
        if let Some((when, state)) = systemd.next(Duration::from_millis(50)) {
            if state == "WATCHDOG=1" {
                last_ping = Some(when);
            }
        }
    }
    if let Some(p) = last_ping {
        assert!(
            p.saturating_duration_since(at) < Duration::from_millis(1300),
            "a ping {:?} after the wedge",
            p.duration_since(at)
        );
    }
    // WatchdogSec 1.5 s, plus a round and its answer wait, plus the last flush.
    assert_fatal(&mut rig, &status, at, Duration::from_secs(4), "wedged");
}

#[test]
fn awslink_health_calls_a_wedged_awslink_unhealthy() {
    let (mut rig, _status, _at) = provoke("wedge", &[]);
    let config = rig.awslink.config_path.to_string_lossy().into_owned();
    let (code, out, err) = wait_until(T, "health to call the wedged awslink unhealthy", || {
        let (code, out, err) =
            awslink_command(&["health", "--config", &config, "--max-heartbeat-age", "2"]);
        (code == Some(1)).then_some((code, out, err))
    });
    assert_eq!(code, Some(1));
    assert!(err.contains("wedged"), "stdout {out:?} stderr {err:?}");
    assert!(rig.awslink.is_running(), "still running while wedged");
    rig.awslink.kill();
    let _ = &rig.dir;
}

#[test]
fn awslink_health_reads_a_fresh_heartbeat() {
    let rig = Rig::start(&[]);
    rig.wait_connected();
    let config = rig.awslink.config_path.to_string_lossy().into_owned();
    let (code, out, err) = awslink_command(&["health", "--config", &config]);
    assert_eq!(code, Some(0), "stdout {out:?} stderr {err:?}");
    assert!(out.contains("heartbeat"), "{out}");
}

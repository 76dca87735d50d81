//! awslink end to end against real brokers: a plain local Mosquitto and a TLS "cloud" Mosquitto
//! that requires a client certificate: round trips, outage drain, restart, status, TLS refusals.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const DEVICE: &str = "gw-1";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(20);

/// A local broker, a cloud broker, certificates, and awslink between them.
struct Rig {
    // Dropped in this order: awslink (printing its log on failure) before the temp dir goes.
    awslink: Awslink,
    cloud: Mosquitto,
    local: Mosquitto,
    certs: Certs,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(extra: Value) -> Rig {
        Self::start_with(|_| extra, TlsListener::server)
    }

    /// `extra` (awslink config) and `cloud_tls` (the cloud broker's listener) may use the
    /// generated certificates.
    fn start_with(
        extra: impl FnOnce(&Certs) -> Value,
        cloud_tls: impl Fn(&Certs) -> TlsListener,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path(), DEVICE);
        let local = Mosquitto::plain();
        let cloud = Mosquitto::tls(cloud_tls(&certs));
        let awslink = Awslink::start(&AwslinkSetup {
            dir: dir.path(),
            cloud_port: cloud.port,
            local_uri: local.uri(),
            certs: &certs,
            device_id: DEVICE,
            extra: extra(&certs),
        });
        awslink.wait_for_intake(T);
        Rig {
            awslink,
            cloud,
            local,
            certs,
            _dir: dir,
        }
    }

    /// A probe on the cloud broker (persistent session).
    fn cloud_probe(&self, id: &str, filters: &[&str]) -> Probe {
        let tls = ProbeTls {
            ca: &self.certs.ca,
            cert: &self.certs.client_cert,
            key: &self.certs.client_key,
        };
        Probe::cloud(self.cloud.port, tls, id, filters)
    }

    fn local_probe(&self, id: &str, filters: &[&str]) -> Probe {
        Probe::connect(&self.local.uri(), id, filters)
    }
}

fn expect_status(probe: &Probe, connected: bool) -> Value {
    probe.expect_json(STATUS, T, &format!("status connected={connected}"), |v| {
        v["connected"] == connected
    })
}

#[test]
fn telemetry_events_and_responses_arrive_mapped_and_byte_identical() {
    let rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let cloud = rig.cloud_probe("cloud-app", &["telemetry/#", "event/#", "command//+/res/#"]);
    let local = rig.local_probe("local-app", &[]);

    let binary: Vec<u8> = vec![0, 159, 146, 150, 255, 10];
    let rows: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "telemetry",
            br#"{"temp":21.5}"#.to_vec(),
            "telemetry/tenant/gw-1",
        ),
        (
            "t",
            b"plain text, not JSON".to_vec(),
            "telemetry/tenant/gw-1",
        ),
        (
            "telemetry/tenant/gw-1",
            b"{}".to_vec(),
            "telemetry/tenant/gw-1",
        ),
        (
            "t//gw-1:child/room",
            binary.clone(),
            "telemetry/tenant/gw-1:child/room",
        ),
        ("event", br#"{"alarm":true}"#.to_vec(), "event/tenant/gw-1"),
        ("e", Vec::new(), "event/tenant/gw-1"),
        (
            "event/other-tenant/gw-1/door",
            b"open".to_vec(),
            "event/other-tenant/gw-1/door",
        ),
        (
            "command///res/req-1/200",
            br#"{"ok":true}"#.to_vec(),
            "command//gw-1/res/req-1/200",
        ),
        (
            "c///s/req-2/500",
            b"failed".to_vec(),
            "command//gw-1/res/req-2/500",
        ),
    ];
    for (topic, payload, _) in &rows {
        local.publish(topic, payload, 1);
    }
    let got = cloud.collect(rows.len(), T);
    // Order is kept per lane, not across lanes (command responses have their own session and
    // lane; events drain ahead of telemetry).
    let lane = awslink_actors::lanes::Lane::of_cloud_topic;
    for of in awslink_actors::lanes::Lane::ALL {
        let sent = rows.iter().filter(|(_, _, c)| lane(c) == of);
        let received = got.iter().filter(|m| lane(m.topic()) == of);
        assert_eq!(sent.clone().count(), received.clone().count(), "{of:?}");
        for ((local_topic, payload, cloud_topic), msg) in sent.zip(received) {
            assert_eq!(msg.topic(), *cloud_topic, "local topic {local_topic}");
            assert_eq!(
                msg.payload(),
                payload.as_slice(),
                "payload of {local_topic}"
            );
        }
    }
}

#[test]
fn commands_flow_down_and_responses_flow_up() {
    let rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let device_app = rig.local_probe("device-app", &["command//+/req/#", "c//+/q/#"]);
    let cloud = rig.cloud_probe("cloud-app", &["command//+/res/#"]);

    // A command for someone else is dropped; ours, sent after it, is the first to arrive.
    cloud.publish("command//other-device/req/r0/reboot", b"{}", 1);
    cloud.publish("command//gw-1/req/r1/reboot", br#"{"delay":5}"#, 1);
    cloud.publish("command//gw-1:child/req/r2/open", b"now", 1);
    let got = device_app.collect(4, T);
    let mut seen: Vec<(String, Vec<u8>)> = got
        .iter()
        .map(|m| (m.topic().to_string(), m.payload().to_vec()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "c//gw-1/q/r1/reboot".to_string(),
                br#"{"delay":5}"#.to_vec()
            ),
            ("c//gw-1:child/q/r2/open".to_string(), b"now".to_vec()),
            (
                "command//gw-1/req/r1/reboot".to_string(),
                br#"{"delay":5}"#.to_vec()
            ),
            (
                "command//gw-1:child/req/r2/open".to_string(),
                b"now".to_vec()
            ),
        ]
    );

    device_app.publish("command//gw-1/res/r1/200", br#"{"rebooting":true}"#, 1);
    let response = cloud.expect(T, "the command response in the cloud");
    assert_eq!(response.topic(), "command//gw-1/res/r1/200");
    assert_eq!(response.payload(), br#"{"rebooting":true}"#);
    rig.awslink
        .wait_for_log("dropping command for device \"other-device\"", T);
}

#[test]
fn outage_of_the_cloud_buffers_1000_messages_and_drains_them_in_order() {
    let mut rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let cloud = rig.cloud_probe("cloud-app", &["telemetry/#"]);

    rig.cloud.stop_gracefully();
    let down = expect_status(&status, false);
    assert_eq!(down["cause"], "CONNECTION_ERROR", "{down}");

    let local = rig.local_probe("sensor", &[]);
    let started = std::time::Instant::now();
    for i in 0..1000 {
        local.publish("telemetry", format!("{i}").as_bytes(), 1);
    }
    eprintln!(
        "1000 messages acknowledged by Mosquitto while offline in {:?}",
        started.elapsed()
    );

    let back = std::time::Instant::now();
    rig.cloud.restart();
    cloud.reconnect();
    let got = cloud.collect(1000, Duration::from_secs(60));
    eprintln!(
        "1000 buffered messages drained {:?} after the cloud came back",
        back.elapsed()
    );
    let numbers: Vec<u32> = got
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..1000).collect::<Vec<_>>(),
        "all 1000, in order, none missing"
    );
    expect_status(&status, true);
}

#[test]
fn the_journal_survives_a_graceful_restart_while_offline() {
    let mut rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let cloud = rig.cloud_probe("cloud-app", &["event/#"]);
    rig.cloud.stop_gracefully();
    expect_status(&status, false);

    let local = rig.local_probe("sensor", &[]);
    for i in 0..50 {
        local.publish("event", format!("before-restart-{i}").as_bytes(), 1);
    }
    // The messages are journaled before Mosquitto has its PUBACK, so they are on disk now.
    let (code, took) = rig.awslink.terminate();
    assert_eq!(code, Some(0), "clean exit");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let closed = status.expect_json(STATUS, T, "the shutdown status", |v| {
        v["cause"] == "CONNECTION_CLOSED"
    });
    assert_eq!(closed["connected"], false, "{closed}");
    assert_eq!(closed["detail"], "shutdown", "{closed}");

    rig.cloud.restart();
    cloud.reconnect();
    rig.awslink.restart();
    let got = cloud.collect(50, T);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.payload(), format!("before-restart-{i}").as_bytes());
    }
}

#[test]
fn status_goes_connected_disconnected_connected() {
    let mut rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    let up = expect_status(&status, true);
    assert!(up["timestamp"].as_u64().unwrap() > 1_600_000_000, "{up}");
    assert!(up.get("cause").is_none(), "{up}");

    rig.cloud.stop();
    let down = expect_status(&status, false);
    assert_eq!(down["cause"], "CONNECTION_ERROR", "{down}");
    let detail = down["detail"].as_str().unwrap();
    assert!(
        detail.contains("connection lost") || detail.contains("tcp connect"),
        "{down}"
    );

    rig.cloud.restart();
    expect_status(&status, true);

    // The status is retained: a late subscriber sees the current state at once.
    let late = rig.local_probe("late-watch", &[STATUS]);
    expect_status(&late, true);

    // Gateway parameters on request.
    let asker = rig.local_probe("asker", &["edge/thing/response"]);
    asker.publish("edge/thing/request", b"", 1);
    let thing = asker.expect_json("edge/thing/response", T, "thing response", |_| true);
    assert_eq!(thing, json!({"deviceId": DEVICE, "tenantId": "tenant"}));
}

#[test]
fn an_untrusted_client_certificate_is_refused_reported_and_retried_under_backoff() {
    let rig = Rig::start_with(
        |c| json!({"cert": c.untrusted_cert, "key": c.untrusted_key, "deviceId": DEVICE}),
        TlsListener::server,
    );
    let (awslink, status) = (&rig.awslink, rig.local_probe("status-watch", &[STATUS]));
    let down = expect_status(&status, false);
    assert_eq!(down["cause"], "CONNECTION_NOT_AUTHENTICATED", "{down}");
    assert!(
        down["detail"]
            .as_str()
            .unwrap()
            .contains("client certificate rejected"),
        "{down}"
    );
    awslink.wait_for_log("(attempt 4)", T);
    assert!(
        awslink.log().contains("next cloud connection attempt in"),
        "backoff is logged"
    );
}

#[test]
fn a_server_certificate_for_another_host_is_refused() {
    let rig = Rig::start_with(
        |_| json!({}),
        |c| TlsListener {
            ca: c.ca.clone(),
            cert: c.wrong_name_cert.clone(),
            key: c.wrong_name_key.clone(),
        },
    );
    let (awslink, status) = (&rig.awslink, rig.local_probe("status-watch", &[STATUS]));
    let down = expect_status(&status, false);
    assert_eq!(down["cause"], "CONNECTION_ERROR", "{down}");
    assert_eq!(
        down["detail"], "tls handshake failed: certificate verify failed: hostname mismatch",
        "{down}"
    );
    awslink.wait_for_log("(attempt 3)", T);
    assert!(
        !awslink.log().contains("cloud link up"),
        "must never connect"
    );
}

#[test]
fn aws_iot_jobs_pass_through_both_ways() {
    let rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let jobs_topic = format!("$aws/things/{DEVICE}/jobs/#");
    let cloud = rig.cloud_probe("jobs-service", &[jobs_topic.as_str()]);
    let agent = rig.local_probe("jobs-agent", &["aws/jobs/#"]);

    agent.publish("aws/jobs/get", br#"{"clientToken":"j1"}"#, 1);
    let request = cloud.expect(T, "the jobs request in the cloud");
    assert_eq!(request.topic(), format!("$aws/things/{DEVICE}/jobs/get"));
    assert_eq!(request.payload(), br#"{"clientToken":"j1"}"#);

    // The service answers and notifies; both reach the local agent under aws/jobs/.
    cloud.publish(
        &format!("$aws/things/{DEVICE}/jobs/get/accepted"),
        br#"{"queuedJobs":[]}"#,
        1,
    );
    cloud.publish(
        &format!("$aws/things/{DEVICE}/jobs/notify-next"),
        br#"{"execution":{"jobId":"fw-2"}}"#,
        1,
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = agent.expect(T, "jobs replies locally");
        if m.topic() != "aws/jobs/get" {
            got.push((m.topic().to_string(), m.payload().to_vec()));
        }
    }
    assert_eq!(
        got,
        vec![
            (
                "aws/jobs/get/accepted".to_string(),
                br#"{"queuedJobs":[]}"#.to_vec()
            ),
            (
                "aws/jobs/notify-next".to_string(),
                br#"{"execution":{"jobId":"fw-2"}}"#.to_vec()
            ),
        ]
    );
    // The replies are not echoed back to the cloud: the next message the service sees is the
    // agent's update.
    agent.publish("aws/jobs/fw-2/update", br#"{"status":"SUCCEEDED"}"#, 1);
    let mut next = cloud.expect(T, "the update");
    while next.topic().ends_with("/accepted") || next.topic().ends_with("/notify-next") {
        next = cloud.expect(T, "the update");
    }
    assert_eq!(
        next.topic(),
        format!("$aws/things/{DEVICE}/jobs/fw-2/update")
    );
}

#[test]
fn metrics_are_logged_and_published_as_one_json_document() {
    let rig = Rig::start(json!({}));
    let status = rig.local_probe("status-watch", &[STATUS]);
    expect_status(&status, true);
    let sensor = rig.local_probe("sensor", &["edge/awslink/metrics"]);
    sensor.publish("telemetry", b"1", 1);
    let doc = sensor.expect_json(
        "edge/awslink/metrics",
        T,
        "metrics with the delivered message",
        |v| v["buffer"]["delivered"].as_u64() >= Some(1),
    );
    for actor in ["status", "local", "buffer", "supervisor", "shadow"] {
        assert!(doc[actor].is_object(), "{actor} missing in {doc}");
    }
    assert_eq!(doc["supervisor"]["connected"], 1, "{doc}");
    assert!(doc["timestamp"].as_u64().unwrap() > 1_600_000_000);
    rig.awslink
        .wait_for_log("awslink::metrics] buffer queued=", T);
}

/// awslink between a TLS local broker and a TLS cloud (both `brokers`), trusting `local_ca`
/// for the local one and presenting the client certificate to both.
fn tls_local_setup<'a>(
    dir: &'a std::path::Path,
    certs: &'a Certs,
    (local, cloud): (&Mosquitto, &Mosquitto),
    local_ca: &std::path::Path,
) -> AwslinkSetup<'a> {
    AwslinkSetup {
        dir,
        cloud_port: cloud.port,
        local_uri: format!("ssl://localhost:{}", local.port),
        certs,
        device_id: DEVICE,
        extra: json!({
            "localCACert": local_ca,
            "localCert": certs.client_cert,
            "localKey": certs.client_key,
        }),
    }
}

#[test]
fn a_tls_local_broker_with_client_certificates_works_both_ways() {
    // Both local sessions (the intake and the publishing one) verify the broker's certificate
    // and present the configured client certificate.
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let local = Mosquitto::tls(TlsListener::server(&certs));
    let cloud = Mosquitto::tls(TlsListener::server(&certs));
    let awslink = Awslink::start(&tls_local_setup(
        dir.path(),
        &certs,
        (&local, &cloud),
        &certs.ca,
    ));
    let tls = || ProbeTls {
        ca: &certs.ca,
        cert: &certs.client_cert,
        key: &certs.client_key,
    };
    let status = Probe::cloud(local.port, tls(), "status-watch", &[STATUS]);
    expect_status(&status, true);
    awslink.wait_for_intake(T);
    let cloud_app = Probe::cloud(cloud.port, tls(), "cloud-app", &["telemetry/#"]);
    let local_app = Probe::cloud(local.port, tls(), "local-app", &["command//+/req/#"]);

    local_app.publish("telemetry", b"over tls", 1);
    let up = cloud_app.expect(T, "telemetry from the TLS local broker");
    assert_eq!(up.topic(), "telemetry/tenant/gw-1");
    assert_eq!(up.payload(), b"over tls");

    cloud_app.publish("command//gw-1/req/r-1/restart", b"{}", 1);
    let down = local_app.expect(T, "command on the TLS local broker");
    assert_eq!(down.topic(), "command//gw-1/req/r-1/restart");
}

/// The CA of the local broker's certificate is in the system store (OpenSSL's
/// `SSL_CERT_FILE`), `localCACert` names another: the intake must refuse the broker.
#[test]
fn the_intake_trusts_only_the_local_ca_cert_not_the_system_store() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let other = aws_iot_emulator::testcerts::Ca::new("some other CA").unwrap();
    let (other_ca, _) = other.write(dir.path(), "other-ca").unwrap();
    let local = Mosquitto::tls(TlsListener::server(&certs));
    let cloud = Mosquitto::tls(TlsListener::server(&certs));
    let no_dir = dir.path().join("no-such-dir");
    let (ca, no_dir) = (certs.ca.to_str().unwrap(), no_dir.to_str().unwrap());
    let awslink = Awslink::start_with_env(
        &tls_local_setup(dir.path(), &certs, (&local, &cloud), &other_ca),
        &[("SSL_CERT_FILE", ca), ("SSL_CERT_DIR", no_dir)],
    );
    awslink.wait_for_log("certificate verify failed", T);
    let log = awslink.log();
    assert!(
        log.lines()
            .any(|l| l.contains("local intake") && l.contains("certificate verify failed")),
        "the intake's refusal: {log}"
    );
    assert!(!log.contains("local intake subscribed"), "{log}");
}

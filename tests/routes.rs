//! Basic Ingest routes (issue 18) through the AWS IoT emulator: a routed topic reaches its rule's
//! sink and no plain subscriber, in order; unrouted topics arrive as before; `kill -9` in the
//! middle of a routed drain loses nothing; `awslink check` probes each route.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cloud::CloudRig;
use support::*;

const DEVICE: &str = "gw-r";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(30);
/// Where the emulator delivers what Basic Ingest gives the rule `hot`.
const HOT_SINK: &str = "$emulator/rules/hot/#";

fn hot_route() -> Value {
    json!({"routes": [
        {"filter": "telemetry///hot/#", "basicIngestRule": "hot"},
        {"filter": "event/#", "basicIngestRule": "hot"}
    ]})
}

/// A client of the emulator's private broker with its own client id.
fn cloud_client(rig: &CloudRig, id: &str, filters: &[&str]) -> Probe {
    let uri = format!("tcp://127.0.0.1:{}", rig.emulator.broker_port());
    Probe::connect(&uri, id, filters)
}

fn wait_connected(rig: &CloudRig) {
    let status = rig.local("status-watch", &[STATUS]);
    status.expect_json(STATUS, T, "status connected", |v| v["connected"] == true);
}

/// Numbered messages on `topic`, distinct ones in order of first arrival, and duplicates.
#[derive(Default)]
struct Arrivals {
    seen: std::collections::HashSet<u32>,
    order: Vec<u32>,
    duplicates: usize,
}

impl Arrivals {
    /// Takes messages until `n` distinct ones arrived in all; each must be on `topic`.
    fn until(&mut self, probe: &Probe, topic: &str, n: usize, timeout: Duration) -> &mut Self {
        let deadline = Instant::now() + timeout;
        while self.order.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = probe.next(left).unwrap_or_else(|| {
                panic!(
                    "only {} of {n} distinct messages within {timeout:?}",
                    self.order.len()
                )
            });
            assert_eq!(msg.topic(), topic, "a message on an unexpected topic");
            let number: u32 = String::from_utf8_lossy(msg.payload()).parse().unwrap();
            if self.seen.insert(number) {
                self.order.push(number);
            } else {
                self.duplicates += 1;
            }
        }
        self
    }
}

#[test]
fn a_routed_topic_reaches_its_rule_sink_in_order_and_no_plain_subscriber() {
    let rig = CloudRig::start(DEVICE, |c| c.with_rule("hot"), hot_route());
    wait_connected(&rig);
    let sink = cloud_client(&rig, "rule-sink", &[HOT_SINK]);
    let plain = cloud_client(&rig, "plain-app", &["telemetry/#", "event/#"]);
    let sensor = rig.local("sensor", &[]);
    for i in 0..150u32 {
        sensor.publish("telemetry///hot", i.to_string().as_bytes(), 1);
        if i % 3 == 0 {
            sensor.publish("telemetry", (i / 3).to_string().as_bytes(), 1);
        }
    }
    // One connection, in order: when the marker reaches the plain subscriber, every routed
    // message before it has been through the broker.
    sensor.publish("telemetry", b"9999", 1);

    let hot_topic = "$emulator/rules/hot/telemetry/tenant/gw-r/hot";
    let mut hot = Arrivals::default();
    hot.until(&sink, hot_topic, 150, T);
    assert_eq!(
        hot.order,
        (0..150).collect::<Vec<_>>(),
        "routed: all, in order"
    );
    let mut unrouted = Arrivals::default();
    unrouted.until(&plain, "telemetry/tenant/gw-r", 51, T);
    let mut want: Vec<u32> = (0..50).collect();
    want.push(9999);
    assert_eq!(
        unrouted.order, want,
        "unrouted: all, in order, and nothing routed"
    );
    let duplicates = hot.duplicates;

    let stats = rig.emulator.stats();
    assert_eq!(stats.rule("hot"), 150 + duplicates as u64);
    assert_eq!(stats.rule_not_found, 0);
    rig.wait_for_metric(&format!(" route_hot_sent={}", 150 + duplicates));
    let log = rig.awslink.log();
    assert!(log.contains(" basic_ingest_publishes="), "{log}");
    assert!(log.contains(" billed_units="), "{log}");
}

#[test]
fn kill_9_in_the_middle_of_a_routed_drain_loses_nothing() {
    const N: u32 = 1_000;
    let mut rig = CloudRig::start(DEVICE, |c| c.with_rule("hot"), hot_route());
    let status = rig.local("status-watch", &[STATUS]);
    status.expect_json(STATUS, T, "status connected", |v| v["connected"] == true);
    let sink = cloud_client(&rig, "rule-sink", &[HOT_SINK]);
    rig.proxy.cut();
    status.expect_json(STATUS, T, "status disconnected", |v| {
        v["connected"] == false
    });
    let sensor = rig.local("sensor", &[]);
    for i in 0..N {
        sensor.publish("event", i.to_string().as_bytes(), 1);
    }
    rig.wait_for_metric(&format!(" journaled={N}"));
    rig.proxy.resume();
    // At AWS's 100 publishes/s the drain takes ~10 s: kill it a quarter of the way in.
    let topic = "$emulator/rules/hot/event/tenant/gw-r";
    let mut arrived = Arrivals::default();
    arrived.until(&sink, topic, 250, T);
    rig.awslink.kill();
    rig.awslink.restart();
    arrived.until(&sink, topic, N as usize, Duration::from_secs(60));
    assert_eq!(
        arrived.order,
        (0..N).collect::<Vec<_>>(),
        "nothing lost, order kept"
    );
    eprintln!(
        "kill -9 during a routed drain: {N} delivered to the rule, {} duplicates",
        arrived.duplicates
    );
    assert_eq!(rig.emulator.stats().rule_not_found, 0);
}

#[test]
fn check_probes_every_route_and_says_a_missing_rule_is_invisible() {
    let routes = json!({"routes": [
        {"filter": "telemetry/#", "basicIngestRule": "hot"},
        {"filter": "event/#", "basicIngestRule": "missing"}
    ]});
    let mut rig = CloudRig::start(DEVICE, |c| c.with_rule("hot"), routes);
    wait_connected(&rig);
    rig.awslink.kill(); // the check uses the same client id
    let sink = cloud_client(&rig, "rule-sink", &["$emulator/rules/#"]);
    let config = rig.awslink.config_path.to_string_lossy().to_string();
    let (code, stdout, stderr) = awslink_command(&["check", "--config", &config, "--timeout", "5"]);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    for want in [
        "ok    routes[0]",
        "to $aws/rules/hot/telemetry/tenant/gw-r, PUBACK received",
        "ok    routes[1]",
        "to $aws/rules/missing/event/tenant/gw-r, PUBACK received",
        "check that hot, missing exist and are enabled",
        "--metric-name RuleNotFound",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    let probe = sink.expect(T, "the probe at the rule");
    assert_eq!(probe.topic(), "$emulator/rules/hot/telemetry/tenant/gw-r");
    assert!(probe.payload_str().contains("\"awslink\":\"check\""));
    // AWS acknowledged the probe for the missing rule too, and dropped it: only its stats know.
    wait_until(T, "the dropped probe to be counted", || {
        (rig.emulator.stats().rule_not_found_for("missing") == 1).then_some(())
    });
    assert_eq!(rig.emulator.stats().rule("hot"), 1);
}

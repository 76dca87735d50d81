//! Opt-in batching (issue 18) through the AWS IoT emulator at AWS's real limits: a telemetry
//! backlog arrives as `{"batch":[{"ts","payload"|"b64"}]}` envelopes of up to 5 KB, complete and
//! in order, in far fewer publishes (and billed units) than messages; a lone message waits at
//! most `maxDelayMs`; topics without a rule, and the control lane, are never batched; `kill -9`
//! in the middle of a batched drain loses nothing.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cloud::CloudRig;
use support::*;

const DEVICE: &str = "gw-b";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(30);
const TELEMETRY: &str = "telemetry/tenant/gw-b";

fn batching(max_delay_ms: u64) -> Value {
    json!({"batching": [{"filter": "telemetry/#", "maxBytes": 5120, "maxDelayMs": max_delay_ms}]})
}

fn wait_connected(status: &Probe) {
    status.expect_json(STATUS, T, "status connected", |v| v["connected"] == true);
}

fn reading(i: u32) -> Vec<u8> {
    json!({"n": i, "temperature": 21.5, "humidity": 40})
        .to_string()
        .into_bytes()
}

/// Cuts the cloud off and publishes readings `0..n` on local `telemetry`; returns the sensor.
fn queue_offline(rig: &CloudRig, status: &Probe, n: u32) -> Probe {
    rig.proxy.cut();
    status.expect_json(STATUS, T, "status disconnected", |v| {
        v["connected"] == false
    });
    let sensor = rig.local("sensor", &[]);
    for i in 0..n {
        sensor.publish("telemetry", &reading(i), 1);
    }
    sensor
}

/// What arrived on the cloud side: the numbers unpacked from the envelopes, in arrival order.
#[derive(Default)]
struct Unpacked {
    numbers: Vec<u32>,
    publishes: usize,
    largest: usize,
}

impl Unpacked {
    /// Takes envelopes from `cloud` until `n` distinct numbers arrived; each must be a valid
    /// envelope on `topic` with increasing `ts`.
    fn until(&mut self, cloud: &Probe, topic: &str, n: usize, timeout: Duration) -> &mut Self {
        let deadline = Instant::now() + timeout;
        while self.distinct() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = cloud.next(left).unwrap_or_else(|| {
                panic!(
                    "only {} of {n} readings within {timeout:?}",
                    self.distinct()
                )
            });
            assert_eq!(msg.topic(), topic);
            self.publishes += 1;
            self.largest = self.largest.max(msg.payload().len() + topic.len());
            let envelope: Value = serde_json::from_slice(msg.payload())
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", msg.payload_str()));
            let items = envelope["batch"]
                .as_array()
                .unwrap_or_else(|| panic!("not an envelope: {envelope}"));
            assert!(!items.is_empty());
            let mut last_ts = 0;
            for item in items {
                let ts = item["ts"].as_u64().expect("ts");
                assert!(ts >= last_ts, "ts in journal order: {envelope}");
                last_ts = ts;
                let n = item["payload"]["n"].as_u64().expect("payload.n") as u32;
                assert_eq!(item["payload"]["humidity"], json!(40));
                self.numbers.push(n);
            }
        }
        self
    }

    fn distinct(&self) -> usize {
        let mut seen: Vec<u32> = self.numbers.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// The numbers in first-arrival order (a batch sent again after a failure repeats whole).
    fn first_arrivals(&self) -> Vec<u32> {
        let mut seen = std::collections::HashSet::new();
        self.numbers
            .iter()
            .copied()
            .filter(|n| seen.insert(*n))
            .collect()
    }
}

#[test]
fn a_batched_backlog_arrives_complete_in_order_in_few_5kb_publishes() {
    const N: u32 = 3_000;
    let rig = CloudRig::start(DEVICE, |c| c, batching(1000));
    let status = rig.local("status-watch", &[STATUS]);
    wait_connected(&status);
    let cloud = rig.cloud(&["telemetry/#"]);
    let events = Probe::connect(
        &format!("tcp://127.0.0.1:{}", rig.emulator.broker_port()),
        "event-app",
        &["event/#"],
    );
    let sensor = queue_offline(&rig, &status, N);
    sensor.publish("event", b"not batched", 1);
    rig.wait_for_metric(&format!(" journaled={}", N + 1));
    rig.proxy.resume();

    let started = Instant::now();
    let mut got = Unpacked::default();
    got.until(&cloud, TELEMETRY, N as usize, T);
    let took = started.elapsed();
    assert_eq!(
        got.first_arrivals(),
        (0..N).collect::<Vec<_>>(),
        "complete, in order"
    );
    assert!(
        got.largest <= 5120,
        "a publish of {} bytes (payload + topic) is over maxBytes",
        got.largest
    );
    // ~60-byte readings: ~70 per 5 KB envelope. Unbatched, 3,000 readings are 3,000 publishes,
    // 30 s at AWS's 100/s.
    assert!(
        got.publishes * 20 <= N as usize,
        "{} publishes for {N} readings",
        got.publishes
    );
    eprintln!(
        "batched backlog: {N} readings in {} publishes (largest {} B) within {took:?}",
        got.publishes, got.largest
    );
    // The event is not batched: it arrives as it was published.
    let event = events.expect(T, "the event");
    assert_eq!(event.topic(), "event/tenant/gw-b");
    assert_eq!(event.payload_str(), "not batched");
    rig.wait_for_metric(" batched_messages=");
    let log = rig.awslink.log();
    assert!(log.contains(" batches_sent="), "{log}");
}

#[test]
fn a_lone_message_waits_at_most_max_delay_and_non_json_travels_as_base64() {
    let rig = CloudRig::start(DEVICE, |c| c, batching(300));
    let status = rig.local("status-watch", &[STATUS]);
    wait_connected(&status);
    let cloud = rig.cloud(&["telemetry/#"]);
    let sensor = rig.local("sensor", &[]);
    let sent = Instant::now();
    sensor.publish("telemetry", b"\x00\xffraw", 1);
    let msg = cloud.expect(Duration::from_secs(5), "the lone message's batch");
    let waited = sent.elapsed();
    let envelope: Value = serde_json::from_slice(msg.payload()).unwrap();
    let items = envelope["batch"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{envelope}");
    assert_eq!(items[0]["b64"], json!("AP9yYXc="), "{envelope}");
    assert!(items[0]["ts"].as_u64().unwrap() > 1_600_000_000_000);
    eprintln!("a lone message with maxDelayMs 300 arrived after {waited:?}");
}

#[test]
fn kill_9_in_the_middle_of_a_batched_drain_loses_nothing() {
    const N: u32 = 20_000;
    let mut rig = CloudRig::start(DEVICE, |c| c, batching(1000));
    let status = rig.local("status-watch", &[STATUS]);
    wait_connected(&status);
    let cloud = rig.cloud(&["telemetry/#"]);
    let _sensor = queue_offline(&rig, &status, N);
    rig.wait_for_metric(&format!(" journaled={N}"));
    rig.proxy.resume();
    let mut got = Unpacked::default();
    got.until(&cloud, TELEMETRY, N as usize / 4, T);
    rig.awslink.kill();
    rig.awslink.restart();
    got.until(&cloud, TELEMETRY, N as usize, Duration::from_secs(60));
    assert_eq!(
        got.first_arrivals(),
        (0..N).collect::<Vec<_>>(),
        "nothing lost, order kept"
    );
    eprintln!(
        "kill -9 during a batched drain: {N} readings in {} publishes, {} repeated",
        got.publishes,
        got.numbers.len() - N as usize
    );
}

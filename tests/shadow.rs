//! Ditto twin channel ⇄ AWS Device Shadow through Mosquitto + awslink + the emulator's shadow
//! service (issue 6).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cloud::CloudRig;
use support::*;

const DEVICE: &str = "acme:gw1";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(20);
const RESPONSES: &str = "command//+/req/#";

/// The emulator rig, connected.
fn start() -> CloudRig {
    let rig = CloudRig::start(DEVICE, |c| c, json!({}));
    let status = rig.local("status-watch", &[STATUS]);
    status.expect_json(STATUS, T, "connected", |v| v["connected"] == true);
    rig
}

/// A cloud application using the shadow API on the emulator's private broker.
fn cloud_app(rig: &CloudRig) -> Probe {
    rig.cloud(&[&format!("$aws/things/{DEVICE}/shadow/#")])
}

fn ditto(action: &str, path: &str, value: Option<Value>, correlation: &str) -> Vec<u8> {
    let mut m = json!({
        "topic": format!("acme/gw1/things/twin/commands/{action}"),
        "headers": {"correlation-id": correlation, "response-required": true},
        "path": path,
    });
    if let Some(v) = value {
        m["value"] = v;
    }
    serde_json::to_vec(&m).unwrap()
}

/// Waits for the Ditto message with `correlation-id` on the local response topics.
fn response(probe: &Probe, correlation: &str) -> Value {
    let deadline = std::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = probe
            .next(left)
            .unwrap_or_else(|| panic!("no Ditto response for {correlation}"));
        let v: Value = serde_json::from_slice(msg.payload()).unwrap_or(Value::Null);
        if v["headers"]["correlation-id"] == correlation {
            return v;
        }
    }
}

/// `get` from the cloud side; returns the accepted document.
fn cloud_get(cloud: &Probe, shadow: &str) -> Value {
    let prefix = format!("$aws/things/{DEVICE}/shadow/name/{shadow}");
    cloud.publish(
        &format!("{prefix}/get"),
        br#"{"clientToken":"cloud-get"}"#,
        1,
    );
    cloud.expect_json(&format!("{prefix}/get/accepted"), T, "get/accepted", |v| {
        v["clientToken"] == "cloud-get"
    })
}

#[test]
fn a_reported_property_is_visible_to_a_cloud_get_and_answered_locally() {
    let rig = start();
    let device = rig.local("device-app", &[RESPONSES]);
    let cloud = cloud_app(&rig);
    device.publish(
        "event",
        &ditto(
            "modify",
            "/features/temp/properties/value",
            Some(json!(21.5)),
            "m-1",
        ),
        1,
    );
    let answer = response(&device, "m-1");
    assert_eq!(answer["status"], 204, "{answer}");
    let doc = cloud_get(&cloud, "temp");
    assert_eq!(doc["state"]["reported"]["value"], 21.5, "{doc}");

    // retrieve through Ditto comes back as a 200 response with the feature.
    device.publish(
        "event",
        &ditto("retrieve", "/features/temp", None, "r-1"),
        1,
    );
    let answer = response(&device, "r-1");
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["value"]["properties"]["value"], 21.5, "{answer}");

    // A non-Ditto payload on the same topic is forwarded as an event, untouched.
    let events = Probe::connect(
        &format!("tcp://127.0.0.1:{}", rig.emulator.broker_port()),
        "events",
        &["event/#"],
    );
    device.publish("event", br#"{"temp": 1}"#, 1);
    assert_eq!(events.expect(T, "plain event").payload(), br#"{"temp": 1}"#);
}

#[test]
fn desired_state_reaches_the_device_and_its_report_clears_the_delta() {
    let rig = start();
    let device = rig.local("device-app", &[RESPONSES]);
    let cloud = cloud_app(&rig);
    device.publish(
        "event",
        &ditto(
            "modify",
            "/features/lamp",
            Some(json!({"properties": {"on": false}})),
            "m-1",
        ),
        1,
    );
    assert_eq!(response(&device, "m-1")["status"], 204);
    let v1 = cloud_get(&cloud, "lamp")["version"].as_u64().unwrap();

    let prefix = format!("$aws/things/{DEVICE}/shadow/name/lamp");
    cloud.publish(
        &format!("{prefix}/update"),
        br#"{"state":{"desired":{"on":true}},"clientToken":"cloud-1"}"#,
        1,
    );
    let wanted = device.expect_json(
        "command//acme:gw1/req//modify",
        T,
        "the desired state as a Ditto modify",
        |v| v["path"] == "/features/lamp/desiredProperties",
    );
    assert_eq!(wanted["value"], json!({"on": true}), "{wanted}");
    assert_eq!(wanted["topic"], "acme/gw1/things/twin/commands/modify");

    device.publish(
        "event",
        &ditto(
            "modify",
            "/features/lamp/properties/on",
            Some(json!(true)),
            "m-2",
        ),
        1,
    );
    assert_eq!(response(&device, "m-2")["status"], 204);
    let doc = cloud_get(&cloud, "lamp");
    assert!(doc["state"].get("delta").is_none(), "delta gone: {doc}");
    assert_eq!(doc["state"]["reported"]["on"], true);
    assert_eq!(
        doc["version"].as_u64().unwrap(),
        v1 + 2,
        "one version for desired, one for the report: {doc}"
    );
}

#[test]
fn a_version_conflict_comes_back_as_a_ditto_409_with_the_correlation_id() {
    let rig = start();
    let device = rig.local("device-app", &[RESPONSES]);
    device.publish(
        "event",
        &ditto(
            "modify",
            "/features/meter/properties/kwh",
            Some(json!(1)),
            "m-1",
        ),
        1,
    );
    assert_eq!(response(&device, "m-1")["status"], 204);
    let stale = json!({
        "topic": "acme/gw1/things/twin/commands/modify",
        "headers": {"correlation-id": "stale-1", "if-match": "\"rev:99\""},
        "path": "/features/meter/properties/kwh",
        "value": 2,
    });
    device.publish("event", stale.to_string().as_bytes(), 1);
    let error = response(&device, "stale-1");
    assert_eq!(error["status"], 409, "{error}");
    assert_eq!(error["topic"], "acme/gw1/things/twin/errors");
    assert!(
        error["value"]["message"]
            .as_str()
            .unwrap()
            .contains("onflict"),
        "{error}"
    );
}

#[test]
fn malformed_ditto_gets_a_local_400_and_never_reaches_the_cloud() {
    let rig = start();
    let device = rig.local("device-app", &[RESPONSES]);
    device.publish(
        "event",
        &ditto("modify", "/policies/x", Some(json!(1)), "bad-1"),
        1,
    );
    let error = response(&device, "bad-1");
    assert_eq!(error["status"], 400, "{error}");
    assert!(
        error["value"]["message"]
            .as_str()
            .unwrap()
            .contains("is not attributes or features"),
        "{error}"
    );
    assert_eq!(
        rig.emulator.stats().shadow_requests.values().sum::<u64>(),
        0,
        "nothing sent to AWS"
    );
}

#[test]
fn an_update_made_while_the_cloud_is_away_is_applied_after_reconnect() {
    let rig = start();
    let status = rig.local("status-watch", &[STATUS]);
    status.expect_json(STATUS, T, "connected", |v| v["connected"] == true);
    let device = rig.local("device-app", &[RESPONSES]);
    rig.proxy.cut();
    status.expect_json(STATUS, T, "disconnected", |v| v["connected"] == false);
    device.publish(
        "event",
        &ditto("modify", "/attributes", Some(json!({"fw": "2.0"})), "off-1"),
        1,
    );
    rig.proxy.resume();
    assert_eq!(response(&device, "off-1")["status"], 204);
    let cloud = cloud_app(&rig);
    cloud.publish(
        &format!("$aws/things/{DEVICE}/shadow/get"),
        br#"{"clientToken":"g"}"#,
        1,
    );
    let doc = cloud.expect_json(
        &format!("$aws/things/{DEVICE}/shadow/get/accepted"),
        T,
        "classic get",
        |_| true,
    );
    assert_eq!(doc["state"]["reported"]["fw"], "2.0", "{doc}");
    let _ = &rig.awslink;
}

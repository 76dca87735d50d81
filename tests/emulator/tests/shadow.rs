//! The Device Shadow service end to end: a device over TLS talks to the shadow topics.

mod common;

use common::*;
use paho_mqtt as mqtt;
use serde_json::{json, Value};

struct Device {
    cli: mqtt::AsyncClient,
    rx: mqtt::Receiver<Option<mqtt::Message>>,
}

impl Device {
    fn new(cloud: &Cloud, thing: &str) -> Device {
        let cli = device(cloud, thing);
        let rx = cli.start_consuming();
        subscribe(&cli, &format!("$aws/things/{thing}/shadow/#"));
        Device { cli, rx }
    }

    /// Publishes `payload` on `topic` and returns the next message on `reply`,
    /// skipping other replies.
    fn request(&self, topic: &str, payload: &str, reply: &str) -> Value {
        publish(&self.cli, topic, payload.as_bytes(), 1)
            .wait_for(TIMEOUT)
            .unwrap();
        self.next_on(reply)
    }

    fn next_on(&self, topic: &str) -> Value {
        loop {
            let m = recv(&self.rx);
            if m.topic() == topic {
                return serde_json::from_slice(m.payload()).unwrap();
            }
        }
    }
}

#[test]
fn classic_shadow_update_delta_documents_get_delete() {
    let cloud = start(|_| {});
    let d = Device::new(&cloud, "thermo-1");
    let t = "$aws/things/thermo-1/shadow";

    let acc = d.request(
        &format!("{t}/update"),
        r#"{"state":{"reported":{"temp":20,"mode":{"fan":"auto"}}},"clientToken":"r1"}"#,
        &format!("{t}/update/accepted"),
    );
    assert_eq!(
        (acc["version"].as_u64(), acc["clientToken"].as_str()),
        (Some(1), Some("r1"))
    );
    assert!(acc["metadata"]["reported"]["temp"]["timestamp"].is_u64());

    publish(
        &d.cli,
        &format!("{t}/update"),
        br#"{"state":{"desired":{"temp":22,"mode":{"fan":"auto"}}},"clientToken":"d1"}"#,
        1,
    );
    let delta = d.next_on(&format!("{t}/update/delta"));
    assert_eq!(delta["state"], json!({"temp": 22}));
    assert_eq!(delta["version"], 2);
    let docs = d.next_on(&format!("{t}/update/documents"));
    assert_eq!(docs["previous"]["version"], 1);
    assert_eq!(
        docs["current"]["state"]["desired"],
        json!({"temp": 22, "mode": {"fan": "auto"}})
    );
    assert_eq!(docs["clientToken"], "d1");

    let got = d.request(&format!("{t}/get"), "", &format!("{t}/get/accepted"));
    assert_eq!(got["state"]["delta"], json!({"temp": 22}));
    assert_eq!(got["version"], 2);

    let conflict = d.request(
        &format!("{t}/update"),
        r#"{"state":{"reported":{"temp":22}},"version":1,"clientToken":"c"}"#,
        &format!("{t}/update/rejected"),
    );
    assert_eq!(
        (conflict["code"].as_u64(), conflict["clientToken"].as_str()),
        (Some(409), Some("c"))
    );

    let del = d.request(
        &format!("{t}/delete"),
        "{}",
        &format!("{t}/delete/accepted"),
    );
    assert_eq!(del["version"], 2);
    let missing = d.request(&format!("{t}/get"), "", &format!("{t}/get/rejected"));
    assert_eq!(missing["code"], 404);

    let s = cloud.emu.stats();
    assert_eq!(s.shadow("update_accepted"), 2);
    assert_eq!(s.shadow("update_rejected_409"), 1);
    assert_eq!(s.shadow("get_accepted"), 1);
    assert_eq!(s.shadow("get_rejected_404"), 1);
    assert_eq!(s.shadow("delete_accepted"), 1);
}

#[test]
fn named_shadow_errors_invalid_json_and_oversize() {
    let cloud = start(|_| {});
    let d = Device::new(&cloud, "dev-2");
    let n = "$aws/things/dev-2/shadow/name/config";

    let missing = d.request(&format!("{n}/get"), "", &format!("{n}/get/rejected"));
    assert_eq!(
        missing["message"],
        "No shadow exists with name: 'dev-2~config'"
    );

    let bad = d.request(
        &format!("{n}/update"),
        "{nope",
        &format!("{n}/update/rejected"),
    );
    assert_eq!(bad["code"], 400);

    let big = json!({"state": {"reported": {"blob": "x".repeat(9000)}}}).to_string();
    let too_big = d.request(
        &format!("{n}/update"),
        &big,
        &format!("{n}/update/rejected"),
    );
    assert_eq!(too_big["code"], 413);

    let acc = d.request(
        &format!("{n}/update"),
        r#"{"state":{"desired":{"rate":5}}}"#,
        &format!("{n}/update/accepted"),
    );
    assert_eq!(acc["version"], 1);
    // The classic shadow of the same thing does not exist.
    let t = "$aws/things/dev-2/shadow";
    d.request(&format!("{t}/get"), "", &format!("{t}/get/rejected"));
}

#[test]
fn shadows_persist_in_a_file_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shadows.json");
    let f = file.clone();
    let mut cloud = start(move |c| c.shadow_file = Some(f));
    let t = "$aws/things/keep/shadow";
    {
        let d = Device::new(&cloud, "keep");
        d.request(
            &format!("{t}/update"),
            r#"{"state":{"reported":{"kept":true}}}"#,
            &format!("{t}/update/accepted"),
        );
    }
    cloud.emu.stop();
    let mut cfg = aws_iot_emulator::EmulatorConfig::from_certs(&cloud.certs);
    cfg.shadow_file = Some(file);
    let cloud2 = Cloud {
        emu: aws_iot_emulator::Emulator::start(cfg).unwrap(),
        certs: cloud.certs.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let d = Device::new(&cloud2, "keep");
    let got = d.request(&format!("{t}/get"), "", &format!("{t}/get/accepted"));
    assert_eq!(got["state"]["reported"], json!({"kept": true}));
    assert_eq!(got["version"], 1);
}

#[test]
fn behaves_like_aws_for_nulls_in_arrays_tokens_on_deltas_reports_and_deletes() {
    let cloud = start(|_| {});
    let d = Device::new(&cloud, "aws-like");
    let t = "$aws/things/aws-like/shadow";

    let rej = d.request(
        &format!("{t}/update"),
        r#"{"state":{"desired":{"colors":[null,"RED"]}},"clientToken":"n"}"#,
        &format!("{t}/update/rejected"),
    );
    assert_eq!(
        (
            rej["code"].as_u64(),
            rej["message"].as_str(),
            rej["clientToken"].as_str()
        ),
        (Some(400), Some("Invalid JSON"), Some("n"))
    );

    // An unknown top-level field is ignored; the delta carries the request's clientToken.
    publish(
        &d.cli,
        &format!("{t}/update"),
        br#"{"state":{"desired":{"on":true},"reported":{"on":true}},"clientToken":"d1","note":"x"}"#,
        1,
    );
    let acc = d.next_on(&format!("{t}/update/accepted"));
    assert_eq!(acc["version"], 1);

    // A reported-only update that re-opens the difference publishes a delta.
    publish(
        &d.cli,
        &format!("{t}/update"),
        br#"{"state":{"reported":{"on":false}},"clientToken":"r1"}"#,
        1,
    );
    let delta = d.next_on(&format!("{t}/update/delta"));
    assert_eq!(delta["state"], json!({"on": true}));
    assert_eq!(
        (delta["version"].as_u64(), delta["clientToken"].as_str()),
        (Some(2), Some("r1"))
    );

    // A delete's payload is not parsed and its version not checked.
    let del = d.request(
        &format!("{t}/delete"),
        r#"{"version":99,"clientToken":"x1""#,
        &format!("{t}/delete/accepted"),
    );
    assert_eq!(del["version"], 2);
    let s = cloud.emu.stats();
    assert_eq!(
        (
            s.shadow("update_rejected_400"),
            s.shadow("update_accepted"),
            s.shadow("delete_accepted")
        ),
        (1, 2, 1)
    );
}

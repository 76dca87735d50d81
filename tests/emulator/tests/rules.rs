//! Basic Ingest end to end: a device publishes to `$aws/rules/{rule}/{topic}` over TLS; the
//! cloud side reads the rule sink (`$emulator/rules/…`) on the private broker.

mod common;

use common::*;
use paho_mqtt as mqtt;

/// A cloud-side client subscribed to `filters`, with its message stream.
fn cloud_reader(
    cloud: &Cloud,
    id: &str,
    filters: &[&str],
) -> (mqtt::AsyncClient, mqtt::Receiver<Option<mqtt::Message>>) {
    let cli = cloud_client(cloud, id);
    let rx = cli.start_consuming();
    for f in filters {
        subscribe(&cli, f);
    }
    (cli, rx)
}

fn received(m: &mqtt::Message) -> (String, String) {
    (m.topic().to_string(), m.payload_str().into_owned())
}

#[test]
fn a_routed_message_reaches_the_rule_sink_and_not_plain_subscribers() {
    let cloud = start(|c| c.rules = vec!["telemetry_rule".into()]);
    let (_reader, rx) = cloud_reader(&cloud, "reader", &["a/b/c", "$emulator/rules/#"]);
    let dev = device(&cloud, "gw");
    publish(&dev, "$aws/rules/telemetry_rule/a/b/c", b"routed", 1)
        .wait_for(TIMEOUT)
        .expect("QoS 1 Basic Ingest publish gets its PUBACK");
    // Beyond the prefix, 8 levels are allowed (the prefix is not counted).
    publish(
        &dev,
        "$aws/rules/telemetry_rule/1/2/3/4/5/6/7/8",
        b"deep",
        0,
    );
    publish(&dev, "a/b/c", b"plain", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    let got: Vec<_> = (0..3).map(|_| received(&recv(&rx))).collect();
    assert_eq!(
        got,
        [
            (
                "$emulator/rules/telemetry_rule/a/b/c".into(),
                "routed".into()
            ),
            (
                "$emulator/rules/telemetry_rule/1/2/3/4/5/6/7/8".into(),
                "deep".into()
            ),
            ("a/b/c".into(), "plain".into()),
        ],
        "the plain subscriber sees only the plain publish"
    );
    let s = cloud.emu.stats();
    assert_eq!((s.rule("telemetry_rule"), s.rule_not_found), (2, 0));
    assert_eq!(s.publishes_accepted, 3);
    let c = s.connection("gw").unwrap();
    assert_eq!((c.rule_messages, c.open), (2, true));
}

#[test]
fn a_message_for_an_unknown_or_disabled_rule_is_acknowledged_dropped_and_counted() {
    let cloud = start(|c| *c = c.clone().with_rule("known"));
    let (_reader, rx) = cloud_reader(&cloud, "reader", &["x", "$emulator/rules/#"]);
    let dev = device(&cloud, "gw");
    publish(&dev, "$aws/rules/typo/x", b"lost-1", 1)
        .wait_for(TIMEOUT)
        .expect("AWS acknowledges a message for a missing rule too");
    publish(&dev, "$aws/rules/typo/x", b"lost-0", 0);
    publish(&dev, "$aws/rules/bad-name/x", b"lost-2", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    publish(&dev, "$aws/rules/known/x", b"marker", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    // The first thing the reader sees is the marker: nothing of the dropped ones.
    assert_eq!(
        received(&recv(&rx)),
        ("$emulator/rules/known/x".into(), "marker".into())
    );
    let s = wait_stats(&cloud, "3 dropped", |s| s.rule_not_found == 3);
    assert_eq!(
        (
            s.rule_not_found_for("typo"),
            s.rule_not_found_for("bad-name"),
            s.rule("known")
        ),
        (2, 1, 1)
    );

    // Disabling a rule drops its messages from then on; enabling one delivers them.
    cloud.emu.disable_rule("known");
    assert!(cloud.emu.enable_rule("typo"));
    assert!(!cloud.emu.enable_rule("not-valid"));
    assert_eq!(cloud.emu.rules(), ["typo"]);
    publish(&dev, "$aws/rules/known/x", b"lost-3", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    publish(&dev, "$aws/rules/typo/x", b"found", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    assert_eq!(
        received(&recv(&rx)),
        ("$emulator/rules/typo/x".into(), "found".into())
    );
    let s = cloud.emu.stats();
    assert_eq!((s.rule_not_found_for("known"), s.rule("typo")), (1, 1));
    assert!(s.connection("gw").unwrap().open);
}

/// Acts on a fresh device connection; the emulator must close it for `reserved_topic`.
fn assert_closed_for_reserved_topic(
    cloud: &Cloud,
    client_id: &str,
    act: impl FnOnce(&mqtt::AsyncClient),
) {
    let before = cloud.emu.stats().closed_for("reserved_topic");
    let dev = device(cloud, client_id);
    act(&dev);
    let s = wait_stats(cloud, "reserved_topic close", |s| {
        s.closed_for("reserved_topic") == before + 1
    });
    assert_eq!(
        s.connection(client_id)
            .unwrap()
            .closed_for_policy
            .as_deref(),
        Some("reserved_topic")
    );
    assert!(
        eventually(TIMEOUT, || !dev.is_connected()),
        "{client_id} still connected"
    );
}

#[test]
fn nothing_can_subscribe_to_basic_ingest_topics_or_use_the_emulator_sink() {
    let cloud = start(|c| c.rules = vec!["known".into()]);
    assert_closed_for_reserved_topic(&cloud, "sub-rule", |d| {
        drop(d.subscribe("$aws/rules/known/#", 1));
    });
    assert_closed_for_reserved_topic(&cloud, "sub-sink", |d| {
        drop(d.subscribe("$emulator/rules/#", 1));
    });
    assert_closed_for_reserved_topic(&cloud, "pub-sink", |d| {
        drop(publish(d, "$emulator/rules/known/x", b"forged", 1));
    });
    assert_eq!(cloud.emu.stats().rule("known"), 0);
}

#[test]
fn basic_ingest_topic_limits_count_only_the_part_after_the_prefix() {
    let cloud = start(|c| c.rules = vec!["r".into()]);
    let dev = device(&cloud, "gw");
    let max = format!("$aws/rules/r/{}", "t".repeat(256));
    publish(&dev, &max, b"x", 1).wait_for(TIMEOUT).unwrap();
    drop(publish(&dev, "$aws/rules/r/1/2/3/4/5/6/7/8/9", b"x", 1));
    let s = wait_stats(&cloud, "too many levels", |s| {
        s.closed_for("topic_too_many_levels") == 1
    });
    assert_eq!(s.rule("r"), 1);
}

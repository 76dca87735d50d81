//! AWS IoT's per-connection policy, end to end with paho clients: every limit triggers,
//! is counted, and can be switched off.

mod common;

use std::time::{Duration, Instant};

use common::*;
use paho_mqtt as mqtt;

/// Publishes one packet that must get the connection closed for `reason`.
fn assert_closed_by(
    cloud: &Cloud,
    client_id: &str,
    reason: &str,
    act: impl FnOnce(&mqtt::AsyncClient),
) {
    let dev = device(cloud, client_id);
    act(&dev);
    let s = wait_stats(cloud, reason, |s| s.closed_for(reason) == 1);
    let c = s.connection(client_id).unwrap();
    assert_eq!(c.closed_for_policy.as_deref(), Some(reason));
    assert!(
        eventually(TIMEOUT, || !dev.is_connected()),
        "{client_id} still connected"
    );
}

#[test]
fn qos2_publish_closes_the_connection() {
    let cloud = start(|_| {});
    assert_closed_by(&cloud, "q2p", "qos2_publish", |d| {
        drop(publish(d, "a/b", b"x", 2));
    });
}

#[test]
fn qos2_subscribe_closes_the_connection() {
    let cloud = start(|_| {});
    assert_closed_by(&cloud, "q2s", "qos2_subscribe", |d| {
        drop(d.subscribe("a/b", 2));
    });
}

#[test]
fn payload_over_128_kib_closes_the_connection_and_128_kib_passes() {
    let cloud = start(|c| c.byte_rate = None);
    let ok = device(&cloud, "max");
    publish(&ok, "a/b", &vec![7u8; 128 * 1024], 1)
        .wait_for(TIMEOUT)
        .unwrap();
    assert_closed_by(&cloud, "big", "payload_too_large", |d| {
        drop(publish(d, "a/b", &vec![7u8; 128 * 1024 + 1], 1));
    });
    assert!(ok.is_connected());
}

#[test]
fn topic_over_256_bytes_closes_the_connection() {
    let cloud = start(|_| {});
    let ok = device(&cloud, "max");
    publish(&ok, &"t".repeat(256), b"x", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    assert_closed_by(&cloud, "long", "topic_too_long", |d| {
        drop(publish(d, &"t".repeat(257), b"x", 1));
    });
}

#[test]
fn topic_with_more_than_8_levels_closes_the_connection_under_aws_things_too() {
    let cloud = start(|_| {});
    let ok = device(&cloud, "ok");
    publish(&ok, "1/2/3/4/5/6/7/8", b"x", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    // AWS's deepest reserved shadow topics have exactly 8 levels.
    ok.subscribe("$aws/things/t/shadow/name/s/update/accepted", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    assert_closed_by(&cloud, "deep", "topic_too_many_levels", |d| {
        drop(publish(d, "1/2/3/4/5/6/7/8/9", b"x", 1));
    });
    let s = cloud.emu.stats();
    assert_eq!(s.closed_for("topic_too_many_levels"), 1);
    let dev = device(&cloud, "deep-aws");
    drop(publish(&dev, "$aws/things/t/shadow/name/s/x/y/z", b"x", 1));
    wait_stats(&cloud, "second close", |s| {
        s.closed_for("topic_too_many_levels") == 2
    });
    assert!(eventually(TIMEOUT, || !dev.is_connected()));
    assert_closed_by(&cloud, "deep-sub", "too_many_filters", |d| {
        let filters: Vec<String> = (0..9).map(|i| format!("f/{i}")).collect();
        drop(d.subscribe_many(&filters, &[1; 9]));
    });
}

#[test]
fn client_id_over_128_bytes_is_refused_with_connack() {
    let cloud = start(|_| {});
    device(&cloud, &"c".repeat(128));
    let (_cli, r) = try_device(&cloud, &"c".repeat(129), false);
    let err = r.expect_err("129-byte client id accepted");
    assert!(
        matches!(
            err,
            mqtt::Error::ConnectReturn(mqtt::ConnectReturnCode::IdentifierRejected)
        ),
        "{err:?}"
    );
    let s = wait_stats(&cloud, "refusal", |s| {
        s.closed_for("client_id_too_long") == 1
    });
    assert_eq!((s.connects, s.connects_refused), (1, 1));
}

/// Sends `n` QoS 1 publishes as fast as paho allows, then counts PUBACKs.
fn burst(cloud: &Cloud, client_id: &str, n: usize, payload: &[u8]) -> (usize, Duration) {
    let dev = device(cloud, client_id);
    let t0 = Instant::now();
    let tokens: Vec<_> = (0..n)
        .map(|i| publish(&dev, &format!("burst/{i}"), payload, 1))
        .collect();
    let sent_in = t0.elapsed();
    wait_stats(cloud, "all publishes judged", |s| {
        let c = s.connection(client_id).unwrap();
        (c.publishes_accepted + c.publishes_throttled) as usize == n
    });
    let accepted = cloud
        .emu
        .stats()
        .connection(client_id)
        .unwrap()
        .publishes_accepted as usize;
    // Accepted publishes are acknowledged; throttled ones never are.
    let mut acked = 0;
    for t in tokens {
        if acked == accepted {
            break;
        }
        if t.wait_for(TIMEOUT).is_ok() {
            acked += 1;
        }
    }
    assert_eq!(acked, accepted);
    (acked, sent_in)
}

#[test]
fn publish_rate_150_in_one_second_gets_about_100_pubacks() {
    let cloud = start(|_| {});
    let (acked, sent_in) = burst(&cloud, "burst", 150, b"x");
    assert!(sent_in < Duration::from_secs(1), "sending took {sent_in:?}");
    assert_eq!(
        acked, 100,
        "sliding window admits exactly 100 within one second"
    );
    let s = cloud.emu.stats();
    assert_eq!(s.publishes_throttled, 50);
    assert_eq!(s.connection("burst").unwrap().publishes_throttled, 50);
}

#[test]
fn byte_rate_throttles_beyond_512_kib_per_second() {
    let cloud = start(|_| {});
    let (acked, sent_in) = burst(&cloud, "bytes", 7, &vec![1u8; 100_000]);
    assert!(sent_in < Duration::from_secs(1), "sending took {sent_in:?}");
    assert_eq!(acked, 5, "5 x 100 kB fit in 512 KiB, the 6th does not");
    assert_eq!(cloud.emu.stats().publishes_throttled, 2);
}

#[test]
fn limits_switched_off_pass_everything() {
    let cloud = start(|c| *c = c.clone().without_limits());
    let (acked, _) = burst(&cloud, "raw", 150, b"x");
    assert_eq!(acked, 150);
    let dev = device(&cloud, "raw2");
    publish(&dev, &"t/".repeat(20), &vec![0u8; 200_000], 2)
        .wait_for(TIMEOUT)
        .unwrap();
    let s = cloud.emu.stats();
    assert_eq!(s.publishes_throttled, 0);
    assert!(s.closed_for_policy.is_empty(), "{:?}", s.closed_for_policy);
}

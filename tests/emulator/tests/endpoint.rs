//! The TLS endpoint: mutual TLS, ALPN, SNI, relaying to the private broker, restarts.

mod common;

use std::time::Duration;

use aws_iot_emulator::{testcerts, Emulator, EmulatorConfig};
use common::*;

#[test]
fn device_and_cloud_exchange_messages_through_tls() {
    let cloud = start(|_| {});
    let up = cloud_client(&cloud, "cloud-up");
    let up_rx = up.start_consuming();
    subscribe(&up, "devices/+/telemetry");

    let dev = device(&cloud, "device-1");
    let down_rx = dev.start_consuming();
    subscribe(&dev, "commands/device-1");

    publish(&dev, "devices/device-1/telemetry", b"21.5", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    let m = recv(&up_rx);
    assert_eq!(
        (m.topic(), m.payload()),
        ("devices/device-1/telemetry", &b"21.5"[..])
    );

    publish(&up, "commands/device-1", b"reboot", 1)
        .wait_for(TIMEOUT)
        .unwrap();
    let m = recv(&down_rx);
    assert_eq!(
        (m.topic(), m.payload()),
        ("commands/device-1", &b"reboot"[..])
    );

    let s = cloud.emu.stats();
    let c = s.connection("device-1").unwrap();
    assert_eq!(c.cn.as_deref(), Some("device-1"));
    assert_eq!(c.publishes_accepted, 1);
    assert!(c.open);
    assert_eq!(s.connects, 1);
    assert_eq!(s.publishes_accepted, 1);
}

#[test]
fn client_without_certificate_cannot_connect() {
    let cloud = start(|_| {});
    let cli = client(&format!("ssl://localhost:{}", cloud.emu.port()), "anon");
    let opts = connect_options(Some(ssl_options(&cloud.certs.ca_cert, None, false)));
    assert!(cli.connect(opts).wait_for(TIMEOUT).is_err());
    let s = wait_stats(&cloud, "tls failure", |s| s.tls_failed >= 1);
    assert_eq!(s.connects, 0);
}

#[test]
fn client_with_certificate_from_another_ca_cannot_connect() {
    let cloud = start(|_| {});
    let other = testcerts::generate_untrusted(cloud.dir.path(), "device-1").unwrap();
    let cli = client(&format!("ssl://localhost:{}", cloud.emu.port()), "intruder");
    let ssl = ssl_options(
        &cloud.certs.ca_cert,
        Some((&other.client_cert, &other.client_key)),
        false,
    );
    assert!(cli
        .connect(connect_options(Some(ssl)))
        .wait_for(TIMEOUT)
        .is_err());
    let s = wait_stats(&cloud, "tls failure", |s| s.tls_failed >= 1);
    assert_eq!(s.connects, 0);
}

#[test]
fn alpn_connection_works_and_is_recorded() {
    let cloud = start(|c| c.require_alpn = true);
    let (dev, r) = try_device(&cloud, "alpn-dev", true);
    r.unwrap();
    publish(&dev, "a/b", b"x", 1).wait_for(TIMEOUT).unwrap();
    let s = cloud.emu.stats();
    assert_eq!(
        s.connection("alpn-dev").unwrap().alpn.as_deref(),
        Some("x-amzn-mqtt-ca")
    );
    // The same emulator refuses a client that does not offer the protocol.
    let (_plain, r) = try_device(&cloud, "plain-dev", false);
    assert!(r.is_err());
    wait_stats(&cloud, "tls failure", |s| s.tls_failed >= 1);
}

#[test]
fn plain_8883_style_connection_without_alpn_works_by_default() {
    let cloud = start(|_| {});
    let (_dev, r) = try_device(&cloud, "plain-dev", false);
    r.unwrap();
    assert_eq!(
        cloud.emu.stats().connection("plain-dev").unwrap().alpn,
        None
    );
}

#[test]
fn sni_must_match_the_configured_host_name() {
    let cloud = start(|c| c.server_name = Some("localhost".into()));
    let (_ok, r) = try_device(&cloud, "by-name", false);
    r.unwrap();
    // The server certificate is valid for 127.0.0.1 too, so only the SNI check can refuse this.
    let c = &cloud.certs;
    let cli = client(&format!("ssl://127.0.0.1:{}", cloud.emu.port()), "by-ip");
    let ssl = ssl_options(&c.ca_cert, Some((&c.client_cert, &c.client_key)), false);
    assert!(cli
        .connect(connect_options(Some(ssl)))
        .wait_for(TIMEOUT)
        .is_err());
    wait_stats(&cloud, "tls failure", |s| s.tls_failed >= 1);
}

#[test]
fn second_connection_with_the_same_client_id_closes_the_first() {
    let cloud = start(|_| {});
    let first = device(&cloud, "twin");
    let _second = device(&cloud, "twin");
    assert!(
        eventually(TIMEOUT, || !first.is_connected()),
        "first connection still open"
    );
    let s = wait_stats(&cloud, "one open connection", |s| s.connections_open == 1);
    assert_eq!(s.connects, 2);
}

#[test]
fn stop_closes_connections_and_a_new_emulator_can_take_the_same_port() {
    let mut cloud = start(|_| {});
    let dev = device(&cloud, "dev");
    let addr = cloud.emu.addr();
    cloud.emu.stop();
    assert!(
        eventually(TIMEOUT, || !dev.is_connected()),
        "device still connected after stop"
    );

    let mut cfg = EmulatorConfig::from_certs(&cloud.certs);
    cfg.listen = addr;
    let emu2 = Emulator::start(cfg).unwrap();
    assert_eq!(emu2.addr(), addr);
    let cloud2 = Cloud {
        emu: emu2,
        certs: cloud.certs.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let dev2 = device(&cloud2, "dev");
    publish(&dev2, "x", b"1", 1).wait_for(TIMEOUT).unwrap();
}

#[test]
fn stats_file_is_written_periodically_and_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stats.json");
    let p = path.clone();
    let mut cloud = start(move |c| c.stats_file = Some(p));
    let dev = device(&cloud, "dev");
    publish(&dev, "x", b"1", 1).wait_for(TIMEOUT).unwrap();
    let read = || -> Option<aws_iot_emulator::Stats> {
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    };
    assert!(
        eventually(Duration::from_secs(2), || read()
            .is_some_and(|s| s.publishes_accepted == 1)),
        "stats file never showed the publish"
    );
    cloud.emu.stop();
    let s = read().unwrap();
    assert_eq!(s.connections_open, 0);
    assert_eq!(s.connections[0].cn.as_deref(), Some("device-1"));
}

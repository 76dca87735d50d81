//! The test harness itself: a helper that starts a server never accepts a listener it did not
//! start (another test's broker answering on a port ours failed to bind).

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::*;

#[test]
fn mosquitto_does_not_take_a_port_another_listener_holds() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let broker = Mosquitto::plain_preferring(taken);
    assert_ne!(broker.port, taken, "{}", broker.log());
    assert!(
        broker.log().contains("Address already in use"),
        "{}",
        broker.log()
    );
    // The broker that is returned is a real MQTT broker: a message goes round through it.
    let probe = Probe::connect(&broker.uri(), "harness-probe", &["harness/t"]);
    probe.publish("harness/t", b"x", 1);
    let m = probe.expect(Duration::from_secs(5), "the message through our own broker");
    assert_eq!(m.payload(), b"x");
}

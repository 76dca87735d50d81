//! Tests of the intake's rumqttc options.

use super::*;

fn connection(uri: &str) -> LocalConnection {
    LocalConnection::for_tests(uri)
}

#[test]
fn both_sessions_are_persistent_with_manual_acknowledgements() {
    let c = connection("tcp://localhost:1883");
    for (session, id) in [
        (Session::Main, "awslink"),
        (Session::Control, "awslink-control"),
    ] {
        let options = mqtt_options(&c, session).unwrap();
        assert_eq!(options.broker_address(), ("localhost".to_string(), 1883));
        assert_eq!(options.client_id(), id);
        assert!(!options.clean_session());
        assert!(options.manual_acks());
    }
}

#[test]
fn a_bad_uri_or_a_missing_ca_file_says_what_to_fix() {
    let err = |uri: &str| {
        mqtt_options(&connection(uri), Session::Main)
            .err()
            .unwrap_or_default()
    };
    assert!(err("ws://localhost:1883").contains("use tcp:// or ssl://"));
    assert!(err("tcp://localhost:x").contains("not a number"));
    // One parser for the configuration and the intake: the same default port in both.
    let options = mqtt_options(&connection("tcp://localhost"), Session::Main).unwrap();
    assert_eq!(options.broker_address(), ("localhost".to_string(), 1883));
    let mut c = connection("ssl://localhost:8883");
    c.ca_cert = Some("/nonexistent/ca.pem".into());
    let e = mqtt_options(&c, Session::Control).err().unwrap_or_default();
    assert!(e.starts_with("localCACert /nonexistent/ca.pem"), "{e}");
}

//! awslink's local publishing session and its cloud link are Paho C async clients with clean
//! sessions. Paho C 1.3.14 freed a QoS 1 publish twice when its socket write failed because the
//! broker had just closed the connection (Paho had not noticed yet): awslink aborted with
//! "free(): double free detected" (seen when the local Mosquitto died as a command arrived).
//! The vendored paho-mqtt-sys fixes that (vendor/paho-mqtt-sys/AWSLINK-PATCHES.md).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use paho_mqtt as mqtt;

/// CONNACK, connection accepted (MQTT 3.1.1).
const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// A broker that accepts each connection, reads the CONNECT, answers CONNACK, then closes the
/// connection as soon as a PUBLISH arrives, with more of them unread (the kernel resets it).
fn resetting_broker() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 512];
            if stream.read(&mut buf).is_ok() && stream.write_all(&CONNACK).is_ok() {
                let _ = stream.read(&mut buf);
            }
        }
    });
    port
}

#[test]
fn a_qos1_publish_whose_write_fails_on_a_reset_connection_fails_without_aborting() {
    let port = resetting_broker();
    let mut failed_writes = 0;
    for round in 0..20 {
        // The options of awslink's local publishing session (actors/src/local/connection.rs).
        let client = mqtt::CreateOptionsBuilder::new()
            .server_uri(format!("tcp://127.0.0.1:{port}"))
            .client_id(format!("reset-{round}"))
            .persistence(None)
            .send_while_disconnected(true)
            .allow_disconnected_send_at_anytime(true)
            .max_buffered_messages(10_000)
            .create_client()
            .unwrap();
        let opts = mqtt::ConnectOptionsBuilder::new_v3()
            .clean_session(true)
            .keep_alive_interval(Duration::from_secs(30))
            .finalize();
        client
            .connect(opts)
            .wait_for(Duration::from_secs(10))
            .unwrap();

        // Publish until Paho has closed the session (it empties a clean session in the same step
        // that marks it disconnected: the double free aborted the test process there).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tokens = Vec::new();
        while client.is_connected() {
            assert!(
                Instant::now() < deadline,
                "the broker never reset the connection"
            );
            tokens.push(client.publish(mqtt::Message::new("t", vec![b'x'; 2048], 1)));
        }
        // The publish whose write failed reports Paho's socket error (-1, a general `Failure`);
        // those in flight when the session closed report `OperationIncomplete`; the rest stay
        // buffered.
        for token in tokens {
            let mut token = mqtt::Token::from(token);
            if let Some(Err(mqtt::Error::Failure)) = token.try_wait() {
                failed_writes += 1;
            }
        }
    }
    eprintln!("{failed_writes} publishes failed in a socket write in 20 rounds");
    assert!(
        failed_writes > 0,
        "no publish hit the reset connection: the test did not exercise the failing write"
    );
}

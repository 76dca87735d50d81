//! No output of awslink carries a secret, at TRACE, whatever crate writes it: the cloud and
//! local passwords and the private key's bytes never appear in what `run`, `check` and
//! `config check` print or log (paho-mqtt logs its connect options, password included, at
//! DEBUG: awslink's logger redacts them).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const DEVICE: &str = "gw-secret";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(20);
// Quotes and a backslash: paho prints passwords with Debug, which escapes them.
const CLOUD_PASSWORD: &str = "cloud-Pa55\"w'o\\rd-xyzzy";
// Short: searched for between the quotes Debug prints.
const LOCAL_PASSWORD: &str = "q7z";

/// The base64 lines of a PEM private key.
fn key_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

fn assert_no_secret(what: &str, text: &str, key: &[String]) {
    let cstring = |s: &str| format!("{:?}", std::ffi::CString::new(s).unwrap());
    let forms = [
        CLOUD_PASSWORD.to_string(),
        format!("{CLOUD_PASSWORD:?}"),
        cstring(CLOUD_PASSWORD),
        format!("{LOCAL_PASSWORD:?}"),
        cstring(LOCAL_PASSWORD),
    ];
    for form in forms {
        assert!(
            !text.contains(&form),
            "{what} shows a password ({form}):\n{text}"
        );
    }
    for line in key {
        assert!(
            !text.contains(line.as_str()),
            "{what} shows key bytes:\n{text}"
        );
    }
}

#[test]
fn no_output_of_run_check_or_config_check_carries_a_password_or_key_bytes_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let local = Mosquitto::plain();
    let cloud = Mosquitto::tls(TlsListener::server(&certs));
    let key = key_lines(&certs.client_key);
    assert!(key.len() > 2, "a real key has several base64 lines");
    let mut awslink = Awslink::start_with_env(
        &AwslinkSetup {
            dir: dir.path(),
            cloud_port: cloud.port,
            local_uri: local.uri(),
            certs: &certs,
            device_id: DEVICE,
            extra: json!({
                "username": "gateway", "password": CLOUD_PASSWORD,
                "localUsername": "awslink", "localPassword": LOCAL_PASSWORD,
                "logLevel": "TRACE"
            }),
        },
        &[("RUST_LOG", "trace")],
    );
    let status = Probe::connect(&local.uri(), "status-watch", &[STATUS]);
    status.expect_json(STATUS, T, "connected", |v| v["connected"] == json!(true));
    // paho's connect options (with the password) were logged, and redacted.
    awslink.wait_for_log("[redacted]", T);
    let (code, _) = awslink.terminate();
    assert_eq!(code, Some(0));
    assert_no_secret("run's log", &awslink.log(), &key);

    let config = awslink.config_path.to_string_lossy().into_owned();
    for args in [
        vec!["config", "check", "--config", &config],
        vec!["check", "--config", &config],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_awslink"))
            .args(&args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.is_empty(), "{args:?} printed nothing");
        assert_no_secret(&format!("{args:?}"), &text, &key);
    }
}

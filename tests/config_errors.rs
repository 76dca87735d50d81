//! `awslink run` and `awslink config check` refuse bad configuration with exit code 2 and one line
//! that names the key or file (issue 3 scenario 7).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};
use support::{awslink_command, Certs};

fn write_config(dir: &Path, config: &Value) -> String {
    let path = dir.join("config.json");
    fs::write(&path, config.to_string()).unwrap();
    path.display().to_string()
}

fn good(certs: &Certs, dir: &Path) -> Value {
    json!({
        "address": "mqtts://localhost:8883",
        "caCert": certs.ca, "cert": certs.client_cert, "key": certs.client_key,
        "buffer": {"path": dir.join("buffer")}
    })
}

/// Runs both commands on `config`; both must exit 2 with one stderr line containing `want`.
fn assert_refused(dir: &Path, config: &Value, want: &str) {
    let path = write_config(dir, config);
    for command in [
        vec!["config", "check", "--config", &path],
        vec!["run", "--config", &path],
    ] {
        let (code, _, stderr) = awslink_command(&command);
        assert_eq!(code, Some(2), "{command:?} on {config}: stderr {stderr}");
        assert!(
            stderr.contains(want),
            "{command:?}: stderr {stderr:?} lacks {want:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    }
}

#[test]
fn config_errors_exit_2_and_name_the_key_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), "dev-1");
    let base = good(&certs, dir.path());

    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("address");
    assert_refused(dir.path(), &missing, "config key \"address\": is required");

    let mut unknown = base.clone();
    unknown["bufer"] = json!({});
    assert_refused(
        dir.path(),
        &unknown,
        "config key \"bufer\" is unknown; did you mean \"buffer\"?",
    );

    let mut wrong_type = base.clone();
    wrong_type["keepAliveSecs"] = json!("sixty");
    assert_refused(
        dir.path(),
        &wrong_type,
        "config key \"keepAliveSecs\": \"sixty\" is not an integer",
    );

    let mut missing_cert = base.clone();
    missing_cert["cert"] = json!(dir.path().join("nope.pem"));
    assert_refused(
        dir.path(),
        &missing_cert,
        "config key \"cert\": cannot read ",
    );
    assert_refused(dir.path(), &missing_cert, "nope.pem");

    let mut bad_rule = base.clone();
    bad_rule["routes"] = json!([
        {"filter": "telemetry///hot/#", "basicIngestRule": "hot"},
        {"filter": "telemetry/#", "basicIngestRule": "all-telemetry"},
    ]);
    assert_refused(
        dir.path(),
        &bad_rule,
        "config key \"routes[1].basicIngestRule\": \"all-telemetry\" contains '-'; an AWS IoT rule name allows only a-z A-Z 0-9 _",
    );

    let mut bad_lane = base.clone();
    bad_lane["lanes"] = json!({"events": {"minShare": 0.7}, "telemetry": {"minShare": 0.3}});
    assert_refused(
        dir.path(),
        &bad_lane,
        "config key \"lanes.telemetry.minShare\": events' and telemetry's minimum shares sum to 1",
    );

    fs::set_permissions(&certs.client_key, fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        dir.path(),
        &base,
        &format!("run: chmod 600 {}", certs.client_key.display()),
    );
    fs::set_permissions(&certs.client_key, fs::Permissions::from_mode(0o600)).unwrap();

    let (code, _, stderr) = awslink_command(&["run", "--config", "/nonexistent/awslink.json"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot read config file /nonexistent/awslink.json"),
        "{stderr}"
    );
}

#[test]
fn config_check_accepts_a_good_file_takes_the_device_id_from_the_certificate_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), "dev-from-cn");
    let mut config = good(&certs, dir.path());
    config["password"] = json!("s3cret-Password");
    config["localPassword"] = json!("local-s3cret");
    config["routes"] = json!([{"filter": "telemetry/#", "basicIngestRule": "all_telemetry"}]);
    config["lanes"] = json!({"telemetry": {"filters": ["event/+/+/heartbeat"], "maxAgeSecs": 600}});
    let path = write_config(dir.path(), &config);
    let (code, stdout, stderr) = awslink_command(&["config", "check", "--config", &path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("device id        dev-from-cn"), "{stdout}");
    assert!(
        stdout.contains("routes[0]        telemetry/# -> Basic Ingest rule all_telemetry"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "lane telemetry   minimum share 10 %, expires after 600 s, also takes event/+/+/heartbeat"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("lane control     first, never expires"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cret"),
        "secrets must not be printed: {stdout}"
    );

    let (code, stdout, _) = awslink_command(&[
        "config",
        "check",
        "--config",
        &path,
        "--device-id",
        "other-id",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("device id        other-id"),
        "CLI overrides the file: {stdout}"
    );
}

#[test]
fn help_and_version() {
    let (code, stdout, _) = awslink_command(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("awslink "), "{stdout}");
    let (code, stdout, _) = awslink_command(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("run") && stdout.contains("config"),
        "{stdout}"
    );
}

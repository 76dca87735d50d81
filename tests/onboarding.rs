//! Onboarding commands through the binary: `awslink cert create|csr|show` (checked against the
//! `openssl` CLI) and `awslink check` against a TLS Mosquitto that requires client certificates,
//! with one test per diagnosis.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use aws_iot_emulator::testcerts::Ca;
use serde_json::json;
use support::*;

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn cert_create_then_show_prints_openssls_thumbprint_and_the_key_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let (code, stdout, stderr) = awslink_command(&[
        "cert",
        "create",
        "--device-id",
        "gw:dev_1-a",
        "--out-dir",
        path_str(&out),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let key = out.join("gw:dev_1-a.key");
    let pem = out.join("gw:dev_1-a.pem");
    assert!(
        stdout.contains(&format!("wrote {}", key.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("register-certificate-without-ca"),
        "{stdout}"
    );
    assert_eq!(mode(&key), 0o600);
    assert!(!stdout.contains("PRIVATE KEY"), "no key material: {stdout}");

    let subject = openssl(&["x509", "-noout", "-subject", "-in", path_str(&pem)]);
    assert!(
        subject.contains("CN = gw:dev_1-a") || subject.contains("CN=gw:dev_1-a"),
        "{subject}"
    );
    let fingerprint = openssl(&[
        "x509",
        "-fingerprint",
        "-sha256",
        "-noout",
        "-in",
        path_str(&pem),
    ]);
    let sha256 = fingerprint.trim().split_once('=').unwrap().1;

    let (code, shown, stderr) = awslink_command(&["cert", "show", path_str(&pem)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        shown.contains(&format!("SHA-256      {sha256}\n")),
        "{shown} lacks {sha256}"
    );
    assert!(shown.contains("subject      CN=gw:dev_1-a"), "{shown}");
    assert!(shown.contains("days left    365"), "{shown}");
    assert!(shown.contains("key          EC P-256"), "{shown}");
    assert!(!shown.contains("WARNING"), "{shown}");

    // The same certificate through --config.
    let config = dir.path().join("config.json");
    let settings = json!({"address": "mqtts://localhost:8883", "cert": pem, "key": key});
    fs::write(&config, settings.to_string()).unwrap();
    let (code, via_config, _) = awslink_command(&["cert", "show", "--config", path_str(&config)]);
    assert_eq!(code, Some(0));
    assert_eq!(via_config, shown);
}

#[test]
fn cert_create_refuses_to_overwrite_without_force_and_show_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = path_str(dir.path());
    let create = ["cert", "create", "--device-id", "dev-1", "--out-dir", out];
    assert_eq!(awslink_command(&create).0, Some(0));
    let key = dir.path().join("dev-1.key");
    let before = fs::read(&key).unwrap();

    let (code, _, stderr) = awslink_command(&create);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{} already exists", key.display())) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(fs::read(&key).unwrap(), before, "the key must be untouched");

    let mut forced = create.to_vec();
    forced.extend(["--force", "--key-type", "rsa-2048", "--days", "10"]);
    let (code, _, stderr) = awslink_command(&forced);
    assert_eq!(code, Some(0), "{stderr}");
    assert_ne!(fs::read(&key).unwrap(), before, "--force replaces the key");
    assert_eq!(mode(&key), 0o600);
    let pem = dir.path().join("dev-1.pem");
    let (_, shown, _) = awslink_command(&["cert", "show", path_str(&pem)]);
    assert!(shown.contains("key          RSA 2048 bits"), "{shown}");
    assert!(
        shown.contains("WARNING: the certificate expires in 10 days"),
        "{shown}"
    );

    let (code, _, stderr) = awslink_command(&["cert", "create", "--device-id", "bad/id"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--device-id \"bad/id\""), "{stderr}");

    let missing = dir.path().join("missing.pem");
    let (code, _, stderr) = awslink_command(&["cert", "show", path_str(&missing)]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains(path_str(&missing)), "{stderr}");
    let (code, _, stderr) = awslink_command(&["cert", "show", path_str(&key)]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("{} is not a PEM certificate", key.display())),
        "{stderr}"
    );
}

#[test]
fn cert_csr_verifies_with_openssl_and_reuses_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = path_str(dir.path());
    let csr = ["cert", "csr", "--device-id", "dev-7", "--out-dir", out];
    let (code, stdout, stderr) = awslink_command(&csr);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("create-certificate-from-csr"), "{stdout}");
    let key = dir.path().join("dev-7.key");
    let request = dir.path().join("dev-7.csr");
    assert_eq!(mode(&key), 0o600);
    openssl(&["req", "-verify", "-noout", "-in", path_str(&request)]);
    let subject = openssl(&["req", "-noout", "-subject", "-in", path_str(&request)]);
    assert!(
        subject.contains("CN = dev-7") || subject.contains("CN=dev-7"),
        "{subject}"
    );

    let before = fs::read(&key).unwrap();
    let (code, stdout, _) = awslink_command(&csr);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("reusing"), "{stdout}");
    assert_eq!(
        fs::read(&key).unwrap(),
        before,
        "the existing key is reused"
    );
    openssl(&["req", "-verify", "-noout", "-in", path_str(&request)]);
}

/// A TLS "cloud" Mosquitto and a config for `awslink check` against it.
struct CheckSetup {
    dir: tempfile::TempDir,
    certs: Certs,
}

impl CheckSetup {
    fn new() -> CheckSetup {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path(), "dev-check");
        CheckSetup { dir, certs }
    }

    fn broker(&self, cert: &Path, key: &Path) -> Mosquitto {
        Mosquitto::tls(TlsListener {
            ca: self.certs.ca.clone(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Runs `awslink check` with a config for `port`; `ca`, `cert`, `key` override the good ones.
    fn check(
        &self,
        port: u16,
        ca: Option<&Path>,
        cert: Option<(&Path, &Path)>,
    ) -> (Option<i32>, String, String) {
        self.check_with(port, ca, cert, &[])
    }

    /// [`CheckSetup::check`] with more command-line arguments.
    fn check_with(
        &self,
        port: u16,
        ca: Option<&Path>,
        cert: Option<(&Path, &Path)>,
        args: &[&str],
    ) -> (Option<i32>, String, String) {
        let path = self.check_config(port, ca, cert);
        let mut command = vec!["check", "--config", path_str(&path)];
        command.extend_from_slice(args);
        awslink_command(&command)
    }

    /// The certificate file of a CA that signed nothing here (`other-ca.pem`).
    fn other_ca(&self) -> std::path::PathBuf {
        let other = Ca::new("some other CA").unwrap();
        other.write(self.dir.path(), "other-ca").unwrap().0
    }

    /// Writes the configuration [`CheckSetup::check`] runs with and returns its path.
    fn check_config(
        &self,
        port: u16,
        ca: Option<&Path>,
        cert: Option<(&Path, &Path)>,
    ) -> std::path::PathBuf {
        let (cert, key) = cert.unwrap_or((&self.certs.client_cert, &self.certs.client_key));
        let config = json!({
            "address": format!("mqtts://localhost:{port}"),
            "caCert": ca.unwrap_or(&self.certs.ca),
            "cert": cert,
            "key": key,
            "buffer": {"path": self.dir.path().join("buffer")}
        });
        let path = self.dir.path().join("check.json");
        fs::write(&path, config.to_string()).unwrap();
        path
    }
}

fn assert_failed(result: &(Option<i32>, String, String), step: &str, diagnosis: &str) {
    assert_failed_at(result, &[step], diagnosis);
}

/// Exit 1, one FAIL line at one of `steps`, and the diagnosis as the one line on stderr.
fn assert_failed_at(result: &(Option<i32>, String, String), steps: &[&str], diagnosis: &str) {
    let (code, stdout, stderr) = result;
    assert_eq!(*code, Some(1), "stdout {stdout}\nstderr {stderr}");
    let step = steps
        .iter()
        .find(|s| stdout.contains(&format!("FAIL  {s}")))
        .unwrap_or_else(|| panic!("no FAIL line at {steps:?}: {stdout}"));
    assert!(
        stderr.contains(&format!("check failed at {step}: {diagnosis}")),
        "stderr {stderr:?} lacks {diagnosis:?}\nstdout {stdout}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn check_passes_against_the_tls_broker_listing_each_step() {
    let s = CheckSetup::new();
    let broker = s.broker(&s.certs.server_cert, &s.certs.server_key);
    let (code, stdout, stderr) = s.check(broker.port, None, None);
    assert_eq!(
        code,
        Some(0),
        "stdout {stdout}\nstderr {stderr}\n{}",
        broker.log()
    );
    for step in [
        "DNS resolve",
        "TCP connect",
        "TLS handshake",
        "MQTT CONNECT",
        "SUBSCRIBE",
        "PUBLISH",
        "echo",
    ] {
        assert!(
            stdout.contains(&format!("  ok    {step}")),
            "{step} missing: {stdout}"
        );
    }
    assert!(
        stdout.contains("dev-check/awslink/check granted QoS 1"),
        "{stdout}"
    );
    assert!(stdout.contains("check passed"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
}

#[test]
fn check_diagnoses_a_refused_tcp_connection() {
    let s = CheckSetup::new();
    let result = s.check(free_port(), None, None);
    assert_failed(
        &result,
        "TCP connect",
        "TCP connection refused by localhost:",
    );
}

#[test]
fn check_diagnoses_an_untrusted_server_certificate() {
    let s = CheckSetup::new();
    let broker = s.broker(&s.certs.server_cert, &s.certs.server_key);
    let other_ca = s.other_ca();
    let result = s.check(broker.port, Some(&other_ca), None);
    assert_failed(&result, "TLS handshake", "server certificate not trusted");
    assert!(
        result.2.contains("other-ca.pem"),
        "names the caCert: {}",
        result.2
    );
}

/// The CA that signed the server is in the system store (OpenSSL's `SSL_CERT_FILE`), but
/// `caCert` names another: the handshake must fail, as a set `caCert` is the only trust.
#[test]
fn a_set_ca_cert_is_the_only_trust_not_the_system_store() {
    let s = CheckSetup::new();
    let broker = s.broker(&s.certs.server_cert, &s.certs.server_key);
    let other_ca = s.other_ca();
    let config = s.check_config(broker.port, Some(&other_ca), None);
    let in_system_store = |ca: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_awslink"))
            .args(["check", "--config", path_str(&config)])
            .env("SSL_CERT_FILE", ca)
            .env("SSL_CERT_DIR", s.dir.path().join("no-such-dir"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let result = in_system_store(&s.certs.ca);
    assert_failed(&result, "TLS handshake", "server certificate not trusted");
    assert!(result.2.contains("other-ca.pem"), "{}", result.2);

    // Without a caCert the system store is the trust: the same server passes.
    let config = json!({
        "address": format!("mqtts://localhost:{}", broker.port),
        "cert": s.certs.client_cert,
        "key": s.certs.client_key,
        "buffer": {"path": s.dir.path().join("buffer")}
    });
    fs::write(s.dir.path().join("check.json"), config.to_string()).unwrap();
    let (code, stdout, stderr) = in_system_store(&s.certs.ca);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
}

#[test]
fn check_diagnoses_a_hostname_mismatch() {
    let s = CheckSetup::new();
    let broker = s.broker(&s.certs.wrong_name_cert, &s.certs.wrong_name_key);
    let result = s.check(broker.port, None, None);
    assert_failed(
        &result,
        "TLS handshake",
        "hostname mismatch: the server certificate is for not-this-host.example, not localhost",
    );
}

#[test]
fn check_diagnoses_a_rejected_client_certificate() {
    let s = CheckSetup::new();
    let broker = s.broker(&s.certs.server_cert, &s.certs.server_key);
    let untrusted = (
        s.certs.untrusted_cert.as_path(),
        s.certs.untrusted_key.as_path(),
    );
    let result = s.check(broker.port, None, Some(untrusted));
    // With TLS 1.3 the server's alert comes after the handshake; should it come later than the
    // check waits for it, paho's CONNECT fails and the same diagnosis is made there.
    assert_failed_at(
        &result,
        &["TLS handshake", "MQTT CONNECT"],
        "client certificate rejected by the server",
    );
    assert!(
        result.2.contains("not registered or not ACTIVE in AWS IoT"),
        "{}",
        result.2
    );
}

#[test]
fn check_refuses_a_bad_config_with_exit_2() {
    let (code, _, stderr) = awslink_command(&["check", "--config", "/nonexistent/awslink.json"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent/awslink.json"), "{stderr}");
}

/// A TLS Mosquitto with an ACL file (the harness's brokers have none); killed on drop.
fn acl_broker(s: &CheckSetup, acl: &str) -> Mosquitto {
    let acl_path = s.dir.path().join("acl");
    fs::write(&acl_path, acl).unwrap();
    Mosquitto::tls_with(
        TlsListener::server(&s.certs),
        &format!("acl_file {}", acl_path.display()),
    )
}

#[test]
fn check_diagnoses_a_missing_echo() {
    let s = CheckSetup::new();
    // Mosquitto's ACL lets the device use other topics only: the PUBLISH is acknowledged but
    // never delivered, as AWS IoT does without iot:Publish / iot:Receive on the topic.
    let broker = acl_broker(&s, "user dev-check\ntopic readwrite elsewhere/#\n");
    let result = s.check_with(broker.port, None, None, &["--timeout", "1"]);
    assert_failed(
        &result,
        "echo",
        "no echo within 1 s: the AWS IoT policy must allow iot:Publish and iot:Receive on topic/dev-check/awslink/check",
    );
    for step in ["MQTT CONNECT", "SUBSCRIBE", "PUBLISH"] {
        assert!(
            result.1.contains(&format!("  ok    {step}")),
            "{}",
            result.1
        );
    }
}

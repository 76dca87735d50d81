//! `awslink provision` (fleet provisioning by claim) through the AWS IoT emulator's
//! provisioning service: the issued certificate chains to the CA, names the thing, and a normal
//! `awslink check` works with it; rejections exit 1 with AWS's error; bad arguments exit 2.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use aws_iot_emulator::provisioning::Template;
use aws_iot_emulator::testcerts::{self, CertPaths};
use aws_iot_emulator::{Emulator, EmulatorConfig};
use serde_json::json;
use support::awslink_command;

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An emulator with provisioning on (templates `awslink-demo` and `fleet` with prefix `gw-`)
/// and SNI required; the test CA's device certificate is the claim certificate.
struct Setup {
    emulator: Emulator,
    certs: CertPaths,
    dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let certs = testcerts::generate(dir.path(), "fleet-claim").unwrap();
        let config = EmulatorConfig {
            ca_key: Some(certs.ca_key.clone()),
            provisioning_templates: vec![
                Template::new("awslink-demo"),
                Template::parse("fleet=gw-").unwrap(),
            ],
            server_name: Some("localhost".into()),
            ..EmulatorConfig::from_certs(&certs)
        };
        let emulator = Emulator::start(config).expect("emulator starts");
        Setup {
            emulator,
            certs,
            dir,
        }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// Runs `awslink provision` with the claim certificate and `args`.
    fn provision(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let address = format!("mqtts://localhost:{}", self.emulator.port());
        let out = self.out();
        let mut command = vec![
            "provision",
            "--address",
            &address,
            "--claim-cert",
            path_str(&self.certs.client_cert),
            "--claim-key",
            path_str(&self.certs.client_key),
            "--ca-cert",
            path_str(&self.certs.ca_cert),
            "--out-dir",
            path_str(&out),
            "--timeout",
            "10",
        ];
        command.extend_from_slice(args);
        awslink_command(&command)
    }
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn provision_by_claim_then_the_normal_config_passes_check() {
    let s = Setup::start();
    let (code, stdout, stderr) = s.provision(&[
        "--template",
        "awslink-demo",
        "--param",
        "SerialNumber=sn-0042",
        "--param",
        "Site=lab",
    ]);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    let key = s.out().join("sn-0042.key");
    let pem = s.out().join("sn-0042.pem");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(stdout.contains("provisioned thing \"sn-0042\""), "{stdout}");
    assert!(stdout.contains("\"deviceId\": \"sn-0042\""), "{stdout}");
    assert!(
        stdout.contains("\"cert\": ") && stdout.contains("\"key\": "),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY"), "no key material: {stdout}");

    let (ok, verified) = openssl(&[
        "verify",
        "-CAfile",
        path_str(&s.certs.ca_cert),
        path_str(&pem),
    ]);
    assert!(ok && verified.contains(": OK"), "{verified}");
    let (_, subject) = openssl(&["x509", "-noout", "-subject", "-in", path_str(&pem)]);
    assert!(
        subject.contains("CN = sn-0042") || subject.contains("CN=sn-0042"),
        "{subject}"
    );
    let stats = s.emulator.stats();
    assert_eq!(
        stats.provisioning("create_from_csr_accepted"),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.provisioning("provision_accepted"), 1, "{stats:?}");

    // The issued certificate and key in an ordinary config: awslink check passes.
    let config = json!({
        "address": format!("mqtts://localhost:{}", s.emulator.port()),
        "caCert": s.certs.ca_cert,
        "cert": pem,
        "key": key,
        "deviceId": "sn-0042",
        "buffer": {"path": s.dir.path().join("buffer")}
    });
    let config_path = s.dir.path().join("config.json");
    fs::write(&config_path, config.to_string()).unwrap();
    let (code, stdout, stderr) = awslink_command(&["check", "--config", path_str(&config_path)]);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.contains("check passed"), "{stdout}");
    let conn = s.emulator.stats();
    assert!(
        conn.connections
            .iter()
            .any(|c| c.cn.as_deref() == Some("sn-0042")),
        "{conn:?}"
    );
}

#[test]
fn a_template_prefix_names_the_thing_and_existing_files_need_force() {
    let s = Setup::start();
    let args = [
        "--template",
        "fleet",
        "--param",
        "SerialNumber=0042",
        "--key-type",
        "rsa-2048",
    ];
    let (code, stdout, stderr) = s.provision(&args);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.contains("provisioned thing \"gw-0042\""), "{stdout}");
    let pem = s.out().join("gw-0042.pem");
    let (ok, verified) = openssl(&[
        "verify",
        "-CAfile",
        path_str(&s.certs.ca_cert),
        path_str(&pem),
    ]);
    assert!(ok, "{verified}");
    let (_, text) = openssl(&["x509", "-noout", "-text", "-in", path_str(&pem)]);
    assert!(text.contains("rsaEncryption"), "{text}");

    // Provisioning again writes the same thing's files: refused without --force.
    let (code, _, stderr) = s.provision(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, stdout, stderr) = s.provision(&forced);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
}

#[test]
fn an_unknown_template_is_rejected_with_the_aws_error_and_exit_1() {
    let s = Setup::start();
    let (code, stdout, stderr) = s.provision(&["--template", "nope", "--param", "SerialNumber=x1"]);
    assert_eq!(code, Some(1), "stdout {stdout}\nstderr {stderr}");
    assert!(
        stderr.contains("provisioning rejected at RegisterThing: ResourceNotFoundException (404): The provisioning template nope does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains("check --template"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(!s.out().join("x1.key").exists());
    assert_eq!(s.emulator.stats().provisioning("provision_rejected_404"), 1);
}

#[test]
fn argument_and_file_errors_exit_2_before_connecting() {
    let s = Setup::start();
    let (code, _, stderr) = s.provision(&["--template", "awslink-demo"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--param SerialNumber=VALUE is missing"),
        "{stderr}"
    );

    let (code, _, stderr) = s.provision(&["--template", "a/b", "--param", "SerialNumber=x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--template"), "{stderr}");

    let (code, _, stderr) = s.provision(&["--template", "t", "--param", "SerialNumber=a b"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("thing name"), "{stderr}");

    fs::set_permissions(&s.certs.client_key, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = s.provision(&["--template", "t", "--param", "SerialNumber=x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert_eq!(s.emulator.stats().connects, 0);
}

//! Device keys held by a TPM 2.0 (a software TPM, swtpm, in each test's temp dir), against the
//! AWS IoT emulator: a persistent key (`keyTpmHandle`) and a Kanto configuration with the four
//! `tpm*` keys pass `config check`, `cert show` says where the key lives, `awslink check` passes
//! and messages flow; bad TPM settings exit 2 with one line naming the setting. The tests skip
//! (saying why) only where swtpm, tpm2-tools or the tpm2 OpenSSL provider are not installed.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_iot_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};
use support::swtpm::{self, SwTpm};
use support::*;

const DEVICE: &str = "gw-tpm";
const STATUS: &str = "edge/connection/remote/status";
const T: Duration = Duration::from_secs(30);
const PARENT: &str = "0x81000000";
const KEY: &str = "0x81000001";

fn skip() -> bool {
    match swtpm::missing() {
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            true
        }
        None => false,
    }
}

/// A temp dir with the test certificates, a software TPM and the emulator.
struct TpmRig {
    emulator: Emulator,
    tpm: SwTpm,
    certs: Certs,
    dir: tempfile::TempDir,
}

impl TpmRig {
    fn start() -> TpmRig {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path(), DEVICE);
        let tpm = SwTpm::start(dir.path());
        let emulator = Emulator::start(EmulatorConfig::new(
            &certs.ca,
            &certs.server_cert,
            &certs.server_key,
        ))
        .unwrap();
        TpmRig {
            emulator,
            tpm,
            certs,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// awslink's config for the emulator with `key` (the key settings) merged in; no key file.
    fn setup(&self, local_uri: String, key: Value) -> AwslinkSetup<'_> {
        let mut extra = json!({"key": ""});
        if let (Value::Object(e), Value::Object(k)) = (&mut extra, key) {
            e.extend(k);
        }
        AwslinkSetup {
            dir: self.dir.path(),
            cloud_port: self.emulator.port(),
            local_uri,
            certs: &self.certs,
            device_id: DEVICE,
            extra,
        }
    }

    /// Writes the config for `key` and returns its path.
    fn write_config(&self, key: Value, cert: &Path) -> PathBuf {
        let mut key = key;
        key["cert"] = json!(cert);
        let config = self.setup("tcp://127.0.0.1:1".into(), key).config();
        let path = self.path("check.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// `awslink run` with `key`: status connected, a telemetry message reaches the cloud.
    fn messages_flow(&self, key: Value, cert: &Path) {
        let local = Mosquitto::plain();
        let mut key = key;
        key["cert"] = json!(cert);
        let mut awslink = Awslink::start(&self.setup(local.uri(), key));
        let status = Probe::connect(&local.uri(), "status-watch", &[STATUS]);
        status.expect_json(STATUS, T, "status connected", |v| v["connected"] == true);
        awslink.wait_for_intake(T);
        let cloud = Probe::connect(
            &format!("tcp://127.0.0.1:{}", self.emulator.broker_port()),
            "cloud-app",
            &["telemetry/#"],
        );
        let sensor = Probe::connect(&local.uri(), "sensor", &[]);
        sensor.publish("telemetry", br#"{"signed":"by the TPM"}"#, 1);
        let got = cloud.expect(T, "telemetry through the TPM-keyed link");
        assert_eq!(got.topic(), format!("telemetry/tenant/{DEVICE}"));
        assert_eq!(got.payload(), br#"{"signed":"by the TPM"}"#);
        assert_eq!(awslink.terminate().0, Some(0), "{}", awslink.log());
    }
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = awslink_command(args);
    assert_eq!(code, Some(0), "{args:?}\nstdout: {out}\nstderr: {err}");
    out
}

#[test]
fn a_persistent_tpm_key_passes_config_check_cert_show_and_check_and_carries_messages() {
    if skip() {
        return;
    }
    let rig = TpmRig::start();
    rig.tpm.create_parent(PARENT);
    let public = rig.tpm.create_persistent_key(PARENT, "ecc256", KEY);
    let cert = rig.path("tpm-device.pem");
    swtpm::device_certificate(rig.dir.path(), &public, DEVICE, &cert);
    let key = json!({"keyTpmHandle": KEY, "tpmDevice": rig.tpm.tcti});
    let config = rig.write_config(key.clone(), &cert);
    let config = config.to_str().unwrap();

    let summary = run_ok(&["config", "check", "--config", config]);
    assert!(
        summary.contains(&format!("persistent handle {KEY}")),
        "{summary}"
    );
    let shown = run_ok(&["cert", "show", "--config", config]);
    assert!(
        shown.contains(&format!(
            "private key  in the TPM on {}, persistent handle {KEY} (EC prime256v1, matches the certificate)",
            rig.tpm.tcti
        )),
        "{shown}"
    );
    let checked = run_ok(&["check", "--config", config]);
    assert!(
        checked.contains(&format!(
            "device key in the TPM on {}, persistent handle {KEY}",
            rig.tpm.tcti
        )) && checked.contains("check passed"),
        "{checked}"
    );
    rig.messages_flow(key, &cert);
}

#[test]
fn a_kanto_config_with_the_four_tpm_keys_passes_config_check_and_runs() {
    if skip() {
        return;
    }
    let rig = TpmRig::start();
    rig.tpm.create_parent(PARENT);
    // Kanto's TPM backend signs with RSA-PSS: an RSA key, its blobs kept as files.
    let (private, public, public_pem) = rig.tpm.create_key(PARENT, "rsa2048", "kanto");
    let cert = rig.path("kanto-device.pem");
    swtpm::device_certificate(rig.dir.path(), &public_pem, DEVICE, &cert);
    let key = json!({
        "tpmDevice": rig.tpm.tcti,
        "tpmHandle": 0x8100_0000u32,
        "tpmKey": private,
        "tpmKeyPub": public,
    });
    let config = rig.write_config(key.clone(), &cert);
    let summary = run_ok(&["config", "check", "--config", config.to_str().unwrap()]);
    assert!(summary.contains("under parent 0x81000000"), "{summary}");
    rig.messages_flow(key, &cert);
}

#[test]
fn tpm_mistakes_exit_2_with_one_line_naming_the_setting() {
    if skip() {
        return;
    }
    let rig = TpmRig::start();
    rig.tpm.create_parent(PARENT);
    let public = rig.tpm.create_persistent_key(PARENT, "ecc256", KEY);
    let (private, _, _) = rig.tpm.create_key(PARENT, "ecc256", "other");
    let cert = rig.path("tpm-device.pem");
    swtpm::device_certificate(rig.dir.path(), &public, DEVICE, &cert);
    let tcti = rig.tpm.tcti.clone();
    let rows: Vec<(&str, Value, &str)> = vec![
        (
            "no TPM device",
            json!({"keyTpmHandle": KEY, "tpmDevice": rig.path("no-tpmrm0")}),
            "config key \"tpmDevice\":",
        ),
        (
            "no key at the handle",
            json!({"keyTpmHandle": "0x81000009", "tpmDevice": tcti}),
            "config key \"keyTpmHandle\": no usable key at persistent handle 0x81000009",
        ),
        (
            "not a persistent handle",
            json!({"keyTpmHandle": "0x80000001", "tpmDevice": tcti}),
            "config key \"keyTpmHandle\": 0x80000001 is not a persistent handle",
        ),
        (
            "blobs of two different keys",
            json!({"tpmDevice": tcti, "tpmHandle": PARENT, "tpmKey": private, "tpmKeyPub": rig.path("persistent.pub")}),
            "config key \"tpmKey\": the TPM cannot load tpmKey/tpmKeyPub",
        ),
        (
            "a public blob that is not one",
            json!({"tpmDevice": tcti, "tpmHandle": PARENT, "tpmKey": private, "tpmKeyPub": cert}),
            "config key \"tpmKeyPub\":",
        ),
        (
            "Kanto keys without tpmKey",
            json!({"tpmDevice": tcti, "tpmHandle": PARENT, "tpmKeyPub": rig.path("other.pub")}),
            "config key \"tpmKey\": is required",
        ),
    ];
    let private_blob = std::fs::read(&private).unwrap();
    for (what, key, want) in rows {
        let config = rig.write_config(key, &cert);
        let (code, out, err) =
            awslink_command(&["config", "check", "--config", config.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{what}: stdout {out} stderr {err}");
        eprintln!("{what}: {}", err.trim());
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            !err.contains("TSS2 PRIVATE KEY") && !err.contains("ERROR:"),
            "{what}: {err}"
        );
        assert!(
            !err.contains(&format!("{:02x?}", &private_blob[2..10])),
            "{what}: {err}"
        );
    }

    // One wrong password with maxTries 1 puts the TPM into dictionary-attack lockout, and then
    // it refuses the key: `run` says so and exits 2.
    rig.tpm.tool(&[
        "tpm2_dictionarylockout",
        "-s",
        "-n",
        "1",
        "-t",
        "600",
        "-l",
        "600",
    ]);
    let wrong = [
        "tpm2_create",
        "-C",
        PARENT,
        "-P",
        "wrong",
        "-G",
        "ecc256",
        "-u",
        "x.pub",
        "-r",
        "x.priv",
    ];
    assert!(
        rig.tpm.tool_result(&wrong).is_err(),
        "a wrong parent password is refused"
    );
    let config = rig.write_config(json!({"keyTpmHandle": KEY, "tpmDevice": tcti}), &cert);
    let (code, _, err) = awslink_command(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    eprintln!("lockout: {}", err.trim());
    assert!(
        err.contains("config key \"keyTpmHandle\"") && err.contains("lockout"),
        "{err}"
    );
}

#[test]
fn cert_csr_and_create_with_tpm_make_the_key_in_the_tpm_and_it_carries_messages() {
    if skip() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let rig = TpmRig::start();
    let out = rig.path("out");
    let out_s = out.to_str().unwrap();
    let tcti = rig.tpm.tcti.clone();
    let csr = [
        "cert",
        "csr",
        "--tpm",
        "--tpm-device",
        &tcti,
        "--device-id",
        DEVICE,
        "--out-dir",
        out_s,
    ];
    let said = run_ok(&csr);
    assert!(said.contains("EC P-256 (256 bits) in the TPM"), "{said}");
    let key = out.join(format!("{DEVICE}.key"));
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"),
        "{text}"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The CSR is signed by the TPM key; the CA signs it and the device connects with it.
    let req = openssl::x509::X509Req::from_pem(
        &std::fs::read(out.join(format!("{DEVICE}.csr"))).unwrap(),
    )
    .unwrap();
    let public = req.public_key().unwrap();
    assert!(req.verify(&public).unwrap(), "the CSR's signature verifies");
    let public_pem = rig.path("csr-public.pem");
    std::fs::write(&public_pem, public.public_key_to_pem().unwrap()).unwrap();
    let cert = rig.path("csr-device.pem");
    swtpm::device_certificate(rig.dir.path(), &public_pem, DEVICE, &cert);
    // A second csr reuses the TPM key (the same public key).
    let again = run_ok(&csr);
    assert!(again.contains("reusing"), "{again}");
    rig.messages_flow(json!({"key": key, "tpmDevice": tcti}), &cert);

    // cert create --tpm: a self-signed certificate whose signature is the TPM key's.
    let create = [
        "cert",
        "create",
        "--tpm",
        "--tpm-device",
        &tcti,
        "--key-type",
        "rsa-2048",
        "--device-id",
        "gw-self",
        "--out-dir",
        out_s,
    ];
    let said = run_ok(&create);
    assert!(said.contains("RSA 2048 bits in the TPM"), "{said}");
    let self_signed =
        openssl::x509::X509::from_pem(&std::fs::read(out.join("gw-self.pem")).unwrap()).unwrap();
    let public = self_signed.public_key().unwrap();
    assert!(self_signed.verify(&public).unwrap());
}

#[test]
fn provision_with_tpm_makes_the_key_in_the_tpm_and_the_issued_certificate_passes_check() {
    if skip() {
        return;
    }
    use aws_iot_emulator::provisioning::Template;
    use aws_iot_emulator::testcerts;
    let dir = tempfile::tempdir().unwrap();
    let certs = testcerts::generate(dir.path(), "fleet-claim").unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        ca_key: Some(certs.ca_key.clone()),
        provisioning_templates: vec![Template::new("awslink-demo")],
        ..EmulatorConfig::from_certs(&certs)
    })
    .unwrap();
    let tpm = SwTpm::start(dir.path());
    let out = dir.path().join("out");
    let address = format!("mqtts://localhost:{}", emulator.port());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "provision".to_string(),
        "--address".into(),
        address.clone(),
        "--claim-cert".into(),
        s(&certs.client_cert),
        "--claim-key".into(),
        s(&certs.client_key),
        "--ca-cert".into(),
        s(&certs.ca_cert),
        "--out-dir".into(),
        s(&out),
        "--template".into(),
        "awslink-demo".into(),
        "--param".into(),
        "SerialNumber=sn-tpm-1".into(),
        "--tpm".into(),
        "--tpm-device".into(),
        tpm.tcti.clone(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let said = run_ok(&args);
    assert!(said.contains("provisioned thing \"sn-tpm-1\""), "{said}");
    let key = out.join("sn-tpm-1.key");
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let config = json!({
        "address": address,
        "caCert": certs.ca_cert,
        "cert": out.join("sn-tpm-1.pem"),
        "key": key,
        "tpmDevice": tpm.tcti,
        "deviceId": "sn-tpm-1",
        "buffer": {"path": dir.path().join("buffer")}
    });
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let checked = run_ok(&["check", "--config", config_path.to_str().unwrap()]);
    assert!(checked.contains("check passed"), "{checked}");
}

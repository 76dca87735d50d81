//! A device key in a PKCS #11 token (SoftHSM in the test's temp dir) through OpenSSL's pkcs11
//! engine, against the AWS IoT emulator: `config check` and `cert show` say where the key lives,
//! messages flow, a wrong PIN exits 2 naming `pkcs11Pin` and never shows it. Skips (saying why)
//! where SoftHSM, OpenSC's pkcs11-tool or libengine-pkcs11-openssl are not installed.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_iot_emulator::{Emulator, EmulatorConfig};
use serde_json::json;
use support::*;

const DEVICE: &str = "gw-p11";
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "5678-secret";
const URI: &str = "pkcs11:token=awslink;object=device;type=private";
const T: Duration = Duration::from_secs(30);

fn missing() -> Option<String> {
    for tool in ["softhsm2-util", "pkcs11-tool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install softhsm2 opensc)"
            ));
        }
    }
    if !Path::new(MODULE).exists() {
        return Some(format!(
            "{MODULE} is not installed (apt-get install softhsm2)"
        ));
    }
    let engines = Command::new("openssl")
        .args(["version", "-e"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let dir = engines.split('"').nth(1).unwrap_or_default();
    if !Path::new(dir).join("pkcs11.so").exists() {
        return Some(
            "OpenSSL's pkcs11 engine is not installed (apt-get install libengine-pkcs11-openssl)"
                .into(),
        );
    }
    None
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_pkcs11_key_passes_config_check_and_carries_messages_and_a_wrong_pin_exits_2() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // The only test in this binary: awslink and the tools inherit the token directory.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    run(&[
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        "awslink",
        "--so-pin",
        "1234",
        "--pin",
        PIN,
    ]);
    run(&[
        "pkcs11-tool",
        "--module",
        MODULE,
        "--token-label",
        "awslink",
        "--login",
        "--pin",
        PIN,
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "device",
        "--id",
        "01",
    ]);
    let public_der = dir.path().join("public.der");
    let der = public_der.to_str().unwrap();
    run(&[
        "pkcs11-tool",
        "--module",
        MODULE,
        "--token-label",
        "awslink",
        "--read-object",
        "--type",
        "pubkey",
        "--label",
        "device",
        "-o",
        der,
    ]);
    let public =
        openssl::pkey::PKey::public_key_from_der(&std::fs::read(&public_der).unwrap()).unwrap();
    let public_pem = dir.path().join("public.pem");
    std::fs::write(&public_pem, public.public_key_to_pem().unwrap()).unwrap();

    let certs = Certs::generate(dir.path(), DEVICE);
    let cert = dir.path().join("p11-device.pem");
    swtpm::device_certificate(dir.path(), &public_pem, DEVICE, &cert);
    let emulator = Emulator::start(EmulatorConfig::new(
        &certs.ca,
        &certs.server_cert,
        &certs.server_key,
    ))
    .unwrap();
    let local = Mosquitto::plain();
    let key = |pin: &str| json!({"cert": cert, "key": "", "keyPkcs11": URI, "pkcs11Module": MODULE, "pkcs11Pin": pin});
    let setup = |pin: &str| AwslinkSetup {
        dir: dir.path(),
        cloud_port: emulator.port(),
        local_uri: local.uri(),
        certs: &certs,
        device_id: DEVICE,
        extra: key(pin),
    };
    let config_path = dir.path().join("check.json");
    let write = |pin: &str| {
        std::fs::write(
            &config_path,
            serde_json::to_vec(&setup(pin).config()).unwrap(),
        )
        .unwrap();
        config_path.to_str().unwrap().to_string()
    };

    let config = write(PIN);
    let (code, out, err) = awslink_command(&["config", "check", "--config", &config]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("client key       in the PKCS #11 token, {URI}")),
        "{out}"
    );
    assert!(!out.contains(PIN), "{out}");
    let (code, shown, err) = awslink_command(&["cert", "show", "--config", &config]);
    assert_eq!(code, Some(0), "{err}");
    assert!(shown.contains("matches the certificate"), "{shown}");

    let config = write("0000");
    let (code, out, err) = awslink_command(&["config", "check", "--config", &config]);
    assert_eq!(code, Some(2), "{out}{err}");
    eprintln!("wrong PIN: {}", err.trim());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("config key \"pkcs11Pin\""), "{err}");
    assert!(!err.contains("0000"), "the PIN is never shown: {err}");

    let mut awslink = Awslink::start(&setup(PIN));
    let status = Probe::connect(
        &local.uri(),
        "status-watch",
        &["edge/connection/remote/status"],
    );
    status.expect_json("edge/connection/remote/status", T, "connected", |v| {
        v["connected"] == true
    });
    awslink.wait_for_intake(T);
    let cloud = Probe::connect(
        &format!("tcp://127.0.0.1:{}", emulator.broker_port()),
        "cloud-app",
        &["telemetry/#"],
    );
    Probe::connect(&local.uri(), "sensor", &[]).publish("telemetry", b"signed by the token", 1);
    let got = cloud.expect(T, "telemetry through the token-keyed link");
    assert_eq!(got.payload(), b"signed by the token");
    assert_eq!(awslink.terminate().0, Some(0), "{}", awslink.log());
    assert!(!awslink.log().contains(PIN), "the PIN is not logged");
}

//! `awslink health` and the container contract (issue 8): healthy only while an awslink holds
//! the buffer, one-line reasons otherwise, exit 2 on configuration errors, works as a non-root
//! user on directories it owns, and SIGTERM stops awslink with exit 0 well within the compose
//! file's stop_grace_period (10 s).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// `awslink health --config PATH EXTRA…`; returns (exit code, stdout, stderr).
fn health(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let config = config.display().to_string();
    let mut args = vec!["health", "--config", &config];
    args.extend_from_slice(extra);
    awslink_command(&args)
}

/// Logged once the actors run (awslink installs its SIGTERM handler right after starting them;
/// a SIGTERM before that ends it by the signal's default action).
const UP: &str = "local broker session up";

fn assert_one_line(stderr: &str) {
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
}

fn setup<'a>(
    dir: &'a Path,
    certs: &'a Certs,
    broker: &Mosquitto,
    extra: Value,
) -> AwslinkSetup<'a> {
    AwslinkSetup {
        dir,
        cloud_port: free_port(),
        local_uri: broker.uri(),
        certs,
        device_id: "dev-health",
        extra,
    }
}

#[test]
fn healthy_only_while_an_awslink_holds_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), "dev-health");
    let broker = Mosquitto::plain();
    let setup = setup(dir.path(), &certs, &broker, json!({}));
    let config_path = dir.path().join("awslink.json");
    fs::write(&config_path, setup.config().to_string()).unwrap();
    let buffer = dir.path().join("buffer");

    // Never started: no buffer directory yet.
    let (code, _, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(stderr.contains("awslink is not running"), "{stderr}");
    assert!(stderr.contains(&buffer.display().to_string()), "{stderr}");
    assert_one_line(&stderr);

    // Running (the cloud is down: that is not the container's health).
    let mut awslink = Awslink::start(&setup);
    awslink.wait_for_log(UP, Duration::from_secs(10));
    let (code, stdout, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(0), "stdout {stdout} stderr {stderr}");
    assert!(stdout.starts_with("healthy: "), "{stdout}");
    assert!(stdout.contains(&buffer.display().to_string()), "{stdout}");
    // The database was not opened: awslink still owns it and keeps running.
    let (code, _, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(0), "second check: {stderr}");

    // --max-age: a metrics document (metricsIntervalSecs 1) arrives on the local broker.
    let (code, stdout, stderr) = health(&config_path, &["--max-age", "5"]);
    assert_eq!(code, Some(0), "stdout {stdout} stderr {stderr}");
    assert!(stdout.contains("metrics received within 5 s"), "{stdout}");

    // An impossible free-space floor is reported with the path.
    let (code, _, stderr) = health(&config_path, &["--min-free-mb", "1000000000"]);
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(stderr.contains("--min-free-mb"), "{stderr}");
    assert_one_line(&stderr);

    // A crash releases the lock with the process: "not running" again.
    awslink.kill();
    let (code, _, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(
        stderr.contains("awslink is not running: nothing holds the lock on"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&buffer.join("db").display().to_string()),
        "{stderr}"
    );
    assert_one_line(&stderr);

    // ... and the health check left the buffer usable: awslink starts on it again.
    awslink.restart();
    wait_until(Duration::from_secs(10), "the second local session", || {
        (awslink.log().matches(UP).count() == 2).then_some(())
    });
    let (code, _, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(0), "after restart: {stderr}");
    let (code, elapsed) = awslink.terminate();
    assert_eq!(code, Some(0), "log:\n{}", awslink.log());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn unusable_buffer_path_is_unhealthy_and_named() {
    // Tests run as root, which permission bits do not stop: use a path that is a regular file.
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), "dev-health");
    let not_a_dir = dir.path().join("buffer-is-a-file");
    fs::write(&not_a_dir, b"x").unwrap();
    let config_path = dir.path().join("awslink.json");
    let config = json!({
        "address": "mqtts://localhost:8883",
        "caCert": certs.ca, "cert": certs.client_cert, "key": certs.client_key,
        "buffer": {"path": not_a_dir}
    });
    fs::write(&config_path, config.to_string()).unwrap();
    let (code, _, stderr) = health(&config_path, &[]);
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(
        stderr.contains(&not_a_dir.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("not a directory"), "{stderr}");
    assert_one_line(&stderr);

    // A directory below a regular file cannot be created or written by anyone, root included.
    let below = not_a_dir.join("buffer");
    let (code, _, stderr) = health(
        &config_path,
        &["--buffer-path", &below.display().to_string()],
    );
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(stderr.contains(&below.display().to_string()), "{stderr}");
    assert_one_line(&stderr);
}

#[test]
fn configuration_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let (code, _, stderr) = health(&missing, &[]);
    assert_eq!(code, Some(2), "stderr {stderr}");
    assert!(stderr.contains("nope.json"), "{stderr}");
    assert_one_line(&stderr);

    let certs = Certs::generate(dir.path(), "dev-health");
    let bad = dir.path().join("bad.json");
    let config = json!({
        "address": "mqtts://localhost:8883",
        "caCert": certs.ca, "cert": certs.client_cert, "key": certs.client_key,
        "bufer": {}
    });
    fs::write(&bad, config.to_string()).unwrap();
    let (code, _, stderr) = health(&bad, &[]);
    assert_eq!(code, Some(2), "stderr {stderr}");
    assert!(stderr.contains("\"bufer\""), "{stderr}");
    assert_one_line(&stderr);

    // --max-age shorter than the metrics period can never be met.
    let slow = dir.path().join("slow.json");
    let config = json!({
        "address": "mqtts://localhost:8883",
        "caCert": certs.ca, "cert": certs.client_cert, "key": certs.client_key,
        "metricsIntervalSecs": 60,
        "buffer": {"path": dir.path().join("buffer")}
    });
    fs::write(&slow, config.to_string()).unwrap();
    let (code, _, stderr) = health(&slow, &["--max-age", "30"]);
    assert_eq!(code, Some(2), "stderr {stderr}");
    assert!(stderr.contains("metricsIntervalSecs"), "{stderr}");
    assert_one_line(&stderr);
}

#[test]
fn sigterm_stops_awslink_with_exit_0_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), "dev-health");
    let broker = Mosquitto::plain();
    let mut awslink = Awslink::start(&setup(dir.path(), &certs, &broker, json!({})));
    awslink.wait_for_log(UP, Duration::from_secs(10));
    let (code, elapsed) = awslink.terminate();
    assert_eq!(code, Some(0), "log:\n{}", awslink.log());
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?}, compose stop_grace_period is 10 s"
    );
}

/// The unprivileged user the container's `awslink` user stands in for.
const UID: u32 = 65534;

/// `setpriv` dropping to [`UID`], or `None` when not root or setpriv is missing.
fn as_unprivileged() -> Option<Command> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !setpriv {
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={UID}"))
        .arg(format!("--regid={UID}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_awslink"));
    Some(cmd)
}

fn chown_r(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown -R {uid} {}", path.display());
}

/// An awslink child process killed on drop.
struct Child2(Option<Child>, PathBuf);

impl Drop for Child2 {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- awslink log ----\n{}",
                fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

#[test]
fn runs_and_reports_healthy_as_a_non_root_user_on_directories_it_owns() {
    if as_unprivileged().is_none() {
        eprintln!("skipped: needs root and setpriv to switch to uid {UID}");
        return;
    }
    let run_as = |args: &[&str]| {
        let out = as_unprivileged().unwrap().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // /etc/awslink and /var/lib/awslink of the container, owned by its user.
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    let var = root.path().join("var");
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(&var).unwrap();
    let certs = Certs::generate(&etc, "dev-health");
    let broker = Mosquitto::plain();
    let setup = setup(&var, &certs, &broker, json!({}));
    let config_path = etc.join("config.json");
    fs::write(&config_path, setup.config().to_string()).unwrap();
    chown_r(root.path(), UID);
    let config = config_path.display().to_string();

    let (code, stdout, stderr) = run_as(&["config", "check", "--config", &config]);
    assert_eq!(
        code,
        Some(0),
        "config check as uid {UID}: {stdout} {stderr}"
    );

    let log = var.join("awslink.log");
    let mut cmd = as_unprivileged().unwrap();
    cmd.args(["run", "--config", &config])
        .env("RUST_LOG", "debug,paho_mqtt=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()));
    let mut child = Child2(Some(cmd.spawn().unwrap()), log.clone());
    wait_until(
        Duration::from_secs(10),
        "awslink (non-root) to start",
        || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(UP)
                .then_some(())
        },
    );
    let (code, stdout, stderr) = run_as(&["health", "--config", &config]);
    assert_eq!(code, Some(0), "health as uid {UID}: {stdout} {stderr}");

    // SIGTERM to the non-root process (what `docker stop` sends): exit 0 within 10 s.
    let mut process = child.0.take().unwrap();
    let started = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(process.id().to_string())
        .status();
    let status = wait_until(Duration::from_secs(10), "awslink to exit", || {
        process.try_wait().ok().flatten()
    });
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A buffer volume left owned by root: the unprivileged user is told which path to chown.
    let root_owned = root.path().join("root-owned");
    fs::create_dir(&root_owned).unwrap();
    let root_owned_s = root_owned.display().to_string();
    let (code, _, stderr) = run_as(&[
        "health",
        "--config",
        &config,
        "--buffer-path",
        &root_owned_s,
    ]);
    assert_eq!(code, Some(1), "stderr {stderr}");
    assert!(stderr.contains(&root_owned_s), "{stderr}");
    assert!(stderr.contains("not writable"), "{stderr}");
    assert_one_line(&stderr);
}

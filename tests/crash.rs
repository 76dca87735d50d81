//! Crash safety (issue 5): `kill -9` of awslink mid-stream and cloud connection cuts lose nothing
//! in `fsync` mode; a second awslink on the same buffer, or a damaged buffer, is refused with
//! exit code 2 and a message that says what to do.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_iot_emulator::EmulatorConfig;
use rand::Rng;
use serde_json::json;
use support::cloud::CloudRig;
use support::*;

const DEVICE: &str = "gw-3";
const TOTAL: u32 = 20_000;

#[test]
fn kill_9_five_times_and_two_cloud_cuts_lose_none_of_20000_messages() {
    let extra = json!({"quota": {"publishPerSecond": 100000, "bytesPerSecond": 1073741824u64}, "metricsIntervalSecs": 0});
    let mut rig = CloudRig::start(DEVICE, EmulatorConfig::without_limits, extra);
    let cloud = rig.cloud(&["telemetry/#"]);
    let (local, proxy) = (&rig.local, &rig.proxy);

    // The publisher streams numbered QoS 1 messages; Mosquitto holds them while awslink is dead.
    let published = Arc::new(AtomicU32::new(0));
    let publisher = {
        let (uri, published) = (local.uri(), published.clone());
        std::thread::spawn(move || {
            let sensor = Probe::connect(&uri, "sensor", &[]);
            for i in 0..TOTAL {
                sensor.publish("telemetry", i.to_string().as_bytes(), 1);
                published.store(i + 1, Ordering::SeqCst);
            }
        })
    };

    let mut rng = rand::thread_rng();
    let mut kill_points: Vec<u32> = (0..5)
        .map(|_| rng.gen_range(1_000..TOTAL - 1_000))
        .collect();
    kill_points.sort();
    let cut_points = [TOTAL / 3, 2 * TOTAL / 3];
    let mut events: Vec<(u32, &str)> = kill_points.iter().map(|p| (*p, "kill")).collect();
    events.extend(cut_points.iter().map(|p| (*p, "cut")));
    events.sort();
    for (point, what) in &events {
        wait_until(
            Duration::from_secs(120),
            "the publisher to progress",
            || (published.load(Ordering::SeqCst) >= *point).then_some(()),
        );
        if *what == "kill" {
            rig.awslink.kill();
            rig.awslink.restart();
        } else {
            proxy.cut();
            proxy.resume();
        }
        eprintln!("{what} at message {point}");
    }
    publisher.join().unwrap();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let mut seen = vec![false; TOTAL as usize];
    let (mut distinct, mut duplicates) = (0u32, 0u32);
    while distinct < TOTAL {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(msg) = cloud.next(left) else {
            let missing: Vec<usize> = seen
                .iter()
                .enumerate()
                .filter(|(_, s)| !**s)
                .map(|(i, _)| i)
                .take(20)
                .collect();
            panic!("lost {} messages, e.g. {missing:?}", TOTAL - distinct);
        };
        let n: usize = String::from_utf8_lossy(msg.payload()).parse().unwrap();
        if std::mem::replace(&mut seen[n], true) {
            duplicates += 1;
        } else {
            distinct += 1;
        }
    }
    eprintln!(
        "kill -9 x5 + 2 cloud cuts: {TOTAL} published, 0 lost, {duplicates} duplicates (kills at {kill_points:?})"
    );
}

#[test]
fn a_second_awslink_on_the_same_buffer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let local = Mosquitto::plain();
    let first = Awslink::start(&AwslinkSetup {
        dir: dir.path(),
        cloud_port: free_port(),
        local_uri: local.uri(),
        certs: &certs,
        device_id: DEVICE,
        extra: json!({}),
    });
    first.wait_for_log("awslink 0.1.0 starting", Duration::from_secs(10));
    let config = first.config_path.display().to_string();
    let (code, _, stderr) = awslink_command(&["run", "--config", &config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is in use by another process (is a second awslink running?)"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_or_unusable_buffer_directory_exits_2_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let buffer = dir.path().join("buffer");
    std::fs::create_dir_all(&buffer).unwrap();
    std::fs::write(buffer.join("conf"), b"\xff\xfe not a sled config \x00\x01").unwrap();
    let setup = AwslinkSetup {
        dir: dir.path(),
        cloud_port: free_port(),
        local_uri: "tcp://127.0.0.1:1".into(),
        certs: &certs,
        device_id: DEVICE,
        extra: json!({}),
    };
    let config_path = dir.path().join("awslink.json");
    std::fs::write(&config_path, setup.config().to_string()).unwrap();
    let config = config_path.display().to_string();
    let (code, _, stderr) = awslink_command(&["run", "--config", &config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("buffer directory {} is corrupt", buffer.display())),
        "{stderr}"
    );
    assert!(stderr.contains("move it aside"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A buffer path under a regular file cannot be created.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let (code, _, stderr) = awslink_command(&[
        "run",
        "--config",
        &config,
        "--buffer-path",
        &file.join("buffer").display().to_string(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("plain-file"), "names the path: {stderr}");

    // A buffer path that is itself a regular file is refused before any actor starts.
    let (code, _, stderr) = awslink_command(&[
        "run",
        "--config",
        &config,
        "--buffer-path",
        &file.display().to_string(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("buffer directory {}", file.display())),
        "names the path: {stderr}"
    );
    assert!(!stderr.contains("starting"), "no actor started: {stderr}");
}

/// Issue 16.2: 4 KiB overwritten in the middle of the largest file of a stopped awslink's
/// journal (sled takes it for a torn write and recovers only what lies before it): the next
/// start is refused with exit 2 naming the directory; with `buffer.onDamage`
/// `startWithSurvivors` it starts after one ERROR line with the count of lost messages.
#[test]
fn a_damaged_journal_is_refused_or_started_with_the_survivors_after_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path(), DEVICE);
    let local = Mosquitto::plain();
    let mut setup = AwslinkSetup {
        dir: dir.path(),
        cloud_port: free_port(),
        local_uri: local.uri(),
        certs: &certs,
        device_id: DEVICE,
        extra: json!({}),
    };
    let mut awslink = Awslink::start(&setup);
    awslink.wait_for_log("awslink 0.1.0 starting", Duration::from_secs(30));
    awslink.wait_for_intake(Duration::from_secs(30));
    let sensor = Probe::connect(&local.uri(), "sensor", &[]);
    for i in 0..300 {
        let payload = format!("{i:06}-{}", "p".repeat(200));
        sensor.publish("telemetry", payload.as_bytes(), 1);
    }
    // Deadlines, not delays: generous, because a loaded CI machine is slow.
    awslink.wait_for_log("queued=300", Duration::from_secs(60));
    let (code, _) = awslink.terminate();
    assert_eq!(code, Some(0));

    let buffer = dir.path().join("buffer");
    let largest = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    let end = (middle + 4096).min(bytes.len());
    for (i, b) in bytes[middle..end].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    std::fs::write(&largest, bytes).unwrap();

    let config = awslink.config_path.display().to_string();
    let (code, _, stderr) = awslink_command(&["run", "--config", &config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("buffer directory {}", buffer.display())),
        "{stderr}"
    );
    assert!(stderr.contains("awslink buffer inspect"), "{stderr}");
    assert!(stderr.contains("move"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    setup.extra = json!({"buffer": {"onDamage": "startWithSurvivors"}});
    let mut survivors = Awslink::start(&setup);
    let named = format!(
        "ERROR awslink_actors::store::damage] buffer directory {}",
        buffer.display()
    );
    let error = wait_until(Duration::from_secs(60), "the ERROR line", || {
        survivors
            .log()
            .lines()
            .find(|l| l.contains(&named))
            .map(str::to_owned)
    });
    assert!(
        error.contains("messages lost, starting with the"),
        "{error}"
    );
    survivors.wait_for_log("awslink 0.1.0 starting", Duration::from_secs(10));
    assert_eq!(survivors.log().matches(&named).count(), 1, "one ERROR line");
    eprintln!("damaged journal: refused, then {error}");
    survivors.kill();
}

//! `awslink health`: a liveness check for Docker's HEALTHCHECK, systemd watchdogs and scripts,
//! run next to a running `awslink run`.
//!
//! It never opens the sled database: the running awslink holds sled's lock on `{buffer}/db`
//! (an exclusive `flock`, taken by sled 0.34 through fs2), and a second open would fail. Instead:
//!
//! 1. the configuration loads (exit 2 otherwise, as for `run`);
//! 2. the buffer directory exists and this user can create and remove a file in it;
//! 3. the file system has at least `--min-free-mb` MiB available to this user;
//! 4. someone holds the lock on `{buffer}/db`: a non-blocking *shared* `flock` attempt that fails
//!    means a running awslink owns the buffer. If the attempt succeeds nobody does, the lock is
//!    released at once and awslink "is not running". (An awslink starting in that microsecond
//!    would find the lock taken, exit 2, and be restarted by its restart policy.)
//! 5. with `--max-age SECS`, a metrics document arrives on the local broker's
//!    `edge/awslink/metrics` within SECS: the actors are alive, not just the process.
//!
//! Exit codes: 0 healthy, 1 unhealthy (one line: what is wrong and what to do), 2 configuration
//! error.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use awslink_actors::topics::METRICS_TOPIC;
use fs2::FileExt;
use paho_mqtt as mqtt;

use crate::cli::HealthArgs;
use crate::config::{Config, LocalSettings};
use crate::failure::Failure;
use crate::liveness;
use awslink_actors::clock::unix_ms;
use awslink_actors::tls::is_tls_uri;

/// `awslink health`: loads the configuration and runs the checks.
pub fn run(args: &HealthArgs) -> Result<(), Failure> {
    let (config, _) = super::load(&args.config)?;
    check(&config, args)
}

/// Runs the checks on a loaded configuration; prints one line and returns `Ok` when healthy.
fn check(config: &Config, args: &HealthArgs) -> Result<(), Failure> {
    if let Some(max_age) = args.max_age {
        check_max_age(config, max_age)?;
    }
    let dir = config.buffer.path.as_path();
    check_directory(dir)?;
    check_writable(dir)?;
    let free_mb = free_megabytes(dir);
    if let Some(free) = free_mb {
        if free < args.min_free_mb {
            return Err(unhealthy(format!(
                "buffer directory {} has {free} MiB free, less than --min-free-mb {}; free disk space or enlarge the volume",
                dir.display(),
                args.min_free_mb
            )));
        }
    }
    check_lock_held(dir)?;
    let beat = check_heartbeat(dir, Duration::from_secs(args.max_heartbeat_age))?;
    let mut metrics = String::new();
    if let Some(max_age) = args.max_age {
        wait_for_metrics(config, Duration::from_secs(max_age))?;
        metrics = format!(
            ", metrics received within {max_age} s from {}",
            config.local.uri
        );
    }
    let free = free_mb.map_or(String::new(), |f| format!(", {f} MiB free"));
    println!(
        "healthy: awslink is running on buffer directory {}{free}, heartbeat {} ms ago{metrics}",
        dir.display(),
        beat.as_millis()
    );
    Ok(())
}

/// The running awslink writes `{buffer}/heartbeat` whenever every actor answered; a stale one
/// means a wedged process (alive, holding the lock, doing nothing).
fn check_heartbeat(dir: &Path, max_age: Duration) -> Result<Duration, Failure> {
    let file = dir.join(liveness::HEARTBEAT_FILE);
    let beat_ms = liveness::read_heartbeat(&file).map_err(|e| {
        unhealthy(format!(
            "awslink holds {} but its heartbeat {} cannot be read ({e}): it is still starting, or wedged since it started",
            dir.display(),
            file.display()
        ))
    })?;
    let age = Duration::from_millis(unix_ms().saturating_sub(beat_ms));
    if age > max_age {
        return Err(unhealthy(format!(
            "awslink is wedged: its last heartbeat ({}) was {} s ago, more than --max-heartbeat-age {} s; it exits by itself after 30 s without one, else restart it",
            file.display(),
            age.as_secs(),
            max_age.as_secs()
        )));
    }
    Ok(age)
}

fn unhealthy(message: String) -> Failure {
    Failure::runtime(message)
}

/// `--max-age` must leave room for at least one metrics period.
fn check_max_age(config: &Config, max_age: u64) -> Result<(), Failure> {
    let interval = config.metrics_interval.as_secs();
    if config.metrics_interval.is_zero() {
        return Err(Failure::usage(
            "--max-age needs metrics: config key \"metricsIntervalSecs\" is 0; set it above 0 or drop --max-age",
        ));
    }
    if max_age < interval {
        return Err(Failure::usage(format!(
            "--max-age {max_age} is shorter than config key \"metricsIntervalSecs\" ({interval}); a healthy awslink may not publish metrics within it: use --max-age {} or more",
            interval + interval.div_ceil(2).max(1)
        )));
    }
    Ok(())
}

fn check_directory(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(unhealthy(format!(
            "buffer directory {} is not a directory; point buffer.path at a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(unhealthy(format!(
            "awslink is not running: buffer directory {} does not exist (awslink run creates it); start awslink or check buffer.path",
            dir.display()
        ))),
        Err(e) => Err(unhealthy(format!(
            "buffer directory {}: {e}; it must be accessible to the user running awslink",
            dir.display()
        ))),
    }
}

/// Creates and removes `{dir}/.awslink-health-{pid}` (sled ignores files it did not write).
fn check_writable(dir: &Path) -> Result<(), Failure> {
    let probe = dir.join(format!(".awslink-health-{}", std::process::id()));
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            unhealthy(format!(
                "buffer directory {} is not writable by this user: {e}; chown it to the user running awslink (uid {}) or fix the volume mount",
                dir.display(),
                current_uid()
            ))
        })?;
    drop(created);
    std::fs::remove_file(&probe).map_err(|e| {
        unhealthy(format!(
            "cannot remove {} from the buffer directory: {e}; remove it by hand and check the directory's permissions",
            probe.display()
        ))
    })
}

/// This process's uid, read from `/proc/self` (for messages only; `?` when unknown).
fn current_uid() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return meta.uid().to_string();
        }
    }
    "?".into()
}

/// Is `{dir}/db` locked by another process (a running awslink)?
fn check_lock_held(dir: &Path) -> Result<(), Failure> {
    let db = dir.join("db");
    let file = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(unhealthy(format!(
                "awslink is not running: buffer directory {} has no database yet ({} missing); start awslink run",
                dir.display(),
                db.display()
            )))
        }
        Err(e) => {
            return Err(unhealthy(format!(
                "cannot open {}: {e}; the buffer directory must belong to the user running awslink",
                db.display()
            )))
        }
    };
    // A shared lock conflicts only with sled's exclusive one, so two health checks at the same
    // moment do not mistake each other for awslink.
    // fs2, called by path: std's `File` has lock methods of its own only since Rust 1.89.
    match FileExt::try_lock_shared(&file) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Ok(()) => {
            // Released at once: a starting awslink must find the database free.
            let _ = FileExt::unlock(&file);
            drop(file);
            Err(unhealthy(format!(
                "awslink is not running: nothing holds the lock on {}; start it (awslink run) or read its log for why it stopped",
                db.display()
            )))
        }
        Err(e) => Err(unhealthy(format!(
            "cannot test the lock on {}: {e}; the buffer directory must be on a local file system that supports flock",
            db.display()
        ))),
    }
}

/// Space available to unprivileged users on the file system of `dir`, in MiB (`None` when the
/// file system cannot say).
fn free_megabytes(dir: &Path) -> Option<u64> {
    fs2::available_space(dir)
        .ok()
        .map(|bytes| bytes / (1024 * 1024))
}

/// Connects to the local broker as `awslink-health-{pid}` (clean session) and waits up to
/// `max_age` for a metrics document from the running awslink.
fn wait_for_metrics(config: &Config, max_age: Duration) -> Result<(), Failure> {
    let local = &config.local;
    let client_id = format!("awslink-health-{}", std::process::id());
    let client = mqtt::Client::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&local.uri)
            .client_id(&client_id)
            .persistence(None)
            .finalize(),
    )
    .map_err(|e| Failure::usage(format!("config key \"localAddress\" {}: {e}", local.uri)))?;
    let options = paho_connect_options(local, max_age)?;
    let rx = client.start_consuming();
    let started = Instant::now();
    client.connect(options).map_err(|e| {
        unhealthy(format!(
            "cannot connect to the local broker {}: {e}; is Mosquitto running?",
            local.uri
        ))
    })?;
    let result = client
        .subscribe(METRICS_TOPIC, 0)
        .map_err(|e| {
            unhealthy(format!(
                "cannot subscribe to {METRICS_TOPIC} on {}: {e}; the broker's ACL must allow it",
                local.uri
            ))
        })
        .and_then(|_| {
            let deadline = started + max_age;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Some(msg)) if msg.topic() == METRICS_TOPIC => return Ok(()),
                    Ok(_) => continue,
                    Err(_) => {
                        return Err(unhealthy(format!(
                            "no metrics from awslink on {METRICS_TOPIC} at {} within {} s: awslink holds its buffer but is stuck or not connected to the local broker; restart it",
                            local.uri,
                            max_age.as_secs()
                        )))
                    }
                }
            }
        });
    let _ = client.disconnect(None);
    result
}

/// The paho options for the local broker: clean session, the local credentials, and on
/// `ssl://`/`mqtts://` the local CA, certificate and key with the server verified.
fn paho_connect_options(
    local: &LocalSettings,
    max_age: Duration,
) -> Result<mqtt::ConnectOptions, Failure> {
    let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
    opts.clean_session(true)
        .connect_timeout(max_age.min(Duration::from_secs(10)));
    if let Some(user) = &local.username {
        opts.user_name(user);
    }
    if let Some(password) = &local.password {
        opts.password(password.as_str());
    }
    if is_tls_uri(&local.uri) {
        let ssl = local.tls().paho_ssl_options().map_err(|e| {
            Failure::usage(format!(
                "config key \"{}\": {}: {}",
                e.setting,
                e.path.display(),
                e.problem
            ))
        })?;
        opts.ssl_options(ssl);
    }
    Ok(opts.finalize())
}

//! `awslink buffer inspect` and `awslink buffer purge --quarantine`: look into (or clean) the
//! journal of a stopped awslink.

use std::fmt::Write as _;
use std::path::Path;

use awslink_actors::clock::unix_ms;
use awslink_actors::store::{self, Durability, Journal, JournalConfig, JournalError, Limits};

use crate::cli::{BufferCommand, PurgeArgs};
use crate::failure::Failure;

/// `awslink buffer inspect|purge`; every failure is about the buffer directory (exit 2).
pub fn run(command: &BufferCommand) -> Result<(), Failure> {
    match command {
        BufferCommand::Inspect(args) => {
            print!("{}", inspect(&args.path)?);
            Ok(())
        }
        BufferCommand::Purge(args) => purge(args),
    }
}

fn purge(args: &PurgeArgs) -> Result<(), Failure> {
    if !args.quarantine {
        return Err(Failure::usage("say what to purge: --quarantine"));
    }
    let n = purge_quarantine(&args.buffer.path)?;
    println!(
        "deleted {n} quarantined messages from {}",
        args.buffer.path.display()
    );
    Ok(())
}

fn open(path: &Path) -> Result<Journal, Failure> {
    if !path.is_dir() {
        return Err(Failure::usage(format!(
            "buffer directory {} does not exist",
            path.display()
        )));
    }
    let config = JournalConfig {
        path: path.to_path_buf(),
        cache_bytes: 1 << 20,
        durability: Durability::Fsync,
        limits: Limits::UNLIMITED,
        min_free_bytes: 0,
        quarantine_max_messages: u64::MAX,
        on_damage: store::OnDamage::Refuse,
    };
    Journal::open(&config).map_err(explain)
}

/// A locked buffer is the operator's to fix (stop the running awslink); other errors are the
/// buffer's.
fn explain(e: JournalError) -> Failure {
    match e {
        JournalError::Locked { path } => Failure::usage(format!(
            "buffer directory {} is in use by a running awslink; stop it first (sled lets one process open the buffer)",
            path.display()
        )),
        other => Failure::Buffer(other),
    }
}

fn age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// The report of `awslink buffer inspect`; reads the buffer without changing it.
fn inspect(path: &Path) -> Result<String, Failure> {
    if !path.is_dir() {
        return Err(Failure::usage(format!(
            "buffer directory {} does not exist",
            path.display()
        )));
    }
    let found = store::inspect(path).map_err(explain)?;
    let now = unix_ms();
    let mut out = String::new();
    let _ = writeln!(out, "buffer {}", path.display());
    let _ = writeln!(
        out,
        "  queued           {} messages, {} bytes",
        found.queued, found.queued_bytes
    );
    for lane in &found.lanes {
        let _ = writeln!(
            out,
            "    {:<14} {} messages, {} bytes, oldest {}",
            lane.lane.name(),
            lane.queued,
            lane.queued_bytes,
            lane.oldest_enqueued_ms
                .map_or("-".into(), |t| age(now, t) + " ago")
        );
    }
    if found.legacy_messages > 0 {
        let _ = writeln!(
            out,
            "  earlier version  {} messages, {} bytes (moved into the lanes at the next start)",
            found.legacy_messages, found.legacy_bytes
        );
    }
    if found.misplaced > 0 {
        let _ = writeln!(
            out,
            "  out of sequence  {} records (quarantined at the next start)",
            found.misplaced
        );
    }
    let oldest = found.oldest_enqueued_ms;
    let _ = writeln!(
        out,
        "  oldest queued    {}",
        oldest.map_or("-".into(), |t| age(now, t) + " ago")
    );
    let _ = writeln!(
        out,
        "  commands stored  {} (waiting for the local broker)",
        found.downlink
    );
    let _ = writeln!(out, "  quarantined      {}", found.quarantined.len());
    for q in found.quarantined {
        let _ = writeln!(
            out,
            "    {} ago  {}  {} bytes  {}",
            age(now, q.msg.enqueued_ms),
            q.msg.topic,
            q.msg.payload.len(),
            q.reason
        );
    }
    Ok(out)
}

/// `awslink buffer purge --quarantine`: deletes the quarantined messages; returns the count.
fn purge_quarantine(path: &Path) -> Result<usize, Failure> {
    Ok(open(path)?.purge_quarantine()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use awslink_actors::lanes::Lane;
    use awslink_actors::messages::CloudMessage;

    #[test]
    fn inspect_lists_queue_and_quarantine_and_purge_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer");
        {
            let j = open_new(&path);
            let msg = CloudMessage {
                topic: "telemetry/t/d".into(),
                payload: b"12345".to_vec(),
                qos: 1,
                enqueued_ms: unix_ms(),
                batch: None,
            };
            j.append(Lane::of_cloud_topic(&msg.topic), &msg).unwrap();
            j.commit().unwrap();
            j.quarantine_new(
                &CloudMessage {
                    payload: vec![0; 300],
                    ..msg
                },
                "payload too large",
            )
            .unwrap();
        }
        let report = wait_open(|| inspect(&path));
        assert!(report.contains("queued           1 messages"), "{report}");
        assert!(
            report.contains("    telemetry      1 messages, ")
                && report.contains("    control        0 messages, 0 bytes, oldest -"),
            "{report}"
        );
        assert!(report.contains("quarantined      1"), "{report}");
        assert!(
            report.contains("telemetry/t/d  300 bytes  payload too large"),
            "{report}"
        );
        assert_eq!(wait_open(|| purge_quarantine(&path)), 1);
        assert!(wait_open(|| inspect(&path)).contains("quarantined      0"));
    }

    #[test]
    fn a_locked_or_missing_buffer_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = inspect(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let path = dir.path().join("buffer");
        let _running = open_new(&path);
        let err = inspect(&path).unwrap_err().to_string();
        assert!(
            err.contains("is in use by a running awslink; stop it first"),
            "{err}"
        );
    }

    fn open_new(path: &Path) -> Journal {
        std::fs::create_dir_all(path).unwrap();
        open(path).unwrap()
    }

    /// sled releases its lock shortly after the last handle in this process is dropped.
    fn wait_open<T>(mut f: impl FnMut() -> Result<T, Failure>) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match f() {
                Ok(v) => return v,
                Err(e)
                    if e.to_string().contains("in use") && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

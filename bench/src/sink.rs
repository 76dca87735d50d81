//! The cloud-side consumer: subscribes on the emulator's private broker and records every
//! arrival (sequence, send time, arrival time) as CSV, each message packed in an awslink batch
//! envelope as its own arrival, and what AWS would bill for the publishes it received.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use paho_mqtt as mqtt;

use crate::{now_ns, payload, write_json, Result};

/// Options of `sink`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker port on 127.0.0.1 (the emulator's private broker).
    #[arg(long)]
    port: u16,
    /// Topic filter.
    #[arg(long, default_value = "telemetry/#")]
    filter: String,
    /// Stop once this many distinct sequence numbers arrived (0 = no such stop).
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// After the last expected message, keep listening this long for duplicates.
    #[arg(long, default_value_t = 1000)]
    linger_ms: u64,
    /// Stop when nothing arrived for this long (counted from start before the first arrival).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Hard limit on the run time.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Stop as soon as this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Created once subscribed.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Arrivals CSV: seq,sent_ns,recv_ns.
    #[arg(long)]
    out: PathBuf,
    /// Write a summary JSON here at the end (counts and the sink's own CPU time and peak RSS).
    #[arg(long)]
    summary: Option<PathBuf>,
}

/// Runs the sink until one of its stop conditions holds.
pub fn run(a: Args) -> Result<()> {
    let uri = format!("tcp://127.0.0.1:{}", a.port);
    let cli = mqtt::Client::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&uri)
            .client_id(format!("bench-sink-{}", std::process::id()))
            .persistence(None)
            .finalize(),
    )
    .map_err(|e| format!("create client for {uri}: {e}"))?;
    let rx = cli.start_consuming();
    let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
    opts.clean_session(true)
        .connect_timeout(Duration::from_secs(5));
    cli.connect(opts.finalize())
        .map_err(|e| format!("connect to {uri}: {e}"))?;
    cli.subscribe(&a.filter, 1)
        .map_err(|e| format!("subscribe {}: {e}", a.filter))?;
    if let Some(f) = &a.ready_file {
        std::fs::write(f, b"ready\n").map_err(|e| format!("{}: {e}", f.display()))?;
    }

    let start = Instant::now();
    let mut last_arrival = Instant::now();
    let mut complete_at: Option<Instant> = None;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut events: Vec<(u64, u64, u64)> = Vec::with_capacity(a.expect as usize + 1024);
    let mut foreign = 0u64;
    let (mut publishes, mut billed, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(msg)) => {
                let recv = now_ns();
                last_arrival = Instant::now();
                publishes += 1;
                bytes += msg.payload().len() as u64;
                billed += payload::billed_units(msg.payload().len(), msg.topic().len());
                for item in payload::unpack(msg.payload()) {
                    match item {
                        Some((seq, sent)) => {
                            seen.insert(seq);
                            events.push((seq, sent, recv));
                        }
                        None => foreign += 1,
                    }
                }
                if a.expect > 0 && complete_at.is_none() && seen.len() as u64 >= a.expect {
                    complete_at = Some(Instant::now());
                }
            }
            Ok(None) => {
                // Connection lost: the private broker stays up in every scenario, so reconnect.
                let _ = cli.reconnect();
            }
            Err(_) => {}
        }
        if let Some(t) = complete_at {
            if t.elapsed() >= Duration::from_millis(a.linger_ms) {
                break;
            }
        }
        if start.elapsed() >= Duration::from_secs(a.max_secs)
            || last_arrival.elapsed() >= Duration::from_secs(a.idle_secs)
            || a.stop_file.as_ref().is_some_and(|f| f.exists())
        {
            break;
        }
    }
    let _ = cli.disconnect(None);
    let file = std::fs::File::create(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e: std::io::Error| format!("{}: {e}", a.out.display());
    writeln!(w, "seq,sent_ns,recv_ns").map_err(io)?;
    for (seq, sent, recv) in &events {
        writeln!(w, "{seq},{sent},{recv}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    eprintln!(
        "sink: {} arrivals, {} distinct, {} foreign",
        events.len(),
        seen.len(),
        foreign
    );
    if let Some(p) = &a.summary {
        write_json(
            Some(p),
            &serde_json::json!({
                "arrivals": events.len(),
                "distinct": seen.len(),
                "foreign": foreign,
                "publishes": publishes,
                "payload_bytes": bytes,
                "billed_units": billed,
                "usage": crate::own_usage(),
            }),
        )?;
    }
    Ok(())
}

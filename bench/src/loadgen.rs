//! Load generator: numbered QoS 1 publishes, a bounded window of unacknowledged ones, retries
//! of failed publishes after reconnecting (so that every message is acknowledged by the local
//! broker at least once and loss can be measured at the sink).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use paho_mqtt as mqtt;
use serde_json::json;

use crate::{now_ns, payload, write_json, Result};

/// Options of `loadgen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Local broker port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Topic to publish on.
    #[arg(long, default_value = "telemetry")]
    topic: String,
    /// Number of messages.
    #[arg(long)]
    count: u64,
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    start_seq: u64,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Payload format: `binary` (16-byte header, padded) or `json` (a JSON reading).
    #[arg(long, default_value = "binary", value_parser = ["binary", "json"])]
    format: String,
    /// Messages per second; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Most unacknowledged publishes at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// MQTT client id (persistent session, so a broker restart resumes it).
    #[arg(long, default_value = "bench-loadgen")]
    client_id: String,
    /// Give up retrying after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Write the summary JSON here (default: stdout).
    #[arg(long)]
    summary: Option<PathBuf>,
}

/// Runs the load generator.
pub fn run(a: Args) -> Result<()> {
    let uri = format!("tcp://127.0.0.1:{}", a.port);
    let cli = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&uri)
            .client_id(&a.client_id)
            .persistence(None)
            .max_buffered_messages(100_000)
            .finalize(),
    )
    .map_err(|e| format!("create client for {uri}: {e}"))?;
    let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
    opts.clean_session(false)
        .max_inflight(a.window.clamp(10, 65535) as i32)
        .automatic_reconnect(Duration::from_secs(1), Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(5));
    cli.connect(opts.finalize())
        .wait_for(Duration::from_secs(10))
        .map_err(|e| format!("connect to {uri}: {e}"))?;

    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let started = Instant::now();
    let first_ns = now_ns();
    let mut window: VecDeque<(u64, u64, mqtt::DeliveryToken)> = VecDeque::new();
    let mut failed: Vec<(u64, u64)> = Vec::new();
    let mut acked = 0u64;
    let mut attempts = 0u64;

    let settle =
        |entry: (u64, u64, mqtt::DeliveryToken), acked: &mut u64, failed: &mut Vec<(u64, u64)>| {
            let (seq, sent, tok) = entry;
            let left = deadline.saturating_duration_since(Instant::now());
            match tok.wait_for(left.clamp(Duration::from_millis(1), Duration::from_secs(30))) {
                Ok(()) => *acked += 1,
                Err(_) => failed.push((seq, sent)),
            }
        };
    let publish = |seq: u64, sent: u64| {
        let body = if a.format == "json" {
            payload::encode_json(seq, sent, a.size)
        } else {
            payload::encode(seq, sent, a.size)
        };
        let msg = mqtt::Message::new(&a.topic, body, 1);
        cli.publish(msg)
    };

    for i in 0..a.count {
        if a.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / a.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        while window.len() >= a.window {
            if let Some(e) = window.pop_front() {
                settle(e, &mut acked, &mut failed);
            }
        }
        let seq = a.start_seq + i;
        let sent = now_ns();
        attempts += 1;
        window.push_back((seq, sent, publish(seq, sent)));
    }
    while let Some(e) = window.pop_front() {
        settle(e, &mut acked, &mut failed);
    }
    let publish_done_ns = now_ns();
    let mut retried = 0u64;
    while !failed.is_empty() && Instant::now() < deadline {
        if !cli.is_connected() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let batch = std::mem::take(&mut failed);
        for (seq, sent) in batch {
            retried += 1;
            attempts += 1;
            window.push_back((seq, sent, publish(seq, sent)));
            while window.len() >= a.window {
                if let Some(e) = window.pop_front() {
                    settle(e, &mut acked, &mut failed);
                }
            }
        }
        while let Some(e) = window.pop_front() {
            settle(e, &mut acked, &mut failed);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = cli.disconnect(None).wait_for(Duration::from_secs(5));
    write_json(
        a.summary.as_deref(),
        &json!({
            "count": a.count,
            "acked": acked,
            "attempts": attempts,
            "retried": retried,
            "unacked": failed.len(),
            "first_ns": first_ns,
            "publish_done_ns": publish_done_ns,
            "elapsed_s": elapsed,
            "rate_achieved": acked as f64 / elapsed.max(1e-9),
            "usage": crate::own_usage(),
        }),
    )?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} messages never acknowledged by the broker",
            failed.len()
        ))
    }
}

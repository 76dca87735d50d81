//! Loss, duplicates, ordering, throughput, latency and drain figures from arrival files.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{write_json, Result};

/// Options of `analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arrival CSV files written by `sink` (merged).
    #[arg(long, required = true)]
    events: Vec<PathBuf>,
    /// Number of messages published (sequence numbers start_seq..start_seq+expect).
    #[arg(long)]
    expect: u64,
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    start_seq: u64,
    /// Time (ns since epoch) the cloud came back: adds drain and live-traffic figures.
    #[arg(long)]
    up_ns: Option<u64>,
    /// Write the JSON here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Percentile (nearest rank) of sorted values.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn latency_summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    json!({
        "n": ms.len(),
        "p50_ms": pct(&ms, 50.0),
        "p99_ms": pct(&ms, 99.0),
        "max_ms": ms.last(),
    })
}

fn read_events(path: &PathBuf, out: &mut Vec<(u64, u64, u64)>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (n, line) in text.lines().enumerate().skip(1) {
        let mut it = line.split(',').map(str::parse::<u64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(s)), Some(Ok(t)), Some(Ok(r))) => out.push((s, t, r)),
            _ => {
                return Err(format!(
                    "{}:{}: malformed line {line:?}",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok(())
}

/// Runs the analysis.
pub fn run(a: Args) -> Result<()> {
    let mut ev = Vec::new();
    for f in &a.events {
        read_events(f, &mut ev)?;
    }
    ev.sort_by_key(|e| e.2);
    let range = a.start_seq..a.start_seq + a.expect;
    let mut first: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut duplicates = 0u64;
    let mut reordered = 0u64;
    let mut max_seq: Option<u64> = None;
    for &(seq, sent, recv) in &ev {
        if first.contains_key(&seq) {
            duplicates += 1;
            continue;
        }
        first.insert(seq, (sent, recv));
        if max_seq.is_some_and(|m| seq < m) {
            reordered += 1;
        }
        max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
    }
    let delivered = first.keys().filter(|s| range.contains(s)).count() as u64;
    let lost = a.expect - delivered;
    let first_sent = first.values().map(|v| v.0).min();
    let last_recv = first.values().map(|v| v.1).max();
    let elapsed_s = match (first_sent, last_recv) {
        (Some(s), Some(r)) if r > s => Some((r - s) as f64 / 1e9),
        _ => None,
    };
    let lat: Vec<f64> = first
        .values()
        .map(|(s, r)| r.saturating_sub(*s) as f64 / 1e6)
        .collect();
    let mut out = json!({
        "expected": a.expect,
        "arrivals": ev.len(),
        "delivered": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "reordered": reordered,
        "elapsed_s": elapsed_s,
        "throughput_msg_s": elapsed_s.map(|e| delivered as f64 / e),
        "latency": latency_summary(lat),
    });
    if let Some(up) = a.up_ns {
        // Backlog: sent before the cloud came back. Live: sent after.
        let backlog_done = first
            .values()
            .filter(|(s, _)| *s < up)
            .map(|(_, r)| *r)
            .max();
        let live: Vec<(u64, u64)> = first.values().copied().filter(|(s, _)| *s >= up).collect();
        let live_before = backlog_done.map_or(0, |d| live.iter().filter(|(_, r)| *r < d).count());
        let backlog = first.values().filter(|(s, _)| *s < up).count();
        // Live messages published while the backlog was still draining: how long they waited.
        let during: Vec<f64> = live
            .iter()
            .filter(|(s, _)| matches!(backlog_done, Some(d) if *s < d))
            .map(|(s, r)| r.saturating_sub(*s) as f64 / 1e6)
            .collect();
        // First arrival after the cloud came back: the forwarder has reconnected.
        let reconnected = first.values().map(|(_, r)| *r).filter(|r| *r >= up).min();
        let after_up = first.values().filter(|(s, r)| *s < up && *r >= up).count();
        let drain_after_reconnect = match (reconnected, backlog_done) {
            (Some(c), Some(d)) if d >= c => Some((d - c) as f64 / 1e9),
            _ => None,
        };
        out["drain"] = json!({
            "backlog_delivered": backlog,
            "backlog_delivered_after_up": after_up,
            "drain_s": backlog_done.map(|d| d.saturating_sub(up) as f64 / 1e9),
            "reconnect_s": reconnected.map(|c| c.saturating_sub(up) as f64 / 1e9),
            "drain_after_reconnect_s": drain_after_reconnect,
            "backlog_msg_s_after_reconnect": drain_after_reconnect
                .filter(|d| *d > 0.0)
                .map(|d| after_up as f64 / d),
            "live_published_during_drain_delivered_before_backlog_done": live_before,
            "live_latency_during_drain": latency_summary(during),
            "live_latency_all": latency_summary(
                live.iter().map(|(s, r)| r.saturating_sub(*s) as f64 / 1e6).collect()
            ),
        });
    }
    write_json(a.out.as_deref(), &out)
}

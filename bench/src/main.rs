//! `awslink-bench`: the tools behind `bench/run.sh`, which compares awslink with a Mosquitto
//! bridge on the same brokers, certificates and load.
//!
//! - `loadgen`: publishes numbered QoS 1 messages (sequence number and send time in the first
//!   16 bytes of the payload, or in a JSON reading) to a local broker, as fast as possible or at
//!   a fixed rate.
//! - `sink`: subscribes on the emulator's private broker ("the cloud") and records every
//!   arrival (sequence, send time, arrival time; batch envelopes unpacked) to a CSV file, and
//!   the billed units of the publishes it received.
//! - `analyze`: turns arrival files into loss, duplicates, throughput, latency and drain figures.
//! - `flush-probe`: the disk's raw sled insert+flush rate, the ceiling for `fsync` durability.
//! - `proxy`: a TCP relay between forwarder and emulator that can take "the cloud" away.
//! - `report`: pivots the run's measurements into the results table and JSON.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod analyze;
mod flush_probe;
mod loadgen;
mod payload;
mod proxy;
mod report;
mod sink;

/// Benchmark tools for awslink (see bench/README.md and bench/run.sh).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish numbered QoS 1 messages to a broker.
    Loadgen(loadgen::Args),
    /// Record arrivals on the cloud side.
    Sink(sink::Args),
    /// Compute loss, duplicates, throughput and latency from arrival files.
    Analyze(analyze::Args),
    /// Measure the raw sled insert+flush rate of a directory's disk.
    FlushProbe(flush_probe::Args),
    /// TCP relay that can cut the cloud connection (outage scenario).
    Proxy(proxy::Args),
    /// Print the results table and write the results JSON.
    Report(report::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Loadgen(a) => loadgen::run(a),
        Command::Sink(a) => sink::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::FlushProbe(a) => flush_probe::run(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Report(a) => report::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("awslink-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors are reported as one line; every tool exits 1 on error.
pub type Result<T> = std::result::Result<T, String>;

/// Nanoseconds since the Unix epoch (the clock shared by loadgen and sink on one machine).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// This process's own CPU time and peak RSS (`getrusage(RUSAGE_SELF)`), for the summaries of the
/// short-lived tools (a process that has exited can no longer be read from `/proc`).
pub fn own_usage() -> serde_json::Value {
    // SAFETY: getrusage only writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return serde_json::Value::Null;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    serde_json::json!({
        "cpu_s": secs(u.ru_utime) + secs(u.ru_stime),
        "max_rss_kib": u.ru_maxrss,
    })
}

/// Writes `value` as pretty JSON to `path`, or to stdout when `path` is `None`.
pub fn write_json(path: Option<&std::path::Path>, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    match path {
        Some(p) => std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

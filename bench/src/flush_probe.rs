//! The disk's raw flush rates, the ceiling for `fsync` durability, measured two ways:
//! - `file`: append `size` bytes to a plain file and `fdatasync` it, per message — what the
//!   disk itself can do (the "raw flush rate");
//! - `sled`: one sled insert of `size` bytes followed by `flush()` per message — what a journal
//!   in sled that flushes before every acknowledgement can do at best (no MQTT, no other work).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::{write_json, Result};

/// Which probe.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// sled insert + flush.
    Sled,
    /// Plain-file append + fdatasync.
    File,
}

/// Options of `flush-probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the probe's files (created, left for the caller to delete).
    #[arg(long)]
    dir: PathBuf,
    /// Number of write+flush rounds.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Bytes per write.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Sled)]
    mode: Mode,
    /// Write the JSON here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the probe.
pub fn run(a: Args) -> Result<()> {
    let secs = match a.mode {
        Mode::Sled => sled_rounds(&a)?,
        Mode::File => file_rounds(&a)?,
    };
    write_json(
        a.out.as_deref(),
        &json!({
            "mode": format!("{:?}", a.mode).to_lowercase(),
            "count": a.count,
            "size": a.size,
            "elapsed_s": secs,
            "flushes_per_s": a.count as f64 / secs.max(1e-9),
        }),
    )
}

fn sled_rounds(a: &Args) -> Result<f64> {
    let db = sled::open(&a.dir).map_err(|e| format!("open sled at {}: {e}", a.dir.display()))?;
    let value = vec![b'x'; a.size];
    let err = |e: sled::Error| format!("sled at {}: {e}", a.dir.display());
    // Warm-up: the first flushes create files.
    for i in 0..10u64 {
        db.insert(i.to_be_bytes(), value.as_slice()).map_err(err)?;
        db.flush().map_err(err)?;
    }
    let start = Instant::now();
    for i in 10..10 + a.count {
        db.insert(i.to_be_bytes(), value.as_slice()).map_err(err)?;
        db.flush().map_err(err)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn file_rounds(a: &Args) -> Result<f64> {
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    let path = a.dir.join("append.dat");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let value = vec![b'x'; a.size];
    let round = |file: &mut std::fs::File| -> Result<()> {
        file.write_all(&value)
            .and_then(|_| file.sync_data())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    for _ in 0..10 {
        round(&mut file)?;
    }
    let start = Instant::now();
    for _ in 0..a.count {
        round(&mut file)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

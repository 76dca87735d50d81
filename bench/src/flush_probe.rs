//! The disk's raw sled insert+flush rate: one insert of `size` bytes followed by
//! `flush()` (fsync) per message, the most a journal that flushes before every acknowledgement
//! can do on this disk.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::{write_json, Result};

/// Options of `flush-probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the probe's sled database (created, left for the caller to delete).
    #[arg(long)]
    dir: PathBuf,
    /// Number of insert+flush rounds.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Write the JSON here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the probe.
pub fn run(a: Args) -> Result<()> {
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
    let secs = start.elapsed().as_secs_f64();
    write_json(
        a.out.as_deref(),
        &json!({
            "count": a.count,
            "size": a.size,
            "elapsed_s": secs,
            "flushes_per_s": a.count as f64 / secs.max(1e-9),
        }),
    )
}

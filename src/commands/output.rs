//! The files `cert` and `provision` write: an existing file is refused (or, with `--force`,
//! replaced atomically: written beside the target, then renamed), a new one is created with its
//! mode from the start (0600 for keys, whatever the umask), and every failure names the path.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// Refuses to touch an existing file (exit 2 naming it).
pub(crate) fn refuse_existing(path: &Path) -> Result<(), Failure> {
    if path.exists() {
        return Err(Failure::usage(format!(
            "{} already exists; refusing to overwrite it (use --force to replace it, or --out-dir for another directory)",
            path.display()
        )));
    }
    Ok(())
}

/// Creates the output directory (exit 2 naming it when that fails).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Failure> {
    fs::create_dir_all(dir).map_err(|e| {
        Failure::usage(format!(
            "cannot create output directory {}: {e} (use --out-dir)",
            dir.display()
        ))
    })
}

/// Writes `data` to `path`, created with `mode` (never wider, whatever the umask). Without
/// `replace` an existing file is an error; with it the file is written beside and renamed over.
pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32, replace: bool) -> Result<(), Failure> {
    if !replace {
        return write_exclusive(path, data, mode).map_err(|e| write_error(path, e));
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let written = write_exclusive(&tmp, data, mode).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| write_error(path, e))
}

fn write_exclusive(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn write_error(path: &Path, e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        return Failure::usage(format!(
            "{} already exists; refusing to overwrite it (use --force to replace it)",
            path.display()
        ));
    }
    Failure::usage(format!(
        "cannot write {}: {e} (choose a writable --out-dir)",
        path.display()
    ))
}

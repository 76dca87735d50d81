//! Logging setup for `awslink run`: the level from the configuration (RUST_LOG wins), written to
//! stderr or appended to the configured `logFile`.

use crate::config::Config;
use crate::failure::Failure;

/// Installs the process-wide logger the configuration describes.
pub fn init(config: &Config) -> Result<(), Failure> {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    if let Some(path) = &config.log_file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                Failure::usage(format!(
                    "config key \"logFile\": cannot open {}: {e}",
                    path.display()
                ))
            })?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.init();
    Ok(())
}

//! Logging setup for `awslink run`: the level from the configuration (RUST_LOG wins), written to
//! stderr or appended to the configured `logFile`, with every secret of the configuration
//! redacted from every record ([`crate::redact`]) — at any level, from any crate.

use crate::config::Config;
use crate::failure::Failure;
use crate::redact::{pem_body_lines, Redacting};
use awslink_actors::tls::PrivateKey;

/// Installs the process-wide logger the configuration describes.
pub fn init(config: &Config) -> Result<(), Failure> {
    let mut builder = env_logger::Builder::new();
    builder.format_timestamp_millis();
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
    let logger = builder.build();
    let max_level = logger.filter();
    let logger = Redacting::new(logger, secrets(config));
    log::set_boxed_logger(Box::new(logger))
        .map_err(|e| Failure::runtime(format!("cannot install the logger: {e}")))?;
    log::set_max_level(max_level);
    Ok(())
}

/// What must never appear in a log line: the passwords and the private keys' base64 lines.
fn secrets(config: &Config) -> Vec<String> {
    let mut secrets: Vec<String> = [&config.password, &config.local.password]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if let Some(PrivateKey::Pkcs11(p11)) = &config.key {
        secrets.extend(p11.pin.clone());
    }
    let cloud_key = config.key.as_ref().and_then(|k| k.file());
    for key in [cloud_key, config.local.key.as_deref()]
        .into_iter()
        .flatten()
    {
        if let Ok(pem) = std::fs::read_to_string(key) {
            secrets.extend(pem_body_lines(&pem));
        }
    }
    secrets
}

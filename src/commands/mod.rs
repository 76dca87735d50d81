//! The subcommands, one file each, and what several of them share: loading the configuration
//! and random hex for client ids and probe tokens.

pub mod buffer;
pub mod cert;
pub mod check;
pub mod config_check;
pub mod health;
pub mod output;
pub mod provision;
pub mod run;
pub mod tpm_key;

use crate::cli::ConfigArgs;
use crate::config::{self, files, Config};
use crate::failure::Failure;

/// Reads, validates and checks the files of the configuration; returns it with the device id.
pub fn load(args: &ConfigArgs) -> Result<(Config, String), Failure> {
    let text = std::fs::read_to_string(&args.config).map_err(|e| {
        Failure::usage(format!(
            "cannot read config file {}: {e} (use --config PATH)",
            args.config.display()
        ))
    })?;
    let config = config::parse(&text, &args.overrides())
        .map_err(|e| Failure::usage(format!("{}: {e}", args.config.display())))?;
    files::check(&config)?;
    let device_id = files::resolve_device_id(&config)?;
    Ok((config, device_id))
}

/// `bytes` random bytes as lowercase hex (2 × `bytes` characters); should the random source
/// fail, the clock and the process id, still unlikely to repeat.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if openssl::rand::rand_bytes(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{nanos:x}{:x}", std::process::id());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_hex_has_two_digits_per_byte_and_differs() {
        for n in [1, 4, 12] {
            let a = super::random_hex(n);
            assert_eq!(a.len(), 2 * n, "{a}");
            assert!(a
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_ne!(super::random_hex(12), super::random_hex(12));
    }
}

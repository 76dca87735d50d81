//! `awslink check`: placeholder.
use crate::config::Config;

/// Runs the connection check.
pub fn run(_config: &Config, _device_id: &str) -> Result<(), (u8, String)> {
    Err((1, "not yet".into()))
}

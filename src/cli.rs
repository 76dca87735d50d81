//! Command-line interface: `awslink run`, `awslink config check`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// awslink: forwards a local Mosquitto's Hono telemetry, events and command responses to AWS IoT
/// Core over one mutual-TLS connection, delivers cloud commands back, and loses nothing offline.
#[derive(Debug, Parser)]
#[command(name = "awslink", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the connector until SIGTERM or SIGINT.
    Run(ConfigArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `awslink config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and the files it names, without connecting.
    Check(ConfigArgs),
}

/// The configuration file and the values that override it.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (JSON; Kanto aws-connector files load unchanged).
    #[arg(long, short, default_value = "/etc/awslink/config.json")]
    pub config: PathBuf,
    /// Overrides "address" (e.g. mqtts://xxxx-ats.iot.eu-west-1.amazonaws.com:8883).
    #[arg(long)]
    pub address: Option<String>,
    /// Overrides "deviceId" (the AWS thing name).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Overrides "localAddress" (e.g. tcp://localhost:1883).
    #[arg(long)]
    pub local_address: Option<String>,
    /// Overrides "buffer.path".
    #[arg(long)]
    pub buffer_path: Option<String>,
    /// Overrides "logLevel" (ERROR, WARN, INFO, DEBUG, TRACE); RUST_LOG wins over both.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The command-line overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            address: self.address.clone(),
            device_id: self.device_id.clone(),
            local_address: self.local_address.clone(),
            buffer_path: self.buffer_path.clone(),
            log_level: self.log_level.clone(),
        }
    }
}

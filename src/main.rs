//! awslink: the edge-to-cloud connector binary. Parses the command line, runs the subcommand
//! and maps its [`failure::Failure`] to the exit code: 0 clean stop, 1 runtime failure,
//! 2 configuration (or buffer directory) error.

mod cli;
mod commands;
mod config;
mod failure;
mod liveness;
mod logging;
mod redact;
mod wiring;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConfigCommand};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => commands::run::run(&args),
        Command::Config(ConfigCommand::Check(args)) => commands::config_check::run(&args),
        Command::Check(args) => commands::check::run(&args),
        Command::Cert(command) => commands::cert::run(&command),
        Command::Provision(args) => commands::provision::run(&args),
        Command::Health(args) => commands::health::run(&args),
        Command::Buffer(command) => commands::buffer::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "awslink: error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

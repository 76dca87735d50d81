//! awslink: the edge-to-cloud connector binary. Exit codes: 0 clean stop, 1 runtime failure,
//! 2 configuration (or buffer directory) error.

mod app;
mod buffer_cmd;
mod certs;
mod check;
mod cli;
mod config;
mod health;
mod provision;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{BufferCommand, CertCommand, Cli, Command, ConfigArgs, ConfigCommand};
use config::{files, Config, ConfigError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Config(ConfigCommand::Check(args)) => check(&args),
        Command::Check(args) => load(&args.config)
            .and_then(|(config, id)| check::run(&config, &id, Duration::from_secs(args.timeout))),
        Command::Cert(CertCommand::Create(args)) => certs::create(&args),
        Command::Cert(CertCommand::Csr(args)) => certs::csr(&args),
        Command::Cert(CertCommand::Show(args)) => certs::show(&args),
        Command::Provision(args) => provision::run(&args),
        Command::Health(args) => {
            load(&args.config).and_then(|(config, _)| health::run(&config, &args))
        }
        Command::Buffer(BufferCommand::Inspect(args)) => buffer_cmd::inspect(&args.path)
            .map(|report| print!("{report}"))
            .map_err(|e| (2, e)),
        Command::Buffer(BufferCommand::Purge(args)) => purge(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            let _ = writeln!(std::io::stderr(), "awslink: error: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn purge(args: &cli::PurgeArgs) -> Result<(), Failure> {
    if !args.quarantine {
        return Err((2, "say what to purge: --quarantine".into()));
    }
    let n = buffer_cmd::purge_quarantine(&args.buffer.path).map_err(|e| (2, e))?;
    println!(
        "deleted {n} quarantined messages from {}",
        args.buffer.path.display()
    );
    Ok(())
}

fn config_failure(e: ConfigError) -> Failure {
    (2, e.to_string())
}

/// Reads, validates and checks the files of the configuration; returns it with the device id.
fn load(args: &ConfigArgs) -> Result<(Config, String), Failure> {
    let text = std::fs::read_to_string(&args.config).map_err(|e| {
        (
            2,
            format!(
                "cannot read config file {}: {e} (use --config PATH)",
                args.config.display()
            ),
        )
    })?;
    let config = config::parse(&text, &args.overrides())
        .map_err(|e| (2, format!("{}: {e}", args.config.display())))?;
    files::check(&config).map_err(config_failure)?;
    let device_id = files::resolve_device_id(&config).map_err(config_failure)?;
    Ok((config, device_id))
}

fn init_logging(config: &Config) -> Result<(), Failure> {
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
                (
                    2,
                    format!(
                        "config key \"logFile\": cannot open {}: {e}",
                        path.display()
                    ),
                )
            })?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.init();
    Ok(())
}

fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let (config, device_id) = load(args)?;
    init_logging(&config)?;
    app::run(config, device_id).map_err(|e| (e.exit_code() as u8, e.to_string()))
}

fn check(args: &ConfigArgs) -> Result<(), Failure> {
    let (config, device_id) = load(args)?;
    let secret = |s: &Option<String>| {
        if s.is_some() {
            "(set, redacted)"
        } else {
            "(not set)"
        }
    };
    println!("configuration {} is valid", args.config.display());
    println!(
        "  cloud endpoint   {}:{}",
        config.endpoint.host, config.endpoint.port
    );
    println!("  device id        {device_id}");
    println!(
        "  client id        {}",
        config.client_id.as_deref().unwrap_or(&device_id)
    );
    println!("  tenant id        {}", config.tenant_id);
    println!(
        "  client cert      {}",
        config
            .cert
            .as_ref()
            .map_or("(none)".into(), |p| p.display().to_string())
    );
    println!("  password         {}", secret(&config.password));
    println!(
        "  local broker     {} (client id {})",
        config.local.uri, config.local.client_id
    );
    println!("  local password   {}", secret(&config.local.password));
    println!(
        "  buffer           {} ({})",
        config.buffer.path.display(),
        if config.buffer.fsync {
            "fsync"
        } else {
            "batched"
        }
    );
    println!("  status topic     {}", config.status_topic);
    Ok(())
}

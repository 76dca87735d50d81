//! `awslink config check`: validates the configuration and the files it names, without
//! connecting, and prints what awslink would use (secrets only as set or not set).

use crate::cli::ConfigArgs;
use crate::failure::Failure;

/// Loads the configuration and prints its summary.
pub fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let (config, device_id) = super::load(args)?;
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
    println!(
        "  client key       {}",
        config
            .key
            .as_ref()
            .map_or("(none)".into(), |k| k.describe())
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
    for (i, route) in config.routes.routes().iter().enumerate() {
        println!(
            "  routes[{i}]        {} -> Basic Ingest rule {} ($aws/rules/{}/…; the rule must exist and be enabled)",
            route.filter, route.rule, route.rule
        );
    }
    Ok(())
}

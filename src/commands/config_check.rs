//! `awslink config check`: validates the configuration and the files it names, without
//! connecting, and prints what awslink would use (secrets only as set or not set).

use awslink_actors::lanes::Lane;

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
    for lane in Lane::ALL {
        let settings = config.lanes.settings(lane);
        let filters: Vec<&str> = config
            .lanes
            .filters()
            .iter()
            .filter(|(_, l)| *l == lane)
            .map(|(f, _)| f.as_str())
            .collect();
        let priority = match lane {
            Lane::Control => "first".to_string(),
            _ => format!("minimum share {:.0} %", settings.min_share * 100.0),
        };
        println!(
            "  lane {:<11} {priority}, {}{}",
            lane.name(),
            settings
                .max_age_secs
                .map_or("never expires".to_string(), |s| format!(
                    "expires after {s} s"
                )),
            if filters.is_empty() {
                String::new()
            } else {
                format!(", also takes {}", filters.join(" "))
            }
        );
    }
    Ok(())
}

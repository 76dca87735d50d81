//! `awslink run`: loads the configuration, sets up logging, opens the journal, starts the actors
//! and runs until SIGTERM or SIGINT, then shuts down in order within 5 s.

use std::time::Duration;

use actix::System;
use log::{error, info};

use crate::cli::ConfigArgs;
use crate::failure::Failure;
use crate::liveness::{self, LivenessConfig};
use crate::{logging, wiring};

/// How long shutdown may take before awslink exits anyway.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

/// Runs awslink until a signal asks it to stop.
pub fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let (config, device_id) = super::load(args)?;
    logging::init(&config)?;
    liveness::install_panic_hook();
    awslink_actors::fatal::set_handler(|cause| liveness::fatal(cause));
    let journal = wiring::open_journal(&config)?;
    let last_flush = journal.clone();
    let exit_flush = journal.clone();
    liveness::on_fatal(move || {
        if let Err(e) = last_flush.flush() {
            error!("journal flush before exiting failed: {e}");
        }
    });
    info!(
        "awslink {} starting: device {device_id:?}, cloud {}:{}, local {}, buffer {} ({} queued)",
        env!("CARGO_PKG_VERSION"),
        config.endpoint.host,
        config.endpoint.port,
        config.local.uri,
        config.buffer.path.display(),
        journal.queued_total()
    );
    if let Some(key) = &config.key {
        info!("device key: {}", key.describe());
    }
    let system = System::new();
    let result = system.block_on(async move {
        // Before any actor starts: a SIGTERM during start-up must still mean a clean stop (as
        // PID 1 in a container, an unhandled SIGTERM would be ignored until the grace period ends).
        let signal = wait_for_signal();
        let running = wiring::start(&config, &device_id, journal)?;
        let liveness =
            LivenessConfig::for_buffer(&config.buffer.path, sd_notify::watchdog_enabled());
        let heartbeat =
            liveness::spawn(liveness, System::current(), running.heartbeat_targets())
                .map_err(|e| Failure::runtime(format!("cannot start the heartbeat thread: {e}")))?;
        let signal = signal.await;
        info!("{signal} received: shutting down");
        heartbeat.stop();
        liveness::notify(sd_notify::NotifyState::Stopping);
        running.shutdown(SHUTDOWN_BUDGET).await;
        info!("awslink stopped");
        Ok(())
    });
    // Not dropped: dropping the system drops the futures still awaiting paho tokens (a connect
    // in progress while the cloud is away), which leaves a Paho C callback holding the last
    // reference to its client; the callback then destroys the client under Paho C's global
    // lock and deadlocks the process (seen: 6 of 40 SIGTERMs during reconnects hung until
    // SIGKILL). Everything that must outlive the process was flushed by the shutdown above;
    // the process ends right after this returns.
    std::mem::forget(system);
    // The shutdown flushed the journal already, unless it ran out of time: flush once more, so
    // that nothing acknowledged is left in memory (`batched` mode) when the process ends.
    if let Err(e) = exit_flush.flush() {
        error!("last journal flush failed: {e}");
    }
    result
}

/// Installs the SIGTERM/SIGINT handlers now; the returned future resolves on the first signal.
fn wait_for_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            error!("cannot install signal handlers; stop awslink with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

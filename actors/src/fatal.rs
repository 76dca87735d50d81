//! What an actor does when it meets a failure awslink cannot recover from (its intake thread
//! ended, its journal refuses every write): [`fatal`] hands the cause to the handler the binary
//! installed at start ([`set_handler`]: one log line, exit code 1, so that Docker's restart
//! policy or systemd restarts awslink). Without a handler (unit tests) it logs the cause and
//! stops the current actix system with code 1.

use std::sync::OnceLock;

/// The process-wide fatal handler; it must not return in production (it exits the process).
type Handler = Box<dyn Fn(&str) + Send + Sync>;

fn handler() -> &'static OnceLock<Handler> {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    &HANDLER
}

/// Installs the fatal handler (once; later calls are ignored).
pub fn set_handler(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = handler().set(Box::new(f));
}

/// Reports a failure awslink cannot recover from.
pub fn fatal(cause: &str) {
    match handler().get() {
        Some(f) => f(cause),
        None => {
            log::error!("fatal: {cause}");
            if let Some(system) = actix::System::try_current() {
                system.stop_with_code(1);
            }
        }
    }
}

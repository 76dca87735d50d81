//! Fault injection for the liveness tests: which internal failure to provoke, read once from
//! the environment variable `AWSLINK_FAULT`. Only builds with the cargo feature
//! `fault-injection` (enabled by the test suite through a dev-dependency) can provoke anything;
//! in every other build [`active`] is a constant `None` and the hooks compile to nothing.

/// An internal failure a test can provoke; each fires at the first local message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The intake thread returns as if its event loop had ended.
    IntakeExit,
    /// The Buffer actor panics in a handler.
    BufferPanic,
    /// The Buffer actor stops itself.
    BufferStop,
    /// The Buffer actor blocks its thread (the arbiter of every actor) for good.
    Wedge,
    /// The actix system (the arbiter every actor runs on) stops.
    ArbiterStop,
    /// Every journal write fails from now on.
    JournalFail,
}

impl Fault {
    /// The value of `AWSLINK_FAULT` that selects each fault.
    pub const NAMES: [(&'static str, Fault); 6] = [
        ("intake-exit", Fault::IntakeExit),
        ("buffer-panic", Fault::BufferPanic),
        ("buffer-stop", Fault::BufferStop),
        ("wedge", Fault::Wedge),
        ("arbiter-stop", Fault::ArbiterStop),
        ("journal-fail", Fault::JournalFail),
    ];

    /// The fault named `name`, if any.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }
}

/// The fault this process was asked to provoke (always `None` without `fault-injection`).
#[cfg(feature = "fault-injection")]
pub fn active() -> Option<Fault> {
    use std::sync::OnceLock;
    static ACTIVE: OnceLock<Option<Fault>> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let fault = std::env::var("AWSLINK_FAULT")
            .ok()
            .and_then(|v| Fault::parse(&v));
        if let Some(f) = fault {
            log::warn!("fault injection active: {f:?} (a test build)");
        }
        fault
    })
}

/// The fault this process was asked to provoke (always `None` without `fault-injection`).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn active() -> Option<Fault> {
    None
}

/// Whether `fault` is the one to provoke.
#[inline(always)]
pub fn is(fault: Fault) -> bool {
    active() == Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_by_table() {
        for (name, fault) in Fault::NAMES {
            assert_eq!(Fault::parse(name), Some(fault));
        }
        assert_eq!(Fault::parse("none"), None);
        assert_eq!(Fault::parse(""), None);
    }
}

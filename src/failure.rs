//! The one error type at the binary's boundary: every command returns a [`Failure`], and
//! `main` prints its message as `awslink: error: …` and exits with [`Failure::exit_code`]:
//! 1 for a runtime failure, 2 for what the operator fixes in the configuration, the arguments,
//! the files they name or the buffer directory.

use awslink_actors::store::JournalError;
use openssl::error::ErrorStack;

use crate::config::ConfigError;

/// Why a command failed, as one line naming what failed and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The arguments, the configuration or a file they name cannot be used (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is invalid (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The buffer directory cannot be used: locked, corrupt, unwritable (exit 2).
    #[error(transparent)]
    Buffer(#[from] JournalError),
    /// Something failed while running: a network step, AWS IoT's answer, the runtime (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl Failure {
    /// An unusable argument, configuration or file (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    /// A failure while running (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure::Runtime(message.into())
    }

    /// Maps an OpenSSL error to a runtime failure that says what was being done.
    pub fn crypto(what: &str) -> impl Fn(ErrorStack) -> Failure + '_ {
        move |e| Failure::Runtime(format!("{what}: {e}"))
    }

    /// The process exit code: 2 for what the operator fixes in configuration or on disk, 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Config(_) | Failure::Buffer(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn exit_codes_and_messages() {
        let path = PathBuf::from("/var/lib/awslink");
        let cases: Vec<(Failure, u8, String)> = vec![
            (Failure::usage("bad flag"), 2, "bad flag".into()),
            (Failure::runtime("step failed"), 1, "step failed".into()),
            (
                ConfigError::new("config key \"x\": bad").into(),
                2,
                "config key \"x\": bad".into(),
            ),
            (
                JournalError::Locked { path: path.clone() }.into(),
                2,
                JournalError::Locked { path: path.clone() }.to_string(),
            ),
            (
                JournalError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("disk full"),
                }
                .into(),
                2,
                "buffer directory /var/lib/awslink: disk full".into(),
            ),
        ];
        for (failure, code, message) in cases {
            assert_eq!(failure.exit_code(), code, "{failure:?}");
            assert_eq!(failure.to_string(), message);
        }
    }
}

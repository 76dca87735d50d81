//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can stop the emulator from starting or a helper from working.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A socket or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "bind 127.0.0.1:8883".
        what: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// OpenSSL refused a key, certificate or TLS setting.
    #[error("{what}: {source}")]
    Tls {
        /// What was being done, e.g. "load server certificate /x/server.pem".
        what: String,
        /// The OpenSSL error stack.
        source: openssl::error::ErrorStack,
    },
    /// The private Mosquitto did not start or stopped.
    #[error("private mosquitto: {0}")]
    Broker(String),
    /// The shadow service could not reach the private broker.
    #[error("shadow service: {0}")]
    Shadow(String),
    /// A configuration value is unusable; the message names it and the fix.
    #[error("configuration: {0}")]
    Config(String),
}

impl EmulatorError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        EmulatorError::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps an OpenSSL error with what was being done.
    pub fn tls(what: impl Into<String>, source: openssl::error::ErrorStack) -> Self {
        EmulatorError::Tls {
            what: what.into(),
            source,
        }
    }

    /// Wraps a file I/O error with the file's path.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EmulatorError::File {
            path: path.into(),
            source,
        }
    }
}

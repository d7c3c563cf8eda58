//! The harness's one error type: each variant names what failed and what to check.

use std::path::PathBuf;

/// Why the soak could not run (a failed handshake is a measurement, never an error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SoakError {
    /// A file the harness reads or writes.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A program could not be started (is it installed and on PATH, or built?).
    #[error(
        "cannot start {program}: {source} (is it installed / built? see --anchorage, --openssl)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process did not get ready in time.
    #[error("{what} was not ready after {seconds} s: {detail}")]
    NotReady {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
        /// The last thing seen (a log tail, a status).
        detail: String,
    },
    /// serve answered an error or could not be reached.
    #[error("serve {operation}: {message}")]
    Serve {
        /// The API call.
        operation: String,
        /// The status and body, or the connection error.
        message: String,
    },
    /// A certificate, key or TLS configuration from an agent's files.
    #[error("TLS configuration from {path}: {message}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A command-line value that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The procedure could not go on (a phase that never came, an answer without a phase).
    #[error("rotation: {0}")]
    Rotation(String),
}

impl SoakError {
    pub(crate) fn file(
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::File {
            what,
            path: path.into(),
            source,
        }
    }
}

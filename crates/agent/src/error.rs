//! Why an agent step failed. Every variant names what was being done and what to do; none
//! carries a token or a key.

use std::path::PathBuf;

/// An agent failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A file the agent reads (the serve CA, the token file, its own key) could not be read.
    #[error("cannot read {what} {}: {source} (check the path and its permissions)", path.display())]
    Read {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input file holds nothing usable.
    #[error("{what} {} is unusable: {reason}", path.display())]
    BadInput {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// TLS client setup.
    #[error("cannot set up TLS to serve: {0}")]
    Tls(String),
    /// Serve could not be reached (connection refused, timeout, TLS failure).
    #[error(
        "serve at {url} is unreachable: {message} (the agent keeps its files and retries with backoff)"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The client's words.
        message: String,
    },
    /// Serve answered with an error.
    #[error("serve refused {what} with HTTP {status} {code}: {message}")]
    Server {
        /// The operation.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// serve's stable error code (`token_expired`, `role_refused`, …).
        code: String,
        /// serve's message.
        message: String,
    },
    /// Serve rate-limits this request (429, during a root rotation's re-issue): retry after
    /// `retry_after`.
    #[error("serve rate-limits {what}: retry in {}s (the agent keeps its files and waits)", retry_after.as_secs())]
    RateLimited {
        /// The operation.
        what: &'static str,
        /// serve's `Retry-After`.
        retry_after: std::time::Duration,
    },
    /// serve's answer could not be understood.
    #[error("serve's answer to {what} is malformed: {message}")]
    Protocol {
        /// The operation.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Writing an output.
    #[error("cannot write {}: {message} (the previous files are kept)", path.display())]
    Output {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A key or certificate request could not be made.
    #[error("cannot make the identity's key or request: {0}")]
    Crypto(String),
    /// An on-change action failed: the change counts as not installed.
    #[error(
        "on-change action {action} failed: {message} (the change is not acknowledged; it is retried)"
    )]
    Reload {
        /// The action, as configured.
        action: String,
        /// Why.
        message: String,
    },
}

impl AgentError {
    /// True when serve was not reached at all (the agent backs off and retries).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AgentError::Unreachable { .. })
    }
}

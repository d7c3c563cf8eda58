//! The local status file: what is installed, when, the last error and refusal, and whether
//! serve has been reached lately. Written atomically (JSON) after every step; read by
//! `anchorage agent status` with [`read_status`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The agent's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The consumer name.
    pub consumer: String,
    /// serve's URL.
    pub server: String,
    /// The bundle version installed (files in place and reloaded), if any.
    pub bundle_version: Option<u64>,
    /// When that version was installed (Unix seconds).
    pub installed_at: Option<i64>,
    /// Certificates in the installed bundle.
    pub certificates: Option<usize>,
    /// The identity's serial, hex.
    pub cert_serial: Option<String>,
    /// The identity's not-after (Unix seconds).
    pub cert_not_after: Option<i64>,
    /// When the identity is due for renewal (Unix seconds).
    pub renew_at: Option<i64>,
    /// The last time serve answered (Unix seconds).
    pub last_contact: Option<i64>,
    /// The last acknowledgement.
    pub last_ack: Option<AckRecord>,
    /// The last error (cleared by a success of the same step).
    pub last_error: Option<String>,
    /// The last refused bundle and why (cleared when a bundle is installed).
    pub refused: Option<String>,
    /// Failures in a row reaching serve.
    pub consecutive_failures: u32,
    /// Serve not reached for longer than the configured staleness bound, or failing now.
    pub stale: bool,
    /// When this status was written (Unix seconds).
    pub updated_at: i64,
}

/// One acknowledgement serve accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    /// The bundle version acknowledged.
    pub bundle_version: u64,
    /// When (Unix seconds).
    pub at: i64,
}

/// Writes the status atomically (0644).
pub fn write_status(path: &Path, status: &Status) -> Result<(), AgentError> {
    let mut text = serde_json::to_vec_pretty(status).map_err(|e| AgentError::Output {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    text.push(b'\n');
    anchorage_trust::atomic::write_file(path, &text).map_err(|e| AgentError::Output {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Reads a status file.
pub fn read_status(path: &Path) -> Result<Status, AgentError> {
    let text = std::fs::read(path).map_err(|source| AgentError::Read {
        what: "the agent status file",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| AgentError::BadInput {
        what: "the agent status file",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

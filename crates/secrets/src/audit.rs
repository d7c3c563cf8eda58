//! The audit event every `get` produces: who asked (entity, host), for what (key, field,
//! version) and what happened. It never holds a secret value; the server decides where it goes.

use serde::Serialize;

use crate::jwt::EntityKind;

/// One request, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// The entity's public key, once its JWT verified.
    pub entity: Option<String>,
    /// Component or provider.
    pub entity_kind: Option<EntityKind>,
    /// The host's server key, once its JWT verified.
    pub host: Option<String>,
    /// The requester's one-time xkey, when the header parsed.
    pub requester_xkey: Option<String>,
    /// The secret asked for, once the request opened.
    pub key: Option<String>,
    /// The field asked for.
    pub field: Option<String>,
    /// The version asked for (`None`: the latest).
    pub requested_version: Option<String>,
    /// The version served.
    pub served_version: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

/// The result of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Not decided yet (never in a finished event).
    #[default]
    Pending,
    /// The secret was sealed and sent.
    Served,
    /// An error was sent.
    Rejected {
        /// The `GetSecretError` variant sent (`"Unauthorized"`, …).
        error: &'static str,
        /// Why, when there is more to say (a JWT problem, a store failure).
        reason: Option<String>,
    },
}

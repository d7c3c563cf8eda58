//! The audit event every `get` produces: who asked (entity, host and the keys that signed their
//! JWTs), for what (key, field, version, mount) and what happened. It never holds a secret
//! value; the server decides where it goes. Identities are filled in only once their JWT
//! verified; the requested key, field and version are the requester's own text and must be
//! escaped wherever they are written.

use serde::Serialize;

use crate::jwt::EntityKind;

/// One request, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// The entity's public key, once its JWT verified.
    pub entity: Option<String>,
    /// Component or provider.
    pub entity_kind: Option<EntityKind>,
    /// The account that signed the entity JWT, once it verified.
    pub entity_issuer: Option<String>,
    /// The host's server key, once its JWT verified.
    pub host: Option<String>,
    /// The key (the lattice's cluster key) that signed the host JWT, once it verified.
    pub host_issuer: Option<String>,
    /// The requester's one-time xkey, when the header parsed.
    pub requester_xkey: Option<String>,
    /// The secret asked for, once the request opened.
    pub key: Option<String>,
    /// The field asked for.
    pub field: Option<String>,
    /// The version asked for (`None`: the latest).
    pub requested_version: Option<String>,
    /// The mount asked for (stores with mounts: OpenBao), once the mapping was checked.
    pub mount: Option<String>,
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

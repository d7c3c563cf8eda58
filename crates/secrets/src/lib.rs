//! A wasmCloud 1.x–compatible secrets backend: the protocol, without the transport.
//!
//! Hosts ask `<prefix>.v1alpha1.<backend>.server_xkey` for the backend's transit public xkey,
//! then send `get` requests sealed to it, carrying the entity's and the host's JWTs. This crate
//! turns such a request into the reply to send, as plain functions over bytes:
//!
//! - [`protocol`]: subjects, header names, the request and error types of
//!   `wasmcloud-secrets-types` (re-exported, so the wire format cannot drift), and the success
//!   body written from [`secrecy`] values into a zeroizing buffer;
//! - [`XKey`]: the one xkey type, from a seed (stable public key) given as bytes: as the
//!   transit key it opens requests and seals replies from one-time keys, as an encryption key
//!   it seals values to itself; seed files and variables are read by the caller
//!   ([`SeedProvider`]), never here;
//! - [`verify_entity`] / [`verify_host`]: wascap JWT checks plus what wascap leaves out (kinds
//!   of subject and issuer, issuer allow-lists, dates against a given clock);
//! - [`GetHandler`]: the `get` steps in the reference backend's order, never panicking,
//!   answering exactly the protocol's success and failure encodings, with an [`AuditEvent`]
//!   that never holds a value;
//! - [`Mappings`]: entity public key → [`Grant`]s: secret names it may read, optionally bound
//!   to the account that must sign its JWT and to a mount.
//!
//! - [`admin`]: administration requests on subjects of their own, signed by an admin nkey
//!   (wascap claims) and sealed like `get`, with the server's checks and replay cache.
//!
//! NATS, the stores and the CLI live elsewhere; they call these functions.
//!
//! ```
//! use std::time::SystemTime;
//! use anchorage_secrets::{GetHandler, JwtPolicy, Mappings, XKey, WASMCLOUD_HOST_XKEY};
//!
//! let handler = GetHandler::new(XKey::generate(), JwtPolicy::default());
//! assert!(handler.transit().public_key().starts_with('X'));
//! // A request without the host's xkey header is refused with plain `{"error":"InvalidXKey"}`.
//! let reply = handler.handle_get(None, b"", &Mappings::new(), SystemTime::now(), |_| Ok(None));
//! assert_eq!(reply.body, br#"{"error":"InvalidXKey"}"#);
//! assert!(reply.headers().is_empty());
//! # let _ = WASMCLOUD_HOST_XKEY;
//! ```

pub mod admin;
mod audit;
mod grant;
mod handler;
mod jwt;
pub mod protocol;
mod xkey;

#[cfg(test)]
mod testkit;

pub use audit::{AuditEvent, Outcome};
pub use grant::{GRANT_SEPARATOR, Grant, GrantError, is_account_key, is_cluster_key, policy_mount};
pub use handler::{
    DEFAULT_MAX_REQUEST_BYTES, GetHandler, LookupError, Mappings, Reply, SecretLookup, Verified,
};
pub use jwt::{
    Entity, EntityKind, HostIdentity, JwtError, JwtPolicy, VERIFIED_TOKENS_MAX, VerifiedTokens,
    verify_entity, verify_host,
};
pub use protocol::{
    DEFAULT_PREFIX, GetSecretError, Operation, RESPONSE_XKEY, SecretRequest, SecretValue, Subjects,
    VersionedSecret, WASMCLOUD_HOST_XKEY,
};
pub use xkey::{KeyError, PublicXKey, SealError, SeedProvider, XKey};

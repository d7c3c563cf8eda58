//! The [`Issuer`] trait: one request in, one [`IssuedCertificate`] out, whatever the backend.
//!
//! Backends: the built-in CA ([`crate::builtin`]), Vault/OpenBao PKI (`anchorage-ca-vault`) and
//! cert-manager (`anchorage-ca-cert-manager`). The [`crate::manager`] works over any of them.
//!
//! Root rotation is designed in from the start: an issuer reports the CA that *signs* now
//! ([`Issuer::signing_ca`]) separately from the set of roots that *validate*
//! ([`Issuer::validating_roots`]), as Open Service Mesh split them, so a rotation can first
//! publish the new root to every peer, then switch signing, then retire the old root.

use std::time::Duration;

use anchorage_x509::{Certificate, Timestamp};
use async_trait::async_trait;

use crate::issued::{IssuedCertificate, IssuerId};
use crate::request::{CertificateRequest, Identity, KeyType, RequestError};

/// A certificate authority that can issue for a [`CertificateRequest`].
///
/// Implementations are shared across tasks (`Send + Sync`) and must be safe to call
/// concurrently; the manager already collapses concurrent requests for one identity.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// A short name for logs and errors: `builtin`, `vault`, `cert-manager`.
    fn backend(&self) -> &'static str;

    /// Issues one certificate. On error nothing is cached or replaced by the caller.
    async fn issue(&self, request: &CertificateRequest) -> Result<IssuedCertificate, IssueError>;

    /// The CA that signs new certificates now, when known. A cached certificate whose issuer
    /// differs is renewed by the manager.
    fn signing_ca(&self) -> Option<IssuerId>;

    /// The roots peers should trust now (during a rotation: old and new).
    fn validating_roots(&self) -> Vec<Certificate>;
}

/// Why an issuance failed. Each variant carries what a fix needs; none carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request is invalid as it stands.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The backend cannot make keys of this type (e.g. cert-manager profiles).
    #[error("the {backend} issuer cannot make {key_type} keys: {hint}")]
    UnsupportedKeyType {
        /// The backend.
        backend: &'static str,
        /// The key type asked for.
        key_type: KeyType,
        /// What to use instead.
        hint: String,
    },
    /// The requested lifetime ends after the issuing CA and the policy is to refuse.
    #[error(
        "a lifetime of {requested:?} for {identity} would outlive the issuing CA, which expires at {ca_not_after}: ask for at most {available:?}, or rotate the CA first"
    )]
    LifetimeExceedsCa {
        /// The identity.
        identity: Identity,
        /// What was asked for.
        requested: Duration,
        /// What the CA has left.
        available: Duration,
        /// When the CA expires.
        ca_not_after: Timestamp,
    },
    /// The issuing CA has expired or is not valid yet.
    #[error(
        "the issuing CA {subject} is not valid now (valid {not_before} to {not_after}): rotate or re-import it"
    )]
    CaNotValid {
        /// The CA's subject.
        subject: String,
        /// Start of its validity.
        not_before: Timestamp,
        /// End of its validity.
        not_after: Timestamp,
    },
    /// The backend refused the request (an OpenBao role that does not allow the name, a denied
    /// cert-manager request).
    #[error("the {backend} issuer refused {identity}: {reason}")]
    Refused {
        /// The backend.
        backend: &'static str,
        /// The identity.
        identity: Identity,
        /// The backend's own words.
        reason: String,
    },
    /// A name of the request lies outside the name constraints of a CA on the signing path
    /// (the built-in CA checks before signing, so it never issues what verifiers would refuse).
    #[error(
        "{name} is outside the name constraints of the CA {ca}: {reason}; issue names inside them, or use a CA whose constraints cover the name"
    )]
    NameNotPermitted {
        /// The name, as SAN text (`DNS:evil.example.com`).
        name: String,
        /// The subject of the constrained CA.
        ca: String,
        /// Which constraint refuses it (the permitted subtrees it lies outside of, or the
        /// excluded subtree it lies in).
        reason: String,
    },
    /// A wildcard directly over a public suffix (`*.com`, `*.co.uk`): valid for every site of a
    /// registry, never issued by the built-in CA.
    #[error(
        "{name} is a wildcard over the public suffix {suffix:?} (a top-level or registry domain): it would be valid for every site under it; name a domain you control, e.g. *.example.{suffix}"
    )]
    PublicSuffixWildcard {
        /// The wildcard name, as SAN text.
        name: String,
        /// The public suffix below the `*`.
        suffix: String,
    },
    /// The backend could not be reached or answered something we do not understand.
    #[error("the {backend} issuer failed: {message}")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// What went wrong, with the address or object involved.
        message: String,
    },
    /// The backend did not answer in time.
    #[error("the {backend} issuer did not answer within {waited:?}")]
    Timeout {
        /// The backend.
        backend: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// Key generation or signing failed locally.
    #[error("could not {action}: {message}")]
    Crypto {
        /// `generate a P-256 key`, `sign the certificate`, …
        action: String,
        /// The library's message.
        message: String,
    },
}

//! Anchorage's internal CA: issue, cache, renew and announce mTLS certificates.
//!
//! The parts, bottom up:
//!
//! - [`request`]: a plain [`CertificateRequest`] (identity, SANs including SPIFFE IDs, kind, lifetime,
//!   key type): parameters first, then the product.
//! - [`issued`]: the product, an [`IssuedCertificate`] (certificate, chain, validating roots, the
//!   [`PrivateKey`] in a zeroizing type whose `Debug` never shows it).
//! - [`issuer`]: the [`Issuer`] trait every backend implements (built-in here; Vault/OpenBao in
//!   `anchorage-ca-vault`; cert-manager in `anchorage-ca-cert-manager`).
//!
//! The crate never prints; errors are typed and carry the facts a fix needs.

pub mod issued;
pub mod issuer;
pub mod request;

pub use issued::{IssuedCertificate, IssuerId, PrivateKey};
pub use issuer::{IssueError, Issuer};
pub use request::{CertKind, CertificateRequest, Identity, KeyType, RequestError, San, SpiffeId};

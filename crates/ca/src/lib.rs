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
//! - [`keys`]: key pairs of every [`KeyType`] made or loaded (PKCS#8, SEC 1, PKCS#1).
//! - [`builtin`]: the [`BuiltinCa`] (root and optional intermediate; import/export of PEM files
//!   and the FSM/OSM `fsm-ca-bundle` Secret layout), and [`persist`]: keeping it in an
//!   `anchorage-store` store, keys encrypted with a passphrase or protected by the file's mode.
//! - [`clock`]: wall-clock time ([`Clock`], [`SystemClock`], [`ManualClock`] for tests).
//! - [`manager`]: the [`CertManager`] over any issuer: cache, single-flight issuance, renewal
//!   before expiry, per-identity announcements, issuer swaps.
//!
//! The crate never prints; errors are typed and carry the facts a fix needs.

pub mod builtin;
pub mod check;
pub mod clock;
pub mod issued;
pub mod issuer;
pub mod keys;
pub mod manager;
pub mod persist;
pub mod request;

pub use builtin::{
    BuiltinCa, CaError, CaPem, InitOptions, IntermediateOptions, LifetimePolicy, Source,
};
pub use check::{Mismatch, check_issued, csr_pem};
pub use clock::{Clock, ManualClock, SystemClock};
pub use issued::{IssuedCertificate, IssuerId, PrivateKey};
pub use issuer::{IssueError, Issuer};
pub use keys::{KeyError, KeyForm};
pub use manager::{
    CertManager, CertSummary, ManagerConfig, ManagerError, ReissueReport, RenewalPolicy,
    RenewalTask, RotationEvent, RotationReason, Subscription, renew_at,
};
pub use request::{CertKind, CertificateRequest, Identity, KeyType, RequestError, San, SpiffeId};

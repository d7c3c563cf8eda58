//! `anchorage doctor`: connect to a TLS server, show the chain it really sends, say exactly why
//! it is (not) trusted, and name the fix.
//!
//! Three steps, each usable alone:
//!
//! 1. [`Target::parse`] turns `host:port`, `https://host/…` or an OCI reference into a host and
//!    port;
//! 2. [`connect`] completes a handshake whatever the server sends (through the capture-only
//!    verifier in [`danger`]) and returns the [`Captured`] chain, or a [`DoctorError`] that says
//!    whether the connection was refused, timed out, hit something that is not TLS, or got an
//!    alert;
//! 3. [`diagnose`] checks that chain against a `RootCertStore` (build one with
//!    `anchorage_trust::tls::TrustConfig`) and returns a [`Report`]: one primary [`Diagnosis`],
//!    secondary [`Finding`]s, the chain as [`ChainEntry`]s, and the [`Fix`].
//!
//! The crate never prints and never installs a crypto provider: callers pass one.
//!
//! ```
//! use std::sync::Arc;
//!
//! use anchorage_doctor::{DiagnoseParams, Diagnosis, Target, diagnose};
//! use anchorage_x509::Timestamp;
//!
//! let target = Target::parse("oci://registry.corp:5000/team/app:v2")?;
//! assert_eq!((target.host.as_str(), target.port), ("registry.corp", 5000));
//!
//! // In the CLI the chain comes from `connect(&target, &options, provider)`.
//! let roots = rustls::RootCertStore::empty();
//! let params = DiagnoseParams {
//!     target: "registry.corp:5000",
//!     server_name: &target.host,
//!     roots: &roots,
//!     root_certificates: &[],
//!     candidates: &[],
//!     now: Timestamp::from_unix(1_800_000_000),
//!     expiry_window: anchorage_doctor::DEFAULT_EXPIRY_WINDOW,
//!     handshake_signature: None,
//! };
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let report = diagnose(&[], &params, provider);
//! assert_eq!(report.primary, Diagnosis::NoCertificate);
//! # Ok::<(), anchorage_doctor::DoctorError>(())
//! ```

pub mod danger;

mod chain;
mod connect;
mod diagnose;
mod error;
mod target;

pub use chain::{ChainEntry, Link};
pub use connect::{Captured, ConnectOptions, connect};
pub use danger::HandshakeSignature;
pub use diagnose::{
    DEFAULT_EXPIRY_WINDOW, DiagnoseParams, Diagnosis, Finding, Fix, Report, diagnose,
};
pub use error::DoctorError;
pub use target::{DEFAULT_PORT, Target};

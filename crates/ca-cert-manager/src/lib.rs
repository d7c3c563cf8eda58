//! The cert-manager backend of Anchorage's internal CA: an [`anchorage_ca::Issuer`] that has
//! cert-manager sign, through a `cert-manager.io/v1` `CertificateRequest`.
//!
//! [`CertManagerIssuer`]'s [`issue`](anchorage_ca::Issuer::issue) makes the key locally, signs
//! a CSR with it, creates a `CertificateRequest` naming the configured `Issuer` or
//! `ClusterIssuer`, watches it until it is issued (or fails fast when it is denied, found
//! invalid or failed, or times out), reads the certificate, its chain and the CA, and deletes the
//! request in every case.
//!
//! The parts, bottom up:
//!
//! - [`v1`]: the `CertificateRequest` custom resource as cert-manager's API defines it.
//! - [`build_request`], [`certificate_signing_request`]: what is sent, as plain functions.
//! - [`read_status`]: what a status means ([`Progress`] or an
//!   [`IssueError`](anchorage_ca::IssueError)), as a plain function.
//! - [`CertManagerIssuer`]: the sequence against the API server.
//!
//! The pure parts need no cluster:
//!
//! ```
//! use anchorage_ca::{CertKind, CertificateRequest, Identity, San, keys};
//! use anchorage_ca_cert_manager::v1::IssuerReference;
//! use anchorage_ca_cert_manager::{
//!     CertManagerSettings, Progress, build_request, certificate_signing_request, read_status,
//! };
//!
//! let request = CertificateRequest::new(
//!     Identity::new("bookstore-v2.bookstore.cluster.local")?,
//!     CertKind::Service,
//! )
//! .with_san(San::parse("spiffe://cluster.local/ns/bookstore/sa/bookstore-v2")?);
//! let settings =
//!     CertManagerSettings::new("bookstore", IssuerReference::cluster_issuer("mesh-ca"));
//!
//! let (key, _private_key) = keys::generate(request.key_type)?;
//! let csr = certificate_signing_request(&request, &key)?;
//! let object = build_request(&request, &csr, &settings);
//!
//! let json = serde_json::to_value(&object)?;
//! assert_eq!(json["apiVersion"], "cert-manager.io/v1");
//! assert_eq!(json["kind"], "CertificateRequest");
//! assert_eq!(json["metadata"]["generateName"], "anchorage-bookstore-v2-bookstore-cluster-local-");
//! assert_eq!(json["spec"]["issuerRef"]["kind"], "ClusterIssuer");
//! assert_eq!(json["spec"]["duration"], "24h0m0s");
//! assert_eq!(
//!     json["spec"]["usages"],
//!     serde_json::json!(["digital signature", "server auth", "client auth"])
//! );
//!
//! // Nothing has happened to it yet.
//! assert!(matches!(read_status(&object, &request)?, Progress::Pending { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Against a cluster (the caller builds the [`kube::Client`] and picks its crypto provider):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use anchorage_ca::{CertKind, CertificateRequest, Identity, Issuer as _};
//! use anchorage_ca_cert_manager::v1::IssuerReference;
//! use anchorage_ca_cert_manager::{CertManagerIssuer, CertManagerSettings};
//!
//! let issuer_ref = IssuerReference::cluster_issuer("mesh-ca");
//! let settings =
//!     CertManagerSettings::new("mesh-system", issuer_ref).with_timeout(Duration::from_secs(30));
//! let issuer = CertManagerIssuer::new(kube::Client::try_default().await?, settings)?;
//! let request = CertificateRequest::new(Identity::new("web.shop.svc")?, CertKind::Service);
//! let issued = issuer.issue(&request).await?;
//! assert_eq!(issuer.signing_ca(), Some(issued.issuer));
//! # Ok(())
//! # }
//! ```
//!
//! The crate never prints; it logs through `tracing` (the request's name, a timed-out
//! request's last state, a failed clean-up) and returns typed errors.

mod issuer;
mod object;
mod settings;
mod status;
pub mod v1;

pub use issuer::CertManagerIssuer;
pub use object::{
    IDENTITY_ANNOTATION, KIND_LABEL, MANAGED_BY, MANAGED_BY_LABEL, build_request,
    certificate_signing_request, generate_name, go_duration, usages,
};
pub use settings::{CertManagerSettings, DEFAULT_TIMEOUT, SettingsError};
pub use status::{Issued, Progress, read_status};

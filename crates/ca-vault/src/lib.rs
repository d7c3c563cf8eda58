//! Vault/OpenBao PKI issuer for anchorage-ca.
//!
//! [`VaultIssuer`] implements [`anchorage_ca::Issuer`] over the PKI secrets engine of
//! HashiCorp Vault or OpenBao:
//!
//! - **Where the key is made.** By default OpenBao makes it: `POST <mount>/issue/<role>` with
//!   `private_key_format=pkcs8`, and the key comes back in the answer (read into zeroizing
//!   memory, checked against the certificate). With [`KeyLocation::Local`] the key is made here
//!   (`anchorage_ca::keys::generate`) and only a CSR is sent to `POST <mount>/sign/<role>`: the
//!   key never leaves the process.
//! - **Request mapping.** CN = the identity; `alt_names` = the DNS SANs (the identity among them
//!   when it is a DNS name), `ip_sans`, `uri_sans` (SPIFFE IDs); `ttl` = the lifetime in seconds;
//!   `key_type`/`key_bits` from the key type (honoured by roles with `key_type=any`; a role with
//!   a fixed type makes its own, and the issuer then fails with
//!   [`anchorage_ca::IssueError::UnsupportedKeyType`] rather than hand out another key type);
//!   `exclude_cn_from_sans=true` so the SANs are exactly the request's. Key usage and EKU come
//!   from the role (`server_flag`, `client_flag`); a certificate that lacks a purpose its kind
//!   needs is refused.
//! - **Lifetimes.** A TTL above the role's `max_ttl` is cut to `max_ttl` by OpenBao (it warns);
//!   the result says so with `lifetime_clamped`. A TTL past the CA's end is refused by OpenBao
//!   (issuer `leaf_not_after_behavior=err`, the default) and becomes
//!   [`anchorage_ca::IssueError::LifetimeExceedsCa`].
//! - **Refusals.** HTTP 400 from the role (`common name … not allowed by this role`) becomes
//!   [`anchorage_ca::IssueError::Refused`] with OpenBao's words; 403 becomes a `Backend` error
//!   naming the request and the policy it needs; connection failures name the address; a
//!   request that outlives [`VaultConfig::request_timeout`] is `Timeout`.
//! - **Auth.** A token ([`VaultAuth::Token`], sent as `X-Vault-Token`) or AppRole
//!   ([`VaultAuth::AppRole`]: login, cached token, login again at two thirds of the lease or on
//!   a 403). `X-Vault-Namespace` when a namespace is set. Tokens and secret IDs are
//!   [`secrecy::SecretString`]s, never logged, never in errors or `Debug`.
//! - **CA chain.** Each issue answer updates the cached chain; [`VaultIssuer::refresh_ca`]
//!   reads it on demand (`<mount>/issuer/<ref>/json`). [`anchorage_ca::Issuer::signing_ca`] is
//!   the issuing CA's fingerprint, [`anchorage_ca::Issuer::validating_roots`] the chain's
//!   self-signed certificates.
//! - **Transport.** reqwest over rustls with the caller's crypto provider and a trust store from
//!   [`anchorage_trust::tls::TrustConfig`] (so a private CA for OpenBao is one
//!   `ssl_certs_file` or `--tls-ca-path` away); plain HTTP only for an `http://` address, and an
//!   `https://` address never follows a redirect to `http://`.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use anchorage_ca::{CertKind, CertificateRequest, Identity, Issuer as _, San};
//! use anchorage_ca_vault::{AppRole, KeyLocation, VaultAuth, VaultConfig, VaultIssuer};
//! use anchorage_trust::tls::TrustConfig;
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = VaultAuth::AppRole(AppRole::new(
//!     "0b5c1f4e-role-id",
//!     SecretString::from(std::env::var("ANCHORAGE_VAULT_SECRET_ID")?),
//! ));
//! let config = VaultConfig::new("https://openbao.internal:8200", "mesh-service", auth)
//!     .with_mount("pki_int")
//!     .with_key_location(KeyLocation::Local) // the key never leaves this process
//!     .with_trust(TrustConfig {
//!         ssl_certs_file: Some("/etc/anchorage/openbao-ca.pem".into()),
//!         ..TrustConfig::default()
//!     });
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let issuer = VaultIssuer::new(config, provider)?;
//!
//! let request = CertificateRequest::new(
//!     Identity::new("bookstore-v2.bookstore.cluster.local")?,
//!     CertKind::Service,
//! )
//! .with_san(San::parse("spiffe://cluster.local/ns/bookstore/sa/bookstore-v2")?);
//! let issued = issuer.issue(&request).await?;
//! assert_eq!(issuer.signing_ca(), Some(issued.issuer));
//! # Ok(())
//! # }
//! ```
//!
//! The crate never prints; diagnostics go to `tracing` (never with a secret).

mod auth;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod issuer;
mod wire;

pub use config::{AppRole, KeyLocation, VaultAuth, VaultConfig};
pub use error::VaultError;
pub use issuer::VaultIssuer;

//! [`VaultError`]: why a [`crate::VaultIssuer`] could not be built.
//!
//! Failures while issuing are [`anchorage_ca::IssueError`]s, as for every backend; this enum
//! covers only the settings checked at construction. No variant carries a token or secret ID.

use anchorage_trust::tls::TlsTrustError;

/// A setting that cannot work, found before anything is sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The address is not an `http://` or `https://` URL.
    #[error(
        "Vault address {address:?} is not usable: {reason}; give it as https://host:8200 (or http:// for a dev server on loopback)"
    )]
    InvalidAddress {
        /// What was given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting that goes into a URL path or a header is malformed.
    #[error("Vault setting {setting} {value:?} is not usable: it {reason}")]
    InvalidSetting {
        /// `role`, `mount`, `issuer_ref`, `approle mount`, `namespace`.
        setting: &'static str,
        /// What was given.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The token or secret ID cannot be sent in an HTTP header or body (its value is not shown).
    #[error("the Vault {what} is not usable: it {reason}")]
    InvalidSecret {
        /// `token` or `AppRole secret ID`.
        what: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The TLS trust store for an `https://` address could not be built.
    #[error("could not build the TLS trust store for Vault at {address}")]
    Trust {
        /// The Vault address.
        address: String,
        /// What the trust builder said (boxed: it carries a whole report).
        #[source]
        source: Box<TlsTrustError>,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client for Vault at {address}")]
    Client {
        /// The Vault address.
        address: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
}

//! The product of an issuance: certificate, chain, validating roots and the private key.
//!
//! This module owns the shape every backend returns, and the one rule about keys: a
//! [`PrivateKey`] lives in zeroizing memory, its `Debug` shows only the algorithm, and the PEM
//! comes out only as a [`SecretString`].

use std::fmt;

use anchorage_x509::{Certificate, Sha256Fingerprint, Timestamp};
use base64::Engine as _;
use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::request::KeyType;

/// Which CA signed a certificate: the SHA-256 fingerprint of the signing CA certificate. The
/// manager renews a certificate when its issuer's id is no longer the one that signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IssuerId(pub Sha256Fingerprint);

impl IssuerId {
    /// The id of `ca`.
    pub fn of(ca: &Certificate) -> Self {
        Self(ca.sha256())
    }
}

impl fmt::Display for IssuerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A private key as PKCS#8 DER, zeroized on drop. `Debug` never shows it.
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8_der: Zeroizing<Vec<u8>>,
    key_type: Option<KeyType>,
}

impl PrivateKey {
    /// Wraps PKCS#8 DER (the caller's buffer is moved, not copied).
    pub fn from_pkcs8_der(der: Vec<u8>, key_type: Option<KeyType>) -> Self {
        Self {
            pkcs8_der: Zeroizing::new(der),
            key_type,
        }
    }

    /// The PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The algorithm, when known.
    pub fn key_type(&self) -> Option<KeyType> {
        self.key_type
    }

    /// `-----BEGIN PRIVATE KEY-----` PEM, as a secret.
    pub fn to_pkcs8_pem(&self) -> SecretString {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----\n";
        const END: &str = "-----END PRIVATE KEY-----\n";
        let b64 =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.pkcs8_der));
        // Sized exactly: no growth leaves a partial copy of the key in freed memory, and the
        // conversion into the secret's box does not reallocate.
        let size = BEGIN.len() + b64.len() + b64.len().div_ceil(64) + END.len();
        let mut pem = String::with_capacity(size);
        pem.push_str(BEGIN);
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(END);
        debug_assert_eq!(pem.len(), pem.capacity());
        SecretString::from(pem)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("pkcs8_der", &"[redacted]")
            .finish()
    }
}

/// A certificate with its key, as an [`crate::Issuer`] returns it.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The new certificate.
    pub certificate: Certificate,
    /// Its private key (absent only when a backend signed a CSR whose key the caller holds).
    pub private_key: Option<PrivateKey>,
    /// Intermediates between the certificate and a root, nearest first; empty when the root
    /// signed directly.
    pub chain: Vec<Certificate>,
    /// The roots a peer should trust to validate it. During a root rotation this holds both
    /// the old and the new root.
    pub validating_roots: Vec<Certificate>,
    /// The CA certificate that signed it.
    pub issuer: IssuerId,
    /// True when the requested lifetime was cut to end with the issuing CA.
    pub lifetime_clamped: bool,
}

impl IssuedCertificate {
    /// End of validity.
    pub fn not_after(&self) -> Timestamp {
        self.certificate.not_after()
    }

    /// Start of validity.
    pub fn not_before(&self) -> Timestamp {
        self.certificate.not_before()
    }

    /// The certificate followed by the chain, PEM, as a server's chain file wants it.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.certificate)
            .chain(&self.chain)
            .map(Certificate::to_pem)
            .collect()
    }

    /// The validating roots, PEM.
    pub fn roots_pem(&self) -> String {
        self.validating_roots
            .iter()
            .map(Certificate::to_pem)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = PrivateKey::from_pkcs8_der(vec![0x30, 0x82, 0xAB, 0xCD], Some(KeyType::P256));
        let debug = format!("{key:?}");
        assert!(
            debug.contains("redacted") && debug.contains("P256"),
            "{debug}"
        );
        assert!(
            !debug.to_lowercase().contains("abcd") && !debug.contains("171"),
            "{debug}"
        );
    }

    #[test]
    fn pem_is_base64_in_64_column_lines() {
        let key = PrivateKey::from_pkcs8_der(vec![7u8; 100], None);
        let pem = key.to_pkcs8_pem();
        let lines: Vec<&str> = pem.expose_secret().lines().collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END PRIVATE KEY-----");
    }
}

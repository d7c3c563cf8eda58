//! What goes into a keystore ([`TrustedEntry`]) and what comes out of one ([`Keystore`]).

use std::collections::HashSet;
use std::fmt;

use anchorage_x509::Certificate;

use crate::alias::aliases;
use crate::error::KeystoreError;

/// The keystore formats this crate knows (see [`sniff`](crate::sniff)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeystoreKind {
    /// Sun's original Java KeyStore (magic `0xFEEDFEED`).
    Jks,
    /// Sun's JCE KeyStore (magic `0xCECECECE`): recognised, not read.
    Jceks,
    /// PKCS#12 (RFC 7292), Java's default keystore type since Java 9.
    Pkcs12,
}

impl KeystoreKind {
    /// The name Java uses for `-storetype` / `javax.net.ssl.trustStoreType`.
    pub fn java_type(self) -> &'static str {
        match self {
            Self::Jks => "JKS",
            Self::Jceks => "JCEKS",
            Self::Pkcs12 => "PKCS12",
        }
    }
}

impl fmt::Display for KeystoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jks => "JKS",
            Self::Jceks => "JCEKS",
            Self::Pkcs12 => "PKCS#12",
        })
    }
}

/// One certificate to store as a trusted-certificate entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedEntry {
    /// The alias: unique in the store, ignoring case.
    pub alias: String,
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// Creation date in milliseconds since the Unix epoch. Only JKS stores one per entry
    /// (`keytool -list` shows it); PKCS#12 has no such field.
    pub created_ms: i64,
}

impl TrustedEntry {
    /// Entries for `certs`, in order, with aliases from [`aliases`](crate::aliases) and the
    /// creation date set to each certificate's notBefore.
    ///
    /// notBefore rather than "now" keeps the output a function of the certificates alone, so
    /// the same bundle always gives a byte-identical JKS file (and an unchanged file is not
    /// rewritten); it is also a true statement of when the certificate came to be.
    pub fn from_certificates<'a>(certs: impl IntoIterator<Item = &'a Certificate>) -> Vec<Self> {
        let certs: Vec<&Certificate> = certs.into_iter().collect();
        let names = aliases(certs.iter().copied());
        certs
            .iter()
            .zip(names)
            .map(|(cert, alias)| Self {
                alias,
                der: cert.der().to_vec(),
                created_ms: cert.not_before().unix().saturating_mul(1000),
            })
            .collect()
    }
}

/// What a decoded keystore holds. Private and secret keys are reported, never decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keystore {
    /// The format that was read.
    pub kind: KeystoreKind,
    /// The certificates, in file order.
    pub certificates: Vec<StoredCertificate>,
    /// Key entries (private or secret keys) found and left alone.
    pub key_entries: Vec<KeyEntry>,
    /// True when an integrity check (PKCS#12 MAC, JKS digest) was verified with the password.
    /// False for a file without one (the unprotected PKCS#12 profile) or read without a password.
    pub integrity_checked: bool,
}

impl Keystore {
    /// The certificates Java treats as trusted-certificate entries.
    pub fn trusted(&self) -> impl Iterator<Item = &StoredCertificate> {
        self.certificates.iter().filter(|c| c.trusted)
    }
}

/// One certificate read from a keystore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCertificate {
    /// The alias (PKCS#12 `friendlyName`; always present in JKS).
    pub alias: Option<String>,
    /// The certificate's DER, as stored (not checked to be a valid certificate).
    pub der: Vec<u8>,
    /// True for a trusted-certificate entry: a JKS tag-2 entry, or a PKCS#12 certificate bag
    /// carrying Oracle's trusted-key-usage attribute. A PKCS#12 certificate without it is part of
    /// a key entry's chain, or ignored by Java.
    pub trusted: bool,
    /// Creation date in milliseconds since the Unix epoch (JKS only).
    pub created_ms: Option<i64>,
}

/// A key entry found in a keystore. Only its alias is read; the key stays encrypted and unread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The alias (PKCS#12 `friendlyName`, if present).
    pub alias: Option<String>,
}

/// Checks aliases (non-empty, unique ignoring case) and certificate sizes before encoding.
pub(crate) fn check_entries(
    entries: &[TrustedEntry],
    kind: KeystoreKind,
) -> Result<(), KeystoreError> {
    let mut seen = HashSet::with_capacity(entries.len());
    for entry in entries {
        if entry.alias.is_empty() {
            return Err(KeystoreError::InvalidAlias {
                alias: String::new(),
                kind,
                reason: "an alias cannot be empty",
            });
        }
        if entry.alias.chars().any(char::is_control) {
            return Err(KeystoreError::InvalidAlias {
                alias: entry.alias.clone(),
                kind,
                reason: "control characters would be garbled by keytool's listing",
            });
        }
        if !seen.insert(entry.alias.to_lowercase()) {
            return Err(KeystoreError::DuplicateAlias {
                alias: entry.alias.clone(),
            });
        }
        if entry.der.is_empty() {
            return Err(KeystoreError::InvalidCertificate {
                alias: entry.alias.clone(),
                reason: "the certificate is empty",
            });
        }
        if u32::try_from(entry.der.len()).is_err() {
            return Err(KeystoreError::InvalidCertificate {
                alias: entry.alias.clone(),
                reason: "the certificate is larger than 4 GiB",
            });
        }
    }
    Ok(())
}

/// Rejects an empty password (Java reads it as none).
pub(crate) fn check_password(password: &str) -> Result<(), KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    Ok(())
}

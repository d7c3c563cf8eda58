//! Why a keystore could not be encoded or decoded.

use crate::KeystoreKind;

/// What went wrong encoding or decoding a keystore. Messages never contain a password, key
/// material or certificate bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The integrity check (PKCS#12 MAC, JKS digest) failed: the password is not the store's.
    /// Distinct from [`KeystoreError::Malformed`]: the file itself is well formed.
    #[error(
        "wrong password for this {kind} keystore: its integrity check ({check}) does not match; give the store password it was written with"
    )]
    WrongPassword {
        /// The keystore format.
        kind: KeystoreKind,
        /// What was checked (`HMAC-SHA256 MAC`, `SHA-1 digest`...).
        check: &'static str,
    },
    /// An encrypted PKCS#12 profile was asked for without a password, or a PKCS#12 file with
    /// encrypted contents was read without one.
    #[error("{what} needs a password, and none was given")]
    PasswordRequired {
        /// What needs it (`the modern-2023 PKCS#12 profile`, `this PKCS#12 file's encrypted certificates`).
        what: String,
    },
    /// A password was given for the password-less PKCS#12 profile, which would ignore it.
    #[error(
        "the unprotected PKCS#12 profile has no password and no integrity check, so the password given would be ignored; drop the password or choose an encrypted profile"
    )]
    PasswordNotUsed,
    /// An empty password: Java treats an empty `javax.net.ssl.trustStorePassword` as no password
    /// at all, so a store written with one could not be opened as intended.
    #[error(
        "empty keystore password: Java reads an empty trust-store password as none; give a real password (Java's default is `changeit`) or use the unprotected PKCS#12 profile"
    )]
    EmptyPassword,
    /// An iteration count Java would refuse (or that is meaningless).
    #[error(
        "PKCS#12 iteration count {iterations} is out of range: Java accepts 1 to {max}; the default is 10000"
    )]
    Iterations {
        /// The count asked for.
        iterations: u32,
        /// The largest count Java 17 accepts.
        max: u32,
    },
    /// An alias that cannot be stored.
    #[error("invalid alias {alias:?} for a {kind} keystore: {reason}")]
    InvalidAlias {
        /// The alias.
        alias: String,
        /// The keystore format.
        kind: KeystoreKind,
        /// Why it cannot be stored.
        reason: &'static str,
    },
    /// Two entries with the same alias (Java compares aliases ignoring case): one would hide the
    /// other when Java loads the store.
    #[error(
        "duplicate alias {alias:?} (Java compares aliases ignoring case, so one entry would hide the other); derive aliases with `aliases()`"
    )]
    DuplicateAlias {
        /// The alias, as given the second time.
        alias: String,
    },
    /// A certificate too large for the format, or empty.
    #[error("certificate {alias:?} cannot be stored: {reason}")]
    InvalidCertificate {
        /// The alias of the entry.
        alias: String,
        /// Why not.
        reason: &'static str,
    },
    /// A JCEKS keystore (magic `0xCECECECE`): Sun's proprietary format, not read here.
    #[error(
        "this is a JCEKS keystore (magic 0xCECECECE), which is not read here; convert it with `keytool -importkeystore -srckeystore FILE -srcstoretype JCEKS -destkeystore OUT.p12 -deststoretype PKCS12`"
    )]
    Jceks,
    /// Neither JKS, JCEKS nor PKCS#12.
    #[error(
        "not a Java keystore: neither JKS (magic 0xFEEDFEED), JCEKS (0xCECECECE) nor PKCS#12 (a DER PFX of version 3)"
    )]
    NotAKeystore,
    /// The file is damaged or cut short.
    #[error("malformed {kind} keystore: {reason}")]
    Malformed {
        /// The keystore format.
        kind: KeystoreKind,
        /// What is wrong and where (structure or byte offset).
        reason: String,
    },
    /// Well formed, but uses something this crate does not implement.
    #[error("unsupported {what} in {kind} keystore: {found}")]
    Unsupported {
        /// The keystore format.
        kind: KeystoreKind,
        /// What kind of thing (`encryption algorithm`, `certificate type`...).
        what: &'static str,
        /// What was found: an OID or a name.
        found: String,
    },
    /// The file asks for more key-derivation work or memory than one keystore may cost (scrypt
    /// parameters beyond the limits, or iterations adding up past the per-keystore budget).
    /// Refused before any derivation runs: a hostile file could otherwise take seconds of CPU
    /// or gigabytes of memory. The limits are `MAX_KDF_WORK` and the `MAX_SCRYPT_*` constants.
    #[error(
        "{kind} keystore refused: it asks for {what}, beyond the limit of {limit}; re-export it with ordinary parameters (keytool or OpenSSL defaults)"
    )]
    KdfLimit {
        /// The keystore format.
        kind: KeystoreKind,
        /// What the file asks for.
        what: String,
        /// The limit it exceeds.
        limit: String,
    },
    /// Encoding failed inside the DER encoder (a length beyond what DER or the format holds).
    #[error("cannot encode the {kind} keystore: {reason}")]
    Encode {
        /// The keystore format.
        kind: KeystoreKind,
        /// What the encoder said.
        reason: String,
    },
}

impl KeystoreError {
    pub(crate) fn malformed(kind: KeystoreKind, reason: impl Into<String>) -> Self {
        Self::Malformed {
            kind,
            reason: reason.into(),
        }
    }

    /// A DER decoding error in the PKCS#12 structure `what`.
    pub(crate) fn der(what: &str) -> impl FnOnce(der::Error) -> Self + '_ {
        move |e| Self::malformed(KeystoreKind::Pkcs12, format!("{what}: {e}"))
    }

    /// A DER encoding error (lengths beyond what DER holds).
    pub(crate) fn encode(e: der::Error) -> Self {
        Self::Encode {
            kind: KeystoreKind::Pkcs12,
            reason: e.to_string(),
        }
    }
}

//! PKCS#12 trust stores: [`Pkcs12Profile`], [`Pkcs12Options`], [`encode_pkcs12`],
//! [`decode_pkcs12`].
//!
//! What a Java trust store in PKCS#12 looks like (what `keytool -importcert` writes):
//!
//! ```text
//! PFX { version 3,
//!       authSafe data ─▶ AuthenticatedSafe [ encryptedData (or data) ─▶ SafeContents [
//!           certBag { x509Certificate DER,
//!                     attributes { friendlyName BMPString alias,
//!                                  2.16.840.1.113894.746875.1.1 { anyExtendedKeyUsage } } } ... ] ],
//!       macData { HMAC over the AuthenticatedSafe, salt, iterations } (absent when unprotected) }
//! ```
//!
//! Oracle's attribute `2.16.840.1.113894.746875.1.1` is what makes Java load a certificate bag
//! as a trusted-certificate entry; without it Java treats the bag as part of a key entry's chain
//! (or drops it). There are no key bags.
//!
//! The ASN.1 types come from the `pkcs12`, `cms`, `x509-cert` and `pkcs5` crates; this module
//! assembles them and derives salts and IVs deterministically (see `encode.rs`).

pub(crate) mod budget;
mod crypto;
mod decode;
mod encode;
mod identity;
#[cfg(test)]
mod tests;

use std::fmt;

use der::asn1::ObjectIdentifier;
use secrecy::SecretString;

pub use budget::{
    MAX_KDF_WORK, MAX_SCRYPT_LOG_N, MAX_SCRYPT_MEMORY, MAX_SCRYPT_P, MAX_SCRYPT_R, SCRYPT_STEP_WORK,
};
pub use decode::decode_pkcs12;
pub use encode::encode_pkcs12;
pub use identity::encode_pkcs12_identity;

use crate::error::KeystoreError;

/// The default iteration count for key derivation and MAC: what Java 17 writes.
pub const DEFAULT_ITERATIONS: u32 = 10_000;

/// The largest iteration count Java 17 accepts when it loads a PKCS#12 file (its
/// `MAX_ITERATION_COUNT`).
pub const MAX_ITERATIONS: u32 = 5_000_000;

/// How a PKCS#12 trust store is protected, mirroring the profiles cert-manager's trust-manager
/// offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pkcs12Profile {
    /// Certificates encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an HMAC-SHA256
    /// MAC: what Java 17 (and 11.0.12+, 8u301+) and OpenSSL 3 write by default.
    #[default]
    Modern2023,
    /// `pbeWithSHAAnd3-KeyTripleDES-CBC` and an HMAC-SHA1 MAC: for JVMs older than 8u301 and
    /// 11.0.12, which cannot read PBES2.
    LegacyDes,
    /// `pbeWithSHAAnd40BitRC2-CBC` and an HMAC-SHA1 MAC: what Java 8 wrote by default. OpenSSL 3
    /// reads it only with `-legacy`.
    LegacyRc2,
    /// No encryption and no MAC: the certificates sit in a plain `data` ContentInfo, as Java
    /// writes with `keystore.pkcs12.certProtectionAlgorithm=NONE` and
    /// `keystore.pkcs12.macAlgorithm=NONE`. Java 17 loads it with any password or none. A trust
    /// store holds only public certificates, so this loses nothing but the integrity check.
    Unprotected,
}

impl Pkcs12Profile {
    /// Every profile.
    pub const ALL: [Self; 4] = [
        Self::Modern2023,
        Self::LegacyDes,
        Self::LegacyRc2,
        Self::Unprotected,
    ];

    /// A short kebab-case name (`modern-2023`, `legacy-des`, `legacy-rc2`, `unprotected`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern2023 => "modern-2023",
            Self::LegacyDes => "legacy-des",
            Self::LegacyRc2 => "legacy-rc2",
            Self::Unprotected => "unprotected",
        }
    }

    /// True when the profile encrypts the certificates and adds a MAC, so needs a password.
    pub fn is_protected(self) -> bool {
        self != Self::Unprotected
    }
}

impl fmt::Display for Pkcs12Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to encode a PKCS#12 trust store. `Debug` never shows the password.
#[derive(Clone)]
pub struct Pkcs12Options {
    /// Encryption and MAC algorithms.
    pub profile: Pkcs12Profile,
    /// The store password: required by the protected profiles, refused by
    /// [`Pkcs12Profile::Unprotected`] (which would silently ignore it).
    pub password: Option<SecretString>,
    /// Iterations of the key derivation for both encryption and MAC (1 to [`MAX_ITERATIONS`]).
    pub iterations: u32,
}

impl Pkcs12Options {
    /// A protected store with the given profile and password, [`DEFAULT_ITERATIONS`].
    pub fn protected(profile: Pkcs12Profile, password: SecretString) -> Self {
        Self {
            profile,
            password: Some(password),
            iterations: DEFAULT_ITERATIONS,
        }
    }

    /// A password-less store ([`Pkcs12Profile::Unprotected`]).
    pub fn unprotected() -> Self {
        Self {
            profile: Pkcs12Profile::Unprotected,
            password: None,
            iterations: DEFAULT_ITERATIONS,
        }
    }

    /// Checks the combination, returning the password for a protected profile.
    pub(crate) fn validated_password(&self) -> Result<Option<&str>, KeystoreError> {
        use secrecy::ExposeSecret as _;

        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(KeystoreError::Iterations {
                iterations: self.iterations,
                max: MAX_ITERATIONS,
            });
        }
        match (self.profile.is_protected(), &self.password) {
            (true, Some(password)) => {
                let password = password.expose_secret();
                crate::entry::check_password(password)?;
                Ok(Some(password))
            }
            (true, None) => Err(KeystoreError::PasswordRequired {
                what: format!("the {} PKCS#12 profile", self.profile),
            }),
            (false, Some(_)) => Err(KeystoreError::PasswordNotUsed),
            (false, None) => Ok(None),
        }
    }
}

impl fmt::Debug for Pkcs12Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs12Options")
            .field("profile", &self.profile)
            .field(
                "password",
                &self.password.as_ref().map(|_| format_args!("[redacted]")),
            )
            .field("iterations", &self.iterations)
            .finish()
    }
}

/// `SafeBag` (RFC 7292 4.2).
///
/// Our own rather than `pkcs12::safe_bag::SafeBag`, whose decoder keeps the `[0]` wrapper in
/// `bag_value` while its encoder adds one: a round trip through it nests the value twice.
#[derive(Clone, Debug, PartialEq, Eq, der::Sequence)]
pub(crate) struct SafeBag {
    /// What the bag holds (certificate, shrouded key...).
    pub(crate) bag_id: ObjectIdentifier,
    /// The bag's content, whose type `bag_id` names.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub(crate) value: der::asn1::Any,
    /// `friendlyName`, `localKeyId`, Oracle's trusted-key-usage...
    pub(crate) attributes: Option<x509_cert::attr::Attributes>,
}

/// Object identifiers this module writes or looks for.
pub(crate) mod oid {
    use super::ObjectIdentifier;

    /// PKCS#9 `friendlyName`: the alias.
    pub(crate) const FRIENDLY_NAME: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
    /// Oracle's trusted-key-usage bag attribute: marks a trusted-certificate entry for Java.
    pub(crate) const ORACLE_TRUSTED_KEY_USAGE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113894.746875.1.1");
    /// `anyExtendedKeyUsage`: the value Java writes in the trusted-key-usage attribute.
    pub(crate) const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.5.29.37.0");
    /// PKCS#5 PBES2.
    pub(crate) const PBES2: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
    /// CMS `data`.
    pub(crate) const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
    /// CMS `encryptedData`.
    pub(crate) const ENCRYPTED_DATA: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
    /// SHA-1.
    pub(crate) const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
    /// SHA-224.
    pub(crate) const SHA224: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.4");
    /// SHA-256.
    pub(crate) const SHA256: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// SHA-384.
    pub(crate) const SHA384: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// SHA-512.
    pub(crate) const SHA512: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
}

//! Java trust stores: PKCS#12 and JKS files of trusted-certificate entries, encoded and decoded.
//!
//! Pure: bytes in, bytes out. No files, no clock, no randomness, so the same certificates,
//! profile and password always give byte-identical output (a writer can then leave an unchanged
//! store alone).
//!
//! - [`encode_pkcs12`] writes a PKCS#12 trust store Java's JSSE accepts, in one of four
//!   [`Pkcs12Profile`]s (modern PBES2/AES + HMAC-SHA256, legacy 3DES or RC2 + HMAC-SHA1, or
//!   unprotected); [`decode_pkcs12`] reads ours and `keytool`'s back, checking the MAC.
//! - [`encode_jks`] / [`decode_jks`] do the same for the legacy JKS format.
//! - [`aliases`] names entries: unique, stable, lowercase (`example-root-ca-1a2b3c4d`);
//!   [`TrustedEntry::from_certificates`] pairs them with the certificates and fixes each JKS
//!   creation date to the certificate's notBefore.
//! - [`sniff`] tells JKS, JCEKS and PKCS#12 apart by content; [`decode`] reads either format.
//!
//! Key entries found while decoding are reported by alias ([`Keystore::key_entries`]) and never
//! decrypted; no key bytes are returned. Passwords travel as [`secrecy::SecretString`] and never
//! appear in `Debug` output or errors.
//!
//! ```
//! use anchorage_keystore::{
//!     Pkcs12Options, Pkcs12Profile, TrustedEntry, decode_pkcs12, encode_pkcs12,
//! };
//! use anchorage_x509::Certificate;
//! use secrecy::SecretString;
//!
//! let root = anchorage_test_support::pki::root_ca("Example Root CA");
//! let cert = Certificate::from_der(&root.der)?;
//! let entries = TrustedEntry::from_certificates([&cert]);
//!
//! let password = SecretString::from("changeit");
//! let mut options = Pkcs12Options::protected(Pkcs12Profile::Modern2023, password.clone());
//! options.iterations = 1_000; // keep the example quick; the default is 10,000
//! let bytes = encode_pkcs12(&entries, &options)?;
//! assert_eq!(bytes, encode_pkcs12(&entries, &options)?, "deterministic");
//!
//! let store = decode_pkcs12(&bytes, Some(&password))?;
//! assert!(store.integrity_checked);
//! assert_eq!(store.certificates[0].der, cert.der());
//! assert_eq!(store.certificates[0].alias.as_deref(), Some(entries[0].alias.as_str()));
//! assert!(store.certificates[0].trusted);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why not a keystore crate
//!
//! The ASN.1 types and ciphers come from RustCrypto (`pkcs12`, `pkcs5`, `cms`, `x509-cert`,
//! `des`, `rc2`, `cbc`, `hmac`); only the assembly is ours. We looked at `p12-keystore` and
//! rejected it: it draws random salts and IVs (no reproducible output, so every run would
//! rewrite the store), has no password-less mode, and always writes an empty key SafeContents.
//! JKS is written by hand because no maintained crate handles it; the format is small and
//! frozen.

mod alias;
mod entry;
mod error;
mod jks;
mod p12;
mod sniff;

pub use alias::{MAX_SLUG, aliases};
pub use entry::{KeyEntry, Keystore, KeystoreKind, StoredCertificate, TrustedEntry};
pub use error::KeystoreError;
pub use jks::{decode_jks, encode_jks};
pub use p12::{
    DEFAULT_ITERATIONS, MAX_ITERATIONS, MAX_KDF_WORK, MAX_SCRYPT_LOG_N, MAX_SCRYPT_MEMORY,
    MAX_SCRYPT_P, MAX_SCRYPT_R, Pkcs12Options, Pkcs12Profile, SCRYPT_STEP_WORK, decode_pkcs12,
    encode_pkcs12, encode_pkcs12_identity,
};
/// Re-exported: the password type of this API, so callers need not depend on `secrecy` themselves.
pub use secrecy::SecretString;
pub use sniff::{decode, sniff};

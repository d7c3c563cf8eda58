//! Encoding a PKCS#12 trust store, byte for byte reproducibly.
//!
//! # Deterministic salts and IVs
//!
//! PKCS#12 writers normally draw salts and IVs at random, so every run gives a different file
//! and a writer cannot tell "unchanged" from "changed": watchers reload, Kubernetes rolls pods,
//! diffs are noise. Here they are derived instead: SHA-256 over a domain-separation label, the
//! purpose (`pbes2-salt`, `pbes2-iv`, `pbe-salt`, `mac-salt`), the profile, the iteration count
//! and the encoded SafeContents (the certificates and their aliases), each part length-prefixed.
//!
//! Why that is acceptable for a trust store:
//!
//! - **There is no secret to hide.** The encrypted SafeContents holds public CA certificates
//!   only; the encryption exists because old JVMs insist on it, not for confidentiality. Equal
//!   ciphertexts for equal contents reveal nothing an attacker could not read from the
//!   certificates themselves.
//! - **The password guards integrity only** (the MAC, so a store cannot be altered unnoticed).
//!   The salt's job there is to stop one precomputed dictionary from serving many files; salts
//!   still differ between any two stores with different contents, profiles or iteration counts.
//! - **IVs are never reused with different plaintexts under one key**: the IV is a function of
//!   the plaintext itself, so a repeated IV means a repeated (identical) message.
//!
//! The password is deliberately **not** an input to the salt. A salt is stored in clear; one
//! derived from the password by a single SHA-256 would let an attacker test password guesses
//! at the speed of one hash each, skipping the 10,000 iterations of the MAC's key derivation.
//! Different passwords still give different files: the MAC and the ciphertext depend on the key.

use cms::content_info::{CmsVersion, ContentInfo};
use cms::encrypted_data::EncryptedData;
use cms::enveloped_data::EncryptedContentInfo;
use der::Encode as _;
use der::asn1::{Any, BmpString, OctetString, SetOfVec};
use pkcs12::cert_type::CertBag;
use pkcs12::digest_info::DigestInfo;
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::Pkcs12PbeParams;
use pkcs12::pfx::{Pfx, Version};
use sha2::{Digest as _, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

use super::crypto::{LegacyCipher, MacDigest, bmp_password};
use super::{Pkcs12Options, Pkcs12Profile, SafeBag, oid};
use crate::entry::{KeystoreKind, TrustedEntry, check_entries};
use crate::error::KeystoreError;

/// Domain-separation label for derived salts and IVs; change the version if the derivation does.
const DOMAIN: &str = "anchorage-keystore pkcs12 salt/iv derivation v1";

/// Salt length for PBKDF2, PBE and MAC: 20 bytes, as Java writes.
const SALT_LEN: usize = 20;

/// Encodes `entries` as a PKCS#12 trust store: one certificate bag per entry, carrying its alias
/// as `friendlyName` and Oracle's trusted-key-usage attribute, protected as `options.profile`
/// says. The same entries, options and password always give the same bytes.
///
/// Errors: a missing password for a protected profile or one given for
/// [`Pkcs12Profile::Unprotected`], an empty password, an iteration count Java refuses, or an
/// empty, duplicate or non-BMP alias.
pub fn encode_pkcs12(
    entries: &[TrustedEntry],
    options: &Pkcs12Options,
) -> Result<Vec<u8>, KeystoreError> {
    let password = options.validated_password()?;
    check_entries(entries, KeystoreKind::Pkcs12)?;
    let iterations = i32::try_from(options.iterations).map_err(|_| KeystoreError::Iterations {
        iterations: options.iterations,
        max: super::MAX_ITERATIONS,
    })?;

    let safe_contents = entries
        .iter()
        .map(cert_bag)
        .collect::<Result<Vec<SafeBag>, _>>()?
        .to_der()
        .map_err(KeystoreError::encode)?;
    let derive =
        |purpose: &str| derived(purpose, options.profile, options.iterations, &safe_contents);

    let (content_info, mac) = match (options.profile, password) {
        (Pkcs12Profile::Unprotected, _) | (_, None) => (data(&safe_contents)?, None),
        (Pkcs12Profile::Modern2023, Some(password)) => {
            let salt = &derive("pbes2-salt")[..SALT_LEN];
            let iv: [u8; 16] = take(&derive("pbes2-iv"));
            let mut params =
                pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(options.iterations, salt, &iv)
                    .map_err(pkcs5_error)?;
            // Java writes the key length (32 for AES-256); readers accept it either way.
            if let pkcs5::pbes2::Kdf::Pbkdf2(kdf) = &mut params.kdf {
                kdf.key_length = Some(32);
            }
            let ciphertext = params
                .encrypt(password.as_bytes(), &safe_contents)
                .map_err(pkcs5_error)?;
            let algorithm = AlgorithmIdentifierOwned {
                oid: oid::PBES2,
                parameters: Some(Any::encode_from(&params).map_err(KeystoreError::encode)?),
            };
            let info = encrypted_data(algorithm, ciphertext)?;
            (info, Some((MacDigest::Sha256, password)))
        }
        (profile @ (Pkcs12Profile::LegacyDes | Pkcs12Profile::LegacyRc2), Some(password)) => {
            let cipher = if profile == Pkcs12Profile::LegacyDes {
                LegacyCipher::TripleDes
            } else {
                LegacyCipher::Rc2_40
            };
            let salt = &derive("pbe-salt")[..SALT_LEN];
            let ciphertext =
                cipher.encrypt(&bmp_password(password), salt, iterations, &safe_contents);
            let params = Pkcs12PbeParams {
                salt: OctetString::new(salt).map_err(KeystoreError::encode)?,
                iterations,
            };
            let algorithm = AlgorithmIdentifierOwned {
                oid: cipher.oid(),
                parameters: Some(Any::encode_from(&params).map_err(KeystoreError::encode)?),
            };
            let info = encrypted_data(algorithm, ciphertext)?;
            (info, Some((MacDigest::Sha1, password)))
        }
    };

    // Only the certificates' SafeContents: no empty key SafeContents beside it.
    let auth_safe = vec![content_info].to_der().map_err(KeystoreError::encode)?;
    let mac_data = match mac {
        None => None,
        Some((digest, password)) => {
            let salt = &derive("mac-salt")[..SALT_LEN];
            let mac = digest.mac(&bmp_password(password), salt, iterations, &auth_safe);
            Some(MacData {
                mac: DigestInfo {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: digest.oid(),
                        parameters: Some(Any::null()),
                    },
                    digest: OctetString::new(mac).map_err(KeystoreError::encode)?,
                },
                mac_salt: OctetString::new(salt).map_err(KeystoreError::encode)?,
                iterations,
            })
        }
    };
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: ContentInfo {
            content_type: oid::DATA,
            content: octets(auth_safe)?,
        },
        mac_data,
    };
    pfx.to_der().map_err(KeystoreError::encode)
}

/// A certificate bag with the alias and Oracle's trusted-key-usage attribute.
fn cert_bag(entry: &TrustedEntry) -> Result<SafeBag, KeystoreError> {
    let bag = CertBag {
        cert_id: pkcs12::PKCS_12_X509_CERT_OID,
        cert_value: OctetString::new(entry.der.as_slice()).map_err(KeystoreError::encode)?,
    };
    let alias = BmpString::from_utf8(&entry.alias).map_err(|_| KeystoreError::InvalidAlias {
        alias: entry.alias.clone(),
        kind: KeystoreKind::Pkcs12,
        reason: "PKCS#12 stores aliases as BMPString, which cannot hold characters beyond U+FFFF",
    })?;
    let attribute = |oid, value: Any| -> Result<Attribute, KeystoreError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(KeystoreError::encode)?,
        })
    };
    let attributes = SetOfVec::try_from(vec![
        attribute(
            oid::FRIENDLY_NAME,
            Any::encode_from(&alias).map_err(KeystoreError::encode)?,
        )?,
        attribute(
            oid::ORACLE_TRUSTED_KEY_USAGE,
            Any::encode_from(&oid::ANY_EXTENDED_KEY_USAGE).map_err(KeystoreError::encode)?,
        )?,
    ])
    .map_err(KeystoreError::encode)?;
    Ok(SafeBag {
        bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
        value: Any::encode_from(&bag).map_err(KeystoreError::encode)?,
        attributes: Some(attributes),
    })
}

/// A CMS `data` ContentInfo holding `content`.
pub(super) fn data(content: &[u8]) -> Result<ContentInfo, KeystoreError> {
    Ok(ContentInfo {
        content_type: oid::DATA,
        content: octets(content.to_vec())?,
    })
}

/// An OCTET STRING as an `Any` (its value is the bytes themselves).
pub(super) fn octets(bytes: Vec<u8>) -> Result<Any, KeystoreError> {
    Any::new(der::Tag::OctetString, bytes).map_err(KeystoreError::encode)
}

/// A CMS `encryptedData` ContentInfo (version 0, content type `data`).
pub(super) fn encrypted_data(
    algorithm: AlgorithmIdentifierOwned,
    ciphertext: Vec<u8>,
) -> Result<ContentInfo, KeystoreError> {
    let encrypted = EncryptedData {
        version: CmsVersion::V0,
        enc_content_info: EncryptedContentInfo {
            content_type: oid::DATA,
            content_enc_alg: algorithm,
            encrypted_content: Some(OctetString::new(ciphertext).map_err(KeystoreError::encode)?),
        },
        unprotected_attrs: None,
    };
    Ok(ContentInfo {
        content_type: oid::ENCRYPTED_DATA,
        content: Any::encode_from(&encrypted).map_err(KeystoreError::encode)?,
    })
}

/// The deterministic salt or IV material for `purpose` (see the module docs).
fn derived(
    purpose: &str,
    profile: Pkcs12Profile,
    iterations: u32,
    safe_contents: &[u8],
) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [
        DOMAIN.as_bytes(),
        purpose.as_bytes(),
        profile.name().as_bytes(),
        &iterations.to_be_bytes(),
        safe_contents,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The first `N` bytes of a derived block.
fn take<const N: usize>(block: &[u8; 32]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&block[..N]);
    out
}

fn pkcs5_error(e: pkcs5::Error) -> KeystoreError {
    KeystoreError::Encode {
        kind: KeystoreKind::Pkcs12,
        reason: format!("PBES2: {e}"),
    }
}

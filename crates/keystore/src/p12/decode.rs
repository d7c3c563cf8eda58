//! Reading a PKCS#12 file: ours in every profile, and what `keytool` and OpenSSL write.
//!
//! The key derivations the file asks for are priced first, and a file asking for too much is
//! refused before any runs (see `budget.rs`). The MAC is verified next (a mismatch is [`KeystoreError::WrongPassword`]); then each
//! SafeContents is decrypted and its bags read. Certificate bags come back with their alias and
//! whether they carry Oracle's trusted-key-usage attribute. Key bags (plain, shrouded or secret)
//! are counted by alias and never decrypted.

use cms::content_info::ContentInfo;
use cms::encrypted_data::EncryptedData;
use der::asn1::{Any, OctetString};
use der::{Decode as _, Encode as _, Tag, Tagged as _};
use pkcs12::cert_type::CertBag;
use pkcs12::pbe_params::Pkcs12PbeParams;
use pkcs12::pfx::Pfx;
use secrecy::{ExposeSecret as _, SecretString};
use x509_cert::attr::Attributes;

use super::budget::{Budget, blocks};
use super::crypto::{LegacyCipher, MacDigest, bmp_password};
use super::{MAX_ITERATIONS, SafeBag, oid};
use crate::entry::{KeyEntry, Keystore, KeystoreKind, StoredCertificate};
use crate::error::KeystoreError;

/// How deep `safeContentsBag`s may nest.
const MAX_NESTING: usize = 4;

/// Decodes a PKCS#12 file.
///
/// With a password, the MAC (if any) is verified, and a mismatch is
/// [`KeystoreError::WrongPassword`]. Without one, the MAC is not checked (as Java does) and
/// encrypted contents cannot be read ([`KeystoreError::PasswordRequired`]); a file of the
/// unprotected profile needs none. [`Keystore::integrity_checked`] says whether a MAC was
/// verified.
///
/// Before any key derivation runs, the ones the file asks for are priced: a file whose scrypt
/// parameters or total work exceed the limits (`MAX_KDF_WORK`, `MAX_SCRYPT_*`) is refused with
/// [`KeystoreError::KdfLimit`], password or not.
pub fn decode_pkcs12(
    bytes: &[u8],
    password: Option<&SecretString>,
) -> Result<Keystore, KeystoreError> {
    let pfx = Pfx::from_der(bytes).map_err(KeystoreError::der("PFX"))?;
    if pfx.auth_safe.content_type != oid::DATA {
        return Err(KeystoreError::Unsupported {
            kind: KeystoreKind::Pkcs12,
            what: "integrity mode (only password integrity, a `data` authSafe, is read)",
            found: pfx.auth_safe.content_type.to_string(),
        });
    }
    let auth_safe = octets(&pfx.auth_safe.content, "authSafe")?;
    let password = password.map(|p| p.expose_secret());
    let infos =
        Vec::<ContentInfo>::from_der(auth_safe).map_err(KeystoreError::der("AuthenticatedSafe"))?;
    // Every derivation the file asks for is priced before any of them runs.
    price(&pfx, &infos)?;

    let mut integrity_checked = false;
    if let (Some(mac_data), Some(password)) = (&pfx.mac_data, password) {
        let digest = MacDigest::from_oid(mac_data.mac.algorithm.oid).ok_or_else(|| {
            KeystoreError::Unsupported {
                kind: KeystoreKind::Pkcs12,
                what: "MAC digest",
                found: mac_data.mac.algorithm.oid.to_string(),
            }
        })?;
        let iterations = check_iterations(mac_data.iterations, "MAC")?;
        let expected = digest.mac(
            &bmp_password(password),
            mac_data.mac_salt.as_bytes(),
            iterations,
            auth_safe,
        );
        if !same(&expected, mac_data.mac.digest.as_bytes()) {
            return Err(KeystoreError::WrongPassword {
                kind: KeystoreKind::Pkcs12,
                check: digest.check_name(),
            });
        }
        integrity_checked = true;
    }

    let mut store = Keystore {
        kind: KeystoreKind::Pkcs12,
        certificates: Vec::new(),
        key_entries: Vec::new(),
        integrity_checked,
    };
    for info in &infos {
        if info.content_type == oid::DATA {
            read_bags(octets(&info.content, "data ContentInfo")?, &mut store, 0)?;
        } else if info.content_type == oid::ENCRYPTED_DATA {
            let plaintext = decrypt(info, password, integrity_checked)?;
            read_bags(&plaintext, &mut store, 0).map_err(|e| {
                // Without a MAC, a wrong password shows only as garbage that happened to end in
                // valid padding (about one time in 256).
                if integrity_checked {
                    e
                } else {
                    no_mac_wrong_password()
                }
            })?;
        } else {
            return Err(KeystoreError::Unsupported {
                kind: KeystoreKind::Pkcs12,
                what: "ContentInfo type (public-key privacy is not read)",
                found: info.content_type.to_string(),
            });
        }
    }
    Ok(store)
}

/// Checks the key derivations the file asks for (MAC and each `encryptedData` ContentInfo)
/// against the limits of [`super::budget`], without running any.
fn price(pfx: &Pfx, infos: &[ContentInfo]) -> Result<(), KeystoreError> {
    let mut budget = Budget::default();
    if let Some(mac_data) = &pfx.mac_data {
        let iterations = check_iterations(mac_data.iterations, "MAC")?;
        // The MAC key is one hash output long.
        budget.hash_kdf("the MAC", iterations.unsigned_abs().into(), 1)?;
    }
    for info in infos
        .iter()
        .filter(|i| i.content_type == oid::ENCRYPTED_DATA)
    {
        let encrypted: EncryptedData = info
            .content
            .decode_as()
            .map_err(KeystoreError::der("encryptedData"))?;
        let algorithm = &encrypted.enc_content_info.content_enc_alg;
        if algorithm.oid == oid::PBES2 {
            let encoded = algorithm.to_der().map_err(KeystoreError::encode)?;
            let scheme = pkcs5::EncryptionScheme::try_from(encoded.as_slice())
                .map_err(KeystoreError::der("PBES2 parameters"))?;
            let Some(params) = scheme.pbes2() else {
                continue;
            };
            let key_len =
                usize::from(params.kdf.key_length().unwrap_or(0)).max(params.encryption.key_size());
            match &params.kdf {
                pkcs5::pbes2::Kdf::Pbkdf2(kdf) => {
                    check_iterations(
                        i32::try_from(kdf.iteration_count).unwrap_or(i32::MAX),
                        "PBKDF2",
                    )?;
                    let hash_len = match kdf.prf {
                        pkcs5::pbes2::Pbkdf2Prf::HmacWithSha224 => 28,
                        pkcs5::pbes2::Pbkdf2Prf::HmacWithSha256 => 32,
                        pkcs5::pbes2::Pbkdf2Prf::HmacWithSha384 => 48,
                        pkcs5::pbes2::Pbkdf2Prf::HmacWithSha512 => 64,
                        // SHA-1, and anything newer: priced as the shortest output.
                        _ => 20,
                    };
                    budget.hash_kdf(
                        "PBKDF2",
                        kdf.iteration_count.into(),
                        blocks(key_len, hash_len),
                    )?;
                }
                pkcs5::pbes2::Kdf::Scrypt(kdf) => budget.scrypt(
                    kdf.cost_parameter,
                    kdf.block_size.into(),
                    kdf.parallelization.into(),
                )?,
                // A KDF added to `pkcs5` later: refused rather than run unpriced.
                other => {
                    return Err(KeystoreError::Unsupported {
                        kind: KeystoreKind::Pkcs12,
                        what: "PBES2 key derivation",
                        found: other.oid().to_string(),
                    });
                }
            }
        } else if let Some(cipher) = LegacyCipher::from_oid(algorithm.oid) {
            let Some(params) = &algorithm.parameters else {
                continue;
            };
            let params: Pkcs12PbeParams = params
                .decode_as()
                .map_err(KeystoreError::der("PBE parameters"))?;
            let iterations = check_iterations(params.iterations, "PBE")?.unsigned_abs();
            // Key and IV each take the appendix B derivation, with SHA-1 (20-byte outputs).
            budget.hash_kdf("PBE key", iterations.into(), blocks(cipher.key_len(), 20))?;
            budget.hash_kdf("PBE IV", iterations.into(), 1)?;
        }
    }
    Ok(())
}

/// The decrypted SafeContents of an `encryptedData` ContentInfo.
fn decrypt(
    info: &ContentInfo,
    password: Option<&str>,
    mac_verified: bool,
) -> Result<Vec<u8>, KeystoreError> {
    let encrypted: EncryptedData = info
        .content
        .decode_as()
        .map_err(KeystoreError::der("encryptedData"))?;
    let content = encrypted.enc_content_info;
    let ciphertext = content.encrypted_content.ok_or_else(|| {
        KeystoreError::malformed(KeystoreKind::Pkcs12, "encryptedData without content")
    })?;
    let Some(password) = password else {
        return Err(KeystoreError::PasswordRequired {
            what: "this PKCS#12 file's encrypted contents".to_owned(),
        });
    };
    // With a verified MAC the password is right, so a failure is damage; without one it is most
    // likely the password.
    let failed = || {
        if mac_verified {
            KeystoreError::malformed(
                KeystoreKind::Pkcs12,
                "encrypted contents do not decrypt with the password that verified the MAC",
            )
        } else {
            no_mac_wrong_password()
        }
    };
    let algorithm = &content.content_enc_alg;
    if algorithm.oid == oid::PBES2 {
        let encoded = algorithm.to_der().map_err(KeystoreError::encode)?;
        let scheme = pkcs5::EncryptionScheme::try_from(encoded.as_slice())
            .map_err(KeystoreError::der("PBES2 parameters"))?;
        if let Some(kdf) = scheme.pbes2().and_then(|p| p.kdf.pbkdf2()) {
            check_iterations(
                i32::try_from(kdf.iteration_count).unwrap_or(i32::MAX),
                "PBKDF2",
            )?;
        }
        scheme
            .decrypt(password.as_bytes(), ciphertext.as_bytes())
            .map_err(|e| match e {
                // pkcs5 0.7 reports a bad padding on decryption as `EncryptFailed`.
                pkcs5::Error::DecryptFailed | pkcs5::Error::EncryptFailed => failed(),
                other => KeystoreError::Unsupported {
                    kind: KeystoreKind::Pkcs12,
                    what: "PBES2 scheme",
                    found: other.to_string(),
                },
            })
    } else if let Some(cipher) = LegacyCipher::from_oid(algorithm.oid) {
        let params: Pkcs12PbeParams = algorithm
            .parameters
            .as_ref()
            .ok_or_else(|| {
                KeystoreError::malformed(KeystoreKind::Pkcs12, "PBE algorithm without parameters")
            })?
            .decode_as()
            .map_err(KeystoreError::der("PBE parameters"))?;
        let iterations = check_iterations(params.iterations, "PBE")?;
        cipher
            .decrypt(
                &bmp_password(password),
                params.salt.as_bytes(),
                iterations,
                ciphertext.as_bytes(),
            )
            .ok_or_else(failed)
    } else {
        Err(KeystoreError::Unsupported {
            kind: KeystoreKind::Pkcs12,
            what: "encryption algorithm",
            found: algorithm.oid.to_string(),
        })
    }
}

/// Reads the bags of one SafeContents into `store`.
fn read_bags(contents: &[u8], store: &mut Keystore, depth: usize) -> Result<(), KeystoreError> {
    let bags = Vec::<SafeBag>::from_der(contents).map_err(KeystoreError::der("SafeContents"))?;
    for bag in bags {
        let (alias, trusted) = read_attributes(bag.attributes.as_ref());
        if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
            let cert: CertBag = bag
                .value
                .decode_as()
                .map_err(KeystoreError::der("certBag"))?;
            if cert.cert_id != pkcs12::PKCS_12_X509_CERT_OID {
                return Err(KeystoreError::Unsupported {
                    kind: KeystoreKind::Pkcs12,
                    what: "certificate type (only X.509 is read)",
                    found: cert.cert_id.to_string(),
                });
            }
            store.certificates.push(StoredCertificate {
                alias,
                der: cert.cert_value.into_bytes(),
                trusted,
                created_ms: None,
            });
        } else if [
            pkcs12::PKCS_12_KEY_BAG_OID,
            pkcs12::PKCS_12_PKCS8_KEY_BAG_OID,
            pkcs12::PKCS_12_SECRET_BAG_OID,
        ]
        .contains(&bag.bag_id)
        {
            // Key material: note the alias, leave the value alone.
            store.key_entries.push(KeyEntry { alias });
        } else if bag.bag_id == pkcs12::PKCS_12_SAFE_CONTENTS_BAG_OID {
            if depth >= MAX_NESTING {
                return Err(KeystoreError::malformed(
                    KeystoreKind::Pkcs12,
                    format!("safeContentsBag nested more than {MAX_NESTING} deep"),
                ));
            }
            let nested = bag
                .value
                .to_der()
                .map_err(KeystoreError::der("safeContentsBag"))?;
            read_bags(&nested, store, depth + 1)?;
        }
        // CRL bags and unknown bags hold nothing a trust store needs.
    }
    Ok(())
}

/// The `friendlyName` (BMPString, or UTF8String from lenient writers) and whether Oracle's
/// trusted-key-usage attribute is present.
fn read_attributes(attributes: Option<&Attributes>) -> (Option<String>, bool) {
    let mut alias = None;
    let mut trusted = false;
    for attribute in attributes.into_iter().flat_map(|a| a.iter()) {
        if attribute.oid == oid::FRIENDLY_NAME {
            alias = attribute.values.iter().find_map(text);
        } else if attribute.oid == oid::ORACLE_TRUSTED_KEY_USAGE {
            trusted = true;
        }
    }
    (alias, trusted)
}

fn text(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::BmpString => {
            let units: Vec<u16> = value
                .value()
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        Tag::Utf8String => Some(String::from_utf8_lossy(value.value()).into_owned()),
        _ => None,
    }
}

/// The bytes of an OCTET STRING held in an `Any`.
fn octets<'a>(any: &'a Any, what: &str) -> Result<&'a [u8], KeystoreError> {
    if any.tag() != Tag::OctetString {
        return Err(KeystoreError::malformed(
            KeystoreKind::Pkcs12,
            format!("{what}: expected an OCTET STRING, found {}", any.tag()),
        ));
    }
    // Validate it the way the decoder would (definite length, primitive).
    OctetString::new(any.value()).map_err(KeystoreError::der(what))?;
    Ok(any.value())
}

/// Iteration counts beyond Java's limit are refused rather than spun through: a hostile file
/// could otherwise ask for billions.
fn check_iterations(iterations: i32, what: &str) -> Result<i32, KeystoreError> {
    match u32::try_from(iterations) {
        Ok(0) | Err(_) => Err(KeystoreError::malformed(
            KeystoreKind::Pkcs12,
            format!("{what} iteration count {iterations} is not positive"),
        )),
        Ok(n) if n > MAX_ITERATIONS => Err(KeystoreError::Unsupported {
            kind: KeystoreKind::Pkcs12,
            what: "iteration count (Java refuses more than 5000000)",
            found: format!("{what} {n}"),
        }),
        Ok(_) => Ok(iterations),
    }
}

fn no_mac_wrong_password() -> KeystoreError {
    KeystoreError::WrongPassword {
        kind: KeystoreKind::Pkcs12,
        check: "decryption of the certificates (the file has no MAC)",
    }
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

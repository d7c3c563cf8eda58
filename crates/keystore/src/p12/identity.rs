//! A PKCS#12 key store holding one identity (a private key and its certificate chain), as
//! `openssl pkcs12 -export` and Java's `keytool` write it with modern algorithms:
//!
//! ```text
//! PFX { version 3,
//!       authSafe data ─▶ AuthenticatedSafe [
//!           data ─▶ SafeContents [ pkcs8ShroudedKeyBag { PBES2(PBKDF2-HMAC-SHA256, AES-256-CBC),
//!                                  attributes { friendlyName, localKeyId } } ],
//!           encryptedData PBES2 ─▶ SafeContents [ certBag leaf { friendlyName, localKeyId },
//!                                                  certBag intermediate ... ] ],
//!       macData { HMAC-SHA256 over the AuthenticatedSafe } }
//! ```
//!
//! Unlike the trust stores, salts and IVs are random (drawn by the caller's `random`): the key
//! is secret, and an identity store is rewritten only when the identity changes.

use der::Encode as _;
use der::asn1::{Any, BmpString, OctetString, SetOfVec};
use pkcs12::cert_type::CertBag;
use pkcs12::digest_info::DigestInfo;
use pkcs12::mac_data::MacData;
use pkcs12::pfx::{Pfx, Version};
use secrecy::{ExposeSecret as _, SecretString};
use sha1::{Digest as _, Sha1};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use zeroize::Zeroizing;

use super::crypto::{MacDigest, bmp_password};
use super::encode::{data, encrypted_data, octets};
use super::{SafeBag, oid};
use crate::entry::KeystoreKind;
use crate::error::KeystoreError;

/// PKCS#9 `localKeyId`: ties the key bag to its certificate.
const LOCAL_KEY_ID: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
/// PKCS#12 `pkcs8ShroudedKeyBag`.
const SHROUDED_KEY_BAG: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");

/// PKCS#8 `EncryptedPrivateKeyInfo`.
#[derive(der::Sequence)]
struct EncryptedPrivateKeyInfo {
    algorithm: AlgorithmIdentifierOwned,
    data: OctetString,
}

/// Encodes a PKCS#12 key store: the PKCS#8 key `key_der` and `chain_der` (leaf first) under
/// `alias`, protected by `password` (PBES2 with `iterations` of PBKDF2-HMAC-SHA256, AES-256-CBC;
/// HMAC-SHA256 MAC). `random` fills salts and IVs.
///
/// Errors: an empty chain or password, an iteration count out of range, an alias beyond BMP.
pub fn encode_pkcs12_identity(
    key_der: &[u8],
    chain_der: &[Vec<u8>],
    alias: &str,
    password: &SecretString,
    iterations: u32,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let password = password.expose_secret();
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    if !(1..=super::MAX_ITERATIONS).contains(&iterations) {
        return Err(KeystoreError::Iterations {
            iterations,
            max: super::MAX_ITERATIONS,
        });
    }
    let iterations_i32 = i32::try_from(iterations).map_err(|_| KeystoreError::Iterations {
        iterations,
        max: super::MAX_ITERATIONS,
    })?;
    let leaf = chain_der.first().ok_or_else(|| KeystoreError::Encode {
        kind: KeystoreKind::Pkcs12,
        reason: "an identity store needs the certificate of its key".into(),
    })?;
    let alias_bmp = BmpString::from_utf8(alias).map_err(|_| KeystoreError::InvalidAlias {
        alias: alias.to_owned(),
        kind: KeystoreKind::Pkcs12,
        reason: "PKCS#12 stores aliases as BMPString, which cannot hold characters beyond U+FFFF",
    })?;
    let key_id = Sha1::digest(leaf).to_vec();
    let attrs = |with_id: bool| -> Result<x509_cert::attr::Attributes, KeystoreError> {
        let mut list = vec![Attribute {
            oid: oid::FRIENDLY_NAME,
            values: SetOfVec::try_from(vec![
                Any::encode_from(&alias_bmp).map_err(KeystoreError::encode)?,
            ])
            .map_err(KeystoreError::encode)?,
        }];
        if with_id {
            list.push(Attribute {
                oid: LOCAL_KEY_ID,
                values: SetOfVec::try_from(vec![
                    Any::encode_from(
                        &OctetString::new(key_id.clone()).map_err(KeystoreError::encode)?,
                    )
                    .map_err(KeystoreError::encode)?,
                ])
                .map_err(KeystoreError::encode)?,
            });
        }
        SetOfVec::try_from(list).map_err(KeystoreError::encode)
    };
    let pbes2 = |random: &mut dyn FnMut(&mut [u8]), plain: &[u8]| {
        let mut salt = [0u8; 20];
        let mut iv = [0u8; 16];
        random(&mut salt);
        random(&mut iv);
        let mut params = pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
            .map_err(pkcs5_error)?;
        if let pkcs5::pbes2::Kdf::Pbkdf2(kdf) = &mut params.kdf {
            kdf.key_length = Some(32);
        }
        let ciphertext = params
            .encrypt(password.as_bytes(), plain)
            .map_err(pkcs5_error)?;
        let algorithm = AlgorithmIdentifierOwned {
            oid: oid::PBES2,
            parameters: Some(Any::encode_from(&params).map_err(KeystoreError::encode)?),
        };
        Ok::<_, KeystoreError>((algorithm, ciphertext))
    };

    // The key, shrouded.
    let (algorithm, ciphertext) = pbes2(random, key_der)?;
    let shrouded = EncryptedPrivateKeyInfo {
        algorithm,
        data: OctetString::new(ciphertext).map_err(KeystoreError::encode)?,
    };
    let key_bag = SafeBag {
        bag_id: SHROUDED_KEY_BAG,
        value: Any::encode_from(&shrouded).map_err(KeystoreError::encode)?,
        attributes: Some(attrs(true)?),
    };
    let key_contents = vec![key_bag].to_der().map_err(KeystoreError::encode)?;

    // The chain, encrypted.
    let cert_bags = chain_der
        .iter()
        .enumerate()
        .map(|(i, der)| {
            let bag = CertBag {
                cert_id: pkcs12::PKCS_12_X509_CERT_OID,
                cert_value: OctetString::new(der.as_slice()).map_err(KeystoreError::encode)?,
            };
            Ok(SafeBag {
                bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
                value: Any::encode_from(&bag).map_err(KeystoreError::encode)?,
                attributes: if i == 0 { Some(attrs(true)?) } else { None },
            })
        })
        .collect::<Result<Vec<SafeBag>, KeystoreError>>()?;
    let cert_contents = cert_bags.to_der().map_err(KeystoreError::encode)?;
    let (algorithm, ciphertext) = pbes2(random, &cert_contents)?;

    let auth_safe = vec![data(&key_contents)?, encrypted_data(algorithm, ciphertext)?]
        .to_der()
        .map_err(KeystoreError::encode)?;
    let mut mac_salt = [0u8; 20];
    random(&mut mac_salt);
    let mac = MacDigest::Sha256.mac(
        &bmp_password(password),
        &mac_salt,
        iterations_i32,
        &auth_safe,
    );
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: cms::content_info::ContentInfo {
            content_type: oid::DATA,
            content: octets(auth_safe)?,
        },
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: MacDigest::Sha256.oid(),
                    parameters: Some(Any::null()),
                },
                digest: OctetString::new(mac).map_err(KeystoreError::encode)?,
            },
            mac_salt: OctetString::new(mac_salt.as_slice()).map_err(KeystoreError::encode)?,
            iterations: iterations_i32,
        }),
    };
    pfx.to_der()
        .map(Zeroizing::new)
        .map_err(KeystoreError::encode)
}

fn pkcs5_error(e: pkcs5::Error) -> KeystoreError {
    KeystoreError::Encode {
        kind: KeystoreKind::Pkcs12,
        reason: format!("PBES2: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki;
    use secrecy::SecretString;

    use super::*;
    use crate::decode_pkcs12;

    #[test]
    fn an_identity_store_holds_one_key_entry_and_the_chain() {
        let root = pki::root_ca("Identity P12 Root");
        let inter = pki::intermediate_ca("Identity P12 Inter", &root);
        let leaf = pki::server_leaf(&["id.test"], &inter);
        let key_der = rustls_pemfile_key(&leaf.key_pem);
        let password = SecretString::from("changeit");
        let mut counter = 0u8;
        let mut random = |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                counter = counter.wrapping_add(37);
                *b = counter;
            }
        };
        let bytes = encode_pkcs12_identity(
            &key_der,
            &[leaf.der.clone(), inter.der.clone()],
            "web",
            &password,
            2048,
            &mut random,
        )
        .unwrap();
        let read = decode_pkcs12(&bytes, Some(&password)).unwrap();
        assert!(read.integrity_checked);
        assert_eq!(read.key_entries.len(), 1);
        assert_eq!(read.key_entries[0].alias.as_deref(), Some("web"));
        let ders: Vec<&[u8]> = read.certificates.iter().map(|c| c.der.as_slice()).collect();
        assert_eq!(ders, vec![leaf.der.as_slice(), inter.der.as_slice()]);
        // Negative control: the wrong password fails the MAC.
        assert!(decode_pkcs12(&bytes, Some(&SecretString::from("wrong"))).is_err());
        assert!(matches!(
            encode_pkcs12_identity(&key_der, &[], "web", &password, 2048, &mut random),
            Err(KeystoreError::Encode { .. })
        ));
        assert!(matches!(
            encode_pkcs12_identity(
                &key_der,
                std::slice::from_ref(&leaf.der),
                "web",
                &SecretString::from(""),
                2048,
                &mut random
            ),
            Err(KeystoreError::EmptyPassword)
        ));
    }

    /// The DER of a PKCS#8 PEM key.
    fn rustls_pemfile_key(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}

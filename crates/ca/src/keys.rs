//! Key pairs: make one of each [`KeyType`], or load one from PEM or DER.
//!
//! This module owns turning key material into a ready-to-sign [`rcgen::KeyPair`] plus its
//! [`PrivateKey`] (PKCS#8 DER in zeroizing memory). ECDSA and Ed25519 keys are made by ring
//! (through rcgen); ring cannot make RSA keys, so those come from RustCrypto's `rsa` crate and
//! are then loaded into ring for signing (PKCS#1 v1.5 with SHA-256).
//!
//! [`load`] accepts PKCS#8 (`PRIVATE KEY`), SEC 1 (`EC PRIVATE KEY`) and PKCS#1
//! (`RSA PRIVATE KEY`), as PEM or DER: Flomesh/Open Service Mesh `private.key` files are PKCS#1
//! RSA in older meshes and PKCS#8 in newer ones. SEC 1 and PKCS#1 keys are rewrapped as PKCS#8.
//! Encrypted keys are recognised and refused here (see [`crate::persist`] for ours).
//!
//! Errors never carry key bytes: only the form, the algorithm and the parser's message.
//! It does not own where keys are kept (that is [`crate::persist`]) or certificates.

use std::fmt;

use base64::Engine as _;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
    PublicKeyData as _, SignatureAlgorithm,
};
use zeroize::Zeroizing;

use crate::issued::PrivateKey;
use crate::issuer::IssueError;
use crate::request::KeyType;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

/// The signature algorithm a CA with a key of this type signs with (and a leaf of this type
/// is loaded for).
pub fn signature_algorithm(key_type: KeyType) -> &'static SignatureAlgorithm {
    match key_type {
        KeyType::P256 => &PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &PKCS_ED25519,
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &PKCS_RSA_SHA256,
    }
}

/// RSA modulus size in bits for the RSA key types.
fn rsa_bits(key_type: KeyType) -> Option<usize> {
    match key_type {
        KeyType::Rsa2048 => Some(2048),
        KeyType::Rsa3072 => Some(3072),
        KeyType::Rsa4096 => Some(4096),
        _ => None,
    }
}

/// Makes a new key pair of `key_type`: the signer for rcgen and the PKCS#8 key to hand out.
///
/// P-256, P-384 and Ed25519 take microseconds; RSA takes from about 50 ms (2048) to seconds
/// (4096) in an optimised build, much longer in a debug build.
pub fn generate(key_type: KeyType) -> Result<(KeyPair, PrivateKey), IssueError> {
    let crypto = |message: String| IssueError::Crypto {
        action: format!("generate a {key_type} key"),
        message,
    };
    let key_pair = match rsa_bits(key_type) {
        None => KeyPair::generate_for(signature_algorithm(key_type))
            .map_err(|e| crypto(e.to_string()))?,
        Some(bits) => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let mut rng = rsa::rand_core::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, bits).map_err(|e| crypto(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| crypto(e.to_string()))?;
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
                .map_err(|e| crypto(e.to_string()))?
        }
    };
    let der = Zeroizing::new(key_pair.serialize_der());
    let der = if key_type == KeyType::Ed25519 {
        pkcs8_v1(&der).map_err(|e| crypto(e.to_string()))?
    } else {
        der
    };
    let private_key = PrivateKey::from_pkcs8_der(der.to_vec(), Some(key_type));
    Ok((key_pair, private_key))
}

/// The same key as PKCS#8 v1 (RFC 5208: no embedded public key). ring writes Ed25519 keys as
/// v2 (RFC 5958, public key included), which OpenSSL before 3.5 refuses as "unsupported"; v1 is
/// the RFC 8410 form every reader accepts (ring, rcgen and rustls included).
fn pkcs8_v1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, pkcs8::Error> {
    let info = PrivateKeyInfo::try_from(der)?;
    let v1 = PrivateKeyInfo {
        algorithm: info.algorithm,
        private_key: info.private_key,
        public_key: None,
    };
    Ok(Zeroizing::new(v1.to_der()?))
}

/// The encoding a key was found in, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyForm {
    /// PKCS#8 `PrivateKeyInfo` (`-----BEGIN PRIVATE KEY-----`).
    Pkcs8,
    /// SEC 1 `ECPrivateKey` (`-----BEGIN EC PRIVATE KEY-----`).
    Sec1,
    /// PKCS#1 `RSAPrivateKey` (`-----BEGIN RSA PRIVATE KEY-----`).
    Pkcs1,
}

impl fmt::Display for KeyForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyForm::Pkcs8 => "PKCS#8",
            KeyForm::Sec1 => "SEC 1 EC",
            KeyForm::Pkcs1 => "PKCS#1 RSA",
        })
    }
}

/// Why key material could not be loaded. No variant carries key bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing that looks like a private key.
    #[error(
        "no private key found: expected PEM PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY, or the DER of one"
    )]
    NotAKey,
    /// More than one private key where one was expected.
    #[error("{count} private keys found where one was expected")]
    SeveralKeys {
        /// How many.
        count: usize,
    },
    /// A PEM block whose body is not base64.
    #[error("the {label} PEM block is not valid base64")]
    BadPem {
        /// The block's label.
        label: String,
    },
    /// The key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY` or legacy OpenSSL `Proc-Type`).
    #[error("the private key is encrypted ({form}): decrypt it first, or give its passphrase")]
    Encrypted {
        /// Which kind of encryption.
        form: &'static str,
    },
    /// The structure does not parse.
    #[error("the {form} private key is malformed: {reason}")]
    Malformed {
        /// The encoding.
        form: KeyForm,
        /// The parser's message (never key bytes).
        reason: String,
    },
    /// An algorithm we cannot sign with.
    #[error("unsupported private key algorithm {algorithm}: use P-256, P-384, Ed25519 or RSA")]
    UnsupportedAlgorithm {
        /// Its name or OID.
        algorithm: String,
    },
    /// The crypto library refused the key (wrong size, inconsistent values, …).
    #[error("the {key_type} private key was rejected: {reason}")]
    Rejected {
        /// What the key claims to be.
        key_type: String,
        /// The library's message.
        reason: String,
    },
}

/// Loads one private key from PEM (`PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY`; other
/// PEM blocks such as certificates are ignored) or DER (PKCS#8, SEC 1 or PKCS#1, tried in that
/// order).
///
/// The returned [`PrivateKey`] is always PKCS#8; its key type is known for P-256, P-384,
/// Ed25519 and RSA of 2048, 3072 or 4096 bits (other RSA sizes load with an unknown type).
pub fn load(pem_or_der: &[u8]) -> Result<(KeyPair, PrivateKey), KeyError> {
    if find(pem_or_der, b"-----BEGIN").is_some() {
        // Input that is not UTF-8 is copied (with replacement characters): that copy holds
        // the key too, so it is wiped.
        let owned;
        let text: &str = match String::from_utf8_lossy(pem_or_der) {
            std::borrow::Cow::Borrowed(text) => text,
            std::borrow::Cow::Owned(copy) => {
                owned = Zeroizing::new(copy);
                owned.as_str()
            }
        };
        let mut keys = Vec::new();
        for block in pem_blocks(text) {
            let form = match block.label {
                "PRIVATE KEY" => KeyForm::Pkcs8,
                "EC PRIVATE KEY" => KeyForm::Sec1,
                "RSA PRIVATE KEY" => KeyForm::Pkcs1,
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError::Encrypted {
                        form: "PKCS#8 EncryptedPrivateKeyInfo",
                    });
                }
                label if label.contains("PRIVATE KEY") => {
                    return Err(KeyError::UnsupportedAlgorithm {
                        algorithm: label.trim_end_matches(" PRIVATE KEY").to_owned(),
                    });
                }
                _ => continue,
            };
            if block.has_headers {
                return Err(KeyError::Encrypted {
                    form: "legacy OpenSSL PEM encryption (Proc-Type header)",
                });
            }
            let der = block.decode()?;
            keys.push((form, der));
        }
        return match keys.len() {
            0 => Err(KeyError::NotAKey),
            1 => {
                let (form, der) = keys.remove(0);
                load_der_as(form, &der)
            }
            count => Err(KeyError::SeveralKeys { count }),
        };
    }
    // DER: the three forms are all SEQUENCEs; try the most common first and keep the error
    // of the form that parsed furthest (PKCS#8).
    let pkcs8_error = match load_der_as(KeyForm::Pkcs8, pem_or_der) {
        Ok(found) => return Ok(found),
        Err(e) => e,
    };
    if looks_like(pem_or_der, KeyForm::Sec1) {
        return load_der_as(KeyForm::Sec1, pem_or_der);
    }
    if looks_like(pem_or_der, KeyForm::Pkcs1) {
        return load_der_as(KeyForm::Pkcs1, pem_or_der);
    }
    if pkcs8::EncryptedPrivateKeyInfo::try_from(pem_or_der).is_ok() {
        return Err(KeyError::Encrypted {
            form: "PKCS#8 EncryptedPrivateKeyInfo",
        });
    }
    match pkcs8_error {
        KeyError::Malformed { .. } => Err(KeyError::NotAKey),
        other => Err(other),
    }
}

/// Loads a key from the DER of a known form.
pub fn load_der(form: KeyForm, der: &[u8]) -> Result<(KeyPair, PrivateKey), KeyError> {
    load_der_as(form, der)
}

fn looks_like(der: &[u8], form: KeyForm) -> bool {
    match form {
        KeyForm::Sec1 => sec1::EcPrivateKey::try_from(der).is_ok(),
        KeyForm::Pkcs1 => rsa::pkcs1::RsaPrivateKey::try_from(der).is_ok(),
        KeyForm::Pkcs8 => PrivateKeyInfo::try_from(der).is_ok(),
    }
}

fn malformed<E: fmt::Display>(form: KeyForm) -> impl Fn(E) -> KeyError {
    move |e| KeyError::Malformed {
        form,
        reason: e.to_string(),
    }
}

fn load_der_as(form: KeyForm, der: &[u8]) -> Result<(KeyPair, PrivateKey), KeyError> {
    let pkcs8: Zeroizing<Vec<u8>> = match form {
        KeyForm::Pkcs8 => {
            // Checked here so that errors name the structure, not ring's guess.
            PrivateKeyInfo::try_from(der).map_err(|e| KeyError::Malformed {
                form,
                reason: e.to_string(),
            })?;
            Zeroizing::new(der.to_vec())
        }
        KeyForm::Sec1 => {
            let ec = sec1::EcPrivateKey::try_from(der).map_err(malformed(form))?;
            let curve =
                ec.parameters
                    .and_then(|p| p.named_curve())
                    .ok_or_else(|| KeyError::Malformed {
                        form,
                        reason: "the key does not name its curve".to_owned(),
                    })?;
            let curve_der = curve.to_der().map_err(malformed(form))?;
            let params = AnyRef::try_from(curve_der.as_slice()).map_err(malformed(form))?;
            wrap_pkcs8(OID_EC, Some(params), der, form)?
        }
        KeyForm::Pkcs1 => {
            rsa::pkcs1::RsaPrivateKey::try_from(der).map_err(|e| KeyError::Malformed {
                form,
                reason: e.to_string(),
            })?;
            wrap_pkcs8(OID_RSA, Some(AnyRef::NULL), der, form)?
        }
    };
    from_pkcs8(pkcs8)
}

fn wrap_pkcs8(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    inner: &[u8],
    form: KeyForm,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let info = PrivateKeyInfo::new(AlgorithmIdentifierRef { oid, parameters }, inner);
    let mut out = Zeroizing::new(Vec::new());
    info.encode_to_vec(&mut out).map_err(malformed(form))?;
    Ok(out)
}

/// Decides the key type from a PKCS#8 `PrivateKeyInfo` and loads it into ring.
fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<(KeyPair, PrivateKey), KeyError> {
    let form = KeyForm::Pkcs8;
    let info = PrivateKeyInfo::from_der(&pkcs8).map_err(malformed(form))?;
    let oid = info.algorithm.oid;
    let (key_type, name) = if oid == OID_EC {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|e| KeyError::Malformed {
                form,
                reason: format!("EC key without a named curve: {e}"),
            })?;
        if curve == OID_P256 {
            (Some(KeyType::P256), "P-256".to_owned())
        } else if curve == OID_P384 {
            (Some(KeyType::P384), "P-384".to_owned())
        } else if curve == OID_P521 {
            return Err(KeyError::UnsupportedAlgorithm {
                algorithm: "EC P-521".to_owned(),
            });
        } else {
            return Err(KeyError::UnsupportedAlgorithm {
                algorithm: format!("EC curve {curve}"),
            });
        }
    } else if oid == OID_ED25519 {
        (Some(KeyType::Ed25519), "Ed25519".to_owned())
    } else if oid == OID_RSA {
        let rsa = rsa::pkcs1::RsaPrivateKey::try_from(info.private_key).map_err(|e| {
            KeyError::Malformed {
                form: KeyForm::Pkcs1,
                reason: e.to_string(),
            }
        })?;
        let bits = modulus_bits(rsa.modulus.as_bytes());
        let key_type = match bits {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        };
        (key_type, format!("RSA-{bits}"))
    } else {
        let algorithm = if oid == OID_RSA_PSS {
            "RSA-PSS".to_owned()
        } else if oid == OID_ED448 {
            "Ed448".to_owned()
        } else {
            oid.to_string()
        };
        return Err(KeyError::UnsupportedAlgorithm { algorithm });
    };
    let alg = match key_type {
        Some(kt) => signature_algorithm(kt),
        None => &PKCS_RSA_SHA256,
    };
    let key_pair =
        KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), alg).map_err(|e| {
            KeyError::Rejected {
                key_type: name,
                reason: e.to_string(),
            }
        })?;
    let mut pkcs8 = pkcs8;
    let der = std::mem::take(&mut *pkcs8);
    Ok((key_pair, PrivateKey::from_pkcs8_der(der, key_type)))
}

fn modulus_bits(be: &[u8]) -> usize {
    let be = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => return 0,
    };
    be.len() * 8 - be[0].leading_zeros() as usize
}

/// True when `key_pair`'s public key is the one in the certificate `cert_der` (compared on
/// the algorithm and the raw public key, so parameter encodings do not matter).
pub fn matches_certificate(key_pair: &KeyPair, cert_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer as _;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert_der) else {
        return false;
    };
    let spki = &cert.tbs_certificate.subject_pki;
    let ours = key_pair.subject_public_key_info();
    let Ok((_, our_spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&ours) else {
        return false;
    };
    our_spki.algorithm.algorithm == spki.algorithm.algorithm
        && our_spki.subject_public_key.data == spki.subject_public_key.data
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One `-----BEGIN label-----` … `-----END label-----` block.
pub(crate) struct PemBlock<'a> {
    pub(crate) label: &'a str,
    body: Vec<&'a str>,
    has_headers: bool,
}

impl PemBlock<'_> {
    /// The base64 body decoded, in zeroizing memory.
    pub(crate) fn decode(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        // Sized up front: growing would leave partial copies of the key in freed memory.
        let size = self.body.iter().map(|l| l.trim().len()).sum();
        let mut b64 = Zeroizing::new(String::with_capacity(size));
        for line in &self.body {
            b64.push_str(line.trim());
        }
        let mut out = Zeroizing::new(Vec::new());
        base64::engine::general_purpose::STANDARD
            .decode_vec(b64.as_bytes(), &mut out)
            .map_err(|_| KeyError::BadPem {
                label: self.label.to_owned(),
            })?;
        Ok(out)
    }
}

/// The PEM blocks in `text`, in order; text between blocks is ignored. A block whose END line
/// is missing is dropped.
pub(crate) fn pem_blocks(text: &str) -> Vec<PemBlock<'_>> {
    let mut out = Vec::new();
    let mut current: Option<PemBlock<'_>> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some(PemBlock {
                label,
                body: Vec::new(),
                has_headers: false,
            });
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some(block) = current.take()
                && block.label == label
            {
                out.push(block);
            }
        } else if let Some(block) = current.as_mut() {
            if line.contains(':') {
                block.has_headers = true;
            } else if !line.is_empty() {
                block.body.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, SigningKey as _};
    use secrecy::ExposeSecret as _;

    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// Signs a certificate with a new key, reloads it from PEM and DER, and checks the key
    /// survives. Returns the key for further checks (RSA generation is slow in debug builds).
    fn round_trip(key_type: KeyType) -> (KeyPair, PrivateKey) {
        let (kp, key) = generate(key_type).unwrap();
        assert_eq!(key.key_type(), Some(key_type));
        assert!(kp.is_compatible(signature_algorithm(key_type)));
        let cert = CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        assert!(matches_certificate(&kp, cert.der()));

        let pem = key.to_pkcs8_pem();
        let (again, key2) = load(pem.expose_secret().as_bytes()).unwrap();
        assert_eq!(key2.key_type(), Some(key_type));
        assert_eq!(again.public_key_raw(), kp.public_key_raw());
        assert!(matches_certificate(&again, cert.der()));
        let (from_der, _) = load(key.pkcs8_der()).unwrap();
        assert_eq!(from_der.public_key_raw(), kp.public_key_raw());
        again.sign(b"message").unwrap();

        if !key_type.is_rsa() {
            let (other, _) = generate(key_type).unwrap();
            assert!(!matches_certificate(&other, cert.der()));
        }
        (kp, key)
    }

    #[test]
    fn p256() {
        round_trip(KeyType::P256);
    }

    #[test]
    fn p384() {
        round_trip(KeyType::P384);
    }

    #[test]
    fn ed25519_keys_are_pkcs8_v1_and_load_back() {
        let (pair, key) = generate(KeyType::Ed25519).unwrap();
        let info = PrivateKeyInfo::try_from(key.pkcs8_der()).unwrap();
        assert!(
            info.public_key.is_none(),
            "v1: no embedded public key (OpenSSL < 3.5 refuses v2)"
        );
        let again =
            KeyPair::from_pkcs8_der_and_sign_algo(&key.pkcs8_der().to_vec().into(), &PKCS_ED25519)
                .unwrap();
        assert_eq!(again.public_key_raw(), pair.public_key_raw());
    }

    #[test]
    fn ed25519() {
        round_trip(KeyType::Ed25519);
    }

    #[test]
    fn rsa2048_and_pkcs1() {
        let (kp, key) = round_trip(KeyType::Rsa2048);
        // The same key as PKCS#1 ("RSA PRIVATE KEY"), the form older FSM meshes store.
        let info = PrivateKeyInfo::try_from(key.pkcs8_der()).unwrap();
        let pkcs1 = info.private_key.to_vec();
        let (loaded, key2) = load(pem("RSA PRIVATE KEY", &pkcs1).as_bytes()).unwrap();
        assert_eq!(loaded.public_key_raw(), kp.public_key_raw());
        assert_eq!(key2.key_type(), Some(KeyType::Rsa2048));
        let (from_der, _) = load(&pkcs1).unwrap();
        assert_eq!(from_der.public_key_raw(), kp.public_key_raw());
    }

    #[test]
    fn rsa3072() {
        round_trip(KeyType::Rsa3072);
    }

    /// One RSA-4096 generation only: it takes tens of seconds in a debug build.
    #[test]
    fn rsa4096() {
        round_trip(KeyType::Rsa4096);
    }

    #[test]
    fn sec1_ec_private_key() {
        for key_type in [KeyType::P256, KeyType::P384] {
            let (kp, key) = generate(key_type).unwrap();
            let info = PrivateKeyInfo::try_from(key.pkcs8_der()).unwrap();
            // ring's PKCS#8 carries the SEC 1 structure without the curve; add it as OpenSSL does.
            let ec = sec1::EcPrivateKey::try_from(info.private_key).unwrap();
            let curve = info.algorithm.parameters_oid().unwrap();
            let full = sec1::EcPrivateKey {
                private_key: ec.private_key,
                parameters: Some(sec1::EcParameters::NamedCurve(curve)),
                public_key: ec.public_key,
            }
            .to_der()
            .unwrap();
            let text = format!("subject=CN = ignored\n{}", pem("EC PRIVATE KEY", &full));
            let (loaded, key2) = load(text.as_bytes()).unwrap();
            assert_eq!(loaded.public_key_raw(), kp.public_key_raw());
            assert_eq!(key2.key_type(), Some(key_type));
            let (from_der, _) = load(&full).unwrap();
            assert_eq!(from_der.public_key_raw(), kp.public_key_raw());
        }
    }

    #[test]
    fn bad_input_gives_errors_without_key_bytes() {
        assert_eq!(load(b"").unwrap_err(), KeyError::NotAKey);
        assert_eq!(load(b"hello").unwrap_err(), KeyError::NotAKey);
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(load(cert_only.as_bytes()).unwrap_err(), KeyError::NotAKey);
        assert!(matches!(
            load(b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n").unwrap_err(),
            KeyError::BadPem { .. }
        ));
        assert!(matches!(
            load(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyError::Encrypted { .. }
        ));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            load(legacy.as_bytes()).unwrap_err(),
            KeyError::Encrypted { .. }
        ));

        // A corrupted key: the error must not echo any of it.
        let (_, key) = generate(KeyType::P256).unwrap();
        let mut der = key.pkcs8_der().to_vec();
        let n = der.len();
        der[n - 10] ^= 0xff;
        der.truncate(n - 3);
        let text = pem("PRIVATE KEY", &der);
        let err = load(text.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        for window in b64.as_bytes().chunks(8) {
            assert!(
                !shown.contains(std::str::from_utf8(window).unwrap()),
                "{shown}"
            );
        }

        let two = format!(
            "{}{}",
            key.to_pkcs8_pem().expose_secret(),
            key.to_pkcs8_pem().expose_secret()
        );
        assert_eq!(
            load(two.as_bytes()).unwrap_err(),
            KeyError::SeveralKeys { count: 2 }
        );
        assert!(matches!(
            load(b"-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n")
                .unwrap_err(),
            KeyError::UnsupportedAlgorithm { .. }
        ));
    }
}

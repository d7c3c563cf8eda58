//! [`Certificate`]: the owned facts of one X.509 certificate, extracted once at decode time.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Serialize;
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::error::DecodeError;
use crate::fingerprint::{Sha1Fingerprint, Sha256Fingerprint};
use crate::subject_hash::{SubjectHash, subject_hash_of_name};
use crate::timestamp::Timestamp;

/// One decoded X.509 certificate: its DER and the facts a trust store needs.
///
/// Equality, ordering and hashing are by SHA-256 fingerprint, i.e. by the exact DER.
#[derive(Clone)]
pub struct Certificate {
    der: Box<[u8]>,
    sha256: Sha256Fingerprint,
    sha1: Sha1Fingerprint,
    subject: String,
    issuer: String,
    subject_der: Box<[u8]>,
    issuer_der: Box<[u8]>,
    subject_hash: SubjectHash,
    issuer_hash: SubjectHash,
    serial: String,
    not_before: Timestamp,
    not_after: Timestamp,
    public_key: PublicKeyInfo,
    signature_algorithm: String,
    basic_constraints: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    extended_key_usage: Vec<String>,
    subject_alt_names: Vec<SubjectAltName>,
    subject_key_id: Option<Box<[u8]>>,
    authority_key_id: Option<Box<[u8]>>,
    /// Issuer = subject and key identifiers agree: cheap, decided at decode time.
    self_issued: bool,
    /// Whether the signature verifies with the certificate's own key: costly (a signature
    /// verification), so decided on first use.
    self_signed: OnceLock<bool>,
}

/// The algorithm family of a certificate's public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA.
    Rsa,
    /// Elliptic-curve (ECDSA) on the named curve, e.g. `P-256`.
    Ec {
        /// Curve name, or its OID when unknown.
        curve: String,
    },
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// DSA.
    Dsa,
    /// Anything else, by algorithm OID.
    Other {
        /// The algorithm's OID.
        oid: String,
    },
}

/// A certificate's public key: family and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublicKeyInfo {
    /// Algorithm family.
    pub kind: KeyKind,
    /// Key size in bits where it means something (RSA modulus, curve size).
    pub bits: Option<u32>,
}

impl fmt::Display for PublicKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, self.bits) {
            (KeyKind::Rsa, Some(bits)) => write!(f, "RSA-{bits}"),
            (KeyKind::Rsa, None) => f.write_str("RSA"),
            (KeyKind::Ec { curve }, _) => write!(f, "EC {curve}"),
            (KeyKind::Ed25519, _) => f.write_str("Ed25519"),
            (KeyKind::Ed448, _) => f.write_str("Ed448"),
            (KeyKind::Dsa, Some(bits)) => write!(f, "DSA-{bits}"),
            (KeyKind::Dsa, None) => f.write_str("DSA"),
            (KeyKind::Other { oid }, _) => write!(f, "key algorithm {oid}"),
        }
    }
}

/// The basic constraints extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BasicConstraints {
    /// `cA` flag.
    pub ca: bool,
    /// `pathLenConstraint`, if any.
    pub path_len: Option<u32>,
}

/// The key usage extension, as the bit string RFC 5280 defines (bit 0 = digitalSignature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUsage(u16);

impl KeyUsage {
    const NAMES: [&'static str; 9] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
        "decipherOnly",
    ];

    /// True when the key may sign certificates.
    pub fn key_cert_sign(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    /// The names of the bits that are set, in RFC 5280 order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

impl Serialize for KeyUsage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SubjectAltName {
    /// dNSName.
    Dns(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name (e-mail).
    Email(String),
    /// uniformResourceIdentifier (SPIFFE IDs among them).
    Uri(String),
    /// Any other form, described.
    Other(String),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(v) => write!(f, "DNS:{v}"),
            Self::Ip(v) => write!(f, "IP:{v}"),
            Self::Email(v) => write!(f, "email:{v}"),
            Self::Uri(v) => write!(f, "URI:{v}"),
            Self::Other(v) => f.write_str(v),
        }
    }
}

impl Certificate {
    /// Decodes one DER certificate. The whole input must be the certificate: trailing bytes are
    /// an error (see [`DecodeError::TrailingBytes`]).
    pub fn from_der(der: &[u8]) -> Result<Self, DecodeError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| DecodeError::Der {
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: rest.len() });
        }
        let der = &der[..der.len() - rest.len()];
        Self::from_parsed(der, &cert)
    }

    fn from_parsed(der: &[u8], cert: &X509Certificate<'_>) -> Result<Self, DecodeError> {
        // The names' bytes come from our own walk of the TBSCertificate: x509-parser cuts a name
        // short at an empty RDN (`SET {}`), which OpenSSL hashes (and skips) like any other.
        let (issuer_der, subject_der) =
            raw_names(der).unwrap_or_else(|| (cert.issuer().as_raw(), cert.subject().as_raw()));
        let subject_hash = subject_hash_of_name(subject_der)
            .map_err(|reason| DecodeError::SubjectHash { reason })?;
        let issuer_hash =
            subject_hash_of_name(issuer_der).map_err(|reason| DecodeError::SubjectHash {
                reason: format!("issuer: {reason}"),
            })?;

        let mut subject_key_id = None;
        let mut authority_key_id = None;
        let mut subject_alt_names = Vec::new();
        let mut basic_constraints = None;
        let mut key_usage = None;
        let mut extended_key_usage = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    subject_key_id = Some(id.0.to_vec().into_boxed_slice());
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki
                        .key_identifier
                        .as_ref()
                        .map(|id| id.0.to_vec().into_boxed_slice());
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    subject_alt_names = san.general_names.iter().map(convert_name).collect();
                }
                ParsedExtension::BasicConstraints(bc) => {
                    basic_constraints = Some(BasicConstraints {
                        ca: bc.ca,
                        path_len: bc.path_len_constraint,
                    });
                }
                ParsedExtension::KeyUsage(ku) => key_usage = Some(KeyUsage(ku.flags)),
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let flags = [
                        (eku.any, "any"),
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                    ];
                    extended_key_usage = flags
                        .iter()
                        .filter(|(set, _)| *set)
                        .map(|(_, n)| (*n).to_owned())
                        .chain(eku.other.iter().map(|oid| oid.to_id_string()))
                        .collect();
                }
                _ => {}
            }
        }

        // Self-issued: the issuer is the subject and the key identifiers (when both present) agree.
        let names_match = subject_der == issuer_der;
        let ids_match = match (&subject_key_id, &authority_key_id) {
            (Some(s), Some(a)) => s == a,
            _ => true,
        };
        let self_issued = names_match && ids_match;

        Ok(Self {
            sha256: Sha256Fingerprint::of(der),
            sha1: Sha1Fingerprint::of(der),
            der: der.to_vec().into_boxed_slice(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            subject_der: subject_der.to_vec().into_boxed_slice(),
            issuer_der: issuer_der.to_vec().into_boxed_slice(),
            subject_hash,
            issuer_hash,
            serial: hex_colon(cert.raw_serial()),
            not_before: Timestamp::from_unix(cert.validity().not_before.timestamp()),
            not_after: Timestamp::from_unix(cert.validity().not_after.timestamp()),
            public_key: public_key_info(cert),
            signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
            basic_constraints,
            key_usage,
            extended_key_usage,
            subject_alt_names,
            subject_key_id,
            authority_key_id,
            self_issued,
            self_signed: OnceLock::new(),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// SHA-256 fingerprint of the DER: the certificate's identity in Anchorage.
    pub fn sha256(&self) -> Sha256Fingerprint {
        self.sha256
    }
    /// SHA-1 fingerprint of the DER.
    pub fn sha1(&self) -> Sha1Fingerprint {
        self.sha1
    }
    /// Subject, RFC 4514 style (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// Issuer, RFC 4514 style.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The subject `Name`'s DER.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }
    /// The issuer `Name`'s DER.
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }
    /// OpenSSL subject-name hash (`openssl x509 -subject_hash`).
    pub fn subject_hash(&self) -> SubjectHash {
        self.subject_hash
    }
    /// OpenSSL hash of the issuer name (`openssl x509 -issuer_hash`).
    pub fn issuer_hash(&self) -> SubjectHash {
        self.issuer_hash
    }
    /// Serial number as colon-separated hex bytes.
    pub fn serial(&self) -> &str {
        &self.serial
    }
    /// Start of validity.
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }
    /// End of validity.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }
    /// True when `now` lies after the end of validity.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now > self.not_after
    }
    /// True when `now` lies before the start of validity.
    pub fn is_not_yet_valid_at(&self, now: Timestamp) -> bool {
        now < self.not_before
    }
    /// Public key family and size.
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.public_key
    }
    /// Signature algorithm name (or OID).
    pub fn signature_algorithm(&self) -> &str {
        &self.signature_algorithm
    }
    /// Basic constraints, if the extension is present.
    pub fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.basic_constraints
    }
    /// True when basic constraints say `cA=TRUE`.
    pub fn is_ca(&self) -> bool {
        self.basic_constraints.is_some_and(|bc| bc.ca)
    }
    /// Key usage, if the extension is present.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.key_usage
    }
    /// Extended key usage purposes, by name or OID.
    pub fn extended_key_usage(&self) -> &[String] {
        &self.extended_key_usage
    }
    /// Subject alternative names.
    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.subject_alt_names
    }
    /// Subject key identifier.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }
    /// Authority key identifier (key id part).
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }
    /// True when the certificate is issued by its own key (subject = issuer and the signature
    /// verifies with its own public key).
    ///
    /// The signature check runs on first call only, and only for self-issued certificates.
    pub fn is_self_signed(&self) -> bool {
        *self.self_signed.get_or_init(|| {
            self.self_issued
                && X509Certificate::from_der(&self.der)
                    .is_ok_and(|(_, c)| c.verify_signature(Some(c.public_key())).is_ok())
        })
    }

    /// True when the issuer name equals the subject name (and key identifiers agree): a root or
    /// a self-signed leaf, judged without checking the signature.
    pub fn is_self_issued(&self) -> bool {
        self.self_issued
    }
    /// The PEM encoding (`-----BEGIN CERTIFICATE-----`, 64-column base64, `\n` line ends).
    pub fn to_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("sha256", &self.sha256)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}
impl Eq for Certificate {}
impl std::hash::Hash for Certificate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.sha256.hash(state);
    }
}

fn convert_name(name: &GeneralName<'_>) -> SubjectAltName {
    match name {
        GeneralName::DNSName(v) => SubjectAltName::Dns((*v).to_owned()),
        GeneralName::RFC822Name(v) => SubjectAltName::Email((*v).to_owned()),
        GeneralName::URI(v) => SubjectAltName::Uri((*v).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let b: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                SubjectAltName::Ip(IpAddr::from(b))
            }
            16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(bytes);
                SubjectAltName::Ip(IpAddr::from(b))
            }
            _ => SubjectAltName::Other(format!("IP:<{} bytes>", bytes.len())),
        },
        other => SubjectAltName::Other(other.to_string()),
    }
}

/// The raw `issuer` and `subject` Names of a DER certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, … }, … }`.
fn raw_names(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (cert, _) = crate::der::read(der).ok()?;
    let (tbs, _) = crate::der::read(cert.content).ok()?;
    let fields = crate::der::children(tbs.content).ok()?;
    let skip = usize::from(fields.first()?.tag == 0xa0); // explicit [0] version
    let issuer = fields.get(skip + 2)?;
    let subject = fields.get(skip + 4)?;
    (issuer.tag == crate::der::tag::SEQUENCE && subject.tag == crate::der::tag::SEQUENCE)
        .then_some((issuer.raw, subject.raw))
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

/// Colon-separated lower-case hex, as OpenSSL prints serials (x509-parser's own formatter
/// allocates per byte, which showed in profiles of 10,000-certificate bundles).
fn hex_colon(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

// OID contents (DER value bytes) of the key algorithms and curves we name.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

fn public_key_info(cert: &X509Certificate<'_>) -> PublicKeyInfo {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    let parsed = spki.parsed();
    let kind = match algorithm.as_bytes() {
        OID_RSA | OID_RSA_PSS => KeyKind::Rsa,
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|c| match c.as_bytes() {
                    OID_P256 => "P-256".to_owned(),
                    OID_P384 => "P-384".to_owned(),
                    OID_P521 => "P-521".to_owned(),
                    _ => c.to_id_string(),
                })
                .unwrap_or_else(|| "unknown curve".to_owned());
            KeyKind::Ec { curve }
        }
        OID_ED25519 => KeyKind::Ed25519,
        OID_ED448 => KeyKind::Ed448,
        OID_DSA => KeyKind::Dsa,
        _ => KeyKind::Other {
            oid: algorithm.to_id_string(),
        },
    };
    let bits = match (&kind, parsed) {
        (KeyKind::Ed25519, _) => Some(256),
        (KeyKind::Ed448, _) => Some(456),
        (_, Ok(PublicKey::RSA(rsa))) => u32::try_from(rsa.key_size()).ok(),
        (_, Ok(PublicKey::EC(ec))) => u32::try_from(ec.key_size()).ok(),
        (_, Ok(PublicKey::DSA(y))) => u32::try_from(y.len() * 8).ok(),
        _ => None,
    };
    PublicKeyInfo { kind, bits }
}

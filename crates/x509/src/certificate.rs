//! [`Certificate`]: the owned facts of one X.509 certificate, extracted at decode time (a few
//! seldom-used ones on first use), shared by its clones.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey;

use crate::error::DecodeError;
use crate::fingerprint::{Sha1Fingerprint, Sha256Fingerprint};
use crate::name_constraints::NameConstraints;
use crate::subject_hash::{SubjectHash, subject_hash_of_name};
use crate::timestamp::Timestamp;

/// One decoded X.509 certificate: its DER and the facts a trust store needs.
///
/// Equality, ordering and hashing are by SHA-256 fingerprint, i.e. by the exact DER.
///
/// Cheap to clone: the facts are decoded once and shared (a CA's root, cloned into every
/// certificate it issues, is one allocation however many hold it).
#[derive(Clone)]
pub struct Certificate(Arc<Facts>);

/// What [`Certificate`] shares between clones.
///
/// The byte-valued facts (names, serial, key identifiers, signature algorithm) are spans of
/// `bytes`, not copies, and the facts cheap to derive from those bytes but seldom asked for
/// are derived on first use: a manager caching thousands of certificates keeps each in few
/// allocations.
struct Facts {
    /// The DER (`..der_len`), followed by any part not found inside it (see [`Parts`]).
    bytes: Box<[u8]>,
    der_len: usize,
    sha256: Sha256Fingerprint,
    /// Rarely asked for (listings for older tools), so computed on first use.
    sha1: OnceLock<Sha1Fingerprint>,
    subject: String,
    issuer: String,
    subject_der: Span,
    issuer_der: Span,
    subject_hash: SubjectHash,
    issuer_hash: SubjectHash,
    /// The serial's content octets, and their colon-hex text on first use.
    serial: Span,
    serial_text: OnceLock<String>,
    not_before: Timestamp,
    not_after: Timestamp,
    public_key: PublicKeyInfo,
    /// The signature algorithm OID's content octets, and its name on first use.
    signature_algorithm: Span,
    signature_algorithm_name: OnceLock<String>,
    basic_constraints: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    /// The extended key usages: the named purposes as bits of [`EKU_NAMES`], the others by
    /// OID, and all as text on first use.
    eku_named: u8,
    eku_other: Vec<String>,
    extended_key_usage: OnceLock<Vec<String>>,
    subject_alt_names: Vec<SubjectAltName>,
    subject_key_id: Option<Span>,
    authority_key_id: Option<Span>,
    /// Name constraints (CA certificates only, and rare: boxed).
    name_constraints: Option<Box<NameConstraints>>,
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
        let issuer_hash = if issuer_der == subject_der {
            subject_hash
        } else {
            issuer_hash_of(issuer_der).map_err(|reason| DecodeError::SubjectHash {
                reason: format!("issuer: {reason}"),
            })?
        };

        let mut parts = Parts::new(der);
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        let mut subject_alt_names = Vec::new();
        let mut basic_constraints = None;
        let mut key_usage = None;
        let mut eku_named = 0u8;
        let mut eku_other = Vec::new();
        let mut name_constraints = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    subject_key_id = Some(parts.span(id.0));
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|id| parts.span(id.0));
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
                ParsedExtension::NameConstraints(nc) => {
                    name_constraints =
                        Some(Box::new(NameConstraints::from_parsed(ext.critical, nc)));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    // In the order of EKU_NAMES.
                    let flags = [
                        eku.any,
                        eku.server_auth,
                        eku.client_auth,
                        eku.code_signing,
                        eku.email_protection,
                        eku.time_stamping,
                        eku.ocsp_signing,
                    ];
                    eku_named = flags
                        .iter()
                        .enumerate()
                        .filter(|(_, set)| **set)
                        .fold(0, |bits, (i, _)| bits | 1 << i);
                    eku_other = eku.other.iter().map(|oid| oid.to_id_string()).collect();
                }
                _ => {}
            }
        }

        // Self-issued: the issuer is the subject and the key identifiers (when both present) agree.
        let names_match = subject_der == issuer_der;
        let ids_match = match (&subject_key_id, &authority_key_id) {
            (Some(s), Some(a)) => parts.get(s) == parts.get(a),
            _ => true,
        };
        let self_issued = names_match && ids_match;
        let subject_der = parts.span(subject_der);
        let issuer_der = parts.span(issuer_der);
        let serial = parts.span(cert.raw_serial());
        let signature_algorithm = parts.span(cert.signature_algorithm.algorithm.as_bytes());
        let subject = cert.subject().to_string();
        // The same bytes read the same: a root's issuer is its subject.
        let issuer = if cert.issuer().as_raw() == cert.subject().as_raw() {
            subject.clone()
        } else {
            issuer_text_of(cert.issuer())
        };

        Ok(Self(Arc::new(Facts {
            sha256: Sha256Fingerprint::of(der),
            sha1: OnceLock::new(),
            der_len: der.len(),
            bytes: parts.into_bytes(),
            subject,
            issuer,
            subject_der,
            issuer_der,
            subject_hash,
            issuer_hash,
            serial,
            serial_text: OnceLock::new(),
            not_before: Timestamp::from_unix(cert.validity().not_before.timestamp()),
            not_after: Timestamp::from_unix(cert.validity().not_after.timestamp()),
            public_key: public_key_info(cert),
            signature_algorithm,
            signature_algorithm_name: OnceLock::new(),
            basic_constraints,
            key_usage,
            eku_named,
            eku_other,
            extended_key_usage: OnceLock::new(),
            subject_alt_names,
            subject_key_id,
            authority_key_id,
            name_constraints,
            self_issued,
            self_signed: OnceLock::new(),
        })))
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.0.bytes[..self.0.der_len]
    }
    /// SHA-256 fingerprint of the DER: the certificate's identity in Anchorage.
    pub fn sha256(&self) -> Sha256Fingerprint {
        self.0.sha256
    }
    /// SHA-1 fingerprint of the DER.
    pub fn sha1(&self) -> Sha1Fingerprint {
        *self.0.sha1.get_or_init(|| Sha1Fingerprint::of(self.der()))
    }
    /// Subject, RFC 4514 style (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }
    /// Issuer, RFC 4514 style.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }
    /// The subject `Name`'s DER.
    pub fn subject_der(&self) -> &[u8] {
        self.0.part(&self.0.subject_der)
    }
    /// The issuer `Name`'s DER.
    pub fn issuer_der(&self) -> &[u8] {
        self.0.part(&self.0.issuer_der)
    }
    /// OpenSSL subject-name hash (`openssl x509 -subject_hash`).
    pub fn subject_hash(&self) -> SubjectHash {
        self.0.subject_hash
    }
    /// OpenSSL hash of the issuer name (`openssl x509 -issuer_hash`).
    pub fn issuer_hash(&self) -> SubjectHash {
        self.0.issuer_hash
    }
    /// Serial number as colon-separated hex bytes.
    pub fn serial(&self) -> &str {
        self.0
            .serial_text
            .get_or_init(|| hex_colon(self.0.part(&self.0.serial)))
    }
    /// Start of validity.
    pub fn not_before(&self) -> Timestamp {
        self.0.not_before
    }
    /// End of validity.
    pub fn not_after(&self) -> Timestamp {
        self.0.not_after
    }
    /// True when `now` lies after the end of validity.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        now > self.0.not_after
    }
    /// True when `now` lies before the start of validity.
    pub fn is_not_yet_valid_at(&self, now: Timestamp) -> bool {
        now < self.0.not_before
    }
    /// Public key family and size.
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.0.public_key
    }
    /// Signature algorithm name (or OID).
    pub fn signature_algorithm(&self) -> &str {
        self.0.signature_algorithm_name.get_or_init(|| {
            let oid = self.0.part(&self.0.signature_algorithm);
            oid_name(&x509_parser::der_parser::oid::Oid::new(oid.into()))
        })
    }
    /// Basic constraints, if the extension is present.
    pub fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.0.basic_constraints
    }
    /// True when basic constraints say `cA=TRUE`.
    pub fn is_ca(&self) -> bool {
        self.0.basic_constraints.is_some_and(|bc| bc.ca)
    }
    /// Key usage, if the extension is present.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.0.key_usage
    }
    /// Extended key usage purposes, by name or OID.
    pub fn extended_key_usage(&self) -> &[String] {
        self.0.extended_key_usage.get_or_init(|| {
            EKU_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| self.0.eku_named & (1 << i) != 0)
                .map(|(_, name)| (*name).to_owned())
                .chain(self.0.eku_other.iter().cloned())
                .collect()
        })
    }
    /// Subject alternative names.
    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.0.subject_alt_names
    }
    /// The name constraints extension, when present (on CA certificates): the names the
    /// certificates it issues may carry.
    pub fn name_constraints(&self) -> Option<&NameConstraints> {
        self.0.name_constraints.as_deref()
    }
    /// Subject key identifier.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.0.subject_key_id.as_ref().map(|s| self.0.part(s))
    }
    /// Authority key identifier (key id part).
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.0.authority_key_id.as_ref().map(|s| self.0.part(s))
    }
    /// True when the certificate is issued by its own key (subject = issuer and the signature
    /// verifies with its own public key).
    ///
    /// The signature check runs on first call only, and only for self-issued certificates.
    pub fn is_self_signed(&self) -> bool {
        *self.0.self_signed.get_or_init(|| {
            self.0.self_issued
                && X509Certificate::from_der(self.der())
                    .is_ok_and(|(_, c)| c.verify_signature(Some(c.public_key())).is_ok())
        })
    }

    /// True when the issuer name equals the subject name (and key identifiers agree): a root or
    /// a self-signed leaf, judged without checking the signature.
    pub fn is_self_issued(&self) -> bool {
        self.0.self_issued
    }
    /// The PEM encoding (`-----BEGIN CERTIFICATE-----`, 64-column base64, `\n` line ends).
    pub fn to_pem(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.der());
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

/// The extended key usage purposes x509-parser names, in the order they are listed.
const EKU_NAMES: [&str; 7] = [
    "any",
    "serverAuth",
    "clientAuth",
    "codeSigning",
    "emailProtection",
    "timeStamping",
    "OCSPSigning",
];

/// Where a part of a certificate lies in [`Facts::bytes`].
type Span = std::ops::Range<usize>;

impl Facts {
    fn part(&self, span: &Span) -> &[u8] {
        &self.bytes[span.clone()]
    }
}

/// Builds [`Facts::bytes`]: the DER, with each part of it the facts keep recorded as a span.
/// The parser borrows what it returns from the DER, so a part lies inside it; one that does
/// not is copied after the DER rather than trusted.
struct Parts<'a> {
    der: &'a [u8],
    extra: Vec<u8>,
}

impl<'a> Parts<'a> {
    fn new(der: &'a [u8]) -> Self {
        Self {
            der,
            extra: Vec::new(),
        }
    }

    fn span(&mut self, part: &[u8]) -> Span {
        // Addresses only, never dereferenced: where `part` starts relative to the DER.
        let start = (part.as_ptr() as usize).wrapping_sub(self.der.as_ptr() as usize);
        if start <= self.der.len() && part.len() <= self.der.len() - start {
            return start..start + part.len();
        }
        let start = self.der.len() + self.extra.len();
        self.extra.extend_from_slice(part);
        start..start + part.len()
    }

    fn get(&self, span: &Span) -> &[u8] {
        match span.start.checked_sub(self.der.len()) {
            Some(at) => &self.extra[at..at + span.len()],
            None => &self.der[span.clone()],
        }
    }

    fn into_bytes(self) -> Box<[u8]> {
        let mut bytes = Vec::with_capacity(self.der.len() + self.extra.len());
        bytes.extend_from_slice(self.der);
        bytes.extend_from_slice(&self.extra);
        bytes.into_boxed_slice()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.0.subject)
            .field("issuer", &self.0.issuer)
            .field("sha256", &self.0.sha256)
            .field("not_after", &self.0.not_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.0.sha256 == other.0.sha256
    }
}
impl Eq for Certificate {}
impl std::hash::Hash for Certificate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.sha256.hash(state);
    }
}

/// The last issuer name this thread decoded, with its hash and its text: the certificates a
/// CA issues all name it, so issuing or loading them works each out once. Both are pure
/// functions of the name's bytes (the text of x509-parser's view of them, which is keyed
/// separately); failures are not remembered.
struct LastIssuer {
    hashed: Vec<u8>,
    hash: Option<SubjectHash>,
    written: Vec<u8>,
    text: Option<String>,
}

thread_local! {
    static LAST_ISSUER: RefCell<LastIssuer> = const {
        RefCell::new(LastIssuer {
            hashed: Vec::new(),
            hash: None,
            written: Vec::new(),
            text: None,
        })
    };
}

/// [`subject_hash_of_name`] of an issuer name (see [`LastIssuer`]).
fn issuer_hash_of(name_der: &[u8]) -> Result<SubjectHash, String> {
    LAST_ISSUER.with_borrow_mut(|last| {
        if let Some(hash) = last.hash
            && last.hashed == name_der
        {
            return Ok(hash);
        }
        let hash = subject_hash_of_name(name_der)?;
        last.hashed.clear();
        last.hashed.extend_from_slice(name_der);
        last.hash = Some(hash);
        Ok(hash)
    })
}

/// The text of an issuer name (see [`LastIssuer`]).
fn issuer_text_of(name: &X509Name<'_>) -> String {
    LAST_ISSUER.with_borrow_mut(|last| {
        if let Some(text) = &last.text
            && last.written == name.as_raw()
        {
            return text.clone();
        }
        let text = name.to_string();
        last.written.clear();
        last.written.extend_from_slice(name.as_raw());
        last.text = Some(text.clone());
        text
    })
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
    // Every field must read (as `der::children` would check), but only the first six matter:
    // kept on the stack, as this runs for every certificate decoded.
    let mut fields = [None; 6];
    let mut rest = tbs.content;
    let mut count = 0;
    while !rest.is_empty() {
        let (field, after) = crate::der::read(rest).ok()?;
        if let Some(slot) = fields.get_mut(count) {
            *slot = Some(field);
        }
        count += 1;
        rest = after;
    }
    let skip = usize::from(fields[0]?.tag == 0xa0); // explicit [0] version
    let issuer = fields[skip + 2]?;
    let subject = fields[skip + 4]?;
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

//! The built-in CA: a root (and optional intermediate) made here or taken over from a mesh,
//! issuing leaf certificates locally.
//!
//! This module owns creating a CA ([`BuiltinCa::init`]), issuing with it (the [`Issuer`]
//! implementation and [`BuiltinCa::issue_at`]), and the rules every leaf follows:
//!
//! - basicConstraints `CA:FALSE` (critical); keyUsage `digitalSignature` (plus
//!   `keyEncipherment` for RSA keys), critical; EKU from [`CertKind::extended_key_usages`];
//!   SANs from [`CertificateRequest::all_sans`]; SKI, and an AKI equal to the signer's SKI;
//! - a random positive 126-bit serial;
//! - notBefore five minutes in the past (peers' clocks drift) but never before the signing
//!   path's notBefore; notAfter `now + lifetime`, cut to the signing path's notAfter under
//!   [`LifetimePolicy::Clamp`] (the default; the result says `lifetime_clamped`) or refused
//!   under [`LifetimePolicy::Refuse`].
//!
//! The CA key and certificate are parsed once, when the CA is built: issuing is a key
//! generation plus one signature. Import and export of files and Kubernetes Secret layouts
//! live in [`import`] ([`BuiltinCa::from_pem`], [`BuiltinCa::from_fsm_secret_data`], …);
//! keeping a CA in a store lives in [`crate::persist`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::{
    Certificate, NAME_CONSTRAINTS_OID, NameConstraints, NameSubtree, SubjectAltName, Timestamp,
};
use async_trait::async_trait;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use secrecy::SecretString;

use crate::clock::{Clock, SystemClock};
use crate::issued::{IssuedCertificate, IssuerId, PrivateKey};
use crate::issuer::{IssueError, Issuer};
use crate::keys::{self, KeyError};
use crate::request::{CertKind, CertificateRequest, KeyType, San};

pub mod import;

pub use import::{CaPem, Source};

/// The most permitted subtrees `ca init` puts in a root's name constraints: every verifier
/// checks every name of every leaf against each, and a real cluster needs a handful.
pub const MAX_PERMITTED_NAMES: usize = 64;

/// The name constraints extension for `permitted` (critical; every IP address excluded when
/// no IP subtree is permitted), or `None` when `permitted` is empty.
pub fn name_constraints_for(permitted: &[NameSubtree]) -> Option<NameConstraints> {
    if permitted.is_empty() {
        return None;
    }
    let excluded = if permitted
        .iter()
        .any(|n| matches!(n, NameSubtree::Ip { .. }))
    {
        Vec::new()
    } else {
        ["0.0.0.0/0", "::/0"]
            .into_iter()
            .filter_map(|net| NameSubtree::ip(net).ok())
            .collect()
    };
    Some(NameConstraints {
        critical: true,
        permitted: permitted.to_vec(),
        excluded,
    })
}

/// How far notBefore is set in the past, for peers whose clocks run behind.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// What a new CA looks like. `Default` gives a P-256 root named "Anchorage Root CA", valid ten
/// years, signing directly (no intermediate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// The root's CommonName.
    pub common_name: String,
    /// The Organization of the root (and intermediate), if any.
    pub organization: Option<String>,
    /// Key type of the root and intermediate.
    pub key_type: KeyType,
    /// Root lifetime.
    pub lifetime: Duration,
    /// An intermediate CA that signs leaves while the root key stays idle.
    pub intermediate: Option<IntermediateOptions>,
    /// The names the CA may issue for (`--permitted-dns`, `--permitted-ip`,
    /// `--permitted-uri`): when not empty, the root gets a critical name constraints extension
    /// with these permitted subtrees (and, when no IP subtree is given, every IPv4 and IPv6
    /// address excluded, as the CA/Browser Forum asks of a constrained CA), so verifiers refuse
    /// anything else it, or anyone holding its key, signs. Empty: unconstrained.
    pub permitted_names: Vec<NameSubtree>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            common_name: "Anchorage Root CA".to_owned(),
            organization: None,
            key_type: KeyType::P256,
            lifetime: Duration::from_secs(10 * 365 * 86_400),
            intermediate: None,
            permitted_names: Vec::new(),
        }
    }
}

impl InitOptions {
    /// Checks the names (1 to 64 printable characters, as for a CommonName) and lifetimes (at
    /// least one day).
    pub fn validate(&self) -> Result<(), CaError> {
        let mut names = vec![("common name", self.common_name.as_str())];
        if let Some(org) = &self.organization {
            names.push(("organization", org.as_str()));
        }
        let mut lifetimes = vec![("lifetime", self.lifetime)];
        if let Some(int) = &self.intermediate {
            names.push(("intermediate common name", int.common_name.as_str()));
            lifetimes.push(("intermediate lifetime", int.lifetime));
        }
        for (what, value) in names {
            if value.trim().is_empty()
                || value.chars().count() > 64
                || value.chars().any(char::is_control)
            {
                return Err(CaError::InvalidOptions {
                    reason: format!("the {what} {value:?} must be 1 to 64 printable characters"),
                });
            }
        }
        if let Some(other) = self.permitted_names.iter().find(|n| {
            !matches!(
                n,
                NameSubtree::Dns(_) | NameSubtree::Ip { .. } | NameSubtree::Uri(_)
            )
        }) {
            return Err(CaError::InvalidOptions {
                reason: format!(
                    "the permitted name {other} is not a DNS, IP or URI subtree; give --permitted-dns, --permitted-ip or --permitted-uri"
                ),
            });
        }
        if self.permitted_names.len() > MAX_PERMITTED_NAMES {
            return Err(CaError::InvalidOptions {
                reason: format!(
                    "{} permitted names exceed the limit of {MAX_PERMITTED_NAMES}",
                    self.permitted_names.len()
                ),
            });
        }
        for (what, value) in lifetimes {
            if value < Duration::from_secs(86_400) {
                return Err(CaError::InvalidOptions {
                    reason: format!("the {what} {value:?} is under one day"),
                });
            }
        }
        Ok(())
    }
}

/// The intermediate CA of [`InitOptions`]. `Default`: "Anchorage Intermediate CA", five years
/// (cut to the root's end), pathLen 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntermediateOptions {
    /// Its CommonName.
    pub common_name: String,
    /// Its lifetime (never beyond the root's).
    pub lifetime: Duration,
}

impl Default for IntermediateOptions {
    fn default() -> Self {
        Self {
            common_name: "Anchorage Intermediate CA".to_owned(),
            lifetime: Duration::from_secs(5 * 365 * 86_400),
        }
    }
}

/// What to do when a request's lifetime would outlive the signing CA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifetimePolicy {
    /// Cut the lifetime to end with the CA and say so (`lifetime_clamped`). The default: a
    /// ten-year webhook certificate from a CA with four years left gets four years.
    #[default]
    Clamp,
    /// Refuse with [`IssueError::LifetimeExceedsCa`].
    Refuse,
}

/// Why creating, importing, exporting, loading or saving a CA failed. No variant carries key
/// material; variants about input name where it came from (`origin`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// [`InitOptions`] that cannot make a CA.
    #[error("cannot create the CA: {reason}")]
    InvalidOptions {
        /// What is wrong and what to use instead.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error("could not {action}: {message}")]
    Crypto {
        /// What we were doing.
        action: String,
        /// The library's message.
        message: String,
    },
    /// A private key could not be loaded.
    #[error("the private key in {origin} cannot be used")]
    Key {
        /// Where it came from (file name, Secret key).
        origin: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// No certificate in an input that should hold one.
    #[error("no certificate found in {origin}")]
    NoCertificate {
        /// Where.
        origin: String,
    },
    /// A certificate that does not decode.
    #[error("a certificate in {origin} cannot be read: {reason}")]
    BadCertificate {
        /// Where.
        origin: String,
        /// The decoder's message, with the position.
        reason: String,
    },
    /// A certificate given as a CA is not one.
    #[error(
        "{subject} (from {origin}) is not a CA certificate: it lacks basicConstraints CA:TRUE or keyUsage keyCertSign"
    )]
    NotACa {
        /// Where.
        origin: String,
        /// Its subject.
        subject: String,
    },
    /// The CA is expired or not valid yet.
    #[error(
        "the CA {subject} is not valid now ({now}): it is valid from {not_before} to {not_after}"
    )]
    NotValidNow {
        /// Its subject.
        subject: String,
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A key that belongs to none of the certificates.
    #[error(
        "the private key in {origin} does not match the CA certificate{}: its public key differs",
        if subjects.is_empty() { String::new() } else { format!(" ({})", subjects.join(", ")) }
    )]
    KeyMismatch {
        /// Where the key came from.
        origin: String,
        /// The certificates it was compared with.
        subjects: Vec<String>,
    },
    /// No private key for the CA that would sign.
    #[error("no private key was given for the signing CA {subject}")]
    MissingKey {
        /// The signing CA's subject.
        subject: String,
    },
    /// The certificates do not form one chain to a self-signed root.
    #[error("the CA certificates do not form one chain to a root: {reason}")]
    BrokenChain {
        /// What is missing or extra.
        reason: String,
    },
    /// A Secret or map lacks a required entry.
    #[error("the {layout} data has no {key:?} entry (found: {})", found.join(", "))]
    MissingEntry {
        /// The layout (`fsm-ca-bundle Secret`, `kubernetes.io/tls Secret`).
        layout: &'static str,
        /// The missing key.
        key: &'static str,
        /// The keys present.
        found: Vec<String>,
    },
    /// The CA cannot be expressed in the requested layout.
    #[error("cannot export to the {layout} layout: {reason}")]
    Layout {
        /// The layout.
        layout: &'static str,
        /// Why.
        reason: String,
    },
    /// Our issuer name would not be byte-identical to the CA's subject (an unusual name
    /// encoding, such as several attributes in one RDN), so chains would not verify.
    #[error(
        "the CA subject {subject} uses a name encoding that cannot be reproduced in issued certificates"
    )]
    NameEncoding {
        /// The subject.
        subject: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anchorage_store::StoreError),
    /// No CA has been saved in the store.
    #[error("no built-in CA in the store under {key:?}: run `anchorage ca init` or `ca import`")]
    NotInitialised {
        /// The store key looked up.
        key: String,
    },
    /// A CA is already saved and the save would replace it.
    #[error(
        "a built-in CA already exists in the store under {key:?} (revision {revision}); refusing to replace it"
    )]
    AlreadyInitialised {
        /// The store key.
        key: String,
        /// Its revision.
        revision: u64,
    },
    /// The stored key is encrypted and no passphrase was given.
    #[error("the stored CA key is encrypted: give its passphrase")]
    PassphraseRequired,
    /// The passphrase does not decrypt the stored key.
    #[error("wrong passphrase for the stored CA key (or the stored key is damaged)")]
    WrongPassphrase,
    /// The stored record does not parse.
    #[error("the stored CA record {key:?} is damaged: {reason}")]
    CorruptRecord {
        /// The store key.
        key: String,
        /// What is wrong (never key bytes).
        reason: String,
    },
}

/// The signing CA, parsed once: certificate, key, ready rcgen issuer.
struct Signer {
    certificate: Certificate,
    key: PrivateKey,
    issuer: rcgen::Issuer<'static, KeyPair>,
    id: IssuerId,
}

/// Everything fixed once the CA is built; shared by clones and blocking tasks.
struct Inner {
    signer: Signer,
    /// Intermediates for leaves, nearest first (includes the signer when it is not a root).
    chain: Vec<Certificate>,
    /// The root that anchors the signing path.
    anchor: Certificate,
    /// The root's key when the signer is an intermediate and the root key is held.
    root_key: Option<PrivateKey>,
    /// The signing path's validity: the latest notBefore, the earliest notAfter, and the
    /// certificate that sets each.
    not_before: (Timestamp, usize),
    not_after: (Timestamp, usize),
    /// The name constraints of the signing path (subject of the CA, constraints), checked
    /// before every signature.
    constraints: Vec<(String, NameConstraints)>,
}

/// A CA that issues locally. Cheap to clone (the parsed CA is shared).
///
/// `Debug` never shows keys.
#[derive(Clone)]
pub struct BuiltinCa {
    inner: Arc<Inner>,
    /// Validating roots, the anchor first.
    roots: Arc<[Certificate]>,
    policy: LifetimePolicy,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for BuiltinCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinCa")
            .field("signer", &self.inner.signer.certificate.subject())
            .field("signer_id", &self.inner.signer.id)
            .field("key_type", &self.inner.signer.key.key_type())
            .field("chain", &self.inner.chain.len())
            .field("roots", &self.roots.len())
            .field("root_key_held", &self.inner.root_key.is_some())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_timestamp() -> Timestamp {
    SystemClock.timestamp()
}

fn to_datetime(ts: Timestamp) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(ts.unix()).map_err(|e| e.to_string())
}

fn add(ts: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix(
        ts.unix()
            .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    )
}

fn sub(ts: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix(
        ts.unix()
            .saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    )
}

/// How many serials' worth of random bytes [`random_serial`] fetches at a time.
const SERIALS_PER_FETCH: usize = 16;

/// A random positive serial of 16 bytes (126 random bits; the top bits fixed so the DER
/// integer is always 16 bytes and positive).
///
/// The bytes come from the system generator, fetched for [`SERIALS_PER_FETCH`] serials at a
/// time into a per-thread pool (a system call per serial showed in issuance profiles); each
/// serial's bytes are cleared from the pool once handed out. (A process that forks keeps
/// running Rust code in the child only until it execs, so the child never issues from a copy
/// of the pool.)
fn random_serial() -> Result<SerialNumber, String> {
    use std::cell::RefCell;

    use ring::rand::SecureRandom as _;
    const POOL: usize = 16 * SERIALS_PER_FETCH;
    thread_local! {
        static RANDOM: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    let mut bytes = [0u8; 16];
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used + bytes.len() > pool.len() {
            ring::rand::SystemRandom::new()
                .fill(pool)
                .map_err(|_| "the system random generator failed".to_owned())?;
            *used = 0;
        }
        let taken = &mut pool[*used..*used + bytes.len()];
        bytes.copy_from_slice(taken);
        taken.fill(0);
        *used += bytes.len();
        Ok::<_, String>(())
    })?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(
    dn: DistinguishedName,
    path_len: Option<u8>,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<CertificateParams, CaError> {
    let crypto = |message: String| CaError::Crypto {
        action: "prepare the CA certificate".to_owned(),
        message,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial().map_err(crypto)?);
    params.not_before = to_datetime(not_before).map_err(crypto)?;
    params.not_after = to_datetime(not_after).map_err(crypto)?;
    Ok(params)
}

/// Cross-signs `cert` (a CA certificate of another CA, whose key is `key`) with `issuer`'s
/// root key: a certificate with `cert`'s subject, public key, basic constraints and key usages,
/// issued by `issuer`'s root, valid as `cert` but never beyond that root. Sent in a chain after
/// a leaf of the other CA, it lets a peer that trusts only `issuer`'s root verify that leaf
/// (the cross-signing strategy of a root rotation). Needs `issuer`'s root key (held when the
/// root signs, or when it was kept beside an intermediate).
pub fn cross_sign(
    issuer: &BuiltinCa,
    cert: &Certificate,
    key: &PrivateKey,
) -> Result<Certificate, CaError> {
    let root_key = match (issuer.root_key(), issuer.chain().is_empty()) {
        (Some(k), _) => k,
        (None, true) => issuer.signing_key(),
        (None, false) => {
            return Err(CaError::MissingKey {
                subject: issuer.root().subject().to_owned(),
            });
        }
    };
    let (root_kp, _) =
        keys::load_der(crate::KeyForm::Pkcs8, root_key.pkcs8_der()).map_err(|e| {
            CaError::Crypto {
                action: "load the cross-signing root key".to_owned(),
                message: e.to_string(),
            }
        })?;
    let (subject_kp, _) =
        keys::load_der(crate::KeyForm::Pkcs8, key.pkcs8_der()).map_err(|e| CaError::Crypto {
            action: "load the cross-signed CA's key".to_owned(),
            message: e.to_string(),
        })?;
    let root_issuer =
        rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(issuer.root().der()), root_kp)
            .map_err(sign_error("load the cross-signing root"))?;
    let mut params = cross_params(cert)?;
    params.serial_number = Some(random_serial().map_err(|message| CaError::Crypto {
        action: "draw a serial".to_owned(),
        message,
    })?);
    params.not_before = to_datetime(cert.not_before()).map_err(|message| CaError::Crypto {
        action: "set the validity".to_owned(),
        message,
    })?;
    params.not_after =
        to_datetime(cert.not_after().min(issuer.root().not_after())).map_err(|message| {
            CaError::Crypto {
                action: "set the validity".to_owned(),
                message,
            }
        })?;
    params.use_authority_key_identifier_extension = true;
    let crossed = params
        .signed_by(&subject_kp, &root_issuer)
        .map_err(sign_error("cross-sign the certificate"))?;
    decode_rcgen(&crossed, "read back the cross-signed certificate")
}

/// The subject (same string types, so the bytes match), basic constraints and CA key usages
/// of `cert`, for [`cross_sign`].
fn cross_params(cert: &Certificate) -> Result<CertificateParams, CaError> {
    use x509_parser::prelude::FromDer as _;
    let bad = |message: String| CaError::Crypto {
        action: "read the certificate to cross-sign".to_owned(),
        message,
    };
    let (_, x) = x509_parser::certificate::X509Certificate::from_der(cert.der())
        .map_err(|e| bad(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    for rdn in x.subject().iter() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .map(|arcs| arcs.collect())
                .ok_or_else(|| bad("an attribute OID does not fit".to_owned()))?;
            let kind = match oid.as_slice() {
                [2, 5, 4, 3] => DnType::CommonName,
                [2, 5, 4, 10] => DnType::OrganizationName,
                [2, 5, 4, 11] => DnType::OrganizationalUnitName,
                [2, 5, 4, 6] => DnType::CountryName,
                [2, 5, 4, 8] => DnType::StateOrProvinceName,
                [2, 5, 4, 7] => DnType::LocalityName,
                _ => DnType::CustomDnType(oid),
            };
            let text = attr
                .as_str()
                .map_err(|e| bad(format!("a subject attribute is not text: {e}")))?;
            let value = if attr.attr_value().header.tag()
                == x509_parser::der_parser::asn1_rs::Tag::PrintableString
            {
                rcgen::DnValue::PrintableString(
                    rcgen::string::PrintableString::try_from(text)
                        .map_err(|e| bad(e.to_string()))?,
                )
            } else {
                rcgen::DnValue::Utf8String(text.to_owned())
            };
            dn.push(kind, value);
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    let path_len = x
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|b| b.value.path_len_constraint);
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(u8::try_from(n).unwrap_or(u8::MAX)),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn decode_rcgen(cert: &rcgen::Certificate, action: &str) -> Result<Certificate, CaError> {
    Certificate::from_der(cert.der()).map_err(|e| CaError::Crypto {
        action: action.to_owned(),
        message: e.to_string(),
    })
}

fn sign_error(action: &str) -> impl Fn(rcgen::Error) -> CaError + '_ {
    move |e| CaError::Crypto {
        action: action.to_owned(),
        message: e.to_string(),
    }
}

impl BuiltinCa {
    /// Creates a new CA now (see [`BuiltinCa::init_at`]).
    pub fn init(options: &InitOptions) -> Result<Self, CaError> {
        Self::init_at(options, now_timestamp())
    }

    /// Creates a new self-signed root at `now` (notBefore five minutes earlier), with
    /// basicConstraints `CA:TRUE` and keyUsage `keyCertSign, cRLSign` (both critical) and an
    /// SKI; with [`InitOptions::intermediate`], also an intermediate (pathLen 0, AKI = the
    /// root's SKI) that signs leaves, the root key being kept for export only.
    pub fn init_at(options: &InitOptions, now: Timestamp) -> Result<Self, CaError> {
        options.validate()?;
        let gen_err = |e: IssueError| CaError::Crypto {
            action: format!("generate the {} CA key", options.key_type),
            message: e.to_string(),
        };
        let not_before = sub(now, CLOCK_SKEW_ALLOWANCE);
        let root_not_after = add(now, options.lifetime);
        let (root_kp, root_key) = keys::generate(options.key_type).map_err(gen_err)?;
        let mut root_params = ca_params(
            name(&options.common_name, options.organization.as_deref()),
            None,
            not_before,
            root_not_after,
        )?;
        if let Some(constraints) = name_constraints_for(&options.permitted_names) {
            let mut extension = rcgen::CustomExtension::from_oid_content(
                &NAME_CONSTRAINTS_OID,
                constraints.to_der(),
            );
            extension.set_criticality(true);
            root_params.custom_extensions.push(extension);
        }
        let root = root_params
            .self_signed(&root_kp)
            .map_err(sign_error("sign the root certificate"))?;
        let root = decode_rcgen(&root, "read back the root certificate")?;

        let Some(int) = &options.intermediate else {
            return Self::assemble(vec![root], (root_kp, root_key), None);
        };
        let root_issuer =
            rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(root.der()), root_kp)
                .map_err(sign_error("load the root certificate"))?;
        let (int_kp, int_key) = keys::generate(options.key_type).map_err(gen_err)?;
        let int_not_after = add(now, int.lifetime).min(root_not_after);
        let mut int_params = ca_params(
            name(&int.common_name, options.organization.as_deref()),
            Some(0),
            not_before,
            int_not_after,
        )?;
        int_params.use_authority_key_identifier_extension = true;
        let intermediate = int_params
            .signed_by(&int_kp, &root_issuer)
            .map_err(sign_error("sign the intermediate certificate"))?;
        let intermediate = decode_rcgen(&intermediate, "read back the intermediate certificate")?;
        Self::assemble(vec![intermediate, root], (int_kp, int_key), Some(root_key))
    }

    /// Builds the CA from a signing path (`path[0]` signs leaves, the last is a self-signed
    /// root), the signer's key, and optionally the root's key (when the signer is not the
    /// root). Checks that every certificate is a CA,
    /// that each is signed by the next, that the key belongs to the signer, and that issued
    /// certificates will name their issuer byte-for-byte as the signer's subject.
    pub(crate) fn assemble(
        path: Vec<Certificate>,
        signing_key: (KeyPair, PrivateKey),
        root_key: Option<PrivateKey>,
    ) -> Result<Self, CaError> {
        let (Some(signer_cert), Some(root)) = (path.first(), path.last()) else {
            return Err(CaError::BrokenChain {
                reason: "no certificate".to_owned(),
            });
        };
        for cert in &path {
            if !is_ca(cert) {
                return Err(CaError::NotACa {
                    origin: "the CA chain".to_owned(),
                    subject: cert.subject().to_owned(),
                });
            }
        }
        for pair in path.windows(2) {
            if !issued_by(&pair[0], &pair[1]) {
                return Err(CaError::BrokenChain {
                    reason: format!(
                        "{} is not signed by {}",
                        pair[0].subject(),
                        pair[1].subject()
                    ),
                });
            }
        }
        if !root.is_self_signed() {
            return Err(CaError::BrokenChain {
                reason: format!(
                    "{} is not a self-signed root; add the certificate of its issuer {}",
                    root.subject(),
                    root.issuer()
                ),
            });
        }
        let (key_pair, key) = signing_key;
        if !keys::matches_certificate(&key_pair, signer_cert.der()) {
            return Err(CaError::KeyMismatch {
                origin: "the signing key".to_owned(),
                subjects: vec![signer_cert.subject().to_owned()],
            });
        }
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(signer_cert.der()), key_pair)
                .map_err(|_| CaError::NameEncoding {
                    subject: signer_cert.subject().to_owned(),
                })?;
        probe_issuer(&issuer, signer_cert)?;

        let not_before = path
            .iter()
            .enumerate()
            .map(|(i, c)| (c.not_before(), i))
            .max()
            .unwrap_or((signer_cert.not_before(), 0));
        let not_after = path
            .iter()
            .enumerate()
            .map(|(i, c)| (c.not_after(), i))
            .min()
            .unwrap_or((signer_cert.not_after(), 0));
        let signer = Signer {
            id: IssuerId::of(signer_cert),
            certificate: signer_cert.clone(),
            key,
            issuer,
        };
        let constraints = path
            .iter()
            .filter_map(|c| {
                c.name_constraints()
                    .map(|nc| (c.subject().to_owned(), nc.clone()))
            })
            .collect();
        let mut path = path;
        let Some(anchor) = path.pop() else {
            unreachable!("the path was checked to be non-empty")
        };
        let roots = vec![anchor.clone()];
        Ok(Self {
            inner: Arc::new(Inner {
                signer,
                chain: path,
                anchor,
                root_key,
                not_before,
                not_after,
                constraints,
            }),
            roots: roots.into(),
            policy: LifetimePolicy::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same CA with another lifetime policy.
    #[must_use]
    pub fn with_lifetime_policy(mut self, policy: LifetimePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The same CA reading "now" from `clock` in [`Issuer::issue`] (tests and the manager use
    /// a [`crate::ManualClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same CA with more validating roots (a root rotation publishes the new root before
    /// it signs). Duplicates are ignored; the anchoring root stays first.
    #[must_use]
    pub fn with_extra_validating_roots(
        mut self,
        roots: impl IntoIterator<Item = Certificate>,
    ) -> Self {
        let mut all = self.roots.to_vec();
        for root in roots {
            if !all.contains(&root) {
                all.push(root);
            }
        }
        self.roots = all.into();
        self
    }

    /// The lifetime policy.
    pub fn lifetime_policy(&self) -> LifetimePolicy {
        self.policy
    }

    /// The certificate that signs leaves (the intermediate when there is one).
    pub fn signing_certificate(&self) -> &Certificate {
        &self.inner.signer.certificate
    }

    /// The signing CA's key (for export and persistence).
    pub fn signing_key(&self) -> &PrivateKey {
        &self.inner.signer.key
    }

    /// The root that anchors the signing path.
    pub fn root(&self) -> &Certificate {
        &self.inner.anchor
    }

    /// The root's key when it is held and the root is not the signer (then see
    /// [`BuiltinCa::signing_key`]).
    pub fn root_key(&self) -> Option<&PrivateKey> {
        self.inner.root_key.as_ref()
    }

    /// The intermediates leaves are sent with, nearest first (empty when the root signs).
    pub fn chain(&self) -> &[Certificate] {
        &self.inner.chain
    }

    /// All validating roots, the anchoring root first.
    pub fn roots(&self) -> &[Certificate] {
        &self.roots
    }

    /// The signing CA's id.
    pub fn id(&self) -> IssuerId {
        self.inner.signer.id
    }

    /// The latest time a leaf can be valid until: the earliest notAfter on the signing path.
    pub fn not_after(&self) -> Timestamp {
        self.inner.not_after.0
    }

    /// The signing CA's key as PKCS#8 PEM (a secret).
    pub fn signing_key_pem(&self) -> SecretString {
        self.inner.signer.key.to_pkcs8_pem()
    }

    /// Issues a certificate for `request` as at `now` (the injectable clock behind
    /// [`Issuer::issue`]). Synchronous: a key generation and one signature (tens of
    /// microseconds for P-256; RSA keys take far longer, which is why [`Issuer::issue`] moves
    /// RSA requests to the blocking pool).
    pub fn issue_at(
        &self,
        request: &CertificateRequest,
        now: Timestamp,
    ) -> Result<IssuedCertificate, IssueError> {
        self.inner.issue_at(request, now, self.policy, &self.roots)
    }
}

fn is_ca(cert: &Certificate) -> bool {
    cert.is_ca() && cert.key_usage().is_none_or(|ku| ku.key_cert_sign())
}

/// `child`'s issuer name is `parent`'s subject and `parent`'s key verifies its signature.
pub(crate) fn issued_by(child: &Certificate, parent: &Certificate) -> bool {
    use x509_parser::prelude::FromDer as _;
    if child.issuer_der() != parent.subject_der() {
        return false;
    }
    let (Ok((_, c)), Ok((_, p))) = (
        x509_parser::certificate::X509Certificate::from_der(child.der()),
        x509_parser::certificate::X509Certificate::from_der(parent.der()),
    ) else {
        return false;
    };
    c.verify_signature(Some(p.public_key())).is_ok()
}

/// Signs a throw-away certificate and checks that its issuer name is the signer's subject
/// byte-for-byte (rcgen re-encodes names) and its AKI is the signer's SKI.
fn probe_issuer(
    issuer: &rcgen::Issuer<'static, KeyPair>,
    signer: &Certificate,
) -> Result<(), CaError> {
    let mut params = CertificateParams::default();
    params.use_authority_key_identifier_extension = true;
    let probe = params
        .signed_by(issuer.key(), issuer)
        .map_err(sign_error("sign a test certificate with the CA key"))?;
    let probe = decode_rcgen(&probe, "read back a test certificate")?;
    let aki_ok = match (signer.subject_key_id(), probe.authority_key_id()) {
        (Some(ski), Some(aki)) => ski == aki,
        (None, _) => true,
        (Some(_), None) => false,
    };
    if probe.issuer_der() != signer.subject_der() || !aki_ok {
        return Err(CaError::NameEncoding {
            subject: signer.subject().to_owned(),
        });
    }
    Ok(())
}

impl Inner {
    fn issue_at(
        &self,
        request: &CertificateRequest,
        now: Timestamp,
        policy: LifetimePolicy,
        roots: &[Certificate],
    ) -> Result<IssuedCertificate, IssueError> {
        request.validate()?;
        self.check_names(request)?;
        let path_cert = |i: usize| self.chain.get(i).unwrap_or(&self.anchor);
        let (ca_not_before, nb_at) = self.not_before;
        let (ca_not_after, na_at) = self.not_after;
        for (bad, at) in [(now < ca_not_before, nb_at), (now >= ca_not_after, na_at)] {
            if bad {
                let cert = path_cert(at);
                return Err(IssueError::CaNotValid {
                    subject: cert.subject().to_owned(),
                    not_before: cert.not_before(),
                    not_after: cert.not_after(),
                });
            }
        }

        let not_before = sub(now, CLOCK_SKEW_ALLOWANCE).max(ca_not_before);
        let mut not_after = add(now, request.lifetime);
        let mut lifetime_clamped = false;
        if not_after > ca_not_after {
            let available = Duration::from_secs(
                u64::try_from(ca_not_after.unix() - now.unix()).unwrap_or_default(),
            );
            match policy {
                LifetimePolicy::Clamp => {
                    not_after = ca_not_after;
                    lifetime_clamped = true;
                }
                LifetimePolicy::Refuse => {
                    return Err(IssueError::LifetimeExceedsCa {
                        identity: request.identity.clone(),
                        requested: request.lifetime,
                        available,
                        ca_not_after,
                    });
                }
            }
        }

        let crypto = |action: &str| {
            let action = action.to_owned();
            move |message: String| IssueError::Crypto { action, message }
        };
        let (key_pair, private_key) = keys::generate(request.key_type)?;
        let params = leaf_params(request, not_before, not_after)
            .map_err(crypto("prepare the certificate"))?;
        let signed = params
            .signed_by(&key_pair, &self.signer.issuer)
            .map_err(|e| crypto("sign the certificate")(e.to_string()))?;
        let certificate = Certificate::from_der(signed.der())
            .map_err(|e| crypto("read back the signed certificate")(e.to_string()))?;
        // The check every backend runs (crate::check). The built-in CA builds the leaf from the
        // request, so it holds by construction; debug builds (every test) prove it on each
        // issuance, release builds skip its parse to keep issuance fast.
        #[cfg(debug_assertions)]
        if let Err(mismatch) = crate::check::check_issued(
            request,
            &certificate,
            &key_pair,
            Some(&self.signer.certificate),
        ) {
            return Err(IssueError::Backend {
                backend: "builtin",
                message: format!(
                    "the built-in CA made a certificate that does not match its request ({mismatch}): a bug in anchorage"
                ),
            });
        }
        Ok(IssuedCertificate {
            certificate,
            private_key: Some(private_key),
            chain: self.chain.clone(),
            validating_roots: roots.to_vec(),
            issuer: self.signer.id,
            lifetime_clamped,
        })
    }
}

impl Inner {
    /// Refuses a wildcard over a public suffix and any name outside the signing path's name
    /// constraints (strictly: with permitted subtrees, a name type none of them is about is
    /// refused too), before a key is made.
    fn check_names(&self, request: &CertificateRequest) -> Result<(), IssueError> {
        for san in request.all_sans() {
            if let San::Dns(name) = &san
                && let Some(suffix) = public_suffix_wildcard(name)
            {
                return Err(IssueError::PublicSuffixWildcard {
                    name: san.to_string(),
                    suffix,
                });
            }
            let name = match &san {
                San::Dns(d) => SubjectAltName::Dns(d.clone()),
                San::Ip(ip) => SubjectAltName::Ip(*ip),
                San::Uri(u) => SubjectAltName::Uri(u.clone()),
            };
            for (ca, constraints) in &self.constraints {
                constraints.check_strict(&name).map_err(|violation| {
                    IssueError::NameNotPermitted {
                        name: san.to_string(),
                        ca: ca.clone(),
                        reason: violation.to_string(),
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// For a wildcard DNS name (`*.rest`), `rest` when it is a public suffix: a single label (a
/// top-level domain, known or not, such as `com` or `local`), or a suffix of the public suffix
/// list compiled in by the `psl` crate (`co.uk`, `github.io`).
fn public_suffix_wildcard(name: &str) -> Option<String> {
    let base = name
        .strip_prefix("*.")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let single_label = !base.contains('.');
    let listed = psl::suffix(base.as_bytes())
        .is_some_and(|suffix| suffix.is_known() && suffix.as_bytes() == base.as_bytes());
    (single_label || listed).then_some(base)
}

/// The leaf's parameters: subject CN, SANs, extensions, serial and validity.
fn leaf_params(
    request: &CertificateRequest,
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, request.identity.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = request
        .all_sans()
        .into_iter()
        .map(|san| {
            Ok(match san {
                San::Dns(name) => SanType::DnsName(
                    Ia5String::try_from(name.as_str())
                        .map_err(|e| format!("DNS SAN {name}: {e}"))?,
                ),
                San::Ip(ip) => SanType::IpAddress(ip),
                San::Uri(uri) => SanType::URI(
                    Ia5String::try_from(uri.as_str()).map_err(|e| format!("URI SAN {uri}: {e}"))?,
                ),
            })
        })
        .collect::<Result<_, String>>()?;
    // ExplicitNoCa writes basicConstraints CA:FALSE (critical) and the SKI.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if request.key_type.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = eku(request.kind);
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = to_datetime(not_before)?;
    params.not_after = to_datetime(not_after)?;
    Ok(params)
}

fn eku(kind: CertKind) -> Vec<ExtendedKeyUsagePurpose> {
    let mut out = Vec::with_capacity(2);
    if kind.server_auth() {
        out.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if kind.client_auth() {
        out.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    out
}

#[async_trait]
impl Issuer for BuiltinCa {
    fn backend(&self) -> &'static str {
        "builtin"
    }

    /// Issues at the clock's "now". P-256, P-384 and Ed25519 are signed inline (tens of
    /// microseconds); RSA keys take up to seconds to generate, so inside a Tokio runtime those
    /// requests run on the blocking pool.
    async fn issue(&self, request: &CertificateRequest) -> Result<IssuedCertificate, IssueError> {
        let now = self.clock.timestamp();
        if request.key_type.is_rsa()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let inner = Arc::clone(&self.inner);
            let roots = Arc::clone(&self.roots);
            let request = request.clone();
            let policy = self.policy;
            return handle
                .spawn_blocking(move || inner.issue_at(&request, now, policy, &roots))
                .await
                .map_err(|e| IssueError::Crypto {
                    action: "generate an RSA key".to_owned(),
                    message: e.to_string(),
                })?;
        }
        self.issue_at(request, now)
    }

    fn signing_ca(&self) -> Option<IssuerId> {
        Some(self.inner.signer.id)
    }

    fn validating_roots(&self) -> Vec<Certificate> {
        self.roots.to_vec()
    }
}

#[cfg(test)]
mod tests;

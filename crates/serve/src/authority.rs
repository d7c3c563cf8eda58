//! The issuing side: the built-in CA (shared with `anchorage ca` through the same store key),
//! leaves signed for a server-made key or a CSR's key, serial numbers recorded with the store's
//! `create` (so no serial is ever handed out twice, across instances and restarts), and the
//! CRL.
//!
//! The CA is opened with [`anchorage_ca::persist::load`], or created with
//! [`anchorage_ca::BuiltinCa::init`] and saved with [`anchorage_ca::persist::save`] when the
//! store holds none (a concurrent first start loses the `create` and loads the winner's CA).

use std::sync::Arc;
use std::time::Duration;

use anchorage_ca::persist::{self, SaveOptions};
use anchorage_ca::{
    BuiltinCa, CaError, CertKind, CertificateRequest, InitOptions, KeyType, PrivateKey, San,
};
use anchorage_store::{Store, StoreError};
use anchorage_x509::{Certificate, Timestamp};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::tokens::{now_unix, random_hex};

/// Store prefix of issued-certificate records (`serve.certs.<serial hex>`).
pub const CERTS_PREFIX: &str = "serve.certs.";
/// Store prefix of revocation records (`serve.revoked.<serial hex>`).
pub const REVOKED_PREFIX: &str = "serve.revoked.";
const CLOCK_SKEW: i64 = 300;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The request breaks a rule of its own (bad name, lifetime).
    #[error("{0}")]
    Request(String),
    /// The CSR does not parse or its signature does not verify.
    #[error("{0}")]
    Csr(String),
    /// Crypto or encoding failed.
    #[error("cannot {action}: {message}")]
    Crypto {
        /// What was being done.
        action: &'static str,
        /// The library's words.
        message: String,
    },
    /// The CA is not valid now.
    #[error("the CA is not valid now (it is valid from {not_before} to {not_after})")]
    CaNotValid {
        /// Its notBefore.
        not_before: String,
        /// Its notAfter.
        not_after: String,
    },
    /// The store failed.
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
}

/// A stored issuance record (never a key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, lowercase hex without separators.
    pub serial: String,
    /// The subject CommonName.
    pub common_name: String,
    /// Every SAN (`DNS:…`, `IP:…`, `URI:…`).
    pub names: Vec<String>,
    /// The role it was issued under (`None`: admin without role).
    pub role: Option<String>,
    /// Who asked (token subject, or the renewing certificate's name).
    pub who: String,
    /// `issue`, `sign` or `renew`.
    pub operation: String,
    /// The kind.
    pub kind: CertKind,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 (hex) of the root the signing CA chains to (absent in records written before
    /// root rotation existed: those are under the CA of the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// A revocation record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokedRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// RFC 5280 reason name.
    pub reason: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// The certificate's notAfter (entries may be dropped from the CRL after it).
    pub not_after: i64,
}

/// A signed leaf.
pub struct Signed {
    /// The certificate.
    pub certificate: Certificate,
    /// Intermediates, nearest first.
    pub chain: Vec<Certificate>,
    /// The key when the server made it.
    pub private_key: Option<PrivateKey>,
    /// Serial, lowercase hex.
    pub serial: String,
}

/// A public key taken from a CSR (or a certificate being renewed), with its key type.
pub struct PublicKey {
    spki: rcgen::SubjectPublicKeyInfo,
    /// The key type, when one anchorage knows.
    pub key_type: Option<KeyType>,
}

/// A CSR whose signature verified.
pub struct ParsedCsr {
    /// Its key.
    pub key: PublicKey,
    /// The subject CommonName, when present.
    pub common_name: Option<String>,
    /// Its requested SANs.
    pub sans: Vec<San>,
}

/// One CA ready to sign: the CA and its rcgen issuer.
pub(crate) struct Signer {
    ca: BuiltinCa,
    issuer: rcgen::Issuer<'static, KeyPair>,
    /// SHA-256 of the anchoring root, lowercase hex without separators.
    root_sha256: String,
}

impl Signer {
    /// Prepares `ca` for signing.
    pub(crate) fn new(ca: BuiltinCa) -> Result<Self, CaError> {
        let (key_pair, _) = anchorage_ca::keys::load_der(
            anchorage_ca::KeyForm::Pkcs8,
            ca.signing_key().pkcs8_der(),
        )
        .map_err(|e| CaError::Crypto {
            action: "load the CA key".into(),
            message: e.to_string(),
        })?;
        let issuer = rcgen::Issuer::from_ca_cert_der(
            &CertificateDer::from(ca.signing_certificate().der()),
            key_pair,
        )
        .map_err(|e| CaError::Crypto {
            action: "read the CA certificate".into(),
            message: e.to_string(),
        })?;
        let root_sha256 = root_fingerprint(ca.root());
        Ok(Self {
            ca,
            issuer,
            root_sha256,
        })
    }

    /// The CA.
    pub(crate) fn ca(&self) -> &BuiltinCa {
        &self.ca
    }

    /// SHA-256 (hex) of its anchoring root.
    pub(crate) fn root_sha256(&self) -> &str {
        &self.root_sha256
    }

    /// Whether `cert` was signed by this CA's signing certificate.
    fn signed(&self, cert: &Certificate) -> bool {
        use x509_parser::prelude::FromDer as _;
        let signer = self.ca.signing_certificate();
        if cert.issuer_der() != signer.subject_der() {
            return false;
        }
        let (Ok((_, c)), Ok((_, p))) = (
            x509_parser::certificate::X509Certificate::from_der(cert.der()),
            x509_parser::certificate::X509Certificate::from_der(signer.der()),
        ) else {
            return false;
        };
        c.verify_signature(Some(p.public_key())).is_ok()
    }
}

/// A root's SHA-256 as lowercase hex without separators (how rotation records name CAs).
pub fn root_fingerprint(cert: &Certificate) -> String {
    cert.sha256().hex().replace(':', "").to_ascii_lowercase()
}

/// The signers: the one that signs now, and every CA whose leaves count as issued here (both
/// CAs during a root rotation, see [`crate::rotation`]).
struct Signers {
    current: Arc<Signer>,
    known: Vec<Arc<Signer>>,
    /// Extra certificates sent after the signer's chain (a cross-signed intermediate).
    extra_chain: Vec<Certificate>,
}

/// The CA and its signer. During a root rotation the signer follows the rotation record
/// (`Authority::set_signers`).
pub struct Authority {
    signers: std::sync::RwLock<Arc<Signers>>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("signer", &self.ca().signing_certificate().subject())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Opens the CA in `store`, creating one with `init` when there is none. Returns it and
    /// whether it was created.
    pub async fn open(
        store: Arc<dyn Store>,
        passphrase: Option<&SecretString>,
        init: &InitOptions,
    ) -> Result<(Self, bool), CaError> {
        let mut created = false;
        let ca = match persist::load(store.as_ref(), passphrase).await {
            Ok(loaded) => loaded.ca,
            Err(CaError::NotInitialised { .. }) => {
                let ca = BuiltinCa::init(init)?;
                let options = SaveOptions {
                    passphrase,
                    ..SaveOptions::default()
                };
                match persist::save(store.as_ref(), &ca, &options).await {
                    Ok(_) => {
                        created = true;
                        ca
                    }
                    // Another instance saved its CA first: use that one. A shared store's
                    // read may come from a replica that has not seen the winner's write yet.
                    Err(CaError::AlreadyInitialised { .. }) => {
                        let mut attempt = 0;
                        loop {
                            match persist::load(store.as_ref(), passphrase).await {
                                Err(CaError::NotInitialised { .. }) if attempt < 50 => {
                                    attempt += 1;
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                other => break other?.ca,
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let signer = Arc::new(Signer::new(ca)?);
        let signers = Signers {
            current: Arc::clone(&signer),
            known: vec![signer],
            extra_chain: Vec::new(),
        };
        Ok((
            Self {
                signers: std::sync::RwLock::new(Arc::new(signers)),
                store,
            },
            created,
        ))
    }

    fn signers(&self) -> Arc<Signers> {
        match self.signers.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Switches the signer to `current`; leaves of every CA in `known` (and of `current`) are
    /// accepted as issued here (renewal over mTLS, acks); `extra_chain` is sent after the
    /// signer's own chain (a cross-signed intermediate).
    pub(crate) fn set_signers(
        &self,
        current: Arc<Signer>,
        known: Vec<Arc<Signer>>,
        extra_chain: Vec<Certificate>,
    ) {
        let mut all = vec![Arc::clone(&current)];
        for k in known {
            if !all.iter().any(|s| s.root_sha256 == k.root_sha256) {
                all.push(k);
            }
        }
        let next = Arc::new(Signers {
            current,
            known: all,
            extra_chain,
        });
        match self.signers.write() {
            Ok(mut s) => *s = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// The CA that signs now (a cheap clone).
    pub fn ca(&self) -> BuiltinCa {
        self.signers().current.ca.clone()
    }

    /// SHA-256 (hex) of the root anchoring the signer.
    pub fn signer_root_sha256(&self) -> String {
        self.signers().current.root_sha256.clone()
    }

    /// The validating roots as PEM.
    pub fn roots_pem(&self) -> String {
        self.ca().roots().iter().map(Certificate::to_pem).collect()
    }

    /// The issuing CA certificate (signer) PEM.
    pub fn issuing_ca_pem(&self) -> String {
        self.ca().signing_certificate().to_pem()
    }

    /// The chain from the signer up to and including the anchoring root, PEM each.
    pub fn ca_chain_pem(&self) -> Vec<String> {
        let ca = self.ca();
        let mut out: Vec<String> = ca.chain().iter().map(Certificate::to_pem).collect();
        out.push(ca.root().to_pem());
        out.dedup();
        out
    }

    /// Whether `cert` was signed by this CA's signing certificate (by either CA during a
    /// root rotation).
    pub fn issued_here(&self, cert: &Certificate) -> bool {
        self.signers().known.iter().any(|s| s.signed(cert))
    }

    /// Signs a leaf for `request`: for `key` when given (a CSR's or a renewed certificate's),
    /// else for a new key of `request.key_type`. The serial is recorded in the store first
    /// (`create`; a collision, across instances too, draws another).
    pub async fn sign(
        &self,
        request: &CertificateRequest,
        key: Option<&PublicKey>,
        record: RecordInfo<'_>,
    ) -> Result<Signed, SignError> {
        request
            .validate()
            .map_err(|e| SignError::Request(e.to_string()))?;
        let signers = self.signers();
        let signer = &signers.current;
        let now = now_unix();
        let ca_nb = signer.ca.signing_certificate().not_before().unix();
        let ca_na = signer.ca.not_after().unix();
        if now < ca_nb || now >= ca_na {
            return Err(SignError::CaNotValid {
                not_before: Timestamp::from_unix(ca_nb).rfc3339(),
                not_after: Timestamp::from_unix(ca_na).rfc3339(),
            });
        }
        let lifetime = i64::try_from(request.lifetime.as_secs()).unwrap_or(i64::MAX);
        let not_after = now.saturating_add(lifetime).min(ca_na);
        let not_before = (now - CLOCK_SKEW).max(ca_nb);

        let made;
        let (public, private_key): (&(dyn rcgen::PublicKeyData + Sync), Option<PrivateKey>) =
            match key {
                Some(k) => (&k.spki, None),
                None => {
                    let key_type = request.key_type;
                    let (pair, private) = if key_type.is_rsa() {
                        tokio::task::spawn_blocking(move || anchorage_ca::keys::generate(key_type))
                            .await
                            .map_err(|e| SignError::Crypto {
                                action: "generate an RSA key",
                                message: e.to_string(),
                            })?
                    } else {
                        anchorage_ca::keys::generate(key_type)
                    }
                    .map_err(|e| SignError::Crypto {
                        action: "generate the key",
                        message: e.to_string(),
                    })?;
                    made = pair;
                    (&made, Some(private))
                }
            };
        let names: Vec<String> = request.all_sans().iter().map(ToString::to_string).collect();
        for _ in 0..8 {
            let serial = random_serial();
            let serial_hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
            let rec = CertRecord {
                serial: serial_hex.clone(),
                common_name: request.identity.as_str().to_owned(),
                names: names.clone(),
                role: record.role.map(str::to_owned),
                who: record.who.to_owned(),
                operation: record.operation.to_owned(),
                kind: request.kind,
                issued_at: now,
                not_after,
                ca: Some(signer.root_sha256.clone()),
            };
            match self
                .store
                .create(
                    &format!("{CERTS_PREFIX}{serial_hex}"),
                    serde_json::to_vec(&rec).unwrap_or_default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
            let params = leaf_params(request, &serial, not_before, not_after)?;
            let signed =
                params
                    .signed_by(&public, &signer.issuer)
                    .map_err(|e| SignError::Crypto {
                        action: "sign the certificate",
                        message: e.to_string(),
                    })?;
            let certificate =
                Certificate::from_der(signed.der()).map_err(|e| SignError::Crypto {
                    action: "read back the signed certificate",
                    message: e.to_string(),
                })?;
            let mut chain = signer.ca.chain().to_vec();
            chain.extend(signers.extra_chain.iter().cloned());
            return Ok(Signed {
                certificate,
                chain,
                private_key,
                serial: serial_hex,
            });
        }
        Err(SignError::Crypto {
            action: "draw a serial number",
            message: "eight random serials in a row were taken; the random generator is broken"
                .into(),
        })
    }

    /// The CRL over every revocation record, DER.
    pub async fn crl_der(
        &self,
        number: u64,
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, SignError> {
        let mut revoked = Vec::new();
        for key in self.store.keys(REVOKED_PREFIX).await? {
            let Some(entry) = self.store.get(&key).await? else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<RevokedRecord>(&entry.value) else {
                continue;
            };
            // An entry may leave the CRL once its certificate expired (RFC 5280 5.1.2.6); a
            // day's margin covers clock skew.
            if rec.not_after + 86_400 < this_update {
                continue;
            }
            let Some(bytes) = hex_bytes(&rec.serial) else {
                continue;
            };
            revoked.push(rcgen::RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: datetime(rec.revoked_at),
                reason_code: reason_code(&rec.reason),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: datetime(this_update),
            next_update: datetime(next_update),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.signers().current.issuer)
            .map_err(|e| SignError::Crypto {
                action: "sign the CRL",
                message: e.to_string(),
            })?;
        Ok(crl.der().to_vec())
    }
}

/// Who and why, for the issuance record.
#[derive(Clone, Copy, Debug)]
pub struct RecordInfo<'a> {
    /// The role.
    pub role: Option<&'a str>,
    /// Who asked.
    pub who: &'a str,
    /// `issue`, `sign`, `renew`.
    pub operation: &'a str,
}

/// RFC 5280 reason names we accept.
pub const REASONS: [&str; 7] = [
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
];

fn reason_code(reason: &str) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    Some(match reason {
        "key_compromise" => R::KeyCompromise,
        "ca_compromise" => R::CaCompromise,
        "affiliation_changed" => R::AffiliationChanged,
        "superseded" => R::Superseded,
        "cessation_of_operation" => R::CessationOfOperation,
        "privilege_withdrawn" => R::PrivilegeWithdrawn,
        _ => R::Unspecified,
    })
}

fn datetime(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let hex: String = hex.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 40 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// A certificate's serial as lowercase hex without separators.
pub fn serial_hex(cert: &Certificate) -> String {
    let hex: String = cert
        .serial()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    // Certificate::serial may keep a leading 00 of the DER integer; ours never need one.
    hex.strip_prefix("00")
        .filter(|h| h.len() == 32)
        .map_or(hex.clone(), str::to_owned)
}

/// 16 random bytes, top bits `01` (positive, no leading zero byte in DER).
fn random_serial() -> [u8; 16] {
    let hex = random_hex(16);
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or_default();
    }
    out[0] = (out[0] & 0x3f) | 0x40;
    out
}

fn leaf_params(
    request: &CertificateRequest,
    serial: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, SignError> {
    let bad = |message: String| SignError::Request(message);
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
                        .map_err(|e| bad(format!("DNS SAN {name}: {e}")))?,
                ),
                San::Ip(ip) => SanType::IpAddress(ip),
                San::Uri(uri) => SanType::URI(
                    Ia5String::try_from(uri.as_str())
                        .map_err(|e| bad(format!("URI SAN {uri}: {e}")))?,
                ),
            })
        })
        .collect::<Result<_, SignError>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if request.key_type.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    if request.kind.server_auth() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if request.kind.client_auth() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = datetime(not_before);
    params.not_after = datetime(not_after);
    Ok(params)
}

/// Parses a PEM (or DER) CSR and checks its signature.
pub fn parse_csr(text: &[u8]) -> Result<ParsedCsr, SignError> {
    use x509_parser::prelude::FromDer as _;
    let der = if text.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text)
            .map_err(|e| SignError::Csr(format!("the CSR is not valid PEM: {e}")))?;
        if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
            return Err(SignError::Csr(format!(
                "expected a CERTIFICATE REQUEST PEM block, found {:?}",
                pem.label
            )));
        }
        pem.contents
    } else {
        text.to_vec()
    };
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| SignError::Csr(format!("the CSR does not parse: {e}")))?;
    csr.verify_signature().map_err(|_| {
        SignError::Csr("the CSR's signature does not verify with its own public key".into())
    })?;
    let info = &csr.certification_request_info;
    let key = public_key(info.subject_pki.raw)?;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut sans = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    use x509_parser::extensions::GeneralName as G;
                    let text = match name {
                        G::DNSName(d) => format!("dns:{d}"),
                        G::URI(u) => format!("uri:{u}"),
                        G::IPAddress(b) => match b.len() {
                            4 => format!(
                                "ip:{}",
                                std::net::Ipv4Addr::from(
                                    <[u8; 4]>::try_from(*b).unwrap_or_default()
                                )
                            ),
                            16 => format!(
                                "ip:{}",
                                std::net::Ipv6Addr::from(
                                    <[u8; 16]>::try_from(*b).unwrap_or_default()
                                )
                            ),
                            _ => {
                                return Err(SignError::Csr(
                                    "an IP SAN of the CSR is neither IPv4 nor IPv6".into(),
                                ));
                            }
                        },
                        other => {
                            return Err(SignError::Csr(format!(
                                "the CSR asks for a SAN anchorage does not issue: {other}"
                            )));
                        }
                    };
                    sans.push(San::parse(&text).map_err(|e| SignError::Request(e.to_string()))?);
                }
            }
        }
    }
    Ok(ParsedCsr {
        key,
        common_name,
        sans,
    })
}

/// The public key of a certificate (renewal without a new key).
pub fn certificate_key(cert: &Certificate) -> Result<PublicKey, SignError> {
    use x509_parser::prelude::FromDer as _;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.der())
        .map_err(|e| SignError::Csr(format!("the certificate does not parse: {e}")))?;
    public_key(c.tbs_certificate.subject_pki.raw)
}

fn public_key(spki_der: &[u8]) -> Result<PublicKey, SignError> {
    use x509_parser::prelude::FromDer as _;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| SignError::Csr(format!("the public key does not parse: {e}")))?;
    let oid = spki.algorithm.algorithm.to_id_string();
    let key_type = match oid.as_str() {
        "1.3.101.112" => Some(KeyType::Ed25519),
        "1.2.840.10045.2.1" => match spki.subject_public_key.data.len() {
            65 => Some(KeyType::P256),
            97 => Some(KeyType::P384),
            _ => None,
        },
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => match rsa.key_size() {
                2048 => Some(KeyType::Rsa2048),
                3072 => Some(KeyType::Rsa3072),
                4096 => Some(KeyType::Rsa4096),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    let spki = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
        SignError::Csr(format!(
            "the key type is not one anchorage signs (P-256, P-384, Ed25519, RSA): {e}"
        ))
    })?;
    Ok(PublicKey { spki, key_type })
}

/// A certificate's subject CommonName (the first one), when it has one.
pub fn common_name(cert: &Certificate) -> Option<String> {
    use x509_parser::prelude::FromDer as _;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.der()).ok()?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

/// The kind a certificate was issued as, from its extended key usages.
pub fn kind_of(cert: &Certificate) -> CertKind {
    let eku = cert.extended_key_usage();
    let server = eku.iter().any(|e| e == "serverAuth");
    let client = eku.iter().any(|e| e == "clientAuth");
    match (server, client) {
        (true, true) => CertKind::Service,
        (false, true) => CertKind::Client,
        _ => {
            let life = cert.not_after().unix() - cert.not_before().unix();
            if life > 400 * 86_400 {
                CertKind::Webhook
            } else {
                CertKind::Server
            }
        }
    }
}

/// A default lifetime clamp for renewals.
pub(crate) fn lifetime_of(cert: &Certificate) -> Duration {
    Duration::from_secs(
        u64::try_from(cert.not_after().unix() - cert.not_before().unix() - CLOCK_SKEW)
            .unwrap_or(86_400)
            .max(60),
    )
}

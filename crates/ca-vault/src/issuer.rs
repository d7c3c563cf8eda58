//! [`VaultIssuer`]: the [`Issuer`] over OpenBao's PKI engine.
//!
//! This module owns mapping a [`CertificateRequest`] to `<mount>/issue/<role>` or
//! `<mount>/sign/<role>`, turning the answer into an [`IssuedCertificate`] after checking it
//! (the key matches the certificate and is of the type asked for, the certificate was signed by
//! the CA OpenBao names, the purposes fit the kind), mapping OpenBao's refusals to
//! [`IssueError`]s, and caching the CA chain for [`Issuer::signing_ca`] and
//! [`Issuer::validating_roots`].

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anchorage_ca::check::{Mismatch, check_issued, csr_pem};
use anchorage_ca::keys;
use anchorage_ca::{
    CertificateRequest, IssueError, IssuedCertificate, Issuer, IssuerId, KeyType, PrivateKey,
    RequestError, San,
};
use anchorage_trust::tls::TrustReport;
use anchorage_x509::{Certificate, Timestamp};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use rustls::crypto::CryptoProvider;

use crate::auth::Auth;
use crate::config::{KeyLocation, VaultConfig, check_path};
use crate::error::VaultError;
use crate::http::{Answer, BACKEND, Http};
use crate::wire;

/// What OpenBao says when a TTL would outlive the CA (issuer `leaf_not_after_behavior=err`).
const BEYOND_CA: &str = "beyond the expiration of the CA certificate";

/// An [`Issuer`] backed by a HashiCorp Vault or OpenBao PKI secrets engine.
///
/// Cheap to share (`Arc` it); safe to call concurrently. See the crate docs for an example.
pub struct VaultIssuer {
    http: Http,
    auth: Auth,
    mount: String,
    role: String,
    issuer_ref: String,
    key_location: KeyLocation,
    trust_report: Option<TrustReport>,
    ca: RwLock<Option<Arc<CaState>>>,
}

/// The CA chain as last read: the issuing CA first.
struct CaState {
    signing: Certificate,
    roots: Vec<Certificate>,
}

impl CaState {
    /// From a chain whose first element is the issuing CA. The roots are its self-signed
    /// members; when the chain stops below a root (an intermediate imported without its
    /// root), the topmost certificate stands in for it.
    fn from_chain(chain: &[Certificate]) -> Option<Self> {
        let signing = chain.first()?.clone();
        let mut roots: Vec<Certificate> = chain
            .iter()
            .filter(|c| c.is_self_signed())
            .cloned()
            .collect();
        if roots.is_empty() {
            roots.extend(chain.last().cloned());
        }
        Some(Self { signing, roots })
    }
}

impl VaultIssuer {
    /// Checks `config` and builds the HTTP client. Nothing is sent yet: the first
    /// [`Issuer::issue`] logs in (AppRole) and fills the CA cache; call
    /// [`VaultIssuer::refresh_ca`] to fill it earlier.
    ///
    /// `provider` is the rustls crypto provider for `https://` addresses (the process's
    /// choice, e.g. `rustls::crypto::ring::default_provider()`); nothing here installs a
    /// process default.
    pub fn new(config: VaultConfig, provider: Arc<CryptoProvider>) -> Result<Self, VaultError> {
        let setting = |setting: &'static str, value: &str, allow_slash: bool| {
            check_path(value, allow_slash).map_err(|reason| VaultError::InvalidSetting {
                setting,
                value: value.to_owned(),
                reason,
            })
        };
        setting("mount", &config.mount, true)?;
        setting("role", &config.role, false)?;
        setting("issuer_ref", &config.issuer_ref, false)?;
        let auth = Auth::new(&config.auth)?;
        let (http, trust_report) = Http::new(&config, provider)?;
        Ok(Self {
            http,
            auth,
            mount: config.mount,
            role: config.role,
            issuer_ref: config.issuer_ref,
            key_location: config.key_location,
            trust_report,
            ca: RwLock::new(None),
        })
    }

    /// The address, as given (without a trailing slash).
    pub fn address(&self) -> &str {
        self.http.address()
    }

    /// The PKI mount.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The PKI role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Where keys are made.
    pub fn key_location(&self) -> KeyLocation {
        self.key_location
    }

    /// What the TLS trust store was built from, for an `https://` address.
    pub fn trust_report(&self) -> Option<&TrustReport> {
        self.trust_report.as_ref()
    }

    /// Reads the CA chain of the configured issuer (`GET <mount>/issuer/<issuer_ref>/json`,
    /// or `GET <mount>/cert/ca_chain` on servers without the multi-issuer API), updates what
    /// [`Issuer::signing_ca`] and [`Issuer::validating_roots`] return, and returns the signing
    /// CA's id. These endpoints need no token.
    pub async fn refresh_ca(&self) -> Result<IssuerId, IssueError> {
        let path = format!("{}/issuer/{}/json", self.mount, self.issuer_ref);
        let mut answer = self.http.send(Method::GET, &path, None, None).await?;
        let mut used = path;
        if answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::METHOD_NOT_ALLOWED
        {
            used = format!("{}/cert/ca_chain", self.mount);
            answer = self.http.send(Method::GET, &used, None, None).await?;
        }
        let what = self.http.describe(&Method::GET, &used);
        if answer.status != StatusCode::OK {
            return Err(self.unexpected(&what, &answer, false));
        }
        let envelope: wire::Envelope<wire::ChainData> = serde_json::from_slice(&answer.body)
            .map_err(|e| backend(format!("{what} answered JSON we cannot read: {e}")))?;
        let data = envelope
            .data
            .ok_or_else(|| backend(format!("{what} answered without data")))?;
        let mut pems: Vec<String> = match data.ca_chain {
            Some(wire::ChainField::List(list)) => list,
            Some(wire::ChainField::One(one)) => vec![one],
            None => Vec::new(),
        };
        if pems.is_empty() {
            pems.extend(data.certificate);
        }
        let chain = parse_certificates(pems.iter().map(String::as_str))
            .map_err(|e| backend(format!("{what} answered a CA chain we cannot read: {e}")))?;
        let state = CaState::from_chain(&chain).ok_or_else(|| {
            backend(format!(
                "{what} answered an empty CA chain: does the mount {} have an issuer?",
                self.mount
            ))
        })?;
        let id = IssuerId::of(&state.signing);
        self.store_ca(state);
        Ok(id)
    }

    fn store_ca(&self, state: CaState) {
        let mut ca = self
            .ca
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = ca
            .as_ref()
            .is_none_or(|old| old.signing.sha256() != state.signing.sha256());
        if changed {
            tracing::info!(
                address = self.http.address(),
                mount = %self.mount,
                signing_ca = %state.signing.subject(),
                sha256 = %state.signing.sha256(),
                "OpenBao signing CA"
            );
        }
        *ca = Some(Arc::new(state));
    }

    fn cached_ca(&self) -> Option<Arc<CaState>> {
        self.ca
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends an authenticated request; on 403 with AppRole, logs in again and retries once.
    async fn send_authenticated(&self, path: &str, body: Bytes) -> Result<Answer, IssueError> {
        let token = self.auth.token(&self.http).await?;
        let answer = self
            .http
            .send(Method::POST, path, Some(&token.header), Some(body.clone()))
            .await?;
        if answer.status != StatusCode::FORBIDDEN || !self.auth.can_login_again() {
            return Ok(answer);
        }
        tracing::debug!(path, "OpenBao answered 403; logging in again");
        self.auth.forget(&token).await;
        let token = self.auth.token(&self.http).await?;
        self.http
            .send(Method::POST, path, Some(&token.header), Some(body))
            .await
    }

    /// An answer that is neither success nor a refusal we recognise. `authenticated` says
    /// whether a token was sent (issue and sign) or not (the CA reads).
    fn unexpected(&self, what: &str, answer: &Answer, authenticated: bool) -> IssueError {
        let said = self.auth.scrub(wire::error_text(&answer.body));
        let status = answer.status.as_u16();
        let path = what.split_once("/v1/").map_or(what, |(_, p)| p);
        let message = match answer.status {
            StatusCode::FORBIDDEN if authenticated => format!(
                "permission denied: {what} answered HTTP 403 ({said}); the {} must be valid and its policies must grant \"update\" on {path}",
                match self.auth.method() {
                    "approle" => "token from the AppRole login",
                    _ => "token",
                },
            ),
            StatusCode::FORBIDDEN => format!(
                "{what} answered HTTP 403 ({said}): OpenBao answers this read, which needs no token, with 403 when no PKI secrets engine is mounted at {}/ (or the namespace is wrong)",
                self.mount
            ),
            StatusCode::NOT_FOUND => format!(
                "{what} answered HTTP 404 ({said}): is a PKI secrets engine mounted at {}/ (and the namespace right)?",
                self.mount
            ),
            StatusCode::SERVICE_UNAVAILABLE => {
                format!("{what} answered HTTP 503 ({said}): is OpenBao sealed or in maintenance?")
            }
            _ => format!("{what} answered HTTP {status} ({said})"),
        };
        backend(message)
    }

    /// Maps a 400 from issue/sign: an unknown role is a setup error, a TTL past the CA is
    /// [`IssueError::LifetimeExceedsCa`] when the CA is known, anything else is the role's
    /// refusal in OpenBao's words.
    async fn refusal(
        &self,
        request: &CertificateRequest,
        what: &str,
        answer: &Answer,
    ) -> IssueError {
        let said = self.auth.scrub(wire::error_text(&answer.body));
        if said.starts_with("unknown role") {
            return backend(format!(
                "{what} answered HTTP 400 ({said}): create the role {} on the mount {} or fix the role setting",
                self.role, self.mount
            ));
        }
        if said.contains(BEYOND_CA) {
            let ca = match self.cached_ca() {
                Some(ca) => Some(ca),
                None => match self.refresh_ca().await {
                    Ok(_) => self.cached_ca(),
                    Err(_) => None,
                },
            };
            if let Some(ca) = ca {
                let ca_not_after = ca.signing.not_after();
                let left = ca_not_after.unix() - unix_now();
                return IssueError::LifetimeExceedsCa {
                    identity: request.identity.clone(),
                    requested: request.lifetime,
                    available: Duration::from_secs(u64::try_from(left).unwrap_or(0)),
                    ca_not_after,
                };
            }
        }
        IssueError::Refused {
            backend: BACKEND,
            identity: request.identity.clone(),
            reason: said,
        }
    }

    /// The request body for the configured endpoint, and the local key when it is made here.
    async fn body_for(
        &self,
        request: &CertificateRequest,
    ) -> Result<(Bytes, Option<(rcgen::KeyPair, PrivateKey)>), IssueError> {
        let (alt_names, ip_sans, uri_sans) = split_sans(&request.all_sans())?;
        let mut body = wire::IssueBody {
            common_name: request.identity.as_str(),
            alt_names,
            ip_sans,
            uri_sans,
            ttl: format!("{}s", request.lifetime.as_secs()),
            format: "pem",
            exclude_cn_from_sans: true,
            private_key_format: None,
            key_type: None,
            key_bits: None,
            csr: None,
        };
        let local = match self.key_location {
            KeyLocation::Server => {
                let (key_type, key_bits) = openbao_key_type(request.key_type);
                body.private_key_format = Some("pkcs8");
                body.key_type = Some(key_type);
                body.key_bits = key_bits;
                None
            }
            KeyLocation::Local => {
                let (key_pair, private_key) = generate_key(request.key_type).await?;
                body.csr = Some(csr_pem(request, &key_pair)?);
                Some((key_pair, private_key))
            }
        };
        let json = serde_json::to_vec(&body)
            .map_err(|e| backend(format!("cannot write the request body: {e}")))?;
        Ok((Bytes::from(json), local))
    }
}

#[async_trait]
impl Issuer for VaultIssuer {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn issue(&self, request: &CertificateRequest) -> Result<IssuedCertificate, IssueError> {
        request.validate()?;
        let path = format!(
            "{}/{}/{}",
            self.mount,
            self.key_location.endpoint(),
            self.role
        );
        let what = self.http.describe(&Method::POST, &path);
        let (body, local) = self.body_for(request).await?;
        let started = unix_now();
        tracing::debug!(
            identity = %request.identity,
            kind = %request.kind,
            key_type = %request.key_type,
            request = %what,
            "issuing through OpenBao"
        );
        let answer = self.send_authenticated(&path, body).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST => return Err(self.refusal(request, &what, &answer).await),
            _ => return Err(self.unexpected(&what, &answer, true)),
        }

        let envelope: wire::Envelope<wire::IssueData<'_>> = serde_json::from_slice(&answer.body)
            .map_err(|e| backend(format!("{what} answered JSON we cannot read: {e}")))?;
        let warnings = envelope.warnings.unwrap_or_default();
        for warning in &warnings {
            // A role with a fixed key type ignores key_type/key_bits on every request; the key
            // type check below decides whether that matters, so it is not worth a warning.
            if warning.contains("ignored as role had specific values") {
                tracing::debug!(identity = %request.identity, request = %what, warning = %warning, "OpenBao warned");
            } else {
                tracing::warn!(identity = %request.identity, request = %what, warning = %warning, "OpenBao warned");
            }
        }
        let data = envelope
            .data
            .ok_or_else(|| backend(format!("{what} answered without data")))?;
        let serial = data.serial_number.clone().unwrap_or_default();
        let certificate = parse_certificates([data.certificate.as_str()])
            .ok()
            .and_then(|mut c| (c.len() == 1).then(|| c.remove(0)))
            .ok_or_else(|| {
                backend(format!(
                    "{what} answered a certificate we cannot read (serial {serial})"
                ))
            })?;
        let issuing_ca = parse_certificates([data.issuing_ca.as_str()])
            .ok()
            .and_then(|mut c| (!c.is_empty()).then(|| c.remove(0)))
            .ok_or_else(|| backend(format!("{what} answered an issuing CA we cannot read")))?;
        let mut ca_chain = match &data.ca_chain {
            Some(chain) if !chain.is_empty() => {
                parse_certificates(chain.iter().map(String::as_str)).map_err(|e| {
                    backend(format!("{what} answered a CA chain we cannot read: {e}"))
                })?
            }
            _ => vec![issuing_ca.clone()],
        };
        if ca_chain.first() != Some(&issuing_ca) {
            ca_chain.retain(|c| c != &issuing_ca);
            ca_chain.insert(0, issuing_ca.clone());
        }
        let (key_pair, private_key) = match (local, data.private_key) {
            (Some(local), _) => local,
            (None, Some(raw)) => {
                let pem = wire::secret_string(raw)
                    .map_err(|e| {
                        backend(format!("{what} answered a private key field that is {e}"))
                    })?
                    .ok_or_else(|| backend(format!("{what} answered no private key")))?;
                keys::load(pem.as_bytes()).map_err(|e| {
                    backend(format!("{what} answered a private key we cannot load: {e}"))
                })?
            }
            (None, None) => return Err(backend(format!("{what} answered no private key"))),
        };
        // The one check every backend runs (anchorage_ca::check); the errors say which role
        // setting to change.
        let checked = check_issued(request, &certificate, &key_pair, Some(&issuing_ca));
        drop(key_pair);
        match checked {
            Ok(()) => {}
            Err(Mismatch::Key) => {
                return Err(backend(format!(
                    "the private key does not match the certificate {what} answered (serial {serial})"
                )));
            }
            Err(Mismatch::Issuer { issuer, ca }) => {
                return Err(backend(format!(
                    "{what} answered a certificate issued by {issuer:?} with an issuing CA named {ca:?}"
                )));
            }
            Err(Mismatch::KeyType { got: made, .. }) => {
                let said = warnings
                    .iter()
                    .find(|w| w.contains("key_type") || w.contains("key_bits"))
                    .map(|w| format!(" (OpenBao: {w})"))
                    .unwrap_or_default();
                return Err(IssueError::UnsupportedKeyType {
                    backend: BACKEND,
                    key_type: request.key_type,
                    hint: format!(
                        "the role {} on {} makes {made} keys{said}; set the role's key_type to any (or to this type), ask for {made}, or make keys locally (KeyLocation::Local) with a role that accepts them",
                        self.role, self.mount
                    ),
                });
            }
            Err(Mismatch::Purpose { purpose, kind }) => {
                return Err(IssueError::Refused {
                    backend: BACKEND,
                    identity: request.identity.clone(),
                    reason: format!(
                        "the role {} on {} issued a certificate without {purpose}, which a {kind} certificate needs: set server_flag/client_flag on the role, or use one role per kind",
                        self.role, self.mount
                    ),
                });
            }
            Err(Mismatch::Names { missing }) => {
                return Err(IssueError::Refused {
                    backend: BACKEND,
                    identity: request.identity.clone(),
                    reason: format!(
                        "the role {} on {} issued a certificate without {}: check the role's use_csr_sans and allowed names",
                        self.role,
                        self.mount,
                        missing.join(", ")
                    ),
                });
            }
            Err(other) => return Err(backend(format!("{what}: {other}"))),
        }

        let lifetime_clamped = clamped(&warnings, started, request.lifetime, &certificate);
        if lifetime_clamped {
            tracing::warn!(
                identity = %request.identity,
                requested = ?request.lifetime,
                not_after = %certificate.not_after(),
                "OpenBao issued a shorter lifetime than requested"
            );
        }

        let state = CaState::from_chain(&ca_chain);
        let validating_roots = match &state {
            Some(state) => state.roots.clone(),
            None => Vec::new(),
        };
        if let Some(state) = state {
            self.store_ca(state);
        }
        let chain = ca_chain
            .into_iter()
            .filter(|c| !c.is_self_signed())
            .collect();
        Ok(IssuedCertificate {
            issuer: IssuerId::of(&issuing_ca),
            certificate,
            private_key: Some(private_key),
            chain,
            validating_roots,
            lifetime_clamped,
        })
    }

    fn signing_ca(&self) -> Option<IssuerId> {
        self.cached_ca().map(|ca| IssuerId::of(&ca.signing))
    }

    fn validating_roots(&self) -> Vec<Certificate> {
        self.cached_ca()
            .map(|ca| ca.roots.clone())
            .unwrap_or_default()
    }
}

impl fmt::Debug for VaultIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultIssuer")
            .field("address", &self.http.address())
            .field("mount", &self.mount)
            .field("role", &self.role)
            .field("auth", &self.auth.method())
            .field("key_location", &self.key_location)
            .field("signing_ca", &self.signing_ca())
            .finish_non_exhaustive()
    }
}

fn backend(message: String) -> IssueError {
    IssueError::Backend {
        backend: BACKEND,
        message,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// OpenBao's `key_type` and `key_bits` for a key type.
fn openbao_key_type(key_type: KeyType) -> (&'static str, Option<u32>) {
    match key_type {
        KeyType::P256 => ("ec", Some(256)),
        KeyType::P384 => ("ec", Some(384)),
        KeyType::Ed25519 => ("ed25519", None),
        KeyType::Rsa2048 => ("rsa", Some(2048)),
        KeyType::Rsa3072 => ("rsa", Some(3072)),
        KeyType::Rsa4096 => ("rsa", Some(4096)),
    }
}

/// `alt_names`, `ip_sans` and `uri_sans` as OpenBao's comma-separated lists.
fn split_sans(sans: &[San]) -> Result<(String, String, String), IssueError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut uris = Vec::new();
    for san in sans {
        match san {
            San::Dns(name) => dns.push(name.clone()),
            San::Ip(ip) => ips.push(ip.to_string()),
            San::Uri(uri) if uri.contains(',') => {
                return Err(RequestError::InvalidSan {
                    san: uri.clone(),
                    reason: "OpenBao takes URI SANs as a comma-separated list, so a URI holding ',' cannot be sent".to_owned(),
                }
                .into());
            }
            San::Uri(uri) => uris.push(uri.clone()),
        }
    }
    Ok((dns.join(","), ips.join(","), uris.join(",")))
}

/// Makes the local key, off the async threads for RSA (seconds in a debug build).
async fn generate_key(key_type: KeyType) -> Result<(rcgen::KeyPair, PrivateKey), IssueError> {
    if !key_type.is_rsa() {
        return keys::generate(key_type);
    }
    tokio::task::spawn_blocking(move || keys::generate(key_type))
        .await
        .map_err(|e| IssueError::Crypto {
            action: format!("generate a {key_type} key"),
            message: e.to_string(),
        })?
}

/// Parses PEM strings (each may hold several certificates) in order.
pub(crate) fn parse_certificates<'a>(
    pems: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Certificate>, String> {
    let mut out = Vec::new();
    for pem in pems {
        let decoded = anchorage_x509::decode(pem.as_bytes());
        if let Some(problem) = decoded.problems.first() {
            return Err(problem.error.to_string());
        }
        out.extend(decoded.certificates.into_iter().map(|f| f.certificate));
    }
    Ok(out)
}

/// True when OpenBao cut the lifetime: it warns when it caps the TTL at the role's `max_ttl`
/// (or the mount's), and the certificate then ends well before `started + lifetime`. A minute
/// of slack absorbs clock differences and OpenBao's rounding.
fn clamped(
    warnings: &[String],
    started: i64,
    lifetime: Duration,
    certificate: &Certificate,
) -> bool {
    let warned = warnings
        .iter()
        .any(|w| w.contains("maxTTL") || w.contains("max_ttl"));
    let wanted_end = started.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    warned || certificate.not_after() < Timestamp::from_unix(wanted_end.saturating_sub(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_ca::CertKind;

    #[test]
    fn sans_split_into_openbao_lists() {
        let sans = [
            San::Dns("a.example.test".into()),
            San::Dns("b.example.test".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
            San::Ip("::1".parse().unwrap()),
            San::Uri("spiffe://example.test/ns/a/sa/b".into()),
        ];
        let (dns, ip, uri) = split_sans(&sans).unwrap();
        assert_eq!(dns, "a.example.test,b.example.test");
        assert_eq!(ip, "127.0.0.1,::1");
        assert_eq!(uri, "spiffe://example.test/ns/a/sa/b");
        let comma = [San::Uri("urn://a,b".into())];
        assert!(matches!(
            split_sans(&comma),
            Err(IssueError::Request(RequestError::InvalidSan { .. }))
        ));
    }

    /// A self-signed certificate for `a.example.test` with `eku`, valid for an hour from now.
    fn leaf(eku: Vec<rcgen::ExtendedKeyUsagePurpose>) -> (Certificate, i64) {
        let (key_pair, _) = keys::generate(KeyType::P256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["A.example.test".to_owned()]).unwrap();
        params.extended_key_usages = eku;
        let now = unix_now();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = ::time::OffsetDateTime::from_unix_timestamp(now + 3600).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        (Certificate::from_der(cert.der()).unwrap(), now)
    }

    #[test]
    fn clamping_is_seen_in_warnings_or_dates() {
        let (cert, now) = leaf(Vec::new());
        let hour = Duration::from_secs(3600);
        assert!(!clamped(&[], now, hour, &cert));
        assert!(!clamped(&[], now + 30, hour, &cert), "within the slack");
        assert!(clamped(&[], now, 2 * hour, &cert));
        let warning = [
            r#"TTL "1000h0m0s" is longer than permitted maxTTL "72h0m0s", so maxTTL is being used"#
                .to_owned(),
        ];
        assert!(clamped(&warning, now, hour, &cert));
    }

    #[test]
    fn key_types_map_to_openbao_names() {
        assert_eq!(openbao_key_type(KeyType::P256), ("ec", Some(256)));
        assert_eq!(openbao_key_type(KeyType::P384), ("ec", Some(384)));
        assert_eq!(openbao_key_type(KeyType::Ed25519), ("ed25519", None));
        assert_eq!(openbao_key_type(KeyType::Rsa3072), ("rsa", Some(3072)));
    }

    #[test]
    fn csr_carries_identity_and_sans() {
        let request = CertificateRequest::new(
            anchorage_ca::Identity::new("web.example.test").unwrap(),
            CertKind::Service,
        )
        .with_san(San::parse("10.1.2.3").unwrap())
        .with_san(San::parse("spiffe://example.test/ns/shop/sa/web").unwrap());
        let (key_pair, _) = keys::generate(KeyType::P256).unwrap();
        let pem = csr_pem(&request, &key_pair).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        let cn = parsed
            .params
            .distinguished_name
            .get(&rcgen::DnType::CommonName)
            .cloned();
        assert!(matches!(cn, Some(rcgen::DnValue::Utf8String(s)) if s == "web.example.test"));
        assert_eq!(parsed.params.subject_alt_names.len(), 3);
        use rcgen::PublicKeyData as _;
        assert_eq!(
            parsed.public_key.subject_public_key_info(),
            key_pair.subject_public_key_info()
        );
    }
}

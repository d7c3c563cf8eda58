//! What to issue: a plain [`CertificateRequest`], validated before any key is made.
//!
//! This module owns the parameters of a certificate and nothing else: no keys, no signing, no
//! I/O. Backends turn a request into an [`crate::IssuedCertificate`]; the extensions each
//! [`CertKind`] gets are listed by [`CertKind::extended_key_usages`] so every backend agrees.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name a certificate is issued for and cached under: its CommonName, e.g.
/// `bookstore-v2.bookstore.cluster.local`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    /// Checks and wraps a CommonName: 1 to 64 characters (the X.520 upper bound), no control
    /// characters.
    pub fn new(name: impl Into<String>) -> Result<Self, RequestError> {
        let name = name.into();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(RequestError::InvalidIdentity { identity: name });
        }
        Ok(Self(name))
    }

    /// The CommonName.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the identity is also a valid DNS name (then it goes into the SANs too,
    /// because clients match SANs, not the CN).
    pub fn is_dns_name(&self) -> bool {
        self.0.parse::<IpAddr>().is_err() && valid_dns_name(&self.0)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Identity {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID, `spiffe://<trust-domain>/<path>`, as put in a URI SAN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

impl SpiffeId {
    /// Parses `spiffe://trust.domain/path…` following the SPIFFE ID spec: lower-case trust
    /// domain of `[a-z0-9.-_]`, a non-empty path of segments of `[A-Za-z0-9.-_]` that are
    /// neither empty, `.` nor `..`, no query or fragment.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let bad = |reason: &str| RequestError::InvalidSan {
            san: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("a SPIFFE ID starts with spiffe://"))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("a workload SPIFFE ID needs a path after the trust domain"))?;
        if domain.is_empty()
            || !domain.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
            })
        {
            return Err(bad(
                "the trust domain must be lower-case letters, digits, '.', '-' or '_'",
            ));
        }
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(bad("path segments must not be empty, '.' or '..'"));
            }
            if !segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(bad(
                    "path segments may hold only letters, digits, '.', '-' and '_'",
                ));
            }
        }
        Ok(Self {
            trust_domain: domain.to_owned(),
            path: format!("/{path}"),
        })
    }

    /// The Kubernetes workload ID `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub fn workload(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, RequestError> {
        Self::parse(&format!(
            "spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name (`*.` wildcard allowed in the first label only).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// A URI, e.g. a SPIFFE ID.
    Uri(String),
}

impl San {
    /// Parses `DNS:name`, `IP:addr`, `URI:uri`, or a bare value: an IP address, a
    /// `spiffe://` or other `scheme://` URI, else a DNS name. Checks the value.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let bad = |reason: &str| RequestError::InvalidSan {
            san: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, value) = match text.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("dns") => ("dns", v),
            Some((k, v)) if k.eq_ignore_ascii_case("ip") => ("ip", v),
            Some((k, v)) if k.eq_ignore_ascii_case("uri") => ("uri", v),
            _ if text.parse::<IpAddr>().is_ok() => ("ip", text),
            _ if text.contains("://") => ("uri", text),
            _ => ("dns", text),
        };
        match kind {
            "ip" => value
                .parse()
                .map(San::Ip)
                .map_err(|_| bad("not an IPv4 or IPv6 address")),
            "uri" if value.starts_with("spiffe://") => {
                SpiffeId::parse(value).map(|id| San::Uri(id.to_string()))
            }
            "uri" => {
                let ok = value.split_once("://").is_some_and(|(scheme, rest)| {
                    !scheme.is_empty()
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                        && !rest.is_empty()
                        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
                });
                if ok {
                    Ok(San::Uri(value.to_owned()))
                } else {
                    Err(bad("a URI is scheme://rest, without spaces"))
                }
            }
            _ => {
                if valid_dns_name(value) {
                    Ok(San::Dns(value.to_ascii_lowercase()))
                } else {
                    Err(bad(
                        "not a DNS name: labels of letters, digits and '-', 1-63 characters each, at most 253 in all; '*.' only as the first label",
                    ))
                }
            }
        }
    }

    /// A SPIFFE ID as a URI SAN.
    pub fn spiffe(id: &SpiffeId) -> Self {
        San::Uri(id.to_string())
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

impl FromStr for San {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// RFC 1035/1123 host name, optionally with a leading `*.` wildcard label.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// What a certificate is for; decides its extensions and default lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// A mesh workload: serverAuth and clientAuth (mTLS both ways). 24 hours by default.
    Service,
    /// An admission/conversion webhook or other control-plane server: serverAuth. Ten years by
    /// default (clamped to the CA's remaining life).
    Webhook,
    /// A client only: clientAuth. 24 hours by default.
    Client,
    /// A server only: serverAuth. 24 hours by default.
    Server,
}

impl CertKind {
    /// Every kind, for `--help` and tests.
    pub const ALL: [CertKind; 4] = [Self::Service, Self::Webhook, Self::Client, Self::Server];

    /// The lifetime used when a request does not set one.
    pub fn default_lifetime(self) -> Duration {
        match self {
            CertKind::Webhook => Duration::from_secs(10 * 365 * 86_400),
            _ => Duration::from_secs(24 * 3_600),
        }
    }

    /// Whether the certificate gets EKU serverAuth.
    pub fn server_auth(self) -> bool {
        matches!(
            self,
            CertKind::Service | CertKind::Webhook | CertKind::Server
        )
    }

    /// Whether the certificate gets EKU clientAuth.
    pub fn client_auth(self) -> bool {
        matches!(self, CertKind::Service | CertKind::Client)
    }

    /// The EKU purposes by name (`serverAuth`, `clientAuth`), in that order.
    pub fn extended_key_usages(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.server_auth() {
            out.push("serverAuth");
        }
        if self.client_auth() {
            out.push("clientAuth");
        }
        out
    }

    /// Lower-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Service => "service",
            CertKind::Webhook => "webhook",
            CertKind::Client => "client",
            CertKind::Server => "server",
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertKind {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RequestError::UnknownKind { kind: s.to_owned() })
    }
}

/// The key algorithm of a new certificate (and of a new CA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: the default (fast to make, accepted everywhere).
    #[default]
    P256,
    /// ECDSA on P-384 with SHA-384.
    P384,
    /// Ed25519 (not accepted by every TLS peer for certificates; fine for Rust and Go meshes).
    Ed25519,
    /// RSA 2048 with SHA-256 (slow to generate: about 10 per second per core).
    Rsa2048,
    /// RSA 3072 with SHA-256.
    Rsa3072,
    /// RSA 4096 with SHA-256.
    Rsa4096,
}

impl KeyType {
    /// The key type of `cert`'s public key, when it is one we make.
    pub fn of_certificate(cert: &anchorage_x509::Certificate) -> Option<Self> {
        use anchorage_x509::KeyKind;
        let key = cert.public_key();
        match (&key.kind, key.bits) {
            (KeyKind::Ec { curve }, _) if curve == "P-256" => Some(Self::P256),
            (KeyKind::Ec { curve }, _) if curve == "P-384" => Some(Self::P384),
            (KeyKind::Ed25519, _) => Some(Self::Ed25519),
            (KeyKind::Rsa, Some(2048)) => Some(Self::Rsa2048),
            (KeyKind::Rsa, Some(3072)) => Some(Self::Rsa3072),
            (KeyKind::Rsa, Some(4096)) => Some(Self::Rsa4096),
            _ => None,
        }
    }

    /// Every key type, for `--help` and tests.
    pub const ALL: [KeyType; 6] = [
        Self::P256,
        Self::P384,
        Self::Ed25519,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    /// The name used on the command line and in JSON (`p256`, `rsa2048`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        }
    }

    /// True for the RSA sizes.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = RequestError;
    /// Accepts `p256`, `p-256`, `ecdsa-p256`, `ec256`, `ed25519`, `rsa2048`, `rsa-2048`, … in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let norm = norm
            .strip_prefix("ecdsa")
            .or_else(|| norm.strip_prefix("ec"))
            .map(|rest| {
                if rest.starts_with('p') {
                    rest.to_owned()
                } else {
                    format!("p{rest}")
                }
            })
            .unwrap_or(norm);
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == norm)
            .ok_or_else(|| RequestError::UnknownKeyType {
                key_type: s.to_owned(),
            })
    }
}

/// Parameters of one certificate. Plain data: build it, [`validate`](Self::validate) it, hand
/// it to an [`crate::Issuer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The CommonName, and the cache key in the manager.
    pub identity: Identity,
    /// Subject alternative names besides the identity (which is added as a DNS SAN when it is a
    /// DNS name).
    pub sans: Vec<San>,
    /// What the certificate is for.
    pub kind: CertKind,
    /// How long it is valid from issuance.
    pub lifetime: Duration,
    /// The key algorithm.
    pub key_type: KeyType,
}

impl CertificateRequest {
    /// A request for `identity` of `kind` with that kind's default lifetime, a P-256 key and no
    /// extra SANs.
    pub fn new(identity: Identity, kind: CertKind) -> Self {
        Self {
            identity,
            sans: Vec::new(),
            kind,
            lifetime: kind.default_lifetime(),
            key_type: KeyType::default(),
        }
    }

    /// Adds a SAN.
    #[must_use]
    pub fn with_san(mut self, san: San) -> Self {
        self.sans.push(san);
        self
    }

    /// Sets the lifetime.
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the key type.
    #[must_use]
    pub fn with_key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Every SAN the certificate gets: the identity as a DNS name when it is one (first), then
    /// the requested SANs, without duplicates.
    pub fn all_sans(&self) -> Vec<San> {
        let mut out = Vec::with_capacity(self.sans.len() + 1);
        if self.identity.is_dns_name() {
            out.push(San::Dns(self.identity.as_str().to_ascii_lowercase()));
        }
        for san in &self.sans {
            if !out.contains(san) {
                out.push(san.clone());
            }
        }
        out
    }

    /// Checks what can be checked without a CA: a lifetime of at least one minute, SANs valid
    /// (re-parsed, so hand-built `San` values are checked too), and a server certificate having
    /// at least one DNS or IP name to be matched against.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.lifetime < Duration::from_secs(60) {
            return Err(RequestError::LifetimeTooShort {
                lifetime: self.lifetime,
            });
        }
        for san in &self.sans {
            San::parse(&san.to_string())?;
        }
        Ok(())
    }
}

/// A request that cannot be issued as it stands. Each variant names the value and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The CommonName is empty, longer than 64 characters, or has control characters.
    #[error(
        "identity {identity:?} is not a valid CommonName: use 1 to 64 printable characters, e.g. bookstore-v2.bookstore.cluster.local"
    )]
    InvalidIdentity {
        /// What was given.
        identity: String,
    },
    /// A SAN does not parse or breaks its syntax rules.
    #[error("subject alternative name {san:?} is invalid: {reason}")]
    InvalidSan {
        /// What was given.
        san: String,
        /// The rule it breaks.
        reason: String,
    },
    /// Unknown certificate kind.
    #[error("unknown certificate kind {kind:?}: use service, webhook, client or server")]
    UnknownKind {
        /// What was given.
        kind: String,
    },
    /// Unknown key type.
    #[error(
        "unknown key type {key_type:?}: use p256 (default), p384, ed25519, rsa2048, rsa3072 or rsa4096"
    )]
    UnknownKeyType {
        /// What was given.
        key_type: String,
    },
    /// A lifetime under one minute.
    #[error(
        "lifetime {lifetime:?} is too short: certificates must be valid for at least one minute"
    )]
    LifetimeTooShort {
        /// What was given.
        lifetime: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_parse_with_and_without_prefix() {
        assert_eq!(
            San::parse("DNS:web.example").unwrap(),
            San::Dns("web.example".into())
        );
        assert_eq!(
            San::parse("Web.Example").unwrap(),
            San::Dns("web.example".into())
        );
        assert_eq!(
            San::parse("*.svc.cluster.local").unwrap(),
            San::Dns("*.svc.cluster.local".into())
        );
        assert_eq!(
            San::parse("10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            San::parse("IP:::1").unwrap(),
            San::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            San::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap(),
            San::Uri("spiffe://cluster.local/ns/shop/sa/web".into())
        );
        for bad in [
            "DNS:bad_host name",
            "IP:10.0.0.300",
            "a..b",
            "-x.example",
            "*.*.x",
            "URI:spiffe://Upper/x",
            "spiffe://td",
            "URI:nope",
        ] {
            assert!(
                matches!(San::parse(bad), Err(RequestError::InvalidSan { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn spiffe_workload_ids() {
        let id = SpiffeId::workload("cluster.local", "bookstore", "bookstore-v2").unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/bookstore/sa/bookstore-v2"
        );
        assert_eq!(id.trust_domain(), "cluster.local");
        assert!(SpiffeId::workload("cluster.local", "", "sa").is_err());
        assert!(SpiffeId::parse("spiffe://td/a/../b").is_err());
    }

    #[test]
    fn key_types_accept_common_spellings() {
        for (text, want) in [
            ("p256", KeyType::P256),
            ("P-256", KeyType::P256),
            ("ecdsa-p256", KeyType::P256),
            ("ec384", KeyType::P384),
            ("Ed25519", KeyType::Ed25519),
            ("rsa-2048", KeyType::Rsa2048),
            ("RSA4096", KeyType::Rsa4096),
        ] {
            assert_eq!(text.parse::<KeyType>().unwrap(), want, "{text}");
        }
        let err = "dsa1024".parse::<KeyType>().unwrap_err();
        assert!(err.to_string().contains("p256 (default)"), "{err}");
    }

    #[test]
    fn kinds_get_the_right_purposes() {
        assert_eq!(
            CertKind::Service.extended_key_usages(),
            ["serverAuth", "clientAuth"]
        );
        assert_eq!(CertKind::Webhook.extended_key_usages(), ["serverAuth"]);
        assert_eq!(CertKind::Client.extended_key_usages(), ["clientAuth"]);
        assert_eq!(CertKind::Server.extended_key_usages(), ["serverAuth"]);
        assert!(CertKind::Webhook.default_lifetime() > CertKind::Service.default_lifetime());
        assert!("mesh".parse::<CertKind>().is_err());
    }

    #[test]
    fn identity_that_is_a_dns_name_leads_the_sans_once() {
        let id = Identity::new("bookstore-v2.bookstore.cluster.local").unwrap();
        let req = CertificateRequest::new(id, CertKind::Service)
            .with_san(San::parse("bookstore-v2.bookstore.cluster.local").unwrap())
            .with_san(San::parse("spiffe://cluster.local/ns/bookstore/sa/bookstore-v2").unwrap());
        let sans = req.all_sans();
        assert_eq!(sans.len(), 2);
        assert_eq!(
            sans[0],
            San::Dns("bookstore-v2.bookstore.cluster.local".into())
        );
        assert_eq!(req.lifetime, Duration::from_secs(86_400));

        let ip = Identity::new("10.0.0.9").unwrap();
        assert!(!ip.is_dns_name(), "an IP address is not a DNS SAN");
        let not_dns = Identity::new("Bookstore Service").unwrap();
        assert!(
            CertificateRequest::new(not_dns, CertKind::Client)
                .all_sans()
                .is_empty()
        );
        assert!(Identity::new("").is_err());
        assert!(Identity::new("x".repeat(65)).is_err());
    }

    #[test]
    fn too_short_lifetime_is_refused() {
        let req = CertificateRequest::new(Identity::new("a.example").unwrap(), CertKind::Server)
            .with_lifetime(Duration::from_secs(5));
        assert!(matches!(
            req.validate(),
            Err(RequestError::LifetimeTooShort { .. })
        ));
    }
}

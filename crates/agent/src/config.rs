//! What the agent is asked to do: where serve is, which outputs to keep, the identity, the
//! on-change actions, and its timings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anchorage_ca::{CertKind, KeyType};
use anchorage_trust::{LoadOptions, OpensslDirOptions, PemOptions, Pkcs12Options, Policy, Source};
use secrecy::SecretString;

use crate::reload::Action;

/// The whole configuration of one agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// serve's base URL, e.g. `https://127.0.0.1:8443` (`http://` only for tests against a
    /// plain local peer).
    pub server: String,
    /// The CA that signed serve's serving certificate (serve's `ca.pem`), PEM.
    pub server_ca: PathBuf,
    /// A token file (any token kind serve accepts): used for `/v1/sign` and for acks while the
    /// agent has no identity certificate (with one, acks go over mTLS).
    pub token_file: Option<PathBuf>,
    /// The consumer name reported in acks (pod, host or instance).
    pub consumer: String,
    /// Labels reported in acks.
    pub labels: BTreeMap<String, String>,
    /// Where the trust bundle goes.
    pub trust: TrustOutputs,
    /// Local sources merged into the served bundle exactly as `bundle build` merges them.
    pub local_sources: Vec<Source>,
    /// How local sources are read.
    pub load_options: LoadOptions,
    /// The policy applied to the merged bundle (`bundle build`'s `--keep-expired`/`--strict`).
    pub policy: PolicySettings,
    /// The identity to keep, if any.
    pub identity: Option<IdentityConfig>,
    /// Run after a change is in place; a failure means "not installed".
    pub on_change: Vec<Action>,
    /// The local status file (JSON), for `anchorage agent status`.
    pub status_file: PathBuf,
    /// Timings.
    pub timing: Timing,
    /// Reach serve over NATS request/reply instead of HTTPS (`server` and `server_ca` are then
    /// unused but for the status); see [`crate::transport`].
    pub nats: Option<NatsSettings>,
}

/// serve over NATS: a connected client and serve's subject prefix.
#[derive(Clone, Debug)]
pub struct NatsSettings {
    /// The connected client (the CLI connects it as serve does).
    pub client: async_nats::Client,
    /// serve's subject prefix (default `anchorage`).
    pub prefix: String,
    /// Sign every request with this nkey (serve maps it to a role with `--nats-identity`)
    /// instead of sending the token file: sign and acks then need no token.
    pub nkey: Option<std::sync::Arc<nkeys::KeyPair>>,
}

impl AgentConfig {
    /// A configuration with no outputs, no identity and default timings.
    pub fn new(
        server: impl Into<String>,
        server_ca: impl Into<PathBuf>,
        consumer: impl Into<String>,
        status_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            server: server.into(),
            server_ca: server_ca.into(),
            token_file: None,
            consumer: consumer.into(),
            labels: BTreeMap::new(),
            trust: TrustOutputs::default(),
            local_sources: Vec::new(),
            load_options: LoadOptions::default(),
            policy: PolicySettings::default(),
            identity: None,
            on_change: Vec::new(),
            status_file: status_file.into(),
            timing: Timing::default(),
            nats: None,
        }
    }
}

/// `bundle build`'s policy switches (the time is taken at each evaluation).
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicySettings {
    /// Keep expired certificates.
    pub keep_expired: bool,
    /// Any problem or warning is fatal.
    pub strict: bool,
}

impl PolicySettings {
    pub(crate) fn policy(self) -> Policy {
        Policy {
            keep_expired: self.keep_expired,
            strict: self.strict,
            ..Policy::default()
        }
    }
}

/// The trust outputs, each optional, written with `bundle build`'s writers.
#[derive(Clone, Debug, Default)]
pub struct TrustOutputs {
    /// A PEM bundle (`--pem`).
    pub pem: Option<PathBuf>,
    /// PEM rendering options (`--pem-comments`), also for `extra_pem`.
    pub pem_options: PemOptions,
    /// An OpenSSL hashed directory (`--openssl-dir`).
    pub openssl_dir: Option<PathBuf>,
    /// Its layout and optional bundle file.
    pub openssl_dir_options: OpensslDirOptions,
    /// The bundle without Mozilla's roots (`--extra-pem`, for `NODE_EXTRA_CA_CERTS`).
    pub extra_pem: Option<PathBuf>,
    /// A PKCS#12 trust store.
    pub pkcs12: Option<(PathBuf, Pkcs12Options)>,
    /// A JKS trust store and its password.
    pub jks: Option<(PathBuf, SecretString)>,
    /// serve's CRL, PEM (`GET /v1/bundle?format=crl`).
    pub crl: Option<PathBuf>,
    /// A directory of one `<name>_<sha256>.crt` per CA, for wasmCloud's `--tls-ca-path`.
    pub wasmcloud_dir: Option<PathBuf>,
}

/// The identity the agent keeps: its key made here, its certificate from serve.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The CommonName (a DNS name is also a SAN).
    pub name: String,
    /// Extra SANs (`dns:`, `ip:`, `uri:` or by shape).
    pub sans: Vec<String>,
    /// The kind asked for.
    pub kind: CertKind,
    /// The key type made locally.
    pub key_type: KeyType,
    /// The lifetime asked for (None: the role's default).
    pub ttl: Option<Duration>,
    /// The role asked for on `/v1/sign` (None: the token's). serve refuses one the token is not
    /// bound to (`token_role_mismatch`), so a token for another role fails at once, by name.
    pub role: Option<String>,
    /// The leaf certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// The leaf followed by the intermediates (what a server loads).
    pub chain: PathBuf,
    /// The roots the leaf chains to.
    pub ca: PathBuf,
    /// Also a PKCS#12 key store (for Java) holding the key and the chain, mode 0600, with this
    /// password.
    pub pkcs12: Option<(PathBuf, SecretString)>,
}

impl IdentityConfig {
    /// `cert.pem`, `key.pem`, `chain.pem` and `ca.pem` in `dir`.
    pub fn in_dir(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            name: name.into(),
            sans: Vec::new(),
            kind: CertKind::Service,
            key_type: KeyType::P256,
            ttl: None,
            role: None,
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            chain: dir.join("chain.pem"),
            ca: dir.join("ca.pem"),
            pkcs12: None,
        }
    }
}

/// Timings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The long-poll wait asked of serve (`?wait=`; serve caps it).
    pub wait: Duration,
    /// How often the ack is repeated while nothing changes.
    pub heartbeat: Duration,
    /// Renew at this fraction of the certificate's life…
    pub renew_fraction: f64,
    /// …± this fraction of that point (jitter).
    pub renew_jitter: f64,
    /// First backoff after a failure; doubled per failure, ± 20 % jitter.
    pub backoff_min: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// The status is `stale` when serve was last reached longer ago than this.
    pub stale_after: Duration,
    /// Bound on one request (beyond the long-poll wait).
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(60),
            heartbeat: Duration::from_secs(300),
            renew_fraction: 2.0 / 3.0,
            renew_jitter: 0.1,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            stale_after: Duration::from_secs(600),
            request_timeout: Duration::from_secs(15),
        }
    }
}

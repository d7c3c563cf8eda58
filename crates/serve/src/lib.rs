//! `anchorage-serve`: the control plane behind `anchorage serve` — certificates issued, renewed
//! and revoked over an HTTPS API, the trust bundle served and its consumers tracked, with a
//! Vault-PKI-compatible subset so stock Vault clients work unchanged.
//!
//! Start it with [`run`] (blocks until the shutdown future resolves, then drains) or
//! [`Server::start`] (tests, embedding). With a default [`ServeConfig`] it:
//!
//! - opens (or creates) the embedded store in the data directory and the CA in it, under the
//!   same key `anchorage ca init` uses, so `anchorage ca` and `serve` share one CA;
//! - issues itself a serving certificate for `localhost`/`127.0.0.1`/`::1` (or uses the
//!   `tls_cert`/`tls_key` given) and writes the CA to `ca.pem` in the data directory;
//! - writes a bootstrap admin token `0600` to `admin.token` in the data directory;
//! - listens on `127.0.0.1:8443`.
//!
//! The parts: [`authority`] (the CA, serials, CRL), [`tokens`] (one-time, role and admin
//! JWTs), [`roles`] (Vault-style roles), [`api`] and [`vault`] (the routes), [`state`] (shared
//! state over `Arc<dyn anchorage_store::Store>`), [`server`] (TLS accept loop), [`metrics`].
//! Audit events go to the `tracing` target `anchorage::audit` (who, names, serial; never a key
//! or a token). `docs/serve.md` is the API reference.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anchorage_ca::{CaError, CertKind, CertificateRequest, Identity, InitOptions, San};
use anchorage_store::{EmbeddedStore, Store, StoreError};
use axum::Router;
use axum::routing::{get, post, put};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod api;
pub mod authority;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod nats_auth;
pub mod roles;
pub mod rotation;
pub mod secrets;
pub mod server;
pub mod state;
pub mod tokens;
pub mod vault;

pub use authority::Authority;
pub use error::ApiError;
pub use roles::Role;
pub use state::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_WRITE_TIMEOUT, Limits,
    RESERVED_FDS,
};
pub use tokens::{Claims, MintError, TokenKind, TokenRequest, mint_token, revoke_token};

use crate::authority::RecordInfo;
use crate::server::CertSlot;
use crate::state::AppState;

/// The file (in the data directory) the bootstrap admin token is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The file (in the data directory) the CA's roots are written to, for `curl --cacert`.
pub const CA_FILE: &str = "ca.pem";

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// Issued by the CA for `localhost`, `127.0.0.1`, `::1` and these extra names, renewed
    /// while running.
    Builtin {
        /// Extra DNS names or IP addresses.
        names: Vec<String>,
    },
    /// Bring your own: a PEM chain and a PEM key.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key (PKCS#8, SEC 1 or PKCS#1).
        key: PathBuf,
    },
}

/// Where the state lives.
#[derive(Clone)]
pub enum StoreChoice {
    /// The embedded redb store in the data directory (`anchorage ca` uses the same file).
    Embedded,
    /// A store the caller opened (e.g. JetStream KV, shared by several instances).
    Shared(Arc<dyn Store>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Embedded => f.write_str("Embedded"),
            StoreChoice::Shared(_) => f.write_str("Shared(..)"),
        }
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Listen address (default `127.0.0.1:8443`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The data directory (store file, `ca.pem`, `admin.token`).
    pub data_dir: PathBuf,
    /// The serving certificate.
    pub tls: TlsSource,
    /// The store.
    pub store: StoreChoice,
    /// The CA keys' passphrase, when they are (to be) stored encrypted.
    pub passphrase: Option<SecretString>,
    /// How to create the CA when the store has none.
    pub ca_init: InitOptions,
    /// Limits and timeouts.
    pub limits: Limits,
    /// A CRL's validity (next-update − this-update); it is re-signed at half of it.
    pub crl_validity: Duration,
    /// Roles created at start when absent.
    pub roles: Vec<Role>,
    /// Write the bootstrap admin token file (default true).
    pub bootstrap_admin_token: bool,
    /// Also serve the API over NATS request/reply (`<prefix>.v1.<op>`).
    pub nats: Option<nats::NatsApi>,
    /// Root rotation (`/v1/rotation`): automatic driving, gates, renewal rate limits.
    pub rotation: rotation::RotationConfig,
    /// Also run the wasmCloud secrets backend (`serve --secrets`, [`secrets`]).
    pub secrets: Option<secrets::SecretsSlot>,
}

impl ServeConfig {
    /// The defaults with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: data_dir.into(),
            tls: TlsSource::Builtin { names: Vec::new() },
            store: StoreChoice::Embedded,
            passphrase: None,
            ca_init: InitOptions::default(),
            limits: Limits::default(),
            crl_validity: Duration::from_secs(24 * 3600),
            roles: Vec::new(),
            bootstrap_admin_token: true,
            nats: None,
            rotation: rotation::RotationConfig::default(),
            secrets: None,
        }
    }
}

/// What a started server serves (for the CLI to print).
#[derive(Clone, Debug)]
pub struct Serving {
    /// The bound address.
    pub addr: SocketAddr,
    /// `https://addr`.
    pub url: String,
    /// The CA roots file (`curl --cacert`).
    pub ca_file: PathBuf,
    /// The bootstrap admin token file, when written or kept.
    pub admin_token_file: Option<PathBuf>,
    /// True when this start created the admin token.
    pub admin_token_created: bool,
    /// True when this start created the CA.
    pub ca_created: bool,
    /// The CA's subject.
    pub ca_subject: String,
    /// The store: a path, or `shared`.
    pub store: String,
    /// The main endpoints.
    pub endpoints: Vec<&'static str>,
    /// The secrets backend, with `--secrets`.
    pub secrets: Option<secrets::SecretsServing>,
}

impl std::fmt::Display for Serving {
    /// What a newcomer needs: where it listens, the CA file, the admin token, a first request.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "anchorage serve: listening on {}", self.url)?;
        writeln!(
            f,
            "  CA: {} ({}{})",
            self.ca_subject,
            if self.ca_created { "created, " } else { "" },
            self.ca_file.display()
        )?;
        writeln!(f, "  store: {}", self.store)?;
        if let Some(token) = &self.admin_token_file {
            writeln!(
                f,
                "  admin token: {} ({})",
                token.display(),
                if self.admin_token_created {
                    "new, mode 0600"
                } else {
                    "kept"
                }
            )?;
        }
        writeln!(f, "  endpoints: {}", self.endpoints.join(" "))?;
        if let Some(s) = &self.secrets {
            writeln!(
                f,
                "  secrets: {}.> (server xkey {}, {})",
                s.subject, s.server_xkey, s.store
            )?;
        }
        write!(
            f,
            "  try: curl --cacert {} {}/readyz",
            self.ca_file.display(),
            self.url
        )
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data directory or a file in it.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store.
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
    /// The CA.
    #[error("the CA cannot be opened or created: {0}")]
    Ca(#[from] CaError),
    /// The listen address.
    #[error("cannot listen on {addr}: {source} (pick another with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS setup.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// Minting the bootstrap token.
    #[error("cannot mint the bootstrap admin token: {0}")]
    Token(#[from] MintError),
    /// The NATS subscription.
    #[error("cannot subscribe to {subject} on NATS: {message}")]
    Nats {
        /// The subject.
        subject: String,
        /// The client's words.
        message: String,
    },
    /// The secrets backend (`--secrets`): its subjects or admin settings.
    #[error("the secrets backend cannot start: {0}")]
    Secrets(#[source] anchorage_secrets_server::ServeError),
    /// The secrets backend's stores (`--secrets --store jetstream`: its buckets).
    #[error("the secrets backend's store cannot be opened: {0}")]
    SecretsStore(#[source] anchorage_secrets_server::StoreFailure),
    /// A [`secrets::SecretsSlot`] already taken by another start (a cloned configuration).
    #[error("the secrets backend of this configuration was already started by another server")]
    SecretsTaken,
    /// A role in the configuration.
    #[error("role {name:?} in the configuration is invalid: {reason}")]
    Role {
        /// The role.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A running server.
pub struct Server {
    serving: Serving,
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_owned();
    move |source| ServeError::Io {
        action,
        path,
        source,
    }
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let any_write = |h| post(h);
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/v1/sign", post(api::post_sign))
        .route("/v1/issue", post(api::post_issue))
        .route("/v1/renew", post(api::post_renew))
        .route("/v1/revoke", post(api::post_revoke))
        .route("/v1/crl", get(api::get_crl))
        .route("/v1/bundle", get(api::get_bundle))
        .route("/v1/bundle/cas", post(api::post_bundle_cas))
        .route("/v1/acks", post(api::post_acks))
        .route("/v1/consumers", get(api::get_consumers))
        .route(
            "/v1/rotation",
            get(api::get_rotation).post(api::post_rotation),
        )
        .route("/v1/roles", get(api::list_roles))
        .route(
            "/v1/roles/{name}",
            put(api::put_role)
                .post(api::put_role)
                .get(api::get_role)
                .delete(api::delete_role),
        )
        .route("/v1/tokens", post(api::post_token))
        .route(
            "/v1/tokens/{name}",
            axum::routing::delete(api::delete_token),
        )
        .route("/v1/sys/health", get(vault::sys_health))
        .route("/v1/sys/seal-status", get(vault::seal_status))
        .route("/v1/sys/leader", get(vault::leader))
        .route(
            "/v1/auth/approle/login",
            post(vault::approle_login).put(vault::approle_login),
        )
        .route(
            "/v1/auth/approle/role/{name}/secret-id",
            any_write(vault::approle_secret_id).put(vault::approle_secret_id),
        )
        .route(
            "/v1/{mount}/issue/{role}",
            post(vault::issue_role).put(vault::issue_role),
        )
        .route(
            "/v1/{mount}/sign/{role}",
            post(vault::sign_role).put(vault::sign_role),
        )
        .route(
            "/v1/{mount}/roles/{role}",
            post(vault::write_role)
                .put(vault::write_role)
                .get(vault::read_role),
        )
        .route("/v1/{mount}/ca/pem", get(vault::ca_pem))
        .route("/v1/{mount}/ca_chain", get(vault::ca_chain))
        .route("/v1/{mount}/cert/ca_chain", get(vault::cert_ca_chain))
        .route("/v1/{mount}/issuer/{role}/json", get(vault::issuer_json))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// Writes `contents` to `path` atomically (anchorage_trust::atomic): `0600` when private,
/// else `0644`.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), ServeError> {
    let result = if private {
        anchorage_trust::atomic::write_private_file(path, contents)
    } else {
        anchorage_trust::atomic::write_file(path, contents)
    };
    result.map_err(io("write", path))
}

/// Issues the built-in serving certificate.
async fn builtin_serving_cert(
    authority: &Authority,
    names: &[String],
) -> Result<(Arc<CertifiedKey>, i64), ServeError> {
    let mut request = CertificateRequest::new(
        Identity::new("localhost").map_err(|e| ServeError::Tls(e.to_string()))?,
        CertKind::Server,
    )
    .with_lifetime(Duration::from_secs(30 * 86_400));
    for name in ["127.0.0.1", "::1"]
        .iter()
        .copied()
        .chain(names.iter().map(String::as_str))
    {
        request = request.with_san(San::parse(name).map_err(|e| ServeError::Tls(e.to_string()))?);
    }
    let signed = authority
        .sign(
            &request,
            None,
            RecordInfo {
                role: None,
                who: "anchorage serve",
                operation: "serve",
            },
        )
        .await
        .map_err(|e| ServeError::Tls(format!("cannot issue the serving certificate: {e}")))?;
    let key = signed
        .private_key
        .as_ref()
        .ok_or_else(|| ServeError::Tls("the serving certificate came without a key".into()))?;
    let mut chain = vec![CertificateDer::from(signed.certificate.der().to_vec())];
    chain.extend(
        signed
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.der().to_vec())),
    );
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let nb = signed.certificate.not_before().unix();
    let na = signed.certificate.not_after().unix();
    Ok((Arc::new(ck), nb + (na - nb) * 2 / 3))
}

fn files_cert(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, ServeError> {
    let cert_pem = std::fs::read(cert).map_err(io("read", cert))?;
    let key_pem = secrecy::SecretBox::new(Box::new(std::fs::read(key).map_err(io("read", key))?));
    let chain: Vec<CertificateDer<'static>> = anchorage_x509::decode(&cert_pem)
        .certificates
        .into_iter()
        .map(|f| CertificateDer::from(f.certificate.der().to_vec()))
        .collect();
    if chain.is_empty() {
        return Err(ServeError::Tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let (_, private) = anchorage_ca::keys::load(key_pem.expose_secret())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private.pkcs8_der().to_vec()));
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider)
        .map(Arc::new)
        .map_err(|e| ServeError::Tls(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// Keeps the bootstrap admin token file: a token still valid is kept, else a new one is minted.
async fn bootstrap_token(state: &AppState, dir: &Path) -> Result<(PathBuf, bool), ServeError> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && state
            .tokens
            .verify(state.store.as_ref(), text.trim(), "/", tokens::now_unix())
            .await
            .is_ok_and(|c| c.typ == TokenKind::Admin)
    {
        return Ok((path, false));
    }
    let token = tokens::mint_with(
        &state.tokens,
        state.store.as_ref(),
        &TokenRequest {
            kind: TokenKind::Admin,
            subject: "bootstrap-admin".into(),
            role: None,
            audience: String::new(),
            sans: vec![],
            ttl_seconds: None,
        },
        tokens::now_unix(),
    )
    .await?;
    let token = zeroize::Zeroizing::new(format!("{token}\n"));
    write_file(&path, token.as_bytes(), true)?;
    Ok((path, true))
}

impl Server {
    /// Opens the state, binds and starts serving. Returns once the listener is bound.
    pub async fn start(config: ServeConfig) -> Result<Self, ServeError> {
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .map_err(io("create", &config.data_dir))?;
        }
        let (store, store_desc): (Arc<dyn Store>, String) = match &config.store {
            StoreChoice::Embedded => {
                let s = EmbeddedStore::open_in(&config.data_dir)?;
                let desc = s.path().display().to_string();
                (Arc::new(s), desc)
            }
            StoreChoice::Shared(s) => (Arc::clone(s), "shared".into()),
        };
        let (authority, ca_created) = Authority::open(
            Arc::clone(&store),
            config.passphrase.as_ref(),
            &config.ca_init,
        )
        .await?;
        let tokens = tokens::TokenKey::load_or_create(store.as_ref()).await?;
        for role in &config.roles {
            role.validate().map_err(|reason| ServeError::Role {
                name: role.name.clone(),
                reason,
            })?;
            if roles::get_role(store.as_ref(), &role.name).await?.is_none() {
                roles::put_role(store.as_ref(), role).await?;
            }
        }
        let ca_file = config.data_dir.join(CA_FILE);
        write_file(&ca_file, authority.roots_pem().as_bytes(), false)?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let ca_subjects = authority
            .ca()
            .roots()
            .iter()
            .chain(std::iter::once(authority.ca().signing_certificate()))
            .map(|c| c.subject_der().to_vec())
            .collect();
        let state = Arc::new(AppState {
            store: Arc::clone(&store),
            authority,
            tokens,
            metrics: metrics::Metrics::default(),
            limits: config.limits,
            crl_validity: config.crl_validity,
            bundle_cache: Mutex::new(None),
            crl_cache: Mutex::new(None),
            bundle_version: watch::channel(0).0,
            shutting_down: shutdown_rx.clone(),
            rotation: rotation::Rotation::new(rotation::RotationConfig {
                passphrase: config.passphrase.clone(),
                init: config.ca_init.clone(),
                ..config.rotation.clone()
            })
            .with_ca_file(ca_file.clone()),
        });
        // A restart mid-rotation resumes: the signer follows the stored record before the
        // first request.
        {
            let (rec, _) = rotation::read(state.store.as_ref()).await?;
            rotation::apply(&state, &rec).await;
        }
        let (bundle, _) = state.bundle_record().await?;
        state.note_bundle_version(bundle.version);

        let (first, mut renew_at) = match &config.tls {
            TlsSource::Builtin { names } => {
                let (ck, at) = builtin_serving_cert(&state.authority, names).await?;
                // ca.pem keeps the root this serving certificate chains to, whatever a
                // rotation does to the bundle.
                if let Ok(mut root) = state.rotation.serving_root.lock() {
                    *root = Some(state.authority.ca().root().to_pem());
                }
                rotation::write_ca_file(&state, &state.rotation.current.borrow().clone());
                (ck, Some(at))
            }
            TlsSource::Files { cert, key } => (files_cert(cert, key)?, None),
        };
        let slot = Arc::new(CertSlot(RwLock::new(first)));
        let tls = server::tls_config(Arc::clone(&slot), ca_subjects)
            .map_err(|e| ServeError::Tls(e.to_string()))?;

        let (admin_token_file, admin_token_created) = if config.bootstrap_admin_token {
            let (p, c) = bootstrap_token(&state, &config.data_dir).await?;
            (Some(p), c)
        } else {
            (None, false)
        };

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let app = router(Arc::clone(&state));
        let mut tasks = Vec::new();
        let secrets_serving = match &config.secrets {
            Some(slot) => {
                let backend = slot.take().ok_or(ServeError::SecretsTaken)?;
                let (serving, task) = secrets::start(backend, &store, shutdown_rx.clone()).await?;
                tasks.push(task);
                Some(serving)
            }
            None => None,
        };
        if let Some(api) = config.nats.clone() {
            let subject = format!("{}.v1.>", api.prefix);
            let subscriber = api
                .client
                .queue_subscribe(subject.clone(), api.queue_group.clone())
                .await
                .map_err(|e| ServeError::Nats {
                    subject: subject.clone(),
                    message: e.to_string(),
                })?;
            // async-nats queues the SUB without waiting for the server, so a request sent
            // from another connection right after start could find no responder. A request
            // on this connection to a subject nobody serves makes the round trip: the server
            // answers it ("no responders") only after the SUB before it is in place.
            let probe = api.client.new_inbox();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                api.client.request(probe, bytes::Bytes::new()),
            )
            .await;
            tracing::info!(%subject, "serving the API over NATS");
            tasks.push(tokio::spawn(nats::announce_bundle_changes(
                api.client.clone(),
                api.prefix.clone(),
                state.bundle_version.subscribe(),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(nats::serve(
                api,
                subscriber,
                app.clone(),
                Arc::clone(&state),
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(server::serve(
            listener,
            Arc::new(tls),
            app,
            config.limits,
            shutdown_rx.clone(),
        )));

        // Other instances' bundle changes, for long-polls.
        let follower = Arc::clone(&state);
        let follow_shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            follower
                .follow_bundle(Duration::from_millis(250), follow_shutdown)
                .await;
        }));

        // Root rotation: every instance follows the record; the lease holder drives it.
        tasks.push(tokio::spawn(rotation::follow(
            Arc::clone(&state),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(rotation::drive(
            Arc::clone(&state),
            shutdown_rx.clone(),
        )));

        // Housekeeping: the CRL re-signed before its next-update, the built-in serving
        // certificate renewed at two thirds of its life.
        let bg_state = Arc::clone(&state);
        let mut bg_shutdown = shutdown_rx;
        let names = match &config.tls {
            TlsSource::Builtin { names } => Some(names.clone()),
            TlsSource::Files { .. } => None,
        };
        tasks.push(tokio::spawn(async move {
            let mut next_sweep = 0;
            let tick =
                (bg_state.crl_validity / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = bg_shutdown.changed() => break,
                    () = tokio::time::sleep(tick) => {}
                }
                if let Err(e) = bg_state.crl().await {
                    tracing::warn!(error = %e, "CRL refresh failed");
                }
                let now = tokens::now_unix();
                if now >= next_sweep {
                    next_sweep = now + 3600;
                    match tokens::sweep_used_tokens(bg_state.store.as_ref(), now).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(removed = n, "expired one-time token records removed");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "one-time token sweep failed"),
                    }
                }
                if let (Some(names), Some(at)) = (&names, renew_at)
                    && tokens::now_unix() >= at
                {
                    match builtin_serving_cert(&bg_state.authority, names).await {
                        Ok((ck, next)) => {
                            if let Ok(mut cur) = slot.0.write() {
                                *cur = ck;
                            }
                            if let Ok(mut root) = bg_state.rotation.serving_root.lock() {
                                *root = Some(bg_state.authority.ca().root().to_pem());
                            }
                            let rec = bg_state.rotation.current.borrow().clone();
                            rotation::write_ca_file(&bg_state, &rec);
                            renew_at = Some(next);
                            tracing::info!("serving certificate renewed");
                        }
                        Err(e) => tracing::warn!(error = %e, "serving certificate renewal failed"),
                    }
                }
            }
        }));

        let serving = Serving {
            addr,
            url: format!("https://{addr}"),
            ca_file,
            admin_token_file,
            admin_token_created,
            ca_created,
            ca_subject: state
                .authority
                .ca()
                .signing_certificate()
                .subject()
                .to_owned(),
            store: store_desc,
            endpoints: vec![
                "/v1/sign",
                "/v1/issue",
                "/v1/renew",
                "/v1/revoke",
                "/v1/crl",
                "/v1/bundle",
                "/v1/acks",
                "/v1/consumers",
                "/v1/rotation",
                "/v1/<mount>/issue/<role>",
                "/v1/<mount>/sign/<role>",
                "/healthz",
                "/readyz",
                "/metrics",
            ],
            secrets: secrets_serving,
        };
        tracing::info!(url = %serving.url, store = %serving.store, ca = %serving.ca_subject, "anchorage serve is listening");
        Ok(Self {
            serving,
            state,
            shutdown,
            tasks,
        })
    }

    /// What it serves.
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// The shared state (tests, embedding).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, drains in-flight requests (bounded by the drain timeout) and waits for
    /// the background tasks; the store is closed once the last handle drops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.state);
    }
}

/// Resolves on SIGTERM or SIGINT (for [`run`]'s `shutdown`).
///
/// The handlers are installed when this is *called* (inside a tokio runtime), not when the
/// future is first polled: [`run`] prints "listening" before it awaits `shutdown`, and a
/// SIGTERM sent in between (a supervisor reacting to that line) killed the process undrained
/// with the default action (seen in CI).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Runs until `shutdown` resolves (e.g. SIGTERM), then drains. `on_ready` is called once with
/// what is served (the CLI prints it).
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Serving),
) -> Result<(), ServeError> {
    let server = Server::start(config).await?;
    on_ready(server.serving());
    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    server.shutdown().await;
    Ok(())
}

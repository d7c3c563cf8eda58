//! `serve --secrets`: the wasmCloud secrets backend ([`anchorage_secrets_server::Server`]) in
//! the same process as the control plane, on the same store choice and stopped by the same
//! drain.
//!
//! - With the embedded store, secrets, mappings and admin token ids live in serve's own store
//!   (the redb file in the data directory, keys `secrets.*`, next to serve's `serve.*` and the
//!   CA's records): one file, one process, one backup. While serve runs, administer them over
//!   NATS with an admin seed (`anchorage secrets put … --admin-seed-file`), which needs
//!   [`SecretsAdmin`].
//! - With a shared store (`--store jetstream`), they live in the JetStream buckets of the
//!   reference backend's layout ([`SecretsStores::JetStream`]) on the same NATS connection, so
//!   every instance serves the same secrets and an existing `secrets-nats-kv` deployment
//!   switches without migrating.
//!
//! The caller (the CLI) builds the protocol side from the same option types as
//! `anchorage secrets serve`: the transit key and issuer allow-lists in a
//! [`anchorage_secrets::GetHandler`], the subjects in a
//! [`anchorage_secrets_server::ServerConfig`], the encryption keyring; this module opens the
//! stores on serve's store choice and runs the server until serve's shutdown, draining within
//! the server's `drain_timeout` alongside the HTTPS and NATS API drains.

use std::sync::Arc;

use anchorage_secrets::GetHandler;
use anchorage_secrets::admin::AdminPolicy;
use anchorage_secrets_server::{
    AdminService, EmbeddedSecrets, JetStreamConfig, JetStreamSecrets, Keyring, MappingStore,
    ReplayGuard, SecretStore, SeedSource, ServerConfig,
};
use anchorage_store::Store;
use tokio::sync::watch;

use crate::ServeError;

/// Where the secrets live.
#[derive(Clone, Debug)]
pub enum SecretsStores {
    /// In serve's own store (the embedded redb file, or whatever [`crate::StoreChoice`] gives),
    /// keeping `history` versions per secret.
    Serve {
        /// Versions kept per secret (1–64).
        history: u32,
    },
    /// In the JetStream buckets of the reference backend's layout, on the backend's client.
    JetStream(JetStreamConfig),
}

/// Administration over NATS (`<prefix>.admin.<backend>.*`): who may, and where a rotation
/// re-reads the encryption seed.
#[derive(Debug)]
pub struct SecretsAdmin {
    /// The admin public keys allowed.
    pub policy: AdminPolicy,
    /// The encryption seed's source, re-read by an online rotation (a file can change; a
    /// variable cannot).
    pub encryption_source: Option<SeedSource>,
}

/// The secrets backend to run inside serve.
pub struct SecretsBackend {
    /// The NATS connection the backend answers on (and, for JetStream, stores in).
    pub client: async_nats::Client,
    /// The protocol handler: transit key and issuer allow-lists.
    pub handler: GetHandler,
    /// Subjects, queue group, limits, drain and store timeouts.
    pub config: ServerConfig,
    /// The encryption keys values are sealed with.
    pub keyring: Arc<Keyring>,
    /// Where the secrets live.
    pub stores: SecretsStores,
    /// Administration over NATS, when admin keys are configured.
    pub admin: Option<SecretsAdmin>,
}

impl std::fmt::Debug for SecretsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsBackend")
            .field("server_xkey", &self.handler.transit().public_key())
            .field("config", &self.config)
            .field("stores", &self.stores)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// A [`SecretsBackend`] in a [`crate::ServeConfig`] (which is `Clone`): taken by the one
/// start that runs it.
#[derive(Clone)]
pub struct SecretsSlot(Arc<std::sync::Mutex<Option<SecretsBackend>>>);

impl SecretsSlot {
    /// Holds `backend` for [`crate::Server::start`].
    pub fn new(backend: SecretsBackend) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(backend))))
    }

    pub(crate) fn take(&self) -> Option<SecretsBackend> {
        self.0.lock().ok().and_then(|mut b| b.take())
    }
}

impl std::fmt::Debug for SecretsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsSlot(..)")
    }
}

/// What the started backend serves (for the start-up lines).
#[derive(Clone, Debug)]
pub struct SecretsServing {
    /// `<prefix>.v1alpha1.<backend>`.
    pub subject: String,
    /// The transit public key hosts seal to.
    pub server_xkey: String,
    /// The store: `serve's store` or the JetStream buckets.
    pub store: String,
    /// `<prefix>.admin.<backend>.*` when administration is on.
    pub admin_subject: Option<String>,
}

type Opened = (
    Arc<dyn SecretStore>,
    Arc<dyn MappingStore>,
    Arc<dyn ReplayGuard>,
    String,
);

async fn open_stores(
    backend: &SecretsBackend,
    store: &Arc<dyn Store>,
) -> Result<Opened, ServeError> {
    match &backend.stores {
        SecretsStores::Serve { history } => {
            let s = Arc::new(
                EmbeddedSecrets::new(Arc::clone(store), Arc::clone(&backend.keyring))
                    .with_history(*history),
            );
            Ok((s.clone(), s.clone(), s, "serve's store".to_owned()))
        }
        SecretsStores::JetStream(config) => {
            let s = JetStreamSecrets::open(
                backend.client.clone(),
                config,
                Arc::clone(&backend.keyring),
            )
            .await
            .map_err(ServeError::SecretsStore)?;
            for report in s.bucket_reports() {
                if report.under_replicated() || !report.serializable_cas {
                    tracing::warn!(bucket = %report, "secrets bucket");
                } else {
                    tracing::info!(bucket = %report, "secrets bucket");
                }
            }
            let desc = format!(
                "jetstream buckets {} and {}",
                config.bucket,
                config.state_bucket()
            );
            let s = Arc::new(s);
            Ok((s.clone(), s.clone(), s, desc))
        }
    }
}

/// Opens the stores and starts the backend in a task that runs until `shutdown` turns true,
/// then drains (bounded by the backend's `drain_timeout`).
pub(crate) async fn start(
    backend: SecretsBackend,
    store: &Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SecretsServing, tokio::task::JoinHandle<()>), ServeError> {
    backend.config.validate().map_err(ServeError::Secrets)?;
    let (values, mappings, replay, store_desc) = open_stores(&backend, store).await?;
    let serving = SecretsServing {
        subject: backend.config.base_subject(),
        server_xkey: backend.handler.transit().public_key().to_owned(),
        store: store_desc,
        admin_subject: backend.admin.as_ref().map(|_| {
            anchorage_secrets::admin::AdminSubjects::new(
                &backend.config.prefix,
                &backend.config.backend,
            )
            .wildcard()
        }),
    };
    let mut server = anchorage_secrets_server::Server::new(
        backend.handler,
        values,
        mappings,
        backend.config.clone(),
    );
    if let Some(admin) = backend.admin {
        if admin.policy.keys.is_empty() {
            return Err(ServeError::Secrets(
                anchorage_secrets_server::ServeError::NoAdminKeys,
            ));
        }
        server = server.with_admin(
            AdminService::new(
                admin.policy,
                &backend.config.backend,
                Some(Arc::clone(&backend.keyring)),
                admin.encryption_source,
            )
            .with_replay_guard(replay),
        );
    }
    let client = backend.client;
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        match server.run(client, stop).await {
            Ok(stopped) if stopped.drained() => {
                tracing::info!(%stopped, "secrets backend stopped");
            }
            Ok(stopped) => tracing::warn!(%stopped, "secrets backend stopped, drain cut short"),
            Err(e) => tracing::error!(error = %e, "the secrets backend stopped with an error"),
        }
    });
    Ok((serving, task))
}

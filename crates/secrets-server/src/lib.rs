//! The wasmCloud secrets protocol served over NATS, with the stores behind it.
//!
//! - [`Server`]: queue-subscribes `<prefix>.v1alpha1.<backend>.>` (several instances share the
//!   queue group), answers `server_xkey` and `get` through [`anchorage_secrets::GetHandler`], a
//!   task per request up to a limit, an audit event per request (target `anchorage::audit`,
//!   never a value), a graceful stop;
//! - [`store`]: [`SecretStore`] and [`MappingStore`], implemented by [`EmbeddedSecrets`] (the
//!   default, over `anchorage-store`), [`JetStreamSecrets`] (the reference backend's JetStream
//!   KV layout, compare-and-swap writes) and [`OpenBaoSecrets`] (KV v2, values only);
//! - [`keys`]: the encryption [`Keyring`] that seals values at rest, seeds from env or file;
//! - [`nats`]: connecting with credentials and rustls;
//! - [`hardening`]: no core dumps and a non-dumpable process, for everything holding keys.
//!
//! - [`admin`]: administration over NATS on `<prefix>.admin.<backend>.*`, only when admin keys
//!   are configured ([`Server::with_admin`]): requests signed by an admin nkey and sealed to the
//!   transit key, replies sealed to the requester ([`AdminService`]; [`AdminClient`] sends
//!   them).
//!
//! Administration (put, delete, mappings, key rotation) is otherwise the stores' API, used by
//! the CLI against the store directly; the subjects hosts use never accept it.
//!
//! ```
//! use std::sync::Arc;
//! use anchorage_secrets_server::{EmbeddedSecrets, Keyring, MappingStore, SecretStore, XKey};
//! use anchorage_secrets::SecretValue;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = EmbeddedSecrets::new(
//!     Arc::new(anchorage_store::MemoryStore::new()),
//!     Arc::new(Keyring::new(XKey::generate())),
//! );
//! let version = store.put("db-password", SecretValue::String("hunter2".into())).await?;
//! assert_eq!(version, "1");
//! let component = nkeys::KeyPair::new_module().public_key();
//! store.add_mapping(&component, &["db-password".to_owned()]).await?;
//! assert!(store.secrets_of(&component).await?.contains("db-password"));
//! # Ok::<(), anchorage_secrets_server::StoreFailure>(())
//! # }).unwrap();
//! ```

pub mod admin;
mod executor;
pub mod hardening;
pub mod keys;
pub mod nats;
mod server;
pub mod shed;
pub mod store;

pub use admin::{
    AdminCallError, AdminClient, AdminService, Executor, Operation, OperationError, Outcome,
    ReplayGuard,
};
pub use anchorage_secrets::XKey;
/// The NATS client this crate is built on (0.39), for callers that pass a connection.
pub use async_nats;
pub use hardening::{HardeningError, harden_process};
pub use keys::{Keyring, SeedSource};
pub use nats::{ConnectError, NatsAuth, NatsConfig, connect};
pub use server::{
    AUDIT_FIELD_MAX_CHARS, DEFAULT_BACKEND, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_QUEUE_BASE, DEFAULT_STORE_TIMEOUT, ServeError, Server, ServerConfig, Stopped,
};
pub use shed::{
    DEFAULT_MAX_QUEUE_WAIT, DEFAULT_MAX_QUEUED, MAX_IN_FLIGHT_PER_REQUESTER,
    MAX_TRACKED_REQUESTERS, REQUESTER_FAILURE_BURST, REQUESTER_FAILURE_REFILL,
};
pub use store::{
    BucketReport, EmbeddedSecrets, JetStreamConfig, JetStreamSecrets, MappingStore, OpenBaoAuth,
    OpenBaoConfig, OpenBaoSecrets, ReplicaChoice, RotationReport, SecretInfo, SecretStore,
    StoreFailure,
};

/// SIGINT and SIGTERM, listened for from creation on: the first one starts the drain
/// ([`Server::run`]'s `shutdown`), a second one is for exiting at once (the caller's choice).
#[derive(Debug)]
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (from now on the signals no longer kill the process by default).
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Waits for SIGINT or SIGTERM (for [`Server::run`]'s `shutdown`).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

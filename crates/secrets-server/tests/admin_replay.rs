//! Replayed admin requests (issue 19, item 4): every instance shares the transit key a token is
//! sealed to, so a per-process `jti` cache let a captured `add_mapping` restore a mapping that a
//! `remove_mapping` took away, once the capture reached another instance or the same one after
//! a restart. The attack here replays the exact captured bytes (header and sealed body):
//!
//! - two instances in one queue group on one real `nats-server`, JetStream store: refused by
//!   either instance (each alone in turn), the mapping stays removed;
//! - the embedded store, the server restarted (the redb file reopened): refused.
//!
//! Controls: a fresh request (a new `jti`) is accepted; and without the shared guard (the old
//! behaviour) the replay is accepted and the mapping comes back, which is the attack.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anchorage_secrets::XKey;
use anchorage_secrets::admin::{
    ADMIN_XKEY_HEADER, AdminClaims, AdminError, AdminOp, AdminPolicy, AdminRequest, AdminSigner,
    AdminSubjects, DEFAULT_ADMIN_TOKEN_LIFETIME, SealedAdminRequest,
};
use anchorage_secrets_server::{
    AdminClient, AdminService, EmbeddedSecrets, JetStreamConfig, JetStreamSecrets, Keyring,
    MappingStore, ServerConfig,
};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, PREFIX, Running, serve_with_admin};
use nkeys::KeyPair;
use secrecy::SecretString;
use serde_json::Value;

/// What every instance shares: the transit seed, the encryption seed and the admin key.
struct Shared {
    transit: SecretString,
    encryption: SecretString,
    admin: SecretString,
    entity: String,
}

impl Shared {
    fn new() -> Self {
        Self {
            transit: XKey::generate().seed(),
            encryption: XKey::generate().seed(),
            admin: SecretString::from(KeyPair::new_user().seed().unwrap()),
            entity: KeyPair::new_module().public_key(),
        }
    }

    fn signer(&self) -> AdminSigner {
        AdminSigner::from_seed(&self.admin, "test").unwrap()
    }

    fn keyring(&self) -> Arc<Keyring> {
        Arc::new(Keyring::new(
            XKey::from_seed(&self.encryption, "test").unwrap(),
        ))
    }

    /// The admin service of one instance; `guard` records tokens in the instance's store.
    fn service(
        &self,
        guard: Option<Arc<dyn anchorage_secrets_server::ReplayGuard>>,
    ) -> AdminService {
        let keys: BTreeSet<String> = [self.signer().public_key()].into();
        let service =
            AdminService::new(AdminPolicy::new(keys), BACKEND, Some(self.keyring()), None);
        match guard {
            Some(guard) => service.with_replay_guard(guard),
            None => service,
        }
    }

    fn mapping(&self, op: AdminOp) -> AdminRequest {
        AdminRequest {
            op: Some(op),
            claims: AdminClaims {
                entity: Some(self.entity.clone()),
                secrets: vec!["db-password".to_owned()],
                ..AdminClaims::default()
            },
            value: None,
        }
    }

    /// Signs and seals `add_mapping` as the admin client would, keeping the bytes to replay.
    fn capture_add(&self) -> SealedAdminRequest {
        let transit = XKey::from_seed(&self.transit, "t").unwrap();
        self.signer()
            .seal(
                &self.mapping(AdminOp::AddMapping),
                BACKEND,
                transit.public_key(),
                SystemTime::now(),
                DEFAULT_ADMIN_TOKEN_LIFETIME,
            )
            .unwrap()
    }

    async fn client(&self, url: &str) -> AdminClient {
        let nc = async_nats::connect(url).await.unwrap();
        AdminClient::new(nc, PREFIX, BACKEND, self.signer()).with_timeout(Duration::from_secs(3))
    }
}

/// Publishes captured bytes on the `add_mapping` subject: `Ok(result)` or the server's error.
async fn send(url: &str, sealed: &SealedAdminRequest) -> Result<Value, AdminError> {
    let nc = async_nats::connect(url).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ADMIN_XKEY_HEADER, sealed.header.as_str());
    let subject = AdminSubjects::new(PREFIX, BACKEND).subject(AdminOp::AddMapping);
    let reply = nc
        .request_with_headers(subject, headers, sealed.body.clone().into())
        .await
        .unwrap();
    let key = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(wasmcloud_secrets_types::RESPONSE_XKEY))
        .map(|v| v.to_string());
    match sealed.open_reply(key.as_deref(), &reply.payload) {
        Ok(plain) => Ok(serde_json::from_slice(&plain).unwrap()),
        Err(anchorage_secrets::admin::AdminReplyError::Refused(e)) => Err(e),
        Err(other) => panic!("malformed reply: {other:?}"),
    }
}

fn replayed(result: Result<Value, AdminError>) {
    assert!(
        matches!(result, Err(AdminError::Replayed(_))),
        "the replay was not refused as one: {result:?}"
    );
}

async fn mapped(store: &dyn MappingStore, entity: &str) -> bool {
    store
        .secrets_of(entity)
        .await
        .unwrap()
        .contains("db-password")
}

async fn jetstream(url: &str, shared: &Shared) -> Arc<JetStreamSecrets> {
    Arc::new(
        JetStreamSecrets::open(
            async_nats::connect(url).await.unwrap(),
            &JetStreamConfig::new(BACKEND),
            shared.keyring(),
        )
        .await
        .unwrap(),
    )
}

/// One instance on the JetStream store (its own connection and store handle).
async fn js_instance(
    url: &str,
    shared: &Shared,
    guarded: bool,
) -> (Running, Arc<JetStreamSecrets>) {
    let store = jetstream(url, shared).await;
    let guard = guarded.then(|| store.clone() as Arc<dyn anchorage_secrets_server::ReplayGuard>);
    let running = serve_with_admin(
        url,
        &shared.transit,
        store.clone(),
        store.clone(),
        ServerConfig::new(PREFIX, BACKEND),
        Some(shared.service(guard)),
    )
    .await;
    (running, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_another_instance_of_the_queue_group_is_refused() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let shared = Shared::new();
    // Both instances in the default queue group (`wasmcloud_secrets.nats-kv`).
    let (a, store) = js_instance(&url, &shared, true).await;
    let (b, _) = js_instance(&url, &shared, true).await;
    let admin = shared.client(&url).await;

    let captured = shared.capture_add();
    send(&url, &captured).await.unwrap();
    assert!(mapped(store.as_ref(), &shared.entity).await);
    admin
        .call(&shared.mapping(AdminOp::RemoveMapping))
        .await
        .unwrap();
    assert!(!mapped(store.as_ref(), &shared.entity).await);

    // Replayed while both serve: whichever instance takes it refuses it.
    for _ in 0..8 {
        replayed(send(&url, &captured).await);
    }
    // Each instance alone in turn, so each certainly sees it.
    b.stop().await;
    replayed(send(&url, &captured).await);
    let (b, _) = js_instance(&url, &shared, true).await;
    a.stop().await;
    replayed(send(&url, &captured).await);
    assert!(
        !mapped(store.as_ref(), &shared.entity).await,
        "a replay restored the removed mapping"
    );

    // Control: a fresh request (a new jti) is served.
    let fresh = shared.capture_add();
    assert_ne!(fresh.id, captured.id);
    send(&url, &fresh).await.unwrap();
    assert!(mapped(store.as_ref(), &shared.entity).await);
    b.stop().await;
}

/// The attack as the issue found it: instances that only remember tokens in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_shared_guard_the_replay_restores_the_mapping() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let shared = Shared::new();
    let (a, store) = js_instance(&url, &shared, false).await;
    let captured = shared.capture_add();
    send(&url, &captured).await.unwrap();
    // The second instance joins, the first leaves: the removal and the replay reach the second.
    let (b, _) = js_instance(&url, &shared, false).await;
    a.stop().await;
    shared
        .client(&url)
        .await
        .call(&shared.mapping(AdminOp::RemoveMapping))
        .await
        .unwrap();
    assert!(!mapped(store.as_ref(), &shared.entity).await);
    send(&url, &captured).await.unwrap();
    assert!(mapped(store.as_ref(), &shared.entity).await);
    b.stop().await;
}

async fn embedded_instance(
    url: &str,
    shared: &Shared,
    path: &std::path::Path,
    guarded: bool,
) -> (Running, Arc<EmbeddedSecrets>) {
    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(EmbeddedStore::open(path).unwrap()),
        shared.keyring(),
    ));
    let guard = guarded.then(|| store.clone() as Arc<dyn anchorage_secrets_server::ReplayGuard>);
    let running = serve_with_admin(
        url,
        &shared.transit,
        store.clone(),
        store.clone(),
        ServerConfig::new(PREFIX, BACKEND),
        Some(shared.service(guard)),
    )
    .await;
    (running, store)
}

/// Runs add (captured), remove, restart (the redb file closed and reopened), replay; returns
/// the replay's answer and whether the mapping is back.
async fn replay_after_restart(guarded: bool) -> Option<(Result<Value, AdminError>, bool, Shared)> {
    let nats = NatsServer::start()?;
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.redb");
    let shared = Shared::new();
    let (server, store) = embedded_instance(&url, &shared, &path, guarded).await;
    let captured = shared.capture_add();
    send(&url, &captured).await.unwrap();
    shared
        .client(&url)
        .await
        .call(&shared.mapping(AdminOp::RemoveMapping))
        .await
        .unwrap();
    assert!(!mapped(store.as_ref(), &shared.entity).await);
    server.stop().await;
    drop(store);

    // Restarted: a new process's memory, the same file.
    let (server, store) = embedded_instance(&url, &shared, &path, guarded).await;
    let answer = send(&url, &captured).await;
    let back = mapped(store.as_ref(), &shared.entity).await;
    if guarded {
        // Control: a fresh request is served by the restarted instance.
        send(&url, &shared.capture_add()).await.unwrap();
        assert!(mapped(store.as_ref(), &shared.entity).await);
    }
    server.stop().await;
    Some((answer, back, shared))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_restart_is_refused() {
    let Some((answer, back, _)) = replay_after_restart(true).await else {
        return;
    };
    replayed(answer);
    assert!(
        !back,
        "a replay after the restart restored the removed mapping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_shared_guard_a_restart_forgets_the_token() {
    let Some((answer, back, _)) = replay_after_restart(false).await else {
        return;
    };
    answer.unwrap();
    assert!(back);
}

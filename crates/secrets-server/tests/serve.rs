//! The server on a real `nats-server -js`, asked by the real `wasmcloud-secrets-client` 0.9 with
//! JWTs minted by wascap, over the embedded store.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anchorage_secrets::{SecretValue, XKey};
use anchorage_secrets_server::{
    EmbeddedSecrets, Keyring, MappingStore, SecretStore, ServerConfig, StoreFailure,
};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use async_trait::async_trait;
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use nkeys::KeyPair;
use secrecy::SecretString;
use serde_json::{Value, json};

struct Fixture {
    nats: NatsServer,
    ids: Identities,
    store: Arc<EmbeddedSecrets>,
    seed: SecretString,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Option<Fixture> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir().unwrap();
    let raw = EmbeddedStore::open(dir.path().join("secrets.redb")).unwrap();
    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(raw),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    let ids = Identities::new();
    store
        .put(
            "db-password",
            SecretValue::String(SecretString::from("old")),
        )
        .await
        .unwrap();
    store
        .put(
            "db-password",
            SecretValue::String(SecretString::from("hunter2")),
        )
        .await
        .unwrap();
    // Valid UTF-8, but stored as binary: must come back as binary.
    store
        .put(
            "tls-key",
            SecretValue::Binary(vec![0u8, 1, 254, 255, b'a'].into()),
        )
        .await
        .unwrap();
    store
        .put("text-bytes", SecretValue::Binary(b"abc".to_vec().into()))
        .await
        .unwrap();
    let names: Vec<String> = ["db-password", "tls-key", "text-bytes", "missing"]
        .map(str::to_owned)
        .into();
    store.add_mapping(&ids.entity(), &names).await.unwrap();
    Some(Fixture {
        nats,
        ids,
        store,
        seed: XKey::generate().seed(),
        _dir: dir,
    })
}

impl Fixture {
    async fn start(&self) -> common::Running {
        self.start_with(ServerConfig::new(PREFIX, BACKEND)).await
    }

    async fn start_with(&self, config: ServerConfig) -> common::Running {
        serve(
            &self.nats.url(),
            &self.seed,
            self.store.clone(),
            self.store.clone(),
            config,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_latest_versioned_string_and_binary_secrets() {
    let Some(f) = fixture().await else { return };
    let server = f.start().await;
    let c = client(&f.nats.url()).await;

    let (s, b, v) = get(&c, f.ids.request("db-password", None)).await.unwrap();
    assert_eq!((s.as_deref(), b, v.as_str()), (Some("hunter2"), None, "2"));
    let (s, _, v) = get(&c, f.ids.request("db-password", Some("1")))
        .await
        .unwrap();
    assert_eq!((s.as_deref(), v.as_str()), (Some("old"), "1"));
    let (s, b, _) = get(&c, f.ids.request("tls-key", None)).await.unwrap();
    assert_eq!((s, b), (None, Some(vec![0u8, 1, 254, 255, b'a'])));
    let (s, b, _) = get(&c, f.ids.request("text-bytes", None)).await.unwrap();
    assert_eq!((s, b), (None, Some(b"abc".to_vec())));
    server.stop().await;
}

/// A raw request on the `get` subject, as a misbehaving peer would send it.
async fn raw_get(
    nc: &async_nats::Client,
    header: Option<&str>,
    body: Vec<u8>,
) -> (Option<String>, Value) {
    let subject = format!("{PREFIX}.v1alpha1.{BACKEND}.get");
    let reply = match header {
        Some(h) => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(wasmcloud_secrets_types::WASMCLOUD_HOST_XKEY, h);
            nc.request_with_headers(subject, headers, body.into())
                .await
                .unwrap()
        }
        None => nc.request(subject, body.into()).await.unwrap(),
    };
    let response_key = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(wasmcloud_secrets_types::RESPONSE_XKEY))
        .map(|v| v.to_string());
    let json = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    (response_key, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_the_right_error_and_the_server_keeps_serving() {
    let Some(f) = fixture().await else { return };
    let server = f.start().await;
    let c = client(&f.nats.url()).await;
    let nc = async_nats::connect(f.nats.url()).await.unwrap();
    let ids = &f.ids;
    let good = || async {
        let (s, _, _) = get(&c, ids.request("db-password", None)).await.unwrap();
        assert_eq!(s.as_deref(), Some("hunter2"));
    };

    // Unmapped name and unmapped entity.
    f.store
        .put("other", SecretValue::String(SecretString::from("x")))
        .await
        .unwrap();
    assert_eq!(
        get(&c, ids.request("other", None)).await.unwrap_err(),
        "server error: Error fetching secret: unauthorized"
    );
    good().await;
    let stranger = Identities::new();
    assert!(
        get(&c, stranger.request("db-password", None))
            .await
            .unwrap_err()
            .ends_with("unauthorized")
    );
    good().await;

    // Mapped but absent.
    assert_eq!(
        get(&c, ids.request("missing", None)).await.unwrap_err(),
        "server error: Secret not found"
    );
    assert_eq!(
        get(&c, ids.request("db-password", Some("99")))
            .await
            .unwrap_err(),
        "server error: Secret not found"
    );
    good().await;

    // Forged (signed by another key than the issuer it names) and expired entity JWTs.
    let forged = ids.component_jwt_with(&KeyPair::new_account(), None);
    let err = get(
        &c,
        ids.request_with("db-password", None, forged, ids.host_jwt()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "server error: Invalid Entity JWT: signature does not verify against issuer {}",
            ids.account.public_key()
        )
    );
    let expired = ids.component_jwt_with(&ids.account, Some(1));
    let err = get(
        &c,
        ids.request_with("db-password", None, expired, ids.host_jwt()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "server error: Invalid Entity JWT: token expired at 1 (unix seconds)"
    );
    good().await;

    // An entity JWT passed as the host JWT.
    let err = get(
        &c,
        ids.request_with(
            "db-password",
            None,
            ids.component_jwt(),
            ids.component_jwt(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "server error: Invalid Host JWT: subject {} is not a host server key (N…)",
            ids.entity()
        )
    );
    good().await;

    // Header problems: missing, malformed, someone else's key.
    let server_key = nkeys::XKey::from_public_key(
        std::str::from_utf8(
            &nc.request(
                format!("{PREFIX}.v1alpha1.{BACKEND}.server_xkey"),
                "".into(),
            )
            .await
            .unwrap()
            .payload,
        )
        .unwrap(),
    )
    .unwrap();
    let requester = nkeys::XKey::new();
    let plain = serde_json::to_vec(&ids.request("db-password", None)).unwrap();
    let sealed = requester.seal(&plain, &server_key).unwrap();
    let invalid_xkey = json!({"error": "InvalidXKey"});
    assert_eq!(
        raw_get(&nc, None, sealed.clone()).await,
        (None, invalid_xkey.clone())
    );
    assert_eq!(
        raw_get(&nc, Some("not-a-key"), sealed.clone()).await,
        (None, invalid_xkey.clone())
    );
    assert_eq!(
        raw_get(&nc, Some(&ids.entity()), sealed.clone()).await,
        (None, invalid_xkey)
    );
    assert_eq!(
        raw_get(&nc, Some(&nkeys::XKey::new().public_key()), sealed.clone()).await,
        (None, json!({"error": "DecryptionError"}))
    );
    good().await;

    // Tampered ciphertext, garbage, an empty and an oversize payload. Each from a requester
    // key of its own, as real hosts send (one xkey per request): a key whose requests keep
    // failing verification is throttled before anything is opened (`shed`, tested in
    // attack.rs), which is not what this test is about.
    let fresh = || {
        let key = nkeys::XKey::new();
        let header = key.public_key();
        (key, header)
    };
    for i in [0, 5, 20, sealed.len() / 2, sealed.len() - 1] {
        let (key, header) = fresh();
        let mut tampered = key.seal(&plain, &server_key).unwrap();
        tampered[i] ^= 0x40;
        assert_eq!(
            raw_get(&nc, Some(&header), tampered).await,
            (None, json!({"error": "DecryptionError"})),
            "byte {i}"
        );
    }
    assert_eq!(
        raw_get(&nc, Some(&fresh().1), b"{\"key\":\"x\"}".to_vec()).await,
        (None, json!({"error": "DecryptionError"}))
    );
    assert_eq!(
        raw_get(&nc, Some(&fresh().1), Vec::new()).await,
        (None, json!({"error": "InvalidPayload"}))
    );
    assert_eq!(
        raw_get(&nc, Some(&fresh().1), vec![7u8; 200 * 1024]).await,
        (None, json!({"error": "InvalidPayload"}))
    );
    // Sealed but not a request.
    let (key, header) = fresh();
    let not_json = key.seal(b"not json", &server_key).unwrap();
    assert_eq!(
        raw_get(&nc, Some(&header), not_json).await,
        (None, json!({"error": "InvalidRequest"}))
    );
    let header = requester.public_key();
    // The untouched request still works.
    let (response_key, _) = raw_get(&nc, Some(&header), sealed).await;
    assert!(response_key.is_some_and(|k| k.starts_with('X')));
    good().await;

    // Unknown operations, including the reference backend's admin subjects.
    for op in [
        "put_secret",
        "add_mapping.MABC",
        "remove_mapping",
        "nonsense",
        "get.extra",
    ] {
        let reply = nc
            .request(
                format!("{PREFIX}.v1alpha1.{BACKEND}.{op}"),
                "[\"db-password\"]".into(),
            )
            .await
            .unwrap();
        assert!(
            reply
                .headers
                .is_none_or(|h| h.get("Server-Response-Xkey").is_none())
        );
        let json: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(
            json["error"]["Other"],
            format!("unknown operation {op}"),
            "{op}"
        );
    }
    // The admin subjects changed nothing.
    assert_eq!(
        f.store.secrets_of("MABC").await.unwrap(),
        BTreeSet::<String>::new()
    );
    good().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_server_key_and_hosts_keep_working() {
    let Some(f) = fixture().await else { return };
    let first = f.start().await;
    // The client fetches the server xkey once, as a host does, and keeps it.
    let c = client(&f.nats.url()).await;
    assert!(get(&c, f.ids.request("db-password", None)).await.is_ok());
    first.stop().await;
    let second = f.start().await;
    let (s, _, _) = get(&c, f.ids.request("db-password", None)).await.unwrap();
    assert_eq!(s.as_deref(), Some("hunter2"));
    second.stop().await;
}

/// Counts the requests that reached one instance.
struct Counting {
    inner: Arc<EmbeddedSecrets>,
    seen: AtomicUsize,
}

#[async_trait]
impl MappingStore for Counting {
    async fn secrets_of(&self, entity: &str) -> Result<BTreeSet<String>, StoreFailure> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.inner.secrets_of(entity).await
    }
    async fn add_mapping(&self, e: &str, n: &[String]) -> Result<BTreeSet<String>, StoreFailure> {
        self.inner.add_mapping(e, n).await
    }
    async fn remove_mapping(
        &self,
        e: &str,
        n: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        self.inner.remove_mapping(e, n).await
    }
    async fn list_mappings(
        &self,
    ) -> Result<std::collections::BTreeMap<String, BTreeSet<String>>, StoreFailure> {
        self.inner.list_mappings().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_group() {
    let Some(f) = fixture().await else { return };
    let a = Arc::new(Counting {
        inner: f.store.clone(),
        seen: AtomicUsize::new(0),
    });
    let b = Arc::new(Counting {
        inner: f.store.clone(),
        seen: AtomicUsize::new(0),
    });
    let url = f.nats.url();
    let config = ServerConfig::new(PREFIX, BACKEND);
    let one = serve(&url, &f.seed, f.store.clone(), a.clone(), config.clone()).await;
    let two = serve(&url, &f.seed, f.store.clone(), b.clone(), config).await;
    let c = client(&url).await;
    for _ in 0..40 {
        let (s, _, _) = get(&c, f.ids.request("db-password", None)).await.unwrap();
        assert_eq!(s.as_deref(), Some("hunter2"));
    }
    let (na, nb) = (a.seen.load(Ordering::SeqCst), b.seen.load(Ordering::SeqCst));
    assert_eq!(na + nb, 40, "each request answered once");
    assert!(na > 0 && nb > 0, "both instances served ({na}, {nb})");
    // One instance stops; the other keeps answering.
    one.stop().await;
    assert!(get(&c, f.ids.request("db-password", None)).await.is_ok());
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_answered() {
    let Some(f) = fixture().await else { return };
    let mut config = ServerConfig::new(PREFIX, BACKEND);
    config.max_in_flight = 4;
    // 64 requests 4 at a time: on a loaded machine the last wait longer than the default queue
    // wait (2 s, after which a request is answered "busy" unopened); this test is about every
    // request being answered, so let them wait.
    config.max_queue_wait = std::time::Duration::from_secs(60);
    let server = f.start_with(config).await;
    let c = Arc::new(client(&f.nats.url()).await);
    let ids = Arc::new(f.ids);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (c, ids) = (c.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 { "db-password" } else { "tls-key" };
            get(&c, ids.request(key, None)).await.unwrap()
        }));
    }
    // Every answer is the value asked for (the bound and the overlap are asserted against a
    // counting store in tests/concurrency.rs).
    for (i, t) in tasks.into_iter().enumerate() {
        let answer = t.await.unwrap();
        let want = if i.is_multiple_of(2) {
            (Some("hunter2".to_owned()), None, "2".to_owned())
        } else {
            (None, Some(vec![0u8, 1, 254, 255, b'a']), "1".to_owned())
        };
        assert_eq!(answer, want, "request {i}");
    }
    server.stop().await;
}

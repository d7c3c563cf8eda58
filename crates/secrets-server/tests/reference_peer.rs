//! The real reference backend — wasmCloud's `secrets-nats-kv` 0.2.0, its own `Api` and client
//! functions — as the peer of our JetStream store on one real `nats-server -js`: what it writes
//! we read and serve to the real wasmCloud client, what we write it reads and serves. Each
//! direction has its negative control: the other side with a different encryption key reads
//! nothing, and an entity without a mapping is refused by both.
//!
//! The reference listens under its own subject prefix ([`REFERENCE_PREFIX`]) with the same
//! backend name, so both share the buckets (`WASMCLOUD_SECRETS`, `SECRETS_nats-kv_state`)
//! while answering separate subjects.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anchorage_secrets::{SecretLookup, SecretValue, XKey};
use anchorage_secrets_server::{
    JetStreamConfig, JetStreamSecrets, Keyring, MappingStore, SecretStore, ServerConfig,
    StoreFailure,
};
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use secrecy::ExposeSecret as _;
use secrets_nats_kv::PutSecretRequest;
use tokio::task::JoinHandle;

/// Where the reference answers (ours answers under [`PREFIX`]).
const REFERENCE_PREFIX: &str = "reference.secrets";
/// The reference's default secrets bucket, which is ours too.
const BUCKET: &str = "WASMCLOUD_SECRETS";

/// Runs the reference backend (its `Api::run`, as its binary does) and waits until it answers
/// `server_xkey` under [`REFERENCE_PREFIX`].
async fn start_reference(
    url: &str,
    transit: &nkeys::XKey,
    encryption: &nkeys::XKey,
) -> JoinHandle<()> {
    let api = secrets_nats_kv::Api::new(
        nkeys::XKey::from_seed(&transit.seed().unwrap()).unwrap(),
        nkeys::XKey::from_seed(&encryption.seed().unwrap()).unwrap(),
        async_nats::connect(url).await.unwrap(),
        REFERENCE_PREFIX.to_owned(),
        BACKEND.to_owned(),
        BUCKET.to_owned(),
        64,
        "reference".to_owned(),
        "v1alpha1".to_owned(),
    );
    let task = tokio::spawn(async move { api.run().await.expect("reference backend runs") });
    let probe = async_nats::connect(url).await.unwrap();
    let subject = format!("{REFERENCE_PREFIX}.v1alpha1.{BACKEND}.server_xkey");
    for _ in 0..100 {
        let asked = tokio::time::timeout(
            Duration::from_millis(500),
            probe.request(subject.clone(), "".into()),
        )
        .await;
        if let Ok(Ok(reply)) = asked {
            assert_eq!(
                std::str::from_utf8(&reply.payload).unwrap(),
                transit.public_key(),
                "the reference serves its transit key"
            );
            return task;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the reference backend never answered on {subject}");
}

/// Our store on the same buckets, sealing with `encryption`.
async fn our_store(url: &str, encryption: &nkeys::XKey) -> Arc<JetStreamSecrets> {
    let key = XKey::from_seed(&encryption.seed().unwrap().into(), "test").unwrap();
    Arc::new(
        JetStreamSecrets::open(
            async_nats::connect(url).await.unwrap(),
            &JetStreamConfig::new(BACKEND),
            Arc::new(Keyring::new(key)),
        )
        .await
        .unwrap(),
    )
}

/// The reference's own add_mapping request; its reply must be `ok` (its client function
/// ignores the reply, so a failed write would pass unseen).
async fn reference_add_mapping(nc: &async_nats::Client, entity: &str, names: &[&str]) {
    let names: HashSet<&str> = names.iter().copied().collect();
    let reply = nc
        .request(
            format!("{REFERENCE_PREFIX}.v1alpha1.{BACKEND}.add_mapping.{entity}"),
            serde_json::to_vec(&names).unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(std::str::from_utf8(&reply.payload).unwrap(), "ok");
}

/// Our latest (or `version`) of `key`, as `(string, bytes, version)`.
async fn ours(
    store: &JetStreamSecrets,
    key: &str,
    version: Option<&str>,
) -> Option<(Option<String>, Option<Vec<u8>>, String)> {
    let got = store
        .get(SecretLookup {
            key,
            field: None,
            version,
            policy: "",
        })
        .await
        .unwrap()?;
    Some(match got.value {
        SecretValue::String(s) => (Some(s.expose_secret().to_owned()), None, got.version),
        SecretValue::Binary(b) => (None, Some(b.expose_secret().to_vec()), got.version),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_writes_are_read_and_served_by_ours() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let transit = nkeys::XKey::new();
    let encryption = nkeys::XKey::new();
    // Ours first: it creates the buckets without compression, which nats-server 2.9 lacks
    // (the reference creates them with it and then only opens existing ones).
    let store = our_store(&url, &encryption).await;
    let reference = start_reference(&url, &transit, &encryption).await;
    let nc = async_nats::connect(&url).await.unwrap();
    let ids = Identities::new();

    // The reference's put_secret client, sealed to its transit key, twice for one name.
    for (key, string, binary) in [
        ("db-password", Some("old"), None),
        ("db-password", Some("hunter2"), None),
        ("tls-key", None, Some(vec![0u8, 159, 146, 150, 255])),
    ] {
        secrets_nats_kv::client::put_secret(
            &nc,
            REFERENCE_PREFIX,
            &nkeys::XKey::from_public_key(&transit.public_key()).unwrap(),
            PutSecretRequest {
                key: key.to_owned(),
                version: String::new(),
                string_secret: string.map(str::to_owned),
                binary_secret: binary,
            },
        )
        .await
        .unwrap();
    }
    // Its versions, through its own reader.
    let latest = secrets_nats_kv::client::get_secret(&nc, BUCKET, &encryption, "db-password", None)
        .await
        .unwrap();
    assert_eq!(latest.string_secret.as_deref(), Some("hunter2"));
    let v2 = latest.version;
    let v1 = (v2.parse::<u64>().unwrap() - 1).to_string();
    let old =
        secrets_nats_kv::client::get_secret(&nc, BUCKET, &encryption, "db-password", Some(&v1))
            .await
            .unwrap();
    assert_eq!(old.string_secret.as_deref(), Some("old"));
    reference_add_mapping(&nc, &ids.entity(), &["db-password", "tls-key"]).await;

    // Read through our store: values, versions, binary, and the mapping.
    assert_eq!(
        ours(&store, "db-password", None).await,
        Some((Some("hunter2".to_owned()), None, v2.clone()))
    );
    assert_eq!(
        ours(&store, "db-password", Some(&v1)).await,
        Some((Some("old".to_owned()), None, v1.clone()))
    );
    let (s, b, _) = ours(&store, "tls-key", None).await.unwrap();
    assert_eq!((s, b), (None, Some(vec![0, 159, 146, 150, 255])));
    assert_eq!(
        store.secrets_of(&ids.entity()).await.unwrap(),
        BTreeSet::from(["db-password".to_owned(), "tls-key".to_owned()])
    );

    // Served by our server to the real wasmCloud client.
    let seed = XKey::generate().seed();
    let server = serve(
        &url,
        &seed,
        store.clone(),
        store.clone(),
        ServerConfig::new(PREFIX, BACKEND),
    )
    .await;
    let c = client(&url).await;
    let (s, _, v) = get(&c, ids.request("db-password", None)).await.unwrap();
    assert_eq!((s.as_deref(), v), (Some("hunter2"), v2.clone()));
    let (s, _, v) = get(&c, ids.request("db-password", Some(&v1)))
        .await
        .unwrap();
    assert_eq!((s.as_deref(), v), (Some("old"), v1));
    // Negative control: an entity the reference mapped nothing to is refused by ours.
    let err = get(&c, Identities::new().request("db-password", None))
        .await
        .unwrap_err();
    assert!(err.ends_with("unauthorized"), "{err}");

    // Negative control: our store with another encryption key cannot open the reference's
    // values (an error naming the failure, never the value or a wrong value).
    let stranger = our_store(&url, &nkeys::XKey::new()).await;
    let err = stranger
        .get(SecretLookup {
            key: "db-password",
            field: None,
            version: None,
            policy: "",
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, StoreFailure::Undecryptable { key, version } if key == "db-password" && *version == v2),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    server.stop().await;
    reference.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_writes_are_read_and_served_by_the_reference() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let transit = nkeys::XKey::new();
    let encryption = nkeys::XKey::new();
    let store = our_store(&url, &encryption).await;
    let reference = start_reference(&url, &transit, &encryption).await;
    let nc = async_nats::connect(&url).await.unwrap();
    let ids = Identities::new();

    let v1 = store
        .put("api-token", SecretValue::String("first".into()))
        .await
        .unwrap();
    let v2 = store
        .put("api-token", SecretValue::String("s3cret".into()))
        .await
        .unwrap();
    let bin = store
        .put(
            "tls-key",
            SecretValue::Binary(vec![0u8, 159, 146, 150, 255].into()),
        )
        .await
        .unwrap();
    store
        .add_mapping(&ids.entity(), &["api-token".to_owned()])
        .await
        .unwrap();

    // The reference's reader opens our values with the shared encryption key.
    let got = secrets_nats_kv::client::get_secret(&nc, BUCKET, &encryption, "api-token", None)
        .await
        .unwrap();
    assert_eq!(
        (got.string_secret.as_deref(), got.version.as_str()),
        (Some("s3cret"), v2.as_str())
    );
    let got = secrets_nats_kv::client::get_secret(&nc, BUCKET, &encryption, "api-token", Some(&v1))
        .await
        .unwrap();
    assert_eq!(
        (got.string_secret.as_deref(), got.version.as_str()),
        (Some("first"), v1.as_str())
    );
    // Binary: the reference hands back the stored (sealed) bytes, and they open with the key
    // to exactly ours, so the sealing is the same.
    let got = secrets_nats_kv::client::get_secret(&nc, BUCKET, &encryption, "tls-key", None)
        .await
        .unwrap();
    assert_eq!(got.version, bin);
    let sealed = got.binary_secret.unwrap();
    assert_eq!(
        encryption.open(&sealed, &encryption).unwrap(),
        vec![0, 159, 146, 150, 255]
    );

    // The reference serves our value under our mapping to the real wasmCloud client.
    let rc = wasmcloud_secrets_client::Client::new(
        BACKEND,
        REFERENCE_PREFIX,
        async_nats::connect(&url).await.unwrap(),
    )
    .await
    .unwrap();
    let (s, _, v) = get(&rc, ids.request("api-token", None)).await.unwrap();
    assert_eq!((s.as_deref(), v), (Some("s3cret"), v2));
    // Negative controls: a name we did not map, and an entity we mapped nothing to.
    let err = get(&rc, ids.request("tls-key", None)).await.unwrap_err();
    assert!(err.ends_with("unauthorized"), "{err}");
    let err = get(&rc, Identities::new().request("api-token", None))
        .await
        .unwrap_err();
    assert!(err.ends_with("unauthorized"), "{err}");

    // Negative control: the reference's reader with another encryption key opens nothing.
    let Err(err) =
        secrets_nats_kv::client::get_secret(&nc, BUCKET, &nkeys::XKey::new(), "api-token", None)
            .await
    else {
        panic!("another encryption key opened our value");
    };
    assert_eq!(
        err.to_string(),
        "failed to decrypt secret: ensure the encryption key is correct"
    );
    reference.abort();
}

//! The JetStream KV store against a real `nats-server -js`: buckets written in the reference
//! `secrets-nats-kv` layout (with async-nats directly, as that backend writes them) read back
//! through ours and are served to the real client; our writes use compare-and-swap.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anchorage_secrets::{SecretLookup, SecretValue, XKey};
use anchorage_secrets_server::{
    JetStreamConfig, JetStreamSecrets, Keyring, MappingStore, SecretStore, ServerConfig,
};
use anchorage_test_support::nats::NatsServer;
use async_nats::jetstream::{self, kv};
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use secrecy::ExposeSecret as _;

/// Writes what the reference backend writes: buckets as its `run` creates them (less
/// compression, which nats-server 2.9 lacks), values sealed by the encryption key to itself,
/// the mapping as a JSON set.
async fn write_reference_layout(
    url: &str,
    encryption: &nkeys::XKey,
    entity: &str,
) -> (u64, u64, u64) {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let secrets = js
        .create_key_value(kv::Config {
            bucket: "WASMCLOUD_SECRETS".into(),
            description: "Secrets store".into(),
            history: 64,
            ..Default::default()
        })
        .await
        .unwrap();
    let state = js
        .create_key_value(kv::Config {
            bucket: format!("SECRETS_{BACKEND}_state"),
            description: "Secrets state store".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let seal = |v: &[u8]| encryption.seal(v, encryption).unwrap();
    let v1 = secrets
        .put("db-password", seal(b"old").into())
        .await
        .unwrap();
    let v2 = secrets
        .put("db-password", seal(b"hunter2").into())
        .await
        .unwrap();
    let bin = secrets
        .put("tls-key", seal(&[0, 159, 146, 150, 255]).into())
        .await
        .unwrap();
    let names: HashSet<String> = ["db-password", "tls-key", "gone"].map(str::to_owned).into();
    state
        .put(entity, serde_json::to_string(&names).unwrap().into())
        .await
        .unwrap();
    (v1, v2, bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_layout_reads_back_and_is_served() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let ids = Identities::new();
    let encryption = nkeys::XKey::new();
    let (v1, v2, bin) = write_reference_layout(&url, &encryption, &ids.entity()).await;

    let key = XKey::from_seed(&encryption.seed().unwrap().into(), "test").unwrap();
    let store = Arc::new(
        JetStreamSecrets::open(
            async_nats::connect(&url).await.unwrap(),
            &JetStreamConfig::new(BACKEND),
            Arc::new(Keyring::new(key)),
        )
        .await
        .unwrap(),
    );
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
    assert_eq!((s.as_deref(), v), (Some("hunter2"), v2.to_string()));
    let (s, _, v) = get(&c, ids.request("db-password", Some(&v1.to_string())))
        .await
        .unwrap();
    assert_eq!((s.as_deref(), v), (Some("old"), v1.to_string()));
    // Binary comes back in clear (the reference sends it still sealed).
    let (s, b, v) = get(&c, ids.request("tls-key", None)).await.unwrap();
    assert_eq!(
        (s, b, v),
        (None, Some(vec![0, 159, 146, 150, 255]), bin.to_string())
    );
    // A revision of another key is not this key's version.
    assert_eq!(
        get(&c, ids.request("db-password", Some(&bin.to_string())))
            .await
            .unwrap_err(),
        "server error: Secret not found"
    );
    assert_eq!(
        get(&c, ids.request("gone", None)).await.unwrap_err(),
        "server error: Secret not found"
    );
    assert!(
        get(&c, Identities::new().request("db-password", None))
            .await
            .unwrap_err()
            .ends_with("unauthorized")
    );

    // Our writes land in the same layout and are served at once.
    let version = store
        .put("db-password", SecretValue::String("fresh".into()))
        .await
        .unwrap();
    let (s, _, v) = get(&c, ids.request("db-password", None)).await.unwrap();
    assert_eq!((s.as_deref(), v), (Some("fresh"), version));
    // Removing a mapping really removes access (the reference's remove does nothing).
    store
        .remove_mapping(&ids.entity(), &["db-password".to_owned()])
        .await
        .unwrap();
    assert!(
        get(&c, ids.request("db-password", None))
            .await
            .unwrap_err()
            .ends_with("unauthorized")
    );
    // The state bucket still holds a JSON array the reference reads.
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let state = js
        .get_key_value(format!("SECRETS_{BACKEND}_state"))
        .await
        .unwrap();
    let raw = state.get(ids.entity()).await.unwrap().unwrap();
    let names: HashSet<String> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(names, ["tls-key", "gone"].map(str::to_owned).into());

    // A grant bound to the entity's account sits in the same array of strings (a reference
    // backend parses it and never matches it); it serves the entity signed by that account and
    // refuses the same key signed by another.
    let bound = format!("db-password;issuer={}", ids.account.public_key());
    store
        .add_mapping(&ids.entity(), std::slice::from_ref(&bound))
        .await
        .unwrap();
    let raw = state.get(ids.entity()).await.unwrap().unwrap();
    let names: HashSet<String> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        names,
        [bound.as_str(), "tls-key", "gone"]
            .map(str::to_owned)
            .into()
    );
    let (s, _, _) = get(&c, ids.request("db-password", None)).await.unwrap();
    assert_eq!(s.as_deref(), Some("fresh"));
    let other_account = nkeys::KeyPair::new_account();
    let by_other = wascap::jwt::ClaimsBuilder::<wascap::jwt::Component>::new()
        .issuer(&other_account.public_key())
        .subject(&ids.entity())
        .with_metadata(wascap::jwt::Component {
            name: Some("other".into()),
            module_hash: "abc".into(),
            ..Default::default()
        })
        .build()
        .encode(&other_account)
        .unwrap();
    let forged = ids.request_with("db-password", None, by_other, ids.host_jwt());
    let err = get(&c, forged).await.unwrap_err();
    assert!(err.ends_with("unauthorized"), "{err}");
    // Removing the plain name removes the bound grant too.
    let left = store
        .remove_mapping(&ids.entity(), &["db-password".to_owned()])
        .await
        .unwrap();
    assert_eq!(left, ["gone", "tls-key"].map(str::to_owned).into());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mapping_writers_all_land_and_rotation_reseals() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let old = XKey::generate();
    let old_seed = old.seed();
    let store = Arc::new(
        JetStreamSecrets::open(
            async_nats::connect(&url).await.unwrap(),
            &JetStreamConfig::new("anchorage"),
            Arc::new(Keyring::new(old)),
        )
        .await
        .unwrap(),
    );
    // Empty buckets list nothing and rotate nothing.
    assert!(store.keys().await.unwrap().is_empty());
    assert!(store.list_mappings().await.unwrap().is_empty());
    assert_eq!(store.reencrypt().await.unwrap().secrets, 0);
    let entity = nkeys::KeyPair::new_module().public_key();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, entity) = (store.clone(), entity.clone());
        tasks.push(tokio::spawn(async move {
            store
                .add_mapping(&entity, &[format!("s{i}")])
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.secrets_of(&entity).await.unwrap().len(), 16);
    assert_eq!(store.list_mappings().await.unwrap().len(), 1);

    store
        .put("a", SecretValue::String("1".into()))
        .await
        .unwrap();
    store
        .put("b", SecretValue::Binary(vec![0xff].into()))
        .await
        .unwrap();
    assert_eq!(store.keys().await.unwrap(), ["a", "b"]);
    let ring =
        Keyring::new(XKey::generate()).with_previous(XKey::from_seed(&old_seed, "old").unwrap());
    let new_seed = ring.current().seed();
    let rotated = JetStreamSecrets::open(
        async_nats::connect(&url).await.unwrap(),
        &JetStreamConfig::new("anchorage"),
        Arc::new(ring),
    )
    .await
    .unwrap();
    let report = rotated.reencrypt().await.unwrap();
    assert_eq!((report.secrets, report.resealed), (2, 2));
    // JetStream cannot rewrite history: each secret's previous ciphertext (sealed with the old
    // key) stays as an older revision, and the report says so.
    assert_eq!(report.stale_copies, 2);
    assert!(!report.compacted);
    assert!(report.remains.contains("history"), "{}", report.remains);
    // Only the new key is needed now for the latest values.
    let fresh = JetStreamSecrets::open(
        async_nats::connect(&url).await.unwrap(),
        &JetStreamConfig::new("anchorage"),
        Arc::new(Keyring::new(XKey::from_seed(&new_seed, "new").unwrap())),
    )
    .await
    .unwrap();
    let got = fresh
        .get(SecretLookup {
            key: "a",
            field: None,
            version: None,
            policy: "",
        })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got.value, SecretValue::String(s) if s.expose_secret() == "1"));
    assert!(fresh.delete("a").await.unwrap());
    assert!(!fresh.delete("a").await.unwrap());
    assert_eq!(fresh.keys().await.unwrap(), ["b"]);
    let _: BTreeSet<String> = fresh.secrets_of("not-an-entity").await.unwrap();
}

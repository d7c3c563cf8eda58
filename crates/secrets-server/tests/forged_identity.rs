//! Issue 19 item 2, end to end: an attacker who can publish on the `get` subject mints a
//! component token for the victim's `M…` key with a fresh account and a host token with a
//! fresh cluster key, and asks a real server (on a real nats-server) through the real
//! `wasmcloud-secrets-client` for the victim's secret.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anchorage_secrets::{Grant, JwtPolicy, SecretValue, XKey};
use anchorage_secrets_server::{EmbeddedSecrets, Keyring, MappingStore, SecretStore, ServerConfig};
use anchorage_store::MemoryStore;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve_with_policy};
use nkeys::KeyPair;
use wascap::jwt::{Claims, ClaimsBuilder, Component, Host};

/// A component token for `subject` signed by `account`.
fn component_jwt(account: &KeyPair, subject: &str) -> String {
    ClaimsBuilder::<Component>::new()
        .issuer(&account.public_key())
        .subject(subject)
        .with_metadata(Component {
            name: Some("evil".into()),
            module_hash: "abc".into(),
            ..Component::default()
        })
        .build()
        .encode(account)
        .unwrap()
}

/// A host token any key can mint for itself.
/// A host token signed by a fresh cluster key, and that key.
fn self_minted_host() -> (String, String) {
    let cluster = KeyPair::new_cluster();
    let jwt = Claims::<Host>::new(
        "evil-host".into(),
        cluster.public_key(),
        KeyPair::new_server().public_key(),
        Some(HashMap::new()),
    )
    .encode(&cluster)
    .unwrap();
    (jwt, cluster.public_key())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_component_and_host_tokens_are_refused() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let victim = Identities::new();
    let a1 = victim.account.public_key();
    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    store
        .put("db-password", SecretValue::String("victim-pw".into()))
        .await
        .unwrap();
    // The victim's mapping, bound to its account A1.
    let bound = Grant::plain("db-password")
        .with_issuer(&a1)
        .unwrap()
        .to_string();
    store
        .add_mapping(&victim.entity(), std::slice::from_ref(&bound))
        .await
        .unwrap();
    // A second tenant's account that the server accepts too: the attacker signs with it.
    let tenant_b = KeyPair::new_account();
    let policy = JwtPolicy {
        entity_issuers: BTreeSet::from([a1.clone(), tenant_b.public_key()]),
        host_issuers: BTreeSet::from([victim.cluster.public_key()]),
        ..JwtPolicy::default()
    };
    let url = nats.url();
    let seed = XKey::generate().seed();
    let server = serve_with_policy(
        &url,
        &url,
        &seed,
        store.clone(),
        store,
        ServerConfig::new(PREFIX, BACKEND),
        None,
        policy,
    )
    .await;
    let c = client(&url).await;
    let ask = |entity: String, host: String| victim.request_with("db-password", None, entity, host);

    // The attack exactly: a fresh account A2 and a self-minted host token.
    let fresh = KeyPair::new_account();
    let attack = ask(
        component_jwt(&fresh, &victim.entity()),
        self_minted_host().0,
    );
    let err = get(&c, attack).await.unwrap_err();
    assert_eq!(
        err,
        format!(
            "server error: Invalid Entity JWT: issuer {} is not allowed",
            fresh.public_key()
        )
    );
    // A legitimate component token with a self-minted host token.
    let (host_jwt, cluster) = self_minted_host();
    let err = get(&c, ask(victim.component_jwt(), host_jwt))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!("server error: Invalid Host JWT: issuer {cluster} is not allowed")
    );
    // An accepted account (tenant B) signing for the victim's key, with a real host token:
    // the mapping is bound to A1.
    let err = get(
        &c,
        ask(
            component_jwt(&tenant_b, &victim.entity()),
            victim.host_jwt(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err, "server error: Error fetching secret: unauthorized");

    // Negative control: the victim's own tokens are served.
    let (s, _, _) = get(&c, victim.request("db-password", None)).await.unwrap();
    assert_eq!(s.as_deref(), Some("victim-pw"));
    server.stop().await;
}

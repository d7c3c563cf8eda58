//! The Kubernetes store end to end: the real kube-rs client against PyPI's `kmock` 0.8
//! Kubernetes emulator (started by the controller's `tests/support/kmock_server.py`, not a fake
//! written here), the anchorage secrets server on a real nats-server, and requests made by the
//! real `wasmcloud-secrets-client` with wascap-minted identities, as a wasmCloud host makes them.
//!
//! Proves: a mapped component reads a Secret's data key with the Secret's `resourceVersion` as
//! the version; an unmapped component is refused (the negative control); a missing Secret, a
//! missing data key and a version other than the current one are "not found"; bytes that are
//! not UTF-8 arrive as `binary_secret`, byte for byte; a changed Secret is served at once with
//! its new version; a policy naming another namespace is refused. What kmock does not prove:
//! RBAC (it authorizes everything; `deploy/kubernetes/secrets-kubernetes/role.yaml` is checked by
//! tests/manifests.rs), real `resourceVersion`s (kmock's are stamped by the script's shim).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

#[path = "../../secrets-server/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use anchorage_secrets::XKey;
use anchorage_secrets_server::ServerConfig;
use anchorage_secrets_store_k8s::{KubernetesConfig, KubernetesSecrets};
use anchorage_test_support::kmock::Kmock;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};

const NOT_FOUND: &str = "server error: Secret not found";
const UNAUTHORIZED: &str = "server error: Error fetching secret: unauthorized";
const NAMESPACE: &str = "wasmcloud-apps";

/// kmock on a free port, or `None` (skipped loudly) when python3 or kmock is missing.
fn start_kmock() -> Option<Kmock> {
    Kmock::start("the Kubernetes secrets store's end-to-end test", &[])
}

fn secret(name: &str, data: serde_json::Value) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": data,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_real_client_through_kubernetes() {
    let Some(kmock) = start_kmock() else { return };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
    let kube = kube::Client::try_from(config).unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), NAMESPACE);
    let configmaps: Api<ConfigMap> = Api::namespaced(kube.clone(), NAMESPACE);
    let pp = PostParams::default();

    // "hunter2", and DER-like bytes that are not UTF-8.
    let created = secrets
        .create(
            &pp,
            &secret(
                "db",
                serde_json::json!({"password": "aHVudGVyMg==", "user": "YWRtaW4="}),
            ),
        )
        .await
        .unwrap();
    let db_version = created.metadata.resource_version.clone().unwrap();
    secrets
        .create(
            &pp,
            &secret("tls", serde_json::json!({"key.der": "MIL/AAE="})),
        )
        .await
        .unwrap();
    secrets
        .create(
            &pp,
            &secret("other", serde_json::json!({"password": "bm9wZQ=="})),
        )
        .await
        .unwrap();

    let ids = Identities::new();
    let stranger = Identities::new();
    let mappings: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "anchorage-secrets-mappings", "namespace": NAMESPACE},
        "data": {
            ids.entity(): "db\ntls   # the component's key\nghost\n",
            // The stranger's key appears, but only for `other`.
            stranger.entity(): "other\n",
        },
    }))
    .unwrap();
    configmaps.create(&pp, &mappings).await.unwrap();

    let store =
        Arc::new(KubernetesSecrets::new(kube.clone(), KubernetesConfig::new(NAMESPACE)).unwrap());
    let url = nats.url();
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

    let ask = |who: &Identities, key: &str, field: Option<&str>, version: Option<&str>| {
        let mut r = who.request(key, version);
        r.field = field.map(str::to_owned);
        r
    };

    // Allowed: the data key, with the Secret's resourceVersion.
    let (s, b, v) = get(&c, ask(&ids, "db", Some("password"), None))
        .await
        .unwrap();
    assert_eq!(
        (s.as_deref(), b, v.as_str()),
        (Some("hunter2"), None, db_version.as_str())
    );
    // The same version asked for explicitly.
    let (s, _, _) = get(&c, ask(&ids, "db", Some("user"), Some(&db_version)))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("admin"));

    // Negative control: the stranger is mapped, but not to `db`.
    assert_eq!(
        get(&c, ask(&stranger, "db", Some("password"), None))
            .await
            .unwrap_err(),
        UNAUTHORIZED
    );
    // ...and reads what it is mapped to.
    let (s, _, _) = get(&c, ask(&stranger, "other", Some("password"), None))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("nope"));
    // An entity with no line in the ConfigMap at all.
    let nobody = Identities::new();
    assert_eq!(
        get(&c, ask(&nobody, "db", Some("password"), None))
            .await
            .unwrap_err(),
        UNAUTHORIZED
    );

    // Missing Secret (mapped, absent), missing data key, a version that is not current.
    assert_eq!(
        get(&c, ask(&ids, "ghost", Some("password"), None))
            .await
            .unwrap_err(),
        NOT_FOUND
    );
    assert_eq!(
        get(&c, ask(&ids, "db", Some("token"), None))
            .await
            .unwrap_err(),
        NOT_FOUND
    );
    let stale: u64 = db_version.parse::<u64>().unwrap() + 1000;
    assert_eq!(
        get(
            &c,
            ask(&ids, "db", Some("password"), Some(&stale.to_string()))
        )
        .await
        .unwrap_err(),
        NOT_FOUND
    );

    // Binary data arrives as bytes, unchanged.
    let (s, b, _) = get(&c, ask(&ids, "tls", Some("key.der"), None))
        .await
        .unwrap();
    assert_eq!(
        (s, b.as_deref()),
        (None, Some(&[0x30, 0x82, 0xff, 0x00, 0x01][..]))
    );

    // A change is served at once, with the new version; the old version is no longer served.
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"password": "c3dvcmRmaXNo"}})),
        )
        .await
        .unwrap();
    let (s, _, v) = get(&c, ask(&ids, "db", Some("password"), None))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("swordfish"));
    assert_ne!(v, db_version);
    assert_eq!(
        get(&c, ask(&ids, "db", Some("password"), Some(&db_version)))
            .await
            .unwrap_err(),
        NOT_FOUND
    );

    // A policy asking for another namespace is refused, not served from it.
    let mut r = ask(&ids, "db", Some("password"), None);
    r.context.application.policy =
        r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{"namespace":"kube-system"}}"#.into();
    let e = get(&c, r).await.unwrap_err();
    assert!(e.contains("kube-system"), "{e}");

    // The listing reads names only.
    use anchorage_secrets_server::{MappingStore as _, SecretStore as _};
    assert_eq!(store.keys().await.unwrap(), ["db", "other", "tls"]);
    let all = store.list_mappings().await.unwrap();
    assert_eq!(all.len(), 2);

    server.stop().await;
}

//! The OpenBao KV v2 store against a real `bao server -dev`, served over a real nats-server to
//! the real client: `field`, the whole map, versions, token and AppRole authentication.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::Duration;

use anchorage_secrets::{SecretValue, XKey};
use anchorage_secrets_server::{
    EmbeddedSecrets, Keyring, MappingStore, OpenBaoAuth, OpenBaoConfig, OpenBaoSecrets,
    SecretStore, ServerConfig, StoreFailure,
};
use anchorage_store::MemoryStore;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::openbao::OpenBao;
use common::{BACKEND, Identities, PREFIX, client, get, serve};

/// What the real client says when the server refuses a get (the protocol's message).
const UNAUTHORIZED: &str = "server error: Error fetching secret: unauthorized";

/// What the real client says when there is no such secret, field or version.
const NOT_FOUND: &str = "server error: Secret not found";

fn tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn store(bao: &OpenBao, auth: OpenBaoAuth) -> OpenBaoSecrets {
    OpenBaoSecrets::new(OpenBaoConfig {
        address: bao.address(),
        mount: "secret".into(),
        extra_mounts: vec!["team".into()],
        auth,
        namespace: None,
        tls: tls(),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv2_fields_versions_and_approle() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(bao) = OpenBao::start() else { return };
    bao.cli(&["kv", "put", "secret/app/db", "password=old", "user=admin"]);
    bao.cli(&[
        "kv",
        "put",
        "secret/app/db",
        "password=hunter2",
        "user=admin",
    ]);
    bao.cli(&["secrets", "enable", "-path=team", "kv-v2"]);
    bao.cli(&["kv", "put", "team/app/db", "password=team-pw"]);
    bao.cli(&["secrets", "enable", "-path=private", "kv-v2"]);
    bao.cli(&["kv", "put", "private/app/db", "password=nope"]);

    let ids = Identities::new();
    let mappings = Arc::new(EmbeddedSecrets::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    // app/db from the default mount and from `team`, app/none from the default mount.
    let names = [
        "app/db".to_owned(),
        "app/db;mount=team".to_owned(),
        "app/none".to_owned(),
    ];
    mappings.add_mapping(&ids.entity(), &names).await.unwrap();

    bao.write_policy(
        "reader",
        "path \"secret/data/*\" { capabilities = [\"read\"] }\npath \"team/data/*\" { capabilities = [\"read\"] }\n",
    );
    bao.enable_approle();
    let creds = bao.create_approle("secrets", &["reader"], "1h");
    let values = Arc::new(store(
        &bao,
        OpenBaoAuth::AppRole {
            mount: "approle".into(),
            role_id: creds.role_id,
            secret_id: creds.secret_id.into(),
        },
    ));
    let url = nats.url();
    let seed = XKey::generate().seed();
    let server = serve(
        &url,
        &seed,
        values,
        mappings,
        ServerConfig::new(PREFIX, BACKEND),
    )
    .await;
    let c = client(&url).await;

    let req = |field: Option<&str>, version: Option<&str>, mount: Option<&str>| {
        let mut r = ids.request("app/db", version);
        r.field = field.map(str::to_owned);
        if let Some(m) = mount {
            r.context.application.policy = format!(
                r#"{{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{{"mount_path":"{m}"}}}}"#
            );
        }
        r
    };
    let (s, _, v) = get(&c, req(Some("password"), None, None)).await.unwrap();
    assert_eq!((s.as_deref(), v.as_str()), (Some("hunter2"), "2"));
    let (s, _, v) = get(&c, req(Some("password"), Some("1"), None))
        .await
        .unwrap();
    assert_eq!((s.as_deref(), v.as_str()), (Some("old"), "1"));
    // Without a field: the whole map as JSON.
    let (s, _, _) = get(&c, req(None, None, None)).await.unwrap();
    let map: serde_json::Value = serde_json::from_str(&s.unwrap()).unwrap();
    assert_eq!(
        map,
        serde_json::json!({"password": "hunter2", "user": "admin"})
    );
    // A missing field, path or version.
    for missing in [
        req(Some("nope"), None, None),
        ids.request("app/none", None),
        req(None, Some("9"), None),
    ] {
        assert_eq!(get(&c, missing).await.unwrap_err(), NOT_FOUND);
    }
    // A policy may name a mount the mapping grants (and the store serves), not any mount.
    let (s, _, _) = get(&c, req(Some("password"), None, Some("team")))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("team-pw"));
    let err = get(&c, req(Some("password"), None, Some("private")))
        .await
        .unwrap_err();
    assert_eq!(err, UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_admin_put_get_delete() {
    let Some(bao) = OpenBao::start() else { return };
    let s = store(&bao, OpenBaoAuth::Token(bao.root_token().to_owned().into()));
    let v = s
        .put("svc/api", SecretValue::String(r#"{"token":"t1"}"#.into()))
        .await
        .unwrap();
    assert_eq!(v, "1");
    let v = s
        .put("svc/plain", SecretValue::String("just text".into()))
        .await
        .unwrap();
    assert_eq!(v, "1");
    assert_eq!(
        bao.cli(&["kv", "get", "-field=value", "secret/svc/plain"]),
        "just text"
    );
    // Binary values: refused as unsupported, before any request (nothing is written).
    let binary = s
        .put("svc/bin", SecretValue::Binary(vec![0xff].into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            binary,
            StoreFailure::Unsupported {
                store: "openbao",
                operation: "binary values (KV v2 holds JSON)",
            }
        ),
        "{binary:?}"
    );
    assert_eq!(
        binary.to_string(),
        "the openbao store does not support binary values (KV v2 holds JSON)"
    );
    assert_eq!(s.keys().await.unwrap(), ["svc/"]);
    assert!(s.delete("svc/api").await.unwrap());
    assert!(!s.delete("svc/api").await.unwrap());
    let rotate = s.reencrypt().await.unwrap_err();
    assert!(
        matches!(
            rotate,
            StoreFailure::Unsupported {
                store: "openbao",
                operation: "rotate-encryption-key (OpenBao encrypts its own storage)",
            }
        ),
        "{rotate:?}"
    );
    // Only binary values were refused: the text value is still there, unchanged.
    assert_eq!(s.keys().await.unwrap(), ["svc/"]);
    // A bad token is refused credentials naming the request (OpenBao's 403), never the token.
    let bad = store(&bao, OpenBaoAuth::Token("not-the-token".to_owned().into()));
    let lookup = anchorage_secrets::SecretLookup {
        key: "svc/plain",
        field: None,
        version: None,
        policy: "",
    };
    let err = bad.get(lookup).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreFailure::AuthFailed { store: "openbao", action }
                if action == "access secret/data/svc/plain (403 Forbidden)"
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert_eq!(
        err.to_string(),
        "openbao store refused the credentials to access secret/data/svc/plain (403 Forbidden)"
    );
    assert!(!shown.contains("not-the-token"), "{shown}");
    // Negative control: the good token reads the same key through the same lookup.
    let good = s.get(lookup).await.unwrap().unwrap();
    assert_eq!(good.version, "1");
}

/// Issue 19 item 3: `db` in the default mount is mapped, `db` in another team's mount is not;
/// a policy naming that mount used to read it. Now it is Unauthorized (the mount is audited),
/// the default mount is served, and a grant naming the other mount serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_cannot_pick_an_unmapped_mount() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(bao) = OpenBao::start() else { return };
    bao.cli(&["kv", "put", "secret/db", "password=ours"]);
    bao.cli(&["secrets", "enable", "-path=team", "kv-v2"]);
    bao.cli(&["kv", "put", "team/db", "password=team-b-only"]);

    let ids = Identities::new();
    let other = Identities::new();
    let mappings = Arc::new(EmbeddedSecrets::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    mappings
        .add_mapping(&ids.entity(), &["db".to_owned()])
        .await
        .unwrap();
    mappings
        .add_mapping(&other.entity(), &["db;mount=team".to_owned()])
        .await
        .unwrap();
    // The store serves both mounts (as with --openbao-allow-mount team).
    let values = Arc::new(store(
        &bao,
        OpenBaoAuth::Token(bao.root_token().to_owned().into()),
    ));
    let url = nats.url();
    let seed = XKey::generate().seed();
    let server = serve(
        &url,
        &seed,
        values,
        mappings,
        ServerConfig::new(PREFIX, BACKEND),
    )
    .await;
    let c = client(&url).await;
    let in_mount = |ids: &Identities, mount: Option<&str>| {
        let mut r = ids.request("db", None);
        r.field = Some("password".into());
        if let Some(m) = mount {
            r.context.application.policy = format!(
                r#"{{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{{"mount_path":"{m}"}}}}"#
            );
        }
        r
    };
    // The attack: mapped to `db` in the default mount, asking for `db` in `team`.
    let err = get(&c, in_mount(&ids, Some("team"))).await.unwrap_err();
    assert_eq!(err, UNAUTHORIZED);
    // Control: the default mount, by default and by name.
    let (s, _, _) = get(&c, in_mount(&ids, None)).await.unwrap();
    assert_eq!(s.as_deref(), Some("ours"));
    let (s, _, _) = get(&c, in_mount(&ids, Some("secret"))).await.unwrap();
    assert_eq!(s.as_deref(), Some("ours"));
    // A grant naming the mount serves it, and only it.
    let (s, _, _) = get(&c, in_mount(&other, Some("team"))).await.unwrap();
    assert_eq!(s.as_deref(), Some("team-b-only"));
    let err = get(&c, in_mount(&other, None)).await.unwrap_err();
    assert_eq!(err, UNAUTHORIZED);
    server.stop().await;
}

//! Administration over NATS on a real `nats-server`, while the server holds the embedded store
//! (a real redb file, which one process opens at a time): signed, sealed admin requests change
//! secrets and mappings, the real `wasmcloud-secrets-client` sees the result at once, the
//! encryption key rotates online; every forged, expired, replayed, misdirected or unknown-key
//! request is refused, and a server without admin keys does not listen at all.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anchorage_secrets::XKey;
use anchorage_secrets::admin::{
    ADMIN_XKEY_HEADER, AdminClaims, AdminError, AdminOp, AdminPolicy, AdminRequest, AdminSigner,
    AdminSubjects, DEFAULT_ADMIN_TOKEN_LIFETIME, SealedAdminRequest,
};
use anchorage_secrets_server::{
    AdminCallError, AdminClient, AdminService, EmbeddedSecrets, Keyring, SeedSource, ServerConfig,
};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve_with_admin};
use nkeys::KeyPair;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use zeroize::Zeroizing;

struct Fixture {
    nats: NatsServer,
    ids: Identities,
    store: Arc<EmbeddedSecrets>,
    keyring: Arc<Keyring>,
    seed: SecretString,
    admin: SecretString,
    seed_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn write_seed(path: &Path, seed: &SecretString) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(file, "{}", seed.expose_secret()).unwrap();
}

fn signer(seed: &SecretString) -> AdminSigner {
    AdminSigner::from_seed(seed, "test").unwrap()
}

async fn fixture() -> Option<Fixture> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("encryption.seed");
    write_seed(&seed_file, &XKey::generate().seed());
    let keyring = Arc::new(Keyring::new(
        XKey::load(&SeedSource::File(seed_file.clone())).unwrap(),
    ));
    let raw = EmbeddedStore::open(dir.path().join("secrets.redb")).unwrap();
    let store = Arc::new(EmbeddedSecrets::new(Arc::new(raw), Arc::clone(&keyring)));
    Some(Fixture {
        nats,
        ids: Identities::new(),
        store,
        keyring,
        seed: XKey::generate().seed(),
        admin: SecretString::from(KeyPair::new_user().seed().unwrap()),
        seed_file,
        _dir: dir,
    })
}

impl Fixture {
    async fn start(&self, admin: bool) -> common::Running {
        let service = admin.then(|| {
            let keys: BTreeSet<String> = [signer(&self.admin).public_key()].into();
            AdminService::new(
                AdminPolicy::new(keys),
                BACKEND,
                Some(Arc::clone(&self.keyring)),
                Some(SeedSource::File(self.seed_file.clone())),
            )
        });
        serve_with_admin(
            &self.nats.url(),
            &self.seed,
            self.store.clone(),
            self.store.clone(),
            ServerConfig::new(PREFIX, BACKEND),
            service,
        )
        .await
    }

    async fn admin_client(&self, seed: &SecretString) -> AdminClient {
        let nc = async_nats::connect(self.nats.url()).await.unwrap();
        AdminClient::new(nc, PREFIX, BACKEND, signer(seed)).with_timeout(Duration::from_secs(3))
    }

    fn transit_public(&self) -> String {
        XKey::from_seed(&self.seed, "t")
            .unwrap()
            .public_key()
            .to_owned()
    }
}

fn request(op: AdminOp, claims: AdminClaims, value: Option<&[u8]>) -> AdminRequest {
    AdminRequest {
        op: Some(op),
        claims,
        value: value.map(|v| Zeroizing::new(v.to_vec())),
    }
}

fn put(key: &str, value: &str) -> AdminRequest {
    request(
        AdminOp::Put,
        AdminClaims {
            key: Some(key.into()),
            ..AdminClaims::default()
        },
        Some(value.as_bytes()),
    )
}

fn mapping(op: AdminOp, entity: &str, secrets: &[&str]) -> AdminRequest {
    request(
        op,
        AdminClaims {
            entity: Some(entity.into()),
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            ..AdminClaims::default()
        },
        None,
    )
}

async fn call(admin: &AdminClient, request: &AdminRequest) -> Result<Value, AdminCallError> {
    admin
        .call(request)
        .await
        .map(|plain| serde_json::from_slice(&plain).unwrap())
}

fn refused(result: Result<Value, AdminCallError>) -> AdminError {
    match result {
        Err(AdminCallError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administers_the_embedded_store_while_serving() {
    let Some(f) = fixture().await else { return };
    let server = f.start(true).await;
    let admin = f.admin_client(&f.admin).await;
    let host = client(&f.nats.url()).await;
    let entity = f.ids.entity();

    let stored = call(&admin, &put("db-password", "hunter2")).await.unwrap();
    assert_eq!(
        stored,
        json!({"key": "db-password", "version": "1", "store": "embedded"})
    );
    // Not mapped yet.
    let denied = get(&host, f.ids.request("db-password", None)).await;
    assert_eq!(
        denied.unwrap_err(),
        "server error: Error fetching secret: unauthorized"
    );
    let mapped = call(
        &admin,
        &mapping(AdminOp::AddMapping, &entity, &["db-password"]),
    )
    .await
    .unwrap();
    assert_eq!(
        mapped,
        json!({"entity": entity, "secrets": ["db-password"]})
    );
    let (s, _, v) = get(&host, f.ids.request("db-password", None))
        .await
        .unwrap();
    assert_eq!((s.as_deref(), v.as_str()), (Some("hunter2"), "1"));

    // Reading back: without reveal no value; with reveal the value, sealed in transit.
    let mut read = request(
        AdminOp::Get,
        AdminClaims {
            key: Some("db-password".into()),
            ..AdminClaims::default()
        },
        None,
    );
    let shown = call(&admin, &read).await.unwrap();
    assert_eq!(
        shown,
        json!({"key": "db-password", "version": "1", "kind": "string", "bytes": 7})
    );
    read.claims.reveal = true;
    let revealed = call(&admin, &read).await.unwrap();
    assert_eq!(revealed["value"], "hunter2");
    assert_eq!(revealed["encoding"], "utf-8");
    let binary = request(
        AdminOp::Put,
        AdminClaims {
            key: Some("tls-key".into()),
            binary: true,
            ..AdminClaims::default()
        },
        Some(&[0, 1, 254, 255]),
    );
    call(&admin, &binary).await.unwrap();
    let listed = call(
        &admin,
        &request(AdminOp::List, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(listed, json!({"secrets": ["db-password", "tls-key"]}));
    let all = call(
        &admin,
        &request(AdminOp::ListMappings, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(all, json!({"mappings": {entity.clone(): ["db-password"]}}));

    // Online rotation: the server re-reads its seed file.
    let old_public = f.keyring.current_public();
    let unchanged = call(
        &admin,
        &request(AdminOp::RotateEncryptionKey, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(unchanged["changed"], false);
    assert_eq!(unchanged["encryption_key"], old_public.as_str());
    let new_key = XKey::generate();
    write_seed(&f.seed_file, &new_key.seed());
    let rotated = call(
        &admin,
        &request(AdminOp::RotateEncryptionKey, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(rotated["changed"], true);
    assert_eq!(rotated["encryption_key"], new_key.public_key());
    assert_eq!(rotated["report"]["secrets"], 2);
    assert_eq!(rotated["report"]["resealed"], 2);
    assert_eq!(f.keyring.current_public(), new_key.public_key());
    let (s, _, _) = get(&host, f.ids.request("db-password", None))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("hunter2"));
    // A second rotation finds everything sealed with the new key.
    let again = call(
        &admin,
        &request(AdminOp::RotateEncryptionKey, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(again["report"]["resealed"], 0);
    assert_eq!(again["report"]["already_current"], 2);

    // Removing the mapping takes effect at once.
    let removed = call(
        &admin,
        &mapping(AdminOp::RemoveMapping, &entity, &["db-password"]),
    )
    .await
    .unwrap();
    assert_eq!(removed, json!({"entity": entity, "secrets": []}));
    let denied = get(&host, f.ids.request("db-password", None)).await;
    assert_eq!(
        denied.unwrap_err(),
        "server error: Error fetching secret: unauthorized"
    );

    let deleted = request(
        AdminOp::Delete,
        AdminClaims {
            key: Some("db-password".into()),
            ..AdminClaims::default()
        },
        None,
    );
    call(&admin, &deleted).await.unwrap();
    assert!(matches!(
        refused(call(&admin, &deleted).await),
        AdminError::NotFound(_)
    ));
    read.claims.reveal = false;
    assert!(matches!(
        refused(call(&admin, &read).await),
        AdminError::NotFound(_)
    ));
    // Bad arguments are the store's refusals, not identity refusals.
    let bad = refused(
        call(
            &admin,
            &mapping(AdminOp::AddMapping, "not-an-entity", &["x"]),
        )
        .await,
    );
    assert!(matches!(bad, AdminError::InvalidArgument(_)), "{bad:?}");
    server.stop().await;
}

/// Sends a sealed request raw on `subject`; returns the response-xkey header and the body.
async fn raw(
    nc: &async_nats::Client,
    subject: String,
    header: Option<&str>,
    body: Vec<u8>,
) -> (Option<String>, Value) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(h) = header {
        headers.insert(ADMIN_XKEY_HEADER, h);
    }
    let reply = nc
        .request_with_headers(subject, headers, body.into())
        .await
        .unwrap();
    let key = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(wasmcloud_secrets_types::RESPONSE_XKEY))
        .map(|v| v.to_string());
    (
        key,
        serde_json::from_slice(&reply.payload).unwrap_or(Value::Null),
    )
}

fn seal(
    f: &Fixture,
    seed: &SecretString,
    request: &AdminRequest,
    now: SystemTime,
) -> SealedAdminRequest {
    signer(seed)
        .seal(
            request,
            BACKEND,
            &f.transit_public(),
            now,
            DEFAULT_ADMIN_TOKEN_LIFETIME,
        )
        .unwrap()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_forged_expired_replayed_misdirected_and_unknown_admins() {
    let Some(f) = fixture().await else { return };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("anchorage::audit=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let server = f.start(true).await;
    let nc = async_nats::connect(f.nats.url()).await.unwrap();
    let subjects = AdminSubjects::new(PREFIX, BACKEND);
    let put_subject = subjects.subject(AdminOp::Put);
    let now = SystemTime::now();
    let error = |v: &Value| -> AdminError { serde_json::from_value(v["error"].clone()).unwrap() };

    // Unsigned: no header; a header but a token that is not one; a token signed by a forger
    // naming the allowed key.
    let (key, body) = raw(&nc, put_subject.clone(), None, b"x".to_vec()).await;
    assert_eq!((key, error(&body)), (None, AdminError::InvalidXKey));
    let requester = nkeys::XKey::new();
    let server_key = nkeys::XKey::from_public_key(&f.transit_public()).unwrap();
    let unsigned = requester
        .seal(br#"{"jwt":"not.a.token"}"#, &server_key)
        .unwrap();
    let (key, body) = raw(
        &nc,
        put_subject.clone(),
        Some(&requester.public_key()),
        unsigned,
    )
    .await;
    assert!(key.is_none());
    assert!(
        matches!(error(&body), AdminError::Unauthenticated(_)),
        "{body}"
    );
    let allowed = signer(&f.admin).public_key();
    let mut claims = wascap::jwt::Claims::<AdminClaims>::default();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims.issuer = allowed.clone();
    claims.subject = f.transit_public();
    claims.issued_at = unix;
    claims.expires = Some(unix + 60);
    claims.id = "forged-1".into();
    claims.metadata = Some(AdminClaims {
        op: "put".into(),
        backend: BACKEND.into(),
        reply_xkey: requester.public_key(),
        key: Some("planted".into()),
        value_sha256: None,
        ..AdminClaims::default()
    });
    let forged = claims.encode(&KeyPair::new_user()).unwrap();
    let body = requester
        .seal(format!(r#"{{"jwt":"{forged}"}}"#).as_bytes(), &server_key)
        .unwrap();
    let (_, body) = raw(
        &nc,
        put_subject.clone(),
        Some(&requester.public_key()),
        body,
    )
    .await;
    assert!(
        matches!(error(&body), AdminError::Unauthenticated(_)),
        "{body}"
    );

    // A valid signature by a key that is not in the allow-list.
    let stranger = SecretString::from(KeyPair::new_account().seed().unwrap());
    let sealed = seal(&f, &stranger, &put("planted", "x"), now);
    let (_, body) = raw(&nc, put_subject.clone(), Some(&sealed.header), sealed.body).await;
    assert_eq!(
        error(&body),
        AdminError::UnknownAdminKey(signer(&stranger).public_key())
    );

    // Expired claims (issued ten minutes ago) and claims from the future.
    let sealed = seal(
        &f,
        &f.admin,
        &put("planted", "x"),
        now - Duration::from_secs(600),
    );
    let (_, body) = raw(&nc, put_subject.clone(), Some(&sealed.header), sealed.body).await;
    assert!(matches!(error(&body), AdminError::Expired(_)), "{body}");
    let sealed = seal(
        &f,
        &f.admin,
        &put("planted", "x"),
        now + Duration::from_secs(600),
    );
    let (_, body) = raw(&nc, put_subject.clone(), Some(&sealed.header), sealed.body).await;
    assert!(matches!(error(&body), AdminError::Expired(_)), "{body}");

    // A replayed request: the first is served, the same bytes again are refused.
    let sealed = seal(&f, &f.admin, &put("replayed", "v"), now);
    let (key, _) = raw(
        &nc,
        put_subject.clone(),
        Some(&sealed.header),
        sealed.body.clone(),
    )
    .await;
    assert!(key.is_some());
    let (key, body) = raw(&nc, put_subject.clone(), Some(&sealed.header), sealed.body).await;
    assert!(key.is_none());
    assert!(matches!(error(&body), AdminError::Replayed(_)), "{body}");

    // Claims for `list` sent on the `put` subject.
    let list = request(AdminOp::List, AdminClaims::default(), None);
    let sealed = seal(&f, &f.admin, &list, now);
    let (_, body) = raw(&nc, put_subject.clone(), Some(&sealed.header), sealed.body).await;
    assert!(
        matches!(error(&body), AdminError::WrongOperation(_)),
        "{body}"
    );

    // An unknown admin operation.
    let sealed = seal(&f, &f.admin, &list, now);
    let (_, body) = raw(
        &nc,
        format!("{PREFIX}.admin.{BACKEND}.put_secret"),
        Some(&sealed.header),
        sealed.body,
    )
    .await;
    assert!(
        matches!(error(&body), AdminError::UnknownOperation(_)),
        "{body}"
    );

    // An admin operation on the subjects hosts use is still an unknown operation there.
    for op in ["put", "add_mapping", "rotate_encryption_key"] {
        let sealed = seal(&f, &f.admin, &put("planted", "x"), now);
        let (key, body) = raw(
            &nc,
            format!("{PREFIX}.v1alpha1.{BACKEND}.{op}"),
            Some(&sealed.header),
            sealed.body,
        )
        .await;
        assert!(key.is_none());
        assert_eq!(
            body,
            json!({"error": {"Other": format!("unknown operation {op}")}})
        );
    }

    // Nothing was planted; the replayed one was stored once; the server still serves.
    let admin = f.admin_client(&f.admin).await;
    let listed = call(
        &admin,
        &request(AdminOp::List, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(listed, json!({"secrets": ["replayed"]}));
    let read = request(
        AdminOp::Get,
        AdminClaims {
            key: Some("replayed".into()),
            ..AdminClaims::default()
        },
        None,
    );
    assert_eq!(call(&admin, &read).await.unwrap()["version"], "1");
    // And through the client too: an unknown key is refused as an identity problem.
    let stranger_client = f.admin_client(&stranger).await;
    let e = refused(call(&stranger_client, &list).await);
    assert!(e.refuses_identity());
    server.stop().await;

    // Every refusal was audited with the operation and the claimed key; no value anywhere.
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let admin_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("admin request"))
        .collect();
    for code in [
        "InvalidXKey",
        "Unauthenticated",
        "UnknownAdminKey",
        "Expired",
        "Replayed",
        "WrongOperation",
        "UnknownOperation",
    ] {
        assert!(
            admin_lines.iter().any(|l| l.contains(code)),
            "{code} not audited in {text}"
        );
    }
    assert!(
        admin_lines
            .iter()
            .any(|l| l.contains(&allowed) && l.contains("replayed"))
    );
    assert!(
        admin_lines
            .iter()
            .any(|l| l.contains(&signer(&stranger).public_key()))
    );
    assert!(!text.contains(f.admin.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_admin_keys_does_not_listen() {
    let Some(f) = fixture().await else { return };
    let server = f.start(false).await;
    let admin = f.admin_client(&f.admin).await;
    let result = call(&admin, &put("db-password", "x")).await;
    assert!(
        matches!(
            result,
            Err(AdminCallError::NoResponders { .. } | AdminCallError::Timeout { .. })
        ),
        "{result:?}"
    );
    // The host side is unaffected.
    let host = client(&f.nats.url()).await;
    let answer = get(&host, f.ids.request("db-password", None)).await;
    assert_eq!(
        answer.unwrap_err(),
        "server error: Error fetching secret: unauthorized"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_numeric_version_is_invalid_request() {
    let Some(f) = fixture().await else { return };
    let server = f.start(true).await;
    let admin = f.admin_client(&f.admin).await;
    call(&admin, &put("db-password", "hunter2")).await.unwrap();
    call(
        &admin,
        &mapping(AdminOp::AddMapping, &f.ids.entity(), &["db-password"]),
    )
    .await
    .unwrap();
    let host = client(&f.nats.url()).await;
    let answer = get(&host, f.ids.request("db-password", Some("latest"))).await;
    let text = answer.unwrap_err();
    assert_eq!(text, "server error: Invalid request");
    let (s, _, _) = get(&host, f.ids.request("db-password", Some("1")))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("hunter2"));
    server.stop().await;
}

/// The NATS permissions of docs/cli.md: hosts may publish only on the host subjects, admins
/// only on the admin subjects, the server subscribes to both and publishes replies. A host's
/// admin request never reaches the server; the admin's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_permissions_keep_hosts_off_the_admin_subjects() {
    use anchorage_test_support::nats::{NatsOptions, NatsUser};
    let user =
        |name: &str, publish: Option<Vec<String>>, subscribe: Option<Vec<String>>| NatsUser {
            user: name.into(),
            password: format!("{name}-pw"),
            publish,
            subscribe,
        };
    let host_subjects = format!("{PREFIX}.v1alpha1.{BACKEND}.>");
    let admin_subjects = format!("{PREFIX}.admin.{BACKEND}.>");
    let server_user = user(
        "secrets",
        Some(vec!["_INBOX.>".into()]),
        Some(vec![
            host_subjects.clone(),
            format!("{PREFIX}.admin.{BACKEND}.*"),
        ]),
    );
    let host_user = user("host", Some(vec![host_subjects]), None);
    let admin_user = user("admin", Some(vec![admin_subjects]), None);
    let Some(nats) = NatsServer::start_with(&NatsOptions {
        users: vec![server_user.clone(), host_user.clone(), admin_user.clone()],
        ..NatsOptions::default()
    }) else {
        return;
    };
    let Some(mut f) = fixture().await else { return };
    // Serve on the permissioned server instead of the fixture's open one.
    f.nats = nats;
    let keys: BTreeSet<String> = [signer(&f.admin).public_key()].into();
    let server = common::serve_as(
        &server_user.url(&f.nats),
        &host_user.url(&f.nats),
        &f.seed,
        f.store.clone(),
        f.store.clone(),
        ServerConfig::new(PREFIX, BACKEND),
        Some(AdminService::new(
            AdminPolicy::new(keys),
            BACKEND,
            Some(Arc::clone(&f.keyring)),
            None,
        )),
    )
    .await;
    let as_user = |u: &NatsUser| {
        let url = u.url(&f.nats);
        let seed = SecretString::from(f.admin.expose_secret().to_owned());
        async move {
            let nc = common::connect(&url).await;
            AdminClient::new(nc, PREFIX, BACKEND, signer(&seed))
                .with_timeout(Duration::from_secs(1))
        }
    };
    // Even with the admin seed, a host connection cannot publish on the admin subjects.
    let from_host = as_user(&host_user).await;
    let result = call(&from_host, &put("planted", "x")).await;
    // nats-server drops the publish (a permissions violation), so the client's first request,
    // for the server's xkey, gets no answer: a timeout on that subject, never a refusal from
    // the server (which would mean the request reached it) nor "no responders".
    match &result {
        Err(AdminCallError::Timeout { subject, timeout }) => {
            assert_eq!(subject, &format!("{PREFIX}.admin.{BACKEND}.server_xkey"));
            assert_eq!(*timeout, Duration::from_secs(1));
        }
        other => panic!("expected a timeout on the admin subjects, got {other:?}"),
    }
    // The admin connection can.
    let admin = as_user(&admin_user).await;
    call(&admin, &put("db-password", "hunter2")).await.unwrap();
    call(
        &admin,
        &mapping(AdminOp::AddMapping, &f.ids.entity(), &["db-password"]),
    )
    .await
    .unwrap();
    let nc = common::connect(&host_user.url(&f.nats)).await;
    let host = wasmcloud_secrets_client::Client::new(BACKEND, PREFIX, nc)
        .await
        .unwrap();
    let (s, _, _) = get(&host, f.ids.request("db-password", None))
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("hunter2"));
    let listed = call(
        &admin,
        &request(AdminOp::List, AdminClaims::default(), None),
    )
    .await
    .unwrap();
    assert_eq!(listed, json!({"secrets": ["db-password"]}));
    server.stop().await;
}

//! Root rotation through the API: two instances on one store (one lease holder, failover,
//! the follower's signer switching with the record), a restart resuming the phase from the
//! embedded store, the takeover of an FSM/OSM root as A, and the cross-signing option proven
//! with `openssl verify` and rustls handshakes by clients holding only A (positive) or neither
//! (negative).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_serve::rotation::RotationConfig;
use anchorage_serve::{ServeConfig, StoreChoice};
use anchorage_store::{MemoryStore, Store};
use common::{Running, start_with};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

fn rotation(auto: bool) -> RotationConfig {
    RotationConfig {
        auto,
        interval: Duration::from_millis(200),
        lease_ttl: Duration::from_secs(1),
        min_dwell: Duration::from_secs(3600),
        ..RotationConfig::default()
    }
}

fn config_on(dir: &Path, store: Option<Arc<dyn Store>>, rotation: RotationConfig) -> ServeConfig {
    let mut c = common::config(dir);
    if let Some(s) = store {
        c.store = StoreChoice::Shared(s);
    }
    c.roles = vec![common::role_struct()];
    c.rotation = rotation;
    c
}

async fn status(node: &Running) -> Value {
    let (code, body) = node
        .call("GET", "/v1/rotation", Some(&node.admin), None)
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn act(node: &Running, body: Value) -> (u16, Value) {
    node.call("POST", "/v1/rotation", Some(&node.admin), Some(body))
        .await
}

/// Issues a leaf (server-made key) through `node`: (leaf PEM, chain PEMs, key PEM).
async fn issue(node: &Running, cn: &str) -> (String, Vec<String>, String) {
    let (code, body) = node
        .call(
            "POST",
            "/v1/issue",
            Some(&node.admin),
            Some(json!({"common_name": cn, "sans": ["dns:localhost"]})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    (
        body["certificate"].as_str().unwrap().to_owned(),
        body["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect(),
        body["private_key"].as_str().unwrap().to_owned(),
    )
}

fn issuer_of(pem: &str) -> String {
    anchorage_x509::decode(pem.as_bytes()).certificates[0]
        .certificate
        .issuer()
        .to_owned()
}

/// A metric's value in `node`'s `/metrics`.
async fn metric(node: &Running, name: &str) -> u64 {
    let text = node
        .client
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

async fn holders(nodes: &[&Running]) -> Vec<bool> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(status(n).await["lease"]["this_instance"] == true);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_lease_holder_failover_and_a_follower_that_switches_its_signer() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = start_with(config_on(
        d1.path(),
        Some(Arc::clone(&store)),
        rotation(true),
    ))
    .await;
    let two = start_with(config_on(
        d2.path(),
        Some(Arc::clone(&store)),
        rotation(true),
    ))
    .await;
    // Exactly one holds the lease, and both name the same holder.
    let start = Instant::now();
    loop {
        let h = holders(&[&one, &two]).await;
        if h.iter().filter(|x| **x).count() == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..10 {
        let h = holders(&[&one, &two]).await;
        assert!(h.iter().filter(|x| **x).count() <= 1, "two holders: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status(&one).await["lease"]["holder"],
        status(&two).await["lease"]["holder"]
    );
    // The metric says the same: 1 on the holder, 0 on the other.
    let h = holders(&[&one, &two]).await;
    for (node, holds) in [&one, &two].into_iter().zip(&h) {
        assert_eq!(
            metric(node, "anchorage_rotation_lease_held").await,
            u64::from(*holds),
            "{h:?}"
        );
        assert_eq!(
            metric(node, "anchorage_rotation_lease_taken_total").await,
            u64::from(*holds)
        );
    }

    // A change through one instance is the other's phase and signer.
    let (code, started) = act(&two, json!({"action": "start"})).await;
    assert_eq!(code, 200, "{started}");
    let a_subject = started["old"]["subject"].as_str().unwrap().to_owned();
    let b_subject = started["new"]["subject"].as_str().unwrap().to_owned();
    assert_eq!(status(&one).await["phase"], "staged");
    assert_eq!(issuer_of(&issue(&one, "a.mesh.local").await.0), a_subject);
    // The dwell (an hour) holds the gate: advance refuses, force goes, and is recorded.
    let (code, refused) = act(&one, json!({"action": "advance"})).await;
    assert_eq!(code, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "gate_not_holding");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dwell")
    );
    let (code, forced) = act(&one, json!({"action": "advance", "force": true})).await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["history"][1]["forced"], true);
    let start = Instant::now();
    loop {
        let (leaf, _, _) = issue(&two, "b.mesh.local").await;
        if issuer_of(&leaf) == b_subject {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the other instance still signs under A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The holder stops: the other takes the lease over.
    let (holder, other) = if holders(&[&one, &two]).await[0] {
        (one, two)
    } else {
        (two, one)
    };
    holder.server.shutdown().await;
    let start = Instant::now();
    while status(&other).await["lease"]["this_instance"] != true {
        assert!(start.elapsed() < Duration::from_secs(5), "no takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&other).await["phase"], "signing");
    assert_eq!(metric(&other, "anchorage_rotation_lease_held").await, 1);
    assert_eq!(
        metric(&other, "anchorage_rotation_lease_taken_total").await,
        1
    );
    other.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_phase_and_the_signer_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(config_on(dir.path(), None, rotation(false))).await;
    let (_, started) = act(&node, json!({"action": "start"})).await;
    let b_subject = started["new"]["subject"].as_str().unwrap().to_owned();
    act(&node, json!({"action": "advance", "force": true})).await;
    node.server.shutdown().await;

    let node = start_with(config_on(dir.path(), None, rotation(false))).await;
    let s = status(&node).await;
    assert_eq!(s["phase"], "signing", "{s:#}");
    assert_eq!(issuer_of(&issue(&node, "c.mesh.local").await.0), b_subject);
    // ca.pem holds both roots while both are trusted.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    assert_eq!(anchorage_x509::decode(&ca).certificates.len(), 2);
    node.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsm_root_is_taken_over_as_a_and_live_leaves_under_the_current_ca_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(config_on(dir.path(), None, rotation(false))).await;
    let fsm = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions {
        common_name: "fsm-ca".into(),
        ..anchorage_ca::InitOptions::default()
    })
    .unwrap();
    // The Secret's layout (ca.crt, private.key), read back as the CLI reads a manifest.
    let data: std::collections::BTreeMap<String, Vec<u8>> = fsm
        .to_fsm_secret_data()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, secrecy::ExposeSecret::expose_secret(&v).to_vec()))
        .collect();
    let read = anchorage_ca::BuiltinCa::from_fsm_secret_data(
        &data,
        anchorage_x509::Timestamp::from_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        ),
    )
    .unwrap();
    let pem = secrecy::ExposeSecret::expose_secret(&anchorage_serve::rotation::ca_pem_text(&read))
        .to_owned();

    // A consumer with a live leaf under serve's own CA: refused, naming it.
    let (leaf, _, _) = issue(&node, "d.mesh.local").await;
    let cert = &anchorage_x509::decode(leaf.as_bytes()).certificates[0].certificate;
    let (code, body) = node
        .call(
            "POST",
            "/v1/acks",
            Some(&node.admin),
            Some(json!({"consumer": "web-1", "bundle_version": 1,
                "cert_serial": cert.serial(), "not_after": cert.not_after().rfc3339()})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, refused) = act(&node, json!({"action": "start", "takeover_pem": pem})).await;
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web-1")
    );
    assert_eq!(status(&node).await["phase"], "idle");

    let (code, started) = act(
        &node,
        json!({"action": "start", "takeover_pem": pem, "force": true}),
    )
    .await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["old"]["subject"], "CN=fsm-ca");
    assert_eq!(
        started["old"]["sha256"],
        anchorage_serve::authority::root_fingerprint(fsm.root())
    );
    // Staged: leaves under the taken-over root; the store's CA is it.
    assert_eq!(
        issuer_of(&issue(&node, "e.mesh.local").await.0),
        "CN=fsm-ca"
    );
    let stored = anchorage_ca::persist::load(node.server.state().store.as_ref(), None)
        .await
        .unwrap();
    assert_eq!(stored.ca.root(), fsm.root());
    node.server.shutdown().await;
}

fn roots_of(pems: &[&str]) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for f in anchorage_x509::decode(pem.as_bytes()).certificates {
            roots
                .add(CertificateDer::from(f.certificate.der().to_vec()))
                .unwrap();
        }
    }
    Arc::new(roots)
}

/// A TLS server with `chain` (leaf first) and `key`, and a client trusting `roots`: whether the
/// handshake verifies.
async fn handshake(chain: &[String], key: &str, roots: Arc<rustls::RootCertStore>) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = chain
        .iter()
        .flat_map(|p| anchorage_x509::decode(p.as_bytes()).certificates)
        .map(|f| CertificateDer::from(f.certificate.der().to_vec()))
        .collect();
    let (_, private) = anchorage_ca::keys::load(key.as_bytes()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private.pkcs8_der().to_vec()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ok = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .is_ok();
    let _ = accept.await;
    ok
}

fn openssl_verify(dir: &Path, ca: &str, untrusted: Option<&str>, leaf: &str) -> bool {
    let openssl = anchorage_test_support::peer::require("openssl").unwrap();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let mut cmd = std::process::Command::new(openssl);
    cmd.arg("verify").arg("-CAfile").arg(dir.join("ca.pem"));
    if let Some(u) = untrusted {
        std::fs::write(dir.join("untrusted.pem"), u).unwrap();
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    cmd.arg(dir.join("leaf.pem"));
    cmd.output().unwrap().status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_signed_intermediate_lets_a_peer_trusting_only_a_verify_a_leaf_of_b() {
    if anchorage_test_support::peer::require("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut config = config_on(dir.path(), None, rotation(false));
    // A CA with an intermediate: B gets one too, and the cross-signed certificate is B's
    // intermediate issued by A's root.
    config.ca_init.intermediate = Some(anchorage_ca::IntermediateOptions::default());
    let node = start_with(config).await;
    let a_root = node.ca_pem.clone();
    let other = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions {
        common_name: "Unrelated Root".into(),
        ..anchorage_ca::InitOptions::default()
    })
    .unwrap()
    .root()
    .to_pem();

    let (code, started) = act(&node, json!({"action": "start", "cross_sign": true})).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["cross_sign"], true);
    act(&node, json!({"action": "advance", "force": true})).await;
    let (leaf, chain, key) = issue(&node, "f.mesh.local").await;
    // B's intermediate, then its cross-signed twin (issued by A's root).
    assert_eq!(chain.len(), 2, "{chain:?}");
    let cross = &anchorage_x509::decode(chain[1].as_bytes()).certificates[0].certificate;
    let a_cert = &anchorage_x509::decode(a_root.as_bytes()).certificates[0].certificate;
    assert_eq!(cross.issuer(), a_cert.subject());
    let b_int = &anchorage_x509::decode(chain[0].as_bytes()).certificates[0].certificate;
    assert_eq!(issuer_of(&leaf), b_int.subject());
    assert_eq!(cross.subject(), b_int.subject());

    // openssl: A alone verifies the leaf through the cross-signed certificate …
    assert!(openssl_verify(work.path(), &a_root, Some(&chain[1]), &leaf));
    // … and not without it (negative control), nor with an unrelated root.
    assert!(!openssl_verify(work.path(), &a_root, None, &leaf));
    assert!(!openssl_verify(work.path(), &other, Some(&chain[1]), &leaf));

    // rustls: a client holding only A completes the handshake with the served chain; one
    // holding neither does not; one holding B does.
    let served: Vec<String> = std::iter::once(leaf.clone())
        .chain(chain.iter().cloned())
        .collect();
    assert!(handshake(&served, &key, roots_of(&[&a_root])).await);
    assert!(!handshake(&served, &key, roots_of(&[&other])).await);
    let b_root = started["new"]["sha256"].as_str().unwrap().to_owned();
    let (_, bundle) = node.server.state().bundle().await.unwrap();
    let b_pem: String = bundle
        .certificates()
        .filter(|c| anchorage_serve::authority::root_fingerprint(c) == b_root)
        .map(|c| c.to_pem())
        .collect();
    assert!(handshake(&served, &key, roots_of(&[&b_pem])).await);
    node.server.shutdown().await;
}

/// A shared store whose reads of the rotation record lag its writes by `lag` reads (a
/// JetStream replica that has not yet seen a write acknowledged through another node).
struct LaggingRotation {
    inner: MemoryStore,
    lag: std::sync::atomic::AtomicUsize,
    reads_behind: std::sync::atomic::AtomicUsize,
    before: std::sync::Mutex<Option<anchorage_store::Entry>>,
}

impl LaggingRotation {
    async fn remember(&self, key: &str) {
        use std::sync::atomic::Ordering;
        if key == anchorage_serve::rotation::ROTATION_KEY {
            *self.before.lock().unwrap() = self.inner.get(key).await.unwrap();
            self.reads_behind
                .store(self.lag.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }
}

#[async_trait::async_trait]
impl Store for LaggingRotation {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<anchorage_store::Entry>, anchorage_store::StoreError> {
        use std::sync::atomic::Ordering;
        if key == anchorage_serve::rotation::ROTATION_KEY
            && self
                .reads_behind
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Ok(self.before.lock().unwrap().clone());
        }
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, anchorage_store::StoreError> {
        self.remember(key).await;
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, anchorage_store::StoreError> {
        self.remember(key).await;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        rev: u64,
    ) -> Result<u64, anchorage_store::StoreError> {
        self.remember(key).await;
        self.inner.update(key, value, rev).await
    }
    async fn delete(&self, key: &str, rev: Option<u64>) -> Result<(), anchorage_store::StoreError> {
        self.inner.delete(key, rev).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, anchorage_store::StoreError> {
        self.inner.keys(prefix).await
    }
}

/// Found by the three-instance test on a NATS cluster: an action's answer (and the signer)
/// came from a replica that had not seen the action's own write yet (`start` answered
/// `idle`). The record is read again until it is at least as new as the instance's last write;
/// a replica that never catches up is a 503, not a phase from the past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_never_answers_an_older_phase_than_the_instance_wrote() {
    use std::sync::atomic::Ordering;
    let lagging = Arc::new(LaggingRotation {
        inner: MemoryStore::new(),
        lag: std::sync::atomic::AtomicUsize::new(4),
        reads_behind: std::sync::atomic::AtomicUsize::new(0),
        before: std::sync::Mutex::new(None),
    });
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::clone(&lagging) as Arc<dyn Store>;
    let node = start_with(config_on(dir.path(), Some(store), rotation(false))).await;
    let (code, started) = act(&node, json!({"action": "start"})).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["phase"], "staged", "{started:#}");
    let b_subject = started["new"]["subject"].as_str().unwrap().to_owned();
    let (code, forced) = act(&node, json!({"action": "advance", "force": true})).await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["phase"], "signing", "{forced:#}");
    assert_eq!(status(&node).await["phase"], "signing");
    assert_eq!(issuer_of(&issue(&node, "g.mesh.local").await.0), b_subject);

    // Control: a replica that never catches up (after the next write) is refused with 503.
    lagging.lag.store(usize::MAX, Ordering::SeqCst);
    let (code, _) = act(&node, json!({"action": "abort"})).await;
    assert_eq!(code, 200);
    let (code, body) = node
        .call("GET", "/v1/rotation", Some(&node.admin), None)
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    node.server.shutdown().await;
}

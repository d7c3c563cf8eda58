//! Shared by the serve tests: a server started in-process on a free loopback port with a
//! temporary data directory, and an HTTPS client trusting the CA file it wrote.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anchorage_serve::{Limits, Role, ServeConfig, Server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

pub struct Running {
    pub server: Server,
    pub url: String,
    pub admin: String,
    pub ca_pem: String,
    pub client: reqwest::Client,
}

pub fn config(dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::new(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits = Limits {
        max_body_bytes: 16 * 1024,
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        max_wait: Duration::from_secs(30),
        max_connections: anchorage_serve::DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: anchorage_serve::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        write_timeout: anchorage_serve::DEFAULT_WRITE_TIMEOUT,
    };
    config
}

pub async fn start(dir: &Path) -> Running {
    start_with(config(dir)).await
}

pub async fn start_with(config: ServeConfig) -> Running {
    let dir = config.data_dir.clone();
    let server = Server::start(config).await.expect("server starts");
    let url = server.serving().url.clone();
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let client = client(&ca_pem, None);
    Running {
        server,
        url,
        admin,
        ca_pem,
        client,
    }
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` (chain PEM, PKCS#8 key PEM).
pub fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for found in anchorage_x509::decode(ca_pem.as_bytes()).certificates {
        roots
            .add(CertificateDer::from(found.certificate.der().to_vec()))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let certs = anchorage_x509::decode(chain.as_bytes())
                .certificates
                .into_iter()
                .map(|f| CertificateDer::from(f.certificate.der().to_vec()))
                .collect();
            let (_, private) = anchorage_ca::keys::load(key.as_bytes()).unwrap();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private.pkcs8_der().to_vec()));
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Running {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_with(&self.client, &self.url, method, path, token, body).await
    }

    pub async fn put_role(&self, role: Value) {
        let name = role["name"].as_str().unwrap().to_owned();
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/roles/{name}"),
                Some(&self.admin),
                Some(role),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn token(&self, body: Value) -> String {
        let (status, answer) = self
            .call("POST", "/v1/tokens", Some(&self.admin), Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    pub async fn ott(&self, sub: &str, aud: &str) -> String {
        self.token(json!({"kind": "ott", "sub": sub, "role": "mesh", "audience": aud}))
            .await
    }

    pub async fn role_token(&self) -> String {
        self.token(json!({"kind": "role", "sub": "controller", "role": "mesh"}))
            .await
    }
}

pub async fn call_with(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method.parse().unwrap(), format!("{url}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub fn mesh_role() -> Value {
    json!({
        "name": "mesh",
        "allowed_domains": ["mesh.local"],
        "allow_subdomains": true,
        "spiffe_trust_domain": "example.org",
        "spiffe_path_pattern": "/ns/*/sa/*",
        "allowed_kinds": ["service", "server", "client"],
        "key_types": ["p256", "ed25519"],
        "max_ttl_seconds": 86400
    })
}

pub fn role_struct() -> Role {
    serde_json::from_value(mesh_role()).unwrap()
}

/// A CSR for `cn` (plus `sans`) with a new key of `key_type`; returns (CSR PEM, key PEM).
pub fn csr(cn: &str, sans: &[&str], key_type: anchorage_ca::KeyType) -> (String, String) {
    use secrecy::ExposeSecret as _;
    let (pair, private) = anchorage_ca::keys::generate(key_type).unwrap();
    let mut req = anchorage_ca::CertificateRequest::new(
        anchorage_ca::Identity::new(cn).unwrap(),
        anchorage_ca::CertKind::Service,
    );
    for s in sans {
        req = req.with_san(anchorage_ca::San::parse(s).unwrap());
    }
    let pem = anchorage_ca::csr_pem(&req, &pair).unwrap();
    (pem, private.to_pkcs8_pem().expose_secret().to_owned())
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

/// Starts one instance per store (all must reach the same state: one shared store, or stores
/// on one JetStream bucket) and checks they act as one: a single CA and token key, tokens
/// minted through one accepted by all, a one-time token used on one refused on another,
/// `issuances` concurrent issuances spread over all with every serial distinct and recorded,
/// a revocation through the first in every other's CRL within 2 s, an ack through the last
/// listed by the first, a CA added through the first waking a long-poll on the last.
pub async fn shared_instances(
    stores: Vec<std::sync::Arc<dyn anchorage_store::Store>>,
    issuances: usize,
) {
    use std::collections::HashSet;
    use std::time::Instant;
    assert!(stores.len() >= 2);
    let dirs: Vec<tempfile::TempDir> = stores
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut nodes = Vec::new();
    for (i, (store, dir)) in stores.iter().zip(&dirs).enumerate() {
        let mut c = config(dir.path());
        c.store = anchorage_serve::StoreChoice::Shared(std::sync::Arc::clone(store));
        if i == 0 {
            c.roles = vec![role_struct()];
        }
        nodes.push(start_with(c).await);
    }
    let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
    assert!(first.server.serving().ca_created);
    for n in &nodes[1..] {
        assert!(!n.server.serving().ca_created);
        assert_eq!(n.ca_pem, first.ca_pem);
    }

    let t = first.role_token().await;
    for n in &nodes {
        assert_eq!(
            n.call(
                "POST",
                "/v1/issue",
                Some(&t),
                Some(json!({"common_name": "x.mesh.local"}))
            )
            .await
            .0,
            200
        );
    }
    let ott = first.ott("y.mesh.local", "/v1/sign").await;
    let (csr_pem, _) = csr("y.mesh.local", &[], anchorage_ca::KeyType::P256);
    assert_eq!(
        first
            .call(
                "POST",
                "/v1/sign",
                Some(&ott),
                Some(json!({"csr": csr_pem}))
            )
            .await
            .0,
        200
    );
    let (status, answer) = last
        .call(
            "POST",
            "/v1/sign",
            Some(&ott),
            Some(json!({"csr": csr_pem})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (401, "token_replayed"));

    let mut tasks = Vec::new();
    for i in 0..issuances {
        let n = &nodes[i % nodes.len()];
        let (client, url, t) = (n.client.clone(), n.url.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let (status, body) = call_with(
                &client,
                &url,
                "POST",
                "/v1/issue",
                Some(&t),
                Some(json!({"common_name": format!("n{i}.mesh.local")})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["serial_number"].as_str().unwrap().to_owned()
        }));
    }
    let mut serials = HashSet::new();
    for task in tasks {
        assert!(
            serials.insert(task.await.unwrap()),
            "a serial was issued twice"
        );
    }
    let recorded: HashSet<String> = stores[0]
        .keys("serve.certs.")
        .await
        .unwrap()
        .into_iter()
        .collect();
    for s in &serials {
        assert!(
            recorded.contains(&format!("serve.certs.{s}")),
            "{s} not recorded"
        );
    }

    let serial = serials.iter().next().unwrap().clone();
    assert_eq!(
        first
            .call(
                "POST",
                "/v1/revoke",
                Some(&first.admin),
                Some(json!({"serial": serial}))
            )
            .await
            .0,
        200
    );
    let started = Instant::now();
    for n in &nodes[1..] {
        loop {
            let pem = n
                .client
                .get(format!("{}/v1/crl?format=pem", n.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            use x509_parser::prelude::FromDer as _;
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(&p.contents)
                    .unwrap();
            if crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial_as_string().replace(':', "") == serial)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "revocation not in {}'s CRL after 2 s",
                n.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    assert_eq!(
        last.call(
            "POST",
            "/v1/acks",
            Some(&t),
            Some(json!({"consumer": "node-last", "bundle_version": 1}))
        )
        .await
        .0,
        200
    );
    let (_, list) = first
        .call("GET", "/v1/consumers", Some(&first.admin), None)
        .await;
    assert!(
        list["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["consumer"] == "node-last"),
        "{list}"
    );
    let waiter = {
        let (client, url) = (last.client.clone(), last.url.clone());
        tokio::spawn(async move {
            client
                .get(format!("{url}/v1/bundle?wait=10"))
                .header("if-none-match", "\"1\"")
                .send()
                .await
                .unwrap()
                .headers()["etag"]
                .to_str()
                .unwrap()
                .to_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions {
        common_name: "Extra".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        first
            .call(
                "POST",
                "/v1/bundle/cas",
                Some(&first.admin),
                Some(json!({"add": extra.root().to_pem()}))
            )
            .await
            .0,
        200
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap(),
        "\"2\""
    );
    for n in nodes {
        n.server.shutdown().await;
    }
}

/// What load workers had acknowledged (answered 200) before serve was killed: every one must
/// be there after a restart (`crash.rs`, `kill_random.rs`).
#[derive(Default)]
pub struct Acked {
    /// Serials issued.
    pub issued: Vec<String>,
    /// Serials revoked.
    pub revoked: Vec<String>,
    /// Consumers whose ack was recorded.
    pub acks: Vec<String>,
    /// SHA-256 of CAs added to the bundle (`POST /v1/bundle/cas`, a compare-and-swap rewrite of
    /// the bundle record, unlike the create-only writes above).
    pub cas: Vec<String>,
}

/// One load worker named `name`: issues `<name>-<n>.mesh.local` with `token`, revokes every
/// third with `admin`, acks as consumer `<name>-<n>`; each write recorded in `acked` once
/// answered 200. Returns at the first request that is not answered 200 (serve killed).
pub async fn issue_revoke_ack(
    http: reqwest::Client,
    url: String,
    token: String,
    admin: String,
    name: String,
    acked: Arc<std::sync::Mutex<Acked>>,
) {
    for n in 0.. {
        let req = http
            .post(format!("{url}/v1/issue"))
            .bearer_auth(&token)
            .json(&json!({"common_name": format!("{name}-{n}.mesh.local")}));
        let Ok(resp) = req.send().await else { return };
        if resp.status() != 200 {
            return;
        }
        let Ok(body) = resp.json::<Value>().await else {
            return;
        };
        let serial = body["serial_number"].as_str().unwrap().to_owned();
        acked.lock().unwrap().issued.push(serial.clone());
        if n % 3 == 0 {
            let req = http
                .post(format!("{url}/v1/revoke"))
                .bearer_auth(&admin)
                .json(&json!({"serial": serial}));
            match req.send().await {
                Ok(r) if r.status() == 200 => acked.lock().unwrap().revoked.push(serial),
                _ => return,
            }
        }
        let consumer = format!("{name}-{n}");
        let req = http
            .post(format!("{url}/v1/acks"))
            .bearer_auth(&token)
            .json(&json!({"consumer": consumer, "bundle_version": 1}));
        match req.send().await {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().acks.push(consumer),
            _ => return,
        }
    }
}

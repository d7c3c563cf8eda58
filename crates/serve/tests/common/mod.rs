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

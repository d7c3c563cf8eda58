//! Shared by the agent tests that run a real serve in-process (`agent.rs`, `rotation.rs`):
//! serve on a loopback port with a temporary data directory, an admin HTTPS client trusting the
//! CA file serve wrote, a role with its token, and an agent run as a task.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anchorage_agent::{Agent, AgentConfig};
use anchorage_serve::{Limits, ServeConfig, Server};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A serve started in-process, with its admin token and a client trusting its CA.
pub struct Serve {
    pub server: Server,
    pub url: String,
    pub dir: PathBuf,
    pub admin: String,
    pub http: reqwest::Client,
}

/// serve's configuration for these tests: data in `dir`, listening on `listen`, a 2 s drain
/// and long polls of up to 30 s.
pub fn serve_config(dir: &Path, listen: &str) -> ServeConfig {
    let mut config = ServeConfig::new(dir);
    config.listen = listen.parse().unwrap();
    config.limits = Limits {
        drain_timeout: Duration::from_secs(2),
        max_wait: Duration::from_secs(30),
        ..Limits::default()
    };
    config
}

impl Serve {
    /// Starts serve with `config` (its data directory holds the admin token and CA after).
    pub async fn start(config: ServeConfig) -> Self {
        let dir = config.data_dir.clone();
        let server = Server::start(config).await.unwrap();
        let url = server.serving().url.clone();
        let admin = std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for f in anchorage_x509::decode(&ca).certificates {
            roots
                .add(CertificateDer::from(f.certificate.der().to_vec()))
                .unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        Self {
            server,
            url,
            dir,
            admin,
            http,
        }
    }

    /// The CA file serve wrote (what agents are given as `--ca`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `method path` with the admin token; the status and the JSON body (`null` if none).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The role `mesh` (`role`: its body) and a role token for it (subject `agents`), written
    /// to `file`.
    pub async fn role_and_token(&self, role: Value, file: &Path) {
        let (status, body) = self.call("PUT", "/v1/roles/mesh", Some(role)).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self
            .call(
                "POST",
                "/v1/tokens",
                Some(json!({"kind": "role", "sub": "agents", "role": "mesh"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        std::fs::write(file, body["token"].as_str().unwrap()).unwrap();
    }
}

/// Runs the agent in a task until the sender is dropped or fired.
pub fn spawn(config: AgentConfig) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut agent = Agent::new(config).unwrap();
        agent
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, handle)
}

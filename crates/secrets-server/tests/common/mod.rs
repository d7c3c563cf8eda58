//! Shared by the integration tests: identities minted with wascap as a wasmCloud host mints
//! them, a server started on a real nats-server, and requests made with the real
//! `wasmcloud-secrets-client`.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use anchorage_secrets::{GetHandler, JwtPolicy, XKey};
use anchorage_secrets_server::{AdminService, MappingStore, SecretStore, Server, ServerConfig};
use nkeys::KeyPair;
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wascap::jwt::{Claims, ClaimsBuilder, Component, Host};
use wasmcloud_secrets_types::{Application, Context, SecretRequest};

pub const PREFIX: &str = "wasmcloud.secrets";
pub const BACKEND: &str = "nats-kv";

pub struct Identities {
    pub account: KeyPair,
    pub component: KeyPair,
    pub cluster: KeyPair,
    pub host: KeyPair,
}

impl Identities {
    pub fn new() -> Self {
        Self {
            account: KeyPair::new_account(),
            component: KeyPair::new_module(),
            cluster: KeyPair::new_cluster(),
            host: KeyPair::new_server(),
        }
    }

    pub fn entity(&self) -> String {
        self.component.public_key()
    }

    pub fn component_jwt_with(&self, signer: &KeyPair, expires: Option<u64>) -> String {
        let mut claims = ClaimsBuilder::<Component>::new()
            .issuer(&self.account.public_key())
            .subject(&self.component.public_key())
            .with_metadata(Component {
                name: Some("demo".into()),
                module_hash: "abc".into(),
                ..Component::default()
            })
            .build();
        claims.expires = expires;
        claims.encode(signer).expect("encode component jwt")
    }

    pub fn component_jwt(&self) -> String {
        self.component_jwt_with(&self.account, None)
    }

    pub fn host_jwt(&self) -> String {
        Claims::<Host>::new(
            "host".into(),
            self.cluster.public_key(),
            self.host.public_key(),
            Some(HashMap::new()),
        )
        .encode(&self.cluster)
        .expect("encode host jwt")
    }

    pub fn request(&self, key: &str, version: Option<&str>) -> SecretRequest {
        self.request_with(key, version, self.component_jwt(), self.host_jwt())
    }

    pub fn request_with(
        &self,
        key: &str,
        version: Option<&str>,
        entity_jwt: String,
        host_jwt: String,
    ) -> SecretRequest {
        SecretRequest {
            key: key.into(),
            field: None,
            version: version.map(str::to_owned),
            context: Context {
                entity_jwt,
                host_jwt,
                application: Application {
                    name: Some("app".into()),
                    policy:
                        r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{}}"#
                            .into(),
                },
            },
        }
    }
}

/// Connects to `url`; `nats://user:password@host:port` logs in with those credentials
/// (async-nats 0.39 ignores credentials in a URL).
pub async fn connect(url: &str) -> async_nats::Client {
    if let Some((credentials, host)) = url
        .strip_prefix("nats://")
        .and_then(|rest| rest.split_once('@'))
    {
        let (user, password) = credentials.split_once(':').expect("user:password");
        return async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .connect(format!("nats://{host}"))
            .await
            .expect("connect with a password");
    }
    async_nats::connect(url).await.expect("connect")
}

/// A server running on a task; stopped (gracefully) by `stop`.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub async fn serve(
    url: &str,
    seed: &SecretString,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    config: ServerConfig,
) -> Running {
    serve_with_admin(url, seed, values, mappings, config, None).await
}

/// As [`serve`], answering the admin subjects too when `admin` is given.
pub async fn serve_with_admin(
    url: &str,
    seed: &SecretString,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    config: ServerConfig,
    admin: Option<AdminService>,
) -> Running {
    serve_as(url, url, seed, values, mappings, config, admin).await
}

/// As [`serve_with_admin`], the server connecting to `url` and the readiness probe (a
/// `server_xkey` request) to `probe_url`, for servers whose user may not publish requests.
pub async fn serve_as(
    url: &str,
    probe_url: &str,
    seed: &SecretString,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    config: ServerConfig,
    admin: Option<AdminService>,
) -> Running {
    serve_with_policy(
        url,
        probe_url,
        seed,
        values,
        mappings,
        config,
        admin,
        JwtPolicy::default(),
    )
    .await
}

/// As [`serve_as`], with issuer allow-lists.
#[allow(clippy::too_many_arguments)]
pub async fn serve_with_policy(
    url: &str,
    probe_url: &str,
    seed: &SecretString,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    config: ServerConfig,
    admin: Option<AdminService>,
    jwt: JwtPolicy,
) -> Running {
    let client = connect(url).await;
    let handler = GetHandler::new(XKey::from_seed(seed, "test").expect("transit seed"), jwt);
    let mut server = Server::new(handler, values, mappings, config);
    if let Some(admin) = admin {
        server = server.with_admin(admin);
    }
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(client, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
    });
    // The subscription is made inside the task: wait until the server answers.
    let probe = connect(probe_url).await;
    let subject = format!("{PREFIX}.v1alpha1.{BACKEND}.server_xkey");
    for _ in 0..100 {
        let asked = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            probe.request(subject.clone(), "".into()),
        )
        .await;
        if matches!(asked, Ok(Ok(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Running {
        stop: Some(tx),
        task: Some(task),
    }
}

pub async fn client(url: &str) -> wasmcloud_secrets_client::Client {
    let nc = async_nats::connect(url).await.expect("connect client");
    wasmcloud_secrets_client::Client::new(BACKEND, PREFIX, nc)
        .await
        .expect("secrets client")
}

/// `Ok(string or bytes, version)` or the client's error text.
pub async fn get(
    client: &wasmcloud_secrets_client::Client,
    request: SecretRequest,
) -> Result<(Option<String>, Option<Vec<u8>>, String), String> {
    client
        .get(request, nkeys::XKey::new())
        .await
        .map(|s| (s.string_secret, s.binary_secret, s.version))
        .map_err(|e| e.to_string())
}

//! [`OpenBaoSecrets`]: values in a Vault/OpenBao KV v2 engine, read over HTTPS (reqwest over
//! rustls with the trust the caller built, as `anchorage-ca-vault` does).
//!
//! `key` is the path under the mount, `field` selects one value of the secret's map (a string
//! is served as it is, anything else as its JSON text); without `field` the whole map is served
//! as JSON. `version` is the KV v2 version. The mount is the configured one unless the
//! application's policy names another in `properties.mount_path` (or `properties.mount`),
//! which must be among the allowed mounts. Token or AppRole authentication; an AppRole token is
//! fetched again when OpenBao refuses it. Mappings are not kept here.

use std::sync::Arc;
use std::time::Duration;

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret, policy_mount};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use tokio::sync::RwLock;
use zeroize::Zeroizing;

use super::{RotationReport, SecretStore, StoreFailure, bytes_of};

const STORE: &str = "openbao";
const MAX_BODY: usize = 4 << 20;

/// How to authenticate to OpenBao.
pub enum OpenBaoAuth {
    /// A token.
    Token(SecretString),
    /// AppRole login at `auth/<mount>/login`.
    AppRole {
        /// The auth mount (`approle`).
        mount: String,
        /// The role ID.
        role_id: String,
        /// The secret ID.
        secret_id: SecretString,
    },
}

impl std::fmt::Debug for OpenBaoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenBaoAuth::Token(_) => f.write_str("Token([REDACTED])"),
            OpenBaoAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Where OpenBao is and how to reach it.
#[derive(Debug)]
pub struct OpenBaoConfig {
    /// `https://bao.example:8200` (or `http://` for a dev server).
    pub address: String,
    /// The KV v2 mount used unless a policy names another (`secret`).
    pub mount: String,
    /// Other mounts a policy may name.
    pub extra_mounts: Vec<String>,
    /// How to log in.
    pub auth: OpenBaoAuth,
    /// A namespace (`X-Vault-Namespace`), for Vault Enterprise / OpenBao namespaces.
    pub namespace: Option<String>,
    /// TLS client configuration for `https://` (roots from `--tls-ca-path`).
    pub tls: rustls::ClientConfig,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Values in OpenBao KV v2.
pub struct OpenBaoSecrets {
    client: reqwest::Client,
    address: String,
    mount: String,
    mounts: Vec<String>,
    auth: Arc<OpenBaoAuth>,
    namespace: Option<String>,
    token: RwLock<Option<SecretString>>,
}

impl std::fmt::Debug for OpenBaoSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoSecrets")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

fn fail(
    action: impl Into<String>,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreFailure {
    StoreFailure::backend(STORE, action, e)
}

fn check_path(what: &'static str, path: &str) -> Result<(), StoreFailure> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=' | '@'));
    if bad {
        return Err(StoreFailure::InvalidName {
            what,
            name: path.to_owned(),
            reason: "an OpenBao path of letters, digits and - _ . / = @, without empty, . or .. segments".to_owned(),
        });
    }
    Ok(())
}

impl OpenBaoSecrets {
    /// Builds the client (no request is sent yet).
    pub fn new(config: OpenBaoConfig) -> Result<Self, StoreFailure> {
        let address = config.address.trim_end_matches('/').to_owned();
        let https = address.starts_with("https://");
        if !https && !address.starts_with("http://") {
            return Err(StoreFailure::InvalidName {
                what: "OpenBao address",
                name: address,
                reason: "must start with https:// (or http://)".to_owned(),
            });
        }
        check_path("mount", &config.mount)?;
        for m in &config.extra_mounts {
            check_path("mount", m)?;
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config.tls)
            .https_only(https)
            .timeout(config.timeout)
            .user_agent(concat!(
                "anchorage-secrets-server/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| fail(format!("build an HTTP client for {address}"), e))?;
        let mut mounts = vec![config.mount.clone()];
        mounts.extend(config.extra_mounts);
        let token = match &config.auth {
            OpenBaoAuth::Token(t) => Some(t.clone()),
            OpenBaoAuth::AppRole { .. } => None,
        };
        Ok(Self {
            client,
            address,
            mount: config.mount,
            mounts,
            auth: Arc::new(config.auth),
            namespace: config.namespace,
            token: RwLock::new(token),
        })
    }

    async fn login(&self) -> Result<SecretString, StoreFailure> {
        let OpenBaoAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &*self.auth
        else {
            return Err(StoreFailure::AuthFailed {
                store: STORE,
                action: "authenticate with the token".to_owned(),
            });
        };
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "role_id": role_id,
                "secret_id": secret_id.expose_secret(),
            }))
            .map_err(|e| fail("encode the AppRole login", e))?,
        );
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("auth/{mount}/login"),
                None,
                Some(body.to_vec()),
            )
            .await?;
        if status.is_client_error() {
            return Err(StoreFailure::AuthFailed {
                store: STORE,
                action: format!("log in with AppRole at auth/{mount}/login ({status})"),
            });
        }
        if !status.is_success() {
            return Err(fail(
                format!("log in with AppRole at auth/{mount}/login"),
                format!("OpenBao answered {status}"),
            ));
        }
        let token = answer
            .pointer("/auth/client_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(
                    "log in with AppRole",
                    "the answer holds no auth.client_token",
                )
            })?;
        let token = SecretString::from(token.to_owned());
        *self.token.write().await = Some(token.clone());
        Ok(token)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), StoreFailure> {
        let url = format!("{}/v1/{path}", self.address);
        let what = format!("{method} {url}");
        let mut request = self
            .client
            .request(method, &url)
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let mut response = request.send().await.map_err(|e| fail(what.clone(), e))?;
        let status = response.status();
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(what.clone(), e))? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(fail(what, "the answer is larger than 4 MiB"));
            }
            let mut bigger = Zeroizing::new(Vec::with_capacity(bytes.len() + chunk.len()));
            bigger.extend_from_slice(&bytes);
            bigger.extend_from_slice(&chunk);
            bytes = bigger;
        }
        if bytes.is_empty() {
            return Ok((status, Value::Null));
        }
        // The answer's strings are wiped by the callers that read values (`get`).
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Sends with the current token; logs in again once on 403.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), StoreFailure> {
        // The read guard must be gone before `login` takes the write lock.
        let cached = self.token.read().await.clone();
        let token = match cached {
            Some(t) => t,
            None => self.login().await?,
        };
        let (status, value) = self
            .send(method.clone(), path, Some(&token), body.clone())
            .await?;
        let (status, value) = if status == StatusCode::FORBIDDEN
            && matches!(*self.auth, OpenBaoAuth::AppRole { .. })
        {
            let token = self.login().await?;
            self.send(method, path, Some(&token), body).await?
        } else {
            (status, value)
        };
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(StoreFailure::AuthFailed {
                store: STORE,
                action: format!("access {path} ({status})"),
            });
        }
        Ok((status, value))
    }

    fn mount_for(&self, policy: &str) -> Result<&str, StoreFailure> {
        match policy_mount(policy) {
            None => Ok(&self.mount),
            Some(m) => self
                .mounts
                .iter()
                .find(|x| **x == m)
                .map(String::as_str)
                .ok_or(StoreFailure::InvalidName {
                    what: "mount",
                    name: m,
                    reason: "the policy names a mount this backend does not serve".to_owned(),
                }),
        }
    }

    fn refused(path: &str, status: StatusCode) -> StoreFailure {
        fail(format!("read {path}"), format!("OpenBao answered {status}"))
    }
}

/// Overwrites every string in `value` (OpenBao's answer holds secret values).
fn wipe(value: &mut Value) {
    use zeroize::Zeroize as _;
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

fn serve_field(value: &Value) -> Option<SecretValue> {
    match value {
        Value::String(s) => Some(SecretValue::String(s.clone().into())),
        Value::Null => None,
        other => serde_json::to_string(other)
            .ok()
            .map(|s| SecretValue::String(s.into())),
    }
}

#[async_trait]
impl SecretStore for OpenBaoSecrets {
    fn kind(&self) -> &'static str {
        STORE
    }

    fn default_mount(&self) -> Option<&str> {
        Some(&self.mount)
    }

    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure> {
        let mount = self.mount_for(lookup.policy)?;
        if check_path("secret name", lookup.key).is_err() {
            return Ok(None);
        }
        let mut path = format!("{mount}/data/{}", lookup.key);
        if let Some(v) = lookup.version {
            match v.trim().parse::<u64>() {
                Ok(v) if v > 0 => path.push_str(&format!("?version={v}")),
                _ => return Ok(None),
            }
        }
        let (status, mut answer) = self.call(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Self::refused(&path, status));
        }
        let version = answer
            .pointer("/data/metadata/version")
            .and_then(Value::as_u64)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let Some(mut data) = answer.pointer_mut("/data/data").map(Value::take) else {
            wipe(&mut answer);
            return Ok(None);
        };
        wipe(&mut answer);
        let value = match lookup.field {
            Some(field) => data.get(field).and_then(serve_field),
            None => serve_field(&data),
        };
        wipe(&mut data);
        Ok(value.map(|value| VersionedSecret { version, value }))
    }

    async fn put(&self, key: &str, value: SecretValue) -> Result<String, StoreFailure> {
        check_path("secret name", key)?;
        let (bytes, string) = bytes_of(&value);
        let text = std::str::from_utf8(bytes).ok().filter(|_| string).ok_or(
            StoreFailure::Unsupported {
                store: STORE,
                operation: "binary values (KV v2 holds JSON)",
            },
        )?;
        // A JSON object is stored as the secret's map; anything else as {"value": text}.
        let data: Value = match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => serde_json::json!({ "value": text }),
        };
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "data": data }))
                .map_err(|e| fail("encode a value", e))?,
        );
        let path = format!("{}/data/{key}", self.mount);
        let (status, answer) = self.call(Method::POST, &path, Some(body.to_vec())).await?;
        if !status.is_success() {
            return Err(fail(
                format!("write {path}"),
                format!("OpenBao answered {status}"),
            ));
        }
        Ok(answer
            .pointer("/data/version")
            .and_then(Value::as_u64)
            .map(|v| v.to_string())
            .unwrap_or_default())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreFailure> {
        check_path("secret name", key)?;
        let meta = format!("{}/metadata/{key}", self.mount);
        let (status, _) = self.call(Method::GET, &meta, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let (status, _) = self.call(Method::DELETE, &meta, None).await?;
        if !status.is_success() {
            return Err(fail(
                format!("delete {meta}"),
                format!("OpenBao answered {status}"),
            ));
        }
        Ok(true)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreFailure> {
        let list = Method::from_bytes(b"LIST").map_err(|e| fail("list", e))?;
        let path = format!("{}/metadata/", self.mount);
        let (status, answer) = self.call(list, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(Self::refused(&path, status));
        }
        let mut keys: Vec<String> = answer
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        Err(StoreFailure::Unsupported {
            store: STORE,
            operation: "rotate-encryption-key (OpenBao encrypts its own storage)",
        })
    }
}

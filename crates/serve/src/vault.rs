//! The Vault-PKI-compatible subset, so stock Vault clients (the `bao`/`vault` CLI,
//! cert-manager's Vault issuer, mesh controllers, `anchorage-ca-vault`) issue from anchorage:
//!
//! - `GET /v1/sys/health`, `/v1/sys/seal-status` and `/v1/sys/leader`;
//! - `POST|PUT /v1/<mount>/issue/<role>` and `/v1/<mount>/sign/<role>` with Vault's fields
//!   (`common_name`, `alt_names`, `ip_sans`, `uri_sans`, `ttl`, `csr`,
//!   `exclude_cn_from_sans`, `key_type`, `key_bits`) → `data.certificate`, `issuing_ca`,
//!   `ca_chain`, `private_key`, `private_key_type`, `serial_number`, `expiration`;
//! - `POST|PUT|GET /v1/<mount>/roles/<name>` (admin): Vault's role fields mapped onto ours;
//! - `GET /v1/<mount>/ca/pem`, `/v1/<mount>/ca_chain`, `/v1/<mount>/cert/ca_chain`,
//!   `/v1/<mount>/issuer/<ref>/json`;
//! - `X-Vault-Token` (our admin or role tokens) and `POST /v1/auth/approle/login`.
//!
//! Errors come back as `{"errors":["…"]}`. Any mount name is accepted; the role is ours.

use std::sync::Arc;

use anchorage_ca::{KeyType, San};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::api::{IssueParams, Issued, issue};
use crate::authority::parse_csr;
use crate::error::ApiError;
use crate::http::{Ttl, VaultBody, authenticate, require_admin};
use crate::roles::{self, Role};
use crate::state::AppState;
use crate::tokens::{TokenKind, TokenRequest, mint_with, now_unix, random_hex};

type St = State<Arc<AppState>>;
const APPROLE_PREFIX: &str = "serve.approle.";
/// Lifetime of the role token an AppRole login returns.
const LOGIN_TTL: i64 = 3600;

fn envelope(data: Value) -> Json<Value> {
    Json(json!({
        "request_id": random_hex(16),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    }))
}

/// `GET /v1/sys/health`.
pub(crate) async fn sys_health() -> Json<Value> {
    Json(json!({
        "initialized": true,
        "sealed": false,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now_unix(),
        "version": concat!("anchorage-", env!("CARGO_PKG_VERSION")),
        "cluster_name": "anchorage",
    }))
}

/// `GET /v1/sys/seal-status` (`bao status` reads it).
pub(crate) async fn seal_status() -> Json<Value> {
    Json(json!({
        "type": "shamir",
        "initialized": true,
        "sealed": false,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": concat!("anchorage-", env!("CARGO_PKG_VERSION")),
        "build_date": "",
        "migration": false,
        "cluster_name": "anchorage",
        "cluster_id": "",
        "recovery_seal": false,
        "storage_type": "anchorage",
    }))
}

/// `GET /v1/sys/leader` (`bao status` reads it too): one active node, no HA.
pub(crate) async fn leader() -> Json<Value> {
    Json(json!({
        "ha_enabled": false,
        "is_self": true,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": "",
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
    }))
}

/// A list given as a comma-separated string or a JSON array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum List {
    One(String),
    Many(Vec<String>),
}

impl List {
    fn items(&self) -> Vec<String> {
        match self {
            List::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            List::Many(v) => v
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// A number given as JSON or as a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Num {
    Int(u32),
    Text(String),
}

/// Vault's issue/sign fields (others are accepted and ignored, as Vault ignores unknown ones
/// with a warning).
#[derive(Debug, Deserialize)]
pub(crate) struct VaultIssue {
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    alt_names: Option<List>,
    #[serde(default)]
    ip_sans: Option<List>,
    #[serde(default)]
    uri_sans: Option<List>,
    #[serde(default)]
    ttl: Option<Ttl>,
    #[serde(default)]
    csr: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // CN is always a SAN when it is a DNS name (anchorage's rule)
    exclude_cn_from_sans: Option<Value>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    key_bits: Option<Num>,
    #[serde(default)]
    format: Option<String>,
}

fn vault_key_type(kind: Option<&str>, bits: Option<&Num>) -> Result<Option<KeyType>, ApiError> {
    let bits = match bits {
        None => None,
        Some(Num::Int(b)) => Some(*b),
        Some(Num::Text(t)) => Some(t.parse().map_err(|_| {
            ApiError::bad_request("invalid_request", format!("key_bits {t:?} is not a number"))
                .into_vault()
        })?),
    };
    Ok(match (kind, bits.unwrap_or(0)) {
        (None | Some("any"), _) => None,
        (Some("ec"), 0 | 256) => Some(KeyType::P256),
        (Some("ec"), 384) => Some(KeyType::P384),
        (Some("ed25519"), _) => Some(KeyType::Ed25519),
        (Some("rsa"), 0 | 2048) => Some(KeyType::Rsa2048),
        (Some("rsa"), 3072) => Some(KeyType::Rsa3072),
        (Some("rsa"), 4096) => Some(KeyType::Rsa4096),
        (Some(k), b) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("key_type {k:?} with key_bits {b} is not supported (ec 256/384, ed25519, rsa 2048/3072/4096)"),
            )
            .into_vault());
        }
    })
}

fn private_key_type(kt: Option<KeyType>) -> &'static str {
    match kt {
        Some(KeyType::Ed25519) => "ed25519",
        Some(k) if k.is_rsa() => "rsa",
        _ => "ec",
    }
}

fn vault_data(state: &AppState, issued: &Issued) -> Value {
    let c = &issued.signed.certificate;
    let serial = issued
        .signed
        .serial
        .as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = json!({
        "certificate": c.to_pem().trim_end(),
        "issuing_ca": state.authority.issuing_ca_pem().trim_end(),
        "ca_chain": state.authority.ca_chain_pem().iter().map(|p| p.trim_end().to_owned()).collect::<Vec<_>>(),
        "serial_number": serial,
        "expiration": c.not_after().unix(),
    });
    if let Some(key) = &issued.signed.private_key {
        data["private_key"] =
            Value::String(key.to_pkcs8_pem().expose_secret().trim_end().to_owned());
        data["private_key_type"] = Value::String(private_key_type(key.key_type()).to_owned());
    }
    data
}

async fn vault_issue(
    state: &AppState,
    headers: &HeaderMap,
    mount: &str,
    role: &str,
    body: VaultIssue,
    sign: bool,
) -> Result<Json<Value>, ApiError> {
    let op = if sign { "sign" } else { "issue" };
    let endpoint = format!("/v1/{mount}/{op}/{role}");
    if let Some(f) = &body.format
        && f != "pem"
        && f != "pem_bundle"
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("format {f:?} is not supported; use pem"),
        )
        .into_vault());
    }
    let csr = match (&body.csr, sign) {
        (Some(csr), true) => Some(
            parse_csr(csr.as_bytes())
                .map_err(|e| ApiError::bad_request("csr_invalid", e.to_string()).into_vault())?,
        ),
        (None, true) => {
            return Err(ApiError::bad_request("invalid_request", "csr is required").into_vault());
        }
        _ => None,
    };
    let claims = authenticate(state, headers, &endpoint)
        .await
        .map_err(|mut e| {
            // Vault answers a bad token with 403 "permission denied".
            if e.status == StatusCode::UNAUTHORIZED {
                e.status = StatusCode::FORBIDDEN;
                e.message = format!("permission denied: {}", e.message);
            }
            e.into_vault()
        })?;
    let v = |e: ApiError| e.into_vault();
    let mut sans = Vec::new();
    for (prefix, list) in [
        ("dns:", &body.alt_names),
        ("ip:", &body.ip_sans),
        ("uri:", &body.uri_sans),
    ] {
        for item in list.as_ref().map(List::items).unwrap_or_default() {
            sans.push(San::parse(&format!("{prefix}{item}")).map_err(|e| {
                ApiError::bad_request("invalid_request", e.to_string()).into_vault()
            })?);
        }
    }
    if let Some(csr) = &csr {
        sans.extend(csr.sans.iter().cloned());
    }
    let ttl = body
        .ttl
        .as_ref()
        .map(|t| {
            t.duration()
                .map_err(|m| ApiError::bad_request("invalid_request", m).into_vault())
        })
        .transpose()?;
    let params = IssueParams {
        common_name: body
            .common_name
            .clone()
            .or_else(|| csr.as_ref().and_then(|c| c.common_name.clone())),
        sans,
        kind: None,
        ttl,
        key_type: vault_key_type(body.key_type.as_deref(), body.key_bits.as_ref())?,
        role: Some(role.to_owned()),
    };
    let issued = issue(state, &claims, op, params, csr.as_ref().map(|c| &c.key))
        .await
        .map_err(v)?;
    Ok(envelope(vault_data(state, &issued)))
}

/// `POST|PUT /v1/{mount}/issue/{role}`.
pub(crate) async fn issue_role(
    State(state): St,
    headers: HeaderMap,
    Path((mount, role)): Path<(String, String)>,
    VaultBody(body): VaultBody<VaultIssue>,
) -> Result<Json<Value>, ApiError> {
    vault_issue(&state, &headers, &mount, &role, body, false).await
}

/// `POST|PUT /v1/{mount}/sign/{role}`.
pub(crate) async fn sign_role(
    State(state): St,
    headers: HeaderMap,
    Path((mount, role)): Path<(String, String)>,
    VaultBody(body): VaultBody<VaultIssue>,
) -> Result<Json<Value>, ApiError> {
    vault_issue(&state, &headers, &mount, &role, body, true).await
}

fn pem_response(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    resp
}

/// `GET /v1/{mount}/ca/pem`: the issuing CA.
pub(crate) async fn ca_pem(State(state): St) -> Response {
    pem_response(state.authority.issuing_ca_pem())
}

/// `GET /v1/{mount}/ca_chain`: the issuing CA up to the root.
pub(crate) async fn ca_chain(State(state): St) -> Response {
    pem_response(state.authority.ca_chain_pem().concat())
}

/// `GET /v1/{mount}/cert/ca_chain`: the same as JSON.
pub(crate) async fn cert_ca_chain(State(state): St) -> Json<Value> {
    let chain = state.authority.ca_chain_pem().concat();
    envelope(json!({ "certificate": chain, "ca_chain": chain }))
}

/// `GET /v1/{mount}/issuer/{ref}/json`.
pub(crate) async fn issuer_json(State(state): St) -> Json<Value> {
    envelope(json!({
        "certificate": state.authority.issuing_ca_pem(),
        "ca_chain": state.authority.ca_chain_pem(),
        "issuer_name": "default",
    }))
}

/// Vault's role fields (`POST|PUT /v1/<mount>/roles/<name>`); unknown ones are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct VaultRole {
    #[serde(default)]
    allowed_domains: Option<List>,
    #[serde(default)]
    allow_subdomains: Option<Value>,
    #[serde(default)]
    allow_bare_domains: Option<Value>,
    #[serde(default)]
    allow_any_name: Option<Value>,
    #[serde(default)]
    allow_wildcard_certificates: Option<Value>,
    #[serde(default)]
    allow_ip_sans: Option<Value>,
    #[serde(default)]
    allowed_uri_sans: Option<List>,
    #[serde(default)]
    server_flag: Option<Value>,
    #[serde(default)]
    client_flag: Option<Value>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    key_bits: Option<Num>,
    #[serde(default)]
    max_ttl: Option<Ttl>,
}

/// A Vault boolean: JSON `true`/`false` or the strings `"true"`/`"false"` (`bao write` sends
/// strings).
fn flag(v: Option<&Value>, default: bool, field: &str) -> Result<bool, ApiError> {
    match v {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "invalid_request",
            format!("{field} must be true or false, not {other}"),
        )
        .into_vault()),
    }
}

impl VaultRole {
    fn into_role(self, name: &str) -> Result<Role, ApiError> {
        let bad = |m: String| ApiError::bad_request("invalid_role", m).into_vault();
        let server = flag(self.server_flag.as_ref(), true, "server_flag")?;
        let client = flag(self.client_flag.as_ref(), true, "client_flag")?;
        let allowed_kinds = match (server, client) {
            (true, true) => vec![anchorage_ca::CertKind::Service],
            (true, false) => vec![anchorage_ca::CertKind::Server],
            (false, true) => vec![anchorage_ca::CertKind::Client],
            (false, false) => return Err(bad(
                "server_flag and client_flag are both false: the certificates could not be used"
                    .into(),
            )),
        };
        let key_types = match (self.key_type.as_deref(), &self.key_bits) {
            (None | Some("any"), _) => Vec::new(),
            (Some(k), bits) => vault_key_type(Some(k), bits.as_ref())?
                .into_iter()
                .collect(),
        };
        // allowed_uri_sans: SPIFFE patterns `spiffe://<trust domain>/<path with *>` only.
        let (mut spiffe_trust_domain, mut spiffe_path_pattern) = (None, None);
        if let Some(list) = &self.allowed_uri_sans {
            let items = list.items();
            if items.len() > 1 {
                return Err(bad("allowed_uri_sans takes one SPIFFE pattern here (spiffe://<trust domain>/<path>, * for a segment)".into()));
            }
            if let Some(item) = items.first() {
                let rest = item.strip_prefix("spiffe://").ok_or_else(|| {
                    bad(format!("allowed_uri_sans {item:?} is not a SPIFFE pattern (spiffe://<trust domain>/<path>)"))
                })?;
                let (td, path) = rest.split_once('/').unwrap_or((rest, "**"));
                spiffe_trust_domain = Some(td.to_owned());
                spiffe_path_pattern = Some(format!("/{path}"));
            }
        }
        let max_ttl_seconds = match &self.max_ttl {
            None => 0,
            Some(t) => t.duration().map_err(bad)?.as_secs(),
        };
        let role = Role {
            name: name.to_owned(),
            allowed_domains: self
                .allowed_domains
                .as_ref()
                .map(List::items)
                .unwrap_or_default(),
            allow_subdomains: flag(self.allow_subdomains.as_ref(), false, "allow_subdomains")?,
            allow_bare_domains: flag(
                self.allow_bare_domains.as_ref(),
                false,
                "allow_bare_domains",
            )?,
            allow_any_name: flag(self.allow_any_name.as_ref(), false, "allow_any_name")?,
            allow_wildcards: flag(
                self.allow_wildcard_certificates.as_ref(),
                false,
                "allow_wildcard_certificates",
            )?,
            // Vault allows IP SANs unless told otherwise.
            allow_ip_sans: flag(self.allow_ip_sans.as_ref(), true, "allow_ip_sans")?,
            spiffe_trust_domain,
            spiffe_path_pattern,
            allowed_kinds,
            key_types,
            max_ttl_seconds,
        };
        role.validate().map_err(bad)?;
        Ok(role)
    }
}

/// `POST|PUT /v1/{mount}/roles/{role}` (admin): writes an anchorage role from Vault's fields.
pub(crate) async fn write_role(
    State(state): St,
    headers: HeaderMap,
    Path((_mount, name)): Path<(String, String)>,
    VaultBody(body): VaultBody<VaultRole>,
) -> Result<Response, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/roles")
        .await
        .map_err(ApiError::into_vault)?;
    let role = body.into_role(&name)?;
    roles::put_role(state.store.as_ref(), &role)
        .await
        .map_err(|e| ApiError::store(&e).into_vault())?;
    tracing::info!(target: "anchorage::audit", event = "role_put", who = %claims.sub, role = %role.name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/{mount}/roles/{role}` (admin): the role, in anchorage's fields.
pub(crate) async fn read_role(
    State(state): St,
    headers: HeaderMap,
    Path((_mount, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers, "/v1/roles")
        .await
        .map_err(ApiError::into_vault)?;
    match roles::get_role(state.store.as_ref(), &name).await {
        Ok(Some(role)) => Ok(envelope(serde_json::to_value(&role).unwrap_or_default())),
        Ok(None) => {
            Err(ApiError::not_found("role_unknown", format!("no role {name:?}")).into_vault())
        }
        Err(e) => Err(ApiError::store(&e).into_vault()),
    }
}

#[derive(Serialize, Deserialize)]
struct AppRoleRecord {
    role: String,
    secret_sha256: String,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST /v1/auth/approle/role/{role}/secret-id` (admin): new AppRole credentials for a role.
pub(crate) async fn approle_secret_id(
    State(state): St,
    headers: HeaderMap,
    Path(role): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/auth/approle")
        .await
        .map_err(ApiError::into_vault)?;
    if roles::get_role(state.store.as_ref(), &role)
        .await
        .map_err(|e| ApiError::store(&e).into_vault())?
        .is_none()
    {
        return Err(
            ApiError::bad_request("role_unknown", format!("there is no role {role:?}"))
                .into_vault(),
        );
    }
    let role_id = random_hex(16);
    let secret_id = random_hex(24);
    let rec = AppRoleRecord {
        role: role.clone(),
        secret_sha256: sha256_hex(&secret_id),
    };
    state
        .store
        .create(
            &format!("{APPROLE_PREFIX}{role_id}"),
            serde_json::to_vec(&rec).unwrap_or_default(),
        )
        .await
        .map_err(|e| ApiError::store(&e).into_vault())?;
    tracing::info!(target: "anchorage::audit", event = "approle_create", who = %claims.sub, role = %role, role_id = %role_id);
    Ok(envelope(
        json!({ "role_id": role_id, "secret_id": secret_id }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    role_id: String,
    secret_id: String,
}

/// `POST|PUT /v1/auth/approle/login`.
pub(crate) async fn approle_login(
    State(state): St,
    VaultBody(body): VaultBody<Login>,
) -> Result<Json<Value>, ApiError> {
    let denied = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "login_failed",
            "invalid role or secret ID",
        )
        .into_vault()
    };
    if body.role_id.is_empty()
        || !body.role_id.bytes().all(|b| b.is_ascii_hexdigit())
        || body.role_id.len() > 64
    {
        return Err(denied());
    }
    let rec: AppRoleRecord = state
        .store
        .get(&format!("{APPROLE_PREFIX}{}", body.role_id))
        .await
        .map_err(|e| ApiError::store(&e).into_vault())?
        .and_then(|e| serde_json::from_slice(&e.value).ok())
        .ok_or_else(denied)?;
    let given = sha256_hex(&body.secret_id);
    // Digests are compared, so the comparison's timing tells nothing about the secret.
    if given != rec.secret_sha256 {
        tracing::info!(target: "anchorage::audit", event = "approle_login", outcome = "refused", role_id = %body.role_id);
        return Err(denied());
    }
    let request = TokenRequest {
        kind: TokenKind::Role,
        subject: format!("approle:{}", body.role_id),
        role: Some(rec.role.clone()),
        audience: String::new(),
        sans: vec![],
        ttl_seconds: Some(LOGIN_TTL),
    };
    let token = mint_with(&state.tokens, state.store.as_ref(), &request, now_unix())
        .await
        .map_err(|e| ApiError::internal("mint a login token", &e).into_vault())?;
    tracing::info!(target: "anchorage::audit", event = "approle_login", outcome = "ok", role_id = %body.role_id, role = %rec.role);
    Ok(Json(json!({
        "request_id": random_hex(16),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": null,
        "warnings": null,
        "auth": {
            "client_token": token,
            "accessor": "",
            "policies": [rec.role],
            "token_policies": [rec.role],
            "lease_duration": LOGIN_TTL,
            "renewable": false,
        },
    })))
}

//! The native API v1: issuance (`sign`, `issue`, `renew`), revocation and the CRL, the trust
//! bundle, consumer acks, roles and tokens, health and metrics. `docs/serve.md` is the
//! reference.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_ca::{CertKind, CertificateRequest, Identity, KeyType, San};
use anchorage_trust::{PemOptions, Pkcs12Options, render_jks, render_pem, render_pkcs12};
use anchorage_x509::Timestamp;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authority::{
    CERTS_PREFIX, CertRecord, PublicKey, REASONS, REVOKED_PREFIX, RecordInfo, RevokedRecord,
    SignError, Signed, certificate_key, kind_of, lifetime_of, parse_csr, serial_hex,
};
use crate::error::ApiError;
use crate::http::{JsonBody, PeerCertificate, Ttl, authenticate, require_admin};
use crate::roles::{self, Role};
use crate::state::{AppState, CONSUMERS_PREFIX, ConsumerRecord};
use crate::tokens::{Claims, TokenKind, TokenRequest, mint_with, now_unix, revoke_token};

type St = State<Arc<AppState>>;

/// What to issue, whatever the wire shape (native or Vault).
#[derive(Debug, Default)]
pub(crate) struct IssueParams {
    pub(crate) common_name: Option<String>,
    pub(crate) sans: Vec<San>,
    pub(crate) kind: Option<CertKind>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) key_type: Option<KeyType>,
    pub(crate) role: Option<String>,
}

/// The outcome of an issuance, for the wire shapes.
pub(crate) struct Issued {
    pub(crate) signed: Signed,
}

fn sign_error(e: SignError) -> ApiError {
    match e {
        SignError::Request(m) => ApiError::bad_request("invalid_request", m),
        SignError::Csr(m) => ApiError::bad_request("csr_invalid", m),
        SignError::CaNotValid { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ca_not_valid",
            e.to_string(),
        ),
        SignError::Store(s) => ApiError::store(&s),
        SignError::Crypto { .. } => ApiError::internal("sign a certificate", &e),
    }
}

/// Resolves the role a request issues under: the token's (a requested one must match), or
/// for admin tokens the requested one, if any.
pub(crate) async fn resolve_role(
    state: &AppState,
    claims: &Claims,
    requested: Option<&str>,
) -> Result<Option<Role>, ApiError> {
    let name = match (&claims.role, requested) {
        (Some(tok), Some(req)) if claims.typ != TokenKind::Admin && tok != req => {
            return Err(ApiError::forbidden(
                "token_role_mismatch",
                format!("the token is bound to role {tok:?}, not {req:?}"),
            ));
        }
        (_, Some(req)) => Some(req.to_owned()),
        (Some(tok), None) => Some(tok.clone()),
        (None, None) => None,
    };
    let Some(name) = name else { return Ok(None) };
    match roles::get_role(state.store.as_ref(), &name).await {
        Ok(Some(role)) => Ok(Some(role)),
        Ok(None) => Err(ApiError::bad_request(
            "role_unknown",
            format!("there is no role {name:?}: create it with PUT /v1/roles/{name}"),
        )),
        Err(e) => Err(ApiError::store(&e)),
    }
}

/// Issues under `claims` (already authenticated): role, names, lifetime, then the CA.
pub(crate) async fn issue(
    state: &AppState,
    claims: &Claims,
    operation: &'static str,
    params: IssueParams,
    key: Option<&PublicKey>,
) -> Result<Issued, ApiError> {
    let started = Instant::now();
    let role_label = params
        .role
        .clone()
        .or_else(|| claims.role.clone())
        .unwrap_or_else(|| "-".into());
    let result = issue_inner(state, claims, operation, params, key).await;
    state.metrics.latency(started.elapsed());
    // Metric labels only for roles that exist: a client cannot mint label values.
    let role_label = match &result {
        Err(e) if e.code == "role_unknown" || e.code == "token_role_mismatch" => "unknown".into(),
        _ => role_label,
    };
    match &result {
        Ok(issued) => {
            state.metrics.issuance(&role_label, operation, "issued");
            let c = &issued.signed.certificate;
            // The field values below are built only when a subscriber takes the event.
            tracing::info!(
                target: "anchorage::audit",
                event = operation,
                outcome = "issued",
                who = %claims.sub,
                token = ?claims.typ,
                role = %role_label,
                subject = %c.subject(),
                names = ?c
                    .subject_alt_names()
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<String>>(),
                serial = %issued.signed.serial,
                not_after = %c.not_after().rfc3339(),
            );
        }
        Err(e) => {
            let outcome = if e.status.is_server_error() {
                "error"
            } else {
                "refused"
            };
            state.metrics.issuance(&role_label, operation, outcome);
            tracing::info!(
                target: "anchorage::audit",
                event = operation,
                outcome,
                who = %claims.sub,
                token = ?claims.typ,
                role = %role_label,
                code = e.code,
                reason = %e.message,
            );
        }
    }
    result
}

async fn issue_inner(
    state: &AppState,
    claims: &Claims,
    operation: &'static str,
    params: IssueParams,
    key: Option<&PublicKey>,
) -> Result<Issued, ApiError> {
    if operation == "issue" && claims.typ == TokenKind::Ott {
        return Err(ApiError::forbidden(
            "token_kind_not_allowed",
            "a one-time token may only have a CSR signed (/v1/sign); a server-made key needs a role or admin token",
        ));
    }
    let role = resolve_role(state, claims, params.role.as_deref()).await?;
    let Some(cn) = params.common_name.filter(|c| !c.is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "common_name is required (or a CSR with a CommonName)",
        ));
    };
    let identity =
        Identity::new(cn).map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let kind = params
        .kind
        .or_else(|| role.as_ref().map(|r| r.kinds()[0]))
        .unwrap_or(CertKind::Service);
    let key_type = match key {
        Some(k) => k.key_type.ok_or_else(|| {
            ApiError::bad_request(
                "key_type_unsupported",
                "the key's type is not one anchorage issues for (P-256, P-384, Ed25519, RSA 2048/3072/4096)",
            )
        })?,
        None => params
            .key_type
            .or_else(|| role.as_ref().and_then(|r| r.key_types.first().copied()))
            .unwrap_or_default(),
    };
    let lifetime = match params.ttl {
        Some(t) => t,
        None => {
            let d = kind.default_lifetime();
            role.as_ref().map_or(d, |r| d.min(r.max_ttl()))
        }
    };
    let mut request = CertificateRequest::new(identity, kind)
        .with_lifetime(lifetime)
        .with_key_type(key_type);
    for san in params.sans {
        request = request.with_san(san);
    }
    request
        .validate()
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    if claims.typ == TokenKind::Ott {
        let mut allowed: Vec<String> = claims.sans.iter().map(|s| s.to_ascii_lowercase()).collect();
        allowed.push(claims.sub.to_ascii_lowercase());
        let value = |san: &San| match san {
            San::Dns(d) => d.to_ascii_lowercase(),
            San::Ip(ip) => ip.to_string(),
            San::Uri(u) => u.clone(),
        };
        let cn_ok = allowed.contains(&request.identity.as_str().to_ascii_lowercase());
        let bad = request
            .all_sans()
            .into_iter()
            .find(|s| !allowed.contains(&value(s)));
        if !cn_ok || bad.is_some() {
            let what = bad.map_or_else(|| request.identity.to_string(), |s| s.to_string());
            return Err(ApiError::forbidden(
                "token_name_not_allowed",
                format!(
                    "the one-time token for {:?} does not cover {what}",
                    claims.sub
                ),
            ));
        }
    }
    if let Some(role) = &role {
        role.check(&request)
            .map_err(|v| ApiError::forbidden("role_refused", v.to_string()))?;
    } else if claims.typ != TokenKind::Admin {
        return Err(ApiError::forbidden(
            "role_required",
            "this token has no role",
        ));
    }
    let signed = state
        .authority
        .sign(
            &request,
            key,
            RecordInfo {
                role: role.as_ref().map(|r| r.name.as_str()),
                who: &claims.sub,
                operation,
            },
        )
        .await
        .map_err(sign_error)?;
    Ok(Issued { signed })
}

/// The native JSON answer of an issuance, with the current bundle version (read here: the
/// Vault shape has no such field, so its issuances skip that read).
pub(crate) async fn cert_json(state: &AppState, issued: &Issued) -> Result<Value, ApiError> {
    let (bundle_version, _) = state.bundle().await?;
    let c = &issued.signed.certificate;
    // Two thirds into the life counted from issuance (now), not from the backdated notBefore:
    // a short certificate would otherwise get a refresh time in the past.
    let na = c.not_after().unix();
    let issued_at = now_unix().clamp(c.not_before().unix(), na);
    let refresh = Timestamp::from_unix(issued_at + (na - issued_at) * 2 / 3);
    let mut out = json!({
        "certificate": c.to_pem(),
        "chain": issued.signed.chain.iter().map(|c| c.to_pem()).collect::<Vec<_>>(),
        "ca": state.authority.ca().roots().iter().map(|c| c.to_pem()).collect::<Vec<_>>(),
        "serial_number": issued.signed.serial,
        "not_before": c.not_before().rfc3339(),
        "not_after": c.not_after().rfc3339(),
        "refresh_at": refresh.rfc3339(),
        "bundle_version": bundle_version,
    });
    if let Some(key) = &issued.signed.private_key {
        out["private_key"] = Value::String(key.to_pkcs8_pem().expose_secret().to_owned());
    }
    Ok(out)
}

fn parse_sans(list: &[String]) -> Result<Vec<San>, ApiError> {
    list.iter()
        .map(|s| San::parse(s).map_err(|e| ApiError::bad_request("invalid_request", e.to_string())))
        .collect()
}

fn parse_ttl_opt(ttl: Option<&Ttl>) -> Result<Option<Duration>, ApiError> {
    ttl.map(|t| {
        t.duration()
            .map_err(|m| ApiError::bad_request("invalid_request", m))
    })
    .transpose()
}

/// `POST /v1/issue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueBody {
    common_name: String,
    #[serde(default)]
    sans: Vec<String>,
    #[serde(default)]
    kind: Option<CertKind>,
    #[serde(default)]
    ttl: Option<Ttl>,
    #[serde(default)]
    key_type: Option<KeyType>,
    #[serde(default)]
    role: Option<String>,
}

impl IssueBody {
    /// The checks `POST /v1/issue` makes on the body before anything else (for the fuzz
    /// targets: [`crate::fuzzing`]).
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        parse_sans(&self.sans)?;
        parse_ttl_opt(self.ttl.as_ref())?;
        Ok(())
    }
}

impl SignBody {
    /// The body checks of `POST /v1/sign`: the CSR (signature included), SANs and TTL.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        parse_sans(&self.sans)?;
        parse_ttl_opt(self.ttl.as_ref())?;
        let _ = crate::authority::parse_csr(self.csr.as_bytes());
        Ok(())
    }
}

pub(crate) async fn post_issue(
    State(state): St,
    headers: HeaderMap,
    JsonBody(body): JsonBody<IssueBody>,
) -> Result<Json<Value>, ApiError> {
    let claims = authenticate(&state, &headers, "/v1/issue").await?;
    let params = IssueParams {
        common_name: Some(body.common_name),
        sans: parse_sans(&body.sans)?,
        kind: body.kind,
        ttl: parse_ttl_opt(body.ttl.as_ref())?,
        key_type: body.key_type,
        role: body.role,
    };
    let issued = issue(&state, &claims, "issue", params, None).await?;
    Ok(Json(cert_json(&state, &issued).await?))
}

/// `POST /v1/sign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignBody {
    csr: String,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    sans: Vec<String>,
    #[serde(default)]
    kind: Option<CertKind>,
    #[serde(default)]
    ttl: Option<Ttl>,
    #[serde(default)]
    role: Option<String>,
}

pub(crate) async fn post_sign(
    State(state): St,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignBody>,
) -> Result<Json<Value>, ApiError> {
    let csr = parse_csr(body.csr.as_bytes()).map_err(sign_error)?;
    let claims = authenticate(&state, &headers, "/v1/sign").await?;
    let mut sans = csr.sans.clone();
    sans.extend(parse_sans(&body.sans)?);
    let params = IssueParams {
        common_name: body.common_name.or(csr.common_name.clone()),
        sans,
        kind: body.kind,
        ttl: parse_ttl_opt(body.ttl.as_ref())?,
        key_type: None,
        role: body.role,
    };
    let issued = issue(&state, &claims, "sign", params, Some(&csr.key)).await?;
    Ok(Json(cert_json(&state, &issued).await?))
}

/// `POST /v1/renew` (mTLS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewBody {
    #[serde(default)]
    csr: Option<String>,
    #[serde(default)]
    ttl: Option<Ttl>,
}

/// The client certificate, checked: ours, unexpired, not revoked.
async fn current_certificate(
    state: &AppState,
    peer: Option<Extension<PeerCertificate>>,
) -> Result<(anchorage_x509::Certificate, Option<CertRecord>), ApiError> {
    let subject = peer
        .as_ref()
        .and_then(|Extension(p)| p.0.as_ref())
        .map(|c| c.subject().to_owned())
        .unwrap_or_default();
    let result = check_certificate(state, peer).await;
    if let Err(e) = &result {
        tracing::info!(
            target: "anchorage::audit",
            event = "authenticate_certificate",
            outcome = "refused",
            who = %subject,
            code = e.code,
            reason = %e.message,
        );
    }
    result
}

async fn check_certificate(
    state: &AppState,
    peer: Option<Extension<PeerCertificate>>,
) -> Result<(anchorage_x509::Certificate, Option<CertRecord>), ApiError> {
    let Some(cert) = peer.and_then(|Extension(p)| p.0) else {
        return Err(ApiError::unauthorized(
            "client_certificate_required",
            "present the current certificate as the TLS client certificate (mTLS)",
        ));
    };
    if !state.authority.issued_here(&cert) {
        return Err(ApiError::unauthorized(
            "certificate_foreign",
            format!(
                "the client certificate ({}) was not issued by this CA ({})",
                cert.subject(),
                state.authority.ca().signing_certificate().subject()
            ),
        ));
    }
    let now = now_unix();
    if cert.not_after().unix() <= now {
        return Err(ApiError::unauthorized(
            "certificate_expired",
            format!(
                "the client certificate expired at {}; an expired certificate cannot renew: request a new one with a token",
                cert.not_after().rfc3339()
            ),
        ));
    }
    if cert.not_before().unix() > now + crate::tokens::LEEWAY {
        return Err(ApiError::unauthorized(
            "certificate_not_yet_valid",
            "the client certificate is not valid yet",
        ));
    }
    let serial = serial_hex(&cert);
    if state
        .store
        .get(&format!("{REVOKED_PREFIX}{serial}"))
        .await
        .map_err(|e| ApiError::store(&e))?
        .is_some()
    {
        return Err(ApiError::forbidden(
            "certificate_revoked",
            format!("certificate {serial} is revoked"),
        ));
    }
    let record = state
        .store
        .get(&format!("{CERTS_PREFIX}{serial}"))
        .await
        .map_err(|e| ApiError::store(&e))?
        .and_then(|e| serde_json::from_slice(&e.value).ok());
    Ok((cert, record))
}

/// The header naming the consumer a renewal is for (its labels pick the rate-limit group).
pub(crate) const CONSUMER_HEADER: &str = "anchorage-consumer";

/// While a rotation pulls renewals forward: one more renewal for the caller's consumer group,
/// or 429 with `Retry-After`.
async fn rate_limit(
    state: &AppState,
    headers: &HeaderMap,
    cert: &anchorage_x509::Certificate,
) -> Result<(), ApiError> {
    let name = headers
        .get(CONSUMER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| crate::authority::common_name(cert));
    let labels = match name.filter(|n| roles::valid_name(n).is_ok()) {
        Some(n) => state
            .store
            .get(&format!("{CONSUMERS_PREFIX}{n}"))
            .await
            .map_err(|e| ApiError::store(&e))?
            .and_then(|e| serde_json::from_slice::<ConsumerRecord>(&e.value).ok())
            .map(|r| r.labels)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let group = crate::rotation::group_of(&labels, &state.rotation.config.group_labels);
    match state.rotation.limiter.check(&group) {
        Ok(()) => Ok(()),
        Err(retry) => {
            state.metrics.rate_limited();
            let secs = (retry.as_secs() + u64::from(retry.subsec_nanos() > 0)).max(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "renewals of consumer group {group} are rate-limited during the root rotation; retry after {secs}s"
                ),
            );
            e.retry_after = Some(secs);
            Err(e)
        }
    }
}

pub(crate) async fn post_renew(
    State(state): St,
    headers: HeaderMap,
    peer: Option<Extension<PeerCertificate>>,
    JsonBody(body): JsonBody<RenewBody>,
) -> Result<Json<Value>, ApiError> {
    let (cert, record) = current_certificate(&state, peer).await?;
    if crate::rotation::pulling_forward(&state) {
        rate_limit(&state, &headers, &cert).await?;
    }
    let key = match &body.csr {
        Some(csr) => parse_csr(csr.as_bytes()).map_err(sign_error)?.key,
        None => certificate_key(&cert).map_err(sign_error)?,
    };
    let cn = crate::authority::common_name(&cert).unwrap_or_default();
    let mut sans = Vec::new();
    for name in cert.subject_alt_names() {
        use anchorage_x509::SubjectAltName as N;
        let text = match name {
            N::Dns(d) => format!("dns:{d}"),
            N::Ip(ip) => format!("ip:{ip}"),
            N::Uri(u) => format!("uri:{u}"),
            _ => continue,
        };
        if let Ok(san) = San::parse(&text) {
            sans.push(san);
        }
    }
    let claims = Claims {
        iss: "anchorage".into(),
        sub: cn.clone(),
        aud: "/v1/renew".into(),
        // The certificate stands for the token: it renews under its record's role, as admin
        // when it was issued without one.
        typ: if record.as_ref().and_then(|r| r.role.as_ref()).is_some() {
            TokenKind::Role
        } else {
            TokenKind::Admin
        },
        role: record.as_ref().and_then(|r| r.role.clone()),
        sans: vec![],
        iat: now_unix(),
        nbf: now_unix(),
        exp: None,
        jti: "mtls".into(),
    };
    let params = IssueParams {
        common_name: Some(record.as_ref().map_or(cn, |r| r.common_name.clone())),
        sans,
        kind: Some(record.as_ref().map_or_else(|| kind_of(&cert), |r| r.kind)),
        ttl: Some(match parse_ttl_opt(body.ttl.as_ref())? {
            Some(t) => t,
            None => lifetime_of(&cert),
        }),
        key_type: None,
        role: None,
    };
    let issued = issue(&state, &claims, "renew", params, Some(&key)).await?;
    Ok(Json(cert_json(&state, &issued).await?))
}

/// `POST /v1/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    serial: String,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) async fn post_revoke(
    State(state): St,
    headers: HeaderMap,
    peer: Option<Extension<PeerCertificate>>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Json<Value>, ApiError> {
    let serial: String = body
        .serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if crate::authority::hex_bytes(&serial).is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "serial {:?} is not hexadecimal (up to 20 bytes)",
                body.serial
            ),
        ));
    }
    let reason = body.reason.unwrap_or_else(|| "unspecified".into());
    if !REASONS.contains(&reason.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("reason {reason:?} is not one of {}", REASONS.join(", ")),
        ));
    }
    // Admin token, or mTLS with the certificate being revoked (its own key).
    let who = if crate::http::bearer(&headers).is_some() {
        require_admin(&state, &headers, "/v1/revoke").await?.sub
    } else {
        let (cert, _) = current_certificate(&state, peer).await?;
        if serial_hex(&cert) != serial {
            return Err(ApiError::forbidden(
                "revoke_not_allowed",
                "a certificate may revoke only itself; use an admin token for others",
            ));
        }
        cert.subject().to_owned()
    };
    let Some(entry) = state
        .store
        .get(&format!("{CERTS_PREFIX}{serial}"))
        .await
        .map_err(|e| ApiError::store(&e))?
    else {
        tracing::info!(target: "anchorage::audit", event = "revoke", outcome = "refused", who = %who, serial = %serial, code = "certificate_unknown");
        return Err(ApiError::not_found(
            "certificate_unknown",
            format!("no certificate with serial {serial} was issued here"),
        ));
    };
    let record: CertRecord = serde_json::from_slice(&entry.value)
        .map_err(|e| ApiError::internal("read an issuance record", &e))?;
    let now = now_unix();
    let rev = RevokedRecord {
        serial: serial.clone(),
        reason: reason.clone(),
        revoked_at: now,
        not_after: record.not_after,
    };
    let created = match state
        .store
        .create(
            &format!("{REVOKED_PREFIX}{serial}"),
            serde_json::to_vec(&rev).unwrap_or_default(),
        )
        .await
    {
        Ok(_) => true,
        Err(e) if e.is_conflict() => false,
        Err(e) => return Err(ApiError::store(&e)),
    };
    if created {
        state.bump_crl().await.map_err(|e| ApiError::store(&e))?;
    }
    tracing::info!(
        target: "anchorage::audit",
        event = "revoke",
        outcome = if created { "revoked" } else { "already_revoked" },
        who = %who,
        subject = %record.common_name,
        names = ?record.names,
        serial = %serial,
        reason = %reason,
    );
    Ok(Json(json!({
        "serial_number": serial,
        "revoked": true,
        "already_revoked": !created,
        "reason": reason,
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    wait: Option<u64>,
}

/// `GET /v1/crl` (`?format=der|pem`).
pub(crate) async fn get_crl(
    State(state): St,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let crl = state.crl().await?;
    let max_age = (crl.next_update - now_unix()).max(0) / 2;
    let (ctype, body) = match q.format.as_deref().unwrap_or("der") {
        "der" => ("application/pkix-crl", crl.der.as_ref().clone()),
        "pem" => (
            "application/x-pem-file",
            pem_block("X509 CRL", &crl.der).into_bytes(),
        ),
        other => {
            return Err(ApiError::bad_request(
                "format_unknown",
                format!("format {other:?} is not der or pem"),
            ));
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&Timestamp::from_unix(crl.next_update).rfc3339()) {
        h.insert("x-next-update", v);
    }
    if let Ok(v) = HeaderValue::from_str(&crl.number.to_string()) {
        h.insert("x-crl-number", v);
    }
    Ok(resp)
}

/// DER as a PEM block with `label`.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// `GET /v1/bundle` (`?format=pem|pkcs12|jks|openssl-dir|crl`, `?wait=SECONDS`).
pub(crate) async fn get_bundle(
    State(state): St,
    headers: HeaderMap,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.clone().unwrap_or_else(|| "pem".into());
    if !["pem", "pkcs12", "jks", "openssl-dir", "crl"].contains(&format.as_str()) {
        return Err(ApiError::bad_request(
            "format_unknown",
            format!("format {format:?} is not one of pem, pkcs12, jks, openssl-dir, crl"),
        ));
    }
    let seen = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(state.limits.max_wait);
    let deadline = Instant::now() + wait;
    let (version, bundle) = loop {
        let (version, bundle) = state.bundle().await?;
        let unchanged = seen.as_deref() == Some(etag(version).as_str());
        if !unchanged {
            break (version, bundle);
        }
        let now = Instant::now();
        if now >= deadline || *state.shutting_down.borrow() {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&etag(version)) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            return Ok(resp);
        }
        // One watcher per instance follows the store (and local changes wake it at once), so
        // a thousand waiting consumers cost the store no more than one.
        let mut versions = state.bundle_version.subscribe();
        let mut shutdown = state.shutting_down.clone();
        tokio::select! {
            _ = versions.wait_for(|v| *v > version) => {}
            () = tokio::time::sleep(deadline - now) => {}
            _ = shutdown.changed() => {}
        }
    };
    let (ctype, body): (&'static str, Vec<u8>) = match format.as_str() {
        "pem" => (
            "application/x-pem-file",
            render_pem(&bundle, &PemOptions { comments: true }).into_bytes(),
        ),
        "pkcs12" => (
            "application/x-pkcs12",
            render_pkcs12(&bundle, &Pkcs12Options::unprotected())
                .map_err(|e| ApiError::internal("render the PKCS#12 bundle", &e))?,
        ),
        "jks" => (
            "application/x-java-keystore",
            render_jks(&bundle, &SecretString::from("changeit"))
                .map_err(|e| ApiError::internal("render the JKS bundle", &e))?,
        ),
        "openssl-dir" => ("application/x-tar", openssl_dir_tar(&bundle)?),
        _ => {
            let crl = state.crl().await?;
            (
                "application/x-pem-file",
                pem_block("X509 CRL", &crl.der).into_bytes(),
            )
        }
    };
    // The deliberate-rotation mark of exactly this version (a later change clears it).
    let (rec, _) = state
        .bundle_record()
        .await
        .map_err(|e| ApiError::store(&e))?;
    let deliberate = rec.deliberate_rotation && rec.version == version;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        h.insert(header::ETAG, v);
    }
    if deliberate {
        h.insert(ROTATION_HEADER, HeaderValue::from_static("deliberate"));
    }
    Ok(resp)
}

/// The bundle as a tar of an OpenSSL hashed directory (`<hash>.<n>` PEM files).
fn openssl_dir_tar(bundle: &anchorage_trust::Bundle) -> Result<Vec<u8>, ApiError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, cert) in anchorage_trust::hashed_names(bundle)
        .iter()
        .zip(bundle.certificates())
    {
        let pem = cert.to_pem();
        let mut header = tar::Header::new_gnu();
        header.set_size(pem.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, name.file_name(), pem.as_bytes())
            .map_err(|e| ApiError::internal("write the tar", &e))?;
    }
    builder
        .into_inner()
        .map_err(|e| ApiError::internal("write the tar", &e))
}

/// `POST /v1/bundle/cas` (admin): add or remove an extra CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CasBody {
    #[serde(default)]
    add: Option<String>,
    #[serde(default)]
    remove: Option<String>,
    /// Mark the resulting version as a deliberate rotation step (`Anchorage-Rotation:
    /// deliberate` on `GET /v1/bundle`): agents install it even when it drops the root their
    /// certificate chains to.
    #[serde(default)]
    deliberate_rotation: bool,
}

pub(crate) async fn post_bundle_cas(
    State(state): St,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CasBody>,
) -> Result<Json<Value>, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/bundle/cas").await?;
    let version = match (body.add, body.remove) {
        (Some(pem), None) => {
            let decoded = anchorage_x509::decode(pem.as_bytes());
            if decoded.has_private_key() {
                return Err(ApiError::bad_request(
                    "private_key_refused",
                    "the input holds a private key; send CA certificates only",
                ));
            }
            if decoded.certificates.len() != 1 || !decoded.problems.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_certificate",
                    "send exactly one PEM CA certificate in `add`",
                ));
            }
            let cert = decoded.certificates[0].certificate.clone();
            if !cert.is_ca() {
                return Err(ApiError::bad_request(
                    "not_a_ca",
                    format!(
                        "{} is not a CA certificate (basicConstraints CA:TRUE)",
                        cert.subject()
                    ),
                ));
            }
            let fp = cert.sha256();
            let pem = cert.to_pem();
            let v = state
                .change_bundle(|rec| {
                    let present = rec.extra.iter().any(|p| {
                        anchorage_x509::decode(p.as_bytes())
                            .certificates
                            .iter()
                            .any(|f| f.certificate.sha256() == fp)
                    });
                    if !present {
                        rec.extra.push(pem.clone());
                        rec.deliberate_rotation = body.deliberate_rotation;
                    }
                    Ok(!present)
                })
                .await?;
            tracing::info!(target: "anchorage::audit", event = "bundle_add", who = %claims.sub, subject = %cert.subject(), sha256 = %fp.hex(), version = v);
            v
        }
        (None, Some(fp)) => {
            let want: String = fp
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            let v = state
                .change_bundle(|rec| {
                    let before = rec.extra.len();
                    rec.extra.retain(|p| {
                        !anchorage_x509::decode(p.as_bytes())
                            .certificates
                            .iter()
                            .any(|f| f.certificate.sha256().hex().replace(':', "").to_ascii_lowercase() == want)
                    });
                    if rec.extra.len() == before {
                        return Err(ApiError::not_found(
                            "ca_unknown",
                            format!("no extra CA with SHA-256 {want} is in the bundle (the CA's own roots cannot be removed here)"),
                        ));
                    }
                    rec.deliberate_rotation = body.deliberate_rotation;
                    Ok(true)
                })
                .await?;
            tracing::info!(target: "anchorage::audit", event = "bundle_remove", who = %claims.sub, sha256 = %want, version = v);
            v
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "send either `add` (a PEM CA certificate) or `remove` (a SHA-256 fingerprint)",
            ));
        }
    };
    Ok(Json(json!({ "bundle_version": version })))
}

/// `POST /v1/acks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    consumer: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    bundle_version: u64,
    #[serde(default)]
    cert_serial: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    /// Why the consumer refused the bundle served last (it still runs `bundle_version`).
    #[serde(default)]
    refused: Option<String>,
}

/// The header marking a deliberate rotation step on `GET /v1/bundle` (anchorage-agent's
/// `ROTATION_HEADER`).
pub(crate) const ROTATION_HEADER: &str = "anchorage-rotation";

/// The longest refusal reason stored (characters; longer ones are cut).
pub(crate) const MAX_REFUSED_CHARS: usize = 512;

pub(crate) async fn post_acks(
    State(state): St,
    headers: HeaderMap,
    peer: Option<Extension<PeerCertificate>>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Json<Value>, ApiError> {
    // A token (any kind; one-time tokens for /v1/acks) or a certificate issued here.
    if crate::http::bearer(&headers).is_some() {
        authenticate(&state, &headers, "/v1/acks").await?;
    } else {
        current_certificate(&state, peer).await?;
    }
    roles::valid_name(&body.consumer)
        .map_err(|m| ApiError::bad_request("invalid_request", format!("consumer: {m}")))?;
    let now = now_unix();
    let rec = ConsumerRecord {
        name: body.consumer.clone(),
        labels: body.labels,
        bundle_version: body.bundle_version,
        cert_serial: body.cert_serial,
        not_after: body.not_after,
        last_seen: now,
        refused: body
            .refused
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(MAX_REFUSED_CHARS).collect()),
    };
    state
        .store
        .put(
            &format!("{CONSUMERS_PREFIX}{}", body.consumer),
            serde_json::to_vec(&rec).unwrap_or_default(),
        )
        .await
        .map_err(|e| ApiError::store(&e))?;
    let mut answer =
        json!({ "consumer": rec.name, "last_seen": Timestamp::from_unix(now).rfc3339() });
    // A root rotation pulls renewals forward: a leaf not under the signing root should be
    // renewed by this time (unix seconds).
    if let Some(at) = crate::rotation::renew_before(&state, rec.cert_serial.as_deref()).await {
        answer["renew_before"] = json!(at);
    }
    Ok(Json(answer))
}

/// Staleness of a consumer: `current`, `stale` (older bundle) or `silent` (no ack for an hour).
pub(crate) fn staleness(rec: &ConsumerRecord, version: u64, now: i64) -> &'static str {
    if now - rec.last_seen > 3600 {
        "silent"
    } else if rec.bundle_version == version {
        "current"
    } else {
        "stale"
    }
}

/// `GET /v1/consumers` (admin).
pub(crate) async fn get_consumers(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers, "/v1/consumers").await?;
    let (version, _) = state.bundle().await?;
    let now = now_unix();
    let list: Vec<Value> = state
        .consumers()
        .await
        .map_err(|e| ApiError::store(&e))?
        .into_iter()
        .map(|r| {
            json!({
                "consumer": r.name,
                "labels": r.labels,
                "bundle_version": r.bundle_version,
                "cert_serial": r.cert_serial,
                "not_after": r.not_after,
                "last_seen": Timestamp::from_unix(r.last_seen).rfc3339(),
                "state": staleness(&r, version, now),
                "refused": r.refused,
            })
        })
        .collect();
    Ok(Json(
        json!({ "bundle_version": version, "consumers": list }),
    ))
}

/// `GET /v1/rotation` (admin): phase, since, gate, laggards.
pub(crate) async fn get_rotation(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers, "/v1/rotation").await?;
    Ok(Json(
        crate::rotation::status_json(&state)
            .await
            .map_err(ApiError::from)?,
    ))
}

/// `POST /v1/rotation` (admin): `{"action": "start"|"advance"|"abort"|"prune"|"status", …}`.
pub(crate) async fn post_rotation(
    State(state): St,
    headers: HeaderMap,
    JsonBody(body): JsonBody<crate::rotation::ActionRequest>,
) -> Result<Json<Value>, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/rotation").await?;
    let rec = match crate::rotation::act(&state, &body, &claims.sub).await {
        Ok(rec) => rec,
        Err(e) => {
            tracing::info!(
                target: "anchorage::audit",
                event = "rotation",
                action = %body.action,
                who = %claims.sub,
                outcome = "refused",
                force = body.force,
                reason = %e,
            );
            return Err(e.into());
        }
    };
    Ok(Json(
        crate::rotation::status_of(&state, &rec)
            .await
            .map_err(ApiError::from)?,
    ))
}

/// `PUT /v1/roles/{name}` (admin).
pub(crate) async fn put_role(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    JsonBody(mut role): JsonBody<Role>,
) -> Result<Json<Value>, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/roles").await?;
    role.name = name;
    role.validate()
        .map_err(|m| ApiError::bad_request("invalid_role", m))?;
    roles::put_role(state.store.as_ref(), &role)
        .await
        .map_err(|e| ApiError::store(&e))?;
    tracing::info!(target: "anchorage::audit", event = "role_put", who = %claims.sub, role = %role.name);
    Ok(Json(serde_json::to_value(&role).unwrap_or_default()))
}

/// `GET /v1/roles` (admin).
pub(crate) async fn list_roles(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers, "/v1/roles").await?;
    let roles = roles::list_roles(state.store.as_ref())
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(Json(json!({ "roles": roles })))
}

/// `GET /v1/roles/{name}` (admin).
pub(crate) async fn get_role(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers, "/v1/roles").await?;
    match roles::get_role(state.store.as_ref(), &name).await {
        Ok(Some(role)) => Ok(Json(serde_json::to_value(&role).unwrap_or_default())),
        Ok(None) => Err(ApiError::not_found(
            "role_unknown",
            format!("there is no role {name:?}"),
        )),
        Err(e) => Err(ApiError::store(&e)),
    }
}

/// `DELETE /v1/roles/{name}` (admin).
pub(crate) async fn delete_role(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/roles").await?;
    roles::valid_name(&name).map_err(|m| ApiError::bad_request("invalid_request", m))?;
    roles::delete_role(state.store.as_ref(), &name)
        .await
        .map_err(|e| ApiError::store(&e))?;
    tracing::info!(target: "anchorage::audit", event = "role_delete", who = %claims.sub, role = %name);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/tokens` (admin).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    kind: TokenKind,
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    sans: Vec<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

pub(crate) async fn post_token(
    State(state): St,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/tokens").await?;
    if let Some(role) = &body.role
        && roles::get_role(state.store.as_ref(), role)
            .await
            .map_err(|e| ApiError::store(&e))?
            .is_none()
    {
        return Err(ApiError::bad_request(
            "role_unknown",
            format!("there is no role {role:?}"),
        ));
    }
    let request = TokenRequest {
        kind: body.kind,
        subject: body.sub.clone(),
        role: body.role,
        audience: body.audience.unwrap_or_else(|| "/v1/sign".into()),
        sans: body.sans,
        ttl_seconds: body.ttl_seconds,
    };
    let token = mint_with(&state.tokens, state.store.as_ref(), &request, now_unix())
        .await
        .map_err(|e| match e {
            crate::tokens::MintError::Invalid(m) => ApiError::bad_request("invalid_request", m),
            crate::tokens::MintError::Store(s) => ApiError::store(&s),
        })?;
    tracing::info!(target: "anchorage::audit", event = "token_create", who = %claims.sub, kind = ?body.kind, sub = %body.sub);
    Ok(Json(json!({ "token": token })))
}

/// `DELETE /v1/tokens/{jti}` (admin).
pub(crate) async fn delete_token(
    State(state): St,
    headers: HeaderMap,
    Path(jti): Path<String>,
) -> Result<StatusCode, ApiError> {
    let claims = require_admin(&state, &headers, "/v1/tokens").await?;
    if !jti.bytes().all(|b| b.is_ascii_alphanumeric()) || jti.is_empty() || jti.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a token id is hexadecimal",
        ));
    }
    revoke_token(state.store.as_ref(), &jti)
        .await
        .map_err(|e| ApiError::store(&e))?;
    tracing::info!(target: "anchorage::audit", event = "token_revoke", who = %claims.sub, jti = %jti);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers and the CA is valid now.
pub(crate) async fn readyz(State(state): St) -> Result<Json<Value>, ApiError> {
    state
        .store
        .get(crate::state::BUNDLE_KEY)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("the state store does not answer: {e}"),
            )
        })?;
    let now = now_unix();
    let ca = state.authority.ca();
    if ca.not_after().unix() <= now || ca.signing_certificate().not_before().unix() > now {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "the CA is not valid now (until {})",
                ca.not_after().rfc3339()
            ),
        ));
    }
    Ok(Json(
        json!({ "status": "ready", "store": "ok", "ca": ca.signing_certificate().subject() }),
    ))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): St) -> Result<Response, ApiError> {
    let (version, _) = state.bundle().await?;
    let now = now_unix();
    let mut by_state: BTreeMap<&'static str, u64> = [("current", 0), ("stale", 0), ("silent", 0)]
        .into_iter()
        .collect();
    for rec in state.consumers().await.map_err(|e| ApiError::store(&e))? {
        *by_state.entry(staleness(&rec, version, now)).or_default() += 1;
    }
    let mut resp = state.metrics.render(version, &by_state).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

/// Unknown routes.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(
        "route_unknown",
        format!("no route {}: docs/serve.md lists the API", uri.path()),
    )
}

/// Known route, wrong method.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

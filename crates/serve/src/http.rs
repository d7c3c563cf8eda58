//! Request plumbing shared by the handlers: the JSON body extractor (size limit, body timeout,
//! stable errors), token authentication, the connection's client certificate, TTL parsing.

use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::Certificate;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::{Claims, TokenError, TokenKind, now_unix};

/// The client certificate of the connection (mTLS), when one was presented. The handshake
/// proved the client holds its key; whether the certificate is ours and valid is checked by
/// the handlers that use it.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificate(pub Option<Certificate>);

/// A JSON body read within the size limit and body timeout; an empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// The same in Vault's error shape.
#[derive(Debug)]
pub struct VaultBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        audited_json(req, state).await.map(JsonBody)
    }
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for VaultBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        audited_json(req, state)
            .await
            .map(VaultBody)
            .map_err(ApiError::into_vault)
    }
}

/// [`read_json`], with an audit event when the body is refused (never the body itself).
async fn audited_json<T: DeserializeOwned>(req: Request, state: &AppState) -> Result<T, ApiError> {
    let path = req.uri().path().to_owned();
    read_json(req, state).await.inspect_err(|e| {
        tracing::info!(
            target: "anchorage::audit",
            event = "request",
            outcome = "refused",
            path = %path,
            code = e.code,
        );
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than the server's limit of {limit} bytes"),
    )
}

/// How much of an oversize body is read and thrown away so the client sees the 413 (a server
/// that closes while the client is still sending makes the client fail on a broken pipe,
/// without reading the answer). Beyond it the connection is closed.
const DISCARD_LIMIT: usize = 1024 * 1024;

async fn read_json<T: DeserializeOwned>(req: Request, state: &AppState) -> Result<T, ApiError> {
    let limit = state.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit.max(DISCARD_LIMIT)) {
        return Err(too_large(limit).closing());
    }
    let mut body = req.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(ApiError::bad_request(
                    "body_unreadable",
                    "the request body could not be read",
                )
                .closing());
            };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= limit {
                    buf.extend_from_slice(&data);
                } else if seen > limit.max(DISCARD_LIMIT) {
                    return Err(too_large(limit).closing());
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(state.limits.body_timeout, read).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    state.limits.body_timeout.as_secs()
                ),
            )
            .closing());
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    if seen > limit {
        // Read to its end: the connection stays usable.
        return Err(too_large(limit));
    }
    parse_body(&buf)
}

/// A request body as every JSON endpoint reads it once it arrived within the limits: blank is
/// `{}`, anything else must be the endpoint's JSON (`malformed_json` otherwise).
pub(crate) fn parse_body<T: DeserializeOwned>(buf: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if buf.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        buf
    };
    serde_json::from_slice(text).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("the body is not the JSON this endpoint takes: {e}"),
        )
    })
}

/// The token of a request: `Authorization: Bearer …` or `X-Vault-Token`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Checks the request's token for `endpoint`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<Claims, ApiError> {
    let result = match bearer(headers) {
        None => Err(TokenError::Missing),
        // A request signed with a configured nkey over NATS (crate::nats_auth).
        Some(token) if let Some(claims) = crate::nats_auth::internal_claims(token, now_unix()) => {
            claims.map_err(|()| TokenError::Invalid)
        }
        Some(token) => {
            state
                .tokens
                .verify(state.store.as_ref(), token, endpoint, now_unix())
                .await
        }
    };
    result.map_err(|e| {
        // Every refusal is audited; the token itself never is.
        tracing::info!(
            target: "anchorage::audit",
            event = "authenticate",
            outcome = "refused",
            endpoint,
            code = e.code(),
            reason = %e,
        );
        token_error(e)
    })
}

/// Checks that the request carries an admin token.
pub async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<Claims, ApiError> {
    let claims = authenticate(state, headers, endpoint).await?;
    if claims.typ != TokenKind::Admin {
        return Err(ApiError::forbidden(
            "admin_required",
            format!("{endpoint} needs an admin token"),
        ));
    }
    Ok(claims)
}

/// A token refusal as an API error.
pub fn token_error(e: TokenError) -> ApiError {
    let status = match e {
        TokenError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Parses a TTL: seconds (`3600`), or Go-style durations (`24h`, `2160h0m0s`, `90m`, `30s`,
/// `1h30m`).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("ttl {text:?} is not a duration such as 3600, 24h or 90m"))?;
        number.clear();
        total += n * match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "ttl {text:?} is not a duration such as 3600, 24h or 90m"
                ));
            }
        };
    }
    if !number.is_empty() || text.is_empty() {
        return Err(format!(
            "ttl {text:?} is not a duration such as 3600, 24h or 90m"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A TTL given as a JSON number or string.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    /// Seconds.
    Seconds(u64),
    /// Text.
    Text(String),
}

impl Ttl {
    /// The duration.
    pub fn duration(&self) -> Result<Duration, String> {
        match self {
            Ttl::Seconds(s) => Ok(Duration::from_secs(*s)),
            Ttl::Text(t) => parse_ttl(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_ttl("2160h0m0s").unwrap(),
            Duration::from_secs(2160 * 3600)
        );
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("10x").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("10h5").is_err());
    }
}

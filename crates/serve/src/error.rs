//! The API's error shape: `{"error":{"code":"stable_code","message":"…"}}` with an HTTP
//! status, or Vault's `{"errors":["…"]}` on the Vault-compatible routes.
//!
//! Codes are stable (clients and tests match on them); messages say what was wrong and what to
//! do, and never hold a key or a token.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error: status, stable code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine-readable code (`snake_case`).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// Answer in Vault's shape (`{"errors":[message]}`).
    pub vault: bool,
    /// Close the connection after the answer (the request body was not read to its end).
    pub close_connection: bool,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            vault: false,
            close_connection: false,
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with `code`.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500 `internal`: the message is logged, the client sees a generic one.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(context, %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error while trying to {context}; the server log has the details"),
        )
    }

    /// 503 `store_unavailable`.
    pub fn store(error: &anchorage_store::StoreError) -> Self {
        tracing::error!(%error, "store error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the state store did not answer; retry (another instance may serve you)",
        )
    }

    /// The same error, closing the connection after it.
    pub fn closing(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// The same error in Vault's shape.
    pub fn into_vault(mut self) -> Self {
        self.vault = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.vault {
            json!({ "errors": [self.message] })
        } else {
            json!({ "error": { "code": self.code, "message": self.message } })
        };
        let mut response = (self.status, Json(body)).into_response();
        // The body was not read to its end: the connection cannot carry another request.
        if self.close_connection {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

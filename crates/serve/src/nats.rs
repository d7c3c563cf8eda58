//! The API over NATS request/reply, for wasmCloud lattices: a request on
//! `<prefix>.v1.<op>` (queue group `anchorage-serve`, so instances share the load) runs the
//! same handler as the HTTP route, with the same tokens (NATS header `Authorization: Bearer …`
//! or `X-Vault-Token`), and the reply carries the same JSON body plus the HTTP status in the
//! `Anchorage-Status` header (and `ETag` for the bundle).
//!
//! | op | route |
//! |---|---|
//! | `sign`, `issue`, `revoke`, `acks`, `tokens`, `bundle-cas` | `POST /v1/<op>` (body: the same JSON) |
//! | `bundle`, `crl`, `consumers` | `GET /v1/<op>`; the body is a JSON object of query parameters (`{"format":"pem","wait":30}`), `If-None-Match` as a header |
//! | `rotation` | `POST /v1/rotation` (`{"action":"status"}` answers as `GET /v1/rotation`) |
//! | `health` | `GET /readyz` |
//!
//! Renewal needs the certificate over mTLS and so is HTTPS only.

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Request, header};
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// How to serve the API over NATS.
#[derive(Clone, Debug)]
pub struct NatsApi {
    /// A connected client (the CLI connects it, e.g. with `anchorage_secrets_server::nats::connect`).
    pub client: async_nats::Client,
    /// The subject prefix (default `anchorage`): requests arrive on `<prefix>.v1.<op>`.
    pub prefix: String,
    /// The queue group (default `anchorage-serve`).
    pub queue_group: String,
    /// Requests handled at once.
    pub max_in_flight: usize,
}

impl NatsApi {
    /// The defaults over `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            prefix: "anchorage".into(),
            queue_group: "anchorage-serve".into(),
            max_in_flight: 256,
        }
    }
}

/// The status header of replies.
pub const STATUS_HEADER: &str = "Anchorage-Status";

fn route(op: &str) -> Option<(Method, &'static str)> {
    Some(match op {
        "sign" => (Method::POST, "/v1/sign"),
        "issue" => (Method::POST, "/v1/issue"),
        "revoke" => (Method::POST, "/v1/revoke"),
        "acks" => (Method::POST, "/v1/acks"),
        "tokens" => (Method::POST, "/v1/tokens"),
        "bundle-cas" => (Method::POST, "/v1/bundle/cas"),
        "bundle" => (Method::GET, "/v1/bundle"),
        "crl" => (Method::GET, "/v1/crl"),
        "consumers" => (Method::GET, "/v1/consumers"),
        "rotation" => (Method::POST, "/v1/rotation"),
        "health" => (Method::GET, "/readyz"),
        _ => return None,
    })
}

/// Subscribes and answers until `shutdown` turns true; then unsubscribes and lets in-flight
/// requests finish.
pub(crate) async fn serve(
    api: NatsApi,
    subscriber: async_nats::Subscriber,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut subscriber = subscriber;
    let permits = Arc::new(Semaphore::new(api.max_in_flight.max(1)));
    let base = format!("{}.v1.", api.prefix);
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => break,
            m = subscriber.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (client, app, base) = (api.client.clone(), app.clone(), base.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let op = message
                .subject
                .as_str()
                .strip_prefix(&base)
                .unwrap_or_default();
            let (status, headers, body) = handle(app, op, &message).await;
            let mut out = async_nats::HeaderMap::new();
            out.insert(STATUS_HEADER, status.to_string().as_str());
            for (name, value) in headers {
                out.insert(name, value.as_str());
            }
            if let Err(e) = client.publish_with_headers(reply, out, body).await {
                tracing::warn!(error = %e, "could not send a NATS reply");
            }
        });
    }
    let _ = subscriber.unsubscribe().await;
    // In-flight requests hold permits: wait for them (bounded by the handlers' own timeouts).
    let _ = permits
        .acquire_many(u32::try_from(api.max_in_flight.max(1)).unwrap_or(u32::MAX))
        .await;
    let _ = api.client.flush().await;
}

async fn handle(
    app: Router,
    op: &str,
    message: &async_nats::Message,
) -> (u16, Vec<(&'static str, String)>, bytes::Bytes) {
    let Some((method, path)) = route(op) else {
        let body = serde_json::json!({"error": {"code": "route_unknown", "message": format!("no operation {op:?}: use sign, issue, revoke, acks, tokens, bundle-cas, bundle, crl, consumers or health")}});
        return (404, vec![], body.to_string().into());
    };
    let mut uri = path.to_owned();
    let mut body = message.payload.clone();
    if method == Method::GET {
        if !body.iter().all(u8::is_ascii_whitespace) {
            let params: Result<std::collections::BTreeMap<String, serde_json::Value>, _> =
                serde_json::from_slice(&body);
            let Ok(params) = params else {
                let body = serde_json::json!({"error": {"code": "malformed_json", "message": "the request body of a read is a JSON object of query parameters"}});
                return (400, vec![], body.to_string().into());
            };
            let pairs: Vec<(String, String)> = params
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            if let Ok(q) = serde_urlencoded::to_string(&pairs) {
                uri = format!("{path}?{q}");
            }
        }
        body = bytes::Bytes::new();
    }
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(headers) = &message.headers {
        for (name, nats_name) in [
            (header::AUTHORIZATION, "Authorization"),
            (header::IF_NONE_MATCH, "If-None-Match"),
            (
                header::HeaderName::from_static("x-vault-token"),
                "X-Vault-Token",
            ),
        ] {
            if let Some(v) = headers.get(nats_name) {
                builder = builder.header(name, v.as_str());
            }
        }
    }
    let Ok(request) = builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
    else {
        return (400, vec![], bytes::Bytes::from_static(b"{\"error\":{\"code\":\"invalid_request\",\"message\":\"the request cannot be framed\"}}"));
    };
    let Ok(response) = app.oneshot(request).await;
    let status = response.status().as_u16();
    let mut headers = Vec::new();
    for (name, nats_name) in [
        (header::ETAG, "ETag"),
        (header::CONTENT_TYPE, "Content-Type"),
    ] {
        if let Some(v) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            headers.push((nats_name, v.to_owned()));
        }
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, headers, body)
}

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
//!
//! Besides tokens, a request signed with an nkey that [`NatsApi::identities`] maps to a role or
//! admin is served as that identity ([`crate::nats_auth`]: the model, the signed text, the
//! refusals). Every bundle version the instance learns of is announced on
//! `<prefix>.v1.bundle.changed` ([`bundle_changed_subject`]) for agents over NATS; bundle
//! replies carry `Anchorage-Rotation` for a deliberate rotation step.
//!
//! # Overload: queue and shed (issue 18)
//!
//! Checking a token's signature (Ed25519), or an nkey's, costs the server far more than a
//! forged request costs its sender. A request is served at once (under
//! [`NatsApi::max_in_flight`], as before) when it needs no signature check: it carries no
//! credential, or a token that verified before (the token key keeps the outcome for
//! long-lived tokens: [`crate::tokens::TokenKey`]; one SHA-256 and a lookup tell). Every other
//! request (a token not seen before, a forged one, an nkey-signed request) waits in a bounded
//! queue ([`NatsApi::max_queued`]; when full, the oldest is answered busy) and is served on
//! the blocking thread pool, [`NatsApi::verifiers`] at a time (one per core), so a flood of bad
//! signatures can neither take the runtime threads that read the subscription and answer the
//! other requests, nor make the requests behind it wait in arrival order. A request that waited
//! longer than [`NatsApi::max_queue_wait`] is answered `503 busy` unopened, so its requester
//! gets an answer before its own timeout. The same loop as the secrets server's
//! (`anchorage_secrets_server::shed`), with a cheaper test of what needs verifying: serve's
//! good requesters present the same long-lived token again and again, which a forger cannot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, Request, header};
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
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
    /// Requests handled at once (those needing no signature check: see the module docs).
    pub max_in_flight: usize,
    /// Requests that need a signature checked, waiting for a verifier ([`DEFAULT_MAX_QUEUED`]);
    /// when full, the oldest is answered busy.
    pub max_queued: usize,
    /// The longest such a request waits before it is answered busy unopened
    /// ([`DEFAULT_MAX_QUEUE_WAIT`]).
    pub max_queue_wait: Duration,
    /// Requests needing a signature check served at once, each on the blocking pool (one per
    /// core by default).
    pub verifiers: usize,
    /// Requesters identified by a signed nkey, mapped to a role or admin
    /// ([`crate::nats_auth`]).
    pub identities: crate::nats_auth::NatsIdentities,
}

impl NatsApi {
    /// The defaults over `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            prefix: "anchorage".into(),
            queue_group: "anchorage-serve".into(),
            max_in_flight: 256,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
            verifiers: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            identities: crate::nats_auth::NatsIdentities::new(),
        }
    }
}

/// Requests waiting for a signature check, unless configured otherwise
/// ([`NatsApi::max_queued`]). When full, the oldest is answered `503 busy`.
pub const DEFAULT_MAX_QUEUED: usize = 4_096;

/// The longest a request waits for its signature check before it is answered `503 busy`
/// unopened, unless configured otherwise ([`NatsApi::max_queue_wait`]). Below async-nats'
/// default request timeout (10 s), so the requester gets an answer rather than its timeout.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);

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

/// The subject bundle changes are announced on: `<prefix>.v1.bundle.changed`.
pub fn bundle_changed_subject(prefix: &str) -> String {
    format!("{prefix}.v1.bundle.changed")
}

/// Announces every bundle version this instance learns of (its own changes and, through
/// `follow_bundle`, other instances') on [`bundle_changed_subject`] as `{"version": N}` with
/// the `ETag`, until `shutdown` turns true. Agents subscribed over NATS fetch on it. Several
/// instances announce the same version; agents fetch only a version they have not seen.
pub(crate) async fn announce_bundle_changes(
    client: async_nats::Client,
    prefix: String,
    mut versions: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let subject = bundle_changed_subject(&prefix);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = versions.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        let version = *versions.borrow_and_update();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("ETag", format!("\"{version}\"").as_str());
        let body = serde_json::json!({ "version": version }).to_string();
        if let Err(e) = client
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
        {
            tracing::warn!(error = %e, %subject, "could not announce a bundle change");
        }
    }
}

/// Subscribes and answers until `shutdown` turns true; then unsubscribes, answers the queued
/// requests busy and lets in-flight requests finish.
pub(crate) async fn serve(
    api: NatsApi,
    subscriber: async_nats::Subscriber,
    app: Router,
    state: Arc<crate::state::AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut subscriber = subscriber;
    let in_flight = api.max_in_flight.max(1);
    let verifiers = api.verifiers.max(1);
    let permits = Arc::new(Semaphore::new(in_flight));
    let verifying = Arc::new(Semaphore::new(verifiers));
    let shared = Arc::new(Shared {
        client: api.client.clone(),
        app,
        base: format!("{}.v1.", api.prefix),
        identities: api.identities.clone(),
        store: Arc::clone(&state.store),
    });
    let runtime = tokio::runtime::Handle::current();
    // Requests that need a signature checked, with the time they were read.
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut shed = 0u64;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            permit = Arc::clone(&verifying).acquire_owned(), if !queue.is_empty() => {
                Event::Verifier(permit)
            }
            m = subscriber.next() => Event::Message(m),
        };
        match event {
            Event::Verifier(permit) => {
                let Ok(permit) = permit else { break };
                let Some(queued) = queue.pop_front() else {
                    continue;
                };
                if queued.read.elapsed() > api.max_queue_wait {
                    shed += 1;
                    shared
                        .busy(queued, "it waited longer than the queue allows")
                        .await;
                    continue;
                }
                let (shared, runtime) = (Arc::clone(&shared), runtime.clone());
                // Signature checks run here, off the runtime's threads.
                tokio::task::spawn_blocking(move || {
                    let _permit: OwnedSemaphorePermit = permit;
                    runtime.block_on(shared.answer(queued.message, queued.reply));
                });
            }
            Event::Message(message) => {
                let Some(message) = message else { break };
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                if needs_verification(&state.tokens, &message) {
                    queue.push_back(Queued {
                        message,
                        reply,
                        read: Instant::now(),
                    });
                    if queue.len() > api.max_queued.max(1)
                        && let Some(oldest) = queue.pop_front()
                    {
                        shed += 1;
                        shared.busy(oldest, "the queue is full").await;
                    }
                    continue;
                }
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _permit = permit;
                    shared.answer(message, reply).await;
                });
            }
        }
        if shed > 0 && shed.is_power_of_two() {
            tracing::warn!(
                shed,
                queued = queue.len(),
                "NATS API overloaded: requests needing a signature check answered busy"
            );
        }
    }
    let _ = subscriber.unsubscribe().await;
    let unstarted = queue.len();
    for queued in queue.drain(..) {
        shared.busy(queued, "serve is stopping").await;
    }
    if unstarted > 0 {
        tracing::info!(unstarted, "stopping: queued NATS requests answered busy");
    }
    // In-flight requests hold permits: wait for them (bounded by the handlers' own timeouts).
    let _ = permits
        .acquire_many(u32::try_from(in_flight).unwrap_or(u32::MAX))
        .await;
    let _ = verifying
        .acquire_many(u32::try_from(verifiers).unwrap_or(u32::MAX))
        .await;
    let _ = api.client.flush().await;
}

/// Whether serving `message` means checking a signature: it is signed with an nkey, or
/// carries a token (read as [`crate::http::bearer`] reads it) that did not verify before.
fn needs_verification(tokens: &crate::tokens::TokenKey, message: &async_nats::Message) -> bool {
    let Some(headers) = &message.headers else {
        return false;
    };
    if headers.get(crate::nats_auth::NKEY_HEADER).is_some() {
        return true;
    }
    let token = headers
        .get("X-Vault-Token")
        .map(|v| v.as_str().trim())
        .or_else(|| {
            headers.get("Authorization").and_then(|v| {
                let v = v.as_str();
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .map(str::trim)
            })
        });
    token.is_some_and(|t| !tokens.is_verified(t))
}

/// A request read from the subscription, waiting for a verifier.
struct Queued {
    message: async_nats::Message,
    reply: async_nats::Subject,
    read: Instant,
}

enum Event {
    Verifier(Result<OwnedSemaphorePermit, tokio::sync::AcquireError>),
    Message(Option<async_nats::Message>),
}

/// What answering a request needs.
struct Shared {
    client: async_nats::Client,
    app: Router,
    base: String,
    identities: crate::nats_auth::NatsIdentities,
    store: Arc<dyn anchorage_store::Store>,
}

impl Shared {
    async fn answer(&self, message: async_nats::Message, reply: async_nats::Subject) {
        let op = message
            .subject
            .as_str()
            .strip_prefix(&self.base)
            .unwrap_or_default();
        let (status, headers, body) =
            match identify(&self.identities, self.store.as_ref(), op, &message).await {
                Ok(identity) => handle(self.app.clone(), op, &message, identity).await,
                Err(refused) => refused,
            };
        self.publish(reply, status, &headers, body).await;
    }

    async fn publish(
        &self,
        reply: async_nats::Subject,
        status: u16,
        headers: &[(&'static str, String)],
        body: bytes::Bytes,
    ) {
        let mut out = async_nats::HeaderMap::new();
        out.insert(STATUS_HEADER, status.to_string().as_str());
        for (name, value) in headers {
            out.insert(*name, value.as_str());
        }
        if let Err(e) = self.client.publish_with_headers(reply, out, body).await {
            tracing::warn!(error = %e, "could not send a NATS reply");
        }
    }

    /// Answers a request unopened: `503 busy`, audited.
    async fn busy(&self, queued: Queued, why: &str) {
        let op = queued
            .message
            .subject
            .as_str()
            .strip_prefix(&self.base)
            .unwrap_or_default();
        let message = format!(
            "serve is busy checking signatures: {why} ({} ms); retry later",
            queued.read.elapsed().as_millis()
        );
        tracing::info!(
            target: "anchorage::audit",
            event = "authenticate",
            outcome = "shed",
            endpoint = op,
            transport = "nats",
            code = "busy",
            reason = %message,
        );
        let body = serde_json::json!({"error": {"code": "busy", "message": message}});
        self.publish(queued.reply, 503, &[], body.to_string().into())
            .await;
    }
}

type Reply = (u16, Vec<(&'static str, String)>, bytes::Bytes);

/// The bearer value of a request signed with a configured nkey (`None`: not signed); a
/// refusal is the reply, audited.
async fn identify(
    identities: &crate::nats_auth::NatsIdentities,
    store: &dyn anchorage_store::Store,
    op: &str,
    message: &async_nats::Message,
) -> Result<Option<String>, Reply> {
    let signed = message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(crate::nats_auth::NKEY_HEADER).is_some());
    if !signed {
        return Ok(None);
    }
    let now = crate::tokens::now_unix();
    match crate::nats_auth::verify(identities, store, message, now).await {
        Ok(Some((nkey, identity))) => Ok(Some(crate::nats_auth::internal_token(
            &nkey, &identity, now,
        ))),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::info!(
                target: "anchorage::audit",
                event = "authenticate",
                outcome = "refused",
                endpoint = op,
                transport = "nats",
                nkey = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(crate::nats_auth::NKEY_HEADER))
                    .map(|v| v.as_str())
                    .unwrap_or_default(),
                code = e.code(),
                reason = %e,
            );
            let body = serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}});
            Err((e.status(), vec![], body.to_string().into()))
        }
    }
}

async fn handle(
    app: Router,
    op: &str,
    message: &async_nats::Message,
    identity: Option<String>,
) -> Reply {
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
    if let Some(token) = identity {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
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
        (
            header::HeaderName::from_static(crate::api::ROTATION_HEADER),
            "Anchorage-Rotation",
        ),
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

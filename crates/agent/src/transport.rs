//! How the agent reaches serve: HTTPS ([`ServeClient`]) or NATS request/reply
//! ([`NatsTransport`], for wasmCloud lattices). The agent's loop is the same for both; only
//! these calls differ, so the files written, the refusals and the acknowledgement semantics are
//! the same code.
//!
//! Over NATS (serve started with `--nats-url`):
//!
//! - the bundle is `<prefix>.v1.bundle` (body `{"format": …}`, `If-None-Match` header; serve's
//!   reply carries `Anchorage-Status`, `ETag` and `Anchorage-Rotation` as headers);
//! - instead of an HTTP long-poll, the agent subscribes to `<prefix>.v1.bundle.changed`, on
//!   which every serve instance publishes `{"version": N}` when the bundle changes, and fetches
//!   the bundle when a version it has not seen is announced — or, at the latest, when the wait
//!   (`Timing::wait`) ends, so an announcement lost while disconnected delays a change by one
//!   wait at most;
//! - `sign` and `acks` are `<prefix>.v1.sign` and `<prefix>.v1.acks` with the token file as
//!   `Authorization: Bearer`. Renewal needs mTLS, which serve offers over HTTPS only: over NATS
//!   the agent renews by signing a new CSR with its token (a role token, long-lived), and acks
//!   with the token too;
//! - or, with an nkey ([`crate::NatsSettings::nkey`]), every request is signed with it
//!   (`anchorage_nats_sign`: subject, reply subject, time, nonce, payload hash) and serve
//!   maps the key to a role (`serve --nats-identity NKEY=ROLE`): no token file at all.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::client::{Ack, AckAnswer, BundleAnswer, Issued, ROTATION_HEADER, ServeClient};
use crate::error::AgentError;

/// The reply header holding serve's HTTP status.
pub const STATUS_HEADER: &str = "Anchorage-Status";

/// serve over NATS.
#[derive(Clone, Debug)]
pub struct NatsTransport {
    client: async_nats::Client,
    prefix: String,
    timeout: Duration,
    changes: Arc<tokio::sync::Mutex<Option<async_nats::Subscriber>>>,
    nkey: Option<Arc<nkeys::KeyPair>>,
}

/// Where the agent reaches serve.
#[derive(Clone, Debug)]
pub enum Transport {
    /// HTTPS.
    Http(ServeClient),
    /// NATS request/reply.
    Nats(NatsTransport),
}

impl Transport {
    /// Ready to wait for changes (NATS: subscribes to the change announcements, before the
    /// first fetch, so none is missed).
    pub async fn prepare(&self) -> Result<(), AgentError> {
        match self {
            Transport::Http(_) => Ok(()),
            Transport::Nats(n) => n.subscribe().await,
        }
    }

    /// The bundle in `format`; with `known`, unchanged is [`BundleAnswer::Unchanged`]; with
    /// `wait` too, waits for a change (HTTP long-poll, NATS announcement) up to `wait`.
    pub async fn bundle(
        &self,
        format: &str,
        known: Option<u64>,
        wait: Option<Duration>,
    ) -> Result<BundleAnswer, AgentError> {
        match self {
            Transport::Http(c) => c.bundle(format, known, wait).await,
            Transport::Nats(n) => {
                if let (Some(known), Some(wait)) = (known, wait) {
                    n.wait_for_change(known, wait).await?;
                }
                n.bundle(format, known).await
            }
        }
    }

    /// `sign` with a token (over NATS with an nkey, none is needed).
    pub async fn sign(
        &self,
        token: Option<&SecretString>,
        csr_pem: &str,
        kind: &str,
        ttl: Option<Duration>,
        role: Option<&str>,
    ) -> Result<Issued, AgentError> {
        match self {
            Transport::Http(c) => {
                let token = token.ok_or_else(|| {
                    AgentError::Config(
                        "an identity without a valid certificate needs a token file for /v1/sign"
                            .into(),
                    )
                })?;
                c.sign(token, csr_pem, kind, ttl, role).await
            }
            Transport::Nats(n) => {
                let body = crate::client::sign_body(csr_pem, kind, ttl, role);
                n.post("sign", token, &body).await
            }
        }
    }

    /// `acks` with a token (HTTP: over mTLS when `token` is None); what serve answered
    /// (`renew_before` during a root rotation).
    pub async fn ack(
        &self,
        token: Option<&SecretString>,
        ack: &Ack,
    ) -> Result<AckAnswer, AgentError> {
        match self {
            Transport::Http(c) => c.ack_answer(token, ack).await,
            Transport::Nats(n) => {
                let body = serde_json::to_value(ack).map_err(|e| AgentError::Protocol {
                    what: "acks",
                    message: e.to_string(),
                })?;
                n.post("acks", token, &body).await
            }
        }
    }

    /// True over NATS (no mTLS: renewal and acks use the token).
    pub fn is_nats(&self) -> bool {
        matches!(self, Transport::Nats(_))
    }

    /// True when requests are signed with an nkey (no token needed).
    pub fn signs(&self) -> bool {
        matches!(self, Transport::Nats(n) if n.nkey.is_some())
    }
}

/// A change announcement.
#[derive(Deserialize)]
struct Changed {
    version: u64,
}

impl NatsTransport {
    /// serve's API on `client` under `<prefix>.v1.`; each request waits at most `timeout`.
    pub fn new(client: async_nats::Client, prefix: &str, timeout: Duration) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            timeout,
            changes: Arc::new(tokio::sync::Mutex::new(None)),
            nkey: None,
        }
    }

    /// Signs every request with `key` instead of sending a token.
    pub fn with_nkey(mut self, key: Arc<nkeys::KeyPair>) -> Self {
        self.nkey = Some(key);
        self
    }

    fn subject(&self, op: &str) -> String {
        format!("{}.v1.{op}", self.prefix)
    }

    fn unreachable(&self, op: &str, message: String) -> AgentError {
        AgentError::Unreachable {
            url: format!("nats subject {}", self.subject(op)),
            message,
        }
    }

    async fn subscribe(&self) -> Result<(), AgentError> {
        let mut changes = self.changes.lock().await;
        if changes.is_none() {
            let subject = self.subject("bundle.changed");
            let sub = self
                .client
                .subscribe(subject)
                .await
                .map_err(|e| self.unreachable("bundle.changed", e.to_string()))?;
            *changes = Some(sub);
        }
        Ok(())
    }

    /// Returns once a version other than `known` is announced, or after `wait`.
    async fn wait_for_change(&self, known: u64, wait: Duration) -> Result<(), AgentError> {
        self.subscribe().await?;
        let mut changes = self.changes.lock().await;
        let Some(sub) = changes.as_mut() else {
            return Ok(());
        };
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return Ok(()),
                m = sub.next() => match m {
                    Some(m) => {
                        match serde_json::from_slice::<Changed>(&m.payload) {
                            Ok(c) if c.version != known => return Ok(()),
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "a malformed bundle announcement was ignored"),
                        }
                    }
                    None => {
                        // The subscription ended (the client closed): subscribe again next time.
                        *changes = None;
                        return Err(self.unreachable("bundle.changed", "the subscription ended".into()));
                    }
                },
            }
        }
    }

    async fn request(
        &self,
        op: &'static str,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> Result<(u16, async_nats::HeaderMap, bytes::Bytes), AgentError> {
        let answer = if let Some(key) = &self.nkey {
            let if_none_match = headers.get("If-None-Match").map(|v| v.as_str().to_owned());
            anchorage_nats_sign::signed_request(
                &self.client,
                key,
                &self.subject(op),
                body.into(),
                if_none_match.as_deref(),
                self.timeout,
            )
            .await
            .map_err(|e| self.unreachable(op, e.to_string()))?
        } else {
            self.plain_request(op, headers, body).await?
        };
        let headers = answer.headers.unwrap_or_default();
        let status = headers
            .get(STATUS_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| AgentError::Protocol {
                what: op,
                message: format!("the reply has no {STATUS_HEADER} header: is it anchorage serve?"),
            })?;
        Ok((status, headers, answer.payload))
    }

    async fn plain_request(
        &self,
        op: &'static str,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> Result<async_nats::Message, AgentError> {
        tokio::time::timeout(
            self.timeout,
            self.client
                .request_with_headers(self.subject(op), headers, body.into()),
        )
        .await
        .map_err(|_| {
            self.unreachable(
                op,
                format!("no answer within {} s", self.timeout.as_secs_f32()),
            )
        })?
        .map_err(|e| self.unreachable(op, e.to_string()))
    }

    fn fail(what: &'static str, status: u16, body: &[u8]) -> AgentError {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        AgentError::Server {
            what,
            status,
            code: value["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: value["error"]["message"].as_str().map_or_else(
                || String::from_utf8_lossy(body).chars().take(200).collect(),
                str::to_owned,
            ),
        }
    }

    async fn bundle(&self, format: &str, known: Option<u64>) -> Result<BundleAnswer, AgentError> {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(v) = known {
            headers.insert("If-None-Match", format!("\"{v}\"").as_str());
        }
        let body = serde_json::json!({ "format": format })
            .to_string()
            .into_bytes();
        let (status, headers, payload) = self.request("bundle", headers, body).await?;
        match status {
            304 => Ok(BundleAnswer::Unchanged),
            200 => Ok(BundleAnswer::Bundle {
                version: headers
                    .get("ETag")
                    .and_then(|v| v.as_str().trim_matches('"').parse().ok())
                    .unwrap_or(0),
                rotation: headers
                    .get("Anchorage-Rotation")
                    .or_else(|| headers.get(ROTATION_HEADER))
                    .is_some_and(|v| v.as_str().eq_ignore_ascii_case("deliberate")),
                body: payload.to_vec(),
            }),
            _ => Err(Self::fail("bundle", status, &payload)),
        }
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        op: &'static str,
        token: Option<&SecretString>,
        body: &serde_json::Value,
    ) -> Result<T, AgentError> {
        let mut headers = async_nats::HeaderMap::new();
        // With an nkey the signature is the credential: a token as well would be refused.
        if let Some(t) = token.filter(|_| self.nkey.is_none()) {
            headers.insert(
                "Authorization",
                format!("Bearer {}", t.expose_secret()).as_str(),
            );
        }
        let (status, _, payload) = self
            .request(op, headers, body.to_string().into_bytes())
            .await?;
        if !(200..300).contains(&status) {
            return Err(Self::fail(op, status, &payload));
        }
        serde_json::from_slice(&payload).map_err(|e| AgentError::Protocol {
            what: op,
            message: e.to_string(),
        })
    }
}

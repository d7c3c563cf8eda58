//! serve's API as the agent uses it: the bundle (ETag long-poll), `/v1/sign`, `/v1/renew`
//! (mTLS), `/v1/acks`. HTTPS through reqwest with rustls (ring), trusting only the serve CA
//! given as a file.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The response header by which serve marks a bundle as a deliberate rotation step: a bundle
/// carrying it may drop the root the agent's own certificate chains to (serve sends it on an
/// admin's `deliberate_rotation` change and on a root rotation's Retiring step).
pub const ROTATION_HEADER: &str = "anchorage-rotation";

/// What `GET /v1/bundle` answered.
#[derive(Debug)]
pub enum BundleAnswer {
    /// `304`: the version the agent has is current.
    Unchanged,
    /// `200`: a bundle.
    Bundle {
        /// The version (from the ETag; 0 when serve sent none).
        version: u64,
        /// The body.
        body: Vec<u8>,
        /// serve marked this bundle as a deliberate rotation step ([`ROTATION_HEADER`]).
        rotation: bool,
    },
}

/// `/v1/sign` and `/v1/renew` answers (the fields the agent uses).
#[derive(Clone, Debug, Deserialize)]
pub struct Issued {
    /// The leaf, PEM.
    pub certificate: String,
    /// Intermediates, PEM each.
    #[serde(default)]
    pub chain: Vec<String>,
    /// Roots, PEM each.
    #[serde(default)]
    pub ca: Vec<String>,
    /// The serial, hex.
    #[serde(default)]
    pub serial_number: String,
}

/// The body of `POST /v1/acks`.
#[derive(Clone, Debug, Serialize)]
pub struct Ack {
    /// The consumer.
    pub consumer: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The bundle version installed.
    pub bundle_version: u64,
    /// The identity's serial, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    /// The identity's not-after, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Why the bundle served last was refused (`bundle_version` is what stays installed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// What serve answered to an ack (the fields the agent uses).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AckAnswer {
    /// During a root rotation: renew the identity by this time (unix seconds), because its
    /// leaf is not under the root that signs now.
    #[serde(default)]
    pub renew_before: Option<i64>,
}

/// The request header naming the consumer on renewals (serve's rate limit groups by its
/// labels).
pub const CONSUMER_HEADER: &str = "anchorage-consumer";

/// A client of one serve.
#[derive(Clone)]
pub struct ServeClient {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    consumer: Option<String>,
}

impl std::fmt::Debug for ServeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A client identity for mTLS: the chain (leaf first) and the PKCS#8 key, PEM.
pub struct ClientIdentity<'a> {
    /// Leaf then intermediates, PEM.
    pub chain_pem: &'a str,
    /// The key, PEM.
    pub key_pem: &'a SecretString,
}

impl ServeClient {
    /// A client of `base` trusting the PEM roots `ca_pem`, presenting `identity` when given.
    pub fn new(
        base: &str,
        ca_pem: &[u8],
        identity: Option<ClientIdentity<'_>>,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let mut roots = rustls::RootCertStore::empty();
        for found in anchorage_x509::decode(ca_pem).certificates {
            roots
                .add(CertificateDer::from(found.certificate.der().to_vec()))
                .map_err(|e| AgentError::Tls(format!("the serve CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(AgentError::Tls(
                "the serve CA file holds no certificate (give serve's ca.pem)".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let tls = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let certs: Vec<CertificateDer<'static>> =
                    anchorage_x509::decode(id.chain_pem.as_bytes())
                        .certificates
                        .into_iter()
                        .map(|f| CertificateDer::from(f.certificate.der().to_vec()))
                        .collect();
                let (_, private) = anchorage_ca::keys::load(id.key_pem.expose_secret().as_bytes())
                    .map_err(|e| AgentError::Tls(format!("the identity key: {e}")))?;
                let key =
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private.pkcs8_der().to_vec()));
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| AgentError::Tls(format!("the identity: {e}")))?
            }
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AgentError::Tls(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            timeout,
            consumer: None,
        })
    }

    /// The same client naming `consumer` on renewals ([`CONSUMER_HEADER`]).
    #[must_use]
    pub fn with_consumer(mut self, consumer: &str) -> Self {
        self.consumer = Some(consumer.to_owned());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: &reqwest::Error) -> AgentError {
        // The error's source chain says why (refused, TLS); never holds a token.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        AgentError::Unreachable {
            url: self.base.clone(),
            message,
        }
    }

    async fn fail(what: &'static str, resp: reqwest::Response) -> AgentError {
        let status = resp.status().as_u16();
        if status == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(5);
            return AgentError::RateLimited {
                what,
                retry_after: Duration::from_secs(retry_after.clamp(1, 3600)),
            };
        }
        let text = resp.text().await.unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let code = value["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        let message = value["error"]["message"]
            .as_str()
            .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
        AgentError::Server {
            what,
            status,
            code,
            message,
        }
    }

    /// `GET /v1/bundle?format=…`; with `known`, `If-None-Match` and (with `wait`) a long-poll.
    pub async fn bundle(
        &self,
        format: &str,
        known: Option<u64>,
        wait: Option<Duration>,
    ) -> Result<BundleAnswer, AgentError> {
        let mut url = format!("{}/v1/bundle?format={format}", self.base);
        if let Some(w) = wait.filter(|_| known.is_some()) {
            url.push_str(&format!("&wait={}", w.as_secs().max(1)));
        }
        let mut req = self
            .http
            .get(&url)
            .timeout(self.timeout + wait.unwrap_or_default());
        if let Some(v) = known {
            req = req.header("if-none-match", format!("\"{v}\""));
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        match resp.status().as_u16() {
            304 => Ok(BundleAnswer::Unchanged),
            200 => {
                let version = resp
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim_matches('"').parse().ok())
                    .unwrap_or(0);
                let rotation = resp
                    .headers()
                    .get(ROTATION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("deliberate"));
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| self.unreachable(&e))?
                    .to_vec();
                Ok(BundleAnswer::Bundle {
                    version,
                    body,
                    rotation,
                })
            }
            _ => Err(Self::fail("GET /v1/bundle", resp).await),
        }
    }

    async fn post_json<T: for<'de> Deserialize<'de>>(
        &self,
        what: &'static str,
        path: &str,
        token: Option<&SecretString>,
        body: &serde_json::Value,
    ) -> Result<T, AgentError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(self.timeout)
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose_secret());
        }
        if let Some(c) = &self.consumer {
            req = req.header(CONSUMER_HEADER, c);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(Self::fail(what, resp).await);
        }
        resp.json().await.map_err(|e| AgentError::Protocol {
            what,
            message: e.to_string(),
        })
    }

    /// `POST /v1/sign` with a token: a certificate for the CSR.
    pub async fn sign(
        &self,
        token: &SecretString,
        csr_pem: &str,
        kind: &str,
        ttl: Option<Duration>,
        role: Option<&str>,
    ) -> Result<Issued, AgentError> {
        let body = sign_body(csr_pem, kind, ttl, role);
        self.post_json("POST /v1/sign", "/v1/sign", Some(token), &body)
            .await
    }

    /// `POST /v1/renew` over mTLS (this client must carry the current identity).
    pub async fn renew(&self, csr_pem: &str, ttl: Option<Duration>) -> Result<Issued, AgentError> {
        let mut body = serde_json::json!({ "csr": csr_pem });
        if let Some(ttl) = ttl {
            body["ttl"] = ttl.as_secs().into();
        }
        self.post_json("POST /v1/renew", "/v1/renew", None, &body)
            .await
    }

    /// `POST /v1/acks`, with a token, or over mTLS when `token` is None.
    pub async fn ack(&self, token: Option<&SecretString>, ack: &Ack) -> Result<(), AgentError> {
        self.ack_answer(token, ack).await.map(|_| ())
    }

    /// `POST /v1/acks`, returning what serve answered (`renew_before` during a rotation).
    pub async fn ack_answer(
        &self,
        token: Option<&SecretString>,
        ack: &Ack,
    ) -> Result<AckAnswer, AgentError> {
        let body = serde_json::to_value(ack).map_err(|e| AgentError::Protocol {
            what: "POST /v1/acks",
            message: e.to_string(),
        })?;
        self.post_json("POST /v1/acks", "/v1/acks", token, &body)
            .await
    }
}

/// The `/v1/sign` body (HTTP and NATS): the CSR, the kind, and the lifetime and role when asked.
pub(crate) fn sign_body(
    csr_pem: &str,
    kind: &str,
    ttl: Option<Duration>,
    role: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "csr": csr_pem, "kind": kind });
    if let Some(ttl) = ttl {
        body["ttl"] = ttl.as_secs().into();
    }
    if let Some(role) = role {
        body["role"] = role.into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_carries_a_refusal_in_its_own_field_not_a_label() {
        let mut ack = Ack {
            consumer: "web-1".into(),
            labels: std::collections::BTreeMap::new(),
            bundle_version: 3,
            cert_serial: None,
            not_after: None,
            refused: Some("bundle version 4 holds no CA certificate".into()),
        };
        let v = serde_json::to_value(&ack).unwrap();
        assert_eq!(v["refused"], "bundle version 4 holds no CA certificate");
        assert!(v["labels"].as_object().unwrap().is_empty());
        ack.refused = None;
        let v = serde_json::to_value(&ack).unwrap();
        assert!(v.get("refused").is_none(), "{v}");
    }
}

//! The HTTP transport: one reqwest client over rustls, the `/v1/` base URL, headers, bodies
//! read into zeroizing memory, and transport failures turned into [`IssueError`]s that name
//! the address.
//!
//! This module owns how bytes reach OpenBao; it does not know what the endpoints mean (that is
//! [`crate::issuer`] and [`crate::auth`]). The TLS trust comes from
//! [`anchorage_trust::tls::TrustConfig`] with the crypto provider the caller chose; nothing here
//! installs a process default.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use anchorage_ca::IssueError;
use anchorage_trust::tls::TrustReport;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use rustls::crypto::CryptoProvider;
use zeroize::{Zeroize as _, Zeroizing};

use crate::config::VaultConfig;
use crate::error::VaultError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "vault";

/// The largest answer read; PKI answers are a few KiB, a chain of ten RSA-4096 certificates
/// is under 30 KiB.
const MAX_BODY: usize = 4 << 20;

const X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
const X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");
const X_VAULT_REQUEST: HeaderName = HeaderName::from_static("x-vault-request");

/// An HTTP answer whose body is wiped when dropped.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

/// The client and where it points.
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    address: String,
    namespace: Option<HeaderValue>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Http {
    /// Builds the client. For `https://` the trust store comes from `config.trust` (its report
    /// is returned); for `http://` no TLS is used at all.
    pub(crate) fn new(
        config: &VaultConfig,
        provider: Arc<CryptoProvider>,
    ) -> Result<(Self, Option<TrustReport>), VaultError> {
        let (base, address) = parse_address(&config.address)?;
        let namespace = match &config.namespace {
            None => None,
            Some(ns) => {
                crate::config::check_path(ns.trim_end_matches('/'), true).map_err(|reason| {
                    VaultError::InvalidSetting {
                        setting: "namespace",
                        value: ns.clone(),
                        reason,
                    }
                })?;
                Some(
                    HeaderValue::from_str(ns).map_err(|_| VaultError::InvalidSetting {
                        setting: "namespace",
                        value: ns.clone(),
                        reason: "is not a valid HTTP header value",
                    })?,
                )
            }
        };
        let https = base.scheme() == "https";
        let (tls, report) = if https {
            let (tls, report) =
                config
                    .trust
                    .client_config(provider)
                    .map_err(|source| VaultError::Trust {
                        address: address.clone(),
                        source: Box::new(source),
                    })?;
            (tls, Some(report))
        } else {
            // reqwest wants a TLS config even when it will only speak plain HTTP (it has no
            // provider of its own here); this one trusts nothing and is never used.
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|source| VaultError::Trust {
                    address: address.clone(),
                    source: Box::new(anchorage_trust::tls::TlsTrustError::Provider { source }),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            (tls, None)
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // An https address never follows a redirect to plain http (the token would go in
            // clear); OpenBao standbys redirect to the active node with 307.
            .https_only(https)
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("anchorage-ca-vault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| VaultError::Client {
                address: address.clone(),
                source,
            })?;
        Ok((
            Self {
                client,
                base,
                address,
                namespace,
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
            },
            report,
        ))
    }

    /// The address as given, without a trailing slash, for messages.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// `METHOD <address>/v1/<path>`, for messages.
    pub(crate) fn describe(&self, method: &Method, path: &str) -> String {
        format!("{method} {}/v1/{path}", self.address)
    }

    /// Sends one request to `/v1/<path>` and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> Result<Answer, IssueError> {
        let url = self.base.join(path).map_err(|e| IssueError::Backend {
            backend: BACKEND,
            message: format!("cannot form a URL for {path} under {}: {e}", self.address),
        })?;
        let mut request = self
            .client
            .request(method.clone(), url)
            .header(X_VAULT_REQUEST, "true");
        if let Some(ns) = &self.namespace {
            request = request.header(X_VAULT_NAMESPACE, ns.clone());
        }
        if let Some(token) = token {
            request = request.header(X_VAULT_TOKEN, token.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let what = self.describe(&method, path);
        let mut response = request.send().await.map_err(|e| self.failure(&what, &e))?;
        let status = response.status();
        let capacity = response.content_length().map_or(4096, |n| {
            usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY)
        });
        let mut body = Zeroizing::new(Vec::with_capacity(capacity));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.failure(&what, &e))?
        {
            let needed = body.len() + chunk.len();
            if needed > MAX_BODY {
                return Err(IssueError::Backend {
                    backend: BACKEND,
                    message: format!(
                        "{what} answered more than {} MiB; is {} an OpenBao server?",
                        MAX_BODY >> 20,
                        self.address
                    ),
                });
            }
            if needed > body.capacity() {
                // Grow by hand so the old buffer is wiped (Vec's own growth would free it
                // as it is).
                let mut bigger =
                    Zeroizing::new(Vec::with_capacity(needed.max(2 * body.capacity())));
                bigger.extend_from_slice(&body);
                body = bigger;
            }
            body.extend_from_slice(&chunk);
            wipe(chunk);
        }
        Ok(Answer { status, body })
    }

    /// A transport failure as an [`IssueError`] naming the address and the cause.
    fn failure(&self, what: &str, error: &reqwest::Error) -> IssueError {
        let cause = root_cause(error);
        if error.is_timeout() && !error.is_connect() {
            tracing::warn!(request = what, waited = ?self.request_timeout, "OpenBao did not answer in time");
            return IssueError::Timeout {
                backend: BACKEND,
                waited: self.request_timeout,
            };
        }
        let message = if error.is_connect() && error.is_timeout() {
            format!(
                "could not connect to {} within {:?} ({what})",
                self.address, self.connect_timeout
            )
        } else if let Some(tls) = tls_cause(error) {
            format!(
                "TLS with {} failed ({what}): {tls}; if OpenBao's certificate comes from a private CA, add that CA to the trust settings (ssl_certs_file or --tls-ca-path)",
                self.address
            )
        } else if error.is_connect() {
            format!("could not connect to {} ({what}): {cause}", self.address)
        } else if error.is_redirect() {
            format!("{what} was redirected too often or to an insecure address: {cause}")
        } else {
            format!("{what} failed: {cause}")
        };
        IssueError::Backend {
            backend: BACKEND,
            message,
        }
    }
}

/// Wipes a chunk the HTTP stack handed over, when we hold the only reference to it.
fn wipe(chunk: Bytes) {
    if let Ok(mut owned) = chunk.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

/// Checks the address and makes the `/v1/` base URL. Returns the base and the address for
/// messages.
fn parse_address(address: &str) -> Result<(Url, String), VaultError> {
    let bad = |reason: &str| VaultError::InvalidAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(address.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be https or http"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("there is no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed further: the address itself is in the error, so refuse to keep it.
        return Err(VaultError::InvalidAddress {
            address: "[an address with credentials]".to_owned(),
            reason: "credentials do not belong in the address; use the token or AppRole settings"
                .to_owned(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed"));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let shown = format!("{}{}", url.origin().ascii_serialization(), path);
    url.set_path(&format!("{path}/v1/"));
    Ok((url, shown))
}

/// The innermost message of an error chain (looking inside `io::Error`s, whose `source()`
/// skips the error they wrap).
fn root_cause(error: &reqwest::Error) -> String {
    let mut last = error.to_string();
    let mut next: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(e) = next {
        last = e.to_string();
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _).or_else(|| e.source()),
            None => e.source(),
        };
    }
    last
}

/// The rustls error in a chain, if any.
fn tls_cause(error: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _).or_else(|| e.source()),
            None => e.source(),
        };
    }
    None
}

/// A header value holding a secret: marked sensitive (hidden from HTTP-level `Debug`), its bytes
/// wiped when the last copy is dropped.
pub(crate) fn secret_header(secret: &str) -> Result<HeaderValue, &'static str> {
    if secret.is_empty() {
        return Err("is empty");
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("holds characters other than printable ASCII");
    }
    let owned = Zeroizing::new(secret.as_bytes().to_vec());
    let mut value = HeaderValue::from_maybe_shared(Bytes::from_owner(owned))
        .map_err(|_| "is not a valid HTTP header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// A request body wiped when the HTTP stack lets go of it.
pub(crate) fn secret_body(bytes: Zeroizing<Vec<u8>>) -> Bytes {
    Bytes::from_owner(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let (base, shown) = parse_address("https://vault.example:8200").unwrap();
        assert_eq!(base.as_str(), "https://vault.example:8200/v1/");
        assert_eq!(shown, "https://vault.example:8200");
        let (base, shown) = parse_address("http://127.0.0.1:8200/").unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:8200/v1/");
        assert_eq!(shown, "http://127.0.0.1:8200");
        let (base, _) = parse_address("https://proxy.example/vault/").unwrap();
        assert_eq!(
            base.join("pki/issue/web").unwrap().as_str(),
            "https://proxy.example/vault/v1/pki/issue/web"
        );
        for (bad, why) in [
            ("vault.example:8200", "the scheme must be https or http"),
            ("ftp://vault.example", "the scheme must be https or http"),
            ("https://", "empty host"),
            (
                "https://vault.example?x=1",
                "a query or fragment is not allowed",
            ),
        ] {
            let err = parse_address(bad).unwrap_err();
            assert!(
                matches!(
                    &err,
                    VaultError::InvalidAddress { address, reason }
                        if address == bad && reason == why
                ),
                "{bad}: {err:?}"
            );
        }
        let err = parse_address("https://user:hunter2@vault.example").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn secret_headers_are_sensitive_and_checked() {
        let value = secret_header("s.abcdef").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.as_bytes(), b"s.abcdef");
        assert!(format!("{value:?}").contains("Sensitive"));
        assert_eq!(secret_header("").unwrap_err(), "is empty");
        for bad in ["has space", "new\nline"] {
            assert_eq!(
                secret_header(bad).unwrap_err(),
                "holds characters other than printable ASCII",
                "{bad:?}"
            );
        }
    }
}

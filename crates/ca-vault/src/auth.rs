//! Getting a token to send: a fixed token, or an AppRole login cached until two thirds of its
//! lease have passed (or until OpenBao answers 403).
//!
//! This module owns the login exchange and the token cache. Tokens live only in sensitive,
//! self-wiping header values; the secret ID is exposed only while the login body is written,
//! into a buffer that is wiped when sent. Nothing here logs a secret or puts one in an error,
//! and text from OpenBao is scrubbed of them before it reaches an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anchorage_ca::IssueError;
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::config::{AppRole, VaultAuth};
use crate::error::VaultError;
use crate::http::{BACKEND, Http, secret_body, secret_header};
use crate::wire;

/// A token to send and the login it came from (0 for a fixed token).
pub(crate) struct TokenHandle {
    pub(crate) header: HeaderValue,
    generation: u64,
}

pub(crate) struct Leased {
    header: HeaderValue,
    renew_at: Option<Instant>,
    generation: u64,
}

/// The authentication state of one issuer.
pub(crate) enum Auth {
    Token {
        header: HeaderValue,
        /// Kept only to scrub it from OpenBao's error text.
        secret: SecretString,
    },
    AppRole {
        approle: AppRole,
        current: Mutex<Option<Leased>>,
        logins: AtomicU64,
    },
}

impl Auth {
    /// Checks the settings; no request is sent.
    pub(crate) fn new(auth: &VaultAuth) -> Result<Self, VaultError> {
        match auth {
            VaultAuth::Token(token) => {
                let header = secret_header(token.expose_secret().trim()).map_err(|reason| {
                    VaultError::InvalidSecret {
                        what: "token",
                        reason,
                    }
                })?;
                Ok(Auth::Token {
                    header,
                    secret: token.clone(),
                })
            }
            VaultAuth::AppRole(approle) => {
                crate::config::check_path(&approle.mount, true).map_err(|reason| {
                    VaultError::InvalidSetting {
                        setting: "approle mount",
                        value: approle.mount.clone(),
                        reason,
                    }
                })?;
                if approle.role_id.trim().is_empty() {
                    return Err(VaultError::InvalidSetting {
                        setting: "approle role_id",
                        value: approle.role_id.clone(),
                        reason: "must not be empty",
                    });
                }
                if approle.secret_id.expose_secret().trim().is_empty() {
                    return Err(VaultError::InvalidSecret {
                        what: "AppRole secret ID",
                        reason: "is empty",
                    });
                }
                Ok(Auth::AppRole {
                    approle: approle.clone(),
                    current: Mutex::new(None),
                    logins: AtomicU64::new(0),
                })
            }
        }
    }

    /// `token` or `approle`.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::AppRole { .. } => "approle",
        }
    }

    /// True when a 403 may be cured by logging in again.
    pub(crate) fn can_login_again(&self) -> bool {
        matches!(self, Auth::AppRole { .. })
    }

    /// The token to send now, logging in first when there is none or it is due for renewal.
    pub(crate) async fn token(&self, http: &Http) -> Result<TokenHandle, IssueError> {
        match self {
            Auth::Token { header, .. } => Ok(TokenHandle {
                header: header.clone(),
                generation: 0,
            }),
            Auth::AppRole {
                approle,
                current,
                logins,
            } => {
                // Held across the login so concurrent issues wait for one login, not start many.
                let mut current = current.lock().await;
                if let Some(leased) = current.as_ref()
                    && leased.renew_at.is_none_or(|at| Instant::now() < at)
                {
                    return Ok(TokenHandle {
                        header: leased.header.clone(),
                        generation: leased.generation,
                    });
                }
                let (header, lease) = login(approle, http).await?;
                let generation = logins.fetch_add(1, Ordering::Relaxed) + 1;
                // Renew at two thirds of the lease; a lease of 0 never expires.
                let renew_at = (lease > Duration::ZERO).then(|| Instant::now() + lease * 2 / 3);
                tracing::debug!(
                    mount = %approle.mount,
                    lease = ?lease,
                    generation,
                    "logged in to OpenBao with AppRole"
                );
                *current = Some(Leased {
                    header: header.clone(),
                    renew_at,
                    generation,
                });
                Ok(TokenHandle { header, generation })
            }
        }
    }

    /// Forgets the token of `handle` (OpenBao refused it), unless a newer login replaced it.
    pub(crate) async fn forget(&self, handle: &TokenHandle) {
        if let Auth::AppRole { current, .. } = self {
            let mut current = current.lock().await;
            if current
                .as_ref()
                .is_some_and(|l| l.generation == handle.generation)
            {
                *current = None;
            }
        }
    }

    /// `text` with every secret this state knows replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: String) -> String {
        let secret = match self {
            Auth::Token { secret, .. } => secret.expose_secret(),
            Auth::AppRole { approle, .. } => approle.secret_id.expose_secret(),
        };
        let secret = secret.trim();
        if secret.len() >= 4 && text.contains(secret) {
            text.replace(secret, "[redacted]")
        } else {
            text
        }
    }
}

/// `POST auth/<mount>/login` with the role ID and secret ID.
async fn login(approle: &AppRole, http: &Http) -> Result<(HeaderValue, Duration), IssueError> {
    let path = format!("auth/{}/login", approle.mount);
    let what = http.describe(&Method::POST, &path);
    let secret_id = approle.secret_id.expose_secret().trim();
    // Room for the worst case of JSON escaping, so serde never reallocates (which would leave an
    // unwiped copy of the secret ID behind).
    let mut body = Zeroizing::new(Vec::with_capacity(
        64 + 6 * (approle.role_id.len() + secret_id.len()),
    ));
    serde_json::to_writer(
        &mut *body,
        &wire::AppRoleLogin {
            role_id: &approle.role_id,
            secret_id,
        },
    )
    .map_err(|e| IssueError::Backend {
        backend: BACKEND,
        message: format!("cannot write the AppRole login request: {e}"),
    })?;
    let answer = http
        .send(Method::POST, &path, None, Some(secret_body(body)))
        .await?;
    let scrub = |text: String| {
        if secret_id.len() >= 4 {
            text.replace(secret_id, "[redacted]")
        } else {
            text
        }
    };
    if answer.status != StatusCode::OK {
        let said = scrub(wire::error_text(&answer.body));
        let hint = match answer.status {
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                "check the role ID and secret ID (a secret ID expires after its secret_id_ttl and after secret_id_num_uses logins) and that the AppRole role exists"
            }
            StatusCode::NOT_FOUND => "is the AppRole auth method enabled at that mount?",
            _ => "is OpenBao unsealed and reachable?",
        };
        return Err(IssueError::Backend {
            backend: BACKEND,
            message: format!(
                "AppRole login failed: {what} answered HTTP {} ({said}); {hint}",
                answer.status.as_u16()
            ),
        });
    }
    let parsed: wire::LoginAnswer<'_> =
        serde_json::from_slice(&answer.body).map_err(|e| IssueError::Backend {
            backend: BACKEND,
            message: format!("{what} answered JSON without a usable auth block: {e}"),
        })?;
    let auth = parsed.auth.ok_or_else(|| IssueError::Backend {
        backend: BACKEND,
        message: format!("{what} answered without an auth block"),
    })?;
    let token = wire::secret_string(auth.client_token)
        .ok()
        .flatten()
        .ok_or_else(|| IssueError::Backend {
            backend: BACKEND,
            message: format!("{what} answered without a client token"),
        })?;
    let header = secret_header(&token).map_err(|reason| IssueError::Backend {
        backend: BACKEND,
        message: format!("{what} answered a client token that {reason}"),
    })?;
    Ok((header, Duration::from_secs(auth.lease_duration)))
}

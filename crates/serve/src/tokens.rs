//! API tokens: compact JWS (JWT) signed with the server's Ed25519 key (`alg: EdDSA`).
//!
//! Three kinds ([`TokenKind`]):
//! - **one-time** (`ott`): audience = the endpoint path (`/v1/sign`, `/v1/issue`), lifetime at
//!   most [`MAX_OTT_LIFETIME`], checked with [`LEEWAY`] of clock skew; its `jti` is recorded
//!   with the store's `create` on first use, so a replay fails on every instance;
//! - **role** tokens for controllers: long-lived, bound to one role, listed in the store (so
//!   deleting the record revokes them);
//! - **admin**: everything, listed in the store like role tokens. The bootstrap admin token is
//!   written `0600` into the data directory at first start.
//!
//! The signing key lives in the store ([`KEY_STORE_KEY`], PKCS#8), created by the first
//! instance and read by the others. Tokens are secrets: never logged, and `Claims` hold none.
//! (No JWT crate: the workspace has none in its lock file, each brings its own crypto backend
//! choice, and one Ed25519 compact JWS over ring — already the workspace's provider — is short.)

use std::time::{SystemTime, UNIX_EPOCH};

use anchorage_store::{Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The store key of the token signing key.
pub const KEY_STORE_KEY: &str = "serve.token-key";
/// One-time tokens live at most this long (`exp - iat`).
pub const MAX_OTT_LIFETIME: i64 = 300;
/// Clock skew allowed on `nbf`/`exp`.
pub const LEEWAY: i64 = 60;
/// The audience of long-lived (role, admin) tokens.
pub const LONG_LIVED_AUDIENCE: &str = "anchorage";
const ISSUER: &str = "anchorage";
const JTI_PREFIX: &str = "serve.jti.";
const TOKEN_PREFIX: &str = "serve.tokens.";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// One-time, short-lived, for one endpoint.
    Ott,
    /// Long-lived, bound to a role.
    Role,
    /// Long-lived, every operation.
    Admin,
}

/// A token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always `anchorage`.
    pub iss: String,
    /// Who the token is for (a workload name, a controller).
    pub sub: String,
    /// The endpoint path for one-time tokens, `anchorage` for long-lived ones.
    pub aud: String,
    /// The kind.
    pub typ: TokenKind,
    /// The role it issues under (required for `ott` and `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// For one-time tokens: the names it may request besides `sub` (empty: `sub` only, or
    /// any name the role allows when `sub` is not a name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires (Unix seconds); `None` for long-lived tokens without an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Unique id.
    pub jti: String,
}

/// What to mint ([`mint_token`]).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The kind.
    pub kind: TokenKind,
    /// Who the token is for.
    pub subject: String,
    /// The role (required for one-time and role tokens).
    pub role: Option<String>,
    /// For one-time tokens: the endpoint (`/v1/sign`, `/v1/issue`); ignored otherwise.
    pub audience: String,
    /// Extra names a one-time token may request.
    pub sans: Vec<String>,
    /// Lifetime in seconds: at most [`MAX_OTT_LIFETIME`] for one-time tokens (the default
    /// too); `None` = no expiry for long-lived ones.
    pub ttl_seconds: Option<i64>,
}

/// Why a token was refused (each maps to a stable API error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was sent.
    #[error("no token: send `Authorization: Bearer <token>` (or `X-Vault-Token`)")]
    Missing,
    /// Not a JWT we signed.
    #[error(
        "the token is malformed or its signature does not verify: mint one with `anchorage token create`"
    )]
    Invalid,
    /// Expired.
    #[error("the token expired at {exp} (now {now}, {LEEWAY} s leeway): mint a new one")]
    Expired {
        /// Its `exp`.
        exp: i64,
        /// Now.
        now: i64,
    },
    /// `nbf` in the future.
    #[error("the token is not valid before {nbf} (now {now}, {LEEWAY} s leeway): check the clocks")]
    NotYetValid {
        /// Its `nbf`.
        nbf: i64,
        /// Now.
        now: i64,
    },
    /// The audience is another endpoint.
    #[error("the token is for {aud:?}, not {expected:?}: mint one whose audience is this endpoint")]
    WrongAudience {
        /// Its audience.
        aud: String,
        /// This endpoint.
        expected: String,
    },
    /// A one-time token living longer than allowed.
    #[error("a one-time token may live at most {MAX_OTT_LIFETIME} s; this one lives {lifetime} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime: i64,
    },
    /// The `jti` was used before.
    #[error("the one-time token {jti} was already used: mint a new one for each request")]
    Replayed {
        /// Its id.
        jti: String,
    },
    /// A long-lived token whose record is gone.
    #[error("the token {jti} was revoked or is unknown to this server")]
    Revoked {
        /// Its id.
        jti: String,
    },
    /// A one-time or role token without a role.
    #[error("a {kind:?} token needs a role")]
    NoRole {
        /// The kind.
        kind: TokenKind,
    },
    /// The store failed.
    #[error("the state store failed while checking the token: {0}")]
    Store(String),
}

impl TokenError {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Invalid => "token_invalid",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::WrongAudience { .. } => "token_wrong_audience",
            TokenError::LifetimeTooLong { .. } => "token_lifetime_too_long",
            TokenError::Replayed { .. } => "token_replayed",
            TokenError::Revoked { .. } => "token_revoked",
            TokenError::NoRole { .. } => "token_without_role",
            TokenError::Store(_) => "store_unavailable",
        }
    }
}

/// Unix seconds now.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system generator failing is not recoverable.
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        panic!("the system random generator failed");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Long-lived tokens whose signature was verified, at most this many ([`TokenKey::decode`]).
pub const VERIFIED_CACHE_MAX: usize = 1024;

/// The server's token key: signs and verifies.
///
/// A controller sends the same long-lived (role or admin) token with every request, so the
/// outcome of its signature check is kept: keyed on the SHA-256 of the token's full bytes (a
/// token that differs in any byte is checked afresh; the token itself is not kept), only for
/// tokens that verified, at most [`VERIFIED_CACHE_MAX`] of them (the cache is emptied when
/// full). Only the signature and the decoding are skipped: times, audience and the revocation
/// record are checked on every request ([`TokenKey::verify`]). The signature is a pure function
/// of the key, which never changes for a `TokenKey`, and the token bytes.
pub struct TokenKey {
    pair: Ed25519KeyPair,
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([Ed25519])")
    }
}

impl TokenKey {
    /// Loads the key from the store, creating it when absent (a concurrent creator wins and
    /// its key is read back).
    pub async fn load_or_create(store: &dyn Store) -> Result<Self, StoreError> {
        loop {
            if let Some(entry) = store.get(KEY_STORE_KEY).await? {
                let der = Zeroizing::new(entry.value);
                return Ed25519KeyPair::from_pkcs8(&der)
                    .map(|pair| Self {
                        pair,
                        verified: Default::default(),
                    })
                    .map_err(|_| StoreError::InvalidKey {
                        key: KEY_STORE_KEY.to_owned(),
                        reason: "the stored token key is not an Ed25519 PKCS#8 key",
                    });
            }
            let rng = ring::rand::SystemRandom::new();
            let Ok(doc) = Ed25519KeyPair::generate_pkcs8(&rng) else {
                panic!("the system random generator failed");
            };
            match store.create(KEY_STORE_KEY, doc.as_ref().to_vec()).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Signs `claims` as a compact JWS.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{header}.{body}");
        let sig = URL_SAFE_NO_PAD.encode(self.pair.sign(input.as_bytes()));
        format!("{input}.{sig}")
    }

    /// Checks the signature and decodes the claims (no time or audience checks). A long-lived
    /// token that verified before is not checked again (see [`TokenKey`]).
    pub fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.trim().as_bytes()).into();
        if let Some(claims) = self.verified_lock().get(&digest) {
            return Ok(claims.clone());
        }
        let claims = self.decode_uncached(token)?;
        if claims.typ != TokenKind::Ott {
            let mut cache = self.verified_lock();
            if cache.len() >= VERIFIED_CACHE_MAX {
                cache.clear();
            }
            cache.insert(digest, claims.clone());
        }
        Ok(claims)
    }

    /// Whether `token` verified before and is kept (see [`TokenKey`]): its signature will not
    /// be checked again. One SHA-256 and a lookup; nothing else about the token is checked.
    /// The NATS API serves such requests without queueing them behind unverified ones
    /// ([`crate::nats`]).
    pub(crate) fn is_verified(&self, token: &str) -> bool {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.trim().as_bytes()).into();
        self.verified_lock().contains_key(&digest)
    }

    fn verified_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], Claims>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many verified tokens are kept (for tests).
    #[cfg(test)]
    pub(crate) fn verified_cached(&self) -> usize {
        self.verified_lock().len()
    }

    fn decode_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Invalid)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
            return Err(TokenError::Invalid);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Invalid)?;
        let input_len = h.len() + 1 + b.len();
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(&token.trim().as_bytes()[..input_len], &sig)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(b)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Invalid)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Checks `token` for `endpoint` at `now`: signature, times, audience, then replay (one-time
    /// tokens: the `jti` is recorded, so this consumes the token) or revocation (long-lived).
    pub async fn verify(
        &self,
        store: &dyn Store,
        token: &str,
        endpoint: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        let claims = self.decode(token)?;
        if claims.nbf > now + LEEWAY {
            return Err(TokenError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        if let Some(exp) = claims.exp
            && exp + LEEWAY <= now
        {
            return Err(TokenError::Expired { exp, now });
        }
        if claims.typ != TokenKind::Admin && claims.role.is_none() {
            return Err(TokenError::NoRole { kind: claims.typ });
        }
        let store_err = |e: StoreError| TokenError::Store(e.to_string());
        match claims.typ {
            TokenKind::Ott => {
                if claims.aud != endpoint {
                    return Err(TokenError::WrongAudience {
                        aud: claims.aud.clone(),
                        expected: endpoint.to_owned(),
                    });
                }
                let lifetime = claims.exp.map_or(i64::MAX, |exp| exp - claims.iat);
                if lifetime > MAX_OTT_LIFETIME || claims.nbf < claims.iat - LEEWAY {
                    return Err(TokenError::LifetimeTooLong { lifetime });
                }
                // The expiry leads the key, so expired records are found (and removed by
                // `sweep_used_tokens`) from the key alone.
                let key = jti_key(claims.exp.unwrap_or_default(), safe_id(&claims.jti)?);
                let record =
                    serde_json::json!({ "sub": claims.sub, "used_at": now, "exp": claims.exp });
                match store.create(&key, record.to_string().into_bytes()).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => {
                        return Err(TokenError::Replayed {
                            jti: claims.jti.clone(),
                        });
                    }
                    Err(e) => return Err(store_err(e)),
                }
            }
            TokenKind::Role | TokenKind::Admin => {
                if claims.aud != LONG_LIVED_AUDIENCE {
                    return Err(TokenError::WrongAudience {
                        aud: claims.aud.clone(),
                        expected: LONG_LIVED_AUDIENCE.to_owned(),
                    });
                }
                let key = format!("{TOKEN_PREFIX}{}", safe_id(&claims.jti)?);
                if store.get(&key).await.map_err(store_err)?.is_none() {
                    return Err(TokenError::Revoked {
                        jti: claims.jti.clone(),
                    });
                }
            }
        }
        Ok(claims)
    }
}

pub(crate) fn jti_key(exp: i64, jti: &str) -> String {
    format!("{JTI_PREFIX}{:012}.{jti}", exp.max(0))
}

/// Removes the records of used one-time tokens that expired (past the leeway) before `now`:
/// such a token is refused as expired anyway, so its record no longer guards anything.
/// Returns how many were removed.
pub async fn sweep_used_tokens(store: &dyn Store, now: i64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for key in store.keys(JTI_PREFIX).await? {
        let exp = key
            .strip_prefix(JTI_PREFIX)
            .and_then(|rest| rest.split('.').next())
            .and_then(|e| e.parse::<i64>().ok());
        if let Some(exp) = exp
            && exp + LEEWAY < now
        {
            store.delete(&key, None).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn safe_id(jti: &str) -> Result<&str, TokenError> {
    if !jti.is_empty()
        && jti.len() <= 64
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(jti)
    } else {
        Err(TokenError::Invalid)
    }
}

/// Errors of [`mint_token`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The request cannot make a valid token.
    #[error("cannot mint the token: {0}")]
    Invalid(String),
    /// The store failed.
    #[error("cannot mint the token: the state store failed: {0}")]
    Store(#[from] StoreError),
}

/// Mints a token with the store's key (creating the key when absent). Long-lived tokens are
/// recorded in the store so they can be revoked ([`revoke_token`]). This is what
/// `anchorage token create` calls (directly on the store, or through `POST /v1/tokens`).
pub async fn mint_token(store: &dyn Store, request: &TokenRequest) -> Result<String, MintError> {
    let key = TokenKey::load_or_create(store).await?;
    mint_with(&key, store, request, now_unix()).await
}

pub(crate) async fn mint_with(
    key: &TokenKey,
    store: &dyn Store,
    request: &TokenRequest,
    now: i64,
) -> Result<String, MintError> {
    if request.subject.is_empty() {
        return Err(MintError::Invalid(
            "the subject (--sub) must not be empty".into(),
        ));
    }
    if request.kind != TokenKind::Admin && request.role.is_none() {
        return Err(MintError::Invalid(format!(
            "a {:?} token needs a role (--role)",
            request.kind
        )));
    }
    let jti = random_hex(16);
    let (aud, exp) = match request.kind {
        TokenKind::Ott => {
            let ttl = request.ttl_seconds.unwrap_or(MAX_OTT_LIFETIME);
            if !(1..=MAX_OTT_LIFETIME).contains(&ttl) {
                return Err(MintError::Invalid(format!(
                    "a one-time token lives 1 to {MAX_OTT_LIFETIME} s, not {ttl}"
                )));
            }
            if !request.audience.starts_with("/v1/") {
                return Err(MintError::Invalid(format!(
                    "a one-time token's audience is an endpoint path such as /v1/sign, not {:?}",
                    request.audience
                )));
            }
            (request.audience.clone(), Some(now + ttl))
        }
        TokenKind::Role | TokenKind::Admin => (
            LONG_LIVED_AUDIENCE.to_owned(),
            request.ttl_seconds.map(|t| now + t),
        ),
    };
    let claims = Claims {
        iss: ISSUER.to_owned(),
        sub: request.subject.clone(),
        aud,
        typ: request.kind,
        role: request.role.clone(),
        sans: request.sans.clone(),
        iat: now,
        nbf: now,
        exp,
        jti: jti.clone(),
    };
    if request.kind != TokenKind::Ott {
        let record = serde_json::json!({
            "sub": claims.sub, "typ": claims.typ, "role": claims.role, "iat": now, "exp": exp,
        });
        store
            .create(
                &format!("{TOKEN_PREFIX}{jti}"),
                record.to_string().into_bytes(),
            )
            .await?;
    }
    Ok(key.sign(&claims))
}

/// Revokes a long-lived token by its `jti`.
pub async fn revoke_token(store: &dyn Store, jti: &str) -> Result<(), StoreError> {
    store.delete(&format!("{TOKEN_PREFIX}{jti}"), None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_store::MemoryStore;

    fn ott(aud: &str) -> TokenRequest {
        TokenRequest {
            kind: TokenKind::Ott,
            subject: "web.mesh.local".into(),
            role: Some("mesh".into()),
            audience: aud.into(),
            sans: vec![],
            ttl_seconds: None,
        }
    }

    #[tokio::test]
    async fn one_time_token_is_single_use_and_audience_bound() {
        let store = MemoryStore::new();
        let key = TokenKey::load_or_create(&store).await.unwrap();
        let now = now_unix();
        let t = mint_with(&key, &store, &ott("/v1/sign"), now)
            .await
            .unwrap();
        let wrong = key.verify(&store, &t, "/v1/issue", now).await;
        assert_eq!(wrong.unwrap_err().code(), "token_wrong_audience");
        key.verify(&store, &t, "/v1/sign", now).await.unwrap();
        let again = key.verify(&store, &t, "/v1/sign", now).await;
        assert_eq!(again.unwrap_err().code(), "token_replayed");
        // Expired beyond the leeway, and within it.
        let t = mint_with(&key, &store, &ott("/v1/sign"), now)
            .await
            .unwrap();
        let late = key.verify(&store, &t, "/v1/sign", now + 300 + LEEWAY).await;
        assert_eq!(late.unwrap_err().code(), "token_expired");
        key.verify(&store, &t, "/v1/sign", now + 300 + LEEWAY - 1)
            .await
            .unwrap();
        // Tampered signature.
        let t = mint_with(&key, &store, &ott("/v1/sign"), now)
            .await
            .unwrap();
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            key.verify(&store, &bad, "/v1/sign", now)
                .await
                .unwrap_err()
                .code(),
            "token_invalid"
        );
    }

    #[tokio::test]
    async fn long_lived_tokens_are_revocable_and_keys_shared() {
        let store = MemoryStore::new();
        let key = TokenKey::load_or_create(&store).await.unwrap();
        let again = TokenKey::load_or_create(&store).await.unwrap();
        let req = TokenRequest {
            kind: TokenKind::Role,
            audience: String::new(),
            ..ott("")
        };
        let t = mint_with(&key, &store, &req, now_unix()).await.unwrap();
        let claims = again
            .verify(&store, &t, "/v1/issue", now_unix())
            .await
            .unwrap();
        again
            .verify(&store, &t, "/v1/issue", now_unix())
            .await
            .unwrap();
        revoke_token(&store, &claims.jti).await.unwrap();
        let gone = key.verify(&store, &t, "/v1/issue", now_unix()).await;
        assert_eq!(gone.unwrap_err().code(), "token_revoked");
    }

    #[tokio::test]
    async fn verified_long_lived_tokens_are_kept_by_their_bytes_and_still_checked() {
        let store = MemoryStore::new();
        let key = TokenKey::load_or_create(&store).await.unwrap();
        let now = now_unix();
        let req = TokenRequest {
            kind: TokenKind::Role,
            audience: String::new(),
            ttl_seconds: Some(100),
            ..ott("")
        };
        let t = mint_with(&key, &store, &req, now).await.unwrap();
        let first = key.verify(&store, &t, "/v1/issue", now).await.unwrap();
        assert_eq!(key.verified_cached(), 1);
        assert_eq!(
            key.verify(&store, &t, "/v1/issue", now).await.unwrap(),
            first
        );
        // Negative controls once the token is kept: any other byte is checked afresh…
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        let refused = key.verify(&store, &bad, "/v1/issue", now).await;
        assert_eq!(refused.unwrap_err().code(), "token_invalid");
        let (head, rest) = t.split_once('.').unwrap();
        let forged = format!("{head}.x{rest}");
        let refused = key.verify(&store, &forged, "/v1/issue", now).await;
        assert_eq!(refused.unwrap_err().code(), "token_invalid");
        assert_eq!(key.verified_cached(), 1);
        // …the expiry is checked on every use…
        let late = key
            .verify(&store, &t, "/v1/issue", now + 100 + LEEWAY)
            .await;
        assert_eq!(late.unwrap_err().code(), "token_expired");
        // …and so is revocation.
        revoke_token(&store, &first.jti).await.unwrap();
        let gone = key.verify(&store, &t, "/v1/issue", now).await;
        assert_eq!(gone.unwrap_err().code(), "token_revoked");
        // One-time tokens are not kept; the cache stays bounded.
        let o = mint_with(&key, &store, &ott("/v1/sign"), now)
            .await
            .unwrap();
        key.verify(&store, &o, "/v1/sign", now).await.unwrap();
        assert_eq!(key.verified_cached(), 1);
        for _ in 0..VERIFIED_CACHE_MAX + 1 {
            let t = mint_with(&key, &store, &req, now).await.unwrap();
            key.verify(&store, &t, "/v1/issue", now).await.unwrap();
            assert!(key.verified_cached() <= VERIFIED_CACHE_MAX);
        }
    }
}

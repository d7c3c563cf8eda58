//! NATS identity for the request/reply API (`<prefix>.v1.<op>`): besides bearer tokens, a
//! request signed with an nkey that serve is configured to map to a role (or to admin).
//!
//! NATS itself authenticates connections and its permissions decide who may publish on
//! `anchorage.v1.<op>` and who may subscribe there, but a NATS server does not tell a
//! subscriber who published a message. So, as wasmCloud's secrets protocol does with host
//! JWTs, the requester proves who it is inside the message: it signs the request with its
//! nkey (ed25519), and serve verifies the signature against the keys it was configured with
//! ([`NatsIdentity`]). The signature covers
//!
//! ```text
//! anchorage-nats-request-v1
//! <subject>
//! <reply subject>
//! <timestamp: Unix seconds>
//! <nonce: 16 to 64 characters of [A-Za-z0-9_-]>
//! <SHA-256 of the payload, lowercase hex>
//! <the If-None-Match header, or nothing>
//! ```
//!
//! (lines joined by `\n`), carried in the headers [`NKEY_HEADER`], [`TIMESTAMP_HEADER`],
//! [`NONCE_HEADER`] and [`SIGNATURE_HEADER`] (base64url without padding). Serve refuses a
//! request whose key is not configured, whose signature does not verify, whose timestamp is
//! more than [`crate::tokens::LEEWAY`] seconds from its clock, or whose nonce was seen before
//! (recorded with a create-only write in the shared store, as one-time token ids are, so a
//! replay is refused by every instance and after a restart; the records are swept with them).
//! Binding the reply subject means a captured request cannot be re-sent to have its answer
//! (a certificate with a server-made key) delivered elsewhere, even within the window.
//!
//! A verified request runs the same handler as HTTP with the identity's claims: a role
//! identity as a long-lived role token of that role (issue and sign within the role, acks), an
//! admin identity as an admin token. The claims reach the handler as an internal bearer value
//! MACed with a per-process random key (`internal_token`), so no HTTP or NATS client can
//! forge one. [`sign_headers`] and [`signed_request`] (from `anchorage-nats-sign`, where the
//! signed format lives) are the client side.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

use crate::tokens::{Claims, LEEWAY, TokenKind};

pub use anchorage_nats_sign::{
    NKEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, SignError, SignedRequestError, TIMESTAMP_HEADER,
    sign_headers, signed_request,
};
use anchorage_nats_sign::{signed_text, valid_nonce};

const INTERNAL_PREFIX: &str = "anchorage-nats-identity.";

/// What a configured nkey may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsIdentity {
    /// Admin, or a role.
    pub kind: TokenKind,
    /// The role (for [`TokenKind::Role`]).
    pub role: Option<String>,
    /// Who it is, for audit events (default: the public key).
    pub name: String,
}

impl NatsIdentity {
    /// An admin identity named `name`.
    pub fn admin(name: impl Into<String>) -> Self {
        Self {
            kind: TokenKind::Admin,
            role: None,
            name: name.into(),
        }
    }

    /// An identity that issues under `role`, named `name`.
    pub fn role(role: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: TokenKind::Role,
            role: Some(role.into()),
            name: name.into(),
        }
    }
}

/// The configured identities, by public nkey.
pub type NatsIdentities = BTreeMap<String, NatsIdentity>;

/// Why a signed request was refused (each has a stable code).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// A header is missing or malformed.
    #[error("the signed request is malformed: {0}")]
    Malformed(&'static str),
    /// The key is not one serve maps to a role.
    #[error("nkey {0} is not configured on this server (serve --nats-identity)")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the request's signature does not verify for nkey {0}")]
    BadSignature(String),
    /// The timestamp is too far from serve's clock.
    #[error(
        "the request was signed at {signed}, {skew} s from this server's clock (at most {LEEWAY} s): check the requester's clock"
    )]
    Stale {
        /// The signed timestamp.
        signed: i64,
        /// The distance from now.
        skew: i64,
    },
    /// The nonce was seen before.
    #[error("the request was replayed (its nonce was already used)")]
    Replayed,
    /// Both a token and a signature.
    #[error("the request carries both a token and an nkey signature: send one")]
    Ambiguous,
    /// The store could not record the nonce.
    #[error("the state store failed while recording the nonce: {0}")]
    Store(String),
}

impl IdentityError {
    /// The stable code of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "nkey_request_malformed",
            Self::UnknownKey(_) => "nkey_unknown",
            Self::BadSignature(_) => "nkey_signature_invalid",
            Self::Stale { .. } => "nkey_request_expired",
            Self::Replayed => "nkey_request_replayed",
            Self::Ambiguous => "ambiguous_credentials",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// The status of the reply.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::Ambiguous => 400,
            Self::Store(_) => 503,
            _ => 401,
        }
    }
}

/// Verifies a signed request (server side): the key configured, the signature, the time, then
/// the nonce recorded (create-only) in `store`. Returns `None` when the request is not signed.
pub(crate) async fn verify(
    identities: &NatsIdentities,
    store: &dyn anchorage_store::Store,
    message: &async_nats::Message,
    now: i64,
) -> Result<Option<(String, NatsIdentity)>, IdentityError> {
    let Some(headers) = &message.headers else {
        return Ok(None);
    };
    let Some(nkey) = headers.get(NKEY_HEADER).map(|v| v.as_str().to_owned()) else {
        return Ok(None);
    };
    if headers.get("Authorization").is_some() || headers.get("X-Vault-Token").is_some() {
        return Err(IdentityError::Ambiguous);
    }
    let get = |name: &'static str| {
        headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .ok_or(IdentityError::Malformed(name))
    };
    let (timestamp, nonce, signature) = (
        get(TIMESTAMP_HEADER)?,
        get(NONCE_HEADER)?,
        get(SIGNATURE_HEADER)?,
    );
    let Some(identity) = identities.get(&nkey) else {
        return Err(IdentityError::UnknownKey(nkey));
    };
    let signed: i64 = timestamp
        .parse()
        .map_err(|_| IdentityError::Malformed(TIMESTAMP_HEADER))?;
    if !valid_nonce(&nonce) {
        return Err(IdentityError::Malformed(NONCE_HEADER));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature.as_bytes())
        .map_err(|_| IdentityError::Malformed(SIGNATURE_HEADER))?;
    let if_none_match = headers
        .get("If-None-Match")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let reply = message.reply.as_deref().unwrap_or_default();
    let text = signed_text(
        message.subject.as_str(),
        reply,
        &timestamp,
        &nonce,
        &message.payload,
        &if_none_match,
    );
    let public = nkeys::KeyPair::from_public_key(&nkey)
        .map_err(|_| IdentityError::UnknownKey(nkey.clone()))?;
    public
        .verify(&text, &signature)
        .map_err(|_| IdentityError::BadSignature(nkey.clone()))?;
    let skew = (now - signed).abs();
    if skew > LEEWAY {
        return Err(IdentityError::Stale { signed, skew });
    }
    // The nonce, per key, recorded until the window closes: the record's key leads with its
    // expiry, so the one-time token sweep removes it.
    let digest = sha2::Sha256::digest(format!("{nkey}\n{nonce}").as_bytes());
    let id: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    let record_key = crate::tokens::jti_key(signed + LEEWAY, &format!("nats-{id}"));
    let record =
        serde_json::json!({ "sub": identity.name, "used_at": now, "exp": signed + LEEWAY });
    match store
        .create(&record_key, record.to_string().into_bytes())
        .await
    {
        Ok(_) => Ok(Some((nkey, identity.clone()))),
        Err(e) if e.is_conflict() => Err(IdentityError::Replayed),
        Err(e) => Err(IdentityError::Store(e.to_string())),
    }
}

fn process_key() -> &'static ring::hmac::Key {
    static KEY: OnceLock<ring::hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        #[allow(clippy::expect_used)] // no randomness: nothing can be keyed safely
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .expect("the system random generator failed")
    })
}

/// The bearer value that carries a verified identity's claims from the NATS layer to the
/// handler: `anchorage-nats-identity.<claims>.<MAC>`, MACed with a key that never leaves this
/// process.
pub(crate) fn internal_token(nkey: &str, identity: &NatsIdentity, now: i64) -> String {
    let claims = Claims {
        iss: "anchorage".into(),
        sub: identity.name.clone(),
        aud: crate::tokens::LONG_LIVED_AUDIENCE.into(),
        typ: identity.kind,
        role: identity.role.clone(),
        sans: Vec::new(),
        iat: now,
        nbf: now,
        exp: Some(now + LEEWAY),
        jti: format!("nats-{}", &nkey[..nkey.len().min(20)]),
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let tag = ring::hmac::sign(process_key(), body.as_bytes());
    format!(
        "{INTERNAL_PREFIX}{body}.{}",
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The claims of an [`internal_token`]: `None` when `token` is not one, `Some(Err)` when it
/// claims to be but its MAC does not verify (a forgery) or it expired.
pub(crate) fn internal_claims(token: &str, now: i64) -> Option<Result<Claims, ()>> {
    let rest = token.strip_prefix(INTERNAL_PREFIX)?;
    let Some((body, tag)) = rest.split_once('.') else {
        return Some(Err(()));
    };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return Some(Err(()));
    };
    if ring::hmac::verify(process_key(), body.as_bytes(), &tag).is_err() {
        return Some(Err(()));
    }
    let claims: Option<Claims> = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Some(match claims {
        Some(c) if c.exp.is_some_and(|exp| exp >= now) => Ok(c),
        _ => Err(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_internal_token_is_refused() {
        let id = NatsIdentity::role("mesh", "ctl");
        let token = internal_token("UABC", &id, 100);
        assert_eq!(
            internal_claims(&token, 100)
                .unwrap()
                .unwrap()
                .role
                .as_deref(),
            Some("mesh")
        );
        // The claims changed to admin, MAC kept: refused.
        let admin = internal_token("UABC", &NatsIdentity::admin("x"), 100);
        let (_, admin_body) = admin
            .rsplit_once('.')
            .unwrap()
            .0
            .split_at(INTERNAL_PREFIX.len());
        let forged = format!(
            "{INTERNAL_PREFIX}{admin_body}.{}",
            token.rsplit_once('.').unwrap().1
        );
        assert!(matches!(internal_claims(&forged, 100), Some(Err(()))));
        // Expired.
        assert!(matches!(
            internal_claims(&token, 100 + LEEWAY + 1),
            Some(Err(()))
        ));
        // Not one.
        assert!(internal_claims("eyJ...", 100).is_none());
    }
}

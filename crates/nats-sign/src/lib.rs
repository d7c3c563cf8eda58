//! `anchorage-nats-sign`: the wire format of a NATS request signed with an nkey, shared by
//! the requester (`anchorage-agent`, tests) and the verifier (`anchorage-serve`'s
//! `nats_auth`), so an agent does not depend on the server to sign.
//!
//! NATS does not tell a subscriber who published a message, so the requester signs the request
//! (as wasmCloud's secrets protocol does with host JWTs). The signature covers
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
//! [`NONCE_HEADER`] and [`SIGNATURE_HEADER`] (base64url without padding). What the verifier
//! checks beyond the signature (the key configured, the clock window, the nonce never seen
//! before) is serve's: see its `nats_auth` module and docs/serve.md.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use sha2::Digest as _;

/// The requester's public nkey (`U…` user, `A…` account, …).
pub const NKEY_HEADER: &str = "Anchorage-Nkey";
/// When the request was signed (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "Anchorage-Timestamp";
/// A value never used twice by the requester.
pub const NONCE_HEADER: &str = "Anchorage-Nonce";
/// The ed25519 signature, base64url without padding.
pub const SIGNATURE_HEADER: &str = "Anchorage-Signature";

/// The first line of every signed text (domain separation).
pub const DOMAIN: &str = "anchorage-nats-request-v1";
/// The bytes signed (see the crate docs).
pub fn signed_text(
    subject: &str,
    reply: &str,
    timestamp: &str,
    nonce: &str,
    payload: &[u8],
    if_none_match: &str,
) -> Vec<u8> {
    let digest = sha2::Sha256::digest(payload);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{DOMAIN}\n{subject}\n{reply}\n{timestamp}\n{nonce}\n{hex}\n{if_none_match}")
        .into_bytes()
}

/// Whether `nonce` has the form the signature format allows.
pub fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signing headers for a request on `subject` with reply subject `reply` (client side).
/// `if_none_match` must be the value sent as `If-None-Match`, if any.
pub fn sign_headers(
    key: &nkeys::KeyPair,
    subject: &str,
    reply: &str,
    payload: &[u8],
    if_none_match: Option<&str>,
    now: i64,
) -> Result<async_nats::HeaderMap, SignError> {
    let mut nonce = [0u8; 18];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| SignError::Random)?;
    let nonce = URL_SAFE_NO_PAD.encode(nonce);
    let timestamp = now.to_string();
    let text = signed_text(
        subject,
        reply,
        &timestamp,
        &nonce,
        payload,
        if_none_match.unwrap_or_default(),
    );
    let signature = key.sign(&text).map_err(|e| SignError::Key(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NKEY_HEADER, key.public_key().as_str());
    headers.insert(TIMESTAMP_HEADER, timestamp.as_str());
    headers.insert(NONCE_HEADER, nonce.as_str());
    headers.insert(SIGNATURE_HEADER, URL_SAFE_NO_PAD.encode(signature).as_str());
    if let Some(tag) = if_none_match {
        headers.insert("If-None-Match", tag);
    }
    Ok(headers)
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// No randomness for the nonce.
    #[error("the system random generator failed")]
    Random,
    /// The key cannot sign (a public key only).
    #[error("the nkey cannot sign: {0} (give a seed, not a public key)")]
    Key(String),
}

/// Why a [`signed_request`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedRequestError {
    /// Signing.
    #[error("cannot sign the request: {0}")]
    Sign(#[from] SignError),
    /// NATS.
    #[error("NATS: {0}")]
    Nats(String),
    /// No answer in time.
    #[error("no answer on {subject} within {} s: is anchorage serve running with --nats-url?", timeout.as_secs_f32())]
    Timeout {
        /// The subject.
        subject: String,
        /// The wait.
        timeout: Duration,
    },
}

/// Sends `payload` on `subject` signed by `key` (reply on a fresh inbox bound into the
/// signature) and waits up to `timeout` for the answer.
pub async fn signed_request(
    client: &async_nats::Client,
    key: &nkeys::KeyPair,
    subject: &str,
    payload: bytes::Bytes,
    if_none_match: Option<&str>,
    timeout: Duration,
) -> Result<async_nats::Message, SignedRequestError> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| SignedRequestError::Nats(e.to_string()))?;
    let headers = sign_headers(key, subject, &inbox, &payload, if_none_match, now_unix())?;
    client
        .publish_with_reply_and_headers(subject.to_owned(), inbox, headers, payload)
        .await
        .map_err(|e| SignedRequestError::Nats(e.to_string()))?;
    let answer = tokio::time::timeout(timeout, sub.next()).await;
    let _ = sub.unsubscribe().await;
    match answer {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(SignedRequestError::Nats(
            "the reply subscription ended".into(),
        )),
        Err(_) => Err(SignedRequestError::Timeout {
            subject: subject.to_owned(),
            timeout,
        }),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_verify_and_bind_subject_reply_and_payload() {
        let key = nkeys::KeyPair::new_user();
        let h = sign_headers(&key, "anchorage.v1.sign", "_INBOX.x", b"{}", None, 1_000).unwrap();
        let get = |n: &str| h.get(n).unwrap().as_str().to_owned();
        assert!(valid_nonce(&get(NONCE_HEADER)));
        let sig = URL_SAFE_NO_PAD.decode(get(SIGNATURE_HEADER)).unwrap();
        let public = nkeys::KeyPair::from_public_key(&get(NKEY_HEADER)).unwrap();
        let text = |subject: &str, reply: &str, payload: &[u8]| {
            signed_text(subject, reply, "1000", &get(NONCE_HEADER), payload, "")
        };
        assert!(
            public
                .verify(&text("anchorage.v1.sign", "_INBOX.x", b"{}"), &sig)
                .is_ok()
        );
        // Another subject, reply subject or payload does not verify.
        assert!(
            public
                .verify(&text("anchorage.v1.issue", "_INBOX.x", b"{}"), &sig)
                .is_err()
        );
        assert!(
            public
                .verify(&text("anchorage.v1.sign", "_INBOX.y", b"{}"), &sig)
                .is_err()
        );
        assert!(
            public
                .verify(&text("anchorage.v1.sign", "_INBOX.x", b"{ }"), &sig)
                .is_err()
        );
    }

    #[test]
    fn nonces_outside_the_alphabet_or_length_are_refused() {
        assert!(valid_nonce("abcdefghijklmnop"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("abcdefghijklmnop\n"));
        assert!(!valid_nonce(&"a".repeat(65)));
    }

    #[test]
    fn a_public_key_cannot_sign() {
        let public =
            nkeys::KeyPair::from_public_key(&nkeys::KeyPair::new_user().public_key()).unwrap();
        assert!(matches!(
            sign_headers(&public, "s", "r", b"", None, 0),
            Err(SignError::Key(_))
        ));
    }
}

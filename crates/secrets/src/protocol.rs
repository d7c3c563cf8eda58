//! The wire protocol of wasmCloud 1.x secrets backends: subjects, header names and the bodies of
//! `get` replies.
//!
//! Requests and errors are the types of `wasmcloud-secrets-types` itself (re-exported), so the
//! wire format cannot drift from what hosts send and expect. The success body is written here
//! from borrowed [`secrecy`] values into a zeroizing buffer; a test checks it byte for byte
//! against the upstream `SecretResponse`. This module owns no I/O.

use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

pub use wasmcloud_secrets_types::{
    Application, Context, GetSecretError, RESPONSE_XKEY, SECRET_API_VERSION, Secret, SecretRequest,
    SecretResponse, WASMCLOUD_HOST_XKEY,
};

/// The subject prefix hosts use unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "wasmcloud.secrets";

/// The subjects of one backend: `<prefix>.v1alpha1.<backend>.{server_xkey,get}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    base: String,
}

/// The operation a message on a backend's subjects asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `…server_xkey`: reply with the transit public key as plain text.
    ServerXkey,
    /// `…get`: a sealed [`SecretRequest`].
    Get,
}

impl Subjects {
    /// Subjects for `backend` under `prefix` (for example [`DEFAULT_PREFIX`]).
    pub fn new(prefix: &str, backend: &str) -> Self {
        Self {
            base: format!("{prefix}.{SECRET_API_VERSION}.{backend}"),
        }
    }

    /// `<prefix>.v1alpha1.<backend>.server_xkey`.
    pub fn server_xkey(&self) -> String {
        format!("{}.server_xkey", self.base)
    }

    /// `<prefix>.v1alpha1.<backend>.get`.
    pub fn get(&self) -> String {
        format!("{}.get", self.base)
    }

    /// `<prefix>.v1alpha1.<backend>.>`, the queue subscription of every instance.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.base)
    }

    /// The operation a received subject names, or `None` for anything else (an unknown
    /// operation, or a subject of another backend).
    pub fn operation(&self, subject: &str) -> Option<Operation> {
        match subject.strip_prefix(&self.base)?.strip_prefix('.')? {
            "server_xkey" => Some(Operation::ServerXkey),
            "get" => Some(Operation::Get),
            _ => None,
        }
    }
}

/// A secret value as a store hands it over: never printed, zeroized when dropped.
pub enum SecretValue {
    /// A UTF-8 value, sent as `string_secret`.
    String(SecretString),
    /// Bytes, sent as `binary_secret`.
    Binary(SecretBox<[u8]>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(_) => f.write_str("SecretValue::String([REDACTED])"),
            Self::Binary(_) => f.write_str("SecretValue::Binary([REDACTED])"),
        }
    }
}

/// A secret value with the version the store read it at.
#[derive(Debug)]
pub struct VersionedSecret {
    /// The version reported to the host (for the JetStream KV layout, the KV revision).
    pub version: String,
    /// The value.
    pub value: SecretValue,
}

#[derive(Serialize)]
struct SuccessBody<'a> {
    secret: SecretView<'a>,
}

#[derive(Serialize)]
struct SecretView<'a> {
    version: &'a str,
    string_secret: Option<&'a str>,
    binary_secret: Option<&'a [u8]>,
}

#[derive(Serialize)]
struct FailureBody<'a> {
    error: &'a GetSecretError,
}

/// The success body `{"secret":{"version":…,"string_secret":…,"binary_secret":…}}`, in a buffer
/// sized up front (so no reallocation leaves a copy behind) and zeroized when dropped.
pub(crate) fn success_body(secret: &VersionedSecret) -> Zeroizing<Vec<u8>> {
    let (string_secret, binary_secret, worst_case) = match &secret.value {
        SecretValue::String(s) => {
            let s = s.expose_secret();
            // JSON escapes a control character as `\u00XX`: at most six bytes per byte.
            (Some(s), None, s.len().saturating_mul(6))
        }
        SecretValue::Binary(b) => {
            let b = b.expose_secret();
            // Each byte becomes at most `255,`.
            (None, Some(b), b.len().saturating_mul(4))
        }
    };
    let capacity = 96usize
        .saturating_add(secret.version.len().saturating_mul(6))
        .saturating_add(worst_case);
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    let body = SuccessBody {
        secret: SecretView {
            version: &secret.version,
            string_secret,
            binary_secret,
        },
    };
    // Writing plain strings, integers and options into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &body).is_err() {
        out.clear();
    }
    // The buffer never grew, so no copy of the value was left in freed memory.
    debug_assert_eq!(out.capacity(), capacity);
    out
}

/// The plain failure body `{"error":…}` the upstream `SecretResponse` gives for an error.
pub fn failure_body(error: &GetSecretError) -> Vec<u8> {
    serde_json::to_vec(&FailureBody { error })
        .unwrap_or_else(|_| br#"{"error":{"Other":"encoding failed"}}"#.to_vec())
}

/// The variant name of an error, for audit events and metrics (`"SecretNotFound"`, …).
pub fn error_code(error: &GetSecretError) -> &'static str {
    match error {
        GetSecretError::InvalidEntityJWT(_) => "InvalidEntityJWT",
        GetSecretError::InvalidHostJWT(_) => "InvalidHostJWT",
        GetSecretError::SecretNotFound => "SecretNotFound",
        GetSecretError::InvalidXKey => "InvalidXKey",
        GetSecretError::EncryptionError => "EncryptionError",
        GetSecretError::DecryptionError => "DecryptionError",
        GetSecretError::UpstreamError(_) => "UpstreamError",
        GetSecretError::Unauthorized => "Unauthorized",
        GetSecretError::InvalidRequest => "InvalidRequest",
        GetSecretError::InvalidPayload => "InvalidPayload",
        GetSecretError::InvalidHeaders => "InvalidHeaders",
        GetSecretError::PolicyError(_) => "PolicyError",
        GetSecretError::Other(_) => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_client() {
        let s = Subjects::new(DEFAULT_PREFIX, "nats-kv");
        assert_eq!(
            s.server_xkey(),
            "wasmcloud.secrets.v1alpha1.nats-kv.server_xkey"
        );
        assert_eq!(s.get(), "wasmcloud.secrets.v1alpha1.nats-kv.get");
        assert_eq!(s.wildcard(), "wasmcloud.secrets.v1alpha1.nats-kv.>");
        assert_eq!(s.operation(&s.get()), Some(Operation::Get));
        assert_eq!(s.operation(&s.server_xkey()), Some(Operation::ServerXkey));
        assert_eq!(s.operation("wasmcloud.secrets.v1alpha1.nats-kv.put"), None);
        assert_eq!(s.operation("wasmcloud.secrets.v1alpha1.nats-kvx.get"), None);
    }

    fn upstream(secret: Secret) -> Vec<u8> {
        serde_json::to_vec(&SecretResponse {
            secret: Some(secret),
            error: None,
        })
        .unwrap()
    }

    #[test]
    fn success_body_matches_upstream_bytes() {
        let cases = [
            "plain",
            "",
            "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 🦀",
        ];
        for value in cases {
            let ours = success_body(&VersionedSecret {
                version: "7".into(),
                value: SecretValue::String(value.into()),
            });
            let theirs = upstream(Secret {
                version: "7".into(),
                string_secret: Some(value.into()),
                binary_secret: None,
            });
            assert_eq!(*ours, theirs);
        }
        let bytes: Vec<u8> = (0..=255).collect();
        let ours = success_body(&VersionedSecret {
            version: "v\"1".into(),
            value: SecretValue::Binary(bytes.clone().into()),
        });
        let theirs = upstream(Secret {
            version: "v\"1".into(),
            string_secret: None,
            binary_secret: Some(bytes),
        });
        assert_eq!(*ours, theirs);
    }

    #[test]
    fn recorded_encodings() {
        let ours = success_body(&VersionedSecret {
            version: "3".into(),
            value: SecretValue::Binary(vec![1u8, 2, 255].into()),
        });
        assert_eq!(
            std::str::from_utf8(&ours).unwrap(),
            r#"{"secret":{"version":"3","string_secret":null,"binary_secret":[1,2,255]}}"#
        );
        let recorded = [
            (GetSecretError::Unauthorized, r#"{"error":"Unauthorized"}"#),
            (
                GetSecretError::SecretNotFound,
                r#"{"error":"SecretNotFound"}"#,
            ),
            (GetSecretError::InvalidXKey, r#"{"error":"InvalidXKey"}"#),
            (
                GetSecretError::DecryptionError,
                r#"{"error":"DecryptionError"}"#,
            ),
            (
                GetSecretError::InvalidRequest,
                r#"{"error":"InvalidRequest"}"#,
            ),
            (
                GetSecretError::InvalidPayload,
                r#"{"error":"InvalidPayload"}"#,
            ),
            (
                GetSecretError::InvalidEntityJWT("expired".into()),
                r#"{"error":{"InvalidEntityJWT":"expired"}}"#,
            ),
            (
                GetSecretError::UpstreamError("down".into()),
                r#"{"error":{"UpstreamError":"down"}}"#,
            ),
        ];
        for (error, json) in recorded {
            assert_eq!(std::str::from_utf8(&failure_body(&error)).unwrap(), json);
            // The upstream type encodes a failure identically.
            let upstream: SecretResponse = error.into();
            assert_eq!(serde_json::to_string(&upstream).unwrap(), json);
            // And the client reads our body back as that error.
            let back: SecretResponse = serde_json::from_str(json).unwrap();
            assert!(back.secret.is_none() && back.error.is_some());
        }
    }

    #[test]
    fn recorded_request_parses() {
        let json = r#"{"key":"db-password","field":null,"version":"2","context":{"entity_jwt":"e","host_jwt":"h","application":{"name":"app","policy":"{\"type\":\"properties.secret.wasmcloud.dev/v1alpha1\",\"properties\":{}}"}}}"#;
        let request: SecretRequest = serde_json::from_str(json).unwrap();
        assert_eq!(request.key, "db-password");
        assert_eq!(request.version.as_deref(), Some("2"));
        assert_eq!(request.context.application.name.as_deref(), Some("app"));
        assert_eq!(serde_json::to_string(&request).unwrap(), json);
    }

    #[test]
    fn debug_hides_values() {
        let v = SecretValue::String("hunter2".into());
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}

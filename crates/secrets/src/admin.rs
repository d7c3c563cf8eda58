//! Administration over NATS: signed, sealed requests on subjects of their own.
//!
//! Hosts use `<prefix>.v1alpha1.<backend>.*`; administration uses `<prefix>.admin.<backend>.<op>`
//! ([`AdminSubjects`]), so NATS permissions can let hosts publish only on the former. A request
//! is:
//!
//! - header [`ADMIN_XKEY_HEADER`]: the requester's one-time public xkey (`X…`);
//! - body: sealed to the server's transit xkey (`xkv1` ‖ nonce ‖ NaCl box, as `get` requests),
//!   holding the JSON `{"jwt": "…", "value": "<base64>"}`. The JWT is a wascap token signed by
//!   an admin nkey (user `U…` or account `A…`): `iss` the admin key, `sub` the server's transit
//!   public xkey, `iat`/`exp` a short window, `jti` a nonce, and under `wascap` the
//!   [`AdminClaims`]: the operation, the backend, the requester's xkey and the arguments. A
//!   value (`put`) is not inside the token (wascap would copy it into plain strings): it travels
//!   beside it, bound by its SHA-256 in the claims.
//!
//! The server ([`AdminVerifier`]) opens the body, checks the signature (wascap), that the key is
//! allowed, the dates (`iat` within the skew, `exp` present, not past, not too far), that the
//! claims name the operation of the subject, this backend, this server and the header's xkey,
//! the value's digest, and that the `jti` was not seen within the window by this process (a
//! fast path: the server then records the `jti` in the store its instances share, with a
//! create-only write, so a replay to another instance or after a restart is refused too —
//! [`VerifiedAdmin::replay_key`], [`VerifiedAdmin::remember_until`]). Success replies carry
//! [`RESPONSE_XKEY`] and a body sealed from a one-time key to the requester; failures are plain
//! `{"error": <AdminError>}`, encoded like the host protocol's errors.
//!
//! Why wascap and not a hand-rolled envelope: it is the JWT code wasmCloud itself signs with
//! (Ed25519 nkeys, `ed25519-nkey`-style header), so the claims are standard JWT fields and the
//! signature check is not ours. This module owns no I/O; time comes from the caller.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nkeys::{KeyPair, KeyPairType, XKey};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wascap::jwt::{Claims, WascapEntity, validate_token};
use zeroize::Zeroizing;

use crate::protocol::RESPONSE_XKEY;
use crate::xkey::{self, PublicXKey, SealError};

/// The header holding the admin requester's one-time public xkey.
pub const ADMIN_XKEY_HEADER: &str = "Anchorage-Admin-Xkey";

/// How far `iat` may be from the server's clock unless configured otherwise.
pub const DEFAULT_ADMIN_SKEW: Duration = Duration::from_secs(120);

/// The longest `exp - iat` accepted unless configured otherwise.
pub const DEFAULT_ADMIN_MAX_LIFETIME: Duration = Duration::from_secs(300);

/// The lifetime the client gives its tokens.
pub const DEFAULT_ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The largest sealed admin request accepted (a value plus a token).
pub const DEFAULT_MAX_ADMIN_REQUEST_BYTES: usize = 1024 * 1024;

/// Replay-cache entries kept at most; beyond, requests are refused until entries expire.
const REPLAY_CACHE_LIMIT: usize = 100_000;

/// An administration operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOp {
    /// Store a new version of a secret.
    Put,
    /// Read a secret's version and kind, and with `reveal` its value.
    Get,
    /// Delete a secret with all its versions.
    Delete,
    /// List the secrets' names.
    List,
    /// Let an entity read secrets.
    AddMapping,
    /// Take secrets away from an entity.
    RemoveMapping,
    /// Every entity with its secrets.
    ListMappings,
    /// Re-read the encryption seed and re-seal every value not sealed with the current key.
    RotateEncryptionKey,
}

impl AdminOp {
    /// Every operation.
    pub const ALL: [AdminOp; 8] = [
        AdminOp::Put,
        AdminOp::Get,
        AdminOp::Delete,
        AdminOp::List,
        AdminOp::AddMapping,
        AdminOp::RemoveMapping,
        AdminOp::ListMappings,
        AdminOp::RotateEncryptionKey,
    ];

    /// The subject token and claim value (`put`, `add_mapping`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AdminOp::Put => "put",
            AdminOp::Get => "get",
            AdminOp::Delete => "delete",
            AdminOp::List => "list",
            AdminOp::AddMapping => "add_mapping",
            AdminOp::RemoveMapping => "remove_mapping",
            AdminOp::ListMappings => "list_mappings",
            AdminOp::RotateEncryptionKey => "rotate_encryption_key",
        }
    }

    /// The operation a subject token names.
    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == token)
    }
}

/// The admin subjects of one backend: `<prefix>.admin.<backend>.<op>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSubjects {
    base: String,
}

impl AdminSubjects {
    /// The admin subjects for `backend` under `prefix`.
    pub fn new(prefix: &str, backend: &str) -> Self {
        Self {
            base: format!("{prefix}.admin.{backend}"),
        }
    }

    /// `<prefix>.admin.<backend>.<op>`.
    pub fn subject(&self, op: AdminOp) -> String {
        format!("{}.{}", self.base, op.as_str())
    }

    /// `<prefix>.admin.<backend>.server_xkey`: the transit public key, unauthenticated (it is
    /// public), so an admin needs no permission on the host subjects.
    pub fn server_xkey(&self) -> String {
        format!("{}.server_xkey", self.base)
    }

    /// `<prefix>.admin.<backend>.*`, the queue subscription (one token: a longer subject of
    /// another prefix never matches).
    pub fn wildcard(&self) -> String {
        format!("{}.*", self.base)
    }

    /// The token after the base, or `None` for a subject of something else.
    pub fn operation<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(&self.base)?.strip_prefix('.')
    }
}

/// Why an admin request failed: the plain `{"error": …}` body, encoded like the host
/// protocol's `GetSecretError` (unit variants as strings, the others as one-key objects).
/// Messages name keys, operations and times, never a value or a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    /// The requester's xkey header is missing or not a public xkey.
    #[error("the {ADMIN_XKEY_HEADER} header is missing or not a public xkey")]
    InvalidXKey,
    /// Empty or oversize payload.
    #[error("the payload is empty or too large")]
    InvalidPayload,
    /// The body does not open with the transit key.
    #[error("the request does not open with the server's transit key")]
    DecryptionError,
    /// The opened body is not an admin request.
    #[error("invalid admin request: {0}")]
    InvalidRequest(String),
    /// No valid signature (missing, malformed or forged token, a key of the wrong kind).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid signature by a key that is not an admin key of this server.
    #[error("{0} is not an admin key of this server")]
    UnknownAdminKey(String),
    /// The claims are outside their validity window.
    #[error("the admin claims are not valid now: {0}")]
    Expired(String),
    /// The `jti` was already used within the window.
    #[error("replayed request: token id {0} was already used")]
    Replayed(String),
    /// The claims are for another operation, backend, server or requester key.
    #[error("the claims do not match the request: {0}")]
    WrongOperation(String),
    /// No such admin operation.
    #[error("unknown admin operation {0:?}")]
    UnknownOperation(String),
    /// No such secret (or version).
    #[error("{0}")]
    NotFound(String),
    /// The store kept changing under a write.
    #[error("{0}")]
    Conflict(String),
    /// A bad argument (name, entity, value).
    #[error("{0}")]
    InvalidArgument(String),
    /// The operation does not exist for the server's store.
    #[error("{0}")]
    Unsupported(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

impl AdminError {
    /// The variant's name, for audit events.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidXKey => "InvalidXKey",
            AdminError::InvalidPayload => "InvalidPayload",
            AdminError::DecryptionError => "DecryptionError",
            AdminError::InvalidRequest(_) => "InvalidRequest",
            AdminError::Unauthenticated(_) => "Unauthenticated",
            AdminError::UnknownAdminKey(_) => "UnknownAdminKey",
            AdminError::Expired(_) => "Expired",
            AdminError::Replayed(_) => "Replayed",
            AdminError::WrongOperation(_) => "WrongOperation",
            AdminError::UnknownOperation(_) => "UnknownOperation",
            AdminError::NotFound(_) => "NotFound",
            AdminError::Conflict(_) => "Conflict",
            AdminError::InvalidArgument(_) => "InvalidArgument",
            AdminError::Unsupported(_) => "Unsupported",
            AdminError::Store(_) => "Store",
        }
    }

    /// Whether the server refused the admin identity or its claims (not the operation).
    pub fn refuses_identity(&self) -> bool {
        matches!(
            self,
            AdminError::Unauthenticated(_)
                | AdminError::UnknownAdminKey(_)
                | AdminError::Expired(_)
                | AdminError::Replayed(_)
                | AdminError::WrongOperation(_)
        )
    }

    /// The plain failure body `{"error": …}`.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a AdminError,
        }
        serde_json::to_vec(&Body { error: self })
            .unwrap_or_else(|_| br#"{"error":"InvalidPayload"}"#.to_vec())
    }
}

/// The claims of an admin token (the `wascap` namespace of the JWT). Never holds a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    /// The operation ([`AdminOp::as_str`]); must match the subject.
    pub op: String,
    /// The backend; must match the server's.
    pub backend: String,
    /// The requester's one-time xkey; must match the header.
    pub reply_xkey: String,
    /// The secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A version (`get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A field (`get`, openbao).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// An entity (`add_mapping`, `remove_mapping`, `list_mappings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Secret names (`add_mapping`, `remove_mapping`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Store the value as binary (`put`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub binary: bool,
    /// Return the value (`get`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reveal: bool,
    /// Hex SHA-256 of the value sent beside the token (`put`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_false(b: &bool) -> bool {
    !*b
}

impl WascapEntity for AdminClaims {
    fn name(&self) -> String {
        format!("anchorage admin {}", self.op)
    }
}

/// An admin request as the client builds it; the value is zeroized when dropped.
#[derive(Default)]
pub struct AdminRequest {
    /// The operation.
    pub op: Option<AdminOp>,
    /// The arguments (`op`, `backend` and `reply_xkey` are filled in when sealing).
    pub claims: AdminClaims,
    /// The value (`put`).
    pub value: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for AdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRequest")
            .field("op", &self.op)
            .field("key", &self.claims.key)
            .field("entity", &self.claims.entity)
            .field("value", &self.value.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// Why an admin seed could not be used. Never carries the seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminKeyError {
    /// Not a user (`SU…`) or account (`SA…`) nkey seed.
    #[error("{origin} does not hold a user (SU…) or account (SA…) nkey seed")]
    NotAnAdminSeed {
        /// Where the seed came from, never the seed.
        origin: String,
    },
    /// Not a user (`U…`) or account (`A…`) public key.
    #[error("{key:?} is not a user (U…) or account (A…) public key")]
    NotAnAdminKey {
        /// The text given.
        key: String,
    },
    /// The request could not be signed or sealed.
    #[error("the admin request cannot be signed or sealed: {0}")]
    Sign(String),
}

fn is_admin_kind(kind: &KeyPairType) -> bool {
    matches!(kind, KeyPairType::User | KeyPairType::Account)
}

/// Checks an admin public key (`U…` or `A…`) for the allow-list.
pub fn check_admin_key(key: &str) -> Result<String, AdminKeyError> {
    let key = key.trim();
    match KeyPair::from_public_key(key) {
        Ok(kp) if is_admin_kind(&kp.key_pair_type()) => Ok(key.to_owned()),
        _ => Err(AdminKeyError::NotAnAdminKey {
            key: key.chars().take(64).collect(),
        }),
    }
}

/// The admin identity of a client: an Ed25519 nkey (user or account).
pub struct AdminSigner {
    key: KeyPair,
}

impl std::fmt::Debug for AdminSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSigner")
            .field("public", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

impl AdminSigner {
    /// Loads a user (`SU…`) or account (`SA…`) seed; `origin` names where it came from.
    pub fn from_seed(seed: &SecretString, origin: &str) -> Result<Self, AdminKeyError> {
        let not = || AdminKeyError::NotAnAdminSeed {
            origin: origin.to_owned(),
        };
        let key = KeyPair::from_seed(seed.expose_secret().trim()).map_err(|_| not())?;
        if !is_admin_kind(&key.key_pair_type()) {
            return Err(not());
        }
        Ok(Self { key })
    }

    /// A new random user (`U…`) key, for `secrets keygen --kind admin`.
    pub fn generate() -> Self {
        Self {
            key: KeyPair::new_user(),
        }
    }

    /// The seed (`SU…`/`SA…`), for writing a newly generated key somewhere safe.
    pub fn seed(&self) -> SecretString {
        // A key built from a seed or generated always has one.
        SecretString::from(self.key.seed().unwrap_or_default())
    }

    /// The public key (`U…`/`A…`) to put in a server's allow-list.
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// Signs `request` for `backend` and the server whose transit key is `server_xkey`, and
    /// seals it: the token is valid from `now` for `lifetime`.
    pub fn seal(
        &self,
        request: &AdminRequest,
        backend: &str,
        server_xkey: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<SealedAdminRequest, AdminKeyError> {
        let op = request
            .op
            .ok_or_else(|| AdminKeyError::Sign("no operation".to_owned()))?;
        let server = XKey::from_public_key(server_xkey.trim())
            .map_err(|_| AdminKeyError::Sign("the server xkey is not a public xkey".to_owned()))?;
        let requester = XKey::new();
        let mut metadata = request.claims.clone();
        metadata.op = op.as_str().to_owned();
        metadata.backend = backend.to_owned();
        metadata.reply_xkey = requester.public_key();
        metadata.value_sha256 = request.value.as_ref().map(|v| sha256_hex(v));
        let iat = unix(now);
        // wascap's revision field is private: start from the default and fill in.
        let mut claims = Claims::<AdminClaims>::default();
        claims.expires = Some(iat.saturating_add(lifetime.as_secs().max(1)));
        claims.id = random_id();
        claims.issued_at = iat;
        claims.issuer = self.key.public_key();
        claims.subject = server.public_key();
        claims.metadata = Some(metadata);
        let jwt = claims
            .encode(&self.key)
            .map_err(|e| AdminKeyError::Sign(e.to_string()))?;
        let plain = envelope(&jwt, request.value.as_ref().map(|v| v.as_slice()))?;
        let body = requester
            .seal(&plain, &server)
            .map_err(|_| AdminKeyError::Sign("sealing failed".to_owned()))?;
        Ok(SealedAdminRequest {
            op,
            header: requester.public_key(),
            requester,
            body,
            id: claims.id,
        })
    }

    /// Signs arbitrary claims as they are (for tests of the server's refusals).
    pub fn sign_claims(&self, claims: &Claims<AdminClaims>) -> Result<String, AdminKeyError> {
        claims
            .encode(&self.key)
            .map_err(|e| AdminKeyError::Sign(e.to_string()))
    }
}

/// The body's JSON `{"jwt":…,"value":…}` in a zeroizing buffer sized up front.
fn envelope(jwt: &str, value: Option<&[u8]>) -> Result<Zeroizing<Vec<u8>>, AdminKeyError> {
    let encoded = value.map(|v| Zeroizing::new(STANDARD.encode(v)));
    let size = jwt.len() + encoded.as_ref().map_or(0, |e| e.len()) + 32;
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(b"{\"jwt\":\"");
    // A compact JWT is base64url and dots: nothing to escape.
    if !jwt
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(AdminKeyError::Sign(
            "unexpected token characters".to_owned(),
        ));
    }
    out.extend_from_slice(jwt.as_bytes());
    out.push(b'"');
    if let Some(encoded) = &encoded {
        out.extend_from_slice(b",\"value\":\"");
        out.extend_from_slice(encoded.as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    Ok(out)
}

/// The sealed request, and the one-time key its reply is sealed to.
pub struct SealedAdminRequest {
    /// The operation (subject token).
    pub op: AdminOp,
    /// The [`ADMIN_XKEY_HEADER`] value.
    pub header: String,
    /// The sealed body.
    pub body: Vec<u8>,
    /// The token's `jti`.
    pub id: String,
    requester: XKey,
}

impl std::fmt::Debug for SealedAdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAdminRequest")
            .field("op", &self.op)
            .field("header", &self.header)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SealedAdminRequest {
    /// Reads the reply: the opened result JSON on success (zeroized when dropped), the server's
    /// error otherwise.
    pub fn open_reply(
        &self,
        response_xkey: Option<&str>,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AdminReplyError> {
        let Some(key) = response_xkey else {
            #[derive(Deserialize)]
            struct Failure {
                error: AdminError,
            }
            return match serde_json::from_slice::<Failure>(body) {
                Ok(f) => Err(AdminReplyError::Refused(f.error)),
                Err(_) => Err(AdminReplyError::Malformed(
                    "a reply without the response xkey that is not an admin error".to_owned(),
                )),
            };
        };
        let sender = XKey::from_public_key(key.trim()).map_err(|_| {
            AdminReplyError::Malformed("the response xkey is not a public xkey".to_owned())
        })?;
        self.requester
            .open(body, &sender)
            .map(Zeroizing::new)
            .map_err(|_| {
                AdminReplyError::Malformed("the reply does not open with our key".to_owned())
            })
    }
}

/// Why a reply gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminReplyError {
    /// The server refused the request.
    #[error(transparent)]
    Refused(AdminError),
    /// The reply is not a protocol reply.
    #[error("malformed admin reply: {0}")]
    Malformed(String),
}

/// The server's admin settings.
#[derive(Debug, Clone)]
pub struct AdminPolicy {
    /// Allowed admin public keys (`U…`/`A…`).
    pub keys: BTreeSet<String>,
    /// How far `iat` may be from the server's clock ([`DEFAULT_ADMIN_SKEW`]).
    pub skew: Duration,
    /// The longest `exp - iat` ([`DEFAULT_ADMIN_MAX_LIFETIME`]).
    pub max_lifetime: Duration,
    /// The largest sealed request ([`DEFAULT_MAX_ADMIN_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
}

impl AdminPolicy {
    /// Defaults with these admin keys.
    pub fn new(keys: BTreeSet<String>) -> Self {
        Self {
            keys,
            skew: DEFAULT_ADMIN_SKEW,
            max_lifetime: DEFAULT_ADMIN_MAX_LIFETIME,
            max_request_bytes: DEFAULT_MAX_ADMIN_REQUEST_BYTES,
        }
    }
}

/// The audit record of one admin request: never a value or a seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdminAudit {
    /// The admin key, once the token's signature verified against it (`None` before).
    pub admin: Option<String>,
    /// The operation of the subject.
    pub op: String,
    /// The secret named.
    pub key: Option<String>,
    /// The entity named.
    pub entity: Option<String>,
    /// `done` or `rejected`.
    pub result: &'static str,
    /// The [`AdminError::code`] sent.
    pub error: Option<&'static str>,
    /// Why, when refused.
    pub reason: Option<String>,
}

impl AdminAudit {
    /// Marks the event refused with `error`.
    pub fn rejected(mut self, error: &AdminError) -> Self {
        self.result = "rejected";
        self.error = Some(error.code());
        self.reason = Some(error.to_string());
        self
    }

    /// Marks the event done.
    pub fn done(mut self) -> Self {
        self.result = "done";
        self
    }
}

/// A request that passed every check.
pub struct VerifiedAdmin {
    /// The operation.
    pub op: AdminOp,
    /// The admin key that signed it.
    pub admin: String,
    /// The arguments.
    pub claims: AdminClaims,
    /// The value (`put`), zeroized when dropped.
    pub value: Option<Zeroizing<Vec<u8>>>,
    requester: PublicXKey,
    audit: AdminAudit,
    token_id: String,
    replay_key: String,
    remember_until: u64,
}

impl std::fmt::Debug for VerifiedAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedAdmin")
            .field("op", &self.op)
            .field("admin", &self.admin)
            .field("key", &self.claims.key)
            .field("entity", &self.claims.entity)
            .finish_non_exhaustive()
    }
}

impl VerifiedAdmin {
    /// The audit record so far (admin, op, key, entity).
    pub fn audit(&self) -> AdminAudit {
        self.audit.clone()
    }

    /// The token's `jti` (at most 128 characters).
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The key under which a shared replay record keeps this token: the lowercase hex
    /// SHA-256 of `<issuer>/<jti>` (64 characters, fit for any store key).
    pub fn replay_key(&self) -> &str {
        &self.replay_key
    }

    /// Until when (unix seconds) the token's id must be remembered: past this, no server
    /// whose clock is within the skew accepts the token any more.
    pub fn remember_until(&self) -> u64 {
        self.remember_until
    }

    /// Seals a result to the requester from a fresh one-time key: the [`RESPONSE_XKEY`] value
    /// and the body.
    pub fn seal_result(&self, plain: &[u8]) -> Result<(String, Vec<u8>), SealError> {
        xkey::XKey::seal_reply(plain, &self.requester)
    }
}

/// The name of the reply header carrying the one-time key of a success.
pub const ADMIN_RESPONSE_XKEY: &str = RESPONSE_XKEY;

/// Checks admin requests against a policy, with a replay cache.
pub struct AdminVerifier {
    policy: AdminPolicy,
    backend: String,
    seen: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for AdminVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminVerifier")
            .field("keys", &self.policy.keys)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    jwt: String,
    #[serde(default)]
    value: Option<String>,
}

impl AdminVerifier {
    /// A verifier for `backend`.
    pub fn new(policy: AdminPolicy, backend: &str) -> Self {
        Self {
            policy,
            backend: backend.to_owned(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The allowed keys.
    pub fn keys(&self) -> &BTreeSet<String> {
        &self.policy.keys
    }

    /// Checks a request received on the admin subject whose operation token is `subject_op`.
    /// On refusal, returns the error to send and the audit record.
    pub fn verify(
        &self,
        subject_op: &str,
        header: Option<&str>,
        body: &[u8],
        transit: &xkey::XKey,
        now: SystemTime,
    ) -> Result<VerifiedAdmin, Box<(AdminError, AdminAudit)>> {
        let mut audit = AdminAudit {
            op: subject_op.chars().take(64).collect(),
            ..AdminAudit::default()
        };
        let refuse = |error: AdminError, audit: &AdminAudit| {
            let audit = audit.clone().rejected(&error);
            Box::new((error, audit))
        };
        let Some(op) = AdminOp::parse(subject_op) else {
            return Err(refuse(
                AdminError::UnknownOperation(audit.op.clone()),
                &audit,
            ));
        };
        let Some(requester) = header.and_then(|h| PublicXKey::parse(h).ok()) else {
            return Err(refuse(AdminError::InvalidXKey, &audit));
        };
        if body.is_empty() || body.len() > self.policy.max_request_bytes {
            return Err(refuse(AdminError::InvalidPayload, &audit));
        }
        let Ok(plain) = transit.open(body, &requester) else {
            return Err(refuse(AdminError::DecryptionError, &audit));
        };
        let envelope: Envelope = match serde_json::from_slice(&plain) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!(
                    "{:?} error at line {} column {}",
                    e.classify(),
                    e.line(),
                    e.column()
                );
                return Err(refuse(AdminError::InvalidRequest(reason), &audit));
            }
        };
        let value = match envelope.value.map(Zeroizing::new) {
            None => None,
            Some(text) => match STANDARD.decode(text.as_bytes()) {
                Ok(bytes) => Some(Zeroizing::new(bytes)),
                Err(_) => {
                    return Err(refuse(
                        AdminError::InvalidRequest("the value is not base64".to_owned()),
                        &audit,
                    ));
                }
            },
        };
        let jwt = envelope.jwt;
        let claims = match Claims::<AdminClaims>::decode(&jwt) {
            Ok(c) => c,
            Err(e) => {
                return Err(refuse(
                    AdminError::Unauthenticated(format!("not an admin token: {e}")),
                    &audit,
                ));
            }
        };
        let Some(metadata) = claims.metadata.clone() else {
            return Err(refuse(
                AdminError::Unauthenticated("the token carries no admin claims".to_owned()),
                &audit,
            ));
        };
        let issuer_kind = KeyPair::from_public_key(&claims.issuer)
            .ok()
            .map(|k| k.key_pair_type());
        if !issuer_kind.as_ref().is_some_and(is_admin_kind) {
            return Err(refuse(
                AdminError::Unauthenticated(
                    "the issuer is not a user (U…) or account (A…) key".to_owned(),
                ),
                &audit,
            ));
        }
        match validate_token::<AdminClaims>(&jwt) {
            Ok(v) if v.signature_valid => {}
            Ok(_) => {
                return Err(refuse(
                    AdminError::Unauthenticated(format!(
                        "the signature does not verify against {}",
                        claims.issuer
                    )),
                    &audit,
                ));
            }
            Err(e) => {
                return Err(refuse(
                    AdminError::Unauthenticated(format!("malformed token: {e}")),
                    &audit,
                ));
            }
        }
        // Claimed identities reach the audit line only once the signature verified: before,
        // anyone could put any text there.
        audit.admin = Some(claims.issuer.chars().take(64).collect());
        audit.key.clone_from(&metadata.key);
        audit.entity.clone_from(&metadata.entity);
        if !self.policy.keys.contains(&claims.issuer) {
            return Err(refuse(AdminError::UnknownAdminKey(claims.issuer), &audit));
        }
        let now_s = unix(now);
        let skew = self.policy.skew.as_secs();
        if claims.issued_at > now_s.saturating_add(skew)
            || claims.issued_at.saturating_add(skew) < now_s
        {
            return Err(refuse(
                AdminError::Expired(format!(
                    "issued at {} (unix seconds), more than {skew} s from the server's clock ({now_s})",
                    claims.issued_at
                )),
                &audit,
            ));
        }
        let Some(expires) = claims.expires else {
            return Err(refuse(
                AdminError::Expired("the token has no expiry (exp)".to_owned()),
                &audit,
            ));
        };
        if expires < now_s {
            return Err(refuse(
                AdminError::Expired(format!("expired at {expires} (unix seconds)")),
                &audit,
            ));
        }
        if expires.saturating_sub(claims.issued_at) > self.policy.max_lifetime.as_secs() {
            return Err(refuse(
                AdminError::Expired(format!(
                    "a lifetime of {} s is longer than the {} s allowed",
                    expires.saturating_sub(claims.issued_at),
                    self.policy.max_lifetime.as_secs()
                )),
                &audit,
            ));
        }
        if let Some(nbf) = claims.not_before
            && nbf > now_s.saturating_add(skew)
        {
            return Err(refuse(
                AdminError::Expired(format!("not valid before {nbf} (unix seconds)")),
                &audit,
            ));
        }
        let mismatch = if metadata.op != op.as_str() {
            Some(format!(
                "claims for {:?} sent on the {:?} subject",
                metadata.op.chars().take(64).collect::<String>(),
                op.as_str()
            ))
        } else if metadata.backend != self.backend {
            Some(format!(
                "claims for backend {:?}, this is {:?}",
                metadata.backend.chars().take(64).collect::<String>(),
                self.backend
            ))
        } else if claims.subject != transit.public_key() {
            Some("claims for another server's transit key".to_owned())
        } else if metadata.reply_xkey != requester.as_string() {
            Some("claims for another requester xkey".to_owned())
        } else {
            None
        };
        if let Some(reason) = mismatch {
            return Err(refuse(AdminError::WrongOperation(reason), &audit));
        }
        let digest_ok = match (&metadata.value_sha256, &value) {
            (None, None) => true,
            (Some(d), Some(v)) => constant_time_eq(d.as_bytes(), sha256_hex(v).as_bytes()),
            _ => false,
        };
        if !digest_ok {
            return Err(refuse(
                AdminError::Unauthenticated(
                    "the value does not match the digest in the signed claims".to_owned(),
                ),
                &audit,
            ));
        }
        if claims.id.is_empty() || claims.id.len() > 128 {
            return Err(refuse(
                AdminError::Unauthenticated("the token has no usable id (jti)".to_owned()),
                &audit,
            ));
        }
        // Keep the id until no clock within the skew can accept the token any more.
        let forget_at = expires
            .max(claims.issued_at.saturating_add(skew))
            .saturating_add(skew);
        if let Err(error) = self.remember(&claims.issuer, &claims.id, forget_at, now_s) {
            return Err(refuse(error, &audit));
        }
        let replay_key = sha256_hex(format!("{}/{}", claims.issuer, claims.id).as_bytes());
        Ok(VerifiedAdmin {
            op,
            admin: claims.issuer,
            claims: metadata,
            value,
            requester,
            audit,
            token_id: claims.id,
            replay_key,
            remember_until: forget_at,
        })
    }

    fn remember(&self, issuer: &str, id: &str, forget_at: u64, now: u64) -> Result<(), AdminError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = format!("{issuer}/{id}");
        if seen.get(&entry).is_some_and(|until| *until >= now) {
            return Err(AdminError::Replayed(id.chars().take(64).collect()));
        }
        if seen.len() >= REPLAY_CACHE_LIMIT / 2 {
            seen.retain(|_, until| *until >= now);
        }
        if seen.len() >= REPLAY_CACHE_LIMIT {
            return Err(AdminError::Expired(
                "too many admin requests within the replay window; retry later".to_owned(),
            ));
        }
        seen.insert(entry, forget_at);
        Ok(())
    }
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random token id (the `jti`): 16 bytes from the OS through a throwaway nkey, hex.
fn random_id() -> String {
    // `nkeys` draws its seeds from the OS generator; hashing a fresh public key gives a
    // uniformly random id without another randomness dependency.
    let fresh = XKey::new().public_key();
    Sha256::digest(fresh.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        transit: xkey::XKey,
        signer: AdminSigner,
        verifier: AdminVerifier,
    }

    fn setup() -> Setup {
        let seed = SecretString::from(KeyPair::new_user().seed().unwrap());
        let signer = AdminSigner::from_seed(&seed, "test").unwrap();
        let keys = [signer.public_key()].into_iter().collect();
        Setup {
            transit: xkey::XKey::generate(),
            signer,
            verifier: AdminVerifier::new(AdminPolicy::new(keys), "nats-kv"),
        }
    }

    fn put_request() -> AdminRequest {
        AdminRequest {
            op: Some(AdminOp::Put),
            claims: AdminClaims {
                key: Some("db-password".into()),
                ..AdminClaims::default()
            },
            value: Some(Zeroizing::new(b"hunter2".to_vec())),
        }
    }

    impl Setup {
        fn seal(&self, request: &AdminRequest, now: SystemTime) -> SealedAdminRequest {
            self.signer
                .seal(
                    request,
                    "nats-kv",
                    self.transit.public_key(),
                    now,
                    DEFAULT_ADMIN_TOKEN_LIFETIME,
                )
                .unwrap()
        }

        fn verify(
            &self,
            op: &str,
            sealed: &SealedAdminRequest,
        ) -> Result<VerifiedAdmin, AdminError> {
            self.verifier
                .verify(
                    op,
                    Some(&sealed.header),
                    &sealed.body,
                    &self.transit,
                    SystemTime::now(),
                )
                .map_err(|b| b.0)
        }
    }

    #[test]
    fn round_trip_and_replay() {
        let s = setup();
        let sealed = s.seal(&put_request(), SystemTime::now());
        let ok = s.verify("put", &sealed).unwrap();
        assert_eq!(ok.op, AdminOp::Put);
        assert_eq!(ok.admin, s.signer.public_key());
        assert_eq!(ok.value.as_deref().map(|v| &v[..]), Some(&b"hunter2"[..]));
        assert!(!format!("{ok:?}").contains("hunter2"));
        let (key, body) = ok.seal_result(br#"{"ok":true}"#).unwrap();
        assert_eq!(
            &sealed.open_reply(Some(&key), &body).unwrap()[..],
            br#"{"ok":true}"#
        );
        // The same sealed request again.
        assert!(matches!(
            s.verify("put", &sealed),
            Err(AdminError::Replayed(_))
        ));
        // Another verifier (another instance, or this one restarted) has not seen it: the
        // in-process cache alone lets it through, which is why servers also record the
        // replay key in their shared store. The key is the same for the same token.
        let other = AdminVerifier::new(
            AdminPolicy::new([s.signer.public_key()].into_iter().collect()),
            "nats-kv",
        );
        let again = other
            .verify(
                "put",
                Some(&sealed.header),
                &sealed.body,
                &s.transit,
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(again.replay_key(), ok.replay_key());
        assert_eq!(again.token_id(), sealed.id);
        assert_eq!(ok.replay_key().len(), 64);
        assert!(ok.replay_key().bytes().all(|b| b.is_ascii_hexdigit()));
        // Remembered past the expiry and the skew.
        let now = unix(SystemTime::now());
        assert!(ok.remember_until() >= now + DEFAULT_ADMIN_TOKEN_LIFETIME.as_secs());
        // A fresh token for the same request has another key.
        let fresh = s.seal(&put_request(), SystemTime::now());
        assert_ne!(
            s.verify("put", &fresh).unwrap().replay_key(),
            ok.replay_key()
        );
    }

    #[test]
    fn refusals() {
        let s = setup();
        let now = SystemTime::now();
        // Wrong subject for the claims.
        let sealed = s.seal(&put_request(), now);
        let err = s.verify("delete", &sealed).unwrap_err();
        assert!(matches!(err, AdminError::WrongOperation(_)), "{err:?}");
        assert!(err.refuses_identity());
        // Unknown operation.
        assert!(matches!(
            s.verify("put_secret", &sealed),
            Err(AdminError::UnknownOperation(_))
        ));
        // Expired and from the future.
        let old = s.seal(&put_request(), now - Duration::from_secs(600));
        assert!(matches!(s.verify("put", &old), Err(AdminError::Expired(_))));
        let future = s.seal(&put_request(), now + Duration::from_secs(600));
        assert!(matches!(
            s.verify("put", &future),
            Err(AdminError::Expired(_))
        ));
        // A key not in the allow-list.
        let other = AdminSigner::from_seed(
            &SecretString::from(KeyPair::new_account().seed().unwrap()),
            "t",
        )
        .unwrap();
        let sealed = other
            .seal(
                &put_request(),
                "nats-kv",
                s.transit.public_key(),
                now,
                DEFAULT_ADMIN_TOKEN_LIFETIME,
            )
            .unwrap();
        assert_eq!(
            s.verify("put", &sealed).unwrap_err(),
            AdminError::UnknownAdminKey(other.public_key())
        );
        // Another backend.
        let sealed = s
            .signer
            .seal(
                &put_request(),
                "other",
                s.transit.public_key(),
                now,
                DEFAULT_ADMIN_TOKEN_LIFETIME,
            )
            .unwrap();
        assert!(matches!(
            s.verify("put", &sealed),
            Err(AdminError::WrongOperation(_))
        ));
        // No header, garbage body.
        assert_eq!(
            s.verifier
                .verify("put", None, b"x", &s.transit, now)
                .unwrap_err()
                .0,
            AdminError::InvalidXKey
        );
        let sealed = s.seal(&put_request(), now);
        assert_eq!(
            s.verifier
                .verify("put", Some(&sealed.header), b"xkv1garbage", &s.transit, now)
                .unwrap_err()
                .0,
            AdminError::DecryptionError
        );
    }

    #[test]
    fn forged_signature_and_swapped_value() {
        let s = setup();
        let requester = XKey::new();
        let server = XKey::from_public_key(s.transit.public_key()).unwrap();
        let mut claims = Claims::<AdminClaims>::default();
        claims.expires = Some(unix(SystemTime::now()) + 60);
        claims.id = "abc".into();
        claims.issued_at = unix(SystemTime::now());
        claims.issuer = s.signer.public_key();
        claims.subject = s.transit.public_key().to_owned();
        claims.metadata = Some(AdminClaims {
            op: "list".into(),
            backend: "nats-kv".into(),
            reply_xkey: requester.public_key(),
            key: Some("db\nresult=done key=\"db\"".into()),
            ..AdminClaims::default()
        });
        // Signed by another key while naming the allowed one.
        let forger = KeyPair::new_user();
        let jwt = claims.encode(&forger).unwrap();
        let body = requester
            .seal(format!(r#"{{"jwt":"{jwt}"}}"#).as_bytes(), &server)
            .unwrap();
        let err = s
            .verifier
            .verify(
                "list",
                Some(&requester.public_key()),
                &body,
                &s.transit,
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(matches!(err.0, AdminError::Unauthenticated(_)), "{err:?}");
        assert_eq!(err.1.result, "rejected");
        // The forged token's claims (issuer, key) never reach the audit record.
        assert_eq!(err.1.admin, None);
        assert_eq!(err.1.key, None);
        assert_eq!(err.1.entity, None);
        claims.metadata.as_mut().unwrap().key = None;
        // A value that is not the one the claims bind.
        claims.metadata.as_mut().unwrap().op = "put".into();
        claims.metadata.as_mut().unwrap().value_sha256 = Some(sha256_hex(b"one"));
        let jwt = s.signer.sign_claims(&claims).unwrap();
        let body = requester
            .seal(
                format!(r#"{{"jwt":"{jwt}","value":"{}"}}"#, STANDARD.encode("two")).as_bytes(),
                &server,
            )
            .unwrap();
        let err = s
            .verifier
            .verify(
                "put",
                Some(&requester.public_key()),
                &body,
                &s.transit,
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(matches!(err.0, AdminError::Unauthenticated(_)), "{err:?}");
    }

    #[test]
    fn error_encoding_and_seeds() {
        assert_eq!(
            AdminError::Replayed("x".into()).body(),
            br#"{"error":{"Replayed":"x"}}"#
        );
        assert_eq!(
            AdminError::InvalidXKey.body(),
            br#"{"error":"InvalidXKey"}"#
        );
        let xkey_seed = SecretString::from(XKey::new().seed().unwrap());
        let err = AdminSigner::from_seed(&xkey_seed, "FILE").unwrap_err();
        assert!(!err.to_string().contains(xkey_seed.expose_secret()));
        let module = SecretString::from(KeyPair::new_module().seed().unwrap());
        assert!(AdminSigner::from_seed(&module, "FILE").is_err());
        assert!(check_admin_key(&KeyPair::new_module().public_key()).is_err());
        assert!(check_admin_key(&KeyPair::new_user().public_key()).is_ok());
        let subjects = AdminSubjects::new("wasmcloud.secrets", "nats-kv");
        assert_eq!(
            subjects.subject(AdminOp::AddMapping),
            "wasmcloud.secrets.admin.nats-kv.add_mapping"
        );
        assert_eq!(subjects.wildcard(), "wasmcloud.secrets.admin.nats-kv.*");
        assert_eq!(
            subjects.operation("wasmcloud.secrets.admin.nats-kv.put"),
            Some("put")
        );
        assert_eq!(
            subjects.operation("wasmcloud.secrets.v1alpha1.nats-kv.put"),
            None
        );
    }
}

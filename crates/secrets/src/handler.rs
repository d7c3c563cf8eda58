//! The pure `get` handler: sealed request in, reply (headers and body) and audit event out.
//!
//! No I/O and no panics on any input. The steps follow the reference backend: the
//! `WasmCloud-Host-Xkey` header (missing or invalid: `InvalidXKey`), the size of the payload
//! (`InvalidPayload`), opening it (`DecryptionError`), the JSON (`InvalidRequest`), the entity
//! and host JWTs (`InvalidEntityJWT`, `InvalidHostJWT`), the access mapping (`Unauthorized`),
//! the store (`SecretNotFound`, `UpstreamError`). The phases are public so an async server can
//! fetch mappings and values between them; [`GetHandler::handle_get`] runs them in one go.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::audit::{AuditEvent, Outcome};
use crate::grant::{Grant, policy_mount};
use crate::jwt::{Entity, HostIdentity, JwtPolicy, VerifiedTokens};
use crate::protocol::{
    GetSecretError, RESPONSE_XKEY, SecretRequest, VersionedSecret, error_code, failure_body,
    success_body,
};
use crate::xkey::{PublicXKey, XKey};

/// The largest sealed request accepted unless configured otherwise. A request holds two JWTs
/// and a policy string: a few KiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Which secrets each entity may read: entity public key (`M…`/`V…`) → mapping entries, each a
/// [`Grant`] in its stored form (a plain name, or a name bound to an issuer and/or a mount).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings {
    by_entity: BTreeMap<String, BTreeSet<String>>,
}

impl Mappings {
    /// No entity may read anything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `entity` read `secret` (a plain grant: any accepted issuer, the default mount).
    pub fn allow(&mut self, entity: &str, secret: &str) {
        self.allow_grant(entity, &Grant::plain(secret));
    }

    /// Adds `grant` to `entity`'s mapping.
    pub fn allow_grant(&mut self, entity: &str, grant: &Grant) {
        self.by_entity
            .entry(entity.to_owned())
            .or_default()
            .insert(grant.to_string());
    }

    /// Takes the entry `entry` (a plain name or a grant's stored form) away from `entity`;
    /// returns whether it was there.
    pub fn revoke(&mut self, entity: &str, entry: &str) -> bool {
        let Some(set) = self.by_entity.get_mut(entity) else {
            return false;
        };
        let removed = set.remove(entry);
        if set.is_empty() {
            self.by_entity.remove(entity);
        }
        removed
    }

    /// Whether a plain grant lets `entity` read `secret`.
    pub fn is_allowed(&self, entity: &str, secret: &str) -> bool {
        self.by_entity
            .get(entity)
            .is_some_and(|set| set.contains(secret))
    }

    /// The entries of `entity`'s mapping, in their stored form.
    pub fn secrets_of(&self, entity: &str) -> impl Iterator<Item = &str> {
        self.by_entity
            .get(entity)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// A store failure; its message goes back to the host as `UpstreamError`, so it must never
/// contain a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// What the store is asked for.
#[derive(Debug, Clone, Copy)]
pub struct SecretLookup<'a> {
    /// The secret's name (or path).
    pub key: &'a str,
    /// A field within it.
    pub field: Option<&'a str>,
    /// A version (`None`: the latest).
    pub version: Option<&'a str>,
    /// The application's policy (a JSON string; may name a Vault mount).
    pub policy: &'a str,
}

/// The reply to send: headers and body, plus the audit event.
#[derive(Debug)]
pub struct Reply {
    /// The `Server-Response-Xkey` header, on success only.
    pub response_xkey: Option<String>,
    /// Sealed JSON on success, plain `{"error":…}` otherwise.
    pub body: Vec<u8>,
    /// What to audit.
    pub audit: AuditEvent,
}

impl Reply {
    /// The headers to send (empty for a failure, as the client expects).
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        self.response_xkey
            .as_deref()
            .map(|key| (RESPONSE_XKEY, key))
            .into_iter()
            .collect()
    }

    /// Whether a secret was sent.
    pub fn is_success(&self) -> bool {
        self.response_xkey.is_some()
    }

    fn failure(error: GetSecretError, reason: Option<String>, mut audit: AuditEvent) -> Self {
        audit.outcome = Outcome::Rejected {
            error: error_code(&error),
            reason,
        };
        Self {
            response_xkey: None,
            body: failure_body(&error),
            audit,
        }
    }
}

/// A request that opened and whose JWTs verified; not yet checked against the mappings.
pub struct Verified {
    requester: PublicXKey,
    request: SecretRequest,
    entity: Entity,
    host: HostIdentity,
    audit: AuditEvent,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("entity", &self.entity)
            .field("host", &self.host)
            .field("key", &self.request.key)
            .finish_non_exhaustive()
    }
}

impl Verified {
    /// The verified entity.
    pub fn entity(&self) -> &Entity {
        &self.entity
    }

    /// The verified host.
    pub fn host(&self) -> &HostIdentity {
        &self.host
    }

    /// What to look up.
    pub fn lookup(&self) -> SecretLookup<'_> {
        SecretLookup {
            key: &self.request.key,
            field: self.request.field.as_deref(),
            version: self.request.version.as_deref(),
            policy: &self.request.context.application.policy,
        }
    }

    /// Whether the requested version, if any, is a version number. The reference backend
    /// parses it as an unsigned integer (a KV revision) and answers `InvalidRequest` otherwise.
    pub fn version_is_valid(&self) -> bool {
        self.request
            .version
            .as_deref()
            .is_none_or(|v| v.parse::<u64>().is_ok())
    }

    /// The mount the application's policy names, if any ([`policy_mount`]).
    pub fn requested_mount(&self) -> Option<String> {
        policy_mount(&self.request.context.application.policy)
    }

    /// Whether one of the entity's mapping `entries` (stored [`Grant`]s; entries that do not
    /// parse grant nothing) lets it read the requested secret, given who signed its JWT and the
    /// mount asked for. `default_mount` is the store's default mount (`None` for stores without
    /// mounts: the policy's mount is not looked at). Records the mount in the audit event.
    pub fn authorize<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a str>,
        default_mount: Option<&str>,
    ) -> bool {
        let asked = default_mount.and_then(|_| self.requested_mount());
        if let Some(default) = default_mount {
            self.audit.mount = Some(asked.clone().unwrap_or_else(|| default.to_owned()));
        }
        entries.into_iter().any(|entry| {
            Grant::parse(entry).is_ok_and(|grant| {
                grant.permits(
                    &self.request.key,
                    &self.entity.issuer,
                    asked.as_deref(),
                    default_mount,
                )
            })
        })
    }

    /// Whether `mappings` let the entity read the requested secret (a store without mounts).
    pub fn is_allowed_by(&mut self, mappings: &Mappings) -> bool {
        let entity = self.entity.public_key.clone();
        self.authorize(mappings.secrets_of(&entity), None)
    }
}

/// Answers `get` requests with one transit key and JWT policy.
#[derive(Debug)]
pub struct GetHandler {
    transit: XKey,
    jwt: JwtPolicy,
    max_request_bytes: usize,
    /// Host and component tokens that passed, so their signatures are not checked on every
    /// request (dates and allow-lists still are).
    verified: VerifiedTokens,
}

impl GetHandler {
    /// A handler with [`DEFAULT_MAX_REQUEST_BYTES`].
    pub fn new(transit: XKey, jwt: JwtPolicy) -> Self {
        Self {
            transit,
            jwt,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            verified: VerifiedTokens::default(),
        }
    }

    /// Changes the request size limit.
    pub fn with_max_request_bytes(mut self, max: usize) -> Self {
        self.max_request_bytes = max;
        self
    }

    /// The JWT policy (issuer allow-lists, leeway).
    pub fn jwt(&self) -> &JwtPolicy {
        &self.jwt
    }

    /// The transit key.
    pub fn transit(&self) -> &XKey {
        &self.transit
    }

    /// The body of the `server_xkey` reply: the public key as plain text.
    pub fn server_xkey_body(&self) -> &[u8] {
        self.transit.public_key().as_bytes()
    }

    /// Phase one: header, size, opening, JSON and JWTs at time `now`.
    pub fn open(
        &self,
        host_xkey: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Box<Reply>> {
        let mut audit = AuditEvent::default();
        let Some(requester) = host_xkey.and_then(|h| PublicXKey::parse(h).ok()) else {
            return Err(Box::new(Reply::failure(
                GetSecretError::InvalidXKey,
                None,
                audit,
            )));
        };
        audit.requester_xkey = Some(requester.as_string());
        if body.is_empty() || body.len() > self.max_request_bytes {
            let reason = format!(
                "payload of {} bytes (limit {})",
                body.len(),
                self.max_request_bytes
            );
            return Err(Box::new(Reply::failure(
                GetSecretError::InvalidPayload,
                Some(reason),
                audit,
            )));
        }
        let Ok(plain) = self.transit.open(body, &requester) else {
            return Err(Box::new(Reply::failure(
                GetSecretError::DecryptionError,
                None,
                audit,
            )));
        };
        let request: SecretRequest = match serde_json::from_slice(&plain) {
            Ok(r) => r,
            Err(e) => {
                // Only the kind and position: serde_json's message can quote the input.
                let reason = Some(format!(
                    "{:?} error at line {} column {}",
                    e.classify(),
                    e.line(),
                    e.column()
                ));
                return Err(Box::new(Reply::failure(
                    GetSecretError::InvalidRequest,
                    reason,
                    audit,
                )));
            }
        };
        audit.key = Some(request.key.clone());
        audit.field.clone_from(&request.field);
        audit.requested_version.clone_from(&request.version);
        let entity = match self
            .verified
            .entity(&request.context.entity_jwt, &self.jwt, now)
        {
            Ok(e) => e,
            Err(e) => {
                return Err(Box::new(Reply::failure(
                    GetSecretError::InvalidEntityJWT(e.to_string()),
                    Some(e.audit_reason()),
                    audit,
                )));
            }
        };
        audit.entity = Some(entity.public_key.clone());
        audit.entity_issuer = Some(entity.issuer.clone());
        audit.entity_kind = Some(entity.kind);
        let host = match self
            .verified
            .host(&request.context.host_jwt, &self.jwt, now)
        {
            Ok(h) => h,
            Err(e) => {
                return Err(Box::new(Reply::failure(
                    GetSecretError::InvalidHostJWT(e.to_string()),
                    Some(e.audit_reason()),
                    audit,
                )));
            }
        };
        audit.host = Some(host.public_key.clone());
        audit.host_issuer = Some(host.issuer.clone());
        Ok(Verified {
            requester,
            request,
            entity,
            host,
            audit,
        })
    }

    /// The reply for an entity the mappings do not allow.
    pub fn unauthorized(&self, verified: Verified) -> Reply {
        Reply::failure(GetSecretError::Unauthorized, None, verified.audit)
    }

    /// The reply for a version that is not a number (`InvalidRequest`, as the reference).
    pub fn invalid_version(&self, verified: Verified) -> Reply {
        let reason = Some("the version is not a number".to_owned());
        Reply::failure(GetSecretError::InvalidRequest, reason, verified.audit)
    }

    /// Phase three: the store's answer sealed to the requester (the value is zeroized here).
    pub fn respond(
        &self,
        verified: Verified,
        found: Result<Option<VersionedSecret>, LookupError>,
    ) -> Reply {
        let mut audit = verified.audit;
        let secret = match found {
            Ok(Some(secret)) => secret,
            Ok(None) => return Reply::failure(GetSecretError::SecretNotFound, None, audit),
            Err(e) => {
                let reason = e.0;
                return Reply::failure(
                    GetSecretError::UpstreamError(reason.clone()),
                    Some(reason),
                    audit,
                );
            }
        };
        let plain = success_body(&secret);
        let version = secret.version.clone();
        drop(secret);
        match XKey::seal_reply(&plain, &verified.requester) {
            Ok((response_xkey, body)) => {
                audit.served_version = Some(version);
                audit.outcome = Outcome::Served;
                Reply {
                    response_xkey: Some(response_xkey),
                    body,
                    audit,
                }
            }
            Err(_) => Reply::failure(GetSecretError::EncryptionError, None, audit),
        }
    }

    /// All phases with an in-memory mapping table and a synchronous lookup.
    pub fn handle_get(
        &self,
        host_xkey: Option<&str>,
        body: &[u8],
        mappings: &Mappings,
        now: SystemTime,
        lookup: impl FnOnce(SecretLookup<'_>) -> Result<Option<VersionedSecret>, LookupError>,
    ) -> Reply {
        let mut verified = match self.open(host_xkey, body, now) {
            Ok(v) => v,
            Err(reply) => return *reply,
        };
        if !verified.is_allowed_by(mappings) {
            return self.unauthorized(verified);
        }
        if !verified.version_is_valid() {
            return self.invalid_version(verified);
        }
        let found = lookup(verified.lookup());
        self.respond(verified, found)
    }
}

#[cfg(test)]
mod tests {
    use nkeys::KeyPair;
    use secrecy::SecretString;
    use wasmcloud_secrets_types::SecretResponse;

    use super::*;
    use crate::protocol::SecretValue;
    use crate::testkit::{Identities, mint_component, seal_like_client};

    struct Fixture {
        ids: Identities,
        handler: GetHandler,
        mappings: Mappings,
    }

    fn fixture() -> Fixture {
        let ids = Identities::new();
        let mut mappings = Mappings::new();
        mappings.allow(&ids.component.public_key(), "db-password");
        mappings.allow(&ids.component.public_key(), "tls-key");
        mappings.allow(&ids.component.public_key(), "missing");
        Fixture {
            ids,
            handler: GetHandler::new(XKey::generate(), JwtPolicy::default()),
            mappings,
        }
    }

    fn store(lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, LookupError> {
        Ok(match (lookup.key, lookup.version) {
            ("db-password", None | Some("2")) => Some(VersionedSecret {
                version: "2".into(),
                value: SecretValue::String(SecretString::from("hunter2")),
            }),
            ("db-password", Some("1")) => Some(VersionedSecret {
                version: "1".into(),
                value: SecretValue::String(SecretString::from("old")),
            }),
            ("tls-key", _) => Some(VersionedSecret {
                version: "5".into(),
                value: SecretValue::Binary(vec![0u8, 1, 254, 255].into()),
            }),
            ("broken", _) => return Err(LookupError("store unavailable".into())),
            _ => None,
        })
    }

    impl Fixture {
        fn ask(&self, request: &SecretRequest) -> (nkeys::XKey, Reply) {
            let (xkey, header, sealed) =
                seal_like_client(request, self.handler.transit().public_key());
            let reply = self.handler.handle_get(
                Some(&header),
                &sealed,
                &self.mappings,
                SystemTime::now(),
                store,
            );
            (xkey, reply)
        }

        fn request(&self, key: &str) -> SecretRequest {
            self.ids.request(
                key,
                self.ids.component_jwt(None, None),
                self.ids.host_jwt(None),
            )
        }
    }

    /// Reads a reply as `wasmcloud-secrets-client` 0.9 does.
    fn read_like_client(xkey: &nkeys::XKey, reply: &Reply) -> Result<SecretResponse, String> {
        let Some((_, key)) = reply
            .headers()
            .into_iter()
            .find(|(n, _)| *n == RESPONSE_XKEY)
        else {
            let sr: SecretResponse = serde_json::from_slice(&reply.body).unwrap();
            return Err(sr.error.unwrap().to_string());
        };
        let sender = nkeys::XKey::from_public_key(key).unwrap();
        let plain = xkey.open(&reply.body, &sender).unwrap();
        Ok(serde_json::from_slice(&plain).unwrap())
    }

    fn error_json(reply: &Reply) -> serde_json::Value {
        assert!(reply.headers().is_empty());
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn serves_latest_and_versioned_string() {
        let f = fixture();
        let (xkey, reply) = f.ask(&f.request("db-password"));
        assert!(reply.is_success());
        let secret = read_like_client(&xkey, &reply).unwrap().secret.unwrap();
        assert_eq!(secret.version, "2");
        assert_eq!(secret.string_secret.as_deref(), Some("hunter2"));
        assert_eq!(secret.binary_secret, None);
        assert_eq!(reply.audit.outcome, Outcome::Served);
        assert_eq!(reply.audit.served_version.as_deref(), Some("2"));
        assert_eq!(reply.audit.entity, Some(f.ids.component.public_key()));
        assert_eq!(reply.audit.host, Some(f.ids.host.public_key()));
        let audit = serde_json::to_string(&reply.audit).unwrap();
        assert!(!audit.contains("hunter2"));

        let mut request = f.request("db-password");
        request.version = Some("1".into());
        let (xkey, reply) = f.ask(&request);
        let secret = read_like_client(&xkey, &reply).unwrap().secret.unwrap();
        assert_eq!(secret.version, "1");
        assert_eq!(secret.string_secret.as_deref(), Some("old"));
        assert_eq!(reply.audit.requested_version.as_deref(), Some("1"));
    }

    #[test]
    fn serves_binary_in_clear() {
        let f = fixture();
        let (xkey, reply) = f.ask(&f.request("tls-key"));
        let secret = read_like_client(&xkey, &reply).unwrap().secret.unwrap();
        assert_eq!(secret.binary_secret, Some(vec![0, 1, 254, 255]));
        assert_eq!(secret.string_secret, None);
    }

    #[test]
    fn unmapped_entity_is_unauthorized() {
        let f = fixture();
        let (_, reply) = f.ask(&f.request("other-secret"));
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "Unauthorized"})
        );
        // A provider with a valid token but no mapping.
        let request = f
            .ids
            .request("db-password", f.ids.provider_jwt(), f.ids.host_jwt(None));
        let (_, reply) = f.ask(&request);
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "Unauthorized"})
        );
        assert!(matches!(
            reply.audit.outcome,
            Outcome::Rejected {
                error: "Unauthorized",
                ..
            }
        ));
    }

    #[test]
    fn revoked_mapping_is_unauthorized() {
        let mut f = fixture();
        assert!(
            f.mappings
                .revoke(&f.ids.component.public_key(), "db-password")
        );
        let (_, reply) = f.ask(&f.request("db-password"));
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "Unauthorized"})
        );
    }

    #[test]
    fn missing_key_and_store_failure() {
        let f = fixture();
        let (xkey, reply) = f.ask(&f.request("missing"));
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "SecretNotFound"})
        );
        assert_eq!(
            read_like_client(&xkey, &reply).err().as_deref(),
            Some("Secret not found")
        );
        let mut f = f;
        f.mappings.allow(&f.ids.component.public_key(), "broken");
        let (_, reply) = f.ask(&f.request("broken"));
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": {"UpstreamError": "store unavailable"}})
        );
    }

    #[test]
    fn expired_entity_jwt() {
        let f = fixture();
        let expired = f.ids.component_jwt(Some(1), None);
        let request = f.ids.request("db-password", expired, f.ids.host_jwt(None));
        let (_, reply) = f.ask(&request);
        let json = error_json(&reply);
        assert!(
            json["error"]["InvalidEntityJWT"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }

    #[test]
    fn audit_reasons_name_no_unverified_key() {
        let f = fixture();
        // Claims naming the real account, signed by another: the host hears which issuer failed,
        // the audit log does not repeat a key nobody proved.
        let other = KeyPair::new_account();
        let forged = crate::testkit::mint_component_claiming(
            &other,
            &f.ids.account.public_key(),
            &f.ids.component,
        );
        let request = f.ids.request("db-password", forged, f.ids.host_jwt(None));
        let (_, reply) = f.ask(&request);
        let json = error_json(&reply);
        let sent = json["error"]["InvalidEntityJWT"].as_str().unwrap();
        assert!(sent.contains(&f.ids.account.public_key()), "{sent}");
        let Outcome::Rejected { reason, .. } = &reply.audit.outcome else {
            panic!("{:?}", reply.audit.outcome)
        };
        let reason = reason.as_deref().unwrap();
        assert!(reason.contains("unverified"), "{reason}");
        assert!(!reason.contains(&f.ids.account.public_key()), "{reason}");
        assert!(!reason.contains(&other.public_key()), "{reason}");
        // A host token passed as the entity token: its subject is not named either.
        let request = f
            .ids
            .request("db-password", f.ids.host_jwt(None), f.ids.host_jwt(None));
        let (_, reply) = f.ask(&request);
        let Outcome::Rejected { reason, .. } = &reply.audit.outcome else {
            panic!("{:?}", reply.audit.outcome)
        };
        assert!(
            !reason
                .as_deref()
                .unwrap()
                .contains(&f.ids.host.public_key())
        );
    }

    #[test]
    fn entity_jwt_as_host_jwt() {
        let f = fixture();
        let entity = f.ids.component_jwt(None, None);
        let request = f.ids.request("db-password", entity.clone(), entity);
        let (_, reply) = f.ask(&request);
        let json = error_json(&reply);
        assert!(
            json["error"]["InvalidHostJWT"]
                .as_str()
                .unwrap()
                .contains("N…")
        );
        // And the other way round.
        let request = f
            .ids
            .request("db-password", f.ids.host_jwt(None), f.ids.host_jwt(None));
        let (_, reply) = f.ask(&request);
        assert!(error_json(&reply)["error"]["InvalidEntityJWT"].is_string());
    }

    #[test]
    fn header_problems_are_invalid_xkey() {
        let f = fixture();
        let (_, header, sealed) =
            seal_like_client(&f.request("db-password"), f.handler.transit().public_key());
        let now = SystemTime::now();
        let invalid = serde_json::json!({"error": "InvalidXKey"});
        for bad in [
            None,
            Some(""),
            Some("not-a-key"),
            Some(&header[..header.len() - 1]),
            Some(f.ids.component.public_key()).as_deref(),
        ] {
            let reply = f.handler.handle_get(bad, &sealed, &f.mappings, now, store);
            assert_eq!(error_json(&reply), invalid, "{bad:?}");
        }
        // A valid xkey that is not the one the request was sealed with.
        let other = nkeys::XKey::new().public_key();
        let reply = f
            .handler
            .handle_get(Some(&other), &sealed, &f.mappings, now, store);
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "DecryptionError"})
        );
    }

    #[test]
    fn tampered_garbage_and_oversize_payloads() {
        let f = fixture();
        let (_, header, sealed) =
            seal_like_client(&f.request("db-password"), f.handler.transit().public_key());
        let now = SystemTime::now();
        let decryption = serde_json::json!({"error": "DecryptionError"});
        for i in [0, 4, 10, 28, sealed.len() / 2, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            let reply = f
                .handler
                .handle_get(Some(&header), &tampered, &f.mappings, now, store);
            assert_eq!(error_json(&reply), decryption, "byte {i}");
        }
        for garbage in [
            &b"xkv1"[..],
            b"{}",
            &sealed[..sealed.len() - 1],
            &[0u8; 100],
        ] {
            let reply = f
                .handler
                .handle_get(Some(&header), garbage, &f.mappings, now, store);
            assert_eq!(error_json(&reply), decryption);
        }
        let reply = f
            .handler
            .handle_get(Some(&header), b"", &f.mappings, now, store);
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "InvalidPayload"})
        );
        let small = GetHandler::new(
            XKey::from_seed(&f.handler.transit().seed(), "t").unwrap(),
            JwtPolicy::default(),
        )
        .with_max_request_bytes(100);
        let reply = small.handle_get(Some(&header), &sealed, &f.mappings, now, store);
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "InvalidPayload"})
        );
    }

    #[test]
    fn non_numeric_version_is_invalid_request() {
        let f = fixture();
        for version in ["latest", "", " 2", "-1"] {
            let mut request = f.request("db-password");
            request.version = Some(version.into());
            let (_, reply) = f.ask(&request);
            assert_eq!(
                error_json(&reply),
                serde_json::json!({"error": "InvalidRequest"}),
                "{version:?}"
            );
        }
        // Unmapped first: the mapping decides before the version is looked at, as the reference.
        let mut request = f.request("other-secret");
        request.version = Some("latest".into());
        let (_, reply) = f.ask(&request);
        assert_eq!(
            error_json(&reply),
            serde_json::json!({"error": "Unauthorized"})
        );
    }

    #[test]
    fn bad_json_is_invalid_request() {
        let f = fixture();
        let client = nkeys::XKey::new();
        let server = nkeys::XKey::from_public_key(f.handler.transit().public_key()).unwrap();
        for body in [&b"not json"[..], b"{}", br#"{"key":1}"#, &[0xff, 0xfe]] {
            let sealed = client.seal(body, &server).unwrap();
            let reply = f.handler.handle_get(
                Some(&client.public_key()),
                &sealed,
                &f.mappings,
                SystemTime::now(),
                store,
            );
            assert_eq!(
                error_json(&reply),
                serde_json::json!({"error": "InvalidRequest"})
            );
        }
    }

    /// A host JWT for `host`, signed by `cluster` (any key can mint one for itself).
    fn host_jwt_by(cluster: &KeyPair, host: &KeyPair) -> String {
        wascap::jwt::Claims::<wascap::jwt::Host>::with_dates(
            "host".into(),
            cluster.public_key(),
            host.public_key(),
            None,
            None,
            Some(std::collections::HashMap::new()),
        )
        .encode(cluster)
        .unwrap()
    }

    /// Issue 19 item 2: a component token for the victim's `M…` key signed by a fresh account,
    /// plus a self-minted host token. With issuer allow-lists and a mapping bound to the
    /// victim's account it is refused at every layer (and audited as rejected); the legitimate
    /// tokens are served.
    #[test]
    fn forged_tokens_for_a_victims_key_are_refused() {
        let ids = Identities::new();
        let a1 = ids.account.public_key();
        let victim = ids.component.public_key();
        let mut mappings = Mappings::new();
        let bound = Grant::plain("db-password").with_issuer(&a1).unwrap();
        mappings.allow_grant(&victim, &bound);

        let attacker_account = KeyPair::new_account();
        let forged_entity = mint_component(&attacker_account, &ids.component, None, None);
        let forged_host = host_jwt_by(&KeyPair::new_cluster(), &KeyPair::new_server());
        let legit_entity = ids.component_jwt(None, None);
        let legit_host = ids.host_jwt(None);

        let ask = |policy: JwtPolicy, mappings: &Mappings, entity: &str, host: &str| {
            let handler = GetHandler::new(XKey::generate(), policy);
            let request = ids.request("db-password", entity.to_owned(), host.to_owned());
            let (_, header, sealed) = seal_like_client(&request, handler.transit().public_key());
            handler.handle_get(Some(&header), &sealed, mappings, SystemTime::now(), store)
        };
        let strict = JwtPolicy {
            entity_issuers: BTreeSet::from([a1.clone()]),
            host_issuers: BTreeSet::from([ids.cluster.public_key()]),
            ..JwtPolicy::default()
        };
        let rejected = |reply: &Reply, error: &str| {
            assert!(!reply.is_success());
            assert!(
                matches!(&reply.audit.outcome, Outcome::Rejected { error: e, .. } if *e == error),
                "{:?}",
                reply.audit.outcome
            );
        };

        // What the review reproduced: no allow-list and a plain mapping serve the forgery.
        let mut plain = Mappings::new();
        plain.allow(&victim, "db-password");
        let before = ask(JwtPolicy::default(), &plain, &forged_entity, &forged_host);
        assert!(before.is_success(), "the attack works without the fix");

        // The fix, layer by layer. The entity issuer allow-list refuses the fresh account…
        let reply = ask(strict.clone(), &mappings, &forged_entity, &forged_host);
        rejected(&reply, "InvalidEntityJWT");
        assert!(error_json(&reply)["error"]["InvalidEntityJWT"].is_string());
        // …claimed identities are not audited as verified…
        assert_eq!(reply.audit.entity, None);
        assert_eq!(reply.audit.entity_issuer, None);
        assert_eq!(reply.audit.host, None);
        // …the host issuer allow-list refuses the self-minted host token…
        let reply = ask(strict.clone(), &mappings, &legit_entity, &forged_host);
        rejected(&reply, "InvalidHostJWT");
        // …and a mapping bound to A1 refuses an account the server otherwise accepts (another
        // tenant's account), also when issuers are not restricted at all.
        let mut both = strict.clone();
        both.entity_issuers.insert(attacker_account.public_key());
        let reply = ask(both, &mappings, &forged_entity, &legit_host);
        rejected(&reply, "Unauthorized");
        assert_eq!(
            reply.audit.entity_issuer,
            Some(attacker_account.public_key())
        );
        let reply = ask(
            JwtPolicy::default(),
            &mappings,
            &forged_entity,
            &forged_host,
        );
        rejected(&reply, "Unauthorized");

        // Negative control: the victim's own tokens are served, both issuers audited.
        let reply = ask(strict, &mappings, &legit_entity, &legit_host);
        assert!(reply.is_success());
        assert_eq!(reply.audit.outcome, Outcome::Served);
        assert_eq!(reply.audit.entity_issuer, Some(a1));
        assert_eq!(reply.audit.host_issuer, Some(ids.cluster.public_key()));
    }

    #[test]
    fn authorize_checks_the_mount() {
        let f = fixture();
        let open = |policy: Option<&str>| {
            let mut request = f.request("db-password");
            if let Some(p) = policy {
                request.context.application.policy = p.to_owned();
            }
            let (_, header, sealed) = seal_like_client(&request, f.handler.transit().public_key());
            f.handler
                .open(Some(&header), &sealed, SystemTime::now())
                .unwrap()
        };
        let team_b = r#"{"type":"x","properties":{"mount_path":"team-b"}}"#;
        let plain = ["db-password"];
        let mut v = open(None);
        assert!(v.authorize(plain, Some("secret")));
        assert_eq!(v.audit.mount.as_deref(), Some("secret"));
        let mut v = open(Some(team_b));
        assert!(!v.authorize(plain, Some("secret")));
        assert_eq!(v.audit.mount.as_deref(), Some("team-b"));
        let mut v = open(Some(team_b));
        assert!(v.authorize(["db-password;mount=team-b"], Some("secret")));
        // A store without mounts ignores the policy's mount.
        let mut v = open(Some(team_b));
        assert!(v.authorize(plain, None));
        assert_eq!(v.audit.mount, None);
        // Entries that do not parse grant nothing.
        let mut v = open(None);
        assert!(!v.authorize(["db-password;bogus"], Some("secret")));
    }

    #[test]
    fn mappings_api() {
        let mut m = Mappings::new();
        m.allow("Mabc", "a");
        m.allow("Mabc", "b");
        assert!(m.is_allowed("Mabc", "a"));
        assert!(!m.is_allowed("Mabc", "c"));
        assert!(!m.is_allowed("Mxyz", "a"));
        assert_eq!(m.secrets_of("Mabc").collect::<Vec<_>>(), ["a", "b"]);
        assert!(m.revoke("Mabc", "a"));
        assert!(!m.revoke("Mabc", "a"));
        assert!(m.revoke("Mabc", "b"));
        assert_eq!(m, Mappings::new());
    }
}

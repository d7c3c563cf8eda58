//! Checks of the two JWTs in a request's context, with wascap (the code hosts mint them with).
//!
//! The entity JWT must be a component (`M…`) or provider (`V…`) token signed by an account
//! (`A…`); the host JWT must be a Host token whose subject is a server key (`N…`), so an entity
//! token passed as the host token is refused even though wascap would decode it. wascap checks
//! the header and the Ed25519 signature; `exp` and `nbf` are compared here against a clock the
//! caller passes, so they can be tested. Optional allow-lists restrict the issuers.
//!
//! [`VerifiedTokens`] keeps what a full check found about a token that passed it, keyed on the
//! SHA-256 of its full bytes: a host sends the same host token and the same component token with
//! every request, and their Ed25519 signatures are most of a `get`'s CPU after the xkey boxes.
//! A kept token skips decoding and the signature only; its dates and the issuer allow-list are
//! checked on every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use nkeys::{KeyPair, KeyPairType};
use wascap::jwt::{CapabilityProvider, Claims, Component, Host, validate_token};

/// Which issuers are accepted. Empty allow-lists accept any validly signed issuer.
#[derive(Debug, Clone, Default)]
pub struct JwtPolicy {
    /// Accounts (`A…`) allowed to sign entity JWTs; empty means any.
    pub entity_issuers: BTreeSet<String>,
    /// Keys (the cluster key `C…` of wasmCloud hosts) allowed to sign host JWTs; empty means any.
    pub host_issuers: BTreeSet<String>,
    /// Tolerated clock skew for `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtPolicy {
    /// Whether entity JWTs signed by any account are accepted (no entity issuer allow-list).
    pub fn any_entity_issuer(&self) -> bool {
        self.entity_issuers.is_empty()
    }

    /// Whether host JWTs signed by any key are accepted (no host issuer allow-list).
    pub fn any_host_issuer(&self) -> bool {
        self.host_issuers.is_empty()
    }
}

/// What kind of entity an entity JWT names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A component (`M…`).
    Component,
    /// A capability provider (`V…`).
    Provider,
}

/// A verified entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Component or provider.
    pub kind: EntityKind,
    /// The subject, the key access mappings are keyed by.
    pub public_key: String,
    /// The signing account.
    pub issuer: String,
}

/// A verified host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The host's server key (`N…`).
    pub public_key: String,
    /// The signing key.
    pub issuer: String,
}

/// Why a JWT was refused. The message goes back to the host, so it names keys and times only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a wascap JWT of the expected kind (bad segments, header, JSON or claims).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The Ed25519 signature does not verify against the issuer.
    #[error("signature does not verify against issuer {issuer}")]
    BadSignature {
        /// The claimed issuer.
        issuer: String,
    },
    /// `exp` is in the past.
    #[error("token expired at {expires} (unix seconds)")]
    Expired {
        /// The `exp` claim.
        expires: u64,
    },
    /// `nbf` is in the future.
    #[error("token not valid before {not_before} (unix seconds)")]
    NotYetValid {
        /// The `nbf` claim.
        not_before: u64,
    },
    /// The subject is not a key of the expected kind.
    #[error("subject {subject} is not {expected}")]
    WrongSubject {
        /// The subject found.
        subject: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The issuer is not a key of the expected kind.
    #[error("issuer {issuer} is not {expected}")]
    WrongIssuer {
        /// The issuer found.
        issuer: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The issuer is valid but not in the allow-list.
    #[error("issuer {issuer} is not allowed")]
    IssuerNotAllowed {
        /// The issuer found.
        issuer: String,
    },
}

impl JwtError {
    /// The reason for the audit log: as [`Display`](std::fmt::Display), less the keys a token
    /// only claims. A subject or issuer is named only once the signature verified against it
    /// ([`JwtError::IssuerNotAllowed`]); the host still gets the full message.
    pub fn audit_reason(&self) -> String {
        match self {
            JwtError::BadSignature { .. } => {
                "signature does not verify against the claimed (unverified) issuer".to_owned()
            }
            JwtError::WrongSubject { expected, .. } => {
                format!("the claimed (unverified) subject is not {expected}")
            }
            JwtError::WrongIssuer { expected, .. } => {
                format!("the claimed (unverified) issuer is not {expected}")
            }
            JwtError::IssuerNotAllowed { issuer } => {
                format!("issuer {issuer} (signature verified) is not allowed")
            }
            other => other.to_string(),
        }
    }
}

fn key_type(key: &str) -> Option<KeyPairType> {
    KeyPair::from_public_key(key)
        .ok()
        .map(|k| k.key_pair_type())
}

fn is_type(key: &str, wanted: KeyPairType) -> bool {
    key_type(key).is_some_and(|t| std::mem::discriminant(&t) == std::mem::discriminant(&wanted))
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A token's `exp` and `nbf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dates {
    expires: Option<u64>,
    not_before: Option<u64>,
}

impl Dates {
    fn check(self, now: SystemTime, leeway: Duration) -> Result<(), JwtError> {
        let now = unix(now);
        let leeway = leeway.as_secs();
        if let Some(expires) = self.expires
            && expires.saturating_add(leeway) < now
        {
            return Err(JwtError::Expired { expires });
        }
        if let Some(not_before) = self.not_before
            && not_before > now.saturating_add(leeway)
        {
            return Err(JwtError::NotYetValid { not_before });
        }
        Ok(())
    }
}

/// Signature, header and dates of a token already decoded as `Claims<T>`.
fn check_common<T>(
    token: &str,
    claims: &Claims<T>,
    now: SystemTime,
    leeway: Duration,
) -> Result<Dates, JwtError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + wascap::jwt::WascapEntity,
{
    let validation = validate_token::<T>(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if !validation.signature_valid {
        return Err(JwtError::BadSignature {
            issuer: claims.issuer.clone(),
        });
    }
    let dates = Dates {
        expires: claims.expires,
        not_before: claims.not_before,
    };
    dates.check(now, leeway)?;
    Ok(dates)
}

fn check_issuer(issuer: &str, allowed: &BTreeSet<String>) -> Result<(), JwtError> {
    if !allowed.is_empty() && !allowed.contains(issuer) {
        return Err(JwtError::IssuerNotAllowed {
            issuer: issuer.to_owned(),
        });
    }
    Ok(())
}

/// `token` decoded as `Claims<T>` when it carries `T`'s claims and its subject is a `subject` key.
fn decode_as<T>(token: &str, subject: KeyPairType) -> Option<Claims<T>>
where
    T: serde::Serialize + serde::de::DeserializeOwned + wascap::jwt::WascapEntity,
{
    Claims::<T>::decode(token)
        .ok()
        .filter(|c| c.metadata.is_some() && is_type(&c.subject, subject))
}

/// Verifies an entity JWT (component or provider) at time `now`.
pub fn verify_entity(token: &str, policy: &JwtPolicy, now: SystemTime) -> Result<Entity, JwtError> {
    verify_entity_dated(token, policy, now).map(|(e, _)| e)
}

fn verify_entity_dated(
    token: &str,
    policy: &JwtPolicy,
    now: SystemTime,
) -> Result<(Entity, Dates), JwtError> {
    let (kind, subject, issuer, dates) =
        if let Some(c) = decode_as::<Component>(token, KeyPairType::Module) {
            let dates = check_common(token, &c, now, policy.leeway)?;
            (EntityKind::Component, c.subject, c.issuer, dates)
        } else if let Some(c) = decode_as::<CapabilityProvider>(token, KeyPairType::Service) {
            let dates = check_common(token, &c, now, policy.leeway)?;
            (EntityKind::Provider, c.subject, c.issuer, dates)
        } else {
            // Tell a well-formed token of the wrong kind from garbage.
            return Err(match Claims::<Host>::decode(token) {
                Ok(c) => JwtError::WrongSubject {
                    subject: c.subject,
                    expected: "a component (M…) or provider (V…) key with its claims",
                },
                Err(e) => JwtError::Malformed(e.to_string()),
            });
        };
    if !is_type(&issuer, KeyPairType::Account) {
        return Err(JwtError::WrongIssuer {
            issuer,
            expected: "an account key (A…)",
        });
    }
    check_issuer(&issuer, &policy.entity_issuers)?;
    Ok((
        Entity {
            kind,
            public_key: subject,
            issuer,
        },
        dates,
    ))
}

/// Verifies a host JWT at time `now`.
pub fn verify_host(
    token: &str,
    policy: &JwtPolicy,
    now: SystemTime,
) -> Result<HostIdentity, JwtError> {
    verify_host_dated(token, policy, now).map(|(h, _)| h)
}

fn verify_host_dated(
    token: &str,
    policy: &JwtPolicy,
    now: SystemTime,
) -> Result<(HostIdentity, Dates), JwtError> {
    let claims = Claims::<Host>::decode(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if !is_type(&claims.subject, KeyPairType::Server) {
        return Err(JwtError::WrongSubject {
            subject: claims.subject,
            expected: "a host server key (N…)",
        });
    }
    if claims.metadata.is_none() {
        return Err(JwtError::Malformed("no wascap host claims".into()));
    }
    let dates = check_common(token, &claims, now, policy.leeway)?;
    if key_type(&claims.issuer).is_none() {
        return Err(JwtError::WrongIssuer {
            issuer: claims.issuer,
            expected: "a public nkey",
        });
    }
    check_issuer(&claims.issuer, &policy.host_issuers)?;
    Ok((
        HostIdentity {
            public_key: claims.subject,
            issuer: claims.issuer,
        },
        dates,
    ))
}

/// Tokens kept by [`VerifiedTokens`], per kind, at most.
pub const VERIFIED_TOKENS_MAX: usize = 1024;

type Kept<T> = Mutex<HashMap<[u8; 32], (T, Dates)>>;

/// Entity and host tokens that passed [`verify_entity`] / [`verify_host`], keyed on the SHA-256
/// of their full bytes (a token that differs in any byte is checked in full; the tokens are not
/// kept). Only tokens that passed every check are kept, at most [`VERIFIED_TOKENS_MAX`] per
/// kind (emptied when full). What a kept token skips is the part of the check that depends on
/// its bytes alone (decoding, the Ed25519 signature, the subject and issuer key types); its
/// `exp`/`nbf` (with the policy's leeway) and the issuer allow-list are checked again on every
/// use, in the same order as the full check, so the answers are the same as without it.
pub struct VerifiedTokens {
    entities: Kept<Entity>,
    hosts: Kept<HostIdentity>,
    max: usize,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_max(VERIFIED_TOKENS_MAX)
    }
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("entities", &lock(&self.entities).len())
            .field("hosts", &lock(&self.hosts).len())
            .finish()
    }
}

fn lock<T>(m: &Kept<T>) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (T, Dates)>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kept<T: Clone>(
    map: &Kept<T>,
    max: usize,
    token: &str,
    full: impl FnOnce() -> Result<(T, Dates), JwtError>,
) -> Result<(T, Dates, bool), JwtError> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Some((value, dates)) = lock(map).get(&digest).cloned() {
        return Ok((value, dates, true));
    }
    let (value, dates) = full()?;
    let mut map = lock(map);
    if map.len() >= max {
        map.clear();
    }
    map.insert(digest, (value.clone(), dates));
    Ok((value, dates, false))
}

impl VerifiedTokens {
    /// Keeps at most `max` tokens of each kind.
    pub fn with_max(max: usize) -> Self {
        Self {
            entities: Kept::default(),
            hosts: Kept::default(),
            max: max.max(1),
        }
    }

    /// [`verify_entity`], skipping the signature of a token that passed before.
    pub fn entity(
        &self,
        token: &str,
        policy: &JwtPolicy,
        now: SystemTime,
    ) -> Result<Entity, JwtError> {
        let (entity, dates, was_kept) = kept(&self.entities, self.max, token, || {
            verify_entity_dated(token, policy, now)
        })?;
        if was_kept {
            dates.check(now, policy.leeway)?;
            check_issuer(&entity.issuer, &policy.entity_issuers)?;
        }
        Ok(entity)
    }

    /// [`verify_host`], skipping the signature of a token that passed before.
    pub fn host(
        &self,
        token: &str,
        policy: &JwtPolicy,
        now: SystemTime,
    ) -> Result<HostIdentity, JwtError> {
        let (host, dates, was_kept) = kept(&self.hosts, self.max, token, || {
            verify_host_dated(token, policy, now)
        })?;
        if was_kept {
            dates.check(now, policy.leeway)?;
            check_issuer(&host.issuer, &policy.host_issuers)?;
        }
        Ok(host)
    }

    /// How many tokens are kept (entity, host).
    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.entities).len(), lock(&self.hosts).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn accepts_component_provider_and_host() {
        let ids = Identities::new();
        let e =
            verify_entity(&ids.component_jwt(None, None), &JwtPolicy::default(), now()).unwrap();
        assert_eq!(e.kind, EntityKind::Component);
        assert_eq!(e.public_key, ids.component.public_key());
        assert_eq!(e.issuer, ids.account.public_key());
        let p = verify_entity(&ids.provider_jwt(), &JwtPolicy::default(), now()).unwrap();
        assert_eq!(p.kind, EntityKind::Provider);
        assert_eq!(p.public_key, ids.provider.public_key());
        let h = verify_host(&ids.host_jwt(None), &JwtPolicy::default(), now()).unwrap();
        assert_eq!(h.public_key, ids.host.public_key());
        assert_eq!(h.issuer, ids.cluster.public_key());
    }

    #[test]
    fn dates() {
        let ids = Identities::new();
        let t = unix(now());
        let expired = ids.component_jwt(Some(t - 10), None);
        assert_eq!(
            verify_entity(&expired, &JwtPolicy::default(), now()),
            Err(JwtError::Expired { expires: t - 10 })
        );
        let lenient = JwtPolicy {
            leeway: Duration::from_secs(60),
            ..JwtPolicy::default()
        };
        assert!(verify_entity(&expired, &lenient, now()).is_ok());
        let early = ids.component_jwt(None, Some(t + 3600));
        assert!(matches!(
            verify_entity(&early, &JwtPolicy::default(), now()),
            Err(JwtError::NotYetValid { .. })
        ));
        let host = ids.host_jwt(Some(t - 1));
        assert!(matches!(
            verify_host(&host, &JwtPolicy::default(), now()),
            Err(JwtError::Expired { .. })
        ));
    }

    /// A kept token answers exactly as the full check at every time and policy; other bytes
    /// and the other kind are checked in full.
    #[test]
    fn kept_tokens_answer_as_the_full_check() {
        let ids = Identities::new();
        let t = unix(now());
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let entity = ids.component_jwt(Some(t + 100), None);
        let host = ids.host_jwt(Some(t + 100));
        let kept = VerifiedTokens::default();
        let policy = JwtPolicy::default();
        assert!(kept.entity(&entity, &policy, at(t)).is_ok());
        assert!(kept.host(&host, &policy, at(t)).is_ok());
        assert_eq!(kept.counts(), (1, 1));
        let lenient = JwtPolicy {
            leeway: Duration::from_secs(60),
            ..JwtPolicy::default()
        };
        let other_account = nkeys::KeyPair::new_account().public_key();
        let closed = JwtPolicy {
            entity_issuers: [other_account.clone()].into(),
            host_issuers: [other_account].into(),
            ..JwtPolicy::default()
        };
        for policy in [&policy, &lenient, &closed] {
            for when in [at(t), at(t + 101), at(t + 161), at(t.saturating_sub(7200))] {
                assert_eq!(
                    kept.entity(&entity, policy, when),
                    verify_entity(&entity, policy, when)
                );
                assert_eq!(
                    kept.host(&host, policy, when),
                    verify_host(&host, policy, when)
                );
            }
        }
        // Expired and refused by the allow-list although kept (the negative controls).
        assert!(matches!(
            kept.entity(&entity, &policy, at(t + 101)),
            Err(JwtError::Expired { .. })
        ));
        assert!(matches!(
            kept.host(&host, &closed, at(t)),
            Err(JwtError::IssuerNotAllowed { .. })
        ));
        // One byte of the signature changed: the full check, which refuses it.
        let mut forged = entity.clone();
        let i = forged.len() - 5;
        let c = if &forged[i..=i] == "A" { "B" } else { "A" };
        forged.replace_range(i..=i, c);
        assert_eq!(
            kept.entity(&forged, &policy, at(t)),
            verify_entity(&forged, &policy, at(t))
        );
        assert!(kept.entity(&forged, &policy, at(t)).is_err());
        // A token kept as a host token is still no entity token, and the other way round.
        assert!(matches!(
            kept.entity(&host, &policy, at(t)),
            Err(JwtError::WrongSubject { .. })
        ));
        assert!(matches!(
            kept.host(&entity, &policy, at(t)),
            Err(JwtError::WrongSubject { .. })
        ));
        // Refused tokens are not kept.
        assert_eq!(kept.counts(), (1, 1));
    }

    #[test]
    fn kept_tokens_are_bounded() {
        let ids = Identities::new();
        let kept = VerifiedTokens::with_max(3);
        for i in 0..8 {
            let token = ids.component_jwt(Some(unix(now()) + 1000 + i), None);
            assert!(kept.entity(&token, &JwtPolicy::default(), now()).is_ok());
            assert!(kept.counts().0 <= 3);
        }
        assert!(kept.counts().0 >= 1);
    }

    #[test]
    fn kinds_are_not_interchangeable() {
        let ids = Identities::new();
        let entity = ids.component_jwt(None, None);
        assert!(matches!(
            verify_host(&entity, &JwtPolicy::default(), now()),
            Err(JwtError::WrongSubject { .. })
        ));
        let host = ids.host_jwt(None);
        assert!(matches!(
            verify_entity(&host, &JwtPolicy::default(), now()),
            Err(JwtError::WrongSubject { .. })
        ));
        // A component token signed by something other than an account.
        let by_cluster = mint_component(&ids.cluster, &ids.component, None, None);
        assert!(matches!(
            verify_entity(&by_cluster, &JwtPolicy::default(), now()),
            Err(JwtError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn forged_and_malformed() {
        let ids = Identities::new();
        let token = ids.component_jwt(None, None);
        // Claims re-signed by another account but still naming ours as issuer.
        let other = nkeys::KeyPair::new_account();
        let forged = mint_component_claiming(&other, &ids.account.public_key(), &ids.component);
        assert!(matches!(
            verify_entity(&forged, &JwtPolicy::default(), now()),
            Err(JwtError::BadSignature { .. })
        ));
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = "AAAA";
        // A damaged signature: refused as a bad signature by the issuer the token names.
        assert_eq!(
            verify_entity(&parts.join("."), &JwtPolicy::default(), now()),
            Err(JwtError::BadSignature {
                issuer: ids.account.public_key()
            })
        );
        for garbage in ["", "a.b", "a.b.c", "....", "\u{0}.x.y"] {
            assert!(matches!(
                verify_entity(garbage, &JwtPolicy::default(), now()),
                Err(JwtError::Malformed(_))
            ));
            assert!(matches!(
                verify_host(garbage, &JwtPolicy::default(), now()),
                Err(JwtError::Malformed(_))
            ));
        }
    }

    #[test]
    fn allow_lists() {
        let ids = Identities::new();
        let policy = JwtPolicy {
            entity_issuers: BTreeSet::from(["AOTHER".to_owned()]),
            host_issuers: BTreeSet::from([ids.cluster.public_key()]),
            ..JwtPolicy::default()
        };
        assert!(matches!(
            verify_entity(&ids.component_jwt(None, None), &policy, now()),
            Err(JwtError::IssuerNotAllowed { .. })
        ));
        assert!(verify_host(&ids.host_jwt(None), &policy, now()).is_ok());
    }
}

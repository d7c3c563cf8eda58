//! Access grants: what one entry of an entity's mapping lets it read.
//!
//! Mappings are stored as the reference backend (`secrets-nats-kv`) stores them: entity public
//! key → JSON array of strings. Each string is a [`Grant`]:
//!
//! - a plain name (`db`) is the reference's grant: the entity may read `db`, whatever account
//!   (among those the server accepts) signed its JWT, from the store's default mount;
//! - a qualified entry binds more, with `;`-separated attributes after the name:
//!   `db;issuer=A…` only when the entity JWT was signed by that account, `db;mount=team-b` only
//!   from that OpenBao mount (any other mount needs a grant naming it), or both.
//!
//! `;` is neither a JetStream KV key character nor an OpenBao path character, so a qualified
//! entry never collides with a secret name, and a reference backend reading the same bucket
//! never matches it: it fails closed instead of serving a bound grant to anyone.
//!
//! The application's policy may name a mount (`properties.mount_path`, or
//! `properties.mount`); [`policy_mount`] reads it the way the OpenBao store does, so the mount
//! that is authorized is the mount that is read.

use std::fmt;

use nkeys::{KeyPair, KeyPairType};
use serde_json::Value;

/// Separates a grant's name from its attributes.
pub const GRANT_SEPARATOR: char = ';';

/// One entry of a mapping: a secret name, optionally bound to the account that must have signed
/// the entity JWT and to a mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// The secret's name (path).
    pub secret: String,
    /// The account (`A…`) that must have signed the entity JWT; `None`: any accepted issuer.
    pub issuer: Option<String>,
    /// The mount it may be read from; `None`: the store's default mount.
    pub mount: Option<String>,
}

/// Why a mapping entry is not a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Nothing before the first `;`.
    #[error("mapping entry {entry:?} names no secret")]
    NoSecret {
        /// The entry.
        entry: String,
    },
    /// An attribute other than `issuer=` and `mount=`, or one without `=`.
    #[error(
        "mapping entry {entry:?}: unknown attribute {attribute:?} (expected issuer=A… or mount=PATH)"
    )]
    UnknownAttribute {
        /// The entry.
        entry: String,
        /// The attribute.
        attribute: String,
    },
    /// The same attribute twice.
    #[error("mapping entry {entry:?} gives {attribute} twice")]
    Duplicate {
        /// The entry.
        entry: String,
        /// `issuer` or `mount`.
        attribute: &'static str,
    },
    /// The issuer is not an account public key.
    #[error(
        "mapping issuer {issuer:?} is not an account public key (A…), the key that signs components and providers"
    )]
    NotAnAccount {
        /// The value.
        issuer: String,
    },
    /// The mount is empty or holds `;`.
    #[error("mapping mount {mount:?} is empty or holds ';'")]
    BadMount {
        /// The value.
        mount: String,
    },
}

/// Whether `key` is an account public key (`A…`).
pub fn is_account_key(key: &str) -> bool {
    KeyPair::from_public_key(key).is_ok_and(|k| matches!(k.key_pair_type(), KeyPairType::Account))
}

/// Whether `key` is a cluster public key (`C…`), the kind wasmCloud hosts sign host JWTs with.
pub fn is_cluster_key(key: &str) -> bool {
    KeyPair::from_public_key(key).is_ok_and(|k| matches!(k.key_pair_type(), KeyPairType::Cluster))
}

impl Grant {
    /// A plain grant (the reference backend's): `secret`, any accepted issuer, default mount.
    pub fn plain(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            issuer: None,
            mount: None,
        }
    }

    /// This grant bound to `issuer` (an account key, checked).
    pub fn with_issuer(mut self, issuer: &str) -> Result<Self, GrantError> {
        if !is_account_key(issuer) {
            return Err(GrantError::NotAnAccount {
                issuer: issuer.to_owned(),
            });
        }
        self.issuer = Some(issuer.to_owned());
        Ok(self)
    }

    /// This grant bound to `mount` (surrounding `/` dropped).
    pub fn with_mount(mut self, mount: &str) -> Result<Self, GrantError> {
        let trimmed = mount.trim_matches('/');
        if trimmed.is_empty() || trimmed.contains(GRANT_SEPARATOR) {
            return Err(GrantError::BadMount {
                mount: mount.to_owned(),
            });
        }
        self.mount = Some(trimmed.to_owned());
        Ok(self)
    }

    /// Whether this is a plain name, stored exactly as the reference backend stores it.
    pub fn is_plain(&self) -> bool {
        self.issuer.is_none() && self.mount.is_none()
    }

    /// Parses a stored mapping entry.
    pub fn parse(entry: &str) -> Result<Self, GrantError> {
        let mut parts = entry.split(GRANT_SEPARATOR);
        let secret = parts.next().unwrap_or_default();
        if secret.is_empty() {
            return Err(GrantError::NoSecret {
                entry: entry.to_owned(),
            });
        }
        let mut grant = Self::plain(secret);
        for attribute in parts {
            let unknown = || GrantError::UnknownAttribute {
                entry: entry.to_owned(),
                attribute: attribute.to_owned(),
            };
            let (name, value) = attribute.split_once('=').ok_or_else(unknown)?;
            let duplicate = |attribute| GrantError::Duplicate {
                entry: entry.to_owned(),
                attribute,
            };
            grant = match name {
                "issuer" if grant.issuer.is_some() => return Err(duplicate("issuer")),
                "issuer" => grant.with_issuer(value)?,
                "mount" if grant.mount.is_some() => return Err(duplicate("mount")),
                "mount" => grant.with_mount(value)?,
                _ => return Err(unknown()),
            };
        }
        Ok(grant)
    }

    /// Whether this grant lets an entity whose JWT `entity_issuer` signed read `secret` from
    /// `mount`. `default_mount` is the store's default mount (`None`: the store has no mounts,
    /// and only grants without a mount apply); `mount` is the one the request asks for
    /// (`None`: the default).
    pub fn permits(
        &self,
        secret: &str,
        entity_issuer: &str,
        mount: Option<&str>,
        default_mount: Option<&str>,
    ) -> bool {
        if self.secret != secret {
            return false;
        }
        if self.issuer.as_deref().is_some_and(|i| i != entity_issuer) {
            return false;
        }
        match default_mount {
            None => self.mount.is_none(),
            Some(default) => {
                let granted = self.mount.as_deref().unwrap_or(default);
                let asked = mount.unwrap_or(default);
                granted == asked
            }
        }
    }
}

impl fmt::Display for Grant {
    /// The stored form: the plain name, then `;issuer=…` and `;mount=…` when bound.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.secret)?;
        if let Some(issuer) = &self.issuer {
            write!(f, "{GRANT_SEPARATOR}issuer={issuer}")?;
        }
        if let Some(mount) = &self.mount {
            write!(f, "{GRANT_SEPARATOR}mount={mount}")?;
        }
        Ok(())
    }
}

/// The mount an application's policy names (`properties.mount_path`, else
/// `properties.mount`), surrounding `/` dropped; `None` when it names none.
pub fn policy_mount(policy: &str) -> Option<String> {
    let policy = serde_json::from_str::<Value>(policy).ok()?;
    let props = policy.get("properties")?;
    props
        .get("mount_path")
        .or_else(|| props.get("mount"))
        .and_then(Value::as_str)
        .map(|m| m.trim_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_qualified_round_trip() {
        let account = KeyPair::new_account().public_key();
        assert_eq!(Grant::parse("db").unwrap(), Grant::plain("db"));
        assert!(Grant::parse("db").unwrap().is_plain());
        let entry = format!("app/db;issuer={account};mount=team-b");
        let grant = Grant::parse(&entry).unwrap();
        assert_eq!(grant.issuer.as_deref(), Some(account.as_str()));
        assert_eq!(grant.mount.as_deref(), Some("team-b"));
        assert_eq!(grant.to_string(), entry);
        // Attribute order does not matter; the stored form is canonical.
        let swapped = format!("app/db;mount=/team-b/;issuer={account}");
        assert_eq!(Grant::parse(&swapped).unwrap().to_string(), entry);
    }

    #[test]
    fn bad_entries_are_refused() {
        let account = KeyPair::new_account().public_key();
        let module = KeyPair::new_module().public_key();
        let entry = |e: &str| e.to_owned();
        let twice = format!("db;issuer={account};issuer={account}");
        for (bad, why) in [
            (String::new(), GrantError::NoSecret { entry: entry("") }),
            (
                ";issuer=x".to_owned(),
                GrantError::NoSecret {
                    entry: entry(";issuer=x"),
                },
            ),
            (
                "db;color=red".to_owned(),
                GrantError::UnknownAttribute {
                    entry: entry("db;color=red"),
                    attribute: entry("color=red"),
                },
            ),
            (
                "db;issuer".to_owned(),
                GrantError::UnknownAttribute {
                    entry: entry("db;issuer"),
                    attribute: entry("issuer"),
                },
            ),
            (
                format!("db;issuer={module}"),
                GrantError::NotAnAccount { issuer: module },
            ),
            (
                "db;mount=".to_owned(),
                GrantError::BadMount { mount: entry("") },
            ),
            (
                "db;mount=/".to_owned(),
                GrantError::BadMount { mount: entry("/") },
            ),
            (
                twice.clone(),
                GrantError::Duplicate {
                    entry: twice,
                    attribute: "issuer",
                },
            ),
            (
                "db;mount=a;mount=b".to_owned(),
                GrantError::Duplicate {
                    entry: entry("db;mount=a;mount=b"),
                    attribute: "mount",
                },
            ),
        ] {
            assert_eq!(Grant::parse(&bad).unwrap_err(), why, "{bad:?}");
        }
    }

    #[test]
    fn permits_binds_issuer_and_mount() {
        let a1 = KeyPair::new_account().public_key();
        let a2 = KeyPair::new_account().public_key();
        let plain = Grant::plain("db");
        assert!(plain.permits("db", &a2, None, None));
        assert!(!plain.permits("other", &a1, None, None));
        let bound = Grant::plain("db").with_issuer(&a1).unwrap();
        assert!(bound.permits("db", &a1, None, None));
        assert!(!bound.permits("db", &a2, None, None));
        // Mounts: the default mount unless the grant names another.
        let secret = Some("secret");
        assert!(plain.permits("db", &a1, None, secret));
        assert!(plain.permits("db", &a1, Some("secret"), secret));
        assert!(!plain.permits("db", &a1, Some("team-b"), secret));
        let team = Grant::plain("db").with_mount("team-b").unwrap();
        assert!(team.permits("db", &a1, Some("team-b"), secret));
        assert!(!team.permits("db", &a1, None, secret));
        // A store without mounts: only grants without one apply, the policy's mount is moot.
        assert!(plain.permits("db", &a1, Some("anything"), None));
        assert!(!team.permits("db", &a1, Some("team-b"), None));
    }

    #[test]
    fn policy_mounts() {
        let p = |props: &str| format!(r#"{{"type":"x","properties":{props}}}"#);
        assert_eq!(policy_mount(&p("{}")), None);
        assert_eq!(
            policy_mount(&p(r#"{"mount_path":"/team/"}"#)).as_deref(),
            Some("team")
        );
        assert_eq!(
            policy_mount(&p(r#"{"mount":"team"}"#)).as_deref(),
            Some("team")
        );
        assert_eq!(policy_mount("not json"), None);
    }
}

//! Where secrets and mappings live: one async trait for values ([`SecretStore`]) and one for
//! access mappings ([`MappingStore`]), and their implementations.
//!
//! - [`EmbeddedSecrets`]: the default, over any [`anchorage_store::Store`] (the redb
//!   `EmbeddedStore` in production): values sealed with the encryption key, every version kept
//!   (up to a history limit), mappings beside them, every write a compare-and-swap.
//! - [`JetStreamSecrets`]: NATS JetStream KV in the reference `secrets-nats-kv` layout (bucket
//!   `WASMCLOUD_SECRETS`, mappings in `SECRETS_<backend>_state`), with compare-and-swap instead
//!   of the reference's lock stream.
//! - [`OpenBaoSecrets`]: Vault/OpenBao KV v2, values only (mappings come from another store).
//!
//! Values are handed over as [`VersionedSecret`]s (secrecy types, zeroized when dropped).
//! Errors carry keys and what failed, never a value: their text goes back to hosts as
//! `UpstreamError`.

use std::collections::{BTreeMap, BTreeSet};

use anchorage_secrets::{Grant, SecretLookup, SecretValue, VersionedSecret};
use async_trait::async_trait;

mod embedded;
mod jetstream;
mod openbao;

pub use embedded::EmbeddedSecrets;
pub use jetstream::{
    ADMIN_REPLAY_MAX_AGE, AUTO_REPLICAS, BucketReport, JetStreamConfig, JetStreamSecrets,
    MAX_REPLICAS, ReplicaChoice, choose_replicas,
};
pub use openbao::{OpenBaoAuth, OpenBaoConfig, OpenBaoSecrets};

/// The reference backend's secrets bucket.
pub const DEFAULT_BUCKET: &str = "WASMCLOUD_SECRETS";

/// How many versions of a secret are kept (the reference backend's default).
pub const DEFAULT_HISTORY: u32 = 64;

/// Why a store call failed. The text never holds a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreFailure {
    /// The underlying store or service failed.
    #[error("{store} store failed to {action}")]
    Backend {
        /// Which store (`embedded`, `jetstream`, `openbao`).
        store: &'static str,
        /// What it was doing, with the key involved.
        action: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A secret name or entity key the store cannot hold.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `secret name` or `entity`.
        what: &'static str,
        /// The name.
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A stored value opens with none of the configured encryption keys.
    #[error(
        "the stored value of {key:?} (version {version}) opens with none of the encryption keys"
    )]
    Undecryptable {
        /// The secret.
        key: String,
        /// Its version.
        version: String,
    },
    /// A stored record does not parse.
    #[error("the stored record {key:?} is damaged: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Compare-and-swap kept losing against other writers.
    #[error("{key:?} kept changing under {attempts} attempts to update it")]
    Contended {
        /// The store key.
        key: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A replicated JetStream bucket on a nats-server older than 2.9.21, whose clustered
    /// compare-and-swap is not serializable (nats-server#4320): concurrent writers expecting
    /// one revision can all succeed, losing acknowledged writes (mapping changes, the admin
    /// replay guard's create-only writes). Refused unless explicitly allowed.
    #[error(
        "bucket {bucket} has {replicas} replicas but nats-server {server_version} does not \
         serialize compare-and-swap on a replicated stream (nats-server#4320, fixed in \
         {since}: concurrent writers expecting one revision can all succeed, losing \
         acknowledged mapping changes and admitting a replayed admin token): upgrade every \
         nats-server to {since} or later, or use one replica (`--replicas 1`; an existing \
         bucket: `nats stream edit KV_{bucket} --replicas 1 --force`), or accept the risk with \
         --allow-unserializable-cas"
    )]
    UnserializableCas {
        /// The version of the server the store is connected to.
        server_version: String,
        /// The bucket.
        bucket: String,
        /// Its replicas (or those about to be asked for).
        replicas: usize,
        /// The first serializable version (`2.9.21`).
        since: String,
    },
    /// The service refused our credentials (an OpenBao token without the policy, a failed
    /// login).
    #[error("{store} store refused the credentials to {action}")]
    AuthFailed {
        /// Which store.
        store: &'static str,
        /// What we were doing.
        action: String,
    },
    /// The operation does not exist for this store.
    #[error("the {store} store does not support {operation}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// The operation.
        operation: &'static str,
    },
}

impl StoreFailure {
    pub(crate) fn backend(
        store: &'static str,
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreFailure::Backend {
            store,
            action: action.into(),
            source: source.into(),
        }
    }
}

/// The attempts a compare-and-swap loop makes before [`StoreFailure::Contended`].
pub(crate) const CAS_ATTEMPTS: u32 = 32;

/// What a re-encryption did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// Secrets looked at.
    pub secrets: usize,
    /// Stored values (versions) re-sealed with the current key.
    pub resealed: usize,
    /// Stored values already sealed with the current key.
    pub already_current: usize,
    /// Whether the store then compacted its storage, so that the replaced ciphertexts no
    /// longer linger in its free space (the embedded redb file).
    pub compacted: bool,
    /// Copies sealed with a previous key that the store still keeps and cannot rewrite
    /// (JetStream revisions kept as history).
    pub stale_copies: usize,
    /// What remains of the ciphertexts sealed with a previous key, for the output and log.
    pub remains: &'static str,
}

/// What [`SecretStore::describe`] tells of a secret: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// The version, as [`VersionedSecret::version`].
    pub version: String,
    /// True for a UTF-8 string value, false for bytes.
    pub string: bool,
    /// The value's length in bytes.
    pub bytes: usize,
}

/// The secrets: read by the server, written by the admin commands.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The store's kind (`embedded`, `jetstream`, `openbao`), for messages.
    fn kind(&self) -> &'static str;

    /// The mount read unless the application's policy names another (OpenBao), or `None` for
    /// stores without mounts. Mapping grants without a mount cover this mount only.
    fn default_mount(&self) -> Option<&str> {
        None
    }

    /// The requested secret (latest, or the version asked for), or `None` when absent.
    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure>;

    /// The version, kind and size of the requested secret without its value, or `None` when
    /// absent. Stores that can tell without opening the value (the embedded store) need no
    /// encryption key for it; the default reads the value.
    async fn describe(&self, lookup: SecretLookup<'_>) -> Result<Option<SecretInfo>, StoreFailure> {
        Ok(self.get(lookup).await?.map(|secret| {
            let (plain, string) = bytes_of(&secret.value);
            SecretInfo {
                version: secret.version,
                string,
                bytes: plain.len(),
            }
        }))
    }

    /// Stores a new version of `key`; returns the version.
    async fn put(&self, key: &str, value: SecretValue) -> Result<String, StoreFailure>;

    /// Removes `key` with all its versions; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreFailure>;

    /// The names of the stored secrets, sorted.
    async fn keys(&self) -> Result<Vec<String>, StoreFailure>;

    /// Re-seals every stored value not sealed with the current encryption key (the store's
    /// keyring must hold the old key as a previous key), with compare-and-swap, so servers can
    /// keep serving meanwhile.
    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure>;
}

/// Which secrets each entity may read. An entity's mapping is a set of entries, each a
/// [`Grant`] in its stored form: a plain secret name (the reference layout), or a name bound to
/// the account that must sign the entity JWT and/or to a mount (`db;issuer=A…;mount=team-b`).
#[async_trait]
pub trait MappingStore: Send + Sync {
    /// The entries of `entity`'s mapping (empty when unmapped).
    async fn secrets_of(&self, entity: &str) -> Result<BTreeSet<String>, StoreFailure>;

    /// Adds the entries `names` (plain names or grants, checked and stored in canonical form)
    /// to `entity`'s mapping; returns its entries afterwards.
    async fn add_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure>;

    /// Takes `names` away from `entity`: a plain name removes every grant of that secret
    /// (whatever it is bound to), a qualified entry exactly that grant; returns its entries
    /// afterwards.
    async fn remove_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure>;

    /// Every entity with its names.
    async fn list_mappings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreFailure>;
}

/// Checks a mapping entry (a [`Grant`]: its secret name with `check_name`, its issuer and
/// mount) and returns its canonical stored form.
pub(crate) fn check_mapping_entry(
    entry: &str,
    check_name: impl Fn(&str) -> Result<(), StoreFailure>,
) -> Result<String, StoreFailure> {
    let grant = Grant::parse(entry).map_err(|e| StoreFailure::InvalidName {
        what: "mapping entry",
        name: entry.to_owned(),
        reason: e.to_string(),
    })?;
    check_name(&grant.secret)?;
    Ok(grant.to_string())
}

/// Removes `names` from a mapping: a plain name takes every grant of that secret, a qualified
/// entry exactly that grant (an entry that does not parse, exactly that text).
pub(crate) fn remove_entries(set: &mut BTreeSet<String>, names: &[String]) {
    for name in names {
        match Grant::parse(name) {
            Ok(grant) if grant.is_plain() => set.retain(|entry| {
                Grant::parse(entry).map_or(entry != name, |g| g.secret != grant.secret)
            }),
            Ok(grant) => {
                set.remove(&grant.to_string());
            }
            Err(_) => {
                set.remove(name);
            }
        }
    }
}

/// Turns opened bytes into a value: text when `string`, bytes otherwise.
pub(crate) fn value_from(plain: &[u8], string: bool) -> SecretValue {
    match std::str::from_utf8(plain) {
        Ok(text) if string => SecretValue::String(text.to_owned().into()),
        _ => SecretValue::Binary(Box::<[u8]>::from(plain).into()),
    }
}

/// The bytes of a value, and whether it is text.
pub(crate) fn bytes_of(value: &SecretValue) -> (&[u8], bool) {
    use secrecy::ExposeSecret as _;
    match value {
        SecretValue::String(s) => (s.expose_secret().as_bytes(), true),
        SecretValue::Binary(b) => (b.expose_secret(), false),
    }
}

/// Checks an entity public key: a component (`M…`) or provider (`V…`) nkey.
pub fn check_entity(entity: &str) -> Result<(), StoreFailure> {
    let ok = (entity.starts_with('M') || entity.starts_with('V'))
        && nkeys::KeyPair::from_public_key(entity).is_ok();
    if ok {
        Ok(())
    } else {
        Err(StoreFailure::InvalidName {
            what: "entity",
            name: entity.to_owned(),
            reason: "not a component (M…) or provider (V…) public key".to_owned(),
        })
    }
}

/// Checks a secret name as JetStream KV keys go (the reference layout uses names as keys).
pub fn check_secret_name(name: &str) -> Result<(), StoreFailure> {
    anchorage_store::validate_key(name).map_err(|e| StoreFailure::InvalidName {
        what: "secret name",
        name: name.to_owned(),
        reason: match e {
            anchorage_store::StoreError::InvalidKey { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        },
    })
}

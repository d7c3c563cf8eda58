//! [`JetStreamSecrets`]: NATS JetStream KV in the layout of wasmCloud's reference
//! `secrets-nats-kv` backend, so a deployment switches to us without migrating data.
//!
//! - Values: bucket `WASMCLOUD_SECRETS` (configurable), key = the secret's name, value = the
//!   plaintext sealed by the encryption xkey to itself; `version` = the KV revision. A version
//!   is read with a direct get of that stream sequence (checked to belong to the key and to be
//!   a put), not by replaying the key's history as the reference does.
//! - Mappings: bucket `SECRETS_<backend>_state`, key = entity public key, value = JSON array
//!   of secret names. An entry bound to the issuer account or a mount is stored in the same
//!   array as `name;issuer=A…;mount=…` ([`anchorage_secrets::Grant`]); a reference backend
//!   reading the bucket never matches such an entry, so it fails closed.
//! - Writes use KV compare-and-swap (`create`/`update` with the expected revision) instead of
//!   the reference's lock stream.
//!
//! The layout keeps no kind: a value that is valid UTF-8 is served as a string, anything else
//! as binary (the reference does the same test, but then sends binary values still sealed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret};
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures::TryStreamExt as _;

use super::{
    CAS_ATTEMPTS, DEFAULT_BUCKET, DEFAULT_HISTORY, MappingStore, RotationReport, SecretStore,
    StoreFailure, bytes_of, check_entity, check_mapping_entry, check_secret_name, remove_entries,
    value_from,
};
use crate::keys::Keyring;

const STORE: &str = "jetstream";
const KV_OPERATION: &str = "KV-Operation";

/// Where the buckets are and whether to create them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The secrets bucket ([`DEFAULT_BUCKET`]).
    pub bucket: String,
    /// The backend name; mappings live in `SECRETS_<backend>_state`.
    pub backend: String,
    /// Versions kept per secret when the bucket is created ([`DEFAULT_HISTORY`]).
    pub history: u32,
    /// Create missing buckets (as the reference does at start-up).
    pub create: bool,
}

impl JetStreamConfig {
    /// The reference defaults for `backend`.
    pub fn new(backend: &str) -> Self {
        Self {
            bucket: DEFAULT_BUCKET.to_owned(),
            backend: backend.to_owned(),
            history: DEFAULT_HISTORY,
            create: true,
        }
    }

    /// `SECRETS_<backend>_state`.
    pub fn state_bucket(&self) -> String {
        format!("SECRETS_{}_state", self.backend)
    }
}

/// Secrets and mappings in JetStream KV buckets.
#[derive(Clone)]
pub struct JetStreamSecrets {
    values: kv::Store,
    state: kv::Store,
    keys: Arc<Keyring>,
    bucket: String,
}

impl std::fmt::Debug for JetStreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSecrets")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    history: i64,
    create: bool,
) -> Result<kv::Store, StoreFailure> {
    match js.get_key_value(name).await {
        Ok(store) => Ok(store),
        Err(e)
            if create
                && e.kind() == async_nats::jetstream::context::KeyValueErrorKind::GetBucket =>
        {
            js.create_key_value(kv::Config {
                bucket: name.to_owned(),
                description: description.to_owned(),
                history,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreFailure::backend(STORE, format!("create bucket {name}"), e))
        }
        Err(e) => Err(StoreFailure::backend(
            STORE,
            format!("open bucket {name}"),
            e,
        )),
    }
}

impl JetStreamSecrets {
    /// Opens (or creates) the buckets through `client`.
    pub async fn open(
        client: async_nats::Client,
        config: &JetStreamConfig,
        keys: Arc<Keyring>,
    ) -> Result<Self, StoreFailure> {
        let js = jetstream::new(client);
        let history = i64::from(config.history.clamp(1, 64));
        let values = bucket(&js, &config.bucket, "Secrets store", history, config.create).await?;
        let state = bucket(
            &js,
            &config.state_bucket(),
            "Secrets state store",
            1,
            config.create,
        )
        .await?;
        Ok(Self {
            values,
            state,
            keys,
            bucket: config.bucket.clone(),
        })
    }

    async fn entry_at(&self, key: &str, revision: u64) -> Result<Option<kv::Entry>, StoreFailure> {
        // A direct get of the sequence, checked to be this key's put. (async-nats's own
        // `entry_for_revision` prints to stdout on a mismatch.)
        let subject = format!("$KV.{}.{key}", self.bucket);
        let message = match self.values.stream.direct_get(revision).await {
            Ok(m) => m,
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => {
                return Err(StoreFailure::backend(
                    STORE,
                    format!("read {key:?} at revision {revision}"),
                    e,
                ));
            }
        };
        let deleted = message
            .headers
            .get(KV_OPERATION)
            .is_some_and(|op| op.as_str() != "PUT");
        if message.subject.as_str() != subject || deleted {
            return Ok(None);
        }
        Ok(Some(kv::Entry {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            value: message.payload,
            revision: message.sequence,
            delta: 0,
            created: message.time,
            operation: kv::Operation::Put,
            seen_current: false,
        }))
    }

    async fn latest(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<kv::Entry>, StoreFailure> {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| StoreFailure::backend(STORE, format!("read {key:?}"), e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }

    async fn modify_mapping(
        &self,
        entity: &str,
        change: impl Fn(&mut BTreeSet<String>) + Send + Sync,
    ) -> Result<BTreeSet<String>, StoreFailure> {
        for _ in 0..CAS_ATTEMPTS {
            let entry =
                self.state.entry(entity).await.map_err(|e| {
                    StoreFailure::backend(STORE, format!("read mapping {entity}"), e)
                })?;
            let mut set = match &entry {
                Some(e) if e.operation == kv::Operation::Put => parse_set(entity, &e.value)?,
                _ => BTreeSet::new(),
            };
            let before = set.clone();
            change(&mut set);
            if set == before {
                // Nothing to write (an entity that was never mapped stays absent).
                return Ok(set);
            }
            let bytes = serde_json::to_vec(&set)
                .map_err(|e| StoreFailure::backend(STORE, "encode a mapping", e))?;
            let written = match &entry {
                None => self
                    .state
                    .create(entity, bytes.into())
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (
                            e.kind() == kv::CreateErrorKind::AlreadyExists,
                            e.to_string(),
                        )
                    }),
                Some(e) => self
                    .state
                    .update(entity, bytes.into(), e.revision)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    }),
            };
            match written {
                Ok(_) => return Ok(set),
                Err((true, _)) => continue,
                Err((false, text)) => {
                    return Err(StoreFailure::backend(
                        STORE,
                        format!("write mapping {entity}"),
                        text,
                    ));
                }
            }
        }
        Err(StoreFailure::Contended {
            key: entity.to_owned(),
            attempts: CAS_ATTEMPTS,
        })
    }
}

fn parse_set(key: &str, bytes: &[u8]) -> Result<BTreeSet<String>, StoreFailure> {
    serde_json::from_slice(bytes).map_err(|e| StoreFailure::Corrupt {
        key: key.to_owned(),
        reason: format!("{:?} error at column {}", e.classify(), e.column()),
    })
}

#[async_trait]
impl SecretStore for JetStreamSecrets {
    fn kind(&self) -> &'static str {
        STORE
    }

    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure> {
        if check_secret_name(lookup.key).is_err() {
            return Ok(None);
        }
        let entry = match lookup.version {
            None => self.latest(&self.values, lookup.key).await?,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(rev) if rev > 0 => self.entry_at(lookup.key, rev).await?,
                _ => None,
            },
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let version = entry.revision.to_string();
        let Some((plain, _)) = self.keys.open(&entry.value) else {
            return Err(StoreFailure::Undecryptable {
                key: lookup.key.to_owned(),
                version,
            });
        };
        Ok(Some(VersionedSecret {
            version,
            value: value_from(&plain, true),
        }))
    }

    async fn put(&self, key: &str, value: SecretValue) -> Result<String, StoreFailure> {
        check_secret_name(key)?;
        let (plain, _) = bytes_of(&value);
        let sealed = self
            .keys
            .seal(plain)
            .map_err(|e| StoreFailure::backend(STORE, format!("seal {key:?}"), e))?;
        let revision = self
            .values
            .put(key, sealed.into())
            .await
            .map_err(|e| StoreFailure::backend(STORE, format!("write {key:?}"), e))?;
        Ok(revision.to_string())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreFailure> {
        check_secret_name(key)?;
        let existed = self.latest(&self.values, key).await?.is_some();
        if existed {
            self.values
                .purge(key)
                .await
                .map_err(|e| StoreFailure::backend(STORE, format!("purge {key:?}"), e))?;
        }
        Ok(existed)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreFailure> {
        let keys = self
            .values
            .keys()
            .await
            .map_err(|e| StoreFailure::backend(STORE, "list secrets", e))?;
        let mut names: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| StoreFailure::backend(STORE, "list secrets", e))?;
        names.sort();
        Ok(names)
    }

    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        let mut report = RotationReport::default();
        for key in self.keys().await? {
            report.secrets += 1;
            let mut attempts = 0;
            loop {
                let Some(entry) = self.latest(&self.values, &key).await? else {
                    break;
                };
                let Some((plain, current)) = self.keys.open(&entry.value) else {
                    return Err(StoreFailure::Undecryptable {
                        key,
                        version: entry.revision.to_string(),
                    });
                };
                if current {
                    report.already_current += 1;
                    break;
                }
                let sealed = self
                    .keys
                    .seal(&plain)
                    .map_err(|e| StoreFailure::backend(STORE, format!("seal {key:?}"), e))?;
                match self
                    .values
                    .update(&key, sealed.into(), entry.revision)
                    .await
                {
                    Ok(_) => {
                        report.resealed += 1;
                        break;
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        attempts += 1;
                        if attempts >= CAS_ATTEMPTS {
                            return Err(StoreFailure::Contended { key, attempts });
                        }
                    }
                    Err(e) => {
                        return Err(StoreFailure::backend(STORE, format!("write {key:?}"), e));
                    }
                }
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl MappingStore for JetStreamSecrets {
    async fn secrets_of(&self, entity: &str) -> Result<BTreeSet<String>, StoreFailure> {
        if check_secret_name(entity).is_err() {
            return Ok(BTreeSet::new());
        }
        match self.latest(&self.state, entity).await? {
            Some(entry) => parse_set(entity, &entry.value),
            None => Ok(BTreeSet::new()),
        }
    }

    async fn add_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        check_entity(entity)?;
        let entries = names
            .iter()
            .map(|name| check_mapping_entry(name, check_secret_name))
            .collect::<Result<Vec<_>, _>>()?;
        self.modify_mapping(entity, |set| set.extend(entries.iter().cloned()))
            .await
    }

    async fn remove_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        check_entity(entity)?;
        self.modify_mapping(entity, |set| remove_entries(set, names))
            .await
    }

    async fn list_mappings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreFailure> {
        let keys = self
            .state
            .keys()
            .await
            .map_err(|e| StoreFailure::backend(STORE, "list mappings", e))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| StoreFailure::backend(STORE, "list mappings", e))?;
        let mut out = BTreeMap::new();
        for key in keys {
            let set = self.secrets_of(&key).await?;
            if !set.is_empty() {
                out.insert(key, set);
            }
        }
        Ok(out)
    }
}

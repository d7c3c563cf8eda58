//! [`EmbeddedSecrets`]: secrets and mappings in an [`anchorage_store::Store`] (the redb file by
//! default), every value sealed with the encryption key.
//!
//! Layout (store keys; names are base64url-encoded so any name fits the key syntax):
//! - `secrets.value.<name>` → JSON `{"next":N,"versions":[{"version":n,"kind":"string"|"binary",
//!   "sealed":"<base64 of xkv1…>"}]}`, newest last, at most the history limit;
//! - `secrets.mapping.<entity>` → JSON array of mapping entries (as the reference stores them:
//!   plain secret names; an entry bound to an issuer or mount is `name;issuer=A…;mount=…`);
//! - `secrets.admin_jti.<hex>` → the unix second until which an admin token id is kept
//!   ([`crate::admin::ReplayGuard`]): written with `create`, so the first writer wins; swept
//!   once expired.
//!
//! Rotation ([`SecretStore::reencrypt`]) re-seals every kept version, then compacts the store
//! ([`Store::compact`]: redb's free pages still held the old ciphertexts).
//!
//! The kind is stored, so a binary value that happens to be UTF-8 still comes back as binary.
//! Every write reads the record and writes it back with compare-and-swap, retrying on a lost
//! race, so several admin commands and a rotation can run against a live server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret};
use anchorage_store::{Store, StoreError};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::{
    CAS_ATTEMPTS, DEFAULT_HISTORY, MappingStore, RotationReport, SecretInfo, SecretStore,
    StoreFailure, bytes_of, check_entity, check_mapping_entry, remove_entries, value_from,
};
use crate::admin::ReplayGuard;
use crate::keys::Keyring;

const STORE: &str = "embedded";
const VALUE_PREFIX: &str = "secrets.value.";
const MAPPING_PREFIX: &str = "secrets.mapping.";
const ADMIN_JTI_PREFIX: &str = "secrets.admin_jti.";

/// The least time between two sweeps of expired admin token records, in seconds.
const REPLAY_SWEEP_INTERVAL_SECS: u64 = 60;

/// Secrets and mappings in an [`anchorage_store::Store`].
#[derive(Clone)]
pub struct EmbeddedSecrets {
    store: Arc<dyn Store>,
    keys: Arc<Keyring>,
    history: u32,
    last_sweep: Arc<AtomicU64>,
}

impl std::fmt::Debug for EmbeddedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSecrets")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Record {
    next: u64,
    versions: Vec<StoredVersion>,
}

#[derive(Serialize, Deserialize)]
struct StoredVersion {
    version: u64,
    kind: Kind,
    sealed: String,
}

/// What an xkey box adds to a value: the `xkv1` header (4 bytes), the nonce (24) and the
/// Poly1305 tag (16).
const SEAL_OVERHEAD: usize = 4 + 24 + 16;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    String,
    Binary,
}

impl EmbeddedSecrets {
    /// Secrets in `store`, sealed with `keys`, keeping [`DEFAULT_HISTORY`] versions.
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keyring>) -> Self {
        Self {
            store,
            keys,
            history: DEFAULT_HISTORY,
            last_sweep: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Keeps at most `history` versions of each secret (at least one).
    pub fn with_history(mut self, history: u32) -> Self {
        self.history = history.max(1);
        self
    }

    fn fail(action: String) -> impl FnOnce(StoreError) -> StoreFailure {
        move |e| StoreFailure::backend(STORE, action, e)
    }

    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, StoreFailure> {
        let Some(entry) = self
            .store
            .get(key)
            .await
            .map_err(Self::fail(format!("read {key:?}")))?
        else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&entry.value).map_err(|e| StoreFailure::Corrupt {
            key: key.to_owned(),
            reason: format!("{:?} error at column {}", e.classify(), e.column()),
        })?;
        Ok(Some((value, entry.revision)))
    }

    /// Reads `key`, lets `change` edit it and writes it back with compare-and-swap; `None` from
    /// `change` deletes the key. Retries on a lost race.
    async fn modify<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Result<(Option<T>, R), StoreFailure> + Send,
    ) -> Result<R, StoreFailure>
    where
        T: Serialize + for<'de> Deserialize<'de> + Send,
        R: Send,
    {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read::<T>(key).await?;
            let revision = current.as_ref().map(|(_, r)| *r);
            let (next, result) = change(current.map(|(v, _)| v))?;
            let written = match (next, revision) {
                (Some(value), rev) => {
                    let bytes = serde_json::to_vec(&value)
                        .map_err(|e| StoreFailure::backend(STORE, format!("encode {key:?}"), e))?;
                    match rev {
                        Some(rev) => self.store.update(key, bytes, rev).await.map(drop),
                        None => self.store.create(key, bytes).await.map(drop),
                    }
                }
                (None, Some(rev)) => self.store.delete(key, Some(rev)).await,
                (None, None) => Ok(()),
            };
            match written {
                Ok(()) => return Ok(result),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(Self::fail(format!("write {key:?}"))(e)),
            }
        }
        Err(StoreFailure::Contended {
            key: key.to_owned(),
            attempts: CAS_ATTEMPTS,
        })
    }

    fn open(&self, key: &str, stored: &StoredVersion) -> Result<SecretValue, StoreFailure> {
        let undecryptable = || StoreFailure::Undecryptable {
            key: key.to_owned(),
            version: stored.version.to_string(),
        };
        let sealed = STANDARD
            .decode(&stored.sealed)
            .map_err(|_| undecryptable())?;
        let (plain, _) = self.keys.open(&sealed).ok_or_else(undecryptable)?;
        Ok(value_from(&plain, stored.kind == Kind::String))
    }

    /// Deletes the admin token records whose time is past, at most once a
    /// [`REPLAY_SWEEP_INTERVAL_SECS`]. A record changed meanwhile is left alone.
    async fn sweep_replays(&self, now: u64) -> Result<(), StoreFailure> {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last.saturating_add(REPLAY_SWEEP_INTERVAL_SECS)
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let keys = self
            .store
            .keys(ADMIN_JTI_PREFIX)
            .await
            .map_err(Self::fail("list admin token records".to_owned()))?;
        for key in keys {
            let Some(entry) = self
                .store
                .get(&key)
                .await
                .map_err(Self::fail(format!("read {key:?}")))?
            else {
                continue;
            };
            let until = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            // A record that does not parse is kept: refusing a token is the safe side.
            if until.is_some_and(|until| until < now) {
                match self.store.delete(&key, Some(entry.revision)).await {
                    Ok(()) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(Self::fail(format!("delete {key:?}"))(e)),
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ReplayGuard for EmbeddedSecrets {
    async fn record_token(
        &self,
        replay_key: &str,
        remember_until: u64,
        now: u64,
    ) -> Result<bool, StoreFailure> {
        if replay_key.len() != 64 || !replay_key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreFailure::InvalidName {
                what: "admin token record",
                name: replay_key.chars().take(80).collect(),
                reason: "not 64 hex characters".to_owned(),
            });
        }
        if let Err(e) = self.sweep_replays(now).await {
            // The record below is what matters; a failed sweep only delays the clean-up.
            tracing::warn!(error = %e, "cannot sweep expired admin token records");
        }
        let key = format!("{ADMIN_JTI_PREFIX}{replay_key}");
        match self
            .store
            .create(&key, remember_until.to_string().into_bytes())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(Self::fail(format!("record {key:?}"))(e)),
        }
    }
}

fn value_key(name: &str) -> String {
    format!("{VALUE_PREFIX}{}", URL_SAFE_NO_PAD.encode(name))
}

fn mapping_key(entity: &str) -> String {
    format!("{MAPPING_PREFIX}{}", URL_SAFE_NO_PAD.encode(entity))
}

fn decode_name(store_key: &str, prefix: &str) -> Option<String> {
    let encoded = store_key.strip_prefix(prefix)?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
}

fn check_name(name: &str) -> Result<(), StoreFailure> {
    if name.is_empty() {
        return Err(StoreFailure::InvalidName {
            what: "secret name",
            name: String::new(),
            reason: "a name must not be empty".to_owned(),
        });
    }
    Ok(())
}

#[async_trait]
impl SecretStore for EmbeddedSecrets {
    fn kind(&self) -> &'static str {
        STORE
    }

    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure> {
        if lookup.key.is_empty() {
            return Ok(None);
        }
        let key = value_key(lookup.key);
        let Some((record, _)) = self.read::<Record>(&key).await? else {
            return Ok(None);
        };
        let stored = match lookup.version {
            None => record.versions.last(),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(v) => record.versions.iter().find(|s| s.version == v),
                Err(_) => None,
            },
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(Some(VersionedSecret {
            version: stored.version.to_string(),
            value: self.open(lookup.key, stored)?,
        }))
    }

    /// From the record alone: the value is not opened, so no encryption key is needed. The
    /// length is the sealed length less the xkey box's fixed overhead (`SEAL_OVERHEAD`, 44 bytes).
    async fn describe(&self, lookup: SecretLookup<'_>) -> Result<Option<SecretInfo>, StoreFailure> {
        if lookup.key.is_empty() {
            return Ok(None);
        }
        let Some((record, _)) = self.read::<Record>(&value_key(lookup.key)).await? else {
            return Ok(None);
        };
        let stored = match lookup.version {
            None => record.versions.last(),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(v) => record.versions.iter().find(|s| s.version == v),
                Err(_) => None,
            },
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        let sealed = STANDARD
            .decode(&stored.sealed)
            .map_err(|_| StoreFailure::Undecryptable {
                key: lookup.key.to_owned(),
                version: stored.version.to_string(),
            })?;
        Ok(Some(SecretInfo {
            version: stored.version.to_string(),
            string: stored.kind == Kind::String,
            bytes: sealed.len().saturating_sub(SEAL_OVERHEAD),
        }))
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<String, StoreFailure> {
        check_name(name)?;
        let (plain, string) = bytes_of(&value);
        let sealed = STANDARD.encode(
            self.keys
                .seal(plain)
                .map_err(|e| StoreFailure::backend(STORE, format!("seal {name:?}"), e))?,
        );
        let kind = if string { Kind::String } else { Kind::Binary };
        let history = self.history as usize;
        let version = self
            .modify(&value_key(name), |record: Option<Record>| {
                let mut record = record.unwrap_or_default();
                let version = record.next.max(1);
                record.next = version + 1;
                record.versions.push(StoredVersion {
                    version,
                    kind,
                    sealed: sealed.clone(),
                });
                let excess = record.versions.len().saturating_sub(history);
                record.versions.drain(..excess);
                Ok((Some(record), version))
            })
            .await?;
        Ok(version.to_string())
    }

    async fn delete(&self, name: &str) -> Result<bool, StoreFailure> {
        self.modify(&value_key(name), |record: Option<Record>| {
            Ok((None::<Record>, record.is_some()))
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, StoreFailure> {
        let keys = self
            .store
            .keys(VALUE_PREFIX)
            .await
            .map_err(Self::fail("list secrets".to_owned()))?;
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|k| decode_name(k, VALUE_PREFIX))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        let mut report = RotationReport::default();
        for name in self.keys().await? {
            report.secrets += 1;
            let keys = Arc::clone(&self.keys);
            let (resealed, current) = self
                .modify(&value_key(&name), |record: Option<Record>| {
                    let Some(mut record) = record else {
                        return Ok((None, (0, 0)));
                    };
                    let (mut resealed, mut current) = (0, 0);
                    for stored in &mut record.versions {
                        let undecryptable = || StoreFailure::Undecryptable {
                            key: name.clone(),
                            version: stored.version.to_string(),
                        };
                        let sealed = STANDARD
                            .decode(&stored.sealed)
                            .map_err(|_| undecryptable())?;
                        let (plain, is_current) = keys.open(&sealed).ok_or_else(undecryptable)?;
                        if is_current {
                            current += 1;
                            continue;
                        }
                        let again = keys.seal(&plain).map_err(|e| {
                            StoreFailure::backend(STORE, format!("seal {name:?}"), e)
                        })?;
                        stored.sealed = STANDARD.encode(again);
                        resealed += 1;
                    }
                    Ok((Some(record), (resealed, current)))
                })
                .await?;
            report.resealed += resealed;
            report.already_current += current;
        }
        // Every kept version is sealed with the current key now; the replaced records still
        // sit in the file's free pages until the file is compacted.
        report.compacted = self
            .store
            .compact()
            .await
            .map_err(Self::fail("compact the store after re-sealing".to_owned()))?;
        report.remains = if report.compacted {
            "no copy sealed with a previous key is left in the store file (re-sealed, then \
             compacted); backups or snapshots of the file taken before still hold them"
        } else {
            "every kept version is re-sealed; this store does not compact, so replaced \
             ciphertexts may remain in its free space"
        };
        tracing::info!(
            resealed = report.resealed,
            compacted = report.compacted,
            remains = report.remains,
            "re-sealed the stored values"
        );
        Ok(report)
    }
}

#[async_trait]
impl MappingStore for EmbeddedSecrets {
    async fn secrets_of(&self, entity: &str) -> Result<BTreeSet<String>, StoreFailure> {
        Ok(self
            .read::<BTreeSet<String>>(&mapping_key(entity))
            .await?
            .map(|(set, _)| set)
            .unwrap_or_default())
    }

    async fn add_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        check_entity(entity)?;
        let entries = names
            .iter()
            .map(|name| check_mapping_entry(name, check_name))
            .collect::<Result<Vec<_>, _>>()?;
        self.modify(&mapping_key(entity), |set: Option<BTreeSet<String>>| {
            let mut set = set.unwrap_or_default();
            set.extend(entries.iter().cloned());
            Ok((Some(set.clone()), set))
        })
        .await
    }

    async fn remove_mapping(
        &self,
        entity: &str,
        names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        self.modify(&mapping_key(entity), |set: Option<BTreeSet<String>>| {
            let mut set = set.unwrap_or_default();
            remove_entries(&mut set, names);
            let stored = (!set.is_empty()).then(|| set.clone());
            Ok((stored, set))
        })
        .await
    }

    async fn list_mappings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreFailure> {
        let keys = self
            .store
            .keys(MAPPING_PREFIX)
            .await
            .map_err(Self::fail("list mappings".to_owned()))?;
        let mut out = BTreeMap::new();
        for key in keys {
            let Some(entity) = decode_name(&key, MAPPING_PREFIX) else {
                continue;
            };
            if let Some((set, _)) = self.read::<BTreeSet<String>>(&key).await? {
                out.insert(entity, set);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use anchorage_store::MemoryStore;
    use secrecy::{ExposeSecret as _, SecretString};

    use super::*;
    use anchorage_secrets::XKey;

    fn lookup<'a>(key: &'a str, version: Option<&'a str>) -> SecretLookup<'a> {
        SecretLookup {
            key,
            field: None,
            version,
            policy: "",
        }
    }

    fn text(v: &VersionedSecret) -> &str {
        match &v.value {
            SecretValue::String(s) => s.expose_secret(),
            SecretValue::Binary(_) => panic!("binary"),
        }
    }

    #[tokio::test]
    async fn versions_kinds_history_and_rotation() {
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let old = XKey::generate();
        let old_seed = old.seed();
        let s = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(Keyring::new(old))).with_history(2);
        assert_eq!(
            s.put("db", SecretValue::String(SecretString::from("a")))
                .await
                .unwrap(),
            "1"
        );
        assert_eq!(
            s.put("db", SecretValue::String(SecretString::from("b")))
                .await
                .unwrap(),
            "2"
        );
        assert_eq!(
            s.put("db", SecretValue::String(SecretString::from("c")))
                .await
                .unwrap(),
            "3"
        );
        let latest = s.get(lookup("db", None)).await.unwrap().unwrap();
        assert_eq!((latest.version.as_str(), text(&latest)), ("3", "c"));
        assert_eq!(
            text(&s.get(lookup("db", Some("2"))).await.unwrap().unwrap()),
            "b"
        );
        // History 2: version 1 is gone.
        assert!(s.get(lookup("db", Some("1"))).await.unwrap().is_none());
        assert!(s.get(lookup("db", Some("x"))).await.unwrap().is_none());
        // UTF-8 bytes stay binary.
        s.put("bin", SecretValue::Binary(b"abc".to_vec().into()))
            .await
            .unwrap();
        let bin = s.get(lookup("bin", None)).await.unwrap().unwrap();
        assert!(matches!(&bin.value, SecretValue::Binary(b) if b.expose_secret() == b"abc"));
        // Nothing in the store holds a value in clear.
        for key in raw.keys("").await.unwrap() {
            let entry = raw.get(&key).await.unwrap().unwrap();
            let text = String::from_utf8_lossy(&entry.value);
            assert!(!text.contains("\"c\"") && !text.contains("abc"), "{text}");
        }
        assert_eq!(s.keys().await.unwrap(), ["bin", "db"]);

        // Rotation: new key current, old key previous.
        let ring = Keyring::new(XKey::generate())
            .with_previous(XKey::from_seed(&old_seed, "old").unwrap());
        let rotated = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(ring));
        let report = rotated.reencrypt().await.unwrap();
        assert_eq!(
            (report.secrets, report.resealed, report.already_current),
            (2, 3, 0)
        );
        let again = rotated.reencrypt().await.unwrap();
        assert_eq!((again.resealed, again.already_current), (0, 3));
        // The old key alone no longer opens anything.
        let stale = EmbeddedSecrets::new(
            Arc::clone(&raw),
            Arc::new(Keyring::new(XKey::from_seed(&old_seed, "old").unwrap())),
        );
        assert!(matches!(
            stale.get(lookup("db", None)).await,
            Err(StoreFailure::Undecryptable { .. })
        ));
        assert_eq!(
            text(&rotated.get(lookup("db", Some("2"))).await.unwrap().unwrap()),
            "b"
        );

        assert!(rotated.delete("db").await.unwrap());
        assert!(!rotated.delete("db").await.unwrap());
        assert!(rotated.get(lookup("db", None)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn describe_needs_no_key_and_tells_version_kind_and_length() {
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let s = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(Keyring::new(XKey::generate())));
        s.put("db", SecretValue::String(SecretString::from("hunter2")))
            .await
            .unwrap();
        s.put(
            "blob",
            SecretValue::Binary(vec![0u8; 300].into_boxed_slice().into()),
        )
        .await
        .unwrap();
        // Another key entirely: get cannot open the values, describe still tells.
        let other = EmbeddedSecrets::new(raw, Arc::new(Keyring::new(XKey::generate())));
        let lookup = |key| SecretLookup {
            key,
            field: None,
            version: None,
            policy: "",
        };
        assert!(other.get(lookup("db")).await.is_err(), "negative control");
        assert_eq!(
            other.describe(lookup("db")).await.unwrap(),
            Some(SecretInfo {
                version: "1".into(),
                string: true,
                bytes: 7
            })
        );
        assert_eq!(
            other.describe(lookup("blob")).await.unwrap(),
            Some(SecretInfo {
                version: "1".into(),
                string: false,
                bytes: 300
            })
        );
        assert_eq!(other.describe(lookup("nope")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn mappings() {
        let s = EmbeddedSecrets::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Keyring::new(XKey::generate())),
        );
        let entity = nkeys::KeyPair::new_module().public_key();
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(s.add_mapping(&entity, &names).await.unwrap().len(), 2);
        assert!(s.secrets_of(&entity).await.unwrap().contains("a"));
        let err = s.add_mapping("not-a-key", &names).await.unwrap_err();
        assert!(
            matches!(
                &err,
                StoreFailure::InvalidName { what: "entity", name, reason }
                    if name == "not-a-key"
                        && reason == "not a component (M…) or provider (V…) public key"
            ),
            "{err:?}"
        );
        let left = s.remove_mapping(&entity, &names[..1]).await.unwrap();
        assert_eq!(left.into_iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.list_mappings().await.unwrap().len(), 1);
        assert!(s.remove_mapping(&entity, &names).await.unwrap().is_empty());
        assert!(s.list_mappings().await.unwrap().is_empty());
        assert!(s.secrets_of(&entity).await.unwrap().is_empty());
    }

    /// Delegates to a store but never compacts: the store before this fix.
    struct NoCompaction(Arc<dyn Store>);

    #[async_trait]
    impl Store for NoCompaction {
        async fn get(&self, key: &str) -> Result<Option<anchorage_store::Entry>, StoreError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.0.put(key, value).await
        }
        async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.0.create(key, value).await
        }
        async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<u64, StoreError> {
            self.0.update(key, value, rev).await
        }
        async fn delete(&self, key: &str, rev: Option<u64>) -> Result<(), StoreError> {
            self.0.delete(key, rev).await
        }
        async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.0.keys(prefix).await
        }
    }

    /// The stored ciphertexts (base64, as the file holds them) of every version of `names`.
    async fn sealed_texts(raw: &dyn Store, names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let entry = raw.get(&value_key(name)).await.unwrap().unwrap();
            let record: Record = serde_json::from_slice(&entry.value).unwrap();
            out.extend(record.versions.into_iter().map(|v| v.sealed));
        }
        out
    }

    fn file_holds(path: &std::path::Path, texts: &[String]) -> usize {
        let bytes = std::fs::read(path).unwrap();
        texts
            .iter()
            .filter(|t| bytes.windows(t.len()).any(|w| w == t.as_bytes()))
            .count()
    }

    /// Writes versions of a few secrets with the old key in a redb file, then rotates; returns
    /// the old ciphertexts, how many the file held before, and the rotation's report.
    async fn rotate_in_a_file(
        path: &std::path::Path,
        compacting: bool,
    ) -> (Vec<String>, usize, RotationReport) {
        let raw: Arc<dyn Store> = Arc::new(anchorage_store::EmbeddedStore::open(path).unwrap());
        let raw: Arc<dyn Store> = if compacting {
            raw
        } else {
            Arc::new(NoCompaction(raw))
        };
        let old = XKey::generate();
        let old_seed = old.seed();
        let s = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(Keyring::new(old)));
        let names = ["db", "api", "tls"];
        for round in 0..3 {
            for name in names {
                let value = format!("{name}-{round}-{}", "x".repeat(300));
                s.put(name, SecretValue::String(SecretString::from(value)))
                    .await
                    .unwrap();
            }
        }
        let old_texts = sealed_texts(raw.as_ref(), &names).await;
        assert_eq!(old_texts.len(), 9);
        let before = file_holds(path, &old_texts);
        let ring = Keyring::new(XKey::generate())
            .with_previous(XKey::from_seed(&old_seed, "old").unwrap());
        let rotated = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(ring));
        let report = rotated.reencrypt().await.unwrap();
        assert_eq!(report.resealed, 9);
        // Every version still reads, with the new key.
        let first = rotated.get(lookup("db", Some("1"))).await.unwrap().unwrap();
        assert!(text(&first).starts_with("db-0-"));
        (old_texts, before, report)
    }

    /// Issue 19 item 12: old-key ciphertexts must not outlive a rotation in the redb file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_leaves_no_old_ciphertext_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.redb");
        let (old, before, report) = rotate_in_a_file(&path, true).await;
        // Negative control: the file held them all before the rotation.
        assert_eq!(before, old.len());
        assert!(report.compacted);
        assert!(report.remains.contains("compacted"), "{}", report.remains);
        assert_eq!(
            file_holds(&path, &old),
            0,
            "old ciphertexts are still in the store file after rotation"
        );
    }

    /// The same without compaction (the behaviour before the fix): re-sealing alone leaves
    /// the replaced ciphertexts in the file's free pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_compaction_old_ciphertexts_stay_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.redb");
        let (old, _, report) = rotate_in_a_file(&path, false).await;
        assert!(!report.compacted);
        assert!(file_holds(&path, &old) > 0);
    }

    #[tokio::test]
    async fn admin_tokens_are_recorded_once_and_swept_when_expired() {
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let s = EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(Keyring::new(XKey::generate())));
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert!(s.record_token(&a, 1_000, 500).await.unwrap());
        assert!(!s.record_token(&a, 1_000, 500).await.unwrap());
        // Another handle on the same store (another instance) sees the record.
        let other =
            EmbeddedSecrets::new(Arc::clone(&raw), Arc::new(Keyring::new(XKey::generate())));
        assert!(!other.record_token(&a, 1_000, 600).await.unwrap());
        assert!(other.record_token(&b, 5_000, 600).await.unwrap());
        // Past its time (and the sweep interval), `a` is swept; `b` is kept.
        assert!(!other.record_token(&b, 5_000, 2_000).await.unwrap());
        assert_eq!(raw.keys(ADMIN_JTI_PREFIX).await.unwrap().len(), 1);
        assert!(!s.record_token(&b, 5_000, 2_000).await.unwrap());
        // Not a replay key.
        assert!(s.record_token("../x", 1, 0).await.is_err());
        // Mappings and secrets are not confused with the records.
        assert!(s.list_mappings().await.unwrap().is_empty());
        assert!(s.keys().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_puts_all_land() {
        let s = EmbeddedSecrets::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Keyring::new(XKey::generate())),
        );
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.put("k", SecretValue::String(SecretString::from(format!("{i}"))))
                    .await
                    .unwrap()
            }));
        }
        let mut versions = BTreeSet::new();
        for t in tasks {
            versions.insert(t.await.unwrap());
        }
        assert_eq!(versions.len(), 16);
    }
}

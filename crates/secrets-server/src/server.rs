//! The serve loop: one queue subscription on `<prefix>.v1alpha1.<backend>.>`, a task per
//! request (bounded), replies through [`GetHandler`], an audit event per request, and a
//! graceful stop that lets the requests in flight finish.
//!
//! Only `server_xkey` and `get` are served on the host subjects. Every other operation there,
//! including the reference backend's `put_secret`, `add_mapping` and `remove_mapping`, is
//! answered with the plain failure `{"error":{"Other":"unknown operation …"}}`: administration
//! goes through the store (the CLI), or, when admin keys are configured
//! ([`Server::with_admin`]), through a second queue subscription on
//! `<prefix>.admin.<backend>.*` that requires signed, sealed requests ([`crate::admin`]).
//!
//! A `get` is served when the entity's mapping holds a grant for the key that the verified
//! entity JWT's issuer and the mount asked for satisfy ([`anchorage_secrets::Grant`]). Without
//! issuer allow-lists in the handler's [`anchorage_secrets::JwtPolicy`] anyone who can publish
//! on the get subject can mint both tokens: [`Server::run`] then logs a warning (the CLI refuses
//! to start unless told `--allow-any-issuer`). Every request leaves one audit line whose fields
//! are all quoted and escaped ([`AUDIT_FIELD_MAX_CHARS`]); see docs/secrets-threat-model.md.
//!
//! Overload (issue 18): before anything is opened, a requester xkey with too many requests in
//! flight or too many failed verifications is refused, and requests that waited too long for
//! a slot are answered "busy" ([`crate::shed`]); opening runs on the blocking pool, one
//! request per core at a time, so a flood cannot starve the loop that reads and answers.
//!
//! Stopping (issue 22): when `shutdown` completes the server stops taking requests and drains,
//! every step bounded by one deadline ([`ServerConfig::drain_timeout`], default
//! [`DEFAULT_DRAIN_TIMEOUT`]): unsubscribing, waiting for the requests in flight, and flushing
//! their replies, none of which may wait on a NATS connection that cannot come back. Requests
//! still running at the deadline are abandoned (their tasks aborted; the host's request times
//! out). [`Server::run`] says how it went ([`Stopped`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anchorage_secrets::admin::{ADMIN_RESPONSE_XKEY, ADMIN_XKEY_HEADER, AdminSubjects};
use anchorage_secrets::protocol::SECRET_API_VERSION;
use anchorage_secrets::protocol::failure_body;
use anchorage_secrets::{
    AuditEvent, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PREFIX, GetHandler, GetSecretError, LookupError,
    Outcome, Reply, WASMCLOUD_HOST_XKEY,
};
use futures::StreamExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::admin::AdminService;
use crate::shed::{
    DEFAULT_MAX_QUEUE_WAIT, DEFAULT_MAX_QUEUED, InFlight, MAX_IN_FLIGHT_PER_REQUESTER,
    RequesterLimiter,
};
use crate::store::{MappingStore, SecretStore};

/// The reference backend's name, so hosts' existing policies (`backend: nats-kv`) keep working.
pub const DEFAULT_BACKEND: &str = "nats-kv";

/// The reference backend's queue group base: the group is `wasmcloud_secrets.<backend>`.
pub const DEFAULT_QUEUE_BASE: &str = "wasmcloud_secrets";

/// Requests handled at once by one instance unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// How long one `get` may wait on the stores (its mapping and its value together) before the
/// host is answered with an `UpstreamError` saying so (`secrets serve --store-timeout`). Below
/// the hosts' own request timeout, so that a store without quorum or without a stream leader
/// is a prompt error, not a host-side timeout: 1 s leaves the reply within 2 s on a loaded
/// machine (JetStream reads normally take milliseconds).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a stop waits, in all, for the requests in flight and for their replies to be
/// flushed, unless configured otherwise (`secrets serve --drain-timeout`). Kubernetes' default
/// grace period is 30 s and systemd's `TimeoutStopSec` 90 s: 10 s leaves room for both.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server answers.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Subject prefix ([`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Backend name ([`DEFAULT_BACKEND`]).
    pub backend: String,
    /// Queue group shared by every instance (`wasmcloud_secrets.<backend>`).
    pub queue_group: String,
    /// Largest sealed request accepted ([`DEFAULT_MAX_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
    /// Requests handled concurrently ([`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight: usize,
    /// How long a stop waits, in all, for requests in flight and their replies
    /// ([`DEFAULT_DRAIN_TIMEOUT`]); what is still running then is abandoned.
    pub drain_timeout: Duration,
    /// How long one `get` may wait on the stores ([`DEFAULT_STORE_TIMEOUT`]).
    pub store_timeout: Duration,
    /// Requests waiting for a free slot beyond `max_in_flight` ([`DEFAULT_MAX_QUEUED`]); when
    /// full, the oldest is answered "busy" unopened.
    pub max_queued: usize,
    /// The longest a request waits for a free slot before it is answered "busy" unopened
    /// ([`DEFAULT_MAX_QUEUE_WAIT`]).
    pub max_queue_wait: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX, DEFAULT_BACKEND)
    }
}

impl ServerConfig {
    /// Defaults for `prefix` and `backend`.
    pub fn new(prefix: &str, backend: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            backend: backend.to_owned(),
            queue_group: format!("{DEFAULT_QUEUE_BASE}.{backend}"),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            max_queued: DEFAULT_MAX_QUEUED,
            max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
        }
    }

    /// `<prefix>.v1alpha1.<backend>`.
    pub fn base_subject(&self) -> String {
        format!("{}.{SECRET_API_VERSION}.{}", self.prefix, self.backend)
    }

    /// Checks that the prefix, backend and queue group form subjects, as [`Server::run`] does
    /// first: for a caller that starts the server in a task and wants the error at start-up.
    pub fn validate(&self) -> Result<(), ServeError> {
        check_token("prefix", &self.prefix, true)?;
        check_token("backend", &self.backend, false)?;
        check_token("queue group", &self.queue_group, true)
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The prefix or backend name cannot form a subject.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// `prefix` or `backend`.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// Admin subjects were asked for without any admin key.
    #[error("administration over NATS needs at least one admin key")]
    NoAdminKeys,
    /// The subscription failed.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What went wrong.
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// How a stop went: what [`Server::run`] returns once it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Requests that were in flight when the stop began.
    pub in_flight: usize,
    /// Of those, requests still running at the drain deadline, abandoned.
    pub abandoned: usize,
    /// Whether the replies reached NATS: `Some(true)` when the final flush completed,
    /// `Some(false)` when it could not (NATS unreachable, or the deadline passed) while replies
    /// were outstanding, `None` when there was nothing to flush and NATS was unreachable.
    pub flushed: Option<bool>,
    /// The drain deadline that applied.
    pub drain_timeout: Duration,
    /// How long the drain took.
    pub took: Duration,
}

impl Stopped {
    /// True when the drain completed: no request abandoned and every reply handed over.
    pub fn drained(&self) -> bool {
        self.abandoned == 0 && self.flushed != Some(false)
    }
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.drained() {
            write!(
                f,
                "drain completed in {} ms ({} request(s) in flight finished)",
                self.took.as_millis(),
                self.in_flight
            )
        } else {
            write!(
                f,
                "drain cut short after {} ms (drain timeout {} s): {} of {} request(s) in flight abandoned",
                self.took.as_millis(),
                self.drain_timeout.as_secs_f32(),
                self.abandoned,
                self.in_flight
            )?;
            if self.flushed == Some(false) {
                f.write_str(", replies not flushed (NATS unreachable)")?;
            }
            Ok(())
        }
    }
}

/// The secrets server: a handler and its stores.
pub struct Server {
    handler: GetHandler,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    config: ServerConfig,
    admin: Option<AdminService>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("transit", &self.handler.transit().public_key())
            .field("store", &self.values.kind())
            .field("config", &self.config)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

fn check_token(what: &'static str, value: &str, dots: bool) -> Result<(), ServeError> {
    let bad = |reason| ServeError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '*' | '>') || (!dots && c == '.'))
    {
        return Err(bad(if dots {
            "must not hold spaces, * or >"
        } else {
            "must be one subject token (no spaces, dots, * or >)"
        }));
    }
    if value.split('.').any(str::is_empty) {
        return Err(bad("must not hold an empty token"));
    }
    Ok(())
}

impl Server {
    /// A server answering with `handler` from these stores.
    pub fn new(
        handler: GetHandler,
        values: Arc<dyn SecretStore>,
        mappings: Arc<dyn MappingStore>,
        config: ServerConfig,
    ) -> Self {
        let handler = handler.with_max_request_bytes(config.max_request_bytes);
        Self {
            handler,
            values,
            mappings,
            config,
            admin: None,
        }
    }

    /// Also answers signed admin requests on `<prefix>.admin.<backend>.*` (same queue group).
    /// Without this, the admin subjects are not subscribed at all.
    pub fn with_admin(mut self, admin: AdminService) -> Self {
        self.admin = Some(admin);
        self
    }

    /// Serves on `client` until `shutdown` completes, then stops taking requests, waits up to
    /// the drain timeout for those in flight and flushes the replies (also bounded by that
    /// deadline: a NATS connection that is gone does not hold the stop). Also stops, the same
    /// way, when the subscription ends.
    pub async fn run(
        self,
        client: async_nats::Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stopped, ServeError> {
        self.config.validate()?;
        let base = self.config.base_subject();
        let subject = format!("{base}.>");
        let subscription = client
            .queue_subscribe(subject.clone(), self.config.queue_group.clone())
            .await
            .map_err(|source| ServeError::Subscribe {
                subject: subject.clone(),
                source,
            })?;
        let admin_subjects = AdminSubjects::new(&self.config.prefix, &self.config.backend);
        let admin_subscription = match &self.admin {
            None => None,
            Some(admin) if admin.keys().is_empty() => return Err(ServeError::NoAdminKeys),
            Some(admin) => {
                let admin_subject = admin_subjects.wildcard();
                let sub = client
                    .queue_subscribe(admin_subject.clone(), self.config.queue_group.clone())
                    .await
                    .map_err(|source| ServeError::Subscribe {
                        subject: admin_subject.clone(),
                        source,
                    })?;
                tracing::info!(
                    subject = %admin_subject,
                    admin_keys = admin.keys().len(),
                    "serving administration"
                );
                Some(sub)
            }
        };
        // async-nats queues the SUBs without waiting for the server, so a host asking right
        // after start could find no responder. A request on this connection to a subject
        // nobody serves makes the round trip: the server answers it ("no responders") only
        // after the SUBs before it are in place.
        let probe = client.new_inbox();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            client.request(probe, bytes::Bytes::new()),
        )
        .await;
        let jwt = self.handler.jwt();
        let issuers = |any: bool, keys: &std::collections::BTreeSet<String>| {
            if any {
                "ANY".to_owned()
            } else {
                keys.iter().cloned().collect::<Vec<_>>().join(",")
            }
        };
        let entity_issuers = issuers(jwt.any_entity_issuer(), &jwt.entity_issuers);
        let host_issuers = issuers(jwt.any_host_issuer(), &jwt.host_issuers);
        if jwt.any_entity_issuer() || jwt.any_host_issuer() {
            tracing::warn!(
                %subject,
                %entity_issuers,
                %host_issuers,
                "accepting JWTs from ANY issuer: whoever can publish on the get subject can \
                 mint a host token and a component token for a mapped entity's key and read its \
                 secrets (unless its mapping is bound to an issuer); configure the issuers"
            );
        }
        tracing::info!(
            %subject,
            queue_group = %self.config.queue_group,
            server_xkey = %self.handler.transit().public_key(),
            store = self.values.kind(),
            %entity_issuers,
            %host_issuers,
            "serving secrets"
        );
        // One stream of both subscriptions; the admin one never yields when absent.
        let admin_stream = match admin_subscription {
            Some(sub) => futures::future::Either::Left(sub),
            None => futures::future::Either::Right(futures::stream::pending()),
        };
        let mut subscription = futures::stream::select(subscription, admin_stream);
        let limit = self.config.max_in_flight.max(1);
        let permits = Arc::new(Semaphore::new(limit));
        let drain = self.config.drain_timeout;
        let shared = Arc::new(Shared {
            handler: self.handler,
            values: self.values,
            mappings: self.mappings,
            base,
            admin: self.admin,
            admin_subjects,
            client: client.clone(),
            store_timeout: self.config.store_timeout,
            limiter: Arc::default(),
            verifying: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            )),
        });
        let mut tasks = JoinSet::new();
        // Requests read while every permit is taken, with the time they were read.
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let max_queued = self.config.max_queued;
        let max_wait = self.config.max_queue_wait;
        tokio::pin!(shutdown);
        loop {
            // Reap the finished requests (their results are `()`).
            while tasks.try_join_next().is_some() {}
            let event = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned(), if !queue.is_empty() => {
                    Event::Permit(permit)
                }
                message = subscription.next() => Event::Message(message),
            };
            let (queued, permit) = match event {
                Event::Permit(permit) => {
                    let Ok(permit) = permit else { break };
                    let Some(queued) = queue.pop_front() else {
                        continue;
                    };
                    if queued.read.elapsed() > max_wait {
                        shared
                            .busy(queued, "it waited longer than the queue allows")
                            .await;
                        continue;
                    }
                    (queued, permit)
                }
                Event::Message(message) => {
                    let Some(message) = message else {
                        tracing::warn!("the subscription ended (connection closed)");
                        break;
                    };
                    let Some(reply_to) = message.reply.clone() else {
                        tracing::debug!(subject = %message.subject, "message without a reply subject ignored");
                        continue;
                    };
                    let queued = Queued {
                        message,
                        reply_to,
                        read: Instant::now(),
                        guard: None,
                    };
                    // Before any cryptography: a requester key that keeps failing verification.
                    let Some(queued) = shared.limit(queued).await else {
                        continue;
                    };
                    let permit = if queue.is_empty() {
                        Arc::clone(&permits).try_acquire_owned().ok()
                    } else {
                        None
                    };
                    let Some(permit) = permit else {
                        queue.push_back(queued);
                        if queue.len() > max_queued
                            && let Some(oldest) = queue.pop_front()
                        {
                            shared.busy(oldest, "the queue is full").await;
                        }
                        continue;
                    };
                    (queued, permit)
                }
            };
            let shared = Arc::clone(&shared);
            // The subject's tail is the requester's: escaped like the audit fields.
            let span = tracing::info_span!(
                "secret_request",
                subject = ?Field(Some(queued.message.subject.as_str()))
            );
            tasks.spawn(
                async move {
                    shared.answer(queued, max_wait).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        // Requests never started: their hosts get an answer rather than a timeout.
        let unstarted = queue.len();
        for queued in queue.drain(..) {
            shared.busy(queued, "the server is stopping").await;
        }
        if unstarted > 0 {
            tracing::info!(unstarted, "stopping: queued requests answered busy");
        }
        let started = Instant::now();
        let deadline = started + drain;
        while tasks.try_join_next().is_some() {}
        let in_flight = tasks.len();
        tracing::info!(in_flight, ?drain, "stopping: no new requests, draining");
        // Unsubscribing only queues a command for the connection; bounded all the same.
        let (hosts, admin) = subscription.get_mut();
        let _ = tokio::time::timeout_at(deadline, hosts.unsubscribe()).await;
        if let futures::future::Either::Left(admin) = admin {
            let _ = tokio::time::timeout_at(deadline, admin.unsubscribe()).await;
        }
        let finished = tokio::time::timeout_at(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let abandoned = if finished { 0 } else { tasks.len() };
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                ?drain,
                "requests still in flight at the drain deadline: abandoned"
            );
            tasks.shutdown().await;
        }
        // A flush waits for the server's PONG: with the connection gone it would wait for a
        // reconnection that may never come, so only flush while connected, and never past the
        // deadline.
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let flushed = if connected {
            Some(matches!(
                tokio::time::timeout_at(deadline, client.flush()).await,
                Ok(Ok(()))
            ))
        } else if in_flight > 0 {
            tracing::warn!("NATS is unreachable: the replies of the drained requests are lost");
            Some(false)
        } else {
            None
        };
        let stopped = Stopped {
            in_flight,
            abandoned,
            flushed,
            drain_timeout: drain,
            took: started.elapsed(),
        };
        if stopped.drained() {
            tracing::info!(%stopped, "stopped");
        } else {
            tracing::warn!(%stopped, "stopped");
        }
        Ok(stopped)
    }
}

struct Shared {
    handler: GetHandler,
    values: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    base: String,
    admin: Option<AdminService>,
    admin_subjects: AdminSubjects,
    client: async_nats::Client,
    store_timeout: Duration,
    limiter: Arc<RequesterLimiter>,
    /// Requests being opened at once: one per core.
    verifying: Arc<Semaphore>,
}

/// A request read from the subscription, waiting for a permit.
struct Queued {
    message: async_nats::Message,
    reply_to: async_nats::Subject,
    read: Instant,
    /// The requester key's in-flight count, held until the request is answered.
    guard: Option<InFlight>,
}

enum Event {
    Permit(Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>),
    Message(Option<async_nats::Message>),
}

impl Shared {
    fn host_xkey(message: &async_nats::Message) -> Option<&str> {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(WASMCLOUD_HOST_XKEY))
            .map(|v| v.as_str())
    }

    /// The request back when its requester key may still fail and has fewer than
    /// [`MAX_IN_FLIGHT_PER_REQUESTER`] requests in flight; else it is answered at once,
    /// unopened. Checked when the request is read and again just before it is opened (the
    /// failures of requests opened meanwhile count).
    async fn limit(&self, mut queued: Queued) -> Option<Queued> {
        let subject = queued.message.subject.as_str();
        if subject.strip_prefix(self.base.as_str()) != Some(".get") {
            return Some(queued);
        }
        let Some(requester) = Self::host_xkey(&queued.message) else {
            return Some(queued);
        };
        let refusal = match self.limiter.check(requester, Instant::now()) {
            Err(wait) => format!(
                "too many requests from this requester xkey failed verification; retry in {} ms",
                wait.as_millis().max(1)
            ),
            Ok(()) if queued.guard.is_some() => return Some(queued),
            Ok(()) => match RequesterLimiter::admit(&self.limiter, requester) {
                Some(guard) => {
                    queued.guard = Some(guard);
                    return Some(queued);
                }
                None => format!(
                    "more than {MAX_IN_FLIGHT_PER_REQUESTER} requests from this requester xkey \
                     in flight (a host uses a new xkey for every request)"
                ),
            },
        };
        let event = AuditEvent {
            requester_xkey: Some(requester.to_owned()),
            outcome: Outcome::Rejected {
                error: "Other",
                reason: Some(refusal.clone()),
            },
            ..AuditEvent::default()
        };
        audit(&event);
        let body = failure_body(&GetSecretError::Other(refusal));
        if let Err(e) = self.client.publish(queued.reply_to, body.into()).await {
            tracing::warn!(error = %e, "could not send a reply");
        }
        None
    }

    /// Answers a request that is not opened: the server is overloaded (or stopping).
    async fn busy(&self, queued: Queued, why: &str) {
        let reason = format!("the secrets server is busy: {why}; retry later");
        let body = if let Some(op) = self
            .admin_subjects
            .operation(queued.message.subject.as_str())
        {
            crate::admin::audit(&anchorage_secrets::admin::AdminAudit {
                op: op.to_owned(),
                result: "rejected",
                error: Some("Store"),
                reason: Some(reason.clone()),
                ..Default::default()
            });
            anchorage_secrets::admin::AdminError::Store(reason).body()
        } else {
            audit(&AuditEvent {
                requester_xkey: Self::host_xkey(&queued.message).map(str::to_owned),
                outcome: Outcome::Rejected {
                    error: "Other",
                    reason: Some(reason.clone()),
                },
                ..AuditEvent::default()
            });
            failure_body(&GetSecretError::Other(reason))
        };
        if let Err(e) = self.client.publish(queued.reply_to, body.into()).await {
            tracing::warn!(error = %e, "could not send a busy reply");
        }
    }

    async fn answer(self: Arc<Self>, queued: Queued, max_wait: Duration) {
        let (message, reply_to) = (&queued.message, queued.reply_to.clone());
        if let Some(admin) = &self.admin
            && let Some(op) = self.admin_subjects.operation(message.subject.as_str())
        {
            self.answer_admin(admin, op, message, reply_to).await;
            return;
        }
        let operation = message
            .subject
            .as_str()
            .strip_prefix(&self.base)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or_default()
            .to_owned();
        match operation.as_str() {
            "server_xkey" => {
                let body = bytes::Bytes::copy_from_slice(self.handler.server_xkey_body());
                if let Err(e) = self.client.publish(reply_to, body).await {
                    tracing::warn!(error = %e, "could not send the server xkey");
                }
            }
            "get" => {
                // Opening costs cryptography: at most one request per core at a time, on the
                // blocking pool, so a flood cannot take the threads that read the subscription
                // and send the replies (busy answers included).
                let Ok(verifying) = Arc::clone(&self).verifying_owned().await else {
                    return;
                };
                if queued.read.elapsed() > max_wait {
                    self.busy(queued, "it waited longer than the queue allows")
                        .await;
                    return;
                }
                // Again: failures of this requester's requests opened meanwhile count.
                let Some(queued) = self.limit(queued).await else {
                    return;
                };
                let reply = Arc::clone(&self).get(&queued.message, verifying).await;
                audit(&reply.audit);
                let mut headers = async_nats::HeaderMap::new();
                for (name, value) in reply.headers() {
                    headers.insert(name, value);
                }
                let body = bytes::Bytes::from(reply.body);
                if let Err(e) = self
                    .client
                    .publish_with_headers(reply_to, headers, body)
                    .await
                {
                    tracing::warn!(error = %e, "could not send a reply");
                }
            }
            other => {
                let op: String = other.chars().take(64).collect();
                let event = AuditEvent {
                    outcome: Outcome::Rejected {
                        error: "Other",
                        reason: Some(format!("unknown operation {op:?}")),
                    },
                    ..AuditEvent::default()
                };
                audit(&event);
                let body = failure_body(&GetSecretError::Other(format!("unknown operation {op}")));
                if let Err(e) = self.client.publish(reply_to, body.into()).await {
                    tracing::warn!(error = %e, "could not send a reply");
                }
            }
        }
    }

    async fn answer_admin(
        &self,
        admin: &AdminService,
        op: &str,
        message: &async_nats::Message,
        reply_to: async_nats::Subject,
    ) {
        if op == "server_xkey" {
            let body = bytes::Bytes::copy_from_slice(self.handler.server_xkey_body());
            if let Err(e) = self.client.publish(reply_to, body).await {
                tracing::warn!(error = %e, "could not send the server xkey");
            }
            return;
        }
        let header = message
            .headers
            .as_ref()
            .and_then(|h| h.get(ADMIN_XKEY_HEADER))
            .map(|v| v.as_str());
        let (response_xkey, body, event) = admin
            .answer(
                op,
                header,
                &message.payload,
                self.handler.transit(),
                self.values.as_ref(),
                self.mappings.as_ref(),
            )
            .await;
        crate::admin::audit(&event);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(key) = &response_xkey {
            headers.insert(ADMIN_RESPONSE_XKEY, key.as_str());
        }
        if let Err(e) = self
            .client
            .publish_with_headers(reply_to, headers, body.into())
            .await
        {
            tracing::warn!(error = %e, "could not send an admin reply");
        }
    }

    /// A permit to open one request (see `verifying`).
    async fn verifying_owned(
        self: Arc<Self>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
        Arc::clone(&self.verifying).acquire_owned().await
    }

    /// Opens the request (holding `verifying` only while it does), then looks the secret up.
    async fn get(
        self: Arc<Self>,
        message: &async_nats::Message,
        verifying: tokio::sync::OwnedSemaphorePermit,
    ) -> Reply {
        let host_xkey = Self::host_xkey(message);
        let opened = {
            let (shared, header, payload) = (
                Arc::clone(&self),
                host_xkey.map(str::to_owned),
                message.payload.clone(),
            );
            tokio::task::spawn_blocking(move || {
                shared
                    .handler
                    .open(header.as_deref(), &payload, SystemTime::now())
            })
            .await
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(error = %e, "opening a request failed");
                let reason = "internal error opening the request".to_owned();
                return Reply {
                    response_xkey: None,
                    body: failure_body(&GetSecretError::Other(reason.clone())),
                    audit: AuditEvent {
                        outcome: Outcome::Rejected {
                            error: "Other",
                            reason: Some(reason),
                        },
                        ..AuditEvent::default()
                    },
                };
            }
        };
        drop(verifying);
        let mut verified = match opened {
            Ok(v) => v,
            Err(reply) => {
                // Only a key that parsed (the failure then cost cryptography).
                if let Some(requester) = host_xkey
                    && reply.audit.requester_xkey.is_some()
                {
                    self.limiter.failed(requester, Instant::now());
                }
                return *reply;
            }
        };
        // One deadline for both store calls: a store that cannot answer (no quorum, no stream
        // leader, unreachable) is an UpstreamError saying so, before the host times out.
        let deadline = Instant::now() + self.store_timeout;
        let late = |what: &str| {
            LookupError(format!(
                "the {} store did not answer {what} within {} ms (unreachable, or without \
                 quorum or stream leader); retry later",
                self.values.kind(),
                self.store_timeout.as_millis()
            ))
        };
        let allowed = match tokio::time::timeout_at(
            deadline,
            self.mappings.secrets_of(&verified.entity().public_key),
        )
        .await
        {
            Ok(allowed) => allowed.map_err(|e| LookupError(chain(&e))),
            Err(_) => Err(late("the mapping lookup")),
        };
        let default_mount = self.values.default_mount();
        let found = match allowed {
            Err(e) => Err(e),
            Ok(entries)
                if !verified.authorize(entries.iter().map(String::as_str), default_mount) =>
            {
                return self.handler.unauthorized(verified);
            }
            Ok(_) if !verified.version_is_valid() => {
                return self.handler.invalid_version(verified);
            }
            Ok(_) => {
                match tokio::time::timeout_at(deadline, self.values.get(verified.lookup())).await {
                    Ok(found) => found.map_err(|e| LookupError(chain(&e))),
                    Err(_) => Err(late("the value lookup")),
                }
            }
        };
        self.handler.respond(verified, found)
    }
}

/// The error's message followed by each cause's, `: `-separated (store errors never hold a
/// value).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
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

/// The longest requester-supplied text an audit line holds per field, in characters; longer
/// text is cut and the cut is said (`…(+N chars)`). A request can be 64 KiB: one line per
/// request stays readable.
pub const AUDIT_FIELD_MAX_CHARS: usize = 256;

/// An optional field of an audit line: `-` when absent, else quoted with Rust's string escapes
/// (a newline is `\n`, ESC is `\u{1b}`, a quote is `\"`), so requester-supplied text can
/// neither end the line, nor write a field of its own, nor reach a terminal raw; cut at
/// [`AUDIT_FIELD_MAX_CHARS`].
pub(crate) struct Field<'a>(pub(crate) Option<&'a str>);

impl std::fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(text) = self.0 else {
            return f.write_str("-");
        };
        let total = text.chars().count();
        if total <= AUDIT_FIELD_MAX_CHARS {
            return write!(f, "{text:?}");
        }
        let cut: String = text.chars().take(AUDIT_FIELD_MAX_CHARS).collect();
        write!(f, "{cut:?}…(+{} chars)", total - AUDIT_FIELD_MAX_CHARS)
    }
}

fn field(value: &Option<String>) -> Field<'_> {
    Field(value.as_deref())
}

/// Writes one audit event (target `anchorage::audit`); never a value. Every field is a
/// structured field written with `Debug` through [`Field`]: the requested key, field and
/// version and the rejection reason come from the requester and are escaped; the entity and
/// host keys and their issuers appear only once their JWT verified (`-` before).
fn audit(event: &AuditEvent) {
    let (result, error, reason) = match &event.outcome {
        Outcome::Served => ("served", "-", None),
        Outcome::Pending => ("pending", "-", None),
        Outcome::Rejected { error, reason } => ("rejected", *error, reason.as_deref()),
    };
    tracing::info!(
        target: "anchorage::audit",
        result,
        error,
        reason = ?Field(reason),
        entity = ?field(&event.entity),
        entity_kind = ?event.entity_kind,
        entity_issuer = ?field(&event.entity_issuer),
        host = ?field(&event.host),
        host_issuer = ?field(&event.host_issuer),
        key = ?field(&event.key),
        field = ?field(&event.field),
        requested_version = ?field(&event.requested_version),
        mount = ?field(&event.mount),
        served_version = ?field(&event.served_version),
        "secret request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_fields_are_escaped_and_cut() {
        let forged = "x\n2026-01-01T00:00:00Z INFO anchorage::audit: secret request result=\"served\" \u{1b}[2J";
        let shown = format!("{:?}", Field(Some(forged)));
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with('"') && shown.contains("\\n") && shown.contains("\\u{1b}"));
        assert!(shown.contains(r#"result=\"served\""#), "{shown}");
        assert_eq!(format!("{:?}", Field(None)), "-");
        let long = "a".repeat(AUDIT_FIELD_MAX_CHARS + 10);
        let shown = format!("{:?}", Field(Some(&long)));
        let kept = shown.strip_suffix("…(+10 chars)").expect("the cut is said");
        assert_eq!(kept.matches('a').count(), AUDIT_FIELD_MAX_CHARS);
    }

    #[test]
    fn a_drain_completes_only_without_abandoned_requests_or_lost_replies() {
        let base = Stopped {
            in_flight: 2,
            abandoned: 0,
            flushed: Some(true),
            drain_timeout: Duration::from_secs(10),
            took: Duration::from_millis(5),
        };
        assert!(base.drained());
        assert!(base.to_string().starts_with("drain completed"));
        // NATS gone with nothing to flush: still complete.
        let gone = Stopped {
            in_flight: 0,
            flushed: None,
            ..base
        };
        assert!(gone.drained());
        let abandoned = Stopped {
            abandoned: 1,
            ..base
        };
        assert!(!abandoned.drained());
        assert!(
            abandoned
                .to_string()
                .contains("1 of 2 request(s) in flight abandoned")
        );
        let lost = Stopped {
            flushed: Some(false),
            ..base
        };
        assert!(!lost.drained() && lost.to_string().contains("replies not flushed"));
    }

    #[test]
    fn defaults_follow_the_reference_backend() {
        let c = ServerConfig::default();
        assert_eq!(c.base_subject(), "wasmcloud.secrets.v1alpha1.nats-kv");
        assert_eq!(c.queue_group, "wasmcloud_secrets.nats-kv");
    }

    #[test]
    fn names_that_cannot_form_subjects_are_refused() {
        assert!(check_token("prefix", "wasmcloud.secrets", true).is_ok());
        assert!(check_token("backend", "nats-kv", false).is_ok());
        const ONE_TOKEN: &str = "must be one subject token (no spaces, dots, * or >)";
        for (value, dots, why) in [
            ("", true, "must not be empty"),
            ("a..b", true, "must not hold an empty token"),
            ("a.>", true, "must not hold spaces, * or >"),
            ("a b", true, "must not hold spaces, * or >"),
            ("a.b", false, ONE_TOKEN),
            ("*", false, ONE_TOKEN),
        ] {
            let err = check_token("x", value, dots).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ServeError::InvalidName { what: "x", value: v, reason }
                        if v == value && *reason == why
                ),
                "{value:?}: {err:?}"
            );
        }
    }
}

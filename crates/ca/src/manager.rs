//! The certificate manager: cache, single-flight issuance, renewal, announcements and issuer
//! swaps over any [`Issuer`].
//!
//! This module owns the life of a certificate after the issuer made it: which cached
//! certificate a caller gets, when it is replaced, who is told. It does not make keys or sign
//! (the [`Issuer`] does), nor store anything on disk.
//!
//! What it promises, against the known failures of FSM's Tresor:
//!
//! - **Renewal early and spread** ([`RenewalPolicy`], [`renew_at`]): when the remaining life
//!   falls under a fraction of the lifetime (default 1/3), a random part earlier (jitter), and
//!   never later than a minimum margin before expiry. Not a fixed 30 s before expiry.
//! - **Wall-clock expiry** ([`crate::clock`]): every decision reads a [`Clock`] of
//!   [`std::time::SystemTime`]; the background task sleeps in chunks of at most
//!   [`RenewalPolicy::max_sleep`] and re-reads the clock, so after a suspend it renews at once.
//! - **One issuance per identity at a time**: concurrent [`CertManager::get`]s for an identity
//!   collapse into one call to the issuer; the others await the same result. A get never
//!   returns a due or stale certificate while an issuance for it is in flight: it waits.
//! - **Failures never replace a valid certificate**: a failed renewal keeps serving the cached
//!   certificate until it expires (with a warning and retries with backoff); only when nothing
//!   valid is cached does the caller see the error.
//! - **Per-identity announcements** ([`CertManager::subscribe`]): a subscriber is woken only by
//!   its own identity's rotations. Auditors read everything on the [`CertManager::firehose`].
//! - **Root rotation ready**: the issuer reports the CA that signs ([`Issuer::signing_ca`])
//!   apart from the roots that validate ([`Issuer::validating_roots`]); a cached certificate
//!   whose signing CA is no longer the one in use is renewed, and [`CertManager::set_issuer`]
//!   swaps the issuer and reissues everything with bounded parallelism.
//!
//! # Locking
//!
//! The map (identity → entry) is split in shards by identity, each with its lock, held only
//! to look up, insert or remove (never two shards at once); one lock per entry for its state.
//! Neither is held across an `.await`. The only place holding both takes the shard lock
//! first. The caller that starts an issuance drives it in its own task (no hop to another
//! worker thread); if it gives up (drops its future), the rest moves to a Tokio task, so the
//! issuance others wait for is never cancelled. Bulk renewals spawn one task per
//! issuance, at most [`ManagerConfig::concurrency`] at a time.

mod events;
mod policy;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher as _, RandomState};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anchorage_x509::Certificate;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use self::events::Latest;
pub use self::events::{CertSummary, RotationEvent, RotationReason, Subscription};
pub use self::policy::{ManagerConfig, RenewalPolicy, renew_at};
use crate::clock::{Clock, SystemClock, to_system_time, to_timestamp};
use crate::issued::{IssuedCertificate, IssuerId};
use crate::issuer::{IssueError, Issuer};
use crate::request::{CertificateRequest, Identity, RequestError};

/// How many times a get goes round when other callers keep asking for the same identity with
/// other parameters, before it gives up with [`ManagerError::ConflictingRequests`].
const MAX_ROUNDS: usize = 4;

/// Why the manager could not hand out a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The request is invalid as it stands.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The issuer failed and no valid certificate is cached for this request (or the caller
    /// forced a rotation, which must not be answered with the old certificate).
    #[error("could not issue a certificate for {identity} with the {backend} issuer")]
    Issue {
        /// The identity.
        identity: Identity,
        /// The issuer's backend.
        backend: &'static str,
        /// The issuer's error, shared by every caller that waited for this issuance.
        #[source]
        source: Arc<IssueError>,
    },
    /// The issuance stopped without an answer: the issuer panicked, or the runtime is
    /// shutting down. The next call tries again.
    #[error(
        "the {backend} issuer stopped while issuing for {identity} (it panicked, or the runtime is shutting down)"
    )]
    Aborted {
        /// The identity.
        identity: Identity,
        /// The issuer's backend.
        backend: &'static str,
    },
    /// The identity has no certificate in the cache.
    #[error("{identity} is not managed: get a certificate for it first")]
    NotManaged {
        /// The identity.
        identity: Identity,
    },
    /// Callers keep asking for one identity with different SANs, kind or key type, so each
    /// one's issuance replaces the other's.
    #[error(
        "callers keep asking for {identity} with different SANs, kind or key type: give one identity one set of parameters"
    )]
    ConflictingRequests {
        /// The identity.
        identity: Identity,
    },
    /// A [`ManagerConfig`] value is out of range.
    #[error("invalid certificate manager setting {setting} = {value}: {rule}")]
    InvalidConfig {
        /// The setting, e.g. `fraction`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// What a bulk renewal ([`CertManager::reissue_all`], [`CertManager::set_issuer`],
/// [`CertManager::renew_due`]) did.
#[derive(Debug, Default)]
pub struct ReissueReport {
    /// How many certificates were replaced.
    pub reissued: usize,
    /// The identities whose issuance failed, with why. Each keeps serving its cached
    /// certificate while that is valid, and is retried with backoff.
    pub failed: Vec<(Identity, ManagerError)>,
}

/// Caches, issues, renews and announces certificates over an [`Issuer`].
///
/// A cheap handle: clones share one cache. Every async method needs a Tokio runtime (issuances
/// run as Tokio tasks).
///
/// ```
/// use std::sync::Arc;
///
/// use anchorage_ca::{
///     BuiltinCa, CertKind, CertManager, CertificateRequest, Identity, InitOptions, RotationReason,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # runtime.block_on(async {
/// let ca = BuiltinCa::init(&InitOptions::default())?;
/// let manager = CertManager::with_defaults(Arc::new(ca));
/// let _renewals = manager.spawn(); // renews in the background until dropped
///
/// let identity = Identity::new("bookstore-v2.bookstore.cluster.local")?;
/// let mut rotations = manager.subscribe(&identity); // woken for this identity only
/// let request = CertificateRequest::new(identity.clone(), CertKind::Service);
/// let issued = manager.get(&request).await?;
/// assert!(Arc::ptr_eq(&issued, &manager.get(&request).await?)); // cached
///
/// let event = rotations.next().await.expect("announced");
/// assert_eq!(event.reason, RotationReason::Issued);
/// manager.release(&identity);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct CertManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    issuer: RwLock<IssuerSlot>,
    entries: Entries,
    firehose: broadcast::Sender<RotationEvent>,
    /// Set by the first [`CertManager::firehose`]: until then no issuance asks the firehose
    /// how many listen (a lock every issuance on every core would otherwise take).
    firehose_opened: AtomicBool,
    /// Wakes the background task early (an issuer swap, a failed forced rotation).
    wake: Arc<Notify>,
}

/// How many shards [`Entries`] has.
const SHARDS: usize = 16;

/// The identity → entry map, in shards by identity so that gets on different cores seldom
/// take the same lock (and a shard's growth stalls only the gets that land in it).
struct Entries {
    shards: Box<[Mutex<Shard>]>,
}

/// One shard of [`Entries`].
type Shard = HashMap<Identity, Arc<Entry>>;

impl Entries {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The shard that holds `identity`: FNV-1a of its name (the shard's own map is keyed by
    /// std's randomly keyed SipHash, so a crafted name can crowd a shard but not a bucket).
    fn shard(&self, identity: &Identity) -> MutexGuard<'_, Shard> {
        let hash = identity
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let at = usize::try_from(hash % SHARDS as u64).unwrap_or_default();
        lock(&self.shards[at])
    }

    fn all(&self) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        for shard in &*self.shards {
            out.extend(lock(shard).values().cloned());
        }
        out
    }

    fn identities(&self) -> Vec<Identity> {
        let mut out = Vec::new();
        for shard in &*self.shards {
            out.extend(lock(shard).keys().cloned());
        }
        out
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

/// The issuer in use and its generation, bumped by every [`CertManager::set_issuer`].
#[derive(Clone)]
struct IssuerSlot {
    issuer: Arc<dyn Issuer>,
    generation: u64,
}

struct Entry {
    identity: Identity,
    state: Mutex<EntryState>,
}

struct EntryState {
    /// The certificate served, with what it was issued for.
    current: Option<Cached>,
    /// The issuance under way, which every caller for this identity joins.
    inflight: Option<Arc<Flight>>,
    /// A forced rotation has not succeeded yet.
    forced: bool,
    /// Consecutive failed issuances.
    failures: u32,
    /// After a failure: no new attempt before this (unless nothing valid is cached).
    retry_at: Option<SystemTime>,
    /// The per-identity channel, made by the first [`CertManager::subscribe`] and dropped when
    /// an issuance finds nobody subscribed any more (a later subscription starts from
    /// `current`), or on release (closing every subscription).
    announce: Option<watch::Sender<Latest>>,
    /// Removed from the map: nothing is cached or announced any more.
    released: bool,
}

struct Cached {
    cert: Arc<IssuedCertificate>,
    /// Shared with the flight that issued it.
    request: Arc<CertificateRequest>,
    /// The issuer generation it came from.
    generation: u64,
    /// What the issuer said signs, when this issuance started.
    signing_at_issue: Option<IssuerId>,
    not_after: SystemTime,
    renew_at: SystemTime,
}

/// One issuance in flight. Callers wait on `done` until `outcome` is set: to the outcome, or
/// to `None` when the work ended without one ([`Answer`]).
struct Flight {
    request: Arc<CertificateRequest>,
    backend: &'static str,
    outcome: OnceLock<Option<Outcome>>,
    done: Notify,
}

/// The issuing side of a [`Flight`]: sets its outcome once and wakes the waiters. Dropped
/// without an outcome (the issuer panicked, the runtime shut down), it answers `None`.
struct Answer(Arc<Flight>);

#[derive(Clone)]
enum Outcome {
    Issued(Arc<IssuedCertificate>),
    Failed {
        error: Arc<IssueError>,
        /// The cached certificate, still valid and for the same parameters, to serve instead.
        fallback: Option<Arc<IssuedCertificate>>,
    },
}

/// What a get decided under the entry lock.
enum Step {
    Serve(Arc<IssuedCertificate>),
    /// Wait for an issuance someone else drives.
    Wait(Arc<Flight>),
    /// Drive the issuance just started, then read its outcome.
    Drive(Arc<Flight>, Work),
}

/// The work of one issuance: issue, record, announce, answer the waiters.
type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which entries a bulk pass renews.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bulk {
    /// Every cached certificate (reason `IssuerChanged` where it applies, else `Forced`).
    All,
    /// Only those due, and not backing off after a failure.
    Due,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True when two requests for one identity ask for the same certificate: the same SANs (in
/// any order), kind and key type. The lifetime is not compared: a new lifetime applies from the
/// next renewal.
fn same_parameters(a: &CertificateRequest, b: &CertificateRequest) -> bool {
    if a.kind != b.kind || a.key_type != b.key_type || a.identity != b.identity {
        return false;
    }
    if a.sans == b.sans {
        return true;
    }
    let (a, b) = (a.all_sans(), b.all_sans());
    a.len() == b.len() && a.iter().all(|san| b.contains(san))
}

/// A sample from [0, 1) for the renewal jitter. Std's randomly keyed SipHash over a counter:
/// keys differ per process and thread, which is all a fleet's spread needs. The counter is
/// per thread (a shared one is a cache line both cores fight over on every issuance).
fn jitter_sample() -> f64 {
    thread_local! {
        static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let count = COUNTER.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    });
    let bits = RandomState::new().hash_one(count);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A summary of the cached certificate, if any.
fn summary(cached: Option<&Cached>) -> Option<CertSummary> {
    cached.map(|c| CertSummary::of(&c.cert))
}

impl EntryState {
    fn new() -> Self {
        Self {
            current: None,
            inflight: None,
            forced: false,
            failures: 0,
            retry_at: None,
            announce: None,
            released: false,
        }
    }

    /// Why the cached certificate must be replaced now, if it must, given the issuer in use
    /// and the CA it says signs now.
    fn due(
        &self,
        now: SystemTime,
        slot: &IssuerSlot,
        signing: Option<IssuerId>,
    ) -> Option<RotationReason> {
        let cached = self.current.as_ref()?;
        if cached.generation != slot.generation {
            return Some(RotationReason::IssuerChanged);
        }
        // Renewed when the issuer signs with another CA than the one that signed this
        // certificate, unless the issuer already named that CA when it issued it (a backend
        // that reports a root while an intermediate signs must not cause a reissue loop).
        if let Some(signing) = signing
            && signing != cached.cert.issuer
            && Some(signing) != cached.signing_at_issue
        {
            return Some(RotationReason::IssuerChanged);
        }
        if self.forced {
            return Some(RotationReason::Forced);
        }
        (now >= cached.renew_at).then_some(RotationReason::Renewed)
    }

    /// True while a failed issuance's retry delay runs.
    fn backing_off(&self, now: SystemTime) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }
}

impl CertManager {
    /// A manager over `issuer`, reading time from `clock`. Fails when `config` is out of range
    /// (see [`ManagerConfig::validate`]).
    pub fn new(
        issuer: Arc<dyn Issuer>,
        clock: Arc<dyn Clock>,
        config: ManagerConfig,
    ) -> Result<Self, ManagerError> {
        config.validate()?;
        Ok(Self::build(issuer, clock, config))
    }

    /// A manager over `issuer` with the wall clock and the default settings.
    pub fn with_defaults(issuer: Arc<dyn Issuer>) -> Self {
        Self::build(issuer, Arc::new(SystemClock), ManagerConfig::default())
    }

    fn build(issuer: Arc<dyn Issuer>, clock: Arc<dyn Clock>, config: ManagerConfig) -> Self {
        let (firehose, _) = broadcast::channel(config.firehose_capacity);
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                issuer: RwLock::new(IssuerSlot {
                    issuer,
                    generation: 0,
                }),
                entries: Entries::new(),
                firehose,
                firehose_opened: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The issuer in use.
    pub fn issuer(&self) -> Arc<dyn Issuer> {
        self.inner.slot().issuer
    }

    /// The CA the issuer signs with now, when it says.
    pub fn signing_ca(&self) -> Option<IssuerId> {
        self.inner.slot().issuer.signing_ca()
    }

    /// The roots peers should trust now (during a root rotation: the old and the new).
    pub fn validating_roots(&self) -> Vec<Certificate> {
        self.inner.slot().issuer.validating_roots()
    }

    /// The identities in the cache (including those only subscribed to), sorted.
    pub fn identities(&self) -> Vec<Identity> {
        let mut out = self.inner.entries.identities();
        out.sort();
        out
    }

    /// The certificate cached for `identity`, whatever its state, without issuing.
    pub fn cached(&self, identity: &Identity) -> Option<Arc<IssuedCertificate>> {
        let entry = self.inner.entries.shard(identity).get(identity).cloned()?;
        let state = lock(&entry.state);
        state.current.as_ref().map(|c| Arc::clone(&c.cert))
    }

    /// A certificate for `request`: the cached one when it is not due, was issued by the
    /// current signing CA and for the same SANs, kind and key type; otherwise a new one.
    ///
    /// Concurrent calls for one identity share one issuance. While an issuance for the
    /// identity is in flight, every call waits for it rather than return the old certificate.
    /// When a renewal fails but the cached certificate is still valid, that certificate is
    /// returned (a warning is logged and the renewal retried with backoff); the error comes
    /// back only when nothing valid is cached.
    pub async fn get(
        &self,
        request: &CertificateRequest,
    ) -> Result<Arc<IssuedCertificate>, ManagerError> {
        request.validate()?;
        let identity = &request.identity;
        for _ in 0..MAX_ROUNDS {
            let entry = self.inner.entry(identity);
            let step = {
                let mut state = lock(&entry.state);
                if state.released {
                    continue;
                }
                self.inner.decide_get(&entry, &mut state, request)
            };
            let flight = match step {
                Step::Serve(cert) => return Ok(cert),
                Step::Wait(flight) => flight,
                Step::Drive(flight, work) => {
                    Handoff(Some(work)).await;
                    flight
                }
            };
            let outcome = flight.outcome().await;
            if !same_parameters(&flight.request, request) {
                // Someone else's parameters were in flight: look again, now that it is done.
                continue;
            }
            return match outcome {
                Some(Outcome::Issued(cert)) => Ok(cert),
                Some(Outcome::Failed {
                    fallback: Some(cert),
                    ..
                }) => Ok(cert),
                Some(Outcome::Failed {
                    error,
                    fallback: None,
                }) => Err(ManagerError::Issue {
                    identity: identity.clone(),
                    backend: flight.backend,
                    source: error,
                }),
                None => Err(ManagerError::Aborted {
                    identity: identity.clone(),
                    backend: flight.backend,
                }),
            };
        }
        Err(ManagerError::ConflictingRequests {
            identity: identity.clone(),
        })
    }

    /// Replaces `identity`'s certificate now, with the parameters it was last asked for, and
    /// returns the new one (joining an issuance already in flight). On failure the error is
    /// returned, the cached certificate keeps being served while valid, and the rotation is
    /// retried with backoff.
    pub async fn rotate(
        &self,
        identity: &Identity,
    ) -> Result<Arc<IssuedCertificate>, ManagerError> {
        let not_managed = || ManagerError::NotManaged {
            identity: identity.clone(),
        };
        let entry = self
            .inner
            .entries
            .shard(identity)
            .get(identity)
            .cloned()
            .ok_or_else(not_managed)?;
        let mut drive = None;
        let flight = {
            let mut state = lock(&entry.state);
            if state.released {
                return Err(not_managed());
            }
            match state.inflight.clone() {
                Some(flight) => {
                    state.forced = true;
                    flight
                }
                None => {
                    let request = state
                        .current
                        .as_ref()
                        .map(|c| c.request.clone())
                        .ok_or_else(not_managed)?;
                    state.forced = true;
                    let slot = self.inner.slot();
                    let (flight, work) = self.inner.start(
                        &entry,
                        &mut state,
                        request,
                        RotationReason::Forced,
                        slot,
                        None,
                    );
                    drive = Some(work);
                    flight
                }
            }
        };
        if let Some(work) = drive {
            Handoff(Some(work)).await;
        }
        match flight.outcome().await {
            Some(Outcome::Issued(cert)) => Ok(cert),
            Some(Outcome::Failed { error, .. }) => {
                self.inner.wake.notify_one();
                Err(ManagerError::Issue {
                    identity: identity.clone(),
                    backend: flight.backend,
                    source: error,
                })
            }
            None => Err(ManagerError::Aborted {
                identity: identity.clone(),
                backend: flight.backend,
            }),
        }
    }

    /// Drops `identity` from the cache and ends its subscriptions: each sees a
    /// [`RotationReason::Released`] event, then the end. The firehose sees the event too.
    /// An issuance in flight still answers its callers but is not cached. Returns whether the
    /// identity was in the cache.
    pub fn release(&self, identity: &Identity) -> bool {
        let Some(entry) = self.inner.entries.shard(identity).remove(identity) else {
            return false;
        };
        let mut state = lock(&entry.state);
        state.released = true;
        state.forced = false;
        let old = state.current.take();
        let event = RotationEvent {
            identity: identity.clone(),
            reason: RotationReason::Released,
            old: summary(old.as_ref()),
            new: None,
            at: self.inner.clock.timestamp(),
        };
        if let Some(announce) = state.announce.take() {
            announce.send_replace(Latest {
                event: Some(event.clone()),
                certificate: None,
            });
        }
        // An error only means no auditor is listening.
        let _ = self.inner.firehose.send(event);
        tracing::debug!(identity = %identity, "released");
        true
    }

    /// A subscription to `identity`'s rotations, woken only by those. It may be taken before
    /// the first certificate is issued.
    pub fn subscribe(&self, identity: &Identity) -> Subscription {
        loop {
            let entry = self.inner.entry(identity);
            let mut state = lock(&entry.state);
            if state.released {
                // Released between the lookup and the lock: the map has a fresh entry by now.
                continue;
            }
            let certificate = state.current.as_ref().map(|c| Arc::clone(&c.cert));
            let announce = state.announce.get_or_insert_with(|| {
                watch::Sender::new(Latest {
                    event: None,
                    certificate,
                })
            });
            return Subscription::new(identity.clone(), announce.subscribe());
        }
    }

    /// Every rotation of every identity, for auditors. A receiver that falls more than
    /// [`ManagerConfig::firehose_capacity`] events behind sees `Lagged`.
    pub fn firehose(&self) -> broadcast::Receiver<RotationEvent> {
        self.inner.firehose_opened.store(true, Ordering::Release);
        self.inner.firehose.subscribe()
    }

    /// Reissues every cached certificate, [`ManagerConfig::concurrency`] at a time. The
    /// reason announced is [`RotationReason::IssuerChanged`] for certificates from another
    /// issuer or signing CA than the current one, [`RotationReason::Renewed`] for those due
    /// anyway, [`RotationReason::Forced`] otherwise. Failures are retried with backoff.
    pub async fn reissue_all(&self) -> ReissueReport {
        let entries = self.inner.all_entries();
        self.inner.bulk(entries, Bulk::All).await
    }

    /// Swaps the issuer (a new backend, or a CA rotation done outside the issuer) and reissues
    /// every cached certificate from it, announced as [`RotationReason::IssuerChanged`].
    /// Certificates that fail keep being served while valid and are retried by gets and by
    /// the background task.
    pub async fn set_issuer(&self, issuer: Arc<dyn Issuer>) -> ReissueReport {
        {
            let mut slot = self
                .inner
                .issuer
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            slot.issuer = issuer;
            slot.generation += 1;
        }
        tracing::info!(
            backend = self.inner.slot().issuer.backend(),
            "issuer changed: reissuing every cached certificate"
        );
        self.inner.wake.notify_one();
        self.reissue_all().await
    }

    /// One pass of the background task: renews every certificate that is due now (and not
    /// backing off after a failure), [`ManagerConfig::concurrency`] at a time.
    pub async fn renew_due(&self) -> ReissueReport {
        self.inner.pass().await.0
    }

    /// Runs the background renewal task until `shutdown` completes: renews due certificates,
    /// then sleeps until the next one is due, in chunks of at most
    /// [`RenewalPolicy::max_sleep`], re-reading the wall clock after each.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        renewal_loop(Arc::downgrade(&self.inner), shutdown).await;
    }

    /// Spawns the background renewal task on the current Tokio runtime (panics outside one).
    /// It stops when the returned handle is dropped or [`RenewalTask::shutdown`] is called, or
    /// when every handle to the manager is gone.
    pub fn spawn(&self) -> RenewalTask {
        let (stop, stopped) = oneshot::channel::<()>();
        let weak = Arc::downgrade(&self.inner);
        let handle = tokio::spawn(renewal_loop(weak, async move {
            // A dropped sender ends the task too.
            let _ = stopped.await;
        }));
        RenewalTask {
            stop: Some(stop),
            handle: Some(handle),
        }
    }
}

impl fmt::Debug for CertManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = self.inner.slot();
        f.debug_struct("CertManager")
            .field("backend", &slot.issuer.backend())
            .field("generation", &slot.generation)
            .field("identities", &self.inner.entries.len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The background renewal task from [`CertManager::spawn`]. Dropping it stops the task.
#[derive(Debug)]
pub struct RenewalTask {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl RenewalTask {
    /// Stops the task and waits for it to end. Issuances it started finish on their own and
    /// are cached.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// True once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for RenewalTask {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

async fn renewal_loop(weak: Weak<Inner>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let wake = Arc::clone(&inner.wake);
        let work = async move {
            let (report, next) = inner.pass().await;
            if report.reissued > 0 || !report.failed.is_empty() {
                // Look again at once: the renewed certificates have new due times.
                return None;
            }
            let now = inner.clock.now();
            let max = inner.config.renewal.max_sleep;
            let until_next = next.map_or(max, |at| at.duration_since(now).unwrap_or_default());
            Some(until_next.clamp(Duration::from_millis(1), max))
        };
        let sleep = tokio::select! {
            biased;
            () = &mut shutdown => return,
            sleep = work => sleep,
        };
        // The manager is not held while sleeping, so dropping it ends the task.
        if let Some(sleep) = sleep {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

impl Flight {
    /// Waits for the outcome; `None` when the issuing task ended without one.
    async fn outcome(&self) -> Option<Outcome> {
        // A caller that issues in a loop still lets the worker's other tasks run now and then.
        tokio::task::coop::consume_budget().await;
        loop {
            // Registered before looking, so an answer set after the look still wakes us.
            let done = self.done.notified();
            if let Some(outcome) = self.outcome.get() {
                return outcome.clone();
            }
            done.await;
        }
    }
}

impl Answer {
    fn send(self, outcome: Outcome) {
        let _ = self.0.outcome.set(Some(outcome));
        // Drop wakes the waiters.
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        let _ = self.0.outcome.set(None);
        self.0.done.notify_waiters();
    }
}

/// Clears the entry's in-flight marker if the issuing task ends without doing so (a panic in
/// the issuer, a runtime shutting down), so the next caller starts afresh.
struct FlightGuard {
    entry: Arc<Entry>,
    flight: Arc<Flight>,
}

/// Drives an issuance in the task of the caller that started it (no hand-off to another
/// worker thread on the common path). If that caller gives up before the end (its future is
/// dropped: a timeout, a `select!`), the rest of the work moves to a Tokio task, so the
/// issuance still completes, is cached, and answers everyone waiting for it. A panic in the
/// issuer is caught here: the waiters and the caller see [`ManagerError::Aborted`].
struct Handoff(Option<Work>);

impl Future for Handoff {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(work) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        match panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            // Done, or the issuer panicked: dropping the work drops its FlightGuard and the
            // outcome's sender, so waiters see the end.
            Ok(Poll::Ready(())) | Err(_) => {
                self.0 = None;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(work) = self.0.take()
            && !std::thread::panicking()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(work);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.entry.state);
        if state
            .inflight
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            state.inflight = None;
        }
    }
}

impl Inner {
    fn slot(&self) -> IssuerSlot {
        self.issuer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The entry for `identity`, created when absent.
    fn entry(&self, identity: &Identity) -> Arc<Entry> {
        let mut entries = self.entries.shard(identity);
        if let Some(entry) = entries.get(identity) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry {
            identity: identity.clone(),
            state: Mutex::new(EntryState::new()),
        });
        entries.insert(identity.clone(), Arc::clone(&entry));
        entry
    }

    fn all_entries(&self) -> Vec<Arc<Entry>> {
        self.entries.all()
    }

    /// Serve the cache, join the issuance in flight, or start one.
    fn decide_get(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        state: &mut EntryState,
        request: &CertificateRequest,
    ) -> Step {
        if let Some(flight) = &state.inflight {
            return Step::Wait(Arc::clone(flight));
        }
        let slot = self.slot();
        let now = self.clock.now();
        let reason = match &mut state.current {
            None => RotationReason::Issued,
            Some(cached) if !same_parameters(&cached.request, request) => {
                RotationReason::RequestChanged
            }
            Some(cached) => {
                // Same certificate asked for; a new lifetime applies from the next issuance.
                if cached.request.lifetime != request.lifetime {
                    Arc::make_mut(&mut cached.request).lifetime = request.lifetime;
                }
                let cert = Arc::clone(&cached.cert);
                let expired = now > cached.not_after;
                match state.due(now, &slot, slot.issuer.signing_ca()) {
                    None => return Step::Serve(cert),
                    // A renewal failed a moment ago and the cached certificate is still
                    // valid: serve it until the retry, rather than hammer the issuer.
                    Some(_) if !expired && state.backing_off(now) => return Step::Serve(cert),
                    Some(reason) => reason,
                }
            }
        };
        let request = Arc::new(request.clone());
        let (flight, work) = self.start(entry, state, request, reason, slot, None);
        Step::Drive(flight, work)
    }

    /// Starts an issuance for `entry` (whose lock the caller holds): marks it in flight and
    /// returns the work, for the caller to drive ([`Handoff`]) or spawn.
    fn start(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        state: &mut EntryState,
        request: Arc<CertificateRequest>,
        reason: RotationReason,
        slot: IssuerSlot,
        permit: Option<OwnedSemaphorePermit>,
    ) -> (Arc<Flight>, Work) {
        let backend = slot.issuer.backend();
        let flight = Arc::new(Flight {
            request: Arc::clone(&request),
            backend,
            outcome: OnceLock::new(),
            done: Notify::new(),
        });
        let answer = Answer(Arc::clone(&flight));
        state.inflight = Some(Arc::clone(&flight));
        let span = tracing::info_span!(
            "certificate_issuance",
            identity = %entry.identity,
            reason = ?reason,
            backend,
        );
        let inner = Arc::clone(self);
        let guard = FlightGuard {
            entry: Arc::clone(entry),
            flight: Arc::clone(&flight),
        };
        let work = Box::pin(
            async move {
                let signing_at_issue = slot.issuer.signing_ca();
                let result = slot.issuer.issue(&request).await;
                let outcome = inner.finish(
                    &guard.entry,
                    &guard.flight,
                    request,
                    reason,
                    &slot,
                    signing_at_issue,
                    result,
                );
                drop(permit);
                let forget = matches!(outcome, Outcome::Failed { .. });
                answer.send(outcome);
                if forget {
                    inner.forget_if_unused(&guard.entry);
                }
                drop(guard);
            }
            .instrument(span),
        );
        (flight, work)
    }

    /// Records an issuance's result in the entry and announces a new certificate.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        entry: &Entry,
        flight: &Arc<Flight>,
        request: Arc<CertificateRequest>,
        reason: RotationReason,
        slot: &IssuerSlot,
        signing_at_issue: Option<IssuerId>,
        result: Result<IssuedCertificate, IssueError>,
    ) -> Outcome {
        let now = self.clock.now();
        let policy = &self.config.renewal;
        let mut state = lock(&entry.state);
        if state
            .inflight
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, flight))
        {
            state.inflight = None;
        }
        match result {
            Ok(issued) => {
                let cert = Arc::new(issued);
                let not_after = to_system_time(cert.not_after());
                let due = renew_at(
                    to_system_time(cert.not_before()),
                    not_after,
                    policy,
                    jitter_sample(),
                );
                // Never due sooner than retry_min after issuance, even from an issuer that
                // hands out certificates already due.
                let floor = (now + policy.retry_min).min(not_after);
                state.failures = 0;
                state.retry_at = None;
                state.forced = false;
                if state.released {
                    return Outcome::Issued(cert);
                }
                let old = state.current.replace(Cached {
                    cert: Arc::clone(&cert),
                    request,
                    generation: slot.generation,
                    signing_at_issue,
                    not_after,
                    renew_at: due.max(floor),
                });
                tracing::debug!(
                    serial = %cert.certificate.serial(),
                    not_after = %cert.not_after(),
                    "certificate issued"
                );
                // The event is built only when someone will read it: a subscription taken
                // later starts from the current state and never sees an earlier event.
                let subscribers = state
                    .announce
                    .as_ref()
                    .map_or(0, watch::Sender::receiver_count);
                let auditors = if self.firehose_opened.load(Ordering::Acquire) {
                    self.firehose.receiver_count()
                } else {
                    0
                };
                let event = (subscribers > 0 || auditors > 0).then(|| RotationEvent {
                    identity: entry.identity.clone(),
                    reason,
                    old: summary(old.as_ref()),
                    new: Some(CertSummary::of(&cert)),
                    at: to_timestamp(now),
                });
                if subscribers > 0 {
                    if let Some(announce) = &state.announce {
                        announce.send_replace(Latest {
                            event: event.clone(),
                            certificate: Some(Arc::clone(&cert)),
                        });
                    }
                } else {
                    // Nobody to wake: a later subscription makes a channel from `current`.
                    state.announce = None;
                }
                // Sent under the entry lock, so one identity's events reach the firehose in
                // order. An error only means no auditor is listening.
                if let Some(event) = event.filter(|_| auditors > 0) {
                    let _ = self.firehose.send(event);
                }
                Outcome::Issued(cert)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let valid = state
                    .current
                    .as_ref()
                    .filter(|c| now <= c.not_after && same_parameters(&c.request, &request));
                let remaining = valid.map(|c| c.not_after.duration_since(now).unwrap_or_default());
                let fallback = valid.map(|c| Arc::clone(&c.cert));
                let delay = policy.retry_delay(state.failures, remaining);
                state.retry_at = Some(now + delay);
                match &fallback {
                    Some(kept) => tracing::warn!(
                        error = %error,
                        failures = state.failures,
                        retry_in = ?delay,
                        serving_until = %kept.not_after(),
                        "renewal failed: serving the cached certificate until it expires"
                    ),
                    None => tracing::warn!(
                        error = %error,
                        failures = state.failures,
                        retry_in = ?delay,
                        "issuance failed and no valid certificate is cached"
                    ),
                }
                Outcome::Failed {
                    error: Arc::new(error),
                    fallback,
                }
            }
        }
    }

    /// Drops an entry whose first issuance failed and that nobody subscribes to, so failed
    /// requests do not pile up in the map.
    fn forget_if_unused(&self, entry: &Arc<Entry>) {
        let mut entries = self.entries.shard(&entry.identity);
        let mut state = lock(&entry.state);
        let unused = !state.released
            && state.current.is_none()
            && state.inflight.is_none()
            && state
                .announce
                .as_ref()
                .is_none_or(|a| a.receiver_count() == 0);
        if unused
            && entries
                .get(&entry.identity)
                .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            entries.remove(&entry.identity);
            state.released = true;
            state.announce = None;
        }
    }

    /// Finds the certificates due now and renews them; returns what was done and when the
    /// next one is due (as far as can be told ahead: a change of signing CA cannot).
    async fn pass(self: &Arc<Self>) -> (ReissueReport, Option<SystemTime>) {
        let now = self.clock.now();
        let slot = self.slot();
        let signing = slot.issuer.signing_ca();
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for entry in self.all_entries() {
            let state = lock(&entry.state);
            let Some(cached) = &state.current else {
                continue;
            };
            if state.released || state.inflight.is_some() {
                continue;
            }
            let at = if state.due(now, &slot, signing).is_none() {
                cached.renew_at
            } else if let Some(retry) = state.retry_at.filter(|&at| now < at) {
                retry
            } else {
                due.push(Arc::clone(&entry));
                continue;
            };
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if due.is_empty() {
            return (ReissueReport::default(), next);
        }
        tracing::debug!(count = due.len(), "renewing due certificates");
        (self.bulk(due, Bulk::Due).await, next)
    }

    /// Renews `entries`, at most `concurrency` issuances at a time, and waits for all.
    async fn bulk(self: &Arc<Self>, entries: Vec<Arc<Entry>>, which: Bulk) -> ReissueReport {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut flights = Vec::with_capacity(entries.len());
        for entry in entries {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let mut state = lock(&entry.state);
            if state.released {
                continue;
            }
            if let Some(flight) = state.inflight.clone() {
                if which == Bulk::All {
                    state.forced = true;
                }
                flights.push((entry.identity.clone(), flight));
                continue;
            }
            let Some(cached) = &state.current else {
                continue;
            };
            let request = cached.request.clone();
            let now = self.clock.now();
            let slot = self.slot();
            let signing = slot.issuer.signing_ca();
            let reason = match (which, state.due(now, &slot, signing)) {
                (Bulk::All, Some(reason)) => reason,
                (Bulk::All, None) => {
                    state.forced = true;
                    RotationReason::Forced
                }
                (Bulk::Due, None) => continue,
                (Bulk::Due, Some(_)) if state.backing_off(now) => continue,
                (Bulk::Due, Some(reason)) => reason,
            };
            let (flight, work) =
                self.start(&entry, &mut state, request, reason, slot, Some(permit));
            tokio::spawn(work);
            flights.push((entry.identity.clone(), flight));
        }
        let mut report = ReissueReport::default();
        for (identity, flight) in flights {
            match flight.outcome().await {
                Some(Outcome::Issued(_)) => report.reissued += 1,
                Some(Outcome::Failed { error, .. }) => report.failed.push((
                    identity.clone(),
                    ManagerError::Issue {
                        identity,
                        backend: flight.backend,
                        source: error,
                    },
                )),
                None => report.failed.push((
                    identity.clone(),
                    ManagerError::Aborted {
                        identity,
                        backend: flight.backend,
                    },
                )),
            }
        }
        report
    }
}

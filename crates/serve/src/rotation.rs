//! Zero-downtime root rotation: a state machine persisted in the store, driven by what the
//! consumers acknowledged (`POST /v1/acks`) and a time floor.
//!
//! ```text
//! Idle ─start─▶ Staged ──▶ Signing ──▶ Retiring ──▶ Done ─prune─▶ Idle
//!               roots A+B   roots A+B   roots B       roots B
//!               signer A    signer B    signer B      signer B
//! ```
//!
//! - **Staged**: the new root B is in the bundle beside A; leaves are still signed under A.
//! - **Signing** (gate: every counted consumer acked a bundle version holding B, and the dwell
//!   passed): leaves are signed under B; acks of consumers whose leaf is not under B are
//!   answered with `renew_before` (pull the renewal forward), and renewals are rate-limited
//!   per consumer group ([`Limiter`]).
//! - **Retiring** (gate: every counted consumer acked a leaf under B, has no leaf, or its leaf
//!   under A expired): A leaves the bundle, in a version marked as a deliberate rotation step
//!   (`Anchorage-Rotation: deliberate`), so agents install it although it drops a root.
//! - **Done** (gate: every counted consumer acked a bundle version without A): the store's CA
//!   (`ca.builtin`, what `anchorage ca` reads) becomes B; A stays in `previous` (and its CA
//!   record) until `prune`.
//!
//! `abort` from any phase turns the rotation around: a new record with the roles swapped
//! (`old` = B, `new` = A, `aborted_from` set) that enters the phase matching what is deployed
//! (from Staged or Signing: Signing back to A at once, B still trusted; from Retiring or Done:
//! Staged, A added back), and runs the same gates; its last step removes B and ends in Idle
//! once every consumer acknowledged that removal.
//!
//! Every transition is a compare-and-swap on [`ROTATION_KEY`], so instances sharing a store
//! agree; a transition that changes the bundle writes the record first with `bundle_pending`,
//! then the bundle record (roots + version + mark, see [`crate::state::BundleRecord::roots`]),
//! then the version into the rotation record ([`reconcile`] finishes it after a crash).
//! Automatic transitions are made by one instance only: the holder of the lease
//! [`LEASE_KEY`] (holder id + expiry, renewed by CAS). Every instance follows the record
//! ([`follow`]) and switches its signer ([`crate::Authority`]) to match. The CAs themselves
//! are stored under [`CA_PREFIX`]`<sha256 of the root>` in `anchorage-ca`'s record layout.
//!
//! A shared store may answer from a replica that lags (JetStream direct gets): the record is
//! read through [`read_fresh`], never older than a revision this instance read or wrote, and
//! [`reconcile`] claims a pending bundle step by compare-and-swap before touching the bundle.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_ca::persist::{self, SaveOptions};
use anchorage_ca::{BuiltinCa, CaError, InitOptions, IntermediateOptions, KeyType};
use anchorage_store::{Store, StoreError};
use anchorage_x509::{Certificate, Timestamp};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::authority::{CERTS_PREFIX, CertRecord, Signer, root_fingerprint};
use crate::error::ApiError;
use crate::state::{AppState, ConsumerRecord};
use crate::tokens::{now_unix, random_hex};

/// Store key of the rotation record.
pub const ROTATION_KEY: &str = "serve.rotation";
/// Store key of the driver lease.
pub const LEASE_KEY: &str = "serve.rotation-lease";
/// Store prefix of the CAs a rotation involves (`<prefix><root sha256 hex>`).
pub const CA_PREFIX: &str = "serve.rotation-ca.";
/// The schema of [`status_json`]'s answer.
pub const STATUS_SCHEMA: u32 = 1;

/// A rotation phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No rotation under way.
    #[default]
    Idle,
    /// New root in the bundle, leaves under the old one.
    Staged,
    /// Leaves under the new root, both roots in the bundle.
    Signing,
    /// Old root out of the bundle.
    Retiring,
    /// Finished; the old root is kept until `prune`.
    Done,
}

impl Phase {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Staged => "staged",
            Phase::Signing => "signing",
            Phase::Retiring => "retiring",
            Phase::Done => "done",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CA named in a rotation record (certificates only; the keys are in its CA record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRef {
    /// SHA-256 of the root, lowercase hex.
    pub sha256: String,
    /// The root's subject.
    pub subject: String,
    /// The root's notAfter, unix seconds.
    pub not_after: i64,
    /// The root, PEM.
    pub root_pem: String,
}

impl CaRef {
    fn of(ca: &BuiltinCa) -> Self {
        Self {
            sha256: root_fingerprint(ca.root()),
            subject: ca.root().subject().to_owned(),
            not_after: ca.root().not_after().unix(),
            root_pem: ca.root().to_pem(),
        }
    }

    fn store_key(&self) -> String {
        format!("{CA_PREFIX}{}", self.sha256)
    }
}

/// One transition in the record's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transition {
    /// The phase left.
    pub from: Phase,
    /// The phase entered.
    pub to: Phase,
    /// Unix seconds.
    pub at: i64,
    /// Who: the token subject, or `auto:<instance>`.
    pub by: String,
    /// `start`, `advance`, `abort`, `prune`.
    pub action: String,
    /// The gate did not hold and `force` overrode it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

/// The rotation record under [`ROTATION_KEY`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RotationRecord {
    /// The phase.
    pub phase: Phase,
    /// Unix seconds the phase was entered.
    pub since: i64,
    /// This rotation's id (empty before the first).
    #[serde(default)]
    pub id: String,
    /// The outgoing CA.
    #[serde(default)]
    pub old: Option<CaRef>,
    /// The incoming CA.
    #[serde(default)]
    pub new: Option<CaRef>,
    /// The first bundle version holding `new` beside `old`.
    #[serde(default)]
    pub new_trusted_version: Option<u64>,
    /// The bundle version written on entering Signing (wakes every consumer to ack).
    #[serde(default)]
    pub signing_version: Option<u64>,
    /// The first bundle version without `old`.
    #[serde(default)]
    pub old_removed_version: Option<u64>,
    /// The bundle step of the current phase is not written yet.
    #[serde(default)]
    pub bundle_pending: bool,
    /// This record turns an aborted rotation around (from that phase).
    #[serde(default)]
    pub aborted_from: Option<Phase>,
    /// The new CA's signing certificate is also cross-signed by the old root.
    #[serde(default)]
    pub cross_sign: bool,
    /// The cross-signed certificate, PEM (sent in chains while `new` signs).
    #[serde(default)]
    pub cross_pem: Option<String>,
    /// The retired CA, kept (with its CA record) until `prune`.
    #[serde(default)]
    pub previous: Option<CaRef>,
    /// The root whose issuance records predate rotation (records without a `ca` field).
    #[serde(default)]
    pub legacy_ca: Option<String>,
    /// Every transition of this rotation.
    #[serde(default)]
    pub history: Vec<Transition>,
    /// The trust half only, for an external issuer (Vault/OpenBao, cert-manager): serve holds
    /// neither key, never switches its signer, cannot see which root the issuer's leaves chain
    /// to, and does not advance out of Signing by itself (the user switches the issuer then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

impl RotationRecord {
    /// The phase after this one (`None` at Idle and Done).
    pub fn next_phase(&self) -> Option<Phase> {
        match self.phase {
            Phase::Staged => Some(Phase::Signing),
            Phase::Signing => Some(Phase::Retiring),
            Phase::Retiring if self.aborted_from.is_some() => Some(Phase::Idle),
            Phase::Retiring => Some(Phase::Done),
            Phase::Idle | Phase::Done => None,
        }
    }

    /// The CA roots the bundle holds in this phase (`None`: leave the bundle's roots alone).
    pub fn roots(&self) -> Option<Vec<String>> {
        let (old, new) = (self.old.as_ref()?, self.new.as_ref()?);
        match self.phase {
            Phase::Staged | Phase::Signing => {
                Some(vec![old.root_pem.clone(), new.root_pem.clone()])
            }
            Phase::Retiring | Phase::Done => Some(vec![new.root_pem.clone()]),
            Phase::Idle => None,
        }
    }

    /// The CA that signs in this phase (`None`: the store's CA, and always for an external
    /// issuer).
    pub fn signer(&self) -> Option<&CaRef> {
        if self.external {
            return None;
        }
        match self.phase {
            Phase::Staged => self.old.as_ref(),
            Phase::Signing | Phase::Retiring | Phase::Done | Phase::Idle => self.new.as_ref(),
        }
    }

    /// Whether a rotation is under way (not Idle, not Done).
    pub fn active(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Done)
    }
}

/// How rotation runs on this instance.
#[derive(Clone, Debug)]
pub struct RotationConfig {
    /// Advance automatically when a gate holds and the dwell passed (the lease holder does).
    pub auto: bool,
    /// How often the driver looks (lease renewal, gates).
    pub interval: Duration,
    /// The lease's lifetime (another instance takes over after it).
    pub lease_ttl: Duration,
    /// The least time spent in a phase before it may be left (without `force`).
    pub min_dwell: Duration,
    /// The fraction of counted consumers a gate needs (default 1.0: all).
    pub fraction: f64,
    /// Consumers whose last ack is older than this are left out of the gates (and listed as
    /// excluded); `None` (default): every consumer counts.
    pub stale_after: Option<Duration>,
    /// Renewals allowed per consumer group and window while renewals are pulled forward.
    pub rate_limit: u32,
    /// The rate limit's window.
    pub rate_window: Duration,
    /// The consumer labels that form the group key (empty: all labels).
    pub group_labels: Vec<String>,
    /// How a new CA is made (`start` without an import): the key type is overridden per
    /// request; an intermediate is made when the current CA has one.
    pub init: InitOptions,
    /// The CA keys' passphrase (as the store's CA).
    pub passphrase: Option<secrecy::SecretString>,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            auto: true,
            interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            min_dwell: Duration::from_secs(60),
            fraction: 1.0,
            stale_after: None,
            rate_limit: 100,
            rate_window: Duration::from_secs(5),
            group_labels: Vec::new(),
            init: InitOptions::default(),
            passphrase: None,
        }
    }
}

/// The per-instance rotation runtime (in [`AppState`]).
pub struct Rotation {
    /// The configuration.
    pub config: RotationConfig,
    /// This instance's lease holder id.
    pub holder: String,
    /// The record last followed.
    pub current: watch::Sender<RotationRecord>,
    /// Renewal rate limits.
    pub limiter: Limiter,
    /// The data directory's `ca.pem`, rewritten with every root trusted during a rotation (so
    /// clients that read it trust this instance's serving certificate whichever CA signs it).
    pub ca_file: Option<std::path::PathBuf>,
    /// The root (PEM) of this instance's built-in serving certificate, kept in `ca.pem`.
    pub serving_root: Mutex<Option<String>>,
    /// The highest revision of the record this instance has read or written: reads never go
    /// back before it ([`read_fresh`]).
    seen: std::sync::atomic::AtomicU64,
    signers: Mutex<HashMap<String, Arc<Signer>>>,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("holder", &self.holder)
            .field("phase", &self.current.borrow().phase)
            .finish_non_exhaustive()
    }
}

impl Rotation {
    /// A runtime with `config` and a fresh holder id.
    pub fn new(config: RotationConfig) -> Self {
        let limiter = Limiter::new(config.rate_limit, config.rate_window);
        Self {
            config,
            holder: random_hex(8),
            current: watch::channel(RotationRecord::default()).0,
            limiter,
            ca_file: None,
            serving_root: Mutex::new(None),
            seen: std::sync::atomic::AtomicU64::new(0),
            signers: Mutex::new(HashMap::new()),
        }
    }

    /// The same runtime rewriting `path` (the data directory's `ca.pem`) with the rotation's
    /// roots.
    #[must_use]
    pub fn with_ca_file(mut self, path: std::path::PathBuf) -> Self {
        self.ca_file = Some(path);
        self
    }

    /// The phase last followed.
    pub fn phase(&self) -> Phase {
        self.current.borrow().phase
    }
}

/// Why a rotation action was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The action does not apply to the phase.
    #[error("{action} is not possible in phase {phase}: {hint}")]
    WrongPhase {
        /// The action.
        action: &'static str,
        /// The phase.
        phase: Phase,
        /// What to do instead.
        hint: &'static str,
    },
    /// The gate does not hold (`force` overrides).
    #[error("the gate to {next} does not hold: {reason}")]
    GateNotHolding {
        /// The phase asked for.
        next: Phase,
        /// Why, naming the laggards.
        reason: String,
    },
    /// Another instance or request changed the record first.
    #[error("the rotation record changed under this request (now phase {phase}); look again")]
    Conflict {
        /// The phase now.
        phase: Phase,
    },
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A CA could not be made, imported, loaded or saved.
    #[error("the CA step failed: {0}")]
    Ca(#[from] CaError),
    /// The store failed.
    #[error("the state store failed: {0}")]
    Store(#[from] StoreError),
    /// The bundle could not be changed.
    #[error("the bundle could not be changed: {0}")]
    Bundle(ApiError),
    /// The store's replica answering this instance has not caught up with a record revision
    /// this instance already read or wrote.
    #[error(
        "the store answered the rotation record at revision {got}, older than revision {seen} this instance already saw (a lagging replica); try again"
    )]
    Lagging {
        /// The revision answered.
        got: u64,
        /// The revision already seen.
        seen: u64,
    },
}

impl From<RotationError> for ApiError {
    fn from(e: RotationError) -> Self {
        let message = e.to_string();
        match e {
            RotationError::WrongPhase { .. } => {
                ApiError::new(StatusCode::CONFLICT, "rotation_wrong_phase", message)
            }
            RotationError::GateNotHolding { .. } => {
                ApiError::new(StatusCode::CONFLICT, "gate_not_holding", message)
            }
            RotationError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            RotationError::Invalid(_) => ApiError::bad_request("invalid_request", message),
            RotationError::Ca(_) => ApiError::bad_request("rotation_ca", message),
            RotationError::Store(s) => ApiError::store(&s),
            RotationError::Bundle(b) => b,
            RotationError::Lagging { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            ),
        }
    }
}

/// Reads the rotation record (Idle when absent) and its revision.
pub async fn read(store: &dyn Store) -> Result<(RotationRecord, Option<u64>), StoreError> {
    Ok(match store.get(ROTATION_KEY).await? {
        Some(e) => (
            serde_json::from_slice(&e.value).unwrap_or_default(),
            Some(e.revision),
        ),
        None => (RotationRecord::default(), None),
    })
}

/// How long [`read_fresh`] waits for a lagging replica.
const FRESH_WAIT: Duration = Duration::from_secs(2);

/// Reads the rotation record no older than a revision this instance already read or wrote.
///
/// A JetStream bucket answers gets from any replica, which may not yet hold a write
/// acknowledged through another node (or made by this very instance a moment ago). Acting on
/// such a record would answer an action with the phase before it, switch this instance's
/// signer back, or redo a bundle step of an earlier phase (whose record write then fails its
/// compare-and-swap, but the bundle write would stand). So the read is retried until the
/// replica caught up (within 2 s), else [`RotationError::Lagging`].
pub async fn read_fresh(state: &AppState) -> Result<(RotationRecord, Option<u64>), RotationError> {
    use std::sync::atomic::Ordering;
    let seen = state.rotation.seen.load(Ordering::SeqCst);
    let started = Instant::now();
    loop {
        let (rec, revision) = read(state.store.as_ref()).await?;
        let got = revision.unwrap_or(0);
        if got >= seen {
            state.rotation.seen.fetch_max(got, Ordering::SeqCst);
            return Ok((rec, revision));
        }
        if started.elapsed() >= FRESH_WAIT {
            return Err(RotationError::Lagging { got, seen });
        }
        tracing::debug!(
            got,
            seen,
            "rotation record: the replica lags; reading again"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes `rec` if the record is still at `revision` (and remembers the revision written).
async fn write(
    state: &AppState,
    rec: &RotationRecord,
    revision: Option<u64>,
) -> Result<u64, RotationError> {
    let store = state.store.as_ref();
    let value = serde_json::to_vec(rec).unwrap_or_default();
    let result = match revision {
        Some(r) => store.update(ROTATION_KEY, value, r).await,
        None => store.create(ROTATION_KEY, value).await,
    };
    match result {
        Ok(r) => {
            state
                .rotation
                .seen
                .fetch_max(r, std::sync::atomic::Ordering::SeqCst);
            Ok(r)
        }
        Err(e) if e.is_conflict() => {
            let (now, _) = read(store).await?;
            Err(RotationError::Conflict { phase: now.phase })
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------
// Gates

/// How one consumer stands against a gate.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerState {
    /// Its name.
    pub consumer: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The bundle version it installed.
    pub bundle_version: u64,
    /// Its leaf's serial.
    pub cert_serial: Option<String>,
    /// Whose leaf: `old`, `new`, `none` (no identity), `expired`, `unknown`.
    pub leaf: &'static str,
    /// Its last ack, RFC 3339.
    pub last_seen: String,
    /// Its last refusal.
    pub refused: Option<String>,
    /// What it lacks for the gate (empty when it passes).
    pub missing: String,
}

/// A gate's state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Gate {
    /// The phase it leads to.
    pub next: Option<Phase>,
    /// Whether it holds (consumers and dwell).
    pub holds: bool,
    /// Consumers that count.
    pub counted: usize,
    /// Of them, those that pass.
    pub passed: usize,
    /// Passes needed (the fraction of `counted`, rounded up).
    pub required: usize,
    /// Seconds of dwell still to wait.
    pub dwell_remaining: u64,
    /// Consumers left out as stale.
    pub excluded: Vec<String>,
    /// Consumers that do not pass, by name, with what they have installed.
    pub laggards: Vec<ConsumerState>,
    /// Why it does not hold, in words.
    pub reason: String,
}

/// What a gate evaluation needs besides the record.
pub struct GateInput<'a> {
    /// Every consumer.
    pub consumers: &'a [ConsumerRecord],
    /// The root (sha256) each known leaf serial was issued under.
    pub leaf_ca: &'a HashMap<String, Option<String>>,
    /// Unix seconds.
    pub now: i64,
}

fn now_ts() -> Timestamp {
    Timestamp::from_unix(now_unix())
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

fn leaf_class(rec: &RotationRecord, c: &ConsumerRecord, input: &GateInput<'_>) -> &'static str {
    let Some(serial) = &c.cert_serial else {
        return "none";
    };
    let expired = c
        .not_after
        .as_deref()
        .and_then(parse_rfc3339)
        .is_some_and(|t| t <= input.now);
    let ca = match input.leaf_ca.get(&normal_serial(serial)) {
        Some(Some(ca)) => Some(ca.clone()),
        Some(None) => rec.legacy_ca.clone(),
        None => None,
    };
    let new = rec.new.as_ref().map(|n| n.sha256.as_str());
    let old = rec.old.as_ref().map(|o| o.sha256.as_str());
    match ca.as_deref() {
        Some(c) if Some(c) == new => "new",
        _ if expired => "expired",
        Some(c) if Some(c) == old => "old",
        _ => "unknown",
    }
}

/// A serial as the issuance records key it (lowercase hex, no separators, no leading `00`).
pub fn normal_serial(serial: &str) -> String {
    let hex: String = serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    match hex.strip_prefix("00") {
        Some(h) if h.len() == 32 => h.to_owned(),
        _ => hex,
    }
}

/// Evaluates the gate out of `rec`'s phase (pure: tests drive it directly).
pub fn evaluate(rec: &RotationRecord, config: &RotationConfig, input: &GateInput<'_>) -> Gate {
    let mut gate = Gate {
        next: rec.next_phase(),
        ..Gate::default()
    };
    let Some(next) = gate.next else {
        gate.reason = format!("there is no phase after {}", rec.phase);
        return gate;
    };
    let dwell = i64::try_from(config.min_dwell.as_secs()).unwrap_or(i64::MAX);
    gate.dwell_remaining = u64::try_from((rec.since + dwell - input.now).max(0)).unwrap_or(0);
    let mut reasons = Vec::new();
    if rec.bundle_pending {
        reasons.push("the bundle step of this phase is still being written".to_owned());
    }
    for c in input.consumers {
        if let Some(stale) = config.stale_after
            && input.now - c.last_seen > i64::try_from(stale.as_secs()).unwrap_or(i64::MAX)
        {
            gate.excluded.push(c.name.clone());
            continue;
        }
        gate.counted += 1;
        let leaf = leaf_class(rec, c, input);
        let missing = match next {
            Phase::Signing => {
                let need = rec.new_trusted_version.unwrap_or(u64::MAX);
                (c.bundle_version < need).then(|| {
                    format!(
                        "its bundle (version {}) lacks the new root (needs version {need} or later)",
                        c.bundle_version
                    )
                })
            }
            // serve cannot see an external issuer's leaves: the user advances.
            Phase::Retiring if rec.external => None,
            Phase::Retiring => (!matches!(leaf, "new" | "none" | "expired")).then(|| {
                format!(
                    "its leaf {} is not under the new root ({leaf})",
                    c.cert_serial.as_deref().unwrap_or("-")
                )
            }),
            Phase::Done | Phase::Idle => {
                let need = rec.old_removed_version.unwrap_or(u64::MAX);
                (c.bundle_version < need).then(|| {
                    format!(
                        "its bundle (version {}) still holds the old root (needs version {need} or later)",
                        c.bundle_version
                    )
                })
            }
            Phase::Staged => None,
        };
        match missing {
            None => gate.passed += 1,
            Some(missing) => gate.laggards.push(ConsumerState {
                consumer: c.name.clone(),
                labels: c.labels.clone(),
                bundle_version: c.bundle_version,
                cert_serial: c.cert_serial.clone(),
                leaf,
                last_seen: Timestamp::from_unix(c.last_seen).rfc3339(),
                refused: c.refused.clone(),
                missing,
            }),
        }
    }
    let fraction = config.fraction.clamp(0.0, 1.0);
    gate.required = ((gate.counted as f64) * fraction).ceil() as usize;
    if gate.passed < gate.required {
        let names: Vec<String> = gate
            .laggards
            .iter()
            .map(|l| format!("{} ({})", l.consumer, l.missing))
            .collect();
        reasons.push(format!(
            "{} of {} consumers pass, {} needed; waiting for: {}",
            gate.passed,
            gate.counted,
            gate.required,
            names.join("; ")
        ));
    }
    if gate.dwell_remaining > 0 {
        reasons.push(format!(
            "the minimum dwell in {} has {}s to run",
            rec.phase, gate.dwell_remaining
        ));
    }
    gate.holds = reasons.is_empty();
    gate.reason = reasons.join("; ");
    gate
}

/// Reads the consumers and their leaves' issuing roots, and evaluates the gate.
pub async fn gate(state: &AppState, rec: &RotationRecord) -> Result<Gate, StoreError> {
    let consumers = state.consumers().await?;
    let mut leaf_ca = HashMap::new();
    if rec.next_phase() == Some(Phase::Retiring) {
        for c in &consumers {
            if let Some(serial) = &c.cert_serial {
                let serial = normal_serial(serial);
                if let Some(e) = state.store.get(&format!("{CERTS_PREFIX}{serial}")).await?
                    && let Ok(r) = serde_json::from_slice::<CertRecord>(&e.value)
                {
                    leaf_ca.insert(serial, r.ca);
                }
            }
        }
    }
    Ok(evaluate(
        rec,
        &state.rotation.config,
        &GateInput {
            consumers: &consumers,
            leaf_ca: &leaf_ca,
            now: now_unix(),
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Actions

/// A rotation action (`POST /v1/rotation`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// `start`, `advance`, `abort`, `prune`, `status`.
    pub action: String,
    /// Override a gate that does not hold (logged and audited).
    #[serde(default)]
    pub force: bool,
    /// The new CA's key type (`start`; default: the current CA's).
    #[serde(default)]
    pub key_type: Option<KeyType>,
    /// The new CA as PEM: its certificates and key(s) (`start`; default: made here).
    #[serde(default)]
    pub import_pem: Option<String>,
    /// Cross-sign the new CA's signing certificate with the old root (`start`).
    #[serde(default)]
    pub cross_sign: bool,
    /// Take this CA over as the old root A first (`start`): certificates and key(s) as PEM,
    /// e.g. from an FSM/OSM `fsm-ca-bundle` Secret. It replaces the store's CA; refused while a
    /// consumer holds a live leaf under the store's CA, unless `force`.
    #[serde(default)]
    pub takeover_pem: Option<String>,
    /// The trust half only, for an external issuer (`start`): `import_pem` is B's root
    /// certificate (no key) and `old_pem` A's, the root the issuer chains to now.
    #[serde(default)]
    pub external: bool,
    /// A's root certificate for an external rotation.
    #[serde(default)]
    pub old_pem: Option<String>,
}

impl std::fmt::Debug for ActionRequest {
    /// The PEM fields hold keys: only whether they are present is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRequest")
            .field("action", &self.action)
            .field("force", &self.force)
            .field("key_type", &self.key_type)
            .field(
                "import_pem",
                &self.import_pem.as_ref().map(|_| "[withheld]"),
            )
            .field("cross_sign", &self.cross_sign)
            .field(
                "takeover_pem",
                &self.takeover_pem.as_ref().map(|_| "[withheld]"),
            )
            .field("external", &self.external)
            .field("old_pem", &self.old_pem.is_some())
            .finish()
    }
}

impl std::fmt::Display for ActionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.action)?;
        if self.force {
            f.write_str(" --force")?;
        }
        Ok(())
    }
}

/// Splits PEM text into its certificate blocks (one string) and its private key blocks.
fn split_pem(text: &str) -> (String, Vec<String>) {
    let (mut certs, mut keys) = (String::new(), Vec::new());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(label_len) = block[11..].find("-----") else {
            break;
        };
        let label = &block[11..11 + label_len];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = block.find(&end_marker) else {
            break;
        };
        let whole = format!("{}\n", &block[..end + end_marker.len()]);
        if label.contains("PRIVATE KEY") {
            keys.push(whole);
        } else {
            certs.push_str(&whole);
        }
        rest = &block[end + end_marker.len()..];
    }
    (certs, keys)
}

/// Takes a CA from PEM text holding its certificates and key(s) (the signing CA's key, and the
/// root's when it is not the signer and is to be kept).
pub fn import_ca(pem: &str) -> Result<BuiltinCa, RotationError> {
    use anchorage_ca::builtin::import::Source;
    let (certs, keys) = split_pem(pem);
    if keys.is_empty() {
        return Err(RotationError::Invalid(
            "the PEM holds no private key: give the CA's certificate(s) and its key".into(),
        ));
    }
    let key_sources: Vec<Source<'_>> = keys
        .iter()
        .map(|k| Source::new("the PEM's key", k.as_bytes()))
        .collect();
    Ok(BuiltinCa::from_pem(
        &[Source::new("the PEM's certificates", certs.as_bytes())],
        &key_sources,
        now_ts(),
    )?)
}

/// A CA as one PEM text (certificates, then keys): what [`import_ca`] reads.
pub fn ca_pem_text(ca: &BuiltinCa) -> secrecy::SecretString {
    use secrecy::ExposeSecret as _;
    let pem = ca.to_pem();
    let mut text = pem.roots.clone();
    if let Some(chain) = &pem.chain {
        text.push_str(chain);
    }
    for key in [&pem.intermediate_key, &pem.root_key].into_iter().flatten() {
        text.push_str(key.expose_secret());
    }
    if pem.intermediate_key.is_none() {
        text.push_str(ca.signing_key_pem().expose_secret());
    }
    secrecy::SecretString::from(text)
}

async fn save_ca(state: &AppState, ca: &BuiltinCa) -> Result<CaRef, RotationError> {
    let r = CaRef::of(ca);
    let options = SaveOptions {
        passphrase: state.rotation.config.passphrase.as_ref(),
        ..SaveOptions::default()
    };
    match persist::save_at(state.store.as_ref(), &r.store_key(), ca, &options).await {
        Ok(_) | Err(CaError::AlreadyInitialised { .. }) => Ok(r),
        Err(e) => Err(e.into()),
    }
}

async fn load_signer(state: &AppState, r: &CaRef) -> Result<Arc<Signer>, RotationError> {
    if let Ok(cache) = state.rotation.signers.lock()
        && let Some(s) = cache.get(&r.sha256)
    {
        return Ok(Arc::clone(s));
    }
    let loaded = persist::load_from(
        state.store.as_ref(),
        &r.store_key(),
        state.rotation.config.passphrase.as_ref(),
    )
    .await?;
    let signer = Arc::new(Signer::new(loaded.ca)?);
    if let Ok(mut cache) = state.rotation.signers.lock() {
        cache.insert(r.sha256.clone(), Arc::clone(&signer));
    }
    Ok(signer)
}

fn transition(rec: &mut RotationRecord, to: Phase, by: &str, action: &str, forced: bool) {
    let now = now_unix();
    rec.history.push(Transition {
        from: rec.phase,
        to,
        at: now,
        by: by.to_owned(),
        action: action.to_owned(),
        forced,
    });
    // The retired CA is kept (until prune) from the moment the rotation ends.
    if (to == Phase::Done || (to == Phase::Idle && rec.aborted_from.is_some()))
        && rec.previous.is_none()
    {
        rec.previous.clone_from(&rec.old);
    }
    rec.phase = to;
    rec.since = now;
    rec.bundle_pending =
        matches!(to, Phase::Staged | Phase::Signing | Phase::Retiring) && rec.old.is_some();
}

/// Runs `request` for `who`; returns the record after it.
pub async fn act(
    state: &AppState,
    request: &ActionRequest,
    who: &str,
) -> Result<RotationRecord, RotationError> {
    let (mut rec, revision) = read_fresh(state).await?;
    let from = rec.phase;
    let result = match request.action.as_str() {
        "status" => return Ok(rec),
        "start" => start(state, rec, revision, request, who).await,
        "advance" => {
            let g = gate(state, &rec).await?;
            let Some(next) = g.next else {
                return Err(RotationError::WrongPhase {
                    action: "advance",
                    phase: rec.phase,
                    hint: "start a rotation first (or prune a finished one)",
                });
            };
            if !g.holds && !request.force {
                return Err(RotationError::GateNotHolding {
                    next,
                    reason: g.reason,
                });
            }
            let forced = !g.holds;
            if forced {
                tracing::warn!(
                    target: "anchorage::audit",
                    event = "rotation_force",
                    who = %who,
                    from = %rec.phase,
                    to = %next,
                    reason = %g.reason,
                    "a rotation gate that does not hold was overridden"
                );
            }
            if matches!(next, Phase::Done | Phase::Idle) {
                // The store's CA is the new one by the time anyone sees the end.
                make_store_ca(state, &rec).await?;
            }
            transition(&mut rec, next, who, "advance", forced);
            write(state, &rec, revision).await?;
            Ok(rec)
        }
        "abort" => abort(state, rec, revision, who).await,
        "prune" => {
            if !matches!(rec.phase, Phase::Done | Phase::Idle) || rec.previous.is_none() {
                return Err(RotationError::WrongPhase {
                    action: "prune",
                    phase: rec.phase,
                    hint: "prune removes the retired root once a rotation is done",
                });
            }
            let prev = rec.previous.take();
            rec.aborted_from = None;
            if rec.phase == Phase::Done {
                transition(&mut rec, Phase::Idle, who, "prune", false);
            }
            rec.bundle_pending = false;
            write(state, &rec, revision).await?;
            if let Some(prev) = prev {
                state.store.delete(&prev.store_key(), None).await?;
                if let Ok(mut cache) = state.rotation.signers.lock() {
                    cache.remove(&prev.sha256);
                }
            }
            Ok(rec)
        }
        other => Err(RotationError::Invalid(format!(
            "action {other:?} is not one of start, advance, abort, prune, status"
        ))),
    }?;
    tracing::info!(
        target: "anchorage::audit",
        event = "rotation",
        action = %request.action,
        who = %who,
        from = %from,
        to = %result.phase,
        force = request.force,
        rotation = %result.id,
    );
    let rec = reconcile(state).await.unwrap_or(result);
    apply(state, &rec).await;
    Ok(rec)
}

async fn start(
    state: &AppState,
    mut rec: RotationRecord,
    revision: Option<u64>,
    request: &ActionRequest,
    who: &str,
) -> Result<RotationRecord, RotationError> {
    if rec.phase != Phase::Idle {
        return Err(RotationError::WrongPhase {
            action: "start",
            phase: rec.phase,
            hint: if rec.phase == Phase::Done {
                "prune the finished rotation first"
            } else {
                "advance or abort the rotation under way first"
            },
        });
    }
    if let Some(prev) = &rec.previous {
        return Err(RotationError::Invalid(format!(
            "the retired root {} is still kept; prune it first",
            prev.subject
        )));
    }
    if request.external {
        return start_external(state, rec, revision, request, who).await;
    }
    let old_ca = match &request.takeover_pem {
        Some(pem) => takeover(state, pem, request.force, who).await?,
        None => state.authority.ca(),
    };
    let new_ca = match &request.import_pem {
        Some(pem) => import_ca(pem)?,
        None => {
            let mut init = state.rotation.config.init.clone();
            init.key_type = request
                .key_type
                .or_else(|| old_ca.signing_key().key_type())
                .unwrap_or_default();
            let date = now_ts().rfc3339();
            init.common_name = format!("Anchorage Root CA {}", &date[..10]);
            if !old_ca.chain().is_empty() && init.intermediate.is_none() {
                init.intermediate = Some(IntermediateOptions::default());
            }
            BuiltinCa::init(&init)?
        }
    };
    if root_fingerprint(new_ca.root()) == root_fingerprint(old_ca.root()) {
        return Err(RotationError::Invalid(
            "the new CA is the current one; rotate to another root".into(),
        ));
    }
    let old = save_ca(state, &old_ca).await?;
    let new = save_ca(state, &new_ca).await?;
    let cross_pem = if request.cross_sign {
        Some(cross_sign(&old_ca, &new_ca)?.to_pem())
    } else {
        None
    };
    if rec.legacy_ca.is_none() {
        rec.legacy_ca = Some(old.sha256.clone());
    }
    let legacy = rec.legacy_ca.clone();
    let mut next = RotationRecord {
        phase: Phase::Idle,
        since: now_unix(),
        id: random_hex(8),
        old: Some(old),
        new: Some(new),
        cross_sign: request.cross_sign,
        cross_pem,
        legacy_ca: legacy,
        ..RotationRecord::default()
    };
    transition(&mut next, Phase::Staged, who, "start", false);
    write(state, &next, revision).await?;
    Ok(next)
}

/// A root certificate (no key) named in an external rotation.
fn root_ref(pem: Option<&str>, field: &str) -> Result<CaRef, RotationError> {
    let Some(pem) = pem else {
        return Err(RotationError::Invalid(format!(
            "an external rotation needs {field} (a root certificate, PEM)"
        )));
    };
    let decoded = anchorage_x509::decode(pem.as_bytes());
    if decoded.has_private_key() {
        return Err(RotationError::Invalid(format!(
            "{field} holds a private key: an external issuer's key stays with the issuer; send its root certificate only"
        )));
    }
    let Some(root) = decoded
        .certificates
        .iter()
        .map(|f| &f.certificate)
        .find(|c| c.is_ca() && c.is_self_signed())
    else {
        return Err(RotationError::Invalid(format!(
            "{field} holds no self-signed CA certificate (a root)"
        )));
    };
    Ok(CaRef {
        sha256: root_fingerprint(root),
        subject: root.subject().to_owned(),
        not_after: root.not_after().unix(),
        root_pem: root.to_pem(),
    })
}

/// `start` of the trust half for an external issuer: B (and A) as certificates only.
async fn start_external(
    state: &AppState,
    rec: RotationRecord,
    revision: Option<u64>,
    request: &ActionRequest,
    who: &str,
) -> Result<RotationRecord, RotationError> {
    if request.takeover_pem.is_some() || request.cross_sign || request.key_type.is_some() {
        return Err(RotationError::Invalid(
            "an external rotation takes only import_pem (B's root) and old_pem (A's root): serve makes, imports and cross-signs no key for it".into(),
        ));
    }
    let new = root_ref(request.import_pem.as_deref(), "import_pem")?;
    let old = root_ref(request.old_pem.as_deref(), "old_pem")?;
    if new.sha256 == old.sha256 {
        return Err(RotationError::Invalid(
            "import_pem and old_pem are the same root".into(),
        ));
    }
    let mut next = RotationRecord {
        phase: Phase::Idle,
        since: now_unix(),
        id: random_hex(8),
        old: Some(old),
        new: Some(new),
        legacy_ca: rec.legacy_ca.clone(),
        external: true,
        ..RotationRecord::default()
    };
    transition(&mut next, Phase::Staged, who, "start", false);
    write(state, &next, revision).await?;
    Ok(next)
}

/// Makes the CA in `pem` the store's CA (the old root of the rotation about to start).
async fn takeover(
    state: &AppState,
    pem: &str,
    force: bool,
    who: &str,
) -> Result<BuiltinCa, RotationError> {
    let ca = import_ca(pem)?;
    let now = now_unix();
    let live: Vec<String> = state
        .consumers()
        .await?
        .into_iter()
        .filter(|c| {
            c.cert_serial.is_some()
                && c.not_after
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .is_none_or(|t| t > now)
        })
        .map(|c| c.name)
        .collect();
    if !live.is_empty() && !force {
        return Err(RotationError::Invalid(format!(
            "taking over another root drops the current one from the bundle, and these consumers hold live leaves under it: {}; rotate from the current root instead, or add force",
            live.join(", ")
        )));
    }
    let options = SaveOptions {
        passphrase: state.rotation.config.passphrase.as_ref(),
        ..SaveOptions::default()
    };
    let replace = match persist::load(state.store.as_ref(), options.passphrase).await {
        Ok(loaded) => Some(loaded.revision),
        Err(CaError::NotInitialised { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    persist::save(
        state.store.as_ref(),
        &ca,
        &SaveOptions {
            replace_revision: replace,
            ..options
        },
    )
    .await?;
    tracing::info!(target: "anchorage::audit", event = "rotation_takeover", who = %who, subject = %ca.root().subject(), forced = !live.is_empty(), "the store's CA was replaced by an imported root, the old root of the rotation");
    Ok(ca)
}

/// The new CA's signing certificate, cross-signed by the old root's key.
fn cross_sign(old: &BuiltinCa, new: &BuiltinCa) -> Result<Certificate, RotationError> {
    anchorage_ca::builtin::cross_sign(old, new.signing_certificate(), new.signing_key())
        .map_err(RotationError::Ca)
}

async fn abort(
    state: &AppState,
    rec: RotationRecord,
    revision: Option<u64>,
    who: &str,
) -> Result<RotationRecord, RotationError> {
    let wrong = |hint| RotationError::WrongPhase {
        action: "abort",
        phase: rec.phase,
        hint,
    };
    if rec.aborted_from.is_some() && rec.phase != Phase::Idle {
        return Err(wrong(
            "this is already an abort under way; let it finish (advance) first",
        ));
    }
    let (Some(old), Some(new)) = (rec.old.clone(), rec.new.clone()) else {
        return Err(wrong("no rotation to abort"));
    };
    let enter = match rec.phase {
        Phase::Staged | Phase::Signing => Phase::Signing,
        Phase::Retiring => Phase::Staged,
        Phase::Done if rec.previous.is_some() => Phase::Staged,
        Phase::Done => return Err(wrong("the old root was pruned; start a new rotation")),
        Phase::Idle => return Err(wrong("no rotation under way")),
    };
    let mut next = RotationRecord {
        phase: rec.phase,
        since: rec.since,
        id: rec.id.clone(),
        old: Some(new),
        new: Some(old),
        new_trusted_version: rec.new_trusted_version,
        aborted_from: Some(rec.phase),
        legacy_ca: rec.legacy_ca.clone(),
        history: rec.history.clone(),
        external: rec.external,
        ..RotationRecord::default()
    };
    transition(&mut next, enter, who, "abort", false);
    write(state, &next, revision).await?;
    Ok(next)
}

/// Finishes the bundle step of the current phase (after a transition, or a crash between
/// its writes), and at Done (or the end of an abort) makes the store's CA the new one.
/// Returns the record as it is afterwards.
pub async fn reconcile(state: &AppState) -> Result<RotationRecord, RotationError> {
    let (mut rec, mut revision) = read_fresh(state).await?;
    if rec.bundle_pending {
        // Claim the step first: a compare-and-swap of the record as read proves it is the
        // latest (the stream leader checks it), so a lagging replica's older pending record
        // fails here, before the bundle is touched with an earlier phase's roots.
        revision = Some(write(state, &rec, revision).await?);
        let mut roots = rec.roots();
        let drops = matches!(rec.phase, Phase::Retiring);
        // An external issuer's roots come beside serve's own CA, and the old one also leaves
        // the extra CAs (where an admin may have put it).
        let mut drop_extra = None;
        if rec.external {
            let own: Vec<String> = state
                .authority
                .ca()
                .roots()
                .iter()
                .map(Certificate::to_pem)
                .collect();
            roots = roots.map(|r| own.into_iter().chain(r).collect());
            if drops {
                drop_extra = rec.old.as_ref().map(|o| o.sha256.clone());
            }
        }
        let version = state
            .change_bundle(|b| {
                if let Some(r) = &roots {
                    b.roots = Some(r.clone());
                }
                if let Some(fp) = &drop_extra {
                    b.extra.retain(|p| {
                        !anchorage_x509::decode(p.as_bytes())
                            .certificates
                            .iter()
                            .any(|f| root_fingerprint(&f.certificate) == *fp)
                    });
                }
                b.deliberate_rotation = drops;
                Ok(true)
            })
            .await
            .map_err(RotationError::Bundle)?;
        match rec.phase {
            Phase::Staged => rec.new_trusted_version = Some(version),
            Phase::Signing => {
                rec.signing_version = Some(version);
                rec.new_trusted_version.get_or_insert(version);
            }
            Phase::Retiring => rec.old_removed_version = Some(version),
            Phase::Idle | Phase::Done => {}
        }
        rec.bundle_pending = false;
        write(state, &rec, revision).await?;
    }
    let finished =
        rec.phase == Phase::Done || (rec.phase == Phase::Idle && rec.aborted_from.is_some());
    if finished {
        make_store_ca(state, &rec).await?;
    }
    if finished && rec.previous.is_none() && rec.old.is_some() {
        let (mut again, rev) = read_fresh(state).await?;
        if again.previous.is_none() {
            again.previous.clone_from(&again.old);
            write(state, &again, rev).await?;
        }
        rec = again;
    }
    Ok(rec)
}

/// Makes the rotation's new CA the store's CA (`ca.builtin`, what `anchorage ca` and a start
/// read) unless it already is; nothing for an external issuer. Idempotent: done before the
/// transition to Done (or the end of an abort), and again by [`reconcile`] after a crash.
async fn make_store_ca(state: &AppState, rec: &RotationRecord) -> Result<(), RotationError> {
    let (false, Some(new)) = (rec.external, rec.new.as_ref()) else {
        return Ok(());
    };
    let loaded = persist::load(
        state.store.as_ref(),
        state.rotation.config.passphrase.as_ref(),
    )
    .await?;
    if root_fingerprint(loaded.ca.root()) != new.sha256 {
        let signer = load_signer(state, new).await?;
        let options = SaveOptions {
            passphrase: state.rotation.config.passphrase.as_ref(),
            replace_revision: Some(loaded.revision),
            ..SaveOptions::default()
        };
        persist::save(state.store.as_ref(), signer.ca(), &options).await?;
        tracing::info!(target: "anchorage::audit", event = "rotation_ca_replaced", subject = %new.subject, "the store's CA is now the rotation's new CA");
    }
    Ok(())
}

/// Makes this instance's signer follow `rec`.
pub async fn apply(state: &AppState, rec: &RotationRecord) {
    state.rotation.current.send_replace(rec.clone());
    let Some(signer_ref) = rec.signer() else {
        return;
    };
    let mut known = Vec::new();
    for r in [&rec.old, &rec.new, &rec.previous].into_iter().flatten() {
        match load_signer(state, r).await {
            Ok(s) => known.push(s),
            Err(e) => tracing::debug!(error = %e, ca = %r.subject, "a rotation CA is not loadable"),
        }
    }
    let Some(current) = known
        .iter()
        .find(|s| s.root_sha256() == signer_ref.sha256)
        .cloned()
    else {
        tracing::warn!(ca = %signer_ref.subject, "the rotation's signing CA cannot be loaded; keeping the current signer");
        return;
    };
    let extra = match (&rec.cross_pem, rec.new.as_ref()) {
        (Some(pem), Some(new)) if new.sha256 == signer_ref.sha256 => {
            anchorage_x509::decode(pem.as_bytes())
                .certificates
                .into_iter()
                .map(|f| f.certificate)
                .collect()
        }
        _ => Vec::new(),
    };
    write_ca_file(state, rec);
    if state.authority.signer_root_sha256() != signer_ref.sha256 {
        tracing::info!(phase = %rec.phase, signer = %signer_ref.subject, "signing CA switched by the rotation record");
    }
    state.authority.set_signers(current, known, extra);
}

/// Rewrites the data directory's `ca.pem` with the root of this instance's serving
/// certificate and every root of `rec` (new, old, previous).
pub(crate) fn write_ca_file(state: &AppState, rec: &RotationRecord) {
    let Some(path) = &state.rotation.ca_file else {
        return;
    };
    let mut pem = String::new();
    let mut seen = Vec::new();
    let serving = state
        .rotation
        .serving_root
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .and_then(|p| {
            anchorage_x509::decode(p.as_bytes())
                .certificates
                .first()
                .map(|f| CaRef {
                    sha256: root_fingerprint(&f.certificate),
                    subject: String::new(),
                    not_after: 0,
                    root_pem: f.certificate.to_pem(),
                })
        });
    if rec.old.is_none() {
        return;
    }
    for r in [&serving, &rec.new, &rec.old, &rec.previous]
        .into_iter()
        .flatten()
    {
        if !seen.contains(&r.sha256) {
            seen.push(r.sha256.clone());
            pem.push_str(&r.root_pem);
        }
    }
    if pem.is_empty() || std::fs::read_to_string(path).is_ok_and(|t| t == pem) {
        return;
    }
    if let Err(e) = anchorage_trust::atomic::write_file(path, pem.as_bytes()) {
        tracing::warn!(error = %e, path = %path.display(), "cannot rewrite ca.pem");
    }
}

/// Follows the rotation record until `shutdown`: every change (by any instance) switches
/// this instance's signer at once.
pub async fn follow(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    const WATCH_SPAN: Duration = Duration::from_secs(30);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let revision = match read_fresh(&state).await {
            Ok((rec, rev)) => {
                apply(&state, &rec).await;
                rev.unwrap_or(0)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rotation record");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            waited = state.store.wait_for_change(ROTATION_KEY, revision, WATCH_SPAN) => {
                if let Err(e) = waited {
                    tracing::debug!(error = %e, "rotation watch: waiting on the store failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lease and driver

/// The driver lease under [`LEASE_KEY`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lease {
    /// The holder's instance id.
    pub holder: String,
    /// Unix milliseconds it expires at.
    pub expires_at_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Takes or renews the lease for `holder`; true when `holder` holds it afterwards.
pub async fn acquire_lease(
    store: &dyn Store,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let lease = Lease {
        holder: holder.to_owned(),
        expires_at_ms: now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2),
    };
    let value = serde_json::to_vec(&lease).unwrap_or_default();
    let result = match store.get(LEASE_KEY).await? {
        None => store.create(LEASE_KEY, value).await,
        Some(e) => {
            let cur: Option<Lease> = serde_json::from_slice(&e.value).ok();
            match cur {
                Some(c) if c.holder != holder && c.expires_at_ms > now => return Ok(false),
                _ => store.update(LEASE_KEY, value, e.revision).await,
            }
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The lease as stored.
pub async fn lease(store: &dyn Store) -> Result<Option<Lease>, StoreError> {
    Ok(store
        .get(LEASE_KEY)
        .await?
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// Drives the rotation until `shutdown`: every interval, take or renew the lease; while
/// holding it, finish pending bundle steps and (with `auto`) advance when the gate holds.
pub async fn drive(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let config = state.rotation.config.clone();
    let mut held = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
        let holds = match acquire_lease(
            state.store.as_ref(),
            &state.rotation.holder,
            config.lease_ttl,
        )
        .await
        {
            Ok(holds) => holds,
            Err(e) => {
                tracing::debug!(error = %e, "rotation lease: the store failed");
                false
            }
        };
        state.metrics.rotation_lease(holds, holds && !held);
        if holds != held {
            if holds {
                tracing::info!(holder = %state.rotation.holder, "rotation lease taken: this instance drives the rotation");
            } else {
                tracing::info!(holder = %state.rotation.holder, "rotation lease lost: another instance drives the rotation");
            }
            held = holds;
        }
        if !holds {
            continue;
        }
        if let Err(e) = step(&state, config.auto).await {
            tracing::warn!(error = %e, "rotation driver step failed");
        }
    }
}

/// One driver step (the lease held): reconcile, then advance when `auto` and the gate holds.
pub async fn step(state: &AppState, auto: bool) -> Result<Option<Phase>, RotationError> {
    let rec = reconcile(state).await?;
    // Out of an external rotation's Signing only the user moves (after switching the issuer).
    if !auto || !rec.active() || (rec.external && rec.phase == Phase::Signing) {
        return Ok(None);
    }
    let g = gate(state, &rec).await?;
    if !g.holds {
        return Ok(None);
    }
    let by = format!("auto:{}", state.rotation.holder);
    let after = act(
        state,
        &ActionRequest {
            action: "advance".into(),
            ..ActionRequest::default()
        },
        &by,
    )
    .await?;
    Ok(Some(after.phase))
}

// ---------------------------------------------------------------------------------------
// Renewals pulled forward

/// Fixed-window counters per consumer group (per instance).
#[derive(Debug)]
pub struct Limiter {
    limit: u32,
    window: Duration,
    groups: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// `limit` per `window` and group.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one for `group`; `Err(retry_after)` when its window is full.
    pub fn check(&self, group: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut groups) = self.groups.lock() else {
            return Ok(());
        };
        if groups.len() > 10_000 {
            groups.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = groups.entry(group.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The group key of a consumer's labels (`group_labels` chosen, or all).
pub fn group_of(labels: &BTreeMap<String, String>, group_labels: &[String]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| group_labels.is_empty() || group_labels.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// Whether renewals are pulled forward now (Signing, either direction).
pub fn pulling_forward(state: &AppState) -> bool {
    let rec = state.rotation.current.borrow();
    rec.phase == Phase::Signing && !rec.external
}

/// For an ack with `cert_serial`: the unix time by which the consumer should renew (now), when
/// renewals are pulled forward and its leaf is not under the signing root.
pub async fn renew_before(state: &AppState, cert_serial: Option<&str>) -> Option<i64> {
    if !pulling_forward(state) {
        return None;
    }
    let serial = normal_serial(cert_serial?);
    let signer = state
        .rotation
        .current
        .borrow()
        .signer()
        .map(|s| s.sha256.clone())?;
    let rec: Option<CertRecord> = state
        .store
        .get(&format!("{CERTS_PREFIX}{serial}"))
        .await
        .ok()
        .flatten()
        .and_then(|e| serde_json::from_slice(&e.value).ok());
    match rec.and_then(|r| r.ca) {
        Some(ca) if ca == signer => None,
        _ => Some(now_unix()),
    }
}

// ---------------------------------------------------------------------------------------
// Status

fn ca_json(r: Option<&CaRef>) -> Value {
    r.map_or(Value::Null, |r| {
        json!({
            "subject": r.subject,
            "sha256": r.sha256,
            "not_after": Timestamp::from_unix(r.not_after).rfc3339(),
        })
    })
}

/// `GET /v1/rotation`'s answer.
pub async fn status_json(state: &AppState) -> Result<Value, RotationError> {
    let (rec, _) = read_fresh(state).await?;
    status_of(state, &rec).await
}

/// The status document of `rec` (an action's answer: the record it wrote, not one read back
/// from a replica that may not have it yet).
pub async fn status_of(state: &AppState, rec: &RotationRecord) -> Result<Value, RotationError> {
    let g = gate(state, rec).await?;
    let lease = lease(state.store.as_ref()).await?;
    let (bundle, _) = state.bundle_record().await.map_err(RotationError::Store)?;
    Ok(json!({
        "schema": STATUS_SCHEMA,
        "id": rec.id,
        "phase": rec.phase,
        "since": Timestamp::from_unix(rec.since).rfc3339(),
        "since_unix": rec.since,
        "aborted_from": rec.aborted_from,
        "old": ca_json(rec.old.as_ref()),
        "new": ca_json(rec.new.as_ref()),
        "previous": ca_json(rec.previous.as_ref()),
        "signer": ca_json(rec.signer()),
        "cross_sign": rec.cross_sign,
        "external": rec.external,
        "bundle_version": bundle.version,
        "bundle_pending": rec.bundle_pending,
        "new_trusted_version": rec.new_trusted_version,
        "signing_version": rec.signing_version,
        "old_removed_version": rec.old_removed_version,
        "gate": {
            "next": g.next,
            "holds": g.holds,
            "counted": g.counted,
            "passed": g.passed,
            "required": g.required,
            "dwell_remaining_s": g.dwell_remaining,
            "excluded": g.excluded,
            "reason": g.reason,
        },
        "laggards": g.laggards,
        "auto": state.rotation.config.auto,
        "lease": lease.map(|l| json!({
            "holder": l.holder,
            "expires_at": Timestamp::from_unix(l.expires_at_ms / 1000).rfc3339(),
            "this_instance": l.holder == state.rotation.holder,
        })),
        "history": rec.history,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use anchorage_ca::{CertKind, CertificateRequest, Identity};
    use anchorage_store::MemoryStore;

    use super::*;
    use crate::authority::{Authority, RecordInfo};
    use crate::state::{CONSUMERS_PREFIX, Limits};
    use crate::tokens::TokenKey;

    fn config() -> RotationConfig {
        RotationConfig {
            min_dwell: Duration::ZERO,
            ..RotationConfig::default()
        }
    }

    async fn state_on(store: Arc<dyn Store>, config: RotationConfig) -> Arc<AppState> {
        let (authority, _) = Authority::open(Arc::clone(&store), None, &InitOptions::default())
            .await
            .unwrap();
        let tokens = TokenKey::load_or_create(store.as_ref()).await.unwrap();
        let state = Arc::new(AppState {
            store,
            authority,
            tokens,
            metrics: crate::metrics::Metrics::default(),
            limits: Limits::default(),
            crl_validity: Duration::from_secs(86_400),
            bundle_cache: StdMutex::new(None),
            crl_cache: StdMutex::new(None),
            bundle_version: watch::channel(0).0,
            shutting_down: watch::channel(false).1,
            rotation: Rotation::new(config),
        });
        let (rec, _) = read(state.store.as_ref()).await.unwrap();
        apply(&state, &rec).await;
        state
    }

    async fn fresh() -> Arc<AppState> {
        state_on(Arc::new(MemoryStore::new()), config()).await
    }

    async fn ack(state: &AppState, name: &str, version: u64, serial: Option<&str>) {
        let rec = ConsumerRecord {
            name: name.into(),
            labels: BTreeMap::from([("group".into(), "web".into())]),
            bundle_version: version,
            cert_serial: serial.map(str::to_owned),
            not_after: None,
            last_seen: now_unix(),
            refused: None,
        };
        state
            .store
            .put(
                &format!("{CONSUMERS_PREFIX}{name}"),
                serde_json::to_vec(&rec).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn leaf(state: &AppState) -> String {
        let request = CertificateRequest::new(Identity::new("web").unwrap(), CertKind::Service);
        state
            .authority
            .sign(
                &request,
                None,
                RecordInfo {
                    role: None,
                    who: "test",
                    operation: "issue",
                },
            )
            .await
            .unwrap()
            .serial
    }

    async fn run(
        state: &AppState,
        action: &str,
        force: bool,
    ) -> Result<RotationRecord, RotationError> {
        act(
            state,
            &ActionRequest {
                action: action.into(),
                force,
                ..ActionRequest::default()
            },
            "admin",
        )
        .await
    }

    async fn bundle_roots(state: &AppState) -> (u64, Vec<String>, bool) {
        let (b, _) = state.bundle_record().await.unwrap();
        let roots = b
            .roots
            .unwrap_or_default()
            .iter()
            .flat_map(|p| anchorage_x509::decode(p.as_bytes()).certificates)
            .map(|f| root_fingerprint(&f.certificate))
            .collect();
        (b.version, roots, b.deliberate_rotation)
    }

    fn gate_error(e: RotationError) -> String {
        match e {
            RotationError::GateNotHolding { reason, .. } => reason,
            other => panic!("expected a gate refusal, got {other}"),
        }
    }

    #[tokio::test]
    async fn a_full_rotation_moves_the_bundle_the_signer_and_the_store_ca() {
        let state = fresh().await;
        let a = state.authority.signer_root_sha256();
        let serial_a = leaf(&state).await;
        ack(&state, "web-1", 1, Some(&serial_a)).await;
        ack(&state, "web-2", 1, None).await;

        let rec = run(&state, "start", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Staged);
        let b = rec.new.clone().unwrap().sha256;
        let (v_staged, roots, mark) = bundle_roots(&state).await;
        assert_eq!(roots, vec![a.clone(), b.clone()]);
        assert!(!mark);
        assert_eq!(rec.new_trusted_version, Some(v_staged));
        assert_eq!(
            state.authority.signer_root_sha256(),
            a,
            "Staged still signs under A"
        );

        // Gate: both consumers lack B.
        let reason = gate_error(run(&state, "advance", false).await.unwrap_err());
        assert!(
            reason.contains("web-1") && reason.contains("web-2"),
            "{reason}"
        );
        ack(&state, "web-1", v_staged, Some(&serial_a)).await;
        let reason = gate_error(run(&state, "advance", false).await.unwrap_err());
        assert!(
            !reason.contains("web-1") && reason.contains("web-2"),
            "{reason}"
        );
        ack(&state, "web-2", v_staged, None).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Signing);
        assert_eq!(
            state.authority.signer_root_sha256(),
            b,
            "Signing signs under B"
        );
        let (v_signing, roots, _) = bundle_roots(&state).await;
        assert!(
            v_signing > v_staged,
            "entering Signing wakes every consumer"
        );
        assert_eq!(roots.len(), 2);
        // A consumer with a leaf under A is told to renew now; one under B is not.
        assert!(renew_before(&state, Some(&serial_a)).await.is_some());
        let serial_b = leaf(&state).await;
        assert!(renew_before(&state, Some(&serial_b)).await.is_none());

        // Gate: web-1 still has a leaf under A.
        let reason = gate_error(run(&state, "advance", false).await.unwrap_err());
        assert!(
            reason.contains("web-1") && reason.contains("old"),
            "{reason}"
        );
        ack(&state, "web-1", v_signing, Some(&serial_b)).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Retiring);
        let (v_retiring, roots, mark) = bundle_roots(&state).await;
        assert_eq!(roots, vec![b.clone()], "A leaves the bundle");
        assert!(mark, "dropping A is a deliberate rotation step");
        assert_eq!(rec.old_removed_version, Some(v_retiring));

        let reason = gate_error(run(&state, "advance", false).await.unwrap_err());
        assert!(reason.contains("still holds the old root"), "{reason}");
        ack(&state, "web-1", v_retiring, Some(&serial_b)).await;
        ack(&state, "web-2", v_retiring, None).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Done);
        assert_eq!(rec.previous.as_ref().unwrap().sha256, a);
        let stored = persist::load(state.store.as_ref(), None).await.unwrap();
        assert_eq!(
            root_fingerprint(stored.ca.root()),
            b,
            "ca.builtin is B after Done"
        );

        // Done: no next phase; start refuses until prune.
        assert!(matches!(
            run(&state, "advance", false).await,
            Err(RotationError::WrongPhase { .. })
        ));
        assert!(run(&state, "start", false).await.is_err());
        let rec = run(&state, "prune", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Idle);
        assert!(rec.previous.is_none());
        assert!(
            state
                .store
                .get(&format!("{CA_PREFIX}{a}"))
                .await
                .unwrap()
                .is_none(),
            "prune removes A's key"
        );
        assert_eq!(state.authority.signer_root_sha256(), b);
    }

    #[tokio::test]
    async fn the_dwell_and_the_fraction_and_stale_consumers() {
        let mut rec = RotationRecord {
            phase: Phase::Staged,
            since: 1_000,
            new_trusted_version: Some(5),
            ..RotationRecord::default()
        };
        let consumer = |name: &str, v: u64, seen: i64| ConsumerRecord {
            name: name.into(),
            labels: BTreeMap::new(),
            bundle_version: v,
            cert_serial: None,
            not_after: None,
            last_seen: seen,
            refused: None,
        };
        let consumers = vec![
            consumer("a", 5, 1_000),
            consumer("b", 5, 1_000),
            consumer("c", 4, 100),
        ];
        let leaf_ca = HashMap::new();
        let input = |now| GateInput {
            consumers: &consumers,
            leaf_ca: &leaf_ca,
            now,
        };
        let mut cfg = RotationConfig {
            min_dwell: Duration::from_secs(60),
            ..RotationConfig::default()
        };
        let g = evaluate(&rec, &cfg, &input(1_030));
        assert!(!g.holds);
        assert_eq!(g.dwell_remaining, 30);
        assert_eq!(g.laggards.len(), 1);
        assert_eq!(g.laggards[0].consumer, "c");
        cfg.fraction = 0.6;
        assert!(evaluate(&rec, &cfg, &input(1_060)).holds, "2 of 3 ≥ 60 %");
        cfg.fraction = 1.0;
        assert!(!evaluate(&rec, &cfg, &input(1_060)).holds);
        cfg.stale_after = Some(Duration::from_secs(600));
        let g = evaluate(&rec, &cfg, &input(1_060));
        assert!(g.holds, "{}", g.reason);
        assert_eq!(g.excluded, vec!["c".to_owned()]);
        rec.bundle_pending = true;
        assert!(!evaluate(&rec, &cfg, &input(1_060)).holds);
    }

    /// Runs `state` from `phase` (reached through the gates with one consumer) to an abort,
    /// then drives the abort to its end, checking A signs and B leaves the bundle.
    async fn abort_from(phase: Phase) {
        let state = fresh().await;
        let a = state.authority.signer_root_sha256();
        let serial_a = leaf(&state).await;
        ack(&state, "web-1", 1, Some(&serial_a)).await;
        let rec = run(&state, "start", false).await.unwrap();
        let b = rec.new.clone().unwrap().sha256;
        let mut serial = serial_a.clone();
        while state.rotation.phase() != phase {
            let (v, _, _) = bundle_roots(&state).await;
            if state.rotation.phase() == Phase::Signing {
                serial = leaf(&state).await;
            }
            ack(&state, "web-1", v, Some(&serial)).await;
            run(&state, "advance", false).await.unwrap();
        }
        let rec = run(&state, "abort", false).await.unwrap();
        assert_eq!(rec.aborted_from, Some(phase));
        assert_eq!(rec.old.as_ref().unwrap().sha256, b);
        assert_eq!(rec.new.as_ref().unwrap().sha256, a);
        let (_, roots, _) = bundle_roots(&state).await;
        assert!(
            roots.contains(&a) && roots.contains(&b),
            "both trusted while aborting: {roots:?}"
        );
        // Abort twice is refused.
        assert!(run(&state, "abort", false).await.is_err());
        // Drive the abort to its end.
        let mut steps = 0;
        while state.rotation.phase() != Phase::Idle {
            steps += 1;
            assert!(steps < 6, "the abort does not end");
            let (v, roots, _) = bundle_roots(&state).await;
            if state.rotation.phase() == Phase::Signing {
                assert_eq!(
                    state.authority.signer_root_sha256(),
                    a,
                    "abort signs under A"
                );
                serial = leaf(&state).await;
            }
            if state.rotation.phase() == Phase::Retiring {
                assert_eq!(roots, vec![a.clone()], "B leaves the bundle last");
                // B is still trusted for renewals until every consumer acked its removal.
                let before = run(&state, "advance", false).await;
                assert!(before.is_err(), "the end waits for the ack without B");
            }
            ack(&state, "web-1", v, Some(&serial)).await;
            run(&state, "advance", false).await.unwrap();
        }
        assert_eq!(state.authority.signer_root_sha256(), a);
        let stored = persist::load(state.store.as_ref(), None).await.unwrap();
        assert_eq!(
            root_fingerprint(stored.ca.root()),
            a,
            "ca.builtin is A after an abort"
        );
        let rec = run(&state, "prune", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Idle);
        assert!(rec.previous.is_none());
        // A new rotation can start after.
        assert_eq!(
            run(&state, "start", false).await.unwrap().phase,
            Phase::Staged
        );
    }

    #[tokio::test]
    async fn abort_from_staged() {
        abort_from(Phase::Staged).await;
    }

    #[tokio::test]
    async fn abort_from_signing() {
        abort_from(Phase::Signing).await;
    }

    #[tokio::test]
    async fn abort_from_retiring() {
        abort_from(Phase::Retiring).await;
    }

    #[tokio::test]
    async fn abort_from_done() {
        abort_from(Phase::Done).await;
    }

    #[tokio::test]
    async fn a_transition_cut_before_its_bundle_step_is_finished_by_reconcile() {
        let state = fresh().await;
        run(&state, "start", true).await.unwrap();
        run(&state, "advance", true).await.unwrap();
        // A crash after the record's CAS, before the bundle write: Retiring with the step
        // pending, the bundle still holding both roots.
        let (mut rec, rev) = read(state.store.as_ref()).await.unwrap();
        transition(&mut rec, Phase::Retiring, "admin", "advance", true);
        write(&state, &rec, rev).await.unwrap();
        let (v_before, roots, _) = bundle_roots(&state).await;
        assert_eq!(roots.len(), 2);
        let g = gate(&state, &read(state.store.as_ref()).await.unwrap().0)
            .await
            .unwrap();
        assert!(
            !g.holds && g.reason.contains("still being written"),
            "{}",
            g.reason
        );
        // The driver's next step (or a restart's) finishes it.
        let rec = reconcile(&state).await.unwrap();
        assert!(!rec.bundle_pending);
        let (v_after, roots, mark) = bundle_roots(&state).await;
        assert!(v_after > v_before);
        assert_eq!(roots, vec![rec.new.unwrap().sha256]);
        assert!(mark);
        assert_eq!(rec.old_removed_version, Some(v_after));
    }

    /// A store whose rotation record is frozen at an older entry (a lagging replica).
    struct Stale {
        inner: Arc<MemoryStore>,
        frozen: anchorage_store::Entry,
    }

    #[async_trait::async_trait]
    impl Store for Stale {
        async fn get(&self, key: &str) -> Result<Option<anchorage_store::Entry>, StoreError> {
            if key == ROTATION_KEY {
                return Ok(Some(self.frozen.clone()));
            }
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.inner.put(key, value).await
        }
        async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<u64, StoreError> {
            self.inner.update(key, value, rev).await
        }
        async fn delete(&self, key: &str, rev: Option<u64>) -> Result<(), StoreError> {
            self.inner.delete(key, rev).await
        }
        async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.keys(prefix).await
        }
    }

    #[tokio::test]
    async fn a_stale_pending_record_from_a_lagging_replica_does_not_touch_the_bundle() {
        let inner = Arc::new(MemoryStore::new());
        let state = state_on(Arc::clone(&inner) as Arc<dyn Store>, config()).await;
        run(&state, "start", true).await.unwrap();
        run(&state, "advance", true).await.unwrap();
        let (mut rec, rev) = read(state.store.as_ref()).await.unwrap();
        transition(&mut rec, Phase::Retiring, "admin", "advance", true);
        write(&state, &rec, rev).await.unwrap();
        let pending = inner.get(ROTATION_KEY).await.unwrap().unwrap();
        // This instance finishes the step; another reads the pending record from a replica
        // that has not seen that.
        assert!(!reconcile(&state).await.unwrap().bundle_pending);
        let (v_before, _, _) = bundle_roots(&state).await;
        let other = state_on(
            Arc::new(Stale {
                inner: Arc::clone(&inner),
                frozen: pending,
            }),
            config(),
        )
        .await;
        let e = reconcile(&other).await.unwrap_err();
        assert!(matches!(e, RotationError::Conflict { .. }), "{e}");
        let (v_after, _, _) = bundle_roots(&state).await;
        assert_eq!(
            v_after, v_before,
            "the bundle step was redone from a stale record"
        );
        // Control: the current record is untouched and not pending.
        assert!(!read(state.store.as_ref()).await.unwrap().0.bundle_pending);
    }

    #[tokio::test]
    async fn an_external_issuer_rotation_moves_trust_only_and_waits_for_the_user_in_signing() {
        let state = fresh().await;
        let own = state.authority.signer_root_sha256();
        let vault_a = BuiltinCa::init(&InitOptions {
            common_name: "Vault Root A".into(),
            ..InitOptions::default()
        })
        .unwrap();
        let vault_b = BuiltinCa::init(&InitOptions {
            common_name: "Vault Root B".into(),
            ..InitOptions::default()
        })
        .unwrap();
        // The admin put the issuer's root A in the bundle as an extra CA.
        let a_pem = vault_a.root().to_pem();
        state
            .change_bundle(|b| {
                b.extra.push(a_pem.clone());
                Ok(true)
            })
            .await
            .unwrap();
        let a = root_fingerprint(vault_a.root());
        let b = root_fingerprint(vault_b.root());
        let request = |import: String| ActionRequest {
            action: "start".into(),
            external: true,
            import_pem: Some(import),
            old_pem: Some(vault_a.root().to_pem()),
            ..ActionRequest::default()
        };
        // Never a key for an external issuer.
        let with_key = format!(
            "{}{}",
            vault_b.root().to_pem(),
            secrecy::ExposeSecret::expose_secret(&vault_b.signing_key_pem())
        );
        assert!(matches!(
            act(&state, &request(with_key), "admin").await,
            Err(RotationError::Invalid(_))
        ));
        let rec = act(&state, &request(vault_b.root().to_pem()), "admin")
            .await
            .unwrap();
        assert!(rec.external);
        let (v, roots, _) = bundle_roots(&state).await;
        assert_eq!(roots, vec![own.clone(), a.clone(), b.clone()]);
        assert_eq!(
            state.authority.signer_root_sha256(),
            own,
            "serve's signer stays"
        );
        ack(&state, "web-1", v, Some("00aa")).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Signing);
        assert_eq!(state.authority.signer_root_sha256(), own);
        assert!(renew_before(&state, Some("00aa")).await.is_none());
        // The driver leaves Signing to the user (who switches the issuer now).
        assert_eq!(step(&state, true).await.unwrap(), None);
        let (v, _, _) = bundle_roots(&state).await;
        ack(&state, "web-1", v, Some("00aa")).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Retiring);
        let (v, roots, mark) = bundle_roots(&state).await;
        assert_eq!(roots, vec![own.clone(), b.clone()]);
        assert!(mark);
        let (bundle, _) = state.bundle_record().await.unwrap();
        assert!(bundle.extra.is_empty(), "A left the extra CAs too");
        ack(&state, "web-1", v, Some("00aa")).await;
        let rec = run(&state, "advance", false).await.unwrap();
        assert_eq!(rec.phase, Phase::Done);
        assert_eq!(rec.previous.as_ref().unwrap().sha256, a);
        let stored = persist::load(state.store.as_ref(), None).await.unwrap();
        assert_eq!(
            root_fingerprint(stored.ca.root()),
            own,
            "serve's own CA is untouched"
        );
        assert_eq!(
            run(&state, "prune", false).await.unwrap().phase,
            Phase::Idle
        );
    }

    #[tokio::test]
    async fn force_overrides_a_gate_and_is_recorded() {
        let state = fresh().await;
        ack(&state, "web-1", 1, None).await;
        run(&state, "start", false).await.unwrap();
        assert!(run(&state, "advance", false).await.is_err());
        let rec = run(&state, "advance", true).await.unwrap();
        assert_eq!(rec.phase, Phase::Signing);
        assert!(rec.history.last().unwrap().forced);
    }

    #[tokio::test]
    async fn one_lease_holder_at_a_time_and_takeover_after_expiry() {
        let store = MemoryStore::new();
        let ttl = Duration::from_millis(300);
        assert!(acquire_lease(&store, "one", ttl).await.unwrap());
        assert!(!acquire_lease(&store, "two", ttl).await.unwrap());
        assert!(acquire_lease(&store, "one", ttl).await.unwrap(), "renewal");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            acquire_lease(&store, "two", ttl).await.unwrap(),
            "takeover after expiry"
        );
        assert!(!acquire_lease(&store, "one", ttl).await.unwrap());
        assert_eq!(lease(&store).await.unwrap().unwrap().holder, "two");
    }

    #[tokio::test]
    async fn a_restarted_instance_resumes_the_phase_and_signer_from_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let first = state_on(Arc::clone(&store), config()).await;
        run(&first, "start", false).await.unwrap();
        run(&first, "advance", true).await.unwrap();
        let b = first.authority.signer_root_sha256();
        drop(first);
        let second = state_on(store, config()).await;
        assert_eq!(second.rotation.phase(), Phase::Signing);
        assert_eq!(second.authority.signer_root_sha256(), b);
    }

    #[tokio::test]
    async fn a_second_instance_follows_a_change_made_by_the_first() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let one = state_on(Arc::clone(&store), config()).await;
        let two = state_on(store, config()).await;
        let (tx, rx) = watch::channel(false);
        let follower = tokio::spawn(follow(Arc::clone(&two), rx));
        run(&one, "start", false).await.unwrap();
        run(&one, "advance", true).await.unwrap();
        let b = one.authority.signer_root_sha256();
        for _ in 0..50 {
            if two.authority.signer_root_sha256() == b {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(two.authority.signer_root_sha256(), b);
        assert_eq!(two.rotation.phase(), Phase::Signing);
        tx.send(true).unwrap();
        follower.await.unwrap();
    }

    #[tokio::test]
    async fn the_driver_advances_only_with_the_lease_and_a_holding_gate() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let one = state_on(Arc::clone(&store), config()).await;
        let two = state_on(store, config()).await;
        ack(&one, "web-1", 1, None).await;
        run(&one, "start", false).await.unwrap();
        assert!(
            acquire_lease(
                one.store.as_ref(),
                &one.rotation.holder,
                Duration::from_secs(10)
            )
            .await
            .unwrap()
        );
        assert!(
            !acquire_lease(
                two.store.as_ref(),
                &two.rotation.holder,
                Duration::from_secs(10)
            )
            .await
            .unwrap()
        );
        assert_eq!(step(&one, true).await.unwrap(), None, "gate does not hold");
        let (v, _, _) = bundle_roots(&one).await;
        ack(&one, "web-1", v, None).await;
        assert_eq!(step(&one, false).await.unwrap(), None, "not automatic");
        assert_eq!(step(&one, true).await.unwrap(), Some(Phase::Signing));
    }

    #[test]
    fn the_limiter_counts_per_group_and_says_when_to_retry() {
        let l = Limiter::new(2, Duration::from_secs(5));
        assert!(l.check("g").is_ok());
        assert!(l.check("g").is_ok());
        let retry = l.check("g").unwrap_err();
        assert!(retry > Duration::from_secs(4) && retry <= Duration::from_secs(5));
        assert!(l.check("other").is_ok());
        let labels = BTreeMap::from([("zone".into(), "a".into()), ("app".into(), "web".into())]);
        assert_eq!(group_of(&labels, &[]), "app=web,zone=a");
        assert_eq!(group_of(&labels, &["app".into()]), "app=web");
        assert_eq!(group_of(&BTreeMap::new(), &[]), "-");
    }

    #[test]
    fn an_import_takes_certificates_and_key_from_one_text() {
        let ca = BuiltinCa::init(&InitOptions::default()).unwrap();
        let pem = format!(
            "{}{}",
            ca.root().to_pem(),
            secrecy::ExposeSecret::expose_secret(&ca.signing_key_pem())
        );
        let imported = import_ca(&pem).unwrap();
        assert_eq!(
            root_fingerprint(imported.root()),
            root_fingerprint(ca.root())
        );
        assert!(matches!(
            import_ca(&ca.root().to_pem()),
            Err(RotationError::Invalid(_))
        ));
    }
}

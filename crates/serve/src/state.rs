//! Shared state of the handlers: the store, the CA, the token key, the bundle and CRL caches,
//! metrics and limits. Everything durable is in the store, so several instances on one shared
//! store agree; the caches are keyed by the store's versions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_store::{Store, StoreError};
use anchorage_trust::{Bundle, Origin};
use anchorage_x509::Certificate;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::authority::Authority;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::tokens::{TokenKey, now_unix};

/// Store key of the bundle record (version and extra CAs).
pub const BUNDLE_KEY: &str = "serve.bundle";
/// Store key of the CRL counter (bumped by every revocation).
pub const CRL_KEY: &str = "serve.crl";
/// Store prefix of consumer acks.
pub const CONSUMERS_PREFIX: &str = "serve.consumers.";

/// Request limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Time allowed for a request's headers (the connection is closed after it).
    pub header_timeout: Duration,
    /// Time allowed for a request's body (408 after it).
    pub body_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long in-flight requests may finish on shutdown.
    pub drain_timeout: Duration,
    /// The longest `?wait=` of `GET /v1/bundle`.
    pub max_wait: Duration,
    /// HTTPS connections open at once, handshakes included ([`DEFAULT_MAX_CONNECTIONS`]);
    /// lowered at start to what the open-file limit leaves room for. A connection past it is
    /// closed as soon as it is accepted.
    pub max_connections: usize,
    /// HTTPS connections open at once from one client address (an IPv6 client counts by its
    /// /64), handshakes included ([`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]); 0: no limit. A
    /// connection past it is closed as soon as it is accepted.
    pub max_connections_per_address: usize,
    /// The longest a write of an answer may make no progress (a client that stopped reading,
    /// with the kernel's buffers full); the connection is then closed and its slot freed. A
    /// long poll's wait writes nothing and is not affected.
    pub write_timeout: Duration,
}

/// HTTPS connections open at once from one client address unless configured otherwise
/// (`serve --max-connections-per-address`): a quarter of [`DEFAULT_MAX_CONNECTIONS`], so one
/// address cannot take every slot. Agents behind one NAT address each hold a connection (their
/// long poll): raise it (or set 0) for a fleet larger than this behind one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;

/// The longest a write of an answer may make no progress unless configured otherwise.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTPS connections open at once unless configured otherwise (`serve --max-connections`).
/// Each agent holds one (its `?wait=` long poll), so this must exceed the fleet that polls one
/// instance; an idle TLS connection costs tens of kilobytes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// File descriptors kept for everything but HTTPS connections (the store, NATS, the log,
/// outgoing connections) when the connection cap is fitted under `RLIMIT_NOFILE`.
pub const RESERVED_FDS: u64 = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// The bundle record: a version bumped by every change, and the extra CAs (PEM).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BundleRecord {
    /// The version (ETag).
    pub version: u64,
    /// Extra CA certificates, PEM, beside the CA's roots.
    pub extra: Vec<String>,
    /// This version is a deliberate rotation step (an admin said so when changing it): served
    /// with `Anchorage-Rotation: deliberate`, so agents install it even when it drops the root
    /// their own certificate chains to. Every change clears it unless it sets it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deliberate_rotation: bool,
    /// The CA roots (PEM) a root rotation puts in the bundle in place of the CA's own roots
    /// (`None`: the CA's roots). Kept in this record so a version always names one content,
    /// whichever instance serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
}

/// The CRL record: its number, bumped by every revocation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrlRecord {
    /// The CRL number.
    pub number: u64,
}

/// A cached CRL.
#[derive(Clone, Debug)]
pub struct CachedCrl {
    /// Its number.
    pub number: u64,
    /// DER.
    pub der: Arc<Vec<u8>>,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds.
    pub next_update: i64,
}

/// A consumer's last ack.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsumerRecord {
    /// Its name.
    pub name: String,
    /// Free labels (node, namespace…).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The bundle version it installed.
    pub bundle_version: u64,
    /// The serial of its certificate, when it has one.
    #[serde(default)]
    pub cert_serial: Option<String>,
    /// Its certificate's notAfter (RFC 3339), when it has one.
    #[serde(default)]
    pub not_after: Option<String>,
    /// Unix seconds of the last ack.
    pub last_seen: i64,
    /// Why the consumer refused the bundle served last (it keeps `bundle_version`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The handlers' state.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The CA.
    pub authority: Authority,
    /// The token key.
    pub tokens: TokenKey,
    /// Metrics.
    pub metrics: Metrics,
    /// Limits.
    pub limits: Limits,
    /// How long a CRL is valid (next-update − this-update).
    pub crl_validity: Duration,
    /// Cached bundle (version, bundle).
    pub bundle_cache: Mutex<Option<(u64, Arc<Bundle>)>>,
    /// Cached CRL.
    pub crl_cache: Mutex<Option<CachedCrl>>,
    /// The bundle version last seen: set by local changes at once, and by
    /// [`AppState::follow_bundle`] for other instances' changes; long-polls wait on it.
    pub bundle_version: watch::Sender<u64>,
    /// True once shutdown began (long-polls return).
    pub shutting_down: watch::Receiver<bool>,
    /// Root rotation: configuration, the record followed, renewal limits.
    pub rotation: crate::rotation::Rotation,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The bundle record (created at version 1 when absent).
    pub async fn bundle_record(&self) -> Result<(BundleRecord, u64), StoreError> {
        loop {
            if let Some(e) = self.store.get(BUNDLE_KEY).await? {
                let rec = serde_json::from_slice(&e.value).unwrap_or_default();
                return Ok((rec, e.revision));
            }
            let rec = BundleRecord {
                version: 1,
                ..BundleRecord::default()
            };
            match self
                .store
                .create(BUNDLE_KEY, serde_json::to_vec(&rec).unwrap_or_default())
                .await
            {
                Ok(rev) => return Ok((rec, rev)),
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The current bundle and its version.
    pub async fn bundle(&self) -> Result<(u64, Arc<Bundle>), ApiError> {
        let (rec, _) = self
            .bundle_record()
            .await
            .map_err(|e| ApiError::store(&e))?;
        if let Ok(cache) = self.bundle_cache.lock()
            && let Some((v, b)) = cache.as_ref()
            && *v == rec.version
        {
            return Ok((*v, Arc::clone(b)));
        }
        let origin = |source: &str| Origin {
            source: source.to_owned(),
            detail: None,
            position: Default::default(),
        };
        let mut items: Vec<(Certificate, Origin)> = match &rec.roots {
            Some(roots) => roots
                .iter()
                .flat_map(|pem| anchorage_x509::decode(pem.as_bytes()).certificates)
                .map(|found| (found.certificate, origin("anchorage CA")))
                .collect(),
            None => self
                .authority
                .ca()
                .roots()
                .iter()
                .map(|c| (c.clone(), origin("anchorage CA")))
                .collect(),
        };
        for pem in &rec.extra {
            for found in anchorage_x509::decode(pem.as_bytes()).certificates {
                items.push((found.certificate, origin("extra CA")));
            }
        }
        let bundle = Arc::new(Bundle::new(items));
        if let Ok(mut cache) = self.bundle_cache.lock() {
            *cache = Some((rec.version, Arc::clone(&bundle)));
        }
        Ok((rec.version, bundle))
    }

    /// Applies `change` to the bundle record with compare-and-swap and bumps its version.
    /// `change` returns false when nothing changes (then nothing is written).
    pub async fn change_bundle(
        &self,
        change: impl Fn(&mut BundleRecord) -> Result<bool, ApiError>,
    ) -> Result<u64, ApiError> {
        for _ in 0..16 {
            let (mut rec, rev) = self
                .bundle_record()
                .await
                .map_err(|e| ApiError::store(&e))?;
            // A mark belongs to one version: the change sets it again if it means it (an
            // unchanged record is not written, so its mark stays).
            rec.deliberate_rotation = false;
            if !change(&mut rec)? {
                return Ok(rec.version);
            }
            rec.version += 1;
            match self
                .store
                .update(
                    BUNDLE_KEY,
                    serde_json::to_vec(&rec).unwrap_or_default(),
                    rev,
                )
                .await
            {
                Ok(_) => {
                    self.note_bundle_version(rec.version);
                    return Ok(rec.version);
                }
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(ApiError::store(&e)),
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "the bundle kept changing under this request; retry",
        ))
    }

    /// Raises the watched bundle version to `version` (versions only grow, so a slow reader
    /// never moves it back).
    pub fn note_bundle_version(&self, version: u64) {
        self.bundle_version.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Follows the bundle record in the store while someone waits for a change, until
    /// `shutdown` turns true. It waits on [`Store::wait_for_change`] (a JetStream KV watch, or
    /// the embedded store's own wake-ups), so another instance's change is seen at once and a
    /// thousand waiting consumers cost the store one watch; when nobody waits, or the store
    /// fails, it looks again every `interval`.
    pub async fn follow_bundle(&self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        // How long one wait on the store lasts before it is renewed.
        const WATCH_SPAN: Duration = Duration::from_secs(30);
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.bundle_version.receiver_count() == 0 {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                continue;
            }
            let revision = match self.bundle_record().await {
                Ok((rec, revision)) => {
                    self.note_bundle_version(rec.version);
                    revision
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the bundle version");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                waited = self.store.wait_for_change(BUNDLE_KEY, revision, WATCH_SPAN) => {
                    if let Err(e) = waited {
                        tracing::debug!(error = %e, "bundle watch: waiting on the store failed");
                        tokio::time::sleep(interval).await;
                    }
                }
            }
        }
    }

    /// The CRL number in the store.
    pub async fn crl_number(&self) -> Result<(u64, Option<u64>), StoreError> {
        Ok(match self.store.get(CRL_KEY).await? {
            Some(e) => (
                serde_json::from_slice::<CrlRecord>(&e.value)
                    .unwrap_or_default()
                    .number,
                Some(e.revision),
            ),
            None => (1, None),
        })
    }

    /// Bumps the CRL number (after a revocation).
    pub async fn bump_crl(&self) -> Result<(), StoreError> {
        loop {
            let (number, rev) = self.crl_number().await?;
            let value = serde_json::to_vec(&CrlRecord { number: number + 1 }).unwrap_or_default();
            let result = match rev {
                Some(rev) => self.store.update(CRL_KEY, value, rev).await,
                None => self.store.create(CRL_KEY, value).await,
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The current CRL: rebuilt when the store's number moved or the cached one is past half
    /// its validity.
    pub async fn crl(&self) -> Result<CachedCrl, ApiError> {
        let (number, _) = self.crl_number().await.map_err(|e| ApiError::store(&e))?;
        let now = now_unix();
        if let Ok(cache) = self.crl_cache.lock()
            && let Some(c) = cache.as_ref()
            && c.number == number
            && now < c.this_update + (c.next_update - c.this_update) / 2
        {
            return Ok(c.clone());
        }
        let validity = i64::try_from(self.crl_validity.as_secs())
            .unwrap_or(86_400)
            .max(60);
        let this_update = now - 60;
        let next_update = now + validity;
        let der = self
            .authority
            .crl_der(number, this_update, next_update)
            .await
            .map_err(|e| ApiError::internal("sign the CRL", &e))?;
        let crl = CachedCrl {
            number,
            der: Arc::new(der),
            this_update,
            next_update,
        };
        if let Ok(mut cache) = self.crl_cache.lock() {
            *cache = Some(crl.clone());
        }
        Ok(crl)
    }

    /// Every consumer record.
    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        let mut out = Vec::new();
        for key in self.store.keys(CONSUMERS_PREFIX).await? {
            if let Some(e) = self.store.get(&key).await?
                && let Ok(rec) = serde_json::from_slice(&e.value)
            {
                out.push(rec);
            }
        }
        Ok(out)
    }
}

//! The agent's loop: identity, bundle, outputs, reload, ack, status.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use crate::client::{Ack, BundleAnswer, ClientIdentity, ServeClient};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::identity::{self, Current};
use crate::reload;
use crate::status::{AckRecord, Status, read_status, write_status};
use crate::transport::{NatsTransport, Transport};
use crate::trust::{self, OutputWritten, Refusal};

/// What one pass did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The bundle version installed after the pass.
    pub bundle_version: Option<u64>,
    /// Every output, with whether it changed.
    pub outputs: Vec<OutputWritten>,
    /// A new identity certificate was written.
    pub identity_changed: bool,
    /// The installed bundle version moved (files written now or by an earlier run whose
    /// reload failed).
    pub newly_installed: bool,
    /// The served bundle was refused (old files kept).
    pub refused: Option<Refusal>,
    /// The ack was sent.
    pub acked: bool,
}

impl Outcome {
    /// True when any file changed.
    pub fn changed(&self) -> bool {
        self.identity_changed || self.newly_installed || self.outputs.iter().any(|o| o.changed)
    }

    /// `changed`, `unchanged` or `refused`.
    pub fn summary(&self) -> &'static str {
        if self.refused.is_some() {
            "refused"
        } else if self.changed() {
            "changed"
        } else {
            "unchanged"
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A number in [0, 1) from the system's random source (jitter).
fn unit() -> f64 {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// One agent.
pub struct Agent {
    config: AgentConfig,
    /// The serve CA file's content the clients were built with (empty over NATS).
    server_ca: Vec<u8>,
    client: Transport,
    mtls: Option<ServeClient>,
    identity: Option<Current>,
    renew_at: Option<i64>,
    installed: Option<u64>,
    seen: Option<u64>,
    pending_version: Option<u64>,
    reload_pending: bool,
    status: Status,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("consumer", &self.config.consumer)
            .field("server", &self.config.server)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Reads the serve CA, the current identity files and the last status (the installed
    /// version survives a restart).
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        let mut ca = Vec::new();
        let client = match &config.nats {
            Some(nats) => {
                let mut t = NatsTransport::new(
                    nats.client.clone(),
                    &nats.prefix,
                    config.timing.request_timeout,
                );
                if let Some(key) = &nats.nkey {
                    t = t.with_nkey(std::sync::Arc::clone(key));
                }
                Transport::Nats(t)
            }
            None => {
                ca = std::fs::read(&config.server_ca).map_err(|source| AgentError::Read {
                    what: "the serve CA file",
                    path: config.server_ca.clone(),
                    source,
                })?;
                Transport::Http(ServeClient::new(
                    &config.server,
                    &ca,
                    None,
                    config.timing.request_timeout,
                )?)
            }
        };
        let previous = read_status(&config.status_file).ok();
        let installed = previous.as_ref().and_then(|s| s.bundle_version);
        let mut status = previous.unwrap_or_default();
        status.consumer.clone_from(&config.consumer);
        status.server.clone_from(&config.server);
        let mut agent = Self {
            config,
            server_ca: ca,
            client,
            mtls: None,
            identity: None,
            renew_at: None,
            installed,
            seen: installed,
            pending_version: None,
            reload_pending: false,
            status,
        };
        if let Some(id) = &agent.config.identity
            && let Some(current) = Current::load(id, now_unix())
        {
            agent.set_identity(current)?;
        }
        Ok(agent)
    }

    /// The status as last written.
    pub fn status(&self) -> &Status {
        &self.status
    }

    fn mtls_client(&self, ca: &[u8], current: &Current) -> Result<ServeClient, AgentError> {
        Ok(ServeClient::new(
            &self.config.server,
            ca,
            Some(ClientIdentity {
                chain_pem: &current.chain_pem,
                key_pem: &current.key_pem,
            }),
            self.config.timing.request_timeout,
        )?
        .with_consumer(&self.config.consumer))
    }

    /// Reads the serve CA file again and rebuilds the clients when it changed: after a root
    /// rotation serve may present a certificate from the new root, and its `ca.pem` then holds
    /// both (trust read once at start is what this avoids).
    fn refresh_server_ca(&mut self) -> Result<(), AgentError> {
        if self.client.is_nats() {
            return Ok(());
        }
        let Ok(ca) = std::fs::read(&self.config.server_ca) else {
            return Ok(());
        };
        if ca == self.server_ca {
            return Ok(());
        }
        self.client = Transport::Http(ServeClient::new(
            &self.config.server,
            &ca,
            None,
            self.config.timing.request_timeout,
        )?);
        if let Some(current) = &self.identity {
            self.mtls = Some(self.mtls_client(&ca, current)?);
        }
        self.server_ca = ca;
        tracing::info!(file = %self.config.server_ca.display(), "the serve CA file changed: reconnecting with it");
        Ok(())
    }

    fn set_identity(&mut self, current: Current) -> Result<(), AgentError> {
        // mTLS (renewal, acks by certificate) is HTTPS only: over NATS the token does both.
        if !self.client.is_nats() {
            let ca = std::fs::read(&self.config.server_ca).map_err(|source| AgentError::Read {
                what: "the serve CA file",
                path: self.config.server_ca.clone(),
                source,
            })?;
            self.mtls = Some(self.mtls_client(&ca, &current)?);
        }
        let t = &self.config.timing;
        self.renew_at = Some(current.renew_at(t.renew_fraction, t.renew_jitter, unit()));
        self.status.cert_serial = Some(current.leaf.serial().to_owned());
        self.status.cert_not_after = Some(current.leaf.not_after().unix());
        self.status.renew_at = self.renew_at;
        self.identity = Some(current);
        Ok(())
    }

    fn token(&self) -> Result<Option<SecretString>, AgentError> {
        let Some(path) = &self.config.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
            what: "the token file",
            path: path.clone(),
            source,
        })?;
        Ok(Some(SecretString::from(text.trim().to_owned())))
    }

    /// Gets a certificate when none is in place (`/v1/sign`) or renews it when due
    /// (`/v1/renew`, a new key). Returns whether the files changed.
    async fn ensure_identity(&mut self, now: i64) -> Result<bool, AgentError> {
        let Some(config) = self.config.identity.clone() else {
            return Ok(false);
        };
        let due = self.renew_at.is_none_or(|at| at <= now);
        if self.identity.is_some() && !due {
            return Ok(false);
        }
        let (key, csr) = identity::new_request(&config)?;
        // Renew over mTLS while the certificate is valid; sign with the token when there is
        // none, it expired (serve was away too long), or serve refuses the renewal (revoked,
        // role changed) and a token file is there to start over.
        let valid = self
            .identity
            .as_ref()
            .is_some_and(|c| c.leaf.not_after().unix() > now);
        let renewed = match (&self.mtls, valid) {
            (Some(mtls), true) => match mtls.renew(&csr, config.ttl).await {
                Ok(issued) => Some(issued),
                Err(AgentError::Server { status, code, .. })
                    if (status == 401 || status == 403) && self.config.token_file.is_some() =>
                {
                    tracing::warn!(%code, "renewal refused; asking for a new certificate with the token");
                    None
                }
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let issued = match renewed {
            Some(issued) => issued,
            None => {
                let token = self.token()?;
                self.client
                    .sign(
                        token.as_ref(),
                        &csr,
                        config.kind.as_str(),
                        config.ttl,
                        config.role.as_deref(),
                    )
                    .await?
            }
        };
        let current = blocking(|| identity::install(&config, &issued, key, now_unix()))?;
        tracing::info!(serial = %current.leaf.serial(), not_after = %current.leaf.not_after(), "identity certificate installed");
        self.set_identity(current)?;
        Ok(true)
    }

    /// Checks and writes an answered bundle; returns whether anything changed (a refusal is
    /// recorded in `outcome` and the status).
    async fn apply(
        &mut self,
        answer: BundleAnswer,
        outcome: &mut Outcome,
    ) -> Result<bool, AgentError> {
        let BundleAnswer::Bundle {
            version,
            body,
            rotation,
        } = answer
        else {
            return Ok(false);
        };
        self.seen = Some(version);
        let anchors = self
            .identity
            .as_ref()
            .map(Current::anchors)
            .unwrap_or_default();
        let accepted = match trust::evaluate(
            version,
            &body,
            &self.config.local_sources,
            &self.config.load_options,
            &self.config.policy.policy(),
            &anchors,
            rotation,
        ) {
            Ok(a) => a,
            Err(refusal) => {
                tracing::warn!(%refusal, "bundle refused; the installed files are kept");
                self.status.refused = Some(refusal.to_string());
                outcome.refused = Some(refusal);
                return Ok(false);
            }
        };
        let crl = match &self.config.trust.crl {
            Some(_) => match self.client.bundle("crl", None, None).await? {
                BundleAnswer::Bundle { body, .. } => Some(body),
                BundleAnswer::Unchanged => None,
            },
            None => None,
        };
        let written = blocking(|| {
            trust::write_outputs(&accepted.bundle, &self.config.trust, crl.as_deref())
        })?;
        let changed = written.iter().any(|w| w.changed) || self.installed != Some(version);
        outcome.outputs = written;
        self.status.refused = None;
        self.status.certificates = Some(accepted.bundle.len());
        self.seen = Some(version);
        // Installed once reloaded (commit).
        self.pending_version = Some(version);
        Ok(changed)
    }

    /// After files changed: the on-change actions, then the installed version moves and the
    /// ack goes out. A failed action leaves the change not installed (retried).
    async fn commit(&mut self, changed: bool, outcome: &mut Outcome) -> Result<(), AgentError> {
        if changed || self.reload_pending {
            if let Err(e) = reload::run_all(&self.config.on_change).await {
                self.reload_pending = true;
                return Err(e);
            }
            self.reload_pending = false;
        }
        if let Some(v) = self.pending_version.take()
            && self.installed != Some(v)
        {
            self.installed = Some(v);
            self.status.installed_at = Some(now_unix());
            outcome.newly_installed = true;
        }
        if changed {
            self.status.installed_at = Some(now_unix());
        }
        self.status.bundle_version = self.installed;
        outcome.bundle_version = self.installed;
        outcome.acked = self.ack().await?;
        Ok(())
    }

    /// `POST /v1/acks` with what is installed (over mTLS with the identity, else with the
    /// token file); false when there is nothing to ack or no way to authenticate.
    async fn ack(&mut self) -> Result<bool, AgentError> {
        let Some(version) = self.installed else {
            return Ok(false);
        };
        let ack = Ack {
            consumer: self.config.consumer.clone(),
            labels: self.config.labels.clone(),
            refused: self
                .status
                .refused
                .as_ref()
                .map(|r| r.chars().take(512).collect()),
            bundle_version: version,
            cert_serial: self.identity.as_ref().map(|c| c.leaf.serial().to_owned()),
            not_after: self.identity.as_ref().map(|c| c.leaf.not_after().rfc3339()),
        };
        let answer = if let Some(mtls) = &self.mtls {
            mtls.ack_answer(None, &ack).await?
        } else if let Some(token) = self.token()? {
            self.client.ack(Some(&token), &ack).await?
        } else if self.client.signs() {
            self.client.ack(None, &ack).await?
        } else {
            tracing::debug!("no identity and no token file: the ack is skipped");
            return Ok(false);
        };
        // A root rotation pulls the renewal forward (serve says by when).
        if let Some(before) = answer.renew_before
            && self.identity.is_some()
            && self.renew_at.is_none_or(|at| at > before)
        {
            let at = before.max(now_unix());
            tracing::info!(
                renew_at = at,
                "serve pulls the renewal forward (root rotation)"
            );
            self.renew_at = Some(at);
            self.status.renew_at = Some(at);
        }
        self.status.last_ack = Some(AckRecord {
            bundle_version: version,
            at: now_unix(),
        });
        tracing::info!(version, consumer = %self.config.consumer, "acknowledged");
        Ok(true)
    }

    fn contact(&mut self) {
        self.status.last_contact = Some(now_unix());
        self.status.consecutive_failures = 0;
    }

    fn save(&mut self) {
        let now = now_unix();
        self.status.updated_at = now;
        let stale_after = self.config.timing.stale_after.as_secs() as i64;
        self.status.stale = self.status.consecutive_failures > 0
            || self
                .status
                .last_contact
                .is_none_or(|t| now - t > stale_after);
        if let Err(e) = blocking(|| write_status(&self.config.status_file, &self.status)) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }

    fn failed(&mut self, e: &AgentError) {
        if e.is_unreachable() {
            self.status.consecutive_failures = self.status.consecutive_failures.saturating_add(1);
        }
        self.status.last_error = Some(e.to_string());
        tracing::warn!(error = %e, "agent step failed");
        self.save();
    }

    /// A full pass: identity, the whole bundle (no ETag), outputs, reload, ack.
    async fn full_pass(&mut self) -> Result<Outcome, AgentError> {
        self.refresh_server_ca()?;
        let mut outcome = Outcome {
            identity_changed: self.ensure_identity(now_unix()).await?,
            ..Outcome::default()
        };
        let answer = self.client.bundle("pem", None, None).await?;
        self.contact();
        let changed = self.apply(answer, &mut outcome).await?;
        if outcome.refused.is_some() {
            // The trust files stay as they are; a new identity is still put to use (reload),
            // and the ack reports the refusal.
            let acked = if outcome.identity_changed {
                self.commit(true, &mut outcome)
                    .await
                    .map(|()| outcome.acked)
            } else {
                self.ack().await
            };
            match acked {
                Ok(a) => outcome.acked = a,
                Err(e) if !outcome.identity_changed => {
                    self.status.last_error = Some(e.to_string());
                }
                Err(e) => return Err(e),
            }
            self.save();
            return Ok(outcome);
        }
        self.commit(changed || outcome.identity_changed, &mut outcome)
            .await?;
        self.status.last_error = None;
        self.save();
        Ok(outcome)
    }

    /// `once`: write everything, reload if anything changed, ack, and return. A second run
    /// with nothing new changes nothing ([`Outcome::summary`] is `unchanged`).
    pub async fn once(&mut self) -> Result<Outcome, AgentError> {
        let result = self.full_pass().await;
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    fn backoff(&self, failures: u32) -> Duration {
        let t = &self.config.timing;
        let exp = t
            .backoff_min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(t.backoff_max);
        exp.mul_f64(0.8 + 0.4 * unit())
    }

    fn next_wake(&self, now: i64) -> tokio::time::Instant {
        let heartbeat = self.config.timing.heartbeat.as_secs() as i64;
        let mut at = self
            .status
            .last_ack
            .map_or(now + heartbeat, |a| a.at + heartbeat);
        if let Some(r) = self.renew_at {
            at = at.min(r);
        }
        tokio::time::Instant::now() + Duration::from_secs(at.saturating_sub(now).max(0) as u64)
    }

    /// Renewal when due, the heartbeat ack when due.
    async fn on_timer(&mut self) -> Result<(), AgentError> {
        let now = now_unix();
        let mut outcome = Outcome::default();
        if self.ensure_identity(now).await? {
            self.contact();
            self.commit(true, &mut outcome).await?;
        } else if self
            .status
            .last_ack
            .is_none_or(|a| now - a.at >= self.config.timing.heartbeat.as_secs() as i64)
        {
            self.ack().await?;
            self.contact();
        }
        Ok(())
    }

    async fn on_answer(&mut self, answer: BundleAnswer) -> Result<(), AgentError> {
        self.contact();
        let mut outcome = Outcome::default();
        let changed = self.apply(answer, &mut outcome).await?;
        if outcome.refused.is_some() {
            self.ack().await?;
            return Ok(());
        }
        if changed || self.reload_pending {
            self.commit(changed, &mut outcome).await?;
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves: a full pass, then the bundle long-poll with the ETag,
    /// renewal at its time, heartbeat acks; after a failure a backoff with jitter and a full
    /// pass again. The last good files stay in place throughout.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        // NATS: subscribed to the change announcements before the first fetch.
        if let Err(e) = self.client.prepare().await {
            self.failed(&e);
        }
        let mut full = true;
        // Failures of any kind in a row (the status counts unreachable ones only): the backoff.
        let mut streak = 0u32;
        loop {
            let polled_at = tokio::time::Instant::now();
            let mut early_304 = false;
            let result = if full {
                tokio::select! {
                    r = self.full_pass() => r.map(|_| ()),
                    () = &mut shutdown => return Ok(()),
                }
            } else {
                let client = self.client.clone();
                let known = self.seen;
                let wait = self.config.timing.wait;
                let wake = self.next_wake(now_unix());
                let event = tokio::select! {
                    a = client.bundle("pem", known, Some(wait)) => Some(a),
                    () = tokio::time::sleep_until(wake) => None,
                    () = &mut shutdown => return Ok(()),
                };
                match event {
                    Some(Ok(BundleAnswer::Unchanged)) => {
                        // A serve that caps the wait near zero must not make this a busy loop.
                        early_304 = polled_at.elapsed() < Duration::from_secs(1);
                        self.on_answer(BundleAnswer::Unchanged).await
                    }
                    Some(Ok(answer)) => self.on_answer(answer).await,
                    Some(Err(e)) => Err(e),
                    None => self.on_timer().await,
                }
            };
            match result {
                Ok(()) => {
                    if full || self.status.last_error.is_some() {
                        self.status.last_error = None;
                    }
                    full = false;
                    streak = 0;
                    self.save();
                    if early_304 {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => return Ok(()),
                        }
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    full = true;
                    // Rate-limited: wait as serve says (with jitter so a group does not come
                    // back at once), not the failure backoff.
                    let pause = if let AgentError::RateLimited { retry_after, .. } = &e {
                        retry_after.mul_f64(1.0 + 0.5 * unit())
                    } else {
                        streak = streak.saturating_add(1);
                        self.backoff(streak)
                    };
                    tracing::info!(?pause, "backing off");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    }
}

/// Runs file work that blocks (atomic writes: an fsync of the file and of its directory)
/// without stalling the other tasks of a multi-threaded runtime. Without it, every agent of a
/// process running many (the fan-out benchmark's load process, an application embedding the
/// library) held a worker thread through each fsync, so a change reached the last of 1,000
/// agents only after the others' flushes one worker at a time (docs/benchmarks.md, "Agent
/// fan-out"). On a current-thread runtime, or outside one, it runs inline.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

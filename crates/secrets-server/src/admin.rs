//! Administration over NATS: the server side ([`AdminService`], plugged into [`crate::Server`])
//! and the client ([`AdminClient`], used by the CLI).
//!
//! The envelope (subjects `<prefix>.admin.<backend>.<op>`, wascap claims signed by an admin
//! nkey, the body sealed to the transit key, replies sealed to the requester's one-time key)
//! and its checks live in [`anchorage_secrets::admin`]; this module runs the verified
//! operations against the server's own stores, through the [`Executor`] the CLI's in-process
//! commands also run (so each operation's checks are written once), so the embedded store (one
//! process at a time) can be administered while `serve` runs, and the encryption key rotated
//! online.
//!
//! Key rotation over NATS does not carry a seed: the server re-reads its configured encryption
//! seed source (`--encryption-seed-file`); when that now holds another key, it becomes the
//! current key and the old one stays in the keyring for reading, then every value is re-sealed.
//! The seed never crosses the network, and a restart reads the same new key.
//!
//! Replays: every instance shares the transit key a token is sealed to, so the verifier's
//! in-process `jti` cache alone would let a captured request through on another instance or
//! after a restart (an `add_mapping` replayed after its `remove_mapping` would restore the
//! mapping). With a [`ReplayGuard`] ([`AdminService::with_replay_guard`]) each accepted token
//! is also recorded in the store the instances share, with a create-only write, before it
//! runs: the first instance to record it runs it, every other attempt is refused as
//! [`AdminError::Replayed`]. The embedded store records it under `secrets.admin_jti.<hash>`
//! (the redb file survives restarts), the JetStream store in a bucket of its own whose
//! `max_age` outlives every token ([`crate::store::ADMIN_REPLAY_MAX_AGE`]). A guard that
//! cannot record refuses the request (fail closed).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anchorage_secrets::admin::{
    ADMIN_RESPONSE_XKEY, ADMIN_XKEY_HEADER, AdminAudit, AdminError, AdminKeyError, AdminOp,
    AdminPolicy, AdminReplyError, AdminRequest, AdminSigner, AdminSubjects, AdminVerifier,
    DEFAULT_ADMIN_TOKEN_LIFETIME, VerifiedAdmin,
};
use anchorage_secrets::{SecretValue, XKey};
use secrecy::SecretString;
use zeroize::Zeroizing;

pub use crate::executor::{Executor, Operation, OperationError, Outcome, SecretOutcome};
use crate::keys::{Keyring, SeedSource};
use crate::server::Field;
use crate::store::{MappingStore, SecretStore, StoreFailure};

/// Where admin token ids are recorded so that every instance, and an instance after a
/// restart, refuses a token that was used once: a create-only write in a store the instances
/// share, kept at least until the token can no longer be accepted.
#[async_trait::async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Records `replay_key` ([`VerifiedAdmin::replay_key`]: 64 hex characters) until
    /// `remember_until` (unix seconds), atomically: `Ok(true)` when this call recorded it,
    /// `Ok(false)` when it was recorded before (a replay). `now` is the caller's clock.
    async fn record_token(
        &self,
        replay_key: &str,
        remember_until: u64,
        now: u64,
    ) -> Result<bool, StoreFailure>;
}

/// The server's administration: who may administer, and what rotation re-reads.
pub struct AdminService {
    verifier: AdminVerifier,
    keyring: Option<Arc<Keyring>>,
    encryption_source: Option<SeedSource>,
    replay: Option<Arc<dyn ReplayGuard>>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("verifier", &self.verifier)
            .field("encryption_source", &self.encryption_source)
            .field("shared_replay_guard", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminService {
    /// Administration for `backend` by the keys of `policy`. `keyring` is the one the stores
    /// seal with (`None` for a store without our encryption, such as OpenBao);
    /// `encryption_source` is where a rotation re-reads the encryption seed.
    pub fn new(
        policy: AdminPolicy,
        backend: &str,
        keyring: Option<Arc<Keyring>>,
        encryption_source: Option<SeedSource>,
    ) -> Self {
        Self {
            verifier: AdminVerifier::new(policy, backend),
            keyring,
            encryption_source,
            replay: None,
        }
    }

    /// Also records every accepted token in `guard`, shared by the instances (see the module
    /// documentation). Without a guard, replays are refused by this process only: a server
    /// with several instances, or one that restarts within a token's lifetime, needs one.
    pub fn with_replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }

    /// The allowed admin keys.
    pub fn keys(&self) -> &BTreeSet<String> {
        self.verifier.keys()
    }

    /// Answers one admin request: the reply headers and body, and the audit record.
    pub(crate) async fn answer(
        &self,
        op: &str,
        header: Option<&str>,
        body: &[u8],
        transit: &XKey,
        values: &dyn SecretStore,
        mappings: &dyn MappingStore,
    ) -> (Option<String>, Vec<u8>, AdminAudit) {
        let verified = match self
            .verifier
            .verify(op, header, body, transit, SystemTime::now())
        {
            Ok(v) => v,
            Err(refusal) => {
                let (error, audit) = *refusal;
                return (None, error.body(), audit);
            }
        };
        let audit = verified.audit();
        if let Err(error) = self.record(&verified).await {
            return (None, error.body(), audit.rejected(&error));
        }
        match self.execute(&verified, values, mappings).await {
            Ok(plain) => match verified.seal_result(&plain) {
                Ok((key, sealed)) => (Some(key), sealed, audit.done()),
                Err(_) => {
                    let error = AdminError::Store("the reply cannot be sealed".to_owned());
                    (None, error.body(), audit.rejected(&error))
                }
            },
            Err(error) => (None, error.body(), audit.rejected(&error)),
        }
    }

    /// Records the token in the shared guard; a token recorded before is a replay.
    async fn record(&self, verified: &VerifiedAdmin) -> Result<(), AdminError> {
        let Some(guard) = &self.replay else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match guard
            .record_token(verified.replay_key(), verified.remember_until(), now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::Replayed(
                verified.token_id().chars().take(64).collect(),
            )),
            Err(e) => Err(AdminError::Store(format!(
                "cannot record the admin token against replays: {}",
                with_causes(&e)
            ))),
        }
    }

    /// Turns the verified claims into an [`Operation`] and runs it with the [`Executor`] all
    /// administration shares; the reply is the outcome's JSON.
    async fn execute(
        &self,
        v: &VerifiedAdmin,
        values: &dyn SecretStore,
        mappings: &dyn MappingStore,
    ) -> Result<Zeroizing<Vec<u8>>, AdminError> {
        let c = &v.claims;
        let key = c.key.as_deref().unwrap_or_default();
        let entity = c.entity.as_deref().unwrap_or_default();
        let op = match v.op {
            AdminOp::Put => {
                if key.is_empty() {
                    return Err(AdminError::InvalidArgument(
                        "no secret name given".to_owned(),
                    ));
                }
                let Some(bytes) = &v.value else {
                    return Err(AdminError::InvalidArgument("no value given".to_owned()));
                };
                let value = if c.binary {
                    SecretValue::Binary(Box::<[u8]>::from(&bytes[..]).into())
                } else {
                    let text = std::str::from_utf8(bytes).map_err(|_| {
                        AdminError::InvalidArgument(
                            "the value is not UTF-8 text: send it as binary".to_owned(),
                        )
                    })?;
                    SecretValue::String(SecretString::from(text.to_owned()))
                };
                Operation::Put { key, value }
            }
            AdminOp::Get => Operation::Get {
                key,
                field: c.field.as_deref(),
                version: c.version.as_deref(),
                reveal: c.reveal,
            },
            AdminOp::Delete => Operation::Delete { key },
            AdminOp::List => Operation::List,
            AdminOp::AddMapping => Operation::AddMapping {
                entity,
                secrets: &c.secrets,
            },
            AdminOp::RemoveMapping => Operation::RemoveMapping {
                entity,
                secrets: &c.secrets,
            },
            AdminOp::ListMappings => Operation::ListMappings {
                entity: c.entity.as_deref(),
            },
            AdminOp::RotateEncryptionKey => Operation::RotateEncryptionKey {
                reread: self.encryption_source.as_ref(),
            },
        };
        Executor::new(values, mappings, self.keyring.as_deref())
            .run(op)
            .await
            .map(|outcome| outcome.to_json())
            .map_err(|e| e.to_admin_error())
    }
}

pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Writes one admin audit event (target `anchorage::audit`); never a value or a seed.
pub(crate) fn audit(event: &AdminAudit) {
    // Every field but the fixed result and error code is written escaped and cut through
    // `Field` (as the host audit line is): the operation comes from the subject, the reason may
    // quote the request, and key/entity/admin are claims of the token.
    tracing::info!(
        target: "anchorage::audit",
        result = event.result,
        error = event.error.unwrap_or("-"),
        reason = ?Field(event.reason.as_deref()),
        admin = ?Field(event.admin.as_deref()),
        op = ?Field(Some(&event.op)),
        key = ?Field(event.key.as_deref()),
        entity = ?Field(event.entity.as_deref()),
        "admin request"
    );
}

/// Why an admin call gave no result.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// Nothing subscribes to the admin subjects (no server, or one without admin keys).
    #[error(
        "no secrets server answers on {subject} (none runs, or it was started without admin keys)"
    )]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// No answer in time.
    #[error("no answer on {subject} within {timeout:?}")]
    Timeout {
        /// The subject.
        subject: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The server refused.
    #[error("the secrets server refused: {0}")]
    Refused(#[source] AdminError),
    /// The reply is not a protocol reply.
    #[error("{0}")]
    Malformed(String),
    /// The request could not be signed.
    #[error(transparent)]
    Sign(#[from] AdminKeyError),
    /// NATS failed.
    #[error("NATS request on {subject} failed")]
    Nats {
        /// The subject.
        subject: String,
        /// What went wrong.
        #[source]
        source: async_nats::RequestError,
    },
}

/// Sends admin requests to a running server.
pub struct AdminClient {
    client: async_nats::Client,
    subjects: AdminSubjects,
    backend: String,
    signer: AdminSigner,
    timeout: Duration,
    lifetime: Duration,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("subjects", &self.subjects)
            .field("signer", &self.signer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the server of `backend` under `prefix`, signing as `signer`.
    pub fn new(
        client: async_nats::Client,
        prefix: &str,
        backend: &str,
        signer: AdminSigner,
    ) -> Self {
        Self {
            client,
            subjects: AdminSubjects::new(prefix, backend),
            backend: backend.to_owned(),
            signer,
            timeout: Duration::from_secs(5),
            lifetime: DEFAULT_ADMIN_TOKEN_LIFETIME,
        }
    }

    /// How long to wait for each answer (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn request(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> Result<async_nats::Message, AdminCallError> {
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(body.into())
            .timeout(Some(self.timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(m) => Ok(m),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    AdminCallError::NoResponders { subject }
                }
                async_nats::RequestErrorKind::TimedOut => AdminCallError::Timeout {
                    subject,
                    timeout: self.timeout,
                },
                async_nats::RequestErrorKind::Other => AdminCallError::Nats { subject, source: e },
            }),
        }
    }

    /// The server's transit public key, from `<prefix>.admin.<backend>.server_xkey`.
    pub async fn server_xkey(&self) -> Result<String, AdminCallError> {
        let reply = self
            .request(
                self.subjects.server_xkey(),
                async_nats::HeaderMap::new(),
                Vec::new(),
            )
            .await?;
        let text = std::str::from_utf8(&reply.payload)
            .map(str::trim)
            .unwrap_or_default();
        if !text.starts_with('X') {
            return Err(AdminCallError::Malformed(
                "the server_xkey reply is not a public xkey".to_owned(),
            ));
        }
        Ok(text.to_owned())
    }

    /// Signs, seals and sends `request`; returns the opened result JSON (zeroized when dropped).
    pub async fn call(&self, request: &AdminRequest) -> Result<Zeroizing<Vec<u8>>, AdminCallError> {
        let server_xkey = self.server_xkey().await?;
        let sealed = self.signer.seal(
            request,
            &self.backend,
            &server_xkey,
            SystemTime::now(),
            self.lifetime,
        )?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ADMIN_XKEY_HEADER, sealed.header.as_str());
        let reply = self
            .request(
                self.subjects.subject(sealed.op),
                headers,
                sealed.body.clone(),
            )
            .await?;
        let key = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(ADMIN_RESPONSE_XKEY))
            .map(|v| v.as_str().to_owned());
        sealed
            .open_reply(key.as_deref(), &reply.payload)
            .map_err(|e| match e {
                AdminReplyError::Refused(e) => AdminCallError::Refused(e),
                AdminReplyError::Malformed(m) => AdminCallError::Malformed(m),
            })
    }
}

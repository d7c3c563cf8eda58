//! [`CertManagerIssuer`]: the [`Issuer`] that asks cert-manager, through the Kubernetes API.
//!
//! One issuance is: make the key here (it never leaves the process), sign a CSR with it,
//! create a `CertificateRequest`, watch that one object until [`read_status`] says it is
//! issued, denied or failed (or the timeout passes), then delete it whatever happened. The
//! decisions live in the pure functions of [`crate::object`] and [`crate::status`]; this
//! module only sequences them against the API server.

use std::sync::RwLock;
use std::time::Duration;

use anchorage_ca::{
    CertificateRequest, IssueError, IssuedCertificate, Issuer, IssuerId, KeyType, PrivateKey, keys,
};
use anchorage_ca::{Mismatch, check_issued};
use anchorage_x509::Certificate;
use async_trait::async_trait;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::{self, await_condition};
use kube::runtime::watcher;
use rcgen::KeyPair;
use tokio::time::Instant;

use crate::object::{MANAGED_BY, build_request, certificate_signing_request};
use crate::settings::{CertManagerSettings, SettingsError};
use crate::status::{Issued, Progress, describe, read_status};
use crate::v1;

/// The backend name in errors and logs.
pub(crate) const BACKEND: &str = "cert-manager";

/// How long the clean-up `DELETE` (and the last look at a timed-out request) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Issues certificates through cert-manager: a `cert-manager.io/v1` `CertificateRequest` per
/// certificate, in one namespace, for one issuer.
///
/// The key is made locally ([`anchorage_ca::keys::generate`]) and only its CSR is sent.
/// cert-manager does not say in advance which CA signs, so [`Issuer::signing_ca`] and
/// [`Issuer::validating_roots`] report what the last successful issuance returned (`None` and
/// empty before the first).
///
/// Every request made is deleted: after a certificate, a refusal or a timeout, and (from a
/// spawned task) when the issuing future is dropped. Only a `create` whose answer never
/// arrives can leave one behind, unnamed; they all carry
/// [`MANAGED_BY_LABEL`](crate::MANAGED_BY_LABEL)`=anchorage`.
///
/// RBAC: the client's identity needs `create`, `get`, `list`, `watch` and `delete` on
/// `certificaterequests.cert-manager.io` in the namespace, and an approver must approve the
/// requests (cert-manager's built-in approver does for its own issuers unless disabled).
///
/// The [`kube::Client`] is the caller's, and so is the choice of its rustls crypto provider.
pub struct CertManagerIssuer {
    api: Api<v1::CertificateRequest>,
    settings: CertManagerSettings,
    last: RwLock<Option<Learned>>,
}

/// What the last successful issuance told us about the CA.
#[derive(Clone)]
struct Learned {
    signer: IssuerId,
    roots: Vec<Certificate>,
}

impl CertManagerIssuer {
    /// An issuer that makes requests through `client` as `settings` say, once they
    /// [validate](CertManagerSettings::validate).
    pub fn new(client: kube::Client, settings: CertManagerSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            last: RwLock::new(None),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &CertManagerSettings {
        &self.settings
    }

    fn learned(&self) -> Option<Learned> {
        self.last.read().map_or(None, |guard| guard.clone())
    }

    /// Creates the object, waits for it until `deadline`, and returns the checked result. The
    /// caller deletes what was created (`created` is set as soon as the name is known).
    async fn create_and_wait(
        &self,
        request: &CertificateRequest,
        object: &v1::CertificateRequest,
        deadline: Instant,
        created: &mut Option<String>,
    ) -> Result<Issued, IssueError> {
        let params = PostParams {
            field_manager: Some(MANAGED_BY.to_owned()),
            ..PostParams::default()
        };
        let made = tokio::time::timeout_at(deadline, self.api.create(&params, object))
            .await
            .map_err(|_| self.timeout())?
            .map_err(|e| self.api_error("create", &describe(object), request, e))?;
        let name = made
            .metadata
            .name
            .clone()
            .ok_or_else(|| IssueError::Backend {
                backend: BACKEND,
                message: format!(
                    "the API server created {} without giving it a name",
                    describe(object)
                ),
            })?;
        *created = Some(name.clone());
        tracing::debug!(name, "created the CertificateRequest");

        // The object as created may already be final (an approver that runs as a webhook).
        if let Progress::Issued(issued) = read_status(&made, request)? {
            return Ok(*issued);
        }
        let finished = |object: Option<&v1::CertificateRequest>| match object {
            None => true,
            Some(object) => !matches!(read_status(object, request), Ok(Progress::Pending { .. })),
        };
        // A watch that breaks for a passing reason (a 410 after compaction, a dropped
        // connection, an overloaded API server) is started again until the deadline; a refusal
        // (RBAC, a missing API) ends the wait at once.
        let waited = loop {
            let waited = tokio::time::timeout_at(
                deadline,
                await_condition(self.api.clone(), &name, &finished),
            )
            .await;
            match &waited {
                Ok(Err(wait::Error::ProbeFailed(e))) if passing(e) => {
                    tracing::debug!(name, error = %e, "the watch broke; watching again");
                    let pause = (Instant::now() + WATCH_RETRY_PAUSE).min(deadline);
                    tokio::time::sleep_until(pause).await;
                }
                _ => break waited,
            }
        };
        let what = format!("CertificateRequest {}/{name}", self.settings.namespace);
        match waited {
            Err(_) => {
                self.log_last_state(&name, request).await;
                Err(self.timeout())
            }
            Ok(Err(e)) => Err(IssueError::Backend {
                backend: BACKEND,
                message: format!(
                    "could not watch {what}: {e}; the client needs get, list and watch on certificaterequests.cert-manager.io"
                ),
            }),
            Ok(Ok(None)) => Err(IssueError::Backend {
                backend: BACKEND,
                message: format!("{what} was deleted before it was signed"),
            }),
            Ok(Ok(Some(object))) => match read_status(&object, request)? {
                Progress::Issued(issued) => Ok(*issued),
                pending @ Progress::Pending { .. } => Err(IssueError::Backend {
                    backend: BACKEND,
                    message: format!("{what} stopped being watched while {pending}"),
                }),
            },
        }
    }

    fn timeout(&self) -> IssueError {
        IssueError::Timeout {
            backend: BACKEND,
            waited: self.settings.timeout,
        }
    }

    /// After a timeout, says in the log where the request was stuck (the error type has no
    /// room for it): `Pending: Referenced "ClusterIssuer" not found …` is the usual answer.
    async fn log_last_state(&self, name: &str, request: &CertificateRequest) {
        let state = match tokio::time::timeout(CLEANUP_TIMEOUT, self.api.get_opt(name)).await {
            Ok(Ok(Some(object))) => match read_status(&object, request) {
                Ok(progress) => progress.to_string(),
                Err(e) => e.to_string(),
            },
            Ok(Ok(None)) => "gone".to_owned(),
            Ok(Err(e)) => format!("unknown ({e})"),
            Err(_) => "unknown (no answer)".to_owned(),
        };
        tracing::warn!(
            namespace = %self.settings.namespace,
            name,
            issuer = %self.settings.issuer,
            %state,
            "cert-manager did not finish the CertificateRequest in time"
        );
    }

    /// Maps an API error to what a fix needs.
    fn api_error(
        &self,
        action: &str,
        what: &str,
        request: &CertificateRequest,
        error: kube::Error,
    ) -> IssueError {
        let namespace = &self.settings.namespace;
        let message = match error {
            kube::Error::Api(status) => match status.code {
                // The webhook or the schema refused the object: the request, not the backend.
                400 | 422 => {
                    return IssueError::Refused {
                        backend: BACKEND,
                        identity: request.identity.clone(),
                        reason: format!("the API server refused {what}: {}", status.message),
                    };
                }
                401 | 403 => format!(
                    "not allowed to {action} certificaterequests.cert-manager.io in namespace {namespace}: {}; grant create, get, list, watch and delete on them",
                    status.message
                ),
                404 => format!(
                    "cannot {action} {what}: {}; is cert-manager (cert-manager.io/v1) installed and does namespace {namespace} exist?",
                    status.message
                ),
                code => format!(
                    "cannot {action} {what}: {} ({}, HTTP {code})",
                    status.message, status.reason
                ),
            },
            other => format!("cannot {action} {what}: {other}"),
        };
        IssueError::Backend {
            backend: BACKEND,
            message,
        }
    }
}

/// How long to pause before watching again after a watch broke for a passing reason.
const WATCH_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// True when a watch error is worth another try: HTTP 410 (Gone), 429 and 5xx from the API
/// server, and transport errors; not 401, 403 or 404, which will not change by waiting.
fn passing(error: &watcher::Error) -> bool {
    let status_passes = |code: u16| code == 410 || code == 429 || code >= 500;
    match error {
        watcher::Error::WatchError(status) => status_passes(status.code),
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => status_passes(status.code),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                true
            }
            _ => false,
        },
        watcher::Error::NoResourceVersion => false,
    }
}

/// Deletes the object when dropped (a cancelled issuance), so nothing is left behind; the
/// normal path deletes in line and disarms it.
struct DeleteOnDrop {
    api: Api<v1::CertificateRequest>,
    name: Option<String>,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let (Some(name), Ok(runtime)) = (self.name.take(), tokio::runtime::Handle::try_current())
        {
            let api = self.api.clone();
            runtime.spawn(async move { delete(&api, &name).await });
        }
    }
}

/// Deletes the request, best effort: a failure is logged, never returned (the certificate, or
/// the first error, matters more).
async fn delete(api: &Api<v1::CertificateRequest>, name: &str) {
    match tokio::time::timeout(
        CLEANUP_TIMEOUT,
        api.delete(name, &DeleteParams::background()),
    )
    .await
    {
        Ok(Ok(_)) => tracing::debug!(name, "deleted the CertificateRequest"),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
        Ok(Err(e)) => tracing::warn!(name, error = %e, "could not delete the CertificateRequest"),
        Err(_) => tracing::warn!(name, "no answer to deleting the CertificateRequest"),
    }
}

/// Makes the key, off the async threads for RSA (seconds for RSA-4096).
async fn generate(key_type: KeyType) -> Result<(KeyPair, PrivateKey), IssueError> {
    if !key_type.is_rsa() {
        return keys::generate(key_type);
    }
    tokio::task::spawn_blocking(move || keys::generate(key_type))
        .await
        .map_err(|e| IssueError::Crypto {
            action: format!("generate a {key_type} key"),
            message: e.to_string(),
        })?
}

#[async_trait]
impl Issuer for CertManagerIssuer {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(skip_all, fields(identity = %request.identity, issuer = %self.settings.issuer))]
    async fn issue(&self, request: &CertificateRequest) -> Result<IssuedCertificate, IssueError> {
        request.validate()?;
        let deadline = Instant::now() + self.settings.timeout;
        let (key_pair, private_key) = generate(request.key_type).await?;
        let csr = certificate_signing_request(request, &key_pair)?;
        let object = build_request(request, &csr, &self.settings);

        let mut guard = DeleteOnDrop {
            api: self.api.clone(),
            name: None,
        };
        let outcome = self
            .create_and_wait(request, &object, deadline, &mut guard.name)
            .await;
        // Disarmed only once the DELETE is answered, so a cancellation during it still cleans.
        if let Some(name) = guard.name.clone() {
            delete(&self.api, &name).await;
            guard.name = None;
        }
        let issued = outcome?;

        // The one check every backend runs (anchorage_ca::check): our key, the requested key
        // type, every purpose the kind needs and every requested name. (The issuer's signature
        // on the leaf was verified when the status was read.)
        if let Err(mismatch) = check_issued(request, &issued.certificate, &key_pair, None) {
            if mismatch == Mismatch::Key {
                return Err(IssueError::Backend {
                    backend: BACKEND,
                    message: format!(
                        "the certificate returned for {} ({}) does not hold the key of our CSR",
                        request.identity,
                        issued.certificate.subject()
                    ),
                });
            }
            let hint = match &mismatch {
                Mismatch::Purpose { .. } => {
                    "the issuer ignores spec.usages: check the issuer's configuration"
                }
                Mismatch::Names { .. } => {
                    "the issuer drops names of the CSR: check its policy (approver-policy, the CA's allowed names)"
                }
                _ => "check the issuer's configuration",
            };
            return Err(IssueError::Backend {
                backend: BACKEND,
                message: format!(
                    "the certificate returned for {} ({}) does not match the request: {mismatch}; {hint}",
                    request.identity,
                    issued.certificate.subject()
                ),
            });
        }
        if let Ok(mut last) = self.last.write() {
            *last = Some(Learned {
                signer: issued.issuer,
                roots: issued.roots.clone(),
            });
        }
        Ok(issued.into_issued_certificate(private_key))
    }

    fn signing_ca(&self) -> Option<IssuerId> {
        self.learned().map(|l| l.signer)
    }

    fn validating_roots(&self) -> Vec<Certificate> {
        self.learned().map(|l| l.roots).unwrap_or_default()
    }
}

impl std::fmt::Debug for CertManagerIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManagerIssuer")
            .field("settings", &self.settings)
            .field("signing_ca", &self.signing_ca())
            .finish_non_exhaustive()
    }
}

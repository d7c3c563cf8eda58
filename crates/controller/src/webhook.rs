//! The pod-injection webhook's HTTPS face (`anchorage controller webhook`): `POST /mutate` answers
//! AdmissionReviews with [`crate::inject::review`], `GET /healthz` answers `ok`; and the objects
//! around it: the serving certificate from Anchorage's own CA ([`serving_certificate`]) and the
//! `MutatingWebhookConfiguration` ([`webhook_configuration`]) whose `caBundle` is that CA.
//!
//! It never blocks pod creation: the configuration says `failurePolicy: Ignore` (an unreachable
//! or slow webhook lets the pod through unchanged, after `timeoutSeconds`), and every answer is
//! `allowed: true` (see [`crate::inject`]). Only labelled pods are sent (`objectSelector`), and
//! never those of `kube-system` or the webhook's own namespace (`namespaceSelector`), so the
//! webhook cannot hold up its own restart.
//!
//! It needs no Kubernetes API access to answer: the pod arrives in the review and the answer is
//! a patch. With [`Events`] (`anchorage controller webhook --events`, what the manifests run) it
//! also publishes a Warning Event on the pod's owner for each labelled pod that was not injected
//! or was injected with warnings ([`crate::inject::Notice`]): after the answer, from a bounded
//! queue, so a slow or refusing API server never delays an admission (a full queue drops the
//! Event and logs it). Not here: reading the Bundle to learn the trust object's name (it is
//! configured).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anchorage_ca::{
    BuiltinCa, CertKind, CertificateRequest, Identity, IssueError, IssuedCertificate, San,
};
use anchorage_x509::Timestamp;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::inject::{INJECT_LABEL, InjectSettings, Notice, review_json_noticed};

/// The path the API server posts reviews to.
pub const MUTATE_PATH: &str = "/mutate";
/// How long the API server waits for an answer before ignoring the webhook (`timeoutSeconds`).
pub const TIMEOUT_SECONDS: i32 = 5;
/// The webhook's name in the configuration (a DNS name, as Kubernetes requires).
pub const WEBHOOK_NAME: &str = "inject.trust.anchorage.dev";

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The serving certificate file holds no PEM certificate.
    #[error(
        "the serving certificate holds no PEM certificate; pass the cert.pem `anchorage ca issue --kind webhook` wrote"
    )]
    NoCertificate,
    /// The key file holds no PEM private key.
    #[error(
        "the serving key holds no PEM private key (PKCS#8, SEC 1 or PKCS#1); pass the key.pem `anchorage ca issue --kind webhook` wrote"
    )]
    NoKey,
    /// rustls refused the certificate and key.
    #[error("the serving certificate and key do not make a TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// Where the webhook's Service is: what its certificate names and the configuration points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookService {
    /// The Service's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl WebhookService {
    /// The Service `name` in `namespace`.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    /// The names the API server may use for it: `<name>.<namespace>.svc` (the one it uses),
    /// then the shorter and the cluster-domain forms.
    pub fn dns_names(&self) -> Vec<String> {
        let (n, ns) = (&self.name, &self.namespace);
        vec![
            format!("{n}.{ns}.svc"),
            format!("{n}.{ns}"),
            n.clone(),
            format!("{n}.{ns}.svc.cluster.local"),
        ]
    }
}

/// A webhook-kind serving certificate for `service` from `ca`, valid for every name of
/// [`WebhookService::dns_names`]; its validating roots are the configuration's `caBundle`.
///
/// # Errors
///
/// What the CA refuses (a name, a lifetime past its own).
pub fn serving_certificate(
    ca: &BuiltinCa,
    service: &WebhookService,
    now: Timestamp,
) -> Result<IssuedCertificate, IssueError> {
    let names = service.dns_names();
    let identity = Identity::new(names[0].clone()).map_err(IssueError::from)?;
    let mut request = CertificateRequest::new(identity, CertKind::Webhook);
    for name in &names[1..] {
        request = request.with_san(San::Dns(name.clone()));
    }
    ca.issue_at(&request, now)
}

/// The `MutatingWebhookConfiguration` for `service`: pods only, on CREATE, labelled
/// [`INJECT_LABEL`]`: "true"`, outside `kube-system` and the webhook's namespace;
/// `failurePolicy: Ignore`, `sideEffects: None`, [`TIMEOUT_SECONDS`]. `ca_bundle_pem` (the
/// CA's root certificates) becomes `caBundle`; without it the field is left out, to be filled
/// before applying (`anchorage controller webhook-config --ca-bundle`).
pub fn webhook_configuration(
    service: &WebhookService,
    ca_bundle_pem: Option<&str>,
) -> MutatingWebhookConfiguration {
    let webhook = MutatingWebhook {
        name: WEBHOOK_NAME.to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: WebhookClientConfig {
            ca_bundle: ca_bundle_pem.map(|pem| ByteString(pem.as_bytes().to_vec())),
            service: Some(ServiceReference {
                name: service.name.clone(),
                namespace: service.namespace.clone(),
                path: Some(MUTATE_PATH.to_owned()),
                port: Some(443),
            }),
            url: None,
        },
        failure_policy: Some("Ignore".to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec!["kube-system".to_owned(), service.namespace.clone()]),
            }]),
            match_labels: None,
        }),
        object_selector: Some(LabelSelector {
            match_expressions: None,
            match_labels: Some([(INJECT_LABEL.to_owned(), "true".to_owned())].into()),
        }),
        reinvocation_policy: Some("Never".to_owned()),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".to_owned()]),
            operations: Some(vec!["CREATE".to_owned()]),
            resources: Some(vec!["pods".to_owned()]),
            scope: Some("Namespaced".to_owned()),
        }]),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(TIMEOUT_SECONDS),
        match_conditions: None,
    };
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("anchorage-inject".to_owned()),
            labels: Some(
                [(
                    anchorage_k8s::MANAGED_BY_LABEL.to_owned(),
                    anchorage_k8s::MANAGED_BY.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![webhook]),
    }
}

/// The rustls server configuration from a PEM certificate chain (leaf first) and key.
///
/// # Errors
///
/// No certificate or key in the PEM, or a key that does not fit the certificate.
pub fn tls_config(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(WebhookError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| WebhookError::NoKey)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(WebhookError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(WebhookError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How many notices wait for the API server before new ones are dropped.
pub const EVENT_QUEUE: usize = 256;
/// The Events' reporting controller (`reportingController`).
pub const EVENTS_REPORTER: &str = "anchorage.dev/webhook";

/// Publishes the webhook's [`Notice`]s as Warning Events (events.k8s.io/v1; RBAC: `create` and
/// `patch` on `events` in the pods' namespaces). A clone shares the queue.
#[derive(Clone, Debug)]
pub struct Events {
    queue: tokio::sync::mpsc::Sender<Notice>,
}

impl Events {
    /// Starts the publishing task on the current Tokio runtime; `instance` is the
    /// `reportingInstance` (the pod's name). kube-runtime's `Recorder` turns the same Event
    /// repeated within minutes into one with a count (an Event series).
    pub fn start(client: kube::Client, instance: Option<String>) -> Self {
        let (queue, mut notices) = tokio::sync::mpsc::channel::<Notice>(EVENT_QUEUE);
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: EVENTS_REPORTER.into(),
                instance,
            },
        );
        tokio::spawn(async move {
            while let Some(notice) = notices.recv().await {
                let event = Event {
                    type_: EventType::Warning,
                    reason: notice.reason.to_owned(),
                    note: Some(notice.note.clone()),
                    action: "Inject".to_owned(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &notice.regarding).await {
                    let kind = notice.regarding.kind.as_deref().unwrap_or("");
                    let name = notice.regarding.name.as_deref().unwrap_or("");
                    tracing::warn!(error = %e, %kind, %name, reason = notice.reason, "could not publish an Event");
                }
            }
        });
        Self { queue }
    }

    /// [`Events::start`] with the client from the environment: the in-cluster service account,
    /// else `KUBECONFIG` / `~/.kube/config`.
    ///
    /// # Errors
    ///
    /// No client configuration could be found or used.
    pub async fn start_with_default_client(instance: Option<String>) -> Result<Self, kube::Error> {
        Ok(Self::start(kube::Client::try_default().await?, instance))
    }

    /// Queues `notice`; when the queue is full the notice is dropped (and logged): the
    /// admission answer never waits for the API server.
    fn send(&self, notice: Notice) {
        if let Err(e) = self.queue.try_send(notice) {
            let notice = match e {
                tokio::sync::mpsc::error::TrySendError::Full(n)
                | tokio::sync::mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(
                kind = notice.regarding.kind.as_deref().unwrap_or(""),
                name = notice.regarding.name.as_deref().unwrap_or(""),
                reason = notice.reason,
                "Event dropped: {EVENT_QUEUE} are waiting for the API server"
            );
        }
    }
}

struct Shared {
    settings: InjectSettings,
    events: Option<Events>,
}

async fn mutate(State(shared): State<Arc<Shared>>, body: Bytes) -> axum::Json<serde_json::Value> {
    let (answer, notice) = review_json_noticed(&shared.settings, &body);
    if let (Some(events), Some(notice)) = (&shared.events, notice) {
        events.send(notice);
    }
    axum::Json(answer)
}

/// The routes: `POST /mutate`, `GET /healthz`; notices go to `events` when given.
pub fn router(settings: InjectSettings, events: Option<Events>) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(Shared { settings, events }))
}

/// Serves [`router`] over TLS on `listener` until `shutdown` completes, then lets requests in
/// flight finish (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    settings: InjectSettings,
    events: Option<Events>,
    shutdown: impl Future<Output = ()>,
) {
    let app = router(settings, events);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after 5 s were cut");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

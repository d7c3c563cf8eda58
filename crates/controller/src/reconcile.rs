//! The reconciler: a kube-rs [`Controller`] over `Bundle`s that writes what [`crate::desired()`]
//! asks for.
//!
//! What it watches, and why so little: the Bundles; the ConfigMaps and Secrets of the trust
//! namespace only; Namespaces (labels, for selectors); and ConfigMaps/Secrets cluster-wide only
//! through the label selector [`BUNDLE_LABEL`] (its own targets). Operators that watch and cache
//! every Secret in the cluster are a known cause of OOM kills (thousands of Secrets of up to
//! 1 MiB each); here an unrelated Secret is never sent to the controller at all.
//!
//! Each reconcile of one Bundle:
//! 1. lists the trust namespace's sources, the Namespaces and the other Bundles, and computes the
//!    desired targets ([`crate::desired()`]);
//! 2. on a refusal (private key, non-PEM value, missing source, no certificate, over 1 MiB) it
//!    publishes a Warning Event per refusal, sets `Ready=False` and leaves every existing target
//!    as it was: never a half-written target;
//! 3. otherwise, for each target: skipped when its [`CONTENT_HASH_ANNOTATION`] is already the
//!    desired one; created (when absent) or server-side applied with the field manager
//!    [`FIELD_MANAGER`] (force: the controller owns the fields it writes); an object of that
//!    name that the controller did not create is refused (`TargetConflict`), never taken over;
//! 4. deletes its labelled targets no longer wanted (the selector or the target kind changed);
//!    an owner reference to the Bundle lets Kubernetes' garbage collector remove the rest when
//!    the Bundle is deleted;
//! 5. writes `status`: `Ready`, one `Target/<namespace>` condition per target, the count.
//!
//! A bad Bundle never stops the others: a refusal is a condition and a requeue, not an error of
//! the controller's stream, and an API error is retried for that Bundle alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace as K8sNamespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt as _};
use serde_json::json;

use anchorage_agent::client::{BundleAnswer, ServeClient};

use crate::crd::{Bundle, BundleStatus, Condition, ObjectKey, ServeSource};
use crate::desired::{
    BUNDLE_LABEL, CLUSTER_SCOPE, CLUSTER_TRUST_BUNDLE, CONTENT_HASH_ANNOTATION, Namespace, Refusal,
    Sources, TargetObject, desired,
};

/// How often a Bundle with a `serve` source is reconciled (and serve asked again), so a change
/// made in serve reaches the targets.
pub const SERVE_REFRESH: Duration = Duration::from_secs(60);
/// How long a fetch from serve may take.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API a ClusterTrustBundle target needs, as refusals name it.
const CTB_API: &str = "certificates.k8s.io/v1beta1 ClusterTrustBundle";

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "anchorage-controller";

/// A failure talking to the API server (retried for that Bundle).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The target could not be serialised for apply.
    #[error("serialising {0}: {1}")]
    Serialise(String, serde_json::Error),
}

/// What the controller needs besides the client.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespace whose ConfigMaps and Secrets are sources.
    pub trust_namespace: String,
    /// How often a Bundle is reconciled without a change (default 10 minutes).
    pub resync: Duration,
    /// How soon a failed reconcile is retried (default 15 s).
    pub retry: Duration,
    /// Mozilla's roots and the system store, loaded once.
    pub mozilla: Vec<(anchorage_x509::Certificate, anchorage_bundle::Origin)>,
    /// The controller container's system store.
    pub system: Vec<(anchorage_x509::Certificate, anchorage_bundle::Origin)>,
}

impl Settings {
    /// Defaults for `trust_namespace`, with Mozilla's roots and the system store loaded now.
    pub fn new(trust_namespace: impl Into<String>) -> Self {
        let load = |s| {
            anchorage_trust::load(&[s], &anchorage_trust::LoadOptions::default())
                .certificates
                .into_iter()
                .map(|c| (c.certificate, c.origin))
                .collect()
        };
        Self {
            trust_namespace: trust_namespace.into(),
            resync: Duration::from_secs(600),
            retry: Duration::from_secs(15),
            mozilla: load(anchorage_trust::Source::Mozilla),
            system: load(anchorage_trust::Source::System),
        }
    }
}

struct Context {
    client: Client,
    settings: Settings,
    recorder: Recorder,
}

/// Runs the controller until the stream ends (it does not, short of a shutdown signal handled
/// by kube-runtime's `shutdown_on_signal`).
pub async fn run(client: Client, settings: Settings) {
    let bundles: Api<Bundle> = Api::all(client.clone());
    let trust_ns = settings.trust_namespace.clone();
    let owned = watcher::Config::default().labels(BUNDLE_LABEL);
    let controller = Controller::new(bundles, watcher::Config::default());
    // A source or a namespace changing can change any Bundle: requeue them all, from the
    // controller's own Bundle cache.
    let store = controller.store();
    let every = move || {
        store
            .state()
            .iter()
            .map(|b| ObjectRef::from_obj(b.as_ref()))
            .collect::<Vec<_>>()
    };
    let (e1, e2, e3) = (every.clone(), every.clone(), every);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        recorder,
    });
    controller
        .watches(
            Api::<ConfigMap>::namespaced(client.clone(), &trust_ns),
            watcher::Config::default(),
            move |_| e1(),
        )
        .watches(
            Api::<Secret>::namespaced(client.clone(), &trust_ns),
            watcher::Config::default(),
            move |_| e2(),
        )
        .watches(
            Api::<K8sNamespace>::all(client.clone()),
            watcher::Config::default(),
            move |_| e3(),
        )
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            owned.clone(),
            owner_of,
        )
        .watches(Api::<Secret>::all(client), owned, owner_of)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((bundle, _)) => tracing::debug!(bundle = %bundle.name, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// The Bundle a labelled target belongs to.
fn owner_of<K: kube::Resource>(obj: K) -> Option<ObjectRef<Bundle>> {
    obj.labels().get(BUNDLE_LABEL).map(|b| ObjectRef::new(b))
}

fn error_policy(bundle: Arc<Bundle>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(bundle = %bundle.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(ctx.settings.retry)
}

async fn reconcile(bundle: Arc<Bundle>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let client = &ctx.client;
    let name = bundle.name_any();
    let trust_ns = &ctx.settings.trust_namespace;
    let lp = ListParams::default();

    let mut sources = Sources {
        namespace: trust_ns.clone(),
        mozilla: ctx.settings.mozilla.clone(),
        system: ctx.settings.system.clone(),
        ..Sources::default()
    };
    for cm in Api::<ConfigMap>::namespaced(client.clone(), trust_ns)
        .list(&lp)
        .await?
    {
        sources
            .config_maps
            .insert(cm.name_any(), Sources::config_map_data(&cm));
    }
    for s in Api::<Secret>::namespaced(client.clone(), trust_ns)
        .list(&lp)
        .await?
    {
        sources
            .secrets
            .insert(s.name_any(), Sources::secret_data(&s));
    }
    fetch_serve_sources(&bundle, &mut sources).await;
    let namespaces: Vec<Namespace> = Api::<K8sNamespace>::all(client.clone())
        .list(&lp)
        .await?
        .into_iter()
        .map(|ns| Namespace {
            labels: ns.labels().clone(),
            name: ns.name_any(),
        })
        .collect();
    let bundles: Api<Bundle> = Api::all(client.clone());
    let others: Vec<Bundle> = bundles
        .list(&lp)
        .await?
        .into_iter()
        .filter(|b| b.name_any() != name)
        .collect();

    // ClusterTrustBundles are listed only for a Bundle that writes one now or wrote one before
    // (its status has `Target/cluster`): a cluster without that API answers 404.
    let cluster_scoped = bundle.spec.target.cluster_trust_bundle.is_some()
        || bundle.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == format!("Target/{CLUSTER_SCOPE}"))
        });
    let existing = Existing::list(client, &name, cluster_scoped).await?;
    let mut conditions = Vec::new();
    let (certificates, ready) = match desired(&bundle, &others, &sources, &namespaces) {
        Err(refusals) => {
            for r in &refusals {
                tracing::warn!(bundle = %name, reason = r.reason(), "refused: {r}");
                publish(&ctx, &bundle, r).await;
            }
            let message = refusals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            (
                None,
                condition("Ready", false, refusals[0].reason(), &message),
            )
        }
        Ok(d) => {
            let mut wanted = BTreeSet::new();
            let mut failed = 0usize;
            for target in &d.targets {
                let ns = target.namespace();
                wanted.insert((target.kind(), ns.clone(), target.name()));
                let ns = if ns.is_empty() {
                    CLUSTER_SCOPE.to_owned()
                } else {
                    ns
                };
                let c = match write(client, &bundle, target, &existing).await? {
                    Ok(reason) => condition(&format!("Target/{ns}"), true, reason, "up to date"),
                    Err(r) => {
                        failed += 1;
                        publish(&ctx, &bundle, &r).await;
                        condition(&format!("Target/{ns}"), false, r.reason(), &r.to_string())
                    }
                };
                conditions.push(c);
            }
            for (ns, r) in &d.refused {
                failed += 1;
                publish(&ctx, &bundle, r).await;
                conditions.push(condition(
                    &format!("Target/{ns}"),
                    false,
                    r.reason(),
                    &r.to_string(),
                ));
            }
            existing.delete_unwanted(client, &wanted).await?;
            let ready = if failed == 0 {
                condition(
                    "Ready",
                    true,
                    "Synced",
                    &format!("{} targets up to date", d.targets.len()),
                )
            } else {
                condition(
                    "Ready",
                    false,
                    "TargetsRefused",
                    &format!(
                        "{failed} of {} targets refused",
                        d.targets.len() + d.refused.len()
                    ),
                )
            };
            (u32::try_from(d.certificates).ok(), ready)
        }
    };
    conditions.insert(0, ready);
    let new_status = BundleStatus {
        certificates,
        conditions,
        observed_generation: bundle.metadata.generation,
    };
    // Written only when it changed: a status write is a Bundle change, which the Controller's
    // watch would bring back here (API servers drop no-op patches, not every server does).
    if bundle.status.as_ref() != Some(&new_status) {
        let status = json!({
            "status": {
                "certificates": new_status.certificates,
                "conditions": new_status.conditions,
                "observedGeneration": new_status.observed_generation,
            }
        });
        bundles
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    let serve_sources = bundle.spec.sources.iter().any(|s| s.serve.is_some());
    Ok(Action::requeue(if serve_sources {
        ctx.settings.resync.min(SERVE_REFRESH)
    } else {
        ctx.settings.resync
    }))
}

/// Fetches each `serve` source's bundle into [`Sources::fetched`]: serve's CA from the trust
/// namespace's ConfigMap, then `GET <url>/v1/bundle` through the agent's client. A failure is
/// recorded, not returned: the desired state refuses the Bundle and the targets stay as they are.
async fn fetch_serve_sources(bundle: &Bundle, sources: &mut Sources) {
    for serve in bundle.spec.sources.iter().filter_map(|s| s.serve.as_ref()) {
        if !serve.url.starts_with("https://") || sources.fetched.contains_key(&serve.url) {
            continue;
        }
        let result = fetch_serve(serve, sources).await;
        if let Err(e) = &result {
            tracing::warn!(bundle = %bundle.name_any(), url = %serve.url, error = %e, "serve source unavailable");
        }
        sources.fetched.insert(serve.url.clone(), result);
    }
}

async fn fetch_serve(serve: &ServeSource, sources: &Sources) -> Result<Vec<u8>, String> {
    let ObjectKey { name, key } = &serve.ca_config_map;
    let ca = sources
        .config_maps
        .get(name)
        .and_then(|data| data.get(key))
        .ok_or_else(|| {
            format!(
                "ConfigMap {}/{name} has no key `{key}` (serve's CA, its ca.pem)",
                sources.namespace
            )
        })?;
    let client =
        ServeClient::new(&serve.url, ca, None, SERVE_TIMEOUT).map_err(|e| e.to_string())?;
    match client.bundle("pem", None, None).await {
        Ok(BundleAnswer::Bundle { body, .. }) => Ok(body),
        Ok(BundleAnswer::Unchanged) => {
            Err("serve answered 304 to a request without a version".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

async fn publish(ctx: &Context, bundle: &Bundle, refusal: &Refusal) {
    let mut note = refusal.to_string();
    note.truncate(1000);
    let event = Event {
        type_: EventType::Warning,
        reason: refusal.reason().to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &bundle.object_ref(&())).await {
        tracing::warn!(bundle = %bundle.name_any(), error = %e, "could not publish an Event");
    }
}

/// The Bundle's labelled targets, as the API server has them now.
struct Existing {
    /// (kind, namespace, name) → content hash; cluster-scoped objects have namespace "".
    objects: BTreeMap<(&'static str, String, String), Option<String>>,
    /// Whether the ClusterTrustBundle API answered its list (`None`: not asked).
    cluster_trust_bundles: Option<bool>,
}

impl Existing {
    async fn list(
        client: &Client,
        bundle: &str,
        cluster_scoped: bool,
    ) -> Result<Self, kube::Error> {
        let lp = ListParams::default().labels(&format!("{BUNDLE_LABEL}={bundle}"));
        let mut objects = BTreeMap::new();
        // The label is checked here too: the selector is what keeps the list small, this what
        // keeps it right.
        let mine = |labels: &BTreeMap<String, String>| {
            labels.get(BUNDLE_LABEL).map(String::as_str) == Some(bundle)
        };
        for o in Api::<ConfigMap>::all(client.clone()).list(&lp).await? {
            if mine(o.labels()) {
                objects.insert(
                    ("ConfigMap", o.namespace().unwrap_or_default(), o.name_any()),
                    o.annotations().get(CONTENT_HASH_ANNOTATION).cloned(),
                );
            }
        }
        for o in Api::<Secret>::all(client.clone()).list(&lp).await? {
            if mine(o.labels()) {
                objects.insert(
                    ("Secret", o.namespace().unwrap_or_default(), o.name_any()),
                    o.annotations().get(CONTENT_HASH_ANNOTATION).cloned(),
                );
            }
        }
        let mut cluster_trust_bundles = None;
        if cluster_scoped {
            // A list of a served resource never answers 404: a 404 is an API not served.
            match Api::<ClusterTrustBundle>::all(client.clone())
                .list(&lp)
                .await
            {
                Ok(list) => {
                    cluster_trust_bundles = Some(true);
                    for o in list {
                        if mine(o.labels()) {
                            objects.insert(
                                (CLUSTER_TRUST_BUNDLE, String::new(), o.name_any()),
                                o.annotations().get(CONTENT_HASH_ANNOTATION).cloned(),
                            );
                        }
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => cluster_trust_bundles = Some(false),
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            objects,
            cluster_trust_bundles,
        })
    }

    async fn delete_unwanted(
        &self,
        client: &Client,
        wanted: &BTreeSet<(&'static str, String, String)>,
    ) -> Result<(), kube::Error> {
        for key @ (kind, ns, name) in self.objects.keys() {
            if wanted.contains(key) {
                continue;
            }
            tracing::info!(kind, namespace = %ns, name = %name, "deleting a target no longer selected");
            let dp = DeleteParams::default();
            let result = if *kind == "ConfigMap" {
                Api::<ConfigMap>::namespaced(client.clone(), ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ())
            } else if *kind == CLUSTER_TRUST_BUNDLE {
                Api::<ClusterTrustBundle>::all(client.clone())
                    .delete(name, &dp)
                    .await
                    .map(|_| ())
            } else {
                Api::<Secret>::namespaced(client.clone(), ns)
                    .delete(name, &dp)
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes one target: `Ok(Ok(reason))` when done or unchanged, `Ok(Err(refusal))` when an
/// object of that name exists that the controller does not own.
async fn write(
    client: &Client,
    bundle: &Bundle,
    target: &TargetObject,
    existing: &Existing,
) -> Result<Result<&'static str, Refusal>, ReconcileError> {
    let key = (target.kind(), target.namespace(), target.name());
    if matches!(target, TargetObject::ClusterTrustBundle(_))
        && existing.cluster_trust_bundles == Some(false)
    {
        return Ok(Err(Refusal::ApiNotServed { api: CTB_API }));
    }
    if let Some(hash) = existing.objects.get(&key) {
        if hash.is_some() && *hash == target.content_hash() {
            return Ok(Ok("Unchanged"));
        }
        apply(client, bundle, target).await?;
        return Ok(Ok("Applied"));
    }
    // Not among the labelled targets: absent (create it) or someone else's (refuse).
    let (kind, ns, name) = key;
    let found = match target {
        TargetObject::ConfigMap(_) => {
            exists(&Api::<ConfigMap>::namespaced(client.clone(), &ns), &name).await?
        }
        TargetObject::Secret(_) => {
            exists(&Api::<Secret>::namespaced(client.clone(), &ns), &name).await?
        }
        TargetObject::ClusterTrustBundle(_) => {
            exists(&Api::<ClusterTrustBundle>::all(client.clone()), &name).await?
        }
    };
    if found {
        return Ok(Err(Refusal::Conflict {
            namespace: ns,
            kind,
            name,
            other: "(none: an object the controller did not create)".into(),
        }));
    }
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match owned(bundle, target) {
        TargetObject::ConfigMap(o) => {
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .create(&pp, &o)
                .await?;
        }
        TargetObject::Secret(o) => {
            Api::<Secret>::namespaced(client.clone(), &ns)
                .create(&pp, &o)
                .await?;
        }
        TargetObject::ClusterTrustBundle(o) => {
            Api::<ClusterTrustBundle>::all(client.clone())
                .create(&pp, &o)
                .await?;
        }
    }
    Ok(Ok("Created"))
}

/// Whether the object exists. Any 404 means no (kube's `get_opt` wants the reason `NotFound`
/// as well, which not every server, nor the kmock emulator, sends).
async fn exists<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The target with the Bundle as its controlling owner.
fn owned(bundle: &Bundle, target: &TargetObject) -> TargetObject {
    let mut target = target.clone();
    let owner = bundle.controller_owner_ref(&());
    target.metadata_mut().owner_references = owner.map(|o| vec![o]);
    target
}

async fn apply(
    client: &Client,
    bundle: &Bundle,
    target: &TargetObject,
) -> Result<(), ReconcileError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let ns = target.namespace();
    let name = target.name();
    match owned(bundle, target) {
        TargetObject::ConfigMap(mut o) => {
            o.metadata.managed_fields = None;
            let body = apply_body(&o, "ConfigMap")?;
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .patch(&name, &pp, &Patch::Apply(body))
                .await?;
        }
        TargetObject::Secret(mut o) => {
            o.metadata.managed_fields = None;
            let body = apply_body(&o, "Secret")?;
            Api::<Secret>::namespaced(client.clone(), &ns)
                .patch(&name, &pp, &Patch::Apply(body))
                .await?;
        }
        TargetObject::ClusterTrustBundle(mut o) => {
            o.metadata.managed_fields = None;
            let body = apply_body(&o, CLUSTER_TRUST_BUNDLE)?;
            Api::<ClusterTrustBundle>::all(client.clone())
                .patch(&name, &pp, &Patch::Apply(body))
                .await?;
        }
    }
    Ok(())
}

/// Server-side apply needs `apiVersion` and `kind` in the body.
fn apply_body<T: serde::Serialize>(o: &T, kind: &str) -> Result<serde_json::Value, ReconcileError> {
    let mut v = serde_json::to_value(o).map_err(|e| ReconcileError::Serialise(kind.into(), e))?;
    v["apiVersion"] = json!(if kind == CLUSTER_TRUST_BUNDLE {
        "certificates.k8s.io/v1beta1"
    } else {
        "v1"
    });
    v["kind"] = json!(kind);
    Ok(v)
}

/// [`run`] with the client from the environment: the in-cluster service account, else
/// `KUBECONFIG` / `~/.kube/config`.
///
/// # Errors
///
/// No client configuration could be found or used.
pub async fn run_with_default_client(settings: Settings) -> Result<(), kube::Error> {
    let client = Client::try_default().await?;
    run(client, settings).await;
    Ok(())
}

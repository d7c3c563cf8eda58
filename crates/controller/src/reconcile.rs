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
//! 3. otherwise, for each target ([`WRITE_CONCURRENCY`] at a time): skipped when its [`CONTENT_HASH_ANNOTATION`] is already the
//!    desired one; created (when absent) or server-side applied with the field manager
//!    [`FIELD_MANAGER`] (force: the controller owns the fields it writes); an object of that
//!    name that the controller did not create is refused (`TargetConflict`), never taken over;
//! 4. deletes its labelled targets no longer wanted (the selector or the target kind changed);
//!    an owner reference to the Bundle lets Kubernetes' garbage collector remove the rest when
//!    the Bundle is deleted;
//! 5. writes `status`: `Ready`, one `Target/<namespace>` condition per target, the count.
//!
//! With [`Settings::trust_manager_bundles`], trust-manager's Bundles get a second `Controller`
//! with the same watches (their targets by [`TRUST_MANAGER_LABEL`]), converted by
//! [`to_anchorage`] and written by the same code, plus a watch of their deletions that deletes
//! their targets.
//!
//! A bad Bundle never stops the others: a refusal is a condition and a requeue, not an error of
//! the controller's stream, and an API error is retried for that Bundle alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace as K8sNamespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use serde_json::json;

use anchorage_agent::client::{BundleAnswer, ServeClient};

use crate::crd::{Bundle, BundleStatus, Condition, ObjectKey, ServeSource};
use crate::desired::{
    BUNDLE_LABEL, CLUSTER_SCOPE, CLUSTER_TRUST_BUNDLE, CONTENT_HASH_ANNOTATION, Namespace, Refusal,
    Sources, TargetObject, desired,
};
use crate::trust_manager::{
    TRUST_MANAGER_LABEL, TmCondition, TrustManagerBundle, TrustNamespaceLabels, has_selector,
    to_anchorage, to_anchorage_in,
};

/// How often a Bundle with a `serve` source is reconciled (and serve asked again), so a change
/// made in serve reaches the targets.
pub const SERVE_REFRESH: Duration = Duration::from_secs(60);
/// How long a fetch from serve may take.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API a ClusterTrustBundle target needs, as refusals name it.
const CTB_API: &str = "certificates.k8s.io/v1beta1 ClusterTrustBundle";

/// How many targets of one Bundle are written at once (each a create or server-side apply, and
/// a GET for a name not yet labelled).
pub const WRITE_CONCURRENCY: usize = 16;

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
    /// Also reconcile trust-manager's Bundles (`trust.cert-manager.io/v1alpha1`,
    /// `--trust-manager-bundles`; default off). Where the cluster does not serve that API it is
    /// logged once and only anchorage Bundles are reconciled.
    pub trust_manager_bundles: bool,
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
            trust_manager_bundles: false,
        }
    }
}

struct Context {
    client: Client,
    settings: Settings,
    recorder: Recorder,
}

/// Whose targets these are: an anchorage Bundle, or a trust-manager Bundle read through
/// [`to_anchorage`]. Each kind labels its targets with its own key (so neither cleans up the
/// other's) and is their owner.
struct Owner {
    /// The label key on the targets; its value is the Bundle's name.
    label: &'static str,
    /// The owner reference set on each target.
    reference: Option<OwnerReference>,
    /// What Events are about.
    object: ObjectReference,
}

impl Owner {
    fn of<K: kube::Resource<DynamicType = ()>>(label: &'static str, object: &K) -> Self {
        Self {
            label,
            reference: object.controller_owner_ref(&()),
            object: object.object_ref(&()),
        }
    }
}

/// Runs the controller until the stream ends (it does not, short of a shutdown signal handled
/// by kube-runtime's `shutdown_on_signal`). With [`Settings::trust_manager_bundles`] it also
/// runs a second `Controller` over trust-manager's Bundles, when the cluster serves that API.
pub async fn run(client: Client, settings: Settings) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let trust_manager = settings.trust_manager_bundles;
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        recorder,
    });
    let bundles = run_kind::<Bundle, _, _>(ctx.clone(), BUNDLE_LABEL, reconcile);
    if !trust_manager || !trust_manager_served(&client).await {
        bundles.await;
        return;
    }
    let trust_manager = run_kind::<TrustManagerBundle, _, _>(
        ctx.clone(),
        TRUST_MANAGER_LABEL,
        reconcile_trust_manager,
    );
    let both = futures::future::join(bundles, trust_manager);
    // The cleanup never ends on its own: the controllers' end (a signal) ends the run.
    futures::future::select(
        Box::pin(both),
        Box::pin(clean_up_trust_manager_targets(client)),
    )
    .await;
}

/// Whether the cluster serves trust-manager's Bundle (`trust.cert-manager.io/v1alpha1`). Only a
/// 404 means no (logged once); another error is logged and the watch tried anyway (it retries).
async fn trust_manager_served(client: &Client) -> bool {
    let api: Api<TrustManagerBundle> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => {
            tracing::info!("reconciling trust-manager Bundles (trust.cert-manager.io/v1alpha1)");
            true
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::warn!(
                "--trust-manager-bundles: the cluster does not serve trust.cert-manager.io/v1alpha1 Bundles (trust-manager's CRD is not installed); not watching them"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list trust-manager Bundles; watching them anyway (retried)");
            true
        }
    }
}

/// One `Controller` over `K` (a Bundle kind), watching what its targets are made of: the trust
/// namespace's ConfigMaps and Secrets, the Namespaces, and its own targets by `label`.
async fn run_kind<K, F, Fut>(ctx: Arc<Context>, label: &'static str, reconcile: F)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let client = ctx.client.clone();
    let trust_ns = ctx.settings.trust_namespace.clone();
    let owned = watcher::Config::default().labels(label);
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    // A source or a namespace changing can change any Bundle: requeue them all, from the
    // controller's own cache.
    let store = controller.store();
    let every = move || {
        store
            .state()
            .iter()
            .map(|b| ObjectRef::from_obj(b.as_ref()))
            .collect::<Vec<_>>()
    };
    let (e1, e2, e3) = (every.clone(), every.clone(), every);
    let owner_of =
        move |labels: &BTreeMap<String, String>| labels.get(label).map(|b| ObjectRef::<K>::new(b));
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
            move |o| owner_of(o.labels()),
        )
        .watches(Api::<Secret>::all(client), owned, move |o| {
            owner_of(o.labels())
        })
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

fn error_policy<K: kube::Resource>(
    bundle: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(bundle = %bundle.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(ctx.settings.retry)
}

/// The labels of the trust namespace's ConfigMaps and Secrets (metadata only), for
/// trust-manager sources that select by label.
async fn trust_namespace_labels(ctx: &Context) -> Result<TrustNamespaceLabels, ReconcileError> {
    let ns = &ctx.settings.trust_namespace;
    let lp = ListParams::default();
    fn of<K>(
        items: Vec<kube::core::PartialObjectMeta<K>>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        items
            .into_iter()
            .map(|o| {
                (
                    o.metadata.name.unwrap_or_default(),
                    o.metadata.labels.unwrap_or_default(),
                )
            })
            .collect()
    }
    Ok(TrustNamespaceLabels {
        config_maps: of(Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
            .list_metadata(&lp)
            .await?
            .items),
        secrets: of(Api::<Secret>::namespaced(ctx.client.clone(), ns)
            .list_metadata(&lp)
            .await?
            .items),
    })
}

/// Whether `bundle` (from the controller's cache) is no longer among `all` (just listed): it was
/// deleted, or deleted and made again (another uid), after it was queued. Its reconcile then
/// writes nothing: a target written for it would outlive the cleanup of its deletion (a real
/// API server's garbage collector would still remove it through the owner reference; an
/// emulator without one keeps it).
fn gone<K: kube::Resource>(all: &[K], bundle: &K) -> bool {
    let (name, uid) = (bundle.meta().name.as_deref(), bundle.meta().uid.as_deref());
    let gone = !all
        .iter()
        .any(|b| b.meta().name.as_deref() == name && b.meta().uid.as_deref() == uid);
    if gone {
        tracing::debug!(
            bundle = name.unwrap_or(""),
            "deleted since it was queued: nothing written"
        );
    }
    gone
}

async fn reconcile(bundle: Arc<Bundle>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = bundle.name_any();
    let bundles: Api<Bundle> = Api::all(ctx.client.clone());
    let all = bundles.list(&ListParams::default()).await?.items;
    if gone(&all, bundle.as_ref()) {
        return Ok(Action::await_change());
    }
    let others: Vec<Bundle> = all.into_iter().filter(|b| b.name_any() != name).collect();
    let owner = Owner::of(BUNDLE_LABEL, bundle.as_ref());
    let (certificates, conditions) = sync(&ctx, &bundle, &others, &owner).await?;
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
    Ok(requeue_after(&ctx, &bundle))
}

fn requeue_after(ctx: &Context, bundle: &Bundle) -> Action {
    let serve_sources = bundle.spec.sources.iter().any(|s| s.serve.is_some());
    Action::requeue(if serve_sources {
        ctx.settings.resync.min(SERVE_REFRESH)
    } else {
        ctx.settings.resync
    })
}

/// A trust-manager Bundle: converted ([`to_anchorage`]; a field it cannot honour is a
/// `Ready=False` condition and an Event, nothing written), then the same [`sync`] as an
/// anchorage Bundle, against the other trust-manager Bundles for conflicts. Its
/// `status.conditions` get the same conditions in trust-manager's shape.
async fn reconcile_trust_manager(
    tm: Arc<TrustManagerBundle>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let name = tm.name_any();
    let owner = Owner::of(TRUST_MANAGER_LABEL, tm.as_ref());
    let api: Api<TrustManagerBundle> = Api::all(ctx.client.clone());
    let all = api.list(&ListParams::default()).await?.items;
    if gone(&all, tm.as_ref()) {
        return Ok(Action::await_change());
    }
    let labels = if has_selector(&tm) {
        trust_namespace_labels(&ctx).await?
    } else {
        TrustNamespaceLabels::default()
    };
    let (conditions, action) = match to_anchorage_in(&tm, &labels) {
        Err(refusals) => (
            vec![refused(&ctx, &name, &owner, &refusals).await],
            Action::requeue(ctx.settings.resync),
        ),
        Ok(bundle) => {
            let others: Vec<Bundle> = all
                .iter()
                .filter(|t| t.name_any() != name)
                .filter_map(|t| to_anchorage(t).ok())
                .collect();
            let (_, conditions) = sync(&ctx, &bundle, &others, &owner).await?;
            (conditions, requeue_after(&ctx, &bundle))
        }
    };
    let old = tm
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = tm.metadata.generation;
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let new: Vec<TmCondition> = conditions
        .into_iter()
        .map(|c| {
            // The transition time changes only with the status, as for any metav1.Condition.
            let since = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
                .map_or_else(|| now.clone(), |o| o.last_transition_time.clone());
            TmCondition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    if old != new.as_slice() {
        let status = json!({ "status": { "conditions": new } });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(action)
}

/// Deletes the targets of trust-manager Bundles that are gone: at each (re)list, those whose
/// Bundle is not in it, and at each deletion, that Bundle's. A real cluster's garbage collector
/// does the same through the owner references; this also covers a cluster where they were
/// removed, and the kmock emulator (no garbage collector).
async fn clean_up_trust_manager_targets(client: Client) {
    let api: Api<TrustManagerBundle> = Api::all(client.clone());
    let mut live = BTreeSet::new();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => live.clear(),
            Ok(watcher::Event::InitApply(tm) | watcher::Event::Apply(tm)) => {
                live.insert(tm.name_any());
            }
            Ok(watcher::Event::InitDone) => {
                delete_trust_manager_targets(&client, |owner| !live.contains(owner)).await;
            }
            Ok(watcher::Event::Delete(tm)) => {
                let gone = tm.name_any();
                live.remove(&gone);
                delete_trust_manager_targets(&client, |owner| owner == gone).await;
            }
            Err(e) => tracing::warn!(error = %e, "watching trust-manager Bundles for cleanup"),
        }
    }
}

/// Deletes the ConfigMaps and Secrets labelled [`TRUST_MANAGER_LABEL`] whose Bundle `gone`
/// names. Failures are logged (the next deletion or relist tries again).
async fn delete_trust_manager_targets(client: &Client, gone: impl Fn(&str) -> bool) {
    let lp = ListParams::default().labels(TRUST_MANAGER_LABEL);
    let dp = DeleteParams::default();
    let configmaps: Api<ConfigMap> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::all(client.clone());
    let mut doomed = Vec::new();
    match configmaps.list(&lp).await {
        Ok(list) => doomed.extend(list.into_iter().map(|o| ("ConfigMap", o.metadata))),
        Err(e) => tracing::warn!(error = %e, "listing trust-manager targets (ConfigMaps)"),
    }
    match secrets.list(&lp).await {
        Ok(list) => doomed.extend(list.into_iter().map(|o| ("Secret", o.metadata))),
        Err(e) => tracing::warn!(error = %e, "listing trust-manager targets (Secrets)"),
    }
    for (kind, meta) in doomed {
        let Some(owner) = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(TRUST_MANAGER_LABEL))
        else {
            continue;
        };
        if !gone(owner) {
            continue;
        }
        let (ns, name) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        tracing::info!(kind, namespace = %ns, name = %name, bundle = %owner, "deleting a target of a deleted trust-manager Bundle");
        let result = if kind == "ConfigMap" {
            Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .delete(&name, &dp)
                .await
                .map(drop)
        } else {
            Api::<Secret>::namespaced(client.clone(), &ns)
                .delete(&name, &dp)
                .await
                .map(drop)
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(kind, namespace = %ns, name = %name, error = %e, "cannot delete");
            }
        }
    }
}

/// A refused Bundle: an Event per refusal, and the `Ready=False` condition.
async fn refused(ctx: &Context, name: &str, owner: &Owner, refusals: &[Refusal]) -> Condition {
    for r in refusals {
        tracing::warn!(bundle = %name, reason = r.reason(), "refused: {r}");
        publish(ctx, owner, r).await;
    }
    let message = refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let reason = refusals.first().map_or("Refused", Refusal::reason);
    condition("Ready", false, reason, &message)
}

/// Computes `bundle`'s targets and writes them as `owner`'s: the certificate count and the
/// conditions (`Ready` first, then one per target).
async fn sync(
    ctx: &Context,
    bundle: &Bundle,
    others: &[Bundle],
    owner: &Owner,
) -> Result<(Option<u32>, Vec<Condition>), ReconcileError> {
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
    fetch_serve_sources(bundle, &mut sources).await;
    let namespaces: Vec<Namespace> = Api::<K8sNamespace>::all(client.clone())
        .list(&lp)
        .await?
        .into_iter()
        .map(|ns| Namespace {
            labels: ns.labels().clone(),
            name: ns.name_any(),
        })
        .collect();

    // ClusterTrustBundles are listed only for a Bundle that writes one now or wrote one before
    // (its status has `Target/cluster`): a cluster without that API answers 404.
    let cluster_scoped = bundle.spec.target.cluster_trust_bundle.is_some()
        || bundle.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == format!("Target/{CLUSTER_SCOPE}"))
        });
    let existing = Existing::list(client, owner.label, &name, cluster_scoped).await?;
    let mut conditions = Vec::new();
    let (certificates, ready) = match desired(bundle, others, &sources, &namespaces) {
        Err(refusals) => (None, refused(ctx, &name, owner, &refusals).await),
        Ok(d) => {
            let mut failed = 0usize;
            let wanted: BTreeSet<_> = d
                .targets
                .iter()
                .map(|t| (t.kind(), t.namespace(), t.name()))
                .collect();
            // Up to WRITE_CONCURRENCY writes in flight; `buffered` keeps the targets' order, so
            // the conditions are the same as written one after another.
            // (Collected first: a lazy `map` closure over `&TargetObject` inside the stream
            // makes the future fail the `Send` check rustc needs for the Controller.)
            let mut writes = Vec::with_capacity(d.targets.len());
            for target in &d.targets {
                writes.push(write(client, owner, target, &existing));
            }
            let results: Vec<_> = futures::stream::iter(writes)
                .buffered(WRITE_CONCURRENCY)
                .collect()
                .await;
            for (target, result) in d.targets.iter().zip(results) {
                let ns = target.namespace();
                let ns = if ns.is_empty() {
                    CLUSTER_SCOPE.to_owned()
                } else {
                    ns
                };
                let c = match result? {
                    Ok(reason) => condition(&format!("Target/{ns}"), true, reason, "up to date"),
                    Err(r) => {
                        failed += 1;
                        publish(ctx, owner, &r).await;
                        condition(&format!("Target/{ns}"), false, r.reason(), &r.to_string())
                    }
                };
                conditions.push(c);
            }
            for (ns, r) in &d.refused {
                failed += 1;
                publish(ctx, owner, r).await;
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
    Ok((certificates, conditions))
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

async fn publish(ctx: &Context, owner: &Owner, refusal: &Refusal) {
    let mut note = refusal.to_string();
    note.truncate(1000);
    let event = Event {
        type_: EventType::Warning,
        reason: refusal.reason().to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &owner.object).await {
        let bundle = owner.object.name.as_deref().unwrap_or_default();
        tracing::warn!(%bundle, error = %e, "could not publish an Event");
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
        label: &str,
        bundle: &str,
        cluster_scoped: bool,
    ) -> Result<Self, kube::Error> {
        let lp = ListParams::default().labels(&format!("{label}={bundle}"));
        let mut objects = BTreeMap::new();
        // The label is checked here too: the selector is what keeps the list small, this what
        // keeps it right.
        let mine = |labels: &BTreeMap<String, String>| {
            labels.get(label).map(String::as_str) == Some(bundle)
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
    owner: &Owner,
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
        apply(client, owner, target).await?;
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
    match owned(owner, target) {
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

/// The target with its Bundle as its controlling owner, labelled with the owner's label.
fn owned(owner: &Owner, target: &TargetObject) -> TargetObject {
    let mut target = target.clone();
    let meta = target.metadata_mut();
    meta.owner_references = owner.reference.clone().map(|o| vec![o]);
    if owner.label != BUNDLE_LABEL {
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        if let Some(name) = labels.remove(BUNDLE_LABEL) {
            labels.insert(owner.label.to_owned(), name);
        }
    }
    target
}

async fn apply(
    client: &Client,
    owner: &Owner,
    target: &TargetObject,
) -> Result<(), ReconcileError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let ns = target.namespace();
    let name = target.name();
    match owned(owner, target) {
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

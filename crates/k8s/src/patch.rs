//! Workload patches that mount the trust store into pods: a volume, a read-only mount in each
//! named container, environment variables, and pod-template annotations.
//!
//! # Which source to mount
//!
//! - **The trust ConfigMap or Secret** ([`crate::trust_configmap`]) is a whole `/etc/ssl/certs`:
//!   the bundle file *and* the `<hash>.<n>` entries, so clients that read the default bundle file
//!   (Go, curl, Python, OpenSSL's default `cert.pem` on Debian) and clients that look certificates
//!   up by hash (`SSL_CERT_DIR`, `-CApath`, `curl --capath`) all find the private CAs. It is
//!   namespaced: one copy per namespace that uses it.
//! - **A ClusterTrustBundle projection** ([`TrustSource::ClusterTrustBundle`]) is published once
//!   for the whole cluster, but the kubelet writes a single file (the PEM bundle at
//!   [`PatchRequest::bundle_file`]) and no hashed entries: clients that only search a hashed
//!   directory find nothing there. Use the ConfigMap when any workload relies on `SSL_CERT_DIR`
//!   or `-CApath`. Projections need Kubernetes 1.33+ with the `ClusterTrustBundleProjection`
//!   feature gate.
//!
//! # The whole directory, not a file
//!
//! The volume is mounted as a directory (default [`DEFAULT_MOUNT_PATH`]), never with `subPath`: a
//! `subPath` mount is frozen at pod start and never sees an updated ConfigMap, Secret or
//! ClusterTrustBundle. The mount hides what the image had in that directory, so the object must
//! carry every root the workload needs (public roots included, e.g. with Mozilla's), or be mounted
//! elsewhere with `SSL_CERT_FILE` / `SSL_CERT_DIR` pointing at it.
//!
//! Files in a mounted volume change in place when the object changes, but most programs read
//! their trust store once at start-up. Put [`crate::BUNDLE_SHA256_ANNOTATION`] with
//! [`crate::bundle_sha256`] in [`PatchRequest::pod_annotations`]: re-applying the patch after the
//! bundle changed then changes the pod template and rolls the workload out.
//!
//! # Formats
//!
//! - [`PatchFormat::StrategicMerge`], for `kubectl patch --type strategic` and kustomize
//!   `patches:`. Kubernetes merges `volumes` and `env` by `name`, `volumeMounts` by `mountPath`,
//!   and **containers by `name`**, which is why containers must be named
//!   ([`PatchRequest::containers`]): a name that is not in the workload adds a new container
//!   without an image, which the API server refuses. Nothing else of the workload is needed, and
//!   re-applying is harmless. With [`PatchRequest::workload_name`] (and
//!   [`PatchRequest::workload_namespace`]) the patch also carries `apiVersion`, `kind` and
//!   `metadata`, which kustomize uses to find its target.
//! - [`PatchFormat::Json`], RFC 6902 operations for `kubectl patch --type json`. JSON Patch
//!   addresses list items by index and cannot say "append, creating the list if absent" (an `add`
//!   to `/…/volumes/-` fails when `volumes` is missing, and an `add` of the whole list would
//!   replace one that exists), so the operations are computed against the current workload (as
//!   `kubectl get -o json` prints it): a missing list is created whole, an existing one is
//!   appended to, and an existing volume, mount (same path) or variable of the same name is
//!   replaced. Each container index is guarded by a `test` of its name, so if the workload
//!   changed in between, the whole patch fails instead of touching the wrong container.
//!
//! A `Pod`'s volumes cannot be changed once it exists; a `Pod` patch is for manifests (kustomize).

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ClusterTrustBundleProjection, ConfigMapVolumeSource, Container, EnvVar, Pod, PodSpec,
    PodTemplateSpec, ProjectedVolumeSource, SecretVolumeSource, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::{Map, Value, json};

use crate::error::K8sError;
use crate::trust_store::DEFAULT_BUNDLE_KEY;
use crate::validate;

/// The volume's name unless told otherwise.
pub const DEFAULT_VOLUME_NAME: &str = "anchorage-trust";
/// Where the volume is mounted unless told otherwise: the directory Debian, Alpine and
/// distroless images keep their trust store in, and where OpenSSL, Go and curl look.
pub const DEFAULT_MOUNT_PATH: &str = "/etc/ssl/certs";

/// The kinds of workload a patch can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `batch/v1` Job.
    Job,
    /// `batch/v1` CronJob: the pod template is under `spec.jobTemplate.spec.template`.
    CronJob,
    /// `v1` Pod: the pod spec is the object's own `spec`.
    Pod,
}

impl WorkloadKind {
    /// Every kind.
    pub const ALL: [Self; 7] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::ReplicaSet,
        Self::Job,
        Self::CronJob,
        Self::Pod,
    ];

    /// The `kind` field, e.g. `Deployment`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Deployment => Deployment::KIND,
            Self::StatefulSet => StatefulSet::KIND,
            Self::DaemonSet => DaemonSet::KIND,
            Self::ReplicaSet => ReplicaSet::KIND,
            Self::Job => Job::KIND,
            Self::CronJob => CronJob::KIND,
            Self::Pod => Pod::KIND,
        }
    }

    /// The `apiVersion` field, e.g. `apps/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Deployment => Deployment::API_VERSION,
            Self::StatefulSet => StatefulSet::API_VERSION,
            Self::DaemonSet => DaemonSet::API_VERSION,
            Self::ReplicaSet => ReplicaSet::API_VERSION,
            Self::Job => Job::API_VERSION,
            Self::CronJob => CronJob::API_VERSION,
            Self::Pod => Pod::API_VERSION,
        }
    }

    /// The kind whose `kind` field is `kind`, ignoring ASCII case.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.kind().eq_ignore_ascii_case(kind))
    }

    /// Where the pod template (the object holding the pod's `metadata` and `spec`) sits.
    fn template_path(self) -> &'static [&'static str] {
        match self {
            Self::Deployment
            | Self::StatefulSet
            | Self::DaemonSet
            | Self::ReplicaSet
            | Self::Job => &["spec", "template"],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
            Self::Pod => &[],
        }
    }
}

/// Which ClusterTrustBundles a projected volume holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtbSelector {
    /// One ClusterTrustBundle by name.
    Name(String),
    /// Every ClusterTrustBundle of a signer whose labels match (all of them when `match_labels`
    /// is empty), concatenated and de-duplicated by the kubelet: how a bundle split over several
    /// objects is mounted as one file.
    Signer {
        /// The signer name, `example.com/private-ca`.
        signer_name: String,
        /// Labels the bundles must carry.
        match_labels: BTreeMap<String, String>,
    },
}

/// What the trust volume is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustSource {
    /// A ConfigMap, by name ([`crate::trust_configmap`]).
    ConfigMap(String),
    /// A Secret, by name ([`crate::trust_secret`]).
    Secret(String),
    /// A projection of ClusterTrustBundles ([`crate::cluster_trust_bundle`]), written to
    /// [`PatchRequest::bundle_file`] inside the volume.
    ClusterTrustBundle(CtbSelector),
}

/// How the patch is written.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchFormat {
    /// A strategic-merge patch (`kubectl patch --type strategic`, kustomize `patches:`).
    StrategicMerge,
    /// RFC 6902 operations (`kubectl patch --type json`), computed against `current`, the
    /// workload as `kubectl get -o json` prints it (see the module docs for why).
    Json {
        /// The workload as it is now.
        current: Value,
    },
}

/// What to patch and how. [`PatchRequest::new`] fills in the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchRequest {
    /// The kind of workload.
    pub kind: WorkloadKind,
    /// The workload's name: when set, a strategic-merge patch also carries `apiVersion`, `kind`
    /// and `metadata.name` (what kustomize matches a patch on). Not needed by `kubectl patch`.
    pub workload_name: Option<String>,
    /// The workload's namespace, written beside [`Self::workload_name`]: kustomize matches it
    /// too, so set it when the resource has one.
    pub workload_namespace: Option<String>,
    /// What the volume is made from.
    pub source: TrustSource,
    /// The volume's name; default [`DEFAULT_VOLUME_NAME`].
    pub volume_name: String,
    /// Where it is mounted (read-only) in each container; default [`DEFAULT_MOUNT_PATH`].
    pub mount_path: String,
    /// For a ClusterTrustBundle projection, the file name inside the volume; default
    /// `ca-certificates.crt`.
    pub bundle_file: String,
    /// The containers that get the mount and the variables; required (containers are matched
    /// by name).
    pub containers: Vec<String>,
    /// The init containers that get them too.
    pub init_containers: Vec<String>,
    /// Environment variables set in each of those containers (replacing one of the same name).
    pub env: Vec<EnvVar>,
    /// Annotations set on the pod template, e.g. [`crate::BUNDLE_SHA256_ANNOTATION`].
    pub pod_annotations: BTreeMap<String, String>,
    /// The patch format.
    pub format: PatchFormat,
}

impl PatchRequest {
    /// A strategic-merge patch mounting `source` at [`DEFAULT_MOUNT_PATH`] in `containers`.
    pub fn new(
        kind: WorkloadKind,
        source: TrustSource,
        containers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            kind,
            workload_name: None,
            workload_namespace: None,
            source,
            volume_name: DEFAULT_VOLUME_NAME.to_owned(),
            mount_path: DEFAULT_MOUNT_PATH.to_owned(),
            bundle_file: DEFAULT_BUNDLE_KEY.to_owned(),
            containers: containers.into_iter().map(Into::into).collect(),
            init_containers: Vec::new(),
            env: Vec::new(),
            pod_annotations: BTreeMap::new(),
            format: PatchFormat::StrategicMerge,
        }
    }
}

/// An environment variable with a plain value.
pub fn env_var(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(crate) fn invalid(field: &'static str, value: &str, reason: String) -> K8sError {
    K8sError::InvalidPatch {
        field,
        value: value.to_owned(),
        reason,
    }
}

/// The checked parts of a request, as k8s-openapi values (also built by [`crate::agent`]).
pub(crate) struct Parts {
    pub(crate) volumes: Vec<Volume>,
    /// Mounted in each named container.
    pub(crate) mounts: Vec<VolumeMount>,
    pub(crate) containers: Vec<String>,
    pub(crate) init_containers: Vec<String>,
    pub(crate) env: Vec<EnvVar>,
    pub(crate) annotations: BTreeMap<String, String>,
    /// Whole containers added after the named ones (replacing one of the same name).
    pub(crate) added_containers: Vec<Container>,
    /// Whole init containers added before the workload's own (they run first), or replacing
    /// one of the same name where it is.
    pub(crate) added_init_containers: Vec<Container>,
}

fn dedup(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

fn volume(req: &PatchRequest) -> Result<Volume, K8sError> {
    let object_name = |field, name: &str| {
        validate::dns1123_subdomain(name).map_err(|reason| invalid(field, name, reason))
    };
    let mut volume = Volume {
        name: req.volume_name.clone(),
        ..Volume::default()
    };
    match &req.source {
        TrustSource::ConfigMap(name) => {
            object_name("ConfigMap name", name)?;
            volume.config_map = Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            });
        }
        TrustSource::Secret(name) => {
            object_name("Secret name", name)?;
            volume.secret = Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                ..SecretVolumeSource::default()
            });
        }
        TrustSource::ClusterTrustBundle(selector) => {
            validate::config_map_key(&req.bundle_file)
                .map_err(|reason| invalid("bundle file", &req.bundle_file, reason))?;
            let mut projection = ClusterTrustBundleProjection {
                path: req.bundle_file.clone(),
                ..ClusterTrustBundleProjection::default()
            };
            match selector {
                CtbSelector::Name(name) => {
                    // A signer-linked bundle's name has `:`-separated parts, each a subdomain.
                    for part in name.split(':') {
                        validate::dns1123_subdomain(part)
                            .map_err(|reason| invalid("ClusterTrustBundle name", name, reason))?;
                    }
                    projection.name = Some(name.clone());
                }
                CtbSelector::Signer {
                    signer_name,
                    match_labels,
                } => {
                    validate::signer_name(signer_name)
                        .map_err(|reason| invalid("signer name", signer_name, reason))?;
                    for (key, value) in match_labels {
                        let label = format!("{key}={value}");
                        validate::qualified_name(key)
                            .and_then(|()| validate::label_value(value))
                            .map_err(|reason| invalid("label selector", &label, reason))?;
                    }
                    projection.signer_name = Some(signer_name.clone());
                    // Unset would match nothing; empty matches every bundle of the signer.
                    projection.label_selector = Some(LabelSelector {
                        match_labels: (!match_labels.is_empty()).then(|| match_labels.clone()),
                        match_expressions: None,
                    });
                }
            }
            volume.projected = Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    cluster_trust_bundle: Some(projection),
                    ..VolumeProjection::default()
                }]),
                default_mode: None,
            });
        }
    }
    Ok(volume)
}

fn parts(req: &PatchRequest) -> Result<Parts, K8sError> {
    validate::dns1123_label(&req.volume_name)
        .map_err(|reason| invalid("volume name", &req.volume_name, reason))?;
    validate::mount_path(&req.mount_path)
        .map_err(|reason| invalid("mount path", &req.mount_path, reason))?;
    let mut parts = common_parts(&Target {
        kind: req.kind,
        workload_name: req.workload_name.as_deref(),
        workload_namespace: req.workload_namespace.as_deref(),
        containers: &req.containers,
        init_containers: &req.init_containers,
        env: &req.env,
        annotations: &req.pod_annotations,
    })?;
    parts.volumes = vec![volume(req)?];
    parts.mounts = vec![VolumeMount {
        name: req.volume_name.clone(),
        mount_path: req.mount_path.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    Ok(parts)
}

/// What every patch says about its workload, whatever it mounts.
pub(crate) struct Target<'a> {
    pub(crate) kind: WorkloadKind,
    pub(crate) workload_name: Option<&'a str>,
    pub(crate) workload_namespace: Option<&'a str>,
    pub(crate) containers: &'a [String],
    pub(crate) init_containers: &'a [String],
    pub(crate) env: &'a [EnvVar],
    pub(crate) annotations: &'a BTreeMap<String, String>,
}

/// Checks a [`Target`] (containers, the workload's name and namespace, variables, annotations)
/// into [`Parts`] without volumes, mounts or added containers.
pub(crate) fn common_parts(req: &Target<'_>) -> Result<Parts, K8sError> {
    if req.containers.is_empty() && req.init_containers.is_empty() {
        return Err(K8sError::NoContainers);
    }
    for name in req.containers.iter().chain(req.init_containers) {
        validate::dns1123_label(name).map_err(|reason| invalid("container name", name, reason))?;
    }
    if let Some(name) = req.workload_name {
        crate::meta::object_name(req.kind.kind(), name)?;
    }
    if let Some(namespace) = req.workload_namespace {
        validate::dns1123_label(namespace).map_err(|reason| K8sError::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })?;
        if req.workload_name.is_none() {
            return Err(invalid(
                "workload namespace",
                namespace,
                "it only says where the named workload is: give the workload name too".into(),
            ));
        }
    }
    for var in req.env {
        validate::env_var_name(&var.name)
            .map_err(|reason| invalid("environment variable name", &var.name, reason))?;
    }
    for key in req.annotations.keys() {
        validate::qualified_name(key).map_err(|reason| K8sError::InvalidAnnotation {
            key: key.clone(),
            reason,
        })?;
    }
    // The last value given for a variable wins, as it would in the container.
    let mut env: Vec<EnvVar> = Vec::new();
    for var in req.env {
        env.retain(|v| v.name != var.name);
        env.push(var.clone());
    }
    Ok(Parts {
        volumes: Vec::new(),
        mounts: Vec::new(),
        containers: dedup(req.containers),
        init_containers: dedup(req.init_containers),
        env,
        annotations: req.annotations.clone(),
        added_containers: Vec::new(),
        added_init_containers: Vec::new(),
    })
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, K8sError> {
    serde_json::to_value(value).map_err(K8sError::Json)
}

/// The patch for `req`: a strategic-merge patch object, or an array of RFC 6902 operations.
///
/// # Errors
///
/// An invalid name, path, variable or annotation ([`K8sError::InvalidPatch`] and friends), no
/// container named, and for [`PatchFormat::Json`] a workload of another kind, without a pod
/// spec, or without a named container.
pub fn workload_patch(req: &PatchRequest) -> Result<Value, K8sError> {
    let parts = parts(req)?;
    render(&req.kind_target(), &parts, &req.format)
}

/// Which workload a patch is for: its kind, and the name and namespace a strategic-merge patch
/// carries for kustomize.
pub(crate) struct KindTarget<'a> {
    pub(crate) kind: WorkloadKind,
    pub(crate) workload_name: Option<&'a str>,
    pub(crate) workload_namespace: Option<&'a str>,
}

impl PatchRequest {
    fn kind_target(&self) -> KindTarget<'_> {
        KindTarget {
            kind: self.kind,
            workload_name: self.workload_name.as_deref(),
            workload_namespace: self.workload_namespace.as_deref(),
        }
    }
}

/// Writes checked [`Parts`] as a patch in `format`.
pub(crate) fn render(
    target: &KindTarget<'_>,
    parts: &Parts,
    format: &PatchFormat,
) -> Result<Value, K8sError> {
    match format {
        PatchFormat::StrategicMerge => strategic_merge(target, parts),
        PatchFormat::Json { current } => json_patch(target.kind, parts, current),
    }
}

fn strategic_merge(req: &KindTarget<'_>, parts: &Parts) -> Result<Value, K8sError> {
    let container = |name: &String| Container {
        name: name.clone(),
        volume_mounts: Some(parts.mounts.clone()),
        env: (!parts.env.is_empty()).then(|| parts.env.clone()),
        ..Container::default()
    };
    let template = PodTemplateSpec {
        metadata: (!parts.annotations.is_empty()).then(|| ObjectMeta {
            annotations: Some(parts.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: parts
                .containers
                .iter()
                .map(container)
                .chain(parts.added_containers.iter().cloned())
                .collect(),
            init_containers: (!parts.init_containers.is_empty()
                || !parts.added_init_containers.is_empty())
            .then(|| {
                // Added init containers first: the merge keeps the patch's order, so they run
                // before the workload's own.
                parts
                    .added_init_containers
                    .iter()
                    .cloned()
                    .chain(parts.init_containers.iter().map(container))
                    .collect()
            }),
            volumes: Some(parts.volumes.clone()),
            ..PodSpec::default()
        }),
    };
    let mut value = to_value(&template)?;
    // `containers` is a required field of PodSpec, so it is written even when only init
    // containers are patched; an empty list would say nothing, so leave it out.
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
        && spec
            .get("containers")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    {
        spec.remove("containers");
    }
    for key in req.kind.template_path().iter().rev() {
        value = json!({ *key: value });
    }
    // The patch is a JSON object: the serialised pod template, wrapped in objects.
    if let (Some(name), Some(root)) = (req.workload_name, value.as_object_mut()) {
        root.insert("apiVersion".into(), req.kind.api_version().into());
        root.insert("kind".into(), req.kind.kind().into());
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("name".into(), name.into());
            if let Some(namespace) = req.workload_namespace {
                metadata.insert("namespace".into(), namespace.into());
            }
        }
    }
    Ok(value)
}

/// Escapes one JSON Pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn op(op: &str, path: &str, value: Value) -> Value {
    json!({ "op": op, "path": path, "value": value })
}

/// RFC 6902 operations so far: guards (`test`) first, then the changes.
#[derive(Default)]
struct Ops {
    tests: Vec<Value>,
    changes: Vec<Value>,
}

impl Ops {
    /// Puts `items` into the list at `path` (currently `list`), matching existing items on
    /// `key`, as Kubernetes' merge key for that list does: a missing list is added whole, a
    /// matching item is replaced (guarded by a test of its key), anything else is appended.
    fn upsert(&mut self, path: &str, list: Option<&Value>, key: &str, items: &[Value]) {
        let Some(existing) = list.and_then(Value::as_array) else {
            self.changes
                .push(op("add", path, Value::Array(items.to_vec())));
            return;
        };
        for item in items {
            let id = item.get(key);
            match existing.iter().position(|e| e.get(key) == id) {
                Some(i) => {
                    let guard = id.cloned().unwrap_or(Value::Null);
                    self.tests
                        .push(op("test", &format!("{path}/{i}/{}", escape(key)), guard));
                    self.changes
                        .push(op("replace", &format!("{path}/{i}"), item.clone()));
                }
                None => self
                    .changes
                    .push(op("add", &format!("{path}/-"), item.clone())),
            }
        }
    }
}

fn json_patch(kind: WorkloadKind, parts: &Parts, current: &Value) -> Result<Value, K8sError> {
    let found = current.get("kind").and_then(Value::as_str);
    if found != Some(kind.kind()) {
        return Err(K8sError::WrongKind {
            expected: kind.kind(),
            found: found.unwrap_or("object without a kind").to_owned(),
        });
    }
    let template: String = kind
        .template_path()
        .iter()
        .map(|k| format!("/{k}"))
        .collect();
    let spec_path = format!("{template}/spec");
    let spec = current
        .pointer(&spec_path)
        .filter(|s| s.is_object())
        .ok_or_else(|| K8sError::NoPodSpec {
            kind: kind.kind(),
            path: spec_path.clone(),
        })?;

    let mut ops = Ops::default();
    let volumes = parts
        .volumes
        .iter()
        .map(to_value)
        .collect::<Result<Vec<_>, _>>()?;
    ops.upsert(
        &format!("{spec_path}/volumes"),
        spec.get("volumes"),
        "name",
        &volumes,
    );
    let mount = parts
        .mounts
        .iter()
        .map(to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let env = parts
        .env
        .iter()
        .map(to_value)
        .collect::<Result<Vec<_>, _>>()?;
    for (field, names) in [
        ("containers", &parts.containers),
        ("initContainers", &parts.init_containers),
    ] {
        let list = spec.get(field).and_then(Value::as_array);
        let name_of = |c: &Value| c.get("name").and_then(Value::as_str).map(str::to_owned);
        for name in names {
            let Some(index) =
                list.and_then(|l| l.iter().position(|c| name_of(c).as_deref() == Some(name)))
            else {
                let available: Vec<String> =
                    list.into_iter().flatten().filter_map(name_of).collect();
                return Err(K8sError::ContainerNotFound {
                    container: name.clone(),
                    field,
                    available: if available.is_empty() {
                        "none".to_owned()
                    } else {
                        available.join(", ")
                    },
                });
            };
            let container = list.and_then(|l| l.get(index));
            let path = format!("{spec_path}/{field}/{index}");
            ops.tests
                .push(op("test", &format!("{path}/name"), name.clone().into()));
            let field_of = |f: &str| container.and_then(|c| c.get(f));
            ops.upsert(
                &format!("{path}/volumeMounts"),
                field_of("volumeMounts"),
                "mountPath",
                &mount,
            );
            if !env.is_empty() {
                ops.upsert(&format!("{path}/env"), field_of("env"), "name", &env);
            }
        }
    }
    // After the named containers' changes, which address containers by their index now.
    // Containers are appended, which moves no index.
    if !parts.added_containers.is_empty() {
        let added = parts
            .added_containers
            .iter()
            .map(to_value)
            .collect::<Result<Vec<_>, _>>()?;
        ops.upsert(
            &format!("{spec_path}/containers"),
            spec.get("containers"),
            "name",
            &added,
        );
    }
    // Init containers go first (they run before the workload's own): inserted at index 0, last
    // of all changes, in reverse so they keep their order.
    let path = format!("{spec_path}/initContainers");
    let added = parts
        .added_init_containers
        .iter()
        .map(to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let current_init = spec.get("initContainers");
    match current_init.and_then(Value::as_array) {
        _ if added.is_empty() => {}
        None => ops.changes.push(op("add", &path, Value::Array(added))),
        Some(list) => {
            let (present, new): (Vec<Value>, Vec<Value>) = added
                .into_iter()
                .partition(|a| list.iter().any(|c| c.get("name") == a.get("name")));
            ops.upsert(&path, current_init, "name", &present);
            for item in new.into_iter().rev() {
                ops.changes.push(op("add", &format!("{path}/0"), item));
            }
        }
    }

    if !parts.annotations.is_empty() {
        let meta_path = format!("{template}/metadata");
        let annotations = to_value(&parts.annotations)?;
        match current.pointer(&meta_path) {
            None => ops
                .changes
                .push(op("add", &meta_path, json!({ "annotations": annotations }))),
            Some(meta) if meta.get("annotations").is_none() => {
                ops.changes
                    .push(op("add", &format!("{meta_path}/annotations"), annotations));
            }
            Some(_) => {
                // `add` on an object member sets it, whether or not it exists.
                for (key, value) in &parts.annotations {
                    let path = format!("{meta_path}/annotations/{}", escape(key));
                    ops.changes.push(op("add", &path, value.clone().into()));
                }
            }
        }
    }
    let mut all = ops.tests;
    all.extend(ops.changes);
    Ok(Value::Array(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: WorkloadKind) -> PatchRequest {
        let mut req = PatchRequest::new(kind, TrustSource::ConfigMap("trust".into()), ["app"]);
        req.env = vec![env_var("SSL_CERT_DIR", "/etc/ssl/certs")];
        req.pod_annotations =
            BTreeMap::from([(crate::BUNDLE_SHA256_ANNOTATION.to_owned(), "abc".to_owned())]);
        req
    }

    /// The pod template of `kind` in `object`.
    fn template(kind: WorkloadKind, object: &Value) -> &Value {
        kind.template_path().iter().fold(object, |v, k| &v[*k])
    }

    /// A minimal workload of `kind` with one container `app` (and `extra` merged into its pod
    /// spec), as `kubectl get -o json` would print it.
    fn workload(kind: WorkloadKind, extra: Value) -> Value {
        let mut spec = json!({ "containers": [{ "name": "sidecar", "image": "s" }, { "name": "app", "image": "a" }] });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        let mut pod = json!({ "metadata": { "labels": { "app": "web" } }, "spec": spec });
        for key in kind.template_path().iter().rev() {
            pod = json!({ *key: pod });
        }
        pod["apiVersion"] = kind.api_version().into();
        pod["kind"] = kind.kind().into();
        pod["metadata"]["name"] = "web".into();
        pod
    }

    fn apply(mut object: Value, patch: &Value) -> Result<Value, String> {
        let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        json_patch::patch(&mut object, &ops).map_err(|e| e.to_string())?;
        Ok(object)
    }

    #[test]
    fn kinds_know_their_api_versions_and_pod_templates() {
        let expected = [
            ("Deployment", "apps/v1"),
            ("StatefulSet", "apps/v1"),
            ("DaemonSet", "apps/v1"),
            ("ReplicaSet", "apps/v1"),
            ("Job", "batch/v1"),
            ("CronJob", "batch/v1"),
            ("Pod", "v1"),
        ];
        for (kind, (name, api)) in WorkloadKind::ALL.into_iter().zip(expected) {
            assert_eq!((kind.kind(), kind.api_version()), (name, api));
            assert_eq!(WorkloadKind::from_kind(&name.to_lowercase()), Some(kind));
        }
        assert_eq!(WorkloadKind::from_kind("Service"), None);
    }

    #[test]
    fn strategic_merge_patch_shapes_for_every_kind() {
        for kind in WorkloadKind::ALL {
            let patch = workload_patch(&request(kind)).unwrap();
            let expected_template = json!({
                "metadata": { "annotations": { "anchorage.io/bundle-sha256": "abc" } },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "env": [{ "name": "SSL_CERT_DIR", "value": "/etc/ssl/certs" }],
                        "volumeMounts": [{
                            "name": "anchorage-trust",
                            "mountPath": "/etc/ssl/certs",
                            "readOnly": true,
                        }],
                    }],
                    "volumes": [{ "name": "anchorage-trust", "configMap": { "name": "trust" } }],
                },
            });
            let mut expected = expected_template;
            for key in kind.template_path().iter().rev() {
                expected = json!({ *key: expected });
            }
            assert_eq!(patch, expected, "{kind:?}");
        }
        // CronJob's pod template is two levels further down.
        let cron = workload_patch(&request(WorkloadKind::CronJob)).unwrap();
        assert!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"].is_array());
        let pod = workload_patch(&request(WorkloadKind::Pod)).unwrap();
        assert!(pod["spec"]["volumes"].is_array() && pod["metadata"]["annotations"].is_object());
    }

    #[test]
    fn strategic_merge_patch_names_its_target_for_kustomize() {
        let mut req = request(WorkloadKind::Job);
        req.workload_name = Some("migrate".into());
        let patch = workload_patch(&req).unwrap();
        assert_eq!(patch["apiVersion"], "batch/v1");
        assert_eq!(patch["kind"], "Job");
        assert_eq!(patch["metadata"], json!({ "name": "migrate" }));
        req.workload_namespace = Some("apps".into());
        let patch = workload_patch(&req).unwrap();
        assert_eq!(
            patch["metadata"],
            json!({ "name": "migrate", "namespace": "apps" })
        );
        req.workload_name = None;
        let e = workload_patch(&req).unwrap_err().to_string();
        assert!(e.starts_with("invalid workload namespace `apps`"), "{e}");
        let mut req = request(WorkloadKind::Pod);
        req.workload_name = Some("debug".into());
        let patch = workload_patch(&req).unwrap();
        assert_eq!(
            patch["metadata"],
            json!({ "name": "debug", "annotations": { "anchorage.io/bundle-sha256": "abc" } })
        );
        req.workload_name = Some("Debug".into());
        assert!(matches!(
            workload_patch(&req),
            Err(K8sError::InvalidName { kind: "Pod", .. })
        ));
    }

    #[test]
    fn volume_sources() {
        let volume = |source: TrustSource| {
            let mut req = PatchRequest::new(WorkloadKind::Deployment, source, ["app"]);
            req.bundle_file = "ca.pem".into();
            workload_patch(&req).unwrap()["spec"]["template"]["spec"]["volumes"][0].clone()
        };
        assert_eq!(
            volume(TrustSource::Secret("trust".into())),
            json!({ "name": "anchorage-trust", "secret": { "secretName": "trust" } })
        );
        assert_eq!(
            volume(TrustSource::ClusterTrustBundle(CtbSelector::Name(
                "example.com:private-ca:v1".into()
            ))),
            json!({ "name": "anchorage-trust", "projected": { "sources": [
                { "clusterTrustBundle": { "name": "example.com:private-ca:v1", "path": "ca.pem" } }
            ] } })
        );
        // Without labels: an empty selector, which matches every bundle of the signer (an
        // absent one would match none).
        assert_eq!(
            volume(TrustSource::ClusterTrustBundle(CtbSelector::Signer {
                signer_name: "example.com/private-ca".into(),
                match_labels: BTreeMap::new(),
            })),
            json!({ "name": "anchorage-trust", "projected": { "sources": [
                { "clusterTrustBundle": {
                    "signerName": "example.com/private-ca",
                    "labelSelector": {},
                    "path": "ca.pem",
                } }
            ] } })
        );
        let labelled = volume(TrustSource::ClusterTrustBundle(CtbSelector::Signer {
            signer_name: "example.com/private-ca".into(),
            match_labels: BTreeMap::from([("tier".into(), "prod".into())]),
        }));
        assert_eq!(
            labelled["projected"]["sources"][0]["clusterTrustBundle"]["labelSelector"],
            json!({ "matchLabels": { "tier": "prod" } })
        );
    }

    #[test]
    fn init_containers_alone_leave_containers_out() {
        let mut req = request(WorkloadKind::Deployment);
        req.containers.clear();
        req.init_containers = vec!["fetch".into(), "fetch".into()];
        let patch = workload_patch(&req).unwrap();
        let spec = &patch["spec"]["template"]["spec"];
        assert!(spec.get("containers").is_none(), "{spec}");
        assert_eq!(spec["initContainers"].as_array().unwrap().len(), 1);
        assert_eq!(spec["initContainers"][0]["name"], "fetch");
    }

    #[test]
    fn requests_are_validated() {
        let check = |edit: &dyn Fn(&mut PatchRequest), expected: &str| {
            let mut req = request(WorkloadKind::Deployment);
            edit(&mut req);
            let e = workload_patch(&req).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}\n  expected: {expected}");
        };
        check(&|r| r.containers.clear(), "no container named");
        check(
            &|r| r.containers = vec!["App".into()],
            "invalid container name `App`",
        );
        check(
            &|r| r.volume_name = "trust_vol".into(),
            "invalid volume name `trust_vol`",
        );
        check(
            &|r| r.mount_path = "etc/ssl".into(),
            "invalid mount path `etc/ssl`",
        );
        check(
            &|r| r.env.push(env_var("1X", "y")),
            "invalid environment variable name `1X`",
        );
        check(
            &|r| r.source = TrustSource::ConfigMap("Trust".into()),
            "invalid ConfigMap name `Trust`",
        );
        check(
            &|r| {
                r.source = TrustSource::ClusterTrustBundle(CtbSelector::Signer {
                    signer_name: "private-ca".into(),
                    match_labels: BTreeMap::new(),
                });
            },
            "invalid signer name `private-ca`",
        );
        check(
            &|r| {
                r.pod_annotations.insert("bad key".into(), String::new());
            },
            "invalid annotation key `bad key`",
        );
    }

    #[test]
    fn the_last_value_of_a_variable_wins() {
        let mut req = request(WorkloadKind::Deployment);
        req.env.push(env_var("SSL_CERT_DIR", "/other"));
        let patch = workload_patch(&req).unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{ "name": "SSL_CERT_DIR", "value": "/other" }])
        );
    }

    #[test]
    fn json_patch_creates_missing_lists_for_every_kind() {
        for kind in WorkloadKind::ALL {
            let current = workload(kind, json!({}));
            let mut req = request(kind);
            req.format = PatchFormat::Json {
                current: current.clone(),
            };
            let ops = workload_patch(&req).unwrap();
            let patched = apply(current, &ops).unwrap_or_else(|e| panic!("{kind:?}: {e}\n{ops:#}"));
            let t = template(kind, &patched);
            assert_eq!(
                t["spec"]["volumes"],
                json!([{ "name": "anchorage-trust", "configMap": { "name": "trust" } }]),
                "{kind:?}"
            );
            let app = &t["spec"]["containers"][1];
            assert_eq!(app["name"], "app");
            assert_eq!(app["volumeMounts"][0]["mountPath"], "/etc/ssl/certs");
            assert_eq!(app["volumeMounts"][0]["readOnly"], true);
            assert_eq!(app["env"][0]["name"], "SSL_CERT_DIR");
            assert!(
                t["spec"]["containers"][0].get("volumeMounts").is_none(),
                "sidecar untouched"
            );
            assert_eq!(t["metadata"]["labels"]["app"], "web", "labels kept");
            assert_eq!(
                t["metadata"]["annotations"]["anchorage.io/bundle-sha256"],
                "abc"
            );
            // The container index is guarded.
            let test = format!(
                "{}/spec/containers/1/name",
                kind.template_path()
                    .iter()
                    .map(|k| format!("/{k}"))
                    .collect::<String>()
            );
            assert!(
                ops.as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["op"] == "test" && o["path"] == test.as_str()),
                "{ops:#}"
            );
        }
    }

    #[test]
    fn json_patch_appends_to_and_replaces_in_existing_lists() {
        let kind = WorkloadKind::Deployment;
        let mut current = workload(
            kind,
            json!({
                "volumes": [
                    { "name": "data", "emptyDir": {} },
                    { "name": "anchorage-trust", "configMap": { "name": "old" } },
                ],
            }),
        );
        let app = &mut current["spec"]["template"]["spec"]["containers"][1];
        app["volumeMounts"] = json!([
            { "name": "data", "mountPath": "/data" },
            { "name": "image-certs", "mountPath": "/etc/ssl/certs" },
        ]);
        app["env"] =
            json!([{ "name": "A", "value": "1" }, { "name": "SSL_CERT_DIR", "value": "/x" }]);
        current["spec"]["template"]["metadata"]["annotations"] = json!({ "keep": "me" });
        let mut req = request(kind);
        req.env.push(env_var(
            "SSL_CERT_FILE",
            "/etc/ssl/certs/ca-certificates.crt",
        ));
        req.format = PatchFormat::Json {
            current: current.clone(),
        };
        let ops = workload_patch(&req).unwrap();
        let patched = apply(current.clone(), &ops).unwrap();
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"],
            json!([
                { "name": "data", "emptyDir": {} },
                { "name": "anchorage-trust", "configMap": { "name": "trust" } },
            ])
        );
        let app = &spec["containers"][1];
        assert_eq!(
            app["volumeMounts"],
            json!([
                { "name": "data", "mountPath": "/data" },
                { "name": "anchorage-trust", "mountPath": "/etc/ssl/certs", "readOnly": true },
            ])
        );
        assert_eq!(
            app["env"],
            json!([
                { "name": "A", "value": "1" },
                { "name": "SSL_CERT_DIR", "value": "/etc/ssl/certs" },
                { "name": "SSL_CERT_FILE", "value": "/etc/ssl/certs/ca-certificates.crt" },
            ])
        );
        // `/` in an annotation key is escaped as `~1`.
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"],
            json!({ "keep": "me", "anchorage.io/bundle-sha256": "abc" })
        );
        assert!(
            ops.to_string()
                .contains("/annotations/anchorage.io~1bundle-sha256")
        );

        // Applying the same patch again changes nothing.
        req.format = PatchFormat::Json {
            current: patched.clone(),
        };
        let again = workload_patch(&req).unwrap();
        assert_eq!(apply(patched.clone(), &again).unwrap(), patched);

        // If the containers moved since, the guard fails the whole patch.
        let mut moved = current;
        moved["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .swap(0, 1);
        let e = apply(moved, &ops).unwrap_err();
        assert!(e.contains("containers/1/name"), "guarded: {e}");
    }

    #[test]
    fn json_patch_needs_the_right_workload() {
        let mut req = request(WorkloadKind::StatefulSet);
        req.format = PatchFormat::Json {
            current: workload(WorkloadKind::Deployment, json!({})),
        };
        assert_eq!(
            workload_patch(&req).unwrap_err().to_string(),
            "the workload given is a Deployment, not a StatefulSet; pass the object the patch is for (as `kubectl get -o json` prints it)"
        );
        req.format = PatchFormat::Json {
            current: json!({ "kind": "StatefulSet", "spec": {} }),
        };
        assert_eq!(
            workload_patch(&req).unwrap_err().to_string(),
            "the StatefulSet given has no pod spec at `/spec/template/spec`; pass the whole object as `kubectl get -o json` prints it"
        );
        req.format = PatchFormat::Json {
            current: workload(WorkloadKind::StatefulSet, json!({})),
        };
        req.containers = vec!["web".into()];
        assert_eq!(
            workload_patch(&req).unwrap_err().to_string(),
            "container `web` is not among the containers of the workload (sidecar, app); use one of those names"
        );
        req.containers.clear();
        req.init_containers = vec!["init".into()];
        let e = workload_patch(&req).unwrap_err().to_string();
        assert!(
            e.contains("among the initContainers of the workload (none)"),
            "{e}"
        );
    }
}

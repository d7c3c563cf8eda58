//! Pod injection, pure: an `admission.k8s.io/v1` AdmissionReview for a Pod in, the review's
//! answer out, with an RFC 6902 patch that mounts the trust volume and sets the runtime
//! variables. The HTTPS server around it is [`crate::webhook`].
//!
//! What a pod gets, and when:
//!
//! - Only pods labelled [`INJECT_LABEL`]`: "true"` are changed (the webhook configuration's
//!   `objectSelector` already sends only those; the label is checked again here).
//! - The patch is [`anchorage_k8s::workload_patch`]'s JSON patch for a `Pod`, computed against
//!   the pod in the review, with the variables of [`anchorage_trust::env::variables`] for the
//!   mounted directory ([`anchorage_trust::env::EnvRequest::mounted`]): the same volume, mount
//!   and variables `anchorage k8s patch` writes, from the same functions.
//! - Nothing the pod's author set is removed or replaced: a container that already mounts
//!   something at the mount path, or sets one of the variables itself (`SSL_CERT_FILE`,
//!   `JAVA_TOOL_OPTIONS`, ...), is left as it is and named in a warning; a pod that already has a
//!   volume of the trust volume's name or the [`INJECTED_ANNOTATION`] is not changed at all
//!   (that is also what makes a second pass, e.g. a reinvocation, change nothing).
//! - A labelled pod asking for an identity ([`IDENTITY_ANNOTATION`], with
//!   [`IDENTITY_SANS_ANNOTATION`] and [`IDENTITY_ROLE_ANNOTATION`]) gets the agent instead of the
//!   trust object, when the webhook has an agent configured ([`InjectSettings::agent`]): the patch
//!   is [`anchorage_k8s::agent_patch`]'s JSON patch (the same container, volumes and mounts as
//!   `anchorage k8s patch --agent --with-init`, from the same function): the agent's init
//!   container (`--once`, the trust and the identity in place before the app starts) and its
//!   sidecar (keeps them current), the emptyDir the agent writes mounted read-only over the mount
//!   path in the app's containers, the identity's files at
//!   [`anchorage_k8s::DEFAULT_IDENTITY_MOUNT_PATH`], serve's CA and the token Secret mounted in
//!   the agent only. `agent_patch` has no native-sidecar form (an init container with
//!   `restartPolicy: Always`), so the sidecar is an ordinary container. Without an agent
//!   configured, or when the pod already has a container of the agent's name, the pod gets a
//!   warning saying so and the trust object as any labelled pod.
//!
//! [`review`] never fails: a review it cannot read, a request that is not for a Pod, or a patch
//! it cannot build is answered `allowed: true` without a patch, with a warning the API server
//! passes to the client, and a `tracing` warning. The pod is never refused.

use std::path::Path;

use anchorage_k8s::{
    AGENT_CONTAINER, AGENT_INIT_CONTAINER, AgentIdentity, AgentMode, AgentPatchRequest, AgentSpec,
    PatchFormat, PatchRequest, TrustSource, WorkloadKind, env_var,
};
use anchorage_trust::env::{EnvRequest, MountedTrust, variables};
use k8s_openapi::api::core::v1::{EnvVar, ObjectReference};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;

/// The pod label that opts a pod in, with the value `"true"`.
pub const INJECT_LABEL: &str = "trust.anchorage.dev/inject";
/// The annotation the webhook sets on a pod it changed: the containers it injected, comma
/// separated. A pod carrying it is not changed again.
pub const INJECTED_ANNOTATION: &str = "trust.anchorage.dev/injected";
/// The pod annotation asking for a workload identity (the agent sidecar): the name asked for
/// (the agent's `--identity`; may use `$(POD_NAME)` and `$(POD_NAMESPACE)`).
pub const IDENTITY_ANNOTATION: &str = "trust.anchorage.dev/identity";
/// More names for the identity, comma separated (the agent's `--identity-san`).
pub const IDENTITY_SANS_ANNOTATION: &str = "trust.anchorage.dev/identity-sans";
/// The serve role the identity is issued under (the agent's `--role`); absent: the token's. The
/// token Secret must be bound to it (serve refuses another role: `token_role_mismatch`).
pub const IDENTITY_ROLE_ANNOTATION: &str = "trust.anchorage.dev/identity-role";

/// What the webhook injects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectSettings {
    /// The trust ConfigMap or Secret (in the pod's namespace), e.g. a Bundle's target.
    pub source: TrustSource,
    /// The volume's name; default [`anchorage_k8s::DEFAULT_VOLUME_NAME`].
    pub volume_name: String,
    /// Where it is mounted; default [`anchorage_k8s::DEFAULT_MOUNT_PATH`].
    pub mount_path: String,
    /// The object holds the `<hash>.<n>` keys (the Bundle controller's `CertsDir` layout), so
    /// `SSL_CERT_DIR` is set.
    pub hashed: bool,
    /// The object holds `extra-ca.pem` (`NODE_EXTRA_CA_CERTS`, `DENO_CERT` name it).
    pub extra_pem: bool,
    /// The object holds `truststore.p12` (`JAVA_TOOL_OPTIONS` names it).
    pub pkcs12: bool,
    /// The agent for pods asking for an identity (image, serve's URL and CA, the token Secret);
    /// its `identity` is ignored (each pod's comes from its annotations). `None`: such pods get
    /// a warning and the trust object.
    pub agent: Option<AgentSpec>,
    /// The agent as one native sidecar ([`AgentMode::NativeSidecar`], Kubernetes 1.29+) instead
    /// of an init container and a sidecar.
    pub agent_native_sidecar: bool,
}

impl InjectSettings {
    /// The ConfigMap `name` in the `CertsDir` layout, mounted over `/etc/ssl/certs`.
    pub fn configmap(name: impl Into<String>) -> Self {
        Self::new(TrustSource::ConfigMap(name.into()))
    }

    /// `source` in the `CertsDir` layout (hashed keys), mounted over `/etc/ssl/certs`.
    pub fn new(source: TrustSource) -> Self {
        Self {
            source,
            volume_name: anchorage_k8s::DEFAULT_VOLUME_NAME.to_owned(),
            mount_path: anchorage_k8s::DEFAULT_MOUNT_PATH.to_owned(),
            hashed: true,
            extra_pem: false,
            pkcs12: false,
            agent: None,
            agent_native_sidecar: false,
        }
    }

    /// Checks the names and the path as the API server would (what a start-up should refuse,
    /// rather than answer every pod with a warning).
    ///
    /// # Errors
    ///
    /// [`InjectError::Patch`] naming the invalid value.
    pub fn validate(&self) -> Result<(), InjectError> {
        let mut request = PatchRequest::new(WorkloadKind::Pod, self.source.clone(), ["app"]);
        request.volume_name = self.volume_name.clone();
        request.mount_path = self.mount_path.clone();
        request.env = self.env();
        anchorage_k8s::workload_patch(&request)
            .map(drop)
            .map_err(InjectError::Patch)?;
        if let Some(agent) = &self.agent {
            let mut spec = agent.clone();
            spec.identity = Some(AgentIdentity::new("$(POD_NAME)"));
            let mut request = self.agent_request(spec, vec!["app".to_owned()], Vec::new());
            request.format = PatchFormat::StrategicMerge;
            anchorage_k8s::agent_patch(&request)
                .map(drop)
                .map_err(InjectError::Patch)?;
        }
        Ok(())
    }

    /// The variables set in each app container of a pod that gets the agent: the agent's bundle
    /// and hashed directory under the mount path, as `anchorage k8s patch --agent` sets them.
    pub fn agent_env(&self) -> Vec<EnvVar> {
        let request = self.agent_request(AgentSpec::default(), Vec::new(), Vec::new());
        let env = EnvRequest {
            bundle: request.bundle_path().into(),
            dir: Some(request.hashed_dir_path().into()),
            extra: None,
            java: None,
        };
        variables(&env)
            .into_iter()
            .map(|v| env_var(v.name, v.value))
            .collect()
    }

    fn agent_request(
        &self,
        agent: AgentSpec,
        containers: Vec<String>,
        init_containers: Vec<String>,
    ) -> AgentPatchRequest {
        let mut request = AgentPatchRequest::new(WorkloadKind::Pod, containers);
        request.init_containers = init_containers;
        request.agent = agent;
        request.mode = if self.agent_native_sidecar {
            AgentMode::NativeSidecar
        } else {
            AgentMode::SidecarWithInit
        };
        request.mount_path = self.mount_path.clone();
        request
    }

    /// The variables set in each injected container, as `anchorage k8s patch` sets them.
    pub fn env(&self) -> Vec<EnvVar> {
        let hashed = self.hashed && !matches!(self.source, TrustSource::ClusterTrustBundle(_));
        let request = EnvRequest::mounted(&MountedTrust {
            mount: Path::new(&self.mount_path),
            bundle_file: anchorage_k8s::DEFAULT_BUNDLE_KEY,
            hashed,
            extra_file: self.extra_pem.then_some(anchorage_k8s::DEFAULT_EXTRA_KEY),
            pkcs12_file: self.pkcs12.then_some(anchorage_k8s::DEFAULT_PKCS12_KEY),
        });
        variables(&request)
            .into_iter()
            .map(|v| env_var(v.name, v.value))
            .collect()
    }
}

/// Why a review got no patch.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The body is not an `admission.k8s.io/v1` AdmissionReview.
    #[error(
        "the request body is not an AdmissionReview (admission.k8s.io/v1); the webhook configuration must send v1 reviews"
    )]
    NotAReview(#[source] serde_json::Error),
    /// The review has no `request`.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// The review is for another kind of object.
    #[error(
        "the AdmissionReview is for a {kind}, not a Pod; the webhook configuration's rules must name pods only"
    )]
    NotAPod {
        /// The kind the review named.
        kind: String,
    },
    /// The review has no object.
    #[error("the AdmissionReview for a Pod has no object")]
    NoObject,
    /// The patch could not be built.
    #[error("cannot build the patch for the pod")]
    Patch(#[source] anchorage_k8s::K8sError),
    /// The patch could not be put in the response.
    #[error("cannot put the patch in the admission response")]
    SerializePatch(#[source] kube::core::admission::SerializePatchError),
    /// A value could not be (de)serialised.
    #[error("cannot serialise the {what}")]
    Json {
        /// What was being serialised.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What [`inject`] decided for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The pod does not carry [`INJECT_LABEL`]`: "true"`: unchanged.
    NotOptedIn,
    /// The pod already has the trust volume or [`INJECTED_ANNOTATION`]: unchanged.
    AlreadyInjected,
    /// Every container sets its own trust (see the warnings): unchanged.
    NoContainer,
    /// The RFC 6902 operations, and the containers (then init containers) they inject.
    Patch {
        /// The operations.
        ops: Value,
        /// The containers injected.
        containers: Vec<String>,
    },
}

/// [`inject`]'s answer: the decision and what the pod's author should know.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    /// What is done to the pod.
    pub decision: Decision,
    /// Warnings for the client (containers left out and why, an identity not served).
    pub warnings: Vec<String>,
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn list<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Why `container` keeps its own trust settings, if it does.
fn own_trust(container: &Value, settings: &InjectSettings, env: &[EnvVar]) -> Option<String> {
    if let Some(mount) = list(container, "/volumeMounts")
        .iter()
        .find(|m| str_at(m, "/mountPath") == Some(settings.mount_path.as_str()))
    {
        return Some(format!(
            "mounts volume `{}` at {} itself",
            str_at(mount, "/name").unwrap_or("?"),
            settings.mount_path
        ));
    }
    list(container, "/env")
        .iter()
        .filter_map(|v| str_at(v, "/name"))
        .find(|name| env.iter().any(|e| e.name == *name))
        .map(|name| format!("sets {name} itself"))
}

/// The patch for `pod` (a Pod as JSON, as the review carries it), or why there is none.
///
/// # Errors
///
/// [`InjectError::Patch`] when [`anchorage_k8s::workload_patch`] refuses (an invalid name in the
/// settings, a pod without a spec).
pub fn inject(settings: &InjectSettings, pod: &Value) -> Result<Injection, InjectError> {
    let mut warnings = Vec::new();
    let annotation = |key: &str| {
        pod.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    let opted_in = pod
        .pointer("/metadata/labels")
        .and_then(|l| l.get(INJECT_LABEL))
        .and_then(Value::as_str)
        == Some("true");
    let agent = match annotation(IDENTITY_ANNOTATION) {
        None => None,
        Some(name) => agent_for(settings, pod, name, &annotation, opted_in, &mut warnings),
    };
    if !opted_in {
        return Ok(Injection {
            decision: Decision::NotOptedIn,
            warnings,
        });
    }
    let has_volume = list(pod, "/spec/volumes").iter().any(|v| {
        let name = str_at(v, "/name");
        name == Some(settings.volume_name.as_str())
            || (agent.is_some() && name == Some(anchorage_k8s::DEFAULT_VOLUME_NAME))
    });
    if has_volume || annotation(INJECTED_ANNOTATION).is_some() {
        return Ok(Injection {
            decision: Decision::AlreadyInjected,
            warnings,
        });
    }
    let env = if agent.is_some() {
        settings.agent_env()
    } else {
        settings.env()
    };
    let mut pick = |field: &str| -> Vec<String> {
        let mut names = Vec::new();
        for container in list(pod, &format!("/spec/{field}")) {
            let Some(name) = str_at(container, "/name") else {
                continue;
            };
            match own_trust(container, settings, &env) {
                Some(why) => warnings.push(format!(
                    "anchorage: container {name} {why}: trust not injected into it"
                )),
                None => names.push(name.to_owned()),
            }
        }
        names
    };
    let containers = pick("containers");
    let init_containers = pick("initContainers");
    if containers.is_empty() && init_containers.is_empty() {
        return Ok(Injection {
            decision: Decision::NoContainer,
            warnings,
        });
    }
    let injected: Vec<String> = containers.iter().chain(&init_containers).cloned().collect();
    let mut current = pod.clone();
    if let Some(object) = current.as_object_mut() {
        // A review's object carries its kind; a bare pod may not.
        object
            .entry("kind")
            .or_insert_with(|| WorkloadKind::Pod.kind().into());
    }
    let format = PatchFormat::Json { current };
    let ops = if let Some(spec) = agent {
        let mut request = settings.agent_request(spec, containers, init_containers);
        request.env = env;
        request
            .pod_annotations
            .insert(INJECTED_ANNOTATION.to_owned(), injected.join(","));
        request.format = format;
        anchorage_k8s::agent_patch(&request).map_err(InjectError::Patch)?
    } else {
        let mut request = PatchRequest::new(WorkloadKind::Pod, settings.source.clone(), containers);
        request.init_containers = init_containers;
        request.volume_name = settings.volume_name.clone();
        request.mount_path = settings.mount_path.clone();
        request.env = env;
        request
            .pod_annotations
            .insert(INJECTED_ANNOTATION.to_owned(), injected.join(","));
        request.format = format;
        anchorage_k8s::workload_patch(&request).map_err(InjectError::Patch)?
    };
    Ok(Injection {
        decision: Decision::Patch {
            ops,
            containers: injected,
        },
        warnings,
    })
}

/// The agent for a pod asking for the identity `name`, or `None` with a warning saying why not.
fn agent_for<'a>(
    settings: &InjectSettings,
    pod: &'a Value,
    name: &str,
    annotation: &impl Fn(&str) -> Option<&'a str>,
    opted_in: bool,
    warnings: &mut Vec<String>,
) -> Option<AgentSpec> {
    let Some(agent) = &settings.agent else {
        warnings.push(format!(
            "anchorage: {IDENTITY_ANNOTATION} asks for an identity, but this webhook has no agent \
             configured (anchorage controller webhook --agent-image, --serve-url, \
             --serve-ca-configmap, --agent-token-secret): no agent sidecar was added"
        ));
        return None;
    };
    if !opted_in {
        warnings.push(format!(
            "anchorage: {IDENTITY_ANNOTATION} asks for an identity, but the pod is not labelled \
             {INJECT_LABEL}=true: no agent sidecar was added"
        ));
        return None;
    }
    let taken = ["containers", "initContainers"]
        .iter()
        .flat_map(|field| list(pod, &format!("/spec/{field}")))
        .filter_map(|c| str_at(c, "/name"))
        .find(|n| *n == AGENT_CONTAINER || *n == AGENT_INIT_CONTAINER);
    if let Some(taken) = taken {
        warnings.push(format!(
            "anchorage: the pod has a container named {taken} already: no agent sidecar was \
             added (the trust object is mounted instead)"
        ));
        return None;
    }
    let mut identity = AgentIdentity::new(name);
    identity.sans = annotation(IDENTITY_SANS_ANNOTATION)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    identity.role = annotation(IDENTITY_ROLE_ANNOTATION).map(str::to_owned);
    let mut spec = agent.clone();
    spec.identity = Some(identity);
    Some(spec)
}

/// The answer to an AdmissionReview `body`: always `allowed: true`; with a JSON patch when the
/// pod is injected; with warnings when something was left out or went wrong (also logged).
pub fn review(settings: &InjectSettings, body: &[u8]) -> AdmissionReview<DynamicObject> {
    review_noticed(settings, body).0
}

/// The reason of the Event for a pod that got no patch ([`review`] answered with a warning).
pub const NOT_INJECTED_REASON: &str = "TrustNotInjected";
/// The reason of the Event for a pod injected with warnings (containers left out, an identity
/// the webhook cannot serve).
pub const INJECTED_WITH_WARNINGS_REASON: &str = "TrustInjectedWithWarnings";
/// The longest Event note the Events API takes (1 kB).
const MAX_NOTE_BYTES: usize = 1024;

/// What the pod's owner should see as a Warning Event: a labelled pod that got no patch, or one
/// injected with warnings. The webhook ([`crate::webhook::Events`]) publishes it when it has API
/// access; building it is pure.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The object the Event is about: the pod's controller (its ReplicaSet, Job, StatefulSet,
    /// ...: the pod is not created yet, and that is what `kubectl describe` shows the author),
    /// else the pod itself by name.
    pub regarding: ObjectReference,
    /// [`NOT_INJECTED_REASON`] or [`INJECTED_WITH_WARNINGS_REASON`].
    pub reason: &'static str,
    /// What happened, as the admission warning says it (at most 1 kB; never a value of the pod).
    pub note: String,
}

/// [`review`], and the [`Notice`] for the pod's owner when the pod got a warning. No notice for
/// a body that names no pod in a namespace (nothing to put an Event on: it is logged), nor for
/// a pod answered without a warning.
pub fn review_noticed(
    settings: &InjectSettings,
    body: &[u8],
) -> (AdmissionReview<DynamicObject>, Option<Notice>) {
    let (review, warnings, failed) = match respond(settings, body) {
        Ok(response) => {
            let warnings = response.warnings.clone().unwrap_or_default();
            (response.into_review(), warnings, false)
        }
        Err(error) => {
            // The uid must be echoed; read it from whatever JSON there is.
            let uid = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| str_at(&v, "/request/uid").map(str::to_owned))
                .unwrap_or_default();
            let cause = cause(&error);
            tracing::warn!(%uid, error = %error, %cause, "admission review not injected; the pod is admitted unchanged");
            let mut response = AdmissionResponse::invalid("");
            response.allowed = true;
            response.result = kube::core::Status::success();
            response.uid = uid;
            let warning = format!("anchorage: trust not injected: {error}: {cause}");
            response.warnings = Some(vec![warning.clone()]);
            (response.into_review(), vec![warning], true)
        }
    };
    if warnings.is_empty() {
        return (review, None);
    }
    let notice = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| regarding(&v))
        .map(|regarding| Notice {
            regarding,
            reason: if failed {
                NOT_INJECTED_REASON
            } else {
                INJECTED_WITH_WARNINGS_REASON
            },
            note: truncate(warnings.join("; "), MAX_NOTE_BYTES),
        });
    (review, notice)
}

/// The object an Event about the reviewed pod goes on: its controller owner (in the pod's
/// namespace), else the reviewed object by name (or `generateName`) and kind. `None` without a
/// namespace or a name.
fn regarding(review: &Value) -> Option<ObjectReference> {
    let namespace = str_at(review, "/request/namespace")
        .or_else(|| str_at(review, "/request/object/metadata/namespace"))
        .filter(|n| !n.is_empty())?;
    let meta = review.pointer("/request/object/metadata")?;
    let owner = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(owner) = owner {
        return Some(ObjectReference {
            api_version: text(owner, "apiVersion"),
            kind: text(owner, "kind"),
            name: Some(text(owner, "name")?),
            uid: text(owner, "uid"),
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        });
    }
    let name = text(meta, "name").or_else(|| {
        // An Event's name starts with this name, and a name may not end in '-'.
        text(meta, "generateName").map(|g| g.trim_end_matches('-').to_owned())
    })?;
    // The reviewed object's kind (a Pod, unless the configuration sends something else).
    let kind = review.pointer("/request/kind");
    let (group, version) = (
        kind.and_then(|k| text(k, "group")),
        kind.and_then(|k| text(k, "version"))
            .unwrap_or_else(|| "v1".to_owned()),
    );
    Some(ObjectReference {
        api_version: Some(match group {
            Some(g) => format!("{g}/{version}"),
            None => version,
        }),
        kind: Some(
            kind.and_then(|k| text(k, "kind"))
                .unwrap_or_else(|| "Pod".to_owned()),
        ),
        name: Some(name).filter(|n| !n.is_empty()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    })
    .filter(|r| r.name.is_some())
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Why `error` happened, without the request's values: a JSON error says only its kind and
/// position (serde's message may quote a value from the pod, e.g. an environment variable).
fn cause(error: &InjectError) -> String {
    let json = |e: &serde_json::Error| {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
        .to_lowercase()
    };
    match error {
        InjectError::NotAReview(e) | InjectError::Json { source: e, .. } => json(e),
        InjectError::Patch(e) => e.to_string(),
        InjectError::SerializePatch(e) => e.to_string(),
        InjectError::NoRequest | InjectError::NotAPod { .. } | InjectError::NoObject => {
            "nothing to inject".to_owned()
        }
    }
}

/// [`review`] as the JSON the webhook sends: `response.patch` is the base64 string the
/// `admission.k8s.io/v1` API documents (kube's type serialises the bytes as a number array,
/// which Go's decoder also reads; the documented form is the safe one).
pub fn review_json(settings: &InjectSettings, body: &[u8]) -> Value {
    review_json_noticed(settings, body).0
}

/// [`review_json`] and [`review_noticed`]'s notice.
pub fn review_json_noticed(settings: &InjectSettings, body: &[u8]) -> (Value, Option<Notice>) {
    use base64::Engine as _;
    let (answer, notice) = review_noticed(settings, body);
    let mut value = serde_json::to_value(&answer).unwrap_or_else(|e| {
        // Plain data always serialises; were it not to, the pod is still let through.
        tracing::warn!(error = %e, "cannot serialise the admission review");
        serde_json::json!({ "response": { "uid": "", "allowed": true } })
    });
    if let Some(patch) = value.pointer_mut("/response/patch") {
        let bytes: Option<Vec<u8>> = patch.as_array().map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect()
        });
        if let Some(bytes) = bytes {
            *patch = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
        }
    }
    if let Some(object) = value.as_object_mut() {
        object.insert("apiVersion".into(), "admission.k8s.io/v1".into());
        object.insert("kind".into(), "AdmissionReview".into());
    }
    (value, notice)
}

fn respond(settings: &InjectSettings, body: &[u8]) -> Result<AdmissionResponse, InjectError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(InjectError::NotAReview)?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| InjectError::NoRequest)?;
    if request.kind.kind != "Pod" || !request.kind.group.is_empty() {
        return Err(InjectError::NotAPod {
            kind: request.kind.kind,
        });
    }
    let response = AdmissionResponse::from(&request);
    if request.operation != Operation::Create {
        // Pod volumes cannot change after creation.
        return Ok(response);
    }
    let object = request.object.as_ref().ok_or(InjectError::NoObject)?;
    let pod = serde_json::to_value(object).map_err(|source| InjectError::Json {
        what: "pod",
        source,
    })?;
    let injection = inject(settings, &pod)?;
    let name = object
        .metadata
        .name
        .as_deref()
        .or(object.metadata.generate_name.as_deref())
        .unwrap_or("");
    let namespace = request.namespace.as_deref().unwrap_or("");
    let mut response = response;
    if !injection.warnings.is_empty() {
        response.warnings = Some(injection.warnings);
    }
    match injection.decision {
        Decision::Patch { ops, containers } => {
            let patch: json_patch::Patch =
                serde_json::from_value(ops).map_err(|source| InjectError::Json {
                    what: "patch",
                    source,
                })?;
            tracing::info!(%namespace, pod = %name, containers = %containers.join(","), "trust injected");
            response
                .with_patch(patch)
                .map_err(InjectError::SerializePatch)
        }
        decision => {
            tracing::debug!(%namespace, pod = %name, ?decision, "pod unchanged");
            Ok(response)
        }
    }
}

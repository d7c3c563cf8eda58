//! `anchorage agent` beside a workload: the agent's container ([`agent_container`]), its volumes
//! ([`agent_volumes`]) and the patch that adds both to a workload ([`agent_patch`]).
//!
//! This module is the one source of the agent's container spec: the kustomize example in
//! `deploy/kubernetes/agent-sidecar` holds exactly what [`agent_container`] and
//! [`agent_volumes`] build (checked by `tests/agent.rs`), and `anchorage k8s patch --agent`
//! prints [`agent_patch`].
//!
//! # What the patch adds
//!
//! - An **emptyDir** ([`DEFAULT_VOLUME_NAME`]) the agent writes into (`/out` in its container):
//!   the bundle as [`AGENT_PEM_FILE`] and the OpenSSL hashed directory as [`AGENT_HASHED_DIR`].
//!   The hashed directory is a subdirectory because the agent swaps a directory in one step
//!   (`renameat2(RENAME_EXCHANGE)`), which a mount point refuses.
//! - That volume mounted **read-only over the app's `/etc/ssl/certs`**
//!   ([`AgentPatchRequest::mount_path`]) in each named container, with the runtime variables the
//!   caller gives ([`AgentPatchRequest::env`]; `SSL_CERT_DIR` should name
//!   [`AgentPatchRequest::hashed_dir_path`]). The mount hides the image's own trust store: serve's
//!   bundle must hold every root the app needs.
//! - The serve CA ([`ServeCaSource`]: a ConfigMap or Secret holding the certificate that serve's
//!   TLS certificate chains to) and the token Secret (a role token: acks and `/v1/sign`; the
//!   identity's role is the token's), each mounted read-only in the agent only.
//! - The agent ([`AgentMode`]): a sidecar container [`AGENT_CONTAINER`] (long-running, `/healthz`
//!   on [`AgentSpec::healthz_port`] as its liveness probe), or an init container
//!   [`AGENT_INIT_CONTAINER`] with `--once` (trust in place before the app starts, never
//!   refreshed), or both (as the kustomize example). A sidecar never exits, so a Job's or
//!   CronJob's pod would never complete: for those only [`AgentMode::Once`] is accepted.
//! - With [`AgentSpec::identity`], a second emptyDir where the agent keeps the workload's
//!   certificate, key (0600: the app must run as the agent's user to read it), chain and CA,
//!   mounted read-only in the app at [`AgentIdentity::mount_path`].
//!
//! Everything is matched by name (containers, volumes, variables; mounts by path), so applying
//! the patch twice is the same as once, in both [`PatchFormat`]s. The agent's consumer name is
//! `$(POD_NAMESPACE).$(POD_NAME)` (from the downward API), unique per pod.
//!
//! This module does not pick the image (the caller does; [`DEFAULT_AGENT_IMAGE`] is the name the
//! kustomize `images:` transformer rewrites) and does not create the ConfigMap or Secrets it
//! mounts (deploy/kubernetes/README.md says how).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::error::K8sError;
use crate::patch::{
    DEFAULT_MOUNT_PATH, DEFAULT_VOLUME_NAME, KindTarget, PatchFormat, Target, WorkloadKind,
    common_parts, invalid, render,
};
use crate::trust_store::DEFAULT_BUNDLE_KEY;
use crate::validate;

/// The sidecar's container name.
pub const AGENT_CONTAINER: &str = "anchorage-agent";
/// The init container's name (`--once`).
pub const AGENT_INIT_CONTAINER: &str = "anchorage-agent-init";
/// The image unless told otherwise: the name kustomize's `images:` rewrites.
pub const DEFAULT_AGENT_IMAGE: &str = "anchorage";
/// serve's address unless told otherwise: the Service of `deploy/kubernetes/serve`.
pub const DEFAULT_SERVE_URL: &str = "https://anchorage-serve.anchorage.svc:8443";
/// The ConfigMap holding serve's CA unless told otherwise.
pub const DEFAULT_SERVE_CA_NAME: &str = "anchorage-serve-ca";
/// The key (file name) of serve's CA in that ConfigMap or Secret.
pub const DEFAULT_SERVE_CA_KEY: &str = "ca.pem";
/// The Secret holding the agent's token unless told otherwise.
pub const DEFAULT_TOKEN_SECRET: &str = "anchorage-agent-token";
/// The key (file name) of the token in that Secret.
pub const DEFAULT_TOKEN_KEY: &str = "token";
/// The sidecar's `/healthz` port unless told otherwise.
pub const DEFAULT_HEALTHZ_PORT: u16 = 8088;
/// Where the identity's files appear in the app's containers unless told otherwise.
pub const DEFAULT_IDENTITY_MOUNT_PATH: &str = "/var/run/anchorage/identity";
/// The PEM bundle's file name in the trust volume: the default CA file of Debian-based images
/// (OpenSSL, curl, Go).
pub const AGENT_PEM_FILE: &str = DEFAULT_BUNDLE_KEY;
/// The hashed directory's name in the trust volume.
pub const AGENT_HASHED_DIR: &str = "hashed";

/// The volume holding serve's CA.
const SERVE_CA_VOLUME: &str = "anchorage-serve-ca";
/// The volume holding the token.
const TOKEN_VOLUME: &str = "anchorage-agent-token";
/// The volume the identity's files are written to.
const IDENTITY_VOLUME: &str = "anchorage-identity";
/// Paths in the agent's container.
const OUT_DIR: &str = "/out";
const IDENTITY_DIR: &str = "/identity";
const SERVE_CA_DIR: &str = "/etc/anchorage/serve-ca";
const TOKEN_DIR: &str = "/etc/anchorage/token";
/// The status file, beside the outputs (read by `anchorage agent status` and `/healthz`).
const STATUS_FILE: &str = "/out/.anchorage-status.json";
/// The port's name, used by the liveness probe (at most 15 characters).
const HEALTHZ_PORT_NAME: &str = "agent-healthz";
/// Read-only for the owner: the token file.
const TOKEN_MODE: i32 = 0o400;

/// Where the certificate that serve's TLS certificate chains to comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeCaSource {
    /// A ConfigMap, by name.
    ConfigMap(String),
    /// A Secret, by name.
    Secret(String),
}

/// The workload's own certificate, kept by the agent (`--identity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The name asked for (`--identity`): the certificate's subject and first DNS name. May use
    /// `$(POD_NAME)` and `$(POD_NAMESPACE)`.
    pub name: String,
    /// More names (`--identity-san`).
    pub sans: Vec<String>,
    /// The serve role it is issued under (`--role`); `None`: the token's.
    pub role: Option<String>,
    /// Where `cert.pem`, `key.pem`, `chain.pem` and `ca.pem` appear in the app's containers;
    /// default [`DEFAULT_IDENTITY_MOUNT_PATH`].
    pub mount_path: String,
}

impl AgentIdentity {
    /// An identity named `name`, mounted at [`DEFAULT_IDENTITY_MOUNT_PATH`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sans: Vec::new(),
            role: None,
            mount_path: DEFAULT_IDENTITY_MOUNT_PATH.to_owned(),
        }
    }
}

/// The agent's settings. [`AgentSpec::default`] is the kustomize example's, without its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// The container image; default [`DEFAULT_AGENT_IMAGE`].
    pub image: String,
    /// serve's URL (`--server`); default [`DEFAULT_SERVE_URL`].
    pub server: String,
    /// serve's CA; default the ConfigMap [`DEFAULT_SERVE_CA_NAME`].
    pub serve_ca: ServeCaSource,
    /// Its key in the ConfigMap or Secret; default [`DEFAULT_SERVE_CA_KEY`].
    pub serve_ca_key: String,
    /// The Secret holding the token (`--token-file`); default [`DEFAULT_TOKEN_SECRET`].
    pub token_secret: String,
    /// Its key; default [`DEFAULT_TOKEN_KEY`].
    pub token_key: String,
    /// Labels the agent reports in its acks (`--label`).
    pub labels: BTreeMap<String, String>,
    /// The workload's own certificate, if any.
    pub identity: Option<AgentIdentity>,
    /// The sidecar's `/healthz` port; default [`DEFAULT_HEALTHZ_PORT`].
    pub healthz_port: u16,
}

impl Default for AgentSpec {
    fn default() -> Self {
        Self {
            image: DEFAULT_AGENT_IMAGE.to_owned(),
            server: DEFAULT_SERVE_URL.to_owned(),
            serve_ca: ServeCaSource::ConfigMap(DEFAULT_SERVE_CA_NAME.to_owned()),
            serve_ca_key: DEFAULT_SERVE_CA_KEY.to_owned(),
            token_secret: DEFAULT_TOKEN_SECRET.to_owned(),
            token_key: DEFAULT_TOKEN_KEY.to_owned(),
            labels: BTreeMap::new(),
            identity: None,
            healthz_port: DEFAULT_HEALTHZ_PORT,
        }
    }
}

/// How the agent runs in the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentMode {
    /// A long-running sidecar ([`AGENT_CONTAINER`]) that keeps the files current.
    Sidecar,
    /// An init container ([`AGENT_INIT_CONTAINER`], `--once`): everything written before the app
    /// starts, never refreshed.
    Once,
    /// Both: the init container puts the trust in place before the app starts, the sidecar keeps
    /// it current (the kustomize example).
    SidecarWithInit,
    /// One Kubernetes native sidecar ([`agent_native_sidecar`]: an init container named
    /// [`AGENT_CONTAINER`] with `restartPolicy: Always`, Kubernetes 1.29 and later): it starts
    /// before the app's init containers and containers, which wait for its startup probe
    /// (`/healthz`: the trust, and the identity when asked for, installed), and keeps them
    /// current for the pod's life. One agent instead of two; the only sidecar form for a Job or
    /// CronJob (a native sidecar does not keep a finished pod running).
    NativeSidecar,
}

impl AgentMode {
    fn sidecar(self) -> bool {
        matches!(self, Self::Sidecar | Self::SidecarWithInit)
    }

    fn init(self) -> bool {
        matches!(self, Self::Once | Self::SidecarWithInit)
    }
}

/// How long a native sidecar's startup probe waits for the first install before the kubelet
/// restarts it: `periodSeconds` × `failureThreshold` (1 s × 600: ten minutes).
pub const NATIVE_SIDECAR_STARTUP_SECONDS: i32 = 600;

/// The agent as a Kubernetes native sidecar ([`AgentMode::NativeSidecar`]): the sidecar of
/// [`agent_container`] with `restartPolicy: Always`, for the pod's `initContainers`, and a
/// startup probe on `/healthz` (200 once the trust, and the identity when asked for, are
/// installed), so the containers after it start only then.
///
/// # Errors
///
/// As [`agent_container`].
pub fn agent_native_sidecar(spec: &AgentSpec) -> Result<Container, K8sError> {
    let mut container = agent_container(spec, false)?;
    container.restart_policy = Some("Always".to_owned());
    container.startup_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port: IntOrString::String(HEALTHZ_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(NATIVE_SIDECAR_STARTUP_SECONDS),
        ..Probe::default()
    });
    Ok(container)
}

/// What to patch and how. [`AgentPatchRequest::new`] fills in the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentPatchRequest {
    /// The kind of workload.
    pub kind: WorkloadKind,
    /// The workload's name (see [`crate::PatchRequest::workload_name`]).
    pub workload_name: Option<String>,
    /// Its namespace (see [`crate::PatchRequest::workload_namespace`]).
    pub workload_namespace: Option<String>,
    /// The agent.
    pub agent: AgentSpec,
    /// Sidecar, init container, or both.
    pub mode: AgentMode,
    /// The app's containers that get the trust mount and the variables (at least one container
    /// or init container).
    pub containers: Vec<String>,
    /// The app's init containers that get them too (they run after the agent's init container).
    pub init_containers: Vec<String>,
    /// Where the trust volume is mounted (read-only) in those; default [`DEFAULT_MOUNT_PATH`].
    pub mount_path: String,
    /// Environment variables set in those containers (see [`Self::bundle_path`],
    /// [`Self::hashed_dir_path`]).
    pub env: Vec<EnvVar>,
    /// Annotations set on the pod template.
    pub pod_annotations: BTreeMap<String, String>,
    /// The patch format.
    pub format: PatchFormat,
}

impl AgentPatchRequest {
    /// A strategic-merge patch adding the agent as a sidecar, its volume mounted at
    /// [`DEFAULT_MOUNT_PATH`] in `containers`.
    pub fn new(
        kind: WorkloadKind,
        containers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            kind,
            workload_name: None,
            workload_namespace: None,
            agent: AgentSpec::default(),
            mode: AgentMode::Sidecar,
            containers: containers.into_iter().map(Into::into).collect(),
            init_containers: Vec::new(),
            mount_path: DEFAULT_MOUNT_PATH.to_owned(),
            env: Vec::new(),
            pod_annotations: BTreeMap::new(),
            format: PatchFormat::StrategicMerge,
        }
    }

    /// The PEM bundle as the app's containers see it (`SSL_CERT_FILE`).
    pub fn bundle_path(&self) -> String {
        join(&self.mount_path, AGENT_PEM_FILE)
    }

    /// The hashed directory as the app's containers see it (`SSL_CERT_DIR`).
    pub fn hashed_dir_path(&self) -> String {
        join(&self.mount_path, AGENT_HASHED_DIR)
    }
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// A value that goes into one argument: not empty, no whitespace or control characters.
fn word(field: &'static str, value: &str) -> Result<(), K8sError> {
    if value.is_empty() {
        return Err(invalid(field, value, "it is empty".into()));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            value,
            format!("it holds {c:?}; give one word"),
        ));
    }
    Ok(())
}

fn check(spec: &AgentSpec) -> Result<(), K8sError> {
    word("agent image", &spec.image)?;
    word("serve URL", &spec.server)?;
    if !(spec.server.starts_with("https://") || spec.server.starts_with("http://")) {
        return Err(invalid(
            "serve URL",
            &spec.server,
            format!("it is not an https:// URL; e.g. {DEFAULT_SERVE_URL}"),
        ));
    }
    let (kind, name) = match &spec.serve_ca {
        ServeCaSource::ConfigMap(name) => ("serve CA ConfigMap name", name),
        ServeCaSource::Secret(name) => ("serve CA Secret name", name),
    };
    validate::dns1123_subdomain(name).map_err(|reason| invalid(kind, name, reason))?;
    validate::config_map_key(&spec.serve_ca_key)
        .map_err(|reason| invalid("serve CA key", &spec.serve_ca_key, reason))?;
    validate::dns1123_subdomain(&spec.token_secret)
        .map_err(|reason| invalid("token Secret name", &spec.token_secret, reason))?;
    validate::config_map_key(&spec.token_key)
        .map_err(|reason| invalid("token key", &spec.token_key, reason))?;
    for (key, value) in &spec.labels {
        let label = format!("{key}={value}");
        validate::qualified_name(key).map_err(|reason| invalid("agent label", &label, reason))?;
        if value.chars().any(char::is_control) {
            return Err(invalid(
                "agent label",
                &label,
                "the value holds a control character".into(),
            ));
        }
    }
    if let Some(identity) = &spec.identity {
        word("identity name", &identity.name)?;
        for san in &identity.sans {
            word("identity SAN", san)?;
        }
        if let Some(role) = &identity.role {
            word("identity role", role)?;
        }
        validate::mount_path(&identity.mount_path)
            .map_err(|reason| invalid("identity mount path", &identity.mount_path, reason))?;
    }
    if spec.healthz_port == 0 {
        return Err(invalid(
            "healthz port",
            "0",
            "give a port from 1 to 65535".into(),
        ));
    }
    Ok(())
}

/// The agent's container: the sidecar, or with `once` the init container (`--once`, no
/// `/healthz`).
///
/// # Errors
///
/// [`K8sError::InvalidPatch`] for a setting Kubernetes or the agent would refuse (an empty image,
/// a serve URL that is not `https://`, an invalid Secret or ConfigMap name or key, label, or
/// identity name, port 0).
pub fn agent_container(spec: &AgentSpec, once: bool) -> Result<Container, K8sError> {
    check(spec)?;
    let mut args = vec!["agent".to_owned()];
    if once {
        args.push("--once".to_owned());
    }
    args.push(format!("--server={}", spec.server));
    args.push(format!(
        "--server-ca={}",
        join(SERVE_CA_DIR, &spec.serve_ca_key)
    ));
    args.push(format!("--token-file={}", join(TOKEN_DIR, &spec.token_key)));
    args.push("--consumer=$(POD_NAMESPACE).$(POD_NAME)".to_owned());
    args.extend(spec.labels.iter().map(|(k, v)| format!("--label={k}={v}")));
    args.push(format!("--pem={}", join(OUT_DIR, AGENT_PEM_FILE)));
    args.push(format!("--openssl-dir={}", join(OUT_DIR, AGENT_HASHED_DIR)));
    args.push(format!("--status-file={STATUS_FILE}"));
    if let Some(identity) = &spec.identity {
        args.push(format!("--identity={}", identity.name));
        args.push(format!("--identity-dir={IDENTITY_DIR}"));
        args.extend(identity.sans.iter().map(|s| format!("--identity-san={s}")));
        if let Some(role) = &identity.role {
            args.push(format!("--role={role}"));
        }
    }
    let mut mounts = vec![
        mount(DEFAULT_VOLUME_NAME, OUT_DIR, false),
        mount(SERVE_CA_VOLUME, SERVE_CA_DIR, true),
        mount(TOKEN_VOLUME, TOKEN_DIR, true),
    ];
    if spec.identity.is_some() {
        mounts.push(mount(IDENTITY_VOLUME, IDENTITY_DIR, false));
    }
    let mut container = Container {
        name: if once {
            AGENT_INIT_CONTAINER
        } else {
            AGENT_CONTAINER
        }
        .to_owned(),
        image: Some(spec.image.clone()),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    if !once {
        args.push(format!("--healthz-listen=0.0.0.0:{}", spec.healthz_port));
        container.ports = Some(vec![ContainerPort {
            name: Some(HEALTHZ_PORT_NAME.to_owned()),
            container_port: i32::from(spec.healthz_port),
            ..ContainerPort::default()
        }]);
        container.liveness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::String(HEALTHZ_PORT_NAME.to_owned()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        });
    }
    container.args = Some(args);
    Ok(container)
}

/// The agent's volumes: the trust emptyDir ([`DEFAULT_VOLUME_NAME`]), serve's CA, the token
/// Secret (mode 0400) and, with an identity, the identity's emptyDir.
///
/// # Errors
///
/// As [`agent_container`].
pub fn agent_volumes(spec: &AgentSpec) -> Result<Vec<Volume>, K8sError> {
    check(spec)?;
    let empty_dir = |name: &str| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mut serve_ca = Volume {
        name: SERVE_CA_VOLUME.to_owned(),
        ..Volume::default()
    };
    match &spec.serve_ca {
        ServeCaSource::ConfigMap(name) => {
            serve_ca.config_map = Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            });
        }
        ServeCaSource::Secret(name) => {
            serve_ca.secret = Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                ..SecretVolumeSource::default()
            });
        }
    }
    let token = Volume {
        name: TOKEN_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(spec.token_secret.clone()),
            default_mode: Some(TOKEN_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![empty_dir(DEFAULT_VOLUME_NAME), serve_ca, token];
    if spec.identity.is_some() {
        volumes.push(empty_dir(IDENTITY_VOLUME));
    }
    Ok(volumes)
}

/// The patch adding the agent to a workload: a strategic-merge patch object, or an array of
/// RFC 6902 operations (see the module docs and [`crate::workload_patch`]'s formats).
///
/// # Errors
///
/// As [`agent_container`] and [`crate::workload_patch`]; also a sidecar for a Job or CronJob
/// (it would never complete), a named container that is the agent's own, and an identity
/// mounted where the trust volume is.
pub fn agent_patch(req: &AgentPatchRequest) -> Result<Value, K8sError> {
    validate::mount_path(&req.mount_path)
        .map_err(|reason| invalid("mount path", &req.mount_path, reason))?;
    if req.mode.sidecar() && matches!(req.kind, WorkloadKind::Job | WorkloadKind::CronJob) {
        return Err(invalid(
            "agent mode",
            "sidecar",
            format!(
                "a {}'s pod completes when its containers exit, and the agent's sidecar never \
                 does: add the agent as an init container (--once), or as a native sidecar \
                 (--native-sidecar, Kubernetes 1.29+)",
                req.kind.kind()
            ),
        ));
    }
    for name in req.containers.iter().chain(&req.init_containers) {
        if name == AGENT_CONTAINER || name == AGENT_INIT_CONTAINER {
            return Err(invalid(
                "container name",
                name,
                "it is the agent's own container; name the app's containers".into(),
            ));
        }
    }
    let mut parts = common_parts(&Target {
        kind: req.kind,
        workload_name: req.workload_name.as_deref(),
        workload_namespace: req.workload_namespace.as_deref(),
        containers: &req.containers,
        init_containers: &req.init_containers,
        env: &req.env,
        annotations: &req.pod_annotations,
    })?;
    parts.volumes = agent_volumes(&req.agent)?;
    parts.mounts = vec![mount(DEFAULT_VOLUME_NAME, &req.mount_path, true)];
    if let Some(identity) = &req.agent.identity {
        let (a, b) = (
            identity.mount_path.trim_end_matches('/'),
            req.mount_path.trim_end_matches('/'),
        );
        if a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/")) {
            return Err(invalid(
                "identity mount path",
                &identity.mount_path,
                format!(
                    "it overlaps the trust mount `{}`; mount it elsewhere",
                    req.mount_path
                ),
            ));
        }
        parts
            .mounts
            .push(mount(IDENTITY_VOLUME, &identity.mount_path, true));
    }
    if req.mode.sidecar() {
        parts.added_containers = vec![agent_container(&req.agent, false)?];
    }
    if req.mode.init() {
        // Before the app's own init containers (which may need the trust already), so the
        // agent goes first in the list; a strategic merge appends, so this holds for a workload
        // without init containers, and the JSON patch keeps a list that exists in its order.
        parts.added_init_containers = vec![agent_container(&req.agent, true)?];
    }
    if req.mode == AgentMode::NativeSidecar {
        // First too: the app's init containers start once its startup probe passes.
        parts.added_init_containers = vec![agent_native_sidecar(&req.agent)?];
    }
    render(
        &KindTarget {
            kind: req.kind,
            workload_name: req.workload_name.as_deref(),
            workload_namespace: req.workload_namespace.as_deref(),
        },
        &parts,
        &req.format,
    )
}

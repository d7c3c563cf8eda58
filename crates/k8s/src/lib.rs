//! Kubernetes objects that carry a trust bundle to workloads, built from k8s-openapi types.
//!
//! - [`trust_configmap`] / [`trust_secret`]: a whole `/etc/ssl/certs` (the PEM bundle as
//!   `ca-certificates.crt` plus a `<hash>.<n>` key per certificate) to mount over the image's own;
//!   [`Layout`] picks the keys.
//! - [`wasmcloud_configmap`]: one `.crt` key per certificate, as wasmCloud's operator reads them.
//! - [`cluster_trust_bundle`]: the bundle published cluster-wide (`certificates.k8s.io/v1beta1`).
//! - [`workload_patch`]: a strategic-merge or JSON patch mounting one of those into the containers
//!   of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod.
//! - [`wasmcloud_host_config_patch`]: the JSON or merge patch adding a `certificates.authorities`
//!   entry to a wasmCloud `WasmCloudHostConfig`, so the operator passes the ConfigMap's `.crt`
//!   keys to the host as `--tls-ca-path` ([`wasmcloud_ca_path`]); empty when already there.
//! - [`agent_patch`]: `anchorage agent` added to a workload as a sidecar (or an init container
//!   with `--once`) writing to an emptyDir mounted over the app's `/etc/ssl/certs`;
//!   [`agent_container`] and [`agent_volumes`] are the agent's container and volumes, as in
//!   `deploy/kubernetes/agent-sidecar`.
//! - [`write_ca_secret`] / [`read_ca_secret`]: a CA's certificate and key in a Secret, in the
//!   Flomesh/OSM `fsm-ca-bundle` or the `kubernetes.io/tls` layout ([`CaSecretLayout`]), written
//!   as a manifest and read back from `kubectl get secret -o yaml|json`.
//! - [`to_yaml`] / [`to_json`]: the objects as a YAML stream or JSON, byte-identical for the same
//!   bundle.
//!
//! Everything the API server would refuse and we can check is refused here with a
//! [`K8sError`] that says why and what to do: names, namespaces, keys, labels, and Kubernetes'
//! 1 MiB limit on an object's data ([`MAX_DATA_BYTES`]). This crate builds and reads values; it
//! reads and writes no files and talks to no cluster.
//!
//! ```
//! use anchorage_k8s::{
//!     Layout, ObjectName, PatchRequest, TrustSource, WorkloadKind, to_yaml, trust_configmap,
//!     workload_patch,
//! };
//! use anchorage_trust::{LoadOptions, Policy, Source, load};
//!
//! let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/sample-ca");
//! let loaded = load(&[Source::Path(sample.into())], &LoadOptions::default());
//! let (bundle, _report) = Policy::default().apply(loaded)?;
//!
//! let name = ObjectName::new("trust").in_namespace("apps");
//! let configmap = trust_configmap(&bundle, &name, &Layout::default())?;
//! let yaml = to_yaml(&[configmap.into()])?;
//! assert!(yaml.starts_with("apiVersion: v1\nkind: ConfigMap\n"));
//! assert!(yaml.contains("  ca-certificates.crt: |"));
//!
//! let request = PatchRequest::new(
//!     WorkloadKind::Deployment,
//!     TrustSource::ConfigMap("trust".into()),
//!     ["app"],
//! );
//! let patch = workload_patch(&request)?;
//! let pod = &patch["spec"]["template"]["spec"];
//! assert_eq!(pod["volumes"][0]["configMap"]["name"], "trust");
//! assert_eq!(pod["containers"][0]["volumeMounts"][0]["mountPath"], "/etc/ssl/certs");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod agent;
mod ca_secret;
mod cluster_trust_bundle;
mod error;
mod host_config;
mod meta;
mod patch;
mod render;
#[cfg(test)]
mod test_util;
mod trust_store;
mod validate;
mod wasmcloud;
pub mod yaml;

pub use agent::{
    AGENT_CONTAINER, AGENT_HASHED_DIR, AGENT_INIT_CONTAINER, AGENT_PEM_FILE, AgentIdentity,
    AgentMode, AgentPatchRequest, AgentSpec, DEFAULT_AGENT_IMAGE, DEFAULT_HEALTHZ_PORT,
    DEFAULT_IDENTITY_MOUNT_PATH, DEFAULT_SERVE_CA_KEY, DEFAULT_SERVE_CA_NAME, DEFAULT_SERVE_URL,
    DEFAULT_TOKEN_KEY, DEFAULT_TOKEN_SECRET, NATIVE_SIDECAR_STARTUP_SECONDS, ServeCaSource,
    agent_container, agent_native_sidecar, agent_patch, agent_volumes,
};
pub use ca_secret::{
    CA_TLS_SECRET_NAME, CaSecret, CaSecretError, CaSecretLayout, FSM_CA_BUNDLE_NAME,
    FSM_CA_CERT_KEY, FSM_EXPIRATION_KEY, FSM_PRIVATE_KEY_KEY, ManifestFormat, OSM_CA_BUNDLE_NAME,
    TLS_CA_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, check_ca_secret_name, read_ca_secret,
    write_ca_secret,
};
pub use cluster_trust_bundle::cluster_trust_bundle;
pub use error::K8sError;
pub use host_config::{
    AuthoritySource, HostConfigAuthority, HostConfigPatchFormat, WASMCLOUD_CERTIFICATES_DIR,
    WASMCLOUD_HOST_CONFIG_API_VERSION, WASMCLOUD_HOST_CONFIG_KIND, wasmcloud_ca_path,
    wasmcloud_host_config_patch,
};
pub use meta::{
    BUNDLE_SHA256_ANNOTATION, CERTIFICATES_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, ObjectName,
    bundle_sha256,
};
pub use patch::{
    CtbSelector, DEFAULT_MOUNT_PATH, DEFAULT_VOLUME_NAME, PatchFormat, PatchRequest, TrustSource,
    WorkloadKind, env_var, workload_patch,
};
pub use render::{Object, to_json, to_yaml};
pub use trust_store::{
    DEFAULT_BUNDLE_KEY, DEFAULT_EXTRA_KEY, DEFAULT_JKS_KEY, DEFAULT_PKCS12_KEY, JKS_PASSWORD,
    Layout, MAX_DATA_BYTES, RHEL_BUNDLE_ALIASES, trust_configmap, trust_secret,
};
pub use wasmcloud::{wasmcloud_configmap, wasmcloud_keys};

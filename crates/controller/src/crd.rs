//! The `Bundle` custom resource (`trust.anchorage.dev/v1alpha1`, cluster-scoped): where the
//! certificates come from, and which object to write in which namespaces.
//!
//! The CRD YAML is generated from these types ([`crd_yaml`]); `deploy/kubernetes/controller/crd.yaml`
//! is that output, and a test keeps the two equal.

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::CustomResourceExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of [`Bundle`].
pub const GROUP: &str = "trust.anchorage.dev";

/// What a `Bundle` asks for: certificates from `sources`, written as `target` (an object named
/// like the Bundle) in every namespace the target's `namespaceSelector` picks.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "trust.anchorage.dev",
    version = "v1alpha1",
    kind = "Bundle",
    status = "BundleStatus",
    shortname = "tb",
    printcolumn = r#"{"name":"Certificates","type":"integer","jsonPath":".status.certificates"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BundleSpec {
    /// Where the certificates come from; all of them are combined (sorted, de-duplicated).
    pub sources: Vec<BundleSource>,
    /// What is written, and where.
    pub target: BundleTarget,
}

/// One source: exactly one of its fields is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSource {
    /// A ConfigMap in the trust namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeySelector>,
    /// A Secret in the trust namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeySelector>,
    /// PEM certificates written in the Bundle itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// Mozilla's root program as compiled into the controller (webpki-root-certs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mozilla_roots: Option<bool>,
    /// The controller container's own system trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_store: Option<bool>,
    /// The trust bundle of an `anchorage serve` control plane (`GET <url>/v1/bundle`), fetched
    /// over HTTPS and refreshed every minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeSource>,
}

/// An `anchorage serve` control plane as a source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServeSource {
    /// serve's base URL, `https://…` (such as `https://anchorage-serve.anchorage:8443`).
    pub url: String,
    /// The ConfigMap key (in the trust namespace) holding the CA that serve's TLS certificate
    /// chains to: serve's `ca.pem`.
    pub ca_config_map: ObjectKey,
}

/// One key of one object in the trust namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// Which keys of a ConfigMap or Secret are read: `key` (one key), `keySuffix` (every key ending
/// so, such as `.crt`, as the wasmCloud operator reads them), or `includeAllKeys`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// The object's name (in the trust namespace).
    pub name: String,
    /// One key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Every key ending with this suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_suffix: Option<String>,
    /// Every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_all_keys: Option<bool>,
}

/// The object written, named like the Bundle: exactly one of `configMap` and `secret` (in each
/// selected namespace) and `clusterTrustBundle` (one, cluster-scoped).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleTarget {
    /// The target object's name; default the Bundle's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Write a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TargetKeys>,
    /// Write an `Opaque` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TargetKeys>,
    /// Write one cluster-scoped `ClusterTrustBundle` (`certificates.k8s.io/v1beta1`, Kubernetes
    /// 1.33+ with the API enabled), which pods read through a `clusterTrustBundle` projected
    /// volume; `namespaceSelector` does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_trust_bundle: Option<ClusterTrustBundleTarget>,
    /// The namespaces written to; absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Java trust stores of the same certificates, written as more keys of the target (binary:
    /// `binaryData` in a ConfigMap), as trust-manager's `additionalFormats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_formats: Option<AdditionalFormats>,
}

/// A `ClusterTrustBundle` target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTrustBundleTarget {
    /// The signer the trust anchors belong to (such as `example.com/mesh`); the object's name is
    /// then `<signerName with / as :>:<name>`, as Kubernetes requires, and pods select it by
    /// signer name and labels. Absent: a bundle not linked to a signer, selected by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_name: Option<String>,
}

/// Java trust stores next to the PEM keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalFormats {
    /// A PKCS#12 trust store without encryption or MAC, which Java 9+ opens with any password
    /// (`-Djavax.net.ssl.trustStoreType=PKCS12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<KeystoreFormat>,
    /// A JKS trust store sealed with `changeit`, Java's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jks: Option<KeystoreFormat>,
}

/// The key of a Java trust store in the target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeystoreFormat {
    /// The key, such as `truststore.p12` or `truststore.jks`.
    pub key: String,
    /// Accepted only at its default, as trust-manager writes it (`""` for PKCS#12, whose store
    /// then has no protection; `changeit` for JKS): a trust store holds public certificates, and
    /// a password written in a cluster-wide object would protect nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The keys of a target object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetKeys {
    /// The layout; default `CertsDir`.
    #[serde(default)]
    pub layout: TargetLayout,
    /// The key of the bundle (`CertsDir`, `BundleKey`) or of the private CAs (`PrivateOnly`);
    /// default `ca-certificates.crt` (`extra-ca.pem` for `PrivateOnly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// How the target's keys are laid out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TargetLayout {
    /// The mount-over-`/etc/ssl/certs` layout: the bundle plus a `<hash>.<n>` key per
    /// certificate, the same bytes `anchorage bundle build` writes.
    #[default]
    CertsDir,
    /// The bundle under one key.
    BundleKey,
    /// Only the private CAs (what Mozilla's roots lack), for `NODE_EXTRA_CA_CERTS`.
    PrivateOnly,
    /// What wasmCloud's operator reads (a host config's `certificates.authorities`): one
    /// `<name>_<fingerprint>.crt` key per certificate and nothing else, the keys
    /// `anchorage k8s wasmcloud` writes. `key` and `additionalFormats` do not apply.
    WasmCloud,
}

/// A label selector over namespaces (the `metav1.LabelSelector` subset: `matchLabels` and
/// `matchExpressions`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels a namespace must carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement: `key` `operator` `values`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl NamespaceSelector {
    /// Whether a namespace with these labels is selected. An unknown operator selects nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// What the controller last did for a Bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// Certificates in the bundle last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<u32>,
    /// `Ready` for the Bundle as a whole, then one `Target/<namespace>` condition per target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Bundle generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A condition in the usual Kubernetes shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, or `Target/<namespace>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    /// What happened, naming objects and keys (never values).
    pub message: String,
}

/// The CRD of [`Bundle`] as YAML, as `anchorage controller crd` prints it.
///
/// # Errors
///
/// None in practice: the generated CRD always serialises.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let crd = Bundle::crd();
    let mut out = String::from(
        "# Generated by `anchorage controller crd` from crates/controller/src/crd.rs: do not edit.\n",
    );
    out.push_str(&serde_yaml_ng::to_string(&crd)?);
    Ok(out)
}

//! The desired state, pure: a [`Bundle`], the source objects of the trust namespace, the
//! namespaces and the other Bundles → the target objects to write, or typed [`Refusal`]s.
//!
//! No I/O and no clock: the reconciler ([`crate::reconcile`]) feeds it what its caches hold, and
//! the tests feed it plain values. A refusal of the sources (a private key, a value that is not
//! PEM, a missing object or key, no certificate at all, too large a target) yields no target at
//! all, so a target is never written half-right; a conflict with another Bundle refuses that one
//! namespace only.

use std::collections::BTreeMap;

use anchorage_bundle::{Bundle as CertBundle, Origin};
use anchorage_k8s::{
    JKS_PASSWORD, K8sError, Layout, ObjectName, trust_configmap, trust_secret, wasmcloud_configmap,
};
use anchorage_x509::{Certificate, Input};
use k8s_openapi::api::certificates::v1beta1::{ClusterTrustBundle, ClusterTrustBundleSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;
use sha2::{Digest as _, Sha256};

use crate::crd::{
    AdditionalFormats, Bundle, BundleSource, ClusterTrustBundleTarget, KeySelector, TargetLayout,
};

/// The label naming the Bundle that owns a target; the controller caches targets by it alone.
pub const BUNDLE_LABEL: &str = "trust.anchorage.dev/bundle";
/// The annotation holding the SHA-256 of a target's labels and data: equal means not rewritten.
pub const CONTENT_HASH_ANNOTATION: &str = "trust.anchorage.dev/content-sha256";
/// The default key of the `PrivateOnly` layout.
pub const DEFAULT_PRIVATE_KEY: &str = anchorage_k8s::DEFAULT_EXTRA_KEY;
/// The kind of a cluster-scoped [`TargetObject::ClusterTrustBundle`].
pub const CLUSTER_TRUST_BUNDLE: &str = "ClusterTrustBundle";
/// What stands for the namespace of a cluster-scoped target in conditions (`Target/cluster`)
/// and messages.
pub const CLUSTER_SCOPE: &str = "cluster";

/// Why a Bundle (or one of its targets) is not written. Names objects and keys, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A source value holds a private key: the whole Bundle is refused.
    #[error(
        "{object} key `{key}` holds a private key: sources must hold certificates only; move the key out of that object"
    )]
    PrivateKey {
        /// `ConfigMap <ns>/<name>` or `Secret <ns>/<name>` (or `inline`).
        object: String,
        /// The key.
        key: String,
    },
    /// A source value is not PEM certificates.
    #[error(
        "{object} key `{key}` is not PEM certificates ({detail}); put PEM certificates there or select other keys"
    )]
    NotPem {
        /// The object.
        object: String,
        /// The key.
        key: String,
        /// What was found instead.
        detail: String,
    },
    /// A source object does not exist in the trust namespace.
    #[error("{object} does not exist; create it in the trust namespace or remove the source")]
    MissingSource {
        /// The object.
        object: String,
    },
    /// A source object lacks the key asked for, or no key matches the suffix.
    #[error("{object} has no key {what}; add it or change the source's key selection")]
    MissingKey {
        /// The object.
        object: String,
        /// `` `ca.crt` `` or `` ending in `.crt` ``.
        what: String,
    },
    /// The Bundle's spec cannot be used as written.
    #[error("invalid Bundle spec: {0}")]
    InvalidSpec(String),
    /// All the sources together hold no certificate.
    #[error(
        "the sources yield no certificate; add a source with certificates (an empty target would break every TLS client mounting it)"
    )]
    NoCertificates,
    /// The target would be over Kubernetes' 1 MiB limit, or is otherwise invalid.
    #[error("the target cannot be built: {0}")]
    Target(String),
    /// A source fetched over the network could not be read (the targets keep what they have).
    #[error("{object} could not be fetched: {detail}; the targets keep their current contents")]
    SourceUnavailable {
        /// `anchorage serve <url>`.
        object: String,
        /// Why.
        detail: String,
    },
    /// The cluster does not serve the API the target needs.
    #[error(
        "the cluster does not serve {api}; enable it (ClusterTrustBundle: Kubernetes 1.33+, feature gate ClusterTrustBundle and --runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true) or use a ConfigMap target"
    )]
    ApiNotServed {
        /// `certificates.k8s.io/v1beta1 ClusterTrustBundle`.
        api: &'static str,
    },
    /// Another Bundle already writes this target in this namespace.
    #[error(
        "{kind} {namespace}/{name} is written by Bundle `{other}` already; give one of the two Bundles another target name"
    )]
    Conflict {
        /// The namespace.
        namespace: String,
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The target name.
        name: String,
        /// The Bundle that keeps it.
        other: String,
    },
}

impl Refusal {
    /// One CamelCase word for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PrivateKey { .. } => "PrivateKeyInSource",
            Self::NotPem { .. } => "NotPem",
            Self::MissingSource { .. } => "SourceMissing",
            Self::MissingKey { .. } => "SourceKeyMissing",
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::NoCertificates => "NoCertificates",
            Self::Target(_) => "TargetInvalid",
            Self::ApiNotServed { .. } => "ApiNotServed",
            Self::SourceUnavailable { .. } => "SourceUnavailable",
            Self::Conflict { .. } => "TargetConflict",
        }
    }
}

/// The trust namespace's ConfigMaps and Secrets (name → key → bytes), and the certificates of
/// the compiled-in Mozilla roots and of the system store (loaded once by the caller).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The trust namespace.
    pub namespace: String,
    /// ConfigMaps: `data` and `binaryData` together.
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secrets: `data`.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Mozilla's roots, with their origins.
    pub mozilla: Vec<(Certificate, Origin)>,
    /// The system store, with its origins.
    pub system: Vec<(Certificate, Origin)>,
    /// What each `serve` source's URL answered (fetched by the caller): the PEM bundle, or why
    /// it could not be fetched.
    pub fetched: BTreeMap<String, Result<Vec<u8>, String>>,
}

impl Sources {
    /// The ConfigMap's keys and values, as [`Sources::config_maps`] holds them.
    pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        out.extend(
            cm.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
        out
    }

    /// The Secret's keys and values (`data` over `stringData`).
    pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        out.extend(
            secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
        out
    }
}

/// A namespace: its name and labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// The name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A target object, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetObject {
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// An `Opaque` Secret.
    Secret(Secret),
    /// A cluster-scoped `ClusterTrustBundle` (`certificates.k8s.io/v1beta1`).
    ClusterTrustBundle(ClusterTrustBundle),
}

impl TargetObject {
    /// `ConfigMap`, `Secret` or `ClusterTrustBundle`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ConfigMap(_) => "ConfigMap",
            Self::Secret(_) => "Secret",
            Self::ClusterTrustBundle(_) => CLUSTER_TRUST_BUNDLE,
        }
    }

    /// The namespace the object goes to; empty for a cluster-scoped one.
    pub fn namespace(&self) -> String {
        self.metadata().namespace.clone().unwrap_or_default()
    }

    /// The object's name.
    pub fn name(&self) -> String {
        self.metadata().name.clone().unwrap_or_default()
    }

    /// Its [`CONTENT_HASH_ANNOTATION`].
    pub fn content_hash(&self) -> Option<String> {
        self.metadata()
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONTENT_HASH_ANNOTATION).cloned())
    }

    /// Its metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::ConfigMap(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::ClusterTrustBundle(o) => &o.metadata,
        }
    }

    /// Its metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::ConfigMap(o) => &mut o.metadata,
            Self::Secret(o) => &mut o.metadata,
            Self::ClusterTrustBundle(o) => &mut o.metadata,
        }
    }
}

/// What a Bundle should look like in the cluster.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// Certificates in the bundle.
    pub certificates: usize,
    /// One object per selected namespace that can be written.
    pub targets: Vec<TargetObject>,
    /// Selected namespaces whose target is refused (a conflict), with why.
    pub refused: Vec<(String, Refusal)>,
}

/// The target kind and name of a Bundle: `configMap`, `secret` or `clusterTrustBundle`, named
/// `target.name` or like the Bundle (a ClusterTrustBundle with a signer: prefixed
/// `<signerName with / as :>:`, as Kubernetes requires).
pub fn target_of(bundle: &Bundle) -> Result<(&'static str, String), Refusal> {
    let t = &bundle.spec.target;
    let name = t.name.clone().unwrap_or_else(|| bundle.name_any());
    match (&t.config_map, &t.secret, &t.cluster_trust_bundle) {
        (Some(_), None, None) => Ok(("ConfigMap", name)),
        (None, Some(_), None) => Ok(("Secret", name)),
        (None, None, Some(ctb)) => {
            Ok((CLUSTER_TRUST_BUNDLE, cluster_trust_bundle_name(ctb, &name)?))
        }
        _ => Err(Refusal::InvalidSpec(
            "target needs exactly one of configMap, secret and clusterTrustBundle".into(),
        )),
    }
}

/// The name Kubernetes requires of a ClusterTrustBundle: with a signer `a.example/b`,
/// `a.example:b:<name>`; without, `<name>`, which must then hold no `:`.
fn cluster_trust_bundle_name(
    target: &ClusterTrustBundleTarget,
    name: &str,
) -> Result<String, Refusal> {
    match &target.signer_name {
        Some(signer) => {
            let (domain, path) = signer.split_once('/').unwrap_or_default();
            if domain.is_empty() || path.is_empty() || !domain.contains('.') {
                return Err(Refusal::InvalidSpec(format!(
                    "target.clusterTrustBundle.signerName `{signer}` is not a signer name: write it as `<domain>/<path>`, such as `example.com/mesh`"
                )));
            }
            Ok(format!("{}:{name}", signer.replace('/', ":")))
        }
        None if name.contains(':') => Err(Refusal::InvalidSpec(format!(
            "the ClusterTrustBundle name `{name}` holds `:`, which Kubernetes reserves for signer-linked bundles: set target.clusterTrustBundle.signerName or another name"
        ))),
        None => Ok(name.to_owned()),
    }
}

/// The desired state of `bundle` (see the module docs). `others` are every other Bundle in the
/// cluster: where one whose name sorts first writes the same target in a namespace, that
/// namespace is refused to this one.
///
/// # Errors
///
/// Every refusal of the sources or of the spec, all of them (not only the first).
pub fn desired(
    bundle: &Bundle,
    others: &[Bundle],
    sources: &Sources,
    namespaces: &[Namespace],
) -> Result<Desired, Vec<Refusal>> {
    let (kind, name) = target_of(bundle).map_err(|r| vec![r])?;
    let certs = collect(bundle, sources)?;
    if certs.is_empty() {
        return Err(vec![Refusal::NoCertificates]);
    }
    if let Some(ctb) = &bundle.spec.target.cluster_trust_bundle {
        return cluster_trust_bundle(bundle, others, ctb, &name, &certs);
    }
    let keys = bundle
        .spec
        .target
        .config_map
        .as_ref()
        .or(bundle.spec.target.secret.as_ref())
        .cloned()
        .unwrap_or_default();
    let (content, mut layout) = match keys.layout {
        TargetLayout::CertsDir => (
            certs,
            Layout {
                bundle_key: keys
                    .key
                    .unwrap_or_else(|| anchorage_k8s::DEFAULT_BUNDLE_KEY.into()),
                ..Layout::default()
            },
        ),
        TargetLayout::BundleKey => (
            certs,
            Layout {
                bundle_key: keys
                    .key
                    .unwrap_or_else(|| anchorage_k8s::DEFAULT_BUNDLE_KEY.into()),
                ..Layout::bundle_only()
            },
        ),
        TargetLayout::PrivateOnly => {
            let private = certs.without_mozilla_roots();
            if private.is_empty() {
                return Err(vec![Refusal::NoCertificates]);
            }
            (
                private,
                Layout {
                    bundle_key: keys.key.unwrap_or_else(|| DEFAULT_PRIVATE_KEY.into()),
                    ..Layout::bundle_only()
                },
            )
        }
        TargetLayout::WasmCloud => {
            if keys.key.is_some() || bundle.spec.target.additional_formats.is_some() {
                return Err(vec![Refusal::InvalidSpec(
                    "the WasmCloud layout names its own `.crt` keys (the operator reads nothing else): remove `key` and `additionalFormats`".into(),
                )]);
            }
            (certs, Layout::bundle_only())
        }
    };
    let shape = if keys.layout == TargetLayout::WasmCloud {
        Shape::WasmCloud
    } else {
        Shape::Layout
    };
    if let Some(formats) = &bundle.spec.target.additional_formats {
        java_stores(formats, &mut layout).map_err(|r| vec![r])?;
    }
    let selector = bundle
        .spec
        .target
        .namespace_selector
        .clone()
        .unwrap_or_default();
    let owner = bundle.name_any();
    let mut out = Desired {
        certificates: content.len(),
        ..Desired::default()
    };
    for ns in namespaces.iter().filter(|ns| selector.matches(&ns.labels)) {
        if let Some(other) = others.iter().filter(|o| o.name_any() < owner).find(|o| {
            o.name_any() != owner
                && target_of(o).is_ok_and(|t| t == (kind, name.clone()))
                && o.spec
                    .target
                    .namespace_selector
                    .clone()
                    .unwrap_or_default()
                    .matches(&ns.labels)
        }) {
            out.refused.push((
                ns.name.clone(),
                Refusal::Conflict {
                    namespace: ns.name.clone(),
                    kind,
                    name: name.clone(),
                    other: other.name_any(),
                },
            ));
            continue;
        }
        let meta = ObjectName::new(&name)
            .in_namespace(&ns.name)
            .with_label(BUNDLE_LABEL, &owner);
        let target = build(kind, &content, &meta, &layout, shape)
            .map_err(|e| vec![Refusal::Target(e.to_string())])?;
        out.targets.push(target);
    }
    Ok(out)
}

/// The `additionalFormats` keys added to `layout`; a password other than the default refused.
fn java_stores(formats: &AdditionalFormats, layout: &mut Layout) -> Result<(), Refusal> {
    if let Some(p12) = &formats.pkcs12 {
        if p12.password.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(Refusal::InvalidSpec(
                "target.additionalFormats.pkcs12.password: only the empty password is supported (the store is written without protection, and Java opens it with any password); remove the field".into(),
            ));
        }
        layout.pkcs12_key = Some(p12.key.clone());
    }
    if let Some(jks) = &formats.jks {
        if jks.password.as_deref().is_some_and(|p| p != JKS_PASSWORD) {
            return Err(Refusal::InvalidSpec(format!(
                "target.additionalFormats.jks.password: only `{JKS_PASSWORD}` (Java's default) is supported; remove the field"
            )));
        }
        layout.jks_key = Some(jks.key.clone());
    }
    Ok(())
}

/// The desired state of a Bundle whose target is a ClusterTrustBundle: one object, or a
/// conflict with a Bundle whose name sorts first.
fn cluster_trust_bundle(
    bundle: &Bundle,
    others: &[Bundle],
    target: &ClusterTrustBundleTarget,
    name: &str,
    certs: &CertBundle,
) -> Result<Desired, Vec<Refusal>> {
    let t = &bundle.spec.target;
    if t.namespace_selector.is_some() || t.additional_formats.is_some() {
        return Err(vec![Refusal::InvalidSpec(
            "a clusterTrustBundle target is one cluster-scoped object of PEM certificates: remove namespaceSelector and additionalFormats".into(),
        )]);
    }
    // Kubernetes accepts CA certificates only in a ClusterTrustBundle.
    let not_ca: Vec<Refusal> = certs
        .entries()
        .iter()
        .filter(|e| !e.certificate.is_ca())
        .map(|e| {
            let from = e.origins.first().map_or_else(String::new, |o| match &o.detail {
                Some(detail) => format!(" (from {} {detail})", o.source),
                None => format!(" (from {})", o.source),
            });
            Refusal::Target(format!(
                "`{}`{from} is not a CA certificate, and a ClusterTrustBundle holds CA certificates only; remove it from the sources or use a ConfigMap target",
                e.certificate.subject()
            ))
        })
        .collect();
    if !not_ca.is_empty() {
        return Err(not_ca);
    }
    let owner = bundle.name_any();
    let mut out = Desired {
        certificates: certs.len(),
        ..Desired::default()
    };
    if let Some(other) = others
        .iter()
        .filter(|o| o.name_any() < owner)
        .find(|o| target_of(o).is_ok_and(|t| t == (CLUSTER_TRUST_BUNDLE, name.to_owned())))
    {
        out.refused.push((
            CLUSTER_SCOPE.to_owned(),
            Refusal::Conflict {
                namespace: CLUSTER_SCOPE.to_owned(),
                kind: CLUSTER_TRUST_BUNDLE,
                name: name.to_owned(),
                other: other.name_any(),
            },
        ));
        return Ok(out);
    }
    // Certificates only: Kubernetes refuses PEM block headers, and comments serve nobody here.
    let pem =
        anchorage_bundle::render_pem(certs, &anchorage_bundle::PemOptions { comments: false });
    if pem.len() > anchorage_k8s::MAX_DATA_BYTES {
        return Err(vec![Refusal::Target(format!(
            "the ClusterTrustBundle would hold {} bytes of PEM, over Kubernetes' {} byte limit; select fewer certificates",
            pem.len(),
            anchorage_k8s::MAX_DATA_BYTES
        ))]);
    }
    let mut object = TargetObject::ClusterTrustBundle(ClusterTrustBundle {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(BUNDLE_LABEL.to_owned(), owner)].into()),
            ..ObjectMeta::default()
        },
        spec: ClusterTrustBundleSpec {
            signer_name: target.signer_name.clone(),
            trust_bundle: pem,
        },
    });
    let hash = content_hash(&object);
    object
        .metadata_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONTENT_HASH_ANNOTATION.into(), hash);
    out.targets.push(object);
    Ok(out)
}

/// How the target's keys are made: by [`Layout`], or as wasmCloud's operator reads them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Layout,
    WasmCloud,
}

/// The object with its [`CONTENT_HASH_ANNOTATION`] set.
fn build(
    kind: &str,
    content: &CertBundle,
    meta: &ObjectName,
    layout: &Layout,
    shape: Shape,
) -> Result<TargetObject, K8sError> {
    let mut target = match (kind, shape) {
        ("ConfigMap", Shape::Layout) => {
            TargetObject::ConfigMap(trust_configmap(content, meta, layout)?)
        }
        (_, Shape::Layout) => TargetObject::Secret(trust_secret(content, meta, layout)?),
        ("ConfigMap", Shape::WasmCloud) => {
            TargetObject::ConfigMap(wasmcloud_configmap(content, meta)?)
        }
        (_, Shape::WasmCloud) => {
            // The same keys and values as the ConfigMap, in an Opaque Secret (the operator
            // reads `.crt` keys from either).
            let cm = wasmcloud_configmap(content, meta)?;
            TargetObject::Secret(Secret {
                metadata: cm.metadata,
                type_: Some("Opaque".into()),
                data: cm.data.map(|data| {
                    data.into_iter()
                        .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                        .collect()
                }),
                ..Secret::default()
            })
        }
    };
    let hash = content_hash(&target);
    target
        .metadata_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONTENT_HASH_ANNOTATION.into(), hash);
    Ok(target)
}

/// SHA-256 over the labels, the other annotations and the data, in a fixed order.
fn content_hash(target: &TargetObject) -> String {
    let mut h = Sha256::new();
    let mut feed = |k: &str, v: &[u8]| {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    };
    let meta = target.metadata();
    let (labels, annotations) = (
        meta.labels.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
    );
    for (k, v) in &labels {
        feed(&format!("label:{k}"), v.as_bytes());
    }
    for (k, v) in annotations
        .iter()
        .filter(|(k, _)| *k != CONTENT_HASH_ANNOTATION)
    {
        feed(&format!("annotation:{k}"), v.as_bytes());
    }
    match target {
        TargetObject::ConfigMap(o) => {
            for (k, v) in o.data.iter().flatten() {
                feed(&format!("data:{k}"), v.as_bytes());
            }
            for (k, v) in o.binary_data.iter().flatten() {
                feed(&format!("binaryData:{k}"), &v.0);
            }
        }
        TargetObject::Secret(o) => {
            for (k, v) in o.data.iter().flatten() {
                feed(&format!("data:{k}"), &v.0);
            }
        }
        TargetObject::ClusterTrustBundle(o) => {
            if let Some(signer) = &o.spec.signer_name {
                feed("signerName", signer.as_bytes());
            }
            feed("trustBundle", o.spec.trust_bundle.as_bytes());
        }
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every certificate of every source, or every refusal found.
fn collect(bundle: &Bundle, sources: &Sources) -> Result<CertBundle, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut items: Vec<(Certificate, Origin)> = Vec::new();
    for source in &bundle.spec.sources {
        read_source(source, sources, &mut items, &mut refusals);
    }
    if refusals.is_empty() {
        Ok(CertBundle::new(items))
    } else {
        Err(refusals)
    }
}

fn read_source(
    source: &BundleSource,
    sources: &Sources,
    items: &mut Vec<(Certificate, Origin)>,
    refusals: &mut Vec<Refusal>,
) {
    let set = usize::from(source.config_map.is_some())
        + usize::from(source.secret.is_some())
        + usize::from(source.inline.is_some())
        + usize::from(source.mozilla_roots.is_some())
        + usize::from(source.system_store.is_some())
        + usize::from(source.serve.is_some());
    if set != 1 {
        refusals.push(Refusal::InvalidSpec(format!(
            "each source needs exactly one of configMap, secret, inline, mozillaRoots, systemStore, serve ({set} set)"
        )));
        return;
    }
    if let Some(serve) = &source.serve {
        let object = serve_source_name(&serve.url);
        if !serve.url.starts_with("https://") {
            refusals.push(Refusal::InvalidSpec(format!(
                "the serve source `{}` is not an https:// URL: serve answers over TLS only",
                serve.url
            )));
            return;
        }
        match sources.fetched.get(&serve.url) {
            Some(Ok(body)) => read_value(&object, "/v1/bundle", body, items, refusals),
            Some(Err(detail)) => refusals.push(Refusal::SourceUnavailable {
                object,
                detail: detail.clone(),
            }),
            None => refusals.push(Refusal::SourceUnavailable {
                object,
                detail: "not fetched".into(),
            }),
        }
        return;
    }
    if let Some(sel) = &source.config_map {
        let object = format!("ConfigMap {}/{}", sources.namespace, sel.name);
        read_object(
            &object,
            sel,
            sources.config_maps.get(&sel.name),
            items,
            refusals,
        );
    } else if let Some(sel) = &source.secret {
        let object = format!("Secret {}/{}", sources.namespace, sel.name);
        read_object(
            &object,
            sel,
            sources.secrets.get(&sel.name),
            items,
            refusals,
        );
    } else if let Some(pem) = &source.inline {
        read_value(
            "the Bundle's inline source",
            "inline",
            pem.as_bytes(),
            items,
            refusals,
        );
    } else if source.mozilla_roots == Some(true) {
        items.extend(sources.mozilla.iter().cloned());
    } else if source.system_store == Some(true) {
        items.extend(sources.system.iter().cloned());
    }
}

/// How a `serve` source is named in refusals and origins.
pub fn serve_source_name(url: &str) -> String {
    format!("anchorage serve {url}")
}

fn read_object(
    object: &str,
    sel: &KeySelector,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: &mut Vec<(Certificate, Origin)>,
    refusals: &mut Vec<Refusal>,
) {
    let Some(data) = data else {
        refusals.push(Refusal::MissingSource {
            object: object.to_owned(),
        });
        return;
    };
    let modes = usize::from(sel.key.is_some())
        + usize::from(sel.key_suffix.is_some())
        + usize::from(sel.include_all_keys == Some(true));
    if modes != 1 {
        refusals.push(Refusal::InvalidSpec(format!(
            "the source {object} needs exactly one of key, keySuffix, includeAllKeys: true"
        )));
        return;
    }
    let keys: Vec<&String> = if let Some(key) = &sel.key {
        data.keys().filter(|k| *k == key).collect()
    } else if let Some(suffix) = &sel.key_suffix {
        data.keys()
            .filter(|k| k.ends_with(suffix.as_str()))
            .collect()
    } else {
        data.keys().collect()
    };
    if keys.is_empty() {
        let what = match (&sel.key, &sel.key_suffix) {
            (Some(key), _) => format!("`{key}`"),
            (None, Some(suffix)) => format!("ending in `{suffix}`"),
            _ => "at all".to_owned(),
        };
        refusals.push(Refusal::MissingKey {
            object: object.to_owned(),
            what,
        });
        return;
    }
    for key in keys {
        read_value(object, key, &data[key], items, refusals);
    }
}

fn read_value(
    object: &str,
    key: &str,
    value: &[u8],
    items: &mut Vec<(Certificate, Origin)>,
    refusals: &mut Vec<Refusal>,
) {
    let decoded = anchorage_x509::decode(value);
    if decoded.has_private_key() {
        refusals.push(Refusal::PrivateKey {
            object: object.to_owned(),
            key: key.to_owned(),
        });
        return;
    }
    let detail = if decoded.input != Input::Pem {
        Some(format!("{:?} input", decoded.input).to_lowercase())
    } else if let Some(p) = decoded.problems.first() {
        Some(format!("{}: {}", p.position, p.error))
    } else if decoded.certificates.is_empty() {
        Some("no certificate".to_owned())
    } else {
        None
    };
    if let Some(detail) = detail {
        refusals.push(Refusal::NotPem {
            object: object.to_owned(),
            key: key.to_owned(),
            detail,
        });
        return;
    }
    let origin = Origin {
        source: object.to_owned(),
        detail: Some(format!("key {key}")),
        position: Default::default(),
    };
    items.extend(
        decoded
            .certificates
            .into_iter()
            .map(|f| (f.certificate, origin.at(f.position))),
    );
}

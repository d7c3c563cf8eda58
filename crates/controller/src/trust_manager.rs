//! Reading trust-manager's `Bundle` (`trust.cert-manager.io/v1alpha1`), so a cluster can move
//! over without rewriting its Bundles: [`TrustManagerBundle`] is the subset of its schema that
//! matters here, and [`to_anchorage`] turns one into an anchorage [`Bundle`] (pure), or refuses
//! what this slice does not do yet, naming the field.
//!
//! Mapping: `sources[].configMap`/`secret` `{name, key | includeAllKeys}` → the same source;
//! `inLine` → `inline`; `useDefaultCAs: true` → `mozillaRoots: true` (trust-manager's default
//! CA package is Debian's `ca-certificates`, which is Mozilla's list); `target.configMap.key` or
//! `target.secret.key` → the `BundleKey` layout under that key (trust-manager writes the bundle
//! under one key); `namespaceSelector.matchLabels` → the same; a source `selector` over labels
//! (`matchLabels`, `matchExpressions`) → one source per ConfigMap or Secret of the trust
//! namespace it matches, with the same `key`/`includeAllKeys` ([`to_anchorage_in`], given the
//! trust namespace's labels; none matching: nothing from that source, as trust-manager). Not yet
//! (refused): both targets at once. `additionalFormats` (JKS/PKCS#12) is
//! carried over; a password other than trust-manager's default is then refused by the desired
//! state, naming the field.
//! The running controller reconciles them with `--trust-manager-bundles`
//! ([`crate::Settings::trust_manager_bundles`]): through the same desired-state path, their
//! targets labelled [`TRUST_MANAGER_LABEL`] (not [`crate::desired::BUNDLE_LABEL`]) and owned by
//! the trust-manager Bundle, and their `status.conditions` written in trust-manager's condition
//! shape ([`TmCondition`]).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::{
    AdditionalFormats, Bundle, BundleSource, BundleSpec, BundleTarget, KeySelector, KeystoreFormat,
    NamespaceSelector, TargetKeys, TargetLayout,
};
use crate::desired::Refusal;

/// The label on the targets of a trust-manager Bundle: its name. Targets of anchorage Bundles
/// carry [`crate::desired::BUNDLE_LABEL`] instead, so neither kind cleans up the other's.
pub const TRUST_MANAGER_LABEL: &str = "trust.anchorage.dev/trust-manager-bundle";

/// trust-manager's Bundle spec (the fields read; others are ignored).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "trust.cert-manager.io",
    version = "v1alpha1",
    kind = "Bundle",
    root = "TrustManagerBundle",
    status = "TrustManagerBundleStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct TrustManagerBundleSpec {
    /// The sources.
    #[serde(default)]
    pub sources: Vec<TmSource>,
    /// The target.
    #[serde(default)]
    pub target: TmTarget,
}

/// trust-manager's Bundle status: the conditions (trust-manager's own `defaultCAVersion` is not
/// written).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustManagerBundleStatus {
    /// `Ready` and one `Target/<namespace>` per target, as on an anchorage Bundle.
    #[serde(default)]
    pub conditions: Vec<TmCondition>,
}

/// trust-manager's condition shape (a `metav1.Condition`: `lastTransitionTime` required).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TmCondition {
    /// The type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// What happened.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
    /// The generation the condition is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One trust-manager source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TmSource {
    /// A ConfigMap in trust-manager's trust namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TmKeySelector>,
    /// A Secret in the trust namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TmKeySelector>,
    /// PEM in the Bundle.
    #[serde(default, rename = "inLine", skip_serializing_if = "Option::is_none")]
    pub in_line: Option<String>,
    /// trust-manager's default CA package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_c_as: Option<bool>,
}

/// trust-manager's source object selection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TmKeySelector {
    /// The object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_all_keys: Option<bool>,
    /// Objects by label (a `metav1.LabelSelector`), instead of `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<serde_json::Value>,
}

/// trust-manager's target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TmTarget {
    /// A ConfigMap, the bundle under `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TmTargetKey>,
    /// A Secret, the bundle under `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TmTargetKey>,
    /// JKS/PKCS#12 trust stores next to the PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_formats: Option<TmAdditionalFormats>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<TmNamespaceSelector>,
}

/// trust-manager's `additionalFormats`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TmAdditionalFormats {
    /// A JKS trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jks: Option<TmKeystore>,
    /// A PKCS#12 trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<TmKeystore>,
}

/// One of trust-manager's keystore formats.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TmKeystore {
    /// The key.
    pub key: String,
    /// The store password (trust-manager's defaults: `changeit` for JKS, `""` for PKCS#12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PKCS#12 only: trust-manager's encryption profile (`LegacyRC2`, `LegacyDES`,
    /// `Modern2023`). Not carried over: anchorage writes the store without encryption or MAC,
    /// which every reader those profiles exist for opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A target key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TmTargetKey {
    /// The key.
    pub key: String,
}

/// trust-manager's namespace selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TmNamespaceSelector {
    /// Labels a namespace must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// The labels of the trust namespace's ConfigMaps and Secrets, by name: what a source
/// `selector` is matched against ([`to_anchorage_in`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustNamespaceLabels {
    /// ConfigMap name → its labels.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → its labels.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Whether any source of `tm` selects objects by label (so the caller needs
/// [`TrustNamespaceLabels`]).
pub fn has_selector(tm: &TrustManagerBundle) -> bool {
    tm.spec.sources.iter().any(|s| {
        [&s.config_map, &s.secret]
            .into_iter()
            .flatten()
            .any(|k| k.selector.is_some())
    })
}

/// [`to_anchorage_in`] without labels: a source `selector` matches nothing. For what does not
/// depend on sources (the target names), e.g. telling which Bundles write the same target.
///
/// # Errors
///
/// As [`to_anchorage_in`].
pub fn to_anchorage(tm: &TrustManagerBundle) -> Result<Bundle, Vec<Refusal>> {
    to_anchorage_in(tm, &TrustNamespaceLabels::default())
}

/// The anchorage Bundle a trust-manager Bundle means (same name, so same target names), a
/// source `selector` matched against `labels` (one source per matching object, by name, in
/// name order).
///
/// # Errors
///
/// Every field this slice cannot honour, and a selector that does not parse (or a source with
/// both `name` and `selector`, or neither), as [`Refusal::InvalidSpec`] naming it.
pub fn to_anchorage_in(
    tm: &TrustManagerBundle,
    labels: &TrustNamespaceLabels,
) -> Result<Bundle, Vec<Refusal>> {
    use kube::core::{Selector, SelectorExt as _};
    let name = kube::ResourceExt::name_any(tm);
    let mut refusals = Vec::new();
    let mut sources = Vec::new();
    for (i, s) in tm.spec.sources.iter().enumerate() {
        let mut select = |sel: &TmKeySelector,
                          kind: &str,
                          objects: &BTreeMap<String, BTreeMap<String, String>>|
         -> Vec<KeySelector> {
            let keys = |name: &str| KeySelector {
                name: name.to_owned(),
                key: sel.key.clone(),
                key_suffix: None,
                include_all_keys: sel.include_all_keys.filter(|all| *all),
            };
            let field = format!("sources[{i}].{kind}");
            match (&sel.name, &sel.selector) {
                (Some(n), None) => vec![keys(n)],
                (None, Some(value)) => {
                    let parsed = serde_json::from_value::<
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                    >(value.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|l| Selector::try_from(l).map_err(|e| e.to_string()));
                    match parsed {
                        Ok(selector) => objects
                            .iter()
                            .filter(|(_, l)| selector.matches(l))
                            .map(|(n, _)| keys(n))
                            .collect(),
                        Err(e) => {
                            refusals.push(Refusal::InvalidSpec(format!(
                                "trust-manager Bundle `{name}`: {field}.selector is not a label selector ({e})"
                            )));
                            Vec::new()
                        }
                    }
                }
                _ => {
                    refusals.push(Refusal::InvalidSpec(format!(
                        "trust-manager Bundle `{name}`: {field} needs exactly one of `name` and `selector`"
                    )));
                    Vec::new()
                }
            }
        };
        if let Some(sel) = &s.config_map {
            sources.extend(
                select(sel, "configMap", &labels.config_maps)
                    .into_iter()
                    .map(|k| BundleSource {
                        config_map: Some(k),
                        ..BundleSource::default()
                    }),
            );
            continue;
        }
        if let Some(sel) = &s.secret {
            sources.extend(select(sel, "secret", &labels.secrets).into_iter().map(|k| {
                BundleSource {
                    secret: Some(k),
                    ..BundleSource::default()
                }
            }));
            continue;
        }
        let source = if let Some(pem) = &s.in_line {
            BundleSource {
                inline: Some(pem.clone()),
                ..BundleSource::default()
            }
        } else if s.use_default_c_as == Some(true) {
            BundleSource {
                mozilla_roots: Some(true),
                ..BundleSource::default()
            }
        } else {
            continue;
        };
        sources.push(source);
    }
    let t = &tm.spec.target;
    let additional_formats = t.additional_formats.as_ref().map(|f| {
        let format = |k: &TmKeystore| KeystoreFormat {
            key: k.key.clone(),
            password: k.password.clone(),
        };
        AdditionalFormats {
            pkcs12: f.pkcs12.as_ref().map(format),
            jks: f.jks.as_ref().map(format),
        }
    });
    let keys = |k: &TmTargetKey| TargetKeys {
        layout: TargetLayout::BundleKey,
        key: Some(k.key.clone()),
    };
    let (config_map, secret) = match (&t.config_map, &t.secret) {
        (Some(_), Some(_)) => {
            refusals.push(Refusal::InvalidSpec(format!(
                "trust-manager Bundle `{name}`: a ConfigMap and a Secret target at once is not supported yet"
            )));
            (None, None)
        }
        (cm, s) => (cm.as_ref().map(keys), s.as_ref().map(keys)),
    };
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(Bundle::new(
        &name,
        BundleSpec {
            sources,
            target: BundleTarget {
                name: None,
                config_map,
                secret,
                namespace_selector: t.namespace_selector.as_ref().map(|s| NamespaceSelector {
                    match_labels: s.match_labels.clone(),
                    match_expressions: Vec::new(),
                }),
                additional_formats,
                cluster_trust_bundle: None,
            },
        },
    ))
}

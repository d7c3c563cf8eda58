//! [`ObjectName`]: who an object is (name, namespace, labels, annotations), validated into
//! `ObjectMeta` with the labels and annotations every Anchorage object carries.

use std::collections::BTreeMap;

use anchorage_bundle::{Bundle, PemOptions, render_pem};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::Digest as _;

use crate::error::K8sError;
use crate::validate;

/// The label every object we build carries, with the value [`MANAGED_BY`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "anchorage";
/// Annotation holding [`bundle_sha256`]: copy it into a pod template (see
/// [`crate::PatchRequest::pod_annotations`]) so a changed bundle rolls the workload out.
pub const BUNDLE_SHA256_ANNOTATION: &str = "anchorage.io/bundle-sha256";
/// Annotation holding the number of certificates in the bundle.
pub const CERTIFICATES_ANNOTATION: &str = "anchorage.io/certificates";

/// Name, namespace, labels and annotations of an object to build.
///
/// Labels and annotations are the caller's own; [`MANAGED_BY_LABEL`],
/// [`BUNDLE_SHA256_ANNOTATION`] and [`CERTIFICATES_ANNOTATION`] are added to them and may not be
/// given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectName {
    /// The object's name (a DNS-1123 subdomain).
    pub name: String,
    /// The namespace (a DNS-1123 label); `None` leaves it to `kubectl` (the current namespace)
    /// and is required for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ObjectName {
    /// An object called `name`, in no particular namespace.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The same object in `namespace`.
    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The same object with one more label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The same object with one more annotation.
    #[must_use]
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// `Kind namespace/name`, for messages.
    pub(crate) fn describe(&self, kind: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{kind} {ns}/{}", self.name),
            None => format!("{kind} {}", self.name),
        }
    }

    /// Validates everything and builds the metadata, adding our label and `annotations`.
    ///
    /// For a cluster-scoped object the name is left to the caller, whose rules differ
    /// (ClusterTrustBundle names carry their signer name).
    pub(crate) fn object_meta(
        &self,
        kind: &'static str,
        cluster_scoped: bool,
        annotations: BTreeMap<String, String>,
    ) -> Result<ObjectMeta, K8sError> {
        if !cluster_scoped {
            object_name(kind, &self.name)?;
        }
        if let Some(namespace) = &self.namespace {
            if cluster_scoped {
                return Err(K8sError::NamespaceNotAllowed {
                    kind,
                    namespace: namespace.clone(),
                });
            }
            validate::dns1123_label(namespace).map_err(|reason| K8sError::InvalidNamespace {
                namespace: namespace.clone(),
                reason,
            })?;
        }
        let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())]);
        for (key, value) in &self.labels {
            let invalid = |reason| K8sError::InvalidLabel {
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            validate::qualified_name(key).map_err(invalid)?;
            validate::label_value(value).map_err(invalid)?;
            if labels.insert(key.clone(), value.clone()).is_some() {
                return Err(K8sError::Reserved { key: key.clone() });
            }
        }
        let mut all = annotations;
        for (key, value) in &self.annotations {
            validate::qualified_name(key).map_err(|reason| K8sError::InvalidAnnotation {
                key: key.clone(),
                reason,
            })?;
            if all.insert(key.clone(), value.clone()).is_some() {
                return Err(K8sError::Reserved { key: key.clone() });
            }
        }
        let size: usize = all.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > validate::ANNOTATIONS_MAX {
            return Err(K8sError::AnnotationsTooLarge {
                object: self.describe(kind),
                size,
                limit: validate::ANNOTATIONS_MAX,
            });
        }
        Ok(ObjectMeta {
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            labels: Some(labels),
            annotations: (!all.is_empty()).then_some(all),
            ..ObjectMeta::default()
        })
    }
}

/// Checks an object name (a DNS-1123 subdomain).
pub(crate) fn object_name(kind: &'static str, name: &str) -> Result<(), K8sError> {
    validate::dns1123_subdomain(name).map_err(|reason| K8sError::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    })
}

/// SHA-256 (lower-case hex) of the bundle as PEM, exactly the bytes of the bundle key
/// (`ca-certificates.crt`): `sha256sum` of the mounted file prints the same value.
pub fn bundle_sha256(bundle: &Bundle) -> String {
    pem_sha256(&render_pem(bundle, &PemOptions::default()))
}

pub(crate) fn pem_sha256(pem: &str) -> String {
    sha2::Sha256::digest(pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The annotations every bundle-carrying object gets.
pub(crate) fn bundle_annotations(pem: &str, certificates: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        (BUNDLE_SHA256_ANNOTATION.to_owned(), pem_sha256(pem)),
        (CERTIFICATES_ANNOTATION.to_owned(), certificates.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_validated_and_carries_our_label() {
        let meta = ObjectName::new("trust")
            .in_namespace("apps")
            .with_label("team", "platform")
            .with_annotation("example.com/owner", "ops")
            .object_meta("ConfigMap", false, BTreeMap::new())
            .unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "anchorage");
        assert_eq!(labels["team"], "platform");
        assert_eq!(meta.annotations.unwrap()["example.com/owner"], "ops");
        assert_eq!(meta.namespace.as_deref(), Some("apps"));

        let err = |o: ObjectName| {
            o.object_meta("ConfigMap", false, bundle_annotations("x", 1))
                .unwrap_err()
                .to_string()
        };
        assert!(err(ObjectName::new("Trust")).starts_with("invalid ConfigMap name `Trust`"));
        assert!(
            err(ObjectName::new("t").in_namespace("a.b")).starts_with("invalid namespace `a.b`")
        );
        assert!(err(ObjectName::new("t").with_label("k", "a b")).contains("label `k: a b`"));
        assert!(
            err(ObjectName::new("t").with_label(MANAGED_BY_LABEL, "me"))
                .contains("is set by anchorage")
        );
        assert!(
            err(ObjectName::new("t").with_annotation(BUNDLE_SHA256_ANNOTATION, "x"))
                .contains("is set by anchorage")
        );
        assert!(
            err(ObjectName::new("t").with_annotation("a b", "x")).contains("annotation key `a b`")
        );
        let big = ObjectName::new("t").with_annotation("big", "x".repeat(256 * 1024));
        assert!(err(big).contains("over Kubernetes' limit of 262144 bytes"));
        let e = ObjectName::new("t")
            .in_namespace("ns")
            .object_meta("ClusterTrustBundle", true, BTreeMap::new())
            .unwrap_err();
        assert!(matches!(e, K8sError::NamespaceNotAllowed { .. }), "{e}");
    }

    #[test]
    fn sha256_is_of_the_pem_bytes() {
        assert_eq!(
            pem_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! A `ClusterTrustBundle` (`certificates.k8s.io/v1beta1`, Kubernetes 1.33+): the bundle published
//! once for the whole cluster, which pods mount through a projected volume (see
//! [`crate::CtbSelector`]).
//!
//! Neither is on by default in 1.33: the API server must serve `certificates.k8s.io/v1beta1`
//! (`--runtime-config`, with the `ClusterTrustBundle` feature gate), and the kubelet needs the
//! `ClusterTrustBundleProjection` feature gate to mount it.
//!
//! The API server's rules, checked here: cluster-scoped (no namespace); every certificate a CA
//! (basic constraints with CA:TRUE); at most 1 MiB of PEM; with a signer name
//! (`example.com/private-ca`), the object's name must start with the signer name with `/`
//! replaced by `:`, then `:` (`example.com:private-ca:v1`), and without one it must not contain
//! `:`. Writing a bundle with a signer name also needs the `attest` verb on that signer in RBAC.

use anchorage_bundle::{Bundle, PemOptions, render_pem};
use k8s_openapi::api::certificates::v1beta1::{ClusterTrustBundle, ClusterTrustBundleSpec};

use crate::error::K8sError;
use crate::meta::{ObjectName, bundle_annotations, object_name};
use crate::trust_store::MAX_DATA_BYTES;
use crate::validate;

const KIND: &str = "ClusterTrustBundle";

/// Checks a ClusterTrustBundle name against its signer name, as the API server does.
fn check_name(name: &str, signer_name: Option<&str>) -> Result<(), K8sError> {
    let Some(signer) = signer_name else {
        if name.contains(':') {
            return Err(K8sError::ColonWithoutSigner {
                name: name.to_owned(),
            });
        }
        return object_name(KIND, name);
    };
    validate::signer_name(signer).map_err(|reason| K8sError::InvalidSignerName {
        signer_name: signer.to_owned(),
        reason,
    })?;
    let prefix = format!("{}:", signer.replace('/', ":"));
    let Some(rest) = name.strip_prefix(&prefix) else {
        // Suggest keeping what the caller wrote, when it is usable as the suffix.
        let example = if validate::dns1123_subdomain(name).is_ok() {
            name.to_owned()
        } else {
            "v1".to_owned()
        };
        return Err(K8sError::SignerPrefix {
            name: name.to_owned(),
            signer_name: signer.to_owned(),
            prefix,
            example,
        });
    };
    validate::dns1123_subdomain(rest).map_err(|reason| K8sError::InvalidName {
        kind: KIND,
        name: name.to_owned(),
        reason: format!("the part after the signer prefix `{prefix}`: {reason}"),
    })
}

/// The bundle as a ClusterTrustBundle named `meta.name` (no namespace), its PEM in
/// `spec.trustBundle` and `signer_name` in `spec.signerName` when given. Labels in `meta` are
/// what a projection by signer name selects on.
///
/// # Errors
///
/// A namespace in `meta`, an invalid name or signer name (or a name without the signer prefix),
/// an empty bundle, a certificate that is not a CA, or more than [`MAX_DATA_BYTES`] of PEM.
pub fn cluster_trust_bundle(
    bundle: &Bundle,
    meta: &ObjectName,
    signer_name: Option<&str>,
) -> Result<ClusterTrustBundle, K8sError> {
    check_name(&meta.name, signer_name)?;
    if bundle.is_empty() {
        return Err(K8sError::EmptyBundle { kind: KIND });
    }
    if let Some(cert) = bundle.certificates().find(|c| !c.is_ca()) {
        return Err(K8sError::NotCa {
            subject: cert.subject().to_owned(),
            sha256: cert.sha256().hex(),
        });
    }
    let pem = render_pem(bundle, &PemOptions::default());
    let metadata = meta.object_meta(KIND, true, bundle_annotations(&pem, bundle.len()))?;
    if pem.len() > MAX_DATA_BYTES {
        return Err(K8sError::TooLarge {
            object: meta.describe(KIND),
            size: pem.len(),
            limit: MAX_DATA_BYTES,
            certificates: bundle.len(),
            advice: "keep only the private CAs in it (drop --mozilla) and rely on the image's own public roots, or split the certificates over several ClusterTrustBundles with the same signer name and labels: a projection by signer name and label selector concatenates them all".into(),
        });
    }
    Ok(ClusterTrustBundle {
        metadata,
        spec: ClusterTrustBundleSpec {
            signer_name: signer_name.map(str::to_owned),
            trust_bundle: pem,
        },
    })
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki;
    use anchorage_x509::Certificate;

    use super::*;
    use crate::test_util::{bundle_of, pem_len, prefix_past, roots, roots_past_one_mib};

    #[test]
    fn builds_a_cluster_scoped_bundle_of_cas() {
        let b = roots(&["Ctb A", "Ctb B"]);
        let meta = ObjectName::new("example.com:private-ca:v1").with_label("tier", "prod");
        let ctb = cluster_trust_bundle(&b, &meta, Some("example.com/private-ca")).unwrap();
        assert_eq!(ctb.metadata.namespace, None);
        assert_eq!(ctb.metadata.labels.unwrap()["tier"], "prod");
        assert_eq!(
            ctb.spec.signer_name.as_deref(),
            Some("example.com/private-ca")
        );
        assert_eq!(
            ctb.spec.trust_bundle,
            render_pem(&b, &PemOptions::default())
        );

        let e =
            cluster_trust_bundle(&b, &ObjectName::new("x").in_namespace("ns"), None).unwrap_err();
        assert!(matches!(e, K8sError::NamespaceNotAllowed { .. }), "{e}");
        let e = cluster_trust_bundle(&Bundle::default(), &ObjectName::new("x"), None).unwrap_err();
        assert!(matches!(e, K8sError::EmptyBundle { .. }), "{e}");
    }

    #[test]
    fn refuses_a_leaf() {
        let pki = pki::Pki::new("Ctb Leaf");
        let leaf = Certificate::from_der(&pki.leaf.der).unwrap();
        let root = Certificate::from_der(&pki.root.der).unwrap();
        let sha = leaf.sha256().hex();
        let e = cluster_trust_bundle(&bundle_of([root, leaf]), &ObjectName::new("x"), None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "`CN=localhost` (SHA-256 {sha}) is not a CA certificate (no basic constraints with CA:TRUE), which a ClusterTrustBundle refuses; leave it out of the bundle (it is a leaf or an old v1 certificate), or use a ConfigMap"
            )
        );
    }

    #[test]
    fn the_trust_bundle_is_limited_to_one_mib() {
        let certs = prefix_past(roots_past_one_mib(), MAX_DATA_BYTES);
        let name = ObjectName::new("big");
        let e = cluster_trust_bundle(&bundle_of(certs.iter().cloned()), &name, None).unwrap_err();
        assert!(
            matches!(e, K8sError::TooLarge { size, limit: MAX_DATA_BYTES, .. } if size == pem_len(certs)),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("several ClusterTrustBundles with the same signer name")
        );
        let under = bundle_of(certs[..certs.len() - 1].iter().cloned());
        assert!(cluster_trust_bundle(&under, &name, None).is_ok());
    }

    #[test]
    fn names_follow_the_signer_rule() {
        assert!(check_name("corp-roots", None).is_ok());
        let e = check_name("example.com:ca:v1", None).unwrap_err();
        assert!(matches!(e, K8sError::ColonWithoutSigner { .. }), "{e}");
        let e = check_name("Corp", None).unwrap_err();
        assert!(
            matches!(
                &e,
                K8sError::InvalidName { kind: "ClusterTrustBundle", name, reason }
                    if name == "Corp"
                        && reason.ends_with("(`C` at position 1 is not allowed there)")
                        && reason.starts_with("a DNS-1123 subdomain must consist of")
            ),
            "{e:?}"
        );

        let signer = Some("example.com/private-ca");
        assert!(check_name("example.com:private-ca:v1", signer).is_ok());
        assert!(check_name("example.com:private-ca:roots.2025", signer).is_ok());
        let e = check_name("corp-roots", signer).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ClusterTrustBundle `corp-roots` has signer name `example.com/private-ca`, so its name must start with `example.com:private-ca:` (the signer name with `/` replaced by `:`, then `:`), for example `example.com:private-ca:corp-roots`"
        );
        let e = check_name("example.com:private-ca:", signer).unwrap_err();
        assert!(e.to_string().contains("after the signer prefix"), "{e}");
        let e = check_name("x", Some("private-ca")).unwrap_err();
        assert!(matches!(e, K8sError::InvalidSignerName { .. }), "{e}");
    }
}

//! Issuance against a real cluster with cert-manager, run only when `KUBECONFIG` is set (no
//! cluster runs where the project's tests usually run, so it skips with a message otherwise,
//! in CI too).
//!
//! - `KUBECONFIG`: the cluster to use.
//! - `ANCHORAGE_TEST_CM_ISSUER`: the issuer, `ClusterIssuer/<name>` (or just `<name>`),
//!   `Issuer/<name>`, or `<Kind>.<group>/<name>` for an external issuer. It must publish its CA
//!   in `status.ca` (the CA and Vault issuers do) and its requests must be approved.
//! - `ANCHORAGE_TEST_CM_NAMESPACE`: where the requests are made (default `default`).
//!
//! A throwaway setup: `kind create cluster`, install cert-manager, then a self-signed
//! `ClusterIssuer` that issues a CA `Certificate` into `cert-manager/mesh-ca`, and a CA
//! `ClusterIssuer` `mesh-ca` over that Secret; `ANCHORAGE_TEST_CM_ISSUER=ClusterIssuer/mesh-ca`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anchorage_ca::{CertKind, CertificateRequest, Identity, Issuer as _, San};
use anchorage_ca_cert_manager::v1::{self, IssuerReference};
use anchorage_ca_cert_manager::{
    CertManagerIssuer, CertManagerSettings, IDENTITY_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
};
use kube::api::{Api, ListParams};

/// `ClusterIssuer/name`, `Issuer/name`, `Kind.group/name` or `name`.
fn issuer_reference(text: &str) -> IssuerReference {
    match text.split_once('/') {
        None => IssuerReference::cluster_issuer(text),
        Some(("ClusterIssuer", name)) => IssuerReference::cluster_issuer(name),
        Some(("Issuer", name)) => IssuerReference::issuer(name),
        Some((kind_group, name)) => match kind_group.split_once('.') {
            Some((kind, group)) => IssuerReference::external(name, kind, group),
            None => panic!(
                "ANCHORAGE_TEST_CM_ISSUER={text:?}: use ClusterIssuer/<name>, Issuer/<name> or <Kind>.<group>/<name>"
            ),
        },
    }
}

#[tokio::test]
async fn issues_against_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        anchorage_test_support::peer::skip(
            "KUBECONFIG is not set, so the cert-manager cluster test did not run (set KUBECONFIG and ANCHORAGE_TEST_CM_ISSUER to run it)",
        );
        return;
    }
    let Ok(issuer_text) = std::env::var("ANCHORAGE_TEST_CM_ISSUER") else {
        anchorage_test_support::peer::skip(
            "KUBECONFIG is set but ANCHORAGE_TEST_CM_ISSUER is not (e.g. ClusterIssuer/mesh-ca), so the cert-manager cluster test did not run",
        );
        return;
    };
    let namespace =
        std::env::var("ANCHORAGE_TEST_CM_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let client = kube::Client::try_default()
        .await
        .expect("a Kubernetes client from KUBECONFIG");
    let settings = CertManagerSettings::new(&namespace, issuer_reference(&issuer_text))
        .with_timeout(Duration::from_secs(90));
    let issuer = CertManagerIssuer::new(client.clone(), settings).expect("valid settings");

    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let identity = format!("anchorage-it-{run}.{namespace}.svc");
    let spiffe = format!("spiffe://cluster.local/ns/{namespace}/sa/anchorage-it");
    let request =
        CertificateRequest::new(Identity::new(identity.as_str()).unwrap(), CertKind::Service)
            .with_san(San::parse(&spiffe).unwrap());

    let issued = issuer
        .issue(&request)
        .await
        .unwrap_or_else(|e| panic!("issuing through {issuer_text}: {e}"));

    assert!(
        issued.certificate.subject().contains(&identity),
        "{}",
        issued.certificate.subject()
    );
    let sans: Vec<String> = issued
        .certificate
        .subject_alt_names()
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    assert!(sans.iter().any(|s| s.contains(&identity)), "{sans:?}");
    assert!(sans.iter().any(|s| s.contains(&spiffe)), "{sans:?}");
    assert!(!issued.validating_roots.is_empty());
    assert_eq!(issuer.signing_ca(), Some(issued.issuer));
    assert!(issued.private_key.is_some());

    // The request is gone (deletion is in line, so it is at least marked).
    let api: Api<v1::CertificateRequest> = Api::namespaced(client, &namespace);
    let ours = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
        .await
        .expect("list CertificateRequests");
    let left: Vec<_> = ours
        .items
        .iter()
        .filter(|o| {
            o.metadata.deletion_timestamp.is_none()
                && o.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(IDENTITY_ANNOTATION))
                    .is_some_and(|id| *id == identity)
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn issuer_references_from_the_environment() {
    assert_eq!(
        issuer_reference("mesh-ca"),
        IssuerReference::cluster_issuer("mesh-ca")
    );
    assert_eq!(issuer_reference("Issuer/ca"), IssuerReference::issuer("ca"));
    assert_eq!(
        issuer_reference("AWSPCAClusterIssuer.awspca.cert-manager.io/pca"),
        IssuerReference::external("pca", "AWSPCAClusterIssuer", "awspca.cert-manager.io")
    );
}

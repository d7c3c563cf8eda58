//! The controller against a real cluster, run only when `KUBECONFIG` is set (no API server runs
//! where the project's tests usually run, so it skips with a message otherwise, in CI too).
//! Layer 3 of issue 17's tests: what kmock cannot show (server-side apply by a real API server,
//! label selectors, owner references with real uids, RBAC-free admin credentials).
//!
//! It installs the CRD (server-side apply), makes a trust namespace and a target namespace with
//! a random suffix, a source ConfigMap and a Bundle, runs the controller in-process until the
//! target holds the certificate, then deletes what it made. A throwaway cluster (`kind create
//! cluster`) is enough.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anchorage_controller::crd::{
    BundleSource, BundleTarget, KeySelector, NamespaceSelector, TargetKeys,
};
use anchorage_controller::{Bundle, BundleSpec, Settings};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_reaches_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        anchorage_test_support::peer::skip(
            "KUBECONFIG is not set, so the controller's real-cluster test did not run (set KUBECONFIG to a throwaway cluster to run it)",
        );
        return;
    }
    let client = kube::Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "bundles.trust.anchorage.dev",
        &PatchParams::apply("anchorage-controller-test").force(),
        &Patch::Apply(Bundle::crd()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // the CRD becomes served

    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000;
    let trust_ns = format!("anchorage-test-trust-{suffix}");
    let apps_ns = format!("anchorage-test-apps-{suffix}");
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        (&trust_ns, json!({})),
        (&apps_ns, json!({"anchorage-test": suffix.to_string()})),
    ] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces.create(&pp, &ns).await.unwrap();
    }
    let root = anchorage_test_support::pki::root_ca("Controller Cluster Test Root");
    let source: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cas", "namespace": trust_ns},
        "data": {"root.crt": root.pem}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &trust_ns)
        .create(&pp, &source)
        .await
        .unwrap();
    let name = format!("anchorage-test-{suffix}");
    let bundle = Bundle::new(
        &name,
        BundleSpec {
            sources: vec![BundleSource {
                config_map: Some(KeySelector {
                    name: "cas".into(),
                    key_suffix: Some(".crt".into()),
                    ..KeySelector::default()
                }),
                ..BundleSource::default()
            }],
            target: BundleTarget {
                config_map: Some(TargetKeys::default()),
                namespace_selector: Some(NamespaceSelector {
                    match_labels: [("anchorage-test".to_owned(), suffix.to_string())].into(),
                    ..NamespaceSelector::default()
                }),
                ..BundleTarget::default()
            },
        },
    );
    let bundles: Api<Bundle> = Api::all(client.clone());
    bundles.create(&pp, &bundle).await.unwrap();

    let mut settings = Settings::new(&trust_ns);
    settings.retry = Duration::from_secs(1);
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings));
    let targets: Api<ConfigMap> = Api::namespaced(client.clone(), &apps_ns);
    let start = Instant::now();
    let mut found = None;
    while start.elapsed() < Duration::from_secs(60) && found.is_none() {
        found = targets.get_opt(&name).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    controller.abort();
    let cleanup = async {
        let _ = bundles.delete(&name, &DeleteParams::default()).await;
        let _ = namespaces.delete(&trust_ns, &DeleteParams::default()).await;
        let _ = namespaces.delete(&apps_ns, &DeleteParams::default()).await;
    };
    cleanup.await;
    let cm = found.expect("the target within 60 s");
    assert!(cm.data.unwrap()["ca-certificates.crt"].contains(root.pem.trim()));
}

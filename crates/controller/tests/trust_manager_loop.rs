//! trust-manager's `Bundle` (`trust.cert-manager.io/v1alpha1`) reconciled by the running
//! controller with `--trust-manager-bundles`, against PyPI's kmock emulator (started by
//! tests/support/kmock_server.py with `KMOCK_TRUST_MANAGER=1`: a cluster with trust-manager's
//! CRD). Proves: a trust-manager Bundle yields its targets (its key, its selector, its own label
//! and owner reference), a source change reaches them, a Bundle this controller cannot honour
//! gets `Ready=False` while the other syncs, the conditions are written to its status, and
//! deleting it deletes its targets (kmock has no garbage collector: the controller's cleanup
//! does it). Negative controls: without the flag nothing is written for it; with the flag on a
//! cluster without the API the controller carries on with anchorage Bundles.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::time::Duration;

use anchorage_controller::crd::{BundleSource, BundleTarget, KeySelector, TargetKeys};
use anchorage_controller::desired::BUNDLE_LABEL;
use anchorage_controller::trust_manager::{TRUST_MANAGER_LABEL, TmTargetKey, TrustManagerBundle};
use anchorage_controller::{Bundle, BundleSpec, Settings};
use anchorage_test_support::kmock::Kmock;
use anchorage_test_support::pki;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{eventually, get};

fn settings(trust_manager_bundles: bool) -> Settings {
    Settings {
        trust_namespace: "trust-ns".into(),
        resync: Duration::from_secs(600),
        retry: Duration::from_millis(500),
        mozilla: Vec::new(),
        system: Vec::new(),
        trust_manager_bundles,
    }
}

/// kmock (with trust-manager's API or not), its client, the namespaces `trust-ns`, `apps`
/// (labelled `trust: on`) and `other`, and the source ConfigMap `cas` holding root A.
async fn cluster(trust_manager: bool) -> Option<(Kmock, Client, pki::Issued)> {
    let flag = if trust_manager { "1" } else { "0" };
    let kmock = Kmock::start(
        "the controller's trust-manager loop test",
        &[("KMOCK_TRUST_MANAGER", flag)],
    )?;
    let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        ("trust-ns", json!({})),
        ("apps", json!({"trust": "on"})),
        ("other", json!({})),
    ] {
        let ns =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        namespaces.create(&pp, &ns).await.unwrap();
    }
    let a = pki::root_ca("Trust Manager Loop Root A");
    let source: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cas", "namespace": "trust-ns"},
        "data": {"a.crt": a.pem}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "trust-ns")
        .create(&pp, &source)
        .await
        .unwrap();
    Some((kmock, client, a))
}

/// A trust-manager Bundle as its users write it (YAML in trust-manager's documented shape).
fn trust_manager_bundle(name: &str, uid: &str, source: serde_json::Value) -> TrustManagerBundle {
    serde_json::from_value(json!({
        "apiVersion": "trust.cert-manager.io/v1alpha1",
        "kind": "Bundle",
        "metadata": {"name": name, "uid": uid},
        "spec": {
            "sources": [source],
            "target": {
                "configMap": {"key": "trust-bundle.pem"},
                "namespaceSelector": {"matchLabels": {"trust": "on"}}
            }
        }
    }))
    .unwrap()
}

/// An anchorage Bundle `anchorage-trust` from the same source, in every namespace: its target
/// in `other` shows the controller has run.
fn anchorage_bundle() -> Bundle {
    let mut b = Bundle::new(
        "anchorage-trust",
        BundleSpec {
            sources: vec![BundleSource {
                config_map: Some(KeySelector {
                    name: "cas".into(),
                    key: Some("a.crt".into()),
                    ..KeySelector::default()
                }),
                ..BundleSource::default()
            }],
            target: BundleTarget {
                config_map: Some(TargetKeys::default()),
                ..BundleTarget::default()
            },
        },
    );
    b.metadata.uid = Some("0b0e5b3c-0000-4000-8000-0000000000a1".into());
    b
}

fn condition(tm: &TrustManagerBundle, type_: &str) -> Option<(String, String, String)> {
    tm.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.last_transition_time.clone(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_manager_bundle_is_reconciled_and_its_targets_cleaned_up() {
    let Some((kmock, client, a)) = cluster(true).await else {
        return;
    };
    let pp = PostParams::default();
    let tms: Api<TrustManagerBundle> = Api::all(client.clone());
    let good = trust_manager_bundle(
        "tm-trust",
        "0b0e5b3c-0000-4000-8000-0000000000b1",
        json!({"configMap": {"name": "cas", "key": "a.crt"}}),
    );
    // A ConfigMap and a Secret target at once is not supported: refused, naming the field.
    let mut bad = trust_manager_bundle(
        "tm-bad",
        "0b0e5b3c-0000-4000-8000-0000000000b2",
        json!({"configMap": {"name": "cas", "key": "a.crt"}}),
    );
    bad.spec.target.secret = Some(TmTargetKey {
        key: "trust-bundle.pem".into(),
    });
    tms.create(&pp, &good).await.unwrap();
    tms.create(&pp, &bad).await.unwrap();
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings(true)));

    let apps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    eventually("the trust-manager target in `apps`", || async {
        get(&apps, "tm-trust").await.is_some()
    })
    .await;
    let cm = get(&apps, "tm-trust").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["trust-bundle.pem"]);
    assert!(data["trust-bundle.pem"].contains(a.pem.trim()));
    let labels = cm.metadata.labels.clone().unwrap();
    assert_eq!(
        labels.get(TRUST_MANAGER_LABEL).map(String::as_str),
        Some("tm-trust")
    );
    assert!(!labels.contains_key(BUNDLE_LABEL), "{labels:?}");
    let owner = &cm.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.api_version, "trust.cert-manager.io/v1alpha1");
    assert_eq!(owner.kind, "Bundle");
    assert_eq!(owner.name, "tm-trust");
    assert_eq!(owner.uid, "0b0e5b3c-0000-4000-8000-0000000000b1");
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    assert!(get(&other, "tm-trust").await.is_none(), "not selected");

    // Status, in trust-manager's condition shape.
    eventually("Ready=True on the trust-manager Bundle", || async {
        let tm = tms.get("tm-trust").await.unwrap();
        condition(&tm, "Ready").is_some_and(|(s, r, _)| s == "True" && r == "Synced")
    })
    .await;
    let tm = tms.get("tm-trust").await.unwrap();
    let (_, _, since) = condition(&tm, "Ready").unwrap();
    assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    assert_eq!(condition(&tm, "Target/apps").unwrap().0, "True");
    eventually("Ready=False on the refused one", || async {
        let tm = tms.get("tm-bad").await.unwrap();
        condition(&tm, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "InvalidSpec")
    })
    .await;
    assert!(
        get(&apps, "tm-bad").await.is_none(),
        "nothing written for it"
    );

    // A source change reaches the target through the trust-namespace watch.
    let b = pki::root_ca("Trust Manager Loop Root B");
    Api::<ConfigMap>::namespaced(client.clone(), "trust-ns")
        .patch(
            "cas",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a.crt": b.pem}})),
        )
        .await
        .unwrap();
    eventually("root B in the target", || async {
        get(&apps, "tm-trust")
            .await
            .is_some_and(|cm| cm.data.unwrap()["trust-bundle.pem"].contains(b.pem.trim()))
    })
    .await;

    // Deleting the trust-manager Bundle deletes its targets.
    tms.delete("tm-trust", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the target deleted with its Bundle", || async {
        get(&apps, "tm-trust").await.is_none()
    })
    .await;

    controller.abort();
    drop(kmock);
}

/// A source `selector`: the target holds the CAs of the labelled ConfigMaps only (negative
/// control: `cas`, unlabelled, is left out), and labelling `cas` brings its CA in (a label change
/// in the trust namespace is a change the controller watches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_selector_takes_the_labelled_configmaps_and_follows_their_labels() {
    let Some((kmock, client, a)) = cluster(true).await else {
        return;
    };
    let pp = PostParams::default();
    let b = pki::root_ca("Trust Manager Selector Root B");
    let labelled: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "corp-b", "namespace": "trust-ns", "labels": {"trust": "corp"}},
        "data": {"a.crt": b.pem}
    }))
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "trust-ns");
    cms.create(&pp, &labelled).await.unwrap();
    Api::<TrustManagerBundle>::all(client.clone())
        .create(
            &pp,
            &trust_manager_bundle(
                "tm-sel",
                "0b0e5b3c-0000-4000-8000-0000000000d1",
                json!({"configMap": {"selector": {"matchLabels": {"trust": "corp"}}, "key": "a.crt"}}),
            ),
        )
        .await
        .unwrap();
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings(true)));
    let apps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let bundle = || async {
        get(&apps, "tm-sel")
            .await
            .and_then(|cm| cm.data)
            .map(|d| d["trust-bundle.pem"].clone())
            .unwrap_or_default()
    };
    eventually("root B (labelled) in the target", || async {
        bundle().await.contains(b.pem.trim())
    })
    .await;
    assert!(
        !bundle().await.contains(a.pem.trim()),
        "`cas` is not labelled"
    );
    cms.patch(
        "cas",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"trust": "corp"}}})),
    )
    .await
    .unwrap();
    eventually("root A in the target once `cas` is labelled", || async {
        let pem = bundle().await;
        pem.contains(a.pem.trim()) && pem.contains(b.pem.trim())
    })
    .await;
    controller.abort();
    drop(kmock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_trust_manager_bundles_are_not_reconciled() {
    let Some((kmock, client, _)) = cluster(true).await else {
        return;
    };
    let pp = PostParams::default();
    Api::<TrustManagerBundle>::all(client.clone())
        .create(
            &pp,
            &trust_manager_bundle(
                "tm-trust",
                "0b0e5b3c-0000-4000-8000-0000000000c1",
                json!({"configMap": {"name": "cas", "key": "a.crt"}}),
            ),
        )
        .await
        .unwrap();
    Api::<Bundle>::all(client.clone())
        .create(&pp, &anchorage_bundle())
        .await
        .unwrap();
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings(false)));
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    eventually(
        "the anchorage Bundle's target (the controller runs)",
        || async { get(&other, "anchorage-trust").await.is_some() },
    )
    .await;
    // Give a trust-manager reconcile the time it would have had.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let apps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    assert!(get(&apps, "tm-trust").await.is_none());
    let tm = Api::<TrustManagerBundle>::all(client.clone())
        .get("tm-trust")
        .await
        .unwrap();
    assert!(tm.status.is_none(), "{:?}", tm.status);
    controller.abort();
    drop(kmock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_on_a_cluster_without_trust_manager_carries_on() {
    let Some((kmock, client, _)) = cluster(false).await else {
        return;
    };
    Api::<Bundle>::all(client.clone())
        .create(&PostParams::default(), &anchorage_bundle())
        .await
        .unwrap();
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings(true)));
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    eventually("the anchorage Bundle's target", || async {
        get(&other, "anchorage-trust").await.is_some()
    })
    .await;
    assert!(!controller.is_finished());
    controller.abort();
    drop(kmock);
}

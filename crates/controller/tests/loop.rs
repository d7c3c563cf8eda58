//! The reconcile loop with the real kube-rs client and `Controller` against PyPI's `kmock` 0.8
//! Kubernetes emulator (layer 2 of issue 17's three test layers; the emulator is someone else's,
//! started by tests/support/kmock_server.py). Proves: targets appear in selected namespaces only,
//! a source change reaches them through the trust-namespace watch, a selector change adds and
//! removes targets, a refused Bundle gets `Ready=False` and a Warning Event while the good one is
//! kept in sync, and status conditions are written.
//!
//! What kmock does not prove (a real cluster does, see tests/cluster.rs): server-side apply field
//! ownership (kmock merges JSON, so a key dropped from a target is not removed by it), label
//! selectors (kmock returns every object; the controller filters by label itself too), garbage
//! collection through owner references, resource versions.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::time::Duration;

use anchorage_controller::crd::{
    BundleSource, BundleTarget, ClusterTrustBundleTarget, KeySelector, NamespaceSelector,
    ObjectKey, ServeSource, TargetKeys, TargetLayout,
};
use anchorage_controller::{Bundle, BundleSpec, Settings};
use anchorage_test_support::kmock::Kmock;
use anchorage_test_support::pki;
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use support::{eventually, get};

/// kmock on a free port, or `None` (skipped loudly) when python3 or kmock is missing.
fn start_kmock() -> Option<Kmock> {
    start_kmock_with(false)
}

/// [`start_kmock`], serving the ClusterTrustBundle API or not.
fn start_kmock_with(cluster_trust_bundles: bool) -> Option<Kmock> {
    let ctb = if cluster_trust_bundles { "1" } else { "0" };
    Kmock::start(
        "the controller's loop test",
        &[("KMOCK_CLUSTER_TRUST_BUNDLES", ctb)],
    )
}

fn namespace(name: &str, labels: serde_json::Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

async fn target(client: &Client, ns: &str) -> Option<ConfigMap> {
    get(&Api::<ConfigMap>::namespaced(client.clone(), ns), "trust").await
}

fn condition(b: &Bundle, type_: &str) -> Option<(String, String)> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_keeps_targets_in_sync_and_a_bad_bundle_does_not_stop_it() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("ANCHORAGE_LOG").unwrap_or_else(|_| "anchorage_controller=debug".into()),
        )
        .with_test_writer()
        .try_init();
    let Some(kmock) = start_kmock() else { return };
    let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let pp = PostParams::default();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&pp, &namespace("trust-ns", json!({})))
        .await
        .unwrap();
    namespaces
        .create(&pp, &namespace("apps", json!({"trust": "on"})))
        .await
        .unwrap();
    namespaces
        .create(&pp, &namespace("other", json!({})))
        .await
        .unwrap();

    let a = pki::root_ca("Loop Test Root A");
    let b = pki::root_ca("Loop Test Root B");
    let leaf = pki::server_leaf(&["x.test"], &a);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "trust-ns");
    let source: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cas", "namespace": "trust-ns"},
        "data": {"a.crt": a.pem, "notes.txt": "not a certificate"}
    }))
    .unwrap();
    cms.create(&pp, &source).await.unwrap();
    let leaky: Secret = serde_json::from_value(json!({
        "metadata": {"name": "leaky", "namespace": "trust-ns"},
        "stringData": {"tls.crt": format!("{}{}", leaf.pem, leaf.key_pem)}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "trust-ns")
        .create(&pp, &leaky)
        .await
        .unwrap();

    let bundles: Api<Bundle> = Api::all(client.clone());
    let good = Bundle::new(
        "trust",
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
                    match_labels: [("trust".to_owned(), "on".to_owned())].into(),
                    ..NamespaceSelector::default()
                }),
                ..BundleTarget::default()
            },
        },
    );
    let mut bad = good.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.target.name = Some("bad-trust".into());
    bad.spec.sources = vec![BundleSource {
        secret: Some(KeySelector {
            name: "leaky".into(),
            include_all_keys: Some(true),
            ..KeySelector::default()
        }),
        ..BundleSource::default()
    }];
    // kmock assigns no uid (a real API server does); owner references need one.
    let mut good = good;
    good.metadata.uid = Some("0b0e5b3c-0000-4000-8000-000000000001".into());
    bad.metadata.uid = Some("0b0e5b3c-0000-4000-8000-000000000002".into());
    bundles.create(&pp, &bad).await.unwrap();
    bundles.create(&pp, &good).await.unwrap();

    let mut settings = Settings {
        trust_manager_bundles: false,
        trust_namespace: "trust-ns".into(),
        resync: Duration::from_secs(600),
        retry: Duration::from_millis(500),
        mozilla: Vec::new(),
        system: Vec::new(),
    };
    settings.retry = Duration::from_millis(500);
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings));

    // 1. The target appears in the selected namespace only, with the certs-dir layout.
    eventually("the target in `apps`", || async {
        target(&client, "apps").await.is_some()
    })
    .await;
    let cm = target(&client, "apps").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert!(data["ca-certificates.crt"].contains(a.pem.trim()));
    assert_eq!(
        data.keys()
            .filter(|k| anchorage_bundle::is_openssl_hash_name(k))
            .count(),
        1
    );
    assert_eq!(cm.labels()["trust.anchorage.dev/bundle"], "trust");
    assert!(
        cm.annotations()
            .contains_key("trust.anchorage.dev/content-sha256")
    );
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].name,
        "trust",
        "owned by the Bundle"
    );
    assert!(target(&client, "other").await.is_none());

    // 2. Status: Ready and one condition per target.
    eventually("the good Bundle Ready=True", || async {
        let b = bundles.get("trust").await.unwrap();
        condition(&b, "Ready") == Some(("True".into(), "Synced".into()))
            && condition(&b, "Target/apps").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        bundles
            .get("trust")
            .await
            .unwrap()
            .status
            .unwrap()
            .certificates,
        Some(1)
    );

    // 3. The bad Bundle is refused: a condition and a Warning Event naming object and key, no
    //    target written, and (above) the good one went on.
    eventually("the bad Bundle Ready=False", || async {
        let b = bundles.get("bad").await.unwrap();
        condition(&b, "Ready") == Some(("False".into(), "PrivateKeyInSource".into()))
    })
    .await;
    let events: Vec<Event> = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let refusal = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("PrivateKeyInSource"))
        .expect("a Warning Event for the refusal");
    let note = refusal.note.clone().unwrap_or_default();
    assert!(
        note.contains("Secret trust-ns/leaky") && note.contains("tls.crt"),
        "{note}"
    );
    assert!(!note.contains("PRIVATE KEY"));
    assert_eq!(refusal.type_.as_deref(), Some("Warning"));
    assert!(
        get(
            &Api::<ConfigMap>::namespaced(client.clone(), "apps"),
            "bad-trust"
        )
        .await
        .is_none()
    );

    // 4. An unchanged target is not rewritten: a change in the trust namespace that does not
    //    touch this Bundle's sources reconciles it again (`Unchanged` in its condition), and the
    //    target's resourceVersion (stamped on every write) stays the same.
    let before = target(&client, "apps").await.unwrap().resource_version();
    let unrelated: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "unrelated", "namespace": "trust-ns"},
        "data": {"x": "y"}
    }))
    .unwrap();
    cms.create(&pp, &unrelated).await.unwrap();
    eventually("the target reported Unchanged", || async {
        let b = bundles.get("trust").await.unwrap();
        condition(&b, "Target/apps") == Some(("True".into(), "Unchanged".into()))
    })
    .await;
    assert_eq!(
        target(&client, "apps").await.unwrap().resource_version(),
        before
    );

    // 5. A source change reaches the target (through the trust-namespace watch).
    cms.patch(
        "cas",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b.crt": b.pem}})),
    )
    .await
    .unwrap();
    eventually("root B in the target", || async {
        target(&client, "apps")
            .await
            .is_some_and(|cm| cm.data.unwrap()["ca-certificates.crt"].contains(b.pem.trim()))
    })
    .await;

    // 6. The selector: `other` gains the label (a target appears), `apps` loses it (its target
    //    is deleted).
    namespaces
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"trust": "on"}}})),
        )
        .await
        .unwrap();
    eventually("the target in `other`", || async {
        target(&client, "other").await.is_some()
    })
    .await;
    namespaces
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"trust": null}}})),
        )
        .await
        .unwrap();
    eventually("the target in `apps` deleted", || async {
        target(&client, "apps").await.is_none()
    })
    .await;
    let names: Vec<String> = bundles
        .get("trust")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_.clone())
        .collect();
    assert!(names.contains(&"Target/other".to_owned()), "{names:?}");

    controller.abort();
    drop(kmock);
}

/// A Bundle with a `clusterTrustBundle` target on a cluster serving that API: the object is
/// created with its signer-prefixed name, the certificates and the Bundle's label, and the
/// Bundle's status has `Target/cluster`; a source change reaches it. On a cluster without the
/// API (negative control): `Ready=False` with `ApiNotServed`, and nothing else breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_trust_bundle_target_is_written_where_the_api_is_served() {
    for served in [true, false] {
        let Some(kmock) = start_kmock_with(served) else {
            return;
        };
        let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let pp = PostParams::default();
        Api::<Namespace>::all(client.clone())
            .create(&pp, &namespace("trust-ns", json!({})))
            .await
            .unwrap();
        let a = pki::root_ca("CTB Loop Root A");
        let b = pki::root_ca("CTB Loop Root B");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "trust-ns");
        let source: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cas", "namespace": "trust-ns"},
            "data": {"a.crt": a.pem}
        }))
        .unwrap();
        cms.create(&pp, &source).await.unwrap();
        let mut bundle = Bundle::new(
            "mesh-roots",
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
                    cluster_trust_bundle: Some(ClusterTrustBundleTarget {
                        signer_name: Some("example.com/mesh".into()),
                    }),
                    ..BundleTarget::default()
                },
            },
        );
        bundle.metadata.uid = Some("0b0e5b3c-0000-4000-8000-000000000010".into());
        let bundles: Api<Bundle> = Api::all(client.clone());
        bundles.create(&pp, &bundle).await.unwrap();
        let settings = Settings {
            trust_manager_bundles: false,
            trust_namespace: "trust-ns".into(),
            resync: Duration::from_secs(600),
            retry: Duration::from_millis(500),
            mozilla: Vec::new(),
            system: Vec::new(),
        };
        let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings));
        let ctbs: Api<ClusterTrustBundle> = Api::all(client.clone());
        let name = "example.com:mesh:mesh-roots";
        if served {
            eventually("the ClusterTrustBundle", || async {
                get(&ctbs, name).await.is_some()
            })
            .await;
            let ctb = get(&ctbs, name).await.unwrap();
            assert_eq!(ctb.spec.signer_name.as_deref(), Some("example.com/mesh"));
            assert!(ctb.spec.trust_bundle.contains(a.pem.trim()));
            assert_eq!(ctb.labels()["trust.anchorage.dev/bundle"], "mesh-roots");
            eventually("Target/cluster True", || async {
                let b = bundles.get("mesh-roots").await.unwrap();
                condition(&b, "Ready") == Some(("True".into(), "Synced".into()))
                    && condition(&b, "Target/cluster").is_some_and(|c| c.0 == "True")
            })
            .await;
            // A second CA in the source reaches the object.
            cms.patch(
                "cas",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"b.crt": b.pem}})),
            )
            .await
            .unwrap();
            eventually("root B in the ClusterTrustBundle", || async {
                get(&ctbs, name)
                    .await
                    .is_some_and(|c| c.spec.trust_bundle.contains(b.pem.trim()))
            })
            .await;
        } else {
            eventually("Ready=False ApiNotServed", || async {
                let b = bundles.get("mesh-roots").await.unwrap();
                condition(&b, "Target/cluster") == Some(("False".into(), "ApiNotServed".into()))
                    && condition(&b, "Ready").is_some_and(|c| c.0 == "False")
            })
            .await;
        }
        controller.abort();
    }
}

/// A `serve` source against a real `anchorage serve` (in-process, its own CA and TLS): the
/// target holds serve's bundle; a CA an admin adds in serve reaches the target on the next
/// refresh; with the wrong CA in the ConfigMap (negative control) the Bundle is refused with
/// `SourceUnavailable` and its target keeps its contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_source_brings_serves_bundle_and_its_changes() {
    let Some(kmock) = start_kmock() else { return };
    let dir = anchorage_test_support::tempdir().unwrap();
    let mut config = anchorage_serve::ServeConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = anchorage_serve::Server::start(config).await.unwrap();
    let url = server.serving().url.clone();
    let serve_ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();

    let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in ["trust-ns", "apps"] {
        namespaces
            .create(&pp, &namespace(n, json!({})))
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "trust-ns");
    let ca_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "serve-ca", "namespace": "trust-ns"},
        "data": {"ca.pem": serve_ca}
    }))
    .unwrap();
    cms.create(&pp, &ca_map).await.unwrap();
    let mut bundle = Bundle::new(
        "from-serve",
        BundleSpec {
            sources: vec![BundleSource {
                serve: Some(ServeSource {
                    url: url.clone(),
                    ca_config_map: ObjectKey {
                        name: "serve-ca".into(),
                        key: "ca.pem".into(),
                    },
                }),
                ..BundleSource::default()
            }],
            target: BundleTarget {
                config_map: Some(TargetKeys {
                    layout: TargetLayout::BundleKey,
                    key: None,
                }),
                ..BundleTarget::default()
            },
        },
    );
    bundle.metadata.uid = Some("0b0e5b3c-0000-4000-8000-000000000020".into());
    let bundles: Api<Bundle> = Api::all(client.clone());
    bundles.create(&pp, &bundle).await.unwrap();
    let settings = Settings {
        trust_manager_bundles: false,
        trust_namespace: "trust-ns".into(),
        // A short resync: a Bundle with a serve source is asked again at most this often.
        resync: Duration::from_secs(1),
        retry: Duration::from_millis(500),
        mozilla: Vec::new(),
        system: Vec::new(),
    };
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings));
    let target_of = |client: Client| async move {
        get(&Api::<ConfigMap>::namespaced(client, "apps"), "from-serve").await
    };
    let pem_of = |cm: &ConfigMap| cm.data.as_ref().unwrap()["ca-certificates.crt"].clone();

    // 1. serve's bundle (its own CA) in the target.
    eventually("serve's bundle in the target", || async {
        target_of(client.clone()).await.is_some()
    })
    .await;
    let first = pem_of(&target_of(client.clone()).await.unwrap());
    assert!(first.contains(serve_ca.trim()), "{first}");

    // 2. An admin adds a CA in serve: it reaches the target.
    let added = pki::root_ca("Added In Serve");
    let mut roots = rustls::RootCertStore::empty();
    for f in anchorage_x509::decode(serve_ca.as_bytes()).certificates {
        roots
            .add(rustls::pki_types::CertificateDer::from(
                f.certificate.der().to_vec(),
            ))
            .unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let resp = http
        .post(format!("{url}/v1/bundle/cas"))
        .bearer_auth(&admin)
        .json(&json!({"add": added.pem}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    eventually("the added CA in the target", || async {
        target_of(client.clone())
            .await
            .is_some_and(|cm| pem_of(&cm).contains(added.pem.trim()))
    })
    .await;

    // 3. Negative control: serve's CA replaced by another one in the ConfigMap. TLS to serve
    //    fails, the Bundle is refused, and the target keeps what it had.
    let other = pki::root_ca("Not Serve's CA");
    cms.patch(
        "serve-ca",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca.pem": other.pem}})),
    )
    .await
    .unwrap();
    eventually("Ready=False SourceUnavailable", || async {
        let b = bundles.get("from-serve").await.unwrap();
        condition(&b, "Ready") == Some(("False".into(), "SourceUnavailable".into()))
    })
    .await;
    let kept = pem_of(&target_of(client.clone()).await.unwrap());
    assert!(kept.contains(added.pem.trim()) && kept.contains(serve_ca.trim()));

    controller.abort();
    server.shutdown().await;
}

/// More targets than are written at once (`WRITE_CONCURRENCY`): every namespace gets its target,
/// and the status has exactly one `Target/<namespace>` per namespace, in the namespaces' order,
/// as when they were written one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_targets_are_written_in_parallel_with_exact_conditions() {
    let Some(kmock) = start_kmock() else { return };
    let config = kube::Config::new(format!("http://127.0.0.1:{}", kmock.port).parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let count = anchorage_controller::reconcile::WRITE_CONCURRENCY + 8;
    let mut names: Vec<String> = (0..count).map(|i| format!("ns-{i:02}")).collect();
    names.push("trust-ns".into());
    for name in &names {
        namespaces
            .create(&pp, &namespace(name, json!({})))
            .await
            .unwrap();
    }
    let a = pki::root_ca("Parallel Root");
    let source: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cas", "namespace": "trust-ns"},
        "data": {"a.crt": a.pem}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "trust-ns")
        .create(&pp, &source)
        .await
        .unwrap();
    let mut bundle = Bundle::new(
        "trust",
        BundleSpec {
            sources: vec![BundleSource {
                config_map: Some(KeySelector {
                    name: "cas".into(),
                    include_all_keys: Some(true),
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
    bundle.metadata.uid = Some("0b0e5b3c-0000-4000-8000-0000000000d1".into());
    let bundles: Api<Bundle> = Api::all(client.clone());
    bundles.create(&pp, &bundle).await.unwrap();
    let settings = Settings {
        trust_manager_bundles: false,
        trust_namespace: "trust-ns".into(),
        resync: Duration::from_secs(600),
        retry: Duration::from_millis(500),
        mozilla: Vec::new(),
        system: Vec::new(),
    };
    let controller = tokio::spawn(anchorage_controller::run(client.clone(), settings));
    eventually("Ready=True with every target", || async {
        let b = bundles.get("trust").await.unwrap();
        condition(&b, "Ready").is_some_and(|(s, _)| s == "True")
    })
    .await;
    let b = bundles.get("trust").await.unwrap();
    let types: Vec<String> = b
        .status
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_.clone())
        .collect();
    let mut expected = vec!["Ready".to_owned()];
    let mut sorted = names.clone();
    sorted.sort();
    expected.extend(sorted.iter().map(|n| format!("Target/{n}")));
    assert_eq!(types, expected);
    for name in &names {
        assert!(target(&client, name).await.is_some(), "{name}");
    }
    controller.abort();
    drop(kmock);
}

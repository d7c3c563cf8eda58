//! Golden files: objects and patches built from a fixed, committed bundle, compared byte for byte
//! with `tests/golden/`, then parsed back into their k8s-openapi types and compared with what was
//! built.
//!
//! The bundle is `testdata/sample-ca/anchorage-sample-root.crt` plus `tests/fixtures/*.crt` (a
//! re-keyed root with the same subject, so the hashed keys include `9c93ad08.0` and `.1`; a common
//! name with punctuation and non-ASCII letters; a root without a common name), generated once by
//! `tests/fixtures/generate.sh` and committed, so the goldens never change by themselves.
//!
//! After an intended change of output, rewrite the goldens and review the diff:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p anchorage-k8s --test golden
//! git diff crates/k8s/tests/golden/
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_k8s::{
    BUNDLE_SHA256_ANNOTATION, CtbSelector, Layout, Object, ObjectName, PatchFormat, PatchRequest,
    TrustSource, WorkloadKind, bundle_sha256, cluster_trust_bundle, env_var, to_json, to_yaml,
    trust_configmap, trust_secret, wasmcloud_configmap, workload_patch,
};
use anchorage_trust::{Bundle, LoadOptions, Policy, Source, load};
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize as _;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixed sources, in the given order.
fn sources() -> Vec<Source> {
    let fixtures = manifest_dir().join("tests/fixtures");
    let mut sources = vec![Source::Path(
        manifest_dir().join("../../testdata/sample-ca/anchorage-sample-root.crt"),
    )];
    for name in [
        "sample-root-rekeyed.crt",
        "ops-platform-root.crt",
        "no-cn-root.crt",
    ] {
        sources.push(Source::Path(fixtures.join(name)));
    }
    sources
}

fn bundle_from(sources: &[Source]) -> Bundle {
    let (bundle, report) = Policy::default()
        .apply(load(sources, &LoadOptions::default()))
        .expect("build the golden bundle");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(bundle.len(), 4);
    bundle
}

fn bundle() -> Bundle {
    bundle_from(&sources())
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        #[allow(clippy::disallowed_methods)] // a test fixture, not an output
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run UPDATE_GOLDEN=1 cargo test -p anchorage-k8s --test golden",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from what was built; if the change is intended, rewrite it with UPDATE_GOLDEN=1 cargo test -p anchorage-k8s --test golden\n--- built\n{actual}",
        path.display()
    );
}

fn name() -> ObjectName {
    ObjectName::new("anchorage-trust")
        .in_namespace("apps")
        .with_label("app.kubernetes.io/part-of", "platform")
}

/// Every YAML document of a golden, parsed back into the type it was built from.
fn parse_documents(yaml: &str) -> Vec<Object> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| {
            let value = serde_yaml_ng::Value::deserialize(document).expect("a YAML document");
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("ConfigMap") => Object::ConfigMap(
                    serde_yaml_ng::from_value::<ConfigMap>(value).expect("a ConfigMap"),
                ),
                Some("Secret") => {
                    Object::Secret(serde_yaml_ng::from_value::<Secret>(value).expect("a Secret"))
                }
                Some("ClusterTrustBundle") => Object::ClusterTrustBundle(
                    serde_yaml_ng::from_value::<ClusterTrustBundle>(value)
                        .expect("a ClusterTrustBundle"),
                ),
                other => panic!("unexpected kind {other:?}"),
            }
        })
        .collect()
}

/// The YAML goldens and the objects they hold.
fn yaml_cases(b: &Bundle) -> Vec<(&'static str, Vec<Object>)> {
    let signer_name = ObjectName::new("example.com:private-ca:roots").with_label("tier", "prod");
    vec![
        (
            "trust-configmap.yaml",
            vec![
                trust_configmap(b, &name(), &Layout::default())
                    .expect("build the golden object")
                    .into(),
            ],
        ),
        (
            "trust-configmap-bundle-only-rhel.yaml",
            vec![
                trust_configmap(b, &name(), &Layout::bundle_only().with_rhel_aliases())
                    .expect("build the golden object")
                    .into(),
            ],
        ),
        (
            "trust-secret.yaml",
            vec![
                trust_secret(b, &name(), &Layout::default())
                    .expect("build the golden object")
                    .into(),
            ],
        ),
        (
            "wasmcloud-configmap.yaml",
            vec![
                wasmcloud_configmap(
                    b,
                    &ObjectName::new("wasmcloud-cas").in_namespace("wasmcloud"),
                )
                .expect("build the golden object")
                .into(),
            ],
        ),
        (
            "cluster-trust-bundle.yaml",
            vec![
                cluster_trust_bundle(b, &signer_name, Some("example.com/private-ca"))
                    .expect("build the golden object")
                    .into(),
            ],
        ),
        (
            "stream.yaml",
            vec![
                trust_configmap(b, &name(), &Layout::bundle_only())
                    .expect("build the golden object")
                    .into(),
                cluster_trust_bundle(b, &ObjectName::new("corp-roots"), None)
                    .expect("build the golden object")
                    .into(),
            ],
        ),
    ]
}

#[test]
fn yaml_goldens_match_and_parse_back_into_the_same_objects() {
    let b = bundle();
    for (file, objects) in yaml_cases(&b) {
        let yaml = to_yaml(&objects).unwrap();
        golden(file, &yaml);
        assert_eq!(parse_documents(&yaml), objects, "{file} round trip");
    }
}

#[test]
fn json_goldens_match_and_parse_back() {
    let b = bundle();
    let cm = trust_configmap(&b, &name(), &Layout::default()).unwrap();
    let one = to_json(&[cm.clone().into()]).unwrap();
    golden("trust-configmap.json", &one);
    assert_eq!(serde_json::from_str::<ConfigMap>(&one).unwrap(), cm);

    let ctb = cluster_trust_bundle(&b, &ObjectName::new("corp-roots"), None).unwrap();
    let list = to_json(&[cm.clone().into(), ctb.clone().into()]).unwrap();
    golden("list.json", &list);
    let value: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        (&value["apiVersion"], &value["kind"]),
        (&"v1".into(), &"List".into())
    );
    assert_eq!(
        serde_json::from_value::<ConfigMap>(value["items"][0].clone()).unwrap(),
        cm
    );
    assert_eq!(
        serde_json::from_value::<ClusterTrustBundle>(value["items"][1].clone()).unwrap(),
        ctb
    );
}

/// A Deployment as `kubectl get -o json` prints it (trimmed), for the JSON patch golden.
const DEPLOYMENT: &str = r#"{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": { "name": "web", "namespace": "apps" },
  "spec": {
    "selector": { "matchLabels": { "app": "web" } },
    "template": {
      "metadata": { "labels": { "app": "web" } },
      "spec": {
        "containers": [
          { "name": "proxy", "image": "envoy" },
          { "name": "web", "image": "web", "env": [{ "name": "PORT", "value": "8080" }] }
        ],
        "volumes": [{ "name": "cache", "emptyDir": {} }]
      }
    }
  }
}"#;

#[test]
fn patch_goldens_match() {
    let b = bundle();
    let sha = BTreeMap::from([(BUNDLE_SHA256_ANNOTATION.to_owned(), bundle_sha256(&b))]);

    let mut deployment = PatchRequest::new(
        WorkloadKind::Deployment,
        TrustSource::ConfigMap("anchorage-trust".into()),
        ["web"],
    );
    deployment.workload_name = Some("web".into());
    deployment.workload_namespace = Some("apps".into());
    deployment.env = vec![
        env_var("SSL_CERT_DIR", "/etc/ssl/certs"),
        env_var("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    ];
    deployment.pod_annotations = sha;
    let strategic = workload_patch(&deployment).unwrap();
    golden(
        "patch-deployment-strategic.yaml",
        &serde_yaml_ng::to_string(&strategic).unwrap(),
    );

    let mut cron = PatchRequest::new(
        WorkloadKind::CronJob,
        TrustSource::ClusterTrustBundle(CtbSelector::Signer {
            signer_name: "example.com/private-ca".into(),
            match_labels: BTreeMap::from([("tier".into(), "prod".into())]),
        }),
        ["report"],
    );
    cron.env = vec![env_var(
        "SSL_CERT_FILE",
        "/etc/ssl/certs/ca-certificates.crt",
    )];
    golden(
        "patch-cronjob-ctb-strategic.yaml",
        &serde_yaml_ng::to_string(&workload_patch(&cron).unwrap()).unwrap(),
    );

    deployment.format = PatchFormat::Json {
        current: serde_json::from_str(DEPLOYMENT).unwrap(),
    };
    let json = workload_patch(&deployment).unwrap();
    let mut text = serde_json::to_string_pretty(&json).unwrap();
    text.push('\n');
    golden("patch-deployment.json", &text);
}

#[test]
fn output_does_not_depend_on_source_order() {
    let mut reversed = sources();
    reversed.reverse();
    let (a, b) = (bundle(), bundle_from(&reversed));
    for ((file, x), (_, y)) in yaml_cases(&a).into_iter().zip(yaml_cases(&b)) {
        assert_eq!(to_yaml(&x).unwrap(), to_yaml(&y).unwrap(), "{file}");
    }
}

/// Writes `yaml` to `dir/file` and loads it with our own Kubernetes reader (`.crt` keys).
fn read_back(dir: &Path, file: &str, yaml: &str) -> Vec<String> {
    let path = dir.join(file);
    #[allow(clippy::disallowed_methods)] // a test input, not an output
    std::fs::write(&path, yaml).expect("write the manifest");
    let (bundle, report) = Policy::default()
        .apply(load(&[Source::Path(path)], &LoadOptions::default()))
        .expect("load the manifest back");
    assert!(report.problems.is_empty(), "{file}: {:?}", report.problems);
    bundle.certificates().map(|c| c.sha256().hex()).collect()
}

#[test]
fn our_reader_loads_the_certificates_back() {
    let b = bundle();
    let expected: Vec<String> = b.certificates().map(|c| c.sha256().hex()).collect();
    let tmp = anchorage_test_support::tempdir().unwrap();
    let wasmcloud = wasmcloud_configmap(&b, &ObjectName::new("wasmcloud-cas")).unwrap();
    let keys: Vec<&String> = wasmcloud.data.as_ref().unwrap().keys().collect();
    assert!(keys.iter().all(|k| k.ends_with(".crt")), "{keys:?}");
    for (file, object) in [
        ("wasmcloud.yaml", Object::from(wasmcloud)),
        (
            "trust.yaml",
            trust_configmap(&b, &name(), &Layout::default())
                .unwrap()
                .into(),
        ),
        (
            "secret.yaml",
            trust_secret(&b, &name(), &Layout::default())
                .unwrap()
                .into(),
        ),
    ] {
        let yaml = to_yaml(&[object]).unwrap();
        assert_eq!(read_back(tmp.path(), file, &yaml), expected, "{file}");
    }
}

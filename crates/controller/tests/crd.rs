//! The committed CRD (`deploy/kubernetes/controller/crd.yaml`) is the one generated from the Rust
//! type. `ANCHORAGE_UPDATE_CRD=1 cargo test -p anchorage-controller --test crd` rewrites it.

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/controller/crd.yaml")
}

#[test]
fn the_committed_crd_is_the_generated_one() {
    let generated = anchorage_controller::crd_yaml().unwrap();
    let path = committed();
    if std::env::var_os("ANCHORAGE_UPDATE_CRD").is_some() {
        #[allow(clippy::disallowed_methods)] // a developer's regeneration of a committed file
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == generated,
        "{} differs from the CRD generated from crates/controller/src/crd.rs: run `anchorage controller crd > {}` (or ANCHORAGE_UPDATE_CRD=1 cargo test -p anchorage-controller --test crd)",
        path.display(),
        path.display()
    );
}

#[test]
fn the_crd_is_cluster_scoped_v1alpha1_with_a_status_subresource() {
    let crd: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&anchorage_controller::crd_yaml().unwrap()).unwrap();
    assert_eq!(crd["metadata"]["name"], "bundles.trust.anchorage.dev");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_mapping());
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in [
        "configMap",
        "secret",
        "inline",
        "mozillaRoots",
        "systemStore",
    ] {
        assert!(
            spec["sources"]["items"]["properties"][field].is_mapping(),
            "source field {field} missing"
        );
    }
    assert!(spec["target"]["properties"]["namespaceSelector"].is_mapping());
}

#[test]
fn a_bundle_reads_from_yaml() {
    let bundle: anchorage_controller::Bundle = serde_yaml_ng::from_str(
        "apiVersion: trust.anchorage.dev/v1alpha1\nkind: Bundle\nmetadata: {name: trust}\nspec:\n  sources:\n  - configMap: {name: wasmcloud-cas, keySuffix: .crt}\n  - mozillaRoots: true\n  target:\n    configMap: {}\n    namespaceSelector: {matchLabels: {trust: enabled}}\n",
    )
    .unwrap();
    assert_eq!(
        bundle.spec.sources[0]
            .config_map
            .as_ref()
            .unwrap()
            .key_suffix
            .as_deref(),
        Some(".crt")
    );
    assert_eq!(
        bundle.spec.target.config_map.as_ref().unwrap().layout,
        anchorage_controller::crd::TargetLayout::CertsDir
    );
}

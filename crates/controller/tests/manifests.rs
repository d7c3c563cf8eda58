//! deploy/kubernetes/controller: the RBAC is exactly the list of verbs per resource below (what
//! the reconciler calls; a grant more or less fails), the kustomization lists every file, and
//! the Deployment runs `anchorage controller` under the service account the RBAC binds.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::path::PathBuf;

use anchorage_test_support::manifests;
use serde_yaml_ng::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/controller")
}

fn documents(file: &str) -> Vec<Value> {
    manifests::documents(&dir().join(file))
}

/// What the controller does, per `group/resource` (core group: empty).
const EXPECTED: &[(&str, &[&str])] = &[
    ("trust.anchorage.dev/bundles", &["get", "list", "watch"]),
    ("trust.anchorage.dev/bundles/status", &["patch"]),
    ("/namespaces", &["list", "watch"]),
    (
        "/configmaps",
        &["create", "delete", "get", "list", "patch", "watch"],
    ),
    (
        "/secrets",
        &["create", "delete", "get", "list", "patch", "watch"],
    ),
    ("events.k8s.io/events", &["create", "patch"]),
    (
        "certificates.k8s.io/clustertrustbundles",
        &["create", "delete", "get", "list", "patch"],
    ),
    ("trust.cert-manager.io/bundles", &["get", "list", "watch"]),
    ("trust.cert-manager.io/bundles/status", &["patch"]),
];

#[test]
fn rbac_grants_exactly_the_verbs_per_resource() {
    let docs = documents("rbac.yaml");
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let granted = manifests::granted_verbs(role);
    let expected = manifests::expected_verbs(EXPECTED);
    assert_eq!(granted, expected);
    // Only cluster-wide grants through the one binding, to the controller's service account.
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "anchorage-controller");
    assert_eq!(binding["subjects"][0]["namespace"], "anchorage-trust");
    // Leader election: the Lease in the controller's own namespace only (a Role, not cluster-wide).
    let lease_role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(lease_role["metadata"]["namespace"], "anchorage-trust");
    assert_eq!(
        manifests::granted_verbs(lease_role),
        manifests::expected_verbs(&[("coordination.k8s.io/leases", &["create", "get", "patch"])])
    );
    let lease_binding = docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    assert_eq!(lease_binding["metadata"]["namespace"], "anchorage-trust");
    assert_eq!(lease_binding["roleRef"]["kind"], "Role");
    assert_eq!(
        lease_binding["roleRef"]["name"],
        lease_role["metadata"]["name"]
    );
    assert_eq!(lease_binding["subjects"][0]["name"], "anchorage-controller");
    assert_eq!(
        docs.iter().filter(|d| d["kind"] == "ClusterRole").count(),
        1,
        "one ClusterRole"
    );
}

#[test]
fn the_kustomization_lists_every_manifest_and_the_deployment_runs_the_controller() {
    let k = &documents("kustomization.yaml")[0];
    let listed: BTreeSet<String> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
    let deployment = &documents("deployment.yaml")[0];
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "anchorage-controller");
    let args: Vec<&str> = spec["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "controller",
            "--trust-namespace=anchorage-trust",
            "--leader-elect"
        ]
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    // The election's identity: the pod's name.
    let env = &spec["containers"][0]["env"][0];
    assert_eq!(env["name"], "POD_NAME");
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
}

//! deploy/kubernetes/secrets-kubernetes: the RBAC is exactly the list of verbs per resource
//! below (what the store calls; a grant more or less fails), namespaced (a Role, never a
//! ClusterRole) in the served namespace, bound to the backend's service account; the
//! kustomization lists every file; every object decodes with k8s-openapi; the Deployment runs
//! `secrets serve --store kubernetes` on the namespace the Role covers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::path::PathBuf;

use anchorage_test_support::manifests;
use serde_yaml_ng::Value;

const SERVED: &str = "wasmcloud-secrets";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/secrets-kubernetes")
}

fn documents(file: &str) -> Vec<Value> {
    manifests::documents(&dir().join(file))
}

/// What the store does, per `group/resource[/resourceName]` (all core group: empty).
const EXPECTED: &[(&str, &[&str])] = &[
    ("/secrets", &["get", "list"]),
    ("/configmaps/anchorage-secrets-mappings", &["get"]),
];

#[test]
fn rbac_is_read_only_and_namespaced() {
    let docs = documents("role.yaml");
    assert!(
        docs.iter()
            .all(|d| d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding"),
        "no cluster-wide grant"
    );
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(role["metadata"]["namespace"], SERVED);
    for rule in role["rules"].as_sequence().unwrap() {
        assert_eq!(
            rule["apiGroups"].as_sequence().unwrap(),
            &[Value::from("")],
            "core group only"
        );
    }
    let granted = manifests::granted_verbs(role);
    let expected = manifests::expected_verbs(EXPECTED);
    assert_eq!(granted, expected);
    // The mappings ConfigMap the Role names is the store's default.
    assert!(expected.contains_key(&format!(
        "/configmaps/{}",
        anchorage_secrets_store_k8s::DEFAULT_MAPPINGS_CONFIGMAP
    )));
    let binding = docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["metadata"]["namespace"], SERVED);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let account = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        account["metadata"]["namespace"]
    );
    // The backend does not run where the served Secrets are: no mapping can hand out its seeds.
    assert_ne!(account["metadata"]["namespace"], SERVED);
}

#[test]
fn the_kustomization_lists_every_manifest_and_each_object_decodes() {
    let k = &documents("kustomization.yaml")[0];
    let listed: BTreeSet<String> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    for file in &present {
        for doc in documents(file) {
            let json = serde_json::to_value(&doc).unwrap();
            let kind = doc["kind"].as_str().unwrap().to_owned();
            let ok = match kind.as_str() {
                "Namespace" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(json).is_ok()
                }
                "ServiceAccount" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(json)
                        .is_ok()
                }
                "ConfigMap" => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(json).is_ok()
                }
                "Role" => serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json).is_ok(),
                "RoleBinding" => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(json).is_ok()
                }
                "Deployment" => {
                    serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(json)
                        .map_err(|e| eprintln!("{e}"))
                        .is_ok()
                }
                other => panic!("unexpected kind {other} in {file}"),
            };
            assert!(ok, "{kind} in {file} does not decode");
        }
    }
}

#[test]
fn the_deployment_serves_the_namespace_the_role_covers() {
    let docs = documents("deployment.yaml");
    let d = &docs[0];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "anchorage-secrets");
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..2], ["secrets", "serve"]);
    assert!(args.contains(&"--store=kubernetes"));
    assert!(args.contains(&format!("--k8s-namespace={SERVED}").as_str()));
    // The name wasmCloud's own Kubernetes backend answers to.
    assert!(args.contains(&"--backend=kube"));
}

#[test]
fn kubectl_kustomize_renders_the_directory() {
    let Some(kubectl) = anchorage_test_support::peer::require("kubectl") else {
        anchorage_test_support::peer::skip("kubectl is not installed");
        return;
    };
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds: BTreeSet<String> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(kinds, expected);
    // The image is the one kustomize sets.
    assert!(text.contains("image: anchorage:latest"), "{text}");
}

//! `anchorage k8s patch --kind wasmcloudhostconfig`: the real binary on wasmCloud's operator's
//! own published host config (crates/k8s/tests/fixtures/README.md) as `kubectl get -o json`
//! would pass it: the JSON patch adds the authority, a second run on the patched object prints
//! `[]`, `--type merge` carries the list, and the wrong inputs are refused with their exit codes.

#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // test fixtures written to a temp dir, not outputs

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    common::anchorage(dir, args).output().unwrap()
}

fn host_config() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../k8s/tests/fixtures/wasmcloud-operator-full-config.yaml"
    );
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn patch(dir: &Path, current: &Value, extra: &[&str]) -> Output {
    std::fs::write(dir.join("host.json"), current.to_string()).unwrap();
    let mut args = vec![
        "k8s",
        "patch",
        "--kind",
        "wasmcloudhostconfig",
        "--name",
        "my-wasmcloud-cluster",
        "--configmap",
        "corp-cas",
        "--current",
        "host.json",
    ];
    args.extend(extra);
    anchorage(dir, &args)
}

#[test]
fn the_authority_is_added_once() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let host = host_config();
    let out = patch(dir.path(), &host, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ops: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = json!({"name": "corp-cas", "configMap": {"name": "corp-cas"}});
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/spec/certificates", "value": {"authorities": [entry]}}])
    );
    // Applied (the one `add`), the command has nothing more to do.
    let mut patched = host.clone();
    patched["spec"]["certificates"] = ops[0]["value"].clone();
    let out = patch(dir.path(), &patched, &[]);
    assert!(out.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );

    // A merge patch carries the whole list, the existing entry first.
    let mut two = host;
    two["spec"]["certificates"] =
        json!({"authorities": [{"name": "mesh", "secret": {"secretName": "mesh-ca"}}]});
    let out = patch(dir.path(), &two, &["--type", "merge"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merge: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        merge["spec"]["certificates"]["authorities"],
        json!([{"name": "mesh", "secret": {"secretName": "mesh-ca"}}, entry])
    );
}

#[test]
fn wrong_inputs_are_refused() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let host = host_config();
    // The object is another host config.
    let out = patch(dir.path(), &host, &[]);
    assert!(out.status.success());
    let mut other = host.clone();
    other["metadata"]["name"] = json!("another");
    assert_eq!(patch(dir.path(), &other, &[]).status.code(), Some(3));
    // Not a host config at all.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "my-wasmcloud-cluster"}, "spec": {}});
    assert_eq!(patch(dir.path(), &deployment, &[]).status.code(), Some(3));
    // The authority name is taken by another ConfigMap.
    let mut taken = host.clone();
    taken["spec"]["certificates"] =
        json!({"authorities": [{"name": "corp-cas", "configMap": {"name": "elsewhere"}}]});
    let out = patch(dir.path(), &taken, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("elsewhere"));
    // Workload options, no --current, --type merge for a workload.
    assert_eq!(
        patch(dir.path(), &host, &["--container", "app"])
            .status
            .code(),
        Some(2)
    );
    let out = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--kind",
            "wasmcloudhostconfig",
            "--configmap",
            "c",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--kind",
            "deployment",
            "--configmap",
            "c",
            "--container",
            "app",
            "--type",
            "merge",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

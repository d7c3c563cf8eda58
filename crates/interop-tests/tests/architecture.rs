//! The layering ARCHITECTURE.md promises, checked on the manifests (`cargo metadata`) and, where
//! a manifest cannot tell, on the source.
//!
//! - The pure crates (no filesystem, network, clock or environment access of their own) depend,
//!   for building and running, only on other pure crates of ours, and on no third-party crate
//!   whose job is I/O. Dev-dependencies are free: tests may read files.
//! - `anchorage-image` and `anchorage-k8s` build on the bundle model (`anchorage-bundle`), not on
//!   `anchorage-trust`, which reads sources and writes outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates of ours that do no I/O. Every normal or build dependency of one of these on a
/// crate of ours must be in this list too.
const PURE: &[&str] = &[
    "anchorage-x509",
    "anchorage-keystore",
    "anchorage-bundle",
    "anchorage-secrets",
    "anchorage-image",
    "anchorage-k8s",
];

/// Third-party crates whose job is I/O (runtimes, HTTP, system calls, temporary files, stores):
/// none may be a direct dependency of a pure crate.
const IO_CRATES: &[&str] = &[
    "tokio",
    "async-nats",
    "reqwest",
    "hyper",
    "kube",
    "oci-client",
    "rustix",
    "libc",
    "nix",
    "tempfile",
    "redb",
    "rustls-native-certs",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every broken rule, one sentence each.
fn violations(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut broken = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let deps = package["dependencies"].as_array().expect("dependencies");
        for dep in deps {
            // `null` is a normal dependency; `dev` ones are for tests only.
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if matches!(name, "anchorage-image" | "anchorage-k8s") && dep_name == "anchorage-trust"
            {
                broken.push(format!(
                    "{name} depends on anchorage-trust: use the pure anchorage-bundle instead"
                ));
            }
            if !PURE.contains(&name) {
                continue;
            }
            if ours.contains(&dep_name) && !PURE.contains(&dep_name) {
                broken.push(format!(
                    "pure crate {name} depends on {dep_name}, which does I/O"
                ));
            }
            if IO_CRATES.contains(&dep_name) {
                broken.push(format!(
                    "pure crate {name} depends on the I/O crate {dep_name}"
                ));
            }
        }
    }
    broken
}

#[test]
fn pure_crates_depend_only_on_pure_crates() {
    let metadata = metadata();
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for pure in PURE {
        assert!(names.contains(pure), "{pure} is not a workspace member");
    }
    let broken = violations(&metadata);
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Negative control: the rules catch what they are for (the tree before the bundle model moved
/// out of anchorage-trust, and a pure crate reaching for the file system).
#[test]
fn the_rules_catch_a_pure_crate_reaching_for_io() {
    let fake = serde_json::json!({ "packages": [
        { "name": "anchorage-trust", "dependencies": [] },
        { "name": "anchorage-image", "dependencies": [
            { "name": "anchorage-trust", "kind": null },
        ]},
        { "name": "anchorage-k8s", "dependencies": [
            { "name": "anchorage-trust", "kind": "dev" },
        ]},
        { "name": "anchorage-secrets", "dependencies": [
            { "name": "tempfile", "kind": null },
        ]},
    ]});
    let broken = violations(&fake);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("anchorage-image depends on anchorage-trust"));
    assert!(broken[1].contains("pure crate anchorage-image depends on anchorage-trust"));
    assert!(broken[2].contains("anchorage-secrets depends on the I/O crate tempfile"));
}

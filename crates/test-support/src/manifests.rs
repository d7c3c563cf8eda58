//! Reading the Kubernetes manifests under `deploy/kubernetes` in tests: every YAML document of a
//! file, and the verbs an RBAC `Role`/`ClusterRole` grants per resource, so a test can assert
//! the grants are exactly what the code calls (least privilege, no wildcard).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml_ng::Value;

/// Every YAML document of `file`; panics naming the file if it does not read or parse.
pub fn documents(file: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("parse {}: {e}", file.display()))
        })
        .collect()
}

/// The verbs `role` (a `Role` or `ClusterRole` document) grants, per
/// `group/resource[/resourceName]` (the core group is empty: `/secrets`). Panics on a wildcard
/// verb.
pub fn granted_verbs(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let verbs = strings(&rule["verbs"]);
        assert!(
            !verbs.iter().any(|v| v == "*"),
            "no wildcard verbs: {rule:?}"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let base = format!("{group}/{resource}");
                let keys: Vec<String> = if names.is_empty() {
                    vec![base]
                } else {
                    names.iter().map(|n| format!("{base}/{n}")).collect()
                };
                for key in keys {
                    granted
                        .entry(key)
                        .or_default()
                        .extend(verbs.iter().cloned());
                }
            }
        }
    }
    granted
}

/// `(resource key, verbs)` pairs as [`granted_verbs`] returns them, to compare with.
pub fn expected_verbs(expected: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    expected
        .iter()
        .map(|(r, v)| ((*r).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

//! `certificates.authorities` added to wasmCloud's operator's own published `WasmCloudHostConfig`
//! objects (tests/fixtures/README.md): the JSON and merge patches applied by an independent
//! RFC 6902 / RFC 7386 implementation keep every other field, decode as the operator's type
//! declares them (a list of core/v1 `Volume`s), are empty when applied a second time, and lead
//! the operator's own rule (`pod_template` in its `src/controller.rs`, restated below) to the
//! `--tls-ca-path /wasmcloud/certificates/ca-<name>/<key>` arguments for the ConfigMap's `.crt`
//! keys.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;

use anchorage_k8s::{
    HostConfigAuthority, HostConfigPatchFormat, wasmcloud_ca_path, wasmcloud_host_config_patch,
};
use k8s_openapi::api::core::v1::Volume;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn apply(mut object: Value, patch: &Value, format: HostConfigPatchFormat) -> Value {
    match format {
        HostConfigPatchFormat::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
            json_patch::patch(&mut object, &ops).unwrap();
        }
        HostConfigPatchFormat::Merge => json_patch::merge(&mut object, patch),
    }
    object
}

/// The operator's rule, restated: for each authority with a ConfigMap, the data keys ending in
/// `.crt`, each as `--tls-ca-path /wasmcloud/certificates/ca-<authority>/<key>`.
fn operator_args(host: &Value, configmaps: &BTreeMap<&str, Vec<&str>>) -> Vec<String> {
    let mut args = Vec::new();
    let authorities: Vec<Volume> =
        serde_json::from_value(host["spec"]["certificates"]["authorities"].clone()).unwrap();
    for authority in authorities {
        let Some(cm) = authority.config_map.map(|c| c.name) else {
            continue;
        };
        for key in configmaps[cm.as_str()]
            .iter()
            .filter(|k| k.ends_with(".crt"))
        {
            args.push("--tls-ca-path".to_owned());
            args.push(format!(
                "/wasmcloud/certificates/ca-{}/{key}",
                authority.name
            ));
        }
    }
    args
}

#[test]
fn the_operators_own_host_configs_get_the_authority_once() {
    let authority = HostConfigAuthority::configmap("anchorage-wasmcloud-cas");
    let configmaps = BTreeMap::from([(
        "anchorage-wasmcloud-cas",
        vec!["corp-root_1a2b3c4d.crt", "ops-root_99aa00ff.crt", "README"],
    )]);
    for file in [
        "wasmcloud-operator-quickstart.yaml",
        "wasmcloud-operator-full-config.yaml",
    ] {
        let host = fixture(file);
        for format in [HostConfigPatchFormat::Json, HostConfigPatchFormat::Merge] {
            let patch = wasmcloud_host_config_patch(&host, &authority, format).unwrap();
            let patched = apply(host.clone(), &patch, format);
            // Everything else is as it was.
            let mut without = patched.clone();
            without["spec"]
                .as_object_mut()
                .unwrap()
                .remove("certificates");
            assert_eq!(without, host, "{file} {format:?}");
            // The operator's type: a list of Volumes, ours with configMap.name.
            let volumes: Vec<Volume> =
                serde_json::from_value(patched["spec"]["certificates"]["authorities"].clone())
                    .unwrap();
            assert_eq!(volumes.len(), 1);
            assert_eq!(volumes[0].name, "anchorage-wasmcloud-cas");
            assert_eq!(
                volumes[0].config_map.as_ref().map(|c| c.name.as_str()),
                Some("anchorage-wasmcloud-cas")
            );
            // Applying the command again changes nothing.
            let again = wasmcloud_host_config_patch(&patched, &authority, format).unwrap();
            assert!(again == json!([]) || again == json!({}), "{file}: {again}");
            // What the operator then passes to the host.
            assert_eq!(
                operator_args(&patched, &configmaps),
                [
                    "--tls-ca-path".to_owned(),
                    wasmcloud_ca_path("anchorage-wasmcloud-cas", "corp-root_1a2b3c4d.crt"),
                    "--tls-ca-path".to_owned(),
                    wasmcloud_ca_path("anchorage-wasmcloud-cas", "ops-root_99aa00ff.crt"),
                ]
            );
        }
    }
}

#[test]
fn an_existing_authority_is_kept_and_a_clash_is_refused() {
    let mut host = fixture("wasmcloud-operator-full-config.yaml");
    host["spec"]["certificates"] =
        json!({"authorities": [{"name": "mesh", "secret": {"secretName": "mesh-ca"}}]});
    let authority = HostConfigAuthority::configmap("corp");
    let patch =
        wasmcloud_host_config_patch(&host, &authority, HostConfigPatchFormat::Json).unwrap();
    let patched = apply(host.clone(), &patch, HostConfigPatchFormat::Json);
    let list = patched["spec"]["certificates"]["authorities"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "mesh");
    // Negative control: a different ConfigMap under a name already taken.
    let clash = HostConfigAuthority {
        name: "mesh".into(),
        source: anchorage_k8s::AuthoritySource::ConfigMap("other".into()),
    };
    assert!(wasmcloud_host_config_patch(&host, &clash, HostConfigPatchFormat::Merge).is_err());
}

//! The patch that adds a CA ConfigMap (or Secret) to a wasmCloud `WasmCloudHostConfig`
//! (`k8s.wasmcloud.dev/v1alpha1`), so wasmCloud's operator hands its `.crt` keys to the host as
//! `--tls-ca-path` arguments.
//!
//! The shapes are the operator's (`wasmCloud/wasmcloud-operator`):
//! `crates/types/src/v1alpha1/wasmcloud_host_config.rs` declares `spec.certificates` as
//! `WasmCloudHostCertificates { authorities: Option<Vec<Volume>> }`, a list of core/v1 `Volume`s;
//! `src/controller.rs` (`pod_template`) accepts only a volume with `configMap.name` or
//! `secret.secretName`, names the pod volume `ca-<volume name>`, mounts it read-only at
//! `/wasmcloud/certificates/ca-<volume name>`, lists the object's data keys ending in `.crt`
//! (`discover_configmap_certificates`, `discover_secret_certificates`) and passes each as
//! `--tls-ca-path /wasmcloud/certificates/ca-<volume name>/<key>` ([`wasmcloud_ca_path`]). The
//! objects `anchorage bundle build --k8s-wasmcloud-configmap` writes hold exactly such keys.
//!
//! A custom resource takes no strategic merge patch, and the list is replaced whole by a JSON
//! merge patch, so the patch is computed from the current object: an RFC 6902 patch (guarded by
//! `test` operations, so it fails rather than clobbers when the object changed meanwhile) or a
//! merge patch carrying the whole list. An entry already naming the same ConfigMap (or Secret)
//! makes an empty patch (`[]` / `{}`): applying the command's output again changes nothing. An
//! entry of the same volume name naming another object is refused, never repointed.
//!
//! Not here: reading the object from an API server (the caller passes it as `kubectl get -o
//! json` prints it), or the ConfigMap itself ([`crate::wasmcloud_configmap`]).

use serde_json::{Map, Value, json};

use crate::error::K8sError;
use crate::validate::{dns1123_label, dns1123_subdomain};

/// The API version of the operator's host config.
pub const WASMCLOUD_HOST_CONFIG_API_VERSION: &str = "k8s.wasmcloud.dev/v1alpha1";
/// Its kind.
pub const WASMCLOUD_HOST_CONFIG_KIND: &str = "WasmCloudHostConfig";
/// Where the operator mounts each authority: `<this>/ca-<volume name>`.
pub const WASMCLOUD_CERTIFICATES_DIR: &str = "/wasmcloud/certificates";

/// Where an authority's object holds the certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthoritySource {
    /// A ConfigMap in the host config's namespace.
    ConfigMap(String),
    /// A Secret in the host config's namespace.
    Secret(String),
}

impl AuthoritySource {
    fn name(&self) -> &str {
        match self {
            AuthoritySource::ConfigMap(n) | AuthoritySource::Secret(n) => n,
        }
    }

    /// The volume source as the operator reads it.
    fn volume_fields(&self) -> (&'static str, Value) {
        match self {
            AuthoritySource::ConfigMap(n) => ("configMap", json!({ "name": n })),
            AuthoritySource::Secret(n) => ("secret", json!({ "secretName": n })),
        }
    }

    /// Whether the volume `v` already points at this object.
    fn matches(&self, v: &Value) -> bool {
        match self {
            AuthoritySource::ConfigMap(n) => v.pointer("/configMap/name") == Some(&json!(n)),
            AuthoritySource::Secret(n) => v.pointer("/secret/secretName") == Some(&json!(n)),
        }
    }
}

/// One `certificates.authorities` entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfigAuthority {
    /// The volume's name (the operator mounts it as `ca-<name>`); a DNS-1123 label of at most
    /// 60 characters, so that `ca-<name>` is one too.
    pub name: String,
    /// The object holding the `.crt` keys.
    pub source: AuthoritySource,
}

impl HostConfigAuthority {
    /// An authority for the ConfigMap `configmap`, named after it.
    pub fn configmap(configmap: impl Into<String>) -> Self {
        let configmap = configmap.into();
        Self {
            name: configmap.clone(),
            source: AuthoritySource::ConfigMap(configmap),
        }
    }

    /// The volume entry as it goes into `certificates.authorities`.
    pub fn volume(&self) -> Value {
        let (field, value) = self.source.volume_fields();
        let mut v = Map::new();
        v.insert("name".into(), json!(self.name));
        v.insert(field.into(), value);
        Value::Object(v)
    }

    fn validate(&self) -> Result<(), K8sError> {
        let kind = "WasmCloudHostConfig authority";
        dns1123_label(&self.name).map_err(|reason| K8sError::InvalidName {
            kind,
            name: self.name.clone(),
            reason,
        })?;
        if self.name.len() > 60 {
            return Err(K8sError::InvalidName {
                kind,
                name: self.name.clone(),
                reason: "at most 60 characters: the operator names the pod volume `ca-<name>`, a label of at most 63".into(),
            });
        }
        let (kind, name) = match &self.source {
            AuthoritySource::ConfigMap(n) => ("ConfigMap", n),
            AuthoritySource::Secret(n) => ("Secret", n),
        };
        dns1123_subdomain(name).map_err(|reason| K8sError::InvalidName {
            kind,
            name: name.clone(),
            reason,
        })
    }
}

/// Which patch to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostConfigPatchFormat {
    /// RFC 6902 (`kubectl patch --type json`), with `test` guards.
    Json,
    /// RFC 7386 JSON merge patch (`kubectl patch --type merge`): the whole list.
    Merge,
}

/// The path the operator gives the host for `key` of `authority`'s object:
/// `/wasmcloud/certificates/ca-<authority>/<key>`.
pub fn wasmcloud_ca_path(authority: &str, key: &str) -> String {
    format!("{WASMCLOUD_CERTIFICATES_DIR}/ca-{authority}/{key}")
}

/// The patch adding `authority` to the host config `current` (as `kubectl get -o json` prints
/// it); empty (`[]` or `{}`) when an entry already names the same object.
pub fn wasmcloud_host_config_patch(
    current: &Value,
    authority: &HostConfigAuthority,
    format: HostConfigPatchFormat,
) -> Result<Value, K8sError> {
    authority.validate()?;
    let kind = current.get("kind").and_then(Value::as_str);
    let api = current.get("apiVersion").and_then(Value::as_str);
    if kind != Some(WASMCLOUD_HOST_CONFIG_KIND) || api != Some(WASMCLOUD_HOST_CONFIG_API_VERSION) {
        return Err(K8sError::WrongKind {
            expected: "WasmCloudHostConfig (k8s.wasmcloud.dev/v1alpha1)",
            found: match (api, kind) {
                (Some(a), Some(k)) => format!("{k} ({a})"),
                (_, Some(k)) => k.to_owned(),
                _ => "object without apiVersion and kind".to_owned(),
            },
        });
    }
    let malformed = |path: &str, expected: &'static str| K8sError::MalformedObject {
        object: WASMCLOUD_HOST_CONFIG_KIND,
        path: path.to_owned(),
        expected,
    };
    let Some(spec) = current.get("spec") else {
        return Err(malformed("/spec", "an object"));
    };
    if !spec.is_object() {
        return Err(malformed("/spec", "an object"));
    }
    let certificates = spec.get("certificates").filter(|v| !v.is_null());
    if certificates.is_some_and(|c| !c.is_object()) {
        return Err(malformed("/spec/certificates", "an object"));
    }
    let authorities = certificates
        .and_then(|c| c.get("authorities"))
        .filter(|v| !v.is_null());
    let list: &[Value] = match authorities {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(malformed("/spec/certificates/authorities", "a list")),
    };
    if list.iter().any(|v| authority.source.matches(v)) {
        return Ok(match format {
            HostConfigPatchFormat::Json => json!([]),
            HostConfigPatchFormat::Merge => json!({}),
        });
    }
    if let Some(other) = list
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(authority.name.as_str()))
    {
        return Err(K8sError::AuthorityConflict {
            authority: authority.name.clone(),
            wanted: authority.source.name().to_owned(),
            existing: other
                .pointer("/configMap/name")
                .or_else(|| other.pointer("/secret/secretName"))
                .and_then(Value::as_str)
                .unwrap_or("another volume source")
                .to_owned(),
        });
    }
    let entry = authority.volume();
    Ok(match format {
        HostConfigPatchFormat::Merge => {
            let mut all = list.to_vec();
            all.push(entry);
            json!({ "spec": { "certificates": { "authorities": all } } })
        }
        HostConfigPatchFormat::Json => match (certificates, authorities) {
            (None, _) => {
                let add = json!({
                    "op": "add", "path": "/spec/certificates", "value": { "authorities": [entry] }
                });
                if spec.get("certificates").is_some() {
                    // Present as null: guard it. (RFC 6902 cannot test that a member is absent.)
                    json!([{ "op": "test", "path": "/spec/certificates", "value": null }, add])
                } else {
                    json!([add])
                }
            }
            (Some(_), None) => json!([
                { "op": "add", "path": "/spec/certificates/authorities", "value": [entry] },
            ]),
            (Some(_), Some(_)) => json!([
                // The list is as it was read: its length, so the append lands after it.
                { "op": "test", "path": "/spec/certificates/authorities", "value": list },
                { "op": "add", "path": "/spec/certificates/authorities/-", "value": entry },
            ]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(spec: Value) -> Value {
        json!({
            "apiVersion": "k8s.wasmcloud.dev/v1alpha1",
            "kind": "WasmCloudHostConfig",
            "metadata": {"name": "h", "namespace": "default"},
            "spec": spec,
        })
    }

    fn apply(mut object: Value, patch: &Value) -> Result<Value, String> {
        let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        json_patch::patch(&mut object, &ops).map_err(|e| e.to_string())?;
        Ok(object)
    }

    #[test]
    fn adds_to_absent_null_empty_and_existing_lists_once() {
        let a = HostConfigAuthority::configmap("corp-cas");
        let existing = json!({"name": "other", "secret": {"secretName": "s"}});
        for spec in [
            json!({"lattice": "default"}),
            json!({"lattice": "default", "certificates": null}),
            json!({"lattice": "default", "certificates": {}}),
            json!({"lattice": "default", "certificates": {"authorities": [existing]}}),
        ] {
            let object = host(spec.clone());
            for format in [HostConfigPatchFormat::Json, HostConfigPatchFormat::Merge] {
                let patch = wasmcloud_host_config_patch(&object, &a, format).unwrap();
                let patched = match format {
                    HostConfigPatchFormat::Json => apply(object.clone(), &patch).unwrap(),
                    HostConfigPatchFormat::Merge => {
                        let mut o = object.clone();
                        json_patch::merge(&mut o, &patch);
                        o
                    }
                };
                let list = patched["spec"]["certificates"]["authorities"]
                    .as_array()
                    .unwrap();
                assert!(
                    list.contains(&json!({"name": "corp-cas", "configMap": {"name": "corp-cas"}}))
                );
                if spec["certificates"]["authorities"].is_array() {
                    assert_eq!(list[0], existing, "the other entry is kept ({format:?})");
                }
                // Idempotent: the patched object needs no further change.
                let again = wasmcloud_host_config_patch(&patched, &a, format).unwrap();
                assert!(again == json!([]) || again == json!({}), "{again}");
            }
        }
    }

    #[test]
    fn the_json_patch_fails_when_the_list_changed_meanwhile() {
        let object = host(json!({"certificates": {"authorities": []}}));
        let a = HostConfigAuthority::configmap("corp-cas");
        let patch = wasmcloud_host_config_patch(&object, &a, HostConfigPatchFormat::Json).unwrap();
        let changed = host(json!({"certificates": {"authorities": [
            {"name": "x", "configMap": {"name": "x"}}
        ]}}));
        assert!(apply(changed, &patch).is_err());
        assert!(apply(object, &patch).is_ok());
    }

    #[test]
    fn refusals() {
        let a = HostConfigAuthority::configmap("corp-cas");
        let taken = host(json!({"certificates": {"authorities": [
            {"name": "corp-cas", "configMap": {"name": "elsewhere"}}
        ]}}));
        let e = wasmcloud_host_config_patch(&taken, &a, HostConfigPatchFormat::Json).unwrap_err();
        assert!(e.to_string().contains("elsewhere"), "{e}");
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}});
        assert!(matches!(
            wasmcloud_host_config_patch(&deployment, &a, HostConfigPatchFormat::Json),
            Err(K8sError::WrongKind { .. })
        ));
        let bad = host(json!({"certificates": {"authorities": {"a": 1}}}));
        assert!(matches!(
            wasmcloud_host_config_patch(&bad, &a, HostConfigPatchFormat::Merge),
            Err(K8sError::MalformedObject { .. })
        ));
        let long = HostConfigAuthority::configmap("a".repeat(61));
        assert!(matches!(
            wasmcloud_host_config_patch(&host(json!({})), &long, HostConfigPatchFormat::Json),
            Err(K8sError::InvalidName { .. })
        ));
        let dotted = HostConfigAuthority::configmap("corp.cas");
        assert!(
            wasmcloud_host_config_patch(&host(json!({})), &dotted, HostConfigPatchFormat::Json)
                .is_err()
        );
    }

    #[test]
    fn paths_as_the_operator_builds_them() {
        assert_eq!(
            wasmcloud_ca_path("corp-cas", "corp-root_1a2b3c4d.crt"),
            "/wasmcloud/certificates/ca-corp-cas/corp-root_1a2b3c4d.crt"
        );
        let s = HostConfigAuthority {
            name: "mesh".into(),
            source: AuthoritySource::Secret("mesh-ca".into()),
        };
        assert_eq!(
            s.volume(),
            json!({"name": "mesh", "secret": {"secretName": "mesh-ca"}})
        );
    }
}

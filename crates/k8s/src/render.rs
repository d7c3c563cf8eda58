//! Serialising objects: a multi-document YAML stream or JSON, byte-identical for the same bundle.
//!
//! The objects are k8s-openapi values serialised by serde; only the order of the top-level
//! fields is chosen here (`apiVersion`, `kind`, `metadata`, then the rest as k8s-openapi writes
//! them), so a person reading the YAML sees the name before the data. Maps (data keys, labels)
//! are sorted, so the output depends on nothing but the objects.

use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use crate::error::K8sError;

/// One object this crate builds.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A trust or wasmCloud ConfigMap.
    ConfigMap(ConfigMap),
    /// A trust Secret.
    Secret(Secret),
    /// A ClusterTrustBundle.
    ClusterTrustBundle(ClusterTrustBundle),
}

impl From<ConfigMap> for Object {
    fn from(o: ConfigMap) -> Self {
        Self::ConfigMap(o)
    }
}

impl From<Secret> for Object {
    fn from(o: Secret) -> Self {
        Self::Secret(o)
    }
}

impl From<ClusterTrustBundle> for Object {
    fn from(o: ClusterTrustBundle) -> Self {
        Self::ClusterTrustBundle(o)
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::ConfigMap(o) => o.serialize(s),
            Self::Secret(o) => o.serialize(s),
            Self::ClusterTrustBundle(o) => o.serialize(s),
        }
    }
}

impl Object {
    /// The bytes Kubernetes counts against its 1 MiB limit ([`crate::MAX_DATA_BYTES`]): the
    /// values of a ConfigMap's `data` and `binaryData`, of a Secret's `data` (decoded) and
    /// `stringData`, or a ClusterTrustBundle's `spec.trustBundle`.
    pub fn data_bytes(&self) -> usize {
        match self {
            Self::ConfigMap(o) => {
                let text: usize = o.data.iter().flatten().map(|(_, v)| v.len()).sum();
                let binary: usize = o.binary_data.iter().flatten().map(|(_, v)| v.0.len()).sum();
                text + binary
            }
            Self::Secret(o) => {
                let data: usize = o.data.iter().flatten().map(|(_, v)| v.0.len()).sum();
                let string: usize = o.string_data.iter().flatten().map(|(_, v)| v.len()).sum();
                data + string
            }
            Self::ClusterTrustBundle(o) => o.spec.trust_bundle.len(),
        }
    }
}

/// Moves `apiVersion`, `kind` and `metadata` to the front of a serialised object, keeping the
/// order of the rest.
fn reorder(value: Value) -> Value {
    const FIRST: [&str; 3] = ["apiVersion", "kind", "metadata"];
    let Value::Mapping(map) = value else {
        return value;
    };
    let mut ordered = Mapping::new();
    for key in FIRST {
        if let Some(v) = map.get(key) {
            ordered.insert(Value::from(key), v.clone());
        }
    }
    for (k, v) in map {
        if !k.as_str().is_some_and(|k| FIRST.contains(&k)) {
            ordered.insert(k, v);
        }
    }
    Value::Mapping(ordered)
}

/// The objects as one YAML stream, documents separated by `---`, for `kubectl apply -f`.
///
/// # Errors
///
/// [`K8sError::Yaml`] if serialisation fails (it does not for the objects this crate builds).
pub fn to_yaml(objects: &[Object]) -> Result<String, K8sError> {
    let documents = objects
        .iter()
        .map(|o| {
            let value = serde_yaml_ng::to_value(o).map_err(K8sError::Yaml)?;
            serde_yaml_ng::to_string(&reorder(value)).map_err(K8sError::Yaml)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(documents.join("---\n"))
}

/// The objects as pretty-printed JSON with a final newline: the object itself when there is one,
/// otherwise a `v1` `List` of them (which `kubectl apply -f` accepts).
///
/// # Errors
///
/// [`K8sError::Json`] if serialisation fails (it does not for the objects this crate builds).
pub fn to_json(objects: &[Object]) -> Result<String, K8sError> {
    let mut text = match objects {
        [one] => serde_json::to_string_pretty(one),
        many => serde_json::to_string_pretty(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": many,
        })),
    }
    .map_err(K8sError::Json)?;
    text.push('\n');
    Ok(text)
}

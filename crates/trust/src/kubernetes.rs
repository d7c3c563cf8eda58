//! Reading certificates from Kubernetes ConfigMap and Secret manifests (YAML, several documents
//! per file, `List` objects as `kubectl get -o yaml` prints them).
//!
//! Parsed as generic YAML rather than `k8s-openapi` types so each problem can name the document,
//! the object and the key (a typed `ByteString` fails the whole object on one bad base64 value).

use std::path::Path;

use base64::Engine as _;
use serde_yaml_ng::Value;

use crate::source::{LoadError, Loaded, Origin};

/// Which keys of a ConfigMap or Secret hold certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFilter {
    /// Keys ending in this suffix; the default is `.crt`, as wasmCloud's operator reads them.
    Suffix(String),
    /// Every key (a key holding a private key is then refused).
    All,
}

impl Default for KeyFilter {
    fn default() -> Self {
        Self::Suffix(".crt".into())
    }
}

impl KeyFilter {
    fn accepts(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Suffix(s) => key.ends_with(s.as_str()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::All => "any name".into(),
            Self::Suffix(s) => format!("`*{s}`"),
        }
    }
}

/// True for `.yaml`/`.yml` files and for text that starts like a manifest.
pub(crate) fn looks_like_manifest(path: &Path, bytes: &[u8]) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("yaml" | "yml")) {
        return true;
    }
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return false;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
        .is_some_and(|l| l.starts_with("apiVersion:") || l.starts_with("kind:"))
}

/// Reads every document of a manifest file.
pub(crate) fn load_manifests(
    origin: &Origin,
    bytes: &[u8],
    filter: &KeyFilter,
    loaded: &mut Loaded,
) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("not UTF-8 text ({e})");
            return loaded.problem(origin.clone(), LoadError::Yaml { line: None, reason });
        }
    };
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_no = i + 1;
        let value = match serde::Deserialize::deserialize(document) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                loaded.problem(
                    origin.clone(),
                    LoadError::Yaml {
                        line,
                        reason: e.to_string(),
                    },
                );
                // The YAML stream cannot be resumed after a syntax error.
                return;
            }
        };
        load_object(origin, doc_no, &value, filter, loaded);
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn load_object(
    origin: &Origin,
    doc_no: usize,
    value: &Value,
    filter: &KeyFilter,
    loaded: &mut Loaded,
) {
    if value.is_null() {
        return; // an empty document, e.g. after a trailing `---`
    }
    let kind = str_field(value, "kind").unwrap_or("none");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| str_field(m, "name"))
        .unwrap_or("<unnamed>");
    let namespace = meta.and_then(|m| str_field(m, "namespace"));
    let object = match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let doc_origin = Origin {
        detail: Some(format!("document {doc_no}, {object}")),
        ..origin.clone()
    };
    // (field, values are base64)
    let fields: &[(&str, bool)] = match kind {
        "ConfigMap" => &[("data", false), ("binaryData", true)],
        "Secret" => &[("data", true), ("stringData", false)],
        // certificates.k8s.io: one PEM bundle in spec.trustBundle; no keys to filter.
        "ClusterTrustBundle" => {
            let key_origin = Origin {
                detail: Some(format!("document {doc_no}, {object}, spec.trustBundle")),
                ..origin.clone()
            };
            match value.get("spec").and_then(|s| s.get("trustBundle")) {
                Some(Value::String(text)) => loaded.add_decoded(&key_origin, text.as_bytes()),
                _ => loaded.problem(
                    key_origin,
                    LoadError::Yaml {
                        line: None,
                        reason: "spec.trustBundle is missing or not a string".into(),
                    },
                ),
            }
            return;
        }
        "List" => {
            let items = value.get("items").and_then(Value::as_sequence);
            for item in items.into_iter().flatten() {
                load_object(origin, doc_no, item, filter, loaded);
            }
            return;
        }
        _ => {
            let doc_origin = Origin {
                detail: Some(format!("document {doc_no}")),
                ..origin.clone()
            };
            return loaded.problem(
                doc_origin,
                LoadError::NotKubernetes {
                    kind: kind.to_owned(),
                },
            );
        }
    };
    let mut all_keys = Vec::new();
    let mut matched = 0;
    for (field, is_base64) in fields {
        let Some(map) = value.get(*field).and_then(Value::as_mapping) else {
            continue;
        };
        for (key, val) in map {
            let Some(key) = key.as_str() else { continue };
            all_keys.push(key.to_owned());
            if !filter.accepts(key) {
                continue;
            }
            matched += 1;
            let key_origin = Origin {
                detail: Some(format!("document {doc_no}, {object}, {field} key {key}")),
                ..origin.clone()
            };
            let Some(text) = val.as_str() else {
                let reason = format!("the value of key {key} is not a string");
                loaded.problem(key_origin, LoadError::Yaml { line: None, reason });
                continue;
            };
            if *is_base64 {
                let compact: String = text.split_ascii_whitespace().collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(bytes) => loaded.add_decoded(&key_origin, &bytes),
                    Err(e) => loaded.problem(
                        key_origin,
                        LoadError::Base64 {
                            reason: describe_base64_error(&e),
                        },
                    ),
                }
            } else {
                loaded.add_decoded(&key_origin, text.as_bytes());
            }
        }
    }
    if matched == 0 {
        let keys = if all_keys.is_empty() {
            "none".to_owned()
        } else {
            all_keys.join(", ")
        };
        loaded.problem(
            doc_origin,
            LoadError::NoMatchingKeys {
                filter: filter.describe(),
                keys,
            },
        );
    }
}

/// The decoder's error in words. Only the character at fault is shown, and only when it is
/// printable ASCII: nothing else of a Secret's value is echoed.
fn describe_base64_error(e: &base64::DecodeError) -> String {
    let character = |byte: u8| {
        if byte.is_ascii_graphic() {
            format!(" `{}`", char::from(byte))
        } else {
            String::new()
        }
    };
    match *e {
        base64::DecodeError::InvalidByte(offset, byte) => {
            format!("invalid character{} at offset {offset}", character(byte))
        }
        base64::DecodeError::InvalidLastSymbol(offset, byte) => format!(
            "the last character{} at offset {offset} does not end a base64 text",
            character(byte)
        ),
        base64::DecodeError::InvalidLength(n) => {
            format!("{n} base64 characters is not a whole number of bytes")
        }
        base64::DecodeError::InvalidPadding => "invalid `=` padding".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_manifests() {
        assert!(looks_like_manifest(Path::new("x.yaml"), b""));
        assert!(looks_like_manifest(
            Path::new("x"),
            b"# c\n---\napiVersion: v1\nkind: ConfigMap\n"
        ));
        assert!(!looks_like_manifest(
            Path::new("x.pem"),
            b"-----BEGIN CERTIFICATE-----\n"
        ));
        assert!(!looks_like_manifest(Path::new("x.crt"), b"\x30\x82"));
    }

    #[test]
    fn names_the_document_and_key_of_bad_base64() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: ca, namespace: ns}\ndata:\n  ca.crt: '***'\n  tls.key: c2VjcmV0\n";
        let mut loaded = Loaded::default();
        let origin = Origin::path(Path::new("s.yaml"));
        load_manifests(&origin, yaml.as_bytes(), &KeyFilter::default(), &mut loaded);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        let p = &loaded.problems[0];
        assert!(
            matches!(&p.error, LoadError::Base64 { reason } if reason == "invalid character `*` at offset 0"),
            "{:?}",
            p.error
        );
        assert_eq!(
            p.origin.to_string(),
            "s.yaml: document 1, Secret ns/ca, data key ca.crt"
        );
    }

    #[test]
    fn reports_other_kinds_and_missing_keys() {
        let yaml = "kind: Deployment\n---\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  ca.pem: abc\n---\n";
        let mut loaded = Loaded::default();
        let origin = Origin::path(Path::new("m.yaml"));
        load_manifests(&origin, yaml.as_bytes(), &KeyFilter::default(), &mut loaded);
        assert!(
            matches!(loaded.problems[0].error, LoadError::NotKubernetes { ref kind } if kind == "Deployment")
        );
        assert!(
            matches!(loaded.problems[1].error, LoadError::NoMatchingKeys { ref keys, .. } if keys == "ca.pem")
        );
        assert_eq!(loaded.problems.len(), 2);
    }

    #[test]
    fn cluster_trust_bundles_are_read_from_spec_trust_bundle() {
        let root = anchorage_test_support::pki::root_ca("CTB Root");
        let indented: String = root.pem.lines().map(|l| format!("    {l}\n")).collect();
        let yaml = format!(
            "apiVersion: certificates.k8s.io/v1beta1\nkind: ClusterTrustBundle\nmetadata: {{name: corp}}\nspec:\n  trustBundle: |\n{indented}---\nkind: ClusterTrustBundle\nmetadata: {{name: empty}}\nspec: {{}}\n"
        );
        let mut loaded = Loaded::default();
        load_manifests(
            &Origin::path(Path::new("ctb.yaml")),
            yaml.as_bytes(),
            &KeyFilter::default(),
            &mut loaded,
        );
        assert_eq!(loaded.certificates.len(), 1);
        assert_eq!(loaded.certificates[0].certificate.der(), &root.der[..]);
        let detail = loaded.certificates[0].origin.detail.clone().unwrap();
        assert!(
            detail.contains("ClusterTrustBundle corp, spec.trustBundle"),
            "{detail}"
        );
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert!(
            loaded.problems[0]
                .to_string()
                .contains("ClusterTrustBundle empty")
        );
    }

    #[test]
    fn yaml_syntax_errors_carry_a_line() {
        let mut loaded = Loaded::default();
        let origin = Origin::path(Path::new("bad.yaml"));
        load_manifests(
            &origin,
            b"kind: ConfigMap\ndata: [\n  a: b\n",
            &KeyFilter::default(),
            &mut loaded,
        );
        assert!(matches!(
            loaded.problems[0].error,
            LoadError::Yaml { line: Some(_), .. }
        ));
    }
}

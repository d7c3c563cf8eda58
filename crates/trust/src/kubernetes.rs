//! Reading certificates from Kubernetes ConfigMap and Secret manifests (YAML, several documents
//! per file, `List` objects as `kubectl get -o yaml` prints them).
//!
//! Parsed as generic YAML rather than `k8s-openapi` types so each problem can name the document,
//! the object and the key (a typed `ByteString` fails the whole object on one bad base64 value).

use std::path::Path;

use base64::Engine as _;
use serde_yaml_ng::Value;

use crate::source::{LoadError, Loaded, Origin};

pub use anchorage_k8s::yaml::{
    MANIFEST_EXPANSION_SLACK, MANIFEST_VALUE_COST, MAX_MANIFEST_DOCUMENTS, MAX_MANIFEST_EXPANSION,
    YamlLimitError, read_yaml_documents,
};

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
    // A file past a limit is refused whole: what its earlier documents gave is dropped.
    let (certificates_before, problems_before) = (loaded.certificates.len(), loaded.problems.len());
    let refuse = |loaded: &mut Loaded, reason: String| {
        loaded.certificates.truncate(certificates_before);
        loaded.problems.truncate(problems_before);
        loaded.problem(origin.clone(), LoadError::ManifestLimit { reason });
    };
    match read_yaml_documents(text, |doc_no, value| {
        load_object(origin, doc_no, &value, filter, loaded);
    }) {
        Ok(()) => {}
        Err(YamlLimitError::Yaml { line, reason }) => {
            // The YAML stream cannot be resumed after a syntax error.
            loaded.problem(origin.clone(), LoadError::Yaml { line, reason });
        }
        Err(limit) => refuse(loaded, limit.to_string()),
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

    /// A "billion laughs" manifest: an anchored sequence of `items` scalars, then a sequence of
    /// `aliases` aliases to it (`items × aliases` values once expanded).
    fn alias_bomb(items: usize, aliases: usize) -> String {
        let mut yaml =
            String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &a [");
        yaml.push_str(&"l,".repeat(items));
        yaml.push_str("]\ny: [");
        yaml.push_str(&"*a,".repeat(aliases));
        yaml.push_str("]\ndata: {ca.crt: x}\n");
        yaml
    }

    fn load_text(name: &str, yaml: &str) -> Loaded {
        let mut loaded = Loaded::default();
        let origin = Origin::path(Path::new(name));
        load_manifests(&origin, yaml.as_bytes(), &KeyFilter::default(), &mut loaded);
        loaded
    }

    fn manifest_limit(loaded: &Loaded) -> Option<String> {
        match loaded.problems.as_slice() {
            [p] => match &p.error {
                LoadError::ManifestLimit { reason } => {
                    Some(format!("{}: {}", p.origin, p.error)).filter(|_| !reason.is_empty())
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Alias expansion (issue 18): 3,000 aliases of a 3,000-item sequence (9 million values
    /// from 15 KB) are refused with one problem naming the file and the limit; the same
    /// aliases of a 30-item sequence (control) read as an ordinary ConfigMap.
    #[test]
    fn an_alias_bomb_is_refused_naming_the_limit() {
        let loaded = load_text("bomb.yaml", &alias_bomb(3_000, 3_000));
        let text = manifest_limit(&loaded).unwrap_or_else(|| panic!("{:?}", loaded.problems));
        assert!(
            text.starts_with(
                "bomb.yaml: Kubernetes manifest refused: YAML aliases expand document 1"
            ) && text.contains("MAX_MANIFEST_EXPANSION"),
            "{text}"
        );
        let fine = load_text("fine.yaml", &alias_bomb(30, 3_000));
        assert!(manifest_limit(&fine).is_none(), "{:?}", fine.problems);
        assert!(
            fine.problems
                .iter()
                .all(|p| matches!(p.error, LoadError::Decode(_))),
            "{:?}",
            fine.problems
        );
    }

    /// YAML document count (issue 18): `MAX_MANIFEST_DOCUMENTS` ConfigMaps read; one more
    /// refuses the file whole (the certificates' problems of earlier documents are dropped).
    #[test]
    fn a_manifest_past_the_document_limit_is_refused_whole() {
        let doc = "---\nkind: ConfigMap\nmetadata: {name: x}\ndata: {ca.crt: x}\n";
        let at = doc.repeat(MAX_MANIFEST_DOCUMENTS);
        let loaded = load_text("many.yaml", &at);
        assert_eq!(loaded.problems.len(), MAX_MANIFEST_DOCUMENTS);
        assert!(manifest_limit(&loaded).is_none());
        let past = load_text("many.yaml", &format!("{at}{doc}"));
        let text = manifest_limit(&past).unwrap_or_else(|| panic!("{}", past.problems.len()));
        assert!(
            text.starts_with(
                "many.yaml: Kubernetes manifest refused: more than 10000 YAML documents"
            ) && text.contains("MAX_MANIFEST_DOCUMENTS"),
            "{text}"
        );
    }

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

//! Kubernetes Secrets holding CA material: the Flomesh/Open Service Mesh `fsm-ca-bundle`
//! (`osm-ca-bundle`) layout and the `kubernetes.io/tls` layout (cert-manager's CA issuer), as
//! `anchorage ca export` writes them and `ca import` reads them back.
//!
//! This module owns the Kubernetes side: the Secret types, default names and data keys of each
//! [`CaSecretLayout`], the manifest ([`write_ca_secret`]: metadata checked and labelled, data
//! base64-encoded by k8s-openapi, YAML or JSON) and reading what `kubectl get secret -o
//! yaml|json` prints ([`read_ca_secret`]: one Secret among a stream or a `List`, `data` decoded
//! from base64 and overlaid with `stringData`, the layout's required keys checked by
//! [`CaSecret::require`]). What goes in the data (the certificates and the key, as PEM) is
//! `anchorage-ca`'s job (`BuiltinCa::to_fsm_secret_data`, `from_fsm_secret_data`, …).
//!
//! The data holds a private key, so: values are taken as `SecretSlice` and wiped from the
//! object once rendered, the manifest comes back as a `SecretString`, read values are wiped
//! when the [`CaSecret`] drops, `Debug` shows key names only, and every [`CaSecretError`] is a
//! message of our own naming a key or a field, never a value (manifests are walked as generic
//! JSON values, so no parser error can echo a key).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};
use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::K8sError;
use crate::meta::ObjectName;
use crate::render::{Object, to_json, to_yaml};

/// The Secret name Flomesh Service Mesh keeps its root in (the default name of the
/// [`CaSecretLayout::FsmCaBundle`] layout).
pub const FSM_CA_BUNDLE_NAME: &str = "fsm-ca-bundle";
/// The Secret name Open Service Mesh keeps its root in (same data keys).
pub const OSM_CA_BUNDLE_NAME: &str = "osm-ca-bundle";
/// The default name of a [`CaSecretLayout::KubernetesTls`] Secret.
pub const CA_TLS_SECRET_NAME: &str = "anchorage-ca";

/// FSM/OSM: the CA certificate (PEM; may hold a chain).
pub const FSM_CA_CERT_KEY: &str = "ca.crt";
/// FSM/OSM: the CA's private key (PEM).
pub const FSM_PRIVATE_KEY_KEY: &str = "private.key";
/// OSM: the CA's expiry (`2006-01-02T15:04:05.000Z` layout).
pub const FSM_EXPIRATION_KEY: &str = "expiration";
/// `kubernetes.io/tls`: the signing CA and its chain (PEM).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// `kubernetes.io/tls`: the signing CA's private key (PEM).
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";
/// `kubernetes.io/tls`: the roots, when `tls.crt` is an intermediate (optional).
pub const TLS_CA_KEY: &str = "ca.crt";

/// The Kubernetes kind, for messages.
const KIND: &str = "Secret";

/// Where a CA's certificate and key sit in a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaSecretLayout {
    /// Flomesh `fsm-ca-bundle` / Open Service Mesh `osm-ca-bundle` (type `Opaque`): `ca.crt`,
    /// `private.key`, `expiration`.
    FsmCaBundle,
    /// `kubernetes.io/tls` as cert-manager's CA issuer keeps it: `tls.crt`, `tls.key`, and
    /// optionally `ca.crt`.
    KubernetesTls,
}

impl CaSecretLayout {
    /// The Secret's `type`.
    pub const fn secret_type(self) -> &'static str {
        match self {
            Self::FsmCaBundle => "Opaque",
            Self::KubernetesTls => "kubernetes.io/tls",
        }
    }

    /// The Secret's name when none is given.
    pub const fn default_name(self) -> &'static str {
        match self {
            Self::FsmCaBundle => FSM_CA_BUNDLE_NAME,
            Self::KubernetesTls => CA_TLS_SECRET_NAME,
        }
    }

    /// The data keys the layout cannot do without, the certificate first, then the key.
    pub const fn required_keys(self) -> &'static [&'static str] {
        match self {
            Self::FsmCaBundle => &[FSM_CA_CERT_KEY, FSM_PRIVATE_KEY_KEY],
            Self::KubernetesTls => &[TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY],
        }
    }

    /// The layout's name in messages.
    pub const fn description(self) -> &'static str {
        match self {
            Self::FsmCaBundle => "fsm-ca-bundle/osm-ca-bundle Secret",
            Self::KubernetesTls => "kubernetes.io/tls Secret",
        }
    }

    /// The layout whose private-key entry is among `keys` (the kubernetes.io/tls one first),
    /// to say which layout a Secret read with the wrong one has.
    pub fn recognise<'a>(keys: impl IntoIterator<Item = &'a str> + Clone) -> Option<Self> {
        [Self::KubernetesTls, Self::FsmCaBundle]
            .into_iter()
            .find(|layout| {
                let key = layout.required_keys()[1];
                keys.clone().into_iter().any(|k| k == key)
            })
    }
}

/// How a manifest is serialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManifestFormat {
    /// YAML ([`to_yaml`]).
    #[default]
    Yaml,
    /// JSON ([`to_json`]).
    Json,
}

/// Why a CA Secret could not be written or read. Messages name keys and fields, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaSecretError {
    /// The Secret could not be built: its name or namespace (or rendering) was refused.
    #[error(transparent)]
    Object(#[from] K8sError),
    /// The Secret's data lacks an entry its layout needs (or holds it empty).
    #[error("the {layout} data has no {key:?} entry (found: {})", found.join(", "))]
    MissingKey {
        /// The layout ([`CaSecretLayout::description`]).
        layout: &'static str,
        /// The missing key.
        key: &'static str,
        /// The keys present.
        found: Vec<String>,
    },
    /// The manifest is not UTF-8 text.
    #[error("not UTF-8 text; give a Secret manifest in YAML or JSON")]
    NotText,
    /// The manifest starts as JSON but does not parse.
    #[error("not valid JSON: {reason}")]
    Json {
        /// The parser's message (a position, never the input).
        reason: String,
    },
    /// The manifest does not parse as YAML.
    #[error("not valid YAML: {reason}")]
    Yaml {
        /// The parser's message (a position, never the input).
        reason: String,
    },
    /// The YAML is past a manifest limit (`crate::yaml::MAX_MANIFEST_DOCUMENTS`, the alias
    /// expansion budget `MAX_MANIFEST_EXPANSION`): refused whole.
    #[error("refused: {reason}")]
    ManifestLimit {
        /// Which limit, and what to do (never the input).
        reason: String,
    },
    /// A YAML document with keys that are not strings.
    #[error("a YAML document has keys that are not strings; it is not a Kubernetes object")]
    NotAnObject,
    /// The manifest holds no object at all.
    #[error("holds no Kubernetes object")]
    Empty,
    /// The manifest holds objects, none of them a Secret.
    #[error(
        "holds no Secret (found {}); export it with `kubectl get secret NAME -o yaml`",
        kinds.join(", ")
    )]
    NoSecret {
        /// The kinds found instead.
        kinds: Vec<String>,
    },
    /// The manifest holds more than one Secret.
    #[error("holds {count} Secrets; give a file with one")]
    SeveralSecrets {
        /// How many.
        count: usize,
    },
    /// `data` is not a map.
    #[error("the Secret's data is not a map of keys to base64 values")]
    DataNotMap,
    /// A `data` value is not a string.
    #[error("the Secret's data.{key} is not a base64 string")]
    DataNotString {
        /// The key.
        key: String,
    },
    /// A `data` value is not base64.
    #[error("the Secret's data.{key} is not valid base64")]
    BadBase64 {
        /// The key.
        key: String,
    },
    /// `stringData` is not a map.
    #[error("the Secret's stringData is not a map of keys to strings")]
    StringDataNotMap,
    /// A `stringData` value is not a string.
    #[error("the Secret's stringData.{key} is not a string")]
    StringDataNotString {
        /// The key.
        key: String,
    },
}

/// The manifest of a `layout` Secret named `name` holding `data` (values as they go in the
/// Secret, e.g. from `BuiltinCa::to_fsm_secret_data`), labelled as ours, as YAML or JSON. The
/// copies of the values held by the object are wiped once it is rendered.
///
/// # Errors
///
/// [`CaSecretError::MissingKey`] when `data` lacks a key the layout requires;
/// [`CaSecretError::Object`] for a name or namespace the API server would refuse.
pub fn write_ca_secret(
    layout: CaSecretLayout,
    name: &ObjectName,
    data: BTreeMap<String, SecretSlice<u8>>,
    format: ManifestFormat,
) -> Result<SecretString, CaSecretError> {
    let metadata = name.object_meta(KIND, false, BTreeMap::new())?;
    missing_key(
        layout,
        |key| data.get(key).is_some_and(|v| !v.expose_secret().is_empty()),
        || data.keys().cloned().collect(),
    )?;
    let secret = Secret {
        metadata,
        type_: Some(layout.secret_type().to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.expose_secret().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    let mut objects = [Object::Secret(secret)];
    let rendered = match format {
        ManifestFormat::Yaml => to_yaml(&objects),
        ManifestFormat::Json => to_json(&objects),
    };
    if let [Object::Secret(secret)] = &mut objects
        && let Some(data) = secret.data.as_mut()
    {
        for value in data.values_mut() {
            value.0.zeroize();
        }
    }
    Ok(SecretString::from(rendered?))
}

/// Checks that `name` (and its namespace) would be accepted for a CA Secret, before anything
/// is read or written.
///
/// # Errors
///
/// [`K8sError::InvalidName`] or [`K8sError::InvalidNamespace`].
pub fn check_ca_secret_name(name: &ObjectName) -> Result<(), K8sError> {
    name.object_meta(KIND, false, BTreeMap::new()).map(|_| ())
}

/// The first required key of `layout` that `present` says is missing.
fn missing_key(
    layout: CaSecretLayout,
    present: impl Fn(&str) -> bool,
    found: impl FnOnce() -> Vec<String>,
) -> Result<(), CaSecretError> {
    match layout
        .required_keys()
        .iter()
        .copied()
        .find(|key| !present(key))
    {
        Some(key) => Err(CaSecretError::MissingKey {
            layout: layout.description(),
            key,
            found: found(),
        }),
        None => Ok(()),
    }
}

/// A Secret read from a manifest: its name and its decoded data, wiped when dropped. `Debug`
/// shows the key names only.
pub struct CaSecret {
    name: Option<String>,
    data: BTreeMap<String, Vec<u8>>,
}

impl CaSecret {
    /// `metadata.name`, when the manifest gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The decoded data: `data` (base64) overlaid with `stringData`, as the API server does.
    pub fn data(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.data
    }

    /// The data keys present.
    pub fn keys(&self) -> impl Iterator<Item = &str> + Clone {
        self.data.keys().map(String::as_str)
    }

    /// Checks that the data holds every key `layout` requires, non-empty.
    ///
    /// # Errors
    ///
    /// [`CaSecretError::MissingKey`] naming the first missing key and the keys present.
    pub fn require(&self, layout: CaSecretLayout) -> Result<(), CaSecretError> {
        missing_key(
            layout,
            |key| self.data.get(key).is_some_and(|v| !v.is_empty()),
            || self.data.keys().cloned().collect(),
        )
    }
}

impl fmt::Debug for CaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSecret")
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for CaSecret {
    fn drop(&mut self) {
        for value in self.data.values_mut() {
            value.zeroize();
        }
    }
}

/// The one Secret in a manifest (YAML or JSON; a single object, a stream, or a v1 `List`), as
/// `kubectl get secret -o yaml|json` prints it: `data` (base64) overlaid with `stringData`.
///
/// # Errors
///
/// A [`CaSecretError`] saying what is wrong with the manifest (not text, not YAML/JSON, no or
/// several Secrets, a value that is not a string or not base64), naming keys, never values.
pub fn read_ca_secret(manifest: &[u8]) -> Result<CaSecret, CaSecretError> {
    let text = std::str::from_utf8(manifest).map_err(|_| CaSecretError::NotText)?;
    let mut documents: Vec<Value> = Vec::new();
    if text.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(text).map_err(|e| CaSecretError::Json {
            reason: e.to_string(),
        })?;
        documents.push(value);
    } else {
        // Under the manifest limits (`crate::yaml`) (document count, alias expansion):
        // an alias bomb stops before it costs memory.
        let mut not_object = false;
        let read = crate::yaml::read_yaml_documents(text, |_, value| {
            if not_object || value.is_null() {
                return;
            }
            match serde_json::to_value(&value) {
                Ok(value) => documents.push(value),
                Err(_) => not_object = true,
            }
        });
        if not_object {
            return Err(CaSecretError::NotAnObject);
        }
        match read {
            Ok(()) => {}
            Err(crate::yaml::YamlLimitError::Yaml { reason, .. }) => {
                return Err(CaSecretError::Yaml { reason });
            }
            Err(limit) => {
                return Err(CaSecretError::ManifestLimit {
                    reason: limit.to_string(),
                });
            }
        }
    }
    let mut secrets: Vec<Value> = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    for document in documents {
        let items = match document.get("kind").and_then(Value::as_str) {
            Some("List") | Some("SecretList") => match document.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
            _ => vec![document],
        };
        for item in items {
            match item.get("kind").and_then(Value::as_str) {
                Some("Secret") => secrets.push(item),
                Some(other) => kinds.push(other.to_owned()),
                None => kinds.push("an object without kind".to_owned()),
            }
        }
    }
    let secret = match secrets.len() {
        1 => secrets.swap_remove(0),
        0 if kinds.is_empty() => return Err(CaSecretError::Empty),
        0 => return Err(CaSecretError::NoSecret { kinds }),
        count => {
            secrets.into_iter().for_each(wipe);
            return Err(CaSecretError::SeveralSecrets { count });
        }
    };
    let result = secret_data(&secret);
    wipe(secret);
    result
}

/// The name and decoded data of one Secret object.
fn secret_data(secret: &Value) -> Result<CaSecret, CaSecretError> {
    let name = secret
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut out = CaSecret {
        name,
        data: BTreeMap::new(),
    };
    if let Some(map) = secret.get("data").filter(|v| !v.is_null()) {
        let map = map.as_object().ok_or(CaSecretError::DataNotMap)?;
        for (key, value) in map {
            let encoded = match value {
                Value::String(s) => s.as_str(),
                Value::Null => "",
                _ => return Err(CaSecretError::DataNotString { key: key.clone() }),
            };
            let compact: Zeroizing<String> =
                Zeroizing::new(encoded.chars().filter(|c| !c.is_whitespace()).collect());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| CaSecretError::BadBase64 { key: key.clone() })?;
            out.data.insert(key.clone(), decoded);
        }
    }
    if let Some(map) = secret.get("stringData").filter(|v| !v.is_null()) {
        let map = map.as_object().ok_or(CaSecretError::StringDataNotMap)?;
        for (key, value) in map {
            let text = value
                .as_str()
                .ok_or_else(|| CaSecretError::StringDataNotString { key: key.clone() })?;
            // As the API server does: stringData wins over data.
            if let Some(mut old) = out.data.insert(key.clone(), text.as_bytes().to_vec()) {
                old.zeroize();
            }
        }
    }
    Ok(out)
}

/// Wipes the strings of a parsed manifest (they may hold a key).
fn wipe(value: Value) {
    match value {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(map) => map.into_iter().for_each(|(_, v)| wipe(v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
    /// Stands for a private key: the tests look for this body in every message.
    const KEY_BODY: &str = "MC4CAQAwBQYDK2VwBCIEIPrivateKeyBodyNeverEchoed";

    fn key_pem() -> String {
        format!("-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n")
    }

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, SecretSlice<u8>> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretSlice::from(v.as_bytes().to_vec())))
            .collect()
    }

    fn fsm_data() -> BTreeMap<String, SecretSlice<u8>> {
        data(&[
            (FSM_CA_CERT_KEY, CERT),
            (FSM_PRIVATE_KEY_KEY, &key_pem()),
            (FSM_EXPIRATION_KEY, "2030-01-01T00:00:00.000Z"),
        ])
    }

    fn tls_data() -> BTreeMap<String, SecretSlice<u8>> {
        data(&[
            (TLS_CERT_KEY, CERT),
            (TLS_PRIVATE_KEY_KEY, &key_pem()),
            (TLS_CA_KEY, CERT),
        ])
    }

    /// Every message and `Debug` of `e`, to search for key material.
    fn said(e: &CaSecretError) -> String {
        format!("{e} {e:?}")
    }

    /// Issue 18: a YAML alias bomb (3,000 aliases of a 3,000-item sequence: 9 million values
    /// from 15 KB) is refused naming the limit, before it is built; the same aliases of a
    /// 30-item sequence (control) read as an ordinary manifest (no Secret in it).
    #[test]
    fn a_yaml_alias_bomb_is_refused_naming_the_limit() {
        let bomb = |items: usize| {
            let mut yaml =
                String::from("apiVersion: v1\nkind: Secret\nmetadata: {name: bomb}\nx: &a [");
            yaml.push_str(&"l,".repeat(items));
            yaml.push_str("]\ny: [");
            yaml.push_str(&"*a,".repeat(3_000));
            yaml.push_str("]\ndata: {ca.crt: eA==}\n");
            yaml
        };
        let started = std::time::Instant::now();
        let e = read_ca_secret(bomb(3_000).as_bytes()).expect_err("refused");
        assert!(
            matches!(e, CaSecretError::ManifestLimit { .. })
                && e.to_string().contains("MAX_MANIFEST_EXPANSION"),
            "{}",
            said(&e)
        );
        println!("alias bomb refused in {:?}: {e}", started.elapsed());
        let fine = read_ca_secret(bomb(30).as_bytes()).expect("read");
        assert_eq!(fine.name(), Some("bomb"));
        // And the document limit.
        let doc = "---\nkind: ConfigMap\nmetadata: {name: x}\n";
        let many = doc.repeat(crate::yaml::MAX_MANIFEST_DOCUMENTS + 1);
        let e = read_ca_secret(many.as_bytes()).expect_err("refused");
        assert!(
            e.to_string().contains("MAX_MANIFEST_DOCUMENTS"),
            "{}",
            said(&e)
        );
    }

    #[test]
    fn both_layouts_round_trip_in_yaml_and_json() {
        for (layout, make) in [
            (CaSecretLayout::FsmCaBundle, fsm_data as fn() -> _),
            (CaSecretLayout::KubernetesTls, tls_data),
        ] {
            for format in [ManifestFormat::Yaml, ManifestFormat::Json] {
                let name = ObjectName::new(layout.default_name()).in_namespace("mesh");
                let text = write_ca_secret(layout, &name, make(), format).expect("write");
                let text = text.expose_secret();
                if format == ManifestFormat::Yaml {
                    assert!(text.starts_with("apiVersion: v1\nkind: Secret\n"), "{text}");
                }
                assert!(
                    text.contains(layout.secret_type()) && text.contains(crate::MANAGED_BY_LABEL),
                    "{text}"
                );
                // base64 in the manifest, not the PEM.
                assert!(!text.contains(KEY_BODY), "{text}");
                let secret = read_ca_secret(text.as_bytes()).expect("read");
                assert_eq!(secret.name(), Some(layout.default_name()));
                secret.require(layout).expect("all keys");
                let expected = make();
                assert_eq!(
                    secret.keys().collect::<Vec<_>>(),
                    expected.keys().map(String::as_str).collect::<Vec<_>>()
                );
                for (key, value) in &expected {
                    assert_eq!(secret.data()[key], value.expose_secret(), "{key}");
                }
                assert_eq!(CaSecretLayout::recognise(secret.keys()), Some(layout));
            }
        }
    }

    #[test]
    fn string_data_overlays_data_in_a_list() {
        let manifest = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                { "kind": "ConfigMap", "metadata": { "name": "other" } },
                {
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": "osm-ca-bundle" },
                    "data": { "ca.crt": base64::engine::general_purpose::STANDARD.encode(CERT), "private.key": "" },
                    "stringData": { "private.key": key_pem() },
                },
            ],
        });
        let secret = read_ca_secret(manifest.to_string().as_bytes()).expect("read");
        assert_eq!(secret.name(), Some(OSM_CA_BUNDLE_NAME));
        assert_eq!(secret.data()["private.key"], key_pem().as_bytes());
        secret.require(CaSecretLayout::FsmCaBundle).expect("keys");
    }

    #[test]
    fn a_missing_key_is_named_with_the_keys_found() {
        // Read with the wrong layout: the missing key and the keys present are named.
        let text = write_ca_secret(
            CaSecretLayout::FsmCaBundle,
            &ObjectName::new("fsm-ca-bundle"),
            fsm_data(),
            ManifestFormat::Yaml,
        )
        .expect("write");
        let secret = read_ca_secret(text.expose_secret().as_bytes()).expect("read");
        let e = secret
            .require(CaSecretLayout::KubernetesTls)
            .expect_err("no tls.crt");
        assert_eq!(
            e.to_string(),
            r#"the kubernetes.io/tls Secret data has no "tls.crt" entry (found: ca.crt, expiration, private.key)"#
        );
        assert!(!said(&e).contains(KEY_BODY));
        // An empty key entry is missing too; the certificate alone is not enough.
        let manifest = serde_json::json!({
            "kind": "Secret",
            "data": { "ca.crt": base64::engine::general_purpose::STANDARD.encode(CERT), "private.key": null },
        });
        let secret = read_ca_secret(manifest.to_string().as_bytes()).expect("read");
        let e = secret
            .require(CaSecretLayout::FsmCaBundle)
            .expect_err("empty key");
        assert!(
            matches!(
                e,
                CaSecretError::MissingKey {
                    key: "private.key",
                    ..
                }
            ),
            "{e:?}"
        );
        // Writing without the key is refused the same way (negative control: with it, it is not).
        let mut partial = fsm_data();
        partial.remove(FSM_PRIVATE_KEY_KEY);
        let e = write_ca_secret(
            CaSecretLayout::FsmCaBundle,
            &ObjectName::new("fsm-ca-bundle"),
            partial,
            ManifestFormat::Json,
        )
        .expect_err("no key");
        assert!(e.to_string().contains(r#"no "private.key" entry"#), "{e}");
    }

    #[test]
    fn a_private_key_is_never_echoed() {
        // Not base64: the key is named, its value is not.
        let bad = serde_json::json!({
            "kind": "Secret",
            "data": { "ca.crt": "", "private.key": key_pem() },
        });
        let e = read_ca_secret(bad.to_string().as_bytes()).expect_err("not base64");
        assert_eq!(
            e.to_string(),
            "the Secret's data.private.key is not valid base64"
        );
        assert!(!said(&e).contains(KEY_BODY));
        // A value of the wrong type.
        let bad = format!("kind: Secret\nstringData:\n  private.key: [\"{KEY_BODY}\"]\n");
        let e = read_ca_secret(bad.as_bytes()).expect_err("not a string");
        assert!(!said(&e).contains(KEY_BODY), "{e:?}");
        // Broken YAML and JSON around a key: positions only.
        for bad in [
            format!("kind: Secret\nstringData:\n  private.key: \"{KEY_BODY}\n  : : ["),
            format!("{{\"kind\": \"Secret\", \"stringData\": {{\"private.key\": {KEY_BODY}}}}}"),
        ] {
            let e = read_ca_secret(bad.as_bytes()).expect_err("broken");
            assert!(!said(&e).contains(KEY_BODY), "{e:?}");
        }
        // Two Secrets.
        let two =
            format!("kind: Secret\nstringData:\n  private.key: {KEY_BODY}\n---\nkind: Secret\n");
        let e = read_ca_secret(two.as_bytes()).expect_err("two");
        assert_eq!(e.to_string(), "holds 2 Secrets; give a file with one");
        // The Debug of a Secret read shows its keys, not their values.
        let text = write_ca_secret(
            CaSecretLayout::KubernetesTls,
            &ObjectName::new("anchorage-ca"),
            tls_data(),
            ManifestFormat::Yaml,
        )
        .expect("write");
        let secret = read_ca_secret(text.expose_secret().as_bytes()).expect("read");
        let debug = format!("{secret:?}");
        assert!(
            debug.contains("tls.key") && !debug.contains(KEY_BODY),
            "{debug}"
        );
        assert!(!format!("{text:?}").contains(KEY_BODY));
    }

    #[test]
    fn names_kubernetes_would_refuse_are_refused_before_writing() {
        let e = check_ca_secret_name(&ObjectName::new("Bad_Name")).expect_err("name");
        assert!(
            matches!(e, K8sError::InvalidName { kind: "Secret", .. }),
            "{e:?}"
        );
        let e = check_ca_secret_name(&ObjectName::new("ok").in_namespace("a.b"))
            .expect_err("namespace");
        assert!(matches!(e, K8sError::InvalidNamespace { .. }), "{e:?}");
        check_ca_secret_name(&ObjectName::new("fsm-ca-bundle").in_namespace("fsm-system"))
            .expect("valid");
        let e = write_ca_secret(
            CaSecretLayout::FsmCaBundle,
            &ObjectName::new("Bad_Name"),
            fsm_data(),
            ManifestFormat::Yaml,
        )
        .expect_err("name");
        assert!(
            matches!(e, CaSecretError::Object(K8sError::InvalidName { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn a_manifest_without_a_secret_says_what_it_holds() {
        let e = read_ca_secret(b"kind: ConfigMap\n").expect_err("configmap");
        assert_eq!(
            e.to_string(),
            "holds no Secret (found ConfigMap); export it with `kubectl get secret NAME -o yaml`"
        );
        assert!(matches!(
            read_ca_secret(b"---\n"),
            Err(CaSecretError::Empty)
        ));
        assert!(matches!(
            read_ca_secret(&[0xff, 0xfe]),
            Err(CaSecretError::NotText)
        ));
    }
}

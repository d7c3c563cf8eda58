//! Pure reading: a value out of a `Secret` object, grants out of the mappings ConfigMap, the
//! application policy's scope, Kubernetes name rules. No client, no I/O: what the store does
//! with an object once the API server has answered, tested on recorded payloads.

use std::collections::BTreeSet;

use anchorage_secrets::{Grant, SecretValue, VersionedSecret};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use crate::StoreFailure;

/// The ConfigMap holding the mappings unless configured otherwise.
pub const DEFAULT_MAPPINGS_CONFIGMAP: &str = "anchorage-secrets-mappings";

/// Whether `name` can be a Secret's name (a DNS-1123 subdomain: at most 253 characters of
/// lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit). A key
/// that cannot is not looked up: it is simply not found.
pub fn is_secret_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
}

/// Whether `key` can be a key of a Secret's or ConfigMap's data (`[-._a-zA-Z0-9]+`, at most
/// 253 characters).
pub(crate) fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The value of `field` in `secret` as the host receives it, with the Secret's
/// `resourceVersion` as the version; `None` when the Secret has no such data key, or when
/// `version` is given and is not the current `resourceVersion` (Kubernetes keeps no history).
/// UTF-8 bytes become a string value, other bytes a binary one. `stringData` is not read: an
/// API server merges it into `data` and never returns it. Every other data value of the
/// object is overwritten before it is dropped.
pub fn value_of(mut secret: Secret, field: &str, version: Option<&str>) -> Option<VersionedSecret> {
    let mut data = secret.data.take().unwrap_or_default();
    if let Some(mut string_data) = secret.string_data.take() {
        string_data.values_mut().for_each(|v| v.zeroize());
    }
    let current = secret.metadata.resource_version.take().unwrap_or_default();
    let found = data.remove(field).map(|b| Zeroizing::new(b.0));
    data.values_mut().for_each(|v| v.0.zeroize());
    let bytes = found?;
    if version.is_some_and(|asked| asked.trim() != current) {
        return None;
    }
    let value = match std::str::from_utf8(&bytes) {
        Ok(text) => SecretValue::String(text.to_owned().into()),
        Err(_) => SecretValue::Binary(Box::<[u8]>::from(&bytes[..]).into()),
    };
    Some(VersionedSecret {
        version: current,
        value,
    })
}

/// Refuses an application policy that asks for another namespace than `namespace`, or for
/// impersonation (the two properties wasmCloud's Kubernetes backend reads from
/// `properties`): this store reads one namespace with its own identity.
pub(crate) fn check_policy(policy: &str, namespace: &str) -> Result<(), StoreFailure> {
    let Ok(policy) = serde_json::from_str::<Value>(policy) else {
        return Ok(());
    };
    let Some(props) = policy.get("properties") else {
        return Ok(());
    };
    if let Some(asked) = props.get("namespace").and_then(Value::as_str)
        && !asked.is_empty()
        && asked != namespace
    {
        return Err(StoreFailure::InvalidName {
            what: "namespace",
            name: asked.to_owned(),
            reason: format!(
                "the policy names a namespace this backend does not serve (it serves {namespace}); run a backend for that namespace or drop the policy's namespace property"
            ),
        });
    }
    if let Some(role) = props.get("impersonate").and_then(Value::as_str)
        && !role.is_empty()
    {
        return Err(StoreFailure::InvalidName {
            what: "impersonate",
            name: role.to_owned(),
            reason: "this backend reads with its own service account and does not impersonate; grant access with its mappings ConfigMap instead".to_owned(),
        });
    }
    Ok(())
}

/// The grants in one value of the mappings ConfigMap: one entry per line (blank lines and
/// text after `#` ignored), each a [`Grant`] in canonical form. Entries that do not parse,
/// or that name a mount (this store has none, so they could never apply), are skipped and
/// returned apart for a warning.
pub fn grants_in(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut grants = BTreeSet::new();
    let mut skipped = Vec::new();
    for line in text.lines() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        match Grant::parse(entry) {
            Ok(grant) if grant.mount.is_none() && is_secret_name(&grant.secret) => {
                grants.insert(grant.to_string());
            }
            _ => skipped.push(entry.to_owned()),
        }
    }
    (grants, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use secrecy::ExposeSecret as _;

    fn secret(rv: &str, data: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        s.metadata.resource_version = Some(rv.to_owned());
        s.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_secret_name("db-credentials"));
        assert!(is_secret_name("a.b-c1"));
        for bad in ["", "DB", "-db", "db-", "a/b", "a_b", &"a".repeat(254)] {
            assert!(!is_secret_name(bad), "{bad:?}");
        }
        assert!(is_data_key("tls.crt") && is_data_key("DB_PASSWORD"));
        assert!(!is_data_key("a/b") && !is_data_key(""));
    }

    #[test]
    fn field_version_and_binary() {
        let s = || {
            secret(
                "42",
                &[("password", b"hunter2"), ("der", &[0x30, 0xff, 0x00])],
            )
        };
        let v = value_of(s(), "password", None).unwrap();
        assert_eq!(v.version, "42");
        let SecretValue::String(text) = v.value else {
            panic!("a string")
        };
        assert_eq!(text.expose_secret(), "hunter2");
        let v = value_of(s(), "der", Some("42")).unwrap();
        let SecretValue::Binary(bytes) = v.value else {
            panic!("bytes")
        };
        assert_eq!(bytes.expose_secret(), &[0x30, 0xff, 0x00]);
        // Negative controls: another version, a missing field, no data.
        assert!(value_of(s(), "password", Some("41")).is_none());
        assert!(value_of(s(), "user", None).is_none());
        assert!(value_of(Secret::default(), "password", None).is_none());
    }

    #[test]
    fn policy_scope() {
        let p = |props: &str| {
            format!(r#"{{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{props}}}"#)
        };
        assert!(check_policy(&p("{}"), "apps").is_ok());
        assert!(check_policy(&p(r#"{"namespace":"apps"}"#), "apps").is_ok());
        assert!(check_policy("not json", "apps").is_ok());
        let e = check_policy(&p(r#"{"namespace":"kube-system"}"#), "apps").unwrap_err();
        assert!(e.to_string().contains("kube-system"), "{e}");
        let e = check_policy(&p(r#"{"impersonate":"admin"}"#), "apps").unwrap_err();
        assert!(e.to_string().contains("impersonate"), "{e}");
    }

    #[test]
    fn grants_lines_comments_and_skips() {
        let account = nkeys::KeyPair::new_account().public_key();
        let text = format!(
            "db\n  # a comment\n\ntls;issuer={account}  # bound\nBad_Name\nx;mount=team\nx;colour=red\n"
        );
        let (grants, skipped) = grants_in(&text);
        assert_eq!(
            grants.into_iter().collect::<Vec<_>>(),
            vec!["db".to_owned(), format!("tls;issuer={account}")]
        );
        assert_eq!(skipped, vec!["Bad_Name", "x;mount=team", "x;colour=red"]);
    }
}

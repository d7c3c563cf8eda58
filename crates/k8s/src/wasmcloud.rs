//! The ConfigMap wasmCloud's operator reads CA certificates from (`certificates.authorities` in a
//! host config points at it): one `.crt` key per certificate, nothing else, since the operator
//! reads only keys ending in `.crt` (as does our own reader, `anchorage_trust::KeyFilter`'s
//! default).
//!
//! Keys are `<slug>_<fingerprint>.crt`: the slug is the subject's common name (or organisation)
//! in lower-case ASCII letters, digits and `-` (accents dropped from Latin-1 letters, other
//! characters a `-`), at most 40 characters, so a person can tell the keys
//! apart; the fingerprint is the first 8 hex digits of the certificate's SHA-256, which keeps the
//! key stable for the same certificate and unique in practice. Should two certificates share both
//! (a 1 in 4 billion chance for a same-named pair), their fingerprints are lengthened until the
//! keys differ. The slug never contains `_`, so a longer fingerprint can never make one
//! certificate's key equal another's.

use std::collections::BTreeMap;

use anchorage_bundle::{Bundle, PemOptions, render_pem};
use anchorage_x509::Certificate;
use k8s_openapi::api::core::v1::ConfigMap;
use x509_parser::prelude::{AttributeTypeAndValue, FromDer as _, X509Name};

use crate::error::K8sError;
use crate::meta::{ObjectName, bundle_annotations};
use crate::trust_store::MAX_DATA_BYTES;

/// Longest slug in a key.
const SLUG_MAX: usize = 40;
/// Hex digits of the fingerprint in a key, unless two keys would collide.
const SHORT_FINGERPRINT: usize = 8;

/// The name a certificate's subject is known by: its common name, else its organisation.
fn display_name(cert: &Certificate) -> Option<String> {
    fn text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
        attr.as_str().ok().map(str::to_owned)
    }
    let (_, name) = X509Name::from_der(cert.subject_der()).ok()?;
    name.iter_common_name()
        .find_map(text)
        .or_else(|| name.iter_organization().find_map(text))
}

/// The ASCII letters a Latin-1 letter is written with when its accent is dropped.
fn fold_latin1(c: char) -> Option<&'static str> {
    Some(match c.to_lowercase().next()? {
        'à'..='å' => "a",
        'æ' => "ae",
        'ç' => "c",
        'è'..='ë' => "e",
        'ì'..='ï' => "i",
        'ð' => "d",
        'ñ' => "n",
        'ò'..='ö' | 'ø' => "o",
        'ù'..='ü' => "u",
        'ý' | 'ÿ' => "y",
        'þ' => "th",
        'ß' => "ss",
        _ => return None,
    })
}

/// Lower-case ASCII letters and digits (Latin-1 letters without their accents), every other run
/// of characters one `-`; at most [`SLUG_MAX`] characters; `ca` when nothing is left.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if let Some(ascii) = fold_latin1(c) {
            out.push_str(ascii);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(SLUG_MAX);
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "ca".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The `.crt` key of each certificate of the bundle, in bundle order.
pub fn wasmcloud_keys(bundle: &Bundle) -> Vec<String> {
    let (slugs, hex): (Vec<String>, Vec<String>) = bundle
        .certificates()
        .map(|c| {
            let name = display_name(c);
            (slug(name.as_deref().unwrap_or("")), c.sha256().hex())
        })
        .unzip();
    assign_keys(&slugs, &hex)
}

/// `<slug>_<fingerprint prefix>.crt` for each (slug, hex fingerprint), the prefix lengthened for
/// every member of a group of keys that would otherwise be equal, until they differ. Distinct
/// fingerprints always differ in full.
fn assign_keys(slugs: &[String], hex: &[String]) -> Vec<String> {
    let key = |i: usize, len: usize| {
        let len = len.min(hex[i].len());
        format!("{}_{}.crt", slugs[i], &hex[i][..len])
    };
    let mut lens = vec![SHORT_FINGERPRINT; slugs.len()];
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..slugs.len() {
        groups.entry(key(i, SHORT_FINGERPRINT)).or_default().push(i);
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let mut len = SHORT_FINGERPRINT;
        loop {
            len *= 2;
            let mut keys: Vec<String> = members.iter().map(|&i| key(i, len)).collect();
            keys.sort();
            keys.dedup();
            if keys.len() == members.len() || members.iter().all(|&i| len >= hex[i].len()) {
                break;
            }
        }
        for &i in members {
            lens[i] = len;
        }
    }
    (0..slugs.len()).map(|i| key(i, lens[i])).collect()
}

/// The ConfigMap for wasmCloud's operator: one `<slug>_<fingerprint>.crt` key per certificate
/// holding its PEM (see the module docs for the key names). Labelled and annotated like
/// [`crate::trust_configmap`].
///
/// # Errors
///
/// An invalid name, namespace or label, an empty bundle, or more than [`MAX_DATA_BYTES`] of PEM.
pub fn wasmcloud_configmap(bundle: &Bundle, meta: &ObjectName) -> Result<ConfigMap, K8sError> {
    if bundle.is_empty() {
        return Err(K8sError::EmptyBundle { kind: "ConfigMap" });
    }
    let pem = render_pem(bundle, &PemOptions::default());
    let metadata = meta.object_meta("ConfigMap", false, bundle_annotations(&pem, bundle.len()))?;
    let data: BTreeMap<String, String> = wasmcloud_keys(bundle)
        .into_iter()
        .zip(bundle.certificates().map(Certificate::to_pem))
        .collect();
    let size: usize = data.values().map(String::len).sum();
    if size > MAX_DATA_BYTES {
        return Err(K8sError::TooLarge {
            object: meta.describe("ConfigMap"),
            size,
            limit: MAX_DATA_BYTES,
            certificates: bundle.len(),
            advice: "keep only the private CAs in it (drop --mozilla: public roots do not belong in wasmCloud's authorities), or split the certificates over several ConfigMaps".into(),
        });
    }
    Ok(ConfigMap {
        metadata,
        data: Some(data),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{bundle_of, pem_len, prefix_past, roots, roots_past_one_mib};
    use crate::validate;

    #[test]
    fn keys_are_valid_unique_and_named_after_the_subject() {
        let b = roots(&["Twin Root", "Twin Root", "Other Root"]);
        let keys = wasmcloud_keys(&b);
        assert_eq!(keys.len(), 3);
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3, "{keys:?}");
        for (key, cert) in keys.iter().zip(b.certificates()) {
            assert_eq!(validate::config_map_key(key), Ok(()));
            let expected_slug = if cert.subject().contains("Twin") {
                "twin-root"
            } else {
                "other-root"
            };
            let fingerprint = &cert.sha256().hex()[..8];
            assert_eq!(*key, format!("{expected_slug}_{fingerprint}.crt"));
        }
        // The same certificate keeps its key whatever else is in the bundle.
        let alone = bundle_of(b.certificates().take(1).cloned());
        assert_eq!(wasmcloud_keys(&alone)[0], keys[0]);
    }

    #[test]
    fn colliding_keys_get_longer_fingerprints() {
        let slugs = ["ca", "ca", "ca", "other"].map(String::from);
        let hex = [
            "aaaaaaaa11111111ffff",
            "aaaaaaaa22222222ffff",
            "bbbbbbbb33333333ffff",
            "aaaaaaaa11111111ffff",
        ]
        .map(String::from);
        assert_eq!(
            assign_keys(&slugs, &hex),
            [
                "ca_aaaaaaaa11111111.crt",
                "ca_aaaaaaaa22222222.crt",
                "ca_bbbbbbbb.crt",
                "other_aaaaaaaa.crt",
            ]
        );
        // Equal up to 16 digits: 32.
        let hex = ["0123456789abcdef0000", "0123456789abcdef1111"].map(String::from);
        let slugs = ["x", "x"].map(String::from);
        assert_eq!(
            assign_keys(&slugs, &hex),
            ["x_0123456789abcdef0000.crt", "x_0123456789abcdef1111.crt"]
        );
    }

    #[test]
    fn the_configmap_holds_one_pem_per_key_within_the_limit() {
        let b = roots(&["Wasm A", "Wasm B"]);
        let cm = wasmcloud_configmap(&b, &ObjectName::new("cas")).unwrap();
        let mut values: Vec<String> = cm.data.unwrap().into_values().collect();
        let mut pems: Vec<String> = b.certificates().map(Certificate::to_pem).collect();
        values.sort();
        pems.sort();
        assert_eq!(values, pems);

        let certs = prefix_past(roots_past_one_mib(), MAX_DATA_BYTES);
        let e = wasmcloud_configmap(&bundle_of(certs.iter().cloned()), &ObjectName::new("cas"))
            .unwrap_err();
        assert!(
            matches!(e, K8sError::TooLarge { size, .. } if size == pem_len(certs)),
            "{e}"
        );
        let under = &certs[..certs.len() - 1];
        assert!(
            wasmcloud_configmap(&bundle_of(under.iter().cloned()), &ObjectName::new("cas")).is_ok()
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Anchorage Sample Root CA"), "anchorage-sample-root-ca");
        assert_eq!(
            slug("  Ops & Platform — Ünïcode CA (2025) "),
            "ops-platform-unicode-ca-2025"
        );
        assert_eq!(slug("Société Générale Straße"), "societe-generale-strasse");
        assert_eq!(slug("中文 CA"), "ca");
        assert_eq!(slug("***"), "ca");
        assert_eq!(slug(""), "ca");
        let long = slug(&"Long Name ".repeat(10));
        assert!(long.len() <= SLUG_MAX && !long.ends_with('-'), "{long}");
        assert_eq!(slug("a-_-b"), "a-b");
    }
}

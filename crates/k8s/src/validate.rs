//! The API server's validation rules for the values we put in objects, checked before anything is
//! returned, so a bad name fails here with a reason instead of at `kubectl apply`.
//!
//! Each check returns `Err(reason)`: what the rule is and where the value breaks it, in words a
//! person can act on. The callers wrap the reason in a [`crate::K8sError`] naming the field.

/// Longest DNS-1123 subdomain (object names, label-key prefixes, ConfigMap keys).
pub(crate) const SUBDOMAIN_MAX: usize = 253;
/// Longest DNS-1123 label (namespaces, volume and container names).
pub(crate) const LABEL_MAX: usize = 63;
/// Longest label value and the name part of a qualified name.
const QUALIFIED_NAME_MAX: usize = 63;
/// Kubernetes refuses an object whose annotations (keys and values) add up to more than this.
pub(crate) const ANNOTATIONS_MAX: usize = 256 * 1024;

fn too_long(value: &str, max: usize) -> Option<String> {
    (value.len() > max)
        .then(|| format!("must be at most {max} characters (it has {})", value.len()))
}

/// The first character at fault, for a reason text.
fn at(value: &str, index: usize) -> String {
    match value[index..].chars().next() {
        Some(c) => format!("`{}` at position {}", c.escape_debug(), index + 1),
        None => "the end".to_owned(),
    }
}

/// Where `label` breaks the RFC 1123 label pattern `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, if it does.
fn rfc1123_label_fault(label: &str) -> Option<usize> {
    let bytes = label.as_bytes();
    if bytes.is_empty() {
        return Some(0);
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if let Some(i) = bytes.iter().position(|&b| !ok(b) && b != b'-') {
        return Some(i);
    }
    if !ok(bytes[0]) {
        return Some(0);
    }
    (!ok(bytes[bytes.len() - 1])).then(|| bytes.len() - 1)
}

const LABEL_RULE: &str = "a DNS-1123 label must consist of lower-case letters, digits and '-', and start and end with a letter or digit";
const SUBDOMAIN_RULE: &str = "a DNS-1123 subdomain must consist of lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit";

/// A DNS-1123 label (at most 63 characters): namespaces, volume and container names.
pub(crate) fn dns1123_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("must not be empty ({LABEL_RULE})"));
    }
    if let Some(reason) = too_long(value, LABEL_MAX) {
        return Err(reason);
    }
    match rfc1123_label_fault(value) {
        Some(i) => Err(format!(
            "{LABEL_RULE} ({} is not allowed there)",
            at(value, i)
        )),
        None => Ok(()),
    }
}

/// A DNS-1123 subdomain (at most 253 characters): object names and label-key prefixes.
pub(crate) fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("must not be empty ({SUBDOMAIN_RULE})"));
    }
    if let Some(reason) = too_long(value, SUBDOMAIN_MAX) {
        return Err(reason);
    }
    let mut offset = 0;
    for part in value.split('.') {
        if let Some(i) = rfc1123_label_fault(part) {
            return Err(format!(
                "{SUBDOMAIN_RULE} ({} is not allowed there)",
                at(value, offset + i)
            ));
        }
        offset += part.len() + 1;
    }
    Ok(())
}

/// A ConfigMap or Secret key, which is also a file name in the mounted volume.
pub(crate) fn config_map_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(reason) = too_long(key, SUBDOMAIN_MAX) {
        return Err(reason);
    }
    if let Some(i) = key
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(format!(
            "a key must consist of letters, digits, '-', '_' and '.' ({} is not allowed)",
            at(key, i)
        ));
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Err("must not be `.` or `..` or start with `..` (the kubelet keeps its own `..data` entries there)".into());
    }
    Ok(())
}

/// The name part of a qualified name, and a non-empty label value:
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn qualified_name_part(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(reason) = too_long(value, QUALIFIED_NAME_MAX) {
        return Err(reason);
    }
    let bytes = value.as_bytes();
    let ok = |b: u8| b.is_ascii_alphanumeric();
    let fault = bytes
        .iter()
        .position(|&b| !(ok(b) || matches!(b, b'-' | b'_' | b'.')))
        .or_else(|| (!ok(bytes[0])).then_some(0))
        .or_else(|| (!ok(bytes[bytes.len() - 1])).then(|| bytes.len() - 1));
    match fault {
        Some(i) => Err(format!(
            "{what} must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit ({} is not allowed there)",
            at(value, i)
        )),
        None => Ok(()),
    }
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS-1123 subdomain.
pub(crate) fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|reason| format!("the prefix before `/` {reason}"))?;
    }
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    qualified_name_part(name, "the name part")
}

/// A label value: empty, or up to 63 characters of the qualified-name alphabet.
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    qualified_name_part(value, "a label value")
}

/// An environment variable name as Kubernetes 1.33 accepts it.
pub(crate) fn env_var_name(name: &str) -> Result<(), String> {
    let rule = "an environment variable name must consist of letters, digits, '_', '-' and '.', and must not start with a digit";
    if name.is_empty() {
        return Err(format!("must not be empty ({rule})"));
    }
    let bad = name
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
        .or_else(|| name.as_bytes()[0].is_ascii_digit().then_some(0));
    if let Some(i) = bad {
        return Err(format!("{rule} ({} is not allowed there)", at(name, i)));
    }
    if name == "." || name == ".." || name.starts_with("..") {
        return Err("must not be `.` or `..` or start with `..`".into());
    }
    Ok(())
}

/// A mount path: absolute, without `..` components.
pub(crate) fn mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path (start with `/`)".into());
    }
    if path.split('/').any(|c| c == "..") {
        return Err("must not contain a `..` component".into());
    }
    if path.contains(':') {
        return Err("must not contain `:`".into());
    }
    Ok(())
}

/// A signer name: `<domain>/<path>`, the domain at least two DNS labels, the path dot-separated
/// DNS-1123 subdomains (`example.com/private-ca`).
pub(crate) fn signer_name(signer: &str) -> Result<(), String> {
    let Some((domain, path)) = signer.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        return Err(
            "must be a domain and a path separated by one `/`, such as `example.com/private-ca`"
                .into(),
        );
    };
    if let Some(reason) = too_long(domain, SUBDOMAIN_MAX) {
        return Err(format!("the domain {reason}"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        dns1123_label(label)
            .map_err(|reason| format!("the domain's part `{label}` is invalid: {reason}"))?;
    }
    if labels.len() < 2 {
        return Err(format!(
            "the domain `{domain}` must have at least two dot-separated parts, such as `example.com`"
        ));
    }
    for part in path.split('.') {
        dns1123_subdomain(part)
            .map_err(|reason| format!("the path's part `{part}` is invalid: {reason}"))?;
    }
    let max = SUBDOMAIN_MAX + (SUBDOMAIN_MAX + LABEL_MAX + 1) + 1;
    if let Some(reason) = too_long(signer, max) {
        return Err(reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "0", "trust-bundle", &"a".repeat(63)] {
            assert_eq!(dns1123_label(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(64);
        assert_eq!(
            dns1123_label(&long).unwrap_err(),
            "must be at most 63 characters (it has 64)"
        );
        let e = dns1123_label("Trust").unwrap_err();
        assert!(
            e.ends_with("(`T` at position 1 is not allowed there)"),
            "{e}"
        );
        let e = dns1123_label("trust-").unwrap_err();
        assert!(e.contains("`-` at position 6"), "{e}");
        assert_eq!(
            dns1123_label("a.b").unwrap_err(),
            "a DNS-1123 label must consist of lower-case letters, digits and '-', and start and end with a letter or digit (`.` at position 2 is not allowed there)"
        );
        assert!(
            dns1123_label("")
                .unwrap_err()
                .starts_with("must not be empty")
        );

        for ok in ["a", "a.b", "ca-trust.example.com", &"a".repeat(253)] {
            assert_eq!(dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        assert!(
            dns1123_subdomain(&"a".repeat(254))
                .unwrap_err()
                .contains("at most 253")
        );
        let e = dns1123_subdomain("ab.-c").unwrap_err();
        assert!(e.contains("`-` at position 4"), "{e}");
        assert!(
            dns1123_subdomain("a..b")
                .unwrap_err()
                .contains("`.` at position 3")
        );
        assert_eq!(
            dns1123_subdomain("a_b").unwrap_err(),
            "a DNS-1123 subdomain must consist of lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (`_` at position 2 is not allowed there)"
        );
        assert_eq!(
            dns1123_subdomain(".a").unwrap_err(),
            "a DNS-1123 subdomain must consist of lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (`.` at position 1 is not allowed there)"
        );
    }

    #[test]
    fn config_map_keys() {
        for ok in [
            "ca-certificates.crt",
            "a1b2c3d4.0",
            "_x",
            ".hidden",
            "A-Z_0.9",
        ] {
            assert_eq!(config_map_key(ok), Ok(()), "{ok}");
        }
        assert_eq!(config_map_key(&"k".repeat(253)), Ok(()));
        assert!(
            config_map_key(&"k".repeat(254))
                .unwrap_err()
                .contains("253")
        );
        for (bad, why) in [
            (
                ".",
                "must not be `.` or `..` or start with `..` (the kubelet keeps its own `..data` entries there)",
            ),
            (
                "..",
                "must not be `.` or `..` or start with `..` (the kubelet keeps its own `..data` entries there)",
            ),
            (
                "..data",
                "must not be `.` or `..` or start with `..` (the kubelet keeps its own `..data` entries there)",
            ),
            ("", "must not be empty"),
        ] {
            assert_eq!(config_map_key(bad).unwrap_err(), why, "{bad}");
        }
        let e = config_map_key("ca bundle.crt").unwrap_err();
        assert!(e.contains("` ` at position 3"), "{e}");
        assert_eq!(
            config_map_key("a/b").unwrap_err(),
            "a key must consist of letters, digits, '-', '_' and '.' (`/` at position 2 is not allowed)"
        );
    }

    #[test]
    fn label_keys_and_values() {
        for ok in [
            "app",
            "app.kubernetes.io/managed-by",
            "example.com/Team_1",
            "x/y.z",
        ] {
            assert_eq!(qualified_name(ok), Ok(()), "{ok}");
        }
        assert!(
            qualified_name("Example.com/x")
                .unwrap_err()
                .starts_with("the prefix")
        );
        assert!(
            qualified_name("example.com/")
                .unwrap_err()
                .contains("empty")
        );
        assert_eq!(
            qualified_name("-app").unwrap_err(),
            "the name part must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit (`-` at position 1 is not allowed there)"
        );
        assert_eq!(
            qualified_name("a/b/c").unwrap_err(),
            "the name part must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit (`/` at position 2 is not allowed there)"
        );
        assert!(qualified_name(&"n".repeat(64)).unwrap_err().contains("63"));

        for ok in ["", "v1", "Team_A.b-c", &"v".repeat(63)] {
            assert_eq!(label_value(ok), Ok(()), "{ok:?}");
        }
        assert!(label_value(&"v".repeat(64)).unwrap_err().contains("63"));
        assert!(
            label_value("a b")
                .unwrap_err()
                .contains("` ` at position 2")
        );
        assert_eq!(
            label_value("a-").unwrap_err(),
            "a label value must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit (`-` at position 2 is not allowed there)"
        );
        assert_eq!(
            label_value("_a").unwrap_err(),
            "a label value must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit (`_` at position 1 is not allowed there)"
        );
    }

    #[test]
    fn env_names_mount_paths_and_signers() {
        const ENV: &str = "an environment variable name must consist of letters, digits, '_', '-' and '.', and must not start with a digit";
        for ok in ["SSL_CERT_DIR", "a.b-c", "_X1"] {
            assert_eq!(env_var_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", format!("must not be empty ({ENV})")),
            (
                "1X",
                format!("{ENV} (`1` at position 1 is not allowed there)"),
            ),
            (
                "A=B",
                format!("{ENV} (`=` at position 2 is not allowed there)"),
            ),
            (
                "..X",
                "must not be `.` or `..` or start with `..`".to_owned(),
            ),
            (
                "A B",
                format!("{ENV} (` ` at position 2 is not allowed there)"),
            ),
        ] {
            assert_eq!(env_var_name(bad).unwrap_err(), why, "{bad}");
        }
        assert_eq!(mount_path("/etc/ssl/certs"), Ok(()));
        for (bad, why) in [
            ("etc/ssl", "must be an absolute path (start with `/`)"),
            ("/etc/../x", "must not contain a `..` component"),
            ("/c:/x", "must not contain `:`"),
        ] {
            assert_eq!(mount_path(bad).unwrap_err(), why, "{bad}");
        }
        for ok in ["example.com/private-ca", "corp.example.com/ca.v1"] {
            assert_eq!(signer_name(ok), Ok(()), "{ok}");
        }
        assert!(signer_name("example.com").unwrap_err().contains("one `/`"));
        assert_eq!(
            signer_name("a/b/c").unwrap_err(),
            "must be a domain and a path separated by one `/`, such as `example.com/private-ca`"
        );
        assert!(signer_name("localhost/ca").unwrap_err().contains("two"));
        assert_eq!(
            signer_name("Example.com/ca").unwrap_err(),
            "the domain's part `Example` is invalid: a DNS-1123 label must consist of lower-case letters, digits and '-', and start and end with a letter or digit (`E` at position 1 is not allowed there)"
        );
        assert_eq!(
            signer_name("example.com/Ca").unwrap_err(),
            "the path's part `Ca` is invalid: a DNS-1123 subdomain must consist of lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (`C` at position 1 is not allowed there)"
        );
    }
}

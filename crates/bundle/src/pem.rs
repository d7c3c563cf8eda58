//! A PEM bundle (`ca-certificates.crt`, `tls-ca-bundle.pem`, `--cacert`), rendered as text.

use crate::bundle::Bundle;

/// How to render a PEM bundle.
#[derive(Clone, Debug, Default)]
pub struct PemOptions {
    /// Put a `# subject` comment line (and the SHA-256 fingerprint) before each certificate.
    /// OpenSSL, curl, Go, Python, Node.js and Java's PEM readers all skip text between blocks.
    pub comments: bool,
}

/// What starts a PEM block; never written inside a comment.
const BEGIN_MARKER: &str = "-----BEGIN";

/// Renders the bundle as PEM text, in bundle order.
pub fn render_pem(bundle: &Bundle, options: &PemOptions) -> String {
    let mut out = String::with_capacity(bundle.len() * 1800);
    for cert in bundle.certificates() {
        if options.comments {
            // A subject can hold any character: keep the comment on one line.
            let mut subject: String = cert
                .subject()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            // Nor may it hold a BEGIN marker: PEM readers (ours included) would take the
            // comment for a malformed block (found by the x509_der_structured fuzz target).
            while subject.contains(BEGIN_MARKER) {
                subject = subject.replace(BEGIN_MARKER, "- - -BEGIN");
            }
            out.push_str("# ");
            out.push_str(&subject);
            out.push_str("\n# SHA-256: ");
            out.push_str(&cert.sha256().to_string());
            out.push('\n');
        }
        out.push_str(&cert.to_pem());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use anchorage_x509::{Certificate, decode};

    use super::*;
    use crate::Origin;

    #[test]
    fn a_begin_marker_in_a_subject_does_not_leak_into_the_comment() {
        let root = anchorage_test_support::pki::root_ca("x ------BEGIN CERTIFICATE----- y");
        let cert = Certificate::from_der(&root.der).unwrap();
        assert!(
            cert.subject().contains("-----BEGIN"),
            "control: the subject holds a marker"
        );
        let bundle = Bundle::new([(cert, Origin::path(Path::new("t")))]);
        let text = render_pem(&bundle, &PemOptions { comments: true });
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("# ") && !first.contains("-----BEGIN"),
            "{first}"
        );
        let decoded = decode(text.as_bytes());
        assert!(decoded.problems.is_empty(), "{:?}", decoded.problems);
        assert_eq!(decoded.certificates.len(), 1);
    }
}

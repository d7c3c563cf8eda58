//! A PEM bundle (`ca-certificates.crt`, `tls-ca-bundle.pem`, `--cacert`), rendered as text.

use crate::bundle::Bundle;

/// How to render a PEM bundle.
#[derive(Clone, Debug, Default)]
pub struct PemOptions {
    /// Put a `# subject` comment line (and the SHA-256 fingerprint) before each certificate.
    /// OpenSSL, curl, Go, Python, Node.js and Java's PEM readers all skip text between blocks.
    pub comments: bool,
}

/// Renders the bundle as PEM text, in bundle order.
pub fn render_pem(bundle: &Bundle, options: &PemOptions) -> String {
    let mut out = String::with_capacity(bundle.len() * 1800);
    for cert in bundle.certificates() {
        if options.comments {
            // A subject can hold any character: keep the comment on one line.
            let subject: String = cert
                .subject()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
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

//! Bundles for unit tests, made from fresh test roots.

use anchorage_bundle::{Bundle, Origin};
use anchorage_test_support::pki;
use anchorage_x509::{Certificate, Position};

/// A bundle of these certificates.
pub(crate) fn bundle_of(certs: impl IntoIterator<Item = Certificate>) -> Bundle {
    let origin = Origin {
        source: "test".into(),
        detail: None,
        position: Position::default(),
    };
    Bundle::new(certs.into_iter().map(|c| (c, origin.clone())))
}

/// A fresh self-signed root CA per name (the same name twice gives two roots, one subject).
pub(crate) fn roots(names: &[&str]) -> Bundle {
    bundle_of(names.iter().map(|n| root(n)))
}

/// A fresh self-signed root CA.
pub(crate) fn root(name: &str) -> Certificate {
    Certificate::from_der(&pki::root_ca(name).der).expect("decode a test root")
}

/// Fresh roots whose PEM adds up to just over 1 MiB (made once, shared by the tests).
pub(crate) fn roots_past_one_mib() -> &'static [Certificate] {
    static ROOTS: std::sync::OnceLock<Vec<Certificate>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut certs = Vec::new();
        let mut total = 0;
        while total <= crate::MAX_DATA_BYTES {
            let cert = root(&format!("Size Test Root {}", certs.len()));
            total += cert.to_pem().len();
            certs.push(cert);
        }
        certs
    })
}

/// The fewest of `certs` (from the front) whose PEM adds up to more than `bytes`.
pub(crate) fn prefix_past(certs: &[Certificate], bytes: usize) -> &[Certificate] {
    let mut total = 0;
    for (i, cert) in certs.iter().enumerate() {
        total += cert.to_pem().len();
        if total > bytes {
            return &certs[..=i];
        }
    }
    panic!("the certificates add up to only {total} bytes, not more than {bytes}");
}

/// PEM bytes of these certificates.
pub(crate) fn pem_len(certs: &[Certificate]) -> usize {
    certs.iter().map(|c| c.to_pem().len()).sum()
}

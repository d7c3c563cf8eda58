//! Targets over anchorage-x509: the PEM scanner, the DER walker, PKCS#7 and `Certificate`.

use std::path::Path;

use anchorage_bundle::{Bundle, Origin, PemOptions, render_pem};
use anchorage_x509::{Certificate, Input, decode, subject_hash_of_name};
use arbitrary::Unstructured;

use crate::der;

/// Every accessor of a decoded certificate, and its PEM round trip.
fn exercise(cert: &Certificate) {
    let _ = (
        cert.subject(),
        cert.issuer(),
        cert.serial(),
        cert.signature_algorithm(),
    );
    let _ = (
        cert.subject_hash(),
        cert.issuer_hash(),
        cert.sha1().hex(),
        cert.sha256().hex(),
    );
    let _ = (cert.not_before().rfc3339(), cert.not_after().rfc3339());
    let _ = (
        cert.public_key(),
        cert.basic_constraints(),
        cert.is_ca(),
        cert.key_usage(),
    );
    let _ = (
        cert.extended_key_usage(),
        cert.subject_alt_names(),
        cert.name_constraints(),
    );
    let _ = (cert.subject_key_id(), cert.authority_key_id());
    let _ = (cert.is_self_signed(), cert.is_self_issued());
    assert_eq!(
        subject_hash_of_name(cert.subject_der()).ok(),
        Some(cert.subject_hash()),
        "subject hash of the subject DER"
    );
    let again = Certificate::from_der(cert.der()).expect("a certificate's own DER decodes");
    assert_eq!(again.der(), cert.der());

    let pem = cert.to_pem();
    let decoded = decode(pem.as_bytes());
    assert_eq!(decoded.input, Input::Pem);
    assert!(decoded.problems.is_empty(), "to_pem output decodes cleanly");
    assert_eq!(decoded.certificates.len(), 1);
    assert_eq!(decoded.certificates[0].certificate.der(), cert.der());
}

/// Renders the certificates as a bundle (with and without comments) and decodes it again: the
/// same certificates, in bundle order, and no problem.
fn bundle_round_trip(certs: impl IntoIterator<Item = Certificate>) {
    let origin = Origin::path(Path::new("fuzz"));
    let bundle = Bundle::new(certs.into_iter().map(|c| (c, origin.clone())));
    if bundle.is_empty() {
        return;
    }
    let want: Vec<&[u8]> = bundle.certificates().map(Certificate::der).collect();
    for comments in [false, true] {
        let text = render_pem(&bundle, &PemOptions { comments });
        let decoded = decode(text.as_bytes());
        assert!(
            decoded.problems.is_empty(),
            "render_pem output (comments: {comments}) decodes cleanly: {:?}\n{text}",
            decoded.problems
        );
        let got: Vec<&[u8]> = decoded
            .certificates
            .iter()
            .map(|f| f.certificate.der())
            .collect();
        assert_eq!(got, want, "render_pem → decode round trip");
    }
}

fn decode_all(data: &[u8]) -> anchorage_x509::Decoded {
    let decoded = decode(data);
    for found in &decoded.certificates {
        exercise(&found.certificate);
        let _ = found.position.to_string();
    }
    for problem in &decoded.problems {
        let _ = (problem.position.to_string(), problem.error.to_string());
    }
    let _ = decoded.has_private_key();
    decoded
}

/// `anchorage_x509::decode` (PEM scanner, DER, PKCS#7) on any bytes; every certificate found
/// round-trips through `to_pem` and the bundle through `render_pem`.
pub fn x509_decode(data: &[u8]) {
    let decoded = decode_all(data);
    bundle_round_trip(decoded.certificates.into_iter().map(|f| f.certificate));
}

/// `Certificate::from_der` (the DER walker) and `subject_hash_of_name` on the same bytes.
pub fn x509_certificate(data: &[u8]) {
    if let Ok(cert) = Certificate::from_der(data) {
        exercise(&cert);
        bundle_round_trip([cert]);
    }
    let _ = subject_hash_of_name(data);
}

/// PKCS#7 bundles: the bytes as given (DER or PEM `PKCS7`), then each certificate found
/// wrapped again in a certs-only bundle must decode to the same list.
pub fn x509_pkcs7(data: &[u8]) {
    let decoded = decode_all(data);
    if decoded.input == Input::Pkcs7 {
        for found in &decoded.certificates {
            assert!(
                found.position.index.is_some(),
                "PKCS#7 certificates are numbered"
            );
        }
    }
    let ders: Vec<&[u8]> = decoded
        .certificates
        .iter()
        .map(|f| f.certificate.der())
        .collect();
    if !ders.is_empty() {
        let again = decode(&der::pkcs7_certs_only(&ders));
        assert_eq!(again.input, Input::Pkcs7);
        let got: Vec<&[u8]> = again
            .certificates
            .iter()
            .map(|f| f.certificate.der())
            .collect();
        assert_eq!(got, ders, "PKCS#7 rewrap round trip");
    }
}

/// Certificate-shaped DER built from the fuzzer's bytes (see the `der` module), decoded as a
/// certificate, as a file, and wrapped in PKCS#7.
pub fn x509_der_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cert) = der::certificate(&mut u) else {
        return;
    };
    x509_certificate(&cert);
    let _ = decode_all(&cert);
    let _ = decode_all(&der::pkcs7_certs_only(&[&cert]));
}

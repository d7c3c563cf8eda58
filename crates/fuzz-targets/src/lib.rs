//! Fuzz target bodies: one `pub fn(&[u8])` per parser Anchorage exposes to untrusted bytes.
//!
//! The cargo-fuzz crate in `fuzz/` (nightly, libFuzzer) calls these functions, one binary per
//! target; `tests/replay.rs` feeds every committed `fuzz/corpus/<target>/*` file through the
//! same functions under plain `cargo test` on stable, so the seeds and every regression input
//! run in CI without a nightly toolchain. [`TARGETS`] is the list both sides use.
//!
//! A target never fails on bad input (that is the parsers' job to report); it panics only when
//! an invariant breaks: a parser panics, or a round trip (decode → encode → decode, render →
//! parse) does not give back what went in, as rustls's targets check. Targets that need
//! structure build it from the fuzzer's bytes with [`arbitrary::Unstructured`]: certificate-shaped
//! DER trees with x509-parser-style mutations, image layer splits, generated layer files, and
//! secrets requests sealed to a fixed transit key so the fuzzer reaches the JSON and JWT checks
//! behind the envelope.
//!
//! The serve request bodies and the Vault answer decoders are private types: their crates
//! expose a hidden `fuzzing` module that runs them as their extractors and issuer do
//! ([`serve_request_body`], [`vault_answer`]).

mod der;
mod image;
mod keystore;
mod secrets;
mod x509;

pub use der::pkcs7_certs_only;
pub use image::{frame_layers, image_layers, image_oci, image_write_layer};
pub use keystore::{keystore_jks, keystore_pkcs12};
pub use secrets::{
    ADMIN_SEED, NOW_UNIX, TRANSIT_SEED, secrets_admin, secrets_get, secrets_jwt, transit_key,
};
pub use x509::{x509_certificate, x509_decode, x509_der_structured, x509_pkcs7};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("x509_decode", x509_decode),
    ("x509_certificate", x509_certificate),
    ("x509_der_structured", x509_der_structured),
    ("x509_pkcs7", x509_pkcs7),
    ("keystore_pkcs12", keystore_pkcs12),
    ("keystore_jks", keystore_jks),
    ("k8s_ca_secret", k8s_ca_secret),
    ("trust_source", trust_source),
    ("image_layers", image_layers),
    ("image_write_layer", image_write_layer),
    ("image_oci", image_oci),
    ("secrets_get", secrets_get),
    ("secrets_jwt", secrets_jwt),
    ("secrets_admin", secrets_admin),
    ("serve_csr", serve_csr),
    ("serve_request_body", serve_request_body),
    ("vault_answer", vault_answer),
];

/// `anchorage_k8s::read_ca_secret`; a Secret that reads and has a layout's keys is written
/// back (YAML and JSON) and must read back to the same name and data.
pub fn k8s_ca_secret(data: &[u8]) {
    use anchorage_k8s::{
        CaSecretLayout, ManifestFormat, ObjectName, read_ca_secret, write_ca_secret,
    };
    use secrecy::{ExposeSecret as _, SecretSlice};

    let Ok(secret) = read_ca_secret(data) else {
        return;
    };
    let _ = secret.keys().count();
    for layout in [CaSecretLayout::FsmCaBundle, CaSecretLayout::KubernetesTls] {
        if secret.require(layout).is_err() {
            continue;
        }
        let name = ObjectName::new(secret.name().unwrap_or("ca"));
        for format in [ManifestFormat::Yaml, ManifestFormat::Json] {
            let map = secret
                .data()
                .iter()
                .map(|(k, v)| (k.clone(), SecretSlice::from(v.clone())))
                .collect();
            let Ok(written) = write_ca_secret(layout, &name, map, format) else {
                continue;
            };
            let again = read_ca_secret(written.expose_secret().as_bytes())
                .expect("a CA Secret we wrote reads back");
            assert_eq!(again.data(), secret.data(), "CA Secret data round trip");
            assert_eq!(
                again.name(),
                Some(name.name.as_str()),
                "CA Secret name round trip"
            );
        }
    }
}

/// `anchorage_trust::load` on bytes: the first byte picks the name the source is read under
/// (`.yaml` forces the Kubernetes manifest reader; otherwise content sniffing decides between
/// PEM, DER, PKCS#7, JKS, PKCS#12 and manifests), the second the ConfigMap/Secret key filter.
pub fn trust_source(data: &[u8]) {
    use anchorage_trust::{KeyFilter, LoadOptions, Source, load};

    let [name, filter, rest @ ..] = data else {
        return;
    };
    let name = match name % 4 {
        0 => "fuzz.yaml",
        1 => "stdin",
        2 => "fuzz.jks",
        _ => "fuzz.p12",
    };
    let options = LoadOptions {
        key_filter: if filter % 2 == 0 {
            KeyFilter::default()
        } else {
            KeyFilter::All
        },
        ..LoadOptions::default()
    };
    let loaded = load(
        &[Source::Bytes {
            name: name.to_owned(),
            bytes: rest.to_vec(),
        }],
        &options,
    );
    let _ = format!("{loaded:?}");
}

/// Every JSON request body of `serve`'s API (byte 0 picks the endpoint: see
/// `anchorage_serve::fuzzing::BODIES`), decoded as its extractor does, then the handler's
/// first checks; a role must survive encode → decode.
pub fn serve_request_body(data: &[u8]) {
    let _ = anchorage_serve::fuzzing::request_body(data);
}

/// Every reader `anchorage-ca-vault` applies to an OpenBao/Vault answer body: error text, CA
/// chain, issue/sign envelope (private key unescaped into zeroizing memory, checked against
/// `serde_json`), AppRole login (client token and its header).
pub fn vault_answer(data: &[u8]) {
    let _ = anchorage_ca_vault::fuzzing::decode_answer(data);
}

/// `anchorage_serve::authority::parse_csr`: PEM or DER certification requests, signature checked.
pub fn serve_csr(data: &[u8]) {
    if let Ok(csr) = anchorage_serve::authority::parse_csr(data) {
        let _ = (csr.common_name.map(|n| n.len()), csr.sans.len());
    }
}

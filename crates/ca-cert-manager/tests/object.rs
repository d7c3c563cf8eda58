//! The `CertificateRequest` object Anchorage sends, checked as JSON, as YAML, and by decoding
//! its CSR with rcgen/x509-parser and with `openssl req -verify`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anchorage_ca::{CertKind, CertificateRequest, Identity, KeyType, San, keys};
use anchorage_ca_cert_manager::v1::{self, IssuerReference, KeyUsage};
use anchorage_ca_cert_manager::{
    CertManagerSettings, IDENTITY_ANNOTATION, KIND_LABEL, MANAGED_BY_LABEL, build_request,
    certificate_signing_request,
};
use anchorage_test_support::peer;
use rcgen::{CertificateSigningRequestParams, SanType};
use serde_json::json;
use x509_parser::prelude::FromDer as _;

const IDENTITY: &str = "bookstore-v2.bookstore.cluster.local";
const SPIFFE: &str = "spiffe://cluster.local/ns/bookstore/sa/bookstore-v2";

fn service_request() -> CertificateRequest {
    CertificateRequest::new(Identity::new(IDENTITY).unwrap(), CertKind::Service)
        .with_san(San::parse("bookstore-v2.bookstore.svc").unwrap())
        .with_san(San::parse("10.96.14.7").unwrap())
        .with_san(San::parse(SPIFFE).unwrap())
}

fn settings() -> CertManagerSettings {
    CertManagerSettings::new("mesh-system", IssuerReference::cluster_issuer("mesh-ca"))
}

/// Builds the object for `request` with a fresh key; returns it and its CSR PEM.
fn build(request: &CertificateRequest) -> (v1::CertificateRequest, String) {
    let (key, _) = keys::generate(request.key_type).unwrap();
    let csr = certificate_signing_request(request, &key).unwrap();
    (build_request(request, &csr, &settings()), csr)
}

#[test]
fn service_request_object_as_json() {
    let request = service_request();
    let (object, csr) = build(&request);
    let json = serde_json::to_value(&object).unwrap();

    assert_eq!(json["apiVersion"], "cert-manager.io/v1");
    assert_eq!(json["kind"], "CertificateRequest");
    let meta = &json["metadata"];
    assert_eq!(
        meta["generateName"],
        "anchorage-bookstore-v2-bookstore-cluster-local-"
    );
    assert!(meta.get("name").is_none(), "{meta}");
    assert_eq!(meta["namespace"], "mesh-system");
    assert_eq!(meta["labels"][MANAGED_BY_LABEL], "anchorage");
    assert_eq!(meta["labels"][KIND_LABEL], "service");
    assert_eq!(meta["annotations"][IDENTITY_ANNOTATION], IDENTITY);

    let spec = &json["spec"];
    assert_eq!(
        spec["issuerRef"],
        json!({"name": "mesh-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert_eq!(
        spec["usages"],
        json!(["digital signature", "server auth", "client auth"])
    );
    assert_eq!(spec["duration"], "24h0m0s");
    assert_eq!(spec["isCA"], false);
    // Nothing the webhook fills in, no status.
    for absent in ["username", "uid", "groups", "extra"] {
        assert!(spec.get(absent).is_none(), "{absent} in {spec}");
    }
    assert!(json.get("status").is_none() || json["status"].is_null());
    // Exactly these spec fields, camelCase as cert-manager spells them.
    let mut keys: Vec<&str> = spec
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["duration", "isCA", "issuerRef", "request", "usages"]);

    // spec.request is base64 of the PEM, and reads back through the typed object.
    let back: v1::CertificateRequest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, object);
    assert_eq!(std::str::from_utf8(&back.spec.request.0).unwrap(), csr);
    assert!(
        spec["request"]
            .as_str()
            .unwrap()
            .starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNU")
    );
}

#[test]
fn service_request_object_as_yaml() {
    let (object, _) = build(&service_request());
    let yaml = serde_yaml_ng::to_string(&object).unwrap();
    assert!(
        yaml.starts_with("apiVersion: cert-manager.io/v1\nkind: CertificateRequest\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains(
            "  issuerRef:\n    name: mesh-ca\n    kind: ClusterIssuer\n    group: cert-manager.io\n"
        ),
        "{yaml}"
    );
    assert!(
        yaml.contains("  usages:\n  - digital signature\n  - server auth\n  - client auth\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  duration: 24h0m0s\n"), "{yaml}");
    let back: v1::CertificateRequest = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(back, object);
}

#[test]
fn csr_carries_the_identity_and_every_san() {
    let request = service_request();
    let (object, csr) = build(&request);
    let pem = std::str::from_utf8(&object.spec.request.0).unwrap();
    assert_eq!(pem, csr);

    // rcgen parses and verifies the self-signature.
    let parsed = CertificateSigningRequestParams::from_pem(pem).unwrap();
    let cn = parsed
        .params
        .distinguished_name
        .get(&rcgen::DnType::CommonName)
        .unwrap();
    assert_eq!(cn, &rcgen::DnValue::Utf8String(IDENTITY.to_owned()));
    let sans: Vec<String> = parsed
        .params
        .subject_alt_names
        .iter()
        .map(|san| match san {
            SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
            SanType::IpAddress(ip) => format!("IP:{ip}"),
            SanType::URI(u) => format!("URI:{}", u.as_str()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            format!("DNS:{IDENTITY}"),
            "DNS:bookstore-v2.bookstore.svc".to_owned(),
            "IP:10.96.14.7".to_owned(),
            format!("URI:{SPIFFE}"),
        ]
    );

    // x509-parser: the only requested extension is the SAN, so cert-manager takes key usage
    // and basic constraints from spec.usages and spec.isCA without a mismatch.
    let der = pem_body(pem);
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    csr.verify_signature().unwrap();
    let extensions: Vec<String> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .map(|e| {
            format!("{e:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(extensions, ["SubjectAlternativeName"]);
}

#[test]
fn openssl_verifies_the_csr() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let (object, _) = build(&service_request());
    let mut child = Command::new(openssl)
        .args(["req", "-verify", "-noout", "-text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&object.spec.request.0)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // OpenSSL 3 says "Certificate request self-signature verify OK", 1.1 "verify OK".
    assert!(
        format!("{stdout}{stderr}").contains("verify OK"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("Subject: CN = {IDENTITY}")),
        "{stdout}"
    );
    for san in [
        format!("DNS:{IDENTITY}"),
        "DNS:bookstore-v2.bookstore.svc".to_owned(),
        "IP Address:10.96.14.7".to_owned(),
        format!("URI:{SPIFFE}"),
    ] {
        assert!(stdout.contains(&san), "{san} missing:\n{stdout}");
    }
    assert!(!stdout.contains("Key Usage"), "{stdout}");
}

#[test]
fn every_key_type_makes_a_valid_csr_and_its_usages() {
    for key_type in [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ] {
        let request = service_request().with_key_type(key_type);
        let (object, _) = build(&request);
        let pem = std::str::from_utf8(&object.spec.request.0).unwrap();
        CertificateSigningRequestParams::from_pem(pem)
            .unwrap_or_else(|e| panic!("{key_type}: {e}"));
        let expected: &[KeyUsage] = if key_type.is_rsa() {
            &[
                KeyUsage::DigitalSignature,
                KeyUsage::KeyEncipherment,
                KeyUsage::ServerAuth,
                KeyUsage::ClientAuth,
            ]
        } else {
            &[
                KeyUsage::DigitalSignature,
                KeyUsage::ServerAuth,
                KeyUsage::ClientAuth,
            ]
        };
        assert_eq!(object.spec.usages, expected, "{key_type}");
    }
}

#[test]
fn webhook_and_client_kinds() {
    let webhook = CertificateRequest::new(
        Identity::new("anchorage-webhook.mesh-system.svc").unwrap(),
        CertKind::Webhook,
    );
    let (object, _) = build(&webhook);
    let json = serde_json::to_value(&object).unwrap();
    assert_eq!(json["spec"]["duration"], "87600h0m0s");
    assert_eq!(
        json["spec"]["usages"],
        json!(["digital signature", "server auth"])
    );
    assert_eq!(json["metadata"]["labels"][KIND_LABEL], "webhook");

    // A non-DNS identity: CN only, no DNS SAN; a name that is still a valid prefix.
    let client =
        CertificateRequest::new(Identity::new("Audit Reader #7").unwrap(), CertKind::Client)
            .with_lifetime(Duration::from_secs(90 * 60));
    let (object, _) = build(&client);
    let json = serde_json::to_value(&object).unwrap();
    assert_eq!(json["spec"]["duration"], "1h30m0s");
    assert_eq!(
        json["spec"]["usages"],
        json!(["digital signature", "client auth"])
    );
    assert_eq!(
        json["metadata"]["generateName"],
        "anchorage-audit-reader-7-"
    );
    assert_eq!(
        json["metadata"]["annotations"][IDENTITY_ANNOTATION],
        "Audit Reader #7"
    );
    let parsed = CertificateSigningRequestParams::from_pem(
        std::str::from_utf8(&object.spec.request.0).unwrap(),
    )
    .unwrap();
    assert!(parsed.params.subject_alt_names.is_empty());
}

#[test]
fn issuer_references() {
    let external =
        IssuerReference::external("mesh-pca", "AWSPCAClusterIssuer", "awspca.cert-manager.io");
    assert_eq!(
        external.to_string(),
        "AWSPCAClusterIssuer.awspca.cert-manager.io/mesh-pca"
    );
    assert_eq!(
        IssuerReference::issuer("ca").to_string(),
        "Issuer.cert-manager.io/ca"
    );
    // cert-manager's defaults when kind and group are left out.
    let bare: IssuerReference = serde_json::from_value(json!({"name": "ca"})).unwrap();
    assert_eq!(bare.to_string(), "Issuer.cert-manager.io/ca");
    assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"name": "ca"}));
}

#[test]
fn ip_and_uri_sans_keep_their_types() {
    let request = CertificateRequest::new(Identity::new("Node 9").unwrap(), CertKind::Server)
        .with_san(San::Ip("fd00::9".parse::<IpAddr>().unwrap()))
        .with_san(San::Uri("https://example.com/x".to_owned()));
    let (object, _) = build(&request);
    let parsed = CertificateSigningRequestParams::from_pem(
        std::str::from_utf8(&object.spec.request.0).unwrap(),
    )
    .unwrap();
    assert_eq!(parsed.params.subject_alt_names.len(), 2);
    assert!(matches!(
        parsed.params.subject_alt_names[0],
        SanType::IpAddress(_)
    ));
    assert!(matches!(
        parsed.params.subject_alt_names[1],
        SanType::URI(_)
    ));
    assert_eq!(
        serde_json::to_value(&object).unwrap()["metadata"]["generateName"],
        "anchorage-node-9-"
    );
}

/// The DER inside one PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(block.label, "CERTIFICATE REQUEST");
    block.contents
}

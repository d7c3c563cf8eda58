//! Statuses read from recorded `CertificateRequest` payloads (`tests/fixtures/*.json`, see the
//! README there): issued, denied, failed, invalid, pending.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::time::Duration;

use anchorage_ca::{
    CertKind, CertificateRequest, Identity, IssueError, IssuerId, KeyType, PrivateKey, keys,
};
use anchorage_ca_cert_manager::v1::{self, condition};
use anchorage_ca_cert_manager::{Issued, Progress, read_status};
use anchorage_test_support::pki::{self, Issued as TestCa};
use anchorage_x509::Certificate;
use k8s_openapi::ByteString;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::Value;
use time::OffsetDateTime;

const IDENTITY: &str = "bookstore-v2.bookstore.cluster.local";
const NAME: &str = "mesh-system/anchorage-bookstore-v2-bookstore-cluster-local-";

fn request() -> CertificateRequest {
    CertificateRequest::new(Identity::new(IDENTITY).unwrap(), CertKind::Service)
}

fn fixture_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> v1::CertificateRequest {
    serde_json::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `ready.json` with the placeholders replaced by base64 of these PEMs.
fn ready_with(certificate_pem: &str, ca_pem: &str) -> v1::CertificateRequest {
    let b64 = |pem: &str| {
        let bytes = serde_json::to_value(ByteString(pem.as_bytes().to_vec())).unwrap();
        bytes.as_str().unwrap().to_owned()
    };
    let text = fixture_text("ready.json")
        .replace("@@CERTIFICATE@@", &b64(certificate_pem))
        .replace("@@CA@@", &b64(ca_pem));
    serde_json::from_str(&text).unwrap()
}

/// A leaf for `IDENTITY` valid for `life` from now, with a fresh P-256 key, signed by `ca`.
fn leaf(ca: &TestCa, life: Duration) -> (String, KeyPair, PrivateKey) {
    let (key, private) = keys::generate(KeyType::P256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, IDENTITY);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(IDENTITY.try_into().unwrap())];
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + life;
    let cert = params.signed_by(&key, &ca.issuer()).unwrap();
    (cert.pem(), key, private)
}

fn cert(pem: &str) -> Certificate {
    let decoded = anchorage_x509::decode(pem.as_bytes());
    decoded.certificates.into_iter().next().unwrap().certificate
}

fn issued(progress: Progress) -> Issued {
    match progress {
        Progress::Issued(issued) => *issued,
        other => panic!("expected issued, got {other}"),
    }
}

fn refusal(result: Result<Progress, IssueError>) -> String {
    match result {
        Err(IssueError::Refused {
            backend,
            identity,
            reason,
        }) => {
            assert_eq!(backend, "cert-manager");
            assert_eq!(identity.as_str(), IDENTITY);
            reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn backend_error(result: Result<Progress, IssueError>) -> String {
    match result {
        Err(IssueError::Backend { backend, message }) => {
            assert_eq!(backend, "cert-manager");
            message
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[test]
fn every_fixture_is_cert_managers_shape() {
    // Typed and back, nothing is lost or renamed: the field names are cert-manager's.
    for name in [
        "ready.json",
        "denied.json",
        "failed.json",
        "invalid-request.json",
        "pending-approved.json",
        "pending-ca-secret-missing.json",
    ] {
        let text = fixture_text(name)
            .replace("@@CERTIFICATE@@", "")
            .replace("@@CA@@", "");
        let mut recorded: Value = serde_json::from_str(&text).unwrap();
        let object: v1::CertificateRequest = serde_json::from_value(recorded.clone()).unwrap();
        // Go leaves a false isCA out; we always say it.
        recorded["spec"]
            .as_object_mut()
            .unwrap()
            .entry("isCA")
            .or_insert(Value::Bool(false));
        if name == "ready.json" {
            // Empty byte fields come back as "" too.
            assert_eq!(
                object.status.as_ref().unwrap().ca,
                Some(ByteString(Vec::new()))
            );
        }
        assert_eq!(serde_json::to_value(&object).unwrap(), recorded, "{name}");
        assert_eq!(
            std::str::from_utf8(&object.spec.request.0)
                .unwrap()
                .lines()
                .next(),
            Some("-----BEGIN CERTIFICATE REQUEST-----"),
            "{name}"
        );
    }
}

#[test]
fn ready_with_an_intermediate() {
    let root = pki::root_ca("Mesh Root");
    let intermediate = pki::intermediate_ca("Mesh Intermediate", &root);
    let (leaf_pem, key, private) = leaf(&intermediate, Duration::from_secs(86_400));
    let object = ready_with(&format!("{leaf_pem}{}", intermediate.pem), &root.pem);

    let got = issued(read_status(&object, &request()).unwrap());
    assert_eq!(got.certificate.der(), cert(&leaf_pem).der());
    assert_eq!(got.chain.len(), 1);
    assert_eq!(got.chain[0].der(), intermediate.der.as_slice());
    assert_eq!(got.roots.len(), 1);
    assert_eq!(got.roots[0].der(), root.der.as_slice());
    assert_eq!(got.issuer, IssuerId::of(&cert(&intermediate.pem)));
    assert!(!got.lifetime_clamped);
    assert!(got.matches_key(&key));
    let (other, _) = keys::generate(KeyType::P256).unwrap();
    assert!(!got.matches_key(&other));

    let out = got.into_issued_certificate(private);
    assert_eq!(out.validating_roots.len(), 1);
    assert!(out.private_key.is_some());
    assert_eq!(
        out.chain_pem(),
        format!(
            "{}{}",
            cert(&leaf_pem).to_pem(),
            cert(&intermediate.pem).to_pem()
        )
    );
}

#[test]
fn ready_signed_by_the_root_and_clamped() {
    let root = pki::root_ca("Mesh Root");
    // Asked for 24 h, got 1 h: the issuer cut it.
    let (leaf_pem, _, _) = leaf(&root, Duration::from_secs(3_600));
    let got = issued(read_status(&ready_with(&leaf_pem, &root.pem), &request()).unwrap());
    assert!(got.chain.is_empty());
    assert_eq!(got.issuer, IssuerId::of(&cert(&root.pem)));
    assert!(got.lifetime_clamped);
}

#[test]
fn root_at_the_end_of_the_chain_and_no_ca() {
    let root = pki::root_ca("Mesh Root");
    let intermediate = pki::intermediate_ca("Mesh Intermediate", &root);
    let (leaf_pem, _, _) = leaf(&intermediate, Duration::from_secs(86_400));
    // Some issuers (Vault) put the root in the chain and leave status.ca empty.
    let object = ready_with(&format!("{leaf_pem}{}{}", intermediate.pem, root.pem), "");
    let got = issued(read_status(&object, &request()).unwrap());
    assert_eq!(got.chain.len(), 1);
    assert_eq!(got.roots.len(), 1);
    assert_eq!(got.roots[0].der(), root.der.as_slice());

    // The root in both places is listed once, as a root.
    let object = ready_with(
        &format!("{leaf_pem}{}{}", intermediate.pem, root.pem),
        &root.pem,
    );
    let got = issued(read_status(&object, &request()).unwrap());
    assert_eq!(got.chain.len(), 1);
    assert_eq!(got.roots.len(), 1);
}

#[test]
fn ready_without_any_ca_is_an_error() {
    let root = pki::root_ca("Mesh Root");
    let (leaf_pem, _, _) = leaf(&root, Duration::from_secs(86_400));
    let message = backend_error(read_status(&ready_with(&leaf_pem, ""), &request()));
    assert_eq!(
        message,
        format!(
            "CertificateRequest {NAME}x7k2p holds no CA certificate: status.ca is empty (issuers \
             set it on a best-effort basis) and status.certificate has no issuer certificate; use \
             an issuer that publishes its CA, such as the CA or Vault issuers"
        )
    );
}

#[test]
fn ready_with_a_ca_that_did_not_sign() {
    let root = pki::root_ca("Mesh Root");
    let impostor = pki::root_ca("Mesh Root"); // same name, other key
    let (leaf_pem, _, _) = leaf(&root, Duration::from_secs(86_400));
    let message = backend_error(read_status(
        &ready_with(&leaf_pem, &impostor.pem),
        &request(),
    ));
    assert_eq!(
        message,
        format!(
            "the certificate in CertificateRequest {NAME}x7k2p (CN={IDENTITY}) is not signed by \
             any certificate in status.certificate or status.ca (issuer CN=Mesh Root, O=Anchorage \
             Test)"
        )
    );
}

#[test]
fn ready_with_garbage_or_nothing() {
    let root = pki::root_ca("Mesh Root");
    let message = backend_error(read_status(
        &ready_with(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &root.pem,
        ),
        &request(),
    ));
    // Ours up to the decoder's own words (the x509 crate's, not pinned here).
    let ours =
        format!("status.certificate of CertificateRequest {NAME}x7k2p does not decode at line 1: ");
    assert!(message.starts_with(&ours), "{message}");

    let message = backend_error(read_status(&ready_with("", &root.pem), &request()));
    assert_eq!(
        message,
        format!(
            "CertificateRequest {NAME}x7k2p is Ready but status.certificate holds no certificate"
        )
    );
}

#[test]
fn denied_by_an_approver() {
    let reason = refusal(read_status(&fixture("denied.json"), &request()));
    assert_eq!(
        reason,
        format!(
            "CertificateRequest {NAME}m4q9d was denied (policy.cert-manager.io): No policy approved \
             this request: [anchorage-mesh: spec.allowed.uris.values: Invalid value: \
             []string{{\"spiffe://cluster.local/ns/bookstore/sa/bookstore-v2\"}}: \
             spiffe://cluster.local/ns/mesh-system/*]"
        )
    );
    let shown = IssueError::Refused {
        backend: "cert-manager",
        identity: Identity::new(IDENTITY).unwrap(),
        reason,
    }
    .to_string();
    assert_eq!(
        shown,
        format!(
            "the cert-manager issuer refused {IDENTITY}: CertificateRequest {NAME}m4q9d was denied \
             (policy.cert-manager.io): No policy approved this request: [anchorage-mesh: \
             spec.allowed.uris.values: Invalid value: \
             []string{{\"spiffe://cluster.local/ns/bookstore/sa/bookstore-v2\"}}: \
             spiffe://cluster.local/ns/mesh-system/*]"
        )
    );

    // Only the Ready condition says so (issuer-lib after an approver's Denied was removed).
    let mut object = fixture("denied.json");
    let status = object.status.as_mut().unwrap();
    status.conditions.retain(|c| c.type_ == condition::READY);
    let reason = refusal(read_status(&object, &request()));
    assert_eq!(
        reason,
        format!(
            "CertificateRequest {NAME}m4q9d was denied: The CertificateRequest was denied by an \
             approval controller"
        )
    );
}

#[test]
fn failed_in_the_issuer() {
    let reason = refusal(read_status(&fixture("failed.json"), &request()));
    assert_eq!(
        reason,
        format!(
            "CertificateRequest {NAME}h8w3n failed: Error generating certificate template: x509: ECDSA verification failure"
        )
    );
}

#[test]
fn invalid_request() {
    let reason = refusal(read_status(&fixture("invalid-request.json"), &request()));
    let invalid = format!(
        "CertificateRequest {NAME}r6t1z was found invalid by the issuer (Failed): URI SAN \
         spiffe://cluster.local/ns/bookstore/sa/bookstore-v2 is not allowed by this issuer's \
         template"
    );
    assert_eq!(reason, invalid);

    // The InvalidRequest condition alone is enough to stop waiting.
    let mut object = fixture("invalid-request.json");
    let status = object.status.as_mut().unwrap();
    status
        .conditions
        .retain(|c| c.type_ == condition::INVALID_REQUEST);
    status.failure_time = None;
    let reason = refusal(read_status(&object, &request()));
    assert_eq!(reason, invalid);
}

#[test]
fn failure_time_alone_is_a_failure() {
    let mut object = fixture("failed.json");
    object.status.as_mut().unwrap().conditions.clear();
    let reason = refusal(read_status(&object, &request()));
    assert!(
        reason.contains("failed at 2026-03-02T09:14:08Z"),
        "{reason}"
    );
}

#[test]
fn pending_states() {
    match read_status(&fixture("pending-approved.json"), &request()).unwrap() {
        Progress::Pending { reason, message } => {
            assert_eq!((reason, message), (None, None));
        }
        other => panic!("{other}"),
    }
    let progress = read_status(&fixture("pending-ca-secret-missing.json"), &request()).unwrap();
    assert_eq!(
        progress.to_string(),
        r#"pending (Pending: Referenced secret cert-manager/mesh-ca-root not found: secret "mesh-ca-root" not found)"#
    );

    // Just created: no status at all.
    let mut object = fixture("pending-approved.json");
    object.status = None;
    assert!(matches!(
        read_status(&object, &request()).unwrap(),
        Progress::Pending { .. }
    ));

    // issuer-lib's first word: Ready=Unknown, Initializing.
    let mut object = fixture("pending-approved.json");
    object
        .status
        .as_mut()
        .unwrap()
        .conditions
        .push(v1::CertificateRequestCondition {
            type_: condition::READY.to_owned(),
            status: "Unknown".to_owned(),
            reason: Some("Initializing".to_owned()),
            message: Some(
                "awspca.cert-manager.io has started reconciling this CertificateRequest".to_owned(),
            ),
            last_transition_time: None,
        });
    assert!(matches!(
        read_status(&object, &request()).unwrap(),
        Progress::Pending { .. }
    ));
}

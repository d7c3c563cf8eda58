//! Unit tests of the built-in CA: extensions, validity rules, webpki verification, imports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::{Certificate, SubjectAltName, Timestamp};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use secrecy::ExposeSecret as _;

use super::*;
use crate::request::{Identity, SpiffeId};
use crate::{IssuedCertificate, ManualClock};

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> Timestamp {
    now_timestamp()
}

fn with_intermediate() -> InitOptions {
    InitOptions {
        intermediate: Some(IntermediateOptions::default()),
        ..InitOptions::default()
    }
}

fn request(name: &str, kind: CertKind) -> CertificateRequest {
    CertificateRequest::new(Identity::new(name).unwrap(), kind)
}

fn service_request() -> CertificateRequest {
    request("bookstore-v2.bookstore.cluster.local", CertKind::Service)
        .with_san(San::parse("10.0.0.7").unwrap())
        .with_san(San::spiffe(
            &SpiffeId::workload("cluster.local", "bookstore", "bookstore-v2").unwrap(),
        ))
}

fn unix_time(ts: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(ts.unix()).unwrap()))
}

fn roots_of(certs: &[Certificate]) -> Arc<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs {
        store
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap();
    }
    Arc::new(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// webpki's verdict on `issued` as a server certificate for `name`, trusting `roots`.
fn webpki_server(
    issued: &IssuedCertificate,
    roots: &[Certificate],
    name: &str,
    at: Timestamp,
) -> Result<(), rustls::Error> {
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots_of(roots), provider())
            .build()
            .unwrap();
    let chain: Vec<CertificateDer<'static>> = issued
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    verifier
        .verify_server_cert(
            &CertificateDer::from(issued.certificate.der().to_vec()),
            &chain,
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            unix_time(at),
        )
        .map(|_| ())
}

/// webpki's verdict on `issued` as a client certificate.
fn webpki_client(
    issued: &IssuedCertificate,
    roots: &[Certificate],
    at: Timestamp,
) -> Result<(), rustls::Error> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots_of(roots), provider())
            .build()
            .unwrap();
    let chain: Vec<CertificateDer<'static>> = issued
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    verifier
        .verify_client_cert(
            &CertificateDer::from(issued.certificate.der().to_vec()),
            &chain,
            unix_time(at),
        )
        .map(|_| ())
}

#[test]
fn root_has_ca_extensions_and_backdated_validity() {
    let at = Timestamp::from_unix(1_800_000_000);
    let ca = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let root = ca.root();
    assert_eq!(root.subject(), "CN=Anchorage Root CA");
    assert!(root.is_self_signed());
    assert_eq!(
        root.basic_constraints(),
        Some(anchorage_x509::BasicConstraints {
            ca: true,
            path_len: None
        })
    );
    assert_eq!(
        root.key_usage().unwrap().names(),
        ["keyCertSign", "cRLSign"]
    );
    assert!(root.subject_key_id().is_some());
    assert_eq!(root.not_before().unix(), at.unix() - 300);
    assert_eq!(root.not_after().unix(), at.unix() + 10 * 365 * 86_400);
    assert_eq!(ca.signing_certificate(), root);
    assert!(ca.chain().is_empty() && ca.root_key().is_none());
    assert_eq!(ca.signing_key().key_type(), Some(KeyType::P256));
    assert_eq!(ca.roots(), std::slice::from_ref(root));
}

#[test]
fn bad_init_options_are_refused() {
    for options in [
        InitOptions {
            common_name: String::new(),
            ..InitOptions::default()
        },
        InitOptions {
            organization: Some("x".repeat(65)),
            ..InitOptions::default()
        },
        InitOptions {
            lifetime: Duration::from_secs(60),
            ..InitOptions::default()
        },
        InitOptions {
            intermediate: Some(IntermediateOptions {
                common_name: "bad\nname".to_owned(),
                ..IntermediateOptions::default()
            }),
            ..InitOptions::default()
        },
    ] {
        assert!(
            matches!(
                BuiltinCa::init(&options),
                Err(CaError::InvalidOptions { .. })
            ),
            "{options:?}"
        );
    }
}

#[test]
fn intermediate_has_path_len_zero_and_points_at_the_root() {
    let at = Timestamp::from_unix(1_800_000_000);
    let options = InitOptions {
        organization: Some("Shop".to_owned()),
        lifetime: 2 * 365 * DAY,
        ..with_intermediate()
    };
    let ca = BuiltinCa::init_at(&options, at).unwrap();
    let int = ca.signing_certificate();
    assert_eq!(ca.chain(), std::slice::from_ref(int));
    assert_eq!(int.subject(), "O=Shop, CN=Anchorage Intermediate CA");
    assert_eq!(int.basic_constraints().unwrap().path_len, Some(0));
    assert_eq!(int.authority_key_id(), ca.root().subject_key_id());
    assert!(issued_by(int, ca.root()));
    // Five years asked, the root has two: the intermediate ends with the root.
    assert_eq!(int.not_after(), ca.root().not_after());
    assert!(ca.root_key().is_some());
}

fn check_leaf(issued: &IssuedCertificate, ca: &BuiltinCa, req: &CertificateRequest, at: Timestamp) {
    let leaf = &issued.certificate;
    assert_eq!(leaf.subject(), format!("CN={}", req.identity));
    assert_eq!(
        leaf.basic_constraints(),
        Some(anchorage_x509::BasicConstraints {
            ca: false,
            path_len: None
        })
    );
    let mut usages = vec!["digitalSignature"];
    if req.key_type.is_rsa() {
        usages.push("keyEncipherment");
    }
    assert_eq!(leaf.key_usage().unwrap().names(), usages);
    assert_eq!(leaf.extended_key_usage(), req.kind.extended_key_usages());
    assert!(leaf.subject_key_id().is_some());
    assert_eq!(
        leaf.authority_key_id(),
        ca.signing_certificate().subject_key_id()
    );
    assert_eq!(leaf.issuer_der(), ca.signing_certificate().subject_der());
    assert_eq!(leaf.not_before().unix(), at.unix() - 300);
    assert_eq!(
        leaf.not_after().unix(),
        at.unix() + i64::try_from(req.lifetime.as_secs()).unwrap()
    );
    // 16-byte positive serial (hex, 32 digits, top bit clear).
    let serial = leaf.serial().replace(':', "");
    assert_eq!(serial.len(), 32, "{serial}");
    assert!(u8::from_str_radix(&serial[..2], 16).unwrap() < 0x80);
    assert_eq!(issued.issuer, ca.id());
    assert_eq!(issued.chain, ca.chain());
    assert_eq!(issued.validating_roots, ca.roots());
    assert!(!issued.lifetime_clamped);
    let key = issued.private_key.as_ref().unwrap();
    assert_eq!(key.key_type(), Some(req.key_type));
    let (kp, _) = keys::load(key.pkcs8_der()).unwrap();
    assert!(keys::matches_certificate(&kp, leaf.der()));
}

#[test]
fn leaves_of_every_kind_verify_with_webpki() {
    let at = now();
    for options in [InitOptions::default(), with_intermediate()] {
        let ca = BuiltinCa::init_at(&options, at).unwrap();
        for kind in CertKind::ALL {
            let req = request("web.shop.svc.cluster.local", kind)
                .with_san(San::parse("127.0.0.1").unwrap())
                .with_lifetime(DAY);
            let issued = ca.issue_at(&req, at).unwrap();
            check_leaf(&issued, &ca, &req, at);
            let as_server = webpki_server(&issued, ca.roots(), "web.shop.svc.cluster.local", at);
            let by_ip = webpki_server(&issued, ca.roots(), "127.0.0.1", at);
            let as_client = webpki_client(&issued, ca.roots(), at);
            assert_eq!(
                as_server.is_ok(),
                kind.server_auth(),
                "{kind}: {as_server:?}"
            );
            assert_eq!(by_ip.is_ok(), kind.server_auth(), "{kind}: {by_ip:?}");
            assert_eq!(
                as_client.is_ok(),
                kind.client_auth(),
                "{kind}: {as_client:?}"
            );
            // A name not in the SANs is refused.
            assert!(webpki_server(&issued, ca.roots(), "other.example", at).is_err());
        }
    }
}

#[test]
fn every_ca_and_leaf_key_type_verifies_with_webpki() {
    let at = now();
    // RSA-4096 is left to keys.rs (slow to generate in debug builds); RSA-2048 stands for RSA.
    let types = [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ];
    for ca_type in types {
        let ca = BuiltinCa::init_at(
            &InitOptions {
                key_type: ca_type,
                ..with_intermediate()
            },
            at,
        )
        .unwrap();
        let leaf_types: &[KeyType] = if ca_type == KeyType::P256 {
            &types
        } else {
            &[KeyType::P256]
        };
        for &leaf_type in leaf_types {
            let req = service_request().with_key_type(leaf_type);
            let issued = ca.issue_at(&req, at).unwrap();
            check_leaf(&issued, &ca, &req, at);
            webpki_server(
                &issued,
                ca.roots(),
                "bookstore-v2.bookstore.cluster.local",
                at,
            )
            .unwrap_or_else(|e| panic!("{ca_type} CA, {leaf_type} leaf: {e}"));
            webpki_client(&issued, ca.roots(), at).unwrap();
        }
    }
}

#[test]
fn sans_hold_the_identity_ip_and_spiffe_id() {
    let at = now();
    let ca = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let issued = ca.issue_at(&service_request(), at).unwrap();
    let sans = issued.certificate.subject_alt_names();
    assert_eq!(
        sans,
        [
            SubjectAltName::Dns("bookstore-v2.bookstore.cluster.local".into()),
            SubjectAltName::Ip("10.0.0.7".parse().unwrap()),
            SubjectAltName::Uri("spiffe://cluster.local/ns/bookstore/sa/bookstore-v2".into()),
        ]
    );
}

#[test]
fn a_leaf_from_another_ca_is_refused() {
    let at = now();
    let ours = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let theirs = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let issued = theirs.issue_at(&service_request(), at).unwrap();
    let name = "bookstore-v2.bookstore.cluster.local";
    assert!(webpki_server(&issued, ours.roots(), name, at).is_err());
    assert!(webpki_client(&issued, ours.roots(), at).is_err());
    // And an expired leaf is refused by webpki too.
    assert!(webpki_server(&issued, theirs.roots(), name, add(at, 2 * DAY)).is_err());
}

#[test]
fn lifetime_is_clamped_to_the_ca_or_refused() {
    let at = Timestamp::from_unix(1_800_000_000);
    let ca = BuiltinCa::init_at(
        &InitOptions {
            lifetime: 10 * DAY,
            ..InitOptions::default()
        },
        at,
    )
    .unwrap();
    let webhook = request("hook.shop.svc", CertKind::Webhook); // ten years by default
    let issued = ca.issue_at(&webhook, at).unwrap();
    assert!(issued.lifetime_clamped);
    assert_eq!(issued.not_after(), ca.root().not_after());

    let strict = ca.clone().with_lifetime_policy(LifetimePolicy::Refuse);
    match strict.issue_at(&webhook, at) {
        Err(IssueError::LifetimeExceedsCa {
            identity,
            requested,
            available,
            ca_not_after,
        }) => {
            assert_eq!(identity.as_str(), "hook.shop.svc");
            assert_eq!(requested, CertKind::Webhook.default_lifetime());
            assert_eq!(available, 10 * DAY);
            assert_eq!(ca_not_after, ca.root().not_after());
        }
        other => panic!("{other:?}"),
    }
    // Within the CA's life, Refuse issues normally.
    let short = request("hook.shop.svc", CertKind::Webhook).with_lifetime(DAY);
    assert!(!strict.issue_at(&short, at).unwrap().lifetime_clamped);
}

#[test]
fn not_before_never_precedes_the_ca() {
    let at = Timestamp::from_unix(1_800_000_000);
    let ca = BuiltinCa::init_at(&with_intermediate(), at).unwrap();
    let just_after = Timestamp::from_unix(at.unix() - 299);
    let issued = ca.issue_at(&service_request(), just_after).unwrap();
    assert_eq!(issued.not_before(), ca.signing_certificate().not_before());
}

#[test]
fn a_ca_outside_its_validity_does_not_issue() {
    let at = Timestamp::from_unix(1_800_000_000);
    let ca = BuiltinCa::init_at(
        &InitOptions {
            lifetime: DAY,
            ..InitOptions::default()
        },
        at,
    )
    .unwrap();
    for when in [Timestamp::from_unix(at.unix() - 3_600), add(at, 2 * DAY)] {
        match ca.issue_at(&service_request(), when) {
            Err(IssueError::CaNotValid {
                subject,
                not_before,
                not_after,
            }) => {
                assert_eq!(subject, "CN=Anchorage Root CA");
                assert_eq!(
                    (not_before, not_after),
                    (ca.root().not_before(), ca.root().not_after())
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn invalid_requests_are_refused_before_signing() {
    let ca = BuiltinCa::init(&InitOptions::default()).unwrap();
    let mut req = service_request();
    req.sans.push(San::Dns("bad name".to_owned()));
    assert!(matches!(
        ca.issue_at(&req, now()),
        Err(IssueError::Request(_))
    ));
}

#[tokio::test]
async fn the_issuer_trait_reads_the_injected_clock() {
    let at = Timestamp::from_unix(1_800_000_000);
    let ca = BuiltinCa::init_at(&with_intermediate(), at)
        .unwrap()
        .with_clock(Arc::new(ManualClock::at_unix(at.unix() + 3_600)));
    assert_eq!(ca.backend(), "builtin");
    assert_eq!(ca.signing_ca(), Some(ca.id()));
    assert_eq!(Issuer::validating_roots(&ca), ca.roots());
    let issued = ca.issue(&service_request()).await.unwrap();
    assert_eq!(issued.not_before().unix(), at.unix() + 3_600 - 300);
    // An RSA request goes through the blocking pool and comes back the same way.
    let rsa = ca
        .issue(&service_request().with_key_type(KeyType::Rsa2048))
        .await
        .unwrap();
    assert_eq!(rsa.certificate.public_key().to_string(), "RSA-2048");
}

#[test]
fn debug_never_shows_keys() {
    let ca = BuiltinCa::init(&with_intermediate()).unwrap();
    let shown = format!("{ca:?} {:?}", ca.to_pem());
    let pem = ca.signing_key_pem();
    let body: String = pem.expose_secret().lines().nth(1).unwrap().to_owned();
    assert!(!shown.contains(&body[..20]), "{shown}");
    assert!(shown.contains("Anchorage Intermediate CA"), "{shown}");
}

// ---- import and export ----

fn pem_sources(pem: &CaPem) -> (Vec<String>, Vec<String>) {
    let mut certs = vec![pem.roots.clone()];
    certs.extend(pem.chain.clone());
    let mut keys = Vec::new();
    keys.extend(pem.root_key.as_ref().map(|k| k.expose_secret().to_owned()));
    keys.extend(
        pem.intermediate_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned()),
    );
    (certs, keys)
}

fn import<C: AsRef<str>, K: AsRef<str>>(
    certs: &[C],
    keys: &[K],
    at: Timestamp,
) -> Result<BuiltinCa, CaError> {
    let cert_sources: Vec<Source<'_>> = certs
        .iter()
        .map(|c| Source::new("ca.crt", c.as_ref().as_bytes()))
        .collect();
    let key_sources: Vec<Source<'_>> = keys
        .iter()
        .map(|k| Source::new("ca.key", k.as_ref().as_bytes()))
        .collect();
    BuiltinCa::from_pem(&cert_sources, &key_sources, at)
}

#[test]
fn pem_export_and_import_round_trip() {
    let at = now();
    for options in [InitOptions::default(), with_intermediate()] {
        let ca = BuiltinCa::init_at(&options, at).unwrap();
        let pem = ca.to_pem();
        let names: Vec<&str> = pem.files().iter().map(|(n, _)| *n).collect();
        if options.intermediate.is_some() {
            assert_eq!(
                names,
                ["ca.crt", "ca.key", "intermediate.crt", "intermediate.key"]
            );
        } else {
            assert_eq!(names, ["ca.crt", "ca.key"]);
        }
        let (certs, keys) = pem_sources(&pem);
        let back = import(&certs, &keys, at).unwrap();
        assert_eq!(back.id(), ca.id());
        assert_eq!(back.roots(), ca.roots());
        assert_eq!(back.chain(), ca.chain());
        assert_eq!(back.root_key().is_some(), ca.root_key().is_some());
        // Certificates given in the other order, and without the root key, work too.
        if let Some(chain) = &pem.chain {
            let int_key = pem
                .intermediate_key
                .as_ref()
                .unwrap()
                .expose_secret()
                .to_owned();
            let back = import(&[chain, &pem.roots], &[int_key], at).unwrap();
            assert_eq!(back.id(), ca.id());
            assert!(back.root_key().is_none());
            // Without the intermediate's key there is nothing to sign with.
            let root_key = pem.root_key.as_ref().unwrap().expose_secret().to_owned();
            assert!(matches!(
                import(&certs, &[root_key], at),
                Err(CaError::MissingKey { .. })
            ));
            // Without the root, the chain is incomplete.
            assert!(matches!(
                import(&[chain], &keys[1..], at),
                Err(CaError::BrokenChain { .. })
            ));
        }
        let issued = back.issue_at(&service_request(), at).unwrap();
        webpki_server(
            &issued,
            ca.roots(),
            "bookstore-v2.bookstore.cluster.local",
            at,
        )
        .unwrap();
    }
}

#[test]
fn fsm_secret_round_trip() {
    let at = now();
    let ca = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let data = ca.to_fsm_secret_data().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "expiration", "private.key"]
    );
    let expiration = String::from_utf8(data["expiration"].expose_secret().to_vec()).unwrap();
    assert!(
        expiration.ends_with(".000Z") && expiration.len() == 24,
        "{expiration}"
    );
    let plain: BTreeMap<String, Vec<u8>> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.expose_secret().to_vec()))
        .collect();
    let back = BuiltinCa::from_fsm_secret_data(&plain, at).unwrap();
    assert_eq!(back.id(), ca.id());

    // A CA with an intermediate does not fit the layout.
    let layered = BuiltinCa::init_at(&with_intermediate(), at).unwrap();
    assert!(matches!(
        layered.to_fsm_secret_data(),
        Err(CaError::Layout { .. })
    ));

    // kubernetes.io/tls layout, with and without an intermediate.
    for ca in [&ca, &layered] {
        let data: BTreeMap<String, Vec<u8>> = ca
            .to_tls_secret_data()
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_vec()))
            .collect();
        let back = BuiltinCa::from_tls_secret_data(&data, at).unwrap();
        assert_eq!(back.id(), ca.id());
    }

    let mut missing = plain;
    missing.remove("private.key");
    let err = BuiltinCa::from_fsm_secret_data(&missing, at).unwrap_err();
    assert!(
        err.to_string().contains("private.key") && err.to_string().contains("ca.crt"),
        "{err}"
    );
}

#[test]
fn imports_refuse_bad_material() {
    let at = now();
    let ca = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let other = BuiltinCa::init_at(&InitOptions::default(), at).unwrap();
    let root_pem = ca.root().to_pem();
    let key_pem = ca.signing_key_pem().expose_secret().to_owned();

    // A key that belongs to another CA.
    let wrong_key = other.signing_key_pem().expose_secret().to_owned();
    match import(&[&root_pem], &[wrong_key], at) {
        Err(CaError::KeyMismatch { origin, subjects }) => {
            assert_eq!(origin, "ca.key");
            assert_eq!(subjects, ["CN=Anchorage Root CA"]);
        }
        other => panic!("{other:?}"),
    }

    // A leaf is not a CA.
    let leaf = ca.issue_at(&service_request(), at).unwrap();
    let leaf_key = leaf
        .private_key
        .as_ref()
        .unwrap()
        .to_pkcs8_pem()
        .expose_secret()
        .to_owned();
    match import(&[leaf.certificate.to_pem()], &[leaf_key], at) {
        Err(CaError::NotACa { subject, .. }) => {
            assert_eq!(subject, "CN=bookstore-v2.bookstore.cluster.local");
        }
        other => panic!("{other:?}"),
    }

    // An expired CA, with its dates.
    let later = add(at, 11 * 365 * DAY);
    let err = import(&[&root_pem], &[&key_pem], later).unwrap_err();
    assert!(matches!(err, CaError::NotValidNow { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&ca.root().not_after().to_string()) && text.contains(&later.to_string()),
        "{text}"
    );

    // A corrupt key: the error names the source and shows no key material.
    let mut lines: Vec<String> = key_pem.lines().map(str::to_owned).collect();
    lines[1] = lines[1].chars().rev().collect();
    let corrupt = lines.join("\n");
    let err = import(&[&root_pem], &[&corrupt], at).unwrap_err();
    let shown = format!("{err} / {err:?} / {:?}", std::error::Error::source(&err));
    assert!(shown.contains("ca.key"), "{shown}");
    assert!(!shown.contains(&lines[1][..16]), "{shown}");

    // Not a certificate at all.
    assert!(matches!(
        import(&["hello"], &[&key_pem], at),
        Err(CaError::BadCertificate { .. } | CaError::NoCertificate { .. })
    ));
    // Two unrelated roots.
    assert!(matches!(
        import(&[root_pem, other.root().to_pem()], &[key_pem], at),
        Err(CaError::BrokenChain { .. })
    ));
}

#[test]
fn a_ca_made_by_openssl_style_names_keeps_its_issuer_bytes() {
    // A root whose subject uses PrintableString (as Go and OpenSSL write C=), made with rcgen.
    let (kp, key) = keys::generate(KeyType::P256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CountryName,
        rcgen::DnValue::PrintableString("US".try_into().unwrap()),
    );
    dn.push(DnType::OrganizationName, "Flomesh");
    dn.push(DnType::CommonName, "fsm-ca.flomesh.io");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&kp).unwrap();
    let root = Certificate::from_der(cert.der()).unwrap();
    let at = now();
    let ca = import(
        &[root.to_pem()],
        &[key.to_pkcs8_pem().expose_secret().to_owned()],
        at,
    )
    .unwrap();
    let issued = ca.issue_at(&service_request(), at).unwrap();
    assert_eq!(issued.certificate.issuer_der(), root.subject_der());
    webpki_server(
        &issued,
        ca.roots(),
        "bookstore-v2.bookstore.cluster.local",
        at,
    )
    .unwrap();
}

/// Issuance rate against raw P-256 key generation + signing, in one process. Run with
/// `cargo test --release -p anchorage-ca --lib issue_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: meaningful only in a release build"]
fn issue_throughput() {
    let at = now();
    let ca = BuiltinCa::init_at(&with_intermediate(), at).unwrap();
    let req = service_request();
    let n = 5_000;
    let raw_params = leaf_params(&req, at, add(at, DAY)).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..n {
        let (kp, _) = keys::generate(KeyType::P256).unwrap();
        std::hint::black_box(raw_params.signed_by(&kp, &ca.inner.signer.issuer).unwrap());
    }
    let raw = f64::from(n) / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(ca.issue_at(&req, at).unwrap());
    }
    let ours = f64::from(n) / start.elapsed().as_secs_f64();
    println!(
        "raw P-256 keygen+sign: {raw:.0}/s; BuiltinCa::issue_at: {ours:.0}/s ({:.0} %)",
        100.0 * ours / raw
    );
}

fn constrained(permitted: &[&str], intermediate: bool) -> BuiltinCa {
    BuiltinCa::init(&InitOptions {
        intermediate: intermediate.then(IntermediateOptions::default),
        permitted_names: permitted
            .iter()
            .map(|p| match p.split_once(':') {
                Some(("IP", net)) => NameSubtree::ip(net).unwrap(),
                Some(("URI", host)) => NameSubtree::uri(host).unwrap(),
                _ => NameSubtree::dns(p).unwrap(),
            })
            .collect(),
        ..InitOptions::default()
    })
    .unwrap()
}

/// Issue 19 item 13: `--permitted-dns cluster.local` puts a critical name constraints
/// extension on the root, and the CA refuses to sign names outside it (which every verifier
/// would refuse): another domain, and an IP address when no IP subtree is permitted.
#[test]
fn a_constrained_root_refuses_names_outside_its_constraints() {
    for intermediate in [false, true] {
        let ca = constrained(&["cluster.local"], intermediate);
        let nc = ca.root().name_constraints().expect("on the root");
        assert!(nc.critical);
        assert_eq!(
            nc.permitted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["DNS:cluster.local"]
        );
        assert_eq!(
            nc.excluded
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["IP:0.0.0.0/0", "IP:::/0"]
        );
        // Positive control.
        let ok = ca
            .issue_at(
                &request("web.bookstore.cluster.local", CertKind::Service),
                now(),
            )
            .unwrap();
        assert!(ok.certificate.name_constraints().is_none());
        webpki_server(&ok, ca.roots(), "web.bookstore.cluster.local", now())
            .expect("webpki accepts a name inside the constraints");
        // webpki refuses a leaf outside them, signed with the CA's key behind `issue`'s back.
        let forged_params = leaf_params(
            &request("www.bank.example", CertKind::Server),
            sub(now(), DAY),
            add(now(), DAY),
        )
        .unwrap();
        let forged_key = KeyPair::generate().unwrap();
        let forged = forged_params
            .signed_by(&forged_key, &ca.inner.signer.issuer)
            .unwrap();
        let forged = IssuedCertificate {
            certificate: Certificate::from_der(forged.der()).unwrap(),
            private_key: None,
            chain: ca.chain().to_vec(),
            validating_roots: ca.roots().to_vec(),
            issuer: ca.id(),
            lifetime_clamped: false,
        };
        let refused = webpki_server(&forged, ca.roots(), "www.bank.example", now()).unwrap_err();
        assert!(
            format!("{refused:?}").contains("NameConstraint"),
            "{refused:?}"
        );
        // The attack: names outside.
        for (cn, san) in [
            ("evil.example.com", None),
            ("web.cluster.local", Some("DNS:bank.example")),
            ("web.cluster.local", Some("IP:10.0.0.7")),
            (
                "web.cluster.local",
                Some("URI:spiffe://cluster.local/ns/a/sa/b"),
            ),
        ] {
            let mut req = request(cn, CertKind::Service);
            if let Some(san) = san {
                req = req.with_san(San::parse(san).unwrap());
            }
            let err = ca.issue_at(&req, now()).unwrap_err();
            let IssueError::NameNotPermitted {
                name,
                ca: subject,
                reason,
            } = &err
            else {
                panic!("{err:?}");
            };
            assert!(subject.contains("Anchorage Root CA"), "{subject}");
            assert!(
                reason.contains("DNS:cluster.local")
                    || reason.contains("IP:")
                    || reason.contains("no name of this type"),
                "{reason}"
            );
            let text = err.to_string();
            assert!(text.contains(name.as_str()), "{text}");
        }
    }
    // IP and URI subtrees permit those names.
    let ca = constrained(
        &["cluster.local", "IP:10.0.0.0/8", "URI:cluster.local"],
        false,
    );
    let req = request("web.cluster.local", CertKind::Service)
        .with_san(San::parse("10.0.0.7").unwrap())
        .with_san(San::parse("spiffe://cluster.local/ns/a/sa/b").unwrap());
    ca.issue_at(&req, now()).unwrap();
    let req = request("web.cluster.local", CertKind::Service)
        .with_san(San::parse("192.168.0.1").unwrap());
    assert!(matches!(
        ca.issue_at(&req, now()),
        Err(IssueError::NameNotPermitted { .. })
    ));
    // An unconstrained CA has no extension.
    assert!(
        BuiltinCa::init(&InitOptions::default())
            .unwrap()
            .root()
            .name_constraints()
            .is_none()
    );
}

/// Issue 19 item 13: `ca issue --cn '*.com'` succeeded; a wildcard over a public suffix is now
/// refused by any built-in CA, constrained or not.
#[test]
fn wildcards_over_public_suffixes_are_refused() {
    let ca = BuiltinCa::init(&InitOptions::default()).unwrap();
    for wildcard in ["*.com", "*.co.uk", "*.local", "*.github.io", "*.COM"] {
        let err = ca
            .issue_at(&request(wildcard, CertKind::Server), now())
            .unwrap_err();
        assert!(
            matches!(&err, IssueError::PublicSuffixWildcard { .. }),
            "{wildcard}: {err:?}"
        );
        assert!(err.to_string().contains("public suffix"), "{err}");
        // As a SAN too.
        let req = request("web.example.com", CertKind::Server)
            .with_san(San::parse(&format!("DNS:{wildcard}")).unwrap());
        assert!(matches!(
            ca.issue_at(&req, now()),
            Err(IssueError::PublicSuffixWildcard { .. })
        ));
    }
    // Negative control: wildcards below a registrable domain.
    for fine in [
        "*.example.com",
        "*.example.co.uk",
        "*.svc.cluster.local",
        "*.bookstore.local",
    ] {
        ca.issue_at(&request(fine, CertKind::Server), now())
            .unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
}

#[test]
fn a_cross_signed_certificate_keeps_subject_and_key_and_is_issued_by_the_other_root() {
    use x509_parser::prelude::FromDer as _;
    let a = BuiltinCa::init(&InitOptions {
        common_name: "Root A".into(),
        ..InitOptions::default()
    })
    .unwrap();
    let b = BuiltinCa::init(&InitOptions {
        common_name: "Root B".into(),
        ..with_intermediate()
    })
    .unwrap();
    let crossed = cross_sign(&a, b.signing_certificate(), b.signing_key()).unwrap();
    assert_eq!(crossed.subject(), b.signing_certificate().subject());
    assert_eq!(crossed.subject_der(), b.signing_certificate().subject_der());
    assert_eq!(crossed.issuer(), a.root().subject());
    assert!(crossed.is_ca());
    assert!(crossed.not_after() <= a.root().not_after());
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(crossed.der()).unwrap();
    let (_, orig) =
        x509_parser::certificate::X509Certificate::from_der(b.signing_certificate().der()).unwrap();
    assert_eq!(c.public_key().raw, orig.public_key().raw, "the same key");
    assert_eq!(
        c.basic_constraints()
            .unwrap()
            .unwrap()
            .value
            .path_len_constraint,
        Some(0),
        "B's intermediate keeps its pathLen"
    );
    let (_, a_root) = x509_parser::certificate::X509Certificate::from_der(a.root().der()).unwrap();
    let (_, b_root) = x509_parser::certificate::X509Certificate::from_der(b.root().der()).unwrap();
    assert!(c.verify_signature(Some(a_root.public_key())).is_ok());
    // Negative control: it is not B's root that signed it.
    assert!(c.verify_signature(Some(b_root.public_key())).is_err());
}

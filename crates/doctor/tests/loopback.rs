//! The doctor against real `openssl s_server`s on loopback, one per diagnosis, each built from a
//! private test PKI (root → intermediate → `localhost` leaf, plus leaves made broken on purpose).
//!
//! Each test connects with [`connect`], judges the captured chain with [`diagnose`] against a
//! trust built by `TrustConfig` (our root's file only, native and webpki off, unless the test
//! says otherwise), and checks the diagnosis, the certificate it names and the fix.
//! Connection failures (refused, not TLS, alert) are checked against their own errors.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anchorage_doctor::{
    Captured, ConnectOptions, DEFAULT_EXPIRY_WINDOW, DiagnoseParams, Diagnosis, DoctorError,
    Finding, Report, Target, connect, diagnose,
};
use anchorage_test_support::peer::{self, Running};
use anchorage_test_support::pki::{self, Issued, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::tls::TrustConfig;
use anchorage_x509::{Certificate, Timestamp, decode};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn now() -> Timestamp {
    Timestamp::from_unix(OffsetDateTime::now_utc().unix_timestamp())
}

/// Only this file; native and webpki off.
fn file_only(path: &Path) -> TrustConfig {
    TrustConfig {
        load_native_certs: false,
        load_webpki_certs: false,
        ssl_certs_file: Some(path.to_owned()),
        extra_ca_paths: Vec::new(),
    }
}

#[allow(clippy::disallowed_methods)] // test fixture, not an output
fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write fixture");
}

fn read_certs(path: &Path) -> Vec<Certificate> {
    decode(&std::fs::read(path).expect("read candidate"))
        .certificates
        .into_iter()
        .map(|f| f.certificate)
        .collect()
}

/// A leaf, its key and the chain file the server sends after it.
struct ServerSetup {
    cert: PathBuf,
    key: PathBuf,
    chain: Option<PathBuf>,
}

/// A leaf made from `params`, signed by `issuer` (`None`: self-signed), written into `dir`.
fn custom_leaf(
    dir: &Path,
    params: CertificateParams,
    issuer: Option<&Issued>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, &issuer.issuer()),
        None => params.self_signed(&key),
    }
    .expect("sign leaf");
    let cert_path = dir.join("custom-leaf.crt");
    let key_path = dir.join("custom-leaf.key");
    write(&cert_path, &cert.pem());
    write(&key_path, &key.serialize_pem());
    (cert_path, key_path)
}

/// Leaf params for `localhost` and 127.0.0.1, valid from an hour ago for 90 days.
fn leaf_params() -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().expect("dns")),
        SanType::IpAddress("127.0.0.1".parse().expect("ip")),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(90);
    params
}

struct Run {
    report: Report,
    captured: Captured,
    root_pem: PathBuf,
    _server: Running,
    _tmp: TempDir,
}

/// Serves `setup`, connects as `server_name`, and diagnoses against `trust` with `candidates`.
fn run(
    tmp: TempDir,
    setup: ServerSetup,
    root_pem: PathBuf,
    server_name: &str,
    trust: &TrustConfig,
    candidates: &[PathBuf],
) -> Option<Run> {
    let server = peer::openssl_server(&setup.cert, &setup.key, setup.chain.as_deref())?;
    let target = Target::parse(&format!("127.0.0.1:{}", server.port())).expect("target");
    let options = ConnectOptions {
        server_name: Some(server_name.to_owned()),
        timeout: Duration::from_secs(10),
    };
    let captured = connect(&target, &options, provider()).expect("connect and capture");
    assert_eq!(captured.handshake_error, None);
    assert_eq!(captured.handshake_signature_verified, Some(true));
    let (roots, _) = trust.root_store().expect("root store");
    let candidates: Vec<(PathBuf, Vec<Certificate>)> = candidates
        .iter()
        .map(|p| (p.clone(), read_certs(p)))
        .collect();
    let target_text = target.to_string();
    let params = DiagnoseParams {
        target: &target_text,
        server_name,
        roots: &roots,
        root_certificates: &[],
        candidates: &candidates,
        now: now(),
        expiry_window: DEFAULT_EXPIRY_WINDOW,
    };
    let report = diagnose(&captured.chain, &params, provider());
    // The JSON form is stable and carries the same verdict.
    let json = serde_json::to_value(&report).expect("json");
    assert!(json["primary"]["kind"].is_string(), "{json}");
    assert!(json["fix"]["summary"].is_string(), "{json}");
    Some(Run {
        report,
        captured,
        root_pem,
        _server: server,
        _tmp: tmp,
    })
}

/// The standard PKI served with its intermediate, trusted through its root's file.
fn standard(server_name: &str, chain: bool) -> Option<Run> {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor");
    let files = pki.write_server_files(tmp.path());
    let setup = ServerSetup {
        cert: files.cert,
        key: files.key,
        chain: chain.then_some(files.chain),
    };
    let trust = file_only(&files.root);
    run(tmp, setup, files.root, server_name, &trust, &[])
}

#[test]
fn trusted_chain_is_trusted_and_healthy() {
    let Some(run) = standard("localhost", true) else {
        return;
    };
    let report = &run.report;
    assert!(
        matches!(&report.primary, Diagnosis::Trusted { anchor } if anchor.contains("Doctor Root CA")),
        "{report:#?}"
    );
    assert!(report.trusted && report.healthy, "{:#?}", report.findings);
    assert_eq!(report.path, vec![0, 1]);
    assert_eq!(report.chain.len(), 2);
    let leaf = &report.chain[0];
    assert!(leaf.subject_alt_names.contains(&"DNS:localhost".to_owned()));
    assert_eq!(leaf.key, "EC P-256");
    assert!(!leaf.is_ca && report.chain[1].is_ca);
    assert!(leaf.time_left.ends_with("left"), "{}", leaf.time_left);
    assert!(
        leaf.next
            .is_some_and(|l| l.links() && l.signature_verified == Some(true))
    );
    assert_eq!(
        report.fix.summary,
        "nothing to fix: the chain is trusted and healthy"
    );
    assert_eq!(run.captured.chain.len(), 2);
    let json = serde_json::to_value(report).expect("json");
    assert_eq!(json["primary"]["kind"], "trusted");
    assert_eq!(json["chain"][0]["sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn leaf_alone_is_a_missing_intermediate() {
    let Some(run) = standard("localhost", false) else {
        return;
    };
    let Diagnosis::MissingIntermediate { issuer, .. } = &run.report.primary else {
        panic!("{:#?}", run.report.primary);
    };
    assert!(issuer.contains("Doctor Intermediate CA"), "{issuer}");
    assert!(
        run.report
            .fix
            .summary
            .contains("must also send the intermediate"),
        "{}",
        run.report.fix.summary
    );
    assert!(!run.report.fix.summary.contains("disable"));
}

#[test]
fn chain_out_of_order_is_a_finding() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Order");
    let files = pki.write_server_files(tmp.path());
    let chain = tmp.path().join("reversed.pem");
    write(&chain, &format!("{}{}", pki.root.pem, pki.intermediate.pem));
    let setup = ServerSetup {
        cert: files.cert,
        key: files.key,
        chain: Some(chain),
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    assert!(run.report.trusted, "{:#?}", run.report.primary);
    assert!(!run.report.healthy);
    assert_eq!(run.report.path, vec![0, 2, 1]);
    assert!(
        run.report.findings.contains(&Finding::ChainOutOfOrder {
            path: vec![0, 2, 1]
        }),
        "{:#?}",
        run.report.findings
    );
}

#[test]
fn expired_leaf_names_the_leaf_and_by_how_much() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Expired");
    let files = pki.write_server_files(tmp.path());
    let mut params = leaf_params();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(3);
    let (cert, key) = custom_leaf(tmp.path(), params, Some(&pki.intermediate));
    let setup = ServerSetup {
        cert,
        key,
        chain: Some(files.chain),
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    let Diagnosis::Expired {
        certificate,
        seconds_ago,
        subject,
        ..
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!(*certificate, 0);
    assert_eq!(subject, "CN=localhost");
    assert!(
        (3 * 86_400..3 * 86_400 + 600).contains(seconds_ago),
        "{seconds_ago}"
    );
    assert!(
        run.report.fix.summary.contains("expired 3 days ago"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report.fix.summary.contains("renew it"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report.chain[0]
            .time_left
            .starts_with("expired 3 days ago")
    );
}

#[test]
fn wrong_hostname_is_a_name_mismatch() {
    let Some(run) = standard("wrong.example", true) else {
        return;
    };
    let Diagnosis::NameMismatch { asked, presented } = &run.report.primary else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!(asked, "wrong.example");
    assert_eq!(
        presented,
        &vec!["DNS:localhost".to_owned(), "IP:127.0.0.1".to_owned()]
    );
    assert!(
        run.report.fix.summary.contains("DNS:wrong.example"),
        "{}",
        run.report.fix.summary
    );
    assert_eq!(run.captured.server_name, "wrong.example");
}

#[test]
fn self_signed_leaf_says_to_review_and_trust_explicitly() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Self");
    let files = pki.write_server_files(tmp.path());
    let (cert, key) = custom_leaf(tmp.path(), leaf_params(), None);
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    let Diagnosis::SelfSignedLeaf { subject, sha256 } = &run.report.primary else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!(subject, "CN=localhost");
    assert_eq!(*sha256, run.captured.chain[0].sha256());
    assert!(run.report.fix.summary.contains("only if that is intended"));
    assert!(
        run.report.fix.commands[0].contains("--save-chain"),
        "{:?}",
        run.report.fix.commands
    );
}

#[test]
fn client_auth_only_leaf_is_wrong_key_usage() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Eku");
    let files = pki.write_server_files(tmp.path());
    let mut params = leaf_params();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, key) = custom_leaf(tmp.path(), params, Some(&pki.intermediate));
    let setup = ServerSetup {
        cert,
        key,
        chain: Some(files.chain),
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    let Diagnosis::WrongKeyUsage {
        certificate,
        extended_key_usage,
        ..
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!(*certificate, 0);
    assert_eq!(extended_key_usage, &vec!["clientAuth".to_owned()]);
    assert!(run.report.fix.summary.contains("serverAuth"));
}

/// Our PKI served in full, trust = an unrelated root; the candidates hold the unrelated root and
/// ours.
fn unknown_issuer_setup(extra_trust: bool) -> Option<(Run, PathBuf)> {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Unknown");
    let files = pki.write_server_files(tmp.path());
    let unrelated = pki::root_ca("Doctor Unrelated Root CA").write_pem(tmp.path(), "unrelated.pem");
    let candidate_dir = tmp.path().join("candidates dir");
    std::fs::create_dir(&candidate_dir).expect("mkdir");
    let candidate = pki.root.write_pem(&candidate_dir, "corp root.pem");
    let mut trust = file_only(&unrelated);
    if extra_trust {
        trust.extra_ca_paths.push(candidate.clone());
    }
    let setup = ServerSetup {
        cert: files.cert,
        key: files.key,
        chain: Some(files.chain),
    };
    let run = run(
        tmp,
        setup,
        files.root,
        "localhost",
        &trust,
        &[unrelated, candidate.clone()],
    )?;
    Some((run, candidate))
}

#[test]
fn unknown_issuer_names_the_candidate_file_and_the_command() {
    let Some((run, candidate)) = unknown_issuer_setup(false) else {
        return;
    };
    let Diagnosis::UnknownIssuer {
        certificate,
        missing_issuer,
        candidate_files,
        root_sent,
        authority_key_id,
        ..
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!(*certificate, 1);
    assert!(
        missing_issuer.contains("Doctor Unknown Root CA"),
        "{missing_issuer}"
    );
    assert_eq!(candidate_files, &vec![candidate.clone()]);
    assert!(!root_sent);
    let presented_aki = run.captured.chain[1].authority_key_id();
    assert_eq!(authority_key_id.is_some(), presented_aki.is_some());
    assert_eq!(
        run.report.fix.commands,
        vec![format!(
            "anchorage bundle build '{}' --mozilla --pem ca-bundle.pem",
            candidate.display()
        )]
    );
    assert!(
        run.report
            .fix
            .summary
            .contains(&candidate.display().to_string())
    );
    let _ = &run.root_pem;
}

#[test]
fn the_candidate_root_as_extra_trust_makes_it_trusted() {
    let Some((run, _)) = unknown_issuer_setup(true) else {
        return;
    };
    assert!(
        matches!(&run.report.primary, Diagnosis::Trusted { anchor } if anchor.contains("Doctor Unknown Root CA")),
        "{:#?}",
        run.report.primary
    );
    assert!(run.report.healthy, "{:#?}", run.report.findings);
}

#[test]
fn connection_refused_is_its_own_error() {
    let port = peer::free_port();
    let target = Target::parse(&format!("127.0.0.1:{port}")).expect("target");
    let err = connect(&target, &ConnectOptions::default(), provider()).expect_err("refused");
    assert!(
        matches!(&err, DoctorError::Refused { address } if address == &format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("connection refused by 127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn plain_http_port_is_not_tls() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let target = Target::parse(&addr.to_string()).expect("target");
    let err = connect(&target, &ConnectOptions::default(), provider()).expect_err("not TLS");
    let DoctorError::NotTls { first_bytes, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        first_bytes.starts_with("HTTP/1.1 400 Bad Request"),
        "{first_bytes}"
    );
    assert!(err.to_string().contains("(plain HTTP)"), "{err}");
    server.join().expect("server thread");
}

#[test]
fn tls_alert_from_the_server_is_its_own_error() {
    // A TLS 1.2-only server whose only cipher suite (RSA key exchange) rustls never offers
    // answers our hello with a handshake_failure alert.
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = tempdir().expect("tempdir");
    let files = Pki::new("Doctor Alert").write_server_files(tmp.path());
    let port = peer::free_port();
    let mut child = Command::new(openssl)
        .args(["s_server", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .args(["-tls1_2", "-cipher", "AES128-SHA", "-www"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    peer::wait_for_port(addr, &mut child, Duration::from_secs(10));
    let target = Target::parse(&addr.to_string()).expect("target");
    let result = connect(&target, &ConnectOptions::default(), provider());
    let _ = child.kill();
    let _ = child.wait();
    let err = result.expect_err("alert");
    assert!(
        matches!(&err, DoctorError::Alert { alert, .. } if alert == "HandshakeFailure"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("sent TLS alert HandshakeFailure"),
        "{err}"
    );
}

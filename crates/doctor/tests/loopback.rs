//! The doctor against real `openssl s_server`s on loopback, one per diagnosis, each built from a
//! private test PKI (root → intermediate → `localhost` leaf, plus leaves made broken on purpose).
//!
//! Each test connects with [`connect`], judges the captured chain with [`diagnose`] against a
//! trust built by `TrustConfig` (our root's file only, native and webpki off, unless the test
//! says otherwise), and checks the diagnosis, the certificate it names and the fix.
//! Certificates rcgen cannot make (SHA-1 signatures, RSA keys under 2048 bits) come from the
//! real `openssl` CLI and are served with `@SECLEVEL=0`.
//! Connection failures (refused, timeout, unknown host, not TLS, alert) are checked against
//! their own errors, and bounded by the timeout.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
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

/// How a test departs from the defaults of [`run`].
#[derive(Default)]
struct Tweaks<'a> {
    /// Extra `openssl s_server` arguments.
    server_args: &'a [&'a str],
    /// `DiagnoseParams::root_certificates`.
    root_certificates: Vec<Certificate>,
    /// The server's key is one the provider cannot check its handshake signature with (an RSA
    /// key under 2048 bits): do not insist that the server proved it holds the key.
    weak_server_key: bool,
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
    run_with(
        tmp,
        setup,
        root_pem,
        server_name,
        trust,
        candidates,
        Tweaks::default(),
    )
}

/// [`run`] with `tweaks`.
fn run_with(
    tmp: TempDir,
    setup: ServerSetup,
    root_pem: PathBuf,
    server_name: &str,
    trust: &TrustConfig,
    candidates: &[PathBuf],
    tweaks: Tweaks<'_>,
) -> Option<Run> {
    let server = peer::openssl_server_with_args(
        &setup.cert,
        &setup.key,
        setup.chain.as_deref(),
        tweaks.server_args,
    )?;
    let target = Target::parse(&format!("127.0.0.1:{}", server.port())).expect("target");
    let options = ConnectOptions {
        server_name: Some(server_name.to_owned()),
        timeout: Duration::from_secs(10),
    };
    let captured = connect(&target, &options, provider()).expect("connect and capture");
    assert_eq!(captured.handshake_error, None);
    let proved = if tweaks.weak_server_key {
        Some(false)
    } else {
        Some(true)
    };
    assert_eq!(captured.handshake_signature_verified, proved);
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
        root_certificates: &tweaks.root_certificates,
        candidates: &candidates,
        now: now(),
        expiry_window: DEFAULT_EXPIRY_WINDOW,
        handshake_signature: captured.handshake_signature.as_ref(),
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
        matches!(&report.primary, Diagnosis::Trusted { anchor, .. } if anchor.contains("Doctor Root CA")),
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
    let Diagnosis::SelfSignedLeaf {
        subject,
        sha256,
        is_ca: false,
        in_trust: false,
    } = &run.report.primary
    else {
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
        matches!(&run.report.primary, Diagnosis::Trusted { anchor, .. } if anchor.contains("Doctor Unknown Root CA")),
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

// ---- A CA certificate served as the leaf -------------------------------------------------

#[test]
fn self_signed_ca_served_as_the_leaf_is_a_self_signed_leaf() {
    let tmp = tempdir().expect("tempdir");
    let files = Pki::new("Doctor Trust").write_server_files(tmp.path());
    let ca = pki::root_ca("Doctor CA As Leaf");
    let cert = ca.write_pem(tmp.path(), "ca-as-leaf.crt");
    let key = tmp.path().join("ca-as-leaf.key");
    write(&key, &ca.key_pem);
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    assert!(run.report.chain[0].is_ca && run.report.chain[0].self_issued);
    let Diagnosis::SelfSignedLeaf {
        subject,
        sha256,
        is_ca: true,
        in_trust: false,
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert!(subject.contains("CN=Doctor CA As Leaf"), "{subject}");
    assert_eq!(*sha256, run.captured.chain[0].sha256());
    // Trusting a CA:TRUE certificate would not make rustls accept it as the server's: the fix
    // is to reissue it, not to save it for trusting.
    assert!(
        run.report
            .fix
            .summary
            .contains("basicConstraints=critical,CA:FALSE"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report.fix.commands.is_empty(),
        "{:?}",
        run.report.fix.commands
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["primary"]["kind"], "self_signed_leaf");
}

#[test]
fn intermediate_served_as_the_leaf_is_a_ca_used_as_leaf() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor CA Leaf");
    let files = pki.write_server_files(tmp.path());
    let cert = pki.intermediate.write_pem(tmp.path(), "intermediate.crt");
    let key = tmp.path().join("intermediate.key");
    write(&key, &pki.intermediate.key_pem);
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    let Diagnosis::CaUsedAsLeaf { subject, issuer } = &run.report.primary else {
        panic!("{:#?}", run.report.primary);
    };
    assert!(
        subject.contains("Doctor CA Leaf Intermediate CA"),
        "{subject}"
    );
    assert!(issuer.contains("Doctor CA Leaf Root CA"), "{issuer}");
    assert!(
        run.report
            .fix
            .summary
            .contains("configured with its CA certificate"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report
            .fix
            .summary
            .contains("instead of its own certificate"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report
            .primary
            .to_string()
            .starts_with("CA used as leaf: [0] "),
        "{}",
        run.report.primary
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["primary"]["kind"], "ca_used_as_leaf");
}

// ---- Weak crypto, made with the openssl CLI (rcgen cannot sign with SHA-1) -----------------

/// `s_server` arguments that let OpenSSL 3 serve SHA-1 certificates and short RSA keys.
const WEAK_SERVER: &[&str] = &["-cipher", "DEFAULT@SECLEVEL=0"];

/// Extension sections for the openssl CLI.
const OPENSSL_EXTENSIONS: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A certificate and key made by the openssl CLI.
struct OpensslCert {
    cert: PathBuf,
    key: PathBuf,
}

/// Runs `openssl` with the whitespace-separated `words` then `subject` as `-subj /CN=…`, in
/// `dir`, panicking with what it printed when it fails.
fn openssl(openssl: &Path, dir: &Path, words: &str, subject: Option<&str>) {
    let mut cmd = Command::new(openssl);
    cmd.current_dir(dir).args(words.split_whitespace());
    if let Some(cn) = subject {
        cmd.arg("-subj").arg(format!("/CN={cn}"));
    }
    let run = peer::run_client(&mut cmd, Duration::from_secs(60));
    assert!(
        run.status.success(),
        "openssl {words} failed:\n{}",
        run.output()
    );
}

/// A file's name, for commands run in its directory.
fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned()
}

/// Makes certificates with the real openssl in one directory.
struct OpensslPki<'a> {
    openssl: PathBuf,
    dir: &'a Path,
}

impl<'a> OpensslPki<'a> {
    /// `None` when openssl is missing locally.
    fn new(dir: &'a Path) -> Option<Self> {
        let openssl = peer::require("openssl")?;
        write(&dir.join("ext.cnf"), OPENSSL_EXTENSIONS);
        Some(Self { openssl, dir })
    }

    /// A self-signed RSA-2048 root `stem.pem` (key `stem.key`), SHA-256.
    fn root(&self, stem: &str, cn: &str) -> OpensslCert {
        openssl(
            &self.openssl,
            self.dir,
            &format!(
                "req -x509 -newkey rsa:2048 -nodes -keyout {stem}.key -out {stem}.pem -days 30 -sha256 -config ext.cnf -extensions ca"
            ),
            Some(cn),
        );
        self.files(stem)
    }

    /// A certificate `stem.pem` for a fresh RSA key of `bits` (`stem.key`), signed by `issuer`
    /// with `digest` (`sha1`, `sha256`), with the extension section `section` (`ca`, `leaf`).
    fn issue(
        &self,
        stem: &str,
        cn: &str,
        bits: u32,
        digest: &str,
        section: &str,
        issuer: &OpensslCert,
    ) -> OpensslCert {
        let (ossl, dir) = (&self.openssl, self.dir);
        openssl(ossl, dir, &format!("genrsa -out {stem}.key {bits}"), None);
        openssl(
            ossl,
            dir,
            &format!("req -new -key {stem}.key -out {stem}.csr -config ext.cnf"),
            Some(cn),
        );
        openssl(
            ossl,
            dir,
            &format!(
                "x509 -req -in {stem}.csr -CA {} -CAkey {} -set_serial 7 -days 30 -{digest} -extfile ext.cnf -extensions {section} -out {stem}.pem",
                file_name(&issuer.cert),
                file_name(&issuer.key)
            ),
            None,
        );
        self.files(stem)
    }

    /// `stem.pem` and `stem.key` in the directory (named relative to it in commands, which run
    /// there, so a temporary directory with spaces in its path cannot split an argument).
    fn files(&self, stem: &str) -> OpensslCert {
        OpensslCert {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }
}

#[test]
fn sha1_signed_leaf_is_a_weak_signature() {
    let tmp = tempdir().expect("tempdir");
    let Some(ossl) = OpensslPki::new(tmp.path()) else {
        return;
    };
    let root = ossl.root("root", "Doctor Sha1 Root CA");
    let leaf = ossl.issue("leaf", "localhost", 2048, "sha1", "leaf", &root);
    let setup = ServerSetup {
        cert: leaf.cert,
        key: leaf.key,
        chain: None,
    };
    let trust = file_only(&root.cert);
    let tweaks = Tweaks {
        server_args: WEAK_SERVER,
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root.cert, "localhost", &trust, &[], tweaks) else {
        return;
    };
    let Diagnosis::WeakSignature {
        certificate,
        subject,
        algorithm,
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!((*certificate, subject.as_str()), (0, "CN=localhost"));
    assert!(
        algorithm.to_ascii_lowercase().contains("sha1"),
        "{algorithm}"
    );
    assert!(!run.report.trusted);
    assert!(
        run.report.fix.summary.contains("SHA-256"),
        "{}",
        run.report.fix.summary
    );
    // Said once, as the primary, not again as a finding.
    assert!(
        !run.report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::WeakSignature { .. })),
        "{:#?}",
        run.report.findings
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["primary"]["kind"], "weak_signature");
}

/// Serves an RSA-2048 leaf (SHA-256 certificates throughout) under TLS 1.2 with the handshake
/// signed with `sigalgs` (`RSA+SHA1`, `RSA+SHA256`).
fn rsa_server_signing_with(sigalgs: &str) -> Option<Run> {
    let tmp = tempdir().expect("tempdir");
    let ossl = OpensslPki::new(tmp.path())?;
    let root = ossl.root("sigroot", "Doctor Sigalg Root CA");
    let leaf = ossl.issue("sigleaf", "localhost", 2048, "sha256", "leaf", &root);
    let setup = ServerSetup {
        cert: leaf.cert,
        key: leaf.key,
        chain: None,
    };
    let trust = file_only(&root.cert);
    let weak = sigalgs.contains("SHA1");
    let server_args = [
        "-tls1_2",
        "-sigalgs",
        sigalgs,
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ];
    run_with(
        tmp,
        setup,
        root.cert,
        "localhost",
        &trust,
        &[],
        Tweaks {
            server_args: &server_args,
            weak_server_key: weak,
            ..Tweaks::default()
        },
    )
}

/// Issue 19 item 10: a server whose chain verifies but which signs the TLS 1.2 handshake with
/// RSA-SHA1 (which every rustls client refuses) was reported "trusted and healthy", because the
/// capture-only verifier's failed signature check was ignored. It is now the primary
/// diagnosis, naming the scheme, with a fix; the same server signing with SHA-256 is trusted.
#[test]
fn a_handshake_signed_with_rsa_sha1_is_never_trusted() {
    let Some(run) = rsa_server_signing_with("RSA+SHA1") else {
        return;
    };
    let report = &run.report;
    let signature = run.captured.handshake_signature.as_ref().expect("checked");
    assert_eq!(signature.scheme, "RSA_PKCS1_SHA1");
    assert!(!signature.verified && signature.weak_scheme());
    assert!(!report.trusted && !report.healthy, "{report:#?}");
    let Diagnosis::HandshakeSignatureFailed {
        scheme,
        weak_scheme: true,
        ..
    } = &report.primary
    else {
        panic!("{:#?}", report.primary);
    };
    assert_eq!(scheme, "RSA_PKCS1_SHA1");
    let sentence = report.primary.to_string();
    assert!(
        sentence.contains("handshake signature failed"),
        "{sentence}"
    );
    assert!(sentence.contains("RSA_PKCS1_SHA1"), "{sentence}");
    assert!(
        report.fix.summary.contains("SHA-256"),
        "{}",
        report.fix.summary
    );
    let json = serde_json::to_value(report).expect("json");
    assert_eq!(json["primary"]["kind"], "handshake_signature_failed");
    assert_eq!(json["trusted"], false);

    // A real rustls client refuses this server too: the doctor agrees with it.
    let (roots, _) = file_only(&run.root_pem).root_store().expect("roots");
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address: SocketAddr = run.captured.address.parse().expect("address");
    let mut sock = std::net::TcpStream::connect(address).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().expect("name"))
            .expect("client");
    let refused = conn.complete_io(&mut sock);
    assert!(refused.is_err(), "a rustls client accepted RSA-SHA1");

    // Negative control: the same PKI and server, signing with SHA-256, is trusted (the openssl
    // certificates live 30 days: "expires soon" is its only finding).
    let Some(run) = rsa_server_signing_with("RSA+SHA256") else {
        return;
    };
    let signature = run.captured.handshake_signature.as_ref().expect("checked");
    assert_eq!(signature.scheme, "RSA_PKCS1_SHA256");
    assert!(signature.verified);
    assert!(
        run.report.trusted && matches!(run.report.primary, Diagnosis::Trusted { .. }),
        "{:#?}",
        run.report
    );
    assert!(
        run.report
            .findings
            .iter()
            .all(|f| matches!(f, Finding::ExpiresSoon { .. })),
        "{:#?}",
        run.report.findings
    );
}

#[test]
fn rsa_1024_intermediate_is_a_weak_key() {
    let tmp = tempdir().expect("tempdir");
    let Some(ossl) = OpensslPki::new(tmp.path()) else {
        return;
    };
    let root = ossl.root("root", "Doctor Weak Root CA");
    let intermediate = ossl.issue(
        "intermediate",
        "Doctor Weak Intermediate CA",
        1024,
        "sha256",
        "ca",
        &root,
    );
    let leaf = ossl.issue("leaf", "localhost", 2048, "sha256", "leaf", &intermediate);
    let setup = ServerSetup {
        cert: leaf.cert,
        key: leaf.key,
        chain: Some(intermediate.cert),
    };
    let trust = file_only(&root.cert);
    let tweaks = Tweaks {
        server_args: WEAK_SERVER,
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root.cert, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert_eq!(
        run.report.primary,
        Diagnosis::WeakKey {
            certificate: 1,
            subject: "CN=Doctor Weak Intermediate CA".into(),
            bits: 1024,
        }
    );
    // The short key cannot be checked, which is not the same as a signature that fails.
    assert_eq!(run.report.path, vec![0, 1]);
    assert_eq!(
        run.report.chain[0].next.and_then(|l| l.signature_verified),
        None
    );
    let summary = &run.report.fix.summary;
    assert!(
        summary.contains("RSA 2048 bits or more") && summary.contains("P-256"),
        "{summary}"
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["primary"]["kind"], "weak_key");
    assert_eq!(json["primary"]["bits"], 1024);
}

#[test]
fn rsa_1024_leaf_is_a_weak_key_although_its_chain_verifies() {
    let tmp = tempdir().expect("tempdir");
    let Some(ossl) = OpensslPki::new(tmp.path()) else {
        return;
    };
    let root = ossl.root("root", "Doctor Weak Leaf Root CA");
    let leaf = ossl.issue("leaf", "localhost", 1024, "sha256", "leaf", &root);
    let setup = ServerSetup {
        cert: leaf.cert,
        key: leaf.key,
        chain: None,
    };
    let trust = file_only(&root.cert);
    let tweaks = Tweaks {
        server_args: WEAK_SERVER,
        weak_server_key: true,
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root.cert, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert_eq!(
        run.report.primary,
        Diagnosis::WeakKey {
            certificate: 0,
            subject: "CN=localhost".into(),
            bits: 1024,
        }
    );
    assert!(!run.report.trusted && !run.report.healthy);
}

#[test]
fn a_sha1_certificate_off_the_path_is_only_a_finding() {
    let tmp = tempdir().expect("tempdir");
    let Some(ossl) = OpensslPki::new(tmp.path()) else {
        return;
    };
    let old_root = ossl.root("old-root", "Doctor Old Root CA");
    let old = ossl.issue("old", "Doctor Old Sha1 CA", 2048, "sha1", "ca", &old_root);
    let pki = Pki::new("Doctor Weak Extra");
    let files = pki.write_server_files(tmp.path());
    let chain = tmp.path().join("chain-with-old.pem");
    let old_pem = std::fs::read_to_string(&old.cert).expect("read");
    write(&chain, &format!("{}{old_pem}", pki.intermediate.pem));
    let setup = ServerSetup {
        cert: files.cert,
        key: files.key,
        chain: Some(chain),
    };
    let trust = file_only(&files.root);
    let tweaks = Tweaks {
        server_args: WEAK_SERVER,
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, files.root, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert!(run.report.trusted, "{:#?}", run.report.primary);
    assert!(!run.report.healthy);
    assert!(
        run.report.findings.iter().any(|f| matches!(
            f,
            Finding::WeakSignature { certificate: 2, subject, .. } if subject == "CN=Doctor Old Sha1 CA"
        )),
        "{:#?}",
        run.report.findings
    );
    assert!(run.report.findings.contains(&Finding::ExtraCertificates {
        certificates: vec![2],
        subjects: vec!["CN=Doctor Old Sha1 CA".into()],
    }));
}

// ---- Validity, AIA, extra certificates, root expiry ----------------------------------------

#[test]
fn leaf_valid_only_in_two_days_is_not_yet_valid() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Future");
    let files = pki.write_server_files(tmp.path());
    let mut params = leaf_params();
    let now = OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(2);
    params.not_after = now + time::Duration::days(90);
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
    let Diagnosis::NotYetValid {
        certificate,
        subject,
        seconds_until,
        ..
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert_eq!((*certificate, subject.as_str()), (0, "CN=localhost"));
    assert!(
        (2 * 86_400 - 600..=2 * 86_400).contains(seconds_until),
        "{seconds_until}"
    );
    assert!(
        run.report.fix.summary.contains("clock"),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report.chain[0]
            .time_left
            .starts_with("not valid for another"),
        "{}",
        run.report.chain[0].time_left
    );
}

/// A DER TLV with a short length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = u8::try_from(content.len()).expect("short content");
    assert!(len < 0x80, "short form only");
    [&[tag, len][..], content].concat()
}

/// The value of an authority information access extension with one caIssuers URL.
fn aia_ca_issuers(url: &str) -> Vec<u8> {
    // id-ad-caIssuers, 1.3.6.1.5.5.7.48.2
    let method = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    // GeneralName uniformResourceIdentifier, [6] IMPLICIT IA5String
    let location = tlv(0x86, url.as_bytes());
    let description = tlv(0x30, &[&method[..], &location].concat());
    tlv(0x30, &description)
}

#[test]
fn missing_intermediate_shows_the_aia_url() {
    const URL: &str = "http://pki.test.invalid/issuing.crt";
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Aia");
    let files = pki.write_server_files(tmp.path());
    let mut params = leaf_params();
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        aia_ca_issuers(URL),
    )];
    let (cert, key) = custom_leaf(tmp.path(), params, Some(&pki.intermediate));
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = file_only(&files.root);
    let Some(run) = run(tmp, setup, files.root, "localhost", &trust, &[]) else {
        return;
    };
    let Diagnosis::MissingIntermediate {
        issuer,
        aia_ca_issuers,
        ..
    } = &run.report.primary
    else {
        panic!("{:#?}", run.report.primary);
    };
    assert!(issuer.contains("Doctor Aia Intermediate CA"), "{issuer}");
    assert_eq!(aia_ca_issuers, &vec![URL.to_owned()]);
    assert_eq!(run.report.chain[0].aia_ca_issuers, vec![URL.to_owned()]);
    assert!(
        run.report.fix.summary.contains(URL),
        "{}",
        run.report.fix.summary
    );
    assert!(
        run.report
            .primary
            .to_string()
            .ends_with(&format!("(download: {URL})")),
        "{}",
        run.report.primary
    );
}

#[test]
fn an_unrelated_ca_in_the_chain_is_an_extra_certificate() {
    let tmp = tempdir().expect("tempdir");
    let pki = Pki::new("Doctor Extra");
    let files = pki.write_server_files(tmp.path());
    let unrelated = pki::root_ca("Doctor Extra Unrelated CA");
    let chain = tmp.path().join("chain-with-extra.pem");
    write(
        &chain,
        &format!("{}{}", pki.intermediate.pem, unrelated.pem),
    );
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
    assert_eq!(run.report.path, vec![0, 1]);
    let subject = run.captured.chain[2].subject().to_owned();
    assert!(subject.contains("Doctor Extra Unrelated CA"), "{subject}");
    assert_eq!(
        run.report.findings,
        vec![Finding::ExtraCertificates {
            certificates: vec![2],
            subjects: vec![subject],
        }]
    );
}

#[test]
fn a_trusted_root_expiring_in_ten_days_is_a_finding() {
    let tmp = tempdir().expect("tempdir");
    let root = pki::root_ca_expiring_in("Doctor Soon Root CA", 10);
    let leaf = pki::server_leaf(&["localhost"], &root);
    let root_pem = root.write_pem(tmp.path(), "root.pem");
    let cert = leaf.write_pem(tmp.path(), "server.crt");
    let key = tmp.path().join("server.key");
    write(&key, &leaf.key_pem);
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = file_only(&root_pem);
    let tweaks = Tweaks {
        root_certificates: read_certs(&root_pem),
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root_pem, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert!(run.report.trusted, "{:#?}", run.report.primary);
    assert!(!run.report.healthy);
    let [
        Finding::RootExpiresSoon {
            subject,
            seconds_left,
            ..
        },
    ] = run.report.findings.as_slice()
    else {
        panic!("{:#?}", run.report.findings);
    };
    assert!(subject.contains("Doctor Soon Root CA"), "{subject}");
    assert!(
        (10 * 86_400 - 600..=10 * 86_400).contains(seconds_left),
        "{seconds_left}"
    );
}

// ---- Connection failures bounded by the timeout --------------------------------------------

#[test]
fn a_server_that_never_answers_times_out() {
    // The kernel completes the TCP handshake for a listener that never accepts; nothing ever
    // answers our ClientHello.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let target = Target::parse(&addr.to_string()).expect("target");
    let options = ConnectOptions {
        server_name: Some("localhost".into()),
        timeout: Duration::from_secs(1),
    };
    let start = Instant::now();
    let err = connect(&target, &options, provider()).expect_err("timeout");
    let elapsed = start.elapsed();
    assert!(
        matches!(&err, DoctorError::Timeout { stage: "handshake", timeout, address }
            if *timeout == Duration::from_secs(1) && address == &addr.to_string()),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(
        err.to_string()
            .starts_with("timed out after 1s during handshake"),
        "{err}"
    );
    drop(listener);
}

#[test]
fn an_unknown_host_is_a_resolve_error_within_the_timeout() {
    let target = Target::parse("doctor-test.invalid:443").expect("target");
    let options = ConnectOptions {
        server_name: None,
        timeout: Duration::from_secs(3),
    };
    let start = Instant::now();
    let err = connect(&target, &options, provider()).expect_err("no such host");
    let elapsed = start.elapsed();
    assert!(
        matches!(&err, DoctorError::Resolve { host, .. } if host == "doctor-test.invalid"),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert!(
        err.to_string()
            .starts_with("cannot resolve doctor-test.invalid"),
        "{err}"
    );
}

// ---- Only a trusted root "expires soon"; a self-signed leaf's short life is its own ---------

/// Mozilla's roots only, as `--mozilla` gives them.
fn mozilla_only() -> TrustConfig {
    TrustConfig {
        load_native_certs: false,
        load_webpki_certs: true,
        ssl_certs_file: None,
        extra_ca_paths: Vec::new(),
    }
}

#[test]
fn a_self_signed_leaf_expiring_in_five_days_expires_soon_and_is_no_trusted_root() {
    let tmp = tempdir().expect("tempdir");
    let mut params = leaf_params();
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(5);
    let (cert, key) = custom_leaf(tmp.path(), params, None);
    let root_pem = cert.clone();
    let setup = ServerSetup {
        cert,
        key,
        chain: None,
    };
    let trust = mozilla_only();
    let (root_certificates, _) = trust.load().expect("Mozilla's roots");
    let tweaks = Tweaks {
        root_certificates,
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root_pem, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert!(
        matches!(
            &run.report.primary,
            Diagnosis::SelfSignedLeaf { subject, is_ca: false, in_trust: false, .. } if subject == "CN=localhost"
        ),
        "{:#?}",
        run.report.primary
    );
    // The leaf's own short life, said as the leaf's; no "trusted root" that is not one.
    let [
        Finding::ExpiresSoon {
            certificate: 0,
            subject,
            seconds_left,
            ..
        },
    ] = run.report.findings.as_slice()
    else {
        panic!("{:#?}", run.report.findings);
    };
    assert_eq!(subject, "CN=localhost");
    assert!(
        (4 * 86_400..=5 * 86_400).contains(seconds_left),
        "{seconds_left}"
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["findings"][0]["kind"], "expires_soon");
}

#[test]
fn an_untrusted_root_the_server_sends_is_no_root_that_expires_soon() {
    let tmp = tempdir().expect("tempdir");
    let root = pki::root_ca_expiring_in("Doctor Sent Soon Root CA", 10);
    let intermediate = pki::intermediate_ca("Doctor Sent Soon Intermediate CA", &root);
    let leaf = pki::server_leaf(&["localhost"], &intermediate);
    let cert = leaf.write_pem(tmp.path(), "server.crt");
    let key = tmp.path().join("server.key");
    write(&key, &leaf.key_pem);
    let chain = tmp.path().join("chain.pem");
    write(&chain, &format!("{}{}", intermediate.pem, root.pem));
    let root_pem = root.write_pem(tmp.path(), "root.pem");
    let unrelated =
        pki::root_ca("Doctor Sent Soon Unrelated CA").write_pem(tmp.path(), "other.pem");
    let setup = ServerSetup {
        cert,
        key,
        chain: Some(chain),
    };
    let trust = file_only(&unrelated);
    let tweaks = Tweaks {
        root_certificates: read_certs(&unrelated),
        ..Tweaks::default()
    };
    let Some(run) = run_with(tmp, setup, root_pem, "localhost", &trust, &[], tweaks) else {
        return;
    };
    assert!(
        matches!(
            run.report.primary,
            Diagnosis::UnknownIssuer {
                certificate: 2,
                root_sent: true,
                ..
            }
        ),
        "{:#?}",
        run.report.primary
    );
    assert_eq!(run.report.findings, Vec::new());

    // Positive control: the same chain judged with that root in the trust.
    let trusted_root = read_certs(&run.root_pem);
    let roots = anchorage_trust::tls::root_store_of(&trusted_root);
    let target = run.captured.address.clone();
    let params = DiagnoseParams {
        target: &target,
        server_name: "localhost",
        roots: &roots,
        root_certificates: &trusted_root,
        candidates: &[],
        now: now(),
        expiry_window: DEFAULT_EXPIRY_WINDOW,
        handshake_signature: run.captured.handshake_signature.as_ref(),
    };
    let report = diagnose(&run.captured.chain, &params, provider());
    assert!(report.trusted, "{:#?}", report.primary);
    assert!(
        matches!(
            report.findings.as_slice(),
            [Finding::RootExpiresSoon { subject, .. }] if subject.contains("Doctor Sent Soon Root CA")
        ),
        "{:#?}",
        report.findings
    );
}

// ---- The quick `openssl req -x509` certificate: self-signed and CA:TRUE --------------------

#[test]
fn a_trusted_openssl_req_x509_certificate_is_a_self_signed_leaf_marked_ca() {
    let tmp = tempdir().expect("tempdir");
    let Some(ossl) = OpensslPki::new(tmp.path()) else {
        return;
    };
    // The usual quick server certificate: OpenSSL's default configuration makes it CA:TRUE.
    openssl(
        &ossl.openssl,
        tmp.path(),
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout quick.key -out quick.pem -days 30",
        Some("localhost"),
    );
    // What the fix says to do instead.
    openssl(
        &ossl.openssl,
        tmp.path(),
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout fixed.key -out fixed.pem -days 365 -addext basicConstraints=critical,CA:FALSE -addext subjectAltName=DNS:localhost",
        Some("localhost"),
    );
    let quick = ossl.files("quick");
    let fixed = ossl.files("fixed");
    let fixed_pem = fixed.cert;
    // Trusted through a bundle that holds it (--bundle quick.pem).
    let trust = file_only(&quick.cert);
    let setup = ServerSetup {
        cert: quick.cert.clone(),
        key: quick.key,
        chain: None,
    };
    let Some(run) = run(tmp, setup, quick.cert, "localhost", &trust, &[]) else {
        return;
    };
    assert!(run.report.chain[0].is_ca && run.report.chain[0].self_issued);
    assert_eq!(
        run.report.primary,
        Diagnosis::SelfSignedLeaf {
            subject: "CN=localhost".into(),
            sha256: run.captured.chain[0].sha256(),
            is_ca: true,
            in_trust: true,
        }
    );
    assert!(!run.report.trusted);
    let sentence = run.report.primary.to_string();
    assert!(!sentence.contains("issued by"), "{sentence}");
    assert!(
        sentence.starts_with("self-signed leaf: [0] CN=localhost is its own issuer and marked as a CA certificate (basicConstraints CA:TRUE), which rustls refuses as a server certificate although the trust holds it"),
        "{sentence}"
    );
    let summary = &run.report.fix.summary;
    assert!(
        summary.contains("even when it is trusted, as it is here")
            && summary.contains("-addext basicConstraints=critical,CA:FALSE")
            && summary.contains("issue it from your CA"),
        "{summary}"
    );
    let json = serde_json::to_value(&run.report).expect("json");
    assert_eq!(json["primary"]["kind"], "self_signed_leaf");
    assert_eq!(json["primary"]["is_ca"], true);
    assert_eq!(json["primary"]["in_trust"], true);

    // Not in the trust (Mozilla's roots): still a self-signed leaf marked CA, and the fix says
    // trusting it would not help.
    let (mozilla, _) = mozilla_only().load().expect("Mozilla's roots");
    let mozilla_roots = anchorage_trust::tls::root_store_of(&mozilla);
    let target = run.captured.address.clone();
    let params = DiagnoseParams {
        target: &target,
        server_name: "localhost",
        roots: &mozilla_roots,
        root_certificates: &mozilla,
        candidates: &[],
        now: now(),
        expiry_window: DEFAULT_EXPIRY_WINDOW,
        handshake_signature: run.captured.handshake_signature.as_ref(),
    };
    let untrusted = diagnose(&run.captured.chain, &params, provider());
    assert!(
        matches!(
            untrusted.primary,
            Diagnosis::SelfSignedLeaf {
                is_ca: true,
                in_trust: false,
                ..
            }
        ),
        "{:#?}",
        untrusted.primary
    );
    assert!(
        untrusted
            .fix
            .summary
            .contains("so trusting it would not help"),
        "{}",
        untrusted.fix.summary
    );

    // Negative control: reissued as the fix says (CA:FALSE, with the name), trusted the same
    // way, it is trusted.
    let fixed_chain = read_certs(&fixed_pem);
    let fixed_roots = anchorage_trust::tls::root_store_of(&fixed_chain);
    let params = DiagnoseParams {
        roots: &fixed_roots,
        root_certificates: &fixed_chain,
        ..params
    };
    let report = diagnose(&fixed_chain, &params, provider());
    assert!(report.trusted && report.healthy, "{report:#?}");
}

// ---- A server that requires a client certificate -------------------------------------------

/// Serves the standard PKI with `extra` `s_server` arguments and connects to it.
fn connect_to_client_auth_server(name: &str, extra: &[&str]) -> Option<Captured> {
    let tmp = tempdir().expect("tempdir");
    let files = Pki::new(name).write_server_files(tmp.path());
    let server =
        peer::openssl_server_with_args(&files.cert, &files.key, Some(&files.chain), extra)?;
    let target = Target::parse(&format!("127.0.0.1:{}", server.port())).expect("target");
    let options = ConnectOptions {
        server_name: Some("localhost".into()),
        timeout: Duration::from_secs(10),
    };
    let captured = connect(&target, &options, provider()).expect("the chain is captured");
    assert_eq!(captured.chain.len(), 2, "{captured:#?}");
    Some(captured)
}

#[test]
fn a_required_client_certificate_under_tls_1_3_is_a_handshake_error() {
    // TLS 1.3: the server refuses our empty client certificate after our Finished, when the
    // handshake is already complete for us.
    let Some(captured) = connect_to_client_auth_server("Doctor Mtls13", &["-Verify", "1"]) else {
        return;
    };
    assert_eq!(captured.protocol.as_deref(), Some("TLSv1_3"));
    assert!(captured.client_certificate_requested);
    let error = captured
        .handshake_error
        .as_deref()
        .expect("the refusal is a handshake error");
    assert!(
        error.contains("sent TLS alert CertificateRequired"),
        "{error}"
    );
    assert!(
        error.contains("requires a client certificate (mutual TLS)"),
        "{error}"
    );
    assert!(error.contains("server's certificate chain only"), "{error}");

    // Optional client certificate (-verify): requested, but not refused.
    let Some(optional) = connect_to_client_auth_server("Doctor Mtls13 Optional", &["-verify", "1"])
    else {
        return;
    };
    assert!(optional.client_certificate_requested);
    assert_eq!(optional.handshake_error, None);

    // Negative control: no client certificate asked for.
    let Some(plain) = connect_to_client_auth_server("Doctor Mtls13 None", &[]) else {
        return;
    };
    assert!(!plain.client_certificate_requested);
    assert_eq!(plain.handshake_error, None);
}

#[test]
fn a_required_client_certificate_under_tls_1_2_says_mutual_tls_not_no_suite_in_common() {
    let Some(captured) =
        connect_to_client_auth_server("Doctor Mtls12", &["-tls1_2", "-Verify", "1"])
    else {
        return;
    };
    assert_eq!(captured.protocol.as_deref(), Some("TLSv1_2"));
    assert!(captured.client_certificate_requested);
    let error = captured
        .handshake_error
        .as_deref()
        .expect("the refusal is a handshake error");
    assert!(error.contains("sent TLS alert HandshakeFailure"), "{error}");
    assert!(
        !error.contains("no protocol version, cipher suite or key exchange in common"),
        "{error}"
    );
    assert!(
        error.contains("requires a client certificate (mutual TLS)"),
        "{error}"
    );
    assert!(error.contains("server's certificate chain only"), "{error}");

    // Negative control: the same server without -Verify.
    let Some(plain) = connect_to_client_auth_server("Doctor Mtls12 None", &["-tls1_2"]) else {
        return;
    };
    assert!(!plain.client_certificate_requested);
    assert_eq!(plain.handshake_error, None);
}

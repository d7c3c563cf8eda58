//! Interop tier for `anchorage_trust::tls`: a real rustls client, configured only by
//! [`TrustConfig`], against `openssl s_server` on loopback.
//!
//! Each test makes a private PKI (root → intermediate → `localhost` leaf) and serves the leaf and
//! intermediate. A client is a `rustls::ClientConnection` over a `TcpStream` (with I/O timeouts)
//! that completes the handshake and reads the start of the HTTP answer. Every row that must verify
//! has a negative control that must fail with `UnknownIssuer`, so a pass cannot come from a
//! client that did not verify:
//!
//! | row | trusted | negative control |
//! |---|---|---|
//! | `ssl_certs_file` only | our root's file | an unrelated root's file |
//! | webpki only | — | Mozilla's roots do not hold our private root |
//! | native only (`SSL_CERT_FILE`, in a child process) | our root's file | an unrelated root's file |
//! | extra CA path (a directory) | directory with our root | directory with an unrelated root |
//! | defaults + `ssl_certs_file` | our root's file beside native and webpki | — |
//!
//! and a missing `ssl_certs_file` fails before any connection, naming the path.
//!
//! The native row needs `SSL_CERT_FILE` set for rustls-native-certs, and tests cannot set
//! variables in their own process (`unsafe_code` is forbidden), so the test re-runs this test
//! binary on itself (`--exact`) with the variable set and [`CHILD_ENV`] holding the server
//! address; the child prints one result line that the parent checks.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anchorage_test_support::peer::{self, Running};
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::tls::{TlsTrustError, TrustConfig, TrustReport, TrustSourceKind};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection};

/// The name the server's leaf is issued for.
const HOST: &str = "localhost";

/// Longest any socket read or write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Set (to the server's address) in the child process of the native row.
const CHILD_ENV: &str = "ANCHORAGE_RUSTLS_BUILDER_CHILD";

/// The native row's test name, which the child is run with (`--exact`).
const NATIVE_TEST: &str = "native_only_honours_ssl_cert_file";

/// Starts the child's result line.
const RESULT_MARKER: &str = "anchorage-rustls-child-result:";

/// A running server for a private PKI, our root's PEM and an unrelated root's PEM.
struct Fixture {
    server: Running,
    root_pem: PathBuf,
    unrelated_pem: PathBuf,
    tmp: TempDir,
}

impl Fixture {
    /// `None` when openssl is missing locally (it is the server).
    fn start() -> Option<Self> {
        let tmp = tempdir().expect("temp dir");
        let pki = Pki::new("Anchorage Rustls Builder");
        let files = pki.write_server_files(tmp.path());
        let unrelated_pem =
            pki::root_ca("Unrelated Rustls Builder Root CA").write_pem(tmp.path(), "unrelated.pem");
        let server = peer::openssl_server(&files.cert, &files.key, Some(&files.chain))?;
        Some(Self {
            server,
            root_pem: files.root,
            unrelated_pem,
            tmp,
        })
    }

    /// A directory holding a copy of `pem` and a file the name filter skips.
    fn ca_dir(&self, name: &str, pem: &Path) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir(&dir).expect("create CA dir");
        std::fs::copy(pem, dir.join("ca.crt")).expect("copy CA");
        std::fs::copy(pem, dir.join("README.md")).expect("copy non-certificate name");
        dir
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

fn client(config: &TrustConfig) -> (ClientConfig, TrustReport) {
    config
        .client_config(provider())
        .unwrap_or_else(|e| panic!("build client config from {config:?}: {e}"))
}

/// Connects, completes the handshake, sends `GET /` and returns the first line of the answer.
/// A TLS failure is returned; any other I/O failure (a timeout, a reset) fails the test.
fn fetch(config: ClientConfig, addr: SocketAddr) -> Result<String, rustls::Error> {
    let name = ServerName::try_from(HOST).expect("server name");
    let mut conn = ClientConnection::new(Arc::new(config), name)?;
    let mut sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the server");
    sock.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    sock.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(tls_error)?;
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(tls_error)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tls.read(&mut buf).map_err(tls_error)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

/// The rustls error inside an I/O error; panics on a plain I/O error.
fn tls_error(e: io::Error) -> rustls::Error {
    let text = e.to_string();
    match e
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => *tls,
        _ => panic!("I/O failure, not a TLS verdict: {text}"),
    }
}

fn assert_verified(result: Result<String, rustls::Error>, row: &str) {
    match result {
        Ok(status) => assert!(
            status.starts_with("HTTP/1.0 200"),
            "{row}: handshake passed but the answer was {status:?}"
        ),
        Err(e) => panic!("{row}: expected a verified handshake, got {e:?}"),
    }
}

fn assert_unknown_issuer(result: Result<String, rustls::Error>, row: &str) {
    match result {
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
        other => panic!("{row}: expected UnknownIssuer, got {other:?}"),
    }
}

#[test]
fn file_only_trusts_the_private_root_and_nothing_else() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let (config, report) = client(&file_only(&fx.root_pem));
    assert_eq!(report.anchors, 1, "{report}");
    assert_verified(fetch(config, fx.server.addr), "ssl_certs_file = root.pem");

    let (config, report) = client(&file_only(&fx.unrelated_pem));
    assert_eq!(report.anchors, 1, "{report}");
    assert_unknown_issuer(
        fetch(config, fx.server.addr),
        "ssl_certs_file = unrelated.pem",
    );
}

#[test]
fn webpki_only_does_not_trust_a_private_root() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let config = TrustConfig {
        load_native_certs: false,
        ..TrustConfig::default()
    };
    let (client_config, report) = client(&config);
    let webpki = report
        .source(TrustSourceKind::Webpki)
        .expect("webpki entry");
    assert!(report.anchors > 100, "{report}");
    assert_eq!(
        (webpki.added, webpki.rejected.len()),
        (webpki.certificates, 0),
        "{report}"
    );
    // The JSON the CLI prints.
    let json = serde_json::to_value(&report).expect("serialize report");
    assert_eq!(json["anchors"], report.anchors);
    assert_eq!(json["sources"][0]["kind"], "native");
    assert_eq!(json["sources"][0]["enabled"], false);
    assert_eq!(json["sources"][1]["kind"], "webpki");
    assert_eq!(json["sources"][1]["added"], report.anchors);

    assert_unknown_issuer(fetch(client_config, fx.server.addr), "webpki only");
}

#[test]
fn native_only_honours_ssl_cert_file() {
    if let Ok(addr) = std::env::var(CHILD_ENV) {
        return native_child(&addr);
    }
    let Some(fx) = Fixture::start() else {
        return;
    };
    let run_child = |ssl_cert_file: &Path| {
        let exe = std::env::current_exe().expect("current test binary");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", NATIVE_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, fx.server.addr.to_string())
            .env("SSL_CERT_FILE", ssl_cert_file)
            .env_remove("SSL_CERT_DIR");
        let run = peer::run_client(&mut cmd, Duration::from_secs(20));
        assert!(
            run.status.success(),
            "child failed: {}\n{}",
            run.status,
            run.output()
        );
        run.stdout
            .lines()
            .find_map(|l| l.split_once(RESULT_MARKER).map(|(_, result)| result))
            .map(str::trim)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                panic!(
                    "the child printed no result line (is `{NATIVE_TEST}` still the test's exact name?)\n{}",
                    run.output()
                )
            })
    };
    assert_eq!(run_child(&fx.root_pem), "verified anchors=1");
    assert_eq!(run_child(&fx.unrelated_pem), "unknown-issuer anchors=1");
}

/// The child's side of the native row: native roots only (from `SSL_CERT_FILE`), one line out.
#[allow(clippy::print_stdout)] // the parent reads this line from the child's stdout
fn native_child(addr: &str) {
    let addr: SocketAddr = addr.parse().expect("server address from the parent");
    let config = TrustConfig {
        load_webpki_certs: false,
        ..TrustConfig::default()
    };
    let (client_config, report) = client(&config);
    let outcome = match fetch(client_config, addr) {
        Ok(status) if status.starts_with("HTTP/1.0 200") => "verified".to_owned(),
        Ok(status) => format!("unexpected-answer {status:?}"),
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "unknown-issuer".to_owned()
        }
        Err(e) => format!("other-error {e:?}"),
    };
    // The harness prints `test <name> ... ` on the same line first.
    println!("\n{RESULT_MARKER} {outcome} anchors={}", report.anchors);
}

#[test]
fn extra_ca_path_directory_trusts_the_private_root() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let only = |dir: PathBuf| TrustConfig {
        load_native_certs: false,
        load_webpki_certs: false,
        ssl_certs_file: None,
        extra_ca_paths: vec![dir],
    };
    let (config, report) = client(&only(fx.ca_dir("trusted.d", &fx.root_pem)));
    let extra = report.source(TrustSourceKind::ExtraCaPath).expect("extra");
    assert_eq!((extra.added, report.anchors), (1, 1), "{report}");
    assert_verified(fetch(config, fx.server.addr), "extra CA dir with our root");

    let (config, _) = client(&only(fx.ca_dir("untrusted.d", &fx.unrelated_pem)));
    assert_unknown_issuer(
        fetch(config, fx.server.addr),
        "extra CA dir with an unrelated root",
    );
}

#[test]
fn defaults_plus_ssl_certs_file_trusts_the_private_root() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let config = TrustConfig {
        ssl_certs_file: Some(fx.root_pem.clone()),
        ..TrustConfig::default()
    };
    let (client_config, report) = client(&config);
    let file = report
        .source(TrustSourceKind::SslCertsFile)
        .expect("file entry");
    assert_eq!(file.added, 1, "{report}");
    assert!(report.anchors > 100, "{report}");
    assert_verified(
        fetch(client_config, fx.server.addr),
        "defaults + ssl_certs_file",
    );
}

#[test]
fn missing_ssl_certs_file_fails_before_connecting() {
    let tmp = tempdir().expect("temp dir");
    let missing = tmp.path().join("no-such-ca.pem");
    let config = TrustConfig {
        ssl_certs_file: Some(missing.clone()),
        ..TrustConfig::default()
    };
    let err = config
        .client_config(provider())
        .expect_err("a missing ssl_certs_file must fail");
    assert!(
        matches!(&err, TlsTrustError::Missing { setting: TrustSourceKind::SslCertsFile, path } if *path == missing),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

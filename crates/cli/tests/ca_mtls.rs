//! `anchorage ca` end to end over real mutual TLS: every certificate, key and trust file here was
//! written by `anchorage ca issue` (nothing from rcgen or the `openssl` CLI), and each handshake has
//! a real peer on one side.
//!
//! - `openssl s_server -Verify -verify_return_error` (a client certificate is required) ↔ a rustls
//!   client: the handshake completes and an HTTP `GET` round-trips (`-www`, which also echoes the
//!   client certificate it saw); a client certificate from another CA is refused by the server; a
//!   client that trusts only the other CA refuses the server.
//! - a rustls server (`WebPkiClientVerifier`, client certificates required) ↔ `openssl s_client
//!   -verify_return_error`: verification code 0 and a line echoed; a client certificate from another
//!   CA is refused by the server (unknown issuer); `s_client` trusting only the other CA fails.
//!
//! Each case runs with and without `ca init --intermediate`, for P-256, Ed25519 and RSA-2048 keys,
//! and with the kinds `server`, `client`, `service` and `webhook`. There are two other CAs: one with
//! names of its own (webpki: `UnknownIssuer`), and one made with the same defaults as ours, so the
//! same names and other keys, as with a second installation (webpki: `BadSignature`). Before any
//! handshake, each output is checked: exactly four files, key 0600 and PKCS#8 that OpenSSL reads
//! and that matches the certificate, and `openssl verify -purpose` passes. Everything listens on
//! 127.0.0.1 only, and every wait is bounded.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anchorage_test_support::peer::{self, ClientRun, Running};
use anchorage_test_support::{TempDir, tempdir};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};

/// Socket reads and writes, connecting, and the rustls server waiting for its one client.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// An `openssl` client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// One `anchorage ca` run (RSA key generation included).
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// --- the CLI ------------------------------------------------------------------------------------

/// Runs `anchorage ca <args>` against the data directory `data` (bounded, output captured). The
/// passphrase variable is removed, so the CA key is kept in clear in a 0600 file; `HOME` and the
/// XDG directories point into the test's directory so nothing can reach the user's own data.
fn anchorage_ca(data: &Path, args: &[&str]) -> ClientRun {
    let home = data.parent().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.arg("ca")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("ANCHORAGE_DATA_DIR", data)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .env_remove("ANCHORAGE_LOG");
    peer::run_client(&mut cmd, CLI_TIMEOUT)
}

/// A CA made by `anchorage ca init` in its own data directory.
struct Ca {
    data: PathBuf,
}

impl Ca {
    /// `anchorage ca init --key KEY [--intermediate] EXTRA…`.
    fn init(data: PathBuf, case: &Case, extra: &[&str]) -> Ca {
        let mut args = vec!["init", "--key", case.key];
        args.extend(extra);
        if case.intermediate {
            args.push("--intermediate");
        }
        let run = anchorage_ca(&data, &args);
        assert!(
            run.status.success(),
            "anchorage ca init {args:?} failed ({}):\n{}",
            run.status,
            run.output()
        );
        Ca { data }
    }

    /// `anchorage ca issue --cn CN --san … --kind KIND --ttl 24h --key KEY --out OUT`, then the
    /// checks every output must pass (see [`Issued::read`]).
    fn issue(&self, out: PathBuf, cn: &str, sans: &[&str], kind: &str, case: &Case) -> Issued {
        let out_str = out.to_str().unwrap();
        let mut args = vec!["issue", "--cn", cn];
        for san in sans {
            args.extend(["--san", san]);
        }
        args.extend([
            "--kind", kind, "--ttl", "24h", "--key", case.key, "--out", out_str,
        ]);
        let run = anchorage_ca(&self.data, &args);
        assert!(
            run.status.success(),
            "anchorage ca issue {args:?} failed ({}):\n{}",
            run.status,
            run.output()
        );
        Issued::read(out, kind, case)
    }
}

/// What one `anchorage ca issue --out DIR` wrote.
struct Issued {
    /// The leaf alone.
    cert: PathBuf,
    /// The leaf then the intermediates.
    chain: PathBuf,
    /// The leaf's PKCS#8 key.
    key: PathBuf,
    /// The roots to trust.
    ca: PathBuf,
    /// `chain.pem` without its first certificate (the leaf), for `openssl -cert_chain`, which
    /// sends every certificate it is given after `-cert`; written beside the output directory, not
    /// in it. `None` when the chain is the leaf alone.
    intermediates: Option<PathBuf>,
}

impl Issued {
    /// Checks that `out` holds exactly `cert.pem`, `chain.pem`, `key.pem` (0600) and `ca.pem`;
    /// that the chain starts with the leaf and has one intermediate when the CA has one; and that
    /// `openssl verify` accepts the leaf for its purpose with only these files.
    #[allow(clippy::disallowed_methods)] // a test fixture derived from the outputs, not an output
    fn read(out: PathBuf, kind: &str, case: &Case) -> Issued {
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["ca.pem", "cert.pem", "chain.pem", "key.pem"],
            "the files in {}",
            out.display()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(out.join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "key.pem mode {mode:o}");
        }
        let issued = Issued {
            cert: out.join("cert.pem"),
            chain: out.join("chain.pem"),
            key: out.join("key.pem"),
            ca: out.join("ca.pem"),
            intermediates: None,
        };
        let key_pem = std::fs::read_to_string(&issued.key).unwrap();
        assert!(
            key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "key.pem is PKCS#8: {}",
            key_pem.lines().next().unwrap_or_default()
        );
        let leaf = certs(&issued.cert);
        let chain = certs(&issued.chain);
        let roots = certs(&issued.ca);
        assert_eq!(leaf.len(), 1, "cert.pem holds the leaf alone");
        assert_eq!(
            chain.first(),
            leaf.first(),
            "chain.pem starts with the leaf"
        );
        assert_eq!(
            chain.len(),
            1 + usize::from(case.intermediate),
            "chain.pem is the leaf then the intermediate (if any)"
        );
        assert!(!roots.is_empty(), "ca.pem holds the roots");
        for root in &roots {
            assert!(!chain.contains(root), "chain.pem does not carry a root");
        }

        let mut intermediates = None;
        if chain.len() > 1 {
            let blocks = pem_blocks(&std::fs::read_to_string(&issued.chain).unwrap());
            let path = out.with_extension("intermediates.pem");
            std::fs::write(&path, blocks[1..].concat()).unwrap();
            intermediates = Some(path);
        }
        let issued = Issued {
            intermediates,
            ..issued
        };
        issued.openssl_reads_key();
        issued.openssl_verify(kind);
        issued
    }

    /// OpenSSL reads `key.pem`, and it is the key of `cert.pem`.
    fn openssl_reads_key(&self) {
        let Some(openssl) = peer::require("openssl") else {
            return;
        };
        let key = peer::run_client(
            Command::new(&openssl)
                .args(["pkey", "-pubout", "-in"])
                .arg(&self.key),
            CLIENT_TIMEOUT,
        );
        assert!(
            key.status.success(),
            "OpenSSL cannot read {} ({}): a peer built on OpenSSL cannot use it. OpenSSL \
             before 3.5 refuses PKCS#8 v2 (RFC 5958 OneAsymmetricKey, version 1 with the \
             public key, as ring writes Ed25519 keys); PKCS#8 v1 (RFC 8410) is read \
             everywhere.\n{}",
            self.key.display(),
            key.status,
            key.output()
        );
        let cert = peer::run_client(
            Command::new(&openssl)
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(&self.cert),
            CLIENT_TIMEOUT,
        );
        assert!(cert.status.success(), "{}", cert.output());
        assert_eq!(
            key.stdout, cert.stdout,
            "key.pem is the key of cert.pem (public keys)"
        );
    }

    /// `openssl verify -purpose …` with `ca.pem` as the only trust.
    fn openssl_verify(&self, kind: &str) {
        let Some(openssl) = peer::require("openssl") else {
            return;
        };
        let purposes: &[&str] = match kind {
            "client" => &["sslclient"],
            "service" => &["sslserver", "sslclient"],
            _ => &["sslserver"],
        };
        for purpose in purposes {
            let mut cmd = Command::new(&openssl);
            cmd.args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(&self.ca);
            if let Some(intermediates) = &self.intermediates {
                cmd.arg("-untrusted").arg(intermediates);
            }
            cmd.arg(&self.cert);
            let run = peer::run_client(&mut cmd, CLIENT_TIMEOUT);
            assert!(
                run.status.success() && run.stdout.trim_end().ends_with(": OK"),
                "openssl verify -purpose {purpose} of {}:\n{}",
                self.cert.display(),
                run.output()
            );
        }
    }

    /// `-cert_chain FILE` when there are intermediates.
    fn chain_args(&self) -> Vec<String> {
        match &self.intermediates {
            Some(path) => vec!["-cert_chain".to_owned(), path.to_str().unwrap().to_owned()],
            None => Vec::new(),
        }
    }
}

/// The PEM certificate blocks of `text`, each with its trailing newline.
fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    text.split_inclusive(END)
        .filter_map(|part| part.find(BEGIN).map(|at| format!("{}\n", &part[at..])))
        .collect()
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("read certificates from {}: {e}", path.display()))
}

fn private_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("read the key in {}: {e}", path.display()))
}

fn root_store(path: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in certs(path) {
        roots.add(cert).unwrap();
    }
    roots
}

// --- the cases ----------------------------------------------------------------------------------

/// One combination of CA shape, key type and kinds.
struct Case {
    /// `--key` for `ca init` and every `ca issue`.
    key: &'static str,
    /// `ca init --intermediate`.
    intermediate: bool,
    /// The server certificate's `--kind`.
    server_kind: &'static str,
    /// The client certificate's `--kind`.
    client_kind: &'static str,
}

/// A client certificate from a CA that is not ours, and how webpki must refuse it.
struct Stranger {
    /// What sort of other CA, for messages.
    what: &'static str,
    /// What its `ca issue` wrote (its `ca.pem` holds the other CA's root).
    issued: Issued,
    /// The error webpki (rustls) gives for a chain of this CA checked against our roots, and for
    /// our chain checked against this CA's roots.
    webpki_error: CertificateError,
}

/// Our CA and what it issued (a server and a client), and clients of two other CAs.
struct Setup {
    server: Issued,
    client: Issued,
    strangers: [Stranger; 2],
    _tmp: TempDir,
}

/// Makes the three CAs and issues the certificates. `None` when openssl is missing locally.
fn setup(case: &Case) -> Option<Setup> {
    peer::require("openssl")?;
    let tmp = tempdir().unwrap();
    let ours = Ca::init(tmp.path().join("ours"), case, &[]);
    // Another installation with the defaults: the same names as ours, other keys. Path
    // building finds an issuer by name, so webpki reports the signature that does not verify.
    let twin = Ca::init(tmp.path().join("twin"), case, &[]);
    // A CA with names of its own: no issuer is found at all.
    let mut named = vec!["--cn", "Elsewhere Root CA"];
    if case.intermediate {
        named.extend(["--intermediate-cn", "Elsewhere Intermediate CA"]);
    }
    let elsewhere = Ca::init(tmp.path().join("elsewhere"), case, &named);

    let server = ours.issue(
        tmp.path().join("server"),
        "localhost",
        &["localhost", "127.0.0.1"],
        case.server_kind,
        case,
    );
    let client_of = |ca: &Ca, dir: &str| {
        ca.issue(
            tmp.path().join(dir),
            "web.default.cluster.local",
            &["spiffe://cluster.local/ns/default/sa/web"],
            case.client_kind,
            case,
        )
    };
    let client = client_of(&ours, "client");
    let strangers = [
        Stranger {
            what: "a CA with other names",
            issued: client_of(&elsewhere, "elsewhere-client"),
            webpki_error: CertificateError::UnknownIssuer,
        },
        Stranger {
            what: "a CA with the same names (another installation with the defaults)",
            issued: client_of(&twin, "twin-client"),
            webpki_error: CertificateError::BadSignature,
        },
    ];
    for stranger in &strangers {
        assert_ne!(
            certs(&client.ca),
            certs(&stranger.issued.ca),
            "{}: the roots differ from ours",
            stranger.what
        );
    }
    Some(Setup {
        server,
        client,
        strangers,
        _tmp: tmp,
    })
}

// --- openssl s_server ↔ rustls client -----------------------------------------------------------

/// `openssl s_server -www` requiring a client certificate that chains to `trust`.
fn openssl_mtls_server(server: &Issued, trust: &Path) -> Option<Running> {
    let trust = trust.to_str().unwrap();
    // The helper adds `-cert_chain` with the intermediates alone. Without -verify_return_error,
    // `-Verify` only logs a verification error and serves the client anyway.
    let extra = ["-Verify", "5", "-verify_return_error", "-CAfile", trust];
    peer::openssl_server_with_args(
        &server.cert,
        &server.key,
        server.intermediates.as_deref(),
        &extra,
    )
}

/// A rustls client config trusting `trust`, presenting `identity` (its `chain.pem` and `key.pem`).
fn client_config(trust: &Path, identity: &Issued) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(root_store(trust))
        .with_client_auth_cert(certs(&identity.chain), private_key(&identity.key))
        .unwrap();
    Arc::new(config)
}

/// Where the rustls client's exchange with `s_server -www` ended.
#[derive(Debug)]
enum ClientEnd {
    /// The HTTP answer.
    Answered(String),
    /// The handshake failed at the client.
    Handshake(std::io::Error),
    /// The client finished its handshake, then sending the request or reading the answer failed
    /// (under TLS 1.3 the server's refusal of the client certificate arrives here).
    Exchange(std::io::Error),
}

/// Connects to `port` as `server_name`, sends `GET /` and reads the answer to the end.
fn https_get(port: u16, config: Arc<ClientConfig>, server_name: &str) -> ClientEnd {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to s_server");
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return ClientEnd::Handshake(e);
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    if let Err(e) = tls
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .and_then(|()| tls.flush())
    {
        return ClientEnd::Exchange(e);
    }
    let mut body = Vec::new();
    match tls.read_to_end(&mut body) {
        Ok(_) => ClientEnd::Answered(String::from_utf8_lossy(&body).into_owned()),
        // s_server may close the socket without a close_notify once the page is sent.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !body.is_empty() => {
            ClientEnd::Answered(String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => ClientEnd::Exchange(e),
    }
}

/// The rustls error inside an I/O error from a rustls stream.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn openssl_server_with_rustls_client(case: Case) {
    let Some(s) = setup(&case) else { return };
    let Some(server) = openssl_mtls_server(&s.server, &s.server.ca) else {
        return;
    };

    // Positive, by name and by IP address: the handshake completes, the page comes back, and it
    // shows the client certificate the server accepted.
    for name in ["localhost", "127.0.0.1"] {
        let config = client_config(&s.client.ca, &s.client);
        match https_get(server.port(), config, name) {
            ClientEnd::Answered(page) => {
                assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
                assert!(
                    page.contains("Client certificate")
                        && page.contains("web.default.cluster.local"),
                    "s_server saw our client certificate:\n{page}"
                );
            }
            other => panic!("mTLS to s_server as {name:?} failed: {other:?}"),
        }
    }

    for stranger in &s.strangers {
        let what = stranger.what;
        // Negative: a client certificate from the other CA; the server refuses it (OpenSSL
        // finds no issuer: the authority key identifier matches none of our roots).
        let config = client_config(&s.client.ca, &stranger.issued);
        match https_get(server.port(), config, "localhost") {
            ClientEnd::Handshake(e) | ClientEnd::Exchange(e) => assert!(
                matches!(
                    tls_error(&e),
                    Some(rustls::Error::AlertReceived(
                        rustls::AlertDescription::UnknownCA
                    ))
                ),
                "{what}: expected s_server's unknown_ca alert, got {e:?}"
            ),
            ClientEnd::Answered(page) => {
                panic!("{what}: s_server accepted its client certificate:\n{page}")
            }
        }

        // Negative: the client trusts only the other CA; it refuses the server.
        let config = client_config(&stranger.issued.ca, &s.client);
        match https_get(server.port(), config, "localhost") {
            ClientEnd::Handshake(e) => assert!(
                matches!(
                    tls_error(&e),
                    Some(rustls::Error::InvalidCertificate(c)) if *c == stranger.webpki_error
                ),
                "{what}: expected the client to refuse our server with {:?}, got {e:?}",
                stranger.webpki_error
            ),
            other => panic!("{what}: a client trusting only it accepted our server: {other:?}"),
        }
    }
    drop(server);
}

// --- rustls server ↔ openssl s_client -----------------------------------------------------------

/// What the rustls server's one connection came to: the line it echoed, or its error.
type ServerEnd = Result<String, std::io::Error>;

/// A rustls server on a fresh loopback port, requiring a client certificate that chains to
/// `trust`, presenting `identity`'s `chain.pem` and `key.pem`. It serves one connection: reads a
/// line, answers `echo: <line>`, closes. Gives up after [`IO_TIMEOUT`] without a client.
fn rustls_mtls_server(identity: &Issued, trust: &Path) -> (u16, mpsc::Receiver<ServerEnd>) {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(trust)), provider())
            .build()
            .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&identity.chain), private_key(&identity.key))
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(serve_one(&listener, config));
    });
    (port, rx)
}

fn serve_one(listener: &TcpListener, config: Arc<ServerConfig>) -> ServerEnd {
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let mut sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() > IO_TIMEOUT {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no client connected",
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let mut line = String::new();
    {
        let mut reader = BufReader::new(rustls::Stream::new(&mut conn, &mut sock));
        reader.read_line(&mut line)?;
    }
    let line = line.trim_end().to_owned();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(format!("echo: {line}\n").as_bytes())?;
    tls.flush()?;
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    Ok(line)
}

/// Waits (bounded) for the rustls server's outcome.
fn server_end(rx: &mpsc::Receiver<ServerEnd>) -> ServerEnd {
    rx.recv_timeout(IO_TIMEOUT + Duration::from_secs(10))
        .expect("the rustls server thread did not finish in time")
}

/// `openssl s_client` to `port` as `localhost`, presenting `identity` (`cert.pem`, `key.pem`, the
/// intermediates), trusting `trust` with `-verify_return_error`, sending one line and staying
/// until the server closes (`-ign_eof`).
#[allow(clippy::disallowed_methods)] // the client's input, a test fixture
fn openssl_mtls_client(
    openssl: &Path,
    port: u16,
    identity: &Issued,
    trust: &Path,
    scratch: &Path,
) -> ClientRun {
    let input = scratch.join("s_client-input.txt");
    std::fs::write(&input, "ping from s_client\n").unwrap();
    // run_client closes stdin; `exec … < FILE` gives s_client its line and keeps the process the
    // one that run_client kills on timeout.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"exec "$0" "$@" < "$ANCHORAGE_TEST_INPUT""#)
        .arg(openssl)
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-cert")
        .arg(&identity.cert)
        .arg("-key")
        .arg(&identity.key)
        .args(identity.chain_args())
        .arg("-CAfile")
        .arg(trust)
        .env("ANCHORAGE_TEST_INPUT", &input);
    peer::run_client(&mut cmd, CLIENT_TIMEOUT)
}

fn rustls_server_with_openssl_client(case: Case) {
    let Some(s) = setup(&case) else { return };
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let scratch = tempdir().unwrap();

    // Positive: s_client verifies the server (code 0) and the line comes back.
    let (port, rx) = rustls_mtls_server(&s.server, &s.server.ca);
    let run = openssl_mtls_client(&openssl, port, &s.client, &s.client.ca, scratch.path());
    let end = server_end(&rx);
    assert!(
        matches!(&end, Ok(line) if line == "ping from s_client"),
        "the rustls server: {end:?}\ns_client ({}):\n{}",
        run.status,
        run.output()
    );
    assert!(
        run.stdout.contains("Verify return code: 0 (ok)")
            && run.stdout.contains("echo: ping from s_client"),
        "s_client ({}):\n{}",
        run.status,
        run.output()
    );

    for stranger in &s.strangers {
        let what = stranger.what;
        // Negative: s_client presents a certificate from the other CA; the server refuses it.
        let (port, rx) = rustls_mtls_server(&s.server, &s.server.ca);
        let run = openssl_mtls_client(
            &openssl,
            port,
            &stranger.issued,
            &s.client.ca,
            scratch.path(),
        );
        let end = server_end(&rx);
        match &end {
            Err(e) => assert!(
                matches!(
                    tls_error(e),
                    Some(rustls::Error::InvalidCertificate(c)) if *c == stranger.webpki_error
                ),
                "{what}: expected the server to refuse the client with {:?}, got {e:?}\n\
                 s_client:\n{}",
                stranger.webpki_error,
                run.output()
            ),
            Ok(line) => panic!(
                "{what}: the rustls server accepted its client and read {line:?}\n{}",
                run.output()
            ),
        }
        // rustls's alert for the refusal, as s_client reports it: unknown_ca (48) for an unknown
        // issuer, decrypt_error (51) for a same-named issuer whose signature does not verify.
        let alert = match &stranger.webpki_error {
            CertificateError::UnknownIssuer => {
                ":SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:"
            }
            CertificateError::BadSignature => {
                ":SSL routines:ssl3_read_bytes:tlsv1 alert decrypt error:"
            }
            other => panic!("{what}: no alert known for {other:?}"),
        };
        assert!(
            !run.stdout.contains("echo:")
                && run.status.code() == Some(1)
                && run.output().contains(alert),
            "{what}: s_client ({}) should have got the server's alert:\n{}",
            run.status,
            run.output()
        );

        // Negative: s_client trusts only the other CA; with -verify_return_error it fails.
        let (port, rx) = rustls_mtls_server(&s.server, &s.server.ca);
        let run = openssl_mtls_client(
            &openssl,
            port,
            &s.client,
            &stranger.issued.ca,
            scratch.path(),
        );
        let end = server_end(&rx);
        let output = run.output();
        assert!(
            run.status.code() == Some(1)
                && output
                    .lines()
                    .any(|l| l == "verify error:num=20:unable to get local issuer certificate")
                && output.contains(
                    ":SSL routines:tls_post_process_server_certificate:certificate verify failed:"
                ),
            "{what}: s_client trusting only it ({}) should have refused our server:\n{}",
            run.status,
            run.output()
        );
        // The server sees s_client's own unknown_ca alert, not a timeout or a reset.
        assert!(
            matches!(
                end.as_ref().err().and_then(tls_error),
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA
                ))
            ),
            "{what}: the server should have seen s_client abort with unknown_ca: {end:?}"
        );
    }
}

// --- the matrix ---------------------------------------------------------------------------------

#[test]
fn s_server_to_rustls_p256_root() {
    openssl_server_with_rustls_client(Case {
        key: "p256",
        intermediate: false,
        server_kind: "server",
        client_kind: "client",
    });
}

#[test]
fn s_server_to_rustls_p256_intermediate() {
    openssl_server_with_rustls_client(Case {
        key: "p256",
        intermediate: true,
        server_kind: "server",
        client_kind: "client",
    });
}

#[test]
fn s_server_to_rustls_ed25519_root() {
    openssl_server_with_rustls_client(Case {
        key: "ed25519",
        intermediate: false,
        server_kind: "service",
        client_kind: "service",
    });
}

#[test]
fn s_server_to_rustls_ed25519_intermediate() {
    openssl_server_with_rustls_client(Case {
        key: "ed25519",
        intermediate: true,
        server_kind: "service",
        client_kind: "service",
    });
}

#[test]
fn s_server_to_rustls_rsa2048_root() {
    openssl_server_with_rustls_client(Case {
        key: "rsa2048",
        intermediate: false,
        server_kind: "webhook",
        client_kind: "client",
    });
}

#[test]
fn s_server_to_rustls_rsa2048_intermediate() {
    openssl_server_with_rustls_client(Case {
        key: "rsa2048",
        intermediate: true,
        server_kind: "webhook",
        client_kind: "client",
    });
}

#[test]
fn rustls_server_to_s_client_p256_root() {
    rustls_server_with_openssl_client(Case {
        key: "p256",
        intermediate: false,
        server_kind: "server",
        client_kind: "client",
    });
}

#[test]
fn rustls_server_to_s_client_p256_intermediate() {
    rustls_server_with_openssl_client(Case {
        key: "p256",
        intermediate: true,
        server_kind: "server",
        client_kind: "client",
    });
}

#[test]
fn rustls_server_to_s_client_ed25519_root() {
    rustls_server_with_openssl_client(Case {
        key: "ed25519",
        intermediate: false,
        server_kind: "service",
        client_kind: "service",
    });
}

#[test]
fn rustls_server_to_s_client_ed25519_intermediate() {
    rustls_server_with_openssl_client(Case {
        key: "ed25519",
        intermediate: true,
        server_kind: "service",
        client_kind: "service",
    });
}

#[test]
fn rustls_server_to_s_client_rsa2048_root() {
    rustls_server_with_openssl_client(Case {
        key: "rsa2048",
        intermediate: false,
        server_kind: "webhook",
        client_kind: "client",
    });
}

#[test]
fn rustls_server_to_s_client_rsa2048_intermediate() {
    rustls_server_with_openssl_client(Case {
        key: "rsa2048",
        intermediate: true,
        server_kind: "webhook",
        client_kind: "client",
    });
}

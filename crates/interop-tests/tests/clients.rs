//! Interop tier: real TLS clients verify a real server using only our outputs.
//!
//! Each test makes a private PKI (root → intermediate → `localhost` leaf), starts `openssl s_server`
//! on loopback with the leaf and intermediate, and writes two bundles with the library writers:
//!
//! - **trusted**: our root, an unrelated private root and Mozilla's roots, so the PEM file and the
//!   hashed directory hold well over a hundred entries and a client must find ours among them;
//! - **untrusted** (the negative control): the same bundle without our root.
//!
//! Every client must complete the handshake with the trusted outputs and fail the same handshake
//! with the untrusted ones, and the output must say why ("unable to get local issuer certificate"),
//! so a pass cannot come from a broken server or a client that did not verify. Hashed directories
//! are checked in both layouts ([`DirLayout::Files`] and [`DirLayout::Links`]).
//!
//! Clients are kept off the machine's trust store, so only our files can make them pass: variables
//! such as `SSL_CERT_FILE`, `SSL_CERT_DIR` and `CURL_CA_BUNDLE` are removed from their environment,
//! `openssl s_client` gets `-no-CAfile`/`-no-CApath`/`-no-CAstore`, curl (whose build also loads a
//! default CA file and directory) gets an empty directory beside `--cacert` and an unrelated CA
//! file beside `--capath`, and Python's `ssl.create_default_context(cafile=…|capath=…)` loads only
//! what it is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anchorage_interop_tests::without_ambient;
use anchorage_test_support::peer::{self, ClientRun, Running};
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::{
    Bundle, DirLayout, LoadOptions, OpensslDirOptions, PemOptions, Policy, Source, load,
    write_openssl_dir, write_pem,
};
use anchorage_x509::Certificate;

/// Longest a client may take for one handshake before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The name the server's leaf is issued for.
const HOST: &str = "localhost";

/// What a client is given: the PEM bundle, or the hashed directory in one layout.
#[derive(Clone, Copy, Debug)]
enum Store {
    Pem,
    Dir(DirLayout),
}

/// Every form of our output.
const PEM_AND_DIRS: &[Store] = &[
    Store::Pem,
    Store::Dir(DirLayout::Files),
    Store::Dir(DirLayout::Links),
];

/// One bundle written in every form.
struct Outputs {
    pem: PathBuf,
    files_dir: PathBuf,
    links_dir: PathBuf,
}

impl Outputs {
    /// Builds the bundle from `sources` with the default policy and writes the PEM file and both
    /// directory layouts under `dir`.
    fn write(sources: &[Source], dir: &Path) -> (Self, Bundle) {
        let (bundle, report) = Policy::default()
            .apply(load(sources, &LoadOptions::default()))
            .expect("build bundle");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let outputs = Self {
            pem: dir.join("ca-bundle.pem"),
            files_dir: dir.join("certs-files"),
            links_dir: dir.join("certs-links"),
        };
        write_pem(&bundle, &outputs.pem, &PemOptions::default()).expect("write PEM");
        for (path, layout) in [
            (&outputs.files_dir, DirLayout::Files),
            (&outputs.links_dir, DirLayout::Links),
        ] {
            let options = OpensslDirOptions {
                layout,
                ..OpensslDirOptions::default()
            };
            write_openssl_dir(&bundle, path, &options).expect("write hashed directory");
        }
        (outputs, bundle)
    }

    fn path(&self, store: Store) -> &Path {
        match store {
            Store::Pem => &self.pem,
            Store::Dir(DirLayout::Files) => &self.files_dir,
            Store::Dir(DirLayout::Links) => &self.links_dir,
        }
    }
}

/// A running server and the outputs that must, and must not, let a client trust it.
struct Fixture {
    server: Running,
    trusted: Outputs,
    untrusted: Outputs,
    /// Certificates in the trusted bundle (the untrusted one has one fewer).
    trusted_len: usize,
    /// A PEM file holding only an unrelated CA, to displace a client's built-in default CA file.
    unrelated_ca: PathBuf,
    /// An empty directory, to displace a client's built-in default CA directory.
    empty_dir: PathBuf,
    _tmp: TempDir,
}

/// What a client prints when it verifies the server, and when it refuses it.
struct Expect {
    /// Every one of these appears in the output of a verified handshake.
    verified: Vec<String>,
    /// Every one of these appears in the output of the negative control.
    rejected: Vec<String>,
}

impl Expect {
    fn new(verified: &[&str], rejected: &[&str]) -> Self {
        let owned = |v: &[&str]| v.iter().map(|m| (*m).to_owned()).collect();
        Self {
            verified: owned(verified),
            rejected: owned(rejected),
        }
    }
}

impl Fixture {
    /// Makes the PKI, writes both bundles and starts the server; `None` when openssl is missing
    /// locally (the server is `openssl s_server`).
    fn start() -> Option<Self> {
        let tmp = tempdir().expect("temp dir");
        let pki = Pki::new("Anchorage Interop Clients");
        let unrelated = pki::root_ca("Unrelated Interop Root CA");
        let inputs = tmp.path().join("in");
        std::fs::create_dir(&inputs).expect("create input dir");
        let root_pem = pki.root.write_pem(&inputs, "root.pem");
        let unrelated_ca = unrelated.write_pem(&inputs, "unrelated.pem");
        let empty_dir = tmp.path().join("empty");
        std::fs::create_dir(&empty_dir).expect("create empty dir");

        let common = [Source::Path(unrelated_ca.clone()), Source::Mozilla];
        let trusted_dir = tmp.path().join("trusted");
        let untrusted_dir = tmp.path().join("untrusted");
        let (trusted, with_root) = Outputs::write(
            &[&[Source::Path(root_pem)][..], &common[..]].concat(),
            &trusted_dir,
        );
        let (untrusted, without_root) = Outputs::write(&common, &untrusted_dir);

        // The two bundles differ by exactly our root, so the negative control isolates it.
        let root = Certificate::from_der(&pki.root.der).expect("decode test root");
        let has_root = |b: &Bundle| b.certificates().any(|c| c.sha256() == root.sha256());
        assert!(has_root(&with_root) && !has_root(&without_root));
        assert_eq!(with_root.len(), without_root.len() + 1);
        assert!(
            without_root.len() > 100,
            "Mozilla's roots should fill the store"
        );

        let files = pki.write_server_files(tmp.path());
        let server = peer::openssl_server(&files.cert, &files.key, Some(&files.chain))?;
        Some(Self {
            server,
            trusted,
            untrusted,
            trusted_len: with_root.len(),
            unrelated_ca,
            empty_dir,
            _tmp: tmp,
        })
    }

    /// Runs `command` for each store, once with the trusted outputs (must verify) and once with
    /// the untrusted ones (must fail), and panics listing every run that did not behave.
    fn check(
        &self,
        client: &str,
        stores: &[Store],
        expect: &Expect,
        command: impl Fn(Store, &Path) -> Command,
    ) {
        let mut failures = Vec::new();
        for &store in stores {
            for (outputs, trusted) in [(&self.trusted, true), (&self.untrusted, false)] {
                let mut cmd = command(store, outputs.path(store));
                without_ambient(&mut cmd);
                let run = peer::run_client(&mut cmd, CLIENT_TIMEOUT);
                if let Some(why) = judge(&run, trusted, expect) {
                    let label = if trusted { "trusted" } else { "untrusted" };
                    failures.push(format!(
                        "{client} with the {label} {store:?}: {why}\n  command: {cmd:?}\n  \
                         exit: {}\n--- stdout\n{}\n--- stderr\n{}",
                        run.status, run.stdout, run.stderr
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

/// Why a run did not behave as expected, if it did not.
fn judge(run: &ClientRun, trusted: bool, expect: &Expect) -> Option<String> {
    let markers = if trusted {
        &expect.verified
    } else {
        &expect.rejected
    };
    let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
    anchorage_interop_tests::judge(run, trusted, &markers, &[], &[])
}

#[test]
fn curl_verifies_with_cacert_and_capath() {
    let Some(curl) = peer::require("curl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.server.port();
    let expect = Expect::new(
        // The body is s_server's `-www` status page.
        &["ssl_verify_result=0", "s_server"],
        &["curl: (60) SSL certificate problem: unable to get local issuer certificate"],
    );
    fx.check("curl", PEM_AND_DIRS, &expect, |store, path| {
        let mut cmd = Command::new(&curl);
        // `-q` first: ignore any .curlrc.
        cmd.args(["-q", "--silent", "--show-error", "--proto", "=https"])
            .args(["--noproxy", "*", "--max-time", "15"])
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:127.0.0.1"))
            .arg("--write-out")
            .arg("\nssl_verify_result=%{ssl_verify_result}\n");
        // curl also loads its build's default CA file and directory unless told otherwise:
        // displace the one we are not testing with something that cannot vouch for the server.
        match store {
            Store::Pem => cmd
                .arg("--cacert")
                .arg(path)
                .arg("--capath")
                .arg(&fx.empty_dir),
            Store::Dir(_) => cmd
                .arg("--capath")
                .arg(path)
                .arg("--cacert")
                .arg(&fx.unrelated_ca),
        };
        cmd.arg(format!("https://{HOST}:{port}/"));
        cmd
    });
}

#[test]
fn openssl_s_client_verifies_with_cafile_and_capath() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.server.port();
    let expect = Expect::new(
        &[
            "Verification: OK",
            "Verified peername: localhost",
            "Verify return code: 0 (ok)",
        ],
        &["verify error:num=20:unable to get local issuer certificate"],
    );
    fx.check("openssl s_client", PEM_AND_DIRS, &expect, |store, path| {
        let mut cmd = Command::new(&openssl);
        cmd.arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", HOST, "-verify_hostname", HOST])
            .arg("-verify_return_error");
        // Only the store under test: no default file, directory or store.
        match store {
            Store::Pem => cmd.args(["-no-CApath", "-no-CAstore", "-CAfile"]),
            Store::Dir(_) => cmd.args(["-no-CAfile", "-no-CAstore", "-CApath"]),
        };
        cmd.arg(path);
        cmd
    });
}

#[test]
fn gnutls_cli_verifies_with_x509cafile() {
    let Some(gnutls_cli) = peer::require("gnutls-cli") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.server.port();
    // GnuTLS also says how many CA certificates it read: all of ours, none skipped.
    let read = |n: usize| format!("Processed {n} CA certificate(s).");
    let mut expect = Expect::new(
        &["The certificate is trusted."],
        &[
            "The certificate is NOT trusted. The certificate issuer is unknown.",
            "PKI verification of server certificate failed",
        ],
    );
    expect.verified.push(read(fx.trusted_len));
    expect.rejected.push(read(fx.trusted_len - 1));
    // gnutls-cli reads a CA file only (`--x509cafile`); without it, it would use the system store.
    fx.check("gnutls-cli", &[Store::Pem], &expect, |_, path| {
        let mut cmd = Command::new(&gnutls_cli);
        cmd.arg("--x509cafile")
            .arg(path)
            .args(["--sni-hostname", HOST, "--verify-hostname", HOST])
            .arg("--port")
            .arg(port.to_string())
            .arg("127.0.0.1");
        cmd
    });
}

/// Connects to 127.0.0.1:`argv[3]` as `localhost`, trusting only `cafile=`/`capath=` `argv[2]`.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
kind, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(**{kind: path})
with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
    with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        subject = dict(rdn[0] for rdn in tls.getpeercert()["subject"])
        print("verified", tls.version(), subject["commonName"])
"#;

#[test]
fn python_ssl_verifies_with_cafile_and_capath() {
    let Some(python) = peer::require("python3") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.server.port();
    let expect = Expect::new(
        &["verified TLSv1.3 localhost"],
        &[
            "ssl.SSLCertVerificationError",
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate",
        ],
    );
    fx.check("python ssl", PEM_AND_DIRS, &expect, |store, path| {
        let mut cmd = Command::new(&python);
        // `-I`: isolated mode, no PYTHON* variables or user site-packages.
        cmd.args(["-I", "-c", PYTHON_CLIENT])
            .arg(match store {
                Store::Pem => "cafile",
                Store::Dir(_) => "capath",
            })
            .arg(path)
            .arg(port.to_string());
        cmd
    });
}

/// Node.js client: connects with default verification (`rejectUnauthorized`), SNI and hostname
/// check for `localhost`; exits 0 only after a verified handshake.
const NODE_CLIENT: &str = r#"
const tls = require('tls');
const port = Number(process.argv[1]);
const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost' }, () => {
  console.log(`verified ${socket.getProtocol()} authorized=${socket.authorized}`);
  socket.end();
  process.exit(socket.authorized ? 0 : 3);
});
socket.on('error', (e) => { console.error(`node tls error ${e.code}: ${e.message}`); process.exit(1); });
"#;

#[test]
fn node_verifies_with_node_extra_ca_certs() {
    let Some(node) = peer::require("node") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.server.port();
    let expect = Expect::new(
        &["verified TLSv1.3 authorized=true"],
        &["node tls error UNABLE_TO_GET_ISSUER_CERT_LOCALLY"],
    );
    // Node reads only a PEM file here; it adds it to its own compiled-in roots.
    fx.check("node", &[Store::Pem], &expect, |_, path| {
        let mut cmd = Command::new(&node);
        cmd.env_remove("NODE_OPTIONS") // could carry --use-openssl-ca / --use-system-ca
            .env("NODE_EXTRA_CA_CERTS", path)
            .args(["-e", NODE_CLIENT, "--"])
            .arg(port.to_string());
        cmd
    });
}

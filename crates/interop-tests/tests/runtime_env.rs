//! Runtime matrix: real clients trust a private CA through environment variables alone.
//!
//! Each test makes a private PKI (root → intermediate → `localhost` leaf), starts `openssl s_server`
//! with the leaf and intermediate, and writes two trust sets with the library, as `anchorage bundle
//! build --pem … --openssl-dir … --extra-pem …` writes them:
//!
//! - **trusted**: our root, an unrelated private root and Mozilla's roots, as a combined PEM
//!   bundle and a hashed directory, plus the extra file (the private CAs only, what
//!   [`Bundle::without_mozilla_roots`] leaves);
//! - **untrusted** (the negative control): the same without our root.
//!
//! Every value comes from [`anchorage_trust::env::variables`], and each row first checks that the
//! catalogue points the variable at the file the row expects (a variable that *replaces* the
//! default store at the combined bundle or directory, one that *adds* to it at the extra file).
//! The client then runs with a cleared environment (only `PATH`, `HOME` set to an empty temporary
//! directory, and the row's variables), must verify the server with the trusted set and must fail
//! with the untrusted one, saying why, so a pass cannot come from the machine's store (our root is
//! fresh), a broken server or a client that did not verify.
//!
//! | Variable              | Client                                  | Effect   | File              | Result                  |
//! |-----------------------|-----------------------------------------|----------|-------------------|-------------------------|
//! | `CURL_CA_BUNDLE`      | `curl` (no `--cacert`/`--capath`)       | replaces | combined bundle   | verifies                |
//! | `SSL_CERT_FILE`       | `openssl s_client` (no `-CAfile`)       | replaces | combined bundle   | verifies                |
//! | `SSL_CERT_DIR`        | `openssl s_client` (no `-CApath`)       | replaces | hashed directory  | verifies                |
//! | `SSL_CERT_FILE`       | Python `ssl.create_default_context()`   | replaces | combined bundle   | verifies                |
//! | `SSL_CERT_DIR`        | Python `ssl.create_default_context()`   | replaces | hashed directory  | verifies                |
//! | `REQUESTS_CA_BUNDLE`  | Python `requests.get`                   | replaces | combined bundle   | verifies                |
//! | `SSL_CERT_FILE`       | Python `requests.get`                   | —        | combined bundle   | **ignored**: certifi    |
//! | `NODE_EXTRA_CA_CERTS` | Node.js `https.get`                     | adds     | extra (private)   | verifies                |
//! | `SSL_CERT_FILE`/`_DIR`| Node.js `https.get`                     | —        | bundle, directory | **ignored**: bundled CAs|
//! | `GIT_SSL_CAINFO`      | `git ls-remote https://…`               | replaces | combined bundle   | TLS verifies (*)        |
//!
//! (*) `s_server -www` is no git server, so `git` fails after the handshake either way: with the
//! trusted file its error is about the repository, with the untrusted one it is a certificate
//! problem.
//!
//! Where a row sets `SSL_CERT_FILE` it points `SSL_CERT_DIR` at an empty directory, and the reverse
//! with an empty file, so OpenSSL's other default location cannot stand in for the one under test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anchorage_test_support::peer::{self, ClientRun, Running};
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::env::{Effect, EnvRequest, Points, variables};
use anchorage_trust::{
    Bundle, LoadOptions, OpensslDirOptions, PemOptions, Policy, Source, load, write_openssl_dir,
    write_pem,
};
use anchorage_x509::Certificate;

/// Longest a client may take before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The name the server's leaf is issued for.
const HOST: &str = "localhost";

/// One trust set, written as `bundle build --pem --openssl-dir --extra-pem` writes it.
struct TrustFiles {
    /// Combined PEM bundle: public roots plus private CAs.
    bundle: PathBuf,
    /// OpenSSL hashed directory of the same certificates.
    dir: PathBuf,
    /// The private CAs only.
    extra: PathBuf,
}

impl TrustFiles {
    /// Builds the bundle from `sources` and writes the three files under `out`.
    fn write(sources: &[Source], out: &Path) -> (Self, Bundle, Bundle) {
        let (bundle, report) = Policy::default()
            .apply(load(sources, &LoadOptions::default()))
            .expect("build bundle");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        std::fs::create_dir(out).expect("create output dir");
        let files = Self {
            bundle: out.join("ca-bundle.pem"),
            dir: out.join("certs"),
            extra: out.join("extra.pem"),
        };
        let extra = bundle.without_mozilla_roots();
        write_pem(&bundle, &files.bundle, &PemOptions::default()).expect("write PEM");
        write_openssl_dir(&bundle, &files.dir, &OpensslDirOptions::default())
            .expect("write hashed directory");
        write_pem(&extra, &files.extra, &PemOptions::default()).expect("write extra PEM");
        (files, bundle, extra)
    }

    /// The value the catalogue gives `name` for these files, after checking that it names the
    /// file `points` says, with the matching effect.
    fn value(&self, name: &str, points: Points) -> String {
        let request = EnvRequest {
            bundle: self.bundle.clone(),
            dir: Some(self.dir.clone()),
            extra: Some(self.extra.clone()),
            java: None,
        };
        let var = variables(&request)
            .into_iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        let (effect, file) = match points {
            Points::Bundle => (Effect::Replaces, &self.bundle),
            Points::Dir => (Effect::Replaces, &self.dir),
            Points::Extra => (Effect::Adds, &self.extra),
            Points::JavaTrustStore => panic!("{name}: no Java trust store in this matrix"),
        };
        assert_eq!(var.points, points, "the catalogue points {name} elsewhere");
        assert_eq!(var.effect, effect, "the catalogue's effect of {name}");
        assert_eq!(Path::new(&var.value), file, "{name} names the wrong file");
        var.value
    }
}

/// A file or directory that holds nothing, to displace OpenSSL's other default location.
#[derive(Clone, Copy, Debug)]
enum Empty {
    File,
    Dir,
}

/// What a run must show.
#[derive(Clone, Copy, Debug)]
struct Expect {
    /// Whether the client exits 0.
    success: bool,
    /// Each of these is in the output.
    all: &'static [&'static str],
    /// At least one of these is in the output (none required when empty).
    any: &'static [&'static str],
    /// None of these is in the output.
    none: &'static [&'static str],
}

impl Expect {
    /// Exit 0 with every one of `all` in the output.
    const fn verified(all: &'static [&'static str]) -> Self {
        Self {
            success: true,
            all,
            any: &[],
            none: &[],
        }
    }

    /// A non-zero exit with every one of `all` in the output.
    const fn rejected(all: &'static [&'static str]) -> Self {
        Self {
            success: false,
            all,
            any: &[],
            none: &[],
        }
    }
}

/// One row of the matrix.
struct Row {
    /// Shown when the row misbehaves.
    label: &'static str,
    /// The variables under test, each with the file the catalogue must point it at.
    vars: &'static [(&'static str, Points)],
    /// Other variables, pointed at something empty.
    empty: &'static [(&'static str, Empty)],
    /// With the trusted set.
    trusted: Expect,
    /// With the untrusted set; `None` for a row showing that a client ignores the variable
    /// (already failing with the trusted set).
    untrusted: Option<Expect>,
}

/// A running server, both trust sets, and an empty home for the clients.
struct Fixture {
    server: Running,
    trusted: TrustFiles,
    untrusted: TrustFiles,
    home: PathBuf,
    empty_file: PathBuf,
    empty_dir: PathBuf,
    path: OsString,
    _tmp: TempDir,
}

impl Fixture {
    /// Makes the PKI, writes both trust sets and starts the server; `None` when openssl is
    /// missing locally.
    fn start() -> Option<Self> {
        let tmp = tempdir().expect("temp dir");
        let pki = Pki::new("Anchorage Runtime Env");
        let unrelated = pki::root_ca("Unrelated Runtime Env Root CA");
        let inputs = tmp.path().join("in");
        std::fs::create_dir(&inputs).expect("create input dir");
        let root_pem = pki.root.write_pem(&inputs, "root.pem");
        let unrelated_pem = unrelated.write_pem(&inputs, "unrelated.pem");
        let home = tmp.path().join("home");
        let empty_dir = tmp.path().join("empty-dir");
        let empty_file = tmp.path().join("empty.pem");
        std::fs::create_dir(&home).expect("create home");
        std::fs::create_dir(&empty_dir).expect("create empty dir");
        std::fs::File::create(&empty_file).expect("create empty file");

        let common = [Source::Path(unrelated_pem), Source::Mozilla];
        let (trusted, with_root, trusted_extra) = TrustFiles::write(
            &[&[Source::Path(root_pem)][..], &common[..]].concat(),
            &tmp.path().join("trusted"),
        );
        let (untrusted, without_root, untrusted_extra) =
            TrustFiles::write(&common, &tmp.path().join("untrusted"));

        // The sets differ by exactly our root; the extra files hold the private roots only.
        let root = Certificate::from_der(&pki.root.der).expect("decode test root");
        let has_root = |b: &Bundle| b.certificates().any(|c| c.sha256() == root.sha256());
        assert!(has_root(&with_root) && !has_root(&without_root));
        assert_eq!(with_root.len(), without_root.len() + 1);
        assert!(without_root.len() > 100, "Mozilla's roots fill the bundle");
        assert!(has_root(&trusted_extra) && !has_root(&untrusted_extra));
        assert_eq!((trusted_extra.len(), untrusted_extra.len()), (2, 1));

        let files = pki.write_server_files(tmp.path());
        let server = peer::openssl_server(&files.cert, &files.key, Some(&files.chain))?;
        Some(Self {
            server,
            trusted,
            untrusted,
            home,
            empty_file,
            empty_dir,
            path: std::env::var_os("PATH").unwrap_or_default(),
            _tmp: tmp,
        })
    }

    fn port(&self) -> u16 {
        self.server.port()
    }

    fn url(&self) -> String {
        format!("https://{HOST}:{}/", self.port())
    }

    /// `program` with an environment of `PATH` and an empty `HOME` only.
    fn client(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home);
        cmd
    }

    /// Runs each row with the trusted set and, unless the row shows an ignored variable, the
    /// untrusted one; panics listing every run that did not behave.
    fn check(&self, client: &str, rows: &[Row], command: impl Fn() -> Command) {
        let mut failures = Vec::new();
        for row in rows {
            let sets = [
                (&self.trusted, "trusted", Some(row.trusted)),
                (&self.untrusted, "untrusted", row.untrusted),
            ];
            for (files, label, expect) in sets {
                let Some(expect) = expect else { continue };
                let mut cmd = command();
                for &(name, points) in row.vars {
                    cmd.env(name, files.value(name, points));
                }
                for &(name, empty) in row.empty {
                    cmd.env(
                        name,
                        match empty {
                            Empty::File => &self.empty_file,
                            Empty::Dir => &self.empty_dir,
                        },
                    );
                }
                let run = peer::run_client(&mut cmd, CLIENT_TIMEOUT);
                if let Some(why) = judge(&run, &expect) {
                    failures.push(format!(
                        "{client}, {} with the {label} set: {why}\n  command: {cmd:?}\n  \
                         exit: {}\n--- stdout\n{}\n--- stderr\n{}",
                        row.label, run.status, run.stdout, run.stderr
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

/// Why a run did not behave as expected, if it did not.
fn judge(run: &ClientRun, expect: &Expect) -> Option<String> {
    anchorage_interop_tests::judge(run, expect.success, expect.all, expect.any, expect.none)
}

#[test]
fn curl_trusts_curl_ca_bundle() {
    let Some(curl) = peer::require("curl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.port();
    // curl's build may also load a default CA directory (Debian: /etc/ssl/certs); it cannot vouch
    // for our fresh root, as the untrusted run shows.
    let rows = [Row {
        label: "CURL_CA_BUNDLE",
        vars: &[("CURL_CA_BUNDLE", Points::Bundle)],
        empty: &[],
        trusted: Expect::verified(&["ssl_verify_result=0", "s_server"]),
        untrusted: Some(Expect::rejected(&[
            "curl: (60) SSL certificate problem: unable to get local issuer certificate",
        ])),
    }];
    fx.check("curl", &rows, || {
        let mut cmd = fx.client(&curl);
        // `-q` first: ignore any .curlrc. No --cacert or --capath: the variable must do it.
        cmd.args(["-q", "--silent", "--show-error", "--proto", "=https"])
            .args(["--noproxy", "*", "--max-time", "15"])
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:127.0.0.1"))
            .arg("--write-out")
            .arg("\nssl_verify_result=%{ssl_verify_result}\n")
            .arg(fx.url());
        cmd
    });
}

#[test]
fn openssl_s_client_trusts_ssl_cert_file_and_ssl_cert_dir() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.port();
    let trusted = Expect::verified(&[
        "Verification: OK",
        "Verified peername: localhost",
        "Verify return code: 0 (ok)",
    ]);
    let untrusted = Some(Expect::rejected(&[
        "verify error:num=20:unable to get local issuer certificate",
    ]));
    let rows = [
        Row {
            label: "SSL_CERT_FILE",
            vars: &[("SSL_CERT_FILE", Points::Bundle)],
            empty: &[("SSL_CERT_DIR", Empty::Dir)],
            trusted,
            untrusted,
        },
        Row {
            label: "SSL_CERT_DIR",
            vars: &[("SSL_CERT_DIR", Points::Dir)],
            empty: &[("SSL_CERT_FILE", Empty::File)],
            trusted,
            untrusted,
        },
    ];
    fx.check("openssl s_client", &rows, || {
        let mut cmd = fx.client(&openssl);
        // No -CAfile/-CApath: OpenSSL's default verify paths, which the variables redirect.
        cmd.arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", HOST, "-verify_hostname", HOST])
            .arg("-verify_return_error");
        cmd
    });
}

/// The real interpreter behind `python3` (a pyenv shim needs more than `PATH` and `HOME`), or
/// `None` when Python is missing locally.
fn python() -> Option<PathBuf> {
    let python3 = peer::require("python3")?;
    let run = peer::run_client(
        Command::new(python3).args(["-I", "-c", "import sys; print(sys.executable)"]),
        CLIENT_TIMEOUT,
    );
    assert!(run.status.success(), "{}", run.output());
    Some(PathBuf::from(run.stdout.trim()))
}

/// Connects to 127.0.0.1:`argv[1]` as `localhost` with Python's default context: no `cafile`,
/// so OpenSSL's default verify paths (`SSL_CERT_FILE`, `SSL_CERT_DIR`) decide.
const PYTHON_SSL_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15) as sock:
    with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        subject = dict(rdn[0] for rdn in tls.getpeercert()["subject"])
        print("verified", tls.version(), subject["commonName"])
"#;

#[test]
fn python_ssl_default_context_trusts_ssl_cert_file_and_ssl_cert_dir() {
    let Some(python) = python() else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let port = fx.port();
    let trusted = Expect::verified(&["verified TLSv1.3 localhost"]);
    let untrusted = Some(Expect::rejected(&[
        "ssl.SSLCertVerificationError",
        "certificate verify failed: unable to get local issuer certificate",
    ]));
    let rows = [
        Row {
            label: "SSL_CERT_FILE",
            vars: &[("SSL_CERT_FILE", Points::Bundle)],
            empty: &[("SSL_CERT_DIR", Empty::Dir)],
            trusted,
            untrusted,
        },
        Row {
            label: "SSL_CERT_DIR",
            vars: &[("SSL_CERT_DIR", Points::Dir)],
            empty: &[("SSL_CERT_FILE", Empty::File)],
            trusted,
            untrusted,
        },
    ];
    fx.check("python ssl", &rows, || {
        let mut cmd = fx.client(&python);
        // `-I`: isolated mode, no PYTHON* variables or user site-packages.
        cmd.args(["-I", "-c", PYTHON_SSL_CLIENT])
            .arg(port.to_string());
        cmd
    });
}

/// GETs `argv[1]` with requests' defaults (no `verify=`).
const PYTHON_REQUESTS_CLIENT: &str = r#"
import sys, requests
r = requests.get(sys.argv[1], timeout=15)
print("status", r.status_code, "s_server" in r.text)
"#;

#[test]
fn python_requests_trusts_requests_ca_bundle_and_ignores_ssl_cert_file() {
    let Some(python) = python() else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let probe = peer::run_client(
        fx.client(&python).args(["-I", "-c", "import requests"]),
        CLIENT_TIMEOUT,
    );
    if !probe.status.success() {
        let why = format!(
            "Python requests is not importable by {} ({}); install it with scripts/install-test-deps.sh",
            python.display(),
            probe.stderr.trim()
        );
        assert!(!peer::in_ci(), "{why}");
        peer::skip(&why);
        return;
    }
    let verify_failed = &[
        "requests.exceptions.SSLError",
        "CERTIFICATE_VERIFY_FAILED",
        "unable to get local issuer certificate",
    ];
    let rows = [
        Row {
            label: "REQUESTS_CA_BUNDLE",
            vars: &[("REQUESTS_CA_BUNDLE", Points::Bundle)],
            empty: &[],
            trusted: Expect::verified(&["status 200 True"]),
            untrusted: Some(Expect::rejected(verify_failed)),
        },
        // requests hands urllib3 certifi's file, so OpenSSL's default paths are never read:
        // the reason REQUESTS_CA_BUNDLE exists.
        Row {
            label: "SSL_CERT_FILE only (ignored: certifi)",
            vars: &[("SSL_CERT_FILE", Points::Bundle)],
            empty: &[],
            trusted: Expect::rejected(verify_failed),
            untrusted: None,
        },
    ];
    fx.check("python requests", &rows, || {
        let mut cmd = fx.client(&python);
        cmd.args(["-I", "-c", PYTHON_REQUESTS_CLIENT]).arg(fx.url());
        cmd
    });
}

/// GETs `argv[1]` with Node's defaults (verification on) and reports what it read.
const NODE_CLIENT: &str = r#"
const https = require('https');
const req = https.get(process.argv[1], (res) => {
  const authorized = res.socket.authorized;
  let body = '';
  res.on('data', (chunk) => { body += chunk; });
  res.on('end', () => {
    console.log(`status ${res.statusCode} authorized=${authorized} s_server=${body.includes('s_server')}`);
    process.exit(0);
  });
});
req.setTimeout(15000, () => req.destroy(new Error('timed out')));
req.on('error', (e) => { console.error(`node https error ${e.code}: ${e.message}`); process.exit(1); });
"#;

#[test]
fn node_trusts_node_extra_ca_certs_and_ignores_ssl_cert_file() {
    let Some(node) = peer::require("node") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let rejected = Expect::rejected(&["node https error UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]);
    let rows = [
        Row {
            label: "NODE_EXTRA_CA_CERTS (private CAs only)",
            vars: &[("NODE_EXTRA_CA_CERTS", Points::Extra)],
            empty: &[],
            trusted: Expect {
                // Node warns, and carries on without them, when it cannot load the file.
                none: &["Ignoring extra certs"],
                ..Expect::verified(&["status 200 authorized=true s_server=true"])
            },
            untrusted: Some(rejected),
        },
        // Node verifies against its bundled Mozilla list plus NODE_EXTRA_CA_CERTS; OpenSSL's
        // variables count only with --use-openssl-ca.
        Row {
            label: "SSL_CERT_FILE and SSL_CERT_DIR only (ignored)",
            vars: &[
                ("SSL_CERT_FILE", Points::Bundle),
                ("SSL_CERT_DIR", Points::Dir),
            ],
            empty: &[],
            trusted: rejected,
            untrusted: None,
        },
    ];
    fx.check("node", &rows, || {
        let mut cmd = fx.client(&node);
        cmd.args(["-e", NODE_CLIENT, "--"]).arg(fx.url());
        cmd
    });
}

#[test]
fn git_trusts_git_ssl_cainfo() {
    let Some(git) = peer::require("git") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    // What libcurl says about an untrusted certificate: OpenSSL builds, then GnuTLS builds (the
    // one Debian's git links).
    const OPENSSL_PROBLEM: &str = "SSL certificate problem";
    const GNUTLS_PROBLEM: &str = "server certificate verification failed";
    let rows = [Row {
        label: "GIT_SSL_CAINFO",
        vars: &[("GIT_SSL_CAINFO", Points::Bundle)],
        empty: &[],
        // The handshake and the HTTP request succeed; s_server's status page is no git reply
        // ("…/x.git/info/refs not valid: is this a git repository?"), where a transport failure
        // would say "unable to access".
        trusted: Expect {
            success: false,
            all: &["x.git/info/refs"],
            any: &[],
            none: &["unable to access", OPENSSL_PROBLEM, GNUTLS_PROBLEM],
        },
        untrusted: Some(Expect {
            success: false,
            all: &["unable to access"],
            any: &[OPENSSL_PROBLEM, GNUTLS_PROBLEM],
            none: &[],
        }),
    }];
    fx.check("git", &rows, || {
        let mut cmd = fx.client(&git);
        // No /etc/gitconfig (could set http.sslCAInfo) and no password prompt.
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .arg("ls-remote")
            .arg(format!("{}x.git", fx.url()));
        cmd
    });
}

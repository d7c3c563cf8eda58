//! Trust decisions checked against outside oracles:
//!
//! - the OS store (`--system`, and doctor's default trust): the child gets `SSL_CERT_FILE`
//!   naming a file we control (and no `SSL_CERT_DIR`), so "the system store" is exactly that
//!   file, and a root in it is trusted while a root outside it is not;
//! - `openssl s_client -verify_return_error` on the same chains as `anchorage doctor`: trusted,
//!   unknown issuer, expired leaf, wrong host. The two verdicts must agree, case by case.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anchorage_test_support::peer::{self, Running};
use anchorage_test_support::pki::{Issued, Pki, ServerFiles};
use anchorage_test_support::{TempDir, tempdir};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;
use time::OffsetDateTime;

const OK: i32 = 0;
const UNTRUSTED: i32 = 6;

/// Runs the binary in `dir` with the system store set to `system` (`SSL_CERT_FILE`; the
/// machine's `SSL_CERT_DIR` removed so nothing else is read).
fn anchorage(dir: &Path, system: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", system)
        .stdin(Stdio::null())
        .output()
        .expect("run anchorage")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `doctor TARGET ARGS… --output json` with `system` as the OS store: exit code and report.
fn doctor(dir: &Path, system: &Path, target: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["doctor", target];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let o = anchorage(dir, system, &all);
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); exit {:?}\n{}\n{}",
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr)
        )
    });
    (o.status.code(), json)
}

fn kind(report: &Value) -> &str {
    report["primary"]["kind"].as_str().unwrap_or_default()
}

#[allow(clippy::disallowed_methods)] // test fixture, not an output
fn write(path: &Path, contents: &str) -> PathBuf {
    std::fs::write(path, contents).expect("write fixture");
    path.to_path_buf()
}

struct Case {
    dir: TempDir,
    pki: Pki,
    files: ServerFiles,
    /// A root that signed nothing here.
    other_root: PathBuf,
}

impl Case {
    fn new(name: &str) -> Self {
        let dir = tempdir().unwrap();
        let pki = Pki::new(name);
        let files = pki.write_server_files(dir.path());
        let other = Pki::new(&format!("{name} Other"));
        let other_root = write(&dir.path().join("other-root.pem"), &other.root.pem);
        Self {
            dir,
            pki,
            files,
            other_root,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn serve(cert: &Path, key: &Path, chain: &Path) -> Option<(Running, String)> {
    let server = peer::openssl_server(cert, key, Some(chain))?;
    let port = server.port().to_string();
    Some((server, port))
}

// ---------------------------------------------------------------------------------------------
// The OS store: `bundle build --system` and doctor's default trust.

/// The certificates (PEM blocks) of `path`.
fn pem_blocks(path: &Path) -> Vec<String> {
    let all = std::fs::read_to_string(path).unwrap();
    all.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| b[b.find("-----BEGIN").unwrap()..].to_owned())
        .collect()
}

#[test]
fn bundle_build_system_takes_the_os_store_and_only_it() {
    let case = Case::new("System Build");
    let root = case.files.root.clone();
    let o = anchorage(
        case.path(),
        &root,
        &["bundle", "build", "--system", "--pem", "out.pem"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        pem_blocks(&case.path().join("out.pem")),
        vec![case.pki.root.pem.clone()],
        "exactly the root the system store holds"
    );

    // Negative control: another system store gives its own root, not ours.
    let o = anchorage(
        case.path(),
        &case.other_root,
        &["bundle", "build", "--system", "--pem", "other.pem"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let other = pem_blocks(&case.path().join("other.pem"));
    assert_eq!(other.len(), 1);
    assert_ne!(other[0], case.pki.root.pem);

    // An empty system store is an error naming it, and writes nothing.
    let empty = write(&case.path().join("empty.pem"), "");
    let o = anchorage(
        case.path(),
        &empty,
        &["bundle", "build", "--system", "--pem", "none.pem"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("no certificates found (is the ca-certificates package installed? SSL_CERT_FILE and SSL_CERT_DIR are honoured)"),
        "{err}"
    );
    assert!(err.contains("error: no usable certificates"), "{err}");
    assert!(!case.path().join("none.pem").exists());
}

#[test]
fn doctor_default_and_system_trust_read_the_os_store() {
    let case = Case::new("System Doctor");
    let Some((_server, port)) = serve(&case.files.cert, &case.files.key, &case.files.chain) else {
        return;
    };
    let target = format!("localhost:{port}");
    let root = case.files.root.clone();

    // Default trust (no --bundle/--system/--mozilla) is the OS store plus Mozilla's roots.
    let (code, report) = doctor(case.path(), &root, &target, &[]);
    assert_eq!(code, Some(OK), "{report:#}");
    assert_eq!(kind(&report), "trusted");
    let (code, report) = doctor(case.path(), &root, &target, &["--system"]);
    assert_eq!(code, Some(OK), "{report:#}");
    assert_eq!(kind(&report), "trusted");

    // Negative controls: the OS store without our root, and Mozilla alone while the OS store
    // has it (--mozilla leaves the OS store out).
    for (system, args) in [
        (case.other_root.as_path(), &[][..]),
        (case.other_root.as_path(), &["--system"][..]),
        (root.as_path(), &["--mozilla"][..]),
    ] {
        let (code, report) = doctor(case.path(), system, &target, args);
        assert_eq!(code, Some(UNTRUSTED), "{args:?} {report:#}");
        assert_eq!(kind(&report), "unknown_issuer", "{args:?} {report:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// doctor against openssl s_client.

/// A `localhost` leaf signed by `issuer`, valid `days` around now (negative: expired).
fn leaf(dir: &Path, name: &str, issuer: &Issued, expired: bool) -> (PathBuf, PathBuf) {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (params.not_before, params.not_after) = if expired {
        (
            now - time::Duration::days(30),
            now - time::Duration::days(3),
        )
    } else {
        (
            now - time::Duration::hours(1),
            now + time::Duration::days(30),
        )
    };
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.issuer()).unwrap();
    (
        write(&dir.join(format!("{name}.crt")), &cert.pem()),
        write(&dir.join(format!("{name}.key")), &key.serialize_pem()),
    )
}

/// `openssl s_client` verifying against `ca_file` alone (no default paths) for `name`, with
/// `-verify_return_error`: whether the handshake succeeded, and its `Verify return code` line.
fn openssl_verdict(openssl: &Path, port: &str, ca_file: &Path, name: &str) -> (bool, String) {
    let run = peer::run_client(
        Command::new(openssl)
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", name, "-verify_hostname", name])
            .arg("-CAfile")
            .arg(ca_file)
            .args(["-no-CApath", "-no-CAstore", "-verify_return_error"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR"),
        Duration::from_secs(20),
    );
    let out = run.output();
    let verify = out
        .lines()
        .find(|l| l.starts_with("Verify return code:"))
        .unwrap_or("<no verify line>")
        .to_owned();
    (run.status.success(), verify)
}

/// (name, leaf, key, trust file, server name, expected verdict, openssl's reason, doctor's)
type OracleCase<'a> = (
    &'a str,
    &'a Path,
    &'a Path,
    &'a Path,
    &'a str,
    bool,
    &'a str,
    &'a str,
);

#[test]
fn doctor_and_openssl_s_client_agree_on_the_same_chains() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let case = Case::new("Oracle");
    let dir = case.path();
    let (expired_cert, expired_key) = leaf(dir, "expired", &case.pki.intermediate, true);
    let root = case.files.root.clone();
    let cases: Vec<OracleCase<'_>> = vec![
        (
            "trusted",
            &case.files.cert,
            &case.files.key,
            &root,
            "localhost",
            true,
            "Verify return code: 0 (ok)",
            "trusted",
        ),
        (
            "unknown issuer",
            &case.files.cert,
            &case.files.key,
            &case.other_root,
            "localhost",
            false,
            "Verify return code: 20 (unable to get local issuer certificate)",
            "unknown_issuer",
        ),
        (
            "expired",
            &expired_cert,
            &expired_key,
            &root,
            "localhost",
            false,
            "Verify return code: 10 (certificate has expired)",
            "expired",
        ),
        (
            "wrong host",
            &case.files.cert,
            &case.files.key,
            &root,
            "wrong.example",
            false,
            "Verify return code: 62 (hostname mismatch)",
            "name_mismatch",
        ),
    ];
    for (label, cert, key, trust, name, trusted, openssl_reason, doctor_kind) in cases {
        let Some((_server, port)) = serve(cert, key, &case.files.chain) else {
            return;
        };
        let (openssl_ok, verify) = openssl_verdict(&openssl, &port, trust, name);
        let (code, report) = doctor(
            dir,
            trust,
            &format!("localhost:{port}"),
            &["--bundle", trust.to_str().unwrap(), "--servername", name],
        );
        let doctor_ok = code == Some(OK);
        assert_eq!(
            doctor_ok,
            openssl_ok,
            "{label}: doctor exit {code:?} ({}) but openssl said {verify}",
            kind(&report)
        );
        assert_eq!(doctor_ok, trusted, "{label}: {verify} / {report:#}");
        assert_eq!(verify, openssl_reason, "{label}");
        assert_eq!(kind(&report), doctor_kind, "{label}: {report:#}");
        if !trusted {
            assert_eq!(code, Some(UNTRUSTED), "{label}");
        }
    }
}

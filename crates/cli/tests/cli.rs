//! End-to-end tests of the `anchorage` binary in a temporary directory: exit codes, messages that
//! name the source, determinism, and outputs left untouched on failure.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_test_support::pki;

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .expect("run anchorage")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[allow(clippy::disallowed_methods)] // test fixtures
fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

struct Fixture {
    dir: anchorage_test_support::TempDir,
    root: pki::Issued,
}

fn fixture() -> Fixture {
    let dir = anchorage_test_support::tempdir().unwrap();
    let root = pki::root_ca("Anchorage CLI Test Root");
    root.write_pem(dir.path(), "root.crt");
    Fixture { dir, root }
}

#[test]
fn builds_pem_and_dir_and_reports_json() {
    let f = fixture();
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--mozilla",
            "--pem",
            "b.pem",
            "--openssl-dir",
            "certs",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = json["certificates"].as_u64().unwrap();
    assert!(n > 100, "Mozilla roots plus ours, got {n}");
    assert_eq!(json["openssl_dir_entries"].as_u64(), Some(n));
    let ours = json["bundle"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["subject"]
                .as_str()
                .unwrap()
                .contains("Anchorage CLI Test Root")
        })
        .expect("our root is in the bundle");
    assert_eq!(ours["ca"], true);
    assert_eq!(ours["self_signed"], true);
    let pem = fs::read_to_string(f.dir.path().join("b.pem")).unwrap();
    assert!(pem.contains(f.root.pem.trim()));
    assert_eq!(
        fs::read_dir(f.dir.path().join("certs")).unwrap().count() as u64,
        n
    );
}

#[test]
fn output_is_identical_whatever_the_source_order() {
    let f = fixture();
    let other = pki::root_ca("Another Root");
    other.write_pem(f.dir.path(), "other.crt");
    // The same root twice, once through a directory.
    fs::create_dir(f.dir.path().join("d")).unwrap();
    f.root.write_pem(&f.dir.path().join("d"), "again.pem");
    let a = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "other.crt",
            "d",
            "--pem",
            "a.pem",
            "--pem-comments",
        ],
    );
    let b = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "d",
            "other.crt",
            "root.crt",
            "--pem",
            "b.pem",
            "--pem-comments",
        ],
    );
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        stderr(&a),
        stderr(&b)
    );
    assert!(stdout(&a).contains("(1 duplicate,"), "{}", stdout(&a));
    let pa = fs::read(f.dir.path().join("a.pem")).unwrap();
    assert_eq!(pa, fs::read(f.dir.path().join("b.pem")).unwrap());
    assert_eq!(
        String::from_utf8(pa)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
}

#[test]
fn pem_goes_to_stdout_without_outputs() {
    let f = fixture();
    let out = anchorage(f.dir.path(), &["bundle", "build", "root.crt"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), f.root.pem.replace("\r\n", "\n"));
    assert!(stderr(&out).contains("bundle of 1 certificate from"));
}

#[test]
fn private_key_is_refused_and_never_printed() {
    let f = fixture();
    let combined = format!("{}{}", f.root.pem, f.root.key_pem);
    write(f.dir.path(), "server.pem", &combined);
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "server.pem", "--pem", "b.pem"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("private key found in server.pem: line"),
        "{err}"
    );
    let key_body: Vec<&str> = f
        .root
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in key_body {
        assert!(
            !err.contains(line) && !stdout(&out).contains(line),
            "key material leaked"
        );
    }
    assert!(!f.dir.path().join("b.pem").exists(), "nothing written");
    // inspect lists it by location, exits 4, never prints it either.
    let out = anchorage(f.dir.path(), &["bundle", "inspect", "server.pem"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        !stdout(&out).contains("PRIVATE KEY-----\n")
            && !stderr(&out).contains(f.root.key_pem.lines().nth(1).unwrap())
    );
}

#[test]
fn bad_inputs_are_named_and_the_rest_is_used() {
    let f = fixture();
    let pem = f.root.pem.clone();
    let lines: Vec<&str> = pem.lines().collect();
    let truncated = lines[..lines.len() - 2].join("\n");
    let mut bad_b64 = lines.clone();
    bad_b64[2] = "!!!!not-base64!!!!";
    let mut trailing = f.root.der.clone();
    trailing.extend_from_slice(b"\0\0\0");
    fs::create_dir(f.dir.path().join("in")).unwrap();
    let d = f.dir.path().join("in");
    write(&d, "truncated.pem", truncated);
    write(&d, "badb64.pem", bad_b64.join("\n"));
    write(&d, "trailing.der", trailing);
    write(
        &d,
        "crl.pem",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    );
    write(&d, "empty.crt", "");
    write(&d, "good.crt", &pem);
    std::os::unix::fs::symlink(".", d.join("loop")).unwrap();
    std::os::unix::fs::symlink("does-not-exist.crt", d.join("dangling.crt")).unwrap();
    write(
        &d,
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    );
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "in", "in/deploy.yaml", "--pem", "b.pem"],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for expected in [
        "in/truncated.pem: line 1: truncated PEM",
        "in/badb64.pem: line 1: bad base64 in PEM block `CERTIFICATE` (line 3)",
        "in/trailing.der: 3 unexpected bytes after the certificate",
        "in/crl.pem: line 1: PEM block `X509 CRL` is not a certificate (a certificate revocation list)",
        "in/empty.crt: empty input",
        "in/loop: directory symlink loop",
        "in/dangling.crt: cannot read",
        "in/deploy.yaml: document 1: not a Kubernetes ConfigMap or Secret (kind: Deployment)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(stdout(&out).contains("bundle of 1 certificate from"));

    // --strict: any problem is fatal and nothing is written.
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "in", "--strict", "--pem", "strict.pem"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("strict mode:"));
    assert!(!f.dir.path().join("strict.pem").exists());
}

#[test]
fn zero_usable_certificates_leaves_outputs_untouched() {
    let f = fixture();
    let ok = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--pem",
            "b.pem",
            "--openssl-dir",
            "certs",
        ],
    );
    assert!(ok.status.success());
    let before_pem = fs::read(f.dir.path().join("b.pem")).unwrap();
    let before_dir: Vec<_> = fs::read_dir(f.dir.path().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    write(f.dir.path(), "junk.crt", "not a certificate");
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "junk.crt",
            "--pem",
            "b.pem",
            "--openssl-dir",
            "certs",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no usable certificates"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(f.dir.path().join("b.pem")).unwrap(), before_pem);
    let after_dir: Vec<_> = fs::read_dir(f.dir.path().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before_dir, after_dir);
}

#[test]
fn expired_certificates_are_dropped_unless_kept() {
    let f = fixture();
    let expired = pki::expired_root_ca("Old Root");
    expired.write_pem(f.dir.path(), "old.crt");
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "root.crt", "old.crt", "--pem", "b.pem"],
    );
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("old.crt: line 1: expired on"),
        "{}",
        stderr(&out)
    );
    assert!(
        !fs::read_to_string(f.dir.path().join("b.pem"))
            .unwrap()
            .contains(expired.pem.lines().nth(1).unwrap())
    );
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "old.crt",
            "--keep-expired",
            "--pem",
            "k.pem",
        ],
    );
    assert!(out.status.success());
    assert!(
        fs::read_to_string(f.dir.path().join("k.pem"))
            .unwrap()
            .contains(expired.pem.lines().nth(1).unwrap())
    );

    // Only expired certificates: the error says why nothing is left, and names each one.
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "old.crt", "--pem", "k.pem"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("old.crt: line 1: expired on"), "{err}");
    assert!(
        err.contains("1 expired certificate dropped (--keep-expired keeps them)"),
        "{err}"
    );
}

#[test]
fn kubernetes_configmap_and_secret() {
    use base64::Engine as _;
    let f = fixture();
    let other = pki::root_ca("Secret Root");
    let indented = f
        .root
        .pem
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&other.pem);
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&other.key_pem);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corp-ca\n  namespace: infra\ndata:\n  ca.crt: |\n{indented}\n  notes.txt: hello\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {b64}\n  tls.key: {key_b64}\n"
    );
    write(f.dir.path(), "ca.yaml", yaml);
    let out = anchorage(
        f.dir.path(),
        &["bundle", "build", "ca.yaml", "--pem", "b.pem"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("bundle of 2 certificates"),
        "{}",
        stdout(&out)
    );
    // Every key: the Secret's tls.key is then refused.
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "ca.yaml",
            "--k8s-keys",
            "all",
            "--pem",
            "c.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("document 2, Secret s, data key tls.key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pkcs7_bundle_from_openssl() {
    let Some(openssl) = anchorage_test_support::peer::require("openssl") else {
        return;
    };
    let f = fixture();
    let other = pki::root_ca("P7 Root");
    other.write_pem(f.dir.path(), "other.crt");
    let status = Command::new(openssl)
        .args([
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "root.crt",
            "-certfile",
            "other.crt",
            "-outform",
            "DER",
            "-out",
            "corp.p7b",
        ])
        .current_dir(f.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = anchorage(
        f.dir.path(),
        &["bundle", "inspect", "corp.p7b", "--output", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["certificates"].as_array().unwrap().len(), 2);
    assert!(
        json["certificates"][0]["origins"][0]
            .as_str()
            .unwrap()
            .contains("PKCS#7 certificate")
    );
}

#[test]
fn help_has_examples_and_exit_codes() {
    let f = fixture();
    for cmd in [
        &["bundle", "build", "--help"][..],
        &["bundle", "inspect", "--help"][..],
    ] {
        let out = anchorage(f.dir.path(), cmd);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            text.contains("Examples:") && text.contains("Exit codes:"),
            "{text}"
        );
    }
    let out = anchorage(f.dir.path(), &["bundle", "build"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("no sources"));
}

/// Runs `anchorage` under `umask 077`, as a hardened service account might.
fn anchorage_umask_077(dir: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .expect("run anchorage")
}

#[test]
fn rerun_leaves_identical_outputs_alone_and_a_strict_umask_does_not_narrow_them() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let f = fixture();
    let args = [
        "bundle",
        "build",
        "root.crt",
        "--pem",
        "out/b.pem",
        "--openssl-dir",
        "out/certs",
    ];
    let first = anchorage_umask_077(f.dir.path(), &args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("wrote out/b.pem"),
        "{}",
        stdout(&first)
    );
    let out = f.dir.path().join("out");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&out.join("b.pem")),
        0o644,
        "PEM readable by every client"
    );
    assert_eq!(mode(&out.join("certs")), 0o755);
    for entry in fs::read_dir(out.join("certs")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o644, "hashed entry readable");
    }
    let inode = |p: &Path| fs::metadata(p).unwrap().ino();
    let (pem_ino, dir_ino) = (inode(&out.join("b.pem")), inode(&out.join("certs")));

    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let again = anchorage_umask_077(f.dir.path(), &json_args);
    assert!(again.status.success(), "{}", stderr(&again));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["pem_changed"], false);
    assert_eq!(json["openssl_dir_changed"], false);
    assert_eq!(inode(&out.join("b.pem")), pem_ino, "PEM not rewritten");
    assert_eq!(inode(&out.join("certs")), dir_ino, "directory not swapped");

    let text = anchorage(f.dir.path(), &args);
    assert!(
        stdout(&text).contains("unchanged out/b.pem"),
        "{}",
        stdout(&text)
    );
    assert!(stdout(&text).contains("unchanged out/certs (1 hashed entries)"));

    // A new certificate changes both.
    pki::root_ca("Another Root").write_pem(f.dir.path(), "another.crt");
    let mut more = args.to_vec();
    more.insert(3, "another.crt");
    more.extend(["--output", "json"]);
    let changed = anchorage_umask_077(f.dir.path(), &more);
    let json: serde_json::Value = serde_json::from_slice(&changed.stdout).unwrap();
    assert_eq!(json["pem_changed"], true);
    assert_eq!(json["openssl_dir_changed"], true);
    assert_eq!(json["openssl_dir_entries"], 2);
    // The kept entry was linked from the old directory, the new one written: both public.
    for entry in fs::read_dir(out.join("certs")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o644, "hashed entry readable");
    }
}

#[test]
fn a_failed_build_still_prints_json_and_names_what_was_skipped() {
    let f = fixture();
    pki::expired_root_ca("Old Json Root").write_pem(f.dir.path(), "old.crt");
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle", "build", "old.crt", "--pem", "k.pem", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 3);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("no usable certificates")
    );
    assert_eq!(json["findings"][0]["kind"], "expired", "{json}");

    // A directory whose files the name filter skips says so.
    fs::create_dir(f.dir.path().join("pems")).unwrap();
    f.root.write_pem(&f.dir.path().join("pems"), "root.pem");
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "pems",
            "--dir-filter",
            "crt",
            "--pem",
            "k.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("1 file skipped by the directory name filter (see --dir-filter)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_bundle_file_inside_the_directory_must_be_a_plain_name() {
    let f = fixture();
    for bad in ["../escape.crt", "sub/dir.crt", "..", "0a1b2c3d.0"] {
        let out = anchorage(
            f.dir.path(),
            &[
                "bundle",
                "build",
                "root.crt",
                "--openssl-dir",
                "certs",
                "--openssl-dir-bundle",
                bad,
            ],
        );
        assert_eq!(out.status.code(), Some(5), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("plain file name"), "{}", stderr(&out));
        assert!(!f.dir.path().join("escape.crt").exists());
        assert!(!f.dir.path().join("certs").exists(), "nothing written");
    }
}

#[test]
fn extra_pem_holds_only_what_mozilla_lacks() {
    let f = fixture();
    let o = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--mozilla",
            "--pem",
            "all.pem",
            "--extra-pem",
            "extra.pem",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<_> = summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["entries"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds[1], ("extra_pem".to_owned(), 1));
    assert!(kinds[0].1 > 100, "{kinds:?}");
    let extra = fs::read_to_string(f.dir.path().join("extra.pem")).unwrap();
    assert_eq!(
        extra, f.root.pem,
        "extra.pem must hold exactly the private root"
    );

    // Only Mozilla's roots: the extra file is written empty, with a warning.
    let o = anchorage(
        f.dir.path(),
        &["bundle", "build", "--mozilla", "--extra-pem", "none.pem"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("NODE_EXTRA_CA_CERTS has nothing to add"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(f.dir.path().join("none.pem")).unwrap(), b"");
}

#[test]
fn tls_roots_reports_each_source_and_refuses_bad_paths() {
    let f = fixture();
    let o = anchorage(
        f.dir.path(),
        &[
            "--tls-ca-path",
            "root.crt",
            "tls",
            "roots",
            "--no-native-certs",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let anchors = report["anchors"].as_u64().unwrap();
    assert!(anchors > 100, "{report}");
    let extra = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "extra_ca_path")
        .expect("the --tls-ca-path source is reported");
    assert_eq!(extra["added"], 1, "{report}");

    // A missing path fails before anything is trusted, naming it.
    let o = anchorage(f.dir.path(), &["tls", "roots", "--tls-ca-path", "nope.pem"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope.pem"), "{}", stderr(&o));

    // A key where CA certificates are expected is refused (4), never printed.
    write(f.dir.path(), "key.pem", &f.root.key_pem);
    let o = anchorage(f.dir.path(), &["--tls-ca-path", "key.pem", "tls", "roots"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let body = f.root.key_pem.lines().nth(1).unwrap();
    assert!(!stderr(&o).contains(body) && !stdout(&o).contains(body));

    // Nothing enabled: an error, not an empty store.
    let o = anchorage(
        f.dir.path(),
        &["tls", "roots", "--no-native-certs", "--no-webpki-certs"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn java_trust_stores_are_written_deterministically_and_password_rules_are_enforced() {
    let f = fixture();
    write(f.dir.path(), "pw.txt", "s3cret-pw\nignored second line\n");
    let args = [
        "bundle",
        "build",
        "root.crt",
        "--pkcs12",
        "t.p12",
        "--jks",
        "t.jks",
        "--store-password-file",
        "pw.txt",
        "--output",
        "json",
        "-vv",
    ];
    let first = anchorage(f.dir.path(), &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let p12 = fs::read(f.dir.path().join("t.p12")).unwrap();
    let jks = fs::read(f.dir.path().join("t.jks")).unwrap();
    // The password is read from the file's first line and never echoed, even at -vv.
    assert!(!stderr(&first).contains("s3cret-pw") && !stdout(&first).contains("s3cret-pw"));
    let password = secrecy::SecretString::from("s3cret-pw");
    let store = anchorage_keystore::decode(&p12, Some(&password)).unwrap();
    assert_eq!(store.certificates.len(), 1);
    assert!(store.integrity_checked && store.certificates[0].trusted);
    let store = anchorage_keystore::decode(&jks, Some(&password)).unwrap();
    assert_eq!(store.certificates[0].der, f.root.der);

    // The same bundle again: identical bytes, so both files are left alone.
    let again = anchorage(f.dir.path(), &args);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    for o in summary["outputs"].as_array().unwrap() {
        assert_eq!(o["changed"], false, "{o}");
    }
    assert_eq!(fs::read(f.dir.path().join("t.p12")).unwrap(), p12);

    // Password rules: usage errors (2), nothing written.
    for bad in [
        &["--pkcs12", "u.p12", "--pkcs12-profile", "modern2023"][..],
        &[
            "--pkcs12",
            "u.p12",
            "--pkcs12-profile",
            "unprotected",
            "--store-password",
            "x",
        ],
        &["--pem", "u.pem", "--store-password", "x"],
        &["--jks", "u.jks", "--store-password", ""],
    ] {
        let mut a = vec!["bundle", "build", "root.crt"];
        a.extend_from_slice(bad);
        let o = anchorage(f.dir.path(), &a);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(!f.dir.path().join("u.p12").exists() && !f.dir.path().join("u.jks").exists());
    }
    // A missing password file is bad input naming it.
    let o = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--jks",
            "u.jks",
            "--store-password-file",
            "nope",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope"));
}

#[test]
fn java_keystores_are_sources_and_a_wrong_password_is_named() {
    let f = fixture();
    let out = anchorage(
        f.dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--jks",
            "in.jks",
            "--pkcs12",
            "in.p12",
            "--store-password",
            "s3cret",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for store in ["in.jks", "in.p12"] {
        let o = anchorage(
            f.dir.path(),
            &[
                "bundle",
                "build",
                store,
                "--source-password",
                "s3cret",
                "--pem",
                "out.pem",
            ],
        );
        assert!(o.status.success(), "{store}: {}", stderr(&o));
        assert_eq!(
            fs::read_to_string(f.dir.path().join("out.pem")).unwrap(),
            f.root.pem
        );
        // Wrong password: reported against the file, with what to do; nothing usable (3).
        let o = anchorage(
            f.dir.path(),
            &[
                "bundle",
                "build",
                store,
                "--source-password",
                "nope",
                "--pem",
                "wrong.pem",
            ],
        );
        assert_eq!(o.status.code(), Some(3), "{store}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(store) && err.contains("wrong password"),
            "{err}"
        );
        assert!(err.contains("--source-password"), "{err}");
        assert!(!f.dir.path().join("wrong.pem").exists());
    }
    // A PKCS#12 holding a private key (a server's .pfx) is refused like any key: exit 4.
    let pfx = f.dir.path().join("server.pfx");
    write(f.dir.path(), "key.pem", &f.root.key_pem);
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:x", "-out"])
        .arg(&pfx)
        .args(["-inkey", "key.pem", "-in", "root.crt"])
        .current_dir(f.dir.path())
        .status();
    if status.is_ok_and(|s| s.success()) {
        let o = anchorage(
            f.dir.path(),
            &[
                "bundle",
                "build",
                "server.pfx",
                "--source-password",
                "x",
                "--pem",
                "k.pem",
            ],
        );
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(!f.dir.path().join("k.pem").exists());
    }
}

//! End-to-end tests of `anchorage ca`: each runs the real binary with its own temporary
//! `--data-dir`, and checks exit codes, messages, the files written (modes, atomicity, what
//! `openssl verify` makes of them) and that a key never reaches JSON or an error message.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_test_support::openbao::OpenBao;
use anchorage_test_support::{TempDir, pki, tempdir};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

/// A scratch directory; `ca(data, args)` runs `anchorage ca --data-dir <dir>/<data> args…` in it.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("ANCHORAGE_LOG")
            .env_remove("ANCHORAGE_DATA_DIR")
            .env_remove("ANCHORAGE_CA_PASSPHRASE");
        for name in ["VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run anchorage")
    }

    fn ca(&self, data: &str, args: &[&str]) -> Output {
        self.ca_env(data, args, &[])
    }

    fn ca_env(&self, data: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let data = self.path().join(data);
        let mut all = vec!["ca", "--data-dir", data.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run(&all, env)
    }

    /// `ca init` that must succeed.
    fn init(&self, data: &str, args: &[&str]) -> Value {
        let mut all = vec!["init", "--output", "json"];
        all.extend_from_slice(args);
        json_ok(&self.ca(data, &all))
    }

    #[allow(clippy::disallowed_methods)] // test fixtures
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_ok(o: &Output) -> Value {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// Asserts the exit code and returns stderr.
fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names and bytes of every entry of a directory, to prove it was left alone.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The base64 body lines of every PEM private key in `text`.
fn key_bodies(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
            inside = true;
        } else if line.starts_with("-----END") {
            inside = false;
        } else if inside && line.len() > 16 {
            out.push(line.to_owned());
        }
    }
    out
}

fn openssl(args: &[&str], dir: &Path) -> Option<Output> {
    let openssl = anchorage_test_support::peer::require("openssl")?;
    Some(
        Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap(),
    )
}

#[test]
fn init_then_show_reports_the_same_ca() {
    let s = Scratch::new();
    let init = s.init(
        "data",
        &["--cn", "Mesh Root CA", "--org", "Example", "--key", "p384"],
    );
    assert_eq!(init["subject"], "O=Example, CN=Mesh Root CA");
    assert_eq!(init["key_type"], "p384");
    assert_eq!(init["encrypted"], false);
    assert_eq!(init["replaced"], false);
    assert_eq!(init["intermediates"], Value::Array(vec![]));
    let store = s.path().join("data/anchorage.redb");
    assert_eq!(init["store"], store.to_str().unwrap());
    assert_eq!(mode(&store), 0o600);

    let show = json_ok(&s.ca("data", &["show", "--output", "json"]));
    for field in [
        "subject",
        "sha256",
        "not_after",
        "key_type",
        "store",
        "encrypted",
    ] {
        assert_eq!(show[field], init[field], "{field}");
    }
    assert_eq!(show["root"]["sha256"], init["sha256"]);
    assert_eq!(show["root"]["key"], "EC P-384");
    assert_eq!(show["signing_ca"], init["sha256"], "the root signs");
    let left = show["root"]["seconds_left"].as_i64().unwrap();
    assert!(left > 9 * 365 * 86_400, "{left}");
    assert!(show.get("replaced").is_none());

    // Without a passphrase the key is in clear, and init says so.
    let text = s.ca("other", &["init"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stderr(&text).contains("unencrypted"), "{}", stderr(&text));
    assert!(
        stdout(&text).contains("created the CA"),
        "{}",
        stdout(&text)
    );

    // With an intermediate, show lists it and it signs.
    let with_int = s.init(
        "int",
        &[
            "--intermediate",
            "--intermediate-cn",
            "Mesh Issuing CA",
            "--intermediate-ttl",
            "2y",
        ],
    );
    let int = &with_int["intermediates"][0];
    assert_eq!(int["subject"], "CN=Mesh Issuing CA");
    assert_eq!(with_int["signing_ca"], int["sha256"]);
    assert_eq!(with_int["root_key_held"], true);
}

#[test]
fn init_twice_is_refused_and_force_replaces() {
    let s = Scratch::new();
    let first = s.init("data", &[]);
    let again = s.ca("data", &["init"]);
    let err = fails(&again, 9);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let show = json_ok(&s.ca("data", &["show", "--output", "json"]));
    assert_eq!(
        show["sha256"], first["sha256"],
        "the refused init changed nothing"
    );

    let forced = s.init("data", &["--force", "--cn", "Second Root"]);
    assert_eq!(forced["replaced"], true);
    assert_ne!(forced["sha256"], first["sha256"]);
    let show = json_ok(&s.ca("data", &["show", "--output", "json"]));
    assert_eq!(show["sha256"], forced["sha256"]);
    assert_eq!(show["subject"], "CN=Second Root");

    // import refuses too, with the same code, and --output json gives a failure document.
    let pem = s.ca("data", &["export", "--format", "pem", "--out", "exported"]);
    assert!(pem.status.success(), "{}", stderr(&pem));
    let import = s.ca(
        "data",
        &[
            "import",
            "--format",
            "pem",
            "exported/ca.crt",
            "exported/ca.key",
            "--output",
            "json",
        ],
    );
    fails(&import, 9);
    let doc: Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(doc["exit_code"], 9);
    assert!(doc["error"].as_str().unwrap().contains("--force"));
}

const ISSUED: [&str; 4] = ["ca.pem", "cert.pem", "chain.pem", "key.pem"];

#[test]
fn issue_writes_four_files_that_openssl_verifies_and_another_ca_does_not() {
    let s = Scratch::new();
    s.init("data", &["--intermediate"]);
    s.init("other", &[]);
    let out = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "bookstore-v2.bookstore.cluster.local",
            "--san",
            "bookstore.example",
            "--san",
            "10.0.0.7",
            "--spiffe",
            "cluster.local/ns/bookstore/sa/bookstore-v2",
            "--out",
            "tls",
            "--output",
            "json",
        ],
    );
    let issued = json_ok(&out);
    let tls = s.path().join("tls");
    let mut names: Vec<_> = fs::read_dir(&tls)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ISSUED, "exactly the four files");
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    for name in ["ca.pem", "cert.pem", "chain.pem"] {
        assert_eq!(mode(&tls.join(name)), 0o644, "{name}");
    }
    let key = fs::read_to_string(tls.join("key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let chain = fs::read_to_string(tls.join("chain.pem")).unwrap();
    let cert = fs::read_to_string(tls.join("cert.pem")).unwrap();
    assert!(chain.starts_with(&cert), "chain.pem starts with the leaf");
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate"
    );

    // JSON: identity, SANs (the CN first), clamping, files; never the key.
    assert_eq!(issued["identity"], "bookstore-v2.bookstore.cluster.local");
    assert_eq!(issued["kind"], "service");
    assert_eq!(issued["lifetime_clamped"], false);
    assert_eq!(issued["lifetime_seconds"].as_i64().unwrap() / 3_600, 24);
    let sans: Vec<&str> = issued["subject_alt_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        sans,
        [
            "DNS:bookstore-v2.bookstore.cluster.local",
            "DNS:bookstore.example",
            "IP:10.0.0.7",
            "URI:spiffe://cluster.local/ns/bookstore/sa/bookstore-v2"
        ]
    );
    assert_eq!(
        issued["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert_eq!(issued["files"][2]["mode"], "0600");
    let json_text = stdout(&out);
    assert!(!json_text.contains("PRIVATE KEY"));
    for line in key_bodies(&key) {
        assert!(!json_text.contains(&line), "key material in JSON");
    }

    let Some(ok) = openssl(
        &[
            "verify",
            "-CAfile",
            "tls/ca.pem",
            "-untrusted",
            "tls/chain.pem",
            "tls/cert.pem",
        ],
        s.path(),
    ) else {
        return;
    };
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert_eq!(stdout(&ok), "tls/cert.pem: OK\n");

    // Negative control: another CA's root does not validate it.
    let other = s.ca(
        "other",
        &["issue", "--cn", "x.example", "--out", "other-tls"],
    );
    assert!(other.status.success(), "{}", stderr(&other));
    let bad = openssl(
        &[
            "verify",
            "-CAfile",
            "other-tls/ca.pem",
            "-untrusted",
            "tls/chain.pem",
            "tls/cert.pem",
        ],
        s.path(),
    )
    .unwrap();
    // Refused for the missing issuer above the intermediate, nothing else: exit 2 and
    // OpenSSL's exact account.
    assert_eq!(bad.status.code(), Some(2), "{}", stdout(&bad));
    assert_eq!(
        stderr(&bad),
        "CN = Anchorage Intermediate CA\nerror 20 at 1 depth lookup: unable to get local issuer \
         certificate\nerror tls/cert.pem: verification failed\n"
    );

    // SANs as OpenSSL reads them, SPIFFE ID included; EKU for a service.
    let ext = openssl(
        &[
            "x509",
            "-in",
            "tls/cert.pem",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
        s.path(),
    )
    .unwrap();
    let text = stdout(&ext);
    for want in [
        "DNS:bookstore-v2.bookstore.cluster.local",
        "DNS:bookstore.example",
        "IP Address:10.0.0.7",
        "URI:spiffe://cluster.local/ns/bookstore/sa/bookstore-v2",
        "TLS Web Server Authentication",
        "TLS Web Client Authentication",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // The key matches the certificate.
    let pubkey = |args: &[&str]| stdout(&openssl(args, s.path()).unwrap());
    assert_eq!(
        pubkey(&["pkey", "-in", "tls/key.pem", "-pubout"]),
        pubkey(&["x509", "-in", "tls/cert.pem", "-noout", "-pubkey"])
    );

    // Issuing again into the same directory replaces the four files.
    let again = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "second.example",
            "--kind",
            "client",
            "--out",
            "tls",
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_ne!(fs::read_to_string(tls.join("cert.pem")).unwrap(), cert);
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
}

#[test]
fn a_ttl_beyond_the_ca_is_clamped_with_a_warning_or_refused() {
    let s = Scratch::new();
    s.init("data", &["--ttl", "2d"]);
    let out = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "web.example",
            "--ttl",
            "30d",
            "--out",
            "tls",
            "--output",
            "json",
        ],
    );
    let issued = json_ok(&out);
    assert_eq!(issued["lifetime_clamped"], true);
    let show = json_ok(&s.ca("data", &["show", "--output", "json"]));
    assert_eq!(issued["not_after"], show["not_after"], "ends with the CA");
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("outlive the CA"),
        "{err}"
    );

    // --no-clamp refuses, and the directory keeps the first certificate.
    let before = snapshot(&s.path().join("tls"));
    let refused = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "web.example",
            "--ttl",
            "30d",
            "--no-clamp",
            "--out",
            "tls",
        ],
    );
    let err = fails(&refused, 3);
    assert!(err.contains("outlive the issuing CA"), "{err}");
    assert_eq!(snapshot(&s.path().join("tls")), before);

    // Within the CA's life: not clamped, no warning.
    let fine = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "web.example",
            "--ttl",
            "1h",
            "--out",
            "tls",
        ],
    );
    assert!(
        fine.status.success() && !stderr(&fine).contains("warning"),
        "{}",
        stderr(&fine)
    );
}

#[test]
fn bad_input_is_named_with_its_exit_code_and_leaves_out_untouched() {
    let s = Scratch::new();
    // No CA yet: exit 8, and no store is created by trying.
    let none = s.ca("data", &["issue", "--cn", "a.example", "--out", "tls"]);
    let err = fails(&none, 8);
    assert!(err.contains("ca init"), "{err}");
    assert!(!s.path().join("data").exists());
    assert!(!s.path().join("tls").exists());
    fails(&s.ca("data", &["show"]), 8);
    fails(
        &s.ca("data", &["export", "--format", "pem", "--out", "x"]),
        8,
    );

    s.init("data", &[]);
    // An existing output with earlier files in it.
    fs::create_dir(s.path().join("tls")).unwrap();
    s.write("tls/cert.pem", "earlier certificate");
    s.write("tls/key.pem", "earlier key");
    let before = snapshot(&s.path().join("tls"));
    let cases: [(&[&str], i32, &[&str]); 8] = [
        (&["--key", "dsa1024"], 2, &["--key", "dsa1024", "p256"]),
        (&["--san", "bad_host name"], 2, &["--san", "bad_host name"]),
        (&["--san", "IP:10.0.0.300"], 2, &["10.0.0.300", "IPv4"]),
        (
            &["--spiffe", "Upper.Domain/ns/x/sa/y"],
            2,
            &["--spiffe", "trust domain"],
        ),
        (&["--ttl", "30s"], 2, &["--ttl", "at least one minute"]),
        (&["--ttl", "1fortnight"], 2, &["--ttl", "1fortnight", "24h"]),
        (&["--kind", "mesh"], 2, &["--kind", "mesh", "service"]),
        (&["--cn", ""], 2, &["--cn", "CommonName"]),
    ];
    for (extra, code, words) in cases {
        let mut args = vec!["issue", "--out", "tls"];
        if !extra.contains(&"--cn") {
            args.extend(["--cn", "a.example"]);
        }
        args.extend_from_slice(extra);
        let err = fails(&s.ca("data", &args), code);
        for word in words {
            assert!(err.contains(word), "{extra:?}: {word} in {err}");
        }
        assert_eq!(snapshot(&s.path().join("tls")), before, "{extra:?}");
    }
    // An output directory holding other files is refused (exit 5), untouched.
    fs::create_dir(s.path().join("mixed")).unwrap();
    s.write("mixed/notes.txt", "mine");
    let err = fails(
        &s.ca("data", &["issue", "--cn", "a.example", "--out", "mixed"]),
        5,
    );
    assert!(
        err.contains("notes.txt") && err.contains("new or empty"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(s.path().join("mixed/notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(fs::read_dir(s.path().join("mixed")).unwrap().count(), 1);

    // A damaged store: exit 11, naming the file.
    s.write("data/anchorage.redb", "this is not a database");
    let err = fails(
        &s.ca("data", &["issue", "--cn", "a.example", "--out", "tls"]),
        11,
    );
    assert!(err.contains("anchorage.redb"), "{err}");
    assert_eq!(snapshot(&s.path().join("tls")), before);
}

#[test]
fn an_encrypted_ca_needs_the_right_passphrase() {
    let s = Scratch::new();
    s.write("pass", "correct horse battery staple\n");
    s.write("wrong", "wrong horse\n");
    let init = s.init("data", &["--passphrase-file", "pass"]);
    assert_eq!(init["encrypted"], true);
    let raw = fs::read(s.path().join("data/anchorage.redb")).unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("BEGIN PRIVATE KEY"),
        "no clear key in the store"
    );

    let missing = s.ca("data", &["issue", "--cn", "a.example", "--out", "tls"]);
    let err = fails(&missing, 10);
    assert!(
        err.contains("--passphrase-file") && err.contains("ANCHORAGE_CA_PASSPHRASE"),
        "{err}"
    );
    let wrong = s.ca(
        "data",
        &[
            "issue",
            "--cn",
            "a.example",
            "--out",
            "tls",
            "--passphrase-file",
            "wrong",
        ],
    );
    let err = fails(&wrong, 10);
    assert!(err.contains("does not decrypt"), "{err}");
    assert!(
        !err.contains("horse"),
        "the passphrase is never echoed: {err}"
    );
    assert!(!s.path().join("tls").exists(), "nothing written");

    // The environment variable works too.
    let ok = s.ca_env(
        "data",
        &["issue", "--cn", "a.example", "--out", "tls"],
        &[("ANCHORAGE_CA_PASSPHRASE", "correct horse battery staple")],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(mode(&s.path().join("tls/key.pem")), 0o600);
}

#[test]
fn showing_an_encrypted_ca_needs_no_passphrase_and_matches_init() {
    let s = Scratch::new();
    s.write("pass", "correct horse battery staple\n");
    let init = s.init(
        "data",
        &[
            "--passphrase-file",
            "pass",
            "--intermediate",
            "--key",
            "p384",
        ],
    );
    // No passphrase anywhere: the certificates are shown, the keys stay sealed.
    let show = json_ok(&s.ca("data", &["show", "--output", "json"]));
    for field in [
        "subject",
        "sha256",
        "not_after",
        "key_type",
        "signing_ca",
        "validating_roots",
        "root_key_held",
        "lifetime_policy",
        "encrypted",
        "intermediates",
    ] {
        assert_eq!(
            without_seconds_left(&show[field]),
            without_seconds_left(&init[field]),
            "{field}"
        );
    }
    assert_eq!(show["encrypted"], true);
    assert_eq!(show["key_type"], "p384");
    // Issuing still needs it (negative control).
    fails(
        &s.ca("data", &["issue", "--cn", "a.example", "--out", "tls"]),
        10,
    );
}

#[test]
fn fsm_secret_export_imports_into_a_fresh_store_with_the_same_root() {
    let s = Scratch::new();
    let original = s.init("data", &[]);
    let out = s.ca(
        "data",
        &[
            "export",
            "--format",
            "fsm-secret",
            "-n",
            "fsm-system",
            "--out",
            "fsm.yaml",
            "--output",
            "json",
        ],
    );
    let summary = json_ok(&out);
    assert_eq!(summary["root_sha256"], original["sha256"]);
    assert_eq!(summary["secret"]["name"], "fsm-ca-bundle");
    assert_eq!(mode(&s.path().join("fsm.yaml")), 0o600);

    let text = fs::read_to_string(s.path().join("fsm.yaml")).unwrap();
    let secret: Secret = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("fsm-ca-bundle"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("fsm-system"));
    let data = secret.data.unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ca.crt", "expiration", "private.key"]);

    let imported = json_ok(&s.ca(
        "fresh",
        &[
            "import",
            "--format",
            "fsm-secret",
            "fsm.yaml",
            "--output",
            "json",
        ],
    ));
    assert_eq!(imported["sha256"], original["sha256"]);
    assert_eq!(imported["replaced"], false);
    // And the imported CA issues certificates that chain to the same root.
    let issued = json_ok(&s.ca(
        "fresh",
        &[
            "issue",
            "--cn",
            "a.example",
            "--out",
            "tls",
            "--output",
            "json",
        ],
    ));
    assert_eq!(issued["issuer_id"], original["sha256"]);

    // kubectl's JSON, with the key in stringData, reads the same.
    let pem_key = String::from_utf8(data["private.key"].0.clone()).unwrap();
    let ca_crt = String::from_utf8(data["ca.crt"].0.clone()).unwrap();
    let kubectl = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": "osm-ca-bundle", "namespace": "osm-system" },
        "data": { "ca.crt": base64_of(ca_crt.as_bytes()) },
        "stringData": { "private.key": pem_key },
    });
    s.write("osm.json", kubectl.to_string());
    let again = json_ok(&s.ca(
        "fresh2",
        &[
            "import",
            "--format",
            "fsm-secret",
            "osm.json",
            "--output",
            "json",
        ],
    ));
    assert_eq!(again["sha256"], original["sha256"]);

    // The k8s-tls-secret layout round-trips too.
    let tls = s.ca(
        "data",
        &[
            "export",
            "--format",
            "k8s-tls-secret",
            "--name",
            "mesh-ca",
            "--out",
            "tls-secret.yaml",
        ],
    );
    assert!(tls.status.success(), "{}", stderr(&tls));
    let tls_secret: Secret =
        serde_yaml_ng::from_str(&fs::read_to_string(s.path().join("tls-secret.yaml")).unwrap())
            .unwrap();
    assert_eq!(tls_secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let back = json_ok(&s.ca(
        "fresh3",
        &[
            "import",
            "--format",
            "k8s-tls-secret",
            "tls-secret.yaml",
            "--output",
            "json",
        ],
    ));
    assert_eq!(back["sha256"], original["sha256"]);

    // The wrong format for the file says which one fits.
    let err = fails(
        &s.ca(
            "fresh4",
            &["import", "--format", "k8s-tls-secret", "fsm.yaml"],
        ),
        3,
    );
    assert!(
        err.contains("fsm.yaml") && err.contains("--format fsm-secret"),
        "{err}"
    );

    // Piped stdout (not a terminal) gets the manifest itself.
    let piped = s.ca("data", &["export", "--format", "fsm-secret"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    let piped: Secret = serde_yaml_ng::from_slice(&piped.stdout).unwrap();
    assert_eq!(piped.data.unwrap()["ca.crt"], data["ca.crt"]);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn pem_export_imports_back_with_the_intermediate() {
    let s = Scratch::new();
    let original = s.init("data", &["--intermediate", "--key", "ed25519"]);
    let out = s.ca("data", &["export", "--format", "pem", "--out", "backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = s.path().join("backup");
    let mut names: Vec<_> = fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ca.crt", "ca.key", "intermediate.crt", "intermediate.key"]
    );
    assert_eq!(mode(&backup.join("ca.key")), 0o600);
    assert_eq!(mode(&backup.join("intermediate.key")), 0o600);
    assert_eq!(mode(&backup.join("ca.crt")), 0o644);

    let imported = json_ok(&s.ca(
        "fresh",
        &[
            "import",
            "--format",
            "pem",
            "backup/intermediate.crt",
            "backup/ca.crt",
            "backup/intermediate.key",
            "backup/ca.key",
            "--output",
            "json",
        ],
    ));
    assert_eq!(imported["sha256"], original["sha256"]);
    assert_eq!(imported["signing_ca"], original["signing_ca"]);
    assert_eq!(imported["root_key_held"], true);
    assert_eq!(imported["key_type"], "ed25519");

    // An intermediate CA has no fsm-secret form: exit 2, and the message says what to use.
    let err = fails(
        &s.ca(
            "data",
            &["export", "--format", "fsm-secret", "--out", "fsm.yaml"],
        ),
        2,
    );
    assert!(err.contains("--format pem"), "{err}");
    assert!(!s.path().join("fsm.yaml").exists());
}

#[test]
fn import_refusals_name_the_file_and_never_show_a_key() {
    let s = Scratch::new();
    let root = pki::root_ca("Import Root");
    let other = pki::root_ca("Unrelated Root");
    let expired = pki::expired_root_ca("Expired Root");
    s.write("root.crt", &root.pem);
    s.write("other.key", &other.key_pem);
    s.write("expired.crt", &expired.pem);
    s.write("expired.key", &expired.key_pem);
    let leaf = pki::server_leaf(&["leaf.example"], &root);
    s.write("leaf.crt", &leaf.pem);
    s.write("leaf.key", &leaf.key_pem);
    s.write("root.key", &root.key_pem);

    let cases: [(&[&str], &[&str]); 4] = [
        (&["root.crt", "other.key"], &["other.key", "does not match"]),
        (
            &["expired.crt", "expired.key"],
            &["Expired Root", "not valid now"],
        ),
        (&["leaf.crt", "leaf.key"], &["leaf.crt", "not a CA"]),
        (&["root.crt"], &["no private key"]),
    ];
    let keys = [
        &other.key_pem,
        &expired.key_pem,
        &leaf.key_pem,
        &root.key_pem,
    ];
    for (files, words) in cases {
        let mut args = vec!["import", "--format", "pem"];
        args.extend_from_slice(files);
        let out = s.ca("data", &args);
        let err = fails(&out, 3);
        for word in words {
            assert!(err.contains(word), "{files:?}: {word} in {err}");
        }
        for key in keys {
            for line in key_bodies(key) {
                assert!(
                    !err.contains(&line) && !stdout(&out).contains(&line),
                    "key in output"
                );
            }
        }
    }
    // A Secret whose key entry is damaged: named by file and entry.
    let bad = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "fsm-ca-bundle" },
        "data": { "ca.crt": base64_of(root.pem.as_bytes()), "private.key": "not base64!" },
    });
    s.write("bad.json", bad.to_string());
    let err = fails(
        &s.ca("data", &["import", "--format", "fsm-secret", "bad.json"]),
        3,
    );
    assert!(
        err.contains("bad.json") && err.contains("private.key"),
        "{err}"
    );
    // A missing file.
    let err = fails(
        &s.ca("data", &["import", "--format", "fsm-secret", "absent.yaml"]),
        3,
    );
    assert!(err.contains("absent.yaml"), "{err}");
    // Nothing was stored by any of them.
    fails(&s.ca("data", &["show"]), 8);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let s = Scratch::new();
    for sub in ["init", "issue", "show", "export", "import"] {
        let out = s.run(&["ca", sub, "--help"], &[]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            text.contains("Examples:") && text.contains("Exit codes:"),
            "{sub}: {text}"
        );
    }
    let out = s.run(&["ca", "--help"], &[]);
    assert!(stdout(&out).contains("ANCHORAGE_DATA_DIR"));
}

#[test]
fn vault_backend_issues_from_openbao_and_a_refused_name_is_exit_12() {
    let Some(bao) = OpenBao::start() else {
        return;
    };
    bao.enable_pki("pki");
    bao.generate_root("pki", "Bao Test Root", "8760h");
    bao.create_role(
        "pki",
        "mesh",
        &[
            "allowed_domains=example.test",
            "allow_subdomains=true",
            "max_ttl=72h",
            "key_type=any",
            "allowed_uri_sans=spiffe://example.test/*",
        ],
    );
    let s = Scratch::new();
    let addr = bao.address();
    let token = [("VAULT_TOKEN", bao.root_token())];
    let vault = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "issue",
            "--backend",
            "vault",
            "--vault-addr",
            addr.as_str(),
            "--vault-role",
            "mesh",
        ];
        args.extend_from_slice(extra);
        s.ca_env("unused", &args, env)
    };
    let out = vault(
        &[
            "--cn",
            "web.example.test",
            "--spiffe",
            "example.test/ns/web/sa/web",
            "--out",
            "vtls",
            "--output",
            "json",
        ],
        &token,
    );
    let issued = json_ok(&out);
    assert_eq!(issued["issuer"], "CN=Bao Test Root");
    assert_eq!(
        issued["subject_alt_names"],
        serde_json::json!([
            "DNS:web.example.test",
            "URI:spiffe://example.test/ns/web/sa/web"
        ])
    );
    assert!(!stdout(&out).contains("PRIVATE KEY"));
    let vtls = s.path().join("vtls");
    assert_eq!(mode(&vtls.join("key.pem")), 0o600);
    assert!(
        !s.path().join("unused").exists(),
        "the builtin store is not touched"
    );
    if let Some(ok) = openssl(
        &[
            "verify",
            "-CAfile",
            "vtls/ca.pem",
            "-untrusted",
            "vtls/chain.pem",
            "vtls/cert.pem",
        ],
        s.path(),
    ) {
        assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    }

    // The role refuses a name outside its domains: exit 12, OpenBao's words, DIR untouched.
    let before = snapshot(&vtls);
    let err = fails(&vault(&["--cn", "evil.other", "--out", "vtls"], &token), 12);
    assert!(
        err.contains("evil.other") && err.contains("not allowed"),
        "{err}"
    );
    assert_eq!(snapshot(&vtls), before);

    // No credentials: exit 2, saying where they come from.
    let err = fails(&vault(&["--cn", "web.example.test", "--out", "x"], &[]), 2);
    assert!(
        err.contains("VAULT_TOKEN") && err.contains("--approle-role-id"),
        "{err}"
    );

    // AppRole, with the key made here (only a CSR goes to OpenBao).
    bao.write_policy(
        "mesh-issue",
        "path \"pki/sign/mesh\" { capabilities = [\"update\"] }\npath \"pki/issue/mesh\" { capabilities = [\"update\"] }\n",
    );
    bao.enable_approle();
    let creds = bao.create_approle("anchorage", &["mesh-issue"], "1h");
    s.write("secret-id", format!("{}\n", creds.secret_id));
    let local = vault(
        &[
            "--cn",
            "api.example.test",
            "--key",
            "p384",
            "--vault-key-location",
            "local",
            "--approle-role-id",
            &creds.role_id,
            "--approle-secret-id-file",
            "secret-id",
            "--out",
            "local-tls",
            "--output",
            "json",
        ],
        &[],
    );
    let issued = json_ok(&local);
    assert_eq!(issued["key_type"], "p384");
    assert_eq!(mode(&s.path().join("local-tls/key.pem")), 0o600);

    // An unreachable server: exit 7.
    let err = fails(
        &s.ca_env(
            "unused",
            &[
                "issue",
                "--backend",
                "vault",
                "--vault-addr",
                "http://127.0.0.1:1",
                "--vault-role",
                "mesh",
                "--cn",
                "web.example.test",
                "--out",
                "y",
            ],
            &token,
        ),
        7,
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

/// `value` without its `seconds_left` fields: they count down between two commands, so a
/// second passing between `init` and `show` must not fail a comparison of the same CA.
fn without_seconds_left(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != "seconds_left")
            .map(|(k, v)| (k.clone(), without_seconds_left(v)))
            .collect(),
        serde_json::Value::Array(items) => items.iter().map(without_seconds_left).collect(),
        other => other.clone(),
    }
}

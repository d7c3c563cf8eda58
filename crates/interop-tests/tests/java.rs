//! Interop tier: Java 17 (JSSE and `keytool`) reads our PKCS#12 and JKS trust stores.
//!
//! The TLS rows make a private PKI (root → intermediate → `localhost` leaf), start
//! `openssl s_server` on loopback sending the leaf and intermediate, and write every store twice
//! with the library writers: from a **trusted** bundle (our root, an unrelated root and
//! Mozilla's roots, so Java must find ours among some 150 entries) and from an **untrusted** one
//! (the same without our root). A small Java client, configured only by
//! `-Djavax.net.ssl.trustStore`, `-Djavax.net.ssl.trustStoreType` and (when the store has one)
//! `-Djavax.net.ssl.trustStorePassword`, opens `https://localhost:PORT/`:
//!
//! | store | trusted bundle | untrusted bundle (negative control) |
//! |---|---|---|
//! | PKCS#12 modern-2023, legacy-des, legacy-rc2 (with password) | handshake OK | PKIX: no certification path |
//! | PKCS#12 unprotected (no trustStorePassword) | handshake OK | PKIX: no certification path |
//! | JKS with `changeit`, JKS with a custom password | handshake OK | PKIX: no certification path |
//! | modern PKCS#12 / custom JKS with a wrong trustStorePassword | keystore load error | — |
//!
//! The `keytool` rows check that `keytool -list` sees exactly the bundle's certificates, all
//! `trustedCertEntry`, under our aliases (for a two-CA bundle in every format, and for the
//! Mozilla-sized bundle), with aliases also pinned literally (slugs written out, hex digits from
//! `openssl`'s fingerprint and keytool's own; ISRG Root X1's alias and fingerprint written out),
//! that a store without a CA does not list it (negative control), and that our decoder reads
//! what `keytool -importcert` writes.
//!
//! Java is kept off its own `cacerts` by the `trustStore` property itself (the negative control
//! shows it), and off ambient options by clearing `JAVA_TOOL_OPTIONS`, `_JAVA_OPTIONS`,
//! `JDK_JAVA_OPTIONS` and `CLASSPATH`. The client is compiled once per test run with `javac`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anchorage_interop_tests::without_ambient;
use anchorage_keystore::{
    KeystoreError, KeystoreKind, SecretString, aliases, decode_jks, decode_pkcs12,
};
use anchorage_test_support::peer::{self, ClientRun};
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::{
    Bundle, LoadOptions, Pkcs12Options, Pkcs12Profile, Policy, Source, load, write_jks,
    write_pkcs12,
};

/// Longest one JVM run may take before it is killed and the test fails.
const JAVA_TIMEOUT: Duration = Duration::from_secs(60);

/// What Java says when no trust anchor in the store vouches for the server.
const NO_PATH: &str = "unable to find valid certification path to requested target";

/// Opens `args[0]` with the default SSL context (so only the `javax.net.ssl.trustStore*`
/// properties decide trust) and prints `OK <status> <protocol>` or the exception and its causes.
const CLIENT: &str = r#"
import java.io.FileInputStream;
import java.net.URL;
import java.security.KeyStore;
import javax.net.ssl.HttpsURLConnection;

public class AnchorageJavaClient {
    public static void main(String[] args) {
        try {
            HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
            c.setConnectTimeout(15000);
            c.setReadTimeout(15000);
            c.connect();
            int status = c.getResponseCode();
            System.out.println("OK " + status + " " + c.getCipherSuite());
            System.exit(status == 200 ? 0 : 2);
        } catch (Throwable e) {
            print("FAILED ", e);
            explainStore();
            System.exit(1);
        }
    }

    static void print(String prefix, Throwable e) {
        System.out.println(prefix + e);
        for (Throwable t = e.getCause(); t != null; t = t.getCause()) {
            System.out.println("caused by: " + t);
        }
    }

    // JSSE reports a store that does not load as "problem accessing trust store" without the
    // cause: load it the same way, from the same properties, to show why.
    static void explainStore() {
        String path = System.getProperty("javax.net.ssl.trustStore");
        String type = System.getProperty("javax.net.ssl.trustStoreType");
        String password = System.getProperty("javax.net.ssl.trustStorePassword");
        try (FileInputStream in = new FileInputStream(path)) {
            KeyStore ks = KeyStore.getInstance(type);
            ks.load(in, password == null ? null : password.toCharArray());
            System.out.println("store loads: " + ks.size() + " entries");
        } catch (Throwable e) {
            print("store does not load: ", e);
        }
    }
}
"#;

/// The Java tools, and the directory holding the compiled client.
struct Java {
    java: PathBuf,
    keytool: PathBuf,
    classes: PathBuf,
}

impl Java {
    /// Finds `java`, `javac` and `keytool` and compiles the client once per test process;
    /// `None` when one is missing locally.
    fn get() -> Option<&'static Self> {
        static JAVA: OnceLock<Option<Java>> = OnceLock::new();
        JAVA.get_or_init(|| {
            let java = peer::require("java")?;
            let javac = peer::require("javac")?;
            let keytool = peer::require("keytool")?;
            let classes = Path::new(env!("CARGO_TARGET_TMPDIR")).join("java-client");
            std::fs::create_dir_all(&classes).expect("create class dir");
            let source = classes.join("AnchorageJavaClient.java");
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&source, CLIENT).expect("write client source");
            let mut cmd = Command::new(javac);
            cmd.arg("-d").arg(&classes).arg(&source);
            let run = run(&mut cmd);
            assert!(run.status.success(), "javac failed:\n{}", run.output());
            Some(Self {
                java,
                keytool,
                classes,
            })
        })
        .as_ref()
    }

    /// `keytool` with English output, so lines can be matched.
    fn keytool(&self) -> Command {
        let mut cmd = Command::new(&self.keytool);
        cmd.args(["-J-Duser.language=en", "-J-Duser.country=US"]);
        cmd
    }
}

/// Runs a JVM tool with the ambient variables cleared, killing it after [`JAVA_TIMEOUT`].
fn run(cmd: &mut Command) -> ClientRun {
    without_ambient(cmd);
    peer::run_client(cmd, JAVA_TIMEOUT)
}

/// Builds a bundle with the default policy from `sources`.
fn bundle(sources: &[Source]) -> Bundle {
    let (bundle, report) = Policy::default()
        .apply(load(sources, &LoadOptions::default()))
        .expect("build bundle");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    bundle
}

fn secret(p: &str) -> SecretString {
    SecretString::from(p)
}

/// One trust store format and how Java is told to open it.
#[derive(Clone, Copy, Debug)]
struct Format {
    /// File name.
    name: &'static str,
    /// `javax.net.ssl.trustStoreType` / `keytool -storetype`.
    java_type: &'static str,
    /// PKCS#12 profile, or `None` for JKS.
    profile: Option<Pkcs12Profile>,
    /// The store password, if it has one.
    password: Option<&'static str>,
}

const FORMATS: &[Format] = &[
    Format {
        name: "modern.p12",
        java_type: "PKCS12",
        profile: Some(Pkcs12Profile::Modern2023),
        password: Some("Modern-Pass-1"),
    },
    Format {
        name: "legacy-des.p12",
        java_type: "PKCS12",
        profile: Some(Pkcs12Profile::LegacyDes),
        password: Some("Des-Pass-2"),
    },
    Format {
        name: "legacy-rc2.p12",
        java_type: "PKCS12",
        profile: Some(Pkcs12Profile::LegacyRc2),
        password: Some("Rc2-Pass-3"),
    },
    Format {
        name: "unprotected.p12",
        java_type: "PKCS12",
        profile: Some(Pkcs12Profile::Unprotected),
        password: None,
    },
    Format {
        name: "changeit.jks",
        java_type: "JKS",
        profile: None,
        password: Some("changeit"),
    },
    Format {
        name: "custom.jks",
        java_type: "JKS",
        profile: None,
        password: Some("Custom-Jks-4"),
    },
];

impl Format {
    /// Writes `bundle` in this format into `dir` with the library writers.
    fn write(self, bundle: &Bundle, dir: &Path) -> PathBuf {
        let path = dir.join(self.name);
        match self.profile {
            Some(profile) => {
                let options = Pkcs12Options {
                    profile,
                    password: self.password.map(secret),
                    iterations: anchorage_keystore::DEFAULT_ITERATIONS,
                };
                write_pkcs12(bundle, &path, &options).expect("write PKCS#12");
            }
            None => {
                let password = secret(self.password.expect("JKS has a password"));
                write_jks(bundle, &path, &password).expect("write JKS");
            }
        }
        path
    }
}

/// What a client run must show.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The handshake verified and the server answered.
    Verified,
    /// The negative control: no certification path to our root.
    NoPath,
    /// JSSE could not load the store, and loading it by hand says why (this text).
    LoadError(&'static str),
}

/// Why a run did not behave as expected, if it did not.
fn judge(run: &ClientRun, expect: Expect) -> Option<String> {
    let out = run.output();
    let ok = run.status.success() && out.contains("OK 200");
    match expect {
        Expect::Verified if !ok => Some("expected a verified handshake".into()),
        Expect::NoPath if ok || !out.contains(NO_PATH) => Some(format!("expected {NO_PATH:?}")),
        Expect::LoadError(text) if ok || !out.contains(text) || out.contains(NO_PATH) => Some(
            format!("expected a keystore load error mentioning {text:?}"),
        ),
        _ => None,
    }
}

#[test]
fn java_trusts_our_stores_only_with_our_root_and_right_password() {
    let Some(java) = Java::get() else {
        return;
    };
    let tmp = tempdir().expect("temp dir");
    let pki = Pki::new("Anchorage Java Interop");
    let files = pki.write_server_files(tmp.path());
    let unrelated = pki::root_ca("Unrelated Java Interop Root CA").write_pem(tmp.path(), "u.pem");
    let common = [Source::Path(unrelated), Source::Mozilla];
    let trusted = bundle(&[&[Source::Path(files.root.clone())][..], &common[..]].concat());
    let untrusted = bundle(&common);
    assert_eq!(trusted.len(), untrusted.len() + 1);
    assert!(
        untrusted.len() > 100,
        "Mozilla's roots should fill the store"
    );
    let Some(server) = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };

    let mut rows: Vec<(String, PathBuf, Format, Option<&'static str>, Expect)> = Vec::new();
    for (label, bundle, expect) in [
        ("trusted", &trusted, Expect::Verified),
        ("untrusted", &untrusted, Expect::NoPath),
    ] {
        let dir = tmp.path().join(label);
        for &format in FORMATS {
            let path = format.write(bundle, &dir);
            rows.push((
                format!("{label} {}", format.name),
                path,
                format,
                format.password,
                expect,
            ));
        }
    }
    // A wrong trustStorePassword: Java must refuse to load the store at all.
    let modern = FORMATS[0];
    let custom_jks = FORMATS[5];
    rows.push((
        "wrong password modern.p12".into(),
        tmp.path().join("trusted").join(modern.name),
        modern,
        Some("Not-The-Password"),
        Expect::LoadError("keystore password was incorrect"),
    ));
    rows.push((
        "wrong password custom.jks".into(),
        tmp.path().join("trusted").join(custom_jks.name),
        custom_jks,
        Some("changeit"),
        Expect::LoadError("Keystore was tampered with, or password was incorrect"),
    ));

    let url = format!("https://localhost:{}/", server.port());
    let results = run_rows(java, &rows, &url);
    let failures: Vec<String> = rows
        .iter()
        .zip(&results)
        .filter_map(|((label, _, _, _, expect), (cmd, run))| {
            judge(run, *expect).map(|why| {
                format!(
                    "{label}: {why}\n  command: {cmd}\n  exit: {}\n--- output\n{}",
                    run.status,
                    run.output()
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    drop(server);
}

/// Runs one JVM per row, two at a time (one per core), in row order.
fn run_rows(
    java: &Java,
    rows: &[(String, PathBuf, Format, Option<&'static str>, Expect)],
    url: &str,
) -> Vec<(String, ClientRun)> {
    let command = |path: &Path, format: Format, password: Option<&str>| {
        let mut cmd = Command::new(&java.java);
        cmd.args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(format!("-Djavax.net.ssl.trustStore={}", path.display()))
            .arg(format!(
                "-Djavax.net.ssl.trustStoreType={}",
                format.java_type
            ));
        if let Some(password) = password {
            cmd.arg(format!("-Djavax.net.ssl.trustStorePassword={password}"));
        }
        cmd.arg("-cp")
            .arg(&java.classes)
            .arg("AnchorageJavaClient")
            .arg(url);
        cmd
    };
    let mut results = Vec::with_capacity(rows.len());
    for pair in rows.chunks(2) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = pair
                .iter()
                .map(|(_, path, format, password, _)| {
                    scope.spawn(move || {
                        let mut cmd = command(path, *format, *password);
                        let shown = format!("{cmd:?}");
                        (shown, run(&mut cmd))
                    })
                })
                .collect();
            for handle in handles {
                results.push(handle.join().expect("client thread"));
            }
        });
    }
    results
}

/// `keytool -list`: the entry count and the aliases of `trustedCertEntry` lines, and whether any
/// other kind of entry was listed.
/// ISRG Root X1 (Let's Encrypt), one of Mozilla's roots: the alias keytool must list it under,
/// written out by hand (the slug of its common name, then the first 8 hex digits of its
/// SHA-256 fingerprint), and that fingerprint as published by Let's Encrypt.
const ISRG_ALIAS: &str = "isrg-root-x1-96bcec06";
const ISRG_SHA256: &str = "96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6";

/// `openssl x509 -fingerprint -sha256` of a PEM file, as lowercase hex without colons: a
/// fingerprint computed by neither our code nor keytool.
fn openssl_sha256(pem: &Path) -> String {
    let run = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem));
    assert!(run.status.success(), "{}", run.output());
    let (_, hex) = run
        .stdout
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("no fingerprint in {}", run.stdout));
    hex.replace(':', "").to_lowercase()
}

/// `keytool -list`: the entry count it states, its `trustedCertEntry` aliases with the SHA-256
/// fingerprint it prints under each (lowercase hex without colons), and its whole output.
fn keytool_list(
    java: &Java,
    path: &Path,
    format: Format,
) -> (usize, BTreeMap<String, String>, String) {
    let mut cmd = java.keytool();
    cmd.arg("-list")
        .arg("-keystore")
        .arg(path)
        .args(["-storetype", format.java_type]);
    if let Some(password) = format.password {
        cmd.args(["-storepass", password]);
    }
    let run = run(&mut cmd);
    let out = run.output();
    assert!(run.status.success(), "{cmd:?}:\n{out}");
    let count = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("Your keystore contains ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no entry count in:\n{out}"));
    let mut trusted = BTreeMap::new();
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if !line.contains(", trustedCertEntry,") {
            continue;
        }
        let alias = line.split(", ").next().unwrap_or_default().to_owned();
        let fingerprint = lines
            .next()
            .and_then(|l| l.strip_prefix("Certificate fingerprint (SHA-256): "))
            .unwrap_or_else(|| panic!("no fingerprint after {line:?} in:\n{out}"))
            .replace(':', "")
            .to_lowercase();
        assert!(
            trusted.insert(alias.clone(), fingerprint).is_none(),
            "{alias} listed twice:\n{out}"
        );
    }
    (count, trusted, out)
}

#[test]
fn keytool_lists_exactly_our_entries_under_our_aliases() {
    let Some(java) = Java::get() else {
        return;
    };
    if peer::require("openssl").is_none() {
        return;
    }
    let tmp = tempdir().expect("temp dir");
    let ours = pki::root_ca("Anchorage Keytool Root CA").write_pem(tmp.path(), "ours.pem");
    let other = pki::root_ca("Anchorage Keytool Other CA").write_pem(tmp.path(), "other.pem");
    let (ours_sha, other_sha) = (openssl_sha256(&ours), openssl_sha256(&other));
    // The aliases written out: the slug of each common name, then 8 hex digits of the
    // fingerprint openssl computed.
    let ours_alias = format!("anchorage-keytool-root-ca-{}", &ours_sha[..8]);
    let other_alias = format!("anchorage-keytool-other-ca-{}", &other_sha[..8]);
    let small = bundle(&[Source::Path(ours.clone()), Source::Path(other)]);
    let big = bundle(&[Source::Path(ours), Source::Mozilla]);
    assert!(big.len() > 100);

    let mut failures = Vec::new();
    let mut check = |label: &str, bundle: &Bundle, format: Format| {
        let dir = tmp.path().join(label);
        let path = format.write(bundle, &dir);
        let (count, listed, out) = keytool_list(java, &path, format);
        let names: BTreeSet<String> = listed.keys().cloned().collect();
        let expected: BTreeSet<String> = aliases(bundle.certificates()).into_iter().collect();
        // Each alias ends with the first 8 hex digits of the fingerprint keytool prints for it.
        for (alias, sha) in &listed {
            if !alias.ends_with(&format!("-{}", &sha[..8])) {
                failures.push(format!(
                    "{label} {}: alias {alias} for SHA-256 {sha}",
                    format.name
                ));
            }
        }
        // Literal expectations, ours and Mozilla's, and the negative controls: a store
        // without a CA does not list it.
        let pins: Vec<(&str, Option<&str>)> = match label {
            "small" => vec![
                (ours_alias.as_str(), Some(ours_sha.as_str())),
                (other_alias.as_str(), Some(other_sha.as_str())),
                (ISRG_ALIAS, None),
            ],
            _ => vec![
                (ours_alias.as_str(), Some(ours_sha.as_str())),
                (ISRG_ALIAS, Some(ISRG_SHA256)),
                (other_alias.as_str(), None),
            ],
        };
        for (alias, sha) in pins {
            if listed.get(alias).map(String::as_str) != sha {
                failures.push(format!(
                    "{label} {}: {alias} listed as {:?}, expected {sha:?}",
                    format.name,
                    listed.get(alias)
                ));
            }
        }
        if label == "big" && listed.values().any(|sha| *sha == other_sha) {
            failures.push(format!("{label} {}: the other CA is listed", format.name));
        }
        if count != bundle.len() || names != expected {
            failures.push(format!(
                "{label} {}: keytool counted {count} and listed {} trustedCertEntry, expected {} \
                 (aliases missing: {:?}, unexpected: {:?})\n{out}",
                format.name,
                listed.len(),
                bundle.len(),
                expected.difference(&names).collect::<Vec<_>>(),
                names.difference(&expected).collect::<Vec<_>>(),
            ));
        }
    };
    for &format in FORMATS {
        check("small", &small, format);
    }
    for &format in &[FORMATS[0], FORMATS[4]] {
        check("big", &big, format);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn our_decoder_reads_what_keytool_importcert_writes() {
    let Some(java) = Java::get() else {
        return;
    };
    let tmp: TempDir = tempdir().expect("temp dir");
    let pki = Pki::new("Anchorage Keytool Import");
    let root = pki.root.write_pem(tmp.path(), "root.pem");
    let intermediate = pki.intermediate.write_pem(tmp.path(), "intermediate.pem");
    let imports = [
        ("Our-Root", &root, &pki.root.der),
        ("Our-Intermediate", &intermediate, &pki.intermediate.der),
    ];

    for (kind, store_type, file) in [
        (KeystoreKind::Pkcs12, "PKCS12", "keytool.p12"),
        (KeystoreKind::Jks, "JKS", "keytool.jks"),
    ] {
        let path = tmp.path().join(file);
        for (alias, pem, _) in &imports {
            let mut cmd = java.keytool();
            cmd.args(["-importcert", "-noprompt", "-alias", alias, "-file"])
                .arg(pem)
                .arg("-keystore")
                .arg(&path)
                .args(["-storetype", store_type, "-storepass", "changeit"]);
            let run = run(&mut cmd);
            assert!(run.status.success(), "{cmd:?}:\n{}", run.output());
        }
        let bytes = std::fs::read(&path).expect("read keytool's store");
        assert_eq!(anchorage_keystore::sniff(&bytes), Some(kind));
        let password = secret("changeit");
        let store = match kind {
            KeystoreKind::Pkcs12 => decode_pkcs12(&bytes, Some(&password)),
            _ => decode_jks(&bytes, Some(&password)),
        }
        .unwrap_or_else(|e| panic!("decode keytool's {file}: {e}"));
        assert!(store.integrity_checked, "{file}");
        assert!(store.key_entries.is_empty(), "{file}");
        let mut got: Vec<(String, Vec<u8>)> = store
            .certificates
            .iter()
            .map(|c| {
                assert!(c.trusted, "{file}: {:?} is not a trusted entry", c.alias);
                (c.alias.clone().unwrap_or_default(), c.der.clone())
            })
            .collect();
        got.sort();
        // PKCS#12 keeps the alias as given; JKS stores it lowercased.
        let mut want: Vec<(String, Vec<u8>)> = imports
            .iter()
            .map(|(alias, _, der)| {
                let alias = match kind {
                    KeystoreKind::Jks => alias.to_lowercase(),
                    _ => (*alias).to_owned(),
                };
                (alias, (*der).clone())
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "{file}");
        let wrong = match kind {
            KeystoreKind::Pkcs12 => decode_pkcs12(&bytes, Some(&secret("changeme"))),
            _ => decode_jks(&bytes, Some(&secret("changeme"))),
        };
        assert!(
            matches!(wrong, Err(KeystoreError::WrongPassword { .. })),
            "{file}: {wrong:?}"
        );
    }
}

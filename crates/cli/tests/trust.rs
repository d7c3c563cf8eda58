//! `anchorage trust install|uninstall` for real: the Debian path runs the system's own
//! `update-ca-certificates` in a temporary sysroot, and `openssl verify` judges the bundle it
//! built; the JDK path runs keytool on a copy of the JDK's cacerts, and Java 17 connects to a
//! private-CA server with that store. Each has its negative control (before install, after
//! uninstall), a re-run that changes nothing, and a dry run that changes nothing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anchorage_test_support::peer;
use anchorage_test_support::pki::Pki;
use anchorage_test_support::tempdir;

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("JAVA_TOOL_OPTIONS")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A Debian-like root: the directories update-ca-certificates reads, with one distribution CA
/// listed in its configuration (as every real system has: the tool rebuilds the bundle only
/// when some certificate remains).
fn debian_sysroot(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "etc/ssl/certs",
        "usr/share/ca-certificates/mozilla",
        "usr/local/share/ca-certificates",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    anchorage_test_support::pki::root_ca("Trust Install Distro Root").write_pem(
        &root.join("usr/share/ca-certificates/mozilla"),
        "Distro_Root.crt",
    );
    #[allow(clippy::disallowed_methods)] // a test fixture, not an output
    std::fs::write(
        root.join("etc/ca-certificates.conf"),
        "mozilla/Distro_Root.crt\n",
    )
    .unwrap();
    root
}

/// `openssl verify -CAfile BUNDLE -untrusted INTERMEDIATE LEAF` succeeded.
fn openssl_verifies(bundle: &Path, chain: &Path, leaf: &Path) -> bool {
    if !bundle.exists() {
        return false;
    }
    Command::new("openssl")
        .args(["verify", "-no-CApath", "-no-CAstore", "-CAfile"])
        .arg(bundle)
        .arg("-untrusted")
        .arg(chain)
        .arg(leaf)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn install_into_a_debian_sysroot_runs_update_ca_certificates_and_uninstall_undoes_it() {
    let (Some(_update), Some(_openssl)) = (
        peer::require("update-ca-certificates"),
        peer::require("openssl"),
    ) else {
        return;
    };
    let dir = tempdir().unwrap();
    let pki = Pki::new("Trust Install Debian");
    let files = pki.write_server_files(dir.path());
    let root = debian_sysroot(dir.path());
    let sysroot = root.to_str().unwrap();
    let ca = files.root.to_str().unwrap();
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    let verifies = || openssl_verifies(&bundle, &files.chain, &files.cert);
    // Negative control: the system does not trust the private root yet.
    assert!(!verifies());

    // A dry run prints the plan and changes nothing.
    let dry = anchorage(
        dir.path(),
        &["trust", "install", ca, "--sysroot", sysroot, "--dry-run"],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains("would write") && said.contains("would run update-ca-certificates --sysroot"),
        "{said}"
    );
    assert!(
        !root
            .join("usr/local/share/ca-certificates/anchorage")
            .exists()
    );
    assert!(!verifies());

    let installed = anchorage(dir.path(), &["trust", "install", ca, "--sysroot", sysroot]);
    assert!(installed.status.success(), "{}", text(&installed));
    let local: Vec<_> = std::fs::read_dir(root.join("usr/local/share/ca-certificates/anchorage"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(local[0].starts_with("anchorage-") && local[0].ends_with(".crt"));
    assert!(
        verifies(),
        "the rebuilt bundle trusts the root: {}",
        text(&installed)
    );
    // The hashed directory holds it too (update-ca-certificates links and rehashes).
    let hashed = std::fs::read_dir(root.join("etc/ssl/certs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".0")
        })
        .count();
    assert!(hashed >= 1);

    // Idempotent: a re-run changes nothing and runs nothing.
    let before = std::fs::read(&bundle).unwrap();
    let again = anchorage(dir.path(), &["trust", "install", ca, "--sysroot", sysroot]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do (already installed)"),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read(&bundle).unwrap(), before);

    // Reversible.
    let removed = anchorage(
        dir.path(),
        &["trust", "uninstall", ca, "--sysroot", sysroot],
    );
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(!verifies(), "uninstall takes it out of the bundle");
    assert_eq!(
        std::fs::read_dir(root.join("usr/local/share/ca-certificates/anchorage"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_leaf_is_refused_and_an_empty_root_names_what_it_looked_for() {
    let dir = tempdir().unwrap();
    let pki = Pki::new("Trust Install Bad");
    let files = pki.write_server_files(dir.path());
    let root = debian_sysroot(dir.path());
    let out = anchorage(
        dir.path(),
        &[
            "trust",
            "install",
            files.cert.to_str().unwrap(),
            "--sysroot",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CA certificate"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = anchorage(
        dir.path(),
        &[
            "trust",
            "install",
            files.root.to_str().unwrap(),
            "--sysroot",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usr/local/share/ca-certificates"));
}

/// A Java 17 single-file program that GETs `args[0]` with the default SSL context.
const JAVA_GET: &str = r#"
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

public class Get {
    public static void main(String[] args) throws Exception {
        try {
            HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
            c.setConnectTimeout(15000);
            c.setReadTimeout(15000);
            System.out.println("OK " + c.getResponseCode());
        } catch (Exception e) {
            System.out.println("FAILED " + e);
            System.exit(1);
        }
    }
}
"#;

#[test]
fn install_into_a_copy_of_the_jdk_cacerts_with_keytool_and_java_trusts_it() {
    let (Some(java), Some(_keytool)) = (peer::require("java"), peer::require("keytool")) else {
        return;
    };
    let dir = tempdir().unwrap();
    // A JAVA_HOME whose cacerts is a copy of the real JDK's.
    let real_home = std::fs::canonicalize(&java)
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let home = dir.path().join("jdk");
    std::fs::create_dir_all(home.join("lib/security")).unwrap();
    let cacerts = home.join("lib/security/cacerts");
    std::fs::copy(real_home.join("lib/security/cacerts"), &cacerts).unwrap();
    let home_arg = home.to_str().unwrap();

    let pki = Pki::new("Trust Install Java");
    let files = pki.write_server_files(dir.path());
    let Some(server) = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    let source = dir.path().join("Get.java");
    #[allow(clippy::disallowed_methods)] // a test program, not an output
    std::fs::write(&source, JAVA_GET).unwrap();
    let url = format!("https://127.0.0.1:{}/", server.port());
    let java_trusts = || {
        let mut cmd = Command::new(&java);
        cmd.env_remove("JAVA_TOOL_OPTIONS")
            .env_remove("_JAVA_OPTIONS")
            .env_remove("JDK_JAVA_OPTIONS")
            .arg(format!("-Djavax.net.ssl.trustStore={}", cacerts.display()))
            .arg("-Djavax.net.ssl.trustStorePassword=changeit")
            .arg(&source)
            .arg(&url);
        let run = peer::run_client(&mut cmd, Duration::from_secs(60));
        (
            run.status.success() && run.stdout.contains("OK 200"),
            run.output(),
        )
    };
    // Negative control: the JDK's own roots do not include the private one.
    let (ok, said) = java_trusts();
    assert!(!ok, "{said}");
    let entries_before = keytool_count(&cacerts);

    let ca = files.root.to_str().unwrap();
    let dry = anchorage(
        dir.path(),
        &["trust", "install", ca, "--java", home_arg, "--dry-run"],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would run keytool -importcert"));
    assert!(
        !String::from_utf8_lossy(&dry.stdout).contains("changeit"),
        "{}",
        text(&dry)
    );
    assert_eq!(keytool_count(&cacerts), entries_before);

    let installed = anchorage(dir.path(), &["trust", "install", ca, "--java", home_arg]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert_eq!(keytool_count(&cacerts), entries_before + 1);
    let (ok, said) = java_trusts();
    assert!(ok, "{said}");

    let again = anchorage(dir.path(), &["trust", "install", ca, "--java", home_arg]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"));
    assert_eq!(keytool_count(&cacerts), entries_before + 1);

    let removed = anchorage(dir.path(), &["trust", "uninstall", ca, "--java", home_arg]);
    assert!(removed.status.success(), "{}", text(&removed));
    assert_eq!(keytool_count(&cacerts), entries_before);
    let (ok, said) = java_trusts();
    assert!(!ok, "{said}");
}

/// How many entries `keytool -list` counts in `store`.
fn keytool_count(store: &Path) -> usize {
    let out = Command::new("keytool")
        .args([
            "-J-Duser.language=en",
            "-list",
            "-storepass",
            "changeit",
            "-keystore",
        ])
        .arg(store)
        .env_remove("JAVA_TOOL_OPTIONS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("trustedCertEntry"))
        .count()
}

#[test]
fn install_into_an_nss_database_with_certutil_and_uninstall_removes_it() {
    let Some(certutil) = peer::require("certutil") else {
        return;
    };
    let dir = tempdir().unwrap();
    let db = dir.path().join("nssdb");
    std::fs::create_dir(&db).unwrap();
    let made = Command::new(&certutil)
        .args(["-N", "--empty-password", "-d"])
        .arg(format!("sql:{}", db.display()))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let pki = Pki::new("Trust Install NSS");
    let files = pki.write_server_files(dir.path());
    let ca = files.root.to_str().unwrap();
    let db_arg = db.to_str().unwrap();
    // The nickname is anchorage-<16 hex of the SHA-256>; list what the database holds.
    let listed = || {
        let out = Command::new(&certutil)
            .arg("-L")
            .arg("-d")
            .arg(format!("sql:{}", db.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!listed().contains("anchorage-"), "negative control");

    let dry = anchorage(
        dir.path(),
        &["trust", "install", ca, "--nss-db", db_arg, "--dry-run"],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would run certutil -A"));
    assert!(!listed().contains("anchorage-"));

    let installed = anchorage(dir.path(), &["trust", "install", ca, "--nss-db", db_arg]);
    assert!(installed.status.success(), "{}", text(&installed));
    let list = listed();
    let line = list
        .lines()
        .find(|l| l.starts_with("anchorage-"))
        .unwrap_or_else(|| panic!("not installed:\n{list}"));
    assert!(
        line.trim_end().ends_with("C,,"),
        "trusted to issue server certificates: {line}"
    );

    let again = anchorage(dir.path(), &["trust", "install", ca, "--nss-db", db_arg]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        text(&again)
    );

    let removed = anchorage(dir.path(), &["trust", "uninstall", ca, "--nss-db", db_arg]);
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(!listed().contains("anchorage-"));
}

//! The built-in CA checked by the real `openssl` binary: issued chains verify (and the
//! purposes match each kind), a leaf from another CA does not, `openssl x509 -text` shows the
//! extensions we mean, a root made by OpenSSL (PKCS#1 RSA and SEC 1 EC keys, as meshes keep
//! them) can be taken over, and our encrypted key files open with `openssl pkey`.
//!
//! Skipped (loudly) when `openssl` is missing locally; a failure in CI.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anchorage_ca::persist::{self, Kdf};
use anchorage_ca::{
    BuiltinCa, CertKind, CertificateRequest, Identity, InitOptions, IntermediateOptions,
    IssuedCertificate, KeyType, San, SpiffeId,
};
use anchorage_test_support::peer::require;
use secrecy::{ExposeSecret as _, SecretString};

const NAME: &str = "bookstore-v2.bookstore.cluster.local";
const SPIFFE: &str = "spiffe://cluster.local/ns/bookstore/sa/bookstore-v2";

struct Openssl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Openssl {
    fn new() -> Option<Self> {
        Some(Self {
            bin: require("openssl")?,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents).unwrap();
        path
    }

    /// Runs openssl; returns (success, stdout + stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `openssl verify -x509_strict -purpose … -CAfile roots [-untrusted chain] leaf`.
    fn verify(&self, issued: &IssuedCertificate, roots: &str, purpose: &str) -> (bool, String) {
        let roots = self.file("roots.pem", roots.as_bytes());
        let leaf = self.file("leaf.pem", issued.certificate.to_pem().as_bytes());
        let mut args = vec![
            "verify".to_owned(),
            "-x509_strict".to_owned(),
            "-purpose".to_owned(),
            purpose.to_owned(),
            "-CAfile".to_owned(),
            path_str(&roots),
        ];
        if !issued.chain.is_empty() {
            let chain: String = issued.chain.iter().map(|c| c.to_pem()).collect();
            args.push("-untrusted".to_owned());
            args.push(path_str(&self.file("chain.pem", chain.as_bytes())));
        }
        args.push(path_str(&leaf));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn service(key_type: KeyType) -> CertificateRequest {
    CertificateRequest::new(Identity::new(NAME).unwrap(), CertKind::Service)
        .with_san(San::parse("10.0.0.7").unwrap())
        .with_san(San::spiffe(
            &SpiffeId::workload("cluster.local", "bookstore", "bookstore-v2").unwrap(),
        ))
        .with_key_type(key_type)
}

fn init(key_type: KeyType, intermediate: bool) -> BuiltinCa {
    BuiltinCa::init(&InitOptions {
        key_type,
        intermediate: intermediate.then(IntermediateOptions::default),
        ..InitOptions::default()
    })
    .unwrap()
}

fn roots_pem(ca: &BuiltinCa) -> String {
    ca.roots().iter().map(|c| c.to_pem()).collect()
}

#[test]
fn issued_chains_verify_with_openssl_and_purposes_follow_the_kind() {
    let Some(ossl) = Openssl::new() else { return };
    // (CA key type, with intermediate, leaf key types). RSA keys are slow to make in debug
    // builds, so RSA appears as one RSA-2048 CA and RSA-2048 leaves; RSA-3072/4096 are covered
    // by the key unit tests.
    let configs: &[(KeyType, bool, &[KeyType])] = &[
        (
            KeyType::P256,
            false,
            &[KeyType::P256, KeyType::P384, KeyType::Ed25519],
        ),
        (
            KeyType::P256,
            true,
            &[
                KeyType::P256,
                KeyType::P384,
                KeyType::Ed25519,
                KeyType::Rsa2048,
            ],
        ),
        (KeyType::P384, true, &[KeyType::P384]),
        (KeyType::Ed25519, false, &[KeyType::Ed25519]),
        (KeyType::Ed25519, true, &[KeyType::P256]),
        (KeyType::Rsa2048, false, &[KeyType::Rsa2048]),
    ];
    for &(ca_type, intermediate, leaf_types) in configs {
        let ca = init(ca_type, intermediate);
        let roots = roots_pem(&ca);
        for &leaf_type in leaf_types {
            let issued = ca.issue_at(&service(leaf_type), now()).unwrap();
            for purpose in ["sslserver", "sslclient"] {
                let (ok, out) = ossl.verify(&issued, &roots, purpose);
                assert!(
                    ok && out.contains(": OK"),
                    "{ca_type} CA (intermediate: {intermediate}), {leaf_type} leaf, {purpose}: {out}"
                );
            }
        }
        // The kinds' purposes, on P-256 leaves.
        for kind in CertKind::ALL {
            let req = CertificateRequest::new(Identity::new(NAME).unwrap(), kind);
            let issued = ca.issue_at(&req, now()).unwrap();
            let (server_ok, out) = ossl.verify(&issued, &roots, "sslserver");
            assert_eq!(server_ok, kind.server_auth(), "{kind} as server: {out}");
            let (client_ok, out) = ossl.verify(&issued, &roots, "sslclient");
            assert_eq!(client_ok, kind.client_auth(), "{kind} as client: {out}");
        }
    }
}

#[test]
fn a_leaf_from_another_ca_fails_openssl_verify() {
    let Some(ossl) = Openssl::new() else { return };
    let ours = init(KeyType::P256, true);
    let theirs = init(KeyType::P256, true);
    let issued = theirs.issue_at(&service(KeyType::P256), now()).unwrap();
    // Sanity: it verifies against its own root…
    assert!(ossl.verify(&issued, &roots_pem(&theirs), "sslserver").0);
    // …and not against ours, even when sent with its own intermediate.
    let (ok, out) = ossl.verify(&issued, &roots_pem(&ours), "sslserver");
    assert!(!ok, "{out}");
    assert!(out.contains("unable to get"), "{out}");
}

#[test]
fn openssl_text_shows_the_extensions() {
    let Some(ossl) = Openssl::new() else { return };
    let ca = init(KeyType::P256, true);
    let text = |pem: &str, name: &str| {
        let path = ossl.file(name, pem.as_bytes());
        let (ok, out) = ossl.run(&["x509", "-noout", "-text", "-in", &path_str(&path)]);
        assert!(ok, "{out}");
        out
    };
    let leaf = ca.issue_at(&service(KeyType::P256), now()).unwrap();
    let leaf_text = text(&leaf.certificate.to_pem(), "leaf.pem");
    for want in [
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        &format!("DNS:{NAME}"),
        "IP Address:10.0.0.7",
        &format!("URI:{SPIFFE}"),
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        &format!("Subject: CN = {NAME}"),
        "Issuer: CN = Anchorage Intermediate CA",
    ] {
        assert!(
            leaf_text.contains(want),
            "missing {want:?} in:\n{leaf_text}"
        );
    }
    assert!(!leaf_text.contains("Key Encipherment"), "{leaf_text}");
    let rsa = ca.issue_at(&service(KeyType::Rsa2048), now()).unwrap();
    let rsa_text = text(&rsa.certificate.to_pem(), "rsa.pem");
    assert!(
        rsa_text.contains("Digital Signature, Key Encipherment"),
        "{rsa_text}"
    );

    let int_text = text(&ca.signing_certificate().to_pem(), "int.pem");
    for want in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(int_text.contains(want), "missing {want:?} in:\n{int_text}");
    }
    let root_text = text(&ca.root().to_pem(), "root.pem");
    for want in [
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(
            root_text.contains(want),
            "missing {want:?} in:\n{root_text}"
        );
    }
    assert!(!root_text.contains("pathlen"), "{root_text}");
}

/// An FSM-style root made by OpenSSL: `private.key` in PKCS#1 (`RSA PRIVATE KEY`, as older
/// meshes keep it) or SEC 1 (`EC PRIVATE KEY`), subject with a PrintableString country.
#[test]
fn takes_over_an_openssl_made_mesh_root() {
    let Some(ossl) = Openssl::new() else { return };
    let config = ossl.file(
        "ca.cnf",
        b"[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
          [dn]\nC = US\nL = CA\nO = Flomesh\nCN = fsm-ca.flomesh.io\n\
          [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
          subjectKeyIdentifier = hash\n",
    );
    let keygens: [&[&str]; 2] = [
        &["genrsa", "-traditional", "-out", "rsa.key", "2048"],
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    ];
    for (keygen, key_file, label) in [
        (keygens[0], "rsa.key", "RSA PRIVATE KEY"),
        (keygens[1], "ec.key", "EC PRIVATE KEY"),
    ] {
        let (ok, out) = ossl.run(keygen);
        assert!(ok, "{out}");
        let (ok, out) = ossl.run(&[
            "req",
            "-x509",
            "-new",
            "-config",
            &path_str(&config),
            "-key",
            key_file,
            "-days",
            "3650",
            "-out",
            "ca.crt",
        ]);
        assert!(ok, "{out}");
        let key = std::fs::read(ossl.dir.path().join(key_file)).unwrap();
        assert!(String::from_utf8_lossy(&key).contains(label));
        let mut data = BTreeMap::new();
        data.insert(
            "ca.crt".to_owned(),
            std::fs::read(ossl.dir.path().join("ca.crt")).unwrap(),
        );
        data.insert("private.key".to_owned(), key);
        data.insert(
            "expiration".to_owned(),
            b"2035-01-01T00:00:00.000Z".to_vec(),
        );
        let ca = BuiltinCa::from_fsm_secret_data(&data, now()).unwrap();
        assert_eq!(
            ca.root().subject(),
            "C=US, L=CA, O=Flomesh, CN=fsm-ca.flomesh.io"
        );
        let issued = ca.issue_at(&service(KeyType::P256), now()).unwrap();
        assert_eq!(issued.certificate.issuer_der(), ca.root().subject_der());
        let roots = String::from_utf8(data["ca.crt"].clone()).unwrap();
        let (ok, out) = ossl.verify(&issued, &roots, "sslserver");
        assert!(ok, "{label}: {out}");

        // A key of another root is refused, naming the Secret entry.
        let other = init(KeyType::P256, false);
        data.insert(
            "private.key".to_owned(),
            other.signing_key_pem().expose_secret().as_bytes().to_vec(),
        );
        let err = BuiltinCa::from_fsm_secret_data(&data, now()).unwrap_err();
        assert!(err.to_string().contains("private.key"), "{err}");
    }
}

#[test]
fn encrypted_ca_keys_open_with_openssl_pkey() {
    let Some(ossl) = Openssl::new() else { return };
    let ca = init(KeyType::P256, false);
    let pass = SecretString::from("s3cret pass".to_owned());
    for (kdf, name) in [
        (
            Kdf::Scrypt {
                log_n: 12,
                r: 8,
                p: 1,
            },
            "scrypt.pem",
        ),
        (Kdf::Pbkdf2Sha256 { iterations: 10_000 }, "pbkdf2.pem"),
    ] {
        let encrypted = persist::encrypt_key(ca.signing_key(), &pass, kdf).unwrap();
        let path = ossl.file(name, encrypted.expose_secret().as_bytes());
        let (ok, out) = ossl.run(&[
            "pkey",
            "-in",
            &path_str(&path),
            "-passin",
            "pass:s3cret pass",
        ]);
        assert!(ok, "{name}: {out}");
        assert_eq!(
            out.trim(),
            ca.signing_key_pem().expose_secret().trim(),
            "{name}"
        );
        let (ok, _) = ossl.run(&["pkey", "-in", &path_str(&path), "-passin", "pass:wrong"]);
        assert!(!ok, "{name} opened with a wrong passphrase");
    }
}

fn now() -> anchorage_x509::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    anchorage_x509::Timestamp::from_unix(i64::try_from(secs).unwrap())
}

//! Issue 19 item 13: the built-in CA had no name constraints, so `ca issue --cn '*.com'`
//! succeeded from a root that sits beside Mozilla's in system trust. These tests run the real
//! binary: `ca init --permitted-dns` puts a critical name constraints extension on the root,
//! `ca issue` refuses names outside it and wildcards over public suffixes (exit 12), the
//! constraints are shown by `ca show`, `bundle inspect` and `doctor`, and the real `openssl
//! verify` refuses a leaf outside them that the test forges with the root's key (what anyone
//! holding the key could sign), while a forged leaf inside them verifies.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anchorage_test_support::{peer, tempdir};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::Value;

/// `anchorage ca issue` refused the request.
const REFUSED: i32 = 12;

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ca(dir: &Path, data: &str, args: &[&str]) -> Output {
    let mut all = vec!["ca", "--data-dir", data];
    all.extend_from_slice(args);
    anchorage(dir, &all)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(REFUSED), "{}", text(o));
    assert!(o.stdout.is_empty(), "{}", text(o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn issue(dir: &Path, data: &str, cn: &str, extra: &[&str]) -> Output {
    let mut args = vec!["issue", "--cn", cn, "--out", "out"];
    args.extend_from_slice(extra);
    ca(dir, data, &args)
}

/// A leaf for `name` signed by the exported root key: what anyone holding it could sign,
/// whatever `ca issue` refuses.
fn forge(dir: &Path, name: &str) -> String {
    let root_pem = fs::read_to_string(dir.join("exported/ca.crt")).unwrap();
    let root_key =
        KeyPair::from_pem(&fs::read_to_string(dir.join("exported/ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&root_pem, root_key).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let file = format!("forged-{name}.pem");
    #[allow(clippy::disallowed_methods)] // a test fixture
    fs::write(
        dir.join(&file),
        params.signed_by(&key, &issuer).unwrap().pem(),
    )
    .unwrap();
    file
}

#[test]
fn a_wildcard_over_a_public_suffix_is_refused_by_any_ca() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    ok(&ca(dir, "plain", &["init"]));
    for wildcard in ["*.com", "*.co.uk"] {
        let stderr = refused(&issue(dir, "plain", wildcard, &[]));
        assert!(stderr.contains("public suffix"), "{stderr}");
        assert!(stderr.contains(&format!("DNS:{wildcard}")), "{stderr}");
        assert!(!dir.join("out").exists(), "nothing written");
    }
    let stderr = refused(&issue(
        dir,
        "plain",
        "web.example.com",
        &["--san", "DNS:*.com"],
    ));
    assert!(stderr.contains("public suffix"), "{stderr}");
    // Negative control: a wildcard below a registrable domain is issued.
    ok(&issue(dir, "plain", "*.example.com", &[]));
}

#[test]
fn a_constrained_ca_refuses_other_names_and_openssl_refuses_forged_ones() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let init = ok(&ca(
        dir,
        "data",
        &[
            "init",
            "--permitted-dns",
            "cluster.local",
            "--permitted-uri",
            "cluster.local",
            "--output",
            "json",
        ],
    ));
    let init: Value = serde_json::from_str(&init).unwrap();
    let nc = &init["root"]["name_constraints"];
    assert_eq!(nc["critical"], true, "{init}");
    assert_eq!(
        nc["permitted"],
        serde_json::json!(["DNS:cluster.local", "URI:cluster.local"])
    );
    assert_eq!(
        nc["excluded"],
        serde_json::json!(["IP:0.0.0.0/0", "IP:::/0"])
    );
    let show = ok(&ca(dir, "data", &["show"]));
    assert!(
        show.contains("names:      permitted DNS:cluster.local, URI:cluster.local; excluded IP:0.0.0.0/0, IP:::/0"),
        "{show}"
    );

    // The attack: names outside the constraints, refused with the name and the constraint.
    let stderr = refused(&issue(dir, "data", "web.example.com", &[]));
    assert!(
        stderr.contains("DNS:web.example.com") && stderr.contains("DNS:cluster.local"),
        "{stderr}"
    );
    let stderr = refused(&issue(
        dir,
        "data",
        "web.cluster.local",
        &["--san", "10.0.0.7"],
    ));
    assert!(stderr.contains("IP:10.0.0.7"), "{stderr}");
    let stderr = refused(&issue(dir, "data", "*.com", &[]));
    assert!(stderr.contains("public suffix"), "{stderr}");
    // Bad options name the option.
    let bad = ca(dir, "other", &["init", "--permitted-ip", "10.0.0.1/8"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--permitted-ip"));

    // Positive control: a name inside, with its SPIFFE ID.
    ok(&issue(
        dir,
        "data",
        "web.bookstore.cluster.local",
        &["--spiffe", "cluster.local/ns/bookstore/sa/web"],
    ));

    // bundle inspect shows the root's constraints, in text and JSON.
    let inspect = ok(&anchorage(dir, &["bundle", "inspect", "-v", "out/ca.pem"]));
    assert!(
        inspect.contains("names:        permitted DNS:cluster.local"),
        "{inspect}"
    );
    let json: Value = serde_json::from_str(&ok(&anchorage(
        dir,
        &["bundle", "inspect", "out/ca.pem", "--output", "json"],
    )))
    .unwrap();
    assert_eq!(
        json["certificates"][0]["name_constraints"]["permitted"][0],
        "DNS:cluster.local"
    );

    // A real verifier: the issued leaf and a forged one inside verify; a forged one outside
    // is refused for the name constraints.
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    ok(&ca(
        dir,
        "data",
        &["export", "--format", "pem", "--out", "exported"],
    ));
    let verify = |leaf: &str| {
        Command::new(&openssl)
            .args(["verify", "-CAfile", "exported/ca.crt", leaf])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    ok(&verify("out/cert.pem"));
    let inside = forge(dir, "forged.cluster.local");
    ok(&verify(&inside));
    let outside = forge(dir, "www.bank.example");
    let refused_by_openssl = verify(&outside);
    assert!(
        !refused_by_openssl.status.success(),
        "{}",
        text(&refused_by_openssl)
    );
    let said = text(&refused_by_openssl).to_ascii_lowercase();
    assert!(
        said.contains("name constraint") || said.contains("permitted subtree"),
        "{said}"
    );

    // doctor shows the trusted root's constraints for a server using the issued certificate.
    let Some(server) =
        peer::openssl_server(&dir.join("out/cert.pem"), &dir.join("out/key.pem"), None)
    else {
        return;
    };
    let target = format!("127.0.0.1:{}", server.port());
    let doctor = anchorage(
        dir,
        &[
            "doctor",
            &target,
            "--servername",
            "web.bookstore.cluster.local",
            "--bundle",
            "exported/ca.crt",
        ],
    );
    let said = text(&doctor);
    assert!(
        said.contains("trusted root's name constraints: permitted DNS:cluster.local"),
        "{said}"
    );
}

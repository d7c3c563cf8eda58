//! `anchorage doctor` end to end: the real binary against real `openssl s_server`s on loopback,
//! one test per case, each built from a private test PKI (root → intermediate → `localhost`
//! leaf, plus leaves made broken on purpose with rcgen).
//!
//! Every test asserts the exit code, the diagnosis (`--output json` `primary.kind`), the
//! certificate it names and the fix, with a negative control where one means something. Trust is
//! always `--bundle`, `--ca` or `--mozilla`, never the machine's OS store, and no proxy variable
//! is set. Without `openssl` the tests that need it are skipped loudly (and fail in CI).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anchorage_test_support::peer::{self, Running};
use anchorage_test_support::pki::{self, Issued, Pki, ServerFiles};
use anchorage_test_support::{TempDir, tempdir};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::Value;
use time::OffsetDateTime;

/// The documented exit codes of `anchorage doctor`.
const OK: i32 = 0;
const USAGE: i32 = 2;
const BAD_INPUT: i32 = 3;
const PRIVATE_KEY: i32 = 4;
const OUTPUT: i32 = 5;
const UNTRUSTED: i32 = 6;
const UNREACHABLE: i32 = 7;

/// Where the test leaves say their issuer can be downloaded.
const AIA_URL: &str = "http://pki.example/intermediate.crt";

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run anchorage")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `anchorage doctor TARGET ARGS... --output json`: the exit code and the document.
fn doctor_json(dir: &Path, target: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["doctor", target];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let o = anchorage(dir, &all);
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        )
    });
    (o.status.code(), json)
}

#[allow(clippy::disallowed_methods)] // test fixture, not an output
fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write fixture");
}

/// A temporary directory holding a fresh PKI's server files (`server.crt`, `server.key`,
/// `chain.pem` = the intermediate, `root.pem`).
struct Case {
    dir: TempDir,
    pki: Pki,
    files: ServerFiles,
}

impl Case {
    fn new(name: &str) -> Self {
        let dir = tempdir().expect("tempdir");
        let pki = Pki::new(name);
        let files = pki.write_server_files(dir.path());
        Self { dir, pki, files }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `pems` one after the other into `name`.
    fn file(&self, name: &str, pems: &[&str]) -> PathBuf {
        let path = self.path().join(name);
        write(&path, &pems.concat());
        path
    }
}

/// `openssl s_server` sending `cert` then `chain`; `None` (skip) when openssl is missing locally.
fn serve(cert: &Path, key: &Path, chain: Option<&Path>) -> Option<(Running, String)> {
    let server = peer::openssl_server(cert, key, chain)?;
    let target = format!("localhost:{}", server.port());
    Some((server, target))
}

/// Leaf params for `localhost` and 127.0.0.1 (serverAuth, AIA caIssuers [`AIA_URL`]), valid from
/// an hour ago for 90 days.
fn leaf_params() -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.custom_extensions = vec![aia_ca_issuers(AIA_URL)];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(90);
    params
}

/// The authority information access extension with one caIssuers URL (RFC 5280 4.2.2.1).
fn aia_ca_issuers(url: &str) -> CustomExtension {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = u8::try_from(content.len()).expect("short DER");
        assert!(len < 0x80);
        [&[tag, len][..], content].concat()
    }
    // id-ad-caIssuers 1.3.6.1.5.5.7.48.2
    let method = tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]);
    let location = tlv(0x86, url.as_bytes()); // [6] uniformResourceIdentifier
    let description = tlv(0x30, &[method, location].concat());
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], tlv(0x30, &description))
}

/// A leaf from `params` signed by `issuer` (`None`: self-signed), written as `<name>.crt` and
/// `<name>.key`.
fn custom_leaf(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    issuer: Option<&Issued>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, &issuer.issuer()),
        None => params.self_signed(&key),
    }
    .unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    write(&cert_path, &cert.pem());
    write(&key_path, &key.serialize_pem());
    (cert_path, key_path)
}

fn kind(report: &Value) -> &str {
    report["primary"]["kind"].as_str().unwrap_or_default()
}

fn findings_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn commands(report: &Value) -> Vec<String> {
    report["fix"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

fn summary(report: &Value) -> &str {
    report["fix"]["summary"].as_str().unwrap()
}

#[test]
fn trusted_chain_exits_0_with_the_whole_report() {
    let case = Case::new("Doctor Trusted");
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(OK), "{report:#}");
    assert_eq!(kind(&report), "trusted");
    assert!(
        report["primary"]["anchor"]
            .as_str()
            .unwrap()
            .contains("Doctor Trusted Root CA"),
        "{report:#}"
    );
    assert_eq!(
        (&report["trusted"], &report["healthy"]),
        (&true.into(), &true.into())
    );
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(
        summary(&report),
        "nothing to fix: the chain is trusted and healthy"
    );
    assert!(commands(&report).is_empty());

    // The documented top-level fields, all of them and no others.
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut documented = vec![
        "schema",
        "target",
        "address",
        "protocol",
        "cipher_suite",
        "trusted_only_with_ca",
        "client_certificate_requested",
        "handshake_error",
        "handshake_signature",
        "server_name",
        "now",
        "trusted",
        "healthy",
        "primary",
        "findings",
        "chain",
        "path",
        "fix",
    ];
    documented.sort_unstable();
    assert_eq!(keys, documented);
    assert_eq!(report["handshake_signature"]["verified"], true);
    assert_eq!(report["target"], target.as_str());
    assert_eq!(report["server_name"], "localhost");
    assert!(
        report["address"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", _server.port())),
        "{report:#}"
    );
    assert!(report["protocol"].as_str().unwrap().starts_with("TLSv1_"));
    assert!(report["cipher_suite"].is_string());
    assert_eq!(report["trusted_only_with_ca"], false);
    assert_eq!(report["client_certificate_requested"], false);
    assert_eq!(report["handshake_error"], Value::Null);
    assert_eq!(report["path"], serde_json::json!([0, 1]));

    // The chain as sent, leaf first.
    let chain = report["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    let leaf = &chain[0];
    assert_eq!(leaf["index"], 0);
    assert_eq!(leaf["subject"], "CN=localhost");
    assert_eq!(
        leaf["subject_alt_names"],
        serde_json::json!(["DNS:localhost", "IP:127.0.0.1"])
    );
    assert_eq!(leaf["key"], "EC P-256");
    assert_eq!(leaf["is_ca"], false);
    assert_eq!(
        leaf["extended_key_usage"],
        serde_json::json!(["serverAuth"])
    );
    assert_eq!(leaf["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(leaf["next"]["name_matches"], true);
    assert_eq!(leaf["next"]["signature_verified"], true);
    assert!(leaf["time_left"].as_str().unwrap().ends_with(" left"));
    assert_eq!(chain[1]["is_ca"], true);
    assert_eq!(chain[1]["next"], Value::Null);

    // The same through --ca on top of Mozilla's roots: trusted only with the --ca file.
    let (code, with_ca) = doctor_json(case.path(), &target, &["--mozilla", "--ca", "root.pem"]);
    assert_eq!(code, Some(OK), "{with_ca:#}");
    assert_eq!(kind(&with_ca), "trusted");
    assert_eq!(with_ca["trusted_only_with_ca"], true);

    // Negative control: another root is not ours.
    pki::root_ca("Doctor Trusted Other Root CA").write_pem(case.path(), "other.pem");
    let (code, other) = doctor_json(case.path(), &target, &["--bundle", "other.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{other:#}");
    assert_eq!(kind(&other), "unknown_issuer");
    assert_eq!(other["trusted"], false);
}

#[test]
fn leaf_alone_is_a_missing_intermediate_with_its_aia_url() {
    let case = Case::new("Doctor Alone");
    let (cert, key) = custom_leaf(
        case.path(),
        "aia-leaf",
        leaf_params(),
        Some(&case.pki.intermediate),
    );
    let Some((_server, target)) = serve(&cert, &key, None) else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "missing_intermediate", "{report:#}");
    let primary = &report["primary"];
    assert_eq!(
        primary["issuer"],
        "CN=Doctor Alone Intermediate CA, O=Anchorage Test"
    );
    assert_eq!(primary["aia_ca_issuers"], serde_json::json!([AIA_URL]));
    assert_eq!(primary["candidate_files"], serde_json::json!([]));
    assert_eq!(report["chain"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["chain"][0]["aia_ca_issuers"],
        serde_json::json!([AIA_URL])
    );
    let fix = summary(&report);
    assert!(
        fix.contains("must also send the intermediate CN=Doctor Alone Intermediate CA"),
        "{fix}"
    );
    assert!(fix.contains(AIA_URL), "{fix}");
    assert!(commands(&report).is_empty());
    assert!(!fix.contains("disable"), "{fix}");

    // Negative control: the same leaf sent with its intermediate is trusted.
    let Some((_full, full_target)) = serve(&cert, &key, Some(&case.files.chain)) else {
        return;
    };
    let (code, full) = doctor_json(case.path(), &full_target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(OK), "{full:#}");
    assert_eq!(kind(&full), "trusted");
}

#[test]
fn chain_in_wrong_order_is_trusted_but_not_healthy() {
    let case = Case::new("Doctor Order");
    let reversed = case.file(
        "reversed.pem",
        &[&case.pki.root.pem, &case.pki.intermediate.pem],
    );
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&reversed)) else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    // Exit 6 means "untrusted, or trusted with problems": the chain is trusted, not healthy.
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "trusted");
    assert_eq!(
        (&report["trusted"], &report["healthy"]),
        (&true.into(), &false.into())
    );
    assert_eq!(report["path"], serde_json::json!([0, 2, 1]));
    let order = findings_of(&report, "chain_out_of_order");
    assert_eq!(order.len(), 1, "{report:#}");
    assert_eq!(order[0]["path"], serde_json::json!([0, 2, 1]));
    assert!(findings_of(&report, "extra_certificates").is_empty());
    assert!(
        summary(&report).starts_with("the chain is trusted; the findings"),
        "{report:#}"
    );

    // Negative control: the same three certificates in issuing order are healthy.
    let ordered = case.file(
        "ordered.pem",
        &[&case.pki.intermediate.pem, &case.pki.root.pem],
    );
    let Some((_ok, ok_target)) = serve(&case.files.cert, &case.files.key, Some(&ordered)) else {
        return;
    };
    let (code, ok) = doctor_json(case.path(), &ok_target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(ok["path"], serde_json::json!([0, 1, 2]));
    assert_eq!(ok["findings"], serde_json::json!([]));
}

#[test]
fn expired_leaf_names_certificate_0_and_by_how_much() {
    let case = Case::new("Doctor Expired");
    let mut params = leaf_params();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(3);
    let (cert, key) = custom_leaf(case.path(), "expired", params, Some(&case.pki.intermediate));
    let Some((_server, target)) = serve(&cert, &key, Some(&case.files.chain)) else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "expired", "{report:#}");
    let primary = &report["primary"];
    assert_eq!(primary["certificate"], 0);
    assert_eq!(primary["subject"], "CN=localhost");
    let ago = primary["seconds_ago"].as_i64().unwrap();
    assert!((3 * 86_400..3 * 86_400 + 600).contains(&ago), "{ago}");
    assert!(primary["not_after"].is_string());
    let fix = summary(&report);
    assert!(
        fix.contains("the server's certificate CN=localhost expired 3 days ago"),
        "{fix}"
    );
    assert!(fix.contains("renew it"), "{fix}");
    assert!(
        report["chain"][0]["time_left"]
            .as_str()
            .unwrap()
            .starts_with("expired 3 days ago")
    );
    // Negative control: the intermediate it was sent with is valid and named nowhere.
    assert!(
        report["chain"][1]["time_left"]
            .as_str()
            .unwrap()
            .ends_with(" left")
    );
    assert!(findings_of(&report, "expired").is_empty(), "{report:#}");
}

#[test]
fn wrong_hostname_is_a_name_mismatch_with_asked_and_presented() {
    let case = Case::new("Doctor Name");
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    let (code, report) = doctor_json(
        case.path(),
        &target,
        &["--bundle", "root.pem", "--servername", "wrong.example"],
    );
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "name_mismatch", "{report:#}");
    assert_eq!(report["primary"]["asked"], "wrong.example");
    assert_eq!(
        report["primary"]["presented"],
        serde_json::json!(["DNS:localhost", "IP:127.0.0.1"])
    );
    assert_eq!(report["server_name"], "wrong.example");
    let fix = summary(&report);
    assert!(fix.contains("not valid for wrong.example"), "{fix}");
    assert!(fix.contains("DNS:wrong.example"), "{fix}");

    // Negative control: the name the certificate holds.
    let (code, ok) = doctor_json(
        case.path(),
        &target,
        &["--bundle", "root.pem", "--servername", "localhost"],
    );
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(kind(&ok), "trusted");
}

#[test]
fn self_signed_leaf_says_to_save_the_chain_for_review() {
    let case = Case::new("Doctor Self");
    let (cert, key) = custom_leaf(case.path(), "self-signed", leaf_params(), None);
    let Some((_server, target)) = serve(&cert, &key, None) else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "self_signed_leaf", "{report:#}");
    assert_eq!(report["primary"]["subject"], "CN=localhost");
    assert_eq!(report["primary"]["sha256"], report["chain"][0]["sha256"]);
    assert_eq!(report["chain"][0]["self_issued"], true);
    assert!(
        summary(&report).contains("only if that is intended"),
        "{report:#}"
    );
    assert_eq!(
        commands(&report),
        vec![format!(
            "anchorage doctor {target} --save-chain presented-chain.pem"
        )]
    );

    // Negative control: a leaf from the CA, with the same name, is not self-signed.
    let Some((_ca, ca_target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    let (code, ok) = doctor_json(case.path(), &ca_target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(ok["chain"][0]["self_issued"], false);
}

#[test]
fn unknown_issuer_becomes_trusted_with_the_right_ca_and_the_fix_builds_a_bundle() {
    let case = Case::new("Doctor Unknown");
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--mozilla"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "unknown_issuer", "{report:#}");
    let primary = &report["primary"];
    assert_eq!(primary["certificate"], 1);
    assert_eq!(
        primary["subject"],
        "CN=Doctor Unknown Intermediate CA, O=Anchorage Test"
    );
    assert_eq!(
        primary["missing_issuer"],
        "CN=Doctor Unknown Root CA, O=Anchorage Test"
    );
    assert_eq!(primary["root_sent"], false);
    assert_eq!(primary["same_name_trusted"], false);
    assert_eq!(primary["candidate_files"], serde_json::json!([]));
    assert_eq!(report["trusted_only_with_ca"], false);
    assert_eq!(
        commands(&report),
        vec!["anchorage bundle build <issuer file> --mozilla --pem ca-bundle.pem".to_owned()]
    );

    // Negative control: an unrelated --ca file changes nothing and is not named.
    pki::root_ca("Doctor Unknown Other Root CA").write_pem(case.path(), "other.pem");
    let (code, other) = doctor_json(case.path(), &target, &["--mozilla", "--ca", "other.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{other:#}");
    assert_eq!(kind(&other), "unknown_issuer");
    assert_eq!(other["trusted_only_with_ca"], false);
    assert_eq!(other["primary"]["candidate_files"], serde_json::json!([]));

    // The right root: trusted, but only with it, and the fix makes that permanent.
    let (code, with_ca) = doctor_json(
        case.path(),
        &target,
        &["--mozilla", "--ca", "other.pem", "--ca", "root.pem"],
    );
    assert_eq!(code, Some(OK), "{with_ca:#}");
    assert_eq!(kind(&with_ca), "trusted", "{with_ca:#}");
    assert_eq!(with_ca["trusted"], true);
    assert_eq!(with_ca["trusted_only_with_ca"], true);
    assert_eq!(
        commands(&with_ca),
        vec!["anchorage bundle build root.pem --mozilla --pem ca-bundle.pem".to_owned()]
    );
    let fix = summary(&with_ca);
    assert!(
        fix.starts_with("root.pem holds the missing issuer CN=Doctor Unknown Root CA"),
        "{fix}"
    );
    assert!(!fix.contains("other.pem"), "{fix}");
}

#[test]
fn an_intermediate_given_with_ca_is_named_as_the_anchor_and_openssl_is_warned_about() {
    let case = Case::new("Doctor Int Anchor");
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    case.file("int.pem", &[&case.pki.intermediate.pem]);
    let root = "CN=Doctor Int Anchor Root CA, O=Anchorage Test";
    let intermediate = "CN=Doctor Int Anchor Intermediate CA, O=Anchorage Test";
    let (code, report) = doctor_json(case.path(), &target, &["--mozilla", "--ca", "int.pem"]);
    assert_eq!(code, Some(OK), "{report:#}");
    assert_eq!(kind(&report), "trusted", "{report:#}");
    assert_eq!(report["trusted_only_with_ca"], true);
    let primary = &report["primary"];
    assert_eq!(primary["anchor"], intermediate, "not the root above it");
    assert_eq!(primary["anchor_is_intermediate"], true);
    assert_eq!(primary["anchor_issuer"], root);
    // The fix agrees with the verdict: no "missing issuer", a warning for OpenSSL clients.
    let fix = summary(&report);
    assert!(!fix.contains("missing issuer"), "{fix}");
    assert!(fix.contains("partial-chain") && fix.contains(root), "{fix}");
    assert_eq!(
        commands(&report),
        vec!["anchorage bundle build int.pem --mozilla --pem ca-bundle.pem".to_owned()]
    );
    let text = anchorage(
        case.path(),
        &["doctor", &target, "--mozilla", "--ca", "int.pem"],
    );
    let text = stdout(&text);
    assert!(
        text.contains(&format!(
            "diagnosis: trusted through an intermediate given as a trust anchor: the chain leads to {intermediate}"
        )),
        "{text}"
    );

    // Negative control: the root given with --ca is named as the trusted root, without warning.
    case.file("root.pem", &[&case.pki.root.pem]);
    let (code, report) = doctor_json(case.path(), &target, &["--mozilla", "--ca", "root.pem"]);
    assert_eq!(code, Some(OK), "{report:#}");
    assert_eq!(report["primary"]["anchor"], root);
    assert_eq!(report["primary"]["anchor_is_intermediate"], false);
    assert!(!summary(&report).contains("partial-chain"), "{report:#}");
}

#[test]
fn save_chain_writes_the_presented_chain() {
    let case = Case::new("Doctor Save");
    let Some((_server, target)) = serve(&case.files.cert, &case.files.key, Some(&case.files.chain))
    else {
        return;
    };
    // Written whatever the verdict: here the chain is untrusted (an unrelated bundle).
    pki::root_ca("Doctor Save Other Root CA").write_pem(case.path(), "other.pem");
    let (code, report) = doctor_json(
        case.path(),
        &target,
        &["--bundle", "other.pem", "--save-chain", "sent.pem"],
    );
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    let sent = std::fs::read_to_string(case.path().join("sent.pem")).unwrap();
    assert_eq!(
        sent,
        format!("{}{}", case.pki.leaf.pem, case.pki.intermediate.pem)
    );
    let decoded = anchorage_x509::decode(sent.as_bytes());
    assert_eq!(decoded.certificates.len(), 2);
    assert!(decoded.problems.is_empty());
    let fingerprints: Vec<String> = decoded
        .certificates
        .iter()
        .map(|c| {
            c.certificate
                .sha256()
                .to_string()
                .replace(':', "")
                .to_lowercase()
        })
        .collect();
    assert_eq!(
        fingerprints,
        vec![
            report["chain"][0]["sha256"].as_str().unwrap(),
            report["chain"][1]["sha256"].as_str().unwrap()
        ]
    );

    // Negative control: without --save-chain nothing is written.
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(case.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let (code, _) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(OK));
    assert_eq!(listing(), before);

    // A FILE that cannot be written: exit 5, the report is not printed, the error is.
    let (code, failed) = doctor_json(
        case.path(),
        &target,
        &["--bundle", "root.pem", "--save-chain", "root.pem/sent.pem"],
    );
    assert_eq!(code, Some(OUTPUT), "{failed:#}");
    assert_eq!(failed["exit_code"], OUTPUT);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("root.pem/sent.pem"),
        "{failed:#}"
    );
}

#[test]
fn root_expiring_soon_in_the_bundle_is_a_finding() {
    // A root that expires in 10 days, signing the leaf directly; the server sends the leaf.
    let tmp = tempdir().expect("tempdir");
    let now = OffsetDateTime::now_utc();
    let mut root_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Doctor Short Root CA");
    root_params.distinguished_name = dn;
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root_params.not_before = now - time::Duration::days(1);
    root_params.not_after = now + time::Duration::days(10);
    let root_key = KeyPair::generate().unwrap();
    let root = root_params.self_signed(&root_key).unwrap();
    write(&tmp.path().join("short-root.pem"), &root.pem());
    let issuer = Issuer::from_params(&root_params, &root_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params().signed_by(&leaf_key, &issuer).unwrap();
    let (cert, key) = (tmp.path().join("leaf.crt"), tmp.path().join("leaf.key"));
    write(&cert, &leaf.pem());
    write(&key, &leaf_key.serialize_pem());
    let Some((_server, target)) = serve(&cert, &key, None) else {
        return;
    };
    let (code, report) = doctor_json(tmp.path(), &target, &["--bundle", "short-root.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "trusted");
    assert_eq!(report["healthy"], false);
    let soon = findings_of(&report, "root_expires_soon");
    assert_eq!(soon.len(), 1, "{report:#}");
    assert_eq!(soon[0]["subject"], "CN=Doctor Short Root CA");
    let left = soon[0]["seconds_left"].as_i64().unwrap();
    assert!((9 * 86_400..=10 * 86_400).contains(&left), "{left}");
    // Negative control: the ten-year roots of the other tests never raise it (see
    // trusted_chain_exits_0_with_the_whole_report: no findings at all).
}

#[test]
fn client_auth_only_leaf_is_wrong_key_usage() {
    let case = Case::new("Doctor Eku");
    let mut params = leaf_params();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, key) = custom_leaf(case.path(), "client", params, Some(&case.pki.intermediate));
    let Some((_server, target)) = serve(&cert, &key, Some(&case.files.chain)) else {
        return;
    };
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "wrong_key_usage", "{report:#}");
    assert_eq!(report["primary"]["certificate"], 0);
    assert_eq!(
        report["primary"]["extended_key_usage"],
        serde_json::json!(["clientAuth"])
    );
    assert!(summary(&report).contains("serverAuth"), "{report:#}");
}

#[test]
fn connection_refused_exits_7() {
    let dir = tempdir().expect("tempdir");
    let port = peer::free_port();
    let target = format!("127.0.0.1:{port}");
    let o = anchorage(dir.path(), &["doctor", &target, "--mozilla"]);
    assert_eq!(o.status.code(), Some(UNREACHABLE), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!("anchorage: error: connection refused by {target}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
    // With --output json a script still gets a document.
    let (code, json) = doctor_json(dir.path(), &target, &["--mozilla"]);
    assert_eq!(code, Some(UNREACHABLE));
    assert_eq!(json["exit_code"], UNREACHABLE);
    assert_eq!(json["target"], target.as_str());
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{json:#}"
    );
}

#[test]
fn unresolvable_host_exits_7_with_the_resolver_error() {
    // `.invalid` never resolves (RFC 6761); the resolver's own words follow ours.
    let dir = tempdir().expect("tempdir");
    let o = anchorage(
        dir.path(),
        &[
            "doctor",
            "nothing-here.invalid:443",
            "--mozilla",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(o.status.code(), Some(UNREACHABLE), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("anchorage: error: cannot resolve nothing-here.invalid: check the name"),
        "{err}"
    );
    assert!(
        err.trim_end().len() > "anchorage: error: cannot resolve nothing-here.invalid: check the name, or the DNS settings of this machine".len(),
        "the cause is appended: {err}"
    );
}

#[test]
fn plain_http_port_exits_7_saying_it_is_not_tls() {
    let dir = tempdir().expect("tempdir");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let o = anchorage(dir.path(), &["doctor", &addr.to_string(), "--mozilla"]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(UNREACHABLE), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{addr} does not speak TLS on this port")),
        "{err}"
    );
    assert!(err.contains("HTTP/1.1 400 Bad Request"), "{err}");
    assert!(err.contains("(plain HTTP)"), "{err}");
    assert!(!err.contains("refused"), "{err}");
    assert_eq!(stdout(&o), "");
}

/// An `openssl s_server` killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server` for the case's leaf and intermediate with `extra` arguments; `None` (skip)
/// when openssl is missing locally.
fn s_server(case: &Case, extra: &[&str]) -> Option<(Killed, SocketAddr)> {
    let openssl = peer::require("openssl")?;
    let port = peer::free_port();
    let mut child = Command::new(openssl)
        .args(["s_server", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&case.files.cert)
        .arg("-key")
        .arg(&case.files.key)
        .arg("-cert_chain")
        .arg(&case.files.chain)
        .args(["-www", "-naccept", "100"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    peer::wait_for_port(addr, &mut child, Duration::from_secs(10));
    Some((Killed(child), addr))
}

#[test]
fn tls_alert_from_the_server_exits_7_with_the_alert() {
    // A TLS 1.2-only server whose only cipher suite (RSA key exchange) rustls never offers
    // answers our hello with a handshake_failure alert, before any certificate.
    let case = Case::new("Doctor Alert");
    let Some((_server, addr)) = s_server(&case, &["-tls1_2", "-cipher", "AES128-SHA"]) else {
        return;
    };
    let o = anchorage(
        case.path(),
        &["doctor", &addr.to_string(), "--bundle", "root.pem"],
    );
    assert_eq!(o.status.code(), Some(UNREACHABLE), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "anchorage: error: {addr} sent TLS alert HandshakeFailure during the handshake"
        )),
        "{err}"
    );
    assert!(
        err.contains("no protocol version, cipher suite or key exchange in common"),
        "{err}"
    );
    assert!(!err.contains("does not speak TLS"), "{err}");
    assert_eq!(stdout(&o), "");

    // Negative control: the same server with a suite rustls offers completes the handshake.
    let Some((_ok, ok_addr)) = s_server(&case, &["-tls1_2"]) else {
        return;
    };
    let (code, ok) = doctor_json(
        case.path(),
        &format!("localhost:{}", ok_addr.port()),
        &["--bundle", "root.pem"],
    );
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(ok["protocol"], "TLSv1_2");
}

#[test]
fn handshake_refused_after_the_chain_exits_7_with_the_report() {
    // TLS 1.2 with a required client certificate: the server sends its chain, then refuses our
    // empty client certificate with an alert. The chain is diagnosed, and the exit code says
    // the handshake did not complete.
    let case = Case::new("Doctor Client Auth");
    let Some((_server, addr)) = s_server(&case, &["-tls1_2", "-Verify", "1"]) else {
        return;
    };
    let target = format!("localhost:{}", addr.port());
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNREACHABLE), "{report:#}");
    assert_eq!(kind(&report), "trusted", "{report:#}");
    let error = report["handshake_error"].as_str().unwrap();
    assert!(error.contains("sent TLS alert HandshakeFailure"), "{error}");
    // A suite was agreed (the chain came): the hint is the client certificate, not the suites.
    assert!(
        !error.contains("cipher suite or key exchange in common"),
        "{error}"
    );
    assert!(
        error.contains("requires a client certificate (mutual TLS)"),
        "{error}"
    );
    assert_eq!(report["client_certificate_requested"], true);
    assert_eq!(report["chain"].as_array().unwrap().len(), 2);
    let o = anchorage(case.path(), &["doctor", &target, "--bundle", "root.pem"]);
    assert_eq!(o.status.code(), Some(UNREACHABLE));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("the handshake then failed: ") && l.contains("sent TLS alert")),
        "{}",
        stdout(&o)
    );

    // Negative control: without -Verify the handshake completes, handshake_error is null.
    let Some((_ok, ok_addr)) = s_server(&case, &["-tls1_2"]) else {
        return;
    };
    let (code, ok) = doctor_json(
        case.path(),
        &format!("localhost:{}", ok_addr.port()),
        &["--bundle", "root.pem"],
    );
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(ok["handshake_error"], Value::Null);
    assert_eq!(ok["client_certificate_requested"], false);
}

#[test]
fn a_client_certificate_required_under_tls_1_3_exits_7() {
    // TLS 1.3: the server refuses our empty client certificate only after our Finished, when the
    // handshake is complete for the client; a real client without a certificate fails.
    let case = Case::new("Doctor Client Auth 13");
    let Some((_server, addr)) = s_server(&case, &["-Verify", "1"]) else {
        return;
    };
    let target = format!("localhost:{}", addr.port());
    let (code, report) = doctor_json(case.path(), &target, &["--bundle", "root.pem"]);
    assert_eq!(code, Some(UNREACHABLE), "{report:#}");
    assert_eq!(report["protocol"], "TLSv1_3", "{report:#}");
    assert_eq!(kind(&report), "trusted", "{report:#}");
    assert_eq!(report["client_certificate_requested"], true);
    let error = report["handshake_error"].as_str().unwrap();
    assert!(
        error.contains("sent TLS alert CertificateRequired"),
        "{error}"
    );
    assert!(
        error.contains("requires a client certificate (mutual TLS)"),
        "{error}"
    );
    let o = anchorage(case.path(), &["doctor", &target, "--bundle", "root.pem"]);
    assert_eq!(o.status.code(), Some(UNREACHABLE));
    let text = stdout(&o);
    assert!(
        text.lines().any(|l| l
            == "the server asked for a client certificate (mutual TLS): the doctor sends none and checks the server's chain only"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("the handshake then failed: ")
                && l.contains("CertificateRequired")),
        "{text}"
    );

    // Negative control: an optional client certificate (-verify) is asked for, not required.
    let Some((_optional, optional_addr)) = s_server(&case, &["-verify", "1"]) else {
        return;
    };
    let (code, ok) = doctor_json(
        case.path(),
        &format!("localhost:{}", optional_addr.port()),
        &["--bundle", "root.pem"],
    );
    assert_eq!(code, Some(OK), "{ok:#}");
    assert_eq!(ok["client_certificate_requested"], true);
    assert_eq!(ok["handshake_error"], Value::Null);
}

#[test]
fn a_quick_openssl_req_x509_certificate_says_it_is_marked_ca() {
    // `openssl req -x509 -newkey … -subj /CN=localhost`: self-signed and, with OpenSSL's default
    // configuration, CA:TRUE, which rustls refuses as a server certificate even when trusted.
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let dir = tempdir().expect("tempdir");
    let made = Command::new(&openssl)
        .current_dir(dir.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "quick.key",
            "-out",
            "quick.pem",
            "-days",
            "5",
            "-subj",
            "/CN=localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let (cert, key) = (dir.path().join("quick.pem"), dir.path().join("quick.key"));
    let Some((_server, target)) = serve(&cert, &key, None) else {
        return;
    };
    // Trusted through a bundle holding it: still refused, and not "issued by" itself.
    let (code, report) = doctor_json(dir.path(), &target, &["--bundle", "quick.pem"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "self_signed_leaf", "{report:#}");
    assert_eq!(report["primary"]["is_ca"], true);
    assert_eq!(report["primary"]["in_trust"], true);
    assert_eq!(report["chain"][0]["is_ca"], true);
    assert!(
        summary(&report).contains("-addext basicConstraints=critical,CA:FALSE"),
        "{report:#}"
    );
    let o = anchorage(dir.path(), &["doctor", &target, "--bundle", "quick.pem"]);
    let text = stdout(&o);
    let diagnosis = text.lines().find(|l| l.starts_with("diagnosis: ")).unwrap();
    assert!(!diagnosis.contains("issued by"), "{text}");
    assert!(diagnosis.contains("CA:TRUE"), "{text}");

    // With Mozilla's roots: the same diagnosis, not trusted; the leaf's five days are its own
    // finding, and no "trusted root" expires soon.
    let (code, report) = doctor_json(dir.path(), &target, &["--mozilla"]);
    assert_eq!(code, Some(UNTRUSTED), "{report:#}");
    assert_eq!(kind(&report), "self_signed_leaf", "{report:#}");
    assert_eq!(report["primary"]["is_ca"], true);
    assert_eq!(report["primary"]["in_trust"], false);
    assert!(
        findings_of(&report, "root_expires_soon").is_empty(),
        "{report:#}"
    );
    let soon = findings_of(&report, "expires_soon");
    assert_eq!(soon.len(), 1, "{report:#}");
    assert_eq!(soon[0]["certificate"], 0);
}

#[test]
fn bad_targets_and_bad_files_have_their_own_exit_codes() {
    let case = Case::new("Doctor Usage");
    let dir = case.path();
    // Bad targets: exit 2, before anything is read or connected to.
    for (target, says) in [
        ("http://plain.example/", "plain text"),
        ("exa mple.com:443", "is not a host name"),
        ("example.com:0", "port 0"),
        ("ftp://example.com/", "unknown scheme ftp://"),
    ] {
        let o = anchorage(dir, &["doctor", target, "--ca", "missing.pem"]);
        assert_eq!(o.status.code(), Some(USAGE), "{target}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{target}: {}", stderr(&o));
    }
    let o = anchorage(
        dir,
        &["doctor", "localhost:1", "--servername", "not a name!"],
    );
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    let o = anchorage(
        dir,
        &["doctor", "localhost:1", "--bundle", "root.pem", "--mozilla"],
    );
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));

    // Bad --ca / --bundle files: 3 (missing, no certificate), 4 (a private key).
    let port = peer::free_port();
    let target = format!("127.0.0.1:{port}");
    write(&dir.join("empty.pem"), "nothing here\n");
    write(&dir.join("key.pem"), &case.pki.root.key_pem);
    for (args, code) in [
        (&["--ca", "missing.pem"][..], BAD_INPUT),
        (&["--ca", "empty.pem"][..], BAD_INPUT),
        (&["--bundle", "missing.pem"][..], BAD_INPUT),
        (&["--ca", "key.pem"][..], PRIVATE_KEY),
        (&["--bundle", "key.pem"][..], PRIVATE_KEY),
    ] {
        let mut all = vec!["doctor", target.as_str()];
        all.extend_from_slice(args);
        let o = anchorage(dir, &all);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("PRIVATE KEY-----"), "{}", stderr(&o));
        assert!(
            !stderr(&o).contains("refused"),
            "{args:?}: read before connecting"
        );
    }
    // Negative control: with good files the same target gets as far as connecting.
    let o = anchorage(
        dir,
        &[
            "doctor", &target, "--bundle", "root.pem", "--ca", "root.pem",
        ],
    );
    assert_eq!(o.status.code(), Some(UNREACHABLE), "{}", stderr(&o));
}

#[test]
fn text_output_is_the_report_in_sentences() {
    // Leaf (with an AIA URL), an unrelated root, then the intermediate: trusted, with findings.
    let case = Case::new("Doctor Text");
    let (cert, key) = custom_leaf(
        case.path(),
        "aia-leaf",
        leaf_params(),
        Some(&case.pki.intermediate),
    );
    let unrelated = pki::root_ca("Doctor Text Unrelated Root CA");
    let chain = case.file("mixed.pem", &[&unrelated.pem, &case.pki.intermediate.pem]);
    let Some((_server, target)) = serve(&cert, &key, Some(&chain)) else {
        return;
    };
    let o = anchorage(case.path(), &["doctor", &target, "--bundle", "root.pem"]);
    assert_eq!(o.status.code(), Some(UNTRUSTED), "{}", stderr(&o));
    // stderr is not a terminal here: no progress line, nothing at all.
    assert_eq!(stderr(&o), "");
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("connected to 127.0.0.1:"), "{text}");
    assert!(lines[0].contains("(SNI localhost)"), "{text}");
    assert!(
        lines.contains(&"chain as sent (3 certificates; issuing path [0] -> [2]):"),
        "{text}"
    );
    assert!(
        lines.contains(&"  [0] CN=localhost  (the server's certificate)"),
        "{text}"
    );
    assert!(
        lines.contains(&"  [1] CN=Doctor Text Unrelated Root CA, O=Anchorage Test  (extra: not on the issuing path)"),
        "{text}"
    );
    assert!(
        lines.contains(
            &"  [2] CN=Doctor Text Intermediate CA, O=Anchorage Test  (on the issuing path)"
        ),
        "{text}"
    );
    assert!(
        lines.contains(
            &format!("      AIA:       {AIA_URL} (where its issuer can be downloaded)").as_str()
        ),
        "{text}"
    );
    assert!(lines.contains(&"      EKU:       serverAuth"), "{text}");
    assert!(
        lines.contains(&"      next:      does NOT link to the next certificate: its issuer is not the next certificate's subject (its issuer was sent as [2])"),
        "{text}"
    );
    let diagnosis: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("diagnosis: "))
        .collect();
    assert_eq!(diagnosis.len(), 1, "{text}");
    assert_eq!(
        *diagnosis[0],
        "diagnosis: trusted: the chain leads to the trusted root CN=Doctor Text Root CA, O=Anchorage Test",
        "{text}"
    );
    let findings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("finding: "))
        .collect();
    assert_eq!(
        findings,
        [
            "finding: chain out of order: the issuing path is [0] → [2], not the order sent",
            "finding: extra certificates: [1] CN=Doctor Text Unrelated Root CA, O=Anchorage Test is sent but not on the issuing path",
        ],
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fix: the chain is trusted;")),
        "{text}"
    );
    // Nothing of the JSON leaks into the text.
    assert!(!text.contains("\"kind\""), "{text}");

    // A fix with a command: one "  $ " line after "fix:".
    let (self_cert, self_key) = custom_leaf(case.path(), "self", leaf_params(), None);
    let Some((_self_server, self_target)) = serve(&self_cert, &self_key, None) else {
        return;
    };
    let o = anchorage(
        case.path(),
        &["doctor", &self_target, "--bundle", "root.pem"],
    );
    assert_eq!(o.status.code(), Some(UNTRUSTED), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    let fix = lines.iter().position(|l| l.starts_with("fix: ")).unwrap();
    assert_eq!(
        lines[fix + 1..],
        [format!("  $ anchorage doctor {self_target} --save-chain presented-chain.pem").as_str()],
        "{text}"
    );
}

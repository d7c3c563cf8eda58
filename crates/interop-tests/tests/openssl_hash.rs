//! Our OpenSSL subject-name hash checked against `openssl x509 -subject_hash` itself.
//!
//! One table of certificates, three kinds of subject:
//!
//! - hand-built names ([`pki::awkward_names`]): every string type, case and whitespace variants
//!   (which characters count as space), non-ASCII text, multi-valued RDNs in non-DER order, e-mail
//!   and DC attributes, empty values and names, non-string values, invalid encodings;
//! - names rcgen writes for each of its `DnValue` string types (genuinely signed certificates);
//! - names `openssl req` itself writes under each `string_mask`, with `-multivalue-rdn`.
//!
//! For every certificate OpenSSL can read, our hash must equal OpenSSL's, and we must read it too.
//! A certificate OpenSSL refuses to decode has no OpenSSL hash; those are not compared, but the
//! list of them is asserted (`OPENSSL_REFUSES`), with OpenSSL's reason and our outcome for each.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anchorage_test_support::peer;
use anchorage_test_support::pki::{self, asn1};
use anchorage_x509::{Certificate, subject_hash_of_name};
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{DistinguishedName, DnType, DnValue};

/// One certificate to hash.
struct Case {
    label: String,
    der: Vec<u8>,
    /// The subject `Name` DER when we built it by hand (also hashed directly).
    name_der: Option<Vec<u8>>,
}

/// What one side made of a certificate.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Hash(String),
    Refused(String),
}

/// The reason `openssl x509` gives for every certificate it cannot decode here (its decoder
/// rejects the subject, so no loader accepts the file).
const OPENSSL_REFUSAL: &str = "STORE routines:ossl_store_handle_load_result:unsupported";

/// The certificates `openssl x509 -subject_hash` refuses, in table order, and what we make of
/// each (`Hash` pinned to its value, else our refusal). A certificate OpenSSL newly reads or
/// newly refuses fails the test.
const OPENSSL_REFUSES: &[(&str, &str)] = &[
    ("hand-built: visible", r#"Hash("72c73c2b")"#),
    ("hand-built: visible with latin-1", r#"Hash("3b5d15a2")"#),
    (
        "hand-built: multi-valued with a non-string member",
        r#"Hash("a306f968")"#,
    ),
    ("hand-built: octet string", r#"Hash("21825b3d")"#),
    (
        "hand-built: bit string, empty",
        r#"Refused("subject name cannot be hashed like OpenSSL: BIT STRING without its unused-bits octet")"#,
    ),
    (
        "hand-built: bit string, 9 unused bits",
        r#"Refused("subject name cannot be hashed like OpenSSL: BIT STRING with more than 7 unused bits")"#,
    ),
    ("hand-built: integer value", r#"Hash("d1138577")"#),
    ("hand-built: videotex string", r#"Hash("af9d979b")"#),
    ("hand-built: graphic string", r#"Hash("e93e4060")"#),
    ("hand-built: general string", r#"Hash("ce1dd03a")"#),
    ("hand-built: utc time value", r#"Hash("bb0e40af")"#),
    ("hand-built: context-specific tag", r#"Hash("9ed752f9")"#),
    (
        "hand-built: utf8 invalid",
        r#"Refused("subject name cannot be hashed like OpenSSL: UTF8String holds invalid UTF-8")"#,
    ),
    (
        "hand-built: utf8 surrogate",
        r#"Refused("subject name cannot be hashed like OpenSSL: UTF8String holds invalid UTF-8")"#,
    ),
    (
        "hand-built: utf8 overlong",
        r#"Refused("subject name cannot be hashed like OpenSSL: UTF8String holds invalid UTF-8")"#,
    ),
    (
        "hand-built: bmp odd length",
        r#"Refused("subject name cannot be hashed like OpenSSL: BMPString length is not a multiple of 2")"#,
    ),
    (
        "hand-built: bmp surrogate pair",
        r#"Refused("subject name cannot be hashed like OpenSSL: BMPString holds a surrogate code unit")"#,
    ),
    (
        "hand-built: universal not multiple of 4",
        r#"Refused("subject name cannot be hashed like OpenSSL: UniversalString length is not a multiple of 4")"#,
    ),
    (
        "hand-built: universal beyond U+10FFFF",
        r#"Refused("subject name cannot be hashed like OpenSSL: UniversalString holds an invalid code point")"#,
    ),
    (
        "hand-built: universal surrogate",
        r#"Refused("subject name cannot be hashed like OpenSSL: UniversalString holds an invalid code point")"#,
    ),
    (
        "hand-built: visible: same text, other case and spaces",
        r#"Hash("fee6968a")"#,
    ),
];

fn openssl_subject_hash(openssl: &Path, der_file: &Path) -> Outcome {
    let out = Command::new(openssl)
        .args(["x509", "-inform", "DER", "-noout", "-subject_hash", "-in"])
        .arg(der_file)
        .output()
        .expect("run openssl x509");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && stdout.len() == 8 {
        Outcome::Hash(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The first line names the file; the second says why.
        Outcome::Refused(stderr.lines().nth(1).unwrap_or_default().to_owned())
    }
}

fn our_subject_hash(der: &[u8]) -> Outcome {
    match Certificate::from_der(der) {
        Ok(cert) => Outcome::Hash(cert.subject_hash().to_string()),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

fn hand_built_cases() -> Vec<Case> {
    pki::awkward_names()
        .into_iter()
        .map(|name| Case {
            label: format!("hand-built: {}", name.label),
            der: pki::ca_der_with_subject(&name.der),
            name_der: Some(name.der),
        })
        .collect()
}

fn rcgen_cases() -> Vec<Case> {
    let email = DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]);
    let dc = DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]);
    let values: Vec<(&str, DnValue)> = vec![
        ("utf8", DnValue::Utf8String("  Rcgen  UTF8 ÄÖ ".into())),
        (
            "printable",
            DnValue::PrintableString(PrintableString::try_from("Rcgen  Printable").unwrap()),
        ),
        (
            "teletex",
            DnValue::TeletexString(TeletexString::try_from(" Rcgen Teletex ").unwrap()),
        ),
        (
            "ia5",
            DnValue::Ia5String(Ia5String::try_from("Rcgen\tIA5").unwrap()),
        ),
        (
            "bmp",
            DnValue::BmpString(BmpString::try_from("Rcgen BMP Ωμέγα").unwrap()),
        ),
        (
            "universal",
            DnValue::UniversalString(UniversalString::try_from("Rcgen Universal 𝄞").unwrap()),
        ),
    ];
    let mut cases: Vec<Case> = values
        .into_iter()
        .map(|(label, value)| {
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CountryName,
                DnValue::PrintableString("NZ".try_into().unwrap()),
            );
            dn.push(DnType::OrganizationName, value.clone());
            dn.push(DnType::CommonName, value);
            Case {
                label: format!("rcgen: {label}"),
                der: pki::root_ca_with_name(dn).der,
                name_der: None,
            }
        })
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(dc, DnValue::Ia5String("Example".try_into().unwrap()));
    dn.push(
        email,
        DnValue::Ia5String("Root@Example.COM".try_into().unwrap()),
    );
    dn.push(DnType::CommonName, "Rcgen E-mail and DC");
    cases.push(Case {
        label: "rcgen: email and dc".into(),
        der: pki::root_ca_with_name(dn).der,
        name_der: None,
    });
    cases
}

/// Certificates whose subjects `openssl req` encodes itself.
fn openssl_req_cases(openssl: &Path, dir: &Path) -> Vec<Case> {
    let subjects: &[(&str, &str, &[&str])] = &[
        ("default", "/C=FR/O=Ça  Été/CN=Ωmega  Root", &["-utf8"]),
        ("pkix", "/C=FR/O=Ça  Été/CN=Ωmega  Root", &["-utf8"]),
        ("utf8only", "/C=FR/O=Ça  Été/CN=Ωmega  Root", &["-utf8"]),
        ("nombstr", "/C=FR/O=Plain  ORG/CN=Nombstr Root", &[]),
        (
            "utf8only",
            "/CN=Multi+O=Valued  RDN/OU=b+OU=A/DC=Example+DC=COM",
            &["-multivalue-rdn"],
        ),
        (
            "default",
            "/emailAddress=Root@Example.COM/DC=example/DC=COM/CN=Mail Root",
            &[],
        ),
        (
            "default",
            "/serialNumber=12345/CN=\tTabbed\tRoot/O= lead and trail ",
            &[],
        ),
    ];
    let mut cases = Vec::new();
    for (i, (mask, subject, extra)) in subjects.iter().enumerate() {
        let config = dir.join(format!("req-{i}.cnf"));
        #[allow(clippy::disallowed_methods)] // test input, not an output
        std::fs::write(
            &config,
            format!("[req]\ndistinguished_name = dn\nstring_mask = {mask}\n[dn]\n"),
        )
        .unwrap();
        let out_file = dir.join(format!("req-{i}.der"));
        let status = Command::new(openssl)
            .args(["req", "-x509", "-new", "-nodes", "-days", "30"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-keyout", "/dev/null", "-outform", "DER", "-subj", subject])
            .args(*extra)
            .arg("-config")
            .arg(&config)
            .arg("-out")
            .arg(&out_file)
            .output()
            .expect("run openssl req");
        assert!(
            status.status.success(),
            "openssl req for {subject:?} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        cases.push(Case {
            label: format!("openssl req (string_mask={mask} {extra:?}): {subject}"),
            der: std::fs::read(&out_file).unwrap(),
            name_der: None,
        });
    }
    cases
}

#[test]
fn subject_hash_equals_openssl_x509_subject_hash() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let dir = anchorage_test_support::tempdir().unwrap();
    let mut cases = hand_built_cases();
    cases.extend(rcgen_cases());
    cases.extend(openssl_req_cases(&openssl, dir.path()));

    let mut mismatches = Vec::new();
    let mut refused_by_openssl = Vec::new();
    let mut openssl_hashes = BTreeMap::new();
    let mut compared = 0;
    for (i, case) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case-{i}.der"));
        #[allow(clippy::disallowed_methods)] // test input, not an output
        std::fs::write(&file, &case.der).unwrap();
        let theirs = openssl_subject_hash(&openssl, &file);
        let ours = our_subject_hash(&case.der);
        let bare = case
            .name_der
            .as_deref()
            .map(|name| subject_hash_of_name(name).map(|h| h.to_string()));
        let name_hex = case.name_der.as_deref().map(hex).unwrap_or_default();
        // The bare-name function must give what the certificate accessor gives.
        if let (Some(bare), Outcome::Hash(o)) = (&bare, &ours)
            && bare.as_ref() != Ok(o)
        {
            mismatches.push(format!(
                "{}: certificate hash {o}, subject_hash_of_name {bare:?}",
                case.label
            ));
        }
        match (&theirs, &ours) {
            (Outcome::Hash(t), Outcome::Hash(o)) if t == o => compared += 1,
            (Outcome::Refused(why), ours) => {
                refused_by_openssl.push((case.label.as_str(), why.clone(), format!("{ours:?}")));
            }
            _ => mismatches.push(format!(
                "{}\n    openssl {theirs:?}\n    ours    {ours:?}\n    bare    {bare:?}\n    name DER {name_hex}",
                case.label,
            )),
        }
        if let Outcome::Hash(t) = theirs {
            openssl_hashes.insert(case.label.clone(), t);
        }
    }
    // Exactly the expected certificates are refused by OpenSSL, for the expected reason, and
    // each is what we expect of it: hashed (to the value it had when the table was written) or
    // refused with our message.
    for (label, why, _) in &refused_by_openssl {
        if !why.contains(OPENSSL_REFUSAL) {
            mismatches.push(format!("{label}: openssl refused it otherwise: {why}"));
        }
    }
    let refused: Vec<(&str, &str)> = refused_by_openssl
        .iter()
        .map(|(label, _, ours)| (*label, ours.as_str()))
        .collect();
    assert_eq!(
        refused, OPENSSL_REFUSES,
        "the certificates openssl cannot decode"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} subject hashes differ from openssl x509 -subject_hash:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The corpus must mostly be names OpenSSL can hash, or the test proves little.
    assert!(compared >= 80, "only {compared} subjects compared");
    assert_eq!(compared + OPENSSL_REFUSES.len(), cases.len());
    check_openssl_facts(&openssl_hashes);
}

/// What the table shows about OpenSSL's canonical form, stated on OpenSSL's own hashes, so that a
/// corpus change cannot quietly stop covering it.
fn check_openssl_facts(hashes: &BTreeMap<String, String>) {
    let get = |label: &str| -> &str {
        hashes
            .get(&format!("hand-built: {label}"))
            .unwrap_or_else(|| panic!("openssl did not hash {label:?}"))
    };
    let same = |fact: &str, labels: &[&str]| {
        let first = get(labels[0]);
        for l in &labels[1..] {
            assert_eq!(get(l), first, "{fact}: {l:?} vs {:?}", labels[0]);
        }
    };
    let differ =
        |fact: &str, a: &str, b: &str| assert_ne!(get(a), get(b), "{fact}: {a:?} vs {b:?}");

    same(
        "space, \\t, \\n, \\v, \\f and \\r are trimmed and collapsed",
        &[
            "space",
            "tab",
            "newline",
            "vertical tab",
            "form feed",
            "carriage return",
            "mixed spaces",
        ],
    );
    for not_space in [
        "file separator 0x1c",
        "unit separator 0x1f",
        "nul",
        "del",
        "nbsp utf8",
        "nbsp t61",
        "nel utf8",
        "em space bmp",
        "ideographic space",
    ] {
        differ("only ASCII whitespace is space", "space", not_space);
    }
    same(
        "every string type becomes the same UTF8String",
        &[
            "utf8",
            "utf8 folded",
            "printable",
            "t61 ascii",
            "ia5",
            "universal ascii",
            "bmp ascii",
        ],
    );
    same(
        "all string types but VisibleString (refused) fold alike",
        &[
            "utf8: same text, other case and spaces",
            "printable: same text, other case and spaces",
            "t61: same text, other case and spaces",
            "ia5: same text, other case and spaces",
            "bmp: same text, other case and spaces",
            "universal: same text, other case and spaces",
        ],
    );
    same(
        "T61String is read as Latin-1",
        &["t61 latin-1", "utf8 as t61 latin-1 folds"],
    );
    differ(
        "non-ASCII letters keep their case",
        "utf8 as t61 latin-1 folds",
        "utf8 non-ascii lower-cased",
    );
    differ(
        "NumericString is not canonicalised",
        "numeric",
        "numeric trimmed",
    );
    same(
        "multi-valued RDNs are sorted",
        &["multi-valued cn+o", "multi-valued o+cn"],
    );
    same("emailAddress folds like text", &["email", "email utf8"]);
    same("domainComponent folds like text", &["dc", "dc folded"]);
    same("empty RDNs vanish", &["empty rdn between two", "two rdns"]);
    same(
        "a name of empty RDNs is the empty name",
        &["empty rdn", "empty name"],
    );
    same(
        "BIT STRING padding bits are cleared",
        &[
            "bit string with padding",
            "bit string with set padding bits",
        ],
    );
    same(
        "a BIT STRING without data bytes has no unused bits",
        &["bit string, no data, unused count 5", "bit string, no data"],
    );
    differ(
        "padding is not ignored",
        "bit string",
        "bit string with set padding bits",
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn awkward_names_use_every_string_type() {
    // A guard on the corpus itself: each string type OpenSSL canonicalises appears in it.
    let tags: Vec<u8> = pki::awkward_names()
        .iter()
        .flat_map(|n| value_tags(&n.der))
        .collect();
    for tag in [
        asn1::UTF8_STRING,
        asn1::PRINTABLE_STRING,
        asn1::T61_STRING,
        asn1::IA5_STRING,
        asn1::VISIBLE_STRING,
        asn1::UNIVERSAL_STRING,
        asn1::BMP_STRING,
        asn1::NUMERIC_STRING,
        asn1::OCTET_STRING,
    ] {
        assert!(tags.contains(&tag), "no value with tag {tag:#04x}");
    }
}

/// The tags of the attribute values of a Name.
fn value_tags(name: &[u8]) -> Vec<u8> {
    let split = |input| {
        let (tag, content, _, rest) = pki::der_split(input);
        (tag, content, rest)
    };
    let mut tags = Vec::new();
    let (_, mut rdns, _) = split(name);
    while !rdns.is_empty() {
        let (_, mut set, rest) = split(rdns);
        rdns = rest;
        while !set.is_empty() {
            let (_, atv, rest) = split(set);
            set = rest;
            let (_, _, value) = split(atv);
            tags.push(value[0]);
        }
    }
    tags
}

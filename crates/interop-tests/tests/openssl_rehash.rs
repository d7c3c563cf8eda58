//! Our hashed directory checked against `openssl rehash` on the same certificates.
//!
//! The corpus is awkward on purpose: every awkward subject of [`pki::awkward_names`] (string
//! types, case, whitespace, multi-valued RDNs, e-mail, DC, non-string values), the same subject
//! under different keys, and a bucket of a dozen certificates whose subjects differ only in case,
//! spacing and string type, so they share one hash (numbers past `.9`).
//!
//! - Fed files named as our `links` layout names them (`<sha256>.pem`), `openssl rehash` must
//!   produce exactly our `<hash>.<n>` → certificate mapping, in both layouts; and running it again
//!   on our `links` directory must change nothing.
//! - Fed arbitrary file names, it must put the same certificates under each hash, numbered
//!   contiguously in file-name order (the property our numbering relies on).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anchorage_test_support::peer;
use anchorage_test_support::pki::{self, RawAttribute, asn1};
use anchorage_trust::{
    Bundle, DirLayout, LoadOptions, OpensslDirOptions, Policy, Source, hashed_names, load,
    write_openssl_dir,
};
use anchorage_x509::{Certificate, decode};

/// A certificate of the corpus and why it is there.
struct Member {
    label: String,
    cert: Certificate,
}

fn member(label: impl Into<String>, der: &[u8]) -> Option<Member> {
    // Names we refuse to decode cannot be in a bundle; the hash test covers them.
    Certificate::from_der(der).ok().map(|cert| Member {
        label: label.into(),
        cert,
    })
}

/// Every certificate of the corpus, distinct (each has its own key).
fn corpus() -> Vec<Member> {
    let mut members: Vec<Member> = pki::awkward_names()
        .into_iter()
        .filter_map(|n| {
            member(
                format!("awkward: {}", n.label),
                &pki::ca_der_with_subject(&n.der),
            )
        })
        .collect();
    // The same subject under different keys: hand-built, and signed by rcgen.
    let same = pki::raw_name_der(&[
        vec![RawAttribute::new(asn1::C, asn1::PRINTABLE_STRING, "NZ")],
        vec![
            RawAttribute::new(asn1::CN, asn1::UTF8_STRING, "Same Subject CA"),
            RawAttribute::new(asn1::O, asn1::UTF8_STRING, "Twins"),
        ],
    ]);
    for i in 0..3 {
        members.extend(member(
            format!("same subject, key {i}"),
            &pki::ca_der_with_subject(&same),
        ));
    }
    for i in 0..2 {
        members.extend(member(
            format!("rcgen same subject, key {i}"),
            &pki::root_ca("Twin Root CA").der,
        ));
    }
    // One hash, a dozen subjects: case, spacing and string type differ, the canonical form not.
    let variants: [(u8, Vec<u8>); 12] = [
        (asn1::UTF8_STRING, b"Collision CA".to_vec()),
        (asn1::UTF8_STRING, b"collision ca".to_vec()),
        (asn1::UTF8_STRING, b"COLLISION CA".to_vec()),
        (asn1::UTF8_STRING, b"  Collision   CA  ".to_vec()),
        (asn1::UTF8_STRING, b"\tcollision\r\nca\x0b".to_vec()),
        (asn1::PRINTABLE_STRING, b"Collision CA".to_vec()),
        (asn1::PRINTABLE_STRING, b"collision  CA".to_vec()),
        (asn1::T61_STRING, b"COLLISION ca".to_vec()),
        (asn1::IA5_STRING, b"Collision\tCa".to_vec()),
        (asn1::BMP_STRING, asn1::bmp("Collision CA")),
        (asn1::BMP_STRING, asn1::bmp(" COLLISION CA ")),
        (asn1::UNIVERSAL_STRING, asn1::universal("cOLLISION cA")),
    ];
    for (i, (tag, value)) in variants.into_iter().enumerate() {
        let name = pki::raw_name_der(&[vec![RawAttribute::new(asn1::CN, tag, value)]]);
        members.extend(member(
            format!("collision variant {i}"),
            &pki::ca_der_with_subject(&name),
        ));
    }
    members
}

fn rehash(openssl: &Path, dir: &Path) -> String {
    let out = Command::new(openssl)
        .arg("rehash")
        .arg(dir)
        .output()
        .expect("run openssl rehash");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "openssl rehash failed: {stderr}");
    stderr
}

fn openssl_reads(openssl: &Path, file: &Path) -> bool {
    Command::new(openssl)
        .args(["x509", "-noout", "-in"])
        .arg(file)
        .output()
        .expect("run openssl x509")
        .status
        .success()
}

#[allow(clippy::disallowed_methods)] // test input, not an output
fn write_file(path: &Path, contents: &[u8]) {
    fs::write(path, contents).unwrap();
}

fn is_hash_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(hash, n)| {
        hash.len() == 8
            && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// One `<hash>.<n>` entry: the file it is or points to, and that file's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HashEntry {
    /// The link target, or `None` for a regular file.
    target: Option<String>,
    /// SHA-256 of the certificate it holds, hex.
    sha256: String,
}

/// The `<hash>.<n>` entries of a directory.
fn hashed_entries(dir: &Path) -> BTreeMap<String, HashEntry> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if !is_hash_name(&name) {
            continue;
        }
        let path = entry.path();
        let target = fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
            .then(|| fs::read_link(&path).unwrap().to_str().unwrap().to_owned());
        if let Some(t) = &target {
            assert!(!t.contains('/'), "{name} -> {t} leaves the directory");
        }
        let decoded = decode(&fs::read(&path).unwrap());
        assert!(
            decoded.certificates.len() == 1 && decoded.problems.is_empty(),
            "{name} does not hold exactly one certificate"
        );
        let sha256 = decoded.certificates[0].certificate.sha256().hex();
        out.insert(name, HashEntry { target, sha256 });
    }
    out
}

/// Every entry of a directory: link targets and file contents, to see that nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<String, Result<PathBuf, Vec<u8>>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let path = e.path();
            let value = if e.file_type().unwrap().is_symlink() {
                Ok(fs::read_link(&path).unwrap())
            } else {
                Err(fs::read(&path).unwrap())
            };
            (e.file_name().into_string().unwrap(), value)
        })
        .collect()
}

/// Loads `dir` and applies the default policy, as the CLI does.
fn bundle_of(dir: &Path) -> Bundle {
    let loaded = load(&[Source::Path(dir.to_owned())], &LoadOptions::default());
    assert!(
        loaded.problems.is_empty(),
        "loading the corpus: {:?}",
        loaded.problems
    );
    let (bundle, _report) = Policy::default().apply(loaded).unwrap();
    bundle
}

/// `<hash>` → numbers used, which must be 0, 1, ... without a gap.
fn assert_contiguous<'a>(names: impl IntoIterator<Item = &'a String>, what: &str) {
    let mut numbers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for name in names {
        let (hash, n) = name.split_once('.').unwrap();
        numbers.entry(hash).or_default().push(n.parse().unwrap());
    }
    for (hash, mut ns) in numbers {
        ns.sort_unstable();
        let expected: Vec<usize> = (0..ns.len()).collect();
        assert_eq!(ns, expected, "{what}: numbers of {hash} are not 0..n");
    }
}

fn describe_difference(
    ours: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> String {
    let names: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    let label = |sha: Option<&String>| {
        sha.map_or("-".to_owned(), |s| {
            format!(
                "{} ({})",
                &s[..12],
                labels.get(s).map_or("?", String::as_str)
            )
        })
    };
    names
        .into_iter()
        .filter(|n| ours.get(*n) != theirs.get(*n))
        .map(|n| {
            format!(
                "  {n}: ours {}, openssl {}",
                label(ours.get(n)),
                label(theirs.get(n))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rehash_of_our_file_names_gives_exactly_our_directory() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = anchorage_test_support::tempdir().unwrap();
    let members = corpus();
    let labels: BTreeMap<String, String> = members
        .iter()
        .map(|m| (m.cert.sha256().hex(), m.label.clone()))
        .collect();

    // OpenSSL's directory, from files named as our links layout names them.
    let rehashed = tmp.path().join("rehashed");
    fs::create_dir(&rehashed).unwrap();
    for m in &members {
        let file = format!("{}.pem", m.cert.sha256().hex());
        write_file(&rehashed.join(file), m.cert.to_pem().as_bytes());
    }
    rehash(&openssl, &rehashed);
    let theirs_entries = hashed_entries(&rehashed);
    for (name, e) in &theirs_entries {
        assert_eq!(
            e.target.as_deref(),
            Some(format!("{}.pem", e.sha256).as_str()),
            "openssl rehash made {name} something other than a link to its certificate"
        );
    }
    let theirs: BTreeMap<String, String> = theirs_entries
        .into_iter()
        .map(|(n, e)| (n, e.sha256))
        .collect();

    // Certificates rehash left out must be ones OpenSSL cannot read at all (see openssl_hash.rs);
    // they are left out of our bundle too, so both sides number the same set.
    let linked: BTreeSet<&String> = theirs.values().collect();
    let input = tmp.path().join("input");
    fs::create_dir(&input).unwrap();
    let mut unreadable = Vec::new();
    for m in &members {
        let sha = m.cert.sha256().hex();
        let file = rehashed.join(format!("{sha}.pem"));
        if linked.contains(&sha) {
            write_file(
                &input.join(format!("{sha}.pem")),
                m.cert.to_pem().as_bytes(),
            );
        } else {
            assert!(
                !openssl_reads(&openssl, &file),
                "openssl rehash skipped {}, which openssl x509 reads",
                m.label
            );
            unreadable.push(m.label.as_str());
        }
    }
    // Exactly these certificates are skipped (openssl cannot read them; names we refuse to
    // decode are not in the corpus): one newly read or newly skipped fails the test.
    assert_eq!(
        unreadable,
        [
            "awkward: visible",
            "awkward: visible with latin-1",
            "awkward: multi-valued with a non-string member",
            "awkward: octet string",
            "awkward: integer value",
            "awkward: videotex string",
            "awkward: graphic string",
            "awkward: general string",
            "awkward: utc time value",
            "awkward: context-specific tag",
            "awkward: visible: same text, other case and spaces",
        ],
        "the certificates openssl rehash skips"
    );
    assert_eq!(linked.len() + unreadable.len(), members.len());
    assert!(
        linked.len() >= 80,
        "only {} certificates linked",
        linked.len()
    );

    let bundle = bundle_of(&input);
    assert_eq!(bundle.len(), linked.len());
    let from_hashed_names: BTreeMap<String, String> = hashed_names(&bundle)
        .iter()
        .map(|h| {
            let cert = &bundle.entries()[h.entry].certificate;
            (h.file_name(), cert.sha256().hex())
        })
        .collect();
    assert!(
        from_hashed_names == theirs,
        "hashed_names differs from openssl rehash:\n{}",
        describe_difference(&from_hashed_names, &theirs, &labels)
    );

    for layout in [DirLayout::Links, DirLayout::Files] {
        let out = tmp.path().join(format!("ours-{layout:?}"));
        let options = OpensslDirOptions {
            layout,
            bundle_file: Some("ca-certificates.crt".into()),
        };
        write_openssl_dir(&bundle, &out, &options).unwrap();
        let entries = hashed_entries(&out);
        for (name, e) in &entries {
            let expected_target = match layout {
                DirLayout::Links => Some(format!("{}.pem", e.sha256)),
                DirLayout::Files => None,
            };
            assert_eq!(e.target, expected_target, "{layout:?}: {name}");
        }
        let ours: BTreeMap<String, String> =
            entries.into_iter().map(|(n, e)| (n, e.sha256)).collect();
        assert!(
            ours == theirs,
            "{layout:?} layout differs from openssl rehash:\n{}",
            describe_difference(&ours, &theirs, &labels)
        );
        assert_contiguous(ours.keys(), &format!("{layout:?} layout"));

        // openssl rehash over our directory keeps every link and adds none: in the links layout
        // each <hash>.<n> already points at the right <sha256>.pem; in the files layout there is
        // nothing it reads (<hash>.<n> has no certificate extension, the bundle file holds many).
        let before = snapshot(&out);
        let stderr = rehash(&openssl, &out);
        assert!(
            snapshot(&out) == before,
            "{layout:?}: openssl rehash changed our directory (stderr: {stderr})"
        );
    }
}

#[test]
fn rehash_buckets_match_for_any_file_names_numbered_in_name_order() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = anchorage_test_support::tempdir().unwrap();
    let members = corpus();
    let dir = tmp.path().join("named");
    fs::create_dir(&dir).unwrap();

    // Arbitrary names, every extension rehash reads (case-insensitively), written in an order
    // unlike name order; plus one certificate twice under two names.
    let extensions = ["pem", "crt", "cer", "PEM", "Crt"];
    let mut files: Vec<(String, &Member)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let stem: String = m
                .label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            // The prefix spreads a bucket's members across the alphabet, unlike creation order.
            let prefix = (i * 7919) % 1000;
            (
                format!("{prefix:03}-{stem}.{}", extensions[i % extensions.len()]),
                m,
            )
        })
        .collect();
    let twin = &members[0];
    files.push(("zzz-duplicate.crt".into(), twin));
    files.reverse();
    for (name, m) in &files {
        write_file(&dir.join(name), m.cert.to_pem().as_bytes());
    }
    write_file(&dir.join("README.txt"), b"not a certificate\n");
    rehash(&openssl, &dir);

    let entries = hashed_entries(&dir);
    let targets: BTreeMap<&String, &str> = entries
        .iter()
        .map(|(n, e)| (n, e.target.as_deref().expect("rehash makes links")))
        .collect();
    assert_contiguous(entries.keys(), "openssl rehash");

    // Same certificates under each hash.
    let mut theirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, e) in &entries {
        let (hash, _) = name.split_once('.').unwrap();
        theirs
            .entry(hash.to_owned())
            .or_default()
            .insert(e.sha256.clone());
    }
    let input = tmp.path().join("input");
    fs::create_dir(&input).unwrap();
    let linked: BTreeSet<&String> = entries.values().map(|e| &e.sha256).collect();
    for m in &members {
        let sha = m.cert.sha256().hex();
        if linked.contains(&sha) {
            write_file(
                &input.join(format!("{sha}.pem")),
                m.cert.to_pem().as_bytes(),
            );
        }
    }
    let bundle = bundle_of(&input);
    let mut ours: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for h in hashed_names(&bundle) {
        ours.entry(h.hash.to_string())
            .or_default()
            .insert(bundle.entries()[h.entry].certificate.sha256().hex());
    }
    assert!(
        ours == theirs,
        "hash buckets differ:\nours   {ours:?}\nopenssl {theirs:?}"
    );
    assert!(
        theirs.values().any(|b| b.len() >= 11),
        "the collision bucket is missing"
    );

    // The duplicate is linked once, through the first of its names.
    let twin_links: Vec<&&str> = entries
        .iter()
        .filter(|(_, e)| e.sha256 == twin.cert.sha256().hex())
        .map(|(n, _)| &targets[n])
        .collect();
    assert_eq!(twin_links.len(), 1, "the duplicate is linked twice");
    assert_ne!(*twin_links[0], "zzz-duplicate.crt");

    // Within a hash, numbers follow file-name (byte) order. Our links layout relies on it: its
    // files are <sha256>.pem, and we number by SHA-256. `openssl rehash` sorts only since
    // OpenSSL 3.0.10 / 3.1.2 (openssl/openssl#21013); before, it used readdir order.
    let mut by_hash: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (name, target) in &targets {
        let (hash, n) = name.split_once('.').unwrap();
        by_hash
            .entry(hash)
            .or_default()
            .push((n.parse().unwrap(), target));
    }
    for (hash, mut members) in by_hash {
        members.sort_unstable();
        let in_number_order: Vec<&str> = members.iter().map(|(_, t)| *t).collect();
        let mut in_name_order = in_number_order.clone();
        in_name_order.sort_unstable();
        assert_eq!(
            in_number_order, in_name_order,
            "openssl rehash did not number {hash}.* in file-name order"
        );
    }
}

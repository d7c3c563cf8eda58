//! The bundle model through its public API: order and de-duplication, PEM rendering, hashed
//! names and the directory layouts, all without touching a file.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use anchorage_bundle::{
    Bundle, DirEntry, DirLayout, Origin, PemOptions, hashed_names, is_openssl_hash_name,
    is_plain_file_name, render_pem,
};
use anchorage_test_support::pki;
use anchorage_x509::{Certificate, Position};

fn origin(source: &str) -> Origin {
    Origin {
        source: source.into(),
        detail: None,
        position: Position::default(),
    }
}

fn cert(cn: &str) -> Certificate {
    Certificate::from_der(&pki::root_ca(cn).der).unwrap()
}

#[test]
fn a_bundle_is_sorted_and_deduplicated_whatever_the_input_order() {
    let (a, b) = (cert("Model B"), cert("Model A"));
    let one = Bundle::new([(a.clone(), origin("x")), (b.clone(), origin("y"))]);
    let two = Bundle::new([
        (b, origin("y")),
        (a.clone(), origin("x")),
        (a.clone(), origin("z")),
    ]);
    assert_eq!(one.len(), 2);
    assert_eq!(two.len(), 2, "the duplicate is merged");
    let subjects: Vec<String> = two.certificates().map(|c| c.subject().to_owned()).collect();
    assert!(subjects[0] < subjects[1], "{subjects:?}");
    let opts = PemOptions::default();
    assert_eq!(render_pem(&one, &opts), render_pem(&two, &opts));
    let merged = two
        .entries()
        .iter()
        .find(|e| e.certificate.sha256() == a.sha256())
        .unwrap();
    assert_eq!(
        merged.origins,
        [origin("x"), origin("z")],
        "every origin kept"
    );
}

#[test]
fn pem_comments_name_the_subject_on_one_line() {
    let b = Bundle::new([(cert("Model Comment"), origin("x"))]);
    let plain = render_pem(&b, &PemOptions::default());
    assert!(plain.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let commented = render_pem(&b, &PemOptions { comments: true });
    assert!(commented.starts_with("# "), "{commented}");
    assert!(commented.contains("Model Comment"));
    assert!(commented.contains("\n# SHA-256: "));
    assert!(commented.ends_with(&plain));
}

#[test]
fn mozilla_roots_are_left_out_of_the_extra_bundle() {
    let private = cert("Model Private");
    let mozilla = Certificate::from_der(&webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]).unwrap();
    let b = Bundle::new([(private.clone(), origin("p")), (mozilla, origin("m"))]);
    let extra = b.without_mozilla_roots();
    let left: Vec<_> = extra.certificates().map(Certificate::sha256).collect();
    assert_eq!(left, [private.sha256()]);
}

#[test]
fn hashed_names_are_contiguous_per_hash_and_ordered_by_fingerprint() {
    // Two roots with the same subject share a hash: numbered .0 and .1 by SHA-256.
    let same = [cert("Model Same"), cert("Model Same")];
    let other = cert("Model Other");
    let b = Bundle::new(
        same.iter()
            .chain([&other])
            .map(|c| (c.clone(), origin("x"))),
    );
    let names = hashed_names(&b);
    assert_eq!(names.len(), 3);
    let hash = same[0].subject_hash();
    let mut shared: Vec<_> = names.iter().filter(|n| n.hash == hash).collect();
    shared.sort_by_key(|n| n.n);
    assert_eq!(shared.iter().map(|n| n.n).collect::<Vec<_>>(), [0, 1]);
    let fps: Vec<_> = shared
        .iter()
        .map(|n| b.entries()[n.entry].certificate.sha256())
        .collect();
    assert!(fps[0] < fps[1], "numbered in fingerprint order");
    assert_eq!(shared[0].file_name(), format!("{hash}.0"));
    assert!(names.iter().all(|n| is_openssl_hash_name(&n.file_name())));
}

#[test]
fn the_layouts_give_files_or_files_and_links() {
    let c = cert("Model Layout");
    let b = Bundle::new([(c.clone(), origin("x"))]);
    let name = &hashed_names(&b)[0];
    let pem = c.to_pem().into_bytes();
    assert_eq!(
        name.dir_entries(&b, DirLayout::Files),
        [DirEntry::File {
            name: name.file_name(),
            bytes: pem.clone()
        }]
    );
    let target = format!("{}.pem", c.sha256().hex());
    assert_eq!(
        name.dir_entries(&b, DirLayout::Links),
        [
            DirEntry::File {
                name: target.clone(),
                bytes: pem
            },
            DirEntry::Link {
                name: name.file_name(),
                target
            }
        ]
    );
}

#[test]
fn name_rules() {
    for yes in ["a1b2c3d4.0", "A1B2C3D4.12", "a1b2c3d4.r0"] {
        assert!(is_openssl_hash_name(yes), "{yes}");
    }
    for no in ["a1b2c3d.0", "a1b2c3d4.", "a1b2c3d4.x", "ca.pem", "a1b2c3d4"] {
        assert!(!is_openssl_hash_name(no), "{no}");
    }
    assert!(is_plain_file_name("ca-certificates.crt"));
    for no in ["", ".hidden", "a/b", "../x", "a1b2c3d4.0"] {
        assert!(!is_plain_file_name(no), "{no}");
    }
}

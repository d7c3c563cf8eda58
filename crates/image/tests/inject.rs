//! The public API end to end, over images built in memory: find → plan → write_layer, then the
//! new layer stacked on the image and the whole thing run again (idempotence).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use anchorage_bundle::{Bundle, Origin};
use anchorage_image::{
    Depth, FileRole, ImageHints, LayerFile, Mode, Plan, PlanOptions, find, lookup_for, plan,
    write_layer,
};
use anchorage_keystore::{KeystoreKind, SecretString, TrustedEntry};
use anchorage_test_support::pki;
use anchorage_x509::{Certificate, Position};

enum E<'a> {
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            E::File(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Link(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn cert(cn: &str) -> Certificate {
    Certificate::from_der(&pki::root_ca(cn).der).unwrap()
}

fn bundle(certs: &[&Certificate]) -> Bundle {
    Bundle::new(certs.iter().map(|c| {
        let origin = Origin {
            source: "test".into(),
            detail: None,
            position: Position::default(),
        };
        ((*c).clone(), origin)
    }))
}

fn options() -> PlanOptions {
    PlanOptions {
        pkcs12_iterations: 1_000,
        ..PlanOptions::default()
    }
}

/// Runs the whole pipeline; returns the plan and the image with the new layer on top (or the
/// image unchanged when the plan is empty).
fn inject(mut layers: Vec<Vec<u8>>, new: &Bundle, options: &PlanOptions) -> (Plan, Vec<Vec<u8>>) {
    let found = find(
        &mut layers,
        &lookup_for(new, &ImageHints::default(), Depth::UntilBundle),
    )
    .unwrap();
    let plan = plan(&found, new, options).unwrap();
    if !plan.is_empty() {
        let files: Vec<LayerFile> = plan
            .files
            .iter()
            .map(|f| LayerFile {
                path: f.path.clone(),
                contents: f.contents.clone(),
            })
            .collect();
        layers.insert(0, write_layer(&files).unwrap().blob);
    }
    (plan, layers)
}

fn read(layers: &mut Vec<Vec<u8>>, path: &str) -> Vec<u8> {
    let lookup = anchorage_image::Lookup {
        paths: vec![path.to_owned()],
        hash_dirs: vec![],
        globs: vec![],
        until: anchorage_image::Until::AllKnown,
    };
    find(layers, &lookup)
        .unwrap()
        .file(path)
        .unwrap_or_else(|| panic!("{path} missing"))
        .contents
        .clone()
}

fn fingerprints(pem: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = anchorage_x509::decode(pem)
        .certificates
        .iter()
        .map(|f| f.certificate.sha256().hex())
        .collect();
    v.sort();
    v
}

#[test]
fn debian_like_image_gains_bundle_hash_entry_and_java_store_once() {
    let a = cert("Distro Root A");
    let b = cert("Corp Root B");
    let hash_a = a.subject_hash().to_string();
    let hash_b = b.subject_hash().to_string();
    assert_ne!(hash_a, hash_b);
    let password = SecretString::from("changeit");
    let jks =
        anchorage_keystore::encode_jks(&TrustedEntry::from_certificates([&a]), &password).unwrap();
    let a_pem = a.to_pem();
    let base = tar(&[E::File("etc/debian_version", b"12.0\n")]);
    let ca_certificates = tar(&[
        E::File("usr/share/ca-certificates/a.crt", a_pem.as_bytes()),
        E::Link("etc/ssl/certs/a.pem", "/usr/share/ca-certificates/a.crt"),
        E::Link(&format!("etc/ssl/certs/{hash_a}.0"), "a.pem"),
        E::File(
            "etc/ssl/certs/ca-certificates.crt",
            format!("# distro\n{a_pem}").as_bytes(),
        ),
        E::File("etc/ssl/certs/java/cacerts", &jks),
        E::Link(
            "usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts",
            "/etc/ssl/certs/java/cacerts",
        ),
    ]);
    let app = tar(&[E::File("app/run", b"#!/bin/sh\n")]);
    let image = vec![app, ca_certificates, base];

    let new = bundle(&[&b]);
    // The bundle's layer answers everything: the base layer is not read.
    let found = find(
        &mut image.clone(),
        &lookup_for(&new, &ImageHints::default(), Depth::UntilBundle),
    )
    .unwrap();
    assert_eq!(found.layers_read, 2);
    let complete = find(
        &mut image.clone(),
        &lookup_for(&new, &ImageHints::default(), Depth::Complete),
    )
    .unwrap();
    assert_eq!(complete.layers_read, 3);

    let (plan, mut injected) = inject(image.clone(), &new, &options());
    let paths: Vec<(&str, FileRole)> = plan
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.role))
        .collect();
    let hash_entry = format!("/etc/ssl/certs/{hash_b}.0");
    let mut expected = vec![
        ("/etc/ssl/certs/ca-certificates.crt", FileRole::Bundle),
        (hash_entry.as_str(), FileRole::HashEntry),
        ("/etc/ssl/certs/java/cacerts", FileRole::JavaStore),
    ];
    expected.sort();
    assert_eq!(paths, expected);
    assert!(plan.files.iter().all(|f| f.added == 1));

    // The bundle keeps the distro's bytes and gains B once.
    let merged = read(&mut injected, "/etc/ssl/certs/ca-certificates.crt");
    assert!(merged.starts_with(format!("# distro\n{a_pem}").as_bytes()));
    let mut both = vec![a.sha256().hex(), b.sha256().hex()];
    both.sort();
    assert_eq!(fingerprints(&merged), both);
    assert_eq!(
        fingerprints(&read(&mut injected, &hash_entry)),
        [b.sha256().hex()]
    );

    // The Java store stays JKS, read through the JDK's link, with both certificates.
    let store = read(
        &mut injected,
        "/usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts",
    );
    let store = anchorage_keystore::decode(&store, Some(&password)).unwrap();
    assert_eq!(store.kind, KeystoreKind::Jks);
    assert!(store.integrity_checked);
    let mut stored: Vec<String> = store
        .certificates
        .iter()
        .map(|c| Certificate::from_der(&c.der).unwrap().sha256().hex())
        .collect();
    stored.sort();
    assert_eq!(stored, both);

    // Idempotent: a second run plans nothing and reports the stores as up to date.
    let (again, unchanged_image) = inject(injected.clone(), &new, &options());
    assert!(again.is_empty(), "{:?}", again.files);
    assert_eq!(unchanged_image, injected);
    assert_eq!(
        again.unchanged,
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/ssl/certs/java/cacerts"
        ]
    );

    // Reproducible: the same inputs give the same layer.
    let (_, twice) = inject(image, &new, &options());
    assert_eq!(twice[0], injected[0]);
}

#[test]
fn hash_number_skips_a_slot_taken_by_another_certificate() {
    let a = cert("Distro Root A");
    let b = cert("Corp Root B");
    let hash_b = b.subject_hash().to_string();
    // Pretend A's hash collides with B's: `<hash_b>.0` holds A.
    let image = vec![tar(&[
        E::File("etc/ssl/certs/ca-certificates.crt", a.to_pem().as_bytes()),
        E::File(&format!("etc/ssl/certs/{hash_b}.0"), a.to_pem().as_bytes()),
    ])];
    let (plan, _) = inject(image, &bundle(&[&b]), &options());
    assert!(
        plan.files
            .iter()
            .any(|f| f.path == format!("/etc/ssl/certs/{hash_b}.1")),
        "{:?}",
        plan.files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
}

#[test]
fn rhel_like_image_writes_the_real_file_behind_the_links() {
    let a = cert("Distro Root A");
    let b = cert("Corp Root B");
    let pkcs12 = {
        let mut o = anchorage_keystore::Pkcs12Options::protected(
            anchorage_keystore::Pkcs12Profile::Modern2023,
            SecretString::from("changeit"),
        );
        o.iterations = 1_000;
        anchorage_keystore::encode_pkcs12(&TrustedEntry::from_certificates([&a]), &o).unwrap()
    };
    let image = vec![tar(&[
        E::File(
            "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            a.to_pem().as_bytes(),
        ),
        E::Link(
            "etc/pki/tls/certs/ca-bundle.crt",
            "../../ca-trust/extracted/pem/tls-ca-bundle.pem",
        ),
        E::Link("etc/ssl/certs", "../pki/tls/certs"),
        E::File("etc/pki/ca-trust/extracted/java/cacerts", &pkcs12),
        E::Link("etc/pki/java/cacerts", "../ca-trust/extracted/java/cacerts"),
    ])];
    let new = bundle(&[&b]);
    let (plan, mut injected) = inject(
        image,
        &new,
        &PlanOptions {
            env: true,
            ..options()
        },
    );
    let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/pki/ca-trust/extracted/java/cacerts",
            "/etc/pki/ca-trust/extracted/pem/anchorage-extra-ca.pem",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        ],
        "real paths only, no hash entries (the image keeps none), no write through a link"
    );
    let bundle_path = "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem";
    assert_eq!(
        plan.env,
        [
            (
                "NODE_EXTRA_CA_CERTS".to_owned(),
                "/etc/pki/ca-trust/extracted/pem/anchorage-extra-ca.pem".to_owned()
            ),
            ("REQUESTS_CA_BUNDLE".to_owned(), bundle_path.to_owned()),
            ("SSL_CERT_FILE".to_owned(), bundle_path.to_owned()),
        ]
    );
    // Read back through the usual path: the link still works and leads to both CAs.
    assert_eq!(
        fingerprints(&read(&mut injected, "/etc/ssl/certs/ca-bundle.crt")).len(),
        2
    );
    let store = read(&mut injected, "/etc/pki/java/cacerts");
    let store = anchorage_keystore::decode(&store, Some(&SecretString::from("changeit"))).unwrap();
    assert_eq!(
        (store.kind, store.certificates.len()),
        (KeystoreKind::Pkcs12, 2)
    );

    let env = PlanOptions {
        env: true,
        ..options()
    };
    let (again, _) = inject(injected, &new, &env);
    assert!(again.is_empty(), "{:?}", again.files);
    assert_eq!(again.env, plan.env);
}

#[test]
fn image_without_a_bundle_gets_one_and_keeps_it() {
    let b = cert("Corp Root B");
    let image = vec![tar(&[E::File(
        "etc/passwd",
        b"root:x:0:0::/:/sbin/nologin\n",
    )])];
    let new = bundle(&[&b]);
    let (plan, mut injected) = inject(image, &new, &options());
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/etc/ssl/certs/ca-certificates.crt");
    let created = fingerprints(&read(&mut injected, "/etc/ssl/certs/ca-certificates.crt"));
    assert!(created.contains(&b.sha256().hex()));
    assert!(
        created.len() > 100,
        "Mozilla's roots too: {}",
        created.len()
    );
    assert_eq!(plan.files[0].added, created.len());
    let (again, _) = inject(injected, &new, &options());
    assert!(again.is_empty());
}

#[test]
fn replace_mode_reads_nothing_and_writes_mozilla_plus_new() {
    let b = cert("Corp Root B");
    let new = bundle(&[&b]);
    let options = PlanOptions {
        mode: Mode::Replace {
            paths: vec!["/etc/ssl/certs/ca-certificates.crt".into()],
        },
        ..options()
    };
    let plan = plan(&Default::default(), &new, &options).unwrap();
    assert_eq!(plan.files.len(), 1);
    let fps = fingerprints(&plan.files[0].contents);
    assert!(fps.len() > 100, "Mozilla roots: {}", fps.len());
    assert!(fps.contains(&b.sha256().hex()));
    assert_eq!(plan.files[0].added, fps.len());
}

#[test]
fn bundle_whited_out_by_an_upper_layer_is_created_again() {
    let a = cert("Distro Root A");
    let b = cert("Corp Root B");
    let image = vec![
        tar(&[E::File("etc/ssl/certs/.wh.ca-certificates.crt", b"")]),
        tar(&[E::File(
            "etc/ssl/certs/ca-certificates.crt",
            a.to_pem().as_bytes(),
        )]),
    ];
    let (plan, _) = inject(image, &bundle(&[&b]), &options());
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "/etc/ssl/certs/ca-certificates.crt");
    let created = fingerprints(&plan.files[0].contents);
    assert!(created.contains(&b.sha256().hex()));
    assert!(
        !created.contains(&a.sha256().hex()),
        "the whited-out bundle is not revived"
    );
}

#[test]
fn java_stores_under_java_home_and_usr_lib_jvm_are_found_and_written_once() {
    let a = cert("Distro Root A");
    let b = cert("Corp Root B");
    let password = SecretString::from("changeit");
    let jks =
        anchorage_keystore::encode_jks(&TrustedEntry::from_certificates([&a]), &password).unwrap();
    let pkcs12 = anchorage_bundle::render_pkcs12(
        &bundle(&[&a]),
        &anchorage_bundle::Pkcs12Options::protected(
            anchorage_keystore::Pkcs12Profile::Modern2023,
            password.clone(),
        ),
    )
    .unwrap();
    let a_pem = a.to_pem();
    let base = tar(&[
        E::File("etc/ssl/certs/ca-certificates.crt", a_pem.as_bytes()),
        E::File("etc/ssl/certs/java/cacerts", &jks),
    ]);
    // A JDK package linking to the shared store (twice, through default-java), and a JDK
    // unpacked under a JAVA_HOME the catalogue does not know.
    let jdks = tar(&[
        E::Link(
            "usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
            "/etc/ssl/certs/java/cacerts",
        ),
        E::Link("usr/lib/jvm/default-java", "java-21-openjdk-amd64"),
        E::File("opt/vendor/temurin-21/lib/security/cacerts", &pkcs12),
    ]);
    let mut image = vec![jdks, base];
    let new = bundle(&[&b]);
    let config = br#"{"config":{"Env":["PATH=/usr/bin","JAVA_HOME=/opt/vendor/temurin-21/"]}}"#;
    let hints = ImageHints::from_config(config);
    assert_eq!(hints.java_home.as_deref(), Some("/opt/vendor/temurin-21"));

    let found = find(&mut image, &lookup_for(&new, &hints, Depth::UntilBundle)).unwrap();
    let plan = plan(&found, &new, &options()).unwrap();
    let stores: Vec<&str> = plan
        .files
        .iter()
        .filter(|f| f.role == FileRole::JavaStore)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        stores,
        [
            "/etc/ssl/certs/java/cacerts",
            "/opt/vendor/temurin-21/lib/security/cacerts"
        ]
    );
    let temurin = plan
        .files
        .iter()
        .find(|f| f.path.starts_with("/opt/vendor"))
        .unwrap();
    let decoded = anchorage_keystore::decode(&temurin.contents, Some(&password)).unwrap();
    assert_eq!(decoded.kind, KeystoreKind::Pkcs12);
    assert_eq!(decoded.certificates.len(), 2);

    // Without the hint the vendor JDK is not looked for.
    let found = find(
        &mut image,
        &lookup_for(&new, &ImageHints::default(), Depth::UntilBundle),
    )
    .unwrap();
    let without = anchorage_image::plan(&found, &new, &options()).unwrap();
    assert!(
        without
            .files
            .iter()
            .all(|f| !f.path.starts_with("/opt/vendor"))
    );
}

#[test]
fn java_home_hint_is_the_last_absolute_definition() {
    let hints =
        |env: &str| ImageHints::from_config(format!(r#"{{"config":{{"Env":{env}}}}}"#).as_bytes());
    assert_eq!(
        hints(r#"["JAVA_HOME=/opt/a","JAVA_HOME=/opt/b/./jdk/"]"#)
            .java_home
            .as_deref(),
        Some("/opt/b/jdk")
    );
    assert_eq!(hints(r#"["JAVA_HOME=jdk"]"#).java_home, None, "relative");
    assert_eq!(hints(r#"["PATH=/bin"]"#).java_home, None);
    assert_eq!(ImageHints::from_config(b"not json").java_home, None);
    assert_eq!(
        ImageHints::from_config(br#"{"config":null}"#).java_home,
        None
    );
}

/// Attack (issue 19, item 5) through `image inject`: the image's Java store is a ~200-byte
/// PKCS#12 whose scrypt asks for 1 GiB. Planning refuses it, naming its path inside the image,
/// before any key derivation runs.
#[test]
fn a_java_store_asking_for_a_huge_scrypt_is_refused_naming_its_path() {
    let a = cert("Distro Root A");
    let store = include_bytes!("../../keystore/testdata/scrypt-1gib.p12");
    let mut image = vec![tar(&[
        E::File("etc/ssl/certs/ca-certificates.crt", a.to_pem().as_bytes()),
        E::File("etc/ssl/certs/java/cacerts", store),
    ])];
    let new = bundle(&[&cert("Corp Root B")]);
    let found = find(
        &mut image,
        &lookup_for(&new, &ImageHints::default(), Depth::UntilBundle),
    )
    .unwrap();
    let err = plan(&found, &new, &options()).unwrap_err();
    match &err {
        anchorage_image::ImageError::JavaStore {
            path,
            source: anchorage_keystore::KeystoreError::KdfLimit { what, .. },
        } => {
            assert_eq!(path, "/etc/ssl/certs/java/cacerts");
            assert!(what.contains("scrypt"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

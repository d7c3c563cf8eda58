//! Writes the seed corpora under `fuzz/corpus/<target>/seed-*` from a throwaway test PKI.
//! Ignored: run by hand when a target's input format changes, then commit the files:
//!
//! ```sh
//! cargo test -p anchorage-fuzz-targets --test seeds -- --ignored
//! ```
//!
//! Keys in these files are placeholders or fuzzing-only keys; no seed holds a real secret.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anchorage_bundle::{Bundle, Origin, PemOptions, render_pem};
use anchorage_fuzz_targets::{ADMIN_SEED, NOW_UNIX, frame_layers, pkcs7_certs_only, transit_key};
use anchorage_image::{LayerFile, write_layer};
use anchorage_k8s::{CaSecretLayout, ManifestFormat, ObjectName, write_ca_secret};
use anchorage_keystore::{
    Pkcs12Options, Pkcs12Profile, SecretString, TrustedEntry, encode_jks, encode_pkcs12,
};
use anchorage_secrets::PublicXKey;
use anchorage_secrets::admin::{AdminClaims, AdminOp, AdminRequest, AdminSigner};
use anchorage_test_support::pki;
use anchorage_x509::Certificate;
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretSlice};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn seed(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = corpus().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A tar stream (plain) with regular files, symlinks, hard links and whiteouts.
fn tar(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(0);
        match kind {
            'f' => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
            'd' => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            'l' | 'h' => {
                header.set_entry_type(if *kind == 'l' {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_size(0);
                let target = std::str::from_utf8(data).unwrap();
                builder.append_link(&mut header, path, target).unwrap();
            }
            _ => unreachable!(),
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seeds() {
    let root = pki::root_ca("Fuzz Root CA");
    let inter = pki::intermediate_ca("Fuzz Intermediate CA", &root);
    let leaf = pki::server_leaf(&["fuzz.example"], &inter);
    let sample = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/sample-ca/anchorage-sample-root.crt"),
    )
    .unwrap();
    let certs: Vec<Certificate> = [&root, &inter, &leaf]
        .iter()
        .map(|i| Certificate::from_der(&i.der).unwrap())
        .collect();
    let bundle = Bundle::new(
        certs
            .iter()
            .map(|c| (c.clone(), Origin::path(Path::new("seed")))),
    );
    let chain_pem = render_pem(&bundle, &PemOptions { comments: true });
    let p7b = pkcs7_certs_only(&[&root.der, &inter.der, &leaf.der]);
    let odd_name = pki::with_subject(
        &root.der,
        &pki::raw_name_der(&[
            vec![pki::RawAttribute::new(
                "2.5.4.3",
                pki::asn1::T61_STRING,
                b"T\xe9l\xe9tex".to_vec(),
            )],
            vec![
                pki::RawAttribute::new(
                    "2.5.4.10",
                    pki::asn1::BMP_STRING,
                    pki::asn1::bmp("Bmp Org"),
                ),
                pki::RawAttribute::new(
                    "2.5.4.11",
                    pki::asn1::VISIBLE_STRING,
                    b"  Multi  Valued ".to_vec(),
                ),
            ],
        ]),
    );

    // x509
    seed("x509_decode", "root.pem", &root.pem);
    seed("x509_decode", "chain-comments.pem", &chain_pem);
    seed(
        "x509_decode",
        "chain-crlf.pem",
        chain_pem.replace('\n', "\r\n"),
    );
    seed("x509_decode", "leaf.der", &leaf.der);
    seed("x509_decode", "chain.p7b", &p7b);
    seed("x509_decode", "sample-root.crt", &sample);
    seed(
        "x509_decode",
        "key-then-cert.pem",
        format!("{}{}", pem("PRIVATE KEY", b"placeholder"), root.pem),
    );
    seed(
        "x509_decode",
        "trusted.pem",
        pem("TRUSTED CERTIFICATE", &root.der),
    );
    seed("x509_certificate", "root.der", &root.der);
    seed("x509_certificate", "intermediate.der", &inter.der);
    seed("x509_certificate", "leaf.der", &leaf.der);
    seed("x509_certificate", "odd-name.der", &odd_name);
    seed("x509_pkcs7", "chain.p7b", &p7b);
    seed("x509_pkcs7", "chain-p7b.pem", pem("PKCS7", &p7b));
    seed("x509_pkcs7", "empty.p7b", pkcs7_certs_only(&[]));
    seed("x509_der_structured", "zeros", [0u8; 128]);
    seed(
        "x509_der_structured",
        "ramp",
        (0..=255u8).collect::<Vec<_>>(),
    );
    seed("x509_der_structured", "leaf-bytes", &leaf.der);

    // keystore
    let entries = TrustedEntry::from_certificates(&certs);
    let changeit = SecretString::from("changeit");
    for (name, profile) in [
        ("modern", Pkcs12Profile::Modern2023),
        ("legacy-des", Pkcs12Profile::LegacyDes),
        ("legacy-rc2", Pkcs12Profile::LegacyRc2),
    ] {
        let mut options = Pkcs12Options::protected(profile, changeit.clone());
        options.iterations = 1;
        seed(
            "keystore_pkcs12",
            &format!("{name}.p12"),
            cat(&[&[1], &encode_pkcs12(&entries, &options).unwrap()]),
        );
    }
    let open = encode_pkcs12(&entries, &Pkcs12Options::unprotected()).unwrap();
    seed("keystore_pkcs12", "unprotected.p12", cat(&[&[0], &open]));
    let jks = encode_jks(&entries, &changeit).unwrap();
    seed("keystore_jks", "changeit.jks", cat(&[&[1], &jks]));
    seed("keystore_jks", "no-password.jks", cat(&[&[0], &jks]));
    seed(
        "keystore_jks",
        "one.jks",
        cat(&[&[1], &encode_jks(&entries[..1], &changeit).unwrap()]),
    );

    // Kubernetes
    let fsm = [
        ("ca.crt", root.pem.as_bytes()),
        ("private.key", b"placeholder".as_slice()),
        ("expiration", b"2030-01-01 00:00:00".as_slice()),
    ];
    let tls = [
        ("tls.crt", root.pem.as_bytes()),
        ("tls.key", b"placeholder".as_slice()),
        ("ca.crt", root.pem.as_bytes()),
    ];
    for (layout, data, lname) in [
        (CaSecretLayout::FsmCaBundle, &fsm, "fsm"),
        (CaSecretLayout::KubernetesTls, &tls, "tls"),
    ] {
        for (format, ext) in [
            (ManifestFormat::Yaml, "yaml"),
            (ManifestFormat::Json, "json"),
        ] {
            let map = data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SecretSlice::from(v.to_vec())))
                .collect();
            let text = write_ca_secret(layout, &ObjectName::new("fuzz-ca"), map, format).unwrap();
            seed(
                "k8s_ca_secret",
                &format!("{lname}.{ext}"),
                text.expose_secret(),
            );
        }
    }
    let indented: String = root.pem.lines().map(|l| format!("    {l}\n")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&root.pem);
    let configmap = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: trust\ndata:\n  ca.crt: |\n{indented}"
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: trust\ndata:\n  ca.crt: {b64}\nstringData:\n  extra.crt: |\n{indented}"
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n  data:\n    a.crt: |\n{}---\n{secret}",
        root.pem
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    seed(
        "trust_source",
        "configmap.yaml",
        cat(&[&[0, 0], configmap.as_bytes()]),
    );
    seed(
        "trust_source",
        "secret.yaml",
        cat(&[&[0, 1], secret.as_bytes()]),
    );
    seed(
        "trust_source",
        "list.yaml",
        cat(&[&[1, 0], list.as_bytes()]),
    );
    seed(
        "trust_source",
        "chain.pem",
        cat(&[&[1, 0], chain_pem.as_bytes()]),
    );
    seed("trust_source", "store.jks", cat(&[&[2, 0], &jks]));
    seed("trust_source", "store.p12", cat(&[&[3, 0], &open]));

    // image layers: written by us (gzip), hand-made tars with links and whiteouts, zstd.
    let base = write_layer(&[
        LayerFile {
            path: "/etc/ssl/certs/ca-certificates.crt".into(),
            contents: root.pem.clone().into_bytes(),
        },
        LayerFile {
            path: "/usr/lib/jvm/java-17/lib/security/cacerts".into(),
            contents: jks,
        },
    ])
    .unwrap();
    seed("image_layers", "one-gzip", frame_layers(&[&base.blob]));
    let top = tar(&[
        ("etc/", 'd', b""),
        ("etc/ssl/", 'd', b""),
        ("etc/ssl/cert.pem", 'l', b"certs/ca-certificates.crt"),
        ("etc/ssl/certs/", 'd', b""),
        ("etc/ssl/certs/.wh.ca-certificates.crt", 'f', b""),
        ("etc/ssl/certs/fuzz.pem", 'f', root.pem.as_bytes()),
        ("etc/ssl/certs/0a1b2c3d.0", 'l', b"fuzz.pem"),
        (
            "etc/ssl/certs/ca-certificates.crt",
            'h',
            b"etc/ssl/certs/fuzz.pem",
        ),
        ("etc/pki/", 'd', b""),
        ("etc/pki/.wh..wh..opq", 'f', b""),
        ("etc/pki/tls/certs/ca-bundle.crt", 'l', b"/etc/ssl/cert.pem"),
        ("loop/a", 'l', b"b"),
        ("loop/b", 'l', b"a"),
    ]);
    seed(
        "image_layers",
        "links-whiteouts-plain",
        frame_layers(&[&top, &base.blob]),
    );
    seed(
        "image_layers",
        "links-gzip",
        frame_layers(&[&gzip(&top), &base.blob]),
    );
    seed(
        "image_layers",
        "three-zstd",
        frame_layers(&[&zstd(&top), &gzip(&top), &base.blob]),
    );
    seed(
        "image_write_layer",
        "ramp",
        (0..=255u8).rev().collect::<Vec<_>>(),
    );
    seed(
        "image_write_layer",
        "text",
        b"etc ssl certs and some contents to write in files",
    );

    // OCI documents
    let config = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin","SSL_CERT_FILE=/old"]},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"base"}]}"#;
    let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":10}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":20}}],"annotations":{{"a":"b"}}}}"#
    );
    let docker = manifest
        .replace(
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .replace(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        )
        .replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":30,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":40,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{d}"}}}}]}}"#
    );
    seed("image_oci", "config.json", cat(&[&[0], config.as_bytes()]));
    seed(
        "image_oci",
        "manifest-oci.json",
        cat(&[&[1], manifest.as_bytes()]),
    );
    seed(
        "image_oci",
        "manifest-docker.json",
        cat(&[&[1], docker.as_bytes()]),
    );
    seed("image_oci", "index.json", cat(&[&[2], index.as_bytes()]));

    // secrets: admin requests signed for NOW_UNIX and the fuzz transit key, opened again so the
    // seed is the plaintext the target seals.
    let transit = transit_key();
    let signer = AdminSigner::from_seed(&SecretString::from(ADMIN_SEED), "seed").unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    let mut admin_jwt = String::new();
    for (op, index, key, value) in [
        (AdminOp::List, 3u8, None, None),
        (AdminOp::Get, 1, Some("db-password"), None),
        (
            AdminOp::Put,
            0,
            Some("db-password"),
            Some(b"hunter2".to_vec()),
        ),
    ] {
        let request = AdminRequest {
            op: Some(op),
            claims: AdminClaims {
                key: key.map(str::to_owned),
                ..AdminClaims::default()
            },
            value: value.map(zeroize::Zeroizing::new),
        };
        let sealed = signer
            .seal(
                &request,
                "fuzz",
                transit.public_key(),
                now,
                Duration::from_secs(60),
            )
            .unwrap();
        let plain = transit
            .open(&sealed.body, &PublicXKey::parse(&sealed.header).unwrap())
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        admin_jwt = json["jwt"].as_str().unwrap().to_owned();
        seed("secrets_admin", op.as_str(), cat(&[&[index], &plain]));
    }
    seed("secrets_jwt", "admin.jwt", &admin_jwt);
    seed(
        "secrets_jwt",
        "none-alg.jwt",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJNQkZVWlpGVVpaIn0.",
    );
    let request = serde_json::json!({
        "key": "db-password",
        "field": null,
        "version": "1",
        "context": {
            "entity_jwt": admin_jwt,
            "host_jwt": admin_jwt,
            "application": {"name": "app", "policy": "{\"type\":\"properties.secret.wasmcloud.dev/v1alpha1\",\"properties\":{\"backend\":\"fuzz\"}}"}
        }
    });
    seed(
        "secrets_get",
        "request.json",
        cat(&[&[1], request.to_string().as_bytes()]),
    );
    seed(
        "secrets_get",
        "sealed-garbage",
        cat(&[&[0], b"xkv1 not really sealed"]),
    );

    // serve CSR
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["fuzz.example".to_owned()]).unwrap();
    let csr = params.serialize_request(&key).unwrap();
    seed("serve_csr", "request.pem", csr.pem().unwrap());
    seed("serve_csr", "request.der", csr.der());
}

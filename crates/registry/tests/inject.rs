//! `inject` against a real `docker-registry` on loopback, with images built by `umoci` and
//! moved by `skopeo`; results pulled with `skopeo`, unpacked with `umoci` and checked with
//! `openssl` and `curl`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anchorage_image::{Depth, Mode, PlanOptions, manifest_blobs};
use anchorage_registry::{
    ClientSettings, ImageRef, InjectReport, InjectRequest, RegistryError, inject, parse_platform,
};
use anchorage_test_support::peer::{openssl_server, require, run_client};
use anchorage_test_support::pki::{Issued, Pki, root_ca};
use anchorage_test_support::registry::{
    LayoutBuilder, Registry, RegistryOptions, images, keytool_store, require_image_tools,
    skopeo_copy, skopeo_copy_arch, unpack,
};
use anchorage_trust::{Bundle, Origin};
use anchorage_x509::{Certificate, Position};

fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn bundle(cas: &[&Issued]) -> Bundle {
    Bundle::new(cas.iter().map(|c| {
        (
            Certificate::from_der(&c.der).unwrap(),
            Origin {
                source: "test".into(),
                detail: None,
                position: Position::default(),
            },
        )
    }))
}

fn request(registry: &Registry, source: &str, destination: &str, cas: &[&Issued]) -> InjectRequest {
    InjectRequest {
        source: ImageRef::parse(source).unwrap(),
        destination: ImageRef::parse(destination).unwrap(),
        cas: bundle(cas),
        plan: PlanOptions::default(),
        depth: Depth::UntilBundle,
        platforms: Vec::new(),
        client: ClientSettings {
            roots: Vec::new(),
            insecure_registries: vec![registry.host()],
            docker_config: false,
        },
    }
}

fn run(request: &InjectRequest) -> Result<InjectReport, RegistryError> {
    inject(request, &mut |_| {})
}

/// The manifest bytes a layout's `tag` names (following an index to `arch` if needed).
fn layout_manifest(layout: &Path, tag: &str) -> Vec<u8> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} in {index}"));
    blob(layout, entry["digest"].as_str().unwrap())
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
}

fn layer_digests(manifest: &[u8]) -> Vec<String> {
    manifest_blobs(manifest)
        .unwrap()
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect()
}

fn fingerprints(pem: &[u8]) -> Vec<String> {
    anchorage_x509::decode(pem)
        .certificates
        .iter()
        .map(|c| c.certificate.sha256().hex())
        .collect()
}

fn sha(c: &Issued) -> String {
    Certificate::from_der(&c.der).unwrap().sha256().hex()
}

/// Pulls `reference` into a fresh layout and unpacks it; returns (layout, rootfs).
fn pull(registry: &Registry, repo_tag: &str, work: &Path, name: &str) -> (PathBuf, PathBuf) {
    let layout = work.join(format!("{name}-layout"));
    skopeo_copy(
        &format!("docker://{}", registry.reference(repo_tag)),
        &format!("oci:{}:pulled", layout.display()),
    );
    let rootfs = unpack(&layout, "pulled", &work.join(format!("{name}-bundle")));
    (layout, rootfs)
}

fn push(builder: &LayoutBuilder, tag: &str, registry: &Registry, repo_tag: &str) {
    skopeo_copy(
        &format!("oci:{}:{tag}", builder.path.display()),
        &format!("docker://{}", registry.reference(repo_tag)),
    );
}

fn openssl_hash(pem_file: &Path) -> String {
    let out = run_client(
        Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in"])
            .arg(pem_file),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.output());
    out.stdout.trim().to_owned()
}

/// The first line curl (`-sS`) prints when the server's chain leads to no root in the `--cacert`
/// bundle (the rest is its advice); it then exits with [`CURL_PEER_FAILED_VERIFICATION`].
const CURL_UNKNOWN_ISSUER: &str =
    "curl: (60) SSL certificate problem: unable to get local issuer certificate";

/// curl's exit code for a certificate it could not verify (`CURLE_PEER_FAILED_VERIFICATION`).
const CURL_PEER_FAILED_VERIFICATION: i32 = 60;

fn curl(bundle: &Path, port: u16) -> anchorage_test_support::peer::ClientRun {
    assert!(bundle.is_file(), "no bundle at {}", bundle.display());
    run_client(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "20", "--cacert"])
            .arg(bundle)
            .arg(format!("https://127.0.0.1:{port}/")),
        Duration::from_secs(60),
    )
}

/// curl trusting only `bundle` completes the request to the server on `port`.
fn assert_curl_trusts(bundle: &Path, port: u16) {
    let out = curl(bundle, port);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        bundle.display(),
        out.output()
    );
    assert_eq!(out.stderr, "", "{}", bundle.display());
}

/// curl trusting only `bundle` refuses the server on `port` because no root in the bundle
/// issued its chain: exit 60, first line exactly [`CURL_UNKNOWN_ISSUER`] (not a timeout, a refused
/// connection or an unreadable bundle).
fn assert_curl_refuses_unknown_issuer(bundle: &Path, port: u16) {
    let out = curl(bundle, port);
    assert_eq!(
        out.status.code(),
        Some(CURL_PEER_FAILED_VERIFICATION),
        "{}: {}",
        bundle.display(),
        out.output()
    );
    assert_eq!(
        out.stderr.lines().next(),
        Some(CURL_UNKNOWN_ISSUER),
        "{}: {}",
        bundle.display(),
        out.stderr
    );
}

/// A private-CA HTTPS server (`openssl s_server`) presenting `pki`'s leaf and intermediate, its
/// files under `dir`. `None` when openssl or curl is missing locally.
fn private_server(pki: &Pki, dir: &Path) -> Option<anchorage_test_support::peer::Running> {
    require("curl")?;
    let files = pki.write_server_files(dir);
    openssl_server(&files.cert, &files.key, Some(&files.chain))
}

#[test]
fn debian_like_image_gains_ca_hash_entry_keeps_layers_and_trusts_private_server() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let (Some(_), Some(_)) = (require("openssl"), require("curl")) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let distro = [root_ca("Distro Root A"), root_ca("Distro Root B")];
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::debian_like(
        &builder,
        "deb",
        &distro.iter().map(|r| r.pem.clone()).collect::<Vec<_>>(),
    );
    push(&builder, "deb", &registry, "debian:12");

    let pki = Pki::new("Corp");
    let report = run(&request(
        &registry,
        &registry.reference("debian:12"),
        &registry.reference("debian:12-corp"),
        &[&pki.root],
    ))
    .unwrap();
    assert_ne!(report.digest, report.source_digest);
    assert_eq!(report.platforms.len(), 1);
    let layer = report.platforms[0].layer.as_ref().unwrap();
    // Only the bundle's layer and the one above it were read.
    assert_eq!(report.platforms[0].layers_read, 2);
    // Uploads: the new layer, the config and the manifest; every original blob was present.
    assert_eq!(report.blobs_uploaded, 2);
    assert_eq!(report.blobs_mounted, 0);
    assert!(report.bytes_uploaded < layer.size + 4096, "{report:?}");

    let (layout, rootfs) = pull(&registry, "debian:12-corp", work.path(), "new");
    let manifest = layout_manifest(&layout, "pulled");
    assert_eq!(anchorage_image::Digest::sha256(&manifest), report.digest);
    let original = layout_manifest(&builder.path, "deb");
    let (old_layers, new_layers) = (layer_digests(&original), layer_digests(&manifest));
    assert_eq!(new_layers.len(), old_layers.len() + 1);
    assert_eq!(
        new_layers[..old_layers.len()],
        old_layers[..],
        "original layers untouched"
    );
    assert_eq!(new_layers.last().unwrap(), layer.digest.as_str());

    let bundle_path = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let fps = fingerprints(&std::fs::read(&bundle_path).unwrap());
    assert_eq!(fps, [sha(&distro[0]), sha(&distro[1]), sha(&pki.root)]);
    // The new <hash>.0 holds the new CA, and its name is what openssl computes.
    let root_file = pki.root.write_pem(work.path(), "corp-root.pem");
    let hash = openssl_hash(&root_file);
    let entry = rootfs.join(format!("etc/ssl/certs/{hash}.0"));
    assert_eq!(
        fingerprints(&std::fs::read(&entry).unwrap()),
        [sha(&pki.root)]
    );
    // The distro's entries still point at their certificates.
    for root in &distro {
        let file = root.write_pem(work.path(), "distro.pem");
        let entry = rootfs.join(format!("etc/ssl/certs/{}.0", openssl_hash(&file)));
        assert_eq!(fingerprints(&std::fs::read(&entry).unwrap()), [sha(root)]);
    }

    // curl with the image's bundle trusts the private-CA server; the original does not.
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_server_files(dir.path());
    let Some(server) = openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    assert_curl_trusts(&bundle_path, server.port());
    let old_rootfs = unpack(&builder.path, "deb", &work.path().join("old-bundle"));
    assert_curl_refuses_unknown_issuer(
        &old_rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        server.port(),
    );

    // Idempotent: the same inputs give the same digest, and injecting into the result again
    // changes nothing.
    let again = run(&request(
        &registry,
        &registry.reference("debian:12"),
        &registry.reference("debian:12-corp2"),
        &[&pki.root],
    ))
    .unwrap();
    assert_eq!(again.digest, report.digest);
    assert_eq!(again.blobs_uploaded, 0, "{again:?}");
    let twice = run(&request(
        &registry,
        &registry.reference("debian:12-corp"),
        &registry.reference("debian:12-corp3"),
        &[&pki.root],
    ))
    .unwrap();
    assert_eq!(twice.digest, report.digest);
    assert!(twice.platforms[0].layer.is_none());
    assert!(twice.platforms[0].plan.is_empty());
}

#[test]
fn distroless_like_image_gets_a_bundle_with_public_roots_and_the_ca() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::distroless_like(&builder, "static");
    push(&builder, "static", &registry, "distroless/static:nonroot");
    let pki = Pki::new("Corp");
    let ca = &pki.root;
    // Into another repository: the original layers are mounted, not uploaded.
    let report = run(&request(
        &registry,
        &registry.reference("distroless/static:nonroot"),
        &registry.reference("mirror/static:nonroot-corp"),
        &[ca],
    ))
    .unwrap();
    assert_eq!(report.blobs_mounted, 3, "config and two layers: {report:?}");
    assert_eq!(report.blobs_uploaded, 2);
    // Every layer was read to learn that there is no bundle.
    assert_eq!(report.platforms[0].layers_read, 2);

    let (_, rootfs) = pull(&registry, "mirror/static:nonroot-corp", work.path(), "new");
    let bundle_path = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let fps = fingerprints(&std::fs::read(&bundle_path).unwrap());
    assert!(fps.contains(&sha(ca)));
    assert!(fps.len() > 100, "Mozilla's roots too: {}", fps.len());
    assert!(rootfs.join("app/server").is_file());

    // curl with the new bundle trusts the private-CA server. The original image has no bundle
    // to try; the negative control is a server of another private CA, which the new bundle
    // (Mozilla's roots and ours) must not trust.
    let old_rootfs = unpack(&builder.path, "static", &work.path().join("old-bundle"));
    assert!(old_rootfs.join("app/server").is_file());
    assert!(
        !old_rootfs
            .join("etc/ssl/certs/ca-certificates.crt")
            .exists()
    );
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = private_server(&pki, dir.path()) else {
        return;
    };
    assert_curl_trusts(&bundle_path, server.port());
    let other_dir = tempfile::tempdir().unwrap();
    let Some(other) = private_server(&Pki::new("Other"), other_dir.path()) else {
        return;
    };
    assert_curl_refuses_unknown_issuer(&bundle_path, other.port());
}

#[test]
fn rhel_like_image_writes_the_real_file_behind_the_links() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let distro = root_ca("RHEL Distro Root");
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::rhel_like(&builder, "ubi", std::slice::from_ref(&distro.pem));
    push(&builder, "ubi", &registry, "ubi9:latest");
    let pki = Pki::new("Corp");
    let ca = &pki.root;
    let report = run(&request(
        &registry,
        &registry.reference("ubi9:latest"),
        &registry.reference("ubi9:corp"),
        &[ca],
    ))
    .unwrap();
    let files: Vec<&str> = report.platforms[0]
        .plan
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(files, ["/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"]);

    let (_, rootfs) = pull(&registry, "ubi9:corp", work.path(), "new");
    let link = rootfs.join("etc/pki/tls/certs/ca-bundle.crt");
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "still a link"
    );
    let real = rootfs.join("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem");
    assert_eq!(
        fingerprints(&std::fs::read(&real).unwrap()),
        [sha(&distro), sha(ca)]
    );
    assert!(!rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());

    // curl with the new bundle trusts the private-CA server; with the original it does not.
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = private_server(&pki, dir.path()) else {
        return;
    };
    assert_curl_trusts(&real, server.port());
    let old_rootfs = unpack(&builder.path, "ubi", &work.path().join("old-bundle"));
    assert_curl_refuses_unknown_issuer(
        &old_rootfs.join("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
        server.port(),
    );
}

#[test]
fn two_platform_index_all_or_named_platforms() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let distro = root_ca("Distro Root");
    let builder = LayoutBuilder::init(&work.path().join("src"));
    for (tag, arch) in [("amd64", "amd64"), ("arm64", "arm64")] {
        images::debian_like(&builder, tag, std::slice::from_ref(&distro.pem));
        builder.set_platform(tag, "linux", arch);
    }
    builder.index(
        "multi",
        &[("amd64", "linux", "amd64"), ("arm64", "linux", "arm64")],
    );
    push(&builder, "multi", &registry, "multi:1");
    let pki = Pki::new("Corp");
    let ca = &pki.root;
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = private_server(&pki, dir.path()) else {
        return;
    };

    let all = run(&request(
        &registry,
        &registry.reference("multi:1"),
        &registry.reference("multi:1-corp"),
        &[ca],
    ))
    .unwrap();
    assert_eq!(all.media_type, anchorage_image::media_type::OCI_INDEX);
    assert_eq!(all.platforms.len(), 2);
    assert!(all.platforms.iter().all(|p| p.digest != p.source_digest));
    for arch in ["amd64", "arm64"] {
        let layout = work.path().join(format!("pulled-{arch}"));
        skopeo_copy_arch(
            &format!("docker://{}", registry.reference("multi:1-corp")),
            &format!("oci:{}:x", layout.display()),
            arch,
        );
        let rootfs = unpack(&layout, "x", &work.path().join(format!("bundle-{arch}")));
        let bundle_path = rootfs.join("etc/ssl/certs/ca-certificates.crt");
        let fps = fingerprints(&std::fs::read(&bundle_path).unwrap());
        assert_eq!(fps, [sha(&distro), sha(ca)], "{arch}");
        // curl with each platform's new bundle trusts the private-CA server; with that
        // platform's original bundle it does not.
        assert_curl_trusts(&bundle_path, server.port());
        let old_rootfs = unpack(
            &builder.path,
            arch,
            &work.path().join(format!("old-{arch}")),
        );
        assert_curl_refuses_unknown_issuer(
            &old_rootfs.join("etc/ssl/certs/ca-certificates.crt"),
            server.port(),
        );
    }

    let mut arm_only = request(
        &registry,
        &registry.reference("multi:1"),
        &registry.reference("multi:1-arm"),
        &[ca],
    );
    arm_only.platforms = vec![parse_platform("linux/arm64").unwrap()];
    let arm = run(&arm_only).unwrap();
    assert_eq!(arm.platforms.len(), 1);
    assert_eq!(
        arm.platforms[0].digest, all.platforms[1].digest,
        "reproducible per platform"
    );
    let index: serde_json::Value = {
        let layout = work.path().join("arm-index");
        skopeo_copy(
            &format!("docker://{}", registry.reference("multi:1-arm")),
            &format!("oci:{}:x", layout.display()),
        );
        serde_json::from_slice(&layout_manifest(&layout, "x")).unwrap()
    };
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        [
            all.platforms[0].source_digest.as_str(),
            arm.platforms[0].digest.as_str()
        ],
        "amd64 kept as it was"
    );

    let mut missing = arm_only;
    missing.platforms = vec![parse_platform("linux/s390x").unwrap()];
    assert!(matches!(
        run(&missing),
        Err(RegistryError::PlatformNotFound { .. })
    ));
}

#[test]
fn private_ca_tls_registry_needs_its_root() {
    provider();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new("Registry");
    let files = pki.write_server_files(work.path());
    let options = RegistryOptions {
        tls: Some((files.fullchain, files.key)),
        ..RegistryOptions::default()
    };
    let (Some(registry), Some(())) = (Registry::start_with(&options), require_image_tools()) else {
        return;
    };
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::distroless_like(&builder, "img");
    push(&builder, "img", &registry, "img:1");
    let ca = root_ca("Corp Root");
    let mut req = request(
        &registry,
        &registry.reference("img:1"),
        &registry.reference("img:2"),
        &[&ca],
    );
    req.client.insecure_registries.clear();
    // Mozilla's roots only: the registry's private root is unknown.
    req.client.roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let refused = run(&req).unwrap_err();
    // Refused for the certificate (rustls's UnknownIssuer), not for any other connection failure.
    let host = registry.host();
    match &refused {
        RegistryError::Unreachable {
            registry,
            detail,
            reach,
        } => {
            assert_eq!(registry, &host);
            assert_eq!(reach, &anchorage_registry::Reach::UnknownIssuer);
            assert_eq!(
                detail,
                &format!(
                    "error sending request for url (https://{host}/v2/): client error (Connect): \
                     invalid peer certificate: UnknownIssuer"
                )
            );
        }
        other => panic!("expected the registry's certificate to be refused, got {other:?}"),
    }
    req.client.roots.push(pki.root.der);
    let report = run(&req).unwrap();
    assert_eq!(report.platforms.len(), 1);
}

#[test]
fn missing_tag_invalid_layer_and_unhandled_media_type_are_told_apart() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let ca = root_ca("Corp Root");
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::distroless_like(&builder, "ok");
    push(&builder, "ok", &registry, "app:ok");

    let missing = run(&request(
        &registry,
        &registry.reference("app:nope"),
        &registry.reference("app:x"),
        &[&ca],
    ))
    .unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { .. }),
        "{missing}"
    );

    // A layer that is not a tar: refused, and the destination tag is not created.
    builder.new_image("bad");
    let junk = work.path().join("junk.tar");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&junk, vec![0x5a_u8; 3000]).unwrap();
    builder.add_tar("bad", &junk);
    push(&builder, "bad", &registry, "app:bad");
    let bad = run(&request(
        &registry,
        &registry.reference("app:bad"),
        &registry.reference("app:bad-corp"),
        &[&ca],
    ))
    .unwrap_err();
    assert!(
        matches!(
            bad,
            RegistryError::Image {
                source: anchorage_image::ImageError::Layer { .. },
                ..
            }
        ),
        "{bad}"
    );
    let tag_absent = run(&request(
        &registry,
        &registry.reference("app:bad-corp"),
        &registry.reference("app:y"),
        &[&ca],
    ))
    .unwrap_err();
    assert!(matches!(tag_absent, RegistryError::NotFound { .. }));

    // A Docker schema 1 manifest in a layout: not handled.
    let schema1 = br#"{"schemaVersion":1,"name":"old","tag":"v1","fsLayers":[],"history":[]}"#;
    let digest = builder.add_blob(schema1);
    let layout = work.path().join("schema1");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::copy(
        builder.path.join("blobs/sha256").join(hex),
        layout.join("blobs/sha256").join(hex),
    )
    .unwrap();
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v1+json","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
            schema1.len()
        ),
    )
    .unwrap();
    let unsupported = run(&request(
        &registry,
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v2", work.path().join("out").display()),
        &[&ca],
    ))
    .unwrap_err();
    assert!(
        matches!(unsupported, RegistryError::UnsupportedMediaType { .. }),
        "{unsupported}"
    );
}

#[test]
fn interrupted_multi_platform_push_never_moves_the_tag() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let ca = root_ca("Corp Root");
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::distroless_like(&builder, "amd64");
    builder.new_image("arm64");
    let junk = work.path().join("junk.tar");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&junk, vec![0x5a_u8; 3000]).unwrap();
    builder.add_tar("arm64", &junk);
    builder.set_platform("arm64", "linux", "arm64");
    builder.index(
        "multi",
        &[("amd64", "linux", "amd64"), ("arm64", "linux", "arm64")],
    );
    push(&builder, "multi", &registry, "app:1");
    push(&builder, "amd64", &registry, "app:1-corp");
    let before = run(&request(
        &registry,
        &registry.reference("app:1-corp"),
        &format!("oci:{}:x", work.path().join("probe").display()),
        &[],
    ));
    let before = before.unwrap().source_digest;

    // amd64 is injected and pushed by digest, then arm64 fails: the tag stays where it was.
    let failed = run(&request(
        &registry,
        &registry.reference("app:1"),
        &registry.reference("app:1-corp"),
        &[&ca],
    ));
    // It fails on arm64's junk layer (the only layer, index 0), not on anything earlier.
    let failed = failed.unwrap_err();
    let RegistryError::Image {
        platform,
        source: anchorage_image::ImageError::Layer { layer, .. },
    } = &failed
    else {
        panic!("expected the arm64 layer to be refused, got {failed:?}");
    };
    assert_eq!((platform.as_str(), *layer), ("linux/arm64", 0), "{failed}");
    let after = run(&request(
        &registry,
        &registry.reference("app:1-corp"),
        &format!("oci:{}:y", work.path().join("probe").display()),
        &[],
    ))
    .unwrap()
    .source_digest;
    assert_eq!(after, before);
}

#[test]
fn replace_reads_no_layer_and_uploads_only_new_blobs() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::debian_like(&builder, "deb", &[root_ca("Distro Root").pem]);
    push(&builder, "deb", &registry, "deb:1");
    let ca = root_ca("Corp Root");
    let mut req = request(
        &registry,
        &registry.reference("deb:1"),
        &registry.reference("deb:1-replaced"),
        &[&ca],
    );
    req.plan.mode = Mode::Replace {
        paths: vec!["/etc/ssl/certs/ca-certificates.crt".into()],
    };
    let report = run(&req).unwrap();
    assert_eq!(report.platforms[0].layers_read, 0);
    let layer = report.platforms[0].layer.as_ref().unwrap();
    // Downloaded: the config only.
    assert!(report.bytes_downloaded < 4096, "{report:?}");
    assert_eq!(report.blobs_uploaded, 2);
    assert!(report.bytes_uploaded < layer.size + 4096);
}

#[test]
fn layout_to_registry_and_registry_to_layout_copy_every_blob() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::rhel_like(&builder, "ubi", &[root_ca("Distro Root").pem]);
    let ca = root_ca("Corp Root");
    // Layout → registry: the original config and two layers are streamed up, then ours.
    let up = run(&request(
        &registry,
        &format!("oci:{}:ubi", builder.path.display()),
        &registry.reference("ubi:corp"),
        &[&ca],
    ))
    .unwrap();
    assert_eq!(up.blobs_uploaded, 5, "{up:?}");
    let (layout, rootfs) = pull(&registry, "ubi:corp", work.path(), "up");
    assert_eq!(
        anchorage_image::Digest::sha256(&layout_manifest(&layout, "pulled")),
        up.digest
    );
    assert!(rootfs.join("app/run.sh").is_file());

    // Registry → layout: the same image, byte for byte (same digest).
    let out = work.path().join("down");
    let down = run(&request(
        &registry,
        &registry.reference("ubi:corp"),
        &format!("oci:{}:corp", out.display()),
        &[&ca],
    ))
    .unwrap();
    assert_eq!(down.digest, up.digest, "already trusts the CA: unchanged");
    let rootfs = unpack(&out, "corp", &work.path().join("down-bundle"));
    let bundle =
        std::fs::read(rootfs.join("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")).unwrap();
    assert!(fingerprints(&bundle).contains(&sha(&ca)));
}

#[test]
fn docker_schema2_image_gets_a_docker_layer_and_stays_pullable() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&work.path().join("src"));
    let distro = root_ca("Distro Root");
    images::debian_like(&builder, "deb", std::slice::from_ref(&distro.pem));
    anchorage_test_support::registry::skopeo_copy_docker_v2(
        &format!("oci:{}:deb", builder.path.display()),
        &format!("docker://{}", registry.reference("docker:v2")),
    );
    let pki = Pki::new("Corp");
    let ca = &pki.root;
    let report = run(&request(
        &registry,
        &registry.reference("docker:v2"),
        &registry.reference("docker:v2-corp"),
        &[ca],
    ))
    .unwrap();
    assert_eq!(
        report.media_type,
        anchorage_image::media_type::DOCKER_MANIFEST
    );
    // Pulled as it is (no conversion): the new layer has the Docker media type.
    let layout = work.path().join("pulled");
    skopeo_copy(
        &format!("docker://{}", registry.reference("docker:v2-corp")),
        &format!("oci:{}:x", layout.display()),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout_manifest(&layout, "x")).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.last().unwrap()["mediaType"],
        anchorage_image::media_type::DOCKER_LAYER_GZIP
    );
    // umoci unpacks OCI only: convert a second copy.
    let converted = work.path().join("converted");
    let copy = run_client(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--format", "oci"])
            .arg("--src-tls-verify=false")
            .arg(format!("docker://{}", registry.reference("docker:v2-corp")))
            .arg(format!("oci:{}:x", converted.display())),
        Duration::from_secs(120),
    );
    assert!(copy.status.success(), "{}", copy.output());
    let rootfs = unpack(&converted, "x", &work.path().join("bundle"));
    let bundle_path = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let fps = fingerprints(&std::fs::read(&bundle_path).unwrap());
    assert_eq!(fps, [sha(&distro), sha(ca)]);

    // curl with the new bundle trusts the private-CA server; with the original image's
    // (pulled back from the registry as Docker schema 2 and converted) it does not.
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = private_server(&pki, dir.path()) else {
        return;
    };
    assert_curl_trusts(&bundle_path, server.port());
    let original = work.path().join("original");
    let copy = run_client(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--format", "oci"])
            .arg("--src-tls-verify=false")
            .arg(format!("docker://{}", registry.reference("docker:v2")))
            .arg(format!("oci:{}:x", original.display())),
        Duration::from_secs(120),
    );
    assert!(copy.status.success(), "{}", copy.output());
    let old_rootfs = unpack(&original, "x", &work.path().join("old-bundle"));
    assert_curl_refuses_unknown_issuer(
        &old_rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        server.port(),
    );
}

/// `keytool -list` of a store (password `changeit`): the SHA-256 fingerprints it prints, as
/// lowercase hex without colons.
fn keytool_fingerprints(store: &Path) -> Vec<String> {
    let out = run_client(
        Command::new("keytool")
            .args(["-list", "-storepass", "changeit", "-keystore"])
            .arg(store),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "keytool -list {}: {}",
        store.display(),
        out.output()
    );
    let mut fps: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("(SHA-256): ").nth(1))
        .map(|fp| fp.trim().replace(':', "").to_lowercase())
        .collect();
    fps.sort();
    fps
}

/// Opens `https://127.0.0.1:PORT/` from Java (JSSE) trusting only `store`; `Ok` or what Java
/// said.
fn java_connects(work: &Path, store: &Path, store_type: &str, port: u16) -> Result<(), String> {
    let client = work.join("JavaClient.java");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        &client,
        r#"
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;
public class JavaClient {
    public static void main(String[] args) {
        try {
            HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
            c.setConnectTimeout(20000);
            c.setReadTimeout(20000);
            System.out.println("OK " + c.getResponseCode());
        } catch (Exception e) {
            for (Throwable t = e; t != null; t = t.getCause()) System.out.println(t);
            System.exit(1);
        }
    }
}
"#,
    )
    .unwrap();
    let out = run_client(
        Command::new("java")
            .env_remove("JAVA_TOOL_OPTIONS")
            .env_remove("_JAVA_OPTIONS")
            .env_remove("JDK_JAVA_OPTIONS")
            .env_remove("CLASSPATH")
            .arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
            .arg(format!("-Djavax.net.ssl.trustStoreType={store_type}"))
            .arg("-Djavax.net.ssl.trustStorePassword=changeit")
            .arg(&client)
            .arg(format!("https://127.0.0.1:{port}/")),
        Duration::from_secs(120),
    );
    if out.status.success() && out.stdout.starts_with("OK") {
        Ok(())
    } else {
        Err(out.output())
    }
}

#[test]
fn java_stores_under_java_home_and_usr_lib_jvm_trust_the_ca_in_keytool_and_jsse() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let (Some(_), Some(_), Some(_)) = (require("keytool"), require("java"), require("openssl"))
    else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let distro = root_ca("Distro Root");
    let roots = std::slice::from_ref(&distro.pem);
    let stores = work.path().join("stores");
    std::fs::create_dir_all(&stores).unwrap();
    let (Some(debian), Some(jdk21), Some(temurin)) = (
        keytool_store(&stores, "debian", "JKS", roots),
        keytool_store(&stores, "jdk21", "JKS", roots),
        keytool_store(&stores, "temurin", "PKCS12", roots),
    ) else {
        return;
    };
    let builder = LayoutBuilder::init(&work.path().join("src"));
    images::java_like(&builder, "java", roots, &debian, &jdk21, &temurin);
    push(&builder, "java", &registry, "java:21");

    let pki = Pki::new("Corp");
    let report = run(&request(
        &registry,
        &registry.reference("java:21"),
        &registry.reference("java:21-corp"),
        &[&pki.root],
    ))
    .unwrap();
    let temurin_path = format!("{}/lib/security/cacerts", images::TEMURIN_HOME);
    let mut java: Vec<&str> = report.platforms[0]
        .plan
        .files
        .iter()
        .filter(|f| f.role == anchorage_image::FileRole::JavaStore)
        .map(|f| f.path.as_str())
        .collect();
    java.sort_unstable();
    // The shared Debian store once, at its real path, however many JDK links lead to it; the
    // JDK with its own store; the JAVA_HOME store no catalogue names.
    assert_eq!(
        java,
        [
            "/etc/ssl/certs/java/cacerts",
            temurin_path.as_str(),
            "/usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
        ]
    );

    let (_, rootfs) = pull(&registry, "java:21-corp", work.path(), "new");
    let mut expected = vec![sha(&distro), sha(&pki.root)];
    expected.sort();
    // (The links are absolute: on the unpacked tree they would lead out of it, so the real
    // files are checked, and the link is checked to still be the same link.)
    for path in [
        "etc/ssl/certs/java/cacerts",
        "usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
        &temurin_path[1..],
    ] {
        assert_eq!(keytool_fingerprints(&rootfs.join(path)), expected, "{path}");
    }
    let link = rootfs.join("usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/etc/ssl/certs/java/cacerts"),
        "the JDK's link stays a link"
    );

    // JSSE with the injected stores trusts the private-CA server; with the originals it does
    // not.
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_server_files(dir.path());
    let Some(server) = openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    let old_rootfs = unpack(&builder.path, "java", &work.path().join("old-bundle"));
    for (path, kind) in [
        (&temurin_path[1..], "PKCS12"),
        (
            "usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
            "JKS",
        ),
        ("etc/ssl/certs/java/cacerts", "JKS"),
    ] {
        // keytool lists the original store without the CA: the distro root alone.
        assert_eq!(
            keytool_fingerprints(&old_rootfs.join(path)),
            [sha(&distro)],
            "{path}"
        );
        java_connects(work.path(), &rootfs.join(path), kind, server.port())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let refused = java_connects(work.path(), &old_rootfs.join(path), kind, server.port())
            .expect_err(path);
        assert!(
            refused.contains("unable to find valid certification path to requested target"),
            "{path}: {refused}"
        );
    }

    // Idempotent: injecting into the result changes nothing.
    let twice = run(&request(
        &registry,
        &registry.reference("java:21-corp"),
        &registry.reference("java:21-corp2"),
        &[&pki.root],
    ))
    .unwrap();
    assert_eq!(twice.digest, report.digest);
}

#[test]
fn env_on_an_image_that_trusts_every_ca_changes_only_the_config() {
    provider();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let ca = root_ca("Corp Root");
    let builder = LayoutBuilder::init(&work.path().join("src"));
    // The CA is already in the image's bundle (and its hash entry), and the private-only file
    // for NODE_EXTRA_CA_CERTS is there too: an image injected before whose variables were lost
    // (rebuilt by a tool that drops them). When that file is missing, Node.js does not trust
    // the CA yet, and the layer then holds it alone.
    images::debian_like(
        &builder,
        "deb",
        &[root_ca("Distro Root").pem, ca.pem.clone()],
    );
    let extra = anchorage_trust::render_pem(
        &bundle(&[&ca]).without_mozilla_roots(),
        &anchorage_trust::PemOptions::default(),
    );
    let tree = tempfile::tempdir().unwrap();
    anchorage_test_support::registry::write_tree(
        tree.path(),
        &[anchorage_test_support::registry::Entry::File(
            &format!("etc/ssl/certs/{}", anchorage_image::EXTRA_FILE_NAME),
            extra.as_bytes(),
        )],
    );
    builder.add_tree("deb", tree.path());
    push(&builder, "deb", &registry, "deb:trusted");

    let with_env = |dest: &str| {
        let mut req = request(
            &registry,
            &registry.reference("deb:trusted"),
            &registry.reference(dest),
            &[&ca],
        );
        req.plan.env = true;
        req
    };
    // Without --env: nothing to do.
    let plain = run(&request(
        &registry,
        &registry.reference("deb:trusted"),
        &registry.reference("deb:plain"),
        &[&ca],
    ))
    .unwrap();
    assert_eq!(plain.digest, plain.source_digest);

    let report = run(&with_env("deb:env")).unwrap();
    assert_ne!(report.digest, report.source_digest, "the config changed");
    let platform = &report.platforms[0];
    assert!(platform.layer.is_none(), "no new layer");
    assert!(platform.plan.files.is_empty());
    // Uploaded: the config and the manifest only.
    assert_eq!(report.blobs_uploaded, 1, "{report:?}");

    let (layout, _) = pull(&registry, "deb:env", work.path(), "env");
    let manifest = layout_manifest(&layout, "pulled");
    let original = layout_manifest(&builder.path, "deb");
    assert_eq!(layer_digests(&manifest), layer_digests(&original));
    let config_digest = manifest_blobs(&manifest).unwrap().config.digest;
    let config: serde_json::Value =
        serde_json::from_slice(&blob(&layout, config_digest.as_str())).unwrap();
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let node = format!(
        "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/{}",
        anchorage_image::EXTRA_FILE_NAME
    );
    for var in [
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
        "SSL_CERT_DIR=/etc/ssl/certs",
        &node,
    ] {
        assert!(env.contains(&var), "{var} in {env:?}");
    }
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["empty_layer"], true);
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layer_digests(&original).len()
    );

    // Reproducible, and a re-run on the result changes nothing.
    let again = run(&with_env("deb:env2")).unwrap();
    assert_eq!(again.digest, report.digest);
    let mut rerun = with_env("deb:env3");
    rerun.source = ImageRef::parse(&registry.reference("deb:env")).unwrap();
    let rerun = run(&rerun).unwrap();
    assert_eq!(rerun.digest, report.digest);
    assert_eq!(rerun.blobs_uploaded, 0);
}

//! `inject` against a hostile registry (a fake on loopback that serves what no honest registry
//! stores): digests that are file paths, a manifest larger than any registry accepts, a blob
//! longer than its descriptor. Each attack must be refused before it touches the file system
//! or memory it aims at; the positive control is the same fake serving a well-formed image,
//! which injects.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::disallowed_methods)] // canary files are test fixtures

use std::path::Path;

use anchorage_image::{Depth, Digest, ImageError, LayerFile, PlanOptions, media_type, write_layer};
use anchorage_registry::{
    ClientSettings, ImageRef, InjectRequest, MAX_MANIFEST_BYTES, RegistryError, inject,
};
use anchorage_test_support::fake_registry::{FakeRegistry, Reply};
use anchorage_test_support::pki::root_ca;
use anchorage_trust::{Bundle, Origin};
use anchorage_x509::{Certificate, Position};
use serde_json::json;

const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn request(registry: &FakeRegistry, destination: &Path) -> InjectRequest {
    let ca = root_ca("Corp Root");
    InjectRequest {
        source: ImageRef::parse(&format!("{}/app:1", registry.host())).unwrap(),
        destination: ImageRef::parse(&format!("oci:{}:out", destination.display())).unwrap(),
        cas: Bundle::new([(
            Certificate::from_der(&ca.der).unwrap(),
            Origin {
                source: "test".into(),
                detail: None,
                position: Position::default(),
            },
        )]),
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

/// A well-formed one-layer image: (manifest, config, layer) bytes.
fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = write_layer(&[LayerFile {
        path: "/etc/hostname".into(),
        contents: b"app\n".to_vec(),
    }])
    .unwrap();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
    })
    .to_string()
    .into_bytes();
    let manifest = manifest_with(
        Digest::sha256(&config).as_str(),
        config.len() as u64,
        layer.digest.as_str(),
        layer.blob.len() as u64,
    );
    (manifest, config, layer.blob)
}

fn manifest_with(config: &str, config_size: u64, layer: &str, layer_size: u64) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config, "size": config_size},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": layer, "size": layer_size}],
    })
    .to_string()
    .into_bytes()
}

fn manifest_route(manifest: Vec<u8>) -> (String, Reply) {
    (
        "/v2/app/manifests/1".into(),
        Reply::ok(media_type::OCI_MANIFEST, manifest),
    )
}

fn blob_route(bytes: &[u8]) -> (String, Reply) {
    (
        format!("/v2/app/blobs/{}", Digest::sha256(bytes)),
        Reply::ok("application/octet-stream", bytes.to_vec()),
    )
}

/// `e` is the image core's refusal of `digest` for `reason`, while reading `platform`'s
/// manifest (`image`) or the index (`index`): nothing was fetched or written under that name.
fn assert_invalid_digest(e: &RegistryError, platform: &str, digest: &str, reason: &str) {
    match e {
        RegistryError::Image {
            platform: p,
            source:
                ImageError::InvalidDigest {
                    digest: d,
                    reason: r,
                },
        } => assert_eq!(
            (p.as_str(), d.as_str(), *r),
            (platform, digest, reason),
            "{e:?}"
        ),
        other => panic!("expected the digest {digest:?} to be refused, got {other:?}"),
    }
}

#[test]
fn well_formed_image_from_the_fake_registry_injects() {
    provider();
    let (manifest, config, layer) = image();
    let registry = FakeRegistry::start(vec![
        manifest_route(manifest),
        blob_route(&config),
        blob_route(&layer),
    ]);
    let out = tempfile::tempdir().unwrap();
    let report = inject(&request(&registry, &out.path().join("layout")), &mut |_| {}).unwrap();
    assert_eq!(report.platforms.len(), 1);
    assert!(report.platforms[0].layer.is_some(), "a CA layer was added");
}

#[test]
fn config_digest_naming_a_file_is_refused_and_the_file_untouched() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, b"keep me").unwrap();
    let (_, config, layer) = image();
    let layer_digest = Digest::sha256(&layer);
    // The attacks: an absolute path (`temp.join` gives the path itself), a `..` escape from
    // the temporary directory, and a path behind a valid-looking algorithm.
    const NO_ALGORITHM: &str = "no `algorithm:` prefix";
    const WRONG_LENGTH: &str = "the hex part has the wrong length for its algorithm";
    for (evil, reason) in [
        (canary.display().to_string(), NO_ALGORITHM),
        (
            format!("sha256:../../../../../../..{}", canary.display()),
            WRONG_LENGTH,
        ),
        (format!("sha256:{}", canary.display()), WRONG_LENGTH),
    ] {
        let registry = FakeRegistry::start(vec![
            manifest_route(manifest_with(
                &evil,
                config.len() as u64,
                layer_digest.as_str(),
                layer.len() as u64,
            )),
            blob_route(&config),
            blob_route(&layer),
        ]);
        let out = tempfile::tempdir().unwrap();
        let err = inject(&request(&registry, &out.path().join("layout")), &mut |_| {}).unwrap_err();
        assert_invalid_digest(&err, "image", &evil, reason);
        assert_eq!(std::fs::read(&canary).unwrap(), b"keep me", "{evil}");
        assert!(
            registry.requests().iter().all(|r| !r.contains("/blobs/")),
            "no blob was asked for: {:?}",
            registry.requests()
        );
    }
}

#[test]
fn index_entry_digest_naming_a_file_is_refused() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, b"keep me").unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": canary.display().to_string(),
            "size": 10,
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    let registry = FakeRegistry::start(vec![(
        "/v2/app/manifests/1".into(),
        Reply::ok(media_type::OCI_INDEX, index.to_string()),
    )]);
    let out = tempfile::tempdir().unwrap();
    let err = inject(&request(&registry, &out.path().join("layout")), &mut |_| {}).unwrap_err();
    assert_invalid_digest(
        &err,
        "index",
        &canary.display().to_string(),
        "no `algorithm:` prefix",
    );
    assert_eq!(std::fs::read(&canary).unwrap(), b"keep me");
    assert_eq!(
        registry.requests().len(),
        2,
        "only /v2/ and the index were asked for: {:?}",
        registry.requests()
    );
}

#[test]
fn manifest_over_the_limit_is_refused() {
    provider();
    let mut huge = manifest_with(
        Digest::sha256(b"c").as_str(),
        1,
        Digest::sha256(b"l").as_str(),
        1,
    );
    // Valid JSON up to the limit and beyond: whitespace after the object.
    huge.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
    let registry = FakeRegistry::start(vec![manifest_route(huge)]);
    let out = tempfile::tempdir().unwrap();
    let err = inject(&request(&registry, &out.path().join("layout")), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit, .. } if limit == MAX_MANIFEST_BYTES),
        "{err:?}"
    );
}

#[test]
fn blob_longer_than_its_descriptor_is_refused() {
    provider();
    let (_, config, layer) = image();
    // The descriptor says 10 bytes; the registry sends the whole config under its digest.
    let manifest = manifest_with(
        Digest::sha256(&config).as_str(),
        10,
        Digest::sha256(&layer).as_str(),
        layer.len() as u64,
    );
    let registry = FakeRegistry::start(vec![
        manifest_route(manifest),
        blob_route(&config),
        blob_route(&layer),
    ]);
    let out = tempfile::tempdir().unwrap();
    let err = inject(&request(&registry, &out.path().join("layout")), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit: 10, .. }),
        "{err:?}"
    );
}

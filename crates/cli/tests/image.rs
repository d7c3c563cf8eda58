//! `anchorage image inject` end to end: the real binary against a real `docker-registry` on
//! loopback (plain HTTP, private-CA TLS, htpasswd auth) and OCI layouts made with `umoci`.
//! Every test asserts the exit code; the JSON report where it says something. Docker
//! credentials come from a `DOCKER_CONFIG` directory of the test's own, never the user's.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anchorage_test_support::pki::{Pki, root_ca};
use anchorage_test_support::registry::{
    LayoutBuilder, Registry, RegistryOptions, images, require_image_tools, skopeo_copy,
    skopeo_copy_with_creds,
};
use base64::Engine as _;
use serde_json::Value;

const OK: i32 = 0;
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 7;
const NOT_FOUND: i32 = 13;
const AUTH_FAILED: i32 = 15;
const UNSUPPORTED: i32 = 16;

/// Runs `anchorage ARGS` with `DOCKER_CONFIG` pointing at `docker_config` (an empty directory
/// unless a test writes a config.json there).
fn anchorage(docker_config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("ANCHORAGE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run anchorage")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Fixture {
    dir: tempfile::TempDir,
    registry: Registry,
    ca: String,
}

impl Fixture {
    /// A registry with `debian:12` (Debian-like) pushed, and a CA file.
    fn new(options: &RegistryOptions, creds: Option<&str>) -> Option<Self> {
        let registry = Registry::start_with(options)?;
        require_image_tools()?;
        let dir = tempfile::tempdir().unwrap();
        let builder = LayoutBuilder::init(&dir.path().join("src"));
        images::debian_like(&builder, "deb", &[root_ca("Distro Root").pem]);
        let src = format!("oci:{}:deb", builder.path.display());
        let dst = format!("docker://{}", registry.reference("debian:12"));
        match creds {
            Some(creds) => skopeo_copy_with_creds(&src, &dst, creds),
            None => skopeo_copy(&src, &dst),
        };
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        let ca = root_ca("Corp Root")
            .write_pem(dir.path(), "corp.pem")
            .display()
            .to_string();
        Some(Self { dir, registry, ca })
    }

    fn docker(&self) -> std::path::PathBuf {
        self.dir.path().join("docker")
    }

    fn inject(&self, source: &str, dest: &str, extra: &[&str]) -> Output {
        let host = self.registry.host();
        let mut args = vec![
            "image",
            "inject",
            source,
            dest,
            "--ca",
            &self.ca,
            "--insecure-registry",
            &host,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        anchorage(&self.docker(), &args)
    }
}

#[test]
fn inject_prints_per_platform_report_and_reruns_to_the_same_digest() {
    let Some(f) = Fixture::new(&RegistryOptions::default(), None) else {
        return;
    };
    let (src, dst) = (
        f.registry.reference("debian:12"),
        f.registry.reference("debian:12-corp"),
    );
    let out = f.inject(&src, &dst, &[]);
    assert_eq!(code(&out), OK, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["changed"], true);
    let digest = report["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"));
    let platform = &report["platforms"][0];
    assert_eq!(platform["platform"], "linux/amd64");
    assert_eq!(platform["digest"], digest.as_str());
    let size = platform["layer"]["size"].as_u64().unwrap();
    assert!(size > 0);
    let roles: Vec<&str> = platform["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["hash_entry", "bundle"]);
    assert_eq!(report["blobs_uploaded"], 2);
    let uploaded = report["bytes_uploaded"].as_u64().unwrap();
    assert!(uploaded > size && uploaded < size + 4096, "{report}");

    // Text mode: the digest alone on stdout. Same inputs, same digest.
    let host = f.registry.host();
    let dst2 = f.registry.reference("debian:12-corp2");
    let text = anchorage(
        &f.docker(),
        &[
            "image",
            "inject",
            &src,
            &dst2,
            "--ca",
            &f.ca,
            "--insecure-registry",
            &host,
        ],
    );
    assert_eq!(code(&text), OK, "{}", stderr(&text));
    assert_eq!(String::from_utf8_lossy(&text.stdout).trim(), digest);

    // Injecting into the result again adds nothing.
    let again = f.inject(&dst, &f.registry.reference("debian:12-corp3"), &[]);
    assert_eq!(code(&again), OK, "{}", stderr(&again));
    let again = json(&again);
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(again["changed"], false);
    assert_eq!(again["platforms"][0]["layer"], Value::Null);
}

#[test]
fn layouts_as_source_and_destination_with_env() {
    let Some(()) = require_image_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&dir.path().join("src"));
    images::distroless_like(&builder, "static");
    let ca = root_ca("Corp Root").write_pem(dir.path(), "corp.pem");
    let out_layout = dir.path().join("out");
    let source = format!("oci:{}:static", builder.path.display());
    let dest = format!("oci:{}:corp", out_layout.display());
    let out = anchorage(
        dir.path(),
        &[
            "image",
            "inject",
            &source,
            &dest,
            "--ca",
            ca.to_str().unwrap(),
            "--env",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&out), OK, "{}", stderr(&out));
    let report = json(&out);
    let env: Vec<&str> = report["platforms"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env:?}"
    );
    assert!(
        env.iter().any(|v| v.starts_with("NODE_EXTRA_CA_CERTS=")),
        "{env:?}"
    );
    // The layout's index names the new manifest under the tag.
    let index: Value =
        serde_json::from_slice(&std::fs::read(out_layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], report["digest"]);
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "corp"
    );
}

#[test]
fn private_ca_registry_works_with_tls_ca_path_and_fails_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Registry");
    let files = pki.write_server_files(dir.path());
    let chained = dir.path().join("chained.pem");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        &chained,
        format!("{}{}", pki.leaf.pem, pki.intermediate.pem),
    )
    .unwrap();
    let options = RegistryOptions {
        tls: Some((chained, files.key.clone())),
        htpasswd: None,
    };
    let Some(f) = Fixture::new(&options, None) else {
        return;
    };
    let (src, dst) = (
        f.registry.reference("debian:12"),
        f.registry.reference("debian:12-corp"),
    );
    let args = |extra: &'static [&'static str]| {
        let mut a = vec![
            "image", "inject", &src, &dst, "--ca", &f.ca, "--output", "json",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let refused = anchorage(
        &f.docker(),
        &args(&[]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code(&refused), UNREACHABLE, "{}", stderr(&refused));
    let root = files.root.display().to_string();
    let mut with = args(&[]);
    with.extend(["--tls-ca-path".to_owned(), root]);
    let ok = anchorage(
        &f.docker(),
        &with.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code(&ok), OK, "{}", stderr(&ok));
}

#[test]
fn registry_auth_from_docker_config_and_refusal_is_15() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&htpasswd, format!("ci:{hash}\n")).unwrap();
    let options = RegistryOptions {
        tls: None,
        htpasswd: Some(htpasswd),
    };
    let Some(f) = Fixture::new(&options, Some("ci:s3cret")) else {
        return;
    };
    let (src, dst) = (
        f.registry.reference("debian:12"),
        f.registry.reference("debian:12-corp"),
    );
    // No credentials at all.
    let anonymous = f.inject(&src, &dst, &[]);
    assert_eq!(code(&anonymous), AUTH_FAILED, "{}", stderr(&anonymous));
    assert_eq!(json(&anonymous)["exit_code"], AUTH_FAILED);

    let write_config = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"));
        let config = format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            f.registry.host()
        );
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(f.docker().join("config.json"), config).unwrap();
    };
    write_config("wrong");
    let wrong = f.inject(&src, &dst, &[]);
    assert_eq!(code(&wrong), AUTH_FAILED, "{}", stderr(&wrong));
    write_config("s3cret");
    let ok = f.inject(&src, &dst, &[]);
    assert_eq!(code(&ok), OK, "{}", stderr(&ok));
}

#[test]
fn bad_input_exit_codes() {
    let Some(f) = Fixture::new(&RegistryOptions::default(), None) else {
        return;
    };
    let dst = f.registry.reference("x:1");
    let missing = f.inject(&f.registry.reference("debian:nope"), &dst, &[]);
    assert_eq!(code(&missing), NOT_FOUND, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    let platform = f.inject(
        &f.registry.reference("debian:12"),
        &dst,
        &["--platform", "linux/s390x"],
    );
    assert_eq!(code(&platform), NOT_FOUND, "{}", stderr(&platform));

    let no_host = f.inject("debian:12", &dst, &[]);
    assert_eq!(code(&no_host), USAGE, "{}", stderr(&no_host));

    // A layer that is not a tar.
    let builder = LayoutBuilder::init(&f.dir.path().join("bad"));
    builder.new_image("bad");
    let junk = f.dir.path().join("junk.tar");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&junk, vec![0x5a_u8; 3000]).unwrap();
    builder.add_tar("bad", &junk);
    let bad_src = format!("oci:{}:bad", builder.path.display());
    let bad = f.inject(&bad_src, &dst, &[]);
    assert_eq!(code(&bad), UNSUPPORTED, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("could not be read"),
        "{}",
        stderr(&bad)
    );

    // A manifest media type we do not handle (an artifact manifest in the layout).
    let artifact = br#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"x","blobs":[]}"#;
    let digest = builder.add_blob(artifact);
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        builder.path.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"art"}}}}]}}"#,
            artifact.len()
        ),
    )
    .unwrap();
    let art = f.inject(&format!("oci:{}:art", builder.path.display()), &dst, &[]);
    assert_eq!(code(&art), UNSUPPORTED, "{}", stderr(&art));
    assert!(stderr(&art).contains("not handled"), "{}", stderr(&art));

    // Nothing was tagged along the way.
    let probe = f.inject(&dst, &f.registry.reference("x:2"), &[]);
    assert_eq!(code(&probe), NOT_FOUND, "{}", stderr(&probe));
}

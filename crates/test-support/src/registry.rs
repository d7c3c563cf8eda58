//! A real `docker-registry` (plain HTTP, private-CA TLS, htpasswd or bearer-token auth) on a free loopback
//! port, and image helpers built on real tools: `umoci` makes OCI layouts (one layer per
//! directory tree, via `tar` and `umoci raw add-layer`), `skopeo` copies between layouts and
//! registries.
//!
//! Debian packages: `docker-registry`, `umoci`, `skopeo`, `tar`. A missing tool skips the test
//! with a loud message locally and fails it in CI, as [`crate::peer::require`] does.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::peer::{ClientRun, free_port, require, run_client, wait_for_port};

/// How long one tool run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// How the registry is served.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with this certificate and key (PEM files; the certificate file may hold the
    /// chain after the leaf).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require basic auth against this htpasswd file (bcrypt hashes only).
    pub htpasswd: Option<PathBuf>,
    /// Require bearer tokens (the Docker registry token flow) from this token service.
    pub token: Option<TokenAuth>,
}

/// The registry's `auth: token:` section: where clients get tokens, and what it trusts in them.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// The token endpoint clients are sent to (`http://127.0.0.1:PORT/token`).
    pub realm: String,
    /// The `service` the registry names in its challenge; tokens must carry it as `aud`.
    pub service: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// PEM certificates the `x5c` chain of a token must lead to (or whose keys a `kid` names).
    pub rootcertbundle: PathBuf,
}

/// A running `docker-registry`, killed (and its storage removed) when dropped.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    tls: bool,
    dir: TempDir,
}

impl Registry {
    /// A plain-HTTP registry on 127.0.0.1. `None` when `docker-registry` is missing locally.
    pub fn start() -> Option<Self> {
        Self::start_with(&RegistryOptions::default())
    }

    /// A registry served as `options` say. `None` when `docker-registry` is missing locally.
    pub fn start_with(options: &RegistryOptions) -> Option<Self> {
        let binary = require("docker-registry")?;
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("registry storage");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut yaml = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                storage.display()
            );
            if let Some((cert, key)) = &options.tls {
                yaml.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
            if let Some(token) = &options.token {
                yaml.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    token.realm,
                    token.service,
                    token.issuer,
                    token.rootcertbundle.display()
                ));
            }
            if let Some(htpasswd) = &options.htpasswd {
                yaml.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: anchorage-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config = dir.path().join("config.yml");
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&config, yaml).expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).expect("registry log");
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_for_port(addr, &mut child, Duration::from_secs(30));
            }));
            // An open port is not proof that *this* registry listens: another test's server may
            // hold the port `free_port` handed out, and then ours exits at once on "address
            // already in use". It must still be running a moment after the port answered.
            std::thread::sleep(Duration::from_millis(250));
            let still_running = matches!(child.try_wait(), Ok(None));
            if waited.is_ok() && still_running {
                return Some(Self {
                    child,
                    addr,
                    tls: options.tls.is_some(),
                    dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start:\n{last}");
    }

    /// `127.0.0.1:PORT`, as references name it (the test PKI's server certificate holds the
    /// 127.0.0.1 address, so TLS verifies too).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host:port/repo_and_tag`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host())
    }

    /// The registry's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that `umoci`, `skopeo` and `tar` are installed (`None` locally when one is missing).
pub fn require_image_tools() -> Option<()> {
    require("umoci")?;
    require("skopeo")?;
    require("tar")?;
    Some(())
}

fn run_ok(cmd: &mut Command) -> ClientRun {
    let run = run_client(cmd, TOOL_TIMEOUT);
    assert!(run.status.success(), "{cmd:?} failed:\n{}", run.output());
    run
}

/// An OCI image layout being built with `umoci`.
pub struct LayoutBuilder {
    /// The layout directory.
    pub path: PathBuf,
    work: TempDir,
}

impl LayoutBuilder {
    /// `umoci init` at `path` (which must not exist yet).
    pub fn init(path: &Path) -> Self {
        run_ok(Command::new("umoci").arg("init").arg("--layout").arg(path));
        Self {
            path: path.to_owned(),
            work: tempfile::tempdir().expect("temp dir for layers"),
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path.display())
    }

    /// `umoci new`: an image `tag` with no layers (linux/amd64).
    pub fn new_image(&self, tag: &str) {
        run_ok(
            Command::new("umoci")
                .args(["new", "--image"])
                .arg(self.image(tag)),
        );
    }

    /// Appends one layer holding the tree at `root` (every entry owned by 0:0, as found:
    /// symbolic links stay links; files named `.wh.NAME` are whiteouts).
    pub fn add_tree(&self, tag: &str, root: &Path) {
        let tar = self.work.path().join("layer.tar");
        run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        self.add_tar(tag, &tar);
    }

    /// Appends `tar` verbatim as a layer (umoci compresses it; it does not check it is a tar).
    pub fn add_tar(&self, tag: &str, tar: &Path) {
        run_ok(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image"])
                .arg(self.image(tag))
                .arg(tar),
        );
    }

    /// Sets the platform of `tag`'s config.
    pub fn set_platform(&self, tag: &str, os: &str, arch: &str) {
        run_ok(
            Command::new("umoci")
                .args(["config", "--image"])
                .arg(self.image(tag))
                .args(["--os", os, "--architecture", arch]),
        );
    }

    /// Sets runtime variables (`NAME=value`) in `tag`'s config.
    pub fn set_env(&self, tag: &str, vars: &[&str]) {
        let mut cmd = Command::new("umoci");
        cmd.args(["config", "--image"]).arg(self.image(tag));
        for var in vars {
            cmd.arg("--config.env").arg(var);
        }
        run_ok(&mut cmd);
    }

    /// The `index.json` entry (raw JSON object text) tagged `tag`.
    fn entry(&self, tag: &str) -> (String, String, u64) {
        let index = std::fs::read_to_string(self.path.join("index.json")).expect("index.json");
        // index.json as umoci writes it: {"schemaVersion":2,"manifests":[{...},...]}.
        let needle = format!("\"org.opencontainers.image.ref.name\":\"{tag}\"");
        let at = index
            .find(&needle)
            .unwrap_or_else(|| panic!("tag {tag} in {index}"));
        let start = index[..at].rfind("{\"mediaType\"").expect("entry start");
        let entry = &index[start..at];
        let field = |name: &str| -> String {
            let key = format!("\"{name}\":");
            let from = entry.find(&key).expect("field") + key.len();
            let rest = &entry[from..];
            let end = rest.find([',', '}']).expect("field end");
            rest[..end].trim_matches('"').to_owned()
        };
        (
            field("mediaType"),
            field("digest"),
            field("size").parse().expect("size"),
        )
    }

    /// Writes an image index of the images tagged `platforms` (tag, os, arch) and tags it
    /// `tag` (the images keep their own tags).
    pub fn index(&self, tag: &str, platforms: &[(&str, &str, &str)]) {
        let manifests: Vec<String> = platforms
            .iter()
            .map(|(image, os, arch)| {
                let (media, digest, size) = self.entry(image);
                format!(
                    "{{\"mediaType\":\"{media}\",\"digest\":\"{digest}\",\"size\":{size},\"platform\":{{\"os\":\"{os}\",\"architecture\":\"{arch}\"}}}}"
                )
            })
            .collect();
        let index = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
            manifests.join(",")
        );
        let digest = self.add_blob(index.as_bytes());
        let top = std::fs::read_to_string(self.path.join("index.json")).expect("index.json");
        let entry = format!(
            "{{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"{digest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"{tag}\"}}}}",
            index.len()
        );
        let at = top.rfind(']').expect("manifests list end");
        let comma = if top[..at].trim_end().ends_with('[') {
            ""
        } else {
            ","
        };
        let new = format!("{}{comma}{entry}{}", &top[..at], &top[at..]);
        #[allow(clippy::disallowed_methods)] // test fixture, not an output
        std::fs::write(self.path.join("index.json"), new).expect("write index.json");
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn add_blob(&self, bytes: &[u8]) -> String {
        let tmp = self.work.path().join("blob");
        #[allow(clippy::disallowed_methods)] // test fixture, not an output
        std::fs::write(&tmp, bytes).expect("write blob");
        let run = run_ok(Command::new("sha256sum").arg(&tmp));
        let hex = run
            .stdout
            .split_whitespace()
            .next()
            .expect("hash")
            .to_owned();
        std::fs::rename(&tmp, self.path.join("blobs/sha256").join(&hex)).expect("move blob");
        format!("sha256:{hex}")
    }
}

/// `skopeo copy` (every platform: `--all`), with TLS verification off for registries (the test
/// registries are plain HTTP). `src` and `dst` are skopeo transports (`oci:PATH:tag`,
/// `docker://HOST/REPO:TAG`).
pub fn skopeo_copy(src: &str, dst: &str) -> ClientRun {
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .arg(src)
            .arg(dst),
    )
}

/// `umoci unpack --rootless` of `layout:tag` into `bundle`; returns the root file system.
pub fn unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    );
    bundle.join("rootfs")
}

/// `skopeo copy` of the one image of `arch` (linux) out of a multi-platform `src`.
pub fn skopeo_copy_arch(src: &str, dst: &str, arch: &str) -> ClientRun {
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "--override-os",
                "linux",
                "--override-arch",
                arch,
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .arg(src)
            .arg(dst),
    )
}

/// One entry of a directory tree written by [`write_tree`].
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A regular file (path relative to the root, contents).
    File(&'a str, &'a [u8]),
    /// A symbolic link (path, target as stored).
    Link(&'a str, &'a str),
}

/// Writes `entries` under `root` (parents created).
#[allow(clippy::disallowed_methods)] // test fixtures, not outputs
pub fn write_tree(root: &Path, entries: &[Entry<'_>]) {
    for entry in entries {
        let (path, _) = match entry {
            Entry::File(p, _) | Entry::Link(p, _) => (root.join(p), ()),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        match entry {
            Entry::File(_, contents) => std::fs::write(&path, contents).expect("write file"),
            Entry::Link(_, target) => {
                std::os::unix::fs::symlink(target, &path).expect("create symlink");
            }
        }
    }
}

/// Writes a Java trust store of `pems` with the real `keytool -importcert` (Java's default
/// password `changeit`); `store_type` is `JKS` or `PKCS12`. `None` when `keytool` is missing
/// locally.
pub fn keytool_store(dir: &Path, name: &str, store_type: &str, pems: &[String]) -> Option<Vec<u8>> {
    let keytool = require("keytool")?;
    let store = dir.join(name);
    for (i, pem) in pems.iter().enumerate() {
        let file = dir.join(format!("{name}-{i}.pem"));
        #[allow(clippy::disallowed_methods)] // test fixture, not an output
        std::fs::write(&file, pem).expect("write certificate");
        run_ok(
            Command::new(&keytool)
                .args(["-importcert", "-noprompt", "-storepass", "changeit"])
                .args(["-storetype", store_type, "-alias", &format!("distro-{i}")])
                .arg("-file")
                .arg(&file)
                .arg("-keystore")
                .arg(&store),
        );
    }
    Some(std::fs::read(&store).expect("read store"))
}

/// The images the tests inject into, built in one layout.
pub mod images {
    use super::{Entry, LayoutBuilder, write_tree};

    /// `JAVA_HOME` of [`java_like`]: a Temurin-like JDK at a path no catalogue knows.
    pub const TEMURIN_HOME: &str = "/opt/vendor/temurin-21.0.5+11";

    fn layer(builder: &LayoutBuilder, tag: &str, entries: &[Entry<'_>]) {
        let dir = tempfile::tempdir().expect("layer dir");
        write_tree(dir.path(), entries);
        builder.add_tree(tag, dir.path());
    }

    /// The OpenSSL subject hash of a PEM certificate (`openssl x509 -hash`).
    pub fn subject_hash(pem: &str) -> String {
        let decoded = anchorage_x509::decode(pem.as_bytes());
        decoded.certificates[0]
            .certificate
            .subject_hash()
            .to_string()
    }

    /// Debian-like: a base layer, then a layer with `/etc/ssl/certs/ca-certificates.crt` (the
    /// `roots`), each root as `/usr/share/ca-certificates/<n>.crt` linked from
    /// `/etc/ssl/certs/<n>.pem` and `<hash>.0`, then an application layer on top.
    pub fn debian_like(builder: &LayoutBuilder, tag: &str, roots: &[String]) {
        builder.new_image(tag);
        debian_like_layers(builder, tag, roots);
    }

    /// The layers of [`debian_like`], appended to an existing image `tag`.
    pub fn debian_like_layers(builder: &LayoutBuilder, tag: &str, roots: &[String]) {
        layer(
            builder,
            tag,
            &[
                Entry::File("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
                Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ],
        );
        let bundle = roots.concat();
        let names: Vec<(String, String, String)> = roots
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                (
                    format!("usr/share/ca-certificates/root-{i}.crt"),
                    format!("etc/ssl/certs/root-{i}.pem"),
                    format!("etc/ssl/certs/{}.0", subject_hash(pem)),
                )
            })
            .collect();
        let mut entries = vec![Entry::File(
            "etc/ssl/certs/ca-certificates.crt",
            bundle.as_bytes(),
        )];
        let targets: Vec<String> = (0..roots.len())
            .map(|i| format!("../../../usr/share/ca-certificates/root-{i}.crt"))
            .collect();
        for (i, (file, pem_link, hash_link)) in names.iter().enumerate() {
            entries.push(Entry::File(file, roots[i].as_bytes()));
            entries.push(Entry::Link(pem_link, &targets[i]));
            entries.push(Entry::Link(hash_link, &pem_link[14..]));
        }
        layer(builder, tag, &entries);
        layer(
            builder,
            tag,
            &[Entry::File("app/run.sh", b"#!/bin/sh\necho hello\n")],
        );
    }

    /// Java-like, Debian underneath: a layer with the PEM bundle of `roots`; a Debian JDK layer
    /// with the shared JKS store `/etc/ssl/certs/java/cacerts` (`debian_jks`), linked from
    /// `/usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts` (and through the
    /// `/usr/lib/jvm/default-java` link), and a second JDK with a store of its own at
    /// `/usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts` (`jdk21_store`); then a
    /// Temurin-like JDK under [`TEMURIN_HOME`] (`temurin_store`), named only by the config's
    /// `JAVA_HOME`.
    pub fn java_like(
        builder: &LayoutBuilder,
        tag: &str,
        roots: &[String],
        debian_jks: &[u8],
        jdk21_store: &[u8],
        temurin_store: &[u8],
    ) {
        builder.new_image(tag);
        let bundle = roots.concat();
        layer(
            builder,
            tag,
            &[
                Entry::File("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
                Entry::File("etc/ssl/certs/ca-certificates.crt", bundle.as_bytes()),
            ],
        );
        layer(
            builder,
            tag,
            &[
                Entry::File("etc/ssl/certs/java/cacerts", debian_jks),
                Entry::Link(
                    "usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts",
                    "/etc/ssl/certs/java/cacerts",
                ),
                Entry::File(
                    "usr/lib/jvm/java-17-openjdk-amd64/release",
                    b"JAVA_VERSION=17\n",
                ),
                Entry::Link("usr/lib/jvm/default-java", "java-17-openjdk-amd64"),
                Entry::File(
                    "usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
                    jdk21_store,
                ),
            ],
        );
        let temurin = format!("{}/lib/security/cacerts", &TEMURIN_HOME[1..]);
        layer(builder, tag, &[Entry::File(&temurin, temurin_store)]);
        builder.set_env(
            tag,
            &[
                &format!("JAVA_HOME={TEMURIN_HOME}"),
                &format!("PATH={TEMURIN_HOME}/bin:/usr/bin:/bin"),
            ],
        );
    }

    /// Distroless-like: no bundle anywhere.
    pub fn distroless_like(builder: &LayoutBuilder, tag: &str) {
        builder.new_image(tag);
        layer(
            builder,
            tag,
            &[
                Entry::File(
                    "etc/passwd",
                    b"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
                ),
                Entry::File("etc/os-release", b"ID=distroless\n"),
            ],
        );
        layer(
            builder,
            tag,
            &[Entry::File("app/server", b"\x7fELF pretend\n")],
        );
    }

    /// RHEL-like: the real bundle at `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem`,
    /// `/etc/pki/tls/certs/ca-bundle.crt` a relative link to it, `/etc/pki/tls/cert.pem` an
    /// absolute one; no hashed directory.
    pub fn rhel_like(builder: &LayoutBuilder, tag: &str, roots: &[String]) {
        builder.new_image(tag);
        let bundle = roots.concat();
        layer(
            builder,
            tag,
            &[
                Entry::File("etc/os-release", b"ID=\"rhel\"\n"),
                Entry::File(
                    "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                    bundle.as_bytes(),
                ),
                Entry::Link(
                    "etc/pki/tls/certs/ca-bundle.crt",
                    "../../ca-trust/extracted/pem/tls-ca-bundle.pem",
                ),
                Entry::Link(
                    "etc/pki/tls/cert.pem",
                    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                ),
            ],
        );
        layer(builder, tag, &[Entry::File("app/run.sh", b"#!/bin/sh\n")]);
    }
}

/// [`skopeo_copy`] to a registry that wants basic auth (`user:password`).
pub fn skopeo_copy_with_creds(src: &str, dst: &str, creds: &str) -> ClientRun {
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--preserve-digests",
                "--dest-creds",
                creds,
            ])
            .arg(src)
            .arg(dst),
    )
}

/// [`skopeo_copy`] of one image converted to Docker schema 2 media types (`--format v2s2`).
pub fn skopeo_copy_docker_v2(src: &str, dst: &str) -> ClientRun {
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--format",
                "v2s2",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(src)
            .arg(dst),
    )
}

//! `anchorage image inject` end to end: the real binary against a real `docker-registry` on
//! loopback (plain HTTP, private-CA TLS, htpasswd auth, bearer tokens from a token service run
//! by the test itself) and OCI layouts made with `umoci`.
//! Every test asserts the exit code; the JSON report where it says something. Docker
//! credentials come from a `DOCKER_CONFIG` directory of the test's own, never the user's.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anchorage_test_support::pki::{Pki, root_ca};
use anchorage_test_support::registry::{
    LayoutBuilder, Registry, RegistryOptions, TokenAuth, images, require_image_tools, skopeo_copy,
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

/// A GNU tar header block: `name`, type flag `kind`, `size`, checksum set.
fn gnu_header(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
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
    let options = RegistryOptions {
        tls: Some((files.fullchain.clone(), files.key.clone())),
        ..RegistryOptions::default()
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
    // The error names the fix: the CA option, and the doctor for the chain.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        stderr(&refused)
    );
    let host = f.registry.host();
    assert!(said.contains("--tls-ca-path FILE"), "{said}");
    assert!(said.contains(&format!("anchorage doctor {host}")), "{said}");
    assert!(!said.contains("--insecure-registry"), "{said}");
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
fn a_plain_http_registry_reached_over_tls_suggests_insecure_registry() {
    let Some(f) = Fixture::new(&RegistryOptions::default(), None) else {
        return;
    };
    let host = f.registry.host();
    let (src, dst) = (
        f.registry.reference("debian:12"),
        f.registry.reference("debian:12-corp"),
    );
    // Without --insecure-registry anchorage speaks TLS to the plain-HTTP registry.
    let refused = anchorage(&f.docker(), &["image", "inject", &src, &dst, "--ca", &f.ca]);
    assert_eq!(code(&refused), UNREACHABLE, "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains(&format!("give --insecure-registry {host}")),
        "{said}"
    );
    assert!(!said.contains("--tls-ca-path"), "{said}");
    // Negative control: with it, the same inject works.
    let ok = f.inject(&src, &dst, &[]);
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
        ..RegistryOptions::default()
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

    // A layer whose GNU long name claims 2 MiB (past the 1 MiB limit on tar extension
    // headers): refused unread (issue 19, item 6).
    let mut hostile = gnu_header("././@LongLink", b'L', 2 << 20).to_vec();
    hostile.extend(vec![0u8; 2 << 20]);
    hostile.extend(gnu_header("etc/x", b'0', 0));
    hostile.extend([0u8; 1024]);
    let hostile_tar = f.dir.path().join("hostile.tar");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&hostile_tar, hostile).unwrap();
    builder.new_image("hostile");
    builder.add_tar("hostile", &hostile_tar);
    let out = f.inject(
        &format!("oci:{}:hostile", builder.path.display()),
        &dst,
        &[],
    );
    assert_eq!(code(&out), UNSUPPORTED, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("GNU long-name header of 2097152 bytes")
            && stderr(&out).contains("1048576-byte limit"),
        "{}",
        stderr(&out)
    );

    // A Java store whose scrypt asks for 1 GiB: refused before deriving, naming its path
    // (issue 19, item 5).
    let tree = f.dir.path().join("java-tree");
    std::fs::create_dir_all(tree.join("etc/ssl/certs/java")).unwrap();
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        tree.join("etc/ssl/certs/ca-certificates.crt"),
        root_ca("Distro Root").pem,
    )
    .unwrap();
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        tree.join("etc/ssl/certs/java/cacerts"),
        include_bytes!("../../keystore/testdata/scrypt-1gib.p12"),
    )
    .unwrap();
    builder.new_image("scrypt");
    builder.add_tree("scrypt", &tree);
    let out = f.inject(&format!("oci:{}:scrypt", builder.path.display()), &dst, &[]);
    assert_eq!(code(&out), UNSUPPORTED, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/etc/ssl/certs/java/cacerts") && stderr(&out).contains("scrypt"),
        "{}",
        stderr(&out)
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

/// `service` of the token-auth registry (the `aud` its tokens must carry).
const TOKEN_SERVICE: &str = "anchorage-test-registry";
/// `iss` of the tokens.
const TOKEN_ISSUER: &str = "anchorage-test-token-service";

/// One token request as the token service saw it.
#[derive(Clone, Debug)]
struct TokenRequest {
    /// The basic-auth user, when the credentials were right.
    account: Option<String>,
    /// The `scope` parameters asked for.
    scopes: Vec<String>,
    /// What the token granted (`repository:NAME:ACTIONS`).
    granted: Vec<String>,
}

/// A token service of the Docker registry token flow on loopback, inside the test process.
/// Users: `ci` / `s3cret` may pull and push, `reader` / `r3ad` may only pull; anything else is
/// refused with 401. Tokens are ES256 JWTs whose `x5c` header holds the signing certificate,
/// which the registry's `rootcertbundle` trusts (registry 2.8 verifies the chain with any
/// extended key usage, then the signature with the leaf's key).
struct TokenServer {
    port: u16,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    signer_pem: String,
}

impl TokenServer {
    fn start() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "anchorage test token signer");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (requests.clone(), stop.clone());
        let der = cert.der().to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve_token(stream, &key, &der, &log);
                }
            }
        });
        Self {
            port,
            requests,
            stop,
            signer_pem: cert.pem(),
        }
    }

    /// The registry's `auth: token:` section for this service.
    fn auth(&self, dir: &Path) -> TokenAuth {
        let bundle = dir.join("token-signer.pem");
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(&bundle, &self.signer_pem).unwrap();
        TokenAuth {
            realm: format!("http://127.0.0.1:{}/token", self.port),
            service: TOKEN_SERVICE.to_owned(),
            issuer: TOKEN_ISSUER.to_owned(),
            rootcertbundle: bundle,
        }
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// Answers one HTTP request on the token endpoint.
fn serve_token(
    mut stream: TcpStream,
    key: &rcgen::KeyPair,
    signer_der: &[u8],
    log: &Mutex<Vec<TokenRequest>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "scope" => scopes.push(percent_decode(value)),
            "service" => service = percent_decode(value),
            _ => {}
        }
    }
    let account = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|userpass| match userpass.as_str() {
            "ci:s3cret" | "reader:r3ad" => userpass.split(':').next().map(str::to_owned),
            _ => None,
        });
    let mut record = TokenRequest {
        account: account.clone(),
        scopes: scopes.clone(),
        granted: Vec::new(),
    };
    let (status, body) = match account {
        Some(user) if service == TOKEN_SERVICE => {
            let allowed: &[&str] = if user == "ci" {
                &["pull", "push"]
            } else {
                &["pull"]
            };
            let mut access = Vec::new();
            for scope in &scopes {
                let mut parts = scope.splitn(2, ':');
                let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Some((name, actions)) = rest.rsplit_once(':') else {
                    continue;
                };
                let actions: Vec<&str> =
                    actions.split(',').filter(|a| allowed.contains(a)).collect();
                record
                    .granted
                    .push(format!("{kind}:{name}:{}", actions.join(",")));
                access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
            }
            let token = mint_token(key, signer_der, &user, &access);
            (
                "200 OK",
                serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                    .to_string(),
            )
        }
        _ => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_owned(),
        ),
    };
    log.lock().unwrap().push(record);
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An ES256 JWT of the registry token spec: `iss`, `sub`, `aud` (the service), `exp`, `nbf`,
/// `iat`, `jti`, and the granted `access`; the signing certificate in `x5c`.
fn mint_token(key: &rcgen::KeyPair, signer_der: &[u8], user: &str, access: &[Value]) -> String {
    use rcgen::SigningKey as _;
    let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(signer_der)],
    });
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": user,
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{user}-{now}-{}", access.len()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        url(header.to_string().as_bytes()),
        url(claims.to_string().as_bytes())
    );
    let der = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", url(&ecdsa_der_to_jose(&der)))
}

/// ECDSA `SEQUENCE { INTEGER r, INTEGER s }` to JOSE's fixed 64-byte `r || s`.
fn ecdsa_der_to_jose(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "a DER sequence");
    let mut at = 2; // P-256 signatures are short enough for a one-byte length
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "a DER integer");
        let len = usize::from(der[at + 1]);
        let value = &der[at + 2..at + 2 + len];
        let value = &value[value.iter().take_while(|b| **b == 0).count()..];
        out.extend(std::iter::repeat_n(0, 32 - value.len()));
        out.extend_from_slice(value);
        at += 2 + len;
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bearer_token_auth_exchanges_docker_config_credentials_and_refusal_is_15() {
    let tokens = TokenServer::start();
    let dir = tempfile::tempdir().unwrap();
    let options = RegistryOptions {
        token: Some(tokens.auth(dir.path())),
        ..RegistryOptions::default()
    };
    // The fixture image goes in with skopeo through the same token flow.
    let Some(f) = Fixture::new(&options, Some("ci:s3cret")) else {
        return;
    };
    let (src, dst) = (
        f.registry.reference("debian:12"),
        f.registry.reference("debian:12-corp"),
    );
    let write_config = |userpass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(userpass);
        let config = format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            f.registry.host()
        );
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(f.docker().join("config.json"), config).unwrap();
    };

    // No credentials, wrong credentials: refused by the token service.
    let anonymous = f.inject(&src, &dst, &[]);
    assert_eq!(code(&anonymous), AUTH_FAILED, "{}", stderr(&anonymous));
    write_config("ci:wrong");
    let wrong = f.inject(&src, &dst, &[]);
    assert_eq!(code(&wrong), AUTH_FAILED, "{}", stderr(&wrong));
    assert_eq!(json(&wrong)["exit_code"], AUTH_FAILED);

    // A user whose tokens only grant pull reads the image but cannot push the result: the
    // registry itself checks the token's access claims.
    let before = tokens.requests().len();
    write_config("reader:r3ad");
    let reader = f.inject(&src, &dst, &[]);
    assert_eq!(code(&reader), AUTH_FAILED, "{}", stderr(&reader));
    let asked_push: Vec<TokenRequest> = tokens.requests()[before..]
        .iter()
        .filter(|r| r.scopes.iter().any(|s| s == "repository:debian:pull,push"))
        .cloned()
        .collect();
    assert!(!asked_push.is_empty());
    assert!(
        asked_push
            .iter()
            .all(|r| r.granted == ["repository:debian:pull"]),
        "{asked_push:?}"
    );

    let before = tokens.requests().len();
    write_config("ci:s3cret");
    let ok = f.inject(&src, &dst, &[]);
    assert_eq!(code(&ok), OK, "{}\n{}", stderr(&ok), f.registry.log());
    let report = json(&ok);
    assert_eq!(report["changed"], true);

    // oci-client exchanged the basic credentials for tokens, and the one used to push covers
    // push on the destination repository.
    let requests = tokens.requests();
    let ours = &requests[before..];
    assert!(
        ours.iter().all(|r| r.account.as_deref() == Some("ci")),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|r| r.granted.iter().any(|g| g == "repository:debian:pull,push")),
        "{ours:?}"
    );

    // The result is there: reading it back through the token flow finds the same digest, and
    // injecting again changes nothing.
    let again = f.inject(&dst, &f.registry.reference("debian:12-corp2"), &[]);
    assert_eq!(code(&again), OK, "{}", stderr(&again));
    assert_eq!(json(&again)["digest"], report["digest"]);
    assert_eq!(json(&again)["changed"], false);

    // A registry that trusts another signer refuses the same service's tokens: the signature
    // and its x5c chain are really checked.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&other)
        .unwrap();
    let mut untrusting = tokens.auth(dir.path());
    untrusting.rootcertbundle = dir.path().join("other-signer.pem");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&untrusting.rootcertbundle, other.pem()).unwrap();
    let Some(strict) = Registry::start_with(&RegistryOptions {
        token: Some(untrusting),
        ..RegistryOptions::default()
    }) else {
        return;
    };
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(
        f.docker().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}},"{}":{{"auth":"{auth}"}}}}}}"#,
            f.registry.host(),
            strict.host()
        ),
    )
    .unwrap();
    let strict_host = strict.host();
    let refused = f.inject(
        &src,
        &strict.reference("debian:12-corp"),
        &["--insecure-registry", &strict_host],
    );
    assert_eq!(code(&refused), AUTH_FAILED, "{}", stderr(&refused));
}

/// A source registry whose manifest names the config by a file path (the attack of issue 19):
/// refused with exit 16 before any blob is fetched, and the file is untouched.
#[test]
fn hostile_digest_is_exit_16_and_touches_nothing() {
    use anchorage_test_support::fake_registry::{FakeRegistry, Reply};
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&canary, b"keep me").unwrap();
    let ca = root_ca("Corp Root")
        .write_pem(dir.path(), "corp.pem")
        .display()
        .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": anchorage_image::media_type::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": canary.display().to_string(), "size": 10},
        "layers": [],
    });
    let registry = FakeRegistry::start(vec![(
        "/v2/app/manifests/1".into(),
        Reply::ok(
            anchorage_image::media_type::OCI_MANIFEST,
            manifest.to_string(),
        ),
    )]);
    let source = format!("{}/app:1", registry.host());
    let dest = format!("oci:{}:out", dir.path().join("layout").display());
    let host = registry.host();
    let out = anchorage(
        dir.path(),
        &[
            "image",
            "inject",
            &source,
            &dest,
            "--ca",
            &ca,
            "--insecure-registry",
            &host,
        ],
    );
    assert_eq!(code(&out), UNSUPPORTED, "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid digest"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&canary).unwrap(), b"keep me");
    assert!(
        !dir.path().join("layout/index.json").exists() || {
            let index = std::fs::read_to_string(dir.path().join("layout/index.json")).unwrap();
            !index.contains("\"out\"")
        }
    );
}

//! Issue 14: `anchorage serve`, `anchorage token create` and `anchorage consumers list`, the real
//! binary against real clients.
//!
//! `serve` starts with no flag but a free port (the data directory is the default one under a
//! temporary HOME): curl trusting the `ca.pem` it wrote issues a certificate (and curl without it
//! fails: the negative control), the real `bao` CLI issues through the Vault-compatible route,
//! a one-time token from `token create --server` signs an openssl CSR once (a replay is
//! refused), every chain passes `openssl verify`; a second serve on the same directory is refused
//! with exit 11 while the first runs, as is `token create` on the store; `consumers list` shows
//! an ack (table and JSON), a wrong token is exit 15; SIGTERM exits 0 at once when idle; after
//! it, `anchorage ca issue` signs with the same CA. A busy port is exit 18; `--output json` prints
//! one document once listening; SIGTERM answers a long-poll in flight and exits 0; a role token
//! minted on the stopped server's store works after a restart; with `--nats-url` the API answers
//! over NATS request/reply too; README's newcomer path runs as written; refusals before serving
//! keep their exit codes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anchorage_test_support::{TempDir, peer, tempdir};
use serde_json::Value;

mod common;

const STORE: i32 = 11;
const AUTH_FAILED: i32 = 15;
const LISTEN: i32 = 18;

/// A scratch HOME: the default data directory is `HOME/.local/share/anchorage`.
struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default data directory under this HOME.
    fn data(&self) -> PathBuf {
        self.path().join(".local/share/anchorage")
    }

    fn ca(&self) -> PathBuf {
        self.data().join("ca.pem")
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn anchorage(&self, args: &[&str]) -> Command {
        common::anchorage(self.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.anchorage(args).output().unwrap()
    }

    /// Starts `anchorage serve ARGS` and waits until it says where it listens (text mode).
    fn serve(&self, args: &[&str]) -> Serve {
        let inner = common::Serve::start(
            self.anchorage(&[&["serve"], args].concat()),
            self.data(),
            "serve",
        );
        Serve {
            url: inner.url.clone(),
            inner,
        }
    }
}

/// A running `anchorage serve`, killed when dropped.
struct Serve {
    inner: common::Serve,
    url: String,
}

impl Serve {
    fn log(&self) -> String {
        self.inner.log()
    }

    /// The log once it holds `needle` (serve prints the lines after "listening on" a moment
    /// later than the URL reaches the test), or as it is after 10 s.
    fn log_with(&self, needle: &str) -> String {
        self.inner.process.wait_log(needle, Duration::from_secs(10));
        self.log()
    }

    /// Sends `signal`, returns the exit code and how long the exit took.
    fn stop(mut self, signal: &str) -> (Option<i32>, Duration) {
        let child = &mut self.inner.process.child;
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit:\n{}",
                self.inner.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl -sS ARGS`: (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `curl --cacert CA --fail-with-body ARGS` that must succeed; its JSON answer.
fn curl_json(ca: &Path, args: &[&str]) -> Value {
    let (code, body) = curl(
        &[
            &["--cacert", ca.to_str().unwrap(), "--fail-with-body"],
            args,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "curl {args:?}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `openssl verify -CAfile ca [-untrusted chain] leaf` must say OK.
fn openssl_verify(dir: &Path, ca: &Path, leaf_pem: &str, chain: &[String]) {
    let leaf = dir.join("leaf-to-verify.pem");
    let untrusted = dir.join("untrusted.pem");
    write(&leaf, leaf_pem);
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(ca);
    if !chain.is_empty() {
        write(&untrusted, &chain.concat());
        cmd.arg("-untrusted").arg(&untrusted);
    }
    let out = cmd.arg(&leaf).output().unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test files (the workspace forbids `std::fs::write` in production code only).
fn write(path: &Path, text: &str) {
    #[allow(clippy::disallowed_methods)]
    std::fs::write(path, text).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn zero_flag_serve_issues_with_curl_bao_and_one_time_tokens() {
    let home = Home::new();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let serve = home.serve(&["--listen", &listen]);
    let url = serve.url.clone();
    assert_eq!(url, format!("https://{listen}"));
    let ca = home.ca();
    assert!(ca.is_file(), "{}", serve.log());
    let admin = format!("Authorization: Bearer {}", home.admin_token());

    // Negative control: without the CA serve wrote, curl refuses the server.
    let (code, _) = curl(&[&format!("{url}/readyz")]);
    assert_eq!(code, 60, "curl trusted the server without --cacert");
    let ready = curl_json(&ca, &[&format!("{url}/readyz")]);
    assert!(ready.is_object(), "{ready}");

    // A role, then a certificate with a server-made key, with curl.
    curl_json(
        &ca,
        &[
            "-H",
            &admin,
            "-X",
            "PUT",
            &format!("{url}/v1/roles/mesh"),
            "-d",
            r#"{"allowed_domains":["mesh.local"],"allow_subdomains":true}"#,
        ],
    );
    let issued = curl_json(
        &ca,
        &[
            "-H",
            &admin,
            &format!("{url}/v1/issue"),
            "-d",
            r#"{"common_name":"web.mesh.local","role":"mesh","ttl":"24h"}"#,
        ],
    );
    let leaf = issued["certificate"].as_str().unwrap();
    assert!(issued["private_key"].as_str().is_some());
    openssl_verify(home.path(), &ca, leaf, &strings(&issued["chain"]));

    // The real bao CLI through the Vault-compatible route.
    if let Some(bao) = peer::require("bao") {
        let out = Command::new(bao)
            .args([
                "write",
                "-format=json",
                "pki/issue/mesh",
                "common_name=api.mesh.local",
                "ttl=1h",
            ])
            .env("BAO_ADDR", &url)
            .env("BAO_CACERT", &ca)
            .env("BAO_TOKEN", home.admin_token())
            .env("HOME", home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "bao write: {}", text(&out));
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        let data = &answer["data"];
        assert!(data["private_key"].as_str().is_some());
        openssl_verify(
            home.path(),
            &ca,
            data["certificate"].as_str().unwrap(),
            &strings(&data["ca_chain"]),
        );
    }

    // A one-time token from `token create --server`, then /v1/sign with an openssl CSR.
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=web.mesh.local",
            "-keyout",
            "web.key",
            "-out",
            "web.csr",
        ])
        .current_dir(home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl req: {}", text(&out));
    let csr = std::fs::read_to_string(home.path().join("web.csr")).unwrap();
    let out = home.run(&[
        "token",
        "create",
        "--role",
        "mesh",
        "--sub",
        "web.mesh.local",
        "--server",
        &url,
    ]);
    assert!(out.status.success(), "token create: {}", text(&out));
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&token),
        "the token reached stderr"
    );
    let body = serde_json::json!({ "csr": csr }).to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let signed = curl_json(
        &ca,
        &["-H", &bearer, &format!("{url}/v1/sign"), "-d", &body],
    );
    assert!(signed.get("private_key").is_none());
    openssl_verify(
        home.path(),
        &ca,
        signed["certificate"].as_str().unwrap(),
        &strings(&signed["chain"]),
    );
    // Negative control: the same one-time token again is refused.
    let (code, answer) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &bearer,
        &format!("{url}/v1/sign"),
        "-d",
        &body,
    ]);
    assert_eq!(code, 0);
    assert!(answer.contains("token_replayed"), "{answer}");

    // The store is serve's while it runs: token create on it, and a second serve, are refused.
    let out = home.run(&["token", "create", "--role", "mesh", "--sub", "x.mesh.local"]);
    assert_eq!(out.status.code(), Some(STORE), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--server"),
        "{}",
        text(&out)
    );
    let other = format!("127.0.0.1:{}", free_port());
    let out = home.run(&["serve", "--listen", &other]);
    assert_eq!(out.status.code(), Some(STORE), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another process"), "{stderr}");
    assert!(stderr.contains(home.data().to_str().unwrap()), "{stderr}");

    // An ack, then consumers list: table and JSON; a token that is not admin is refused.
    curl_json(
        &ca,
        &[
            "-H",
            &admin,
            &format!("{url}/v1/acks"),
            "-d",
            r#"{"consumer":"node-1","bundle_version":1}"#,
        ],
    );
    let out = home.run(&["consumers", "list", "--server", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("CONSUMER"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node-1") && l.contains("current")),
        "{table}"
    );
    let out = home.run(&["consumers", "list", "--server", &url, "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["consumers"][0]["consumer"], "node-1");
    assert_eq!(doc["consumers"][0]["state"], "current");
    let wrong = home.path().join("wrong.token");
    write(&wrong, &format!("{token}\n"));
    let out = home.run(&[
        "consumers",
        "list",
        "--server",
        &url,
        "--token-file",
        wrong.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(AUTH_FAILED), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exit_code"], AUTH_FAILED);

    // SIGTERM: drained and exit 0, at once when nothing is in flight.
    let (code, took) = serve.stop("TERM");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");

    // `ca` and `serve` share the data directory: `ca issue` signs with the CA serve used.
    let out = home.run(&["ca", "issue", "--cn", "svc.mesh.local", "--out", "svc"]);
    assert!(out.status.success(), "{}", text(&out));
    let chain = std::fs::read_to_string(home.path().join("svc/chain.pem")).unwrap();
    openssl_verify(home.path(), &ca, &chain, &[]);
}

#[test]
fn json_document_role_token_on_the_store_and_busy_port() {
    let home = Home::new();
    let data = home.path().join("data");
    let data = data.to_str().unwrap();
    let roles = home.path().join("roles.json");
    write(
        &roles,
        r#"{"mesh": {"allowed_domains": ["mesh.local"], "allow_subdomains": true}}"#,
    );

    // --output json: one document on stdout once listening.
    let mut child = home
        .anchorage(&[
            "serve",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--roles",
            roles.to_str().unwrap(),
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut doc = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "stdout closed: {doc}"
        );
        doc.push_str(&line);
        if line == "}\n" {
            break;
        }
    }
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["ca_created"], true);
    assert_eq!(doc["admin_token_created"], true);
    let url = doc["url"].as_str().unwrap().to_owned();
    let ca = PathBuf::from(doc["ca_file"].as_str().unwrap());
    assert_eq!(ca, Path::new(data).join("ca.pem"));
    let addr = doc["listen"].as_str().unwrap().to_owned();

    // A busy port is exit 18.
    let out = home.run(&[
        "serve",
        "--data-dir",
        &format!("{data}-2"),
        "--listen",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(LISTEN), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "{}",
        text(&out)
    );

    // SIGINT drains too; stdout carried the one document only.
    Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest}");

    // Stopped: a long-lived role token minted on the store (the role came from --roles);
    // an unknown role is refused (exit 3).
    let out = home.run(&[
        "token",
        "create",
        "--data-dir",
        data,
        "--kind",
        "role",
        "--role",
        "nope",
        "--sub",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = home.run(&[
        "token",
        "create",
        "--data-dir",
        data,
        "--kind",
        "role",
        "--role",
        "mesh",
        "--sub",
        "mesh-controller",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Restarted, the server honours it (same key, from the store), and kept its admin token.
    let serve = home.serve(&["--data-dir", data, "--listen", "127.0.0.1:0"]);
    assert!(!serve.log().contains(", new)"), "{}", serve.log());
    let url2 = serve.url.clone();
    assert_ne!(url, url2);
    let issued = curl_json(
        &ca,
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{url2}/v1/issue"),
            "-d",
            r#"{"common_name":"db.mesh.local","ttl":"1h"}"#,
        ],
    );
    openssl_verify(
        home.path(),
        &ca,
        issued["certificate"].as_str().unwrap(),
        &strings(&issued["chain"]),
    );
    // Negative control: outside the role is refused with the rule.
    let (_, answer) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{url2}/v1/issue"),
        "-d",
        r#"{"common_name":"db.evil.example","ttl":"1h"}"#,
    ]);
    assert!(answer.contains("role_refused"), "{answer}");
    let (code, _) = serve.stop("TERM");
    assert_eq!(code, Some(0));
}

/// `--nats-url`: the same API answers on `anchorage.v1.<op>` (a real nats-server and the
/// async-nats client): health is 200, consumers without a token 401, with the admin token 200.
#[test]
fn serve_answers_over_nats_too() {
    use anchorage_secrets_server::async_nats;

    let Some(nats) = anchorage_test_support::nats::NatsServer::start() else {
        return;
    };
    let home = Home::new();
    let serve = home.serve(&["--listen", "127.0.0.1:0", "--nats-url", &nats.url()]);
    let log = serve.log_with("anchorage.v1.<op>");
    assert!(log.contains("anchorage.v1.<op>"), "{log}");
    let admin = home.admin_token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let status = |m: &async_nats::Message| {
            m.headers
                .as_ref()
                .and_then(|h| h.get("Anchorage-Status"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let health = client
            .request("anchorage.v1.health", "".into())
            .await
            .unwrap();
        assert_eq!(status(&health), "200");
        // Negative control: no token.
        let refused = client
            .request("anchorage.v1.consumers", "{}".into())
            .await
            .unwrap();
        assert_eq!(status(&refused), "401");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {admin}").as_str());
        let listed = client
            .request_with_headers("anchorage.v1.consumers", headers, "{}".into())
            .await
            .unwrap();
        assert_eq!(status(&listed), "200");
        let doc: Value = serde_json::from_slice(&listed.payload).unwrap();
        assert!(doc["consumers"].is_array(), "{doc}");
    });
    let (code, _) = serve.stop("TERM");
    assert_eq!(code, Some(0));
}

/// README's newcomer path, run as written by bash (only the port differs: 8443 may be taken
/// here, so `S` and `$ANCHORAGE_SERVER` name the free port serve got): curl issues, `bao`
/// issues, a one-time token signs a CSR, `consumers list` answers.
#[test]
fn the_readme_newcomer_path_works_as_written() {
    if peer::require("bao").is_none() || peer::require("jq").is_none() {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("In another terminal")
        .expect("README: the newcomer path");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    assert!(block.contains("S=https://127.0.0.1:8443"), "{block}");

    let home = Home::new();
    let serve = home.serve(&["--listen", "127.0.0.1:0"]);
    let script = block.replace("S=https://127.0.0.1:8443", &format!("S={}", serve.url));
    let bin = Path::new(env!("CARGO_BIN_EXE_anchorage")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Bounded: a README command that never returns (a background process holding the output
    // pipe) must fail this test, not hang the suite.
    let out = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("PATH", path)
        .env("ANCHORAGE_SERVER", &serve.url)
        .env_remove("XDG_DATA_HOME")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    // /v1/issue and /v1/sign answered with certificates, bao printed its table, nothing failed.
    assert_eq!(stdout.matches("\"certificate\":").count(), 2, "{stdout}");
    assert!(stdout.contains("serial_number"), "{stdout}");
    assert!(!stdout.contains("\"error\""), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no consumer has acked yet"),
        "{}",
        text(&out)
    );
    let (code, _) = serve.stop("TERM");
    assert_eq!(code, Some(0));
}

/// What serve and token create refuse before serving, each with its documented code: a roles
/// file that is not roles (3), a missing --tls-key file (3), an encrypted CA without its
/// passphrase (10, then serving with it), a one-time token without a role (2), no store yet (8).
#[test]
fn refusals_before_serving_keep_their_exit_codes() {
    let home = Home::new();
    let data = home.path().join("data");
    let data = data.to_str().unwrap();
    let listen = ["--listen", "127.0.0.1:0"];

    let out = home.run(&["token", "create", "--data-dir", data, "--sub", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = home.run(&[
        "token",
        "create",
        "--data-dir",
        data,
        "--role",
        "r",
        "--sub",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));

    let bad = home.path().join("roles.json");
    write(&bad, r#"[{"name": "mesh", "allowed_domainz": ["x"]}]"#);
    let out = home.run(
        &[
            &[
                "serve",
                "--data-dir",
                data,
                "--roles",
                bad.to_str().unwrap(),
            ][..],
            &listen,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowed_domainz"),
        "{}",
        text(&out)
    );

    let out = home.run(
        &[
            &[
                "serve",
                "--data-dir",
                data,
                "--tls-cert",
                "none.pem",
                "--tls-key",
                "none.key",
            ][..],
            &listen,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    let pass = home.path().join("pass");
    write(&pass, "correct horse\n");
    let out = home.run(&[
        "ca",
        "--data-dir",
        data,
        "--passphrase-file",
        pass.to_str().unwrap(),
        "init",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = home.run(&[&["serve", "--data-dir", data][..], &listen].concat());
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--passphrase-file"),
        "{}",
        text(&out)
    );
    let serve = home.serve(&[
        "--data-dir",
        data,
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!serve.log().contains("created now"), "{}", serve.log());
    let (code, _) = serve.stop("TERM");
    assert_eq!(code, Some(0));
}

/// SIGTERM with a request in flight (a bundle long-poll that would wait a minute): the request
/// is answered, and serve exits 0 well within --drain-timeout.
#[test]
fn sigterm_drains_a_request_in_flight() {
    let home = Home::new();
    let serve = home.serve(&["--listen", "127.0.0.1:0", "--drain-timeout", "10s"]);
    let ca = home.ca();
    curl_json(&ca, &[&format!("{}/healthz", serve.url)]);
    let mut poll = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .args(["-H", "If-None-Match: \"1\""])
        .arg(format!("{}/v1/bundle?wait=60", serve.url))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        poll.try_wait().unwrap().is_none(),
        "the long-poll was not waiting"
    );
    let (code, took) = serve.stop("TERM");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let out = poll.wait_with_output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the long-poll was cut: {}",
        text(&out)
    );
    assert_eq!(status, "304");
}

/// `--nats-identity NKEY=ROLE`: a request signed by that nkey issues under the role with no
/// token; an unknown nkey is refused (`nkey_unknown`), and a malformed flag is exit 2.
#[test]
fn nats_identity_maps_a_signed_nkey_to_a_role() {
    use anchorage_secrets_server::async_nats;
    use anchorage_serve::nats_auth::signed_request;

    let Some(nats) = anchorage_test_support::nats::NatsServer::start() else {
        return;
    };
    let home = Home::new();
    let roles = home.path().join("roles.json");
    write(
        &roles,
        r#"{"mesh": {"allowed_domains": ["mesh.local"], "allow_subdomains": true}}"#,
    );
    let controller = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let identity = format!("{}=mesh", controller.public_key());
    let serve = home.serve(&[
        "--listen",
        "127.0.0.1:0",
        "--nats-url",
        &nats.url(),
        "--roles",
        roles.to_str().unwrap(),
        "--nats-identity",
        &identity,
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let body = serde_json::json!({"common_name": "web.mesh.local"}).to_string();
        let mut answers = Vec::new();
        for key in [&controller, &stranger] {
            let m = signed_request(
                &client,
                key,
                "anchorage.v1.issue",
                body.clone().into(),
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let status = m.headers.as_ref().unwrap().get("Anchorage-Status").unwrap();
            let value: Value = serde_json::from_slice(&m.payload).unwrap();
            answers.push((status.as_str().to_owned(), value));
        }
        answers
    });
    assert_eq!(answers[0].0, "200", "{}", answers[0].1);
    assert!(answers[0].1["certificate"].is_string());
    assert_eq!(answers[1].0, "401", "{}", answers[1].1);
    assert_eq!(answers[1].1["error"]["code"], "nkey_unknown");
    drop(serve);

    let out = home.run(&[
        "serve",
        "--nats-url",
        &nats.url(),
        "--nats-identity",
        "NOTAKEY=mesh",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

//! Issue 15: `anchorage agent` and `anchorage agent status`, real processes against a real
//! `anchorage serve`.
//!
//! Two agents run against one serve; an admin adds a CA through the API; both agents' PEM and
//! hashed directory change, `consumers list -o json` shows both at the new version, all within
//! 2 s, and `openssl s_client -CApath <agent dir>` trusts a server signed by the new CA (and
//! did not before: the negative control). `--once` in a fresh directory exits 0 and a second
//! run changes nothing; `agent status -o json` shows the installed version; SIGTERM stops a
//! running agent with exit 0. The Kubernetes manifests' agent arguments parse.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stderr)] // the measured time and why openssl did not verify

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anchorage_test_support::pki::Pki;
use anchorage_test_support::{TempDir, peer, tempdir};
use serde_json::Value;

mod common;
use common::anchorage;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `anchorage serve` in a scratch HOME.
struct Serve {
    home: TempDir,
    url: String,
    _serve: common::Serve,
}

impl Serve {
    fn start() -> Self {
        let home = tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let data = home.path().join(".local/share/anchorage");
        let serve = common::Serve::start(
            anchorage(home.path(), &["serve", "--listen", &listen]),
            data,
            "serve",
        );
        let url = serve.url.clone();
        Self {
            home,
            url,
            _serve: serve,
        }
    }

    fn data(&self) -> PathBuf {
        self.home.path().join(".local/share/anchorage")
    }

    fn ca(&self) -> PathBuf {
        self.data().join("ca.pem")
    }

    fn token_file(&self) -> PathBuf {
        self.data().join("admin.token")
    }

    /// The agent's arguments to this serve, writing into `dir`.
    fn agent_args(&self, consumer: &str, dir: &Path) -> Vec<String> {
        vec![
            "agent".into(),
            format!("--server={}", self.url),
            format!("--server-ca={}", self.ca().display()),
            format!("--token-file={}", self.token_file().display()),
            format!("--consumer={consumer}"),
            "--label=app=test".into(),
            format!("--pem={}", dir.join("ca.pem").display()),
            format!("--openssl-dir={}", dir.join("hashed").display()),
            format!("--status-file={}", dir.join("status.json").display()),
        ]
    }

    fn run(&self, args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        anchorage(self.home.path(), &args).output().unwrap()
    }

    /// `POST /v1/bundle/cas {"add": pem}` with the admin token (curl).
    fn add_ca(&self, pem: &str) {
        self.post("/v1/bundle/cas", &serde_json::json!({ "add": pem }));
    }

    /// `POST path body` with the admin token (curl).
    fn post(&self, path: &str, body: &Value) {
        let token = std::fs::read_to_string(self.token_file()).unwrap();
        let body = body.to_string();
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(self.ca())
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .args(["-H", "Content-Type: application/json", "-d", &body])
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn consumers(&self) -> Value {
        let out = self.run(&[
            "consumers".into(),
            "list".into(),
            "-o".into(),
            "json".into(),
            format!("--server={}", self.url),
            format!("--ca={}", self.ca().display()),
            format!("--token-file={}", self.token_file().display()),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Does `openssl s_client -CApath dir` verify the server at `port`?
fn s_client_trusts(dir: &Path, port: u16) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CApath",
        ])
        .arg(dir)
        .args(["-no-CAfile", "-no-CAstore"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && stdout.contains("Verify return code: 0 (ok)");
    if !ok {
        eprintln!(
            "s_client -CApath {dir:?}: {}\n{}",
            stdout
                .lines()
                .filter(|l| l.contains("erify"))
                .collect::<Vec<_>>()
                .join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok
}

fn installed_version(status_file: &Path) -> Option<u64> {
    let v: Value = serde_json::from_slice(&std::fs::read(status_file).ok()?).ok()?;
    v.get("bundle_version")?.as_u64()
}

#[test]
fn two_agents_install_a_new_ca_and_serve_lists_both_within_2s() {
    if peer::require("openssl").is_none() || peer::require("curl").is_none() {
        return;
    }
    let serve = Serve::start();
    let work = tempdir().unwrap();
    let pki = Pki::new("agent-test");
    let files = pki.write_server_files(work.path());
    let server = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)).unwrap();

    let dirs: Vec<PathBuf> = ["a1", "a2"].iter().map(|n| work.path().join(n)).collect();
    let mut agents = Vec::new();
    for (name, dir) in ["a1", "a2"].iter().zip(&dirs) {
        let mut args = serve.agent_args(name, dir);
        args.push("--heartbeat=1h".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agents.push(Proc(
            anchorage(serve.home.path(), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dirs
        .iter()
        .all(|d| installed_version(&d.join("status.json")).is_some())
    {
        assert!(
            Instant::now() < deadline,
            "the agents never installed a bundle"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = installed_version(&dirs[0].join("status.json")).unwrap();
    let pem_before = std::fs::read(dirs[0].join("ca.pem")).unwrap();
    // Negative control: the agent's directory does not trust the new CA's server yet.
    assert!(!s_client_trusts(&dirs[0].join("hashed"), server.port()));

    let started = Instant::now();
    serve.add_ca(&pki.root.pem);
    let want = before + 1;
    loop {
        let listed = serve.consumers();
        let at_new: Vec<&str> = listed["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["bundle_version"].as_u64() == Some(want))
            .filter_map(|c| c["consumer"].as_str())
            .collect();
        if at_new.contains(&"a1") && at_new.contains(&"a2") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not both consumers at version {want} within 2 s: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    eprintln!("both agents acknowledged version {want} in {elapsed:?}");
    for dir in &dirs {
        // The agent writes its status (with the ack it recorded) right after the ack returns,
        // so serve may list the version a moment before the file says it.
        let status = dir.join("status.json");
        let deadline = Instant::now() + Duration::from_secs(2);
        while installed_version(&status) != Some(want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(installed_version(&status), Some(want));
        let pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        assert!(
            pem.contains(pki.root.pem.lines().nth(1).unwrap()),
            "new CA in {dir:?}"
        );
        assert!(
            s_client_trusts(&dir.join("hashed"), server.port()),
            "{dir:?}"
        );
    }
    assert_ne!(std::fs::read(dirs[0].join("ca.pem")).unwrap(), pem_before);

    // SIGTERM stops a running agent with exit 0.
    let mut a = agents.pop().unwrap();
    let status = Command::new("kill")
        .args(["-s", "TERM", &a.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    drop(server);
}

#[test]
fn once_writes_then_changes_nothing_and_status_shows_the_version() {
    let serve = Serve::start();
    let work = tempdir().unwrap();
    let dir = work.path().join("fresh");
    let mut args = serve.agent_args("init", &dir);
    args.extend(["--once".into(), "-o".into(), "json".into()]);

    let first = json(&serve.run(&args));
    assert_eq!(first["summary"], "changed", "{first}");
    assert_eq!(first["acked"], true);
    assert!(dir.join("ca.pem").is_file() && dir.join("hashed").is_dir());
    let pem = std::fs::read(dir.join("ca.pem")).unwrap();

    let second = json(&serve.run(&args));
    assert_eq!(second["summary"], "unchanged", "{second}");
    assert!(
        second["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["changed"] == false),
        "{second}"
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), pem);

    let status_file = dir.join("status.json");
    let status = json(&serve.run(&[
        "agent".into(),
        "status".into(),
        format!("--status-file={}", status_file.display()),
        "-o".into(),
        "json".into(),
    ]));
    assert_eq!(
        status["bundle_version"], first["bundle_version"],
        "{status}"
    );
    assert_eq!(status["consumer"], "init");
    // Text mode too, exit 0.
    let text = serve.run(&[
        "agent".into(),
        "status".into(),
        format!("--status-file={}", status_file.display()),
    ]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("bundle version"));

    // Negative controls: a missing status file is exit 3; an unreachable serve with --once is
    // exit 7 and the files stay.
    let missing = serve.run(&[
        "agent".into(),
        "status".into(),
        format!("--status-file={}", work.path().join("none.json").display()),
    ]);
    assert_eq!(missing.status.code(), Some(3));
    let mut down = serve.agent_args("init", &dir);
    down[1] = format!("--server=https://127.0.0.1:{}", free_port());
    down.push("--once".into());
    assert_eq!(serve.run(&down).status.code(), Some(7));
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), pem);
    // A status whose last contact failed: `agent status` says stale (exit 7).
    let stale = serve.run(&[
        "agent".into(),
        "status".into(),
        format!("--status-file={}", status_file.display()),
    ]);
    assert_eq!(stale.status.code(), Some(7));
}

/// The agent arguments in deploy/kubernetes parse with the real binary (`--help` after them
/// stops before running: clap validates every flag first).
#[test]
fn the_manifests_agent_arguments_are_real_flags() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut checked = 0;
    for file in [
        "agent-daemonset/daemonset.yaml",
        "agent-sidecar/deployment.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            let spec = &v["spec"]["template"]["spec"];
            for key in ["initContainers", "containers"] {
                let Some(list) = spec[key].as_sequence() else {
                    continue;
                };
                for c in list {
                    let Some(args) = c["args"].as_sequence() else {
                        continue;
                    };
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect();
                    if args.first().map(String::as_str) != Some("agent") {
                        continue;
                    }
                    let tmp = tempdir().unwrap();
                    let mut cmd = anchorage(tmp.path(), &[]);
                    cmd.args(&args).arg("--help");
                    let out = cmd.output().unwrap();
                    assert!(
                        out.status.success(),
                        "{file}: {args:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 3, "{checked}");
}

/// An ack's `refused` reason (what the agent library sends when it refuses a bundle) is shown
/// by `consumers list`, in JSON and in the table; a consumer that refused nothing has none.
#[test]
fn a_refusal_in_an_ack_is_listed_by_consumers_list() {
    if peer::require("curl").is_none() {
        return;
    }
    let serve = Serve::start();
    let reason = "bundle version 2 holds no CA certificate: installing it would remove every CA";
    serve.post(
        "/v1/acks",
        &serde_json::json!({"consumer": "web-1", "bundle_version": 1, "refused": reason}),
    );
    serve.post(
        "/v1/acks",
        &serde_json::json!({"consumer": "web-2", "bundle_version": 1}),
    );
    let listed = serve.consumers();
    let by_name = |n: &str| {
        listed["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consumer"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("web-1")["refused"], reason, "{listed}");
    assert!(by_name("web-2")["refused"].is_null(), "{listed}");
    let table = serve.run(&[
        "consumers".into(),
        "list".into(),
        format!("--server={}", serve.url),
        format!("--ca={}", serve.ca().display()),
        format!("--token-file={}", serve.token_file().display()),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("REFUSED") && text.contains(reason), "{text}");
}

/// `--identity --identity-pkcs12 FILE --identity-pkcs12-password-file PW`: the identity is also
/// a PKCS#12 key store (mode 0600) that `openssl pkcs12` opens with that password, holding the
/// key that matches `key.pem` and the certificate of `cert.pem`; a wrong password does not open
/// it (the negative control).
#[test]
#[allow(clippy::disallowed_methods)] // test fixtures, not outputs
fn once_writes_the_identity_as_a_pkcs12_key_store_too() {
    use std::os::unix::fs::PermissionsExt as _;
    if peer::require("curl").is_none() || peer::require("openssl").is_none() {
        return;
    }
    let serve = Serve::start();
    let admin = std::fs::read_to_string(serve.token_file()).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PUT", "--cacert"])
        .arg(serve.ca())
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", admin.trim()))
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(r#"{"allowed_domains":["web.test"],"allow_subdomains":true}"#)
        .arg(format!("{}/v1/roles/web", serve.url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let token = serve.run(&[
        "token".into(),
        "create".into(),
        "--role=web".into(),
        "--sub=api.web.test".into(),
        "--kind=role".into(),
        format!("--server={}", serve.url),
        format!("--token-file={}", serve.token_file().display()),
        format!("--ca={}", serve.ca().display()),
    ]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let dir = tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("role.token"), &token.stdout).unwrap();
    std::fs::write(d.join("pw"), "s3cret-store\n").unwrap();
    let mut args = serve.agent_args("api", d);
    args.retain(|a| !a.starts_with("--token-file="));
    args.extend([
        format!("--token-file={}", d.join("role.token").display()),
        "--identity=api.web.test".into(),
        format!("--identity-dir={}", d.join("id").display()),
        format!("--identity-pkcs12={}", d.join("id/api.p12").display()),
        format!("--identity-pkcs12-password-file={}", d.join("pw").display()),
        "--once".into(),
    ]);
    let out = serve.run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p12 = d.join("id/api.p12");
    let mode = std::fs::metadata(&p12).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let open = |password: &str| {
        Command::new("openssl")
            .args([
                "pkcs12",
                "-nodes",
                "-passin",
                &format!("pass:{password}"),
                "-in",
            ])
            .arg(&p12)
            .output()
            .unwrap()
    };
    let opened = open("s3cret-store");
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let text = String::from_utf8_lossy(&opened.stdout);
    let cert = std::fs::read_to_string(d.join("id/cert.pem")).unwrap();
    assert!(text.contains(cert.trim()), "{text}");
    assert!(text.contains("PRIVATE KEY"), "the key is in it");
    assert!(
        !open("wrong").status.success(),
        "a wrong password opens nothing"
    );
}

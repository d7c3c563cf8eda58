//! No secret in any output (issue 18): every command and server path that handles a secret runs
//! with known secret values at the most verbose level (`-vv` and `ANCHORAGE_LOG=trace`, which
//! also turns on the dependencies' trace logs), and everything it prints (stdout, stderr, the
//! server's log) is scanned for those values in raw, base64 (standard and URL-safe) and hex form.
//! Private keys are looked for by their PEM body lines.
//!
//! Paths covered: `ca init`/`show`/`issue` with a CA passphrase; `serve` (admin token, role
//! tokens, one-time tokens, issuance returning a private key, the Vault-compatible issue) and
//! `token create`; `agent --once` with a token and an identity; `secrets put`/`get`/`list`/
//! mappings/`rotate-encryption-key` with known seeds and value, and `secrets serve` answering a
//! real `get` over NATS; `secrets keygen` (the seed goes to its file only). Where printing a
//! secret is the command's job (`token create`'s stdout, `secrets get --reveal`'s), only the
//! other stream is scanned, and the scanner is shown to find the secret there (control).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // how much was scanned

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anchorage_secrets::XKey;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::peer;
use base64::Engine as _;
use secrecy::ExposeSecret as _;

/// Known secrets: (what, value).
#[derive(Default)]
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, what: &str, value: impl AsRef<[u8]>) {
        self.0.push((what.to_owned(), value.as_ref().to_vec()));
    }

    /// A PEM private key: each full base64 body line is a secret of its own.
    fn add_key_pem(&mut self, what: &str, pem: &str) {
        assert!(pem.contains("PRIVATE KEY"), "{what} is not a private key");
        for (i, line) in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .enumerate()
        {
            self.add(&format!("{what} (PEM line {})", i + 1), line);
        }
    }

    /// Every form of every secret found in `text`.
    fn leaks(&self, text: &[u8]) -> Vec<String> {
        let hay = String::from_utf8_lossy(text);
        let mut found = Vec::new();
        for (what, value) in &self.0 {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            let forms = [
                ("raw", String::from_utf8_lossy(value).into_owned()),
                (
                    "base64",
                    base64::engine::general_purpose::STANDARD.encode(value),
                ),
                (
                    "base64url",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
                ),
                ("hex", hex.clone()),
                ("HEX", hex.to_uppercase()),
            ];
            for (form, needle) in forms {
                if needle.len() >= 8 && hay.contains(needle.as_str()) {
                    found.push(format!("{what} ({form})"));
                }
            }
        }
        found
    }
}

/// What each command printed, scanned at the end.
#[derive(Default)]
struct Printed(Vec<(String, Vec<u8>)>);

impl Printed {
    fn add(&mut self, what: &str, out: &Output, stdout_too: bool) {
        if stdout_too {
            self.0.push((format!("{what} stdout"), out.stdout.clone()));
        }
        self.0.push((format!("{what} stderr"), out.stderr.clone()));
    }

    /// No secret anywhere; at least `min_bytes` were scanned (trace output, not empty streams).
    fn check(&self, secrets: &Secrets, min_bytes: usize) {
        let mut all = Vec::new();
        let mut bytes = 0;
        for (what, text) in &self.0 {
            bytes += text.len();
            for leak in secrets.leaks(text) {
                all.push(format!("{what}: {leak}"));
            }
        }
        assert!(all.is_empty(), "secrets in the output:\n{}", all.join("\n"));
        assert!(
            bytes >= min_bytes,
            "only {bytes} bytes of output were scanned"
        );
        println!(
            "{} outputs, {bytes} bytes scanned for {} secrets in 5 forms: none found",
            self.0.len(),
            secrets.0.len()
        );
    }
}

fn anchorage(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.arg("-vv")
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("ANCHORAGE_LOG", "trace")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .env_remove("ANCHORAGE_NATS_URL")
        .env_remove("XDG_DATA_HOME");
    cmd
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(path: &Path, contents: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(contents.as_bytes()).unwrap();
}

/// A running child whose stderr is collected; killed on drop.
struct Running {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn spawn(mut cmd: Command, ready: &str) -> (Self, String) {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        let marker = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(pos) = line.find(&marker) {
                    let _ = tx.send(line[pos + marker.len()..].trim().to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.extend_from_slice(line.as_bytes());
                log.push(b'\n');
            }
        });
        let found = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("never printed {ready:?}"));
        (Self { child, log }, found)
    }

    /// SIGTERM, wait, and the whole log.
    fn stop(mut self) -> Vec<u8> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` with the serve CA: the body.
fn curl(ca: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ca_serve_tokens_and_agent_print_no_secret_at_trace_level() {
    if peer::require("curl").is_none() {
        return;
    }
    let home = anchorage_test_support::tempdir().unwrap();
    let h = home.path();
    let data = h.join("data");
    let data_s = data.to_str().unwrap();
    let mut secrets = Secrets::default();
    let mut printed = Printed::default();

    let passphrase = format!("pass-{}", XKey::generate().public_key());
    write(&h.join("ca.pass"), &format!("{passphrase}\n"));
    secrets.add("CA passphrase", &passphrase);
    let pass = ["--data-dir", data_s, "--passphrase-file", "ca.pass"];

    let out = ok(
        anchorage(h, &[&["ca", "init"][..], &pass].concat())
            .output()
            .unwrap(),
        "ca init",
    );
    printed.add("ca init", &out, true);
    let out = ok(
        anchorage(h, &[&["ca", "show"][..], &pass].concat())
            .output()
            .unwrap(),
        "ca show",
    );
    printed.add("ca show", &out, true);
    let out = ok(
        anchorage(
            h,
            &[
                &["ca", "issue", "--cn", "leaf.local", "--out", "leaf"][..],
                &pass,
            ]
            .concat(),
        )
        .output()
        .unwrap(),
        "ca issue",
    );
    printed.add("ca issue", &out, true);
    let leaf_key = std::fs::read_dir(h.join("leaf"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .find(|t| t.contains("PRIVATE KEY"))
        .expect("ca issue wrote a key");
    secrets.add_key_pem("ca issue key", &leaf_key);

    let mut serve_cmd = anchorage(
        h,
        &[&["serve", "--listen", "127.0.0.1:0"][..], &pass].concat(),
    );
    serve_cmd.arg("--drain-timeout").arg("1s");
    let (serve, url) = Running::spawn(serve_cmd, "anchorage serve: listening on ");
    let ca = data.join("ca.pem");
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    secrets.add("admin token", &admin);
    // The token's signature alone, too (a log could print the token's parts).
    secrets.add("admin token signature", admin.rsplit('.').next().unwrap());
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    let role = r#"{"name":"mesh","allowed_domains":["mesh.local"],"allow_subdomains":true}"#;
    curl(
        &ca,
        &[
            "-X",
            "PUT",
            "-H",
            &bearer(&admin),
            "-d",
            role,
            &format!("{url}/v1/roles/mesh"),
        ],
    );
    let out = ok(
        anchorage(
            h,
            &[
                "token",
                "create",
                "--role",
                "mesh",
                "--sub",
                "c.mesh.local",
                "--kind",
                "role",
                "--server",
                &url,
                "--token-file",
                "data/admin.token",
                "--ca",
                "data/ca.pem",
            ],
        )
        .output()
        .unwrap(),
        "token create",
    );
    // stdout is the token (its job): only stderr is scanned.
    printed.add("token create", &out, false);
    let role_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    secrets.add("role token", &role_token);
    secrets.add(
        "role token signature",
        role_token.rsplit('.').next().unwrap(),
    );

    let issued = curl(
        &ca,
        &[
            "-H",
            &bearer(&role_token),
            "-d",
            r#"{"common_name":"svc.mesh.local"}"#,
            &format!("{url}/v1/issue"),
        ],
    );
    let issued_text = issued;
    let issued: serde_json::Value = serde_json::from_str(&issued_text).unwrap();
    secrets.add_key_pem("issued key", issued["private_key"].as_str().unwrap());
    // Control: the scanner finds the key in the API's answer, where it is meant to be (JSON
    // escapes the newlines, not the base64 lines).
    assert!(
        secrets
            .leaks(issued_text.as_bytes())
            .iter()
            .any(|l| l.starts_with("issued key")),
        "the scanner missed the key in the answer"
    );
    // A one-time token and a refused replay of it.
    let ott: serde_json::Value = serde_json::from_str(&curl(
        &ca,
        &[
            "-H",
            &bearer(&admin),
            "-d",
            r#"{"kind":"ott","sub":"one.mesh.local","role":"mesh","audience":"/v1/issue"}"#,
            &format!("{url}/v1/tokens"),
        ],
    ))
    .unwrap();
    let ott = ott["token"].as_str().unwrap().to_owned();
    secrets.add("one-time token", &ott);
    for _ in 0..2 {
        let _ = curl(
            &ca,
            &[
                "-H",
                &bearer(&ott),
                "-d",
                r#"{"common_name":"one.mesh.local"}"#,
                &format!("{url}/v1/issue"),
            ],
        );
    }
    // A bad token: refused, and never echoed either.
    let forged = format!("{}.forged", &role_token[..role_token.rfind('.').unwrap()]);
    let _ = curl(
        &ca,
        &[
            "-H",
            &bearer(&forged),
            "-d",
            "{}",
            &format!("{url}/v1/issue"),
        ],
    );
    // The Vault-compatible issue.
    let vault = curl(
        &ca,
        &[
            "-H",
            &format!("X-Vault-Token: {role_token}"),
            "-d",
            r#"{"common_name":"v.mesh.local"}"#,
            &format!("{url}/v1/pki/issue/mesh"),
        ],
    );
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&vault)
        && let Some(key) = v["data"]["private_key"].as_str()
    {
        secrets.add_key_pem("vault issued key", key);
    }

    // The agent: a bundle and an identity with the role token.
    write(&h.join("agent.token"), &format!("{role_token}\n"));
    let out = anchorage(
        h,
        &[
            "agent",
            "--once",
            "--server",
            &url,
            "--server-ca",
            ca.to_str().unwrap(),
            "--token-file",
            "agent.token",
            "--consumer",
            "leak-test",
            "--pem",
            "bundle.pem",
            "--identity",
            "agent.mesh.local",
            "--identity-dir",
            "identity",
            "--status-file",
            "status.json",
        ],
    )
    .output()
    .unwrap();
    let out = ok(out, "agent --once");
    printed.add("agent --once", &out, true);
    let agent_key = std::fs::read_to_string(h.join("identity/key.pem")).unwrap();
    secrets.add_key_pem("agent identity key", &agent_key);
    let status = std::fs::read(h.join("status.json")).unwrap();
    printed.0.push(("agent status file".into(), status));

    let log = serve.stop();
    printed.0.push(("serve log".into(), log));
    printed.check(&secrets, 20_000);
}

#[test]
fn secrets_commands_and_server_print_no_secret_at_trace_level() {
    let home = anchorage_test_support::tempdir().unwrap();
    let h = home.path();
    let data = h.join("data");
    let data_s = data.to_str().unwrap();
    let mut secrets = Secrets::default();
    let mut printed = Printed::default();

    let seed = XKey::generate().seed().expose_secret().to_owned();
    let new_seed = XKey::generate().seed().expose_secret().to_owned();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let value = format!("value-{}", XKey::generate().public_key());
    for (what, v) in [
        ("encryption seed", &seed),
        ("new encryption seed", &new_seed),
        ("transit seed", &transit),
        ("secret value", &value),
    ] {
        secrets.add(what, v);
    }
    let secrets_cmd = |args: &[&str]| {
        let mut cmd = anchorage(
            h,
            &[&["secrets"][..], args, &["--data-dir", data_s]].concat(),
        );
        cmd.env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &seed)
            .env("ANCHORAGE_SECRETS_TRANSIT_SEED", &transit)
            .env("THE_VALUE", &value);
        cmd
    };

    let account = nkeys::KeyPair::new_account();
    let component = nkeys::KeyPair::new_module();
    let entity = component.public_key();
    for (what, args) in [
        ("put", vec!["put", "db", "--value-env", "THE_VALUE"]),
        ("put again", vec!["put", "db", "--value-env", "THE_VALUE"]),
        ("get", vec!["get", "db"]),
        ("list", vec!["list"]),
        (
            "add-mapping",
            vec!["add-mapping", &entity, "--secret", "db"],
        ),
        ("list-mappings", vec!["list-mappings"]),
    ] {
        let out = ok(secrets_cmd(&args).output().unwrap(), what);
        printed.add(&format!("secrets {what}"), &out, true);
    }
    // keygen writes the seed to its file only.
    let out = ok(
        anchorage(
            h,
            &[
                "secrets", "keygen", "--kind", "transit", "--out", "gen.seed",
            ],
        )
        .output()
        .unwrap(),
        "keygen",
    );
    printed.add("secrets keygen", &out, true);
    secrets.add(
        "generated seed",
        std::fs::read_to_string(h.join("gen.seed")).unwrap().trim(),
    );
    // Rotation: the new seed given, the old one as the current.
    let mut rotate = secrets_cmd(&["rotate-encryption-key"]);
    rotate.env("ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED", &new_seed);
    let out = ok(rotate.output().unwrap(), "rotate-encryption-key");
    printed.add("secrets rotate-encryption-key", &out, true);
    // `get --reveal` prints the value on stdout (its job): stderr only.
    let mut reveal = secrets_cmd(&["get", "db", "--reveal"]);
    reveal.env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &new_seed);
    let out = ok(reveal.output().unwrap(), "get --reveal");
    // Control: the scanner finds the value where it is meant to be.
    assert_eq!(secrets.leaks(&out.stdout), ["secret value (raw)"]);
    printed.add("secrets get --reveal", &out, false);
    // A wrong seed: refused, never echoed.
    let wrong = XKey::generate().seed().expose_secret().to_owned();
    secrets.add("wrong encryption seed", &wrong);
    let mut bad = secrets_cmd(&["get", "db", "--reveal"]);
    bad.env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &wrong);
    let out = bad.output().unwrap();
    assert!(!out.status.success());
    printed.add("secrets get with a wrong seed", &out, true);

    if let Some(nats) = NatsServer::start() {
        let mut serve = secrets_cmd(&["serve", "--nats-url", &nats.url(), "--allow-any-issuer"]);
        serve.env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &new_seed);
        let (server, _) = Running::spawn(serve, "anchorage: serving ");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(get_over_nats(&nats.url(), &entity, &account));
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "the get was not answered"
        );
        printed.0.push(("secrets serve log".into(), server.stop()));
    }
    printed.check(&secrets, 2_000);
}

/// One real `get` of `db` for `entity` with the wasmCloud client: the value it received.
/// A get through the real wasmCloud client, retried for up to 30 s (each try has the client's
/// own short timeout, which a loaded CI machine can miss while the server starts).
async fn get_over_nats(url: &str, entity: &str, account: &nkeys::KeyPair) -> Option<String> {
    let nc = anchorage_secrets_server::async_nats::connect(url)
        .await
        .ok()?;
    let start = std::time::Instant::now();
    loop {
        // The client asks the backend for its xkey first: retried like the get, as a host
        // retries a backend that does not answer yet.
        let client =
            match wasmcloud_secrets_client::Client::new("nats-kv", "wasmcloud.secrets", nc.clone())
                .await
            {
                Ok(client) => client,
                Err(e) if start.elapsed() < std::time::Duration::from_secs(30) => {
                    println!("server xkey over NATS: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                Err(_) => return None,
            };
        let request = common::wasmcloud::request("db", entity, account);
        match client.get(request, nkeys::XKey::new()).await {
            Ok(secret) => return secret.string_secret,
            Err(e) if start.elapsed() < std::time::Duration::from_secs(30) => {
                println!("get over NATS: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(_) => return None,
        }
    }
}

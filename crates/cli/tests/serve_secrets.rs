//! `anchorage serve --secrets` (issue 14): the wasmCloud secrets backend inside serve, through
//! the real binary, a real nats-server and the real `wasmcloud-secrets-client`.
//!
//! - embedded: the secrets live in serve's own store (no `secrets.redb` appears), administered
//!   over NATS with an admin seed while serve runs; a mapped component gets its secret, a
//!   component with no mapping is refused (the negative control); SIGTERM drains both and exits
//!   0; a restart serves the same secret from the same store;
//! - `--store jetstream`: the reference layout's buckets on the same NATS;
//! - the secrets options without `--secrets` are refused (exit 2).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::wasmcloud::{component_token, host_token, secret_request};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anchorage_secrets::XKey;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::{TempDir, tempdir};
use secrecy::ExposeSecret as _;

struct Keys {
    transit: String,
    encryption: String,
    admin_file: PathBuf,
    admin: nkeys::KeyPair,
    account: nkeys::KeyPair,
    cluster: nkeys::KeyPair,
}

struct Home {
    dir: TempDir,
    keys: Keys,
}

fn private_file(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

impl Home {
    fn new() -> Self {
        let dir = tempdir().unwrap();
        let admin = nkeys::KeyPair::new_user();
        let admin_file = dir.path().join("admin.nk");
        private_file(&admin_file, &admin.seed().unwrap());
        Self {
            keys: Keys {
                transit: XKey::generate().seed().expose_secret().to_owned(),
                encryption: XKey::generate().seed().expose_secret().to_owned(),
                admin_file,
                admin,
                account: nkeys::KeyPair::new_account(),
                cluster: nkeys::KeyPair::new_cluster(),
            },
            dir,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn anchorage(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("ANCHORAGE_LOG")
            .env_remove("ANCHORAGE_DATA_DIR")
            .env_remove("ANCHORAGE_NATS_URL")
            .env_remove("ANCHORAGE_SECRETS_ADMIN_SEED")
            .env_remove("ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED")
            .env_remove("TRANSIT_XKEY_SEED")
            .env_remove("ENCRYPTION_XKEY_SEED")
            .env("ANCHORAGE_SECRETS_TRANSIT_SEED", &self.keys.transit)
            .env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &self.keys.encryption)
            .stdin(Stdio::null());
        cmd
    }

    /// `anchorage serve --secrets …` on `url`, once it listens.
    fn serve(&self, url: &str, extra: &[&str]) -> Serve {
        let data = self.data();
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--nats-url",
            url,
            "--secrets",
            "--drain-timeout",
            "5s",
        ];
        let (cluster, account, admin) = (
            self.keys.cluster.public_key(),
            self.keys.account.public_key(),
            self.keys.admin.public_key(),
        );
        args.extend([
            "--host-issuer",
            &cluster,
            "--entity-issuer",
            &account,
            "--admin-key",
            &admin,
        ]);
        args.extend(extra);
        let mut child = self
            .anchorage(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Appended before the signal, so the log read after it holds the line.
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if line.contains("secrets:") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve --secrets never started:\n{}", log.lock().unwrap());
        }
        Serve { child, log }
    }

    /// `anchorage secrets ARGS` sent to the running server over NATS with the admin seed.
    fn admin(&self, url: &str, args: &[&str]) -> String {
        let mut all = vec!["secrets"];
        all.extend(args);
        let seed = self.keys.admin_file.to_str().unwrap();
        all.extend(["--nats-url", url, "--admin-seed-file", seed]);
        let out = self.anchorage(&all).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

struct Serve {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM; the exit code and the log.
    fn stop(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks for `key` as each of `entities` (M… keys signed by the home's account, through a host
/// signed by its cluster key, or by `cluster` when given) with the real client: the string
/// values or the errors.
fn get_as(home: &Home, url: &str, key: &str, entities: &[&str]) -> Vec<Result<String, String>> {
    get_through(home, url, key, entities, &home.keys.cluster)
}

fn get_through(
    home: &Home,
    url: &str,
    key: &str,
    entities: &[&str],
    cluster: &nkeys::KeyPair,
) -> Vec<Result<String, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(url.to_owned())
            .await
            .unwrap();
        let mut up = false;
        for _ in 0..100 {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                nc.request("wasmcloud.secrets.v1alpha1.nats-kv.server_xkey", "".into()),
            )
            .await;
            if let Ok(Ok(_)) = asked {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the secrets backend never answered");
        let client = wasmcloud_secrets_client::Client::new("nats-kv", "wasmcloud.secrets", nc)
            .await
            .unwrap();
        let mut results = Vec::new();
        for entity in entities {
            let request = secret_request(
                key,
                component_token(&home.keys.account, entity),
                host_token(cluster),
            );
            results.push(
                client
                    .get(request, nkeys::XKey::new())
                    .await
                    .map(|s| s.string_secret.unwrap_or_default())
                    .map_err(|e| e.to_string()),
            );
        }
        results
    })
}

#[test]
fn serve_secrets_on_the_embedded_store_with_the_real_client() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let home = Home::new();
    let serve = home.serve(&url, &[]);
    let log = serve.log();
    assert!(
        log.contains("wasmcloud.secrets.v1alpha1.nats-kv.>") && log.contains("serve's store"),
        "{log}"
    );
    // Administered over NATS, into serve's store.
    home.admin(&url, &["put", "db-password", "--value", "s3cret-pw"]);
    let mapped = nkeys::KeyPair::new_module().public_key();
    let unmapped = nkeys::KeyPair::new_module().public_key();
    home.admin(&url, &["add-mapping", &mapped, "--secret", "db-password"]);

    let results = get_as(&home, &url, "db-password", &[&mapped, &unmapped]);
    assert_eq!(results[0].as_deref(), Ok("s3cret-pw"), "{results:?}");
    // The negative control: a component with no mapping is refused.
    let refused = results[1].as_ref().unwrap_err();
    assert!(!refused.contains("s3cret-pw"), "{refused}");
    // And a host whose JWT is signed by a cluster key serve does not allow, for the mapped one.
    let foreign = get_through(
        &home,
        &url,
        "db-password",
        &[&mapped],
        &nkeys::KeyPair::new_cluster(),
    );
    assert!(foreign[0].is_err(), "{foreign:?}");
    // And the control plane still answers over NATS and HTTPS in the same process.
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("cut short"), "{log}");
    assert!(
        !log.contains("s3cret-pw"),
        "a value reached the log:\n{log}"
    );
    // One store: the secrets are in serve's redb file, not in a secrets.redb of their own.
    assert!(home.data().join("anchorage.redb").exists());
    assert!(!home.data().join("secrets.redb").exists());

    // A restart serves the same secret from the same store.
    let serve = home.serve(&url, &[]);
    let results = get_as(&home, &url, "db-password", &[&mapped]);
    assert_eq!(results[0].as_deref(), Ok("s3cret-pw"), "{results:?}");
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn serve_secrets_on_the_jetstream_store() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let home = Home::new();
    let serve = home.serve(&url, &["--store", "jetstream", "--replicas", "1"]);
    let log = serve.log();
    assert!(log.contains("WASMCLOUD_SECRETS"), "{log}");
    home.admin(&url, &["put", "api-key", "--value", "k-123"]);
    let mapped = nkeys::KeyPair::new_module().public_key();
    let unmapped = nkeys::KeyPair::new_module().public_key();
    home.admin(&url, &["add-mapping", &mapped, "--secret", "api-key"]);
    let results = get_as(&home, &url, "api-key", &[&mapped, &unmapped]);
    assert_eq!(results[0].as_deref(), Ok("k-123"), "{results:?}");
    assert!(results[1].is_err(), "{results:?}");
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn secrets_options_without_secrets_are_refused() {
    let home = Home::new();
    let data = home.data();
    for extra in [
        ["--host-issuer", "CXXX"],
        ["--encryption-seed-file", "seed"],
    ] {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = home.anchorage(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains("add --secrets"), "{stderr}");
    }
    // Options with a default are refused too when given without --secrets (clap says so).
    for extra in [["--secrets-backend", "other"], ["--secrets-bucket", "B"]] {
        let mut args = vec!["serve", "--data-dir", data.to_str().unwrap()];
        args.extend(extra);
        let out = home.anchorage(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains("--secrets"), "{stderr}");
    }
    // --secrets needs --nats-url.
    let out = home
        .anchorage(&["serve", "--secrets", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

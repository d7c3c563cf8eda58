//! Helpers shared by the CLI's integration tests. Each file under `tests/` is its own crate and
//! takes this module with `mod common;`, so a helper one file does not use is not dead code:
//! hence the `allow` below.
//!
//! - [`anchorage`]: the built binary with a clean environment (no `ANCHORAGE_*` from the
//!   developer's shell, `HOME` in the test's directory).
//! - [`Logged`]: a child process whose stderr is collected line by line, with the first line
//!   carrying a given prefix (`anchorage serve: listening on `) handed over as it arrives.
//! - [`wasmcloud`]: the JWTs and request a wasmCloud host sends to a secrets backend.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// `anchorage ARGS` run in `home` (also its `HOME`), with no `ANCHORAGE_*` setting inherited and
/// stdin closed.
pub fn anchorage(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.args(args)
        .current_dir(home)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_NATS_URL")
        .env_remove("ANCHORAGE_SERVER")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .stdin(Stdio::null());
    cmd
}

/// The line `anchorage serve` prints once it accepts connections, before its URL.
pub const SERVE_LISTENING: &str = "anchorage serve: listening on ";

/// A child process with its stderr collected.
pub struct Logged {
    /// The process (not killed on drop: the owner decides).
    pub child: Child,
    /// Everything it wrote to stderr so far, a line at a time.
    pub log: Arc<Mutex<String>>,
    /// The rest of the first stderr line that started with the prefix given to [`Logged::spawn`].
    pub ready: mpsc::Receiver<String>,
}

impl Logged {
    /// Spawns `cmd` with stdout discarded and stderr read by a thread into [`Logged::log`].
    pub fn spawn(mut cmd: Command, ready_prefix: &'static str) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, ready) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(ready_prefix) {
                    let _ = tx.send(rest.to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, log, ready }
    }

    /// Waits up to `limit` for the ready line; kills the process and panics with its log (named
    /// `what`) when it does not come.
    pub fn wait_ready(&mut self, limit: Duration, what: &str) -> String {
        match self.ready.recv_timeout(limit) {
            Ok(rest) => rest,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{what} never got ready:\n{}", self.log());
            }
        }
    }

    /// The stderr collected so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` until the log holds `needle`; whether it does.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let t = Instant::now();
        loop {
            if self.log.lock().unwrap().contains(needle) {
                return true;
            }
            if t.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `anchorage serve` in its data directory, killed (SIGKILL) when dropped.
pub struct Serve {
    /// The process and its stderr.
    pub process: Logged,
    /// The URL it printed on its `listening on` line.
    pub url: String,
    /// Its `--data-dir`.
    pub dir: PathBuf,
}

impl Serve {
    /// Spawns `cmd` (an `anchorage serve` command line using `dir`) and waits up to 60 s for
    /// its `listening on` line, then up to 10 s for the lines printed right after it (they end
    /// with the `  try:` hint), so tests read a complete start-up log.
    pub fn start(cmd: Command, dir: PathBuf, what: &str) -> Self {
        Self::finish(Logged::spawn(cmd, SERVE_LISTENING), dir, what)
    }

    /// [`Serve::start`]'s second half, for callers that spawn several at once before waiting.
    pub fn finish(mut process: Logged, dir: PathBuf, what: &str) -> Self {
        let url = process.wait_ready(Duration::from_secs(60), what);
        process.wait_log("  try:", Duration::from_secs(10));
        Self { process, url, dir }
    }

    /// The stderr collected so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGKILL, and reaped.
    pub fn kill9(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a wasmCloud host sends to a secrets backend: a component's JWT, the host's JWT, and
/// the request that carries both.
pub mod wasmcloud {
    use anchorage_secrets::SecretRequest;
    use anchorage_secrets::protocol::{Application, Context};

    /// The policy a wasmCloud application passes for a secret without properties.
    pub const POLICY: &str =
        r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{}}"#;

    /// A component JWT for `subject` (the entity a mapping names), signed by `account`.
    pub fn component_token(account: &nkeys::KeyPair, subject: &str) -> String {
        use wascap::jwt::{ClaimsBuilder, Component};
        ClaimsBuilder::<Component>::new()
            .issuer(&account.public_key())
            .subject(subject)
            .with_metadata(Component {
                name: Some("c".into()),
                module_hash: "abc".into(),
                ..Component::default()
            })
            .build()
            .encode(account)
            .unwrap()
    }

    /// A host JWT signed by `cluster`.
    pub fn host_token(cluster: &nkeys::KeyPair) -> String {
        wascap::jwt::Claims::<wascap::jwt::Host>::new(
            "host".into(),
            cluster.public_key(),
            nkeys::KeyPair::new_server().public_key(),
            Some(std::collections::HashMap::new()),
        )
        .encode(cluster)
        .unwrap()
    }

    /// A request for `key` with these JWTs, application `app`.
    pub fn secret_request(key: &str, entity_jwt: String, host_jwt: String) -> SecretRequest {
        SecretRequest {
            key: key.into(),
            field: None,
            version: None,
            context: Context {
                entity_jwt,
                host_jwt,
                application: Application {
                    name: Some("app".into()),
                    policy: POLICY.into(),
                },
            },
        }
    }

    /// A request for `key` by `entity` (signed by `account`) from a host of a fresh cluster key.
    pub fn request(key: &str, entity: &str, account: &nkeys::KeyPair) -> SecretRequest {
        secret_request(
            key,
            component_token(account, entity),
            host_token(&nkeys::KeyPair::new_cluster()),
        )
    }
}

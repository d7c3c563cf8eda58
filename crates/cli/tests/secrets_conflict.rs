//! `anchorage secrets` against a JetStream store that keeps changing under it, on a real
//! `nats-server -js`: a compare-and-swap write that loses every attempt exits 14 (Conflict)
//! and names the key and the attempts; the same command without the contention succeeds; and
//! racing `put` processes with a `delete` end in either order, each version intact or purged.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anchorage_secrets_server::XKey;
use anchorage_secrets_server::async_nats;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::{TempDir, tempdir};
use secrecy::ExposeSecret as _;
use serde_json::Value;

/// The store's retry limit (`CAS_ATTEMPTS` in the secrets server): pinned here.
const CAS_ATTEMPTS: u32 = 32;

struct Cli {
    dir: TempDir,
    seed: String,
    url: String,
}

impl Cli {
    fn new(nats: &NatsServer) -> Self {
        Self {
            dir: tempdir().unwrap(),
            seed: XKey::generate().seed().expose_secret().to_owned(),
            url: nats.url(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
        cmd.arg("secrets")
            .args(args)
            .args(["--store", "jetstream", "--nats-url", &self.url])
            .current_dir(self.dir.path())
            .env_remove("ANCHORAGE_LOG")
            .env_remove("ANCHORAGE_DATA_DIR")
            .env_remove("ANCHORAGE_NATS_URL")
            .env_remove("ANCHORAGE_SECRETS_ADMIN_SEED")
            .env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &self.seed);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Publishes to `key` of `bucket` (core NATS, no waiting for acknowledgements, so the stream
/// takes a steady flood of revisions) from 4 tasks, until dropped.
struct Hammer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Hammer {
    /// Stops publishing and waits until the bucket's stream takes no more revisions (the
    /// flood already sent is still being stored for a while).
    fn stop(mut self, url: &str, bucket: &str) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        runtime.block_on(async {
            let nc = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(nc);
            let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
            let mut last = u64::MAX;
            let mut still = 0;
            while still < 3 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let now = stream.info().await.unwrap().state.last_sequence;
                still = if now == last { still + 1 } else { 0 };
                last = now;
            }
        });
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    }

    fn start(url: &str, bucket: &str, key: &str, value: &'static [u8]) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let subject = format!("$KV.{bucket}.{key}");
        // Eight publishers: the delete must lose every one of its attempts, so puts must land in
        // every read-to-write window even on a loaded machine (four let one through once).
        for _ in 0..8 {
            let (stop, writes, subject, url) = (
                stop.clone(),
                writes.clone(),
                subject.clone(),
                url.to_owned(),
            );
            runtime.spawn(async move {
                let nc = async_nats::connect(url).await.unwrap();
                while !stop.load(Ordering::SeqCst) {
                    for _ in 0..50 {
                        nc.publish(subject.clone(), value.into()).await.unwrap();
                    }
                    nc.flush().await.unwrap();
                    writes.fetch_add(50, Ordering::SeqCst);
                }
            });
        }
        // Under way before the command starts.
        while writes.load(Ordering::SeqCst) < 1000 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Self {
            stop,
            writes,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

#[test]
fn a_delete_that_keeps_losing_to_puts_exits_14_and_succeeds_without_them() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let cli = Cli::new(&nats);
    // The contention is made by timing: on a loaded machine the puts can leave one of the
    // delete's read-to-write windows empty, and the delete then rightly wins (exit 0). That run
    // proves nothing either way, so the scenario is set up again (at most five times); a CAS
    // failure that is not exit 14 still fails at once.
    let mut attempt = 0;
    let (out, during) = loop {
        attempt += 1;
        assert_eq!(code(&cli.run(&["put", "k", "--value", "v0"])), 0);
        let hammer = Hammer::start(&cli.url, "WASMCLOUD_SECRETS", "k", b"not ours");
        let out = cli.run(&["delete", "k"]);
        let during = hammer.writes.load(Ordering::SeqCst);
        hammer.stop(&cli.url, "WASMCLOUD_SECRETS");
        if code(&out) != 0 || attempt == 5 {
            break (out, during);
        }
    };
    assert_eq!(code(&out), 14, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "\"k\" kept changing under {CAS_ATTEMPTS} attempts to update it"
        )),
        "{} ({during} puts)",
        stderr(&out)
    );
    // Negative control: the same delete once the puts stop, then nothing left to delete.
    let out = cli.run(&["delete", "k"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&cli.run(&["delete", "k"])), 13);
}

#[test]
fn a_mapping_change_that_keeps_losing_exits_14_and_succeeds_without_contention() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let cli = Cli::new(&nats);
    let entity = nkeys::KeyPair::new_module().public_key();
    // Creates the buckets.
    assert_eq!(
        code(&cli.run(&["add-mapping", &entity, "--secret", "a"])),
        0
    );
    // As for the delete above: a run where the puts left a window empty (the change wins,
    // exit 0) proves nothing, so it is undone and set up again, at most five times.
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let hammer = Hammer::start(&cli.url, "SECRETS_nats-kv_state", &entity, b"[\"a\"]");
        let out = cli.run(&["add-mapping", &entity, "--secret", "db"]);
        hammer.stop(&cli.url, "SECRETS_nats-kv_state");
        if code(&out) != 0 || attempt == 5 {
            break out;
        }
        assert_eq!(
            code(&cli.run(&["remove-mapping", &entity, "--secret", "db"])),
            0
        );
    };
    assert_eq!(code(&out), 14, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{entity:?} kept changing under {CAS_ATTEMPTS} attempts to update it"
        )),
        "{}",
        stderr(&out)
    );
    // Negative control: without the contention the same change is made.
    let out = cli.run(&["add-mapping", &entity, "--secret", "db", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["secrets"], serde_json::json!(["a", "db"]), "{json}");
}

#[test]
fn racing_put_processes_and_a_delete_end_in_either_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let cli = Cli::new(&nats);
    assert_eq!(code(&cli.run(&["put", "k", "--value", "v0"])), 0);
    let puts: Vec<_> = (0..8)
        .map(|i| {
            let value = format!("p{i}");
            let child = cli
                .command(&["put", "k", "--value", &value, "--output", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (value, child)
        })
        .collect();
    let delete = cli.run(&["delete", "k"]);
    let mut written = BTreeMap::new();
    for (value, child) in puts {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        written.insert(json["version"].as_u64().unwrap(), value);
    }
    // v0 existed before any put: the delete found something to delete.
    assert_eq!(code(&delete), 0, "{}", stderr(&delete));
    // Each put is before the delete (purged: 13) or after it (kept with its value); the kept
    // ones are the later versions.
    let mut kept_from = None;
    for (version, value) in &written {
        let out = cli.run(&["get", "k", "--reveal", "--version", &version.to_string()]);
        match code(&out) {
            0 => {
                assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{value}\n"));
                kept_from.get_or_insert(*version);
            }
            13 => assert!(
                kept_from.is_none(),
                "version {version} purged after a kept one"
            ),
            other => panic!("version {version}: exit {other}: {}", stderr(&out)),
        }
    }
    // Negative control: a version nobody wrote is not found.
    let none = written.keys().last().unwrap() + 1000;
    assert_eq!(
        code(&cli.run(&["get", "k", "--version", &none.to_string()])),
        13
    );
    // The latest is the last put's, or nothing when the delete came last.
    let latest = cli.run(&["get", "k", "--reveal"]);
    match kept_from {
        Some(_) => assert_eq!(
            String::from_utf8(latest.stdout).unwrap(),
            format!("{}\n", written.values().last().unwrap())
        ),
        None => assert_eq!(code(&latest), 13),
    }
}

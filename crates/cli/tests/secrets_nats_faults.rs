//! Issue 18: NATS restarts and a lost cluster node while hosts get secrets. The real
//! `anchorage secrets serve` (embedded store, admin keys) answers the real
//! `wasmcloud-secrets-client` at four requesters; then
//!
//! - NATS restarts: every node of its 3-node cluster is killed (SIGKILL) and restarted on the
//!   same ports after 1.5 s;
//! - on a 3-node cluster, the node it is connected to is killed (it was given that node's URL
//!   only, so it must move to a node it learned from the cluster) and restored later.
//!
//! The same for `anchorage serve`'s issuance over NATS request/reply (`anchorage.v1.issue` with
//! the admin token), a lost node and then a whole restart, on one serve process.
//!
//! Requests fail only between the kill and the service's return (in flight or sent while there was
//! no route to the server), service returns within a bound and stays, and the server process is
//! the same one throughout (never restarted). The figures are printed (`--nocapture`) for
//! docs/faults.md.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // the measured figures, for docs/faults.md

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_secrets::XKey;
use anchorage_secrets::admin::{AdminClaims, AdminOp, AdminRequest, AdminSigner};
use anchorage_secrets_server::{AdminCallError, AdminClient};
use anchorage_test_support::nats::NatsCluster;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

const REQUESTERS: usize = 4;
/// Each get's own deadline: a get unanswered this long counts as failed.
const GET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after the NATS side is back (restart, or the kill for a lost node) service must
/// have returned.
const RESUME_BOUND: Duration = Duration::from_secs(10);

fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{text}").unwrap();
    path
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real server on `nats_url`, with an admin key: the server and the admin seed.
fn spawn_serve(dir: &Path, nats_url: &str) -> (KillOnDrop, SecretString) {
    let encryption = private_file(
        dir,
        "encryption.seed",
        XKey::generate().seed().expose_secret(),
    );
    let admin = SecretString::from(nkeys::KeyPair::new_user().seed().unwrap());
    let public = AdminSigner::from_seed(&admin, "test").unwrap().public_key();
    let keys = private_file(dir, "admin-keys", &public);
    let child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args([
            "secrets",
            "serve",
            "--nats-url",
            nats_url,
            "--allow-any-issuer",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--encryption-seed-file")
        .arg(&encryption)
        .arg("--admin-keys-file")
        .arg(&keys)
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_NATS_URL")
        .env_remove("ANCHORAGE_SECRETS_ENCRYPTION_SEED")
        .env(
            "ANCHORAGE_SECRETS_TRANSIT_SEED",
            XKey::generate().seed().expose_secret(),
        )
        .current_dir(dir)
        .env("ANCHORAGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    (KillOnDrop(child), admin)
}

/// Stores `db` and maps `entity` to it through the running server (waits until it is up).
async fn provision(url: &str, admin: &SecretString, entity: &str) {
    let nc = anchorage_secrets_server::async_nats::connect(url)
        .await
        .unwrap();
    let admin = AdminClient::new(
        nc,
        "wasmcloud.secrets",
        "nats-kv",
        AdminSigner::from_seed(admin, "test").unwrap(),
    )
    .with_timeout(Duration::from_secs(2));
    let put = AdminRequest {
        op: Some(AdminOp::Put),
        claims: AdminClaims {
            key: Some("db".into()),
            ..AdminClaims::default()
        },
        value: Some(Zeroizing::new(b"s3cr3t".to_vec())),
    };
    let mut up = false;
    for _ in 0..300 {
        match admin.call(&put).await {
            Ok(_) => {
                up = true;
                break;
            }
            Err(AdminCallError::Refused(e)) => panic!("put refused: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(up, "secrets serve never answered");
    let map = AdminRequest {
        op: Some(AdminOp::AddMapping),
        claims: AdminClaims {
            entity: Some(entity.into()),
            secrets: vec!["db".into()],
            ..AdminClaims::default()
        },
        value: None,
    };
    admin.call(&map).await.unwrap();
}

/// Each get: when it was sent, how long it took, whether it returned the value.
type Samples = Arc<Mutex<Vec<(Instant, Duration, Result<(), String>)>>>;

/// What the requesters ask for.
#[derive(Clone)]
enum Target {
    /// A secret, with the real `wasmcloud-secrets-client`, for this mapped entity.
    Secret(String),
    /// A certificate from `anchorage serve` over NATS request/reply, with this admin token.
    Issue(String),
}

/// One request to `target`: `Ok` when answered as expected.
async fn ask(
    target: &Target,
    secrets: Option<&wasmcloud_secrets_client::Client>,
    nc: &anchorage_secrets_server::async_nats::Client,
    account: &nkeys::KeyPair,
) -> Result<(), String> {
    match target {
        Target::Secret(entity) => {
            let got = tokio::time::timeout(
                GET_TIMEOUT,
                secrets.unwrap().get(
                    common::wasmcloud::request("db", entity, account),
                    nkeys::XKey::new(),
                ),
            )
            .await;
            match got {
                Ok(Ok(s)) if s.string_secret.as_deref() == Some("s3cr3t") => Ok(()),
                Ok(Ok(_)) => Err("another value".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within the get timeout".to_owned()),
            }
        }
        Target::Issue(token) => {
            let mut headers = anchorage_secrets_server::async_nats::HeaderMap::new();
            headers.insert("Authorization", format!("Bearer {token}").as_str());
            let got = tokio::time::timeout(
                GET_TIMEOUT,
                nc.request_with_headers(
                    "anchorage.v1.issue",
                    headers,
                    r#"{"common_name":"web.mesh.local","role":"mesh","ttl":"1h"}"#.into(),
                ),
            )
            .await;
            match got {
                Ok(Ok(m)) => {
                    let status = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Anchorage-Status"))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    let body: serde_json::Value =
                        serde_json::from_slice(&m.payload).unwrap_or_default();
                    if status == "200" && body["certificate"].is_string() {
                        Ok(())
                    } else {
                        Err(format!("status {status}: {body}"))
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within the get timeout".to_owned()),
            }
        }
    }
}

async fn requesters(url: &str, target: &Target, stop: Arc<AtomicBool>) -> Samples {
    let samples: Samples = Arc::default();
    let account = Arc::new(nkeys::KeyPair::new_account());
    for _ in 0..REQUESTERS {
        let nc = anchorage_secrets_server::async_nats::connect(url)
            .await
            .unwrap();
        let secrets = match target {
            Target::Secret(_) => Some(
                wasmcloud_secrets_client::Client::new("nats-kv", "wasmcloud.secrets", nc.clone())
                    .await
                    .unwrap(),
            ),
            Target::Issue(_) => None,
        };
        let (samples, stop, account) = (
            Arc::clone(&samples),
            Arc::clone(&stop),
            Arc::clone(&account),
        );
        let target = target.clone();
        // Warm up: one answered request on this connection before measuring.
        let mut warm = false;
        for _ in 0..50 {
            if ask(&target, secrets.as_ref(), &nc, &account).await.is_ok() {
                warm = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(warm, "no request answered before the fault");
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let sent = Instant::now();
                let result = ask(&target, secrets.as_ref(), &nc, &account).await;
                let failed = result.is_err();
                samples.lock().unwrap().push((sent, sent.elapsed(), result));
                if failed {
                    // As a host retries: not in a tight loop.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    samples
}

/// Checks the samples around a fault at `fault` whose NATS side was back at `back`, and
/// prints the figures. Returns when service resumed.
fn judge(name: &str, samples: &Samples, fault: Instant, back: Instant, end: Instant) {
    let samples = samples.lock().unwrap();
    // Answered (or given up) before the fault.
    let before: Vec<_> = samples.iter().filter(|(t, d, _)| *t + *d < fault).collect();
    let failed_before = before.iter().filter(|(_, _, r)| r.is_err()).count();
    assert!(
        !before.is_empty() && failed_before == 0,
        "{name}: before the fault {failed_before} of {} gets failed: {:?}",
        before.len(),
        before.iter().find(|(_, _, r)| r.is_err())
    );
    let failures: Vec<_> = samples.iter().filter(|(_, _, r)| r.is_err()).collect();
    // Service resumed: the first get sent after the last failure (all later ones succeed).
    let last_failure = failures.iter().map(|(t, d, _)| *t + *d).max();
    let resumed = last_failure.unwrap_or(fault);
    let after: Vec<_> = samples.iter().filter(|(t, _, _)| *t > resumed).collect();
    let example = failures
        .first()
        .map(|(_, _, r)| r.clone().unwrap_err())
        .unwrap_or_default();
    // The first request sent after the fault that was answered.
    let first_ok = samples
        .iter()
        .filter(|(t, _, r)| *t >= fault && r.is_ok())
        .map(|(t, _, _)| *t)
        .min()
        .unwrap_or(end);
    println!(
        "{name}: {} requests before, {} failed (first: {example:?}); first answered request sent {:.1?} after the fault ({:.1?} after NATS was back); last failure over {:.1?} after the fault; {} requests after it, none failed",
        before.len(),
        failures.len(),
        first_ok.saturating_duration_since(fault),
        first_ok.saturating_duration_since(back),
        resumed.saturating_duration_since(fault),
        after.len()
    );
    for (t, d, r) in &failures {
        assert!(
            *t + *d >= fault,
            "{name}: a get that ended before the fault failed: {r:?}"
        );
    }
    assert!(
        resumed <= back + RESUME_BOUND,
        "{name}: service back only {:?} after NATS was",
        resumed.saturating_duration_since(back)
    );
    assert!(
        end.saturating_duration_since(resumed) >= Duration::from_secs(2) && after.len() >= 10,
        "{name}: too little observed after service resumed ({} gets)",
        after.len()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn gets_resume_after_a_nats_restart_without_restarting_serve() {
    // The whole of NATS restarts: every node of a cluster killed, then restarted on its ports.
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url(0);
    let (mut serve, admin) = spawn_serve(dir.path(), &url);
    let entity = nkeys::KeyPair::new_module().public_key();
    let rt = runtime();
    rt.block_on(async {
        provision(&url, &admin, &entity).await;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = requesters(&url, &Target::Secret(entity.clone()), Arc::clone(&stop)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fault = Instant::now();
        for i in 0..3 {
            nats.kill(i);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for i in 0..3 {
            nats.restart(i);
        }
        let back = Instant::now();
        tokio::time::sleep(RESUME_BOUND + Duration::from_secs(3)).await;
        stop.store(true, Ordering::Release);
        let end = Instant::now();
        tokio::time::sleep(GET_TIMEOUT).await;
        judge("nats restart", &samples, fault, back, end);
    });
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "secrets serve exited"
    );
    rt.shutdown_background();
}

#[test]
fn gets_resume_after_losing_a_cluster_node_without_restarting_serve() {
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The server knows node 0 only: it learns the others from the cluster.
    let (mut serve, admin) = spawn_serve(dir.path(), &nats.url(0));
    let requester_url = nats.url(2);
    let entity = nkeys::KeyPair::new_module().public_key();
    let rt = runtime();
    rt.block_on(async {
        provision(&requester_url, &admin, &entity).await;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = requesters(
            &requester_url,
            &Target::Secret(entity.clone()),
            Arc::clone(&stop),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fault = Instant::now();
        nats.kill(0);
        tokio::time::sleep(RESUME_BOUND + Duration::from_secs(3)).await;
        // Node 0 back: nothing changes for the server, now on another node.
        nats.restart(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Release);
        let end = Instant::now();
        tokio::time::sleep(GET_TIMEOUT).await;
        judge("cluster node lost", &samples, fault, fault, end);
    });
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "secrets serve exited"
    );
    rt.shutdown_background();
}

/// `anchorage serve` with `--nats-url`: the process and its admin token.
fn spawn_cert_serve(dir: &Path, nats_url: &str) -> (KillOnDrop, String) {
    let roles = private_file(
        dir,
        "roles.json",
        r#"{"mesh": {"allowed_domains": ["mesh.local"], "allow_subdomains": true}}"#,
    );
    let data = dir.join("serve-data");
    let child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(["serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url])
        .arg("--data-dir")
        .arg(&data)
        .arg("--roles")
        .arg(&roles)
        .env("HOME", dir)
        .env_remove("XDG_DATA_HOME")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_SERVER")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .env("ANCHORAGE_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let token_file = data.join("admin.token");
    let started = Instant::now();
    while !token_file.is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve wrote no admin token"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_owned();
    (child, token)
}

#[test]
fn issuance_over_nats_resumes_after_a_nats_restart_and_a_lost_node_without_restarting_serve() {
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // serve knows node 0 only; the requesters use node 2.
    let (mut serve, token) = spawn_cert_serve(dir.path(), &nats.url(0));
    let url = nats.url(2);
    let target = Target::Issue(token);
    let rt = runtime();
    rt.block_on(async {
        // A lost node: the one serve is connected to.
        let stop = Arc::new(AtomicBool::new(false));
        let samples = requesters(&url, &target, Arc::clone(&stop)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fault = Instant::now();
        nats.kill(0);
        tokio::time::sleep(RESUME_BOUND + Duration::from_secs(3)).await;
        stop.store(true, Ordering::Release);
        let end = Instant::now();
        tokio::time::sleep(GET_TIMEOUT).await;
        judge("issuance, cluster node lost", &samples, fault, fault, end);
        nats.restart(0);

        // NATS restarts: every node.
        let stop = Arc::new(AtomicBool::new(false));
        let samples = requesters(&url, &target, Arc::clone(&stop)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fault = Instant::now();
        for i in 0..3 {
            nats.kill(i);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for i in 0..3 {
            nats.restart(i);
        }
        let back = Instant::now();
        tokio::time::sleep(RESUME_BOUND + Duration::from_secs(3)).await;
        stop.store(true, Ordering::Release);
        let end = Instant::now();
        tokio::time::sleep(GET_TIMEOUT).await;
        judge("issuance, nats restart", &samples, fault, back, end);
    });
    assert!(serve.0.try_wait().unwrap().is_none(), "serve exited");
    rt.shutdown_background();
}

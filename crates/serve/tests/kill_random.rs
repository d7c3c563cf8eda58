//! `kill -9` of `serve` at random points, many times over (issue 18): after every kill the
//! embedded store opens and every acknowledged write of every run so far is there.
//!
//! `crash.rs` kills once, 1.5 s into the load; this test repeats kill → restart → check on one
//! data directory, each kill after a delay drawn from a fixed-seed schedule (so a failure replays
//! with the same delays), including kills during start-up (the CA and serving certificate
//! written on the first run, the store opened on the next ones). Acknowledged means the client
//! got a 200: an issued serial (`serve.certs.<serial>`), a revocation (`serve.revoked.<serial>`
//! and the CRL), an ack (`serve.consumers.<name>`), a CA added to the bundle (in the
//! `serve.bundle` record, rewritten by compare-and-swap).
//!
//! `ANCHORAGE_SERVE_KILLS` sets the number of kills: 10 in CI, 200 by hand
//! (`ANCHORAGE_SERVE_KILLS=200 cargo test -p anchorage-serve --test kill_random -- --nocapture`).
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)] // what the kills hit

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const CHILD_DIR: &str = "ANCHORAGE_SERVE_KILL_CHILD_DIR";
/// Seed of the kill delays.
const SEED: u64 = 0x6b11_1a9d_5e7e_2026;
/// Kills are spread over `[0, MAX_DELAY]` after the child is spawned (start-up included).
const MAX_DELAY: Duration = Duration::from_millis(2500);

#[test]
#[ignore = "helper process of kill_9_at_random_points_loses_no_acknowledged_write"]
fn serve_kill_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    // The parent holds our stdin: when it goes away (even by a panic), so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let server = anchorage_serve::Server::start(config(&dir)).await.unwrap();
        anchorage_trust::atomic::write_file(&dir.join("url"), server.serving().url.as_bytes())
            .unwrap();
        std::future::pending::<()>().await;
    });
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// xorshift64*.
struct Schedule(u64);

impl Schedule {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// CAs added per round (each add rewrites the whole bundle record).
const CAS_PER_ROUND: usize = 20;

fn sha256_hex(pem: &str) -> String {
    anchorage_x509::decode(pem.as_bytes()).certificates[0]
        .certificate
        .sha256()
        .hex()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// The SHA-256 of every extra CA in the stored bundle record.
async fn bundle_cas(store: &std::sync::Arc<dyn anchorage_store::Store>) -> HashSet<String> {
    let Some(entry) = store.get("serve.bundle").await.unwrap() else {
        return HashSet::new();
    };
    let record: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    record["extra"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .map(sha256_hex)
        .collect()
}

fn spawn_child(dir: &std::path::Path) -> KillOnDrop {
    let _ = std::fs::remove_file(dir.join("url"));
    KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "serve_kill_child",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Load on the child until a request fails (the kill): issuances, every third revoked, an ack
/// after each; what was answered 200 is recorded.
async fn load(
    round: usize,
    url: String,
    ca: String,
    token: String,
    admin: String,
    acked: Arc<Mutex<Acked>>,
) {
    let http = client(&ca, None);
    let mut workers = Vec::new();
    {
        let (http, url, admin, acked) =
            (http.clone(), url.clone(), admin.clone(), Arc::clone(&acked));
        workers.push(tokio::spawn(async move {
            for i in 0..CAS_PER_ROUND {
                let pem = anchorage_test_support::pki::root_ca(&format!("Kill CA {round} {i}")).pem;
                let req = http
                    .post(format!("{url}/v1/bundle/cas"))
                    .bearer_auth(&admin)
                    .json(&json!({ "add": pem }));
                match req.send().await {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().cas.push(sha256_hex(&pem)),
                    _ => return,
                }
            }
        }));
    }
    for w in 0..4 {
        let (http, url, token, admin, acked) = (
            http.clone(),
            url.clone(),
            token.clone(),
            admin.clone(),
            Arc::clone(&acked),
        );
        workers.push(tokio::spawn(issue_revoke_ack(
            http,
            url,
            token,
            admin,
            format!("r{round}-w{w}"),
            acked,
        )));
    }
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_no_acknowledged_write() {
    let kills: usize = std::env::var("ANCHORAGE_SERVE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let mut schedule = Schedule(SEED);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let (mut during_startup, mut idle, mut during_load) = (0usize, 0usize, 0usize);
    let mut token: Option<String> = None;
    for round in 0..kills {
        let delay = MAX_DELAY.mul_f64(schedule.next_unit());
        let mut child = spawn_child(dir.path());
        let spawned = Instant::now();
        // Wait for the URL, or for the kill time, whichever comes first.
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(dir.path().join("url")) {
                break Some(url);
            }
            if spawned.elapsed() >= delay {
                break None;
            }
            assert!(
                spawned.elapsed() < Duration::from_secs(30),
                "round {round}: the child server did not start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let loader = match (&url, &token) {
            (Some(url), Some(token)) => {
                let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
                let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
                Some(tokio::spawn(load(
                    round,
                    url.clone(),
                    ca,
                    token.clone(),
                    admin.trim().to_owned(),
                    Arc::clone(&acked),
                )))
            }
            _ => None,
        };
        match (&url, &loader) {
            (None, _) => during_startup += 1,
            (Some(_), None) => idle += 1,
            (Some(_), Some(_)) => during_load += 1,
        }
        tokio::time::sleep(delay.saturating_sub(spawned.elapsed())).await;
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        if let Some(loader) = loader {
            loader.await.unwrap();
        }

        // Restart in-process on the same directory: it opens, and every acknowledged write of
        // every round so far is there.
        let s = start(dir.path()).await;
        if token.is_none() {
            s.put_role(mesh_role()).await;
            token = Some(s.role_token().await);
        }
        let store = &s.server.state().store;
        let (issued, revoked, acks, cas) = {
            let a = acked.lock().unwrap();
            (
                a.issued.clone(),
                a.revoked.clone(),
                a.acks.clone(),
                a.cas.clone(),
            )
        };
        for serial in &issued {
            let found = store.get(&format!("serve.certs.{serial}")).await.unwrap();
            assert!(found.is_some(), "round {round}: issuance {serial} lost");
        }
        for serial in &revoked {
            let found = store.get(&format!("serve.revoked.{serial}")).await.unwrap();
            assert!(found.is_some(), "round {round}: revocation {serial} lost");
        }
        for consumer in &acks {
            let found = store.get(&format!("serve.consumers.{consumer}")).await;
            assert!(
                found.unwrap().is_some(),
                "round {round}: ack {consumer} lost"
            );
        }
        let stored = bundle_cas(store).await;
        for fp in &cas {
            assert!(stored.contains(fp), "round {round}: bundle CA {fp} lost");
        }
        s.server.shutdown().await;
    }

    // The CRL after the last restart lists every acknowledged revocation, and issuance works.
    let s = start(dir.path()).await;
    let der = s
        .client
        .get(format!("{}/v1/crl", s.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let listed: HashSet<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    for serial in &acked.revoked {
        assert!(listed.contains(serial), "{serial} missing from the CRL");
    }
    let (status, _) = s
        .call(
            "POST",
            "/v1/issue",
            Some(token.as_deref().unwrap()),
            Some(json!({"common_name": "after.mesh.local"})),
        )
        .await;
    assert_eq!(status, 200);
    println!(
        "{kills} kills ({during_startup} during start-up, {idle} idle, {during_load} under load): \
         {} issuances, {} revocations, {} acks, {} bundle CAs acknowledged, none lost",
        acked.issued.len(),
        acked.revoked.len(),
        acked.acks.len(),
        acked.cas.len()
    );
    assert!(
        kills < 10 || (during_load >= kills / 4 && acked.issued.len() >= kills),
        "too few kills landed under load to prove anything"
    );
    s.server.shutdown().await;
}

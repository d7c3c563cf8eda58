//! `kill -9` of a serving process under load, then a restart on the same data directory: no
//! acknowledged issuance, revocation or ack is lost (the embedded store commits each write
//! durably before the answer is sent).
//!
//! The serving process is this test binary run again with `--exact serve_child --ignored`
//! (the `serve_child` helper below), so no extra binary is needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const CHILD_DIR: &str = "ANCHORAGE_SERVE_TEST_CHILD_DIR";

#[test]
#[ignore = "helper process of kill_9_under_load_loses_no_acknowledged_write"]
fn serve_child() {
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

/// The serving process, killed if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "serve_child",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let url = loop {
        if let Ok(url) = std::fs::read_to_string(dir.path().join("url")) {
            break url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let http = client(&ca, None);
    let (status, _) = call_with(
        &http,
        &url,
        "PUT",
        "/v1/roles/mesh",
        Some(&admin),
        Some(mesh_role()),
    )
    .await;
    assert_eq!(status, 200);
    let (_, t) = call_with(
        &http,
        &url,
        "POST",
        "/v1/tokens",
        Some(&admin),
        Some(json!({"kind": "role", "sub": "load", "role": "mesh"})),
    )
    .await;
    let token = t["token"].as_str().unwrap().to_owned();

    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut workers = Vec::new();
    for w in 0..8 {
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
            format!("w{w}"),
            acked,
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.issued.len() >= 16,
        "too little load to prove anything: {}",
        acked.issued.len()
    );

    // Restart in-process on the same directory.
    let s = start(dir.path()).await;
    let store = &s.server.state().store;
    for serial in &acked.issued {
        assert!(
            store
                .get(&format!("serve.certs.{serial}"))
                .await
                .unwrap()
                .is_some(),
            "issuance {serial} lost"
        );
    }
    for serial in &acked.revoked {
        assert!(
            store
                .get(&format!("serve.revoked.{serial}"))
                .await
                .unwrap()
                .is_some(),
            "revocation {serial} lost"
        );
    }
    for consumer in &acked.acks {
        assert!(
            store
                .get(&format!("serve.consumers.{consumer}"))
                .await
                .unwrap()
                .is_some(),
            "ack {consumer} lost"
        );
    }
    // The CRL built after the restart lists every acknowledged revocation.
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
    let listed: std::collections::HashSet<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', ""))
        .collect();
    for serial in &acked.revoked {
        assert!(listed.contains(serial), "{serial} missing from the CRL");
    }
    assert_eq!(
        s.call(
            "POST",
            "/v1/issue",
            Some(&token),
            Some(json!({"common_name": "after.mesh.local"}))
        )
        .await
        .0,
        200
    );
    s.server.shutdown().await;
}

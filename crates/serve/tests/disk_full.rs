//! The embedded store on a full and on a read-only disk (issue 18): writes fail with a clear
//! error and nothing acknowledged is lost; reads keep working; once there is space again writes
//! work, and after a restart every acknowledged write is there. A data directory on a read-only
//! file system is refused at start with an error naming it.
//!
//! Found here, then fixed: after an I/O error redb refuses every later write until the database
//! is closed (`PreviousIo`), so writes failed until the process restarted even once space was
//! back (`space again: 503`). The store now reopens the database; once space is back the next
//! issuance is 200 without a restart. The client sees `503 store_unavailable`; the server's log
//! names the OS's reason.
//!
//! The disk is a 4 MiB `tmpfs` mounted in a private user and mount namespace: the test binary
//! runs itself again under `unshare -rm` (`disk_child` below), and the child mounts the `tmpfs`
//! and runs the scenario in-process; its panics are the test's failures.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)] // the errors seen, for docs/faults.md

mod common;

use std::path::Path;

use anchorage_test_support::small_disk::{self, error_chain, fill, mount, mount_tmpfs};

use common::*;
use serde_json::json;

const CHILD_DIR: &str = "ANCHORAGE_SERVE_DISK_CHILD_DIR";

/// Starts serve on `data`, panicking with the whole error chain.
async fn start_on(data: &Path) -> Running {
    match anchorage_serve::Server::start(config(data)).await {
        Ok(server) => server.shutdown().await,
        Err(e) => panic!("serve did not start: {}", error_chain(&e)),
    }
    start(data).await
}

async fn issue(s: &Running, token: &str, cn: &str) -> (u16, serde_json::Value) {
    s.call(
        "POST",
        "/v1/issue",
        Some(token),
        Some(json!({"common_name": cn})),
    )
    .await
}

#[test]
#[ignore = "helper process of the embedded store on a full and a read-only disk"]
fn disk_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mnt = std::path::PathBuf::from(dir);
    // The server's log, on stderr: the parent looks for the OS's reason there.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    mount_tmpfs(&mnt, "4m");
    let data = mnt.join("serve");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let s = start(&data).await;
        s.put_role(mesh_role()).await;
        let token = s.role_token().await;
        let mut acked = Vec::new();
        for n in 0..10 {
            let (status, body) = issue(&s, &token, &format!("before-{n}.mesh.local")).await;
            assert_eq!(status, 200, "{body}");
            acked.push(body["serial_number"].as_str().unwrap().to_owned());
        }

        // Disk full: issue until refused (the store may have free pages left at first).
        fill(&mnt);
        let mut refused = None;
        for n in 0..2_000 {
            let (status, body) = issue(&s, &token, &format!("full-{n}.mesh.local")).await;
            if status == 200 {
                acked.push(body["serial_number"].as_str().unwrap().to_owned());
            } else {
                refused = Some((status, body));
                break;
            }
        }
        let (status, body) = refused.expect("the full disk never refused a write");
        println!("disk full: {status} {body}");
        assert_eq!(status, 503, "{body}");
        assert_eq!(error_code(&body), "store_unavailable", "{body}");
        // Reads keep working.
        let (status, _) = s.call("GET", "/v1/bundle", None, None).await;
        assert_eq!(status, 200);
        let store = &s.server.state().store;
        for serial in &acked {
            let found = store.get(&format!("serve.certs.{serial}")).await;
            assert!(
                found.unwrap().is_some(),
                "issuance {serial} lost on a full disk"
            );
        }
        // Space again: writes work (control).
        std::fs::remove_file(mnt.join("fill")).unwrap();
        let (status, body) = issue(&s, &token, "freed.mesh.local").await;
        println!("space again: {status}");
        assert_eq!(status, 200, "space again, no restart: {body}");
        acked.push(body["serial_number"].as_str().unwrap().to_owned());
        s.server.shutdown().await;

        // A restart opens the store; every acknowledged write is there; writes work.
        let s = start_on(&data).await;
        let store = &s.server.state().store;
        for serial in &acked {
            let found = store.get(&format!("serve.certs.{serial}")).await;
            assert!(
                found.unwrap().is_some(),
                "issuance {serial} lost after restart"
            );
        }
        let (status, body) = issue(&s, &token, "restarted.mesh.local").await;
        assert_eq!(status, 200, "{body}");
        acked.push(body["serial_number"].as_str().unwrap().to_owned());
        s.server.shutdown().await;

        // Read-only: refused at start with an error naming the directory.
        mount(&["-o", "remount,ro", mnt.to_str().unwrap()]);
        let e = match anchorage_serve::Server::start(config(&data)).await {
            Ok(_) => panic!("serve started on a read-only data directory"),
            Err(e) => error_chain(&e),
        };
        println!("read-only: {e}");
        assert!(
            e.contains("Read-only file system") || e.contains("read-only"),
            "{e}"
        );
        // Writable again: everything is there.
        mount(&["-o", "remount,rw", mnt.to_str().unwrap()]);
        let s = start_on(&data).await;
        let store = &s.server.state().store;
        for serial in &acked {
            let found = store.get(&format!("serve.certs.{serial}")).await;
            assert!(found.unwrap().is_some(), "issuance {serial} lost");
        }
        s.server.shutdown().await;
        println!("{} acknowledged issuances kept", acked.len());
    });
}

#[test]
fn the_embedded_store_on_a_full_and_a_read_only_disk() {
    let dir = tempfile::tempdir().unwrap();
    let Some((stdout, stderr)) = small_disk::run_child("disk_child", CHILD_DIR, dir.path()) else {
        return;
    };
    for line in stdout.lines().filter(|l| {
        l.contains("disk full:")
            || l.starts_with("space again")
            || l.starts_with("read-only")
            || l.contains("acknowledged")
    }) {
        println!("{line}");
    }
    // The server's log says why writes failed (the client sees `store_unavailable`).
    let reason = stderr
        .lines()
        .find(|l| l.contains("store error") && l.contains("No space left on device"));
    assert!(
        reason.is_some(),
        "no store error naming ENOSPC in the log:\n{stderr}"
    );
    println!("log: {}", reason.unwrap_or_default());
}

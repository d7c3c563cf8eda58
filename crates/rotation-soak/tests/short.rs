//! The CI short form of the root-rotation soak (issue 16), each under 2 minutes: the naive
//! procedure (replace the root, restart serve) must show failed handshakes — the negative
//! control that proves the harness sees an outage — and the anchorage procedure must show none.
//!
//! Real processes: the `anchorage` binary (built here when missing), 8 agents, openssl
//! s_server/s_client and the harness's rustls peers, all on loopback.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test helpers; the soak's progress shown on failure

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anchorage_test_support::peer;
use serde_json::Value;

/// One soak at a time: each one loads both cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `anchorage` binary beside this package's binary, built when missing.
fn anchorage() -> PathBuf {
    let soak = PathBuf::from(env!("CARGO_BIN_EXE_rotation-soak"));
    let bin = soak.with_file_name("anchorage");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "anchorage"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p anchorage");
    }
    assert!(
        bin.is_file(),
        "{} after cargo build -p anchorage",
        bin.display()
    );
    bin
}

/// Runs the short soak; its exit code and JSON summary.
fn soak(procedure: &str) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_rotation-soak"))
        .args(["--procedure", procedure, "--short", "--output", "json"])
        .arg("--anchorage")
        .arg(anchorage())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); exit {:?}", out.status.code()));
    (out.status.code(), summary)
}

#[test]
fn naive_rotation_fails_handshakes() {
    if peer::require("openssl").is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (code, s) = soak("naive");
    assert!(
        s["failed"].as_u64().unwrap() > 0,
        "no failed handshake: {s:#}"
    );
    assert!(s["handshakes"].as_u64().unwrap() > 1000, "{s:#}");
    // Failed after the rotation only: the warm-up (same harness, same load) had none.
    assert_eq!(s["phases"][0]["name"], "warmup");
    assert_eq!(s["phases"][0]["failed"], 0, "{s:#}");
    assert_eq!(code, Some(0), "{s:#}");
}

#[test]
fn anchorage_rotation_fails_no_handshake() {
    if peer::require("openssl").is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (code, s) = soak("anchorage");
    assert!(s["procedure_error"].is_null(), "{s:#}");
    assert_eq!(s["procedure_notes"]["final_phase"], "done", "{s:#}");
    assert_eq!(s["failed"], 0, "{s:#}");
    assert!(s["handshakes"].as_u64().unwrap() > 1000, "{s:#}");
    // Not vacuous: every agent's files moved from the old root to the new one alone.
    let before = s["installed_before"]["bundle_roots"].as_object().unwrap();
    let after = s["installed_after"]["bundle_roots"].as_object().unwrap();
    assert_eq!(after.len(), 1, "{s:#}");
    assert!(before.keys().all(|k| !after.contains_key(k)), "{s:#}");
    assert_eq!(after.values().next().unwrap(), 8, "{s:#}");
    let issuers = s["installed_after"]["leaf_issuers"].as_object().unwrap();
    assert_eq!(issuers.len(), 1, "{s:#}");
    assert_eq!(code, Some(0), "{s:#}");
}

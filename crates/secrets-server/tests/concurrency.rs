//! The server under load and under stop, against a store wrapped to count the calls in flight:
//! the `max_in_flight` bound is reached and never exceeded, every answer is the right value, a
//! stop lets the requests blocked in the store finish and takes no new one, and a nats-server
//! restart on the same port is survived (requests during the outage fail, they do not hang).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret, XKey};
use anchorage_secrets_server::{
    EmbeddedSecrets, Keyring, MappingStore, RotationReport, SecretStore, ServerConfig, StoreFailure,
};
use anchorage_store::MemoryStore;
use anchorage_test_support::peer::{free_port, require, wait_for_port};
use async_trait::async_trait;
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use secrecy::SecretString;
use tokio::sync::watch;

/// A [`SecretStore`] that counts the `get`s in flight (and the highest count seen), holds each
/// one for `delay`, and, while `gate` is closed (`false`), until it opens.
struct Gauge {
    inner: Arc<EmbeddedSecrets>,
    delay: Duration,
    gate: watch::Receiver<bool>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

impl Gauge {
    fn new(inner: Arc<EmbeddedSecrets>, delay: Duration, gate: watch::Receiver<bool>) -> Self {
        Self {
            inner,
            delay,
            gate,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl SecretStore for Gauge {
    fn kind(&self) -> &'static str {
        "gauge"
    }
    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        let found = self.inner.get(lookup).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        found
    }
    async fn put(&self, key: &str, value: SecretValue) -> Result<String, StoreFailure> {
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreFailure> {
        self.inner.delete(key).await
    }
    async fn keys(&self) -> Result<Vec<String>, StoreFailure> {
        self.inner.keys().await
    }
    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        self.inner.reencrypt().await
    }
}

struct Fixture {
    ids: Arc<Identities>,
    store: Arc<EmbeddedSecrets>,
    seed: SecretString,
}

async fn fixture() -> Fixture {
    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    let ids = Identities::new();
    for (key, value) in [
        ("db-password", SecretValue::String("old".to_owned().into())),
        (
            "db-password",
            SecretValue::String("hunter2".to_owned().into()),
        ),
        (
            "tls-key",
            SecretValue::Binary(vec![0u8, 1, 254, 255].into()),
        ),
    ] {
        store.put(key, value).await.unwrap();
    }
    let names = ["db-password", "tls-key"].map(str::to_owned);
    store.add_mapping(&ids.entity(), &names).await.unwrap();
    Fixture {
        ids: Arc::new(ids),
        store,
        seed: XKey::generate().seed(),
    }
}

type Answer = Result<(Option<String>, Option<Vec<u8>>, String), String>;

/// What request `i` of a burst must get back: even ones the string, odd ones the bytes.
fn expected(i: usize) -> Answer {
    if i.is_multiple_of(2) {
        Ok((Some("hunter2".to_owned()), None, "2".to_owned()))
    } else {
        Ok((None, Some(vec![0u8, 1, 254, 255]), "1".to_owned()))
    }
}

/// `n` concurrent gets; the answers in request order.
async fn burst(url: &str, ids: &Arc<Identities>, n: usize) -> Vec<Answer> {
    let c = Arc::new(client(url).await);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, ids) = (c.clone(), ids.clone());
            tokio::spawn(async move {
                let key = if i.is_multiple_of(2) {
                    "db-password"
                } else {
                    "tls-key"
                };
                get(&c, ids.request(key, None)).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// Runs 64 concurrent gets against a server allowing `limit` in flight, the store holding each
/// for 100 ms; checks every answer and returns the most gets the store saw at once.
async fn peak_with_limit(nats: &str, f: &Fixture, limit: usize) -> usize {
    let (_open, gate) = watch::channel(true);
    let gauge = Arc::new(Gauge::new(
        f.store.clone(),
        Duration::from_millis(100),
        gate,
    ));
    let mut config = ServerConfig::new(PREFIX, BACKEND);
    config.max_in_flight = limit;
    // 64 requests 4 at a time, 100 ms each: the last wait well over the default queue wait
    // (2 s), past which they would be answered busy; here every one must be served.
    config.max_queue_wait = Duration::from_secs(60);
    let server = serve(nats, &f.seed, gauge.clone(), f.store.clone(), config).await;
    let answers = burst(nats, &f.ids, 64).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, expected(i), "request {i}");
    }
    assert_eq!(
        gauge.calls.load(Ordering::SeqCst),
        64,
        "each get reached the store once"
    );
    assert_eq!(gauge.in_flight.load(Ordering::SeqCst), 0);
    server.stop().await;
    gauge.peak.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_is_reached_never_exceeded_and_every_answer_is_right() {
    let Some(nats) = anchorage_test_support::nats::NatsServer::start() else {
        return;
    };
    let f = fixture().await;
    // The bound: 64 requests waiting, 4 at a time in the store, never a fifth.
    assert_eq!(peak_with_limit(&nats.url(), &f, 4).await, 4);
    // Negative control: the gauge does see more than 4 at once when the server allows it, so
    // the exact 4 above is the server's bound, not the client's or the gauge's.
    // (More than 4 and never over 16: how close to 16 it gets depends on how fast the client's
    // requests arrive on a loaded machine, so that is not pinned.)
    let wider = peak_with_limit(&nats.url(), &f, 16).await;
    assert!((5..=16).contains(&wider), "peak {wider} with a bound of 16");
}

/// Requests a server xkey until nobody answers (the server unsubscribed); panics after 10 s.
async fn wait_until_unsubscribed(nc: &async_nats::Client) {
    let subject = format!("{PREFIX}.v1alpha1.{BACKEND}.server_xkey");
    let start = Instant::now();
    loop {
        match nc.request(subject.clone(), "".into()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return,
            _ if start.elapsed() > Duration::from_secs(10) => panic!("still subscribed"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Starts three gets that block in the store, stops the server and returns (whether the stop
/// finished while they were still blocked, their answers, the store's calls, the answer of a
/// get made during the stop).
async fn stop_with_blocked_requests(drain: Duration) -> Option<(bool, Vec<Answer>, usize, Answer)> {
    let nats = anchorage_test_support::nats::NatsServer::start()?;
    let url = nats.url();
    let f = fixture().await;
    let (open, gate) = watch::channel(false);
    let gauge = Arc::new(Gauge::new(f.store.clone(), Duration::ZERO, gate));
    let mut config = ServerConfig::new(PREFIX, BACKEND);
    config.max_in_flight = 8;
    config.drain_timeout = drain;
    let server = serve(&url, &f.seed, gauge.clone(), f.store.clone(), config).await;
    let blocked = {
        let (url, ids) = (url.clone(), f.ids.clone());
        tokio::spawn(async move { burst(&url, &ids, 3).await })
    };
    let start = Instant::now();
    while gauge.in_flight.load(Ordering::SeqCst) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "gets never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // (The client asks for the server key when made: made before the stop.)
    let late_client = client(&url).await;
    let stopping = tokio::spawn(server.stop());
    let nc = async_nats::connect(&url).await.unwrap();
    wait_until_unsubscribed(&nc).await;
    // A get while stopping: not taken (nobody answers), and the store never sees it.
    let late = get(&late_client, f.ids.request("db-password", None)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_while_blocked = stopping.is_finished();
    open.send(true).unwrap();
    let answers = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the blocked gets were answered")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the stop finished")
        .unwrap();
    Some((
        stopped_while_blocked,
        answers,
        gauge.calls.load(Ordering::SeqCst),
        late,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_requests_blocked_in_the_store_and_takes_no_new_ones() {
    let Some((stopped_early, answers, calls, late)) =
        stop_with_blocked_requests(Duration::from_secs(30)).await
    else {
        return;
    };
    assert!(!stopped_early, "the stop waited for the blocked requests");
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, expected(i), "blocked request {i}");
    }
    assert_eq!(
        calls, 3,
        "the get made while stopping never reached the store"
    );
    assert_eq!(
        late.unwrap_err(),
        "failed to send secret request: no responders: no responders",
        "a get while stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_short_drain_timeout_stops_with_requests_still_blocked() {
    let Some((stopped_early, answers, calls, _)) =
        stop_with_blocked_requests(Duration::from_millis(100)).await
    else {
        return;
    };
    // The same observation that passed above fails here: the stop did not wait.
    assert!(stopped_early, "the stop gave up after the drain timeout");
    // The requests were still answered (their tasks outlive the serve loop), once released.
    assert_eq!(answers.len(), 3);
    assert_eq!(calls, 3);
}

/// `nats-server` (core NATS only; the embedded store needs no JetStream) on a fixed port.
fn nats_on(port: u16) -> Child {
    let binary = require("nats-server").expect("nats-server");
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    wait_for_port(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        &mut child,
        Duration::from_secs(20),
    );
    child
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_on_the_same_port_is_survived_and_the_outage_fails_fast() {
    if require("nats-server").is_none() {
        return;
    }
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut nats = Killed(nats_on(port));
    let f = fixture().await;
    let server = serve(
        &url,
        &f.seed,
        f.store.clone(),
        f.store.clone(),
        ServerConfig::new(PREFIX, BACKEND),
    )
    .await;
    let c = client(&url).await;
    let good = || async { get(&c, f.ids.request("db-password", None)).await };
    assert_eq!(good().await, expected(0), "before the outage");

    // The outage: a get fails with the client's timeout, it does not hang.
    nats.0.kill().unwrap();
    nats.0.wait().unwrap();
    let start = Instant::now();
    let during = tokio::time::timeout(Duration::from_secs(30), good())
        .await
        .expect("a get during the outage must fail, not hang");
    assert_eq!(
        during.unwrap_err(),
        "failed to send secret request: request timed out: deadline has elapsed"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );

    // The same port again: the server's subscription comes back and serves.
    let _restarted = Killed(nats_on(port));
    let start = Instant::now();
    let after = loop {
        let answer = tokio::time::timeout(Duration::from_secs(15), good()).await;
        match answer {
            Ok(Ok(found)) => break Ok(found),
            _ if start.elapsed() > Duration::from_secs(60) => break answer.unwrap(),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(after, expected(0), "after the restart");
    server.stop().await;
}

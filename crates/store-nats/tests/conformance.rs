//! The store contract (`anchorage_store::conformance`) on a real `nats-server -js`, as
//! `MemoryStore` and `EmbeddedStore` run it; plus what is JetStream's own: bucket creation with
//! replicas on a single server, the per-call timeout, values kept out of errors and `Debug`.

use std::time::{Duration, Instant};

use anchorage_store::{Store as _, StoreError, conformance};
use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig};
use anchorage_test_support::nats::NatsServer;

async fn open(server: &NatsServer, config: &JetStreamStoreConfig) -> JetStreamStore {
    let client = async_nats::connect(server.url()).await.expect("connect");
    JetStreamStore::open(client, config)
        .await
        .expect("open the bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_direct_and_leader_reads() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let t = Instant::now();
    let store = open(&server, &JetStreamStoreConfig::new("direct")).await;
    conformance::exercise(&store).await;
    let mut consistent = JetStreamStoreConfig::new("leader");
    consistent.consistent_reads = true;
    let store = open(&server, &consistent).await;
    conformance::exercise(&store).await;
    eprintln!("contract on nats-server: {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_change_across_clients() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    // The waiter and the writer are two connections, as two instances would be.
    let config = JetStreamStoreConfig::new("wait");
    let waiter = open(&server, &config).await;
    let writer = open(&server, &config).await;
    conformance::wait_for_change(&waiter, &writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_gets_one_replica_and_reopens_as_it_is() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let store = open(&server, &JetStreamStoreConfig::default()).await;
    // Automatic: three asked for, refused on one server, so one, and said why.
    let choice = store.replicas();
    assert!(choice.automatic && choice.replicas == 1, "{choice:?}");
    assert!(choice.reason.contains("refused"), "{choice:?}");
    let report = store.report();
    assert!(
        report.created && report.replicas == 1 && report.history == 1,
        "{report}"
    );
    assert!(!report.under_replicated(), "{report}");
    store.put("k", b"v".to_vec()).await.unwrap();
    // Reopened: existing, same data; three configured but one there: reported with the fix.
    let config = JetStreamStoreConfig {
        replicas: Some(3),
        ..Default::default()
    };
    let again = open(&server, &config).await;
    assert!(!again.report().created);
    assert!(again.report().under_replicated(), "{}", again.report());
    assert!(
        again
            .report()
            .to_string()
            .contains("nats stream edit KV_anchorage --replicas 3"),
        "{}",
        again.report()
    );
    assert_eq!(again.get("k").await.unwrap().unwrap().value, b"v");

    // A missing bucket with create off fails, naming it.
    let mut missing = JetStreamStoreConfig::new("absent");
    missing.create = false;
    let client = async_nats::connect(server.url()).await.unwrap();
    let err = JetStreamStore::open(client, &missing).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend { bucket, action: "open the bucket", .. } if bucket == "absent"),
        "{err:?}"
    );
    // An invalid configuration fails before any request.
    let client = async_nats::connect(server.url()).await.unwrap();
    let err = JetStreamStore::open(client, &JetStreamStoreConfig::new("a.b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Config {
                what: "bucket name",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The server gone: every call fails within the timeout (not the client's own, longer ones)
/// with an error naming the bucket, the key and what to check, and never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_with_the_bucket_and_key_when_the_server_is_gone() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut config = JetStreamStoreConfig::new("gone");
    config.timeout = Duration::from_millis(500);
    let store = open(&server, &config).await;
    store.put("ca.key", b"hunter2".to_vec()).await.unwrap();
    // Control: with the server up, the calls answer.
    assert!(store.get("ca.key").await.unwrap().is_some());
    drop(server);

    let t = Instant::now();
    let err = store.put("ca.key", b"hunter2".to_vec()).await.unwrap_err();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(err.is_unavailable(), "{err:?}");
    let shown = err.to_string();
    for needle in ["\"gone\"", "\"ca.key\"", "nats stream info KV_gone"] {
        assert!(shown.contains(needle), "{needle}: {shown}");
    }
    if err.is_timeout() {
        assert!(
            shown.contains("may or may not have been applied"),
            "{shown}"
        );
    }
    assert!(!shown.contains("hunter2") && !format!("{err:?}").contains("hunter2"));

    for (what, call) in [
        (
            "get",
            Box::pin(async { store.get("ca.key").await.map(drop) })
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>,
                >,
        ),
        ("keys", Box::pin(async { store.keys("").await.map(drop) })),
        (
            "create",
            Box::pin(async { store.create("x", b"v".to_vec()).await.map(drop) }),
        ),
        (
            "update",
            Box::pin(async { store.update("x", b"v".to_vec(), 3).await.map(drop) }),
        ),
        (
            "delete",
            Box::pin(async { store.delete("x", Some(3)).await }),
        ),
        (
            "wait",
            Box::pin(async {
                store
                    .wait_for_change("x", 0, Duration::from_secs(30))
                    .await
                    .map(drop)
            }),
        ),
    ] {
        let t = Instant::now();
        let err = call.await.unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            t.elapsed()
        );
        assert!(
            err.is_unavailable() && err.to_string().contains("\"gone\""),
            "{what}: {err}"
        );
    }
    assert!(!format!("{store:?}").contains("hunter2"));
}

/// Fifty long polls on one key (a trust bundle's) hold one consumer, not fifty, and one write
/// answers them all; the consumer goes with the last waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_one_key_share_one_consumer() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let config = JetStreamStoreConfig::new("shared");
    let waiter = open(&server, &config).await;
    let writer = open(&server, &config).await;
    let r1 = writer.put("bundle", b"v1".to_vec()).await.unwrap();
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let store = waiter.clone();
            tokio::spawn(async move {
                store
                    .wait_for_change("bundle", r1, Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(waiter.watched_keys(), 1);
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("KV_shared")
        .await
        .unwrap();
    let consumers = stream.info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, 1, "one consumer for fifty waiters");

    let t = Instant::now();
    let r2 = writer.put("bundle", b"v2".to_vec()).await.unwrap();
    for waiting in waiters {
        let entry = waiting.await.unwrap().unwrap().expect("woken by the write");
        assert_eq!((entry.revision, entry.value.as_slice()), (r2, &b"v2"[..]));
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(waiter.watched_keys(), 0, "the watch outlived its waiters");
}

//! Several instances on one shared store (as with JetStream KV; here an in-memory store shared
//! in-process, through `common::shared_instances`, which a JetStream cluster test runs with one
//! store per instance): one CA, one token key, issuance through any instance with no serial
//! issued twice, revocations and acks made through one seen by the others; and the graceful
//! drain.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_store::{MemoryStore, Store};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_ca_tokens_serials_revocations_and_acks() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    shared_instances(vec![Arc::clone(&store), store], 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_then_refuses_connections() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let addr = s.server.serving().addr;
    // A long-poll in flight answers (304) when shutdown begins rather than holding the drain.
    let poll = {
        let (client, url) = (s.client.clone(), s.url.clone());
        tokio::spawn(async move {
            let resp = client
                .get(format!("{url}/v1/bundle?wait=25"))
                .header("if-none-match", "\"1\"")
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    s.server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(poll.await.unwrap(), 304);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The store is closed: the data directory opens again.
    let again = start(dir.path()).await;
    assert_eq!(again.call("GET", "/readyz", None, None).await.0, 200);
    again.server.shutdown().await;
}

//! Several instances on one shared store (as with JetStream KV; here an in-memory store shared
//! in-process): one CA, one token key, issuance through any instance with no serial issued
//! twice, revocations and acks made through one seen by the other; and the graceful drain.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_serve::StoreChoice;
use anchorage_store::{MemoryStore, Store};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_ca_tokens_serials_revocations_and_acks() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = config(d1.path());
    c1.store = StoreChoice::Shared(Arc::clone(&store));
    c1.roles = vec![role_struct()];
    let mut c2 = config(d2.path());
    c2.store = StoreChoice::Shared(Arc::clone(&store));
    let a = start_with(c1).await;
    let b = start_with(c2).await;
    assert!(a.server.serving().ca_created);
    assert!(!b.server.serving().ca_created);
    assert_eq!(a.ca_pem, b.ca_pem);

    // A token minted through A works on B; a one-time token used on A is refused on B.
    let t = a.role_token().await;
    assert_eq!(
        b.call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "x.mesh.local"}))
        )
        .await
        .0,
        200
    );
    let ott = a.ott("y.mesh.local", "/v1/issue").await;
    assert_eq!(
        a.call(
            "POST",
            "/v1/issue",
            Some(&ott),
            Some(json!({"common_name": "y.mesh.local"}))
        )
        .await
        .0,
        200
    );
    let (status, answer) = b
        .call(
            "POST",
            "/v1/issue",
            Some(&ott),
            Some(json!({"common_name": "y.mesh.local"})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (401, "token_replayed"));

    // Concurrent issuance through both: every serial distinct, every one recorded.
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (client, url) = if i % 2 == 0 {
            (a.client.clone(), a.url.clone())
        } else {
            (b.client.clone(), b.url.clone())
        };
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = call_with(
                &client,
                &url,
                "POST",
                "/v1/issue",
                Some(&t),
                Some(json!({"common_name": format!("n{i}.mesh.local")})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["serial_number"].as_str().unwrap().to_owned()
        }));
    }
    let mut serials = HashSet::new();
    for task in tasks {
        assert!(
            serials.insert(task.await.unwrap()),
            "a serial was issued twice"
        );
    }
    let recorded = store.keys("serve.certs.").await.unwrap();
    for s in &serials {
        assert!(recorded.contains(&format!("serve.certs.{s}")));
    }

    // A revocation through A is in B's CRL within 2 s.
    let serial = serials.iter().next().unwrap().clone();
    let started = Instant::now();
    assert_eq!(
        a.call(
            "POST",
            "/v1/revoke",
            Some(&a.admin),
            Some(json!({"serial": serial}))
        )
        .await
        .0,
        200
    );
    loop {
        let pem = b
            .client
            .get(format!("{}/v1/crl?format=pem", b.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        use x509_parser::prelude::FromDer as _;
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&p.contents).unwrap();
        if crl
            .iter_revoked_certificates()
            .any(|r| r.raw_serial_as_string().replace(':', "") == serial)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "revocation not in B's CRL after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An ack through B is listed by A; a CA added through A reaches B's long-poll.
    assert_eq!(
        b.call(
            "POST",
            "/v1/acks",
            Some(&t),
            Some(json!({"consumer": "node-b", "bundle_version": 1}))
        )
        .await
        .0,
        200
    );
    let (_, list) = a.call("GET", "/v1/consumers", Some(&a.admin), None).await;
    assert_eq!(list["consumers"][0]["consumer"], "node-b");
    let waiter = {
        let (client, url) = (b.client.clone(), b.url.clone());
        tokio::spawn(async move {
            client
                .get(format!("{url}/v1/bundle?wait=10"))
                .header("if-none-match", "\"1\"")
                .send()
                .await
                .unwrap()
                .headers()["etag"]
                .to_str()
                .unwrap()
                .to_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions {
        common_name: "Extra".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        a.call(
            "POST",
            "/v1/bundle/cas",
            Some(&a.admin),
            Some(json!({"add": extra.root().to_pem()}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap(),
        "\"2\""
    );
    a.server.shutdown().await;
    b.server.shutdown().await;
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

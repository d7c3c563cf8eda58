//! The API over NATS request/reply against a real `nats-server`: issue and sign with the same
//! tokens as HTTPS, refusals with the same codes (and the status in `Anchorage-Status`), the
//! bundle with its ETag, unknown operations; an issuance over NATS is seen over HTTPS.
#![allow(clippy::unwrap_used)]

mod common;

use anchorage_serve::nats::{NatsApi, STATUS_HEADER};
use anchorage_test_support::nats::NatsServer;
use common::*;
use serde_json::{Value, json};

async fn request(
    client: &async_nats::Client,
    op: &str,
    token: Option<&str>,
    body: Value,
) -> (String, Value, async_nats::HeaderMap) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(t) = token {
        headers.insert("Authorization", format!("Bearer {t}").as_str());
    }
    let reply = client
        .request_with_headers(
            format!("anchorage.v1.{op}"),
            headers,
            body.to_string().into(),
        )
        .await
        .unwrap();
    let h = reply.headers.clone().unwrap();
    let status = h.get(STATUS_HEADER).unwrap().as_str().to_owned();
    let value = serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.payload).into_owned()));
    (status, value, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_nats_request_reply() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.nats = Some(NatsApi::new(client.clone()));
    config.roles = vec![role_struct()];
    let s = start_with(config).await;
    let token = s.role_token().await;

    let (status, body, _) = request(
        &client,
        "issue",
        Some(&token),
        json!({"common_name": "lattice.mesh.local"}),
    )
    .await;
    assert_eq!(status, "200", "{body}");
    let serial = body["serial_number"].as_str().unwrap().to_owned();
    assert!(
        s.server
            .state()
            .store
            .get(&format!("serve.certs.{serial}"))
            .await
            .unwrap()
            .is_some()
    );

    // A CSR with a one-time token whose audience is the sign endpoint.
    let (pem, _) = csr("host.mesh.local", &[], anchorage_ca::KeyType::Ed25519);
    let ott = s.ott("host.mesh.local", "/v1/sign").await;
    let (status, body, _) = request(&client, "sign", Some(&ott), json!({"csr": pem})).await;
    assert_eq!(status, "200", "{body}");
    let (status, body, _) = request(&client, "sign", Some(&ott), json!({"csr": pem})).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "token_replayed")
    );

    // Refusals carry the same codes.
    let (status, body, _) = request(
        &client,
        "issue",
        None,
        json!({"common_name": "x.mesh.local"}),
    )
    .await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "token_missing")
    );
    let (status, body, _) = request(
        &client,
        "issue",
        Some(&token),
        json!({"common_name": "x.evil.com"}),
    )
    .await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("403", "role_refused")
    );
    let (status, body, _) = request(&client, "nope", None, json!({})).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("404", "route_unknown")
    );

    // The bundle, with its ETag; a read's body is its query parameters.
    let (status, body, h) = request(&client, "bundle", None, json!({"format": "pem"})).await;
    assert_eq!(status, "200");
    assert_eq!(h.get("ETag").unwrap().as_str(), "\"1\"");
    assert!(body.as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let (status, body, _) = request(&client, "bundle", None, json!({"format": "exe"})).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("400", "format_unknown")
    );
    let (status, _, _) = request(&client, "health", None, json!({})).await;
    assert_eq!(status, "200");

    // An ack over NATS is listed over HTTPS.
    let (status, _, _) = request(
        &client,
        "acks",
        Some(&token),
        json!({"consumer": "wasm-host-1", "bundle_version": 1}),
    )
    .await;
    assert_eq!(status, "200");
    let (_, list) = s.call("GET", "/v1/consumers", Some(&s.admin), None).await;
    assert_eq!(list["consumers"][0]["consumer"], "wasm-host-1");

    // Root rotation over NATS (op `rotation`): admin only; status, then start.
    let (status, _, _) = request(
        &client,
        "rotation",
        Some(&token),
        json!({"action": "status"}),
    )
    .await;
    assert_eq!(status, "403", "a role token cannot drive a rotation");
    let (status, body, _) = request(
        &client,
        "rotation",
        Some(&s.admin),
        json!({"action": "status"}),
    )
    .await;
    assert_eq!(status, "200", "{body}");
    assert_eq!(body["phase"], "idle");
    let (status, body, _) = request(
        &client,
        "rotation",
        Some(&s.admin),
        json!({"action": "start"}),
    )
    .await;
    assert_eq!(status, "200", "{body}");
    assert_eq!(body["phase"], "staged");
    let (_, over_https) = s.call("GET", "/v1/rotation", Some(&s.admin), None).await;
    assert_eq!(over_https["id"], body["id"]);
    s.server.shutdown().await;
}

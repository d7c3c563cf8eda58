//! NATS identity for the request/reply API against a real `nats-server`: a request signed with
//! a configured nkey is served under its mapped role (issue within the role, refused outside
//! it, admin only for an admin identity); a wrong nkey, a tampered body, a replayed request
//! (same nonce, also to another reply subject), a stale timestamp, a token plus a signature,
//! and a forged internal identity are each refused with a stable code, and nothing is issued.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anchorage_serve::nats::{NatsApi, STATUS_HEADER};
use anchorage_serve::nats_auth::{NatsIdentity, sign_headers, signed_request};
use anchorage_test_support::nats::NatsServer;
use common::*;
use futures::StreamExt as _;
use serde_json::{Value, json};

fn parse(message: &async_nats::Message) -> (String, Value) {
    let status = message
        .headers
        .as_ref()
        .unwrap()
        .get(STATUS_HEADER)
        .unwrap()
        .as_str()
        .to_owned();
    let body = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
    (status, body)
}

/// Publishes `payload` with `headers` on `subject`, replies to `inbox`; the answer.
async fn raw(
    client: &async_nats::Client,
    subject: &str,
    inbox: &str,
    headers: async_nats::HeaderMap,
    payload: &[u8],
) -> (String, Value) {
    let mut sub = client.subscribe(inbox.to_owned()).await.unwrap();
    client
        .publish_with_reply_and_headers(
            subject.to_owned(),
            inbox.to_owned(),
            headers,
            payload.to_vec().into(),
        )
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    parse(&m)
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_nkey_requests_map_to_roles_and_refusals_are_precise() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let controller = nkeys::KeyPair::new_user();
    let operator = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let mut api = NatsApi::new(client.clone());
    api.identities.insert(
        controller.public_key(),
        NatsIdentity::role("mesh", "mesh-controller"),
    );
    api.identities
        .insert(operator.public_key(), NatsIdentity::admin("operator"));
    config.nats = Some(api);
    config.roles = vec![role_struct()];
    let s = start_with(config).await;
    let wait = Duration::from_secs(10);
    let issue = |cn: &str| json!({"common_name": cn}).to_string().into_bytes();

    // The role identity issues within its role, with no token.
    let m = signed_request(
        &client,
        &controller,
        "anchorage.v1.issue",
        issue("web.mesh.local").into(),
        None,
        wait,
    )
    .await
    .unwrap();
    let (status, body) = parse(&m);
    assert_eq!(status, "200", "{body}");
    assert!(body["certificate"].as_str().unwrap().contains("BEGIN"));
    // Outside the role: refused with the rule it broke (the role applies).
    let m = signed_request(
        &client,
        &controller,
        "anchorage.v1.issue",
        issue("evil.example.com").into(),
        None,
        wait,
    )
    .await
    .unwrap();
    let (status, body) = parse(&m);
    assert_eq!(status, "403", "{body}");
    // Admin-only operations: refused for the role identity, served for the admin identity.
    let token_body = json!({"kind": "role", "sub": "x", "role": "mesh"}).to_string();
    let m = signed_request(
        &client,
        &controller,
        "anchorage.v1.tokens",
        token_body.clone().into(),
        None,
        wait,
    )
    .await
    .unwrap();
    let (status, body) = parse(&m);
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("403", "admin_required")
    );
    let m = signed_request(
        &client,
        &operator,
        "anchorage.v1.tokens",
        token_body.into(),
        None,
        wait,
    )
    .await
    .unwrap();
    let (status, body) = parse(&m);
    assert_eq!(status, "200", "{body}");

    let before = s
        .server
        .state()
        .store
        .keys("serve.certs.")
        .await
        .unwrap()
        .len();

    // A wrong nkey: a key serve does not know, signing correctly.
    let m = signed_request(
        &client,
        &stranger,
        "anchorage.v1.issue",
        issue("a.mesh.local").into(),
        None,
        wait,
    )
    .await
    .unwrap();
    let (status, body) = parse(&m);
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_unknown")
    );

    // The controller's public key with the stranger's signature.
    let inbox = client.new_inbox();
    let payload = issue("b.mesh.local");
    let mut headers = sign_headers(
        &stranger,
        "anchorage.v1.issue",
        &inbox,
        &payload,
        None,
        now(),
    )
    .unwrap();
    headers.insert("Anchorage-Nkey", controller.public_key().as_str());
    let (status, body) = raw(&client, "anchorage.v1.issue", &inbox, headers, &payload).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_signature_invalid")
    );

    // A body changed after signing.
    let inbox = client.new_inbox();
    let headers = sign_headers(
        &controller,
        "anchorage.v1.issue",
        &inbox,
        &issue("c.mesh.local"),
        None,
        now(),
    )
    .unwrap();
    let (status, body) = raw(
        &client,
        "anchorage.v1.issue",
        &inbox,
        headers,
        &issue("d.mesh.local"),
    )
    .await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_signature_invalid")
    );

    // Signed for one operation, sent on another.
    let inbox = client.new_inbox();
    let headers = sign_headers(
        &operator,
        "anchorage.v1.consumers",
        &inbox,
        b"",
        None,
        now(),
    )
    .unwrap();
    let (status, body) = raw(&client, "anchorage.v1.revoke", &inbox, headers, b"").await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_signature_invalid")
    );

    // A replay: the same signed request sent again, to the same reply subject and to another.
    let inbox = client.new_inbox();
    let payload = issue("e.mesh.local");
    let headers = sign_headers(
        &controller,
        "anchorage.v1.issue",
        &inbox,
        &payload,
        None,
        now(),
    )
    .unwrap();
    let (status, body) = raw(
        &client,
        "anchorage.v1.issue",
        &inbox,
        headers.clone(),
        &payload,
    )
    .await;
    assert_eq!(status, "200", "{body}");
    let (status, body) = raw(
        &client,
        "anchorage.v1.issue",
        &inbox,
        headers.clone(),
        &payload,
    )
    .await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_request_replayed")
    );
    let elsewhere = client.new_inbox();
    let (status, body) = raw(&client, "anchorage.v1.issue", &elsewhere, headers, &payload).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_signature_invalid")
    );

    // Signed too long ago (beyond the 60 s window).
    let inbox = client.new_inbox();
    let payload = issue("f.mesh.local");
    let headers = sign_headers(
        &controller,
        "anchorage.v1.issue",
        &inbox,
        &payload,
        None,
        now() - 120,
    )
    .unwrap();
    let (status, body) = raw(&client, "anchorage.v1.issue", &inbox, headers, &payload).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "nkey_request_expired")
    );

    // A token and a signature together.
    let inbox = client.new_inbox();
    let payload = issue("g.mesh.local");
    let mut headers = sign_headers(
        &controller,
        "anchorage.v1.issue",
        &inbox,
        &payload,
        None,
        now(),
    )
    .unwrap();
    headers.insert("Authorization", "Bearer x");
    let (status, body) = raw(&client, "anchorage.v1.issue", &inbox, headers, &payload).await;
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("400", "ambiguous_credentials")
    );

    // A forged internal identity as a bearer token: refused, over NATS and over HTTPS.
    let forged = "anchorage-nats-identity.eyJ0eXAiOiJhZG1pbiJ9.AAAA";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {forged}").as_str());
    let reply = client
        .request_with_headers("anchorage.v1.issue", headers, issue("h.mesh.local").into())
        .await
        .unwrap();
    let (status, body) = parse(&reply);
    assert_eq!(
        (status.as_str(), error_code(&body)),
        ("401", "token_invalid"),
        "{body}"
    );
    let (status, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(forged),
            Some(json!({"common_name": "h.mesh.local"})),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Nothing was issued by any refused request: one more issuance (e.mesh.local) only.
    let after = s
        .server
        .state()
        .store
        .keys("serve.certs.")
        .await
        .unwrap()
        .len();
    assert_eq!(after, before + 1);
}

//! The agent's NATS transport against a real `nats-server` and serve in-process with its API
//! on NATS: a short-lived identity is signed, renewed (a new CSR signed with the role token:
//! no mTLS over NATS) and acknowledged over NATS, with the trust bundle; and, as the negative
//! control, a bundle that parses to nothing, answered on NATS by a responder that is not serve,
//! is refused with the same refusal as over HTTPS and the installed files are kept.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use anchorage_agent::{Agent, AgentConfig, IdentityConfig, NatsSettings, Timing, read_status};
use anchorage_serve::nats::NatsApi;
use anchorage_serve::{Limits, ServeConfig, Server};
use anchorage_test_support::nats::NatsServer;
use futures::StreamExt as _;
use serde_json::json;

fn timing() -> Timing {
    Timing {
        wait: Duration::from_secs(20),
        heartbeat: Duration::from_secs(60),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_millis(800),
        stale_after: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        ..Timing::default()
    }
}

fn nats_agent(client: &async_nats::Client, prefix: &str, dir: &Path, token: &Path) -> AgentConfig {
    let mut config = AgentConfig::new("nats", "", "lattice-1", dir.join("status.json"));
    config.nats = Some(NatsSettings {
        client: client.clone(),
        prefix: prefix.to_owned(),
        nkey: None,
    });
    config.token_file = Some(token.to_owned());
    config.trust.pem = Some(dir.join("ca-bundle.pem"));
    config.timing = timing();
    config
}

async fn until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_signed_renewed_and_acked_over_nats_and_a_bad_bundle_refused() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let tmp = anchorage_test_support::tempdir().unwrap();
    let serve_dir = tmp.path().join("serve");
    let mut config = ServeConfig::new(&serve_dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits = Limits {
        drain_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    config.nats = Some(NatsApi::new(client.clone()));
    config.roles = vec![
        serde_json::from_value(json!({"name": "mesh", "allowed_domains": ["mesh.local"],
            "allow_subdomains": true, "allowed_kinds": ["service", "server", "client"],
            "key_types": ["p256"], "max_ttl_seconds": 60}))
        .unwrap(),
    ];
    let server = Server::start(config).await.unwrap();
    let token = anchorage_serve::mint_token(
        server.state().store.as_ref(),
        &anchorage_serve::TokenRequest {
            kind: anchorage_serve::TokenKind::Role,
            subject: "agents".into(),
            role: Some("mesh".into()),
            audience: String::new(),
            sans: vec![],
            ttl_seconds: None,
        },
    )
    .await
    .unwrap();
    let token_file = tmp.path().join("agent.token");
    std::fs::write(&token_file, token).unwrap();

    let dir = tmp.path().join("agent");
    let mut config = nats_agent(&client, "anchorage", &dir, &token_file);
    let mut id = IdentityConfig::in_dir("web.mesh.local", dir.join("id"));
    id.ttl = Some(Duration::from_secs(60));
    config.identity = Some(id.clone());
    config.timing.renew_fraction = 0.08;
    let status_file = config.status_file.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut agent = Agent::new(config).unwrap();
        agent
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    until(
        "the first certificate and ack",
        Duration::from_secs(10),
        || read_status(&status_file).is_ok_and(|s| s.last_ack.is_some() && s.cert_serial.is_some()),
    )
    .await;
    let first = read_status(&status_file).unwrap().cert_serial.unwrap();
    assert!(
        std::fs::read_to_string(dir.join("ca-bundle.pem"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // Renewed (at ~5 s of its 60 s) over NATS, and the new serial acknowledged there.
    until("the renewal", Duration::from_secs(15), || {
        read_status(&status_file)
            .is_ok_and(|s| s.cert_serial.as_deref().is_some_and(|c| c != first))
    })
    .await;
    let renewed = read_status(&status_file).unwrap().cert_serial.unwrap();
    let start = Instant::now();
    loop {
        let consumers = server.state().store.keys("serve.consumers.").await.unwrap();
        let mut found = false;
        for key in consumers {
            let value = server.state().store.get(&key).await.unwrap().unwrap().value;
            let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
            found |= v["cert_serial"].as_str() == Some(renewed.as_str());
        }
        if found {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the renewed serial was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(tx);
    handle.await.unwrap();

    // The negative control: a responder on another prefix answers the bundle with bytes that
    // hold no certificate; the agent refuses it and keeps its files.
    let mut fake = client.subscribe("fake.v1.bundle").await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(m) = fake.next().await {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Anchorage-Status", "200");
            h.insert("ETag", "\"99\"");
            if let Some(reply) = m.reply {
                let _ = responder
                    .publish_with_headers(reply, h, "not a certificate".into())
                    .await;
            }
        }
    });
    let before = std::fs::read(dir.join("ca-bundle.pem")).unwrap();
    let mut config = nats_agent(&client, "fake", &dir, &token_file);
    config.identity = None;
    let mut agent = Agent::new(config).unwrap();
    let outcome = agent.once().await.unwrap();
    assert!(outcome.refused.is_some(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.join("ca-bundle.pem")).unwrap(), before);
    server.shutdown().await;
}

/// With an nkey serve maps to a role (`--nats-identity`), the agent needs no token: its
/// requests are signed, the identity is issued and acknowledged. An nkey serve does not know
/// is refused (`nkey_unknown`) and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_identity_replaces_the_token_over_nats() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let tmp = anchorage_test_support::tempdir().unwrap();
    let agent_key = std::sync::Arc::new(nkeys::KeyPair::new_user());
    let mut config = ServeConfig::new(tmp.path().join("serve"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    let mut api = NatsApi::new(client.clone());
    api.identities.insert(
        agent_key.public_key(),
        anchorage_serve::nats_auth::NatsIdentity::role("mesh", "lattice-agents"),
    );
    config.nats = Some(api);
    config.roles = vec![
        serde_json::from_value(json!({"name": "mesh", "allowed_domains": ["mesh.local"],
            "allow_subdomains": true, "key_types": ["p256"], "max_ttl_seconds": 3600}))
        .unwrap(),
    ];
    let server = Server::start(config).await.unwrap();

    let dir = tmp.path().join("agent");
    let mut config = nats_agent(&client, "anchorage", &dir, Path::new("/nonexistent"));
    config.token_file = None;
    if let Some(n) = config.nats.as_mut() {
        n.nkey = Some(std::sync::Arc::clone(&agent_key));
    }
    config.identity = Some(IdentityConfig::in_dir("api.mesh.local", dir.join("id")));
    let mut agent = Agent::new(config.clone()).unwrap();
    let outcome = agent.once().await.unwrap();
    assert!(outcome.identity_changed && outcome.acked, "{outcome:?}");
    let status = read_status(&dir.join("status.json")).unwrap();
    let serial = status.cert_serial.unwrap();
    let mut acked = false;
    for key in server.state().store.keys("serve.consumers.").await.unwrap() {
        let value = server.state().store.get(&key).await.unwrap().unwrap().value;
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        acked |= v["cert_serial"].as_str() == Some(serial.as_str());
    }
    assert!(acked, "the nkey agent's ack was not recorded");

    // A key serve does not know.
    let other = tmp.path().join("other");
    let mut config = nats_agent(&client, "anchorage", &other, Path::new("/nonexistent"));
    config.token_file = None;
    if let Some(n) = config.nats.as_mut() {
        n.nkey = Some(std::sync::Arc::new(nkeys::KeyPair::new_user()));
    }
    config.identity = Some(IdentityConfig::in_dir("api.mesh.local", other.join("id")));
    let mut agent = Agent::new(config).unwrap();
    let err = agent.once().await.unwrap_err();
    assert!(
        matches!(&err, anchorage_agent::AgentError::Server { status: 401, code, .. } if code == "nkey_unknown"),
        "{err}"
    );
    assert!(
        !other.join("id").exists()
            || std::fs::read_dir(other.join("id"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!other.join("ca-bundle.pem").exists());
    server.shutdown().await;
}

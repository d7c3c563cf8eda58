//! Root rotation with real agents (`Agent::run` tasks) against a real serve started
//! in-process: the gates follow what the agents acknowledge, renewals are pulled forward
//! (`renew_before` in the ack answer) and rate-limited per consumer group (429 +
//! `Retry-After`, which the agents wait out), and a silent agent blocks the rotation, named in
//! the status, until it comes back.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_agent::{AgentConfig, IdentityConfig, Timing, read_status};
use anchorage_serve::rotation::RotationConfig;
use anchorage_serve::{ServeConfig, Server};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

mod common;
use common::{Serve, serve_config, spawn};

async fn start_serve(dir: &Path, rotation: RotationConfig) -> Serve {
    let mut config = serve_config(dir, "127.0.0.1:0");
    config.rotation = rotation;
    Serve::start(config).await
}

/// What these tests need of serve beyond `common`.
trait RotationCalls {
    async fn role_and_token_for_agents(&self, file: &Path);
    async fn rotation(&self) -> Value;
    async fn act(&self, body: Value) -> (u16, Value);
    async fn metric(&self, name: &str) -> u64;
}

impl RotationCalls for Serve {
    async fn role_and_token_for_agents(&self, file: &Path) {
        self.role_and_token(
            json!({"allowed_domains": ["mesh.local"], "allow_subdomains": true,
            "allowed_kinds": ["service"], "key_types": ["p256"]}),
            file,
        )
        .await;
    }

    async fn rotation(&self) -> Value {
        let (status, body) = self.call("GET", "/v1/rotation", None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn act(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/rotation", Some(body)).await
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn agent_config(serve: &Serve, name: &str, dir: &Path, token: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(
        &serve.url,
        serve.dir.join("ca.pem"),
        name,
        dir.join("status.json"),
    );
    config.token_file = Some(token.to_owned());
    config.labels.insert("zone".into(), "a".into());
    config.trust.pem = Some(dir.join("ca-bundle.pem"));
    let mut id = IdentityConfig::in_dir(format!("{name}.mesh.local"), dir.join("id"));
    // A day: without the rotation, no renewal would happen during the test.
    id.ttl = Some(Duration::from_secs(86_400));
    config.identity = Some(id);
    config.timing = Timing {
        wait: Duration::from_secs(20),
        heartbeat: Duration::from_secs(60),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_millis(800),
        stale_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..Timing::default()
    };
    config
}

async fn phase_until(serve: &Serve, want: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let status = serve.rotation().await;
        if status["phase"] == want && status["aborted_from"].is_null() {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for phase {want}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fingerprints(pem: &[u8]) -> Vec<String> {
    anchorage_x509::decode(pem)
        .certificates
        .iter()
        .map(|f| anchorage_serve::authority::root_fingerprint(&f.certificate))
        .collect()
}

fn rotation_config(rate_limit: u32) -> RotationConfig {
    RotationConfig {
        auto: true,
        interval: Duration::from_millis(300),
        lease_ttl: Duration::from_secs(2),
        min_dwell: Duration::ZERO,
        rate_limit,
        rate_window: Duration::from_secs(2),
        ..RotationConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_carry_a_rotation_to_done_with_renewals_pulled_forward_and_rate_limited() {
    let tmp = anchorage_test_support::tempdir().unwrap();
    // One renewal per 2 s for the group zone=a: three agents cannot all renew at once.
    let serve = start_serve(&tmp.path().join("serve"), rotation_config(1)).await;
    let token = tmp.path().join("agent.token");
    serve.role_and_token_for_agents(&token).await;
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let dir = tmp.path().join(format!("agent-{i}"));
        let config = agent_config(&serve, &format!("web-{i}"), &dir, &token);
        agents.push(spawn(config));
        dirs.push(dir);
    }
    let start = Instant::now();
    for dir in &dirs {
        loop {
            if read_status(&dir.join("status.json"))
                .is_ok_and(|s| s.last_ack.is_some() && s.cert_serial.is_some())
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(15), "agents start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let first: Vec<String> = dirs
        .iter()
        .map(|d| {
            read_status(&d.join("status.json"))
                .unwrap()
                .cert_serial
                .unwrap()
        })
        .collect();

    let (status, started) = serve.act(json!({"action": "start"})).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["phase"], "staged");
    let a = started["old"]["sha256"].as_str().unwrap().to_owned();
    let b = started["new"]["sha256"].as_str().unwrap().to_owned();

    let done = phase_until(&serve, "done", Duration::from_secs(60)).await;
    let phases: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["staged", "signing", "retiring", "done"],
        "{done:#}"
    );
    assert!(
        done["history"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|t| t["by"].as_str().unwrap().starts_with("auto:")),
        "the driver advanced by itself: {done:#}"
    );
    assert!(
        serve.metric("anchorage_rotation_rate_limited_total").await >= 1,
        "three renewals at one per window were rate-limited"
    );

    for (dir, first) in dirs.iter().zip(&first) {
        let s = read_status(&dir.join("status.json")).unwrap();
        assert_ne!(s.cert_serial.as_ref(), Some(first), "renewed under B");
        let bundle = std::fs::read(dir.join("ca-bundle.pem")).unwrap();
        assert_eq!(fingerprints(&bundle), vec![b.clone()], "only B is trusted");
        let leaf =
            anchorage_x509::decode(std::fs::read(dir.join("id/cert.pem")).unwrap().as_slice())
                .certificates[0]
                .certificate
                .clone();
        assert_eq!(leaf.issuer(), done["new"]["subject"].as_str().unwrap());
    }
    // The store's CA (what `anchorage ca` reads) is B; A is kept until prune.
    let stored = anchorage_ca::persist::load(serve.server.state().store.as_ref(), None)
        .await
        .unwrap();
    assert_eq!(
        anchorage_serve::authority::root_fingerprint(stored.ca.root()),
        b
    );
    assert_eq!(done["previous"]["sha256"], a);
    let (status, pruned) = serve.act(json!({"action": "prune"})).await;
    assert_eq!(status, 200, "{pruned}");
    assert_eq!(pruned["phase"], "idle");

    // serve restarts: its serving certificate now comes from B. The agents (started with a
    // ca.pem holding A only) read serve's rewritten ca.pem and carry on.
    let addr = serve.server.serving().addr;
    let dir = serve.dir.clone();
    // Acks before the restart are at least a second older than any after it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    serve.server.shutdown().await;
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut config = ServeConfig::new(&dir);
    config.listen = addr;
    config.rotation = rotation_config(100);
    let server = Server::start(config).await.unwrap();
    let a_only = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                let mut r = rustls::RootCertStore::empty();
                let pem = done["old"]["sha256"].as_str().unwrap();
                let bundle_a =
                    anchorage_x509::decode(std::fs::read(dir.join("ca.pem")).unwrap().as_slice());
                for f in bundle_a.certificates {
                    if anchorage_serve::authority::root_fingerprint(&f.certificate) == pem {
                        r.add(CertificateDer::from(f.certificate.der().to_vec()))
                            .unwrap();
                    }
                }
                r
            })
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    assert!(
        a_only
            .get(format!("{}/healthz", server.serving().url))
            .send()
            .await
            .is_err(),
        "the serving certificate is B's now: a client trusting only A fails (negative control)"
    );
    let start = Instant::now();
    for dir in &dirs {
        while !read_status(&dir.join("status.json")).is_ok_and(|s| {
            s.last_ack.is_some_and(|a| a.at >= restarted_at) && s.last_error.is_none()
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agent {} did not come back: {:#?}",
                dir.display(),
                read_status(&dir.join("status.json"))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for (tx, handle) in agents {
        drop(tx);
        handle.await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_blocks_signing_is_named_and_the_rotation_goes_on_when_it_returns() {
    let tmp = anchorage_test_support::tempdir().unwrap();
    let serve = start_serve(&tmp.path().join("serve"), rotation_config(100)).await;
    let token = tmp.path().join("agent.token");
    serve.role_and_token_for_agents(&token).await;
    let live_dir = tmp.path().join("live");
    let frozen_dir = tmp.path().join("frozen");
    let live = spawn(agent_config(&serve, "web-live", &live_dir, &token));
    let frozen_config = agent_config(&serve, "web-frozen", &frozen_dir, &token);
    let frozen = spawn(frozen_config.clone());
    let start = Instant::now();
    for dir in [&live_dir, &frozen_dir] {
        while !read_status(&dir.join("status.json")).is_ok_and(|s| s.last_ack.is_some()) {
            assert!(start.elapsed() < Duration::from_secs(15), "agents start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Freeze one (its task stops; its files and ack record stay).
    drop(frozen.0);
    frozen.1.await.unwrap();

    let (status, body) = serve.act(json!({"action": "start"})).await;
    assert_eq!(status, 200, "{body}");
    // The live agent acks B; the frozen one does not: Signing is never entered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = serve.rotation().await;
    assert_eq!(status["phase"], "staged", "{status:#}");
    assert_eq!(status["gate"]["holds"], false);
    let laggards = status["laggards"].as_array().unwrap();
    assert_eq!(laggards.len(), 1, "{status:#}");
    assert_eq!(laggards[0]["consumer"], "web-frozen");
    assert!(
        laggards[0]["missing"]
            .as_str()
            .unwrap()
            .contains("lacks the new root")
    );
    let (code, refusal) = serve.act(json!({"action": "advance"})).await;
    assert_eq!(code, 409, "{refusal}");
    assert_eq!(refusal["error"]["code"], "gate_not_holding");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web-frozen"),
        "{refusal}"
    );
    assert!(
        !refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web-live"),
        "{refusal}"
    );

    // It comes back: the rotation goes on to Done.
    let back = spawn(frozen_config);
    phase_until(&serve, "done", Duration::from_secs(60)).await;
    for tx in [live.0, back.0] {
        drop(tx);
    }
    live.1.await.unwrap();
    back.1.await.unwrap();
    serve.server.shutdown().await;
}

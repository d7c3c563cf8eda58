//! Issue 15's scale figures (ignored by default; run explicitly):
//!
//! ```sh
//! ANCHORAGE_AGENTS=1000 cargo test -p anchorage-agent --test fanout -- --ignored --nocapture fanout
//! ```
//!
//! serve runs in its own process (this test binary re-run with only the hidden `serve_child`
//! test), so its RSS and CPU are its own; N agents run as tasks of this process through the
//! library, each with its own HTTPS client (one long-poll connection each), writing a PEM
//! bundle into `ANCHORAGE_AGENT_DIR` (default a temporary directory). Measured: the time from
//! an admin adding a CA to the last acknowledgement seen in `/v1/consumers`, serve's RSS with N
//! consumers, its CPU while idle with N long-polls open (the fan-out cost) and for the change.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_agent::{Agent, AgentConfig, Timing};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

/// Not a test: serve for the parent, until killed.
#[tokio::test]
#[ignore = "started by `fanout` as serve's own process"]
async fn serve_child() {
    let Some(dir) = std::env::var_os("ANCHORAGE_FANOUT_SERVE_DIR") else {
        return;
    };
    let mut config = anchorage_serve::ServeConfig::new(PathBuf::from(dir));
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = anchorage_serve::Server::start(config).await.unwrap();
    eprintln!("FANOUT_URL={}", server.serving().url);
    std::future::pending::<()>().await;
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime (fields 14 and 15; 12 and 13 after the name).
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss_kib)
}

fn client(ca: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for f in anchorage_x509::decode(&std::fs::read(ca).unwrap()).certificates {
        roots
            .add(CertificateDer::from(f.certificate.der().to_vec()))
            .unwrap();
    }
    reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run explicitly"]
async fn fanout() {
    let n: usize = std::env::var("ANCHORAGE_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = anchorage_test_support::tempdir().unwrap();
    let out_root = std::env::var_os("ANCHORAGE_AGENT_DIR")
        .map_or_else(|| tmp.path().join("agents"), PathBuf::from);
    let data = tmp.path().join("serve");
    std::fs::create_dir_all(&data).unwrap();
    let log = tmp.path().join("serve.log");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "serve_child", "--nocapture"])
        .env("ANCHORAGE_FANOUT_SERVE_DIR", &data)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("FANOUT_URL=")) {
            break line.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, rss_empty) = proc_stat(pid);
    let ca = data.join("ca.pem");
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let http = client(&ca);
    let call = |method: &str, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(&admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Acks with an admin-minted role token (any token kind is accepted for acks).
    call(
        "PUT",
        "/v1/roles/fleet",
        Some(json!({"allowed_domains": ["fleet.local"], "allow_subdomains": true})),
    )
    .await;
    let token = call(
        "POST",
        "/v1/tokens",
        Some(json!({"kind": "role", "sub": "fleet", "role": "fleet"})),
    )
    .await;
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token["token"].as_str().unwrap()).unwrap();

    let mut stops = Vec::new();
    for i in 0..n {
        let dir = out_root.join(format!("a{i}"));
        let mut config = AgentConfig::new(&url, &ca, format!("node-{i}"), dir.join("status.json"));
        config.token_file = Some(token_file.clone());
        config.trust.pem = Some(dir.join("bundle.pem"));
        config.timing = Timing {
            wait: Duration::from_secs(280),
            heartbeat: Duration::from_secs(3600),
            ..Timing::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push((
            tx,
            tokio::spawn(async move {
                let mut agent = Agent::new(config).unwrap();
                let _ = agent
                    .run(async {
                        let _ = rx.await;
                    })
                    .await;
            }),
        ));
    }
    let version_of_all = |listed: &Value, v: u64| {
        listed["consumers"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|c| c["bundle_version"] == v).count())
    };
    let started = Instant::now();
    loop {
        let listed = call("GET", "/v1/consumers", None).await;
        if version_of_all(&listed, 1) == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "registration stalled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registered_in = started.elapsed();
    // Idle: N long-polls open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle0, _) = proc_stat(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle1, rss_n) = proc_stat(pid);
    let tick = 100.0; // USER_HZ
    let idle_cpu = (idle1 - idle0) as f64 / tick / 5.0;

    let new_ca = anchorage_test_support::pki::root_ca("Fanout Added CA");
    let (cpu0, _) = proc_stat(pid);
    let t0 = Instant::now();
    let answer = call("POST", "/v1/bundle/cas", Some(json!({"add": new_ca.pem}))).await;
    let v = answer["bundle_version"].as_u64().unwrap();
    loop {
        let listed = call("GET", "/v1/consumers", None).await;
        if version_of_all(&listed, v) == n {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "not all acked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let to_last_ack = t0.elapsed();
    let (cpu1, rss_after) = proc_stat(pid);
    eprintln!(
        "agents={n} registered_in={registered_in:?} change_to_last_ack={to_last_ack:?} \
         serve_rss_empty={rss_empty}KiB serve_rss_with_n={rss_n}KiB serve_rss_after_change={rss_after}KiB \
         rss_per_consumer={:.1}KiB serve_idle_cpu_with_n_long_polls={:.1}% serve_cpu_for_change={:.2}s",
        (rss_n.saturating_sub(rss_empty)) as f64 / n as f64,
        idle_cpu * 100.0,
        (cpu1 - cpu0) as f64 / tick,
    );
    for (tx, h) in stops {
        drop(tx);
        let _ = h.await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

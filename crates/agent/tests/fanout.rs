//! Issue 15's scale figures (ignored by default; run explicitly):
//!
//! ```sh
//! cargo build --release -p anchorage   # the `anchorage agent` processes
//! ANCHORAGE_AGENTS=1000 ANCHORAGE_AGENT_PROCS=50 cargo test --release -p anchorage-agent \
//!   --test fanout -- --ignored --nocapture --exact fanout
//! ```
//!
//! serve runs in its own process (this test binary re-run with only the hidden `serve_child`
//! test), so its RSS and CPU are its own; N agents run as tasks of this process through the
//! library, each with its own HTTPS client (one long-poll connection each), writing a PEM
//! bundle into `ANCHORAGE_AGENT_DIR` (default a temporary directory), and
//! `ANCHORAGE_AGENT_PROCS` (default 50) more are real `anchorage agent` processes: the binary
//! beside this test's profile directory (`target/release/anchorage` for a release test), or
//! `ANCHORAGE_BIN`. Measured: the time from an admin adding a CA to the last acknowledgement
//! seen in `/v1/consumers` (all, tasks, processes; polled every 20 ms), serve's RSS with all
//! consumers, its CPU while idle with their long-polls open (the fan-out cost) and for the
//! change, and the agent processes' RSS.
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

/// Processes killed (and reaped) when dropped, also when the test fails half-way.
struct Reap(Vec<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    let procs: usize = std::env::var("ANCHORAGE_AGENT_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let bin = std::env::var_os("ANCHORAGE_BIN").map_or_else(
        || {
            // target/<profile>/deps/fanout-<hash> → target/<profile>/anchorage
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("anchorage")
        },
        PathBuf::from,
    );
    assert!(
        procs == 0 || bin.is_file(),
        "{} is missing: build it (`cargo build [--release] -p anchorage`, the test's profile), \
         name it with ANCHORAGE_BIN, or set ANCHORAGE_AGENT_PROCS=0",
        bin.display()
    );
    let tmp = anchorage_test_support::tempdir().unwrap();
    let out_root = std::env::var_os("ANCHORAGE_AGENT_DIR")
        .map_or_else(|| tmp.path().join("agents"), PathBuf::from);
    let data = tmp.path().join("serve");
    std::fs::create_dir_all(&data).unwrap();
    let log = tmp.path().join("serve.log");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "serve_child", "--nocapture"])
        .env("ANCHORAGE_FANOUT_SERVE_DIR", &data)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _serve = Reap(vec![child]);
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
    // The real processes, consumers `proc-<i>` (the tasks are `node-<i>`).
    let mut children = Reap(Vec::new());
    for i in 0..procs {
        let dir = out_root.join(format!("p{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new(&bin)
            .arg("agent")
            .arg(format!("--server={url}"))
            .arg(format!("--server-ca={}", ca.display()))
            .arg(format!("--token-file={}", token_file.display()))
            .arg(format!("--consumer=proc-{i}"))
            .arg(format!("--pem={}", dir.join("bundle.pem").display()))
            .arg(format!(
                "--status-file={}",
                dir.join("status.json").display()
            ))
            .args(["--wait=280s", "--heartbeat=3600s"])
            .env_remove("ANCHORAGE_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    // (tasks, processes) that acknowledged version `v`.
    let acked = |listed: &Value, v: u64| {
        let mut counts = (0, 0);
        for c in listed["consumers"].as_array().into_iter().flatten() {
            if c["bundle_version"] == v {
                match c["consumer"].as_str() {
                    Some(name) if name.starts_with("proc-") => counts.1 += 1,
                    _ => counts.0 += 1,
                }
            }
        }
        counts
    };
    let started = Instant::now();
    loop {
        let listed = call("GET", "/v1/consumers", None).await;
        let counts = acked(&listed, 1);
        if counts == (n, procs) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "registration stalled: (tasks, processes) {counts:?} of {:?}",
            (n, procs)
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
    let (mut tasks_done, mut procs_done) = (None, None);
    loop {
        // Every 20 ms: listing 1,050 consumers costs serve too, so not more often.
        let listed = call("GET", "/v1/consumers", None).await;
        let (t, p) = acked(&listed, v);
        if t == n && tasks_done.is_none() {
            tasks_done = Some(t0.elapsed());
        }
        if p == procs && procs_done.is_none() {
            procs_done = Some(t0.elapsed());
        }
        if tasks_done.is_some() && procs_done.is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "not all acked: {t}/{n} tasks, {p}/{procs} processes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_last_ack = t0.elapsed();
    let (cpu1, rss_after) = proc_stat(pid);
    let proc_rss: Vec<u64> = children.0.iter().map(|c| proc_stat(c.id()).1).collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let consumers = n + procs;
    eprintln!(
        "agents={n} agent_processes={procs} registered_in={registered_in:?} \
         change_to_last_ack={to_last_ack:?} (tasks {:?}, processes {:?}) \
         serve_rss_empty={rss_empty}KiB serve_rss_with_n={rss_n}KiB serve_rss_after_change={rss_after}KiB \
         rss_per_consumer={:.1}KiB serve_idle_cpu_with_n_long_polls={:.1}% serve_cpu_for_change={:.2}s \
         agent_process_rss_mean={}KiB loadavg={}",
        tasks_done.unwrap_or_default(),
        procs_done.unwrap_or_default(),
        (rss_n.saturating_sub(rss_empty)) as f64 / consumers as f64,
        idle_cpu * 100.0,
        (cpu1 - cpu0) as f64 / tick,
        proc_rss.iter().sum::<u64>() / (procs.max(1) as u64),
        load.trim(),
    );
    drop(children);
    for (tx, h) in stops {
        drop(tx);
        let _ = h.await;
    }
}

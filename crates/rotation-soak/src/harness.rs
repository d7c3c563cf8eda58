//! The soak itself: serve, N agents, per agent a rustls peer and an openssl s_server, client
//! loops to the next agent's servers; then the procedure; then the summary.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::error::SoakError;
use crate::files::{AgentFiles, write_atomic};
use crate::monitor::{Monitor, Snapshot, Sources};
use crate::openssl;
use crate::procedure::{self, Procedure, RotationPhase};
use crate::serve::Serve;
use crate::stats::{Counts, PeerReport};

/// Text progress or one JSON document.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Output {
    /// Progress lines and a summary on stderr.
    #[default]
    Text,
    /// One JSON summary on stdout (progress lines still on stderr).
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `rotation-soak --procedure …`: the soak.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// naive: stop serve, replace the root, start serve (the negative control: must show
    /// failed handshakes); anchorage: Staged → Signing → Retiring → Done through
    /// `POST /v1/rotation` (target: 0 failed handshakes).
    #[arg(long, value_enum)]
    pub(crate) procedure: Procedure,
    /// Agents (each with an openssl and a rustls server and client).
    #[arg(long, default_value_t = 8)]
    pub(crate) agents: usize,
    /// The CI form (< 2 min): 60 s leaves, short warm-up and observation.
    #[arg(long)]
    pub(crate) short: bool,
    /// Leaf lifetime asked by every agent [default: 3m; --short: 1m; serve's minimum is 1m].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) leaf_ttl: Option<Duration>,
    /// Load before the rotation starts [default: 20s; --short: 8s].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) warmup: Option<Duration>,
    /// Load after the procedure ends (`--duration` too) [default: naive: leaf TTL + 30 s
    /// (every agent renews or expires once); anchorage: the leaf TTL (every agent renews under
    /// the new root alone); --short: naive 70 s (ends 5 s after the first failure), anchorage
    /// 5 s].
    #[arg(long, alias = "duration", value_parser = parse_duration)]
    pub(crate) observe: Option<Duration>,
    /// Stop the procedure (and fail) if it is not over after this long.
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    pub(crate) max_rotation: Duration,
    /// rustls handshakes per second aimed at, all peers together.
    #[arg(long, default_value_t = 600.0)]
    pub(crate) rustls_rate: f64,
    /// Client loops per rustls peer.
    #[arg(long, default_value_t = 4)]
    pub(crate) rustls_concurrency: usize,
    /// openssl s_client runs per second per agent (each is a new process).
    #[arg(long, default_value_t = 4.0)]
    pub(crate) openssl_rate: f64,
    /// anchorage: serve's `--rotation-min-dwell`, the least time in each phase [default: 20s;
    /// --short: 3s].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) min_dwell: Option<Duration>,
    /// anchorage: abort the rotation in this phase, once every agent acknowledged it (its gate
    /// holds) or its dwell is over; then wait until the turned-around rotation is over.
    #[arg(long, value_enum)]
    pub(crate) abort_at: Option<RotationPhase>,
    /// anchorage: SIGSTOP agent 0 before the rotation starts; check the gate holds and names
    /// it; SIGCONT it after --freeze-for.
    #[arg(long)]
    pub(crate) freeze_agent: bool,
    /// How long the frozen agent stays stopped once the gate has refused to move.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(crate) freeze_for: Duration,
    /// anchorage: kill serve (SIGKILL) and start it again in each phase; check the phase
    /// resumes.
    #[arg(long)]
    pub(crate) restart_serve_in_each_phase: bool,
    /// text: progress and a summary on stderr; json: also one JSON summary on stdout.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: Output,
    /// The anchorage binary [default: next to this one].
    #[arg(long)]
    pub(crate) anchorage: Option<PathBuf>,
    /// The openssl binary.
    #[arg(long, default_value = "openssl")]
    pub(crate) openssl: PathBuf,
    /// Keep the work directory (logs, files) and print where it is.
    #[arg(long)]
    pub(crate) keep: bool,
}

/// A phase in the summary.
#[derive(Debug, Serialize)]
pub(crate) struct PhaseSummary {
    name: String,
    seconds: f64,
    handshakes: u64,
    failed: u64,
    failures_by_reason: std::collections::BTreeMap<String, u64>,
    reissues: u64,
}

/// The JSON summary (`--output json`).
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    schema: &'static str,
    procedure: Procedure,
    agents: usize,
    leaf_ttl_seconds: u64,
    seconds: f64,
    handshakes: u64,
    failed: u64,
    handshakes_per_second: f64,
    failures_by_reason: std::collections::BTreeMap<String, u64>,
    rustls: Counts,
    openssl: Counts,
    rustls_server_side_failures: std::collections::BTreeMap<String, u64>,
    rustls_reloads: u64,
    rustls_reload_errors: u64,
    reissues: u64,
    reissues_per_minute: f64,
    serve_starts: u32,
    phases: Vec<PhaseSummary>,
    procedure_notes: serde_json::Value,
    /// The procedure could not be carried out (the figures are then no verdict).
    procedure_error: Option<String>,
    /// Bundle roots and leaf issuers in the agents' files when the load started.
    installed_before: serde_json::Value,
    /// The same when the load stopped.
    installed_after: serde_json::Value,
    work_dir: Option<PathBuf>,
}

impl Summary {
    pub(crate) fn failed(&self) -> u64 {
        self.failed
    }

    pub(crate) fn procedure_error(&self) -> Option<&str> {
        self.procedure_error.as_deref()
    }
}

/// A child killed (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn terminate(&mut self, wait: Duration) {
        openssl::terminate(self.pid());
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A stopped process must run again to see SIGTERM.
            signal(self.pid(), rustix::process::Signal::CONT);
            self.terminate(Duration::from_secs(5));
        }
    }
}

pub(crate) fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, SoakError> {
    std::fs::File::create(path).map_err(|e| SoakError::file("create", path, e))
}

fn anchorage_bin(args: &RunArgs) -> Result<PathBuf, SoakError> {
    if let Some(p) = &args.anchorage {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(|e| SoakError::file("locate", "rotation-soak", e))?;
    let beside = me.with_file_name("anchorage");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(SoakError::Usage(format!(
        "no anchorage binary beside {} (cargo build -p anchorage, or --anchorage PATH)",
        me.display()
    )))
}

/// Everything the run started, stopped in order when dropped.
struct Fleet {
    openssl_stop: Arc<AtomicBool>,
    openssl_threads: Vec<std::thread::JoinHandle<()>>,
    peers: Vec<Proc>,
    agents: Vec<Proc>,
    files: Vec<AgentFiles>,
}

impl Fleet {
    fn shutdown(&mut self) {
        self.openssl_stop.store(true, Ordering::SeqCst);
        for t in self.openssl_threads.drain(..) {
            let _ = t.join();
        }
        for p in &mut self.peers {
            p.terminate(Duration::from_secs(5));
        }
        for a in &mut self.agents {
            signal(a.pid(), rustix::process::Signal::CONT);
            a.terminate(Duration::from_secs(5));
        }
        for f in &self.files {
            openssl::retire(f, Duration::ZERO, true);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs the soak and returns its summary.
pub(crate) async fn run(args: RunArgs) -> Result<Summary, SoakError> {
    if args.agents < 2 {
        return Err(SoakError::Usage(
            "--agents must be at least 2 (clients call the next agent)".into(),
        ));
    }
    let bin = anchorage_bin(&args)?;
    let me = std::env::current_exe().map_err(|e| SoakError::file("locate", "rotation-soak", e))?;
    let leaf_ttl = args
        .leaf_ttl
        .unwrap_or(Duration::from_secs(if args.short { 60 } else { 180 }));
    let warmup = args
        .warmup
        .unwrap_or(Duration::from_secs(if args.short { 8 } else { 20 }));
    let observe = args.observe.unwrap_or(match (args.procedure, args.short) {
        (Procedure::Naive, true) => Duration::from_secs(70),
        (Procedure::Naive, false) => leaf_ttl + Duration::from_secs(30),
        (Procedure::Anchorage, true) => Duration::from_secs(5),
        (Procedure::Anchorage, false) => leaf_ttl,
    });
    let tmp = anchorage_test_support::tempdir()
        .map_err(|e| SoakError::file("create", std::env::temp_dir(), e))?;
    let work = tmp.path().to_path_buf();
    if work.to_string_lossy().contains(char::is_whitespace)
        || me.to_string_lossy().contains(char::is_whitespace)
    {
        return Err(SoakError::Usage(
            "the work directory and this binary's path must hold no spaces (the agent splits its on-change command on whitespace)".into(),
        ));
    }
    let verbose = true;
    let say = |line: &str| {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{line}");
        }
    };
    say(&format!(
        "rotation-soak: procedure {:?}, {} agents, leaf TTL {:?}, work dir {}",
        args.procedure,
        args.agents,
        leaf_ttl,
        work.display()
    ));

    // The control plane's own TLS: a CA that is not the mesh root.
    let cp = work.join("cp");
    std::fs::create_dir_all(&cp).map_err(|e| SoakError::file("create", &cp, e))?;
    let cp_root = anchorage_test_support::pki::root_ca("rotation-soak control plane");
    let cp_leaf = anchorage_test_support::pki::server_leaf(&["localhost"], &cp_root);
    write_atomic(&cp.join("ca.pem"), &cp_root.pem)?;
    write_atomic(&cp.join("tls.crt"), &cp_leaf.pem)?;
    write_atomic(&cp.join("tls.key"), &cp_leaf.key_pem)?;
    let mut serve = Serve::new(
        bin.clone(),
        &work,
        cp.join("ca.pem"),
        cp.join("tls.crt"),
        cp.join("tls.key"),
    )?;
    if args.procedure == Procedure::Anchorage {
        let dwell = args
            .min_dwell
            .unwrap_or(Duration::from_secs(if args.short { 3 } else { 20 }));
        // A serve without these options (the rotation's library defaults: 60 s dwell, 5 s
        // interval) is still driven, only slower.
        let help = Command::new(&bin)
            .args(["serve", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if help.contains("--rotation-min-dwell") {
            serve.extra_args = vec![
                format!("--rotation-min-dwell={}s", dwell.as_secs()),
                "--rotation-interval=1s".into(),
            ];
        } else {
            say("this anchorage serve has no --rotation-min-dwell: its default dwell applies");
        }
    }
    serve.start().await?;
    let max_ttl = leaf_ttl.as_secs().max(3600);
    serve
        .api(
            reqwest::Method::PUT,
            "/v1/roles/mesh",
            Some(
                &json!({"allowed_domains": ["mesh.local"], "allow_subdomains": true,
                          "allowed_kinds": ["service"], "max_ttl_seconds": max_ttl}),
            ),
        )
        .await?;
    let token = serve
        .api(
            reqwest::Method::POST,
            "/v1/tokens",
            Some(&json!({"kind": "role", "sub": "rotation-soak", "role": "mesh"})),
        )
        .await?;
    let token_file = work.join("token");
    write_atomic(
        &token_file,
        token["token"].as_str().ok_or_else(|| SoakError::Serve {
            operation: "POST /v1/tokens".into(),
            message: "no token in the answer".into(),
        })?,
    )?;

    let n = args.agents;
    let files: Vec<AgentFiles> = (0..n)
        .map(|i| AgentFiles::new(work.join(format!("a{i}"))))
        .collect();
    let go = work.join("go");
    let mut fleet = Fleet {
        openssl_stop: Arc::new(AtomicBool::new(false)),
        openssl_threads: Vec::new(),
        peers: Vec::new(),
        agents: Vec::new(),
        files: files.clone(),
    };
    let mut sources = Sources::default();
    for (i, f) in files.iter().enumerate() {
        std::fs::create_dir_all(f.ossl()).map_err(|e| SoakError::file("create", f.ossl(), e))?;
        let next = (i + 1) % n;
        let mut child = Command::new(&me)
            .arg("peer")
            .arg("--dir")
            .arg(&f.dir)
            .arg("--peer-dir")
            .arg(&files[next].dir)
            .args(["--peer-name", &format!("peer-{next}.mesh.local")])
            .args(["--concurrency", &args.rustls_concurrency.to_string()])
            .args(["--rate", &format!("{}", args.rustls_rate / n as f64)])
            .arg("--go-file")
            .arg(&go)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&f.dir.join("peer.log"))?)
            .spawn()
            .map_err(|source| SoakError::Spawn {
                program: me.display().to_string(),
                source,
            })?;
        let report = Arc::new(Mutex::new(PeerReport::default()));
        if let Some(stdout) = child.stdout.take() {
            let report = Arc::clone(&report);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(r) = serde_json::from_str::<PeerReport>(&line)
                        && let Ok(mut slot) = report.lock()
                    {
                        *slot = r;
                    }
                }
            });
        }
        sources.rustls.push(report);
        fleet.peers.push(Proc { child });

        let agent = Command::new(&bin)
            .arg("agent")
            .arg(format!("--server={}", serve.url()))
            .arg(format!("--server-ca={}", serve.cp_ca.display()))
            .arg(format!("--token-file={}", token_file.display()))
            .arg(format!("--consumer=peer-{i}"))
            .arg("--label=soak=rotation")
            .arg(format!("--pem={}", f.bundle().display()))
            .arg(format!("--identity=peer-{i}.mesh.local"))
            .arg(format!("--identity-dir={}", f.id_dir().display()))
            .arg(format!("--identity-ttl={}s", leaf_ttl.as_secs()))
            .arg(format!("--on-change-pidfile={}", f.rustls_pid().display()))
            .arg(format!(
                "--on-change-command={} openssl-reload --dir {} --openssl {}",
                me.display(),
                f.dir.display(),
                args.openssl.display()
            ))
            .arg("--on-change-timeout=15s")
            .arg(format!("--status-file={}", f.status().display()))
            .arg("--wait=30s")
            .arg("--heartbeat=10s")
            .env("ANCHORAGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&f.dir.join("agent.log"))?)
            .spawn()
            .map_err(|source| SoakError::Spawn {
                program: bin.display().to_string(),
                source,
            })?;
        fleet.agents.push(Proc { child: agent });
    }

    // Ready: every agent installed and acknowledged, every server listening.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pending: Vec<String> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                !(f.complete()
                    && f.rustls_port().is_file()
                    && openssl::Current::read(f).is_some()
                    && installed(f).is_some())
            })
            .map(|(i, _)| format!("peer-{i}"))
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(SoakError::NotReady {
                what: "the agents and their servers".into(),
                seconds: 90,
                detail: format!("still waiting for {pending:?}; logs in {}", work.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    write_atomic(&go, "go")?;
    for (i, f) in files.iter().enumerate() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        sources.openssl.push(Arc::clone(&counts));
        let next = (i + 1) % n;
        let (openssl, own, peer, stop, rate) = (
            args.openssl.clone(),
            f.clone(),
            files[next].clone(),
            Arc::clone(&fleet.openssl_stop),
            args.openssl_rate,
        );
        fleet.openssl_threads.push(std::thread::spawn(move || {
            openssl::client_loop(
                openssl,
                own,
                peer,
                format!("peer-{next}.mesh.local"),
                rate,
                counts,
                stop,
            );
        }));
    }
    let monitor = Monitor::new(sources, files.clone(), verbose);
    let progress_stop = Arc::new(AtomicBool::new(false));
    let progress = tokio::spawn(Arc::clone(&monitor).progress(Arc::clone(&progress_stop)));
    let installed_before = installed_state(&files);
    monitor.phase("warmup");
    tokio::time::sleep(warmup).await;

    let agent_pids: Vec<i32> = fleet.agents.iter().map(Proc::pid).collect();
    let outcome = procedure::drive(&args, &mut serve, &monitor, &agent_pids).await;
    let (notes, procedure_error) = match outcome {
        Ok(notes) => (notes, None),
        Err(e) => {
            monitor.say(&format!("procedure failed: {e}"));
            (serde_json::Value::Null, Some(e.to_string()))
        }
    };
    monitor.phase("observe");
    let observing = Instant::now();
    let observe = if procedure_error.is_some() {
        Duration::ZERO
    } else {
        observe
    };
    while observing.elapsed() < observe {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The short naive form has shown what it must once failures went on for 5 s.
        if args.short
            && args.procedure == Procedure::Naive
            && let Some(first) = monitor.first_failure()
            && first.elapsed() >= Duration::from_secs(5)
        {
            monitor.say("failures seen for 5 s: the short form stops observing");
            break;
        }
    }
    let installed_after = installed_state(&files);
    // Clients first (every server still up), then the servers, so the end makes no failures.
    std::fs::remove_file(&go).map_err(|e| SoakError::file("remove", &go, e))?;
    fleet.openssl_stop.store(true, Ordering::SeqCst);
    for t in fleet.openssl_threads.drain(..) {
        let _ = t.join();
    }
    monitor.phase("end");
    progress_stop.store(true, Ordering::SeqCst);
    let _ = progress.await;
    // A rustls handshake takes at most 5 s (its timeout); then each peer's last line counts all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.shutdown();
    monitor.poll_serials();
    let end = monitor.snapshot();
    serve.stop().await;

    let marks = monitor.marks.lock().map(|m| m.clone()).unwrap_or_default();
    let summary = summarize(
        &args,
        leaf_ttl,
        &monitor,
        &marks,
        &end,
        serve.starts,
        (notes, procedure_error),
        args.keep.then(|| work.clone()),
    );
    let summary = Summary {
        installed_before,
        installed_after,
        ..summary
    };
    if args.keep {
        let kept = tmp.keep();
        say(&format!("work directory kept: {}", kept.display()));
    }
    Ok(summary)
}

/// What the agents' files hold: for each bundle root and each leaf issuer (subjects), how
/// many agents have it. Shows the rotation really happened where the workloads read.
fn installed_state(files: &[AgentFiles]) -> serde_json::Value {
    let mut roots = std::collections::BTreeMap::<String, u64>::new();
    let mut issuers = std::collections::BTreeMap::<String, u64>::new();
    for f in files {
        if let Ok(pem) = std::fs::read(f.bundle()) {
            for found in anchorage_x509::decode(&pem).certificates {
                *roots
                    .entry(found.certificate.subject().to_owned())
                    .or_default() += 1;
            }
        }
        if let Ok(pem) = std::fs::read(f.cert())
            && let Some(found) = anchorage_x509::decode(&pem).certificates.first()
        {
            *issuers
                .entry(found.certificate.issuer().to_owned())
                .or_default() += 1;
        }
    }
    json!({"bundle_roots": roots, "leaf_issuers": issuers})
}

/// The bundle version an agent's status says is installed.
fn installed(f: &AgentFiles) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f.status()).ok()?).ok()?;
    v.get("bundle_version")?.as_u64()
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    args: &RunArgs,
    leaf_ttl: Duration,
    monitor: &Monitor,
    marks: &[crate::monitor::Mark],
    end: &Snapshot,
    serve_starts: u32,
    (notes, procedure_error): (serde_json::Value, Option<String>),
    work_dir: Option<PathBuf>,
) -> Summary {
    let first = marks.first();
    let start_at = first.map_or(monitor.started, |m| m.at);
    let start = first.map(|m| m.snapshot.clone()).unwrap_or_default();
    let end_at = marks.last().map_or_else(Instant::now, |m| m.at);
    let mut phases = Vec::new();
    for (i, m) in marks.iter().enumerate() {
        if m.name == "end" {
            break;
        }
        let (next_at, next_snap) = marks
            .get(i + 1)
            .map_or((end_at, end.clone()), |n| (n.at, n.snapshot.clone()));
        let next_snap = if marks.get(i + 1).is_some_and(|n| n.name == "end") {
            end.clone()
        } else {
            next_snap
        };
        let d = next_snap.all().since(&m.snapshot.all());
        phases.push(PhaseSummary {
            name: m.name.clone(),
            seconds: round(next_at.duration_since(m.at).as_secs_f64()),
            handshakes: d.total(),
            failed: d.failures(),
            failures_by_reason: d.failed,
            reissues: next_snap.reissues.saturating_sub(m.snapshot.reissues),
        });
    }
    let all = end.all().since(&start.all());
    let seconds = end_at.duration_since(start_at).as_secs_f64().max(0.001);
    let reissues = end.reissues.saturating_sub(start.reissues);
    Summary {
        schema: "anchorage.rotation-soak/v1",
        procedure: args.procedure,
        agents: args.agents,
        leaf_ttl_seconds: leaf_ttl.as_secs(),
        seconds: round(seconds),
        handshakes: all.total(),
        failed: all.failures(),
        handshakes_per_second: round(all.total() as f64 / seconds),
        failures_by_reason: all.failed,
        rustls: end.rustls.since(&start.rustls),
        openssl: end.openssl.since(&start.openssl),
        rustls_server_side_failures: end.server_failed.clone(),
        rustls_reloads: end.reloads,
        rustls_reload_errors: end.reload_errors,
        reissues,
        reissues_per_minute: round(reissues as f64 * 60.0 / seconds),
        serve_starts,
        phases,
        procedure_notes: notes,
        procedure_error,
        installed_before: serde_json::Value::Null,
        installed_after: serde_json::Value::Null,
        work_dir,
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The summary as text lines.
pub(crate) fn render_text(s: &Summary) -> String {
    let mut out = format!(
        "{:?}: {} handshakes in {:.1} s ({:.0}/s), {} failed; {} re-issues ({:.1}/min); serve started {} times\n",
        s.procedure,
        s.handshakes,
        s.seconds,
        s.handshakes_per_second,
        s.failed,
        s.reissues,
        s.reissues_per_minute,
        s.serve_starts
    );
    for p in &s.phases {
        out.push_str(&format!(
            "  {:<10} {:>7.1} s {:>8} handshakes {:>6} failed {:>4} re-issues\n",
            p.name, p.seconds, p.handshakes, p.failed, p.reissues
        ));
    }
    for (r, n) in &s.failures_by_reason {
        out.push_str(&format!("  failed {n}× {r}\n"));
    }
    for (when, state) in [
        ("before", &s.installed_before),
        ("after", &s.installed_after),
    ] {
        out.push_str(&format!(
            "  installed {when}: bundle roots {}; leaf issuers {}\n",
            state["bundle_roots"], state["leaf_issuers"]
        ));
    }
    if let Some(e) = &s.procedure_error {
        out.push_str(&format!("  the procedure failed: {e}\n"));
    }
    out
}

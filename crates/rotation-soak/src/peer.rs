//! `rotation-soak peer`: the rustls workload of one agent, its own process so the agent's
//! `--on-change-pidfile` signals it alone. A server (mTLS: client certificates required and
//! checked against the agent's bundle) and client loops towards the next agent's server, all
//! from this agent's files, reloaded on SIGHUP (chain, key and trust, both sides). Every second
//! it prints one JSON [`PeerReport`] line (cumulative) on stdout; on SIGTERM a last one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::error::SoakError;
use crate::files::{AgentFiles, read_trimmed, write_atomic};
use crate::stats::{Counts, PeerReport, reason};
use crate::tls;

/// `rotation-soak peer` (started by the harness, one per agent).
#[derive(clap::Args, Debug)]
pub(crate) struct PeerArgs {
    /// This agent's directory (its bundle.pem and id/).
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// The next agent's directory (its rustls.port).
    #[arg(long)]
    pub(crate) peer_dir: PathBuf,
    /// The name the next agent's certificate carries (checked by the client).
    #[arg(long)]
    pub(crate) peer_name: String,
    /// Client loops.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Handshakes per second this peer's client loops aim at, together.
    #[arg(long, default_value_t = 70.0)]
    pub(crate) rate: f64,
    /// The client loops start when this file exists, and stop when it is gone.
    #[arg(long)]
    pub(crate) go_file: PathBuf,
}

struct Shared {
    server: RwLock<Arc<ServerConfig>>,
    client: RwLock<Arc<ClientConfig>>,
    counts: Mutex<Counts>,
    server_failed: Mutex<BTreeMap<String, u64>>,
    reloads: AtomicU64,
    reload_errors: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn report(&self) -> PeerReport {
        PeerReport {
            client: self.counts.lock().map(|c| c.clone()).unwrap_or_default(),
            server_failed: self
                .server_failed
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default(),
            reloads: self.reloads.load(Ordering::SeqCst),
            reload_errors: self.reload_errors.load(Ordering::SeqCst),
        }
    }

    fn install(&self, configs: tls::Configs) {
        if let Ok(mut s) = self.server.write() {
            *s = configs.server;
        }
        if let Ok(mut c) = self.client.write() {
            *c = configs.client;
        }
    }
}

fn io_err(what: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> SoakError {
    move |e| SoakError::file(what, path, e)
}

#[allow(clippy::print_stdout)] // the report lines are this process's output
fn print_report(shared: &Shared) {
    if let Ok(line) = serde_json::to_string(&shared.report()) {
        println!("{line}");
    }
}

/// Runs the peer until SIGTERM.
pub(crate) async fn run(args: PeerArgs) -> Result<(), SoakError> {
    let files = AgentFiles::new(&args.dir);
    // The handler before the pidfile: the agent's first install already signals.
    let mut hup = signal(SignalKind::hangup()).map_err(io_err("SIGHUP handler", PathBuf::new()))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(io_err("SIGTERM handler", PathBuf::new()))?;
    write_atomic(&files.rustls_pid(), &std::process::id().to_string())?;
    let first = loop {
        if files.complete()
            && let Ok(c) = tls::configs(&files)
        {
            break c;
        }
        tokio::select! {
            _ = hup.recv() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = term.recv() => return Ok(()),
        }
    };
    let shared = Arc::new(Shared {
        server: RwLock::new(first.server),
        client: RwLock::new(first.client),
        counts: Mutex::new(Counts::default()),
        server_failed: Mutex::new(BTreeMap::new()),
        reloads: AtomicU64::new(0),
        reload_errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io_err("listen on", files.rustls_port()))?;
    let port = listener
        .local_addr()
        .map_err(io_err("listen on", files.rustls_port()))?
        .port();
    tokio::spawn(serve(listener, Arc::clone(&shared)));
    write_atomic(&files.rustls_port(), &port.to_string())?;

    let concurrency = args.concurrency.max(1);
    let period = Duration::from_secs_f64(concurrency as f64 / args.rate.max(0.1));
    for _ in 0..concurrency {
        tokio::spawn(client_loop(
            Arc::clone(&shared),
            args.go_file.clone(),
            AgentFiles::new(&args.peer_dir),
            args.peer_name.clone(),
            period,
        ));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                match tls::configs(&files) {
                    Ok(c) => {
                        shared.install(c);
                        shared.reloads.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reload failed; the previous configuration stays");
                        shared.reload_errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            _ = tick.tick() => print_report(&shared),
            _ = term.recv() => {
                shared.stop.store(true, Ordering::SeqCst);
                print_report(&shared);
                return Ok(());
            }
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let config = shared.server.read().map(|c| Arc::clone(&c)).ok();
        let Some(config) = config else { continue };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let result = tokio::time::timeout(Duration::from_secs(5), async {
                let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await?;
                tls.write_all(b"pong").await?;
                // The exchange is done; how the close goes is not the handshake's outcome.
                let _ = tls.shutdown().await;
                Ok::<_, std::io::Error>(())
            })
            .await;
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(reason("rustls server", &e.to_string())),
                Err(_) => Some("rustls server: timeout".to_owned()),
            };
            if let Some(r) = failure
                && let Ok(mut m) = shared.server_failed.lock()
            {
                *m.entry(r).or_default() += 1;
            }
        });
    }
}

async fn client_loop(
    shared: Arc<Shared>,
    go: PathBuf,
    peer: AgentFiles,
    peer_name: String,
    period: Duration,
) {
    let addr: SocketAddr = loop {
        if go.exists()
            && let Some(port) =
                read_trimmed(&peer.rustls_port()).and_then(|p| p.parse::<u16>().ok())
        {
            break SocketAddr::from(([127, 0, 0, 1], port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Ok(name) = ServerName::try_from(peer_name) else {
        tracing::error!("the peer name is not a DNS name");
        return;
    };
    let mut next = Instant::now();
    // The harness removes the go file to stop the clients before it stops the servers.
    while !shared.stop.load(Ordering::SeqCst) && go.exists() {
        let config = shared.client.read().map(|c| Arc::clone(&c)).ok();
        let Some(config) = config else { return };
        let outcome = handshake(config, addr, name.clone()).await;
        if let Ok(mut c) = shared.counts.lock() {
            match outcome {
                Ok(()) => c.ok += 1,
                Err(r) => c.fail(r),
            }
        }
        next += period;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// One mTLS handshake and a ping/pong over it (in TLS 1.3 the server's verdict on the client
/// certificate reaches the client only when it reads).
async fn handshake(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> Result<(), String> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| reason("rustls client connect", &e.to_string()))?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| reason("rustls client handshake", &e.to_string()))?;
        let exchange = async {
            tls.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            let _ = tls.shutdown().await;
            Ok::<_, std::io::Error>(())
        };
        exchange
            .await
            .map_err(|e| reason("rustls client exchange", &e.to_string()))
    };
    match tokio::time::timeout(Duration::from_secs(5), run).await {
        Ok(r) => r,
        Err(_) => Err("rustls client: timeout".to_owned()),
    }
}

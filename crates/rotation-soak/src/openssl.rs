//! The openssl workload of each agent: `openssl s_server` (mTLS: `-Verify`, `-CAfile`) and
//! `openssl s_client` loops.
//!
//! s_server has no reload: SIGHUP terminates it (no handler). So the agent's on-change command
//! (`rotation-soak openssl-reload`) restarts it blue/green: it copies the agent's files into a
//! new generation directory, starts a new s_server on them on a new port, waits until it
//! accepts, then points `ossl/current` at it and leaves the old one to the harness, which
//! stops it 2 s later (handshakes already begun on it finish). A plain stop-then-start would
//! refuse connections for the few milliseconds between the two: that gap is what the naive
//! restart-based reload costs, and not what this soak measures.
//!
//! Each s_client run is a new process reading the current generation's files: its client
//! certificate, key and trust are what the last successful reload installed, so a client
//! never reads an agent's half-written set (the agent writes key, chain and cert one after
//! another).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::SoakError;
use crate::files::{AgentFiles, read_trimmed, write_atomic};
use crate::stats::Counts;

/// `rotation-soak openssl-reload`: the agent's `--on-change-command`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReloadArgs {
    /// The agent's directory.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// The openssl binary.
    #[arg(long, default_value = "openssl")]
    pub(crate) openssl: PathBuf,
}

/// What `ossl/current` holds: the s_server in service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Current {
    /// Its port.
    pub(crate) port: u16,
    /// Its PID.
    pub(crate) pid: i32,
    /// The generation directory with the files it (and this agent's s_client) uses.
    pub(crate) generation: PathBuf,
}

impl Current {
    pub(crate) fn read(files: &AgentFiles) -> Option<Self> {
        let text = read_trimmed(&files.ossl_current())?;
        let mut parts = text.splitn(3, ' ');
        Some(Self {
            port: parts.next()?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            generation: PathBuf::from(parts.next()?),
        })
    }

    fn write(&self, files: &AgentFiles) -> Result<(), SoakError> {
        write_atomic(
            &files.ossl_current(),
            &format!("{} {} {}", self.port, self.pid, self.generation.display()),
        )
    }
}

/// Copies the agent's files into a new generation, starts s_server on them, swaps `current`.
pub(crate) fn reload(args: &ReloadArgs) -> Result<(), SoakError> {
    let files = AgentFiles::new(&args.dir);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let generation = files.ossl().join(format!("gen-{stamp}"));
    std::fs::create_dir_all(&generation).map_err(|e| SoakError::file("create", &generation, e))?;
    for (from, name) in [
        (files.bundle(), "bundle.pem"),
        (files.cert(), "cert.pem"),
        (files.key(), "key.pem"),
        (files.chain(), "chain.pem"),
    ] {
        let to = generation.join(name);
        std::fs::copy(&from, &to).map_err(|e| SoakError::file("copy", &from, e))?;
    }
    let port = unused_port(&args.dir)?;
    let log = std::fs::File::create(generation.join("s_server.log"))
        .map_err(|e| SoakError::file("create", generation.join("s_server.log"), e))?;
    let g = |n: &str| generation.join(n);
    let mut child = Command::new(&args.openssl)
        .arg("s_server")
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(g("cert.pem"))
        .arg("-key")
        .arg(g("key.pem"))
        .arg("-cert_chain")
        .arg(g("chain.pem"))
        .arg("-CAfile")
        .arg(g("bundle.pem"))
        .args(["-Verify", "4", "-verify_return_error", "-www", "-quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: it outlives this command and the agent's signals.
        .process_group(0)
        .spawn()
        .map_err(|source| SoakError::Spawn {
            program: args.openssl.display().to_string(),
            source,
        })?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SoakError::NotReady {
                what: format!("openssl s_server on port {port}"),
                seconds: 0,
                detail: format!(
                    "exited with {status}: {}",
                    std::fs::read_to_string(generation.join("s_server.log")).unwrap_or_default()
                ),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(SoakError::NotReady {
                what: format!("openssl s_server on port {port}"),
                seconds: 10,
                detail: "not accepting".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let new = Current {
        port,
        pid: child.id() as i32,
        generation,
    };
    let old = Current::read(&files);
    new.write(&files)?;
    if let Some(old) = old {
        // The harness stops it once it has been out of service for 2 s.
        write_atomic(&files.ossl().join(format!("retire-{}", old.pid)), "")?;
    }
    Ok(())
}

/// A free port no s_server of this run has had before. Without this, a port freed by a
/// retired s_server was handed to another agent's next one, and a client that had read the
/// old port just before the switch reached the wrong peer ("hostname mismatch", seen in CI):
/// a failure of the harness, not of the rotation. The run's ports are recorded with
/// create-only files beside the agents' directories (reload commands are separate processes).
fn unused_port(agent_dir: &Path) -> Result<u16, SoakError> {
    let registry = agent_dir.parent().unwrap_or(agent_dir).join("ossl-ports");
    std::fs::create_dir_all(&registry).map_err(|e| SoakError::file("create", &registry, e))?;
    let mut last = None;
    for _ in 0..1000 {
        let port = anchorage_test_support::peer::free_port();
        let marker = registry.join(port.to_string());
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => return Ok(port),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(port),
            Err(e) => return Err(SoakError::file("create", &marker, e)),
        }
    }
    Err(SoakError::NotReady {
        what: "a loopback port not used before in this run".into(),
        seconds: 0,
        detail: format!("1000 tries, the last {last:?}"),
    })
}

/// SIGTERM to `pid` (a process this harness started, through the reload command).
pub(crate) fn terminate(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
}

/// Stops the s_servers taken out of service at least `grace` ago; at the end (`all`) every
/// one, the current included.
pub(crate) fn retire(files: &AgentFiles, grace: Duration, all: bool) {
    let Ok(entries) = std::fs::read_dir(files.ossl()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("retire-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let old_enough = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if all || old_enough {
            terminate(pid);
            let _ = std::fs::rename(entry.path(), files.ossl().join(format!("retired-{pid}")));
        }
    }
    if all && let Some(c) = Current::read(files) {
        terminate(c.pid);
    }
}

/// The reason openssl gives, without PIDs, addresses or source lines: the `verify error`
/// text, else the reason field of the first error line.
pub(crate) fn reason(stderr: &str, code: Option<i32>) -> String {
    if let Some(l) = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("verify error:"))
    {
        let text = l.split_once(':').map_or(l, |(_, t)| t);
        return format!("openssl client: verify error: {text}");
    }
    if let Some(l) = stderr.lines().find(|l| l.contains(":error:")) {
        let parts: Vec<&str> = l.split(':').collect();
        if let Some(r) = parts.get(5) {
            return format!("openssl client: {r}");
        }
    }
    format!("openssl client: exit {code:?} without an error line")
}

/// One s_client run from agent `own`'s current files to agent `peer`'s current s_server.
fn one(openssl: &Path, own: &AgentFiles, peer: &AgentFiles, peer_name: &str) -> Result<(), Miss> {
    let mine = Current::read(own).ok_or("openssl client: no s_server generation yet (own)")?;
    let theirs = Current::read(peer).ok_or("openssl client: no s_server generation yet (peer)")?;
    let g = |n: &str| mine.generation.join(n);
    let mut child = Command::new(openssl)
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{}", theirs.port)])
        .args(["-servername", peer_name, "-verify_hostname", peer_name])
        .arg("-verify_return_error")
        .arg("-CAfile")
        .arg(g("bundle.pem"))
        .arg("-cert")
        .arg(g("cert.pem"))
        .arg("-key")
        .arg(g("key.pem"))
        .arg("-cert_chain")
        .arg(g("chain.pem"))
        .args(["-no-CApath", "-no-CAstore", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl client: cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            return Err("openssl client: timeout (10 s)".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = waiter
        .join()
        .map_err(|_| "openssl client: waiter panicked".to_owned())?
        .map_err(|e| format!("openssl client: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains("HTTP/1.0 200 ok") {
        Ok(())
    } else {
        let why = reason(&String::from_utf8_lossy(&out.stderr), out.status.code());
        // Refused by a port whose s_server was retired after we read it (the client started
        // more than the 2 s grace later, on a loaded machine): no handshake took place, and a
        // real client would have been told the new endpoint. Not counted either way.
        if why.ends_with("Connection refused")
            && Current::read(peer).is_some_and(|now| now.port != theirs.port)
        {
            return Err(Miss::Stale);
        }
        Err(Miss::Failed(why))
    }
}

/// Why [`one`] did not complete a handshake.
enum Miss {
    /// The peer's server was retired under the client: no handshake took place, not counted.
    Stale,
    /// A failed handshake (or client), with openssl's reason.
    Failed(String),
}

impl From<String> for Miss {
    fn from(why: String) -> Self {
        Miss::Failed(why)
    }
}

impl From<&str> for Miss {
    fn from(why: &str) -> Self {
        Miss::Failed(why.to_owned())
    }
}

/// s_client runs from agent `own` to agent `peer` at `rate` per second until `stop`.
pub(crate) fn client_loop(
    openssl: PathBuf,
    own: AgentFiles,
    peer: AgentFiles,
    peer_name: String,
    rate: f64,
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
) {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let outcome = one(&openssl, &own, &peer, &peer_name);
        if let Ok(mut c) = counts.lock() {
            match outcome {
                Ok(()) => c.ok += 1,
                Err(Miss::Stale) => {}
                Err(Miss::Failed(r)) => c.fail(r),
            }
        }
        next += period;
        let now = Instant::now();
        if next < now {
            next = now;
        } else {
            std::thread::sleep(next - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_openssl_s_own_words_without_pids() {
        let verify = "depth=0 CN = peer-s.mesh.local\nverify error:num=20:unable to get local issuer certificate\n80EB7A724A7F0000:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889:\n";
        assert_eq!(
            reason(verify, Some(1)),
            "openssl client: verify error: unable to get local issuer certificate"
        );
        let alert = "804B5E698E7F0000:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:../ssl/record/rec_layer_s3.c:1602:SSL alert number 48\n";
        assert_eq!(
            reason(alert, Some(1)),
            "openssl client: tlsv1 alert unknown ca"
        );
        let refused = "803B623C2F7F0000:error:8000006F:system library:BIO_connect:Connection refused:../crypto/bio/bio_sock2.c:117:calling connect()\n";
        assert_eq!(
            reason(refused, Some(1)),
            "openssl client: Connection refused"
        );
    }
}

//! Real peers: find a tool, start a server on a free loopback port, stop it on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when running in CI (`CI=true`), where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The environment variable naming the skip log (set by `scripts/test.sh`).
pub const SKIP_LOG_ENV: &str = "ANCHORAGE_SKIP_LOG";

/// Records that the running test (or a case of it) did not run, and why: prints
/// `SKIPPED: <binary> <test>: <reason>` on stderr and appends `<binary> <test>\t<reason>` to the
/// file named by `ANCHORAGE_SKIP_LOG`. A skipped test still shows `ok` in libtest's output, so
/// this log is what `scripts/test.sh` counts: it prints "N skipped" with the reasons and, in CI,
/// fails on any skip that `scripts/allowed-skips.txt` does not list. The caller returns next.
pub fn skip(reason: &str) {
    let test = format!(
        "{} {}",
        binary_name(),
        std::thread::current().name().unwrap_or("?")
    );
    let reason = reason.replace(['\n', '\t'], " ");
    eprintln!("SKIPPED: {test}: {reason}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write as _;
        // One write of one line with O_APPEND: lines from parallel test processes never mix.
        let line = format!("{test}\t{reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record a skip in {}: {e}", Path::new(&log).display());
        }
    }
}

/// The test binary's name without cargo's hash (`inject`, `anchorage_trust`).
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem,
    }
}

/// Finds `name` on `PATH`. Returns `None` (after [`skip`] recorded it) when it is missing
/// locally, so the test can return early; panics in CI, where every peer must be installed
/// (`scripts/install-test-deps.sh`).
pub fn require(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if in_ci() => {
            panic!("`{name}` is required in CI; install it with scripts/install-test-deps.sh")
        }
        None => {
            skip(&format!(
                "`{name}` is not installed (run scripts/install-test-deps.sh)"
            ));
            None
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free loopback port")
}

/// A child process killed when dropped.
pub struct Running {
    child: Child,
    /// The loopback address it listens on.
    pub addr: SocketAddr,
}

impl Running {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, child: &mut Child, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listened on {addr} after {timeout:?}");
}

/// Starts `openssl s_server` on a free loopback port, sending `cert` then `chain`, answering
/// `GET` requests (`-www`). Returns `None` when openssl is missing locally.
pub fn openssl_server(cert: &Path, key: &Path, chain: Option<&Path>) -> Option<Running> {
    openssl_server_with_args(cert, key, chain, &[])
}

/// How a client run ended: its exit status and what it printed (lossily decoded as UTF-8).
#[derive(Debug)]
pub struct ClientRun {
    /// The exit status.
    pub status: std::process::ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ClientRun {
    /// Standard output then standard error, for matching a message wherever the tool put it.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion with stdin closed (so an interactive client such as `openssl s_client`
/// or `gnutls-cli` ends after the handshake), capturing stdout and stderr. A client still running
/// after `timeout` is killed and the test panics with what it printed, so a hung peer cannot hang
/// the suite.
pub fn run_client(cmd: &mut Command, timeout: Duration) -> ClientRun {
    use std::io::Read;

    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    // Drain both pipes on their own threads so a chatty client cannot block on a full pipe; the
    // text comes back over a channel so a grandchild that keeps a pipe open cannot block us.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
        rx
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let collect = |rx: std::sync::mpsc::Receiver<String>, deadline: Instant| {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left).unwrap_or_else(|_| {
            "<not collected: a process it started still holds the pipe open>".to_owned()
        })
    };
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for client") {
            break (status, false);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break (child.wait().expect("wait for killed client"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let run = ClientRun {
        status,
        stdout: collect(stdout, deadline),
        stderr: collect(stderr, deadline),
    };
    assert!(
        !timed_out,
        "{cmd:?} was still running after {timeout:?} and was killed\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    run
}

/// Like [`openssl_server`], with `extra` arguments added to the `s_server` command line (for
/// example `["-cipher", "DEFAULT@SECLEVEL=0"]` so that OpenSSL 3 serves SHA-1 certificates and
/// RSA keys under 2048 bits). Returns `None` when openssl is missing locally.
pub fn openssl_server_with_args(
    cert: &Path,
    key: &Path,
    chain: Option<&Path>,
    extra: &[&str],
) -> Option<Running> {
    let openssl = require("openssl")?;
    // Retry a few times: the port we picked may be taken between finding and binding it.
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(&openssl);
        cmd.args(["s_server", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(["-www", "-naccept", "1000"])
            .args(extra);
        if let Some(chain) = chain {
            cmd.arg("-cert_chain").arg(chain);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(Running { child, addr });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Port taken or bad arguments: try another port; with bad arguments the last
                // attempt's status is in the panic below.
                eprintln!("openssl s_server {extra:?} exited with {status}; retrying");
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("openssl s_server did not listen on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("openssl s_server {extra:?} could not start on any free port");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_client_captures_both_streams_and_the_exit_code() {
        let run = run_client(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(run.status.code(), Some(3));
        assert_eq!(
            (run.stdout.as_str(), run.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(run.output(), "out\nerr\n");
    }

    #[test]
    #[should_panic(expected = "was still running after")]
    fn run_client_kills_a_hung_client() {
        run_client(
            // Not `exec`: the orphaned `sleep` keeps the pipes open after `sh` is killed.
            Command::new("sh").args(["-c", "echo started; sleep 5; true"]),
            Duration::from_millis(300),
        );
    }
}

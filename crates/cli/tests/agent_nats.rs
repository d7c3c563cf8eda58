//! Issue 15, the NATS transport: `anchorage agent --nats-url` against a real nats-server and a
//! real `anchorage serve --nats-url` process.
//!
//! An agent over NATS installs the bundle and acknowledges it; an admin adds a CA over HTTPS;
//! serve announces the change on `anchorage.v1.bundle.changed`, the agent fetches, writes,
//! and acks over NATS, and `consumers list` shows it at the new version (the time is printed).
//! Negative controls: an agent whose token serve refuses writes the bundle but is never listed
//! (its ack is refused, said in its status), and `--once` on a prefix no serve answers exits 7
//! and writes nothing. `--once` over NATS in a fresh directory exits 0; SIGTERM exits 0.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stderr)] // the measured time

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::pki::Pki;
use anchorage_test_support::{TempDir, peer, tempdir};
use serde_json::Value;

mod common;
use common::anchorage;

/// A running child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Serve {
    home: TempDir,
    url: String,
    nats: String,
    _serve: common::Serve,
}

impl Serve {
    fn start(nats: &str) -> Self {
        let home = tempdir().unwrap();
        let data = home.path().join(".local/share/anchorage");
        let serve = common::Serve::start(
            anchorage(
                home.path(),
                &["serve", "--listen", "127.0.0.1:0", "--nats-url", nats],
            ),
            data,
            "serve",
        );
        let url = serve.url.clone();
        Self {
            home,
            url,
            nats: nats.to_owned(),
            _serve: serve,
        }
    }

    fn data(&self) -> PathBuf {
        self.home.path().join(".local/share/anchorage")
    }

    fn ca(&self) -> PathBuf {
        self.data().join("ca.pem")
    }

    fn token_file(&self) -> PathBuf {
        self.data().join("admin.token")
    }

    /// `agent --nats-url` arguments writing into `dir` (no --server, no --server-ca).
    fn agent_args(&self, consumer: &str, dir: &Path, token: &Path) -> Vec<String> {
        vec![
            "agent".into(),
            format!("--nats-url={}", self.nats),
            format!("--token-file={}", token.display()),
            format!("--consumer={consumer}"),
            format!("--pem={}", dir.join("ca.pem").display()),
            format!("--status-file={}", dir.join("status.json").display()),
            "--heartbeat=1h".into(),
        ]
    }

    fn spawn(&self, args: &[String]) -> Proc {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc(
            anchorage(self.home.path(), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn post(&self, path: &str, body: &Value) {
        let token = std::fs::read_to_string(self.token_file()).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(self.ca())
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .args([
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ])
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn consumers(&self) -> Value {
        let out = anchorage(
            self.home.path(),
            &[
                "consumers",
                "list",
                "-o",
                "json",
                &format!("--server={}", self.url),
                &format!("--ca={}", self.ca().display()),
                &format!("--token-file={}", self.token_file().display()),
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn status(dir: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join("status.json")).ok()?).ok()
}

fn installed_version(dir: &Path) -> Option<u64> {
    status(dir)?.get("bundle_version")?.as_u64()
}

fn listed_version(listed: &Value, consumer: &str) -> Option<u64> {
    listed["consumers"]
        .as_array()?
        .iter()
        .find(|c| c["consumer"] == consumer)?["bundle_version"]
        .as_u64()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_over_nats_installs_and_acks_changes_announced_by_serve() {
    if peer::require("curl").is_none() {
        return;
    }
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let serve = Serve::start(&nats.url());
    let work = tempdir().unwrap();
    let good = work.path().join("good");
    let bad = work.path().join("bad");
    let bogus_token = work.path().join("bogus.token");
    {
        #[allow(clippy::disallowed_methods)]
        std::fs::write(&bogus_token, "not-a-token\n").unwrap();
    }

    // --once over NATS in a fresh directory: exit 0, the PEM written.
    let once_dir = work.path().join("once");
    let mut args = serve.agent_args("once-1", &once_dir, &serve.token_file());
    args.push("--once".into());
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = anchorage(serve.home.path(), &args_ref).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(once_dir.join("ca.pem"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    // Negative control: no serve on that prefix: exit 7 (unreachable), nothing written.
    let none_dir = work.path().join("none");
    let mut args = serve.agent_args("none-1", &none_dir, &serve.token_file());
    args.extend(["--once".into(), "--nats-prefix=nobody".into()]);
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = anchorage(serve.home.path(), &args_ref).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!none_dir.join("ca.pem").exists());
    // --server with --nats-url: exit 2.
    let out = anchorage(
        serve.home.path(),
        &[
            "agent",
            "--once",
            "--nats-url",
            &serve.nats,
            "--server",
            &serve.url,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let _good_agent = serve.spawn(&serve.agent_args("nats-1", &good, &serve.token_file()));
    let _bad_agent = serve.spawn(&serve.agent_args("nats-bad", &bad, &bogus_token));
    wait_until(
        "the agent over NATS never installed a bundle",
        Duration::from_secs(30),
        || installed_version(&good).is_some(),
    );
    let before = installed_version(&good).unwrap();
    wait_until(
        "serve never listed the NATS agent",
        Duration::from_secs(10),
        || listed_version(&serve.consumers(), "nats-1") == Some(before),
    );

    let pki = Pki::new("agent-nats-test");
    let started = Instant::now();
    serve.post(
        "/v1/bundle/cas",
        &serde_json::json!({ "add": pki.root.pem }),
    );
    let want = before + 1;
    wait_until(
        &format!("the NATS agent not listed at version {want} within 5 s"),
        Duration::from_secs(5),
        || listed_version(&serve.consumers(), "nats-1") == Some(want),
    );
    eprintln!(
        "the agent over NATS acknowledged version {want} {:?} after the change",
        started.elapsed()
    );
    let pem = std::fs::read_to_string(good.join("ca.pem")).unwrap();
    assert!(pem.contains(pki.root.pem.lines().nth(1).unwrap()));
    // The status file (with the ack recorded) is written right after the ack returns: serve
    // may list the version a moment before the file says it.
    wait_until(
        &format!("the NATS agent's status not at version {want} within 2 s of its ack"),
        Duration::from_secs(2),
        || installed_version(&good) == Some(want),
    );

    // The agent with a refused token: the bundle is public so its files are written, but its
    // acks are refused (said in its status), and serve never lists it.
    wait_until(
        "the bad-token agent never wrote its status",
        Duration::from_secs(10),
        || {
            status(&bad)
                .and_then(|s| s["last_error"].as_str().map(str::to_owned))
                .is_some_and(|e| e.contains("401"))
        },
    );
    assert!(listed_version(&serve.consumers(), "nats-bad").is_none());

    // SIGTERM: exit 0.
    let mut agent = _good_agent;
    let ok = Command::new("kill")
        .args(["-s", "TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

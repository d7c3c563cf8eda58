//! Commands that hold keys harden their process first (issue 19, item 12): seen from outside,
//! in `/proc/<pid>/limits`, while `secrets put --value-stdin` waits for its value (the
//! encryption seed already in its environment). That the process is also non-dumpable is
//! checked in-process by `anchorage-secrets-server`'s `hardening` test (as root, which these
//! tests run as, `/proc` shows no difference from outside).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anchorage_secrets_server::XKey;
use secrecy::ExposeSecret as _;

/// The soft and hard core limits of `pid`, as `/proc/<pid>/limits` shows them.
fn core_limits(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[4].to_owned(), fields[5].to_owned())
}

/// Waits until `child` shows core limits of 0 and 0, or the deadline passes.
fn hardened(child: &Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if core_limits(child.id()) == ("0".to_owned(), "0".to_owned()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn secrets_commands_run_without_core_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let seed = XKey::generate().seed().expose_secret().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args([
            "secrets",
            "put",
            "db-password",
            "--value-stdin",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &seed)
        .env_remove("ANCHORAGE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(hardened(&child), "the process may still dump core");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hunter2").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Negative control: a process that does not harden itself keeps a non-zero hard limit
    // here, so the check above is not the environment's doing.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (_, hard) = core_limits(cat.id());
    drop(cat.stdin.take());
    cat.wait().unwrap();
    assert_ne!(hard, "0", "this environment already forbids core dumps");
}

//! Two processes sharing one CA data directory: `ca init` in one, then `ca issue` in two
//! processes started together, several rounds. Each must either succeed (a certificate the CA
//! verifies) or fail with the documented exit 11 naming the store file and saying another
//! process uses it; afterwards the store is intact (`ca show` is the same CA, a further `issue`
//! succeeds). A lock held on purpose (`flock` on the store file, as a running anchorage holds
//! it) makes exit 11 certain: the contended branch is exercised even if the rounds never race.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use anchorage_test_support::{peer, tempdir};
use serde_json::Value;

const STORE: i32 = 11;
const ROUNDS: usize = 4;
const BUSY: &str = "is another anchorage process using this data directory? Wait for it to finish";

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.arg("ca")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn issue(dir: &Path, out: &str) -> Child {
    command(dir, &["issue", "--cn", "svc.example", "--out", out])
        .spawn()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What `ca show` says identifies the CA and the store's state (not the time left, which moves).
fn show(dir: &Path) -> [Value; 4] {
    let o = command(dir, &["show", "--output", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    [
        v["sha256"].clone(),
        v["signing_ca"].clone(),
        v["root"]["serial"].clone(),
        v["store_revision"].clone(),
    ]
}

/// `openssl verify` of `out/cert.pem` against the CA certificate written beside it.
fn verifies(openssl: &Path, out: &Path) -> bool {
    Command::new(openssl)
        .arg("verify")
        .arg("-CAfile")
        .arg(out.join("ca.pem"))
        .arg(out.join("cert.pem"))
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn concurrent_issues_succeed_or_exit_11_and_never_damage_the_store() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let init = command(dir, &["init", "--output", "json"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let before = show(dir);
    assert!(before.iter().all(|v| !v.is_null()), "{before:?}");
    let store = dir.join("data").join("anchorage.redb");

    let (mut issued, mut busy) = (0, 0);
    for round in 0..ROUNDS {
        let names = [format!("a{round}"), format!("b{round}")];
        let children: Vec<Child> = names.iter().map(|n| issue(dir, n)).collect();
        for (name, child) in names.iter().zip(children) {
            let o = child.wait_with_output().unwrap();
            let out = dir.join(name);
            match o.status.code() {
                Some(0) => {
                    issued += 1;
                    assert!(verifies(&openssl, &out), "{name} does not verify");
                }
                Some(STORE) => {
                    busy += 1;
                    let err = text(&o);
                    assert!(err.contains(&store.display().to_string()), "{err}");
                    assert!(err.contains(BUSY), "{err}");
                    assert!(!out.exists(), "{name}: a refused issue wrote files");
                }
                other => panic!("{name}: exit {other:?}\n{}", text(&o)),
            }
        }
    }
    eprintln!("{issued} issued, {busy} refused as busy");
    assert!(issued >= ROUNDS, "at least one per round succeeds");
    // The store is the same CA and still issues.
    assert_eq!(show(dir), before);
    let o = issue(dir, "after").wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(verifies(&openssl, &dir.join("after")));
}

#[test]
fn a_held_store_lock_is_exit_11_naming_the_file_and_then_passes() {
    let Some(flock) = peer::require("flock") else {
        return;
    };
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let init = command(dir, &["init"]).output().unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let store = dir.join("data").join("anchorage.redb");

    // Hold the lock a running anchorage holds (an exclusive flock on the file), until told.
    let mut holder = Command::new(&flock)
        .arg("--exclusive")
        .arg(&store)
        .args(["sh", "-c", "echo locked; read _ || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n");
    }
    let o = issue(dir, "held").wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(STORE), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains(BUSY), "{err}");
    assert!(!dir.join("held").exists());

    // Negative control: released, the same command succeeds.
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let o = issue(dir, "free").wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

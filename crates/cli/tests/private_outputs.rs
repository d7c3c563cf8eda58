//! Issue 19 item 9: private outputs (CA and leaf keys, Secrets holding keys, xkey/nkey seeds)
//! are never written through a symbolic link or into a FIFO. Each test puts a symbolic link to
//! a FIFO where a key or seed goes, with an attacker reading the FIFO, runs the real binary
//! with a timeout (a write into a FIFO without a reader would hang it), and checks that the
//! command fails at once with a clear message and the reader got nothing; a plain path still
//! works and is 0600.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anchorage_test_support::peer::{ClientRun, run_client};
use anchorage_test_support::{TempDir, tempdir};

/// How long a refused command may take: it must not wait for the FIFO.
const TIMEOUT: Duration = Duration::from_secs(60);

fn anchorage(dir: &Path, args: &[&str]) -> ClientRun {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CA_PASSPHRASE");
    run_client(&mut cmd, TIMEOUT)
}

/// A FIFO with a reader waiting on it (the attacker), and what the reader got.
struct Trap {
    fifo: PathBuf,
    read: mpsc::Receiver<Vec<u8>>,
}

impl Trap {
    fn new(dir: &Path, name: &str) -> Self {
        let fifo = dir.join(name);
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo");
        let (tx, read) = mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(fs::read(path).unwrap_or_default());
        });
        Self { fifo, read }
    }

    /// Releases the reader (a read-write open never blocks and counts as a writer; closing it
    /// gives the reader end of file) and returns what it read.
    fn spring(self) -> Vec<u8> {
        drop(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.fifo)
                .unwrap(),
        );
        let read = self.read.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            fs::symlink_metadata(&self.fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        read
    }
}

fn refused(run: &ClientRun, code: i32) -> String {
    assert_eq!(run.status.code(), Some(code), "{}", run.output());
    run.stderr.clone()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn init(dir: &TempDir) {
    let run = anchorage(dir.path(), &["ca", "--data-dir", "data", "init"]);
    assert!(run.status.success(), "{}", run.output());
}

#[test]
fn ca_issue_refuses_a_key_pem_linked_to_a_fifo() {
    let dir = tempdir().unwrap();
    init(&dir);
    let issue = |out: &str| {
        anchorage(
            dir.path(),
            &[
                "ca",
                "--data-dir",
                "data",
                "issue",
                "--cn",
                "web.cluster.local",
                "--out",
                out,
            ],
        )
    };
    // Positive control: a plain directory, the key 0600.
    let run = issue("tls");
    assert!(run.status.success(), "{}", run.output());
    assert_eq!(mode(&dir.path().join("tls/key.pem")), 0o600);

    let trap = Trap::new(dir.path(), "trap.fifo");
    fs::create_dir(dir.path().join("trapped")).unwrap();
    std::os::unix::fs::symlink(&trap.fifo, dir.path().join("trapped/key.pem")).unwrap();
    let stderr = refused(&issue("trapped"), 5);
    assert!(
        stderr.contains("key.pem") && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert!(stderr.contains("regular file"), "{stderr}");
    assert_eq!(trap.spring(), b"", "the FIFO's reader got the key");
    assert!(
        fs::symlink_metadata(dir.path().join("trapped/key.pem"))
            .unwrap()
            .is_symlink(),
        "left as it was"
    );
}

#[test]
fn ca_export_refuses_a_secret_file_linked_to_a_fifo() {
    let dir = tempdir().unwrap();
    init(&dir);
    let export = |out: &str| {
        anchorage(
            dir.path(),
            &[
                "ca",
                "--data-dir",
                "data",
                "export",
                "--format",
                "fsm-secret",
                "--out",
                out,
            ],
        )
    };
    let run = export("fsm.yaml");
    assert!(run.status.success(), "{}", run.output());
    assert_eq!(mode(&dir.path().join("fsm.yaml")), 0o600);

    let trap = Trap::new(dir.path(), "trap.fifo");
    std::os::unix::fs::symlink(&trap.fifo, dir.path().join("ca.yaml")).unwrap();
    let stderr = refused(&export("ca.yaml"), 5);
    assert!(
        stderr.contains("ca.yaml") && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(trap.spring(), b"", "the FIFO's reader got the CA key");
}

#[test]
fn secrets_keygen_refuses_a_seed_linked_to_a_fifo() {
    let dir = tempdir().unwrap();
    let keygen = |out: &str| {
        anchorage(
            dir.path(),
            &[
                "secrets", "keygen", "--kind", "transit", "--out", out, "--force",
            ],
        )
    };
    let run = keygen("plain.seed");
    assert!(run.status.success(), "{}", run.output());
    assert_eq!(mode(&dir.path().join("plain.seed")), 0o600);

    let trap = Trap::new(dir.path(), "trap.fifo");
    std::os::unix::fs::symlink(&trap.fifo, dir.path().join("t.seed")).unwrap();
    let stderr = refused(&keygen("t.seed"), 5);
    assert!(
        stderr.contains("t.seed") && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(trap.spring(), b"", "the FIFO's reader got the seed");
    // The FIFO itself as the path, the same.
    let trap = Trap::new(dir.path(), "direct.fifo");
    let stderr = refused(&keygen("direct.fifo"), 5);
    assert!(stderr.contains("FIFO"), "{stderr}");
    assert_eq!(trap.spring(), b"", "the FIFO's reader got the seed");
}

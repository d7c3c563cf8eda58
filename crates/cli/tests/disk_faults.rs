//! Disk full and read-only targets during `bundle build` (issue 18): a clear error naming the
//! output and the OS's reason, exit 5, the previous output whole (byte for byte), and no
//! temporary file left behind.
//!
//! The disk is a real small file system: a `tmpfs` of 512 KiB mounted in a private mount
//! namespace (`unshare -rm`: a user namespace, so no root is needed and nothing is mounted on
//! the host), filled with `dd` until `ENOSPC`; read-only is the same `tmpfs` remounted `ro`. The
//! whole scenario runs as one shell script inside the namespace (the mount is invisible
//! outside it); it copies what the test checks to a directory outside the mount.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // the messages, for docs/faults.md

use std::path::Path;
use std::process::{Command, Output};

use anchorage_test_support::pki;

mod common;

/// Runs `script` with `sh -eu` in a new user and mount namespace (with `extra` environment) with `$MNT` a fresh 512 KiB
/// tmpfs; `None` (the test skips, saying why) where namespaces are not allowed.
fn in_small_fs(dir: &Path, script: &str) -> Option<Output> {
    in_small_fs_with(dir, script, &[])
}

fn in_small_fs_with(dir: &Path, script: &str, extra: &[(&str, &str)]) -> Option<Output> {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let probe = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=512k tmpfs '{}'",
            mnt.display()
        ))
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            anchorage_test_support::peer::skip(&format!(
                "unshare -rm with a tmpfs mount is not allowed here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return None;
        }
        Err(e) => {
            anchorage_test_support::peer::skip(&format!("unshare could not run: {e}"));
            return None;
        }
    }
    let full = format!("mount -t tmpfs -o size=512k tmpfs \"$MNT\"\n{script}");
    Some(
        Command::new("unshare")
            .args(["-rm", "sh", "-eu", "-c", &full])
            .current_dir(dir)
            .env("MNT", &mnt)
            .env("ANCHORAGE", env!("CARGO_BIN_EXE_anchorage"))
            .envs(extra.iter().copied())
            .env_remove("ANCHORAGE_LOG")
            .output()
            .unwrap(),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `n` CAs as one PEM file.
fn bundle_of(dir: &Path, name: &str, n: usize) {
    let pem: String = (0..n)
        .map(|i| pki::root_ca(&format!("Disk Fault CA {name} {i}")).pem)
        .collect();
    let mut f = std::fs::File::create(dir.join(name)).unwrap();
    std::io::Write::write_all(&mut f, pem.as_bytes()).unwrap();
}

#[test]
fn bundle_build_on_a_full_or_read_only_disk_keeps_the_previous_output() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let d = dir.path();
    bundle_of(d, "small.pem", 2);
    // About 1.7 KB a CA in PEM with its comment: far more than the space left.
    bundle_of(d, "big.pem", 150);
    std::fs::create_dir(d.join("seen")).unwrap();

    let script = r#"
out="$MNT/out"; mkdir "$out"
# The previous outputs, on the small disk.
"$ANCHORAGE" bundle build small.pem --pem "$out/bundle.pem" --openssl-dir "$out/certs" >/dev/null
cp "$out/bundle.pem" seen/previous.pem
ls "$out/certs" > seen/previous-dir.txt
# Fill the disk.
dd if=/dev/zero of="$MNT/fill" bs=4k >/dev/null 2>&1 || true
df -k "$MNT" | tail -1 > seen/df.txt
# Disk full: the PEM, then the hashed directory.
set +e
"$ANCHORAGE" bundle build big.pem --pem "$out/bundle.pem" 2> seen/full-pem.err
echo $? > seen/full-pem.code
"$ANCHORAGE" bundle build big.pem --openssl-dir "$out/certs" 2> seen/full-dir.err
echo $? > seen/full-dir.code
set -e
cp "$out/bundle.pem" seen/after-full.pem
ls -a "$out" > seen/after-full-ls.txt
ls "$out/certs" > seen/after-full-dir.txt
# Space again: the same build succeeds (control).
rm "$MNT/fill"
"$ANCHORAGE" bundle build big.pem --pem "$out/bundle.pem" 2> seen/freed.err
cp "$out/bundle.pem" seen/after-freed.pem
# Read-only: the previous output stays.
mount -o remount,ro "$MNT"
set +e
"$ANCHORAGE" bundle build small.pem --pem "$out/bundle.pem" --openssl-dir "$out/certs" 2> seen/ro.err
echo $? > seen/ro.code
set -e
cp "$out/bundle.pem" seen/after-ro.pem
"#;
    let Some(out) = in_small_fs(d, script) else {
        return;
    };
    assert!(
        out.status.success(),
        "the scenario failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let read = |name: &str| std::fs::read(d.join("seen").join(name)).unwrap();
    let read_text = |name: &str| text(&read(name));
    let df = read_text("df.txt");

    // Disk full: exit 5, the reason and the output named, the previous file whole.
    for (case, output) in [("full-pem", "bundle.pem"), ("full-dir", "certs")] {
        let err = read_text(&format!("{case}.err"));
        assert_eq!(
            read_text(&format!("{case}.code")).trim(),
            "5",
            "{case}: {err}\n{df}"
        );
        assert!(
            err.contains("No space left on device") && err.contains(output),
            "{case}: {err}"
        );
    }
    let (after, previous) = (read("after-full.pem"), read("previous.pem"));
    assert!(
        after == previous,
        "the previous output changed on the full disk: {} bytes, was {}",
        after.len(),
        previous.len()
    );
    assert_eq!(
        read_text("after-full-dir.txt"),
        read_text("previous-dir.txt")
    );
    let left: Vec<String> = read_text("after-full-ls.txt")
        .lines()
        .filter(|l| !matches!(*l, "." | ".." | "bundle.pem" | "certs"))
        .map(str::to_owned)
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left on the full disk: {left:?}"
    );

    // Control: with space, the big bundle is written.
    let freed = read("after-freed.pem");
    assert_eq!(
        text(&freed).matches("BEGIN CERTIFICATE").count(),
        150,
        "{}",
        read_text("freed.err")
    );

    // Read-only: exit 5 naming the reason, the previous output (the big one now) whole.
    let err = read_text("ro.err");
    assert_eq!(read_text("ro.code").trim(), "5", "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        read("after-ro.pem") == freed,
        "the output changed on a read-only disk"
    );
    for case in ["full-pem", "full-dir", "ro"] {
        println!("{case}: {}", read_text(&format!("{case}.err")).trim());
    }
}

/// The agent's writes (issue 18): a previous bundle on the small disk; the bundle serve gives
/// differs, so the agent must write. Read-only, then full: the agent fails naming the reason and
/// the previous file stays whole; with space again it installs (control).
#[test]
fn agent_on_a_full_or_read_only_disk_keeps_the_previous_output() {
    if anchorage_test_support::peer::require("curl").is_none() {
        return;
    }
    let dir = anchorage_test_support::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let mut cmd = common::anchorage(d, &["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
    cmd.arg(&data);
    let serve = common::Serve::start(cmd, data.clone(), "serve");
    let url = serve.url.clone();
    // Twenty more CAs in serve's bundle (one per request): about 35 KB to write.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    for i in 0..20 {
        let pem = pki::root_ca(&format!("Agent Disk Fault CA {i}")).pem;
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(data.join("ca.pem"))
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(["-d", &serde_json::json!({ "add": pem }).to_string()])
            .arg(format!("{url}/v1/bundle/cas"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stdout));
    }
    bundle_of(d, "small.pem", 2);
    std::fs::create_dir(d.join("seen")).unwrap();

    let script = r#"
out="$MNT/out"; mkdir "$out"
agent() {
    "$ANCHORAGE" agent --once --server "$URL" --server-ca data/ca.pem \
        --token-file data/admin.token --consumer disk-fault --pem "$out/bundle.pem" \
        --status-file status.json "$@"
}
"$ANCHORAGE" bundle build small.pem --pem "$out/bundle.pem" >/dev/null
cp "$out/bundle.pem" seen/previous.pem
set +e
mount -o remount,ro "$MNT"
agent 2> seen/ro.err; echo $? > seen/ro.code
mount -o remount,rw "$MNT"
cp "$out/bundle.pem" seen/after-ro.pem
dd if=/dev/zero of="$MNT/fill" bs=4k >/dev/null 2>&1
agent 2> seen/full.err; echo $? > seen/full.code
cp "$out/bundle.pem" seen/after-full.pem
ls -a "$out" > seen/after-full-ls.txt
rm "$MNT/fill"
agent 2> seen/freed.err; echo $? > seen/freed.code
cp "$out/bundle.pem" seen/after-freed.pem
"#;
    let Some(out) = in_small_fs_with(d, script, &[("URL", url.as_str())]) else {
        return;
    };
    assert!(
        out.status.success(),
        "the scenario failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let read = |name: &str| std::fs::read(d.join("seen").join(name)).unwrap();
    let read_text = |name: &str| text(&read(name));
    let previous = read("previous.pem");
    for (case, reason) in [
        ("ro", "Read-only file system"),
        ("full", "No space left on device"),
    ] {
        let err = read_text(&format!("{case}.err"));
        let code = read_text(&format!("{case}.code"));
        assert_ne!(code.trim(), "0", "{case}: {err}");
        assert!(
            err.contains(reason) && err.contains("bundle.pem"),
            "{case}: {err}"
        );
        assert!(
            read(&format!("after-{case}.pem")) == previous,
            "{case}: the previous bundle changed"
        );
        println!("agent, {case}: exit {} {}", code.trim(), err.trim());
    }
    let left: Vec<String> = read_text("after-full-ls.txt")
        .lines()
        .filter(|l| !matches!(*l, "." | ".." | "bundle.pem"))
        .map(str::to_owned)
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left on the full disk: {left:?}"
    );
    // Control: with space, the agent installs serve's bundle (its root and the twenty CAs).
    assert_eq!(
        read_text("freed.code").trim(),
        "0",
        "{}",
        read_text("freed.err")
    );
    let installed = read_text("after-freed.pem");
    assert_eq!(
        installed.matches("BEGIN CERTIFICATE").count(),
        21,
        "{installed}"
    );
}

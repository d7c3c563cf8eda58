//! A small disk for fault tests (issue 18): a `tmpfs` of a few MiB mounted in a private user
//! and mount namespace, so no root is needed and nothing is mounted on the host.
//!
//! The test binary runs one of its own ignored tests again under `unshare -rm`
//! ([`run_child`]); that child gets the directory in an environment variable, mounts the
//! `tmpfs` over it ([`mount_tmpfs`]), fills it ([`fill`]) and runs the scenario; its panics are
//! the test's failures. Where `unshare` or the mount is not allowed the test is skipped (and
//! the skip recorded, [`crate::peer::skip`]).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

/// `mount ARGS`, panicking with mount's error.
pub fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts a `tmpfs` of `size` (`"2m"`) over `dir` (inside the child's namespace).
pub fn mount_tmpfs(dir: &Path, size: &str) {
    let dir = dir.to_str().expect("a UTF-8 mount point");
    mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir]);
}

/// Fills the file system holding `dir` until `ENOSPC` (a file `fill` in `dir`; remove it for
/// space again), down to the last bytes, and syncs it.
pub fn fill(dir: &Path) {
    #[allow(clippy::disallowed_methods)] // the filler, not an output
    let mut f = std::fs::File::create(dir.join("fill")).expect("create the filler");
    let block = vec![0u8; 16 * 1024];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    for _ in 0..4096 {
        if f.write_all(&[0u8; 1]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

/// An error with its sources, `: `-separated, as the CLI prints it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Runs this test binary's ignored test `child` (an exact name) under `unshare -rm`, with
/// `env` set to `dir`, and panics unless it passed; its stdout and stderr. `None` (the skip
/// recorded) when this machine does not allow a `tmpfs` mount in a user namespace.
pub fn run_child(child: &str, env: &str, dir: &Path) -> Option<(String, String)> {
    let probe = Command::new("unshare")
        .args(["-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            crate::peer::skip(&format!(
                "unshare -rm with a tmpfs mount is not allowed here: {other:?}"
            ));
            return None;
        }
    }
    let out = Command::new("unshare")
        .arg("-rm")
        .arg(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(env, dir)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed:\n{stdout}\n{stderr}"
    );
    Some((stdout, stderr))
}

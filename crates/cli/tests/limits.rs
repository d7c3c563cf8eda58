//! Input bounds through the real binary, with the peak memory of the process measured
//! (`/usr/bin/time -f %M`, the child's own `ru_maxrss`), not assumed (issue 18; the limits are
//! in docs/limits.md, unit tests beside each constant).
//!
//! Each case is a crafted input that would otherwise cost gigabytes or hours: a source far over
//! `MAX_SOURCE_BYTES` (sparse: no disk used), and a 700 KB "billion laughs" Kubernetes manifest
//! (10^10 values once its aliases are expanded). `bundle build` must report the problem naming
//! the file and the limit, still build from the good source beside it, and stay small.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command, Output};

use anchorage_test_support::pki;

/// Peak resident memory allowed for a `bundle build` refusing a hostile source. A plain build
/// of one certificate peaks around 23 MB here; the alias bomb below at about 75 MB (the values
/// built until the expansion budget, 8 × 700 KB + 16 MiB, is spent, plus the parser's events).
const MAX_PEAK_KB: u64 = 128 * 1024;

/// Runs `anchorage` under `/usr/bin/time -f %M`: the output, and the peak RSS in KiB.
fn run_measured(dir: &Path, args: &[&str]) -> Option<(Output, u64)> {
    let time = anchorage_test_support::peer::require("time")?; // /usr/bin/time (package `time`)
    let out = Command::new(time)
        .args(["-f", "peak-rss-kb=%M", "--"])
        .arg(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let peak = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {err}"));
    Some((out, peak))
}

fn setup() -> tempfile::TempDir {
    let dir = anchorage_test_support::tempdir().unwrap();
    pki::root_ca("Limits Test CA").write_pem(dir.path(), "good.crt");
    dir
}

fn check_refused(dir: &Path, source: &str, expect: &[&str]) -> u64 {
    let Some((out, peak)) = run_measured(
        dir,
        &["bundle", "build", source, "good.crt", "--pem", "out.pem"],
    ) else {
        return 0;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for e in expect {
        assert!(err.contains(e), "{source}: expected {e:?} in:\n{err}");
    }
    assert!(
        peak <= MAX_PEAK_KB,
        "{source}: peak RSS {peak} KiB > {MAX_PEAK_KB} KiB"
    );
    // The good source was still used.
    let pem = std::fs::read_to_string(dir.join("out.pem")).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1, "{pem}");
    // And refused with --strict, exit 3.
    let out = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(["bundle", "build", source, "good.crt", "--strict"])
        .args(["--pem", "strict.pem"])
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(!dir.join("strict.pem").exists());
    peak
}

/// PEM and bundle size: an 8 GiB source is refused by its size, unread.
#[test]
fn a_source_over_max_source_bytes_is_refused_unread_in_little_memory() {
    let dir = setup();
    let huge = std::fs::File::create(dir.path().join("huge.pem")).unwrap();
    huge.set_len(8 << 30).unwrap();
    let peak = check_refused(
        dir.path(),
        "huge.pem",
        &[
            "huge.pem: larger than the limit of 268435456 bytes",
            "MAX_SOURCE_BYTES",
        ],
    );
    println!("8 GiB source refused, peak RSS {peak} KiB");
}

/// YAML alias expansion: 100,000 aliases of a 100,000-item sequence (700 KB of YAML, within
/// `serde_yaml_ng`'s own repetition limit) is refused as soon as the expansion budget is spent.
#[test]
fn a_billion_laughs_manifest_is_refused_in_little_memory() {
    let dir = setup();
    let mut yaml = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &a [");
    yaml.push_str(&"l,".repeat(100_000));
    yaml.push_str("]\ny: [");
    yaml.push_str(&"*a,".repeat(100_000));
    yaml.push_str("]\ndata: {ca.crt: x}\n");
    std::fs::File::create(dir.path().join("bomb.yaml"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, yaml.as_bytes()))
        .unwrap();
    let peak = check_refused(
        dir.path(),
        "bomb.yaml",
        &[
            "bomb.yaml: Kubernetes manifest refused: YAML aliases expand document 1",
            "MAX_MANIFEST_EXPANSION",
        ],
    );
    println!("alias bomb refused, peak RSS {peak} KiB");
}

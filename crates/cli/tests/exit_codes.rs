//! Issue 13, "One CLI structure": the error → exit-code mapping moved into `exit.rs` and the
//! `--help` tables are generated from its `Code` enum. Representative failures of each kind
//! still end with the same numbers, on stderr and in the JSON failure document (printed by the
//! one printer, with the fields each command adds), and `anchorage --help` lists every code once.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use anchorage_test_support::pki;

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CA_PASSPHRASE")
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("xdg"))
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// The keys of a JSON object, in the order printed.
fn keys(o: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .filter_map(|l| l.strip_prefix("  \"")) // top-level keys only (two-space indent)
        .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn representative_failures_keep_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = pki::root_ca("Exit Codes Root");
    root.write_pem(d, "ca.pem");
    #[allow(clippy::disallowed_methods)] // a test fixture, not an output
    fs::write(
        d.join("server.pem"),
        format!("{}{}", root.pem, root.key_pem),
    )
    .unwrap();

    // (arguments, code): one per kind of failure the issue names.
    let cases: &[(&[&str], i32)] = &[
        // 2: clap's own usage error, and one of ours (a global option without effect).
        (&["bundle", "build", "--no-such-flag"], 2),
        (&["--tls-ca-path", "ca.pem", "bundle", "build", "ca.pem"], 2),
        // 3: a missing input, also a missing --tls-ca-path.
        (&["bundle", "build", "missing.pem"], 3),
        (&["--tls-ca-path", "missing.pem", "tls", "roots"], 3),
        // 4: a private key among the certificates.
        (&["bundle", "build", "server.pem"], 4),
        // 5: an output that cannot be written.
        (
            &[
                "bundle",
                "build",
                "ca.pem",
                "--openssl-dir",
                "certs",
                "--openssl-dir-bundle",
                "../escape.crt",
            ],
            5,
        ),
        // 8: no CA in the store.
        (&["ca", "show", "--data-dir", "empty"], 8),
    ];
    for (args, code) in cases {
        let out = anchorage(d, args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("anchorage: error: ")
                || String::from_utf8_lossy(&out.stderr).contains("error: "),
            "{args:?}"
        );
    }
}

#[test]
fn the_json_failure_document_keeps_its_fields_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A plain failure: schema, error, exit_code.
    let out = anchorage(
        d,
        &["ca", "show", "--data-dir", "empty", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(8));
    assert_eq!(keys(&out), ["schema", "error", "exit_code"]);
    assert_eq!(json(&out)["exit_code"], 8);

    // A usage error clap refused, with -o json among the arguments.
    let out = anchorage(d, &["ca", "show", "-o", "json", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(keys(&out), ["schema", "error", "exit_code"]);

    // `bundle build`: the policy's problems and findings after the code (empty here).
    let out = anchorage(d, &["bundle", "build", "missing.pem", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        keys(&out),
        ["schema", "error", "exit_code", "problems", "findings"]
    );
    assert_eq!(json(&out)["problems"], serde_json::json!([]));

    // `doctor`: the target first.
    let out = anchorage(
        d,
        &["doctor", "https://exa mple.invalid/", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(keys(&out), ["schema", "target", "error", "exit_code"]);
    assert_eq!(json(&out)["target"], "https://exa mple.invalid/");

    // Negative control: text mode prints nothing on stdout.
    let out = anchorage(d, &["ca", "show", "--data-dir", "empty"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(out.stdout.is_empty());
}

#[test]
fn top_level_help_lists_every_exit_code_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = anchorage(dir.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let table = text.split_once("Exit codes:\n").unwrap().1;
    let codes: Vec<u32> = table
        .lines()
        .filter_map(|l| l.trim_start().split_once("  "))
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    assert_eq!(codes, (0..=19).collect::<Vec<_>>(), "{table}");
}

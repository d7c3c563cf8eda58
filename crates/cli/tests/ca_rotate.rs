//! Issue 16: `anchorage ca rotate start|status|advance|abort|prune` against a real
//! `anchorage serve` process: an FSM/OSM root (a Secret manifest written by `ca export`) taken
//! over as A, the gate refusing with exit 19, `--force`, a second start refused (12), abort,
//! text and JSON status.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use anchorage_test_support::{TempDir, tempdir};
use serde_json::Value;

mod common;

const REFUSED: i32 = 12;
const GATE_NOT_HOLDING: i32 = 19;

struct Home {
    dir: TempDir,
}

impl Home {
    fn data(&self) -> PathBuf {
        self.dir.path().join(".local/share/anchorage")
    }

    fn anchorage(&self, args: &[&str]) -> Command {
        common::anchorage(self.dir.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.anchorage(args).output().unwrap()
    }
}

/// A running `anchorage serve` (killed when dropped) and its URL.
fn serve(home: &Home, args: &[&str]) -> (common::Serve, String) {
    let serve = common::Serve::start(
        home.anchorage(&[&["serve"], args].concat()),
        home.data(),
        "serve",
    );
    let url = serve.url.clone();
    (serve, url)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn rotate(home: &Home, url: &str, args: &[&str]) -> Output {
    home.run(&[&["ca", "rotate"], args, &["--server", url]].concat())
}

#[test]
fn rotate_takes_an_fsm_root_over_gates_forces_refuses_and_aborts() {
    let home = Home {
        dir: tempdir().unwrap(),
    };
    // The mesh's root, exported as the fsm-ca-bundle Secret a mesh keeps it in.
    let mesh = home.dir.path().join("mesh");
    let out = home.run(&[
        "ca",
        "init",
        "--cn",
        "fsm-mesh-root",
        "--data-dir",
        mesh.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest = home.dir.path().join("fsm.yaml");
    let out = home.run(&[
        "ca",
        "export",
        "--format",
        "fsm-secret",
        "--data-dir",
        mesh.to_str().unwrap(),
        "--out",
        manifest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let listen = format!("127.0.0.1:{}", free_port());
    let (_serve, url) = serve(
        &home,
        &[
            "--listen",
            &listen,
            "--rotation-auto",
            "false",
            "--rotation-min-dwell",
            "1h",
        ],
    );

    let out = rotate(&home, &url, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("phase: idle"),
        "{}",
        text(&out)
    );

    let out = rotate(
        &home,
        &url,
        &[
            "start",
            "--fsm-secret",
            manifest.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["phase"], "staged");
    assert_eq!(doc["old"]["subject"], "CN=fsm-mesh-root");
    // `anchorage ca show` on serve's store would now show the mesh root (serve holds the
    // store open, so it is read through serve: the signer is A).
    assert_eq!(doc["signer"]["subject"], "CN=fsm-mesh-root");

    // The dwell holds the gate: exit 19, the reason on stderr.
    let out = rotate(&home, &url, &["advance"]);
    assert_eq!(out.status.code(), Some(GATE_NOT_HOLDING), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dwell"),
        "{}",
        text(&out)
    );
    // A second start is refused.
    let out = rotate(&home, &url, &["start"]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", text(&out));

    let out = rotate(&home, &url, &["advance", "--force", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["phase"], "signing");

    let out = rotate(&home, &url, &["abort"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("aborting a rotation left in signing")
            && stdout.contains("gate to retiring"),
        "{stdout}"
    );
    // Nothing to prune while the abort runs.
    let out = rotate(&home, &url, &["prune"]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", text(&out));
    assert!(home.data().join("ca.pem").is_file());
}

#[test]
fn rotate_external_moves_trust_only_and_needs_both_roots() {
    let home = Home {
        dir: tempdir().unwrap(),
    };
    // Two roots of an "external issuer", as PEM files (certificates only are sent).
    let mut roots = Vec::new();
    for name in ["vault-a", "vault-b"] {
        let dir = home.dir.path().join(name);
        let out = home.run(&[
            "ca",
            "init",
            "--cn",
            name,
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let out_dir = home.dir.path().join(format!("{name}-pem"));
        let out = home.run(&[
            "ca",
            "export",
            "--format",
            "pem",
            "--data-dir",
            dir.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        roots.push(out_dir.join("ca.crt"));
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let (_serve, url) = serve(&home, &["--listen", &listen, "--rotation-min-dwell", "0s"]);
    let (a, b) = (roots[0].to_str().unwrap(), roots[1].to_str().unwrap());

    // --external needs --old (clap: exit 2).
    let out = rotate(&home, &url, &["start", "--external", "--import", b]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = rotate(
        &home,
        &url,
        &[
            "start",
            "--external",
            "--import",
            b,
            "--old",
            a,
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["external"], true);
    assert_eq!(doc["old"]["subject"], "CN=vault-a");
    assert_eq!(doc["new"]["subject"], "CN=vault-b");
    assert!(doc["signer"].is_null(), "serve's signer is not part of it");
}

//! `anchorage controller`: the CRD it prints is the committed one, its help has examples and
//! exit codes, and without any Kubernetes client configuration it exits 7 naming what to do.
//! The controller itself is tested in crates/controller (pure, and against kmock).

use std::process::Command;

fn anchorage(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    cmd.args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run anchorage")
}

#[test]
fn crd_prints_the_committed_crd() {
    let out = anchorage(&["controller", "crd"], &[]);
    assert!(out.status.success());
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/controller/crd.yaml"
    ))
    .expect("read crd.yaml");
    assert_eq!(out.stdout, committed);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let out = anchorage(&["controller", "--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Examples:") && text.contains("Exit codes:"),
        "{text}"
    );
    assert!(text.contains("--trust-namespace"), "{text}");
}

#[test]
fn no_client_configuration_exits_7() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-kubeconfig");
    let out = anchorage(
        &["controller", "--trust-namespace", "t"],
        &[
            ("KUBECONFIG", missing.to_str().expect("utf-8 path")),
            ("HOME", dir.path().to_str().expect("utf-8 path")),
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Kubernetes client") && err.contains("KUBECONFIG"),
        "{err}"
    );
}

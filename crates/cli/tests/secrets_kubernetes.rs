//! `anchorage secrets serve --store kubernetes`: the real binary, its kube-rs client configured
//! from a kubeconfig file, against PyPI's `kmock` Kubernetes emulator (the controller's launcher
//! script), on a real nats-server, asked by the real `wasmcloud-secrets-client` on the backend
//! name wasmCloud's own Kubernetes backend uses (`kube`). A mapped component reads a Secret's
//! data key, an unmapped one is refused; `secrets list` reads the Secret names; the `--k8s-*`
//! options are refused without `--store kubernetes`, admin keys with it. The store's own cases
//! (versions, binary data, missing keys) are in crates/secrets-store-k8s/tests/kmock.rs.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anchorage_secrets::XKey;
use anchorage_test_support::kmock::Kmock;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::tempdir;
use secrecy::ExposeSecret as _;

const NAMESPACE: &str = "wasmcloud-secrets";

/// kmock on a free port, or `None` (skipped loudly) when python3 or kmock is missing.
fn start_kmock() -> Option<Kmock> {
    Kmock::start("`secrets serve --store kubernetes`", &[])
}

/// POSTs `body` to kmock; a 2xx answer.
fn post(kmock: &Kmock, path: &str, body: &serde_json::Value) {
    let (status, answer) = kmock.post(path, &body.to_string());
    assert!(
        (200..300).contains(&status),
        "POST {path}: {status} {answer}"
    );
}

/// The request wasmCloud sends for `db`'s `password` on the backend `kube`.
fn request(entity: &str, account: &nkeys::KeyPair) -> anchorage_secrets::SecretRequest {
    let mut r = common::wasmcloud::request("db", entity, account);
    r.field = Some("password".into());
    r
}

/// The binary with a clean environment (tests/common), no `KUBECONFIG`, and a transit seed.
fn anchorage(dir: &std::path::Path, transit: &str) -> Command {
    let mut cmd = common::anchorage(dir, &[]);
    cmd.env_remove("KUBECONFIG")
        .env("ANCHORAGE_SECRETS_TRANSIT_SEED", transit);
    cmd
}

#[test]
fn serve_reads_kubernetes_secrets_for_mapped_components_only() {
    let Some(kmock) = start_kmock() else { return };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    #[allow(clippy::disallowed_methods)] // a test fixture, not an output
    std::fs::write(&kubeconfig, kmock.kubeconfig(NAMESPACE)).unwrap();
    let account = nkeys::KeyPair::new_account();
    let mapped = nkeys::KeyPair::new_module().public_key();
    let stranger = nkeys::KeyPair::new_module().public_key();
    post(
        &kmock,
        &format!("/api/v1/namespaces/{NAMESPACE}/secrets"),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": NAMESPACE},
            "data": {"password": "aHVudGVyMg=="},
        }),
    );
    post(
        &kmock,
        &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "anchorage-secrets-mappings", "namespace": NAMESPACE},
            "data": {mapped.clone(): "db\n"},
        }),
    );

    let transit = XKey::generate().seed().expose_secret().to_owned();
    let kc = kubeconfig.to_str().unwrap();
    // `secrets list` through the in-process executor: names only.
    let out = anchorage(dir.path(), &transit)
        .args([
            "secrets",
            "list",
            "--store",
            "kubernetes",
            "--kubeconfig",
            kc,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("db"));

    let url = nats.url();
    let mut serve = anchorage(dir.path(), &transit)
        .args([
            "secrets",
            "serve",
            "--store",
            "kubernetes",
            "--kubeconfig",
            kc,
            "--backend",
            "kube",
            "--nats-url",
            &url,
            "--allow-any-issuer",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (allowed, refused) = runtime.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(&url)
            .await
            .unwrap();
        let mut up = false;
        for _ in 0..100 {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                nc.request("wasmcloud.secrets.v1alpha1.kube.server_xkey", "".into()),
            )
            .await;
            if let Ok(Ok(_)) = asked {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "serve never answered on the kube backend");
        let client = wasmcloud_secrets_client::Client::new("kube", "wasmcloud.secrets", nc)
            .await
            .unwrap();
        let allowed = client
            .get(request(&mapped, &account), nkeys::XKey::new())
            .await
            .map(|s| s.string_secret);
        let refused = client
            .get(request(&stranger, &account), nkeys::XKey::new())
            .await
            .map(|s| s.string_secret);
        (allowed, refused)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let status = serve.wait().unwrap();
    let mut stderr = String::new();
    serve
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(allowed.unwrap(), Some("hunter2".to_owned()), "{stderr}");
    assert_eq!(
        refused.unwrap_err().to_string(),
        "server error: Error fetching secret: unauthorized"
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("kubernetes store"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "a value in the log: {stderr}");
}

#[test]
fn kubernetes_options_are_refused_where_they_do_not_apply() {
    let dir = tempdir().unwrap();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let out = anchorage(dir.path(), &transit)
        .args([
            "secrets",
            "list",
            "--k8s-namespace",
            "apps",
            "--data-dir",
            ".",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--k8s-namespace needs --store kubernetes")
    );
    let admin = nkeys::KeyPair::new_user().public_key();
    let out = anchorage(dir.path(), &transit)
        .args([
            "secrets",
            "serve",
            "--store",
            "kubernetes",
            "--allow-any-issuer",
            "--admin-key",
            &admin,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--admin-key with --store kubernetes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

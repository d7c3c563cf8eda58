//! `anchorage controller`: the CRD it prints is the committed one, its help has examples and
//! exit codes, and without any Kubernetes client configuration it exits 7 naming what to do.
//! The controller itself is tested in crates/controller (pure, and against kmock).

use std::process::Command;

/// Writes a test input (not an output of ours, so not through anchorage_trust::atomic).
fn write_input(path: &std::path::Path, bytes: impl AsRef<[u8]>) {
    #[allow(clippy::disallowed_methods)] // test inputs
    std::fs::write(path, bytes).expect("write a test input");
}

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

#[test]
fn webhook_config_prints_the_committed_configuration_and_fills_the_ca_bundle() {
    let out = anchorage(&["controller", "webhook-config"], &[]);
    assert!(out.status.success());
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/webhook/mutatingwebhookconfiguration.yaml"
    ))
    .expect("read mutatingwebhookconfiguration.yaml");
    assert_eq!(out.stdout, committed);

    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, _) = issue_webhook_certificate(dir.path());
    let out = anchorage(
        &[
            "controller",
            "webhook-config",
            "--ca-bundle",
            ca.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    let pem = std::fs::read(&ca).expect("read ca.pem");
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(&pem);
    assert!(yaml.contains(&format!("caBundle: {expected}")), "{yaml}");

    // Negative control: a file without a certificate is refused, exit 3.
    let not_pem = dir.path().join("not.pem");
    write_input(&not_pem, "hello");
    let out = anchorage(
        &[
            "controller",
            "webhook-config",
            "--ca-bundle",
            not_pem.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
}

/// `ca init` and `ca issue --kind webhook` with the real binary: (ca.pem, the out directory).
fn issue_webhook_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let pass = dir.join("pass");
    write_input(&pass, "webhook-test-passphrase\n");
    let data = dir.join("data");
    let env = [("ANCHORAGE_DATA_DIR", data.to_str().expect("utf-8"))];
    let p = pass.to_str().expect("utf-8");
    let out = anchorage(&["ca", "init", "--passphrase-file", p], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tls = dir.join("tls");
    let out = anchorage(
        &[
            "ca",
            "issue",
            "--kind",
            "webhook",
            "--cn",
            "anchorage-webhook.anchorage-trust.svc",
            "--out",
            tls.to_str().expect("utf-8"),
            "--passphrase-file",
            p,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (tls.join("ca.pem"), tls)
}

/// Kills the child when dropped (a failing assertion must not leave the server running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl")
}

#[test]
fn webhook_serves_reviews_with_the_ca_issued_certificate() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, tls) = issue_webhook_certificate(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let cert = tls.join("chain.pem");
    let key = tls.join("key.pem");
    let _server = Child(
        Command::new(env!("CARGO_BIN_EXE_anchorage"))
            .args([
                "controller",
                "webhook",
                "--configmap",
                "corp-trust",
                "--listen",
                &listen,
            ])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the webhook"),
    );
    let host = "anchorage-webhook.anchorage-trust.svc";
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = |path: &str| format!("https://{host}:{port}{path}");
    let cacert = ca.to_str().expect("utf-8");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = curl(&["--cacert", cacert, "--resolve", &resolve, &url("/healthz")]);
        if out.status.success() {
            assert_eq!(out.stdout, b"ok");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../controller/tests/fixtures/admission/pod-create-gke.json"
    );
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("read fixture")).expect("json");
    review["request"]["object"]["metadata"]["labels"]["trust.anchorage.dev/inject"] = "true".into();
    let body = dir.path().join("review.json");
    write_input(&body, serde_json::to_vec(&review).expect("json"));
    let data = format!("@{}", body.display());
    let out = curl(&[
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        "-H",
        "content-type: application/json",
        "--data-binary",
        &data,
        &url("/mutate"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch = String::from_utf8(patch).expect("utf-8");
    assert!(
        patch.contains("\"corp-trust\"") && patch.contains("SSL_CERT_FILE"),
        "{patch}"
    );

    // Negative control: curl without the CA refuses the certificate (exit 60).
    let out = curl(&["--resolve", &resolve, &url("/healthz")]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn webhook_refuses_bad_settings_and_files_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let m = missing.to_str().expect("utf-8");
    let out = anchorage(
        &[
            "controller",
            "webhook",
            "--configmap",
            "Not_A_Name",
            "--tls-cert",
            m,
            "--tls-key",
            m,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid ConfigMap name"));
    let out = anchorage(
        &[
            "controller",
            "webhook",
            "--configmap",
            "corp-trust",
            "--tls-cert",
            m,
            "--tls-key",
            m,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let not_pem = dir.path().join("not.pem");
    write_input(&not_pem, "hello");
    let n = not_pem.to_str().expect("utf-8");
    let out = anchorage(
        &[
            "controller",
            "webhook",
            "--configmap",
            "corp-trust",
            "--tls-cert",
            n,
            "--tls-key",
            n,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no PEM certificate"));
    // A ClusterTrustBundle projection holds one file: no PKCS#12 to name.
    let out = anchorage(
        &[
            "controller",
            "webhook",
            "--ctb-signer",
            "example.com/mesh",
            "--pkcs12",
            "--tls-cert",
            n,
            "--tls-key",
            n,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn webhook_agent_flags_come_together_and_are_checked_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let m = missing.to_str().expect("utf-8");
    let base = [
        "controller",
        "webhook",
        "--configmap",
        "corp-trust",
        "--tls-cert",
        m,
        "--tls-key",
        m,
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        anchorage(&args, &[])
    };
    // --serve-url without --agent-image (and the reverse): a usage error.
    for extra in [
        &["--serve-url", "https://serve:8443"][..],
        &["--agent-image", "anchorage:1"][..],
        &["--agent-token-secret", "t"][..],
    ] {
        let out = run(extra);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // An agent setting the agent would refuse: a usage error naming it, before the files.
    let out = run(&["--agent-image", "anchorage:1", "--serve-url", "ftp://serve"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serve URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Valid agent flags: only the missing TLS files stop it (exit 3, as without them).
    let out = run(&[
        "--agent-image",
        "anchorage:1",
        "--serve-url",
        "https://serve:8443",
        "--agent-token-secret",
        "web-token",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn webhook_events_without_a_client_configuration_exits_7() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, tls) = issue_webhook_certificate(dir.path());
    let missing = dir.path().join("no-kubeconfig");
    let args = |events: bool| {
        let mut args = vec![
            "controller".to_owned(),
            "webhook".to_owned(),
            "--configmap=corp-trust".to_owned(),
            format!("--tls-cert={}", tls.join("chain.pem").display()),
            format!("--tls-key={}", tls.join("key.pem").display()),
            "--listen=127.0.0.1:0".to_owned(),
        ];
        if events {
            args.push("--events".to_owned());
        }
        args
    };
    let envs = [
        ("KUBECONFIG", missing.to_str().expect("utf-8 path")),
        ("HOME", dir.path().to_str().expect("utf-8 path")),
    ];
    let with: Vec<String> = args(true);
    let out = anchorage(&with.iter().map(String::as_str).collect::<Vec<_>>(), &envs);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--events") && err.contains("KUBECONFIG"),
        "{err}"
    );
    // Control: the same without --events needs no client; it serves until stopped.
    let without: Vec<String> = args(false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(&without)
        .envs(envs)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the webhook");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        still_running,
        "the webhook without --events needs no client"
    );
}

/// An API server that accepts connections and never answers: the controller's first requests
/// hang. SIGTERM still stops it (exit 0) within its 10 s shutdown deadline.
#[test]
fn sigterm_stops_the_controller_even_when_the_api_server_never_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    // Accept and hold every connection, never writing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    write_input(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user: {{}}\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(["controller", "--trust-namespace", "t"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the controller");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the controller waits for the API server"
    );
    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = signalled + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the controller did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    eprintln!(
        "stopped {:.1} s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );
}

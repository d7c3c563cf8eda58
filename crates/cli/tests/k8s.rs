//! End-to-end tests of the Kubernetes outputs: `bundle build --k8s-*` and `anchorage k8s patch`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use anchorage_test_support::pki;
use k8s_openapi::api::core::v1::ConfigMap;

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn configmap_to_stdout_parses_and_its_keys_are_the_hashed_layout() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let root = pki::root_ca("K8s CLI Root");
    root.write_pem(dir.path(), "root.crt");
    let o = anchorage(
        dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--k8s-configmap",
            "trust",
            "-n",
            "apps",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The summary goes to stderr, so stdout is only the manifest.
    assert!(
        stderr(&o).contains("bundle of 1 certificate from"),
        "{}",
        stderr(&o)
    );
    let cm: ConfigMap = serde_yaml_ng::from_slice(&o.stdout).unwrap();
    assert_eq!(cm.metadata.namespace.as_deref(), Some("apps"));
    let data = cm.data.unwrap();
    let hash = anchorage_x509::Certificate::from_der(&root.der)
        .unwrap()
        .subject_hash()
        .to_string();
    assert_eq!(data[&format!("{hash}.0")], root.pem);
    assert_eq!(data["ca-certificates.crt"], root.pem);
    assert_eq!(data.len(), 2);
}

#[test]
fn objects_go_to_k8s_out_and_bad_names_write_nothing() {
    let dir = anchorage_test_support::tempdir().unwrap();
    pki::root_ca("K8s CLI Root").write_pem(dir.path(), "root.crt");
    let o = anchorage(
        dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--k8s-configmap",
            "trust",
            "--k8s-secret",
            "trust",
            "--k8s-wasmcloud-configmap",
            "wasmcloud-cas",
            "--k8s-cluster-trust-bundle",
            "example.com:corp:roots",
            "--k8s-signer",
            "example.com/corp",
            "--k8s-out",
            "trust.yaml",
            "--output",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["outputs"][0]["kind"], "k8s");
    let yaml = std::fs::read_to_string(dir.path().join("trust.yaml")).unwrap();
    let kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| {
            let v = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Secret", "ConfigMap", "ClusterTrustBundle"]
    );
    // Our own reader loads the manifest back (only .crt keys: the wasmCloud ConfigMap).
    let back = anchorage(
        dir.path(),
        &["bundle", "inspect", "trust.yaml", "--output", "json"],
    );
    assert!(back.status.success(), "{}", stderr(&back));

    // A name Kubernetes would refuse: usage error, and no output of any kind is written.
    let o = anchorage(
        dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--pem",
            "p.pem",
            "--k8s-configmap",
            "Bad_Name",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Bad_Name"), "{}", stderr(&o));
    assert!(!dir.path().join("p.pem").exists());
    // A ClusterTrustBundle name without the signer prefix.
    let o = anchorage(
        dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--k8s-cluster-trust-bundle",
            "roots",
            "--k8s-signer",
            "example.com/corp",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("example.com:corp:"), "{}", stderr(&o));
}

#[test]
fn patch_sets_mount_and_variables_and_json_patch_needs_the_current_object() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "cronjob",
            "--name",
            "backup",
            "--container",
            "job",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let patch: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pod = &patch["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "trust");
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "job");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/ssl/certs");
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")));
    assert!(env.contains(&("SSL_CERT_DIR", "/etc/ssl/certs")));

    // --bundle: the pod template carries the bundle's SHA-256, the same value as the ConfigMap's
    // annotation, so a changed bundle rolls the workload.
    let root = pki::root_ca("K8s Rollout Root");
    root.write_pem(dir.path(), "root.crt");
    let cm = anchorage(
        dir.path(),
        &["bundle", "build", "root.crt", "--k8s-configmap", "trust"],
    );
    let cm: ConfigMap = serde_yaml_ng::from_slice(&cm.stdout).unwrap();
    let want = cm.metadata.annotations.unwrap()["anchorage.io/bundle-sha256"].clone();
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--bundle",
            "root.crt",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let patch: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"]["anchorage.io/bundle-sha256"],
        want.as_str()
    );

    // A ClusterTrustBundle volume has no hashed entries: no SSL_CERT_DIR.
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--cluster-trust-bundle",
            "corp",
            "--kind",
            "pod",
            "--container",
            "c",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("SSL_CERT_DIR"));

    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--configmap",
            "t",
            "--kind",
            "deployment",
            "--container",
            "c",
            "--type",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--current"), "{}", stderr(&o));
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--configmap",
            "t",
            "--kind",
            "gadget",
            "--container",
            "c",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("statefulset") || stderr(&o).contains("StatefulSet"),
        "{}",
        stderr(&o)
    );
}

/// The `env` entries of the first container of a Deployment patch.
fn patch_env(patch: &serde_json::Value) -> Vec<(String, String)> {
    patch["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn node_and_java_files_in_the_object_and_their_variables_in_the_patch() {
    let dir = anchorage_test_support::tempdir().unwrap();
    pki::root_ca("K8s Node Java Root").write_pem(dir.path(), "root.crt");
    // One copy per namespace (-n repeated), each with the private-only PEM and a PKCS#12.
    let o = anchorage(
        dir.path(),
        &[
            "bundle",
            "build",
            "root.crt",
            "--mozilla",
            "--k8s-configmap",
            "trust",
            "--k8s-extra-pem",
            "--k8s-pkcs12",
            "-n",
            "apps",
            "-n",
            "jobs",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let docs: Vec<ConfigMap> = serde_yaml_ng::Deserializer::from_slice(&o.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let namespaces: Vec<_> = docs
        .iter()
        .map(|c| c.metadata.namespace.as_deref().unwrap())
        .collect();
    assert_eq!(namespaces, ["apps", "jobs"]);
    for cm in &docs {
        let data = cm.data.as_ref().unwrap();
        assert_eq!(
            data["extra-ca.pem"].matches("BEGIN CERTIFICATE").count(),
            1,
            "our root only"
        );
        assert!(cm.binary_data.as_ref().unwrap()["truststore.p12"].0.len() > 1000);
    }

    let patch = |more: &[&str]| {
        let mut args = vec![
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
        ];
        args.extend_from_slice(more);
        let o = anchorage(dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        patch_env(&serde_json::from_slice(&o.stdout).unwrap())
    };
    let env = patch(&["--extra-pem", "--pkcs12"]);
    let get = |env: &[(String, String)], name: &str| {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    assert_eq!(
        get(&env, "NODE_EXTRA_CA_CERTS").as_deref(),
        Some("/etc/ssl/certs/extra-ca.pem")
    );
    assert_eq!(
        get(&env, "DENO_CERT").as_deref(),
        Some("/etc/ssl/certs/extra-ca.pem")
    );
    assert_eq!(
        get(&env, "JAVA_TOOL_OPTIONS").as_deref(),
        Some(
            "-Djavax.net.ssl.trustStore=/etc/ssl/certs/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12"
        )
    );
    // Without the flags: Node still trusts the combined bundle, Java is left alone.
    let env = patch(&[]);
    assert_eq!(
        get(&env, "NODE_EXTRA_CA_CERTS").as_deref(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(get(&env, "JAVA_TOOL_OPTIONS"), None);

    // A ClusterTrustBundle holds neither file.
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--cluster-trust-bundle",
            "corp",
            "--pkcs12",
            "--kind",
            "pod",
            "--container",
            "c",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn names_kubernetes_would_refuse_are_exit_2() {
    let dir = anchorage_test_support::tempdir().unwrap();
    for bad in [
        &["--container", "App"][..],
        &["--container", "app", "--mount-path", "relative"][..],
        &["--container", "app", "--name", "Web_1"][..],
        &["--container", "app", "--name", "web", "-n", "Apps"][..],
    ] {
        let mut args = vec![
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
        ];
        args.extend_from_slice(bad);
        let o = anchorage(dir.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
    // Negative control: valid names print a patch.
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Applies a strategic-merge `patch` to `object` with `kubectl patch --local`.
#[allow(clippy::disallowed_methods)] // test fixtures, not outputs
fn kubectl_patch(kubectl: &Path, object: &serde_json::Value, patch: &[u8]) -> serde_json::Value {
    let dir = anchorage_test_support::tempdir().unwrap();
    std::fs::write(dir.path().join("w.json"), object.to_string()).unwrap();
    std::fs::write(dir.path().join("p.json"), patch).unwrap();
    let out = Command::new(kubectl)
        .current_dir(dir.path())
        .args(["patch", "--local", "-f", "w.json", "--type", "strategic"])
        .args(["--patch-file", "p.json", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `k8s patch --agent`: the sidecar, its volumes, the emptyDir over the app's /etc/ssl/certs
/// with SSL_CERT_DIR on its hashed directory, as kubectl applies it and k8s-openapi decodes it;
/// applying it twice is applying it once; `--once` is an init container; what would not work is
/// refused with exit 2.
#[test]
fn agent_patch_adds_the_sidecar_and_applying_it_twice_is_once() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;

    let dir = anchorage_test_support::tempdir().unwrap();
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--agent",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--server",
            "https://serve.example:8443",
            "--server-ca-secret",
            "serve-ca",
            "--token-secret",
            "web-token",
            "--agent-label",
            "app=web",
            "--agent-image",
            "registry.example/anchorage:1.0",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let Some(kubectl) = anchorage_test_support::peer::require("kubectl") else {
        return;
    };
    let workload = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "app", "image": "web:1" }] },
            },
        },
    });
    let once = kubectl_patch(&kubectl, &workload, &o.stdout);
    assert_eq!(
        kubectl_patch(&kubectl, &once, &o.stdout),
        once,
        "applying twice is once"
    );
    let deploy: Deployment = serde_json::from_value(once).unwrap();
    let pod = deploy.spec.unwrap().template.spec.unwrap();
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes.len(), 3, "{volumes:?}");
    let volume = |n: &str| pod.volumes.iter().flatten().find(|v| v.name == n).unwrap();
    assert!(volume("anchorage-trust").empty_dir.is_some());
    assert_eq!(
        volume("anchorage-serve-ca")
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("serve-ca")
    );
    assert_eq!(
        volume("anchorage-agent-token")
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("web-token")
    );
    let app = pod.containers.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(app.image.as_deref(), Some("web:1"));
    let m = &app.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (m.name.as_str(), m.mount_path.as_str(), m.read_only),
        ("anchorage-trust", "/etc/ssl/certs", Some(true))
    );
    let env = |n: &str| {
        app.env
            .iter()
            .flatten()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("SSL_CERT_DIR").as_deref(),
        Some("/etc/ssl/certs/hashed")
    );
    assert_eq!(
        env("SSL_CERT_FILE").as_deref(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    let agent = pod
        .containers
        .iter()
        .find(|c| c.name == "anchorage-agent")
        .unwrap();
    assert_eq!(
        agent.image.as_deref(),
        Some("registry.example/anchorage:1.0")
    );
    let args = agent.args.as_ref().unwrap();
    for want in [
        "agent",
        "--server=https://serve.example:8443",
        "--label=app=web",
        "--pem=/out/ca-certificates.crt",
        "--openssl-dir=/out/hashed",
        "--healthz-listen=0.0.0.0:8088",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    assert!(!args.iter().any(|a| a == "--once"));
    // The agent's arguments are real `anchorage agent` flags.
    let mut help = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    help.args(args).arg("--help");
    assert!(help.output().unwrap().status.success());

    // --once: an init container, the only mode for a Job.
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--agent",
            "--once",
            "--kind",
            "job",
            "--container",
            "migrate",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let job = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "migrate" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "migrate", "image": "m:1" }],
        } } },
    });
    let job: Job = serde_json::from_value(kubectl_patch(&kubectl, &job, &o.stdout)).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "anchorage-agent-init");
    assert!(init.args.as_ref().unwrap().iter().any(|a| a == "--once"));
    assert!(init.liveness_probe.is_none());
    assert_eq!(pod.containers.len(), 1, "no sidecar in a Job");

    // --native-sidecar: one init container with restartPolicy Always, for a Job too.
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--agent",
            "--native-sidecar",
            "--kind",
            "job",
            "--container",
            "migrate",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let job = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "migrate" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "migrate", "image": "m:1" }],
        } } },
    });
    let job: Job = serde_json::from_value(kubectl_patch(&kubectl, &job, &o.stdout)).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "anchorage-agent");
    assert_eq!(init.restart_policy.as_deref(), Some("Always"));
    assert!(init.startup_probe.is_some());
    assert!(!init.args.as_ref().unwrap().iter().any(|a| a == "--once"));
    assert_eq!(pod.containers.len(), 1, "nothing added to the containers");
    let o = anchorage(
        dir.path(),
        &[
            "k8s",
            "patch",
            "--agent",
            "--native-sidecar",
            "--once",
            "--kind",
            "job",
            "--container",
            "migrate",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Refused, exit 2, with what to do.
    for (args, expected) in [
        (
            &["--agent", "--kind", "service", "--container", "app"][..],
            "--kind service: not a workload kind; one of Deployment",
        ),
        (
            &["--agent", "--kind", "cronjob", "--container", "app"][..],
            "add the agent as an init container (--once)",
        ),
        (
            &[
                "--agent",
                "--kind",
                "deployment",
                "--container",
                "anchorage-agent",
            ][..],
            "it is the agent's own container",
        ),
        (
            &[
                "--agent",
                "--kind",
                "deployment",
                "--container",
                "app",
                "--server",
                "serve:8443",
            ][..],
            "invalid serve URL `serve:8443`",
        ),
        (
            &[
                "--configmap",
                "t",
                "--kind",
                "deployment",
                "--container",
                "app",
                "--token-secret",
                "x",
            ][..],
            "--token-secret is an option of --agent",
        ),
        (
            &[
                "--agent",
                "--configmap",
                "t",
                "--kind",
                "deployment",
                "--container",
                "app",
            ][..],
            "cannot be used with",
        ),
        (
            &[
                "--agent",
                "--kind",
                "deployment",
                "--container",
                "app",
                "--type",
                "json",
            ][..],
            "--type json needs --current FILE",
        ),
    ] {
        let o = anchorage(dir.path(), &[&["k8s", "patch"][..], args].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

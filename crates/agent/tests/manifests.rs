//! The Kubernetes manifests in `deploy/kubernetes`: `kubectl kustomize` renders each directory,
//! every object decodes with k8s-openapi, and the wiring holds (serve's PVC and Service, the
//! DaemonSet's hostPath output, the sidecar's emptyDir over the app's `/etc/ssl/certs`, `--once`
//! in the init container only). A real cluster is not needed (none here).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use anchorage_test_support::peer;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, PodSpec, Service};
use serde::Deserialize as _;

fn render(dir: &str) -> Option<Vec<serde_json::Value>> {
    let kubectl = peer::require("kubectl")?;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes")
        .join(dir);
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| serde_json::Value::deserialize(doc).unwrap())
            .collect(),
    )
}

fn one<T: serde::de::DeserializeOwned>(objects: &[serde_json::Value], kind: &str) -> T {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    serde_json::from_value(found[0].clone()).unwrap()
}

fn arg<'a>(c: &'a Container, flag: &str) -> Option<&'a str> {
    c.args
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

fn has(c: &Container, flag: &str) -> bool {
    c.args.as_ref().unwrap().iter().any(|a| a == flag)
}

fn mount<'a>(c: &'a Container, volume: &str) -> &'a str {
    &c.volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == volume)
        .unwrap_or_else(|| panic!("{} mounts {volume}", c.name))
        .mount_path
}

fn no_token(spec: &PodSpec) {
    assert_eq!(spec.automount_service_account_token, Some(false));
}

#[test]
fn serve_has_its_store_its_service_and_no_api_access() {
    let Some(objects) = render("serve") else {
        peer::skip("kubectl is not installed");
        return;
    };
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["namespace"] == "anchorage" || o["kind"] == "Namespace")
    );
    assert!(
        !objects.iter().any(|o| {
            let k = o["kind"].as_str().unwrap();
            k.contains("Role") || k == "ServiceAccount"
        }),
        "no RBAC"
    );
    let deploy: Deployment = one(&objects, "Deployment");
    let pvc: PersistentVolumeClaim = one(&objects, "PersistentVolumeClaim");
    let service: Service = one(&objects, "Service");
    let spec = deploy.spec.unwrap();
    assert_eq!(
        spec.replicas,
        Some(1),
        "the embedded store takes one process"
    );
    let pod = spec.template.spec.unwrap();
    no_token(&pod);
    let c = &pod.containers[0];
    assert_eq!(c.args.as_ref().unwrap()[0], "serve");
    assert_eq!(mount(c, "data"), arg(c, "--data-dir").unwrap());
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        volume.persistent_volume_claim.unwrap().claim_name,
        pvc.metadata.name.unwrap()
    );
    // The Service name is one of the serving certificate's names, on the container's port.
    let name = service.metadata.name.unwrap();
    assert!(
        c.args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a == &format!("--tls-name={name}.anchorage.svc"))
    );
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.port, 8443);
    assert!(arg(c, "--listen").unwrap().ends_with(":8443"));
}

#[test]
fn the_daemonset_writes_to_the_host_and_the_sidecar_over_etc_ssl_certs() {
    let Some(objects) = render("agent-daemonset") else {
        peer::skip("kubectl is not installed");
        return;
    };
    let ds: DaemonSet = one(&objects, "DaemonSet");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    no_token(&pod);
    let c = &pod.containers[0];
    assert_eq!(c.args.as_ref().unwrap()[0], "agent");
    assert!(!has(c, "--once"));
    let out = mount(c, "out");
    assert!(arg(c, "--pem").unwrap().starts_with(&format!("{out}/")));
    assert!(
        arg(c, "--openssl-dir")
            .unwrap()
            .starts_with(&format!("{out}/"))
    );
    assert!(
        arg(c, "--server")
            .unwrap()
            .starts_with("https://anchorage-serve.anchorage.svc:8443")
    );
    assert!(
        arg(c, "--server-ca")
            .unwrap()
            .starts_with(mount(c, "serve-ca"))
    );
    assert!(
        arg(c, "--token-file")
            .unwrap()
            .starts_with(mount(c, "token"))
    );
    let volumes = pod.volumes.unwrap();
    assert!(
        volumes
            .iter()
            .find(|v| v.name == "out")
            .unwrap()
            .host_path
            .is_some()
    );
    assert_eq!(
        c.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );

    let objects = render("agent-sidecar").unwrap();
    let deploy: Deployment = one(&objects, "Deployment");
    let pod = deploy.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let sidecar = pod
        .containers
        .iter()
        .find(|c| c.name == "anchorage-agent")
        .unwrap();
    let app = pod.containers.iter().find(|c| c.name == "app").unwrap();
    assert!(has(init, "--once") && !has(sidecar, "--once"));
    assert_eq!(mount(app, "anchorage-trust"), "/etc/ssl/certs");
    for agent in [init, sidecar] {
        // The PEM in the mount (the image's default CA file), the hashed directory below it:
        // a directory is swapped in one step, which a mount point cannot be.
        let m = mount(agent, "anchorage-trust");
        assert_eq!(
            arg(agent, "--pem").unwrap(),
            format!("{m}/ca-certificates.crt")
        );
        let dir = arg(agent, "--openssl-dir").unwrap();
        assert!(
            dir.starts_with(&format!("{m}/")) && dir.len() > m.len() + 1,
            "{dir}"
        );
        let sub = &dir[m.len()..];
        let env = app.env.as_ref().unwrap();
        assert_eq!(
            env.iter()
                .find(|e| e.name == "SSL_CERT_DIR")
                .unwrap()
                .value
                .as_deref(),
            Some(format!("/etc/ssl/certs{sub}").as_str())
        );
    }
    let trust = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "anchorage-trust")
        .unwrap();
    assert!(trust.empty_dir.is_some());
    assert!(sidecar.liveness_probe.is_some());
}

//! deploy/kubernetes/webhook: `kubectl kustomize` renders it, every object decodes with
//! k8s-openapi, the kustomization lists every file, and the wiring holds: the Deployment runs
//! `anchorage controller webhook` with the serving certificate from its Secret on the port the
//! Service targets, the configuration points at that Service with `failurePolicy: Ignore`, and
//! least privilege: the only API access is `create`/`patch` on events.k8s.io events (`--events`),
//! bound to the webhook's account, with the token mounted in its pod only.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::path::PathBuf;

use anchorage_controller::WebhookService;
use anchorage_test_support::peer;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize as _;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/webhook")
}

fn render() -> Option<Vec<serde_json::Value>> {
    let kubectl = peer::require("kubectl")?;
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir())
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

#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap();
    let k: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let listed: BTreeSet<String> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn the_webhook_runs_with_its_certificate_behind_its_service_and_may_only_publish_events() {
    let Some(objects) = render() else {
        peer::skip("kubectl is not installed");
        return;
    };
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Service",
            "ServiceAccount"
        ]),
        "no Role or RoleBinding: the one ClusterRole is for Events"
    );
    let account: ServiceAccount = one(&objects, "ServiceAccount");
    assert_eq!(account.automount_service_account_token, Some(false));
    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    let role: serde_yaml_ng::Value = serde_json::from_value(role.clone()).unwrap();
    assert_eq!(
        anchorage_test_support::manifests::granted_verbs(&role),
        anchorage_test_support::manifests::expected_verbs(&[(
            "events.k8s.io/events",
            &["create", "patch"]
        )]),
        "Events only (kube-runtime's Recorder creates, and patches a repeated one)"
    );
    let binding: ClusterRoleBinding = one(&objects, "ClusterRoleBinding");
    assert_eq!(
        binding.role_ref.name,
        role["metadata"]["name"].as_str().unwrap()
    );
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        (
            "ServiceAccount",
            account.metadata.name.as_deref().unwrap(),
            account.metadata.namespace.as_deref()
        )
    );

    let deployment: Deployment = one(&objects, "Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("anchorage-webhook")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert_eq!(args[..2], ["controller", "webhook"]);
    assert!(args.iter().any(|a| a == "--events"), "{args:?}");
    let pod_name = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_NAME")
        .unwrap();
    assert_eq!(
        pod_name
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.name")
    );
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {args:?}"))
    };
    let tls_dir = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(tls_dir.mount_path, "/tls");
    assert_eq!(flag("--tls-cert"), "/tls/tls.crt");
    assert_eq!(flag("--tls-key"), "/tls/tls.key");
    let secret = pod.volumes.as_ref().unwrap()[0].secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("anchorage-webhook-tls"));
    let port = &c.ports.as_ref().unwrap()[0];
    assert!(flag("--listen").ends_with(&format!(":{}", port.container_port)));
    let probe = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        (probe.path.as_deref(), probe.scheme.as_deref()),
        (Some("/healthz"), Some("HTTPS"))
    );

    let service: Service = one(&objects, "Service");
    let sport = &service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(sport.port, 443);
    assert_eq!(
        sport.target_port,
        Some(IntOrString::String(port.name.clone().unwrap()))
    );

    let config: MutatingWebhookConfiguration = one(&objects, "MutatingWebhookConfiguration");
    let hook = &config.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    let target = hook.client_config.service.as_ref().unwrap();
    assert_eq!(
        (target.name.as_str(), target.namespace.as_str(), target.port),
        (
            service.metadata.name.as_deref().unwrap(),
            service.metadata.namespace.as_deref().unwrap(),
            Some(443)
        )
    );
    // The committed configuration is the library's (without a caBundle, filled at install).
    let generated = anchorage_controller::webhook_configuration(
        &WebhookService::new("anchorage-webhook", "anchorage-trust"),
        None,
    );
    assert_eq!(config, generated);
}

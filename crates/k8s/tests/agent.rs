//! `anchorage agent` added to workloads ([`agent_patch`]): the kustomize example in
//! `deploy/kubernetes/agent-sidecar` is what [`agent_container`] and [`agent_volumes`] build;
//! the strategic-merge patch, applied by `kubectl patch --local` (skipped without kubectl), and
//! the JSON patch, applied by an independent RFC 6902 implementation, give the pod spec the
//! module docs describe, decoded with k8s-openapi, for every kind; applying twice is applying
//! once; what would break a workload is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anchorage_k8s::{
    AGENT_CONTAINER, AGENT_INIT_CONTAINER, AgentIdentity, AgentMode, AgentPatchRequest, AgentSpec,
    K8sError, NATIVE_SIDECAR_STARTUP_SECONDS, PatchFormat, ServeCaSource, WorkloadKind,
    agent_container, agent_native_sidecar, agent_patch, agent_volumes, env_var,
};
use anchorage_test_support::peer;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};
use serde_json::{Value, json};

/// The pod-template kinds (listed here, not `WorkloadKind::ALL`, which may grow kinds without a
/// pod template).
const KINDS: [WorkloadKind; 7] = [
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::ReplicaSet,
    WorkloadKind::Job,
    WorkloadKind::CronJob,
    WorkloadKind::Pod,
];

/// The pod spec of `object`, decoded with `kind`'s k8s-openapi type.
fn pod_spec(kind: WorkloadKind, object: &Value) -> PodSpec {
    let o = object.clone();
    let spec = match kind {
        WorkloadKind::Deployment => {
            serde_json::from_value::<Deployment>(o)
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec
        }
        WorkloadKind::StatefulSet => {
            serde_json::from_value::<StatefulSet>(o)
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec
        }
        WorkloadKind::DaemonSet => {
            serde_json::from_value::<DaemonSet>(o)
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec
        }
        WorkloadKind::ReplicaSet => {
            serde_json::from_value::<ReplicaSet>(o)
                .unwrap()
                .spec
                .unwrap()
                .template
                .unwrap()
                .spec
        }
        WorkloadKind::Job => {
            serde_json::from_value::<Job>(o)
                .unwrap()
                .spec
                .unwrap()
                .template
                .spec
        }
        WorkloadKind::CronJob => {
            serde_json::from_value::<CronJob>(o)
                .unwrap()
                .spec
                .unwrap()
                .job_template
                .spec
                .unwrap()
                .template
                .spec
        }
        WorkloadKind::Pod => serde_json::from_value::<Pod>(o).unwrap().spec,
        // Kinds added later without a pod template.
        #[allow(unreachable_patterns)]
        other => panic!("{other:?} has no pod template"),
    };
    spec.unwrap()
}

/// A workload of `kind` with containers `app` (with a variable and a volume of its own) and
/// `log`, as `kubectl get -o json` prints it.
fn workload(kind: WorkloadKind) -> Value {
    let spec = json!({
        "containers": [
            { "name": "app", "image": "app:1",
              "env": [{ "name": "KEEP", "value": "1" }],
              "volumeMounts": [{ "name": "data", "mountPath": "/data" }] },
            { "name": "log", "image": "log:1" },
        ],
        "volumes": [{ "name": "data", "emptyDir": {} }],
        "restartPolicy": if matches!(kind, WorkloadKind::Job | WorkloadKind::CronJob) { "Never" } else { "Always" },
    });
    let labels = json!({ "app": "web" });
    let template = json!({ "metadata": { "labels": labels }, "spec": spec });
    let mut object = match kind {
        WorkloadKind::Pod => template,
        WorkloadKind::CronJob => json!({ "spec": {
            "schedule": "@hourly",
            "jobTemplate": { "spec": { "template": template } },
        } }),
        WorkloadKind::Job => json!({ "spec": { "template": template } }),
        _ => json!({ "spec": {
            "selector": { "matchLabels": labels },
            "template": template,
        } }),
    };
    object["apiVersion"] = kind.api_version().into();
    object["kind"] = kind.kind().into();
    object["metadata"]["name"] = "web".into();
    object
}

/// A sidecar, or the init container alone where a sidecar would keep the pod from completing.
fn mode_for(kind: WorkloadKind) -> AgentMode {
    match kind {
        WorkloadKind::Job | WorkloadKind::CronJob => AgentMode::Once,
        _ => AgentMode::Sidecar,
    }
}

fn request(kind: WorkloadKind) -> AgentPatchRequest {
    let mut req = AgentPatchRequest::new(kind, ["app"]);
    req.mode = mode_for(kind);
    req.agent.labels = BTreeMap::from([("app".into(), "web".into())]);
    req.env = vec![
        env_var("SSL_CERT_FILE", req.bundle_path()),
        env_var("SSL_CERT_DIR", req.hashed_dir_path()),
    ];
    req
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("volume {name}"))
}

fn container<'a>(list: Option<&'a Vec<Container>>, name: &str) -> Option<&'a Container> {
    list.into_iter().flatten().find(|c| c.name == name)
}

/// What every patched pod spec holds: the agent's volumes after the workload's own, the trust
/// volume read-only over the app's /etc/ssl/certs with the variables, `log` untouched, the
/// agent's container as built.
fn check_pod(kind: WorkloadKind, req: &AgentPatchRequest, spec: &PodSpec) {
    // Order within these lists does not matter (kubectl puts the patch's first).
    let mut names: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    names.sort_unstable();
    let mut expected = vec![
        "anchorage-agent-token",
        "anchorage-serve-ca",
        "anchorage-trust",
        "data",
    ];
    if req.agent.identity.is_some() {
        expected.insert(1, "anchorage-identity");
    }
    assert_eq!(names, expected, "{kind:?}");
    assert!(volume(spec, "anchorage-trust").empty_dir.is_some());
    let token = volume(spec, "anchorage-agent-token")
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(token.default_mode, Some(0o400));

    let app = container(Some(&spec.containers), "app").unwrap();
    let mut mounts: Vec<(&str, &str, Option<bool>)> = app
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    mounts.sort_unstable();
    let mut expected = vec![
        ("anchorage-trust", "/etc/ssl/certs", Some(true)),
        ("data", "/data", None),
    ];
    if let Some(identity) = &req.agent.identity {
        expected.insert(
            0,
            (
                "anchorage-identity",
                identity.mount_path.as_str(),
                Some(true),
            ),
        );
    }
    assert_eq!(mounts, expected, "{kind:?}");
    let env: BTreeMap<&str, &str> = app
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("KEEP", "1"),
            ("SSL_CERT_DIR", "/etc/ssl/certs/hashed"),
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
        ]),
        "{kind:?}"
    );
    let log = container(Some(&spec.containers), "log").unwrap();
    assert!(log.volume_mounts.is_none() && log.env.is_none(), "{log:?}");

    let sidecar = container(Some(&spec.containers), AGENT_CONTAINER);
    let init = container(spec.init_containers.as_ref(), AGENT_INIT_CONTAINER);
    let native = container(spec.init_containers.as_ref(), AGENT_CONTAINER);
    match req.mode {
        AgentMode::Sidecar => {
            assert_eq!(sidecar, Some(&agent_container(&req.agent, false).unwrap()));
            assert!(init.is_none());
        }
        AgentMode::Once => {
            assert_eq!(init, Some(&agent_container(&req.agent, true).unwrap()));
            assert!(sidecar.is_none());
        }
        AgentMode::SidecarWithInit => {
            assert!(sidecar.is_some() && init.is_some());
        }
        AgentMode::NativeSidecar => {
            assert_eq!(native, Some(&agent_native_sidecar(&req.agent).unwrap()));
            assert!(sidecar.is_none() && init.is_none(), "{kind:?}");
            // First of the init containers: everything after it waits for its startup probe.
            assert_eq!(
                spec.init_containers.as_ref().unwrap()[0].name,
                AGENT_CONTAINER
            );
        }
    }
    if req.mode != AgentMode::NativeSidecar {
        assert!(native.is_none(), "{kind:?}");
    }
    let agent = sidecar.or(init).or(native).unwrap();
    let args = agent.args.as_ref().unwrap();
    assert_eq!(args[0], "agent");
    assert_eq!(
        args.contains(&"--once".to_owned()),
        req.mode == AgentMode::Once
    );
    for expected in [
        format!("--server={}", req.agent.server).as_str(),
        "--consumer=$(POD_NAMESPACE).$(POD_NAME)",
        "--label=app=web",
        "--pem=/out/ca-certificates.crt",
        "--openssl-dir=/out/hashed",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    // The agent writes where the app reads: its /out is the volume over the app's
    // /etc/ssl/certs, so /out/hashed is the app's SSL_CERT_DIR.
    let out = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "anchorage-trust")
        .unwrap();
    assert_eq!((out.mount_path.as_str(), out.read_only), ("/out", None));
}

#[allow(clippy::disallowed_methods)] // test fixtures, not outputs
fn kubectl_patch(kubectl: &std::path::Path, object: &Value, patch: &Value) -> Value {
    let dir = anchorage_test_support::tempdir().unwrap();
    let file = dir.path().join("workload.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let out = Command::new(kubectl)
        .args([
            "patch",
            "--local",
            "--type",
            "strategic",
            "-o",
            "json",
            "-f",
        ])
        .arg(&file)
        .arg("-p")
        .arg(patch.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl patch: {}\n{patch:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json_apply(mut object: Value, ops: &Value) -> Value {
    let ops: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
    json_patch::patch(&mut object, &ops).unwrap_or_else(|e| panic!("{e}"));
    object
}

fn manifest_deployment() -> Deployment {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/agent-sidecar/deployment.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The settings the kustomize example was written with.
fn manifest_spec() -> AgentSpec {
    AgentSpec {
        labels: BTreeMap::from([("app".into(), "example".into())]),
        ..AgentSpec::default()
    }
}

#[test]
fn the_kustomize_example_holds_what_the_library_builds() {
    let pod = manifest_deployment().spec.unwrap().template.spec.unwrap();
    let spec = manifest_spec();
    let init = container(pod.init_containers.as_ref(), AGENT_INIT_CONTAINER).unwrap();
    let sidecar = container(Some(&pod.containers), AGENT_CONTAINER).unwrap();
    assert_eq!(init, &agent_container(&spec, true).unwrap());
    assert_eq!(sidecar, &agent_container(&spec, false).unwrap());
    let agents: Vec<Volume> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter(|v| v.name.starts_with("anchorage-"))
        .collect();
    assert_eq!(agents, agent_volumes(&spec).unwrap());
    // Negative control: other settings build another container.
    assert_ne!(
        sidecar,
        &agent_container(&AgentSpec::default(), false).unwrap()
    );
}

/// The example's app is the example without the agent, plus what `agent_patch` adds
/// (`--with-init`, the app's `SSL_CERT_DIR`), as kubectl applies it.
#[test]
fn the_kustomize_example_is_its_app_patched_by_agent_patch() {
    let Some(kubectl) = peer::require("kubectl") else {
        return;
    };
    let example = manifest_deployment();
    let mut bare = serde_json::to_value(&example).unwrap();
    let spec = &mut bare["spec"]["template"]["spec"];
    spec.as_object_mut().unwrap().remove("initContainers");
    spec["containers"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["name"] != AGENT_CONTAINER);
    spec.as_object_mut().unwrap().remove("volumes");
    let app = &mut spec["containers"][0];
    app.as_object_mut().unwrap().remove("env");
    app.as_object_mut().unwrap().remove("volumeMounts");

    let mut req = AgentPatchRequest::new(WorkloadKind::Deployment, ["app"]);
    req.agent = manifest_spec();
    req.mode = AgentMode::SidecarWithInit;
    req.env = vec![env_var("SSL_CERT_DIR", req.hashed_dir_path())];
    let patched = kubectl_patch(&kubectl, &bare, &agent_patch(&req).unwrap());
    let patched: Deployment = serde_json::from_value(patched).unwrap();
    assert_eq!(patched, example);
}

#[test]
fn strategic_patch_applied_by_kubectl_for_every_kind_and_twice_is_once() {
    let Some(kubectl) = peer::require("kubectl") else {
        return;
    };
    for kind in KINDS {
        let req = request(kind);
        let patch = agent_patch(&req).unwrap();
        let once = kubectl_patch(&kubectl, &workload(kind), &patch);
        check_pod(kind, &req, &pod_spec(kind, &once));
        let twice = kubectl_patch(&kubectl, &once, &patch);
        assert_eq!(twice, once, "{kind:?}: applying twice changed the workload");
    }
}

#[test]
fn json_patch_for_every_kind_and_twice_is_once() {
    for kind in KINDS {
        let current = workload(kind);
        let mut req = request(kind);
        req.format = PatchFormat::Json {
            current: current.clone(),
        };
        let once = json_apply(current, &agent_patch(&req).unwrap());
        check_pod(kind, &req, &pod_spec(kind, &once));
        req.format = PatchFormat::Json {
            current: once.clone(),
        };
        let twice = json_apply(once.clone(), &agent_patch(&req).unwrap());
        assert_eq!(twice, once, "{kind:?}");
    }
}

/// `NativeSidecar`, every kind (Jobs and CronJobs too: a native sidecar does not keep a finished
/// pod running), through kubectl's strategic merge and the JSON patch, twice is once; the
/// container is the sidecar with `restartPolicy: Always` and a startup probe on `/healthz`
/// (what makes the app wait for the first install), nothing in `containers`.
#[test]
fn a_native_sidecar_for_every_kind_is_one_init_container_the_app_waits_for() {
    let kubectl = peer::require("kubectl");
    for kind in KINDS {
        let mut req = request(kind);
        req.mode = AgentMode::NativeSidecar;
        if let Some(kubectl) = &kubectl {
            let patch = agent_patch(&req).unwrap();
            let once = kubectl_patch(kubectl, &workload(kind), &patch);
            check_pod(kind, &req, &pod_spec(kind, &once));
            assert_eq!(kubectl_patch(kubectl, &once, &patch), once, "{kind:?}");
        }
        let current = workload(kind);
        req.format = PatchFormat::Json {
            current: current.clone(),
        };
        let once = json_apply(current, &agent_patch(&req).unwrap());
        check_pod(kind, &req, &pod_spec(kind, &once));
        req.format = PatchFormat::Json {
            current: once.clone(),
        };
        assert_eq!(json_apply(once.clone(), &agent_patch(&req).unwrap()), once);
    }
    let native = agent_native_sidecar(&AgentSpec::default()).unwrap();
    assert_eq!(native.restart_policy.as_deref(), Some("Always"));
    let probe = native.startup_probe.as_ref().unwrap();
    assert_eq!(
        probe.http_get.as_ref().unwrap().path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe.period_seconds.unwrap() * probe.failure_threshold.unwrap(),
        NATIVE_SIDECAR_STARTUP_SECONDS
    );
    assert!(
        native
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.starts_with("--healthz-listen="))
    );
    // Negative control: the ordinary sidecar has neither.
    let ordinary = agent_container(&AgentSpec::default(), false).unwrap();
    assert!(ordinary.restart_policy.is_none() && ordinary.startup_probe.is_none());
}

/// The agent's init container runs first, before the workload's own (which may need the trust
/// already); an agent container already there is replaced, not added again.
#[test]
fn the_init_container_goes_first_and_an_old_agent_is_replaced() {
    let mut current = workload(WorkloadKind::Deployment);
    current["spec"]["template"]["spec"]["initContainers"] =
        json!([{ "name": "migrate", "image": "m" }]);
    let mut old =
        serde_json::to_value(agent_container(&AgentSpec::default(), false).unwrap()).unwrap();
    old["image"] = "anchorage:old".into();
    current["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(old);
    let mut req = request(WorkloadKind::Deployment);
    req.mode = AgentMode::SidecarWithInit;
    req.init_containers = vec!["migrate".into()];
    req.agent.image = "anchorage:new".into();

    let check = |patched: &Value| {
        let spec = pod_spec(WorkloadKind::Deployment, patched);
        let init: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init, [AGENT_INIT_CONTAINER, "migrate"]);
        let migrate = &spec.init_containers.as_ref().unwrap()[1];
        assert_eq!(
            migrate.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/etc/ssl/certs"
        );
        let agents: Vec<&Container> = spec
            .containers
            .iter()
            .filter(|c| c.name == AGENT_CONTAINER)
            .collect();
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].image.as_deref(), Some("anchorage:new"));
    };
    req.format = PatchFormat::Json {
        current: current.clone(),
    };
    let patched = json_apply(current.clone(), &agent_patch(&req).unwrap());
    check(&patched);
    req.format = PatchFormat::Json {
        current: patched.clone(),
    };
    assert_eq!(
        json_apply(patched.clone(), &agent_patch(&req).unwrap()),
        patched
    );

    if let Some(kubectl) = peer::require("kubectl") {
        req.format = PatchFormat::StrategicMerge;
        let patch = agent_patch(&req).unwrap();
        let patched = kubectl_patch(&kubectl, &current, &patch);
        check(&patched);
        assert_eq!(kubectl_patch(&kubectl, &patched, &patch), patched);
    }
}

#[test]
fn identity_serve_ca_secret_and_options_reach_the_container() {
    let mut req = request(WorkloadKind::StatefulSet);
    let mut identity = AgentIdentity::new("$(POD_NAME).web.apps.svc.cluster.local");
    identity.sans = vec!["web.apps.svc".into()];
    req.agent.identity = Some(identity);
    req.agent.serve_ca = ServeCaSource::Secret("serve-tls-ca".into());
    req.agent.serve_ca_key = "root.pem".into();
    req.agent.token_secret = "web-agent".into();
    req.agent.token_key = "role.token".into();
    req.agent.server = "https://anchorage.example:9443".into();
    req.agent.healthz_port = 9099;
    req.format = PatchFormat::Json {
        current: workload(WorkloadKind::StatefulSet),
    };
    let patched = json_apply(
        workload(WorkloadKind::StatefulSet),
        &agent_patch(&req).unwrap(),
    );
    let spec = pod_spec(WorkloadKind::StatefulSet, &patched);
    let serve_ca = volume(&spec, "anchorage-serve-ca").secret.as_ref().unwrap();
    assert_eq!(serve_ca.secret_name.as_deref(), Some("serve-tls-ca"));
    let token = volume(&spec, "anchorage-agent-token")
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(token.secret_name.as_deref(), Some("web-agent"));
    assert!(volume(&spec, "anchorage-identity").empty_dir.is_some());
    let agent = container(Some(&spec.containers), AGENT_CONTAINER).unwrap();
    let args = agent.args.as_ref().unwrap();
    for expected in [
        "--server=https://anchorage.example:9443",
        "--server-ca=/etc/anchorage/serve-ca/root.pem",
        "--token-file=/etc/anchorage/token/role.token",
        "--identity=$(POD_NAME).web.apps.svc.cluster.local",
        "--identity-dir=/identity",
        "--identity-san=web.apps.svc",
        "--healthz-listen=0.0.0.0:9099",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    assert_eq!(agent.ports.as_ref().unwrap()[0].container_port, 9099);
    let identity_mount = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "anchorage-identity")
        .unwrap();
    assert_eq!(identity_mount.mount_path, "/identity");
    assert_eq!(identity_mount.read_only, None, "the agent writes there");
    check_pod(WorkloadKind::StatefulSet, &req, &spec);
}

#[test]
fn what_would_break_the_workload_is_refused() {
    let refused = |edit: &dyn Fn(&mut AgentPatchRequest), expected: &str| {
        let mut req = request(WorkloadKind::Deployment);
        edit(&mut req);
        let e = agent_patch(&req).unwrap_err();
        assert!(
            matches!(e, K8sError::InvalidPatch { .. } | K8sError::NoContainers),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains(expected), "{e}\n  expected: {expected}");
    };
    // A sidecar would keep a Job's pod from ever completing.
    for kind in [WorkloadKind::Job, WorkloadKind::CronJob] {
        for mode in [AgentMode::Sidecar, AgentMode::SidecarWithInit] {
            refused(
                &|r| {
                    r.kind = kind;
                    r.mode = mode;
                },
                "the agent's sidecar never does: add the agent as an init container (--once)",
            );
        }
    }
    refused(
        &|r| r.containers = vec![AGENT_CONTAINER.into()],
        "it is the agent's own container",
    );
    refused(&|r| r.containers.clear(), "no container named");
    refused(
        &|r| r.agent.server = "anchorage-serve:8443".into(),
        "invalid serve URL `anchorage-serve:8443`",
    );
    refused(&|r| r.agent.image = String::new(), "invalid agent image ``");
    refused(
        &|r| r.agent.token_secret = "Agent_Token".into(),
        "invalid token Secret name `Agent_Token`",
    );
    refused(
        &|r| r.agent.serve_ca = ServeCaSource::ConfigMap("serve ca".into()),
        "invalid serve CA ConfigMap name `serve ca`",
    );
    refused(
        &|r| r.agent.labels = BTreeMap::from([("bad key".into(), "v".into())]),
        "invalid agent label `bad key=v`",
    );
    refused(&|r| r.agent.healthz_port = 0, "invalid healthz port `0`");
    refused(
        &|r| r.agent.identity = Some(AgentIdentity::new("two words")),
        "invalid identity name `two words`",
    );
    refused(
        &|r| {
            let mut identity = AgentIdentity::new("web");
            identity.mount_path = "/etc/ssl/certs/identity".into();
            r.agent.identity = Some(identity);
        },
        "it overlaps the trust mount `/etc/ssl/certs`",
    );
    refused(
        &|r| r.mount_path = "etc/ssl".into(),
        "invalid mount path `etc/ssl`",
    );
    // The JSON patch needs the workload it was asked for.
    let mut req = request(WorkloadKind::DaemonSet);
    req.format = PatchFormat::Json {
        current: workload(WorkloadKind::Deployment),
    };
    assert!(matches!(
        agent_patch(&req),
        Err(K8sError::WrongKind {
            expected: "DaemonSet",
            ..
        })
    ));
    // Negative control: the init container alone is fine for a Job.
    let mut req = request(WorkloadKind::Job);
    req.mode = AgentMode::Once;
    assert!(agent_patch(&req).is_ok());
}

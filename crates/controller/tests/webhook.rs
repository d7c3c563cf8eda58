//! The pod-injection webhook (issue 17): a recorded AdmissionReview (the shape a real API server
//! sends; tests/fixtures/admission/README.md says where it comes from) answered by
//! `anchorage_controller::inject`, the returned JSON patch applied (json-patch) to the k8s-openapi
//! `Pod` of the review, and the resulting pod spec checked; idempotence; what the pod's author set
//! kept; the negative controls (no label, malformed reviews: allowed, no patch); the HTTPS
//! endpoint with a real client trusting Anchorage's CA, and refused without it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::PathBuf;
use std::sync::Arc;

use anchorage_ca::{BuiltinCa, Clock as _, InitOptions};
use anchorage_controller::inject::{
    Decision, IDENTITY_ANNOTATION, IDENTITY_ROLE_ANNOTATION, IDENTITY_SANS_ANNOTATION,
    INJECT_LABEL, INJECTED_ANNOTATION, InjectSettings, inject, review_json,
};
use anchorage_controller::webhook::{
    MUTATE_PATH, TIMEOUT_SECONDS, WebhookService, serving_certificate, tls_config,
    webhook_configuration,
};
use anchorage_k8s::TrustSource;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission/pod-create-gke.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The recorded review with the opt-in label added to the pod (the only change).
fn labelled() -> Value {
    let mut review = fixture();
    review["request"]["object"]["metadata"]["labels"][INJECT_LABEL] = "true".into();
    review
}

fn settings() -> InjectSettings {
    InjectSettings::configmap("corp-trust")
}

fn answer(settings: &InjectSettings, review: &Value) -> Value {
    review_json(settings, &serde_json::to_vec(review).unwrap())
}

/// The response's patch, decoded from base64.
fn patch_of(answer: &Value) -> Option<Value> {
    let text = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// `pod` with `patch` applied, as a k8s-openapi Pod (so the result is a valid Pod).
fn apply(pod: &Value, patch: &Value) -> Pod {
    let mut value = pod.clone();
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut value, &ops).unwrap();
    serde_json::from_value(value).unwrap()
}

fn env_of(c: &Container) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn value_of<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn the_recorded_review_without_the_label_is_allowed_unchanged() {
    let answer = answer(&settings(), &fixture());
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{answer:#}");
    assert!(response.get("patchType").is_none(), "{answer:#}");
    assert!(response.get("warnings").is_none(), "{answer:#}");
}

#[test]
fn a_labelled_pod_gets_the_trust_volume_mount_and_variables() {
    let review = labelled();
    let answer = answer(&settings(), &review);
    let response = &answer["response"];
    assert_eq!(response["uid"], "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = patch_of(&answer).unwrap();
    let before: Pod = serde_json::from_value(review["request"]["object"].clone()).unwrap();
    let pod = apply(&review["request"]["object"], &patch);
    let spec = pod.spec.as_ref().unwrap();

    // The volume is added beside the service-account token the admission chain put there.
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 2);
    assert_eq!(
        volumes[0],
        before.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
    );
    assert_eq!(volumes[1].name, "anchorage-trust");
    assert_eq!(
        volumes[1].config_map.as_ref().unwrap().name,
        "corp-trust",
        "the Bundle controller's target"
    );
    let container = &spec.containers[0];
    assert_eq!(container.name, "echo-server");
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert_eq!(
        mounts[0].mount_path, "/var/run/secrets/kubernetes.io/serviceaccount",
        "the token mount is kept"
    );
    assert_eq!(mounts[1].name, "anchorage-trust");
    assert_eq!(mounts[1].mount_path, "/etc/ssl/certs");
    assert_eq!(mounts[1].read_only, Some(true));
    assert!(mounts[1].sub_path.is_none(), "a directory, never subPath");

    // The variables are the ones `anchorage k8s patch --configmap corp-trust` sets.
    let env = env_of(container);
    let expected: Vec<(String, String)> = settings()
        .env()
        .into_iter()
        .map(|e: EnvVar| (e.name, e.value.unwrap()))
        .collect();
    assert_eq!(env, expected);
    assert_eq!(
        value_of(&env, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(value_of(&env, "SSL_CERT_DIR"), Some("/etc/ssl/certs"));
    assert_eq!(
        value_of(&env, "NODE_EXTRA_CA_CERTS"),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(
        value_of(&env, "JAVA_TOOL_OPTIONS"),
        None,
        "no PKCS#12 asked"
    );

    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[INJECTED_ANNOTATION], "echo-server");
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"),
        "existing annotations kept"
    );
    // Everything else of the pod is as it was.
    let mut rest = pod.clone();
    let mut rest_before = before;
    for p in [&mut rest, &mut rest_before] {
        let spec = p.spec.as_mut().unwrap();
        spec.volumes = None;
        spec.containers[0].volume_mounts = None;
        spec.containers[0].env = None;
        p.metadata.annotations = None;
    }
    assert_eq!(rest, rest_before);
}

#[test]
fn extra_pem_and_pkcs12_name_the_node_and_java_files() {
    let mut settings = settings();
    settings.extra_pem = true;
    settings.pkcs12 = true;
    let review = labelled();
    let patch = patch_of(&answer(&settings, &review)).unwrap();
    let pod = apply(&review["request"]["object"], &patch);
    let env = env_of(&pod.spec.unwrap().containers[0]);
    assert_eq!(
        value_of(&env, "NODE_EXTRA_CA_CERTS"),
        Some("/etc/ssl/certs/extra-ca.pem")
    );
    let java = value_of(&env, "JAVA_TOOL_OPTIONS").unwrap();
    assert!(
        java.contains("-Djavax.net.ssl.trustStore=/etc/ssl/certs/truststore.p12")
            && java.contains("-Djavax.net.ssl.trustStoreType=PKCS12"),
        "{java}"
    );
}

#[test]
fn a_cluster_trust_bundle_projection_sets_no_ssl_cert_dir() {
    let settings = InjectSettings::new(TrustSource::ClusterTrustBundle(
        anchorage_k8s::CtbSelector::Signer {
            signer_name: "example.com/mesh".into(),
            match_labels: Default::default(),
        },
    ));
    let review = labelled();
    let patch = patch_of(&answer(&settings, &review)).unwrap();
    let pod = apply(&review["request"]["object"], &patch);
    let spec = pod.spec.unwrap();
    let projection = spec.volumes.as_ref().unwrap()[1]
        .projected
        .as_ref()
        .unwrap()
        .sources
        .as_ref()
        .unwrap()[0]
        .cluster_trust_bundle
        .clone()
        .unwrap();
    assert_eq!(projection.signer_name.as_deref(), Some("example.com/mesh"));
    assert_eq!(projection.path, "ca-certificates.crt");
    let env = env_of(&spec.containers[0]);
    assert_eq!(
        value_of(&env, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(
        value_of(&env, "SSL_CERT_DIR"),
        None,
        "one file, no hashed names"
    );
}

#[test]
fn an_injected_pod_is_not_changed_again() {
    let review = labelled();
    let patch = patch_of(&answer(&settings(), &review)).unwrap();
    let pod = apply(&review["request"]["object"], &patch);
    let mut again = review;
    again["request"]["object"] = serde_json::to_value(&pod).unwrap();
    let second = answer(&settings(), &again);
    assert_eq!(second["response"]["allowed"], true);
    assert!(second["response"].get("patch").is_none(), "{second:#}");
    assert_eq!(
        inject(&settings(), &again["request"]["object"])
            .unwrap()
            .decision,
        Decision::AlreadyInjected
    );
}

#[test]
fn what_the_author_set_is_kept_and_containers_with_their_own_trust_are_skipped() {
    let mut review = labelled();
    let object = &mut review["request"]["object"];
    object["spec"]["containers"] = json!([
        { "name": "own-file", "image": "a", "env": [{ "name": "SSL_CERT_FILE", "value": "/mine.pem" }] },
        { "name": "own-mount", "image": "b", "volumeMounts": [{ "name": "certs", "mountPath": "/etc/ssl/certs" }] },
        { "name": "plain", "image": "c", "env": [{ "name": "PORT", "value": "8080" }] },
    ]);
    object["spec"]["initContainers"] = json!([{ "name": "fetch", "image": "d" }]);
    object["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "certs", "emptyDir": {} }));
    let answer = answer(&settings(), &review);
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("container own-file sets SSL_CERT_FILE itself"),
        "{warnings}"
    );
    assert!(
        warnings.contains("container own-mount mounts volume `certs` at /etc/ssl/certs itself"),
        "{warnings}"
    );
    let pod = apply(&review["request"]["object"], &patch_of(&answer).unwrap());
    let spec = pod.spec.unwrap();
    let by_name = |n: &str| spec.containers.iter().find(|c| c.name == n).unwrap();
    assert_eq!(
        env_of(by_name("own-file")),
        [("SSL_CERT_FILE".to_owned(), "/mine.pem".to_owned())]
    );
    assert!(by_name("own-file").volume_mounts.is_none());
    assert_eq!(
        by_name("own-mount").volume_mounts.as_ref().unwrap().len(),
        1
    );
    assert!(by_name("own-mount").env.is_none());
    let plain = env_of(by_name("plain"));
    assert_eq!(
        plain[0],
        ("PORT".to_owned(), "8080".to_owned()),
        "kept, first"
    );
    assert_eq!(
        value_of(&plain, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        init.volume_mounts.as_ref().unwrap()[0].mount_path,
        "/etc/ssl/certs"
    );
    assert_eq!(
        pod.metadata.annotations.unwrap()[INJECTED_ANNOTATION],
        "plain,fetch"
    );
    let names: Vec<_> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["default-token-rxbqq", "certs", "anchorage-trust"]);
}

#[test]
fn a_pod_whose_every_container_has_its_own_trust_or_own_volume_name_is_unchanged() {
    let mut review = labelled();
    review["request"]["object"]["spec"]["containers"][0]["env"] =
        json!([{ "name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g" }]);
    let mut settings = settings();
    settings.pkcs12 = true;
    let a = answer(&settings, &review);
    assert_eq!(a["response"]["allowed"], true);
    assert!(a["response"].get("patch").is_none(), "{a:#}");
    assert!(
        a["response"]["warnings"]
            .to_string()
            .contains("sets JAVA_TOOL_OPTIONS itself")
    );

    // A volume of the trust volume's name that the author made is never replaced.
    let mut review = labelled();
    review["request"]["object"]["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "anchorage-trust", "emptyDir": {} }));
    let a = answer(&self::settings(), &review);
    assert!(a["response"].get("patch").is_none(), "{a:#}");
}

#[test]
fn an_identity_request_is_answered_with_a_warning_until_the_sidecar_exists() {
    let mut review = labelled();
    review["request"]["object"]["metadata"]["annotations"][IDENTITY_ANNOTATION] =
        "spiffe://corp/web".into();
    let a = answer(&settings(), &review);
    assert!(
        a["response"]["warnings"]
            .to_string()
            .contains("no agent sidecar"),
        "{a:#}"
    );
    assert!(patch_of(&a).is_some(), "the trust part is still injected");
}

#[test]
fn malformed_or_foreign_reviews_are_allowed_without_a_patch() {
    let check = |body: &[u8], uid: &str, why: &str| {
        let a = review_json(&settings(), body);
        let r = &a["response"];
        assert_eq!(r["allowed"], true, "{why}: {a:#}");
        assert_eq!(r["uid"], uid, "{why}");
        assert!(r.get("patch").is_none(), "{why}: {a:#}");
        let warnings = r["warnings"].to_string();
        assert!(warnings.contains("trust not injected"), "{why}: {a:#}");
    };
    let recorded = serde_json::to_vec(&labelled()).unwrap();
    check(&recorded[..recorded.len() / 2], "", "truncated");
    // A value in a malformed pod never reaches the warning (serde's own message quotes it).
    let mut malformed = labelled();
    malformed["request"]["object"]["metadata"]["annotations"] = "s3cr3t-value".into();
    let serde_says = serde_json::from_value::<Pod>(malformed["request"]["object"].clone())
        .unwrap_err()
        .to_string();
    assert!(serde_says.contains("s3cr3t-value"), "{serde_says}");
    let a = review_json(&settings(), &serde_json::to_vec(&malformed).unwrap());
    assert_eq!(a["response"]["allowed"], true);
    assert!(
        a["response"]["warnings"]
            .to_string()
            .contains("trust not injected"),
        "{a:#}"
    );
    assert!(!a.to_string().contains("s3cr3t-value"), "{a:#}");
    check(b"", "", "empty body");
    check(
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        "",
        "no request",
    );
    let mut deployment = labelled();
    deployment["request"]["kind"] =
        json!({ "group": "apps", "version": "v1", "kind": "Deployment" });
    check(
        &serde_json::to_vec(&deployment).unwrap(),
        "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
        "not a pod",
    );
    let mut no_object = labelled();
    no_object["request"]["object"] = Value::Null;
    check(
        &serde_json::to_vec(&no_object).unwrap(),
        "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
        "no object",
    );
    let mut bad_settings = settings();
    bad_settings.source = TrustSource::ConfigMap("Not A Name".into());
    assert!(settings().validate().is_ok());
    let e = bad_settings.validate().unwrap_err();
    assert!(
        std::error::Error::source(&e)
            .unwrap()
            .to_string()
            .contains("invalid ConfigMap name `Not A Name`"),
        "{e:?}"
    );
    let a = answer(&bad_settings, &labelled());
    assert_eq!(a["response"]["allowed"], true);
    assert!(a["response"].get("patch").is_none());
    assert!(
        a["response"]["warnings"]
            .to_string()
            .contains("cannot build the patch")
    );
}

#[test]
fn updates_are_not_patched() {
    let mut review = labelled();
    review["request"]["operation"] = "UPDATE".into();
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let a = answer(&settings(), &review);
    assert_eq!(a["response"]["allowed"], true);
    assert!(a["response"].get("patch").is_none(), "{a:#}");
}

fn ca() -> BuiltinCa {
    BuiltinCa::init(&InitOptions {
        common_name: "Anchorage Webhook Test Root".into(),
        ..InitOptions::default()
    })
    .unwrap()
}

#[test]
fn the_webhook_configuration_never_blocks_and_carries_the_ca() {
    let ca = ca();
    let service = WebhookService::new("anchorage-webhook", "anchorage-trust");
    let issued = serving_certificate(&ca, &service, anchorage_ca::SystemClock.timestamp()).unwrap();
    let root_pem = issued.roots_pem();
    let config = webhook_configuration(&service, Some(&root_pem));
    // Through YAML and back, as `kubectl apply` would send it.
    let yaml = serde_yaml_ng::to_string(&config).unwrap();
    let back: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
        serde_yaml_ng::from_str(&yaml).unwrap();
    let hook = &back.webhooks.unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.timeout_seconds, Some(TIMEOUT_SECONDS));
    const { assert!(TIMEOUT_SECONDS <= 5) };
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert_eq!(
        hook.object_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[INJECT_LABEL],
        "true"
    );
    let ns = &hook
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(ns.operator, "NotIn");
    assert_eq!(
        ns.values.as_ref().unwrap(),
        &["kube-system", "anchorage-trust"]
    );
    let rule = &hook.rules.as_ref().unwrap()[0];
    assert_eq!(rule.operations.as_ref().unwrap(), &["CREATE"]);
    assert_eq!(rule.resources.as_ref().unwrap(), &["pods"]);
    let client = &hook.client_config;
    let svc = client.service.as_ref().unwrap();
    assert_eq!(
        (svc.name.as_str(), svc.namespace.as_str()),
        ("anchorage-webhook", "anchorage-trust")
    );
    assert_eq!(svc.path.as_deref(), Some(MUTATE_PATH));
    // caBundle is the CA's root, base64 in YAML, PEM once decoded.
    assert_eq!(client.ca_bundle.as_ref().unwrap().0, root_pem.as_bytes());
    assert!(yaml.contains(&format!(
        "caBundle: {}",
        base64::engine::general_purpose::STANDARD.encode(root_pem.as_bytes())
    )));
    assert_eq!(root_pem, ca.root().to_pem());
    // The certificate names the Service as the API server calls it.
    let cert = issued.certificate.to_pem();
    assert!(!cert.is_empty());
    assert!(
        webhook_configuration(&service, None).webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .is_none()
    );
}

struct Running {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(ca: &BuiltinCa, service: &WebhookService) -> Running {
    let issued = serving_certificate(ca, service, anchorage_ca::SystemClock.timestamp()).unwrap();
    let key = issued.private_key.as_ref().unwrap().to_pkcs8_pem();
    let tls = tls_config(
        issued.chain_pem().as_bytes(),
        key.expose_secret().as_bytes(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(anchorage_controller::webhook::serve(
        listener,
        tls,
        settings(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        port,
        stop: Some(stop),
        task,
    }
}

fn client(roots: &[&BuiltinCa], service: &WebhookService, port: u16) -> reqwest::Client {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store
            .add(rustls_pki_types::CertificateDer::from(
                ca.root().der().to_vec(),
            ))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let host = service.dns_names()[0].clone();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        // The API server calls https://<service>.<namespace>.svc:443; here that name is this
        // loopback server.
        .resolve(&host, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_endpoint_answers_a_client_trusting_the_ca_and_only_that_one() {
    let ca = ca();
    let service = WebhookService::new("anchorage-webhook", "anchorage-trust");
    let mut server = start(&ca, &service).await;
    let url = |path: &str| format!("https://{}:{}{path}", service.dns_names()[0], server.port);

    let trusting = client(&[&ca], &service, server.port);
    let health = trusting.get(url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let answer: Value = trusting
        .post(url(MUTATE_PATH))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&labelled()).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        answer["response"]["uid"],
        "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4"
    );
    let patch = patch_of(&answer).unwrap();
    let pod = apply(&labelled()["request"]["object"], &patch);
    assert_eq!(
        pod.spec.unwrap().volumes.unwrap()[1].name,
        "anchorage-trust"
    );
    // A malformed body over HTTPS: still 200, allowed.
    let answer: Value = trusting
        .post(url(MUTATE_PATH))
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true);

    // Negative controls: a client trusting another CA, and one trusting none, are refused in the
    // handshake.
    let other = BuiltinCa::init(&InitOptions {
        common_name: "Unrelated Root".into(),
        ..InitOptions::default()
    })
    .unwrap();
    for (who, client) in [
        ("another CA", client(&[&other], &service, server.port)),
        ("no CA", client(&[], &service, server.port)),
    ] {
        let e = client.get(url("/healthz")).send().await.unwrap_err();
        let chain = format!("{e:?}");
        assert!(
            chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate"),
            "{who}: {chain}"
        );
    }
    // A name the certificate does not carry is refused too.
    let wrong = WebhookService::new("other", "anchorage-trust");
    let e = client(&[&ca], &wrong, server.port)
        .get(format!(
            "https://{}:{}/healthz",
            wrong.dns_names()[0],
            server.port
        ))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");

    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), &mut server.task)
        .await
        .unwrap()
        .unwrap();
}

/// The webhook with an agent configured, as `controller webhook --agent-image ... --serve-url ...
/// --serve-ca-configmap serve-ca --agent-token-secret web-token` sets it.
fn agent_settings() -> InjectSettings {
    let mut settings = settings();
    settings.agent = Some(anchorage_k8s::AgentSpec {
        image: "registry.example/anchorage:1".into(),
        server: "https://anchorage-serve.anchorage.svc:8443".into(),
        serve_ca: anchorage_k8s::ServeCaSource::ConfigMap("serve-ca".into()),
        token_secret: "web-token".into(),
        ..anchorage_k8s::AgentSpec::default()
    });
    settings
}

/// The labelled review asking for the identity `web` (with a SAN and a role).
fn asking_for_identity() -> Value {
    let mut review = labelled();
    let annotations = &mut review["request"]["object"]["metadata"]["annotations"];
    annotations[IDENTITY_ANNOTATION] = "web.$(POD_NAMESPACE).svc".into();
    annotations[IDENTITY_SANS_ANNOTATION] = "web, web.corp.example".into();
    annotations[IDENTITY_ROLE_ANNOTATION] = "web-server".into();
    review
}

fn mounts_of(c: &Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

#[test]
fn a_pod_asking_for_an_identity_gets_the_agent_built_by_anchorage_k8s() {
    let settings = agent_settings();
    let review = asking_for_identity();
    let answer = answer(&settings, &review);
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none(), "{answer:#}");
    let patch = patch_of(&answer).unwrap();
    let pod = apply(&review["request"]["object"], &patch);
    let spec = pod.spec.as_ref().unwrap();

    // The agent's containers are exactly what `anchorage k8s patch --agent` builds.
    let mut agent = settings.agent.clone().unwrap();
    let mut identity = anchorage_k8s::AgentIdentity::new("web.$(POD_NAMESPACE).svc");
    identity.sans = vec!["web".into(), "web.corp.example".into()];
    identity.role = Some("web-server".into());
    agent.identity = Some(identity);
    let sidecar = anchorage_k8s::agent_container(&agent, false).unwrap();
    let init = anchorage_k8s::agent_container(&agent, true).unwrap();
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.containers[1], sidecar);
    assert_eq!(spec.init_containers.as_ref().unwrap(), &vec![init]);
    let args = sidecar.args.clone().unwrap();
    for expected in [
        "--server=https://anchorage-serve.anchorage.svc:8443",
        "--identity=web.$(POD_NAMESPACE).svc",
        "--identity-san=web",
        "--identity-san=web.corp.example",
        "--role=web-server",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
    }
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/anchorage:1")
    );

    // Volumes: the service-account token kept, then the agent's.
    let volumes = spec.volumes.as_ref().unwrap();
    let mut expected_volumes = before_volumes(&review);
    expected_volumes.extend(anchorage_k8s::agent_volumes(&agent).unwrap());
    assert_eq!(volumes, &expected_volumes);
    let token_volume = volumes
        .iter()
        .find(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("web-token"))
        .unwrap();
    let serve_ca = volumes
        .iter()
        .find(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == Some("serve-ca"))
        .unwrap();
    assert!(
        !volumes
            .iter()
            .any(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == Some("corp-trust")),
        "the agent writes the trust: the trust object is not mounted"
    );

    // The app: the agent's emptyDir read-only over /etc/ssl/certs, the identity read-only, the
    // token and serve's CA not at all.
    let app = &spec.containers[0];
    assert_eq!(app.name, "echo-server");
    let mounts = mounts_of(app);
    assert!(
        mounts.contains(&("anchorage-trust".into(), "/etc/ssl/certs".into(), true)),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&(
            "anchorage-identity".into(),
            anchorage_k8s::DEFAULT_IDENTITY_MOUNT_PATH.into(),
            true
        )),
        "{mounts:?}"
    );
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let has_token = mounts_of(c).iter().any(|(n, _, _)| *n == token_volume.name);
        let has_ca = mounts_of(c).iter().any(|(n, _, _)| *n == serve_ca.name);
        let is_agent = c.name.starts_with("anchorage-agent");
        assert_eq!(has_token, is_agent, "token mounted in {}", c.name);
        assert_eq!(has_ca, is_agent, "serve CA mounted in {}", c.name);
        if is_agent {
            let token_mount = c
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == token_volume.name)
                .unwrap();
            assert_eq!(token_mount.read_only, Some(true));
        }
    }
    // The variables name the agent's files, as `k8s patch --agent` sets them.
    let env = env_of(app);
    assert_eq!(
        value_of(&env, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(
        value_of(&env, "SSL_CERT_DIR"),
        Some("/etc/ssl/certs/hashed")
    );
    let expected: Vec<(String, String)> = settings
        .agent_env()
        .into_iter()
        .map(|e: EnvVar| (e.name, e.value.unwrap()))
        .collect();
    assert_eq!(env, expected);
    assert_eq!(
        pod.metadata.annotations.as_ref().unwrap()[INJECTED_ANNOTATION],
        "echo-server"
    );

    // Idempotent: the patched pod is not changed again.
    let mut again = review;
    again["request"]["object"] = serde_json::to_value(&pod).unwrap();
    let second = self::answer(&settings, &again);
    assert_eq!(second["response"]["allowed"], true);
    assert!(second["response"].get("patch").is_none(), "{second:#}");
    // Even without the injected annotation: the agent's volume is there.
    again["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(INJECTED_ANNOTATION);
    assert_eq!(
        inject(&settings, &again["request"]["object"])
            .unwrap()
            .decision,
        Decision::AlreadyInjected
    );
}

/// `--agent-native-sidecar`: the same agent as one native sidecar (an init container with
/// `restartPolicy: Always`, first), nothing added to `containers`.
#[test]
fn with_native_sidecars_a_pod_asking_for_an_identity_gets_one_agent_it_waits_for() {
    let mut settings = agent_settings();
    settings.agent_native_sidecar = true;
    let review = asking_for_identity();
    let answer = answer(&settings, &review);
    assert!(answer["response"].get("warnings").is_none(), "{answer:#}");
    let pod = apply(&review["request"]["object"], &patch_of(&answer).unwrap());
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1, "only the app");
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].name, anchorage_k8s::AGENT_CONTAINER);
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    let mut agent = settings.agent.unwrap();
    let mut identity = anchorage_k8s::AgentIdentity::new("web.$(POD_NAMESPACE).svc");
    identity.sans = vec!["web".into(), "web.corp.example".into()];
    identity.role = Some("web-server".into());
    agent.identity = Some(identity);
    assert_eq!(
        init[0],
        anchorage_k8s::agent_native_sidecar(&agent).unwrap()
    );
}

fn before_volumes(review: &Value) -> Vec<k8s_openapi::api::core::v1::Volume> {
    let before: Pod = serde_json::from_value(review["request"]["object"].clone()).unwrap();
    before.spec.unwrap().volumes.unwrap()
}

#[test]
fn no_identity_annotation_no_agent() {
    let review = labelled();
    let answer = answer(&agent_settings(), &review);
    assert_eq!(answer["response"]["allowed"], true);
    let pod = apply(&review["request"]["object"], &patch_of(&answer).unwrap());
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers.len(), 1);
    assert!(spec.init_containers.is_none());
    assert!(
        spec.volumes
            .unwrap()
            .iter()
            .any(|v| v.config_map.as_ref().map(|c| c.name.as_str()) == Some("corp-trust")),
        "the trust object, as without an agent configured"
    );
}

#[test]
fn without_an_agent_configured_an_identity_gets_a_warning_and_the_trust_object() {
    let review = asking_for_identity();
    let answer = answer(&settings(), &review);
    assert_eq!(answer["response"]["allowed"], true);
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("no agent sidecar") && warnings.contains("--agent-image"),
        "{warnings}"
    );
    let pod = apply(&review["request"]["object"], &patch_of(&answer).unwrap());
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers.len(), 1);
    assert!(spec.init_containers.is_none());
}

#[test]
fn a_pod_with_its_own_agent_named_container_gets_no_agent() {
    for field in ["containers", "initContainers"] {
        for name in ["anchorage-agent", "anchorage-agent-init"] {
            let mut review = asking_for_identity();
            let spec = &mut review["request"]["object"]["spec"];
            let own = json!({ "name": name, "image": "mine" });
            match spec[field].as_array_mut() {
                Some(list) => list.push(own),
                None => spec[field] = json!([own]),
            }
            let answer = answer(&agent_settings(), &review);
            assert_eq!(answer["response"]["allowed"], true);
            let warnings = answer["response"]["warnings"].to_string();
            assert!(
                warnings.contains(&format!("a container named {name} already")),
                "{field}/{name}: {warnings}"
            );
            let pod = apply(&review["request"]["object"], &patch_of(&answer).unwrap());
            let spec = pod.spec.unwrap();
            let all: Vec<&Container> = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .collect();
            assert_eq!(all.len(), 2, "{field}/{name}: nothing added");
            let own = all.iter().find(|c| c.name == name).unwrap();
            assert_eq!(
                own.image.as_deref(),
                Some("mine"),
                "the author's container kept"
            );
            assert!(
                !spec.volumes.unwrap().iter().any(|v| v
                    .secret
                    .as_ref()
                    .and_then(|s| s.secret_name.as_deref())
                    == Some("web-token")),
                "{field}/{name}: no token mounted"
            );
        }
    }
}

#[test]
fn an_unlabelled_pod_asking_for_an_identity_is_not_changed() {
    let mut review = asking_for_identity();
    review["request"]["object"]["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove(INJECT_LABEL);
    let answer = answer(&agent_settings(), &review);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer:#}");
    assert!(
        answer["response"]["warnings"]
            .to_string()
            .contains("not labelled")
    );
}

#[test]
fn an_identity_the_agent_refuses_is_allowed_without_a_patch() {
    let mut review = asking_for_identity();
    review["request"]["object"]["metadata"]["annotations"][IDENTITY_ANNOTATION] =
        "two words".into();
    let answer = answer(&agent_settings(), &review);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer:#}");
    assert!(
        answer["response"]["warnings"]
            .to_string()
            .contains("cannot build the patch")
    );
}

#[test]
fn agent_settings_are_checked_at_start() {
    assert!(agent_settings().validate().is_ok());
    let mut bad = agent_settings();
    bad.agent.as_mut().unwrap().server = "ftp://serve".into();
    assert!(bad.validate().is_err());
    let mut bad = agent_settings();
    bad.agent.as_mut().unwrap().token_secret = "Not A Name".into();
    assert!(bad.validate().is_err());
}

/// `webhook --events`: through the real kube client against PyPI's kmock (someone else's fake
/// API server), a labelled pod that was not injected, and one injected with warnings, each get
/// a Warning Event on the pod's controller owner (the ReplicaSet: the pod does not exist yet);
/// a pod injected without warnings, an unlabelled pod and a body that is no review get none
/// (negative controls, sent first so the FIFO queue would have published them before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_not_injected_or_injected_with_warnings_get_a_warning_event_on_their_owner() {
    use anchorage_controller::inject::{INJECTED_WITH_WARNINGS_REASON, NOT_INJECTED_REASON};
    use anchorage_controller::webhook::{Events, router};
    use k8s_openapi::api::events::v1::Event;
    use kube::Api;
    use tower::ServiceExt as _;

    let Some(kmock) = anchorage_test_support::kmock::Kmock::start("the webhook's Events test", &[])
    else {
        return;
    };
    let config = kube::Config::new(kmock.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let owned = |mut review: Value, replica_set: &str| {
        review["request"]["object"]["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
            "uid": format!("uid-{replica_set}"), "controller": true, "blockOwnerDeletion": true
        }]);
        review
    };
    let post = |app: axum::Router, review: Vec<u8>| async move {
        let request = axum::http::Request::post(MUTATE_PATH)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(review))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    };
    let events = Events::start(client.clone(), Some("webhook-0".into()));
    let plain = router(settings(), Some(events.clone()));
    let with_agent = router(agent_settings(), Some(events));

    // Negative controls first: injected cleanly, not labelled, not a review.
    post(
        plain.clone(),
        serde_json::to_vec(&owned(labelled(), "clean")).unwrap(),
    )
    .await;
    post(
        plain.clone(),
        serde_json::to_vec(&owned(fixture(), "unlabelled")).unwrap(),
    )
    .await;
    post(plain.clone(), b"{not json".to_vec()).await;
    // A warning: an identity asked for, no agent configured (the trust object instead).
    post(
        plain.clone(),
        serde_json::to_vec(&owned(asking_for_identity(), "web-7d9f")).unwrap(),
    )
    .await;
    // Not injected: an identity the agent refuses; no owner, so the Event is on the pod.
    let mut refused = asking_for_identity();
    refused["request"]["object"]["metadata"]["annotations"][IDENTITY_ANNOTATION] =
        "two words".into();
    post(with_agent, serde_json::to_vec(&refused).unwrap()).await;

    let namespace = fixture()["request"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let start = std::time::Instant::now();
    let mut events = loop {
        let events = api.list(&Default::default()).await.unwrap().items;
        if events.len() >= 2 || start.elapsed() > std::time::Duration::from_secs(20) {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // By reason: TrustInjectedWithWarnings, then TrustNotInjected.
    events.sort_by(|a, b| a.reason.cmp(&b.reason));
    let seen: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            let regarding = e.regarding.clone().unwrap_or_default();
            (
                e.reason.clone().unwrap_or_default(),
                regarding.kind.unwrap_or_default(),
                regarding.name.unwrap_or_default(),
                e.type_.clone().unwrap_or_default(),
            )
        })
        .collect();
    let pod_name = fixture()["request"]["object"]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        seen,
        vec![
            (
                INJECTED_WITH_WARNINGS_REASON.to_owned(),
                "ReplicaSet".to_owned(),
                "web-7d9f".to_owned(),
                "Warning".to_owned()
            ),
            (
                NOT_INJECTED_REASON.to_owned(),
                "Pod".to_owned(),
                pod_name,
                "Warning".to_owned()
            ),
        ],
        "exactly the two Warning Events: {events:#?}"
    );
    let notes: Vec<&str> = events.iter().filter_map(|e| e.note.as_deref()).collect();
    assert!(notes[0].contains("no agent sidecar"), "{notes:?}");
    assert!(notes[1].contains("cannot build the patch"), "{notes:?}");
    assert!(events.iter().all(|e| e.reporting_controller.as_deref()
        == Some("anchorage.dev/webhook")
        && e.reporting_instance.as_deref() == Some("webhook-0")
        && e.action.as_deref() == Some("Inject")));
    drop(kmock);
}

//! `CertManagerIssuer::issue` end to end against a fake Kubernetes API (a tower service in
//! the test, no sockets): create, list + watch through kube-runtime, delete. The fake plays
//! cert-manager with the recorded shapes of `tests/fixtures`, signing the CSR it was sent with
//! a test CA, so the whole sequence runs without a cluster.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_ca::{
    CertKind, CertificateRequest, Identity, IssueError, Issuer, IssuerId, RequestError, San,
};
use anchorage_ca_cert_manager::v1::{self, IssuerReference};
use anchorage_ca_cert_manager::{CertManagerIssuer, CertManagerSettings, MANAGED_BY_LABEL};
use anchorage_test_support::pki::{self, Issued as TestCa};
use anchorage_x509::Certificate;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use k8s_openapi::ByteString;
use kube::client::Body;
use rcgen::CertificateSigningRequestParams;
use serde_json::{Value, json};
use time::OffsetDateTime;

const NAMESPACE: &str = "mesh-system";
const COLLECTION: &str = "/apis/cert-manager.io/v1/namespaces/mesh-system/certificaterequests";

/// What the fake cert-manager does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Pending on the first list, signed on the watch.
    Sign,
    /// Signed, but for another key.
    SignOtherKey,
    /// Signed for our key, but without the CSR's names (an issuer policy that drops SANs).
    SignDroppingNames,
    /// Signed for our key with serverAuth only, although a service certificate needs both.
    SignServerOnly,
    /// Already denied when first listed.
    Deny,
    /// Never finishes: the watch hangs.
    Hang,
    /// The first watch ends with 410 Gone (etcd compaction); the next one signs.
    GoneThenSign,
    /// RBAC allows create but not list/watch.
    ListForbidden,
    /// RBAC refuses the create.
    Forbidden,
    /// cert-manager's webhook refuses the create.
    WebhookRefuses,
}

#[derive(Default)]
struct Seen {
    created: Option<v1::CertificateRequest>,
    watches: usize,
    deleted: Vec<String>,
    calls: Vec<String>,
}

struct Fake {
    plan: Plan,
    root: TestCa,
    intermediate: TestCa,
    seen: Mutex<Seen>,
}

impl Fake {
    fn new(plan: Plan) -> Arc<Self> {
        let root = pki::root_ca("Fake Mesh Root");
        let intermediate = pki::intermediate_ca("Fake Mesh Intermediate", &root);
        Arc::new(Self {
            plan,
            root,
            intermediate,
            seen: Mutex::new(Seen::default()),
        })
    }

    fn issuer(self: &Arc<Self>, timeout: Duration) -> CertManagerIssuer {
        let fake = Arc::clone(self);
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = Arc::clone(&fake);
            async move { Ok::<_, Infallible>(fake.answer(request).await) }
        });
        let client = kube::Client::new(service, NAMESPACE);
        let settings =
            CertManagerSettings::new(NAMESPACE, IssuerReference::cluster_issuer("mesh-ca"))
                .with_timeout(timeout);
        CertManagerIssuer::new(client, settings).unwrap()
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        self.seen
            .lock()
            .unwrap()
            .calls
            .push(format!("{method} {path}?{query}"));
        let body = request.into_body().collect().await.unwrap().to_bytes();

        match (method, path.as_str()) {
            (Method::POST, COLLECTION) => self.create(&body),
            (Method::GET, COLLECTION) if query.contains("watch=true") => self.watch().await,
            (Method::GET, COLLECTION) => self.list(),
            (Method::DELETE, p) if p.starts_with(COLLECTION) => {
                let name = p.rsplit('/').next().unwrap_or_default().to_owned();
                self.seen.lock().unwrap().deleted.push(name.clone());
                respond(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "details": {"name": name, "group": "cert-manager.io", "kind": "certificaterequests"}}),
                )
            }
            (method, path) => respond(
                StatusCode::NOT_FOUND,
                status_json(404, "NotFound", &format!("the fake has no {method} {path}")),
            ),
        }
    }

    fn create(&self, body: &[u8]) -> Response<Body> {
        match self.plan {
            Plan::Forbidden => {
                return respond(
                    StatusCode::FORBIDDEN,
                    status_json(
                        403,
                        "Forbidden",
                        r#"certificaterequests.cert-manager.io is forbidden: User "system:serviceaccount:mesh-system:anchorage" cannot create resource "certificaterequests" in API group "cert-manager.io" in the namespace "mesh-system""#,
                    ),
                );
            }
            Plan::WebhookRefuses => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    status_json(
                        400,
                        "BadRequest",
                        r#"admission webhook "webhook.cert-manager.io" denied the request: spec.usages: Invalid value: []v1.KeyUsage{"digital signature", "server auth", "client auth"}: csr key usages do not match specified usages"#,
                    ),
                );
            }
            _ => {}
        }
        let mut object: v1::CertificateRequest = serde_json::from_slice(body).unwrap();
        let prefix = object.metadata.generate_name.clone().unwrap();
        object.metadata.name = Some(format!("{prefix}x7k2p"));
        object.metadata.uid = Some("3d1e5c8a-0b7f-4e29-a6d3-5f8c2b9e1a04".to_owned());
        object.metadata.resource_version = Some("1".to_owned());
        self.seen.lock().unwrap().created = Some(object.clone());
        respond(StatusCode::CREATED, serde_json::to_value(&object).unwrap())
    }

    fn list(&self) -> Response<Body> {
        if self.plan == Plan::ListForbidden {
            return respond(
                StatusCode::FORBIDDEN,
                status_json(
                    403,
                    "Forbidden",
                    r#"certificaterequests.cert-manager.io is forbidden: User "system:serviceaccount:mesh-system:anchorage" cannot list resource "certificaterequests" in API group "cert-manager.io" in the namespace "mesh-system""#,
                ),
            );
        }
        let status = match self.plan {
            Plan::Deny => denied(),
            _ => pending(),
        };
        let item = self.created_with(status);
        respond(
            StatusCode::OK,
            json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequestList",
                   "metadata": {"resourceVersion": "2"}, "items": [item]}),
        )
    }

    async fn watch(&self) -> Response<Body> {
        let watches = {
            let mut seen = self.seen.lock().unwrap();
            seen.watches += 1;
            seen.watches
        };
        let status = match self.plan {
            Plan::GoneThenSign if watches == 1 => {
                let gone = json!({"type": "ERROR", "object": status_json(410, "Expired",
                    "too old resource version: 2 (184467)")});
                let mut line = serde_json::to_vec(&gone).unwrap();
                line.push(b'\n');
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(line))
                    .unwrap();
            }
            Plan::Sign | Plan::GoneThenSign => self.signed(false),
            Plan::SignOtherKey => self.signed(true),
            Plan::SignDroppingNames | Plan::SignServerOnly => self.signed(false),
            _ => std::future::pending().await,
        };
        let event = json!({"type": "MODIFIED", "object": self.created_with(status)});
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(line))
            .unwrap()
    }

    fn created_with(&self, status: Value) -> Value {
        let created = self.seen(|s| s.created.clone()).unwrap();
        let mut object = serde_json::to_value(&created).unwrap();
        object["metadata"]["resourceVersion"] = json!("3");
        object["status"] = status;
        object
    }

    /// cert-manager's CA issuer: signs the CSR it was sent (or a fresh one) with the
    /// intermediate; chain in `certificate`, root in `ca`.
    fn signed(&self, other_key: bool) -> Value {
        let csr_pem = if other_key {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::new(vec!["other.example".to_owned()])
                .unwrap()
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap()
        } else {
            let created = self.seen(|s| s.created.clone()).unwrap();
            String::from_utf8(created.spec.request.0).unwrap()
        };
        let mut csr = CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        match self.plan {
            Plan::SignDroppingNames => csr.params.subject_alt_names.clear(),
            Plan::SignServerOnly => {
                csr.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }
            _ => {}
        }
        let now = OffsetDateTime::now_utc();
        csr.params.not_before = now;
        csr.params.not_after = now + time::Duration::hours(24);
        let leaf = csr.signed_by(&self.intermediate.issuer()).unwrap();
        let b64 = |pem: String| serde_json::to_value(ByteString(pem.into_bytes())).unwrap();
        json!({
            "certificate": b64(format!("{}{}", leaf.pem(), self.intermediate.pem)),
            "ca": b64(self.root.pem.clone()),
            "conditions": [approved(),
                {"lastTransitionTime": "2026-03-02T09:14:07Z", "message": "Certificate fetched from issuer successfully",
                 "reason": "Issued", "status": "True", "type": "Ready"}]
        })
    }
}

fn approved() -> Value {
    json!({"lastTransitionTime": "2026-03-02T09:14:07Z", "message": "Certificate request has been approved by cert-manager.io",
           "reason": "cert-manager.io", "status": "True", "type": "Approved"})
}

fn pending() -> Value {
    json!({"conditions": [approved()]})
}

fn denied() -> Value {
    json!({
        "conditions": [
            {"lastTransitionTime": "2026-03-02T09:14:07Z", "message": "No policy approved this request: [anchorage-mesh: spec.allowed.dnsNames.values: Invalid value: []string{\"web.shop.svc\"}: *.mesh.svc]",
             "reason": "policy.cert-manager.io", "status": "True", "type": "Denied"},
            {"lastTransitionTime": "2026-03-02T09:14:07Z", "message": "The CertificateRequest was denied by an approval controller",
             "reason": "Denied", "status": "False", "type": "Ready"}],
        "failureTime": "2026-03-02T09:14:07Z"
    })
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn request() -> CertificateRequest {
    CertificateRequest::new(Identity::new("web.shop.svc").unwrap(), CertKind::Service)
        .with_san(San::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap())
}

const NAME: &str = "anchorage-web-shop-svc-x7k2p";

#[tokio::test]
async fn issues_reads_the_chain_and_deletes_the_request() {
    let fake = Fake::new(Plan::Sign);
    let issuer = fake.issuer(Duration::from_secs(30));
    assert_eq!(issuer.backend(), "cert-manager");
    assert_eq!(issuer.signing_ca(), None);
    assert!(issuer.validating_roots().is_empty());

    let issued = issuer.issue(&request()).await.unwrap();

    let intermediate = Certificate::from_der(&fake.intermediate.der).unwrap();
    assert_eq!(issued.issuer, IssuerId::of(&intermediate));
    assert_eq!(issued.chain.len(), 1);
    assert_eq!(issued.validating_roots[0].der(), fake.root.der.as_slice());
    assert!(issued.certificate.subject().contains("web.shop.svc"));
    assert!(issued.private_key.is_some());
    assert!(!issued.lifetime_clamped);
    // What the last issuance taught the issuer.
    assert_eq!(issuer.signing_ca(), Some(IssuerId::of(&intermediate)));
    assert_eq!(issuer.validating_roots().len(), 1);

    let created = fake.seen(|s| s.created.clone()).unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()[MANAGED_BY_LABEL],
        "anchorage"
    );
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
    let calls = fake.seen(|s| s.calls.clone());
    assert!(
        calls[0].starts_with(&format!("POST {COLLECTION}?")),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains("fieldSelector=metadata.name%3D")),
        "{calls:?}"
    );
    assert!(
        calls
            .last()
            .unwrap()
            .starts_with(&format!("DELETE {COLLECTION}/{NAME}")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_key_is_refused() {
    let fake = Fake::new(Plan::SignOtherKey);
    let err = fake
        .issuer(Duration::from_secs(30))
        .issue(&request())
        .await
        .unwrap_err();
    let IssueError::Backend { message, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        message,
        "the certificate returned for web.shop.svc (CN=rcgen self signed cert) does not hold the \
         key of our CSR"
    );
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

/// The backend runs the same check as the others (anchorage_ca::check_issued): an answer that
/// lost the requested names or a purpose is refused, not handed out.
#[tokio::test]
async fn a_certificate_without_the_names_or_purposes_asked_for_is_refused() {
    for (plan, expected) in [
        (
            Plan::SignDroppingNames,
            "the certificate returned for web.shop.svc (CN=web.shop.svc) does not match the \
             request: the certificate lacks the requested names DNS:web.shop.svc, \
             URI:spiffe://cluster.local/ns/shop/sa/web; the issuer drops names of the CSR: check \
             its policy (approver-policy, the CA's allowed names)",
        ),
        (
            Plan::SignServerOnly,
            "the certificate returned for web.shop.svc (CN=web.shop.svc) does not match the \
             request: the certificate lacks clientAuth, which a service certificate needs; the \
             issuer ignores spec.usages: check the issuer's configuration",
        ),
    ] {
        let fake = Fake::new(plan);
        let err = fake
            .issuer(Duration::from_secs(30))
            .issue(&request())
            .await
            .unwrap_err();
        let IssueError::Backend { message, .. } = err else {
            panic!("{plan:?}: {err:?}");
        };
        assert_eq!(message, expected, "{plan:?}");
        assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME], "{plan:?}");
    }
}

#[tokio::test]
async fn denied_fails_fast_and_deletes() {
    let fake = Fake::new(Plan::Deny);
    let start = Instant::now();
    let err = fake
        .issuer(Duration::from_secs(60))
        .issue(&request())
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let IssueError::Refused { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        reason,
        "CertificateRequest mesh-system/anchorage-web-shop-svc-x7k2p was denied \
         (policy.cert-manager.io): No policy approved this request: [anchorage-mesh: \
         spec.allowed.dnsNames.values: Invalid value: []string{\"web.shop.svc\"}: *.mesh.svc]"
    );
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

#[tokio::test]
async fn times_out_and_deletes() {
    let fake = Fake::new(Plan::Hang);
    let start = Instant::now();
    let err = fake
        .issuer(Duration::from_secs(1))
        .issue(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, IssueError::Timeout { backend: "cert-manager", waited } if waited == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

#[tokio::test]
async fn a_cancelled_issue_still_deletes() {
    let fake = Fake::new(Plan::Hang);
    let issuer = fake.issuer(Duration::from_secs(60));
    let cut = tokio::time::timeout(Duration::from_millis(500), issuer.issue(&request())).await;
    assert!(cut.is_err());
    for _ in 0..50 {
        if !fake.seen(|s| s.deleted.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

#[tokio::test]
async fn rbac_refusal_says_what_to_grant() {
    let fake = Fake::new(Plan::Forbidden);
    let err = fake
        .issuer(Duration::from_secs(5))
        .issue(&request())
        .await
        .unwrap_err();
    let IssueError::Backend { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        message,
        "not allowed to create certificaterequests.cert-manager.io in namespace mesh-system: \
         certificaterequests.cert-manager.io is forbidden: User \
         \"system:serviceaccount:mesh-system:anchorage\" cannot create resource \
         \"certificaterequests\" in API group \"cert-manager.io\" in the namespace \
         \"mesh-system\"; grant create, get, list, watch and delete on them"
    );
    assert!(fake.seen(|s| s.deleted.is_empty()));
}

#[tokio::test]
async fn webhook_refusal_is_a_refusal() {
    let fake = Fake::new(Plan::WebhookRefuses);
    let err = fake
        .issuer(Duration::from_secs(5))
        .issue(&request())
        .await
        .unwrap_err();
    let IssueError::Refused { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        reason,
        "the API server refused CertificateRequest mesh-system/anchorage-web-shop-svc-*: \
         admission webhook \"webhook.cert-manager.io\" denied the request: spec.usages: Invalid \
         value: []v1.KeyUsage{\"digital signature\", \"server auth\", \"client auth\"}: csr \
         key usages do not match specified usages"
    );
}

#[tokio::test]
async fn invalid_requests_never_reach_the_api() {
    let fake = Fake::new(Plan::Sign);
    let short = request().with_lifetime(Duration::from_secs(5));
    let err = fake
        .issuer(Duration::from_secs(5))
        .issue(&short)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IssueError::Request(RequestError::LifetimeTooShort { lifetime })
                if lifetime == Duration::from_secs(5)
        ),
        "{err:?}"
    );
    assert!(fake.seen(|s| s.calls.is_empty()));
}

#[tokio::test]
async fn a_broken_watch_is_watched_again() {
    let fake = Fake::new(Plan::GoneThenSign);
    let issued = fake
        .issuer(Duration::from_secs(30))
        .issue(&request())
        .await
        .unwrap();
    assert!(issued.certificate.subject().contains("web.shop.svc"));
    assert_eq!(fake.seen(|s| s.watches), 2);
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

#[tokio::test]
async fn a_watch_refused_by_rbac_fails_at_once() {
    let fake = Fake::new(Plan::ListForbidden);
    let start = Instant::now();
    let err = fake
        .issuer(Duration::from_secs(60))
        .issue(&request())
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let IssueError::Backend { message, .. } = &err else {
        panic!("{err:?}");
    };
    // Ours around kube's own account of the 403 (its wording is kube's, not pinned here but
    // for the status code).
    assert!(
        message.starts_with(
            "could not watch CertificateRequest mesh-system/anchorage-web-shop-svc-x7k2p: "
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; the client needs get, list and watch on certificaterequests.cert-manager.io"
        ),
        "{message}"
    );
    assert!(message.contains("code: 403"), "{message}");
    assert_eq!(fake.seen(|s| s.deleted.clone()), [NAME]);
}

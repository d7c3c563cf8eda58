//! The manager's behaviour, with a [`ManualClock`] and a small test issuer that signs real
//! certificates with an rcgen CA, counts its calls, and can be told to fail, panic, wait at a
//! gate, or switch to another signing CA.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_x509::Certificate;
use async_trait::async_trait;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::*;
use crate::clock::ManualClock;
use crate::issued::PrivateKey;
use crate::request::{CertKind, San};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
/// How long a test waits for something that should happen (real time).
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen (real time).
const QUIET: Duration = Duration::from_millis(100);

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    cert: Certificate,
    id: IssuerId,
}

fn test_ca(cn: &str) -> Arc<TestCa> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let cert = Certificate::from_der(issuer.der()).unwrap();
    let id = IssuerId::of(&cert);
    Arc::new(TestCa { issuer, cert, id })
}

/// Decrements the running count when an issuance ends, however it ends.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct TestIssuer {
    clock: Arc<ManualClock>,
    ca: Mutex<Arc<TestCa>>,
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    fail: AtomicBool,
    panic: AtomicBool,
    gate: Mutex<Option<Arc<Semaphore>>>,
    delay: Mutex<Duration>,
}

impl TestIssuer {
    fn new(clock: Arc<ManualClock>, ca: Arc<TestCa>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            ca: Mutex::new(ca),
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            panic: AtomicBool::new(false),
            gate: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn ca_id(&self) -> IssuerId {
        self.ca.lock().unwrap().id
    }

    fn fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Makes every issuance wait until [`Semaphore::add_permits`] on the returned gate.
    fn close_gate(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    /// Signs from now on with a new CA.
    fn switch_ca(&self, cn: &str) -> IssuerId {
        let ca = test_ca(cn);
        let id = ca.id;
        *self.ca.lock().unwrap() = ca;
        id
    }

    /// Waits (real time) until the issuer has been called `n` times.
    async fn wait_for_calls(&self, n: usize) {
        timeout(PATIENCE, async {
            while self.calls() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the issuer was called {} times, not {n}", self.calls()));
    }
}

#[async_trait]
impl Issuer for TestIssuer {
    fn backend(&self) -> &'static str {
        "test"
    }

    async fn issue(&self, request: &CertificateRequest) -> Result<IssuedCertificate, IssueError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.running);
        self.max_running.fetch_max(now_running, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _pass = gate.acquire().await.unwrap();
        }
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        assert!(
            !self.panic.load(Ordering::SeqCst),
            "test issuer told to panic"
        );
        if self.fail.load(Ordering::SeqCst) {
            return Err(IssueError::Backend {
                backend: "test",
                message: "told to fail".into(),
            });
        }
        let ca = Arc::clone(&self.ca.lock().unwrap());
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, request.identity.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = request
            .all_sans()
            .iter()
            .map(|san| match san {
                San::Dns(name) => SanType::DnsName(name.as_str().try_into().unwrap()),
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Uri(uri) => SanType::URI(uri.as_str().try_into().unwrap()),
            })
            .collect();
        let now = self.clock.timestamp().unix();
        let lifetime = i64::try_from(request.lifetime.as_secs()).unwrap();
        params.not_before = OffsetDateTime::from_unix_timestamp(now).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(now + lifetime).unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        Ok(IssuedCertificate {
            certificate: Certificate::from_der(cert.der()).unwrap(),
            private_key: Some(PrivateKey::from_pkcs8_der(
                key.serialize_der(),
                Some(request.key_type),
            )),
            chain: Vec::new(),
            validating_roots: vec![ca.cert.clone()],
            issuer: ca.id,
            lifetime_clamped: false,
        })
    }

    fn signing_ca(&self) -> Option<IssuerId> {
        Some(self.ca_id())
    }

    fn validating_roots(&self) -> Vec<Certificate> {
        vec![self.ca.lock().unwrap().cert.clone()]
    }
}

struct Harness {
    clock: Arc<ManualClock>,
    issuer: Arc<TestIssuer>,
    manager: CertManager,
}

/// No jitter (so due times are exact), 20 ms sleep chunks, default everything else.
fn test_config() -> ManagerConfig {
    ManagerConfig {
        renewal: RenewalPolicy {
            jitter: 0.0,
            max_sleep: Duration::from_millis(20),
            ..RenewalPolicy::default()
        },
        ..ManagerConfig::default()
    }
}

fn harness() -> Harness {
    harness_with(test_config())
}

fn harness_with(config: ManagerConfig) -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let issuer = TestIssuer::new(Arc::clone(&clock), test_ca("Test CA 1"));
    let manager = CertManager::new(
        Arc::clone(&issuer) as Arc<dyn Issuer>,
        Arc::clone(&clock) as Arc<dyn Clock>,
        config,
    )
    .unwrap();
    Harness {
        clock,
        issuer,
        manager,
    }
}

fn id(name: &str) -> Identity {
    Identity::new(name).unwrap()
}

/// A one-hour service certificate: due after 40 minutes, expired after 60.
fn request(name: &str) -> CertificateRequest {
    CertificateRequest::new(id(name), CertKind::Service).with_lifetime(HOUR)
}

async fn next_event(subscription: &mut Subscription) -> RotationEvent {
    timeout(PATIENCE, subscription.next())
        .await
        .expect("no rotation announced in time")
        .expect("the subscription ended")
}

async fn next_firehose(firehose: &mut broadcast::Receiver<RotationEvent>) -> RotationEvent {
    timeout(PATIENCE, firehose.recv())
        .await
        .expect("nothing on the firehose in time")
        .unwrap()
}

fn spawn_get(
    manager: &CertManager,
    request: &CertificateRequest,
) -> JoinHandle<Result<Arc<IssuedCertificate>, ManagerError>> {
    let (manager, request) = (manager.clone(), request.clone());
    tokio::spawn(async move { manager.get(&request).await })
}

#[tokio::test]
async fn a_cached_certificate_is_served_without_asking_the_issuer_again() {
    let h = harness();
    let first = h.manager.get(&request("a.example")).await.unwrap();
    assert!(first.certificate.subject().contains("a.example"));
    assert_eq!(first.issuer, h.issuer.ca_id());
    assert_eq!(
        first.not_after().unix() - first.not_before().unix(),
        3_600,
        "a real certificate with the requested lifetime"
    );

    let second = h.manager.get(&request("a.example")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    // Just before it is due, and with another lifetime asked for: still the cached one.
    h.clock.advance(39 * MINUTE);
    let third = h
        .manager
        .get(&request("a.example").with_lifetime(2 * HOUR))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &third));
    assert_eq!(h.issuer.calls(), 1);
    assert_eq!(h.manager.identities(), [id("a.example")]);
    assert!(Arc::ptr_eq(
        &h.manager.cached(&id("a.example")).unwrap(),
        &first
    ));
}

#[tokio::test]
async fn a_due_certificate_is_renewed_with_the_lifetime_last_asked_for() {
    let h = harness();
    let first = h.manager.get(&request("a.example")).await.unwrap();
    h.manager
        .get(&request("a.example").with_lifetime(2 * HOUR))
        .await
        .unwrap();
    h.clock.advance(41 * MINUTE);
    let renewed = h.manager.get(&request("a.example")).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &renewed));
    assert_eq!(h.issuer.calls(), 2);
    // The get that triggered the renewal asked for one hour again.
    assert_eq!(
        renewed.not_after().unix() - renewed.not_before().unix(),
        3_600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_for_one_identity_collapse_into_one_issuance() {
    let h = harness();
    let gate = h.issuer.close_gate();
    let req = request("busy.example");
    let gets: Vec<_> = (0..32).map(|_| spawn_get(&h.manager, &req)).collect();
    h.issuer.wait_for_calls(1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(h.issuer.calls(), 1);
    assert!(gets.iter().all(|g| !g.is_finished()));

    gate.add_permits(1);
    let mut certs = Vec::new();
    for get in gets {
        certs.push(get.await.unwrap().unwrap());
    }
    assert!(certs.iter().all(|c| Arc::ptr_eq(c, &certs[0])));
    assert_eq!(h.issuer.calls(), 1);
}

#[tokio::test]
async fn no_get_returns_the_due_certificate_while_its_renewal_is_in_flight() {
    let h = harness();
    let req = request("a.example");
    let old = h.manager.get(&req).await.unwrap();
    h.clock.advance(45 * MINUTE); // due, still valid
    let gate = h.issuer.close_gate();
    let first = spawn_get(&h.manager, &req);
    h.issuer.wait_for_calls(2).await;
    let second = spawn_get(&h.manager, &req);
    tokio::time::sleep(QUIET).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "a get answered while the renewal was in flight"
    );

    gate.add_permits(1);
    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert!(!Arc::ptr_eq(&first, &old));
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(h.issuer.calls(), 2);
}

#[tokio::test]
async fn a_failed_renewal_keeps_serving_the_valid_certificate_and_retries_with_backoff() {
    let h = harness();
    let req = request("a.example");
    let mut firehose = h.manager.firehose();
    let old = h.manager.get(&req).await.unwrap();
    assert_eq!(
        next_firehose(&mut firehose).await.reason,
        RotationReason::Issued
    );

    h.clock.advance(45 * MINUTE);
    h.issuer.fail(true);
    let served = h.manager.get(&req).await.unwrap();
    assert!(Arc::ptr_eq(&served, &old), "the valid certificate is kept");
    assert_eq!(h.issuer.calls(), 2);
    // Within the retry delay, gets do not hammer the issuer.
    let served = h.manager.get(&req).await.unwrap();
    assert!(Arc::ptr_eq(&served, &old));
    assert_eq!(h.issuer.calls(), 2);
    // After it, the next get tries again; still failing, still the old certificate.
    h.clock.advance(Duration::from_secs(2));
    let served = h.manager.get(&req).await.unwrap();
    assert!(Arc::ptr_eq(&served, &old));
    assert_eq!(h.issuer.calls(), 3);
    // The second failure doubles the delay: 1 s is not enough any more.
    h.clock.advance(Duration::from_secs(1));
    h.manager.get(&req).await.unwrap();
    assert_eq!(h.issuer.calls(), 3);

    h.issuer.fail(false);
    h.clock.advance(Duration::from_secs(2));
    let renewed = h.manager.get(&req).await.unwrap();
    assert!(!Arc::ptr_eq(&renewed, &old));
    assert_eq!(h.issuer.calls(), 4);
    // Failures announce nothing; the renewal does.
    let event = next_firehose(&mut firehose).await;
    assert_eq!(event.reason, RotationReason::Renewed);
    assert_eq!(event.old, Some(CertSummary::of(&old)));
    assert_eq!(event.new, Some(CertSummary::of(&renewed)));
}

#[tokio::test]
async fn an_expired_certificate_and_a_failing_issuer_give_the_error() {
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    h.clock.advance(61 * MINUTE);
    h.issuer.fail(true);
    let err = h.manager.get(&req).await.unwrap_err();
    match &err {
        ManagerError::Issue {
            identity,
            backend,
            source,
        } => {
            assert_eq!(identity, &id("a.example"));
            assert_eq!(*backend, "test");
            assert!(source.to_string().contains("told to fail"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("a.example"), "{err}");
    // Nothing valid is cached, so a get does not wait for the retry delay.
    h.issuer.fail(false);
    h.manager.get(&req).await.unwrap();
    assert_eq!(h.issuer.calls(), 3);
}

#[tokio::test]
async fn a_first_issuance_that_fails_leaves_nothing_behind() {
    let h = harness();
    h.issuer.fail(true);
    assert!(h.manager.get(&request("a.example")).await.is_err());
    assert!(h.manager.identities().is_empty());
    // A subscriber keeps the entry.
    let _subscription = h.manager.subscribe(&id("b.example"));
    assert!(h.manager.get(&request("b.example")).await.is_err());
    assert_eq!(h.manager.identities(), [id("b.example")]);
}

#[tokio::test]
async fn a_change_of_signing_ca_renews_on_the_next_get() {
    let h = harness();
    let req = request("a.example");
    let mut subscription = h.manager.subscribe(&req.identity);
    let old = h.manager.get(&req).await.unwrap();
    assert_eq!(
        next_event(&mut subscription).await.reason,
        RotationReason::Issued
    );

    let new_ca = h.issuer.switch_ca("Test CA 2");
    assert_eq!(h.manager.signing_ca(), Some(new_ca));
    let new = h.manager.get(&req).await.unwrap();
    assert_eq!(new.issuer, new_ca);
    assert_ne!(old.issuer, new_ca);
    let event = next_event(&mut subscription).await;
    assert_eq!(event.reason, RotationReason::IssuerChanged);
    assert_eq!(event.new.unwrap().issuer, new_ca);
    // And then it is cached again.
    assert!(Arc::ptr_eq(&h.manager.get(&req).await.unwrap(), &new));
    assert_eq!(h.issuer.calls(), 2);
    assert_eq!(h.manager.validating_roots()[0].sha256(), new_ca.0);
}

#[tokio::test]
async fn other_sans_kind_or_key_type_reissue_but_san_order_does_not() {
    let h = harness();
    let dns = |name: &str| San::parse(name).unwrap();
    let req = request("a.example")
        .with_san(dns("x.example"))
        .with_san(dns("y.example"));
    let first = h.manager.get(&req).await.unwrap();
    let reordered = request("a.example")
        .with_san(dns("y.example"))
        .with_san(dns("x.example"));
    assert!(Arc::ptr_eq(
        &h.manager.get(&reordered).await.unwrap(),
        &first
    ));
    assert_eq!(h.issuer.calls(), 1);

    let mut firehose = h.manager.firehose();
    let other = request("a.example").with_san(dns("z.example"));
    let second = h.manager.get(&other).await.unwrap();
    assert!(!Arc::ptr_eq(&second, &first));
    assert_eq!(
        next_firehose(&mut firehose).await.reason,
        RotationReason::RequestChanged
    );
    let mut client = other.clone();
    client.kind = CertKind::Client;
    h.manager.get(&client).await.unwrap();
    let p384 = client.clone().with_key_type(crate::request::KeyType::P384);
    h.manager.get(&p384).await.unwrap();
    assert_eq!(h.issuer.calls(), 4);
}

#[tokio::test]
async fn a_subscriber_is_woken_only_by_its_own_identity() {
    let h = harness();
    let (a, b) = (request("a.example"), request("b.example"));
    let mut sub_a = h.manager.subscribe(&a.identity);
    let mut sub_b = h.manager.subscribe(&b.identity);
    assert!(sub_a.certificate().is_none());

    let cert_a = h.manager.get(&a).await.unwrap();
    assert_eq!(next_event(&mut sub_a).await.reason, RotationReason::Issued);
    assert!(Arc::ptr_eq(&sub_a.certificate().unwrap(), &cert_a));
    assert!(!sub_b.has_changed(), "b woken by a's first issuance");

    h.manager.get(&b).await.unwrap();
    let rotated = h.manager.rotate(&b.identity).await.unwrap();
    // b's subscriber sees the newest state (watch semantics: the latest, not a queue).
    let event = next_event(&mut sub_b).await;
    assert_eq!(event.identity, b.identity);
    assert_eq!(event.reason, RotationReason::Forced);
    assert_eq!(event.new, Some(CertSummary::of(&rotated)));
    assert!(!sub_b.has_changed());

    assert!(!sub_a.has_changed(), "a woken by b's rotation");
    assert!(
        timeout(QUIET, sub_a.next()).await.is_err(),
        "a's subscription returned an event for b's rotation"
    );
    assert_eq!(sub_a.identity(), &a.identity);
}

#[tokio::test]
async fn the_firehose_sees_every_rotation_in_order() {
    let h = harness();
    let mut firehose = h.manager.firehose();
    let (a, b) = (request("a.example"), request("b.example"));
    h.manager.get(&a).await.unwrap();
    h.manager.get(&b).await.unwrap();
    h.manager.rotate(&a.identity).await.unwrap();
    h.clock.advance(41 * MINUTE);
    h.manager.get(&b).await.unwrap();
    assert!(h.manager.release(&a.identity));

    let mut seen = Vec::new();
    for _ in 0..5 {
        let event = next_firehose(&mut firehose).await;
        seen.push((event.identity.as_str().to_owned(), event.reason));
    }
    let want = [
        ("a.example", RotationReason::Issued),
        ("b.example", RotationReason::Issued),
        ("a.example", RotationReason::Forced),
        ("b.example", RotationReason::Renewed),
        ("a.example", RotationReason::Released),
    ];
    assert_eq!(seen, want.map(|(name, reason)| (name.to_owned(), reason)));
    assert!(firehose.try_recv().is_err());
}

#[tokio::test]
async fn release_drops_the_entry_and_ends_its_subscriptions() {
    let h = harness();
    let req = request("a.example");
    let mut subscription = h.manager.subscribe(&req.identity);
    let first = h.manager.get(&req).await.unwrap();
    next_event(&mut subscription).await;

    assert!(h.manager.release(&req.identity));
    let event = next_event(&mut subscription).await;
    assert_eq!(event.reason, RotationReason::Released);
    assert_eq!(event.old, Some(CertSummary::of(&first)));
    assert_eq!(event.new, None);
    assert!(
        timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .is_none(),
        "the subscription goes on after release"
    );
    assert!(subscription.certificate().is_none());
    assert!(h.manager.cached(&req.identity).is_none());
    assert!(h.manager.identities().is_empty());
    assert!(!h.manager.release(&req.identity));
    assert!(matches!(
        h.manager.rotate(&req.identity).await,
        Err(ManagerError::NotManaged { .. })
    ));

    // A later get starts afresh, announced as a first issuance to new subscribers.
    let mut again = h.manager.subscribe(&req.identity);
    let second = h.manager.get(&req).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(next_event(&mut again).await.reason, RotationReason::Issued);
    assert_eq!(h.issuer.calls(), 2);
}

#[tokio::test]
async fn a_late_subscription_starts_from_the_cached_certificate() {
    let h = harness();
    let req = request("a.example");
    let first = h.manager.get(&req).await.unwrap();
    let late = h.manager.subscribe(&req.identity);
    assert!(Arc::ptr_eq(&late.certificate().unwrap(), &first));
    assert!(
        !late.has_changed(),
        "an issuance from before the subscription was announced to it"
    );

    // With every subscriber gone, a rotation; a new subscriber then sees the newest
    // certificate, no event from before it subscribed, and the next rotation.
    drop(late);
    let second = h.manager.rotate(&req.identity).await.unwrap();
    let mut again = h.manager.subscribe(&req.identity);
    assert!(Arc::ptr_eq(&again.certificate().unwrap(), &second));
    assert!(!again.has_changed());
    let third = h.manager.rotate(&req.identity).await.unwrap();
    let event = next_event(&mut again).await;
    assert_eq!(event.reason, RotationReason::Forced);
    assert_eq!(event.old, Some(CertSummary::of(&second)));
    assert_eq!(event.new, Some(CertSummary::of(&third)));
    assert!(Arc::ptr_eq(&again.certificate().unwrap(), &third));
}

#[tokio::test]
async fn release_during_an_issuance_answers_the_caller_but_caches_nothing() {
    let h = harness();
    let req = request("a.example");
    let gate = h.issuer.close_gate();
    let get = spawn_get(&h.manager, &req);
    h.issuer.wait_for_calls(1).await;
    assert!(h.manager.release(&req.identity));
    gate.add_permits(1);
    get.await.unwrap().unwrap();
    assert!(h.manager.cached(&req.identity).is_none());
    assert!(h.manager.identities().is_empty());
}

#[tokio::test]
async fn rotate_forces_a_new_certificate_and_reports_failure() {
    let h = harness();
    let req = request("a.example");
    assert!(matches!(
        h.manager.rotate(&req.identity).await,
        Err(ManagerError::NotManaged { .. })
    ));
    let first = h.manager.get(&req).await.unwrap();
    let rotated = h.manager.rotate(&req.identity).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &rotated));
    assert!(Arc::ptr_eq(&h.manager.get(&req).await.unwrap(), &rotated));

    h.issuer.fail(true);
    assert!(matches!(
        h.manager.rotate(&req.identity).await,
        Err(ManagerError::Issue { .. })
    ));
    // The valid certificate is still served, and the forced rotation is retried after the
    // delay.
    assert!(Arc::ptr_eq(&h.manager.get(&req).await.unwrap(), &rotated));
    h.issuer.fail(false);
    h.clock.advance(Duration::from_secs(2));
    let retried = h.manager.get(&req).await.unwrap();
    assert!(!Arc::ptr_eq(&retried, &rotated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reissue_all_runs_with_bounded_parallelism() {
    let h = harness_with(ManagerConfig {
        concurrency: 4,
        ..test_config()
    });
    for i in 0..40 {
        h.manager
            .get(&request(&format!("w{i}.example")))
            .await
            .unwrap();
    }
    *h.issuer.delay.lock().unwrap() = Duration::from_millis(5);
    let mut firehose = h.manager.firehose();
    let report = h.manager.reissue_all().await;
    assert_eq!(report.reissued, 40);
    assert!(report.failed.is_empty());
    assert_eq!(h.issuer.calls(), 80);
    let most = h.issuer.max_running.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} issuances at once");
    for _ in 0..40 {
        assert_eq!(
            next_firehose(&mut firehose).await.reason,
            RotationReason::Forced
        );
    }
}

#[tokio::test]
async fn set_issuer_reissues_everything_from_the_new_issuer() {
    let h = harness();
    let mut firehose = h.manager.firehose();
    let names = ["a.example", "b.example", "c.example"];
    for name in names {
        h.manager.get(&request(name)).await.unwrap();
        next_firehose(&mut firehose).await;
    }
    let successor = TestIssuer::new(Arc::clone(&h.clock), test_ca("Test CA 2"));
    let report = h
        .manager
        .set_issuer(Arc::clone(&successor) as Arc<dyn Issuer>)
        .await;
    assert_eq!(report.reissued, 3);
    assert!(report.failed.is_empty());
    assert_eq!(h.issuer.calls(), 3, "the old issuer was asked again");
    assert_eq!(successor.calls(), 3);
    for _ in names {
        let event = next_firehose(&mut firehose).await;
        assert_eq!(event.reason, RotationReason::IssuerChanged);
        assert_eq!(event.new.unwrap().issuer, successor.ca_id());
    }
    for name in names {
        assert_eq!(
            h.manager.cached(&id(name)).unwrap().issuer,
            successor.ca_id()
        );
    }
    assert_eq!(h.manager.issuer().backend(), "test");
}

#[tokio::test]
async fn set_issuer_with_a_failing_successor_keeps_the_old_certificates() {
    let h = harness();
    let req = request("a.example");
    let old = h.manager.get(&req).await.unwrap();
    let successor = TestIssuer::new(Arc::clone(&h.clock), test_ca("Test CA 2"));
    successor.fail(true);
    let report = h
        .manager
        .set_issuer(Arc::clone(&successor) as Arc<dyn Issuer>)
        .await;
    assert_eq!(report.reissued, 0);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, req.identity);
    assert!(Arc::ptr_eq(&h.manager.get(&req).await.unwrap(), &old));
    successor.fail(false);
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.manager.get(&req).await.unwrap().issuer, successor.ca_id());
}

#[tokio::test]
async fn the_background_task_renews_when_the_clock_jumps() {
    let h = harness();
    let req = request("a.example");
    let first = h.manager.get(&req).await.unwrap();
    let mut subscription = h.manager.subscribe(&req.identity);
    let task = h.manager.spawn();
    tokio::time::sleep(QUIET).await;
    assert_eq!(h.issuer.calls(), 1, "renewed before it was due");

    // A suspended machine waking 41 minutes later: renewed within a sleep chunk.
    h.clock.advance(41 * MINUTE);
    let event = next_event(&mut subscription).await;
    assert_eq!(event.reason, RotationReason::Renewed);
    assert_eq!(event.old, Some(CertSummary::of(&first)));
    assert_eq!(h.issuer.calls(), 2);

    // Waking after the certificate expired: renewed too.
    h.clock.advance(2 * HOUR);
    assert_eq!(
        next_event(&mut subscription).await.reason,
        RotationReason::Renewed
    );
    assert_eq!(h.issuer.calls(), 3);
    task.shutdown().await;
}

#[tokio::test]
async fn the_background_task_backs_off_after_a_failure() {
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    let mut subscription = h.manager.subscribe(&req.identity);
    let task = h.manager.spawn();
    h.issuer.fail(true);
    h.clock.advance(41 * MINUTE);
    h.issuer.wait_for_calls(2).await;
    // The manual clock stands still, so the 1-second retry delay never passes.
    tokio::time::sleep(QUIET).await;
    assert_eq!(h.issuer.calls(), 2, "retried before the delay");
    assert!(!subscription.has_changed());

    h.issuer.fail(false);
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        next_event(&mut subscription).await.reason,
        RotationReason::Renewed
    );
    assert_eq!(h.issuer.calls(), 3);
    assert!(!task.is_finished());
    task.shutdown().await;
}

#[tokio::test]
async fn the_background_task_follows_a_change_of_signing_ca() {
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    let mut subscription = h.manager.subscribe(&req.identity);
    let _task = h.manager.spawn();
    let new_ca = h.issuer.switch_ca("Test CA 2");
    let event = next_event(&mut subscription).await;
    assert_eq!(event.reason, RotationReason::IssuerChanged);
    assert_eq!(event.new.unwrap().issuer, new_ca);
}

#[tokio::test]
async fn dropping_the_task_handle_stops_renewals() {
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    let task = h.manager.spawn();
    drop(task);
    h.clock.advance(41 * MINUTE);
    tokio::time::sleep(QUIET).await;
    assert_eq!(h.issuer.calls(), 1);
    // One pass by hand does the renewal.
    let report = h.manager.renew_due().await;
    assert_eq!(report.reissued, 1);
    assert_eq!(h.issuer.calls(), 2);
    assert_eq!(h.manager.renew_due().await.reissued, 0);
}

#[tokio::test]
async fn dropping_the_manager_ends_the_task() {
    let h = harness();
    let task = h.manager.spawn();
    drop(h.manager);
    timeout(PATIENCE, async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the task outlived the manager");
}

#[tokio::test]
async fn a_panicking_issuer_aborts_the_issuance_and_the_next_get_retries() {
    let h = harness();
    let req = request("a.example");
    h.issuer.panic.store(true, Ordering::SeqCst);
    assert!(matches!(
        h.manager.get(&req).await,
        Err(ManagerError::Aborted { .. })
    ));
    h.issuer.panic.store(false, Ordering::SeqCst);
    h.manager.get(&req).await.unwrap();
    assert_eq!(h.issuer.calls(), 2);
}

#[tokio::test]
async fn invalid_requests_and_settings_are_refused_before_any_issuance() {
    let h = harness();
    let short = request("a.example").with_lifetime(Duration::from_secs(5));
    assert!(matches!(
        h.manager.get(&short).await,
        Err(ManagerError::Request(RequestError::LifetimeTooShort { .. }))
    ));
    assert_eq!(h.issuer.calls(), 0);

    let bad = ManagerConfig {
        renewal: RenewalPolicy {
            fraction: 1.5,
            ..RenewalPolicy::default()
        },
        ..ManagerConfig::default()
    };
    let err = CertManager::new(
        Arc::clone(&h.issuer) as Arc<dyn Issuer>,
        Arc::new(SystemClock),
        bad,
    )
    .unwrap_err();
    assert!(err.to_string().contains("fraction"), "{err}");
}

#[test]
fn jitter_samples_lie_in_the_unit_interval_and_vary() {
    let samples: Vec<f64> = (0..1_000).map(|_| jitter_sample()).collect();
    assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
    let mean = samples.iter().sum::<f64>() / 1_000.0;
    assert!((0.4..0.6).contains(&mean), "{mean}");
}

/// Records the WARN events of the thread it is set on (tests run on a current-thread runtime,
/// so the issuance tasks log on the test's thread).
struct Warnings(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    text.push_str(&format!("{}={value:?} ", field.name()));
                },
            );
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_failed_renewal_is_logged_as_a_warning() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Warnings(Arc::clone(&warnings)));
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    assert!(warnings.lock().unwrap().is_empty());
    h.clock.advance(45 * MINUTE);
    h.issuer.fail(true);
    h.manager.get(&req).await.unwrap();
    let warnings = warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("serving the cached certificate")
            && warnings[0].contains("told to fail"),
        "{}",
        warnings[0]
    );
}

#[tokio::test]
async fn an_issuer_change_is_announced_as_such_even_during_a_forced_rotation() {
    let h = harness();
    let req = request("a.example");
    h.manager.get(&req).await.unwrap();
    h.issuer.fail(true);
    assert!(h.manager.rotate(&req.identity).await.is_err());
    let mut firehose = h.manager.firehose();
    let successor = TestIssuer::new(Arc::clone(&h.clock), test_ca("Test CA 2"));
    let report = h.manager.set_issuer(successor as Arc<dyn Issuer>).await;
    assert_eq!(report.reissued, 1);
    assert_eq!(
        next_firehose(&mut firehose).await.reason,
        RotationReason::IssuerChanged
    );
}

#[tokio::test]
async fn a_caller_giving_up_does_not_cancel_the_issuance_others_wait_for() {
    let h = harness();
    let req = request("a.example");
    let gate = h.issuer.close_gate();
    let driver = spawn_get(&h.manager, &req);
    h.issuer.wait_for_calls(1).await;
    let waiter = spawn_get(&h.manager, &req);
    tokio::time::sleep(QUIET).await;
    // The caller that started the issuance goes away (a timeout, a select!, an abort).
    driver.abort();
    assert!(driver.await.unwrap_err().is_cancelled());

    gate.add_permits(1);
    let cert = timeout(PATIENCE, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(h.issuer.calls(), 1, "the issuance was restarted");
    assert!(Arc::ptr_eq(
        &h.manager.cached(&req.identity).unwrap(),
        &cert
    ));
}

#[tokio::test]
async fn an_issuance_nobody_waits_for_any_more_still_completes_and_is_cached() {
    let h = harness();
    let req = request("a.example");
    let gate = h.issuer.close_gate();
    assert!(
        timeout(QUIET, h.manager.get(&req)).await.is_err(),
        "answered through a closed gate"
    );
    let mut subscription = h.manager.subscribe(&req.identity);
    gate.add_permits(1);
    assert_eq!(
        next_event(&mut subscription).await.reason,
        RotationReason::Issued
    );
    assert!(h.manager.cached(&req.identity).is_some());
    h.manager.get(&req).await.unwrap();
    assert_eq!(h.issuer.calls(), 1);
}

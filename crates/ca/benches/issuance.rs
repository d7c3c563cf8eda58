//! Issuance benchmark (issue 5). One run prints:
//!
//! 1. raw P-256 key generation + signing per second with rcgen directly, on one core and on
//!    all cores;
//! 2. the certificate manager's issuance rate through the built-in CA (server-side keys), one
//!    get at a time and with concurrent gets, and its ratio to the raw figure (target ≥ 80 %);
//! 3. the time to reissue 10,000 cached identities after the issuing CA changes
//!    (`CertManager::set_issuer`; target under 2 s on 2 cores);
//!
//! and, to tell where a gap comes from, the built-in CA's `issue_at` called directly, and the
//! manager's own work per issuance over an issuer that only clones a certificate.
//!
//! ```sh
//! cargo bench -p anchorage-ca --bench issuance
//! BENCH_ROUNDS=5 BENCH_SECONDS=1 BENCH_IDENTITIES=10000 BENCH_STRICT=1 cargo bench -p anchorage-ca --bench issuance
//! ```
//!
//! Each round measures every figure once; each manager rate is taken between two raw
//! measurements of the same parallelism and compared with their mean, and the ratios printed
//! are medians over the rounds (a shared 2-core machine lends the second core only part of the
//! time: compare the 1-core and 2-core raw figures to see whether a round had it). Gets are of new identities, so the cache
//! grows by thousands of certificates a second, as while a mesh starts; `BENCH_RELEASE=1`
//! releases each identity after its get instead (steady state, no growth).
//! `BENCH_STRICT=1` exits 1 when a target is missed. A plain program (`harness = false`)
//! rather than criterion: the point is three figures and two ratios from one run, each
//! measured over seconds of steady work, not a distribution of micro-timings.

#![allow(clippy::print_stdout)] // A benchmark's output is its figures.

use std::hint::black_box;
use std::num::NonZero;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anchorage_ca::builtin::{BuiltinCa, InitOptions};
use anchorage_ca::{
    CertKind, CertManager, CertificateRequest, Identity, Issuer, ManagerConfig, SystemClock,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One round's figures. Each manager rate is taken between two raw measurements of the same
/// parallelism, and compared with their mean, so load drifting in or out during the round
/// hits both sides of the ratio alike.
struct Round {
    raw_one: f64,
    raw_all: f64,
    direct: f64,
    seq: f64,
    par: f64,
    overhead: Duration,
    reissue: Duration,
}

impl Round {
    fn direct_ratio(&self) -> f64 {
        self.direct / self.raw_one
    }
    fn seq_ratio(&self) -> f64 {
        self.seq / self.raw_one
    }
    fn par_ratio(&self) -> f64 {
        self.par / self.raw_all
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let cores = std::thread::available_parallelism().map_or(1, NonZero::get);
    let window = Duration::from_secs_f64(env_number("BENCH_SECONDS", 1.0));
    let rounds = env_number("BENCH_ROUNDS", 3.0).max(1.0) as usize;
    let identities = env_number("BENCH_IDENTITIES", 10_000.0) as usize;
    let strict = std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    println!(
        "anchorage-ca issuance benchmark: {cores} cores, {rounds} rounds of {window:?} per rate; ratios are medians over rounds"
    );
    let mut all = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let before = raw_rate(1, window);
        let direct = builtin_rate(window);
        let seq = runtime.block_on(in_task(manager_rate(1, window)));
        let raw_one = (before + raw_rate(1, window)) / 2.0;
        let before = raw_rate(cores, window);
        let par = runtime.block_on(in_task(manager_rate(2 * cores, window)));
        let raw_all = (before + raw_rate(cores, window)) / 2.0;
        let overhead = runtime.block_on(in_task(manager_overhead(window)));
        let (populate, reissue, reissued) =
            runtime.block_on(in_task(reissue_after_ca_change(identities)));
        assert_eq!(reissued, identities, "not every identity was reissued");
        let r = Round {
            raw_one,
            raw_all,
            direct,
            seq,
            par,
            overhead,
            reissue,
        };
        println!(
            "round {round}: raw {raw_one:.0}/s (1 core) {raw_all:.0}/s ({cores} cores); \
             builtin {direct:.0}/s ({:.0} %); manager {seq:.0}/s one at a time ({:.0} %), \
             {par:.0}/s concurrent ({:.0} %); own work {:.1} us; fill {} ms, reissue {} ms",
            r.direct_ratio() * 100.0,
            r.seq_ratio() * 100.0,
            r.par_ratio() * 100.0,
            overhead.as_secs_f64() * 1e6,
            populate.as_millis(),
            reissue.as_millis(),
        );
        all.push(r);
    }

    let best = |f: fn(&Round) -> f64| all.iter().map(f).fold(0.0, f64::max);
    let ratio = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
    let par_ratio = ratio(Round::par_ratio);
    let overhead = all.iter().map(|r| r.overhead).min().unwrap_or_default();
    let reissue = all.iter().map(|r| r.reissue).max().unwrap_or_default();
    println!();
    println!("best of the rounds:");
    println!(
        "raw rcgen P-256 keygen+sign, 1 core          {:>9.0} /s",
        best(|r| r.raw_one)
    );
    println!(
        "raw rcgen P-256 keygen+sign, {cores} cores         {:>9.0} /s",
        best(|r| r.raw_all)
    );
    println!(
        "built-in CA issue_at, 1 core                 {:>9.0} /s   {:>4.0} % of raw 1 core",
        best(|r| r.direct),
        ratio(Round::direct_ratio) * 100.0
    );
    println!(
        "manager + built-in CA, one get at a time     {:>9.0} /s   {:>4.0} % of raw 1 core",
        best(|r| r.seq),
        ratio(Round::seq_ratio) * 100.0
    );
    println!(
        "manager + built-in CA, concurrent gets       {:>9.0} /s   {:>4.0} % of raw {cores} cores (target >= 80 %)",
        best(|r| r.par),
        par_ratio * 100.0
    );
    println!(
        "manager's own work per issuance              {:>9.1} us  (an issuer that only clones)",
        overhead.as_secs_f64() * 1e6
    );
    println!(
        "reissue {identities} identities after a CA change {:>6} ms   (slowest round; target < 2000 ms)",
        reissue.as_millis()
    );

    let missed: Vec<&str> = [
        (par_ratio < 0.8, "issuance rate under 80 % of raw"),
        (
            reissue >= Duration::from_secs(2),
            "reissue took 2 s or more",
        ),
    ]
    .into_iter()
    .filter_map(|(missed, what)| missed.then_some(what))
    .collect();
    if missed.is_empty() {
        println!("every target met");
    } else {
        println!("missed: {}", missed.join("; "));
        if strict {
            std::process::exit(1);
        }
    }
}

/// Runs `work` as a task on a worker thread, as a server's request handler would, rather
/// than on the thread blocked in `block_on`.
async fn in_task<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(work).await.expect("a bench task")
}

/// P-256 keygen + a service-like leaf signed by a P-256 CA, with rcgen only, on `threads`
/// threads for `window`: certificates per second.
fn raw_rate(threads: usize, window: Duration) -> f64 {
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Raw Bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("a P-256 key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA");
    let count = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (ca, count) = (&ca, &count);
            scope.spawn(move || {
                let mut i = 0u64;
                while start.elapsed() < window {
                    let name = format!("raw-{thread}-{i}.bench.svc");
                    let key = KeyPair::generate().expect("a P-256 key");
                    let mut params = CertificateParams::default();
                    let mut dn = DistinguishedName::new();
                    dn.push(DnType::CommonName, name.as_str());
                    params.distinguished_name = dn;
                    params.subject_alt_names =
                        vec![SanType::DnsName(name.try_into().expect("a DNS name"))];
                    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                    params.extended_key_usages = vec![
                        ExtendedKeyUsagePurpose::ServerAuth,
                        ExtendedKeyUsagePurpose::ClientAuth,
                    ];
                    let cert = params.signed_by(&key, ca).expect("a signature");
                    black_box((cert.der().len(), key.serialize_der()));
                    i += 1;
                }
                count.fetch_add(i, Ordering::Relaxed);
            });
        }
    });
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The built-in CA's own work without the manager: `issue_at` in a loop on one thread.
fn builtin_rate(window: Duration) -> f64 {
    let ca = BuiltinCa::init(&InitOptions::default()).expect("a built-in CA");
    let now = anchorage_ca::Clock::timestamp(&SystemClock);
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < window {
        black_box(
            ca.issue_at(&request("direct", done), now)
                .expect("an issuance"),
        );
        done += 1;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn manager() -> CertManager {
    let ca = BuiltinCa::init(&InitOptions::default()).expect("a built-in CA");
    CertManager::new(
        Arc::new(ca) as Arc<dyn Issuer>,
        Arc::new(SystemClock),
        ManagerConfig::default(),
    )
    .expect("default settings")
}

fn request(prefix: &str, i: u64) -> CertificateRequest {
    let identity = Identity::new(format!("{prefix}-{i}.bench.svc")).expect("an identity");
    CertificateRequest::new(identity, CertKind::Service)
}

/// Gets of new identities (each one an issuance) through one manager from `tasks` tasks at
/// once for `window`: certificates per second.
async fn manager_rate(tasks: usize, window: Duration) -> f64 {
    let release = std::env::var_os("BENCH_RELEASE").is_some();
    let manager = manager();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let manager = manager.clone();
        set.spawn(async move {
            let prefix = format!("t{task}");
            let mut done = 0u64;
            while start.elapsed() < window {
                let request = request(&prefix, done);
                manager.get(&request).await.expect("an issuance");
                if release {
                    manager.release(&request.identity);
                }
                done += 1;
            }
            done
        });
    }
    let mut total = 0u64;
    while let Some(done) = set.join_next().await {
        total += done.expect("a bench task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// An issuer whose issuance costs nothing: a clone of one certificate. Measures the
/// manager's own work per issuance.
struct FreeIssuer(anchorage_ca::IssuedCertificate);

#[async_trait::async_trait]
impl Issuer for FreeIssuer {
    fn backend(&self) -> &'static str {
        "free"
    }

    async fn issue(
        &self,
        _request: &CertificateRequest,
    ) -> Result<anchorage_ca::IssuedCertificate, anchorage_ca::IssueError> {
        Ok(self.0.clone())
    }

    fn signing_ca(&self) -> Option<anchorage_ca::IssuerId> {
        Some(self.0.issuer)
    }

    fn validating_roots(&self) -> Vec<anchorage_x509::Certificate> {
        self.0.validating_roots.clone()
    }
}

/// Time per get of a new identity through the manager over [`FreeIssuer`].
async fn manager_overhead(window: Duration) -> Duration {
    let ca = BuiltinCa::init(&InitOptions::default()).expect("a built-in CA");
    let template = ca
        .issue(&request("template", 0))
        .await
        .expect("an issuance");
    let manager = CertManager::new(
        Arc::new(FreeIssuer(template)) as Arc<dyn Issuer>,
        Arc::new(SystemClock),
        ManagerConfig::default(),
    )
    .expect("default settings");
    let start = Instant::now();
    let mut done = 0u32;
    while start.elapsed() < window {
        manager
            .get(&request("free", u64::from(done)))
            .await
            .expect("an issuance");
        done += 1;
    }
    start.elapsed() / done.max(1)
}

/// Fills a manager with `n` identities, then swaps in a new built-in CA and times the
/// reissue of all of them. Returns (fill time, reissue time, how many were reissued).
async fn reissue_after_ca_change(n: usize) -> (Duration, Duration, usize) {
    let manager = manager();
    let start = Instant::now();
    let requests: Vec<CertificateRequest> = (0..n as u64).map(|i| request("id", i)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in requests.chunks(n.div_ceil(8).max(1)) {
        let (manager, chunk) = (manager.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for request in &chunk {
                manager.get(request).await.expect("an issuance");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a fill task");
    }
    let populate = start.elapsed();

    let successor = BuiltinCa::init(&InitOptions {
        common_name: "Anchorage Root CA 2".to_owned(),
        ..InitOptions::default()
    })
    .expect("a second built-in CA");
    let start = Instant::now();
    let report = manager
        .set_issuer(Arc::new(successor) as Arc<dyn Issuer>)
        .await;
    let reissue = start.elapsed();
    assert!(report.failed.is_empty(), "{:?}", report.failed.first());
    (populate, reissue, report.reissued)
}

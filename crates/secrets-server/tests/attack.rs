//! Issue 18: requests with bad signatures against the secrets server, while a host's good gets
//! (the real `wasmcloud-secrets-client`) keep being answered.
//!
//! The attacker publishes, on its own connection, sealed get requests whose host JWT's
//! signature is broken (a forged token: the JWT checks run after the envelope is opened) and
//! requests with a bad xkey envelope (a tampered ciphertext), half each, at
//! `ANCHORAGE_ATTACK_BAD_RATE` a second (50 in CI) for `ANCHORAGE_ATTACK_SECONDS` (3), from
//! its own thread and connection; their replies go to an inbox it drains. Meanwhile good gets,
//! one after another, must each be answered with the value within `GOOD_BOUND`; their
//! latencies (p50, p99, max) are printed with the bad requests sent and answered, and
//! `scripts/bench-attack.sh` runs it at 10,000 a second.
//!
//! Found: the server answers requests in arrival order, and a debug build here opens and
//! refuses only about 100 bad requests a second; beyond that the backlog grows and good gets
//! wait behind it (500/s: 5.5 s; 1,000/s and more: past the client's timeout). Issue 18's
//! 10,000 a second needs shedding (see docs/faults.md, still open).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // the measured figures, for docs/faults.md

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anchorage_secrets::{SecretValue, XKey};
use anchorage_secrets_server::{EmbeddedSecrets, Keyring, MappingStore as _, SecretStore as _};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve};
use futures::StreamExt as _;
use secrecy::SecretString;

const GOOD_BOUND: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
    (at(0.5), at(0.99), ms(*samples.last().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_do_not_stop_good_gets() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    // CI: a rate a debug build on a shared machine keeps up with; 10,000 by hand (see the
    // module docs: a debug build does not sustain it).
    let rate = env_usize("ANCHORAGE_ATTACK_BAD_RATE", 50);
    let seconds = env_usize("ANCHORAGE_ATTACK_SECONDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let raw = EmbeddedStore::open(dir.path().join("secrets.redb")).unwrap();
    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(raw),
        Arc::new(Keyring::new(XKey::generate())),
    ));
    let ids = Identities::new();
    store
        .put("db", SecretValue::String(SecretString::from("hunter2")))
        .await
        .unwrap();
    store
        .add_mapping(&ids.entity(), &["db".to_owned()])
        .await
        .unwrap();
    let seed = XKey::generate().seed();
    let url = nats.url();
    let running = serve(
        &url,
        &seed,
        store.clone(),
        store.clone(),
        anchorage_secrets_server::ServerConfig::new(PREFIX, BACKEND),
    )
    .await;

    // The bad requests, sealed once: a host JWT whose signature is broken, and a tampered
    // envelope.
    let nc = async_nats::connect(url.as_str()).await.unwrap();
    let server_key = nkeys::XKey::from_public_key(
        std::str::from_utf8(
            &nc.request(
                format!("{PREFIX}.v1alpha1.{BACKEND}.server_xkey"),
                "".into(),
            )
            .await
            .unwrap()
            .payload,
        )
        .unwrap(),
    )
    .unwrap();
    let requester = nkeys::XKey::new();
    // A character in the signature changed (the fifth from the end: all six of its bits are
    // used, so the token still decodes and only the signature is wrong).
    let mut host_jwt: Vec<u8> = ids.host_jwt().into_bytes();
    let at = host_jwt.len() - 5;
    host_jwt[at] = if host_jwt[at] == b'A' { b'B' } else { b'A' };
    let host_jwt = String::from_utf8(host_jwt).unwrap();
    let forged = ids.request_with("db", None, ids.component_jwt(), host_jwt);
    let forged = requester
        .seal(&serde_json::to_vec(&forged).unwrap(), &server_key)
        .unwrap();
    let mut tampered = requester
        .seal(
            &serde_json::to_vec(&ids.request("db", None)).unwrap(),
            &server_key,
        )
        .unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;

    // Control: each bad request is refused (and the forged one for its signature).
    let ask = |body: Vec<u8>| {
        let nc = nc.clone();
        let header = requester.public_key();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                wasmcloud_secrets_types::WASMCLOUD_HOST_XKEY,
                header.as_str(),
            );
            let reply = nc
                .request_with_headers(
                    format!("{PREFIX}.v1alpha1.{BACKEND}.get"),
                    headers,
                    body.into(),
                )
                .await
                .unwrap();
            String::from_utf8_lossy(&reply.payload).into_owned()
        }
    };
    let refused = ask(forged.clone()).await;
    assert!(
        refused.contains("InvalidHostJWT") && refused.contains("signature"),
        "{refused}"
    );
    let refused = ask(tampered.clone()).await;
    assert!(refused.contains("DecryptionError"), "{refused}");

    // The attacker: its own thread, runtime and connection (it does not compete with the
    // server for the test's worker threads); replies go to an inbox it drains.
    let answered = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (sent, answered) = (Arc::clone(&sent), Arc::clone(&answered));
        let header = requester.public_key();
        let subject = format!("{PREFIX}.v1alpha1.{BACKEND}.get");
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let attacker = async_nats::connect(url.as_str()).await.unwrap();
                let inbox = attacker.new_inbox();
                let mut replies = attacker.subscribe(inbox.clone()).await.unwrap();
                let drain = tokio::spawn(async move {
                    while replies.next().await.is_some() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                });
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    wasmcloud_secrets_types::WASMCLOUD_HOST_XKEY,
                    header.as_str(),
                );
                let bodies = [bytes::Bytes::from(forged), bytes::Bytes::from(tampered)];
                // 100 ticks a second, or one request a tick below 100 a second.
                let per_tick = (rate / 100).max(1);
                let tick = Duration::from_secs(1) / (rate / per_tick).max(1) as u32;
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(seconds as u64) {
                    interval.tick().await;
                    for i in 0..per_tick {
                        attacker
                            .publish_with_reply_and_headers(
                                subject.clone(),
                                inbox.clone(),
                                headers.clone(),
                                bodies[i % 2].clone(),
                            )
                            .await
                            .unwrap();
                    }
                    sent.fetch_add(per_tick, Ordering::Relaxed);
                }
                attacker.flush().await.unwrap();
                let took = start.elapsed();
                // The last replies.
                tokio::time::sleep(Duration::from_secs(1)).await;
                drain.abort();
                took
            })
        })
    };

    // Good gets, one after another, while the flood lasts.
    let good = client(&url).await;
    let mut latencies = Vec::new();
    let attack_start = Instant::now();
    while !flood.is_finished() {
        let t = Instant::now();
        let got = tokio::time::timeout(GOOD_BOUND, get(&good, ids.request("db", None)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "good get {} not answered within {GOOD_BOUND:?}",
                    latencies.len()
                )
            });
        let (value, _, _) = got.unwrap_or_else(|e| panic!("good get {}: {e}", latencies.len()));
        assert_eq!(value.as_deref(), Some("hunter2"));
        latencies.push(t.elapsed());
    }
    let took = flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let (p50, p99, max) = percentiles(&mut latencies);
    println!(
        "bad signatures: {sent} bad requests in {:.1?} ({:.0}/s), {} answered; {} good gets during the attack: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        took,
        sent as f64 / took.as_secs_f64(),
        answered.load(Ordering::Relaxed),
        latencies.len(),
    );
    assert!(
        !latencies.is_empty(),
        "no good get during {:?}",
        attack_start.elapsed()
    );
    // After the attack: still answering.
    let (value, _, _) = get(&good, ids.request("db", None)).await.unwrap();
    assert_eq!(value.as_deref(), Some("hunter2"));
    running.stop().await;
}

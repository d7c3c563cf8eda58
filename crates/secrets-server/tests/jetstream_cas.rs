//! The JetStream store's compare-and-swap made to fail, on a real `nats-server -js` with two
//! store instances (two connections) on the same buckets: more writers on one key than the
//! retry limit end in [`StoreFailure::Contended`] without losing a write; concurrent deletes
//! report the secret existed exactly once; delete/put and re-encrypt/put races end in either
//! order, never with a lost or corrupted version.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anchorage_secrets::{SecretLookup, SecretValue};
use anchorage_secrets_server::{
    JetStreamConfig, JetStreamSecrets, Keyring, MappingStore, SecretStore, StoreFailure, XKey,
};
use anchorage_test_support::nats::NatsServer;
use secrecy::{ExposeSecret as _, SecretString};

/// The store's retry limit (`CAS_ATTEMPTS`, crate-private): pinned here, so a change shows.
const CAS_ATTEMPTS: u32 = 32;

async fn open(url: &str, ring: Keyring) -> Arc<JetStreamSecrets> {
    Arc::new(
        JetStreamSecrets::open(
            async_nats::connect(url).await.unwrap(),
            &JetStreamConfig::new("nats-kv"),
            Arc::new(ring),
        )
        .await
        .unwrap(),
    )
}

/// Two instances sharing one encryption key, as two servers do.
async fn two(url: &str) -> [Arc<JetStreamSecrets>; 2] {
    let seed = XKey::generate().seed();
    let ring = || Keyring::new(XKey::from_seed(&seed, "test").unwrap());
    [open(url, ring()).await, open(url, ring()).await]
}

fn text(s: &str) -> SecretValue {
    SecretValue::String(SecretString::from(s.to_owned()))
}

async fn value_at(store: &JetStreamSecrets, key: &str, version: Option<&str>) -> Option<String> {
    let found = store
        .get(SecretLookup {
            key,
            field: None,
            version,
            policy: "",
        })
        .await
        .unwrap()?;
    match found.value {
        SecretValue::String(s) => Some(s.expose_secret().to_owned()),
        SecretValue::Binary(_) => panic!("{key} {version:?} came back binary"),
    }
}

/// `writers` concurrent `add_mapping`s on one entity, alternating between the instances, each
/// adding its own name; returns the names whose write succeeded, and how many were Contended.
/// Panics on any other outcome, or when the final mapping is not exactly the successful names.
async fn mapping_race(stores: &[Arc<JetStreamSecrets>; 2], writers: usize) -> (usize, usize) {
    let entity = nkeys::KeyPair::new_module().public_key();
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (store, entity) = (stores[i % 2].clone(), entity.clone());
            tokio::spawn(async move {
                let name = format!("s{i}");
                (name.clone(), store.add_mapping(&entity, &[name]).await)
            })
        })
        .collect();
    let mut written = BTreeSet::new();
    let mut contended = 0;
    for t in tasks {
        match t.await.unwrap() {
            (name, Ok(set)) => {
                assert!(set.contains(&name), "{name} missing from its own answer");
                written.insert(name);
            }
            (_, Err(StoreFailure::Contended { key, attempts })) => {
                assert_eq!((key.as_str(), attempts), (entity.as_str(), CAS_ATTEMPTS));
                contended += 1;
            }
            (name, Err(e)) => panic!("{name}: unexpected {e:?}"),
        }
    }
    // No lost update, and nothing from a writer that was told it failed.
    for store in stores {
        assert_eq!(store.secrets_of(&entity).await.unwrap(), written);
    }
    (written.len(), contended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_writers_than_the_retry_limit_end_in_contended_and_lose_nothing() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let stores = two(&nats.url()).await;
    let writers = 4 * CAS_ATTEMPTS as usize;
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let (written, contended) = mapping_race(&stores, writers).await;
        assert_eq!(written + contended, writers);
        rounds.push((written, contended));
        if contended > 0 {
            break;
        }
    }
    assert!(
        rounds.iter().any(|&(_, c)| c > 0),
        "{writers} writers never made one give up: {rounds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_as_many_writers_as_the_retry_limit_all_succeed() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let stores = two(&nats.url()).await;
    // A writer loses an attempt only to another writer's success; with CAS_ATTEMPTS writers
    // each can lose at most CAS_ATTEMPTS - 1 times, so none may give up.
    for _ in 0..3 {
        let writers = CAS_ATTEMPTS as usize;
        assert_eq!(mapping_race(&stores, writers).await, (writers, 0));
    }
}

/// Deletes `key` the way the store did before it compared and swapped: read, then purge
/// whatever is there.
async fn unconditional_delete(kv: &async_nats::jetstream::kv::Store, key: &str) -> bool {
    let existed = kv
        .entry(key)
        .await
        .unwrap()
        .is_some_and(|e| e.operation == async_nats::jetstream::kv::Operation::Put);
    if existed {
        kv.purge(key).await.unwrap();
    }
    existed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_report_the_secret_existed_exactly_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let stores = two(&nats.url()).await;
    for round in 0..5 {
        stores[0]
            .put("k", text(&format!("v{round}")))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move { store.delete("k").await.unwrap() })
            })
            .collect();
        let mut existed = 0;
        for t in tasks {
            existed += usize::from(t.await.unwrap());
        }
        assert_eq!(existed, 1, "round {round}");
        assert_eq!(value_at(&stores[1], "k", None).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_an_unconditional_delete_reports_existed_more_than_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let _stores = two(&url).await; // creates the bucket
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let kv = js.get_key_value("WASMCLOUD_SECRETS").await.unwrap();
    let mut counts = Vec::new();
    for round in 0..10 {
        kv.put("k", format!("v{round}").into()).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let kv = kv.clone();
                tokio::spawn(async move { unconditional_delete(&kv, "k").await })
            })
            .collect();
        let mut existed = 0;
        for t in tasks {
            existed += usize::from(t.await.unwrap());
        }
        counts.push(existed);
        if existed > 1 {
            return; // the check above would have caught it
        }
    }
    panic!("the read-then-purge race never showed: {counts:?}");
}

/// Every revision of `key` from 1 to the latest, as the store serves it (`None`: not a version
/// of the key, or purged).
async fn versions(store: &JetStreamSecrets, key: &str) -> BTreeMap<u64, Option<String>> {
    let mut out = BTreeMap::new();
    let latest: u64 = store
        .get(SecretLookup {
            key,
            field: None,
            version: None,
            policy: "",
        })
        .await
        .unwrap()
        .map_or(0, |s| s.version.parse().unwrap());
    for rev in 1..=latest {
        out.insert(rev, value_at(store, key, Some(&rev.to_string())).await);
    }
    out
}

/// Checks the history after puts (`written`: version → value, from the puts' answers) raced a
/// delete (`deleted`) and re-encryptions: every version is either a put's, with that put's
/// value, or a re-sealed copy holding the value of the version right before it; the puts that
/// vanished are exactly those before the delete. Returns what is wrong.
fn check_history(
    history: &BTreeMap<u64, Option<String>>,
    written: &BTreeMap<u64, String>,
    deleted: bool,
) -> Result<(), String> {
    let mut previous: Option<&String> = None;
    let mut gone_after_kept = None;
    for (rev, value) in history {
        match (value, written.get(rev)) {
            (Some(v), Some(w)) if v == w => previous = Some(v),
            (Some(v), Some(w)) => return Err(format!("version {rev} holds {v:?}, not {w:?}")),
            (None, Some(_)) if !deleted => return Err(format!("version {rev} was lost")),
            (None, Some(_)) => {
                if let Some(kept) = gone_after_kept {
                    return Err(format!("version {rev} purged after {kept} was kept"));
                }
            }
            (Some(v), None) if Some(v) == previous => {} // a re-sealed copy
            (Some(v), None) => {
                return Err(format!(
                    "version {rev} holds {v:?}, written by no put after {previous:?}"
                ));
            }
            (None, None) => {}
        }
        if value.is_some() && written.contains_key(rev) {
            gone_after_kept.get_or_insert(*rev);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_put_races_end_in_either_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let stores = two(&nats.url()).await;
    let mut written = BTreeMap::new();
    let v0: u64 = stores[0]
        .put("k", text("v0"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    written.insert(v0, "v0".to_owned());
    let puts: Vec<_> = (1..=16)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let value = format!("p{i}");
                let version = store.put("k", text(&value)).await.unwrap();
                (version.parse::<u64>().unwrap(), value)
            })
        })
        .collect();
    let deleter = {
        let store = stores[1].clone();
        tokio::spawn(async move { store.delete("k").await.unwrap() })
    };
    for p in puts {
        let (v, value) = p.await.unwrap();
        written.insert(v, value);
    }
    assert!(deleter.await.unwrap(), "v0 existed before any put");
    let history = versions(&stores[0], "k").await;
    check_history(&history, &written, true).unwrap();
    // The latest version, if any, is the last put's.
    if let Some(latest) = value_at(&stores[0], "k", None).await {
        assert_eq!(Some(&latest), written.values().last());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_and_put_races_lose_no_version() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let old = XKey::generate();
    let before = open(
        &url,
        Keyring::new(XKey::from_seed(&old.seed(), "old").unwrap()),
    )
    .await;
    // A rotated instance re-seals while the old one keeps writing.
    let rotated = open(
        &url,
        Keyring::new(XKey::generate()).with_previous(XKey::from_seed(&old.seed(), "old").unwrap()),
    )
    .await;
    let mut written = BTreeMap::new();
    for round in 0..4 {
        let v: u64 = before
            .put("k", text(&format!("old{round}")))
            .await
            .unwrap()
            .parse()
            .unwrap();
        written.insert(v, format!("old{round}"));
        let puts: Vec<_> = (0..8)
            .map(|i| {
                let store = before.clone();
                tokio::spawn(async move {
                    let value = format!("r{round}p{i}");
                    let version = store.put("k", text(&value)).await.unwrap();
                    (version.parse::<u64>().unwrap(), value)
                })
            })
            .collect();
        let report = rotated.reencrypt().await.unwrap();
        assert_eq!(report.secrets, 1);
        for p in puts {
            let (v, value) = p.await.unwrap();
            written.insert(v, value);
        }
        // Read through an instance holding both keys.
        check_history(&versions(&rotated, "k").await, &written, false).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_an_unconditional_reseal_is_caught_as_a_lost_version() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let [store, _] = two(&nats.url()).await;
    let mut written = BTreeMap::new();
    // What a re-encryption without compare-and-swap does: read the latest ("old"), meanwhile
    // a put lands ("new"), then write the re-sealed "old" on top.
    let v1: u64 = store.put("k", text("old")).await.unwrap().parse().unwrap();
    written.insert(v1, "old".to_owned());
    let v2: u64 = store.put("k", text("new")).await.unwrap().parse().unwrap();
    written.insert(v2, "new".to_owned());
    store.put("k", text("old")).await.unwrap(); // the blind re-seal, not a put of ours
    let history = versions(&store, "k").await;
    assert_eq!(
        check_history(&history, &written, false).unwrap_err(),
        format!(
            "version {} holds \"old\", written by no put after Some(\"new\")",
            v2 + 1
        )
    );
    // And a version that vanished without a delete is caught too.
    let mut missing = written.clone();
    missing.insert(v2 + 5, "never stored".to_owned());
    let mut history: BTreeMap<u64, Option<String>> =
        history.into_iter().filter(|(rev, _)| *rev <= v2).collect();
    history.insert(v2 + 5, None);
    assert_eq!(
        check_history(&history, &missing, false).unwrap_err(),
        format!("version {} was lost", v2 + 5)
    );
}

/// Lists while 8 tasks put to `k` (and `other`); returns every listing.
async fn listings_during_puts<F, Fut>(url: &str, times: usize, list: F) -> Vec<Vec<String>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let [writer, _] = two(url).await;
    writer.put("k", text("0")).await.unwrap();
    writer.put("other", text("0")).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (writer, stop) = (writer.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let key = if i % 2 == 0 { "k" } else { "other" };
                    writer.put(key, text("x")).await.unwrap();
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for _ in 0..times {
        out.push(list().await);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_while_puts_land_names_each_secret_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let [reader, _] = two(&url).await;
    let listings = listings_during_puts(&url, 30, || async { reader.keys().await.unwrap() }).await;
    for listing in listings {
        assert_eq!(listing, ["k", "other"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_the_bare_kv_listing_repeats_names_while_puts_land() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let url = nats.url();
    let _ = two(&url).await; // creates the bucket
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let kv = js.get_key_value("WASMCLOUD_SECRETS").await.unwrap();
    let listings = listings_during_puts(&url, 30, || async {
        use futures::TryStreamExt as _;
        let mut names: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
        names.sort();
        names
    })
    .await;
    assert!(
        listings.iter().any(|l| l.len() > 2),
        "the listing never repeated a name: {:?}",
        listings.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

//! The behavioural tests every [`Store`] implementation runs, so they agree on semantics
//! (`conformance` feature; this crate's own tests run them on [`crate::MemoryStore`] and
//! [`crate::EmbeddedStore`], `anchorage-store-nats` on JetStream).
//!
//! Each function panics on the first broken rule, naming it:
//! - [`exercise`]: the whole contract on an empty store;
//! - [`wait_for_change`]: [`Store::wait_for_change`], with writes made through another handle.
//!
//! ```toml
//! [dev-dependencies]
//! anchorage-store = { workspace = true, features = ["conformance"] }
//! ```

// A test suite: a failed expectation is a panic that names it.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::{Store, StoreError};

/// Exercises the whole contract on an empty store.
pub async fn exercise(store: &dyn Store) {
    // Absent keys.
    assert_eq!(store.get("a.b").await.unwrap(), None);
    assert!(store.keys("").await.unwrap().is_empty());

    // create twice: the second one conflicts and reports the current revision.
    let r1 = store.create("a.b", b"one".to_vec()).await.unwrap();
    assert!(r1 > 0);
    match store.create("a.b", b"two".to_vec()).await {
        Err(StoreError::Conflict {
            key,
            expected: None,
            current: Some(current),
        }) => assert_eq!((key.as_str(), current), ("a.b", r1)),
        other => panic!("create over an existing key: {other:?}"),
    }
    let entry = store.get("a.b").await.unwrap().unwrap();
    assert_eq!(
        (entry.key.as_str(), entry.value.as_slice(), entry.revision),
        ("a.b", &b"one"[..], r1)
    );

    // update with the right revision, then with the stale one.
    let r2 = store.update("a.b", b"two".to_vec(), r1).await.unwrap();
    assert!(r2 > r1);
    let err = store
        .update("a.b", b"three".to_vec(), r1)
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    match &err {
        StoreError::Conflict {
            expected, current, ..
        } => assert_eq!((*expected, *current), (Some(r1), Some(r2))),
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains("a.b") && shown.contains(&r2.to_string()) && !shown.contains("three"),
        "{shown}"
    );
    // update of an absent key conflicts with no current revision.
    match store.update("nope", b"x".to_vec(), 1).await {
        Err(StoreError::Conflict { current: None, .. }) => {}
        other => panic!("update of an absent key: {other:?}"),
    }
    // No key has revision 0 (JetStream reads an expected 0 as "absent": not a create here).
    match store.update("nope", b"x".to_vec(), 0).await {
        Err(StoreError::Conflict {
            expected: Some(0),
            current: None,
            ..
        }) => {}
        other => panic!("update expecting revision 0: {other:?}"),
    }
    assert_eq!(store.get("nope").await.unwrap(), None, "update(0) created");
    match store.update("a.b", b"x".to_vec(), 0).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, Some(r2)),
        other => panic!("update expecting revision 0: {other:?}"),
    }
    assert!(
        store
            .delete("nope", Some(0))
            .await
            .unwrap_err()
            .is_conflict()
    );

    // put is unconditional and advances the revision.
    let r3 = store.put("a.b", b"four".to_vec()).await.unwrap();
    assert!(r3 > r2);
    let r4 = store.put("fresh", b"v".to_vec()).await.unwrap();
    assert!(r4 > r3, "revisions increase across keys");

    // delete with CAS: stale fails, current succeeds, then the key is absent.
    assert!(
        store
            .delete("a.b", Some(r2))
            .await
            .unwrap_err()
            .is_conflict()
    );
    store.delete("a.b", Some(r3)).await.unwrap();
    assert_eq!(store.get("a.b").await.unwrap(), None);
    assert!(
        store
            .delete("a.b", Some(r3))
            .await
            .unwrap_err()
            .is_conflict()
    );
    store.delete("a.b", None).await.unwrap(); // absent, unconditional: fine
    store.delete("fresh", None).await.unwrap();
    // A re-created key gets a revision never seen before.
    let r5 = store.create("a.b", b"again".to_vec()).await.unwrap();
    assert!(r5 > r4);

    // keys by prefix, sorted, and only those with the prefix.
    for key in [
        "ca.root.key",
        "ca.root.cert",
        "ca.int.cert",
        "cab",
        "secrets.x",
        "c",
    ] {
        store.put(key, b"v".to_vec()).await.unwrap();
    }
    assert_eq!(
        store.keys("ca.").await.unwrap(),
        ["ca.int.cert", "ca.root.cert", "ca.root.key"]
    );
    assert_eq!(
        store.keys("ca").await.unwrap(),
        ["ca.int.cert", "ca.root.cert", "ca.root.key", "cab"]
    );
    assert_eq!(
        store.keys("").await.unwrap(),
        [
            "a.b",
            "c",
            "ca.int.cert",
            "ca.root.cert",
            "ca.root.key",
            "cab",
            "secrets.x"
        ]
    );
    assert!(store.keys("zz").await.unwrap().is_empty());

    // Invalid keys are refused before any I/O, naming the key.
    for bad in ["", ".x", "x.", "a b", "a*"] {
        match store.put(bad, b"v".to_vec()).await {
            Err(StoreError::InvalidKey { key, .. }) => assert_eq!(key, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(matches!(
            store.get(bad).await,
            Err(StoreError::InvalidKey { .. })
        ));
    }
    assert!(matches!(
        store.keys("a*").await,
        Err(StoreError::InvalidKey { .. })
    ));

    // Concurrent compare-and-swap: of many writers holding one revision, exactly one wins.
    let base = store.put("race", b"0".to_vec()).await.unwrap();
    let attempts = (0..8).map(|i| store.update("race", vec![i], base));
    let results = futures_join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(StoreError::is_conflict)
    );
}

/// Exercises [`Store::wait_for_change`]: `waiter` waits, `writer` (another handle on the same
/// data: a clone, another client, another instance) writes. Uses keys under `wait.` on a
/// store where they are absent; takes about 2 s.
pub async fn wait_for_change(waiter: &dyn Store, writer: &dyn Store) {
    const KEY: &str = "wait.k";
    // Long enough that a wake-up is plainly not the timeout.
    const LONG: Duration = Duration::from_secs(20);
    const PROMPT: Duration = Duration::from_secs(5);

    // Absent key, nothing written: the timeout passes and the answer is None.
    let t = Instant::now();
    let waited = waiter
        .wait_for_change(KEY, 0, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(waited, None, "nothing was written");
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "returned before the timeout: {:?}",
        t.elapsed()
    );

    // A value newer than the revision held returns at once.
    let r1 = writer.put(KEY, b"one".to_vec()).await.unwrap();
    let t = Instant::now();
    let entry = waiter.wait_for_change(KEY, 0, LONG).await.unwrap().unwrap();
    assert_eq!(
        (entry.key.as_str(), entry.value.as_slice(), entry.revision),
        (KEY, &b"one"[..], r1)
    );
    assert!(
        t.elapsed() < PROMPT,
        "a present value waited {:?}",
        t.elapsed()
    );

    // Holding the current revision: waits, and a write through the other handle wakes it.
    let t = Instant::now();
    let (woken, r2) = join(waiter.wait_for_change(KEY, r1, LONG), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.update(KEY, b"two".to_vec(), r1).await.unwrap()
    })
    .await;
    let entry = woken.unwrap().expect("the write woke the waiter");
    assert_eq!((entry.value.as_slice(), entry.revision), (&b"two"[..], r2));
    assert!(
        t.elapsed() >= Duration::from_millis(290) && t.elapsed() < PROMPT,
        "woken after {:?}",
        t.elapsed()
    );

    // Writes to other keys (even one the key is a prefix of) do not answer the waiter.
    let (other, ()) = join(
        waiter.wait_for_change(KEY, r2, Duration::from_millis(800)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.put("wait.other", b"x".to_vec()).await.unwrap();
            writer.put("wait.kx", b"x".to_vec()).await.unwrap();
            writer.put("wait.k.sub", b"x".to_vec()).await.unwrap();
        },
    )
    .await;
    assert_eq!(other.unwrap(), None, "another key's write answered");

    // A delete does not answer; the next value does.
    let (woken, r3) = join(waiter.wait_for_change(KEY, r2, LONG), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.delete(KEY, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.put(KEY, b"three".to_vec()).await.unwrap()
    })
    .await;
    let entry = woken
        .unwrap()
        .expect("the put after the delete woke the waiter");
    assert_eq!(
        (entry.value.as_slice(), entry.revision),
        (&b"three"[..], r3)
    );

    // A stale revision (older than the current) returns the current value, not an old one.
    let entry = waiter
        .wait_for_change(KEY, r1, LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.revision, r3);

    // Invalid keys are refused before waiting.
    let t = Instant::now();
    assert!(matches!(
        waiter.wait_for_change("a b", 0, LONG).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(t.elapsed() < PROMPT);
}

/// Runs two futures concurrently on the current task (no extra dependency).
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (out_a.unwrap(), out_b.unwrap())
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (fut, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

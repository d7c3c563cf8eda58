//! One behavioural test every [`Store`] implementation runs, so they agree on semantics.

use crate::{Store, StoreError};

/// Exercises the whole contract on an empty store.
pub(crate) async fn exercise(store: &dyn Store) {
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

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
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

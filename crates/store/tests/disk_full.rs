//! The embedded store on a full disk (issue 18): a write that finds no space fails, and once
//! there is space again the next write succeeds in the same process, without a restart. redb
//! refuses every call after a failed write to its file (`PreviousIo`) until the database is
//! closed; the store reopens it. Every acknowledged write is there, before and after a fresh
//! open of the file.
//!
//! The disk is a 2 MiB `tmpfs` mounted in a private user and mount namespace: the test binary
//! runs itself again under `unshare -rm` (`disk_child` below), as
//! `crates/serve/tests/disk_full.rs` does, and the child mounts the `tmpfs` and runs the
//! scenario; its panics are the test's failures.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)] // the errors seen, for docs/faults.md

use anchorage_store::{EmbeddedStore, Store as _};
use anchorage_test_support::small_disk::{self, error_chain, fill, mount_tmpfs};

const CHILD_DIR: &str = "ANCHORAGE_STORE_DISK_CHILD_DIR";

/// 8 KiB, different for each `n`.
fn value(n: usize) -> Vec<u8> {
    (0..8192usize)
        .map(|i| ((i * 31 + n * 7919) % 251) as u8)
        .collect()
}

/// Every acknowledged write (key, revision, value number) is in `store`.
async fn check(store: &EmbeddedStore, acked: &[(String, u64, usize)]) {
    for (key, rev, n) in acked {
        let entry = store.get(key).await.unwrap();
        let entry = entry.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(entry.revision, *rev, "{key}");
        assert!(entry.value == value(*n), "{key}: another value");
    }
}

#[test]
#[ignore = "helper process of the embedded store on a full disk"]
fn disk_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mnt = std::path::PathBuf::from(dir);
    mount_tmpfs(&mnt, "2m");
    let path = mnt.join("data").join(EmbeddedStore::FILE_NAME);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = EmbeddedStore::open(&path).unwrap();
        let mut acked: Vec<(String, u64, usize)> = Vec::new();
        for n in 0..10 {
            let key = format!("before.{n}");
            let rev = store.put(&key, value(n)).await.unwrap();
            acked.push((key, rev, n));
        }

        // Disk full: write until refused (the file may have free pages left at first).
        fill(&mnt);
        let mut refused = None;
        for n in 10..2_000 {
            let key = format!("full.{n}");
            match store.put(&key, value(n)).await {
                Ok(rev) => acked.push((key, rev, n)),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("the full disk never refused a write");
        println!("disk full: {}", error_chain(&e));
        assert!(e.is_unavailable(), "{e:?}");
        assert!(
            error_chain(&e).contains("No space left on device"),
            "{}",
            error_chain(&e)
        );
        // Still full: the next write fails too, with an error saying what happened.
        let e = store.put("still-full", value(0)).await.unwrap_err();
        println!("still full: {}", error_chain(&e));
        assert!(e.is_unavailable(), "{e:?}");

        // Space again: the next write succeeds in this process, without a restart.
        std::fs::remove_file(mnt.join("fill")).unwrap();
        let rev = match store.put("freed", value(7)).await {
            Ok(rev) => rev,
            Err(e) => panic!("space again, the write still fails: {}", error_chain(&e)),
        };
        println!("space again: written at revision {rev}");
        // Compare-and-swap and create work too.
        let rev = store.update("freed", value(8), rev).await.unwrap();
        acked.push(("freed".to_owned(), rev, 8));
        let rev = store.create("created-after", value(9)).await.unwrap();
        acked.push(("created-after".to_owned(), rev, 9));
        check(&store, &acked).await;
        drop(store);

        // And after a restart (a fresh open of the file).
        let store = EmbeddedStore::open(&path).unwrap();
        check(&store, &acked).await;
        println!("{} acknowledged writes kept", acked.len());
    });
}

#[test]
fn the_embedded_store_recovers_from_a_full_disk_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some((stdout, _stderr)) = small_disk::run_child("disk_child", CHILD_DIR, dir.path()) else {
        return;
    };
    for line in stdout.lines().filter(|l| {
        l.contains("disk full:")
            || l.starts_with("still full")
            || l.starts_with("space again")
            || l.contains("acknowledged")
    }) {
        println!("{line}");
    }
}

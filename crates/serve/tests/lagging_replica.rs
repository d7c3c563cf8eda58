//! A shared store whose reads lag its writes (a JetStream replica that has not yet seen a write
//! acknowledged through another node): an instance that loses the race to create the CA reads
//! the winner's back once the replica has it, instead of failing to start.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anchorage_ca::InitOptions;
use anchorage_serve::Authority;
use anchorage_store::{Entry, MemoryStore, Store, StoreError};
use async_trait::async_trait;

/// Hides `ca.builtin` from the next `hide` reads.
struct Lagging {
    inner: Arc<MemoryStore>,
    hide: AtomicUsize,
}

#[async_trait]
impl Store for Lagging {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        if key == "ca.builtin"
            && self
                .hide
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Ok(None);
        }
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<u64, StoreError> {
        self.inner.update(key, value, rev).await
    }
    async fn delete(&self, key: &str, rev: Option<u64>) -> Result<(), StoreError> {
        self.inner.delete(key, rev).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys(prefix).await
    }
}

async fn open_lagging(
    inner: &Arc<MemoryStore>,
    hide: usize,
) -> Result<(Authority, bool), anchorage_ca::CaError> {
    let store: Arc<dyn Store> = Arc::new(Lagging {
        inner: Arc::clone(inner),
        hide: AtomicUsize::new(hide),
    });
    Authority::open(store, None, &InitOptions::default()).await
}

#[tokio::test]
async fn a_ca_lost_to_another_instance_is_read_back_from_a_lagging_replica() {
    let inner = Arc::new(MemoryStore::new());
    let winner: Arc<dyn Store> = Arc::clone(&inner) as Arc<dyn Store>;
    let (first, created) = Authority::open(winner, None, &InitOptions::default())
        .await
        .unwrap();
    assert!(created);

    // The first read misses the CA (so it makes one), its create-only save loses, and the
    // next reads miss it too: it waits for the replica and uses the winner's CA.
    let (second, created) = open_lagging(&inner, 4).await.unwrap();
    assert!(!created);
    assert_eq!(second.roots_pem(), first.roots_pem());

    // Control: a replica that never catches up is an error, not a second CA.
    let never = open_lagging(&inner, usize::MAX).await;
    assert!(
        matches!(never, Err(anchorage_ca::CaError::NotInitialised { .. })),
        "{:?}",
        never.err()
    );
}

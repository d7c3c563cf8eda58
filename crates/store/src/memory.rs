//! [`MemoryStore`]: the [`Store`] semantics over a map in memory.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::key::{validate_key, validate_prefix};
use crate::notify::{Changes, wait_notified};
use crate::store::{Entry, Store};

/// A [`Store`] in memory: for tests, and for embedding where nothing must outlive the process.
/// `Debug` shows the number of keys, never values.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Each write's revision, for [`Store::wait_for_change`].
    changes: Changes,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<String, (u64, Vec<u8>)>,
    last_revision: u64,
}

impl State {
    fn write(&mut self, key: &str, value: Vec<u8>) -> u64 {
        self.last_revision += 1;
        self.entries
            .insert(key.to_owned(), (self.last_revision, value));
        self.last_revision
    }

    fn current(&self, key: &str) -> Option<u64> {
        self.entries.get(key).map(|(rev, _)| *rev)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written entry (each write is one
        // insert), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryStore")
            .field("keys", &state.entries.len())
            .field("last_revision", &state.last_revision)
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        validate_key(key)?;
        Ok(self
            .state()
            .entries
            .get(key)
            .map(|(revision, value)| Entry {
                key: key.to_owned(),
                value: value.clone(),
                revision: *revision,
            }))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let revision = self.state().write(key, value);
        self.changes.announce(key, revision);
        Ok(revision)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let mut state = self.state();
        let written = match state.current(key) {
            None => state.write(key, value),
            current => {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: None,
                    current,
                });
            }
        };
        drop(state);
        self.changes.announce(key, written);
        Ok(written)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        let mut state = self.state();
        let written = match state.current(key) {
            Some(current) if current == expected_revision => state.write(key, value),
            current => {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: Some(expected_revision),
                    current,
                });
            }
        };
        drop(state);
        self.changes.announce(key, written);
        Ok(written)
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<(), StoreError> {
        validate_key(key)?;
        let mut state = self.state();
        let current = state.current(key);
        if expected_revision.is_some() && current != expected_revision {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected_revision,
                current,
            });
        }
        state.entries.remove(key);
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        Ok(self
            .state()
            .entries
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    /// Woken by this store's own writes (no polling).
    async fn wait_for_change(
        &self,
        key: &str,
        after_revision: u64,
        timeout: Duration,
    ) -> Result<Option<Entry>, StoreError> {
        wait_notified(self, &self.changes, key, after_revision, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::exercise(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn wait_for_change() {
        let store = MemoryStore::new();
        crate::conformance::wait_for_change(&store, &store).await;
    }

    /// Waiters listen to their key only: a write elsewhere wakes none of them, and a key's
    /// channel goes with its last waiter.
    #[tokio::test]
    async fn waiters_listen_to_their_key_only() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let r = store.put("bundle", b"v1".to_vec()).await.unwrap();
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .wait_for_change("bundle", r, Duration::from_secs(20))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.changes.watched(), 1);
        // Another key's write is announced to no one.
        let before = store.changes.last_announced("bundle");
        store.put("acks.a", b"x".to_vec()).await.unwrap();
        assert_eq!(store.changes.last_announced("bundle"), before);
        assert_eq!(store.changes.last_announced("acks.a"), None);
        let r2 = store.put("bundle", b"v2".to_vec()).await.unwrap();
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap().unwrap().revision, r2);
        }
        assert_eq!(store.changes.watched(), 0);
    }

    #[test]
    fn debug_shows_no_values() {
        let store = MemoryStore::new();
        store.state().write("k", b"hunter2".to_vec());
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("keys: 1"), "{shown}");
    }
}

//! The [`Store`] trait and its [`Entry`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::key::validate_key;

/// How often the default [`Store::wait_for_change`] reads the key again.
pub const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One key's current value and revision.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value (opaque; may be secret, so `Debug` shows only its length).
    pub value: Vec<u8>,
    /// The revision that wrote this value (above zero).
    pub revision: u64,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", &format_args!("[{} bytes]", self.value.len()))
            .field("revision", &self.revision)
            .finish()
    }
}

/// A key-value store with per-key revisions and compare-and-swap, after NATS JetStream KV.
///
/// Every write returns the key's new revision. Revisions increase across the whole store and
/// are never reused. Keys are checked with [`crate::validate_key`] before anything is read or
/// written. Implementations are shared across tasks and safe to call concurrently; each
/// conditional write is atomic.
#[async_trait]
pub trait Store: Send + Sync {
    /// The key's current entry, or `None` when it is absent (never written, or deleted).
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Writes `value` whatever the key holds. Returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError>;

    /// Writes `value` only when the key is absent (JetStream `create`). Returns the new
    /// revision, or [`StoreError::Conflict`] with the current revision when it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError>;

    /// Writes `value` only when the key's revision is `expected_revision` (JetStream
    /// `update`). Returns the new revision, or [`StoreError::Conflict`] with the current
    /// revision (`None` when the key is absent).
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError>;

    /// Removes the key. With `Some(revision)` only when that is its current revision (else
    /// [`StoreError::Conflict`]); with `None` unconditionally, and deleting an absent key is
    /// not an error.
    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<(), StoreError>;

    /// The keys that start with `prefix` (`""` for all), sorted byte-wise.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Compacts the store's storage so that overwritten and deleted values no longer linger
    /// in it (the free pages of a redb file), for stores that keep such copies. Returns
    /// `true` once the storage is compacted (even when it already was); the default, for a
    /// store without such copies (or one that cannot compact), does nothing and returns
    /// `false`.
    async fn compact(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Waits until `key` holds a value whose revision is above `after_revision` and returns
    /// that entry, or `None` once `timeout` has passed without one (a long poll: pass the
    /// revision you hold; `0` returns any present value at once). A value already newer
    /// returns at once. A delete does not wake the waiter: it waits for the next value.
    ///
    /// Writes through any handle or instance on the same data wake the waiter. The default
    /// reads the key every [`WAIT_POLL_INTERVAL`]; [`crate::MemoryStore`] and
    /// [`crate::EmbeddedStore`] are woken by their own writes to that key, a JetStream store
    /// by a KV watch. Every implementation here needs a Tokio runtime with its timer for this
    /// call. The returned entry is the newest the store saw, which may skip intermediate
    /// revisions.
    async fn wait_for_change(
        &self,
        key: &str,
        after_revision: u64,
        timeout: Duration,
    ) -> Result<Option<Entry>, StoreError> {
        validate_key(key)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(entry) = self.get(key).await?
                && entry.revision > after_revision
            {
                return Ok(Some(entry));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep((deadline - now).min(WAIT_POLL_INTERVAL)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// A store that keeps the trait's default `wait_for_change` (polling).
    struct Polling(MemoryStore);

    #[async_trait]
    impl Store for Polling {
        async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.0.put(key, value).await
        }
        async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
            self.0.create(key, value).await
        }
        async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<u64, StoreError> {
            self.0.update(key, value, rev).await
        }
        async fn delete(&self, key: &str, rev: Option<u64>) -> Result<(), StoreError> {
            self.0.delete(key, rev).await
        }
        async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.0.keys(prefix).await
        }
    }

    #[tokio::test]
    async fn the_default_wait_for_change_polls() {
        let store = Polling(MemoryStore::new());
        crate::conformance::exercise(&store).await;
        let store = Polling(MemoryStore::new());
        crate::conformance::wait_for_change(&store, &store).await;
    }
}

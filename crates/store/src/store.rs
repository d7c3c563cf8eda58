//! The [`Store`] trait and its [`Entry`].

use std::fmt;

use async_trait::async_trait;

use crate::error::StoreError;

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
}

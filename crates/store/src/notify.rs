//! In-process change notification for [`Store::wait_for_change`]: the stores that live in
//! this process ([`crate::MemoryStore`], [`crate::EmbeddedStore`]) announce each write's
//! revision on a Tokio `watch` channel, and a waiter reads the key again on every
//! announcement instead of polling.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::key::validate_key;
use crate::store::{Entry, Store};

/// The channel a store announces its writes on (the last revision written).
pub(crate) type Changes = watch::Sender<u64>;

/// Waits on `changes` until `store` holds a value of `key` above `after_revision`.
pub(crate) async fn wait_notified(
    store: &dyn Store,
    changes: &Changes,
    key: &str,
    after_revision: u64,
    timeout: Duration,
) -> Result<Option<Entry>, StoreError> {
    validate_key(key)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut announced = changes.subscribe();
    loop {
        // Marked seen before the read: a write landing after it is announced again.
        announced.borrow_and_update();
        if let Some(entry) = store.get(key).await?
            && entry.revision > after_revision
        {
            return Ok(Some(entry));
        }
        match tokio::time::timeout_at(deadline, announced.changed()).await {
            Ok(Ok(())) => {}
            // Elapsed; or the store (which owns the sender) is gone, which `&dyn Store`
            // rules out while we run.
            Err(_) | Ok(Err(_)) => return Ok(None),
        }
    }
}

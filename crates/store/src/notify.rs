//! In-process change notification for [`Store::wait_for_change`]: the stores that live in
//! this process ([`crate::MemoryStore`], [`crate::EmbeddedStore`]) announce each write's
//! revision to the waiters of that key (a Tokio `watch` channel per watched key), and a waiter
//! reads the key again on each announcement instead of polling. Writes to other keys wake no
//! one, so many waiters on one key (a trust bundle) cost nothing while other keys change.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::key::validate_key;
use crate::store::{Entry, Store};

/// The channels a store announces its writes on: one per key someone waits on, holding the
/// last revision written.
#[derive(Default)]
pub(crate) struct Changes(Mutex<HashMap<String, watch::Sender<u64>>>);

impl Changes {
    /// Wakes the waiters of `key` (if any).
    pub(crate) fn announce(&self, key: &str, revision: u64) {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(key) {
            tx.send_replace(revision);
        }
    }

    /// A receiver of `key`'s announcements; channels nobody listens to any more are dropped.
    fn subscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(key.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The last revision announced to `key`'s waiters, `None` when it has no channel (tests).
    #[cfg(test)]
    pub(crate) fn last_announced(&self, key: &str) -> Option<u64> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|tx| *tx.borrow())
    }

    /// How many keys have waiters (for tests).
    #[cfg(test)]
    pub(crate) fn watched(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().filter(|tx| tx.receiver_count() > 0).count()
    }
}

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
    let mut announced = changes.subscribe(key);
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
            // Elapsed; or the sender is gone, which the store (owning it) rules out while
            // `&dyn Store` is borrowed and this receiver counts as listening.
            Err(_) | Ok(Err(_)) => return Ok(None),
        }
    }
}

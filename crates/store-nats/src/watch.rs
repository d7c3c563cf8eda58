//! Shared key watches for [`crate::JetStreamStore`]'s `wait_for_change`: one ordered consumer
//! per watched key, whatever the number of waiters (a server long-polling the trust bundle for
//! thousands of agents holds one consumer, not thousands). The consumer lives while at least
//! one waiter does; the last one to leave stops it.
//!
//! A background task runs the consumer (from the key's last message, `LastPerSubject`, then
//! every new one) and publishes the newest message seen on a Tokio `watch` channel; waiters
//! read the channel. A consumer that fails mid-way (a leader change, a reconnection) is made
//! again; one that cannot be made within the per-call timeout is reported to the waiters as a
//! failure, so they fail fast rather than wait in silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::watch;

/// The key's newest message seen by a watch.
#[derive(Clone)]
pub(crate) struct Seen {
    pub(crate) revision: u64,
    pub(crate) put: bool,
    pub(crate) value: Bytes,
}

/// What waiters read.
#[derive(Clone)]
pub(crate) enum WatchState {
    /// The first consumer is being made.
    Starting,
    /// A consumer runs (or is being made again); the newest message seen, if any.
    Live(Option<Seen>),
    /// The consumer could not be made (the client's error, without values); retrying.
    Failed(String),
}

/// One watched key: the channel and the task feeding it (stopped when the last waiter drops
/// this).
pub(crate) struct KeyWatch {
    state: watch::Receiver<WatchState>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyWatch {
    /// A receiver of the key's state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<WatchState> {
        self.state.clone()
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watches of one store (shared by its clones), by subject.
#[derive(Default)]
pub(crate) struct Watches(Mutex<HashMap<String, Weak<KeyWatch>>>);

impl Watches {
    /// The running watch of `subject`, or a new one.
    pub(crate) fn watch(
        &self,
        kv: &kv::Store,
        client: &async_nats::Client,
        subject: String,
        timeout: Duration,
    ) -> Arc<KeyWatch> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = map.get(&subject).and_then(Weak::upgrade) {
            return running;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let (tx, rx) = watch::channel(WatchState::Starting);
        let task = tokio::spawn(run(
            kv.clone(),
            client.clone(),
            subject.clone(),
            timeout,
            tx,
        ));
        let made = Arc::new(KeyWatch { state: rx, task });
        map.insert(subject, Arc::downgrade(&made));
        made
    }

    /// How many keys are watched now (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// Feeds `tx` from an ordered consumer on `subject`, made again whenever it ends.
async fn run(
    kv: kv::Store,
    client: async_nats::Client,
    subject: String,
    timeout: Duration,
    tx: watch::Sender<WatchState>,
) {
    loop {
        let made = tokio::time::timeout(timeout, async {
            let consumer = kv
                .stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: client.new_inbox(),
                    description: Some("anchorage wait for change".to_owned()),
                    filter_subject: subject.clone(),
                    replay_policy: ReplayPolicy::Instant,
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no consumer within {} ms", timeout.as_millis())));
        let mut messages = match made {
            Ok(messages) => messages,
            Err(reason) => {
                tracing::debug!(subject, %reason, "watch consumer not made; trying again");
                tx.send_replace(WatchState::Failed(reason));
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        tx.send_modify(|state| {
            if !matches!(state, WatchState::Live(_)) {
                *state = WatchState::Live(None);
            }
        });
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(subject, error = %e, "watch consumer failed; making it again");
                    break;
                }
            };
            let Ok(info) = message.info() else { continue };
            let seen = Seen {
                revision: info.stream_sequence,
                put: crate::store::is_put(message.headers.as_ref()),
                value: message.payload.clone(),
            };
            tx.send_if_modified(|state| match state {
                WatchState::Live(Some(old)) if old.revision >= seen.revision => false,
                _ => {
                    *state = WatchState::Live(Some(seen));
                    true
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

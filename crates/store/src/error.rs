//! [`StoreError`]: what went wrong, with the key and the file or bucket involved (never the
//! value).

use std::path::PathBuf;
use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key breaks the key syntax ([`crate::validate_key`]).
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A conditional write lost: the key's revision is not the one expected.
    #[error(
        "store key {key:?} changed: expected {}, found {}",
        revision_text(*.expected),
        revision_text(*.current)
    )]
    Conflict {
        /// The key.
        key: String,
        /// The revision the writer expected (`None`: expected the key to be absent).
        expected: Option<u64>,
        /// The key's current revision (`None`: it is absent).
        current: Option<u64>,
    },
    /// The store file or its directory could not be created, opened or secured.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What we were doing (`create the directory`, `open`, `set the mode of`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's file name holds something other than a regular file (a symbolic link, a
    /// FIFO, a device): refused, never followed or written through, since the store holds keys.
    #[error(
        "store {} is {what}; refusing to use it (remove it, or point the data directory elsewhere)",
        path.display()
    )]
    NotRegular {
        /// The store file.
        path: PathBuf,
        /// What is there.
        what: &'static str,
    },
    /// The database file failed (open, transaction, corruption, lock held by another process).
    #[error("store {} failed to {action}{}", path.display(), key_text(key.as_deref()))]
    Database {
        /// The store file.
        path: PathBuf,
        /// What we were doing (`open`, `read`, `write`, `list keys`).
        action: &'static str,
        /// The key involved, when there is one.
        key: Option<String>,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A networked store's backend (a NATS JetStream KV bucket) failed the call or could not
    /// be reached.
    #[error(
        "JetStream KV bucket {bucket:?} failed to {action}{}: {hint}",
        key_text(key.as_deref())
    )]
    Backend {
        /// The bucket.
        bucket: String,
        /// What we were doing (`read`, `write`, `create`, `list keys`, `open the bucket`).
        action: &'static str,
        /// The key involved, when there is one.
        key: Option<String>,
        /// What to check or do.
        hint: String,
        /// The client's error (never holds a value).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A networked store's backend gave no answer within the per-call timeout. For a write,
    /// whether it was applied is unknown: read the key before trying again.
    #[error(
        "JetStream KV bucket {bucket:?} gave no answer within {} ms while trying to {action}{}: {hint}",
        after.as_millis(),
        key_text(key.as_deref())
    )]
    Timeout {
        /// The bucket.
        bucket: String,
        /// What we were doing.
        action: &'static str,
        /// The key involved, when there is one.
        key: Option<String>,
        /// The timeout that passed.
        after: Duration,
        /// What to check.
        hint: String,
    },
    /// A store's configuration is unusable (a bucket name, a replica count).
    #[error("invalid store {what} {value:?}: {reason}")]
    Config {
        /// What is configured (`bucket name`, `replica count`).
        what: &'static str,
        /// The value as given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The store file failed a write earlier (a full disk, an I/O error), after which redb
    /// refuses every call until the database is closed; closing and opening it again failed.
    /// The next call tries again.
    #[error(
        "store {} stopped after an I/O error (a full or failing disk) and could not be reopened; free space or fix the disk: the next call tries again",
        path.display()
    )]
    Reopen {
        /// The store file.
        path: PathBuf,
        /// Why the open failed.
        #[source]
        source: Box<StoreError>,
    },
    /// The blocking task running a store call panicked or was cancelled.
    #[error("store {} task failed while trying to {action}", path.display())]
    Task {
        /// The store file.
        path: PathBuf,
        /// What we were doing.
        action: &'static str,
    },
}

fn revision_text(revision: Option<u64>) -> String {
    match revision {
        Some(r) => format!("revision {r}"),
        None => "no entry".to_owned(),
    }
}

fn key_text(key: Option<&str>) -> String {
    match key {
        Some(k) => format!(" key {k:?}"),
        None => String::new(),
    }
}

impl StoreError {
    /// True for a lost compare-and-swap ([`StoreError::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// True when the backend did not answer in time ([`StoreError::Timeout`]): a write's
    /// outcome is unknown.
    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::Timeout { .. })
    }

    /// True when the store could not be used at all (its backend failed or did not answer, or
    /// its file failed), as opposed to a refused call (a conflict, an invalid key): another
    /// instance may still serve it.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend { .. }
                | StoreError::Timeout { .. }
                | StoreError::Database { .. }
                | StoreError::Io { .. }
                | StoreError::Task { .. }
                | StoreError::Reopen { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every crate returns `Result<_, StoreError>`: it stays under clippy's
    /// `result_large_err` threshold (128 bytes).
    #[test]
    fn stays_small() {
        let size = std::mem::size_of::<StoreError>();
        assert!(size < 128, "{size} bytes");
    }
}

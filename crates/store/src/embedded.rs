//! [`EmbeddedStore`]: the [`Store`] semantics in one redb file.
//!
//! Layout: table `entries` maps a key to `(revision, value)`; table `meta` holds the last
//! revision handed out, so revisions keep increasing across restarts. Every conditional
//! write reads the current revision and writes inside one redb write transaction (redb allows
//! one writer at a time), which makes compare-and-swap atomic; commits are durable (fsync)
//! before the call returns.
//!
//! redb calls block on disk I/O, so inside a Tokio runtime each call runs on the blocking
//! pool (`spawn_blocking`); outside one it runs inline.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, Table, TableDefinition};
use zeroize::Zeroize as _;

use crate::error::StoreError;
use crate::key::{validate_key, validate_prefix};
use crate::notify::{Changes, wait_notified};
use crate::store::{Entry, Store};

const ENTRIES: TableDefinition<'_, &str, (u64, &[u8])> = TableDefinition::new("entries");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const LAST_REVISION: &str = "last_revision";

/// A [`Store`] kept in one redb file.
///
/// Values handed to a write are wiped (zeroized) once written, since they may be keys; redb's
/// own page cache is not ours to wipe.
///
/// The file is created with mode `0600` (and tightened to `0600` if found wider), its missing
/// parent directories with `0700`: values may be secret (a CA key stored without a
/// passphrase is protected by this mode alone). One process opens a file at a time; a second
/// open fails with [`StoreError::Database`]. Cloning shares the open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every call holds the read side for as long as its transaction lives; compaction takes
    /// the write side, so it never runs under a live transaction.
    db: RwLock<Database>,
    path: PathBuf,
    /// Each write's revision, for [`Store::wait_for_change`] (one process opens a file, so
    /// every writer is here).
    changes: Changes,
}

impl EmbeddedStore {
    /// The file name [`EmbeddedStore::open_in`] uses inside a data directory.
    pub const FILE_NAME: &'static str = "anchorage.redb";

    /// Opens the store file at `path`, creating it (mode `0600`) and its missing parent
    /// directories (mode `0700`) when absent. Blocks on file I/O: call it at start-up (or in
    /// `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Io {
                    action: "create the directory",
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        // Create the file ourselves so that it never exists with a mode wider than 0600.
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        // O_NOFOLLOW: the file holds CA keys and sealed secrets, so it is never reached
        // through a symbolic link someone planted at its name; and only a regular file is used
        // (a FIFO or device there is refused, never written through). redb is handed this very
        // handle, so what was checked is what is used.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|source| {
                if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    StoreError::NotRegular {
                        path: path.clone(),
                        what: "a symbolic link",
                    }
                } else {
                    io("open")(source)
                }
            })?;
        let metadata = file.metadata().map_err(io("read the mode of"))?;
        if !metadata.file_type().is_file() {
            return Err(StoreError::NotRegular {
                path: path.clone(),
                what: "not a regular file (a FIFO, device, socket or directory)",
            });
        }
        if metadata.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(io("set the mode of"))?;
        }
        let backend = redb::backends::FileBackend::new(file).map_err(|e| StoreError::Database {
            path: path.clone(),
            action: "open",
            key: None,
            source: Box::new(e.into()),
        })?;

        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| StoreError::Database {
                path: path.clone(),
                action: "open",
                key: None,
                source: Box::new(e.into()),
            })?;
        let inner = Inner {
            db: RwLock::new(db),
            path,
            changes: Changes::default(),
        };
        inner.write("initialise", None, |_, _| Ok(()))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Opens (or creates) [`EmbeddedStore::FILE_NAME`] inside `dir`.
    pub fn open_in(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open(dir.as_ref().join(Self::FILE_NAME))
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool when inside a Tokio runtime, else inline.
    async fn run<T, F>(&self, action: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || f(&inner))
                .await
                .map_err(|_| StoreError::Task {
                    path: self.inner.path.clone(),
                    action,
                })?,
            Err(_) => f(&inner),
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

type Entries<'txn> = Table<'txn, &'static str, (u64, &'static [u8])>;

impl Inner {
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn db_error<E: Into<redb::Error>>(
        &self,
        action: &'static str,
        key: Option<&str>,
    ) -> impl FnOnce(E) -> StoreError {
        let path = self.path.clone();
        let key = key.map(str::to_owned);
        move |e| StoreError::Database {
            path,
            action,
            key,
            source: Box::new(e.into()),
        }
    }

    /// One write transaction: `f` sees the entries table and the last revision (which it
    /// advances when it writes). An error from `f` aborts the transaction.
    fn write<T>(
        &self,
        action: &'static str,
        key: Option<&str>,
        f: impl FnOnce(&mut Entries<'_>, &mut u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db();
        let txn = db.begin_write().map_err(self.db_error(action, key))?;
        let result = (|| {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(self.db_error(action, key))?;
            let mut meta = txn.open_table(META).map_err(self.db_error(action, key))?;
            let before = meta
                .get(LAST_REVISION)
                .map_err(self.db_error(action, key))?
                .map(|g| g.value())
                .unwrap_or(0);
            let mut last = before;
            let out = f(&mut entries, &mut last)?;
            if last != before {
                meta.insert(LAST_REVISION, last)
                    .map_err(self.db_error(action, key))?;
            }
            Ok(out)
        })();
        match result {
            Ok(out) => {
                txn.commit().map_err(self.db_error(action, key))?;
                Ok(out)
            }
            Err(e) => {
                // Nothing was changed that must be kept; an abort failure adds nothing to `e`.
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn current(&self, entries: &Entries<'_>, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(entries
            .get(key)
            .map_err(self.db_error("read", Some(key)))?
            .map(|g| g.value().0))
    }

    fn insert(
        &self,
        entries: &mut Entries<'_>,
        last: &mut u64,
        key: &str,
        value: &[u8],
    ) -> Result<u64, StoreError> {
        *last += 1;
        entries
            .insert(key, (*last, value))
            .map_err(self.db_error("write", Some(key)))?;
        Ok(*last)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run("read", move |inner| {
            let k = Some(key.as_str());
            let db = inner.db();
            let txn = db.begin_read().map_err(inner.db_error("read", k))?;
            let entries = txn.open_table(ENTRIES).map_err(inner.db_error("read", k))?;
            let found = entries
                .get(key.as_str())
                .map_err(inner.db_error("read", k))?
                .map(|g| {
                    let (revision, value) = g.value();
                    (revision, value.to_vec())
                });
            Ok(found.map(|(revision, value)| Entry {
                key,
                value,
                revision,
            }))
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let announced = key;
        let key = key.to_owned();
        let mut value = value;
        let written = self
            .run("write", move |inner| {
                let written = inner.write("write", Some(&key), |entries, last| {
                    inner.insert(entries, last, &key, &value)
                });
                value.zeroize();
                written
            })
            .await?;
        self.inner.changes.announce(announced, written);
        Ok(written)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let announced = key;
        let key = key.to_owned();
        let mut value = value;
        let written = self
            .run("create", move |inner| {
                let written = inner.write("create", Some(&key), |entries, last| {
                    match inner.current(entries, &key)? {
                        None => inner.insert(entries, last, &key, &value),
                        current => Err(StoreError::Conflict {
                            key: key.clone(),
                            expected: None,
                            current,
                        }),
                    }
                });
                value.zeroize();
                written
            })
            .await?;
        self.inner.changes.announce(announced, written);
        Ok(written)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        let announced = key;
        let key = key.to_owned();
        let mut value = value;
        let written = self
            .run("update", move |inner| {
                let written = inner.write("update", Some(&key), |entries, last| {
                    match inner.current(entries, &key)? {
                        Some(current) if current == expected_revision => {
                            inner.insert(entries, last, &key, &value)
                        }
                        current => Err(StoreError::Conflict {
                            key: key.clone(),
                            expected: Some(expected_revision),
                            current,
                        }),
                    }
                });
                value.zeroize();
                written
            })
            .await?;
        self.inner.changes.announce(announced, written);
        Ok(written)
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<(), StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.run("delete", move |inner| {
            inner.write("delete", Some(&key), |entries, _| {
                let current = inner.current(entries, &key)?;
                if expected_revision.is_some() && current != expected_revision {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: expected_revision,
                        current,
                    });
                }
                if current.is_some() {
                    entries
                        .remove(key.as_str())
                        .map_err(inner.db_error("delete", Some(&key)))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.run("list keys", move |inner| {
            let db = inner.db();
            let txn = db.begin_read().map_err(inner.db_error("list keys", None))?;
            let entries = txn
                .open_table(ENTRIES)
                .map_err(inner.db_error("list keys", None))?;
            let mut out = Vec::new();
            for item in entries
                .range(prefix.as_str()..)
                .map_err(inner.db_error("list keys", None))?
            {
                let (key, _) = item.map_err(inner.db_error("list keys", None))?;
                let key = key.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(key.to_owned());
            }
            Ok(out)
        })
        .await
    }

    /// Runs redb's compaction (pages moved to the front, the file truncated), with every
    /// other call of this store waiting meanwhile. Blocks for as long as the file takes to
    /// rewrite.
    async fn compact(&self) -> Result<bool, StoreError> {
        self.run("compact", |inner| {
            let mut db = inner.db.write().unwrap_or_else(PoisonError::into_inner);
            // `false` from redb means nothing was left to move: the file is compact already.
            db.compact()
                .map(|_| true)
                .map_err(|e| inner.db_error::<redb::Error>("compact", None)(e.into()))
        })
        .await
    }

    /// Woken by this store's own writes (through any clone), no polling: one process opens
    /// the file, so no write comes from elsewhere.
    async fn wait_for_change(
        &self,
        key: &str,
        after_revision: u64,
        timeout: Duration,
    ) -> Result<Option<Entry>, StoreError> {
        wait_notified(self, &self.inner.changes, key, after_revision, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path().join("data")).unwrap();
        crate::conformance::exercise(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_for_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        // The writer is another handle (a clone) on the same file.
        crate::conformance::wait_for_change(&store, &store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persists_across_reopen_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested").join("data");
        let path = data.join(EmbeddedStore::FILE_NAME);
        let (rev_a, rev_b) = {
            let store = EmbeddedStore::open(&path).unwrap();
            let a = store.put("ca.root.cert", b"cert".to_vec()).await.unwrap();
            let b = store.create("ca.root.key", b"key".to_vec()).await.unwrap();
            store.delete("ca.root.key", Some(b)).await.unwrap();
            (a, b)
        };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(data.parent().unwrap()), 0o700);

        let store = EmbeddedStore::open(&path).unwrap();
        let entry = store.get("ca.root.cert").await.unwrap().unwrap();
        assert_eq!(
            (entry.value.as_slice(), entry.revision),
            (&b"cert"[..], rev_a)
        );
        assert_eq!(store.get("ca.root.key").await.unwrap(), None);
        // Revisions continue after a restart and are never reused, even for a re-created key.
        let again = store.create("ca.root.key", b"key2".to_vec()).await.unwrap();
        assert!(again > rev_b, "{again} after {rev_b}");

        // A second open of the same file fails with an error naming it.
        let err = EmbeddedStore::open(&path).unwrap_err();
        assert!(err.to_string().contains(EmbeddedStore::FILE_NAME), "{err}");
    }

    #[test]
    fn wider_mode_is_tightened_and_works_without_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        std::fs::File::create(&path).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No Tokio runtime here: the calls run inline.
        let fut = store.put("k", b"v".to_vec());
        let rev = futures_block_on(fut).unwrap();
        assert_eq!(rev, 1);
    }

    /// The store holds keys: a symbolic link or a FIFO planted at its name is refused, and
    /// the link's target is left as it was.
    #[test]
    fn a_link_or_fifo_at_the_store_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::File::create(&target).unwrap();
        let link = dir.path().join("s.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = EmbeddedStore::open(&link).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotRegular {
                    what: "a symbolic link",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            std::fs::metadata(&target).unwrap().len(),
            0,
            "target untouched"
        );

        let fifo = dir.path().join("f.redb");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = EmbeddedStore::open(&fifo).unwrap_err();
        assert!(matches!(err, StoreError::NotRegular { .. }), "{err:?}");
        assert!(err.to_string().contains("FIFO"), "{err}");

        // Control: a plain path opens.
        EmbeddedStore::open(dir.path().join("ok.redb")).unwrap();
    }

    /// A minimal executor: the future never waits when no runtime is present.
    fn futures_block_on<F: std::future::Future>(fut: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("store call waited without a runtime"),
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Overwritten and deleted values linger in the file's free pages until a compaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_leaves_no_overwritten_value_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let old: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let gone: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
        for i in 0..50 {
            store
                .put(&format!("filler.{i}"), vec![b'f'; 2000])
                .await
                .unwrap();
        }
        store.put("secret", old.clone()).await.unwrap();
        store.put("deleted", gone.clone()).await.unwrap();
        // More data after them, so that their pages are freed in the middle of the file.
        for i in 50..100 {
            store
                .put(&format!("filler.{i}"), vec![b'f'; 2000])
                .await
                .unwrap();
        }
        store.put("secret", vec![b'n'; 4096]).await.unwrap();
        store.delete("deleted", None).await.unwrap();
        // Negative control: without compaction the old bytes are still in the file.
        let before = std::fs::read(&path).unwrap();
        assert!(
            contains(&before, &old[..64]),
            "the control found no overwritten value"
        );
        assert!(
            contains(&before, &gone[..64]),
            "the control found no deleted value"
        );
        assert!(store.compact().await.unwrap());
        let after = std::fs::read(&path).unwrap();
        assert!(
            !contains(&after, &old[..64]),
            "an overwritten value is still in the file"
        );
        assert!(
            !contains(&after, &gone[..64]),
            "a deleted value is still in the file"
        );
        // The store still works and holds the current values.
        assert_eq!(
            store.get("secret").await.unwrap().unwrap().value,
            vec![b'n'; 4096]
        );
        assert_eq!(store.keys("filler.").await.unwrap().len(), 100);
        store.put("after", b"x".to_vec()).await.unwrap();
    }

    #[test]
    fn debug_shows_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains(EmbeddedStore::FILE_NAME), "{shown}");
    }
}

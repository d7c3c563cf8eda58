//! [`EmbeddedStore`]: the [`Store`] semantics in one redb file.
//!
//! Layout: table `entries` maps a key to `(revision, value)`; table `meta` holds the last
//! revision handed out, so revisions keep increasing across restarts. Every conditional
//! write reads the current revision and writes inside one redb write transaction (redb allows
//! one writer at a time), which makes compare-and-swap atomic; commits are durable (fsync)
//! before the call returns.
//!
//! Group commit: writes (`put`, `create`, `update`, `delete`) that arrive while a transaction
//! commits queue up, and the next transaction takes them all: each write's check runs in
//! arrival order against the writes before it, a refused compare-and-swap fails that write
//! alone, and the transaction commits once (one fsync). Every caller of the batch gets its
//! result only after that commit returned, so no write is acknowledged before it is on disk;
//! a database error fails every write of the batch, none of which was committed. No thread
//! is added: the first waiting caller runs the batch (leader), the others block on a
//! condition variable (on the blocking pool).
//!
//! redb calls block on disk I/O, so inside a Tokio runtime each write, listing and compaction
//! runs on the blocking pool (`spawn_blocking`); outside one it runs inline. A `get` runs on the
//! calling thread: a redb read transaction waits for no writer (a commit's fsync holds no lock
//! a reader takes), and the pages it reads are in redb's cache or the kernel's once read, so
//! the hand-off to the pool and back would cost more than the read. When the database is
//! being compacted or reopened (its lock held for writing), or the read fails with an earlier
//! I/O error, the `get` goes to the blocking pool as before.

use std::collections::HashMap;
use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
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
    /// the write side, so it never runs under a live transaction; so does a reopen after an
    /// I/O error ([`Inner::reopen`]). `None`: closed after an I/O error and not reopened yet
    /// (the reopen failed; the next call tries again).
    db: RwLock<Option<Database>>,
    /// How many times the database was reopened, so that callers failing on the same
    /// poisoned database reopen it once.
    generation: AtomicU64,
    path: PathBuf,
    /// Each write's revision, for [`Store::wait_for_change`] (one process opens a file, so
    /// every writer is here).
    changes: Changes,
    /// Writes waiting for, or being committed in, one shared write transaction.
    group: Group,
}

/// A read lock on the open database, and the generation it was opened in.
struct DbGuard<'a> {
    guard: RwLockReadGuard<'a, Option<Database>>,
    generation: u64,
}

impl Deref for DbGuard<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.guard
            .as_ref()
            .expect("a DbGuard is made only over an open database")
    }
}

/// True when redb refused a call because an earlier write to the file failed.
fn is_previous_io(e: &StoreError) -> bool {
    matches!(e, StoreError::Database { source, .. } if matches!(**source, redb::Error::PreviousIo))
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
        let db = open_database(&path)?;
        let inner = Inner {
            db: RwLock::new(Some(db)),
            generation: AtomicU64::new(0),
            path,
            changes: Changes::default(),
            group: Group::default(),
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

/// Opens the redb database in the store file at `path` (created `0600` when absent, never
/// through a symbolic link, only a regular file); the parent directory exists.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let path = path.to_path_buf();
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

    Database::builder()
        .create_with_backend(backend)
        .map_err(|e| StoreError::Database {
            path: path.clone(),
            action: "open",
            key: None,
            source: Box::new(e.into()),
        })
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

type Entries<'txn> = Table<'txn, &'static str, (u64, &'static [u8])>;

/// One write waiting for its transaction (the value is wiped once the transaction is over).
enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: u64,
    },
    Delete {
        key: String,
        expected: Option<u64>,
    },
}

impl Op {
    fn action(&self) -> &'static str {
        match self {
            Op::Put { .. } => "write",
            Op::Create { .. } => "create",
            Op::Update { .. } => "update",
            Op::Delete { .. } => "delete",
        }
    }

    fn key(&self) -> &str {
        match self {
            Op::Put { key, .. }
            | Op::Create { key, .. }
            | Op::Update { key, .. }
            | Op::Delete { key, .. } => key,
        }
    }

    /// Applies the write inside an open transaction. The outer error is the database's (it
    /// fails the whole transaction); the inner one a refused compare-and-swap, which writes
    /// nothing and leaves the transaction usable. A delete returns revision 0.
    fn apply(
        &self,
        inner: &Inner,
        entries: &mut Entries<'_>,
        last: &mut u64,
    ) -> Result<Result<u64, StoreError>, StoreError> {
        match self {
            Op::Put { key, value } => inner.insert(entries, last, key, value).map(Ok),
            Op::Create { key, value } => match inner.current(entries, key)? {
                None => inner.insert(entries, last, key, value).map(Ok),
                current => Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: None,
                    current,
                })),
            },
            Op::Update {
                key,
                value,
                expected,
            } => match inner.current(entries, key)? {
                Some(current) if current == *expected => {
                    inner.insert(entries, last, key, value).map(Ok)
                }
                current => Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: Some(*expected),
                    current,
                })),
            },
            Op::Delete { key, expected } => {
                let current = inner.current(entries, key)?;
                if expected.is_some() && current != *expected {
                    return Ok(Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current,
                    }));
                }
                if current.is_some() {
                    entries
                        .remove(key.as_str())
                        .map_err(inner.db_error("delete", Some(key)))?;
                }
                Ok(Ok(0))
            }
        }
    }
}

impl Drop for Op {
    /// Values may be keys: wiped however the write ends (committed, refused, failed, or
    /// dropped unrun).
    fn drop(&mut self) {
        match self {
            Op::Put { value, .. } | Op::Create { value, .. } | Op::Update { value, .. } => {
                value.zeroize();
            }
            Op::Delete { .. } => {}
        }
    }
}

/// The group commit: writes queued while a transaction commits, and whether one is committing.
#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    /// Signalled when a batch's results are in and the next batch may start.
    turn: Condvar,
}

#[derive(Default)]
struct GroupState {
    /// Writes waiting for the next transaction, in arrival order, each with its ticket.
    queue: Vec<(u64, Op)>,
    /// Results of committed (or failed) batches not yet collected by their callers.
    done: HashMap<u64, Result<u64, StoreError>>,
    next_ticket: u64,
    /// A caller is running a batch (the leader).
    committing: bool,
    /// Transactions committed by the group, and the largest batch seen (for tests and benches).
    batches: u64,
    largest: usize,
}

/// Makes sure a leader that unwinds still hands over: its batch's callers get an error instead
/// of waiting for ever, and the next caller may lead.
struct LeaderGuard<'a> {
    inner: &'a Inner,
    tickets: Vec<(u64, &'static str)>,
    finished: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.inner.group_state();
        for (ticket, action) in self.tickets.drain(..) {
            state.done.insert(
                ticket,
                Err(StoreError::Task {
                    path: self.inner.path.clone(),
                    action,
                }),
            );
        }
        state.committing = false;
        self.inner.group.turn.notify_all();
    }
}

impl Inner {
    /// The open database, reopened first when an earlier reopen failed.
    fn db(&self) -> Result<DbGuard<'_>, StoreError> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_some() {
                return Ok(DbGuard { guard, generation });
            }
            drop(guard);
            self.reopen(generation)?;
        }
    }

    /// Closes the database and opens its file again. redb refuses every call on a database
    /// whose file failed a write (`PreviousIo`: a full disk, an I/O error) until it is closed,
    /// even once the cause is gone; a reopen (which repairs the file when the failure left it
    /// unclean) makes the store usable again without restarting the process. `seen` is the
    /// generation the caller failed on: when another call reopened meanwhile, nothing is done.
    /// Runs under the write lock, so no transaction is live.
    fn reopen(&self, seen: u64) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if db.is_some() && self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        // Closing a failed database fails too; its file is repaired on the open below.
        drop(db.take());
        self.generation.fetch_add(1, Ordering::AcqRel);
        match open_database(&self.path) {
            Ok(open) => {
                *db = Some(open);
                tracing::warn!(
                    path = %self.path.display(),
                    "store reopened after an I/O error (a full or failing disk); writes work again"
                );
                Ok(())
            }
            Err(source) => Err(StoreError::Reopen {
                path: self.path.clone(),
                source: Box::new(source),
            }),
        }
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
        f: impl Fn(&mut Entries<'_>, &mut u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let e = self.db_error(action, key)(e);
                if !is_previous_io(&e) {
                    return Err(e);
                }
                // A failed write earlier poisoned the database: reopen it and try once more
                // (nothing of this write was done yet).
                let generation = db.generation;
                drop(db);
                self.reopen(generation)?;
                let db = self.db()?;
                let txn = db.begin_write().map_err(self.db_error(action, key))?;
                return self.write_in(txn, action, key, &f);
            }
        };
        self.write_in(txn, action, key, &f)
    }

    /// The body of [`Inner::write`] on an open write transaction.
    fn write_in<T>(
        &self,
        txn: redb::WriteTransaction,
        action: &'static str,
        key: Option<&str>,
        f: &impl Fn(&mut Entries<'_>, &mut u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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

    /// Runs the read `f` on the open database; when redb refuses it for an earlier I/O error
    /// (`PreviousIo`), reopens the database and runs it once more.
    fn read<T>(&self, f: impl Fn(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let db = self.db()?;
        match f(&db) {
            Err(e) if is_previous_io(&e) => {
                let generation = db.generation;
                drop(db);
                self.reopen(generation)?;
                f(&*self.db()?)
            }
            other => other,
        }
    }

    /// Runs the read `f` on the calling thread when the database is open and its lock free
    /// for readers; `None` (nothing done) when it is held for a compaction or a reopen, is
    /// closed, or `f` failed for an earlier I/O error: the caller then takes the blocking
    /// path ([`Inner::read`], which waits for the lock and reopens).
    fn try_read_inline<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let guard = self.db.try_read().ok()?;
        let db = guard.as_ref()?;
        match f(db) {
            Err(e) if is_previous_io(&e) => None,
            other => Some(other),
        }
    }

    /// One `get` in a read transaction of `db`.
    fn get_in(&self, db: &Database, key: &str) -> Result<Option<Entry>, StoreError> {
        // The error is built only on failure (`db_error` clones the path and key up front).
        let fail = |e: redb::Error| self.db_error("read", Some(key))(e);
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| fail(e.into()))?;
        let found = entries.get(key).map_err(|e| fail(e.into()))?.map(|g| {
            let (revision, value) = g.value();
            (revision, value.to_vec())
        });
        Ok(found.map(|(revision, value)| Entry {
            key: key.to_owned(),
            value,
            revision,
        }))
    }

    fn group_state(&self) -> MutexGuard<'_, GroupState> {
        self.group
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `op` for the next write transaction and returns its result once that
    /// transaction is committed (durable) or has failed. The first caller to find no
    /// transaction running leads: it takes every queued write and commits them together,
    /// while writes arriving meanwhile queue for the next batch.
    fn submit(&self, op: Op) -> Result<u64, StoreError> {
        let mut state = self.group_state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, op));
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result;
            }
            if state.committing {
                state = self
                    .group
                    .turn
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.committing = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let mut guard = LeaderGuard {
                inner: self,
                tickets: batch.iter().map(|(t, op)| (*t, op.action())).collect(),
                finished: false,
            };
            let size = batch.len();
            let results = self.commit_batch(batch);
            state = self.group_state();
            state.done.extend(results);
            state.batches += 1;
            state.largest = state.largest.max(size);
            state.committing = false;
            guard.finished = true;
            self.group.turn.notify_all();
        }
    }

    /// Runs `batch` in one write transaction, each write's check in order against the writes
    /// before it, and commits it once. A refused compare-and-swap fails that write alone; a
    /// database error fails every write of the batch (none is committed). One write alone
    /// goes through [`Inner::write`], so its errors are exactly those of a lone transaction.
    fn commit_batch(&self, batch: Vec<(u64, Op)>) -> Vec<(u64, Result<u64, StoreError>)> {
        let results = if let [(ticket, op)] = batch.as_slice() {
            let result = self.write(op.action(), Some(op.key()), |entries, last| {
                op.apply(self, entries, last)?
            });
            vec![(*ticket, result)]
        } else {
            match self.write("write", None, |entries, last| {
                batch
                    .iter()
                    .map(|(_, op)| op.apply(self, entries, last))
                    .collect::<Result<Vec<_>, StoreError>>()
            }) {
                Ok(results) => batch.iter().map(|(t, _)| *t).zip(results).collect(),
                Err(cause) => {
                    let shared = cause.to_string();
                    let mut cause = Some(cause);
                    batch
                        .iter()
                        .map(|(ticket, op)| {
                            let error = cause.take().unwrap_or_else(|| StoreError::Database {
                                path: self.path.clone(),
                                action: op.action(),
                                key: Some(op.key().to_owned()),
                                source: Box::new(redb::Error::Io(std::io::Error::other(format!(
                                    "the write transaction this write shared failed: {shared}"
                                )))),
                            });
                            (*ticket, Err(error))
                        })
                        .collect()
                }
            }
        };
        // Dropping the batch wipes its values.
        drop(batch);
        results
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
        if let Some(found) = self.inner.try_read_inline(|db| self.inner.get_in(db, key)) {
            return found;
        }
        let key = key.to_owned();
        self.run("read", move |inner| inner.read(|db| inner.get_in(db, &key)))
            .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let op = Op::Put {
            key: key.to_owned(),
            value,
        };
        let written = self.run("write", move |inner| inner.submit(op)).await?;
        self.inner.changes.announce(key, written);
        Ok(written)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        validate_key(key)?;
        let op = Op::Create {
            key: key.to_owned(),
            value,
        };
        let written = self.run("create", move |inner| inner.submit(op)).await?;
        self.inner.changes.announce(key, written);
        Ok(written)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        let op = Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_revision,
        };
        let written = self.run("update", move |inner| inner.submit(op)).await?;
        self.inner.changes.announce(key, written);
        Ok(written)
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<(), StoreError> {
        validate_key(key)?;
        let op = Op::Delete {
            key: key.to_owned(),
            expected: expected_revision,
        };
        self.run("delete", move |inner| inner.submit(op).map(drop))
            .await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.run("list keys", move |inner| {
            inner.read(|db| {
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
        })
        .await
    }

    /// Runs redb's compaction (pages moved to the front, the file truncated), with every
    /// other call of this store waiting meanwhile. Blocks for as long as the file takes to
    /// rewrite.
    async fn compact(&self) -> Result<bool, StoreError> {
        self.run("compact", |inner| {
            // Open (reopened after an I/O error if need be), then held alone.
            drop(inner.db()?);
            let mut guard = inner.db.write().unwrap_or_else(PoisonError::into_inner);
            let Some(db) = guard.as_mut() else {
                return Err(StoreError::Reopen {
                    path: inner.path.clone(),
                    source: Box::new(StoreError::Task {
                        path: inner.path.clone(),
                        action: "compact",
                    }),
                });
            };
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

    /// A `get` runs on the calling thread, so it answers while the blocking pool is busy; a
    /// listing (control) still goes through the pool and waits for it.
    #[test]
    fn get_answers_while_the_blocking_pool_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let rev = store.put("role.mesh", b"r".to_vec()).await.unwrap();
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let (busy, started) = tokio::sync::oneshot::channel();
            let blocker = tokio::task::spawn_blocking(move || {
                busy.send(()).unwrap();
                wait.recv().ok();
            });
            started.await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), store.get("role.mesh"))
                .await
                .expect("get waited for the busy blocking pool")
                .unwrap()
                .unwrap();
            assert_eq!((got.value.as_slice(), got.revision), (&b"r"[..], rev));
            assert_eq!(store.get("role.other").await.unwrap(), None);
            // Control: keys() needs the pool, which is busy.
            let keys = store.keys("role.");
            let mut keys = std::pin::pin!(keys);
            assert!(
                tokio::time::timeout(Duration::from_millis(300), &mut keys)
                    .await
                    .is_err(),
                "keys() answered although the blocking pool was busy"
            );
            release.send(()).unwrap();
            blocker.await.unwrap();
            assert_eq!(keys.await.unwrap(), vec!["role.mesh".to_owned()]);
        });
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

    fn op_create(key: &str, value: &[u8]) -> Op {
        Op::Create {
            key: key.to_owned(),
            value: value.to_vec(),
        }
    }

    /// Many concurrent creates of distinct keys: all succeed with distinct revisions, were
    /// coalesced into fewer transactions than writes, and are all there after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_are_grouped_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let rev = store
                        .create(&format!("serial.{i}"), format!("v{i}").into_bytes())
                        .await
                        .unwrap();
                    (i, rev)
                })
            })
            .collect();
        let mut written = Vec::new();
        for task in tasks {
            written.push(task.await.unwrap());
        }
        let mut revisions: Vec<u64> = written.iter().map(|(_, rev)| *rev).collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), 200, "revisions are distinct");
        let (batches, largest) = {
            let state = store.inner.group_state();
            (state.batches, state.largest)
        };
        assert!(largest > 1, "no two writes shared a transaction");
        assert!(batches < 200, "{batches} transactions for 200 writes");
        drop(store);

        let store = EmbeddedStore::open(&path).unwrap();
        for (i, rev) in written {
            let entry = store.get(&format!("serial.{i}")).await.unwrap().unwrap();
            assert_eq!(entry.value, format!("v{i}").into_bytes());
            assert_eq!(entry.revision, rev);
        }
        assert_eq!(store.keys("serial.").await.unwrap().len(), 200);
        // Revisions continue above every one handed out in a batch.
        let next = store.put("after", b"x".to_vec()).await.unwrap();
        assert!(next > *revisions.last().unwrap());
    }

    /// Through the public calls, under concurrency: of many creates of one key exactly one
    /// wins, and compare-and-swap increments from many tasks lose no update.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_of_one_key_and_cas_increments() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.create("token.once", vec![i]).await })
            })
            .collect();
        let mut won = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(rev) => won.push(rev),
                Err(StoreError::Conflict { current, .. }) => refused.push(current),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one create wins");
        assert_eq!(refused.len(), 49);
        // Each refusal names a current revision, the winner's (no other write touched the key).
        assert!(refused.iter().all(|c| *c == Some(won[0])), "{refused:?}");

        store
            .put("counter", 0u32.to_be_bytes().to_vec())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        loop {
                            let entry = store.get("counter").await.unwrap().unwrap();
                            let n = u32::from_be_bytes(entry.value.try_into().unwrap());
                            match store
                                .update("counter", (n + 1).to_be_bytes().to_vec(), entry.revision)
                                .await
                            {
                                Ok(_) => break,
                                Err(StoreError::Conflict { .. }) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let entry = store.get("counter").await.unwrap().unwrap();
        assert_eq!(u32::from_be_bytes(entry.value.try_into().unwrap()), 160);
    }

    /// Creates of one key in one batch: exactly the first wins, the others see its revision.
    #[test]
    fn same_key_creates_in_one_batch_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let results = store.inner.commit_batch(vec![
            (1, op_create("token.a", b"first")),
            (2, op_create("token.a", b"second")),
            (3, op_create("token.a", b"third")),
        ]);
        let won = match &results[0] {
            (1, Ok(rev)) => *rev,
            other => panic!("{other:?}"),
        };
        for (ticket, result) in &results[1..] {
            match result {
                Err(StoreError::Conflict {
                    expected: None,
                    current: Some(current),
                    ..
                }) => assert_eq!(*current, won, "ticket {ticket}"),
                other => panic!("ticket {ticket}: {other:?}"),
            }
        }
        let entry = futures_block_on(store.get("token.a")).unwrap().unwrap();
        assert_eq!(
            (entry.value.as_slice(), entry.revision),
            (&b"first"[..], won)
        );
    }

    /// Compare-and-swap chains inside one batch: each write is checked against the ones
    /// before it; a stale update and a stale delete fail alone, the others commit.
    #[test]
    fn cas_chain_in_one_batch_and_a_failure_fails_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let base = futures_block_on(store.put("other", b"o".to_vec())).unwrap();
        let c = base + 1;
        let results = store.inner.commit_batch(vec![
            (10, op_create("k", b"v1")),
            (
                11,
                Op::Update {
                    key: "k".into(),
                    value: b"v2".to_vec(),
                    expected: c,
                },
            ),
            // Stale: expects the create's revision, the update moved it on.
            (
                12,
                Op::Update {
                    key: "k".into(),
                    value: b"stale".to_vec(),
                    expected: c,
                },
            ),
            (
                13,
                Op::Update {
                    key: "k".into(),
                    value: b"v3".to_vec(),
                    expected: c + 1,
                },
            ),
            (
                14,
                Op::Delete {
                    key: "other".into(),
                    expected: Some(base + 100),
                },
            ),
            (
                15,
                Op::Put {
                    key: "p".into(),
                    value: b"p".to_vec(),
                },
            ),
            (
                16,
                Op::Delete {
                    key: "other".into(),
                    expected: Some(base),
                },
            ),
        ]);
        let tickets: Vec<u64> = results.iter().map(|(t, _)| *t).collect();
        assert_eq!(tickets, [10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(results[0].1.as_ref().unwrap(), &c);
        assert_eq!(results[1].1.as_ref().unwrap(), &(c + 1));
        assert!(
            matches!(
                results[2].1,
                Err(StoreError::Conflict { expected: Some(e), current: Some(cur), .. })
                    if e == c && cur == c + 1
            ),
            "{:?}",
            results[2].1
        );
        // The failed update used no revision.
        assert_eq!(results[3].1.as_ref().unwrap(), &(c + 2));
        assert!(
            matches!(results[4].1, Err(StoreError::Conflict { current: Some(cur), .. }) if cur == base),
            "{:?}",
            results[4].1
        );
        assert_eq!(results[5].1.as_ref().unwrap(), &(c + 3));
        assert!(results[6].1.is_ok(), "{:?}", results[6].1);
        drop(store);

        let store = EmbeddedStore::open(&path).unwrap();
        let entry = futures_block_on(store.get("k")).unwrap().unwrap();
        assert_eq!(
            (entry.value.as_slice(), entry.revision),
            (&b"v3"[..], c + 2)
        );
        assert_eq!(futures_block_on(store.get("other")).unwrap(), None);
        assert_eq!(
            futures_block_on(store.get("p")).unwrap().unwrap().revision,
            c + 3
        );
        // The last revision of the batch was stored.
        assert_eq!(futures_block_on(store.put("q", vec![])).unwrap(), c + 4);
    }

    /// A batch whose every write is refused commits nothing and uses no revision; control:
    /// the same create alone succeeds.
    #[test]
    fn a_batch_of_refused_writes_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let rev = futures_block_on(store.put("k", b"v".to_vec())).unwrap();
        let results = store.inner.commit_batch(vec![
            (1, op_create("k", b"x")),
            (
                2,
                Op::Update {
                    key: "absent".into(),
                    value: b"x".to_vec(),
                    expected: 1,
                },
            ),
        ]);
        assert!(
            results
                .iter()
                .all(|(_, r)| matches!(r, Err(StoreError::Conflict { .. })))
        );
        let entry = futures_block_on(store.get("k")).unwrap().unwrap();
        assert_eq!((entry.value.as_slice(), entry.revision), (&b"v"[..], rev));
        let results = store.inner.commit_batch(vec![(3, op_create("new", b"x"))]);
        assert_eq!(results[0].1.as_ref().unwrap(), &(rev + 1));
    }

    #[test]
    fn debug_shows_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path()).unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains(EmbeddedStore::FILE_NAME), "{shown}");
    }
}

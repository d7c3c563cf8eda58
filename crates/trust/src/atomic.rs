//! Atomic outputs: every writer goes through here, so a reader sees the old store or the new one,
//! never a partial or empty one, even if the writer is killed mid-write.
//!
//! - A file is written to a temporary file beside its target, fsynced, and renamed over it.
//!   Certificates are 0644; a private key ([`write_private_file`]) is 0600 from the moment its
//!   temporary file is created, and is never written through a link or into a FIFO or device
//!   (public outputs are, so that `--pem /dev/stdout` works).
//! - A directory is filled in a temporary directory beside its target, synced, and swapped with
//!   the live one in one `renameat2(RENAME_EXCHANGE)` call (Linux 3.15+); the old contents are
//!   removed afterwards. A target that does not exist yet is simply renamed into place.
//!
//! Temporary names start with `.<target>.anchorage-tmp-<pid>-`; leftovers of a killed writer are
//! removed by the next run. This module owns durability and atomicity only, not formats.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{CWD, RenameFlags};

/// Mode of certificate files and directories: readable by every TLS client on the machine.
const PUBLIC_FILE_MODE: u32 = 0o644;
const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of files holding private keys: the owner alone.
const PRIVATE_FILE_MODE: u32 = 0o600;

fn split(target: &Path) -> io::Result<(PathBuf, OsString)> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
    })?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_owned()))
}

fn temp_prefix(name: &OsString) -> String {
    format!(".{}.anchorage-tmp-", name.to_string_lossy())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes temporary entries for `name` left by writers that no longer run.
fn remove_stale(parent: &Path, name: &OsString) {
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        // Our own pid means an earlier run that had it: in a container every run may be pid 1.
        let ours = pid == std::process::id().to_string();
        if !ours && !pid.is_empty() && Path::new("/proc").join(pid).exists() {
            continue; // a live writer (or a reused pid): leave it alone
        }
        let path = entry.path();
        tracing::debug!(path = %path.display(), "removing a killed writer's temporary output");
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Removes temporary entries beside `target` left by killed writers. [`write_file`] and
/// [`replace_dir`] do this themselves; a writer that leaves an unchanged target alone calls it.
pub fn remove_stale_beside(target: &Path) {
    if let Ok((parent, name)) = split(target) {
        remove_stale(&parent, &name);
    }
}

/// Whether `path` is a regular file (not a link) with mode 0644 holding exactly `contents`,
/// owned by us and with no other name (see [`holds_at`]).
///
/// Writers use it to leave an unchanged output alone, so processes watching it (inotify reloaders,
/// kubelet's ConfigMap sync) are not woken for nothing. Any error reads as "no".
pub fn file_holds(path: &Path, contents: &[u8]) -> bool {
    let Ok((parent, name)) = split(path) else {
        return false;
    };
    File::open(parent).is_ok_and(|dir| holds_at(&dir, &name, contents))
}

/// Whether a file found where an output goes may be kept (or hard-linked into a new tree) as
/// ours: owned by our effective uid, with exactly `links` names.
///
/// A file another user owns can be rewritten by them after we "wrote" it; a file with a name we
/// did not make (a hard link elsewhere) can be rewritten through that name by whoever made it.
/// Either is rewritten instead, into a new inode of ours.
fn is_ours(meta: &fs::Metadata, links: u64) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.uid() == rustix::process::geteuid().as_raw() && meta.nlink() == links
}

/// Whether `name` inside the open directory `dir` is a regular file (links are not followed)
/// with mode 0644 holding exactly `contents`, owned by our effective uid and with a link count
/// of 1 (no other name). Any error reads as "no".
pub fn holds_at(dir: &File, name: impl AsRef<Path>, contents: &[u8]) -> bool {
    held_at(dir, name.as_ref(), contents).is_some()
}

/// [`holds_at`], returning the file's (device, inode) when it holds `contents`.
fn held_at(dir: &File, name: &Path, contents: &[u8]) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;

    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // A cheap look first, so that nothing but a regular file of the right size is opened.
    let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
        || u64::try_from(stat.st_size).ok() != Some(contents.len() as u64)
    {
        return None;
    }
    // Then the facts of what was opened (it may have been swapped since): NONBLOCK so that a
    // FIFO put there meanwhile cannot hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let file = File::from(rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?);
    let meta = file.metadata().ok()?;
    if !meta.is_file()
        || meta.mode() & 0o7777 != PUBLIC_FILE_MODE
        || meta.len() != contents.len() as u64
        || !is_ours(&meta, 1)
    {
        return None;
    }
    let mut held = Vec::with_capacity(contents.len());
    io::Read::read_to_end(&mut &file, &mut held).ok()?;
    (held == contents).then_some((meta.dev(), meta.ino()))
}

/// Hard-links `name` of the open directory `dir` to `dest` when it holds exactly `contents`
/// (as [`holds_at`] judges: ours, 0644, no other name), and checks the result: `dest` must be
/// that very file, still ours, with exactly two names (the live one and `dest`). Returns `false`
/// when anything differs, `dest` then being removed, so that the caller writes the file anew.
///
/// The link count is 2 only between the new tree's creation and the old tree's removal, and
/// only through the link made here: any other link, or a file that is not ours, is never
/// carried into the new tree.
pub fn link_if_held(dir: &File, name: impl AsRef<Path>, contents: &[u8], dest: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let name = name.as_ref();
    let Some(id) = held_at(dir, name, contents) else {
        return false;
    };
    if rustix::fs::linkat(dir, name, CWD, dest, rustix::fs::AtFlags::empty()).is_err() {
        return false;
    }
    let linked = fs::symlink_metadata(dest)
        .is_ok_and(|meta| meta.is_file() && (meta.dev(), meta.ino()) == id && is_ours(&meta, 2));
    if !linked {
        let _ = fs::remove_file(dest);
    }
    linked
}

/// Whether `path` is a real directory (not a link) with mode 0755, owned by our effective uid
/// (a directory another user owns can have its entries swapped by them at any time).
pub fn is_public_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_dir()
            && m.permissions().mode() & 0o7777 == PUBLIC_DIR_MODE
            && m.uid() == rustix::process::geteuid().as_raw()
    })
}

/// Writes `contents` to `target` atomically, with mode 0644, creating missing parent directories.
///
/// If `target` is a symbolic link, the link itself is replaced by the new file.
///
/// A target that is (or links to) a device, FIFO or socket, such as `/dev/stdout` or `/dev/null`,
/// is not a store to swap: the bytes are written straight to it, and it is never replaced.
pub fn write_file(target: &Path, contents: &[u8]) -> io::Result<()> {
    write_public_file(target, contents)
}

/// Writes a private file (a key, a seed, a token: anything secret) to `target` atomically, mode
/// 0600 whatever the umask, and never wider at any moment. Every private output goes through
/// here.
///
/// Unlike [`write_file`], nothing is ever written *through* the target: if `target` exists and
/// is not a regular file (a symbolic link, even a dangling one, a FIFO, a device, a socket or a
/// directory) the write is refused with [`io::ErrorKind::InvalidInput`] and a message naming
/// what is there, before anything is created. Otherwise the bytes go to a new temporary file
/// beside it, created `O_CREAT | O_EXCL | O_NOFOLLOW` with mode 0600 through a handle on the
/// parent directory, fsynced, and renamed over `target` (a rename replaces whatever name is
/// there at that moment, never following it).
pub fn write_private_file(target: &Path, contents: &[u8]) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let (parent, name) = split(target)?;
    match fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_file() => return Err(not_a_regular_file(&meta)),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(&parent)?;
    remove_stale(&parent, &name);
    let dir = File::from(rustix::fs::open(
        &parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    let tmp_name = format!("{}{}", temp_prefix(&name), unique_suffix());
    let file = File::from(rustix::fs::openat(
        &dir,
        &tmp_name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(PRIVATE_FILE_MODE),
    )?);
    let written = (|| {
        // The umask can only narrow the mode; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        (&file).write_all(contents)?;
        file.sync_all()?;
        rustix::fs::renameat(&dir, &tmp_name, &dir, &name)?;
        Ok::<_, io::Error>(())
    })();
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, &tmp_name, rustix::fs::AtFlags::empty());
        return Err(e);
    }
    dir.sync_all()
}

/// The refusal of a private output whose path holds something other than a regular file.
fn not_a_regular_file(meta: &fs::Metadata) -> io::Error {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = meta.file_type();
    let what = if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the path is {what}: private keys and seeds are written only as a regular file, never through a link or into a FIFO, device, socket or directory; remove it or give another path"
        ),
    )
}

fn write_public_file(target: &Path, contents: &[u8]) -> io::Result<()> {
    let (parent, name) = split(target)?;
    if target.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "the output path is a directory; give a file name",
        ));
    }
    if fs::metadata(target).is_ok_and(|m| !m.is_file()) {
        return fs::OpenOptions::new()
            .write(true)
            .open(target)?
            .write_all(contents);
    }
    fs::create_dir_all(&parent)?;
    remove_stale(&parent, &name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{}{}-", temp_prefix(&name), std::process::id()))
        // Created owner-only (the umask can only narrow it), widened below before the rename:
        // nobody reads a half-written store.
        .permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .tempfile_in(&parent)?;
    tmp.write_all(contents)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(PUBLIC_FILE_MODE))?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    sync_dir(&parent)
}

/// Replaces the directory `target` with one filled by `fill`, atomically.
///
/// `fill` receives an empty private directory on the same file system; whatever it writes there
/// becomes `target` in one step. If `fill` fails, nothing changes. `target` must be a directory (or
/// a symbolic link) if it exists; missing parent directories are created.
pub fn replace_dir(target: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let (parent, name) = split(target)?;
    let existing = match fs::symlink_metadata(target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if existing
        .as_ref()
        .is_some_and(|m| !m.is_dir() && !m.file_type().is_symlink())
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the output path exists and is not a directory",
        ));
    }
    fs::create_dir_all(&parent)?;
    remove_stale(&parent, &name);
    let tmp = parent.join(format!("{}{}", temp_prefix(&name), unique_suffix()));
    fs::create_dir(&tmp)?;
    let result = fill_and_swap(&tmp, target, existing.is_some(), fill);
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    sync_dir(&parent)
}

fn fill_and_swap(
    tmp: &Path,
    target: &Path,
    exists: bool,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    fs::set_permissions(tmp, fs::Permissions::from_mode(PUBLIC_DIR_MODE))?;
    fill(tmp)?;
    // One syncfs for the whole tree is far cheaper than an fsync per file, and just as durable
    // for our purpose: everything is on disk before the new directory becomes visible.
    let dir = File::open(tmp)?;
    rustix::fs::syncfs(&dir)?;
    dir.sync_all()?;
    if !exists {
        return fs::rename(tmp, target);
    }
    rustix::fs::renameat_with(CWD, tmp, CWD, target, RenameFlags::EXCHANGE).map_err(|e| {
        if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this file system cannot swap directories atomically (renameat2 RENAME_EXCHANGE); write to a new path or a file system that supports it",
            )
        } else {
            io::Error::from(e)
        }
    })?;
    // `tmp` now holds the old contents (a directory, or the symbolic link that was there). The new
    // output is in place, so failing to remove the old one must not report the write as failed
    // (callers say "the previous output is unchanged" on error); the next run retries.
    let removed = match fs::symlink_metadata(tmp) {
        Ok(meta) if meta.is_dir() => remove_tree(tmp),
        _ => fs::remove_file(tmp),
    };
    if let Err(error) = removed {
        tracing::warn!(
            path = %tmp.display(),
            %error,
            "the new output is in place but the previous one could not be removed; the next run retries"
        );
    }
    Ok(())
}

/// Removes a directory tree, unlinking the entries of the top directory on all cores: a hashed
/// directory holds thousands of files and removal is system-call bound.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries: Vec<(PathBuf, bool)> = fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir()))))
        .collect::<io::Result<_>>()?;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(entries.len().div_ceil(256))
        .max(1);
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().try_for_each(|(path, is_dir)| {
                        if *is_dir {
                            fs::remove_dir_all(path)
                        } else {
                            fs::remove_file(path)
                        }
                    })
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("removal thread panicked")))
        })
    })?;
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parents_are_created() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("a/b/bundle.pem"), b"x").unwrap();
        replace_dir(&dir.path().join("c/d/certs"), |_| Ok(())).unwrap();
        assert!(dir.path().join("c/d/certs").is_dir());
    }

    #[test]
    fn a_device_or_fifo_is_written_through_never_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        // A FIFO stands for every non-file target: testing on /dev/null itself would break the
        // machine if this regressed.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_file(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        // Nor is such a target ever swapped for a directory.
        assert!(replace_dir(&fifo, |_| Ok(())).is_err());
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn file_is_replaced_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Only the output remains: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_file_is_0600_and_replaces_a_wider_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_file(&path, b"public").unwrap();
        write_private_file(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Public files keep 0644.
        write_file(&path, b"public again").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    /// Issue 19 item 9: a key written to a path that is a symbolic link to a FIFO went through
    /// the link into the FIFO, to whoever reads it. A private file is now written only as a
    /// regular file: any other target (a link, FIFO, device, socket or directory) is refused at
    /// once, and the FIFO's reader gets nothing.
    #[test]
    fn a_private_file_is_never_written_through_a_link_or_into_a_fifo() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // A reader waiting on the FIFO, as an attacker would: open it without blocking, so
        // the test cannot hang whatever the writer does.
        let reader = File::from(
            rustix::fs::open(
                &fifo,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
        );
        let link = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let dangling = dir.path().join("seed");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let a_dir = dir.path().join("a-dir");
        fs::create_dir(&a_dir).unwrap();
        for (target, what) in [
            (&link, "symbolic link"),
            (&fifo, "FIFO"),
            (&dangling, "symbolic link"),
            (&a_dir, "directory"),
        ] {
            let started = std::time::Instant::now();
            let error = write_private_file(target, b"secret").unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            let message = error.to_string();
            assert!(message.contains(what), "{message}");
            assert!(message.contains("regular file"), "{message}");
        }
        let mut read = Vec::new();
        let _ = io::Read::read_to_end(&mut &reader, &mut read);
        assert!(read.is_empty(), "the FIFO's reader got {read:?}");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(!dir.path().join("nowhere").exists());
        // Nothing was left beside them.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
        // Positive control: a plain path, new or an existing file, is written 0600.
        for _ in 0..2 {
            let plain = dir.path().join("plain.key");
            write_private_file(&plain, b"secret").unwrap();
            let meta = fs::symlink_metadata(&plain).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            assert_eq!(fs::read(&plain).unwrap(), b"secret");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 5);
    }

    #[test]
    fn directory_is_swapped_and_old_contents_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs");
        replace_dir(&target, |d| fs::File::create(d.join("old")).map(drop)).unwrap();
        replace_dir(&target, |d| fs::File::create(d.join("new")).map(drop)).unwrap();
        let names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("new")]);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers beside the target"
        );
    }

    #[test]
    fn failed_fill_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs");
        replace_dir(&target, |d| fs::File::create(d.join("keep")).map(drop)).unwrap();
        let err = replace_dir(&target, |_| Err(io::Error::other("boom"))).unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert!(target.join("keep").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs");
        // pid 0 is never a live process in /proc.
        fs::create_dir(dir.path().join(".certs.anchorage-tmp-0-123")).unwrap();
        // Our own pid: an earlier run that had it (in a container every run may be pid 1).
        let ours = format!(".certs.anchorage-tmp-{}-456", std::process::id());
        fs::create_dir(dir.path().join(ours)).unwrap();
        // A live process's (pid 1, init) is left alone.
        fs::create_dir(dir.path().join(".certs.anchorage-tmp-1-789")).unwrap();
        replace_dir(&target, |_| Ok(())).unwrap();
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let expect = if std::process::id() == 1 {
            vec!["certs"]
        } else {
            vec![".certs.anchorage-tmp-1-789", "certs"]
        };
        assert_eq!(left, expect);
    }

    /// Makes a file impossible to unlink until dropped: immutable (root, on ext4 and the like),
    /// or else its directory read-only (enough for anyone but root).
    struct Unremovable {
        file: PathBuf,
        immutable: bool,
    }

    impl Unremovable {
        fn new(file: &Path) -> Option<Self> {
            let f = File::open(file).ok()?;
            let flags = rustix::fs::ioctl_getflags(&f).ok()?;
            if rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::IMMUTABLE).is_ok() {
                return Some(Self {
                    file: file.to_owned(),
                    immutable: true,
                });
            }
            let parent = file.parent()?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o555)).ok()?;
            let guard = Self {
                file: file.to_owned(),
                immutable: false,
            };
            // Root ignores permissions: no way to make the file unremovable then.
            let probe = parent.join("probe");
            File::create(&probe).is_err().then_some(guard)
        }

        /// Where the file is now that its directory was swapped out.
        fn moved_to(&mut self, dir: &Path) {
            self.file = dir.join(self.file.file_name().unwrap_or_default());
        }
    }

    impl Drop for Unremovable {
        fn drop(&mut self) {
            if self.immutable {
                if let Ok(f) = File::open(&self.file) {
                    let _ = rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::empty());
                }
            } else if let Some(parent) = self.file.parent() {
                let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
            }
        }
    }

    #[test]
    fn swapped_directory_counts_as_written_even_if_the_old_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs");
        replace_dir(&target, |d| fs::File::create(d.join("old")).map(drop)).unwrap();
        let Some(mut guard) = Unremovable::new(&target.join("old")) else {
            anchorage_test_support::peer::skip(
                "cannot make a file unremovable here (root without chattr +i)",
            );
            return;
        };
        let result = replace_dir(&target, |d| fs::File::create(d.join("new")).map(drop));
        let leftovers: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &target)
            .collect();
        if let [old_tree] = leftovers.as_slice() {
            guard.moved_to(old_tree);
        }
        drop(guard);
        result.expect("the new directory is in place: the write succeeded");
        assert!(target.join("new").exists() && !target.join("old").exists());
        // The old tree stays under a temporary name, which the next writer process removes (see
        // `stale_temporaries_of_dead_writers_are_removed`; this process is alive, so not here).
        assert_eq!(leftovers.len(), 1);
        let name = leftovers[0].file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(".certs.anchorage-tmp-"), "{name}");
    }

    #[test]
    fn refuses_to_replace_a_regular_file_with_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs");
        write_file(&target, b"x").unwrap();
        assert!(replace_dir(&target, |_| Ok(())).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"x");
    }
}

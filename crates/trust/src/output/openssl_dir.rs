//! An OpenSSL hashed directory (`CApath`, `SSL_CERT_DIR`, `curl --capath`) written atomically.
//!
//! The names (`<hash>.<n>`, numbered as `openssl rehash` numbers them) and the layouts' entries
//! are `anchorage_bundle`'s ([`hashed_names`], [`HashedName::dir_entries`]); this module compares
//! them with the live directory and writes them.

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anchorage_bundle::{
    DirEntry, DirLayout, HashedName, PemOptions, hashed_names, is_plain_file_name, render_pem,
};

use crate::Bundle;
use crate::atomic;
use crate::error::TrustError;
use crate::output::Written;

/// Options for [`write_openssl_dir`].
#[derive(Clone, Debug, Default)]
pub struct OpensslDirOptions {
    /// Layout of the entries.
    pub layout: DirLayout,
    /// Also write the whole bundle as PEM under this file name inside the directory (for example
    /// `ca-certificates.crt`, to mount the directory over `/etc/ssl/certs`).
    pub bundle_file: Option<String>,
}

/// Writes the hashed directory to `dir`, replacing any previous one atomically.
///
/// When `dir` already holds exactly this directory (the same names, bytes, links and modes, and
/// nothing else) it is left alone and `changed` is `false`.
pub fn write_openssl_dir(
    bundle: &Bundle,
    dir: &Path,
    options: &OpensslDirOptions,
) -> Result<Written, TrustError> {
    if let Some(file) = &options.bundle_file
        && !is_plain_file_name(file)
    {
        return Err(TrustError::Output {
            path: dir.join(file),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the bundle file inside the hashed directory must be a plain file name such as ca-certificates.crt (no `/`, no `..`)",
            ),
        });
    }
    let names = hashed_names(bundle);
    let written = |changed| Written {
        entries: names.len(),
        changed,
    };
    let planned = |name: &HashedName| name.dir_entries(bundle, options.layout);
    let bundle_pem = options
        .bundle_file
        .as_ref()
        .map(|file| (file, render_pem(bundle, &PemOptions::default())));
    // The live directory, opened once: compared against, and (when it changed) the source of the
    // certificates it keeps. Every lookup goes through this handle, so a concurrent swap cannot
    // slip other bytes in.
    let live = atomic::is_public_dir(dir)
        .then(|| File::open(dir).ok())
        .flatten();
    if let Some(live) = &live {
        let bundle_file = bundle_pem.iter().map(|(file, pem)| DirEntry::File {
            name: (*file).clone(),
            bytes: pem.clone().into_bytes(),
        });
        if dir_holds(live, names.iter().flat_map(planned).chain(bundle_file)) {
            atomic::remove_stale_beside(dir);
            return Ok(written(false));
        }
    }
    // A changed directory usually keeps most of its certificates: those are hard-linked from the
    // live directory instead of being written again (no new inode, no data to write or sync,
    // which is most of the cost on a disk).
    let chmod = umask_narrows_public_files();
    let place = |tmp: &Path, entry: DirEntry| -> std::io::Result<()> {
        match entry {
            DirEntry::File { name, bytes } => {
                let dest = tmp.join(&name);
                if let Some(live) = &live
                    && atomic::link_if_held(live, &name, &bytes, &dest)
                {
                    return Ok(());
                }
                write_new(&dest, &bytes, chmod)
            }
            DirEntry::Link { name, target } => std::os::unix::fs::symlink(target, tmp.join(name)),
        }
    };
    let fill = |tmp: &Path| -> std::io::Result<()> {
        // Creating thousands of files is system-call bound: spread it over the cores.
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(names.len().div_ceil(256))
            .max(1);
        let chunk = names.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .flat_map(planned)
                            .try_for_each(|entry| place(tmp, entry))
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")))
            })
        })?;
        if let Some((file, pem)) = &bundle_pem {
            write_new(&tmp.join(file), pem.as_bytes(), chmod)?;
        }
        Ok(())
    };
    atomic::replace_dir(dir, fill).map_err(|source| TrustError::Output {
        path: dir.to_owned(),
        source,
    })?;
    Ok(written(true))
}

/// Whether the open directory `dir` holds exactly the planned entries and nothing else. Any error
/// reads as "no".
fn dir_holds(dir: &File, plan: impl Iterator<Item = DirEntry>) -> bool {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return false;
    };
    let mut present = 0usize;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        if !matches!(entry.file_name().to_bytes(), b"." | b"..") {
            present += 1;
        }
    }
    let mut planned = 0usize;
    for entry in plan {
        planned += 1;
        let ok = match &entry {
            DirEntry::File { name, bytes } => atomic::holds_at(dir, name, bytes),
            DirEntry::Link { name, target } => {
                rustix::fs::readlinkat(dir, name.as_str(), Vec::new())
                    .is_ok_and(|t| t.as_bytes() == target.as_bytes())
            }
        };
        if !ok {
            return false;
        }
    }
    // Every planned name exists and names are unique, so equal counts mean nothing else is there.
    present == planned
}

/// Whether the process umask would take bits off mode 0644. Read from `/proc/self/status`
/// (Linux 4.7+) because `umask(2)` can only be read by setting it, which races with other
/// threads; when it cannot be read, assume it does.
fn umask_narrows_public_files() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .is_none_or(|umask| umask & 0o644 != 0)
}

/// Creates a new file inside the private temporary directory, mode 0644 whatever the umask
/// (`chmod`: the umask narrows it, so set it explicitly; a trust store is read by every client).
/// No fsync here: the directory is synced once as a whole before it is swapped in.
fn write_new(path: &Path, contents: &[u8], chmod: bool) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    if chmod {
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;
    use std::path::PathBuf;

    use anchorage_test_support::pki;
    use anchorage_x509::{Certificate, Position};

    use super::*;
    use crate::source::Origin;

    fn origin() -> Origin {
        Origin {
            source: "test".into(),
            detail: None,
            position: Position::default(),
        }
    }

    fn bundle_of(certs: impl IntoIterator<Item = Certificate>) -> Bundle {
        Bundle::new(certs.into_iter().map(|c| (c, origin())))
    }

    fn bundle(names: &[&str]) -> Bundle {
        bundle_of(
            names
                .iter()
                .map(|n| Certificate::from_der(&pki::root_ca(n).der).unwrap()),
        )
    }

    /// (name, inode, mtime) of every entry, sorted.
    fn snapshot(dir: &Path) -> Vec<(String, u64, i64)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.path().symlink_metadata().unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    m.ino(),
                    m.mtime_nsec(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_identical_directory_is_left_alone_and_any_difference_rewrites_it() {
        for layout in [DirLayout::Files, DirLayout::Links] {
            let tmp = anchorage_test_support::tempdir().unwrap();
            let dir = tmp.path().join("certs");
            let b = bundle(&["Same A", "Same B"]);
            let options = OpensslDirOptions {
                layout,
                bundle_file: Some("ca-certificates.crt".into()),
            };
            assert!(write_openssl_dir(&b, &dir, &options).unwrap().changed);
            let before = snapshot(&dir);
            let again = write_openssl_dir(&b, &dir, &options).unwrap();
            assert_eq!((again.changed, again.entries), (false, 2), "{layout:?}");
            assert_eq!(snapshot(&dir), before, "{layout:?}: nothing touched");

            // Each kind of drift is repaired by a rewrite.
            let some_file = before
                .iter()
                .map(|(n, ..)| dir.join(n))
                .find(|p| p.symlink_metadata().unwrap().is_file())
                .unwrap();
            let drifts: [(&str, &dyn Fn()); 3] = [
                ("extra file", &|| {
                    drop(fs::File::create(dir.join("extra")).unwrap());
                }),
                ("narrowed mode", &|| {
                    fs::set_permissions(&some_file, fs::Permissions::from_mode(0o600)).unwrap();
                }),
                ("edited file", &|| {
                    let mut f = fs::OpenOptions::new()
                        .append(true)
                        .open(&some_file)
                        .unwrap();
                    f.write_all(b"\n").unwrap();
                }),
            ];
            for (what, drift) in drifts {
                drift();
                let w = write_openssl_dir(&b, &dir, &options).unwrap();
                assert!(w.changed, "{layout:?}: {what} must be repaired");
                assert!(!write_openssl_dir(&b, &dir, &options).unwrap().changed);
            }
            // A different bundle is a change; what it keeps is linked from the old directory.
            let kept: Vec<_> = snapshot(&dir)
                .into_iter()
                .filter(|(n, ..)| dir.join(n).symlink_metadata().unwrap().is_file())
                .filter(|(n, ..)| n != "ca-certificates.crt")
                .collect();
            let mut more = b
                .entries()
                .iter()
                .map(|e| e.certificate.clone())
                .collect::<Vec<_>>();
            more.push(Certificate::from_der(&pki::root_ca("Added C").der).unwrap());
            let bigger = bundle_of(more);
            let w = write_openssl_dir(&bigger, &dir, &options).unwrap();
            assert_eq!((w.changed, w.entries), (true, 3));
            for (name, ino, _) in &kept {
                let meta = dir.join(name).symlink_metadata().unwrap();
                assert_eq!(meta.ino(), *ino, "{layout:?}: {name} reused, not rewritten");
            }
            assert!(!write_openssl_dir(&bigger, &dir, &options).unwrap().changed);
        }
    }

    /// Issue 19 item 8: neither the unchanged check nor the hard-link reuse of a changed
    /// directory may keep a file another user owns or that has another name elsewhere: the
    /// first let `nobody` keep a planted entry in a root-written store, the second linked it
    /// into the new tree.
    #[test]
    fn planted_or_extra_linked_entries_are_neither_kept_nor_linked() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: planting a file owned by another user needs root");
            return;
        }
        let us = rustix::process::geteuid().as_raw();
        for layout in [DirLayout::Files, DirLayout::Links] {
            let tmp = anchorage_test_support::tempdir().unwrap();
            let dir = tmp.path().join("certs");
            let b = bundle(&["Plant A", "Plant B", "Plant C"]);
            let options = OpensslDirOptions {
                layout,
                bundle_file: None,
            };
            assert!(write_openssl_dir(&b, &dir, &options).unwrap().changed);
            let files: Vec<PathBuf> = snapshot(&dir)
                .iter()
                .map(|(n, ..)| dir.join(n))
                .filter(|p| p.symlink_metadata().unwrap().is_file())
                .collect();
            let [planted, linked, untouched] = &files[..] else {
                panic!("{files:?}");
            };

            // Unchanged check: a planted copy with the right bytes makes the directory rewritten.
            crate::output::pem::tests::plant_foreign_copy(planted);
            let w = write_openssl_dir(&b, &dir, &options).unwrap();
            assert!(w.changed, "{layout:?}: a planted entry must not be kept");
            let meta = planted.symlink_metadata().unwrap();
            assert_eq!((meta.uid(), meta.nlink()), (us, 1), "{layout:?}");
            // And an extra link elsewhere, the same.
            let elsewhere = tmp.path().join("elsewhere");
            fs::hard_link(linked, &elsewhere).unwrap();
            let w = write_openssl_dir(&b, &dir, &options).unwrap();
            assert!(
                w.changed,
                "{layout:?}: an extra-linked entry must not be kept"
            );
            assert_ne!(
                linked.symlink_metadata().unwrap().ino(),
                elsewhere.symlink_metadata().unwrap().ino()
            );
            fs::remove_file(&elsewhere).unwrap();
            assert!(!write_openssl_dir(&b, &dir, &options).unwrap().changed);

            // Hard-link reuse when the directory changes: plant one entry, link another
            // elsewhere, and add a certificate.
            crate::output::pem::tests::plant_foreign_copy(planted);
            let planted_ino = planted.symlink_metadata().unwrap().ino();
            fs::hard_link(linked, &elsewhere).unwrap();
            let untouched_ino = untouched.symlink_metadata().unwrap().ino();
            let mut more: Vec<Certificate> =
                b.entries().iter().map(|e| e.certificate.clone()).collect();
            more.push(Certificate::from_der(&pki::root_ca("Plant D").der).unwrap());
            let bigger = bundle_of(more);
            let w = write_openssl_dir(&bigger, &dir, &options).unwrap();
            assert_eq!((w.changed, w.entries), (true, 4));
            let meta = planted.symlink_metadata().unwrap();
            assert_ne!(
                meta.ino(),
                planted_ino,
                "{layout:?}: the planted file was linked in"
            );
            assert_eq!((meta.uid(), meta.nlink()), (us, 1), "{layout:?}");
            let meta = linked.symlink_metadata().unwrap();
            assert_ne!(
                meta.ino(),
                elsewhere.symlink_metadata().unwrap().ino(),
                "{layout:?}: the extra-linked file was linked in"
            );
            assert_eq!(meta.nlink(), 1);
            // Negative control: our own entry is still reused, and alone.
            let meta = untouched.symlink_metadata().unwrap();
            assert_eq!(
                meta.ino(),
                untouched_ino,
                "{layout:?}: our own entry is reused"
            );
            assert_eq!(meta.nlink(), 1, "{layout:?}: the old tree is gone");
            assert!(!write_openssl_dir(&bigger, &dir, &options).unwrap().changed);
        }
    }
}

//! An OpenSSL hashed directory (`CApath`, `SSL_CERT_DIR`, `curl --capath`).
//!
//! OpenSSL looks a certificate up by `<subject-hash>.<n>`, trying `.0`, `.1`, ... and stopping at
//! the first gap, so numbers must be contiguous from 0. `openssl rehash` numbers the certificates of
//! one hash in the order of their file names; we number them by SHA-256 fingerprint, and in the
//! [`DirLayout::Links`] layout name the files `<sha256>.pem`, so running `openssl rehash` on our
//! directory yields exactly our links.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anchorage_x509::{Certificate, SubjectHash};

use crate::atomic;
use crate::bundle::Bundle;
use crate::error::TrustError;
use crate::output::pem::{PemOptions, render_pem};

/// How the `<hash>.<n>` entries are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirLayout {
    /// Each `<hash>.<n>` is a regular file holding one certificate: survives being copied into a
    /// ConfigMap, a Secret or an image layer, where symbolic links are lost.
    #[default]
    Files,
    /// Each certificate is `<sha256>.pem` and `<hash>.<n>` is a relative symbolic link to it, like
    /// `/etc/ssl/certs` on Debian.
    Links,
}

/// Options for [`write_openssl_dir`].
#[derive(Clone, Debug, Default)]
pub struct OpensslDirOptions {
    /// Layout of the entries.
    pub layout: DirLayout,
    /// Also write the whole bundle as PEM under this file name inside the directory (for example
    /// `ca-certificates.crt`, to mount the directory over `/etc/ssl/certs`).
    pub bundle_file: Option<String>,
}

/// One `<hash>.<n>` name and the certificate it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedName {
    /// The subject hash.
    pub hash: SubjectHash,
    /// The collision number.
    pub n: usize,
    /// Index of the certificate in [`Bundle::entries`].
    pub entry: usize,
}

impl HashedName {
    /// The file name, `<hash>.<n>`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.hash, self.n)
    }
}

/// The `<hash>.<n>` names for a bundle, in (hash, n) order.
pub fn hashed_names(bundle: &Bundle) -> Vec<HashedName> {
    let mut buckets: BTreeMap<SubjectHash, Vec<usize>> = BTreeMap::new();
    for (i, entry) in bundle.entries().iter().enumerate() {
        buckets
            .entry(entry.certificate.subject_hash())
            .or_default()
            .push(i);
    }
    let entries = bundle.entries();
    buckets
        .into_iter()
        .flat_map(|(hash, mut members)| {
            members.sort_by_key(|&i| entries[i].certificate.sha256());
            members
                .into_iter()
                .enumerate()
                .map(move |(n, entry)| HashedName { hash, n, entry })
        })
        .collect()
}

fn link_target(cert: &Certificate) -> String {
    format!("{}.pem", cert.sha256().hex())
}

/// Writes the hashed directory to `dir`, replacing any previous one atomically.
pub fn write_openssl_dir(
    bundle: &Bundle,
    dir: &Path,
    options: &OpensslDirOptions,
) -> Result<usize, TrustError> {
    let names = hashed_names(bundle);
    let write_entry = |tmp: &Path, name: &HashedName| -> std::io::Result<()> {
        let cert = &bundle.entries()[name.entry].certificate;
        match options.layout {
            DirLayout::Files => write_new(&tmp.join(name.file_name()), cert.to_pem().as_bytes()),
            DirLayout::Links => {
                let target = link_target(cert);
                write_new(&tmp.join(&target), cert.to_pem().as_bytes())?;
                std::os::unix::fs::symlink(&target, tmp.join(name.file_name()))
            }
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
                .map(|part| scope.spawn(move || part.iter().try_for_each(|n| write_entry(tmp, n))))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")))
            })
        })?;
        if let Some(file) = &options.bundle_file {
            let pem = render_pem(bundle, &PemOptions::default());
            write_new(&tmp.join(file), pem.as_bytes())?;
        }
        Ok(())
    };
    atomic::replace_dir(dir, fill).map_err(|source| TrustError::Output {
        path: dir.to_owned(),
        source,
    })?;
    Ok(names.len())
}

/// Creates a new file inside the private temporary directory. No fsync here: the directory is
/// synced once as a whole before it is swapped in.
fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(contents)
}

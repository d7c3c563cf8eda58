//! OpenSSL hashed names (`CApath`, `SSL_CERT_DIR`, `curl --capath`) and the directory layouts
//! built from them, as names and bytes: writing them is `anchorage-trust`'s job.
//!
//! OpenSSL looks a certificate up by `<subject-hash>.<n>`, trying `.0`, `.1`, ... and stopping at
//! the first gap, so numbers must be contiguous from 0. `openssl rehash` numbers the certificates of
//! one hash in the order of their file names; we number them by SHA-256 fingerprint, and in the
//! [`DirLayout::Links`] layout name the files `<sha256>.pem`, so running `openssl rehash` on our
//! directory yields exactly our links.

use std::collections::BTreeMap;

use anchorage_x509::{Certificate, SubjectHash};

use crate::bundle::Bundle;

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

    /// The directory entries this name puts in a hashed directory of `layout`: the layout rule,
    /// in one place. `bundle` must be the bundle the name was made from.
    pub fn dir_entries(&self, bundle: &Bundle, layout: DirLayout) -> Vec<DirEntry> {
        let cert = &bundle.entries()[self.entry].certificate;
        let bytes = cert.to_pem().into_bytes();
        match layout {
            DirLayout::Files => vec![DirEntry::File {
                name: self.file_name(),
                bytes,
            }],
            DirLayout::Links => {
                let target = link_target(cert);
                vec![
                    DirEntry::File {
                        name: target.clone(),
                        bytes,
                    },
                    DirEntry::Link {
                        name: self.file_name(),
                        target,
                    },
                ]
            }
        }
    }
}

/// One entry of a hashed directory: what a writer creates, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirEntry {
    /// A regular file with these bytes.
    File {
        /// The file name (one path component).
        name: String,
        /// The content.
        bytes: Vec<u8>,
    },
    /// A relative symbolic link.
    Link {
        /// The link's name (one path component).
        name: String,
        /// What it points at, a name in the same directory.
        target: String,
    },
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

/// Whether `name` is an OpenSSL hashed-directory entry: `<8 hex digits>.<n>` (or `.r<n>` for a
/// CRL).
pub fn is_openssl_hash_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('.') else {
        return false;
    };
    let n = n.strip_prefix('r').unwrap_or(n);
    hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` may be the whole-bundle file inside a hashed directory: a single path
/// component that is neither `.` nor `..` nor hidden, nor a `<hash>.<n>` name.
pub fn is_plain_file_name(name: &str) -> bool {
    let hashed = name.split_once('.').is_some_and(|(h, n)| {
        h.len() == 8
            && h.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    });
    !name.is_empty() && !name.contains('/') && !name.starts_with('.') && !hashed
}

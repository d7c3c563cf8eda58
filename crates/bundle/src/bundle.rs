//! [`Bundle`]: the set of certificates every writer serialises, sorted and de-duplicated by
//! construction.

use std::collections::BTreeMap;

use anchorage_x509::{Certificate, Sha256Fingerprint};

use crate::origin::Origin;

/// One certificate of a bundle and every place it was found.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The certificate.
    pub certificate: Certificate,
    /// Where it came from, first one first.
    pub origins: Vec<Origin>,
}

/// A de-duplicated set of certificates in a deterministic order (subject, then SHA-256
/// fingerprint), whatever the order of the sources: the same certificates always give
/// byte-identical outputs.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    entries: Vec<Entry>,
}

impl Bundle {
    /// Builds a bundle; a certificate seen several times keeps all its origins.
    pub fn new(items: impl IntoIterator<Item = (Certificate, Origin)>) -> Self {
        let mut by_fp: BTreeMap<Sha256Fingerprint, Entry> = BTreeMap::new();
        for (certificate, origin) in items {
            by_fp
                .entry(certificate.sha256())
                .or_insert_with(|| Entry {
                    certificate,
                    origins: Vec::new(),
                })
                .origins
                .push(origin);
        }
        let mut entries: Vec<Entry> = by_fp.into_values().collect();
        entries.sort_by(|a, b| {
            (a.certificate.subject(), a.certificate.sha256())
                .cmp(&(b.certificate.subject(), b.certificate.sha256()))
        });
        Self { entries }
    }

    /// The entries, in bundle order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The certificates, in bundle order.
    pub fn certificates(&self) -> impl Iterator<Item = &Certificate> {
        self.entries.iter().map(|e| &e.certificate)
    }

    /// The certificates Mozilla's root list lacks (by SHA-256): the private CAs a runtime with
    /// compiled-in Mozilla roots must be told about (`NODE_EXTRA_CA_CERTS`, `DENO_CERT`).
    pub fn without_mozilla_roots(&self) -> Bundle {
        let mozilla: std::collections::BTreeSet<Sha256Fingerprint> =
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|der| Certificate::from_der(der).ok())
                .map(|c| c.sha256())
                .collect();
        Bundle {
            entries: self
                .entries
                .iter()
                .filter(|e| !mozilla.contains(&e.certificate.sha256()))
                .cloned()
                .collect(),
        }
    }

    /// Number of distinct certificates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the bundle holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

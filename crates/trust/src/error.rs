//! The errors that stop a bundle from being built or written.

use std::path::PathBuf;

use crate::Origin;
use crate::policy::Report;

/// Why a bundle could not be built or written. Each variant carries what a fix needs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// Key material was found among the certificates. The key is never copied or printed.
    #[error(
        "private key found in {origin} ({kind}): refusing to build a trust store from a source that holds key material; remove the key from that source or point at the certificate alone"
    )]
    PrivateKey {
        /// Where the key was found.
        origin: Origin,
        /// What kind of key (PEM label or DER structure), never its content.
        kind: String,
    },
    /// `--strict` was asked for and something was reported.
    #[error(
        "strict mode: {} found, the first: {first}; fix {} or drop --strict to use what loaded",
        crate::plural(*count, "problem"),
        if *count == 1 { "it" } else { "them" }
    )]
    Strict {
        /// How many problems and warnings were found.
        count: usize,
        /// The first one, rendered.
        first: String,
        /// Everything that was reported, so a caller can list it.
        report: Box<Report>,
    },
    /// Nothing usable was loaded; existing outputs are left untouched.
    #[error(
        "no usable certificates: {} reported, {} dropped{}, {} skipped by the directory name filter{}; existing outputs were left untouched",
        crate::plural(report.problems.len(), "problem"),
        crate::plural(report.expired_dropped(), "expired certificate"),
        if report.expired_dropped() > 0 { " (--keep-expired keeps them)" } else { "" },
        crate::plural(report.files_skipped, "file"),
        if report.files_skipped > 0 { " (see --dir-filter)" } else { "" }
    )]
    NoCertificates {
        /// Everything that was reported: why nothing was left.
        report: Box<Report>,
    },
    /// A Java keystore could not be encoded (password, profile or alias problem); nothing was
    /// written and any previous output is unchanged.
    #[error("cannot build the Java keystore for {path} (any previous output there is unchanged)")]
    Keystore {
        /// The output path.
        path: PathBuf,
        /// What the keystore encoder said.
        #[source]
        source: anchorage_keystore::KeystoreError,
    },
    /// Writing an output failed; the previous output (if any) is still in place.
    #[error("cannot write {path} (any previous output there is unchanged)")]
    Output {
        /// The output path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

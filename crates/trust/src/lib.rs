//! Trust bundles: collect CA certificates from many sources, apply a policy, and write them in the
//! forms TLS clients read.
//!
//! The flow is `Source ──load──▶ Loaded ──Policy──▶ Bundle ──writer──▶ output (atomic swap)`:
//!
//! - [`Source`]: a file, a directory (recursive), a Kubernetes ConfigMap/Secret manifest, the OS
//!   store or Mozilla's roots compiled in. [`load`] never stops at the first bad input: it returns
//!   what loaded and, for the rest, a [`SourceProblem`] naming the file, line or key.
//! - [`Policy`]: de-duplicates by fingerprint, drops expired certificates, warns about leaves,
//!   **refuses private keys**, and in strict mode turns any problem into an error.
//! - [`Bundle`]: sorted and de-duplicated by construction, so every writer is deterministic (the
//!   model, its PEM rendering and hashed names are the pure `anchorage-bundle` crate, re-exported).
//! - Writers: [`write_pem`] (a PEM bundle) and [`write_openssl_dir`] (a hashed directory named as
//!   `openssl rehash` names it), both through [`atomic`], so a reader never sees a partial store.
//!
//! ```no_run
//! use anchorage_trust::{load, write_pem, LoadOptions, PemOptions, Policy, Source};
//!
//! let loaded = load(&[Source::Path("corp-ca.pem".into()), Source::Mozilla], &LoadOptions::default());
//! let (bundle, report) = Policy::default().apply(loaded)?;
//! write_pem(&bundle, "ca-bundle.pem".as_ref(), &PemOptions::default())?;
//! # Ok::<(), anchorage_trust::TrustError>(())
//! ```

pub mod atomic;
pub mod env;
mod error;
pub mod install;
mod kubernetes;
mod output;
mod policy;
mod source;
pub mod tls;

// The bundle model lives in the pure `anchorage-bundle` crate; re-exported so callers keep
// their paths.
pub use anchorage_bundle::{
    Bundle, DirEntry, DirLayout, Entry, HashedName, Origin, PemOptions, Pkcs12Options,
    Pkcs12Profile, hashed_names, is_openssl_hash_name, plural, render_jks, render_pem,
    render_pkcs12,
};
pub use error::TrustError;
pub use kubernetes::{
    KeyFilter, MANIFEST_EXPANSION_SLACK, MANIFEST_VALUE_COST, MAX_MANIFEST_DOCUMENTS,
    MAX_MANIFEST_EXPANSION, YamlLimitError, read_yaml_documents,
};
pub use output::java::{write_jks, write_pkcs12};
pub use output::openssl_dir::{OpensslDirOptions, write_openssl_dir};
pub use output::pem::write_pem;
pub use output::{Written, write_file_if_changed};
pub use policy::{Finding, FindingKind, Policy, Report};
pub use source::{
    LoadError, LoadOptions, Loaded, LoadedCertificate, MAX_SOURCE_BYTES, NameFilter, Source,
    SourceProblem, load,
};

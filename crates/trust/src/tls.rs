//! A rustls trust builder with the wasmCloud HTTP client's semantics.
//!
//! This module owns turning a typed [`TrustConfig`] into a [`rustls::RootCertStore`] (or a whole
//! [`rustls::ClientConfig`]) plus a [`TrustReport`] of what each source contributed and what was
//! left out and why. It does not own choosing the crypto provider (the caller passes one, and
//! nothing here installs a process default), reading configuration from strings or the
//! environment, or printing: the caller renders the report (one line through `Display`, or JSON
//! through `Serialize`).
//!
//! | field | default | wasmCloud equivalent | meaning |
//! |---|---|---|---|
//! | `load_native_certs` | `true` | `wasmcloud:http` client config `load_native_certs` (default `"true"`) | the OS store via rustls-native-certs, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`; per-file errors are reported, not fatal |
//! | `load_webpki_certs` | `true` | `load_webpki_certs` (default `"true"`) | Mozilla's roots compiled in (webpki-root-certs) |
//! | `ssl_certs_file` | none | `ssl_certs_file` (the provider fails to start when the file is missing) | a file or directory read as `anchorage bundle build` reads it; must exist and hold at least one certificate |
//! | `extra_ca_paths` | empty | the host's repeated `--tls-ca-path` (refused when a path is bad) | more files or directories, each read the same way and held to the same rules |
//!
//! Paths go through [`load`] and the default [`Policy`], so PEM, DER, PKCS#7 and
//! directories behave exactly as they do for a bundle: private keys are refused (an error, never a
//! skip), expired certificates are dropped and reported, leaves are kept with a warning.
//! Certificates are added in the order native, webpki, `ssl_certs_file`, extra paths; one already
//! added by an earlier source is counted as already trusted rather than added twice. Every
//! certificate rustls refuses as a trust anchor is listed with its reason. A store that ends up
//! empty is an error ([`TlsTrustError::NoAnchors`]) naming what each source did, since a client
//! that trusts nothing fails every handshake.
//!
//! ```
//! use std::sync::Arc;
//!
//! use anchorage_trust::tls::TrustConfig;
//!
//! // wasmCloud: load_native_certs = "false", load_webpki_certs left at its default.
//! let config = TrustConfig {
//!     load_native_certs: false,
//!     ..TrustConfig::default()
//! };
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let (client, report) = config.client_config(provider)?;
//! assert!(report.anchors > 100, "{report}");
//! let _client = Arc::new(client); // hand it to the HTTP client
//! # Ok::<(), anchorage_trust::tls::TlsTrustError>(())
//! ```
//!
//! A private CA on top of the defaults, as `ssl_certs_file` plus a `--tls-ca-path` directory:
//!
//! ```no_run
//! use anchorage_trust::tls::TrustConfig;
//!
//! let config = TrustConfig {
//!     ssl_certs_file: Some("/etc/corp/ca.pem".into()),
//!     extra_ca_paths: vec!["/etc/corp/ca.d".into()],
//!     ..TrustConfig::default()
//! };
//! let (roots, report) = config.root_store()?;
//! assert_eq!(roots.len(), report.anchors);
//! # Ok::<(), anchorage_trust::tls::TlsTrustError>(())
//! ```
//!
//! When the certificates themselves are needed too (their validity dates, which a
//! `RootCertStore` does not keep), [`TrustConfig::load`] reads the sources once and returns them;
//! [`root_store_of`] then makes the same store from them without reading the OS store again:
//!
//! ```
//! use anchorage_trust::tls::{TrustConfig, root_store_of};
//!
//! let config = TrustConfig {
//!     load_native_certs: false,
//!     ..TrustConfig::default()
//! };
//! let (certificates, report) = config.load()?;
//! assert_eq!(certificates.len(), report.anchors);
//! let roots = root_store_of(&certificates);
//! assert_eq!(roots.len(), report.anchors);
//! let soonest = certificates.iter().map(|c| c.not_after()).min();
//! assert!(soonest.is_some());
//! # Ok::<(), anchorage_trust::tls::TlsTrustError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anchorage_x509::{Certificate, Sha256Fingerprint};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;

use crate::Bundle;
use crate::error::TrustError;
use crate::policy::{FindingKind, Policy, Report};
use crate::source::{LoadOptions, Origin, Source, load};

/// Which certificates a rustls client trusts. Plain data: [`TrustConfig::root_store`] and
/// [`TrustConfig::client_config`] read the sources and validate every path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustConfig {
    /// Trust the operating system's store (rustls-native-certs; honours `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`). Default: `true`.
    pub load_native_certs: bool,
    /// Trust Mozilla's roots compiled in (webpki-root-certs). Default: `true`.
    pub load_webpki_certs: bool,
    /// A CA file (or directory) that must exist and hold at least one certificate.
    pub ssl_certs_file: Option<PathBuf>,
    /// More CA files or directories (wasmCloud host `--tls-ca-path`); each must exist and hold at
    /// least one certificate.
    pub extra_ca_paths: Vec<PathBuf>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            load_native_certs: true,
            load_webpki_certs: true,
            ssl_certs_file: None,
            extra_ca_paths: Vec::new(),
        }
    }
}

/// One of the places a [`TrustConfig`] takes certificates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustSourceKind {
    /// The operating system's store (`load_native_certs`).
    Native,
    /// Mozilla's roots compiled in (`load_webpki_certs`).
    Webpki,
    /// The `ssl_certs_file` path.
    SslCertsFile,
    /// One of the `extra_ca_paths` (wasmCloud host `--tls-ca-path`).
    ExtraCaPath,
}

impl fmt::Display for TrustSourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native certs",
            Self::Webpki => "webpki roots",
            Self::SslCertsFile => "ssl_certs_file",
            Self::ExtraCaPath => "extra CA path",
        })
    }
}

/// A certificate or part of a source that did not become a trust anchor, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Where it was found (path and line, or store and index).
    pub origin: String,
    /// The certificate's subject, when it could be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why it was left out.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)?;
        if let Some(subject) = &self.subject {
            write!(f, " ({subject})")?;
        }
        Ok(())
    }
}

/// What one source contributed. For an enabled source,
/// `certificates == added + already_trusted + rejected.len()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceReport {
    /// Which source.
    pub kind: TrustSourceKind,
    /// The path, for `ssl_certs_file` and extra CA paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// False when the configuration turned this source off.
    pub enabled: bool,
    /// Distinct certificates the source offered to rustls (after the policy, for paths).
    pub certificates: usize,
    /// New trust anchors it added.
    pub added: usize,
    /// Certificates an earlier source (or an earlier entry of this one) had already added.
    pub already_trusted: usize,
    /// Certificates rustls refused as trust anchors, with rustls's reason.
    pub rejected: Vec<Skipped>,
    /// Parts of the source that could not be used (unreadable files, bad PEM blocks, OS store
    /// errors, expired certificates dropped by the policy). Not fatal.
    pub problems: Vec<Skipped>,
    /// Certificates kept despite a policy warning (a leaf, not yet valid).
    pub warnings: Vec<String>,
}

impl SourceReport {
    fn new(kind: TrustSourceKind, path: Option<&Path>, enabled: bool) -> Self {
        Self {
            kind,
            path: path.map(|p| p.display().to_string()),
            enabled,
            certificates: 0,
            added: 0,
            already_trusted: 0,
            rejected: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl fmt::Display for SourceReport {
    /// `ssl_certs_file /etc/ca.pem: 2 added, 1 already trusted, 1 rejected by rustls`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(path) = &self.path {
            write!(f, " {path}")?;
        }
        if !self.enabled {
            return f.write_str(": off");
        }
        write!(f, ": {} added", self.added)?;
        let counts = [
            (self.already_trusted, "already trusted".to_owned()),
            (self.rejected.len(), "rejected by rustls".to_owned()),
            (
                self.problems.len(),
                crate::plural(self.problems.len(), "problem"),
            ),
            (
                self.warnings.len(),
                crate::plural(self.warnings.len(), "warning"),
            ),
        ];
        for (n, what) in counts {
            if n > 0 && what.starts_with(|c: char| c.is_ascii_digit()) {
                write!(f, ", {what}")?;
            } else if n > 0 {
                write!(f, ", {n} {what}")?;
            }
        }
        Ok(())
    }
}

/// What a [`TrustConfig`] produced: one entry per source (native, webpki, `ssl_certs_file`, each
/// extra path, in that order; disabled ones included) and the number of trust anchors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrustReport {
    /// Per-source counts and reasons.
    pub sources: Vec<SourceReport>,
    /// Trust anchors in the resulting store.
    pub anchors: usize,
}

impl TrustReport {
    /// The first entry for `kind`, if any.
    pub fn source(&self, kind: TrustSourceKind) -> Option<&SourceReport> {
        self.sources.iter().find(|s| s.kind == kind)
    }

    /// Certificates rustls refused, across all sources.
    pub fn rejected_count(&self) -> usize {
        self.sources.iter().map(|s| s.rejected.len()).sum()
    }

    /// Problems (unusable parts of sources), across all sources.
    pub fn problem_count(&self) -> usize {
        self.sources.iter().map(|s| s.problems.len()).sum()
    }

    /// Every rejection, problem and warning, one line each, for a caller that lists them.
    pub fn details(&self) -> impl Iterator<Item = String> + '_ {
        self.sources.iter().flat_map(|s| {
            let rejected = s
                .rejected
                .iter()
                .map(|r| format!("rejected by rustls: {r}"));
            let problems = s.problems.iter().map(|p| format!("skipped: {p}"));
            let warnings = s.warnings.iter().map(|w| format!("warning: {w}"));
            rejected.chain(problems).chain(warnings)
        })
    }
}

impl fmt::Display for TrustReport {
    /// One line: `119 trust anchor(s) (native certs: off; webpki roots: 118 added; ssl_certs_file /etc/ca.pem: 1 added)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", crate::plural(self.anchors, "trust anchor"))?;
        for (i, source) in self.sources.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{source}")?;
        }
        f.write_str(")")
    }
}

/// Why no trust store could be built. Each variant names the setting and path to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsTrustError {
    /// A configured path does not exist.
    #[error(
        "{setting} {path} does not exist; point it at an existing CA certificate file or directory, or remove the setting"
    )]
    Missing {
        /// Which setting named it.
        setting: TrustSourceKind,
        /// The path as configured.
        path: PathBuf,
    },
    /// A configured path exists but cannot be inspected.
    #[error("{setting} {path} cannot be read; check its permissions, or remove the setting")]
    Unreadable {
        /// Which setting named it.
        setting: TrustSourceKind,
        /// The path as configured.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Key material was found in a configured path. The key is never copied or printed.
    #[error(
        "private key found in {origin} ({kind}), given as {setting}: refusing to trust a source that holds key material; point {setting} at the CA certificates alone"
    )]
    PrivateKey {
        /// Which setting named the source.
        setting: TrustSourceKind,
        /// Where the key was found.
        origin: Origin,
        /// What kind of key (PEM label or DER structure), never its content.
        kind: String,
    },
    /// A configured path holds no usable certificate.
    #[error(
        "{setting} {path} holds no usable certificate ({}{}, {} dropped, {} skipped by the directory name filter); give it PEM, DER or PKCS#7 CA certificates (in a directory: .crt, .pem, .cer, .der, .p7b, .p7c or <hash>.<n> files)",
        crate::plural(*problems, "problem"),
        first_problem.as_ref().map(|p| format!("; the first: {p}")).unwrap_or_default(),
        crate::plural(*expired_dropped, "expired certificate"),
        crate::plural(*files_skipped, "file")
    )]
    NoCertificates {
        /// Which setting named it.
        setting: TrustSourceKind,
        /// The path as configured.
        path: PathBuf,
        /// How many problems were reported while reading it.
        problems: usize,
        /// The first of them, rendered.
        first_problem: Option<String>,
        /// Expired certificates the policy dropped.
        expired_dropped: usize,
        /// Directory entries whose names do not look like certificates.
        files_skipped: usize,
    },
    /// The policy refused a configured path for a reason not listed above.
    #[error("{setting} {path} was refused by the trust policy")]
    Policy {
        /// Which setting named it.
        setting: TrustSourceKind,
        /// The path as configured.
        path: PathBuf,
        /// What the policy said.
        #[source]
        source: Box<TrustError>,
    },
    /// Every source was off or empty: a client with this store would fail every handshake.
    #[error(
        "no trust anchors: {}; a client that trusts nothing fails every handshake: enable load_webpki_certs or load_native_certs, or give ssl_certs_file",
        describe_sources(report)
    )]
    NoAnchors {
        /// What each source did.
        report: Box<TrustReport>,
    },
    /// The crypto provider cannot build a client config for TLS 1.3 or 1.2.
    #[error(
        "the crypto provider supports neither TLS 1.3 nor TLS 1.2 with its cipher suites and key exchange groups; pass a complete provider such as rustls::crypto::ring::default_provider()"
    )]
    Provider {
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// Each source and, for an enabled one with problems, the first problem.
fn describe_sources(report: &TrustReport) -> String {
    report
        .sources
        .iter()
        .map(|s| match s.problems.first().or(s.rejected.first()) {
            Some(first) => format!("{s} (the first: {first})"),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl TrustConfig {
    /// Builds the root store. Fails when a configured path is missing, unreadable, empty or holds
    /// a private key, and when no source adds a single trust anchor.
    pub fn root_store(&self) -> Result<(RootCertStore, TrustReport), TlsTrustError> {
        let (store, report) = self.build(Collect::StoreOnly)?;
        Ok((store.roots, report))
    }

    /// Reads the sources once, as [`TrustConfig::root_store`] does, and returns the certificates
    /// that became trust anchors (in the order they were added, each once) with the same report.
    /// Unlike a `RootCertStore`, they keep everything a certificate says (validity dates, key,
    /// extensions); [`root_store_of`] makes the rustls store from them.
    ///
    /// A certificate rustls accepts as an anchor but that cannot be decoded as a whole
    /// certificate (possible only for the OS store) is listed among the source's rejections
    /// here, so that `report.anchors == certificates.len()` holds.
    pub fn load(&self) -> Result<(Vec<Certificate>, TrustReport), TlsTrustError> {
        let (store, report) = self.build(Collect::Certificates)?;
        Ok((store.certificates, report))
    }

    fn build(&self, collect: Collect) -> Result<(Anchors, TrustReport), TlsTrustError> {
        // Paths first: a bad path fails before the OS store is read.
        let policy = Policy::default();
        let mut paths = Vec::new();
        if let Some(path) = &self.ssl_certs_file {
            paths.push(read_path(TrustSourceKind::SslCertsFile, path, &policy)?);
        }
        for path in &self.extra_ca_paths {
            paths.push(read_path(TrustSourceKind::ExtraCaPath, path, &policy)?);
        }

        let mut store = Anchors::new(collect);
        let mut sources = Vec::with_capacity(2 + paths.len());

        let mut native = SourceReport::new(TrustSourceKind::Native, None, self.load_native_certs);
        if self.load_native_certs {
            add_native(&mut store, &mut native);
        }
        sources.push(native);

        let mut webpki = SourceReport::new(TrustSourceKind::Webpki, None, self.load_webpki_certs);
        if self.load_webpki_certs {
            for (i, der) in webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().enumerate() {
                let origin = || format!("Mozilla roots (webpki-root-certs), certificate {}", i + 1);
                store.add(der.as_ref(), None, origin, &mut webpki);
            }
        }
        sources.push(webpki);

        for (mut report, bundle) in paths {
            let fallback = report.path.clone().unwrap_or_default();
            for entry in bundle.entries() {
                let origin = || {
                    entry
                        .origins
                        .first()
                        .map_or_else(|| fallback.clone(), ToString::to_string)
                };
                let cert = &entry.certificate;
                store.add(cert.der(), Some(cert), origin, &mut report);
            }
            sources.push(report);
        }

        let report = TrustReport {
            sources,
            anchors: store.roots.len(),
        };
        if store.roots.is_empty() {
            return Err(TlsTrustError::NoAnchors {
                report: Box::new(report),
            });
        }
        tracing::debug!(%report, "built rustls root store");
        Ok((store, report))
    }

    /// Builds a rustls client configuration (safe default protocol versions, this root store, no
    /// client certificate) with the given crypto provider. Nothing here installs a process-wide
    /// provider: the caller picks one.
    pub fn client_config(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<(ClientConfig, TrustReport), TlsTrustError> {
        let (roots, report) = self.root_store()?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsTrustError::Provider { source })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok((config, report))
    }
}

/// A rustls root store of `certificates` (as [`TrustConfig::load`] returns them), without
/// reading any source again. A certificate rustls refuses as a trust anchor is left out; none of
/// those `load` returns is.
pub fn root_store_of(certificates: &[Certificate]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(
        certificates
            .iter()
            .map(|c| CertificateDer::from(c.der().to_vec())),
    );
    if refused > 0 {
        tracing::debug!(refused, "certificates rustls refused as trust anchors");
    }
    roots
}

/// Whether the store being built also keeps each anchor as a [`Certificate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collect {
    StoreOnly,
    Certificates,
}

/// The store being built, the fingerprints already in it, and (for [`TrustConfig::load`]) the
/// anchors as certificates.
struct Anchors {
    roots: RootCertStore,
    seen: HashSet<Sha256Fingerprint>,
    collect: Collect,
    certificates: Vec<Certificate>,
}

impl Anchors {
    fn new(collect: Collect) -> Self {
        Self {
            roots: RootCertStore::empty(),
            seen: HashSet::new(),
            collect,
            certificates: Vec::new(),
        }
    }

    /// Adds one certificate (`decoded`: the same certificate already decoded, when the caller
    /// has it), counting it in `report` as added, already trusted or rejected.
    fn add(
        &mut self,
        der: &[u8],
        decoded: Option<&Certificate>,
        origin: impl FnOnce() -> String,
        report: &mut SourceReport,
    ) {
        report.certificates += 1;
        let fingerprint = Sha256Fingerprint::of(der);
        if self.seen.contains(&fingerprint) {
            report.already_trusted += 1;
            return;
        }
        // Decoded before rustls sees it when the certificates are kept, so that a certificate
        // that cannot be kept is not trusted either and the counts agree.
        let kept = match (self.collect, decoded) {
            (Collect::StoreOnly, _) => None,
            (Collect::Certificates, Some(cert)) => Some(cert.clone()),
            (Collect::Certificates, None) => match Certificate::from_der(der) {
                Ok(cert) => Some(cert),
                Err(e) => {
                    report.rejected.push(Skipped {
                        origin: origin(),
                        subject: None,
                        reason: format!("cannot be decoded as a certificate: {e}"),
                    });
                    return;
                }
            },
        };
        match self.roots.add(CertificateDer::from(der)) {
            Ok(()) => {
                self.seen.insert(fingerprint);
                self.certificates.extend(kept);
                report.added += 1;
            }
            Err(e) => {
                let subject = decoded
                    .or(kept.as_ref())
                    .map(|c| c.subject().to_owned())
                    .or_else(|| {
                        Certificate::from_der(der)
                            .ok()
                            .map(|c| c.subject().to_owned())
                    });
                let skipped = Skipped {
                    origin: origin(),
                    subject,
                    reason: format!("not usable as a trust anchor: {e}"),
                };
                tracing::debug!(source = %report.kind, %skipped, "rustls refused a trust anchor");
                report.rejected.push(skipped);
            }
        }
    }
}

fn add_native(store: &mut Anchors, report: &mut SourceReport) {
    const STORE: &str = "system trust store";
    let result = rustls_native_certs::load_native_certs();
    for error in &result.errors {
        report.problems.push(Skipped {
            origin: STORE.into(),
            subject: None,
            reason: error.to_string(),
        });
    }
    if result.certs.is_empty() && result.errors.is_empty() {
        report.problems.push(Skipped {
            origin: STORE.into(),
            subject: None,
            reason: "no certificates found (is the ca-certificates package installed? SSL_CERT_FILE and SSL_CERT_DIR are honoured)".into(),
        });
    }
    for (i, der) in result.certs.iter().enumerate() {
        let origin = || format!("{STORE}, certificate {}", i + 1);
        store.add(der.as_ref(), None, origin, report);
    }
}

/// Reads one configured path as `anchorage bundle build` would, turning every way it can be
/// unusable into an error naming the setting and the path.
fn read_path(
    setting: TrustSourceKind,
    path: &Path,
    policy: &Policy,
) -> Result<(SourceReport, Bundle), TlsTrustError> {
    if let Err(source) = fs::metadata(path) {
        let path = path.to_owned();
        return Err(if source.kind() == io::ErrorKind::NotFound {
            TlsTrustError::Missing { setting, path }
        } else {
            TlsTrustError::Unreadable {
                setting,
                path,
                source,
            }
        });
    }
    let loaded = load(&[Source::Path(path.to_owned())], &LoadOptions::default());
    let (bundle, policy_report) = match policy.apply(loaded) {
        Ok(done) => done,
        Err(TrustError::PrivateKey { origin, kind }) => {
            return Err(TlsTrustError::PrivateKey {
                setting,
                origin,
                kind,
            });
        }
        Err(TrustError::NoCertificates { report }) => {
            return Err(TlsTrustError::NoCertificates {
                setting,
                path: path.to_owned(),
                problems: report.problems.len(),
                first_problem: report.problems.first().map(ToString::to_string),
                expired_dropped: report.expired_dropped(),
                files_skipped: report.files_skipped,
            });
        }
        Err(source) => {
            return Err(TlsTrustError::Policy {
                setting,
                path: path.to_owned(),
                source: Box::new(source),
            });
        }
    };
    let mut report = SourceReport::new(setting, Some(path), true);
    record_policy_report(&policy_report, &mut report);
    Ok((report, bundle))
}

/// Carries what the policy noticed into the source's report: source problems and dropped
/// certificates as problems, kept-with-a-warning certificates as warnings.
fn record_policy_report(policy_report: &Report, report: &mut SourceReport) {
    for problem in &policy_report.problems {
        report.problems.push(Skipped {
            origin: problem.origin.to_string(),
            subject: None,
            reason: problem.error.to_string(),
        });
    }
    for finding in &policy_report.findings {
        match &finding.kind {
            FindingKind::Duplicate { .. } => {}
            FindingKind::Expired {
                not_after,
                dropped: true,
            } => report.problems.push(Skipped {
                origin: finding.origin.to_string(),
                subject: Some(finding.subject.clone()),
                reason: format!("expired on {not_after}; dropped"),
            }),
            _ => report.warnings.push(finding.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki::{self, Pki};
    use anchorage_test_support::tempdir;

    use super::*;

    fn file_only(path: &Path) -> TrustConfig {
        TrustConfig {
            load_native_certs: false,
            load_webpki_certs: false,
            ssl_certs_file: Some(path.to_owned()),
            extra_ca_paths: Vec::new(),
        }
    }

    #[allow(clippy::disallowed_methods)] // test fixture, not an output
    fn write(path: &Path, contents: &str) {
        std::fs::write(path, contents).expect("write fixture");
    }

    #[test]
    fn defaults_match_wasmcloud() {
        let config = TrustConfig::default();
        assert!(config.load_native_certs);
        assert!(config.load_webpki_certs);
        assert_eq!(config.ssl_certs_file, None);
        assert!(config.extra_ca_paths.is_empty());
    }

    #[test]
    fn webpki_only_adds_mozillas_roots() {
        let config = TrustConfig {
            load_native_certs: false,
            ..TrustConfig::default()
        };
        let (store, report) = config.root_store().expect("root store");
        let webpki = report.source(TrustSourceKind::Webpki).expect("webpki");
        assert_eq!(
            webpki.certificates,
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert_eq!(webpki.added, store.len());
        assert_eq!(report.anchors, store.len());
        assert!(webpki.rejected.is_empty(), "{:?}", webpki.rejected);
        let native = report.source(TrustSourceKind::Native).expect("native");
        assert!(!native.enabled);
        assert!(report.to_string().contains("native certs: off"), "{report}");
    }

    #[test]
    fn missing_ssl_certs_file_names_the_path() {
        let tmp = tempdir().expect("tempdir");
        let path = tmp.path().join("nope.pem");
        let err = file_only(&path).root_store().expect_err("must fail");
        assert!(
            matches!(&err, TlsTrustError::Missing { setting: TrustSourceKind::SslCertsFile, path: p } if *p == path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("ssl_certs_file {} does not exist", path.display())),
            "{message}"
        );
    }

    #[test]
    fn missing_extra_path_names_the_path_even_with_other_sources() {
        let tmp = tempdir().expect("tempdir");
        let path = tmp.path().join("missing.d");
        let config = TrustConfig {
            extra_ca_paths: vec![path.clone()],
            ..TrustConfig::default()
        };
        let err = config.root_store().expect_err("must fail");
        assert!(
            matches!(&err, TlsTrustError::Missing { setting: TrustSourceKind::ExtraCaPath, path: p } if *p == path),
            "{err:?}"
        );
    }

    #[test]
    fn private_key_in_ssl_certs_file_is_refused() {
        let tmp = tempdir().expect("tempdir");
        let root = pki::root_ca("Key Mixed In Root");
        let path = tmp.path().join("ca-and-key.pem");
        write(&path, &format!("{}{}", root.pem, root.key_pem));
        let err = file_only(&path).root_store().expect_err("must refuse");
        let TlsTrustError::PrivateKey {
            setting, origin, ..
        } = &err
        else {
            panic!("expected PrivateKey, got {err:?}");
        };
        assert_eq!(*setting, TrustSourceKind::SslCertsFile);
        assert_eq!(origin.source, path.display().to_string());
        assert!(!err.to_string().contains("BEGIN"), "{err}");
    }

    #[test]
    fn empty_ssl_certs_file_is_an_error_with_the_first_problem() {
        let tmp = tempdir().expect("tempdir");
        let path = tmp.path().join("empty.pem");
        write(&path, "not a certificate\n");
        let err = file_only(&path).root_store().expect_err("must fail");
        let message = err.to_string();
        assert!(
            matches!(err, TlsTrustError::NoCertificates { problems: 1, .. }),
            "{err:?}"
        );
        assert!(message.contains("no PEM block"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn expired_only_file_is_empty_and_says_so() {
        let tmp = tempdir().expect("tempdir");
        let path = pki::expired_root_ca("Expired Root").write_pem(tmp.path(), "old.pem");
        let err = file_only(&path).root_store().expect_err("must fail");
        assert!(
            matches!(
                err,
                TlsTrustError::NoCertificates {
                    expired_dropped: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn directory_extra_path_counts_per_source() {
        let tmp = tempdir().expect("tempdir");
        let pki = Pki::new("Tls Unit");
        let other = pki::root_ca("Tls Unit Other Root");
        let expired = pki::expired_root_ca("Tls Unit Expired Root");
        let file = pki.root.write_pem(tmp.path(), "root.pem");
        let dir = tmp.path().join("ca.d");
        std::fs::create_dir(&dir).expect("mkdir");
        pki.root.write_pem(&dir, "root-again.crt"); // already trusted through ssl_certs_file
        other.write_pem(&dir, "other.pem");
        expired.write_pem(&dir, "expired.pem");
        pki.leaf.write_pem(&dir, "leaf.pem");
        write(&dir.join("README.md"), "skipped by the name filter");

        let config = TrustConfig {
            extra_ca_paths: vec![dir.clone()],
            ..file_only(&file)
        };
        let (store, report) = config.root_store().expect("root store");
        // root + other + leaf (kept with a warning, as the bundle builder keeps it).
        assert_eq!(store.len(), 3);
        assert_eq!(report.anchors, 3);
        let file_report = report.source(TrustSourceKind::SslCertsFile).expect("file");
        assert_eq!(
            (file_report.certificates, file_report.added),
            (1, 1),
            "{file_report:?}"
        );
        let dir_report = report.source(TrustSourceKind::ExtraCaPath).expect("dir");
        assert_eq!(dir_report.path, Some(dir.display().to_string()));
        assert_eq!(
            (
                dir_report.certificates,
                dir_report.added,
                dir_report.already_trusted
            ),
            (3, 2, 1),
            "{dir_report:?}"
        );
        assert_eq!(dir_report.problems.len(), 1, "{dir_report:?}");
        assert!(dir_report.problems[0].reason.starts_with("expired on"));
        assert_eq!(dir_report.warnings.len(), 1, "{dir_report:?}");
        assert!(dir_report.rejected.is_empty());
        let line = report.to_string();
        assert!(
            line.starts_with(
                "3 trust anchors (native certs: off; webpki roots: off; ssl_certs_file "
            ),
            "{line}"
        );
        assert!(
            line.ends_with(": 2 added, 1 already trusted, 1 problem, 1 warning)"),
            "{line}"
        );
        assert_eq!(report.details().count(), 2);
    }

    #[test]
    fn rustls_refusals_are_reported_not_dropped() {
        let mut store = Anchors::new(Collect::StoreOnly);
        let mut report = SourceReport::new(TrustSourceKind::Native, None, true);
        let root = pki::root_ca("Accepted Root");
        store.add(&root.der, None, || "first".into(), &mut report);
        store.add(
            b"\x30\x03\x02\x01\x00",
            None,
            || "second".into(),
            &mut report,
        );
        store.add(&root.der, None, || "third".into(), &mut report);
        assert_eq!(
            (report.certificates, report.added, report.already_trusted),
            (3, 1, 1)
        );
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].origin, "second");
        assert!(
            report.rejected[0]
                .reason
                .starts_with("not usable as a trust anchor: "),
            "{:?}",
            report.rejected[0]
        );
        assert_eq!(store.roots.len(), 1);
    }

    #[test]
    fn load_returns_the_anchors_of_root_store_as_certificates() {
        let tmp = tempdir().expect("tempdir");
        let pki = Pki::new("Tls Load");
        let other = pki::root_ca("Tls Load Other Root");
        let expired = pki::expired_root_ca("Tls Load Expired Root");
        let file = pki.root.write_pem(tmp.path(), "root.pem");
        let dir = tmp.path().join("ca.d");
        std::fs::create_dir(&dir).expect("mkdir");
        pki.root.write_pem(&dir, "root-again.crt");
        other.write_pem(&dir, "other.pem");
        expired.write_pem(&dir, "expired.pem");
        let config = TrustConfig {
            extra_ca_paths: vec![dir],
            ..file_only(&file)
        };

        let (certificates, report) = config.load().expect("load");
        let (store, store_report) = config.root_store().expect("root store");
        assert_eq!(report, store_report);
        assert_eq!(certificates.len(), report.anchors);
        // In the order added, each once, the expired one dropped by the policy.
        let subjects: Vec<&str> = certificates.iter().map(|c| c.subject()).collect();
        assert_eq!(
            subjects,
            vec![
                "CN=Tls Load Root CA, O=Anchorage Test",
                "CN=Tls Load Other Root, O=Anchorage Test"
            ]
        );
        assert_eq!(certificates[0].der(), pki.root.der.as_slice());
        // Validity survives, which a RootCertStore does not keep.
        assert!(certificates[0].not_after().unix() > certificates[0].not_before().unix());
        assert_eq!(root_store_of(&certificates).roots, store.roots);
    }

    #[test]
    fn load_keeps_every_mozilla_root() {
        let config = TrustConfig {
            load_native_certs: false,
            ..TrustConfig::default()
        };
        let (certificates, report) = config.load().expect("load");
        assert_eq!(
            certificates.len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert_eq!(report.anchors, certificates.len());
        let (store, _) = config.root_store().expect("root store");
        assert_eq!(root_store_of(&certificates).roots, store.roots);
    }

    #[test]
    fn load_lists_what_it_cannot_decode_as_rejected() {
        let mut store = Anchors::new(Collect::Certificates);
        let mut report = SourceReport::new(TrustSourceKind::Native, None, true);
        let root = pki::root_ca("Collected Root");
        store.add(&root.der, None, || "first".into(), &mut report);
        store.add(
            b"\x30\x03\x02\x01\x00",
            None,
            || "second".into(),
            &mut report,
        );
        assert_eq!((report.certificates, report.added), (2, 1));
        assert_eq!(report.rejected.len(), 1);
        assert!(
            report.rejected[0]
                .reason
                .starts_with("cannot be decoded as a certificate: "),
            "{:?}",
            report.rejected[0]
        );
        assert_eq!(store.certificates.len(), store.roots.len());
        assert_eq!(store.certificates[0].der(), root.der.as_slice());
    }

    #[test]
    fn nothing_enabled_is_an_error_listing_the_sources() {
        let config = TrustConfig {
            load_native_certs: false,
            load_webpki_certs: false,
            ..TrustConfig::default()
        };
        let err = config.root_store().expect_err("must fail");
        let message = err.to_string();
        assert!(
            message.starts_with("no trust anchors: native certs: off; webpki roots: off;"),
            "{message}"
        );
    }

    #[test]
    fn client_config_uses_the_given_provider() {
        let tmp = tempdir().expect("tempdir");
        let path = pki::root_ca("Client Config Root").write_pem(tmp.path(), "root.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (config, report) = file_only(&path)
            .client_config(provider)
            .expect("client config");
        assert_eq!(report.anchors, 1);
        assert!(config.crypto_provider().cipher_suites.len() > 1);
        // Nothing was installed process-wide.
        assert!(CryptoProvider::get_default().is_none());

        let empty = Arc::new(CryptoProvider {
            cipher_suites: Vec::new(),
            ..rustls::crypto::ring::default_provider()
        });
        let err = file_only(&path)
            .client_config(empty)
            .expect_err("no suites");
        assert!(matches!(err, TlsTrustError::Provider { .. }), "{err:?}");
    }
}

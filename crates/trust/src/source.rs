//! Sources of certificates and [`load`], which reads them all and reports every problem by origin.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

pub(crate) use anchorage_bundle::Origin;
use anchorage_bundle::is_openssl_hash_name;
use anchorage_x509::{Certificate, DecodeError, Position, decode};
use secrecy::SecretString;

use crate::kubernetes::{self, KeyFilter};

/// Where certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file (PEM, DER, PKCS#7, or a Kubernetes manifest when named `.yaml`/`.yml` or starting
    /// like one) or a directory, read recursively.
    Path(PathBuf),
    /// The operating system's trust store, as rustls-native-certs finds it (honours
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    System,
    /// Mozilla's root program, compiled in (webpki-root-certs), so it works offline.
    Mozilla,
    /// Bytes already read (standard input, for one): decoded as a file would be, its problems
    /// and certificates named `name` (e.g. `stdin`).
    Bytes {
        /// How origins name it.
        name: String,
        /// The content: PEM, DER, PKCS#7, a keystore or a Kubernetes manifest.
        bytes: Vec<u8>,
    },
}

/// Which files of a directory are read. Files named explicitly are always read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NameFilter {
    /// Files that look like certificates: `.crt`, `.pem`, `.cer`, `.der`, `.p7b`, `.p7c`, and
    /// OpenSSL `<hash>.<n>` entries.
    #[default]
    CertificateLike,
    /// Only names ending with this suffix (wasmCloud's operator reads `.crt`).
    Suffix(String),
    /// Every file; anything that is not a certificate is reported.
    All,
}

impl NameFilter {
    fn accepts(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Suffix(s) => name.ends_with(s.as_str()),
            Self::CertificateLike => {
                let lower = name.to_ascii_lowercase();
                [".crt", ".pem", ".cer", ".der", ".p7b", ".p7c"]
                    .iter()
                    .any(|s| lower.ends_with(s))
                    || is_openssl_hash_name(name)
            }
        }
    }
}

/// How sources are read.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Which files of a directory are read.
    pub name_filter: NameFilter,
    /// Which keys of a ConfigMap or Secret are read.
    pub key_filter: KeyFilter,
    /// The password of JKS/PKCS#12 keystore sources. Without one, a JKS is read without its
    /// integrity check (as Java does) and a PKCS#12 is tried password-less, then with Java's
    /// `changeit`.
    pub keystore_password: Option<SecretString>,
}

/// Why (part of) a source could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes did not decode (see [`DecodeError`]); a private key is one of these.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The file or directory could not be read.
    #[error("cannot read ({reason}); check that the path exists and is readable")]
    Io {
        /// What the OS said.
        reason: String,
    },
    /// A file larger than [`MAX_SOURCE_BYTES`], refused before it is read into memory.
    #[error(
        "larger than the limit of {limit} bytes for one source (MAX_SOURCE_BYTES, docs/limits.md): refused unread; a trust bundle is a few megabytes, so check that this is the file meant"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A Kubernetes manifest past one of the reader's limits ([`crate::kubernetes::MAX_MANIFEST_DOCUMENTS`],
    /// [`crate::kubernetes::MAX_MANIFEST_EXPANSION`]): the rest of the file is not read.
    #[error("Kubernetes manifest refused: {reason}")]
    ManifestLimit {
        /// Which limit, with its value and constant.
        reason: String,
    },
    /// A directory reached again through a symbolic link.
    #[error(
        "directory symlink loop: this directory was already read through another path, so it was skipped; remove the link if it is not needed"
    )]
    SymlinkLoop,
    /// The YAML could not be parsed.
    #[error(
        "invalid YAML{}: {reason}; fix the manifest (a Kubernetes ConfigMap or Secret is expected here)",
        line.map(|l| format!(" at line {l}")).unwrap_or_default()
    )]
    Yaml {
        /// 1-based line, when known.
        line: Option<usize>,
        /// What the parser said.
        reason: String,
    },
    /// A YAML document that is not a ConfigMap or Secret.
    #[error(
        "not a Kubernetes ConfigMap or Secret (kind: {kind}); give a ConfigMap or Secret manifest, or a certificate file"
    )]
    NotKubernetes {
        /// The document's `kind`, or `none`.
        kind: String,
    },
    /// A value in a Secret's `data` or a ConfigMap's `binaryData` is not base64.
    #[error(
        "value is not valid base64 ({reason}); Secret `data` and ConfigMap `binaryData` values must be base64 (use `stringData` or `data` for plain PEM)"
    )]
    Base64 {
        /// What the decoder said.
        reason: String,
    },
    /// A ConfigMap or Secret with no key the key filter accepts.
    #[error(
        "no keys matching {filter} (keys present: {keys}); rename the keys or pass --k8s-keys all"
    )]
    NoMatchingKeys {
        /// The filter in words.
        filter: String,
        /// The keys that were there.
        keys: String,
    },
    /// The OS trust store could not be read (or part of it).
    #[error("could not be read: {reason}")]
    System {
        /// What went wrong.
        reason: String,
    },
    /// A JKS or PKCS#12 keystore that could not be read (wrong password, malformed, JCEKS).
    #[error("{error}; {hint}")]
    Keystore {
        /// What the keystore decoder said (never a password or key).
        error: anchorage_keystore::KeystoreError,
        /// What to do about it.
        hint: &'static str,
    },
}

impl LoadError {
    /// The kind of private key, when this problem is one.
    pub fn private_key_kind(&self) -> Option<&str> {
        match self {
            Self::Decode(DecodeError::PrivateKey { kind }) => Some(kind),
            _ => None,
        }
    }
}

/// A problem with one source or part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProblem {
    /// Where.
    pub origin: Origin,
    /// What.
    pub error: LoadError,
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.error)
    }
}

/// A certificate and where it was found.
#[derive(Clone, Debug)]
pub struct LoadedCertificate {
    /// The certificate.
    pub certificate: Certificate,
    /// Where it was found.
    pub origin: Origin,
}

/// What [`load`] read: certificates in source order, and every problem.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Certificates, in the order found (duplicates included).
    pub certificates: Vec<LoadedCertificate>,
    /// Problems, in the order found.
    pub problems: Vec<SourceProblem>,
    /// Files read.
    pub files_read: usize,
    /// Directory entries skipped by the name filter.
    pub files_skipped: usize,
}

impl Loaded {
    pub(crate) fn add_decoded(&mut self, origin: &Origin, bytes: &[u8]) {
        let decoded = decode(bytes);
        for found in decoded.certificates {
            let origin = origin.at(found.position);
            self.certificates.push(LoadedCertificate {
                certificate: found.certificate,
                origin,
            });
        }
        for problem in decoded.problems {
            self.problem(origin.at(problem.position), problem.error.into());
        }
    }

    pub(crate) fn problem(&mut self, origin: Origin, error: LoadError) {
        tracing::debug!(%origin, %error, "source problem");
        self.problems.push(SourceProblem { origin, error });
    }
}

/// Reads every source. Never fails as a whole: unreadable or bad inputs become
/// [`SourceProblem`]s and the rest is returned.
pub fn load(sources: &[Source], options: &LoadOptions) -> Loaded {
    let mut loaded = Loaded::default();
    for source in sources {
        match source {
            Source::Path(path) => load_path(path, options, &mut loaded),
            Source::System => load_system(&mut loaded),
            Source::Mozilla => load_mozilla(&mut loaded),
            Source::Bytes { name, bytes } => {
                let origin = Origin {
                    source: name.clone(),
                    detail: None,
                    position: Position::default(),
                };
                loaded.files_read += 1;
                if bytes.len() as u64 > MAX_SOURCE_BYTES {
                    let limit = MAX_SOURCE_BYTES;
                    loaded.problem(origin, LoadError::TooLarge { limit });
                    continue;
                }
                load_bytes(&origin, Path::new(name), bytes, options, &mut loaded);
            }
        }
    }
    loaded
}

fn load_mozilla(loaded: &mut Loaded) {
    let origin = Origin {
        source: "Mozilla roots".into(),
        detail: None,
        position: Position::default(),
    };
    for (i, der) in webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().enumerate() {
        let origin = origin.at(Position {
            line: None,
            index: Some(i + 1),
        });
        match Certificate::from_der(der) {
            Ok(certificate) => loaded.certificates.push(LoadedCertificate {
                certificate,
                origin,
            }),
            Err(e) => loaded.problem(origin, e.into()),
        }
    }
}

fn load_system(loaded: &mut Loaded) {
    let origin = Origin {
        source: "system trust store".into(),
        detail: None,
        position: Position::default(),
    };
    let result = rustls_native_certs::load_native_certs();
    for error in &result.errors {
        loaded.problem(
            origin.clone(),
            LoadError::System {
                reason: error.to_string(),
            },
        );
    }
    if result.certs.is_empty() && result.errors.is_empty() {
        let reason = "no certificates found (is the ca-certificates package installed? SSL_CERT_FILE and SSL_CERT_DIR are honoured)".to_owned();
        loaded.problem(origin.clone(), LoadError::System { reason });
    }
    for (i, der) in result.certs.iter().enumerate() {
        let origin = origin.at(Position {
            line: None,
            index: Some(i + 1),
        });
        match Certificate::from_der(der) {
            Ok(certificate) => loaded.certificates.push(LoadedCertificate {
                certificate,
                origin,
            }),
            Err(e) => loaded.problem(origin, e.into()),
        }
    }
}

fn load_path(path: &Path, options: &LoadOptions, loaded: &mut Loaded) {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let mut files = Vec::new();
            walk_dir(path, options, &mut HashSet::new(), &mut files, loaded);
            load_files(&files, options, loaded);
        }
        Ok(_) => load_file(path, options, loaded),
        Err(e) => loaded.problem(
            Origin::path(path),
            LoadError::Io {
                reason: e.to_string(),
            },
        ),
    }
}

/// The largest file (or `-` input) read as one source: 256 MiB, the CLI's limit for standard
/// input too. A larger file is refused before any of it is read (a regular file by its size; a
/// FIFO or device after `MAX_SOURCE_BYTES + 1` bytes), so a wrong path (`/dev/zero`, a disk
/// image) costs no memory. Trust bundles are a few megabytes.
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads at most `limit` bytes of `path`: more is [`LoadError::TooLarge`].
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read as _;
    let io = |e: std::io::Error| LoadError::Io {
        reason: e.to_string(),
    };
    let file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_file() && meta.len() > limit {
        return Err(LoadError::TooLarge { limit });
    }
    let capacity = if meta.is_file() { meta.len() } else { 0 };
    let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge { limit });
    }
    Ok(bytes)
}

fn load_file(path: &Path, options: &LoadOptions, loaded: &mut Loaded) {
    let origin = Origin::path(path);
    let bytes = match read_bounded(path, MAX_SOURCE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => return loaded.problem(origin, e),
    };
    loaded.files_read += 1;
    load_bytes(&origin, path, &bytes, options, loaded);
}

/// Decodes one file's content: a keystore, a Kubernetes manifest (by `name`'s extension or the
/// content), else PEM/DER/PKCS#7.
fn load_bytes(
    origin: &Origin,
    name: &Path,
    bytes: &[u8],
    options: &LoadOptions,
    loaded: &mut Loaded,
) {
    if anchorage_keystore::sniff(bytes).is_some() {
        load_keystore(origin, bytes, options, loaded);
    } else if kubernetes::looks_like_manifest(name, bytes) {
        kubernetes::load_manifests(origin, bytes, &options.key_filter, loaded);
    } else {
        loaded.add_decoded(origin, bytes);
    }
}

/// A Java keystore source: its certificates, each named by alias; a key entry is reported as a
/// private key (the policy refuses it), never decrypted.
fn load_keystore(origin: &Origin, bytes: &[u8], options: &LoadOptions, loaded: &mut Loaded) {
    use anchorage_keystore::KeystoreError;

    let attempt = |password: Option<&SecretString>| anchorage_keystore::decode(bytes, password);
    let result = match &options.keystore_password {
        Some(password) => attempt(Some(password)),
        None => match attempt(None) {
            Err(KeystoreError::PasswordRequired { .. }) => {
                attempt(Some(&SecretString::from("changeit")))
            }
            other => other,
        },
    };
    let store = match result {
        Ok(store) => store,
        Err(error) => {
            let hint = match error {
                KeystoreError::WrongPassword { .. } | KeystoreError::PasswordRequired { .. } => {
                    "pass it with --source-password (Java's default is changeit)"
                }
                KeystoreError::Jceks => {
                    "convert it with keytool -importkeystore -deststoretype pkcs12"
                }
                KeystoreError::KdfLimit { .. } => {
                    "it was refused unread, before any key derivation (see docs/limits.md)"
                }
                _ => "check that the file is a complete JKS or PKCS#12 keystore",
            };
            return loaded.problem(origin.clone(), LoadError::Keystore { error, hint });
        }
    };
    for key in &store.key_entries {
        let alias = key.alias.as_deref().unwrap_or("unnamed");
        let origin = Origin {
            detail: Some(format!("{} key entry {alias}", store.kind)),
            ..origin.clone()
        };
        let kind = format!("key entry in a {} keystore", store.kind);
        loaded.problem(origin, DecodeError::PrivateKey { kind }.into());
    }
    for stored in &store.certificates {
        let origin = Origin {
            detail: Some(format!(
                "{} alias {}",
                store.kind,
                stored.alias.as_deref().unwrap_or("unnamed")
            )),
            ..origin.clone()
        };
        match Certificate::from_der(&stored.der) {
            Ok(certificate) => loaded.certificates.push(LoadedCertificate {
                certificate,
                origin,
            }),
            Err(e) => loaded.problem(origin, e.into()),
        }
    }
}

/// Reads and decodes files on all cores, keeping their order in the result. Decoding dominates
/// the cost of large directories (10,000 CAs), and files are independent.
fn load_files(files: &[PathBuf], options: &LoadOptions, loaded: &mut Loaded) {
    const MIN_FILES_PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files.len().div_ceil(MIN_FILES_PER_THREAD))
        .max(1);
    if threads == 1 {
        files.iter().for_each(|f| load_file(f, options, loaded));
        return;
    }
    let chunk = files.len().div_ceil(threads);
    let parts: Vec<Loaded> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut partial = Loaded::default();
                    part.iter()
                        .for_each(|f| load_file(f, options, &mut partial));
                    partial
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic is a bug: carry it on rather than silently drop this chunk's files.
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for part in parts {
        loaded.certificates.extend(part.certificates);
        loaded.problems.extend(part.problems);
        loaded.files_read += part.files_read;
    }
}

/// Lists the files of `dir` (recursively, sorted by name, following symbolic links but not
/// looping) that the name filter accepts.
fn walk_dir(
    dir: &Path,
    options: &LoadOptions,
    visited: &mut HashSet<(u64, u64)>,
    files: &mut Vec<PathBuf>,
    loaded: &mut Loaded,
) {
    let origin = Origin::path(dir);
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            return loaded.problem(
                origin,
                LoadError::Io {
                    reason: e.to_string(),
                },
            );
        }
    };
    if !visited.insert((meta.dev(), meta.ino())) {
        return loaded.problem(origin, LoadError::SymlinkLoop);
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return loaded.problem(
                origin,
                LoadError::Io {
                    reason: e.to_string(),
                },
            );
        }
    };
    let mut paths: Vec<(String, PathBuf, Option<fs::FileType>)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path(),
                e.file_type().ok(),
            )
        })
        .filter(|(name, _, _)| !name.starts_with('.'))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, path, file_type) in paths {
        // The directory entry's type is free; only symbolic links (and the rare file system
        // that does not report types) need a stat to know what they point at.
        let is_dir = match file_type {
            Some(t) if t.is_dir() => Ok(true),
            Some(t) if t.is_file() => Ok(false),
            _ => fs::metadata(&path).map(|m| m.is_dir()),
        };
        match is_dir {
            Ok(true) => walk_dir(&path, options, visited, files, loaded),
            Ok(false) if options.name_filter.accepts(&name) => files.push(path),
            Ok(false) => loaded.files_skipped += 1,
            Err(e) => loaded.problem(
                Origin::path(&path),
                LoadError::Io {
                    reason: e.to_string(),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filters() {
        let f = NameFilter::default();
        assert!(f.accepts("corp.CRT"));
        assert!(f.accepts("5ad8a5d6.0"));
        assert!(f.accepts("5ad8a5d6.r1"));
        assert!(!f.accepts("README.md"));
        assert!(!f.accepts("5ad8a5d6."));
        let crt = NameFilter::Suffix(".crt".into());
        assert!(crt.accepts("a.crt"));
        assert!(!crt.accepts("a.pem"));
        assert!(NameFilter::All.accepts("anything"));
    }

    #[test]
    fn bytes_are_read_as_a_file_named_by_the_source() {
        let pem = anchorage_test_support::pki::root_ca("Bytes Source Root").pem;
        let loaded = load(
            &[Source::Bytes {
                name: "stdin".into(),
                bytes: pem.into_bytes(),
            }],
            &LoadOptions::default(),
        );
        assert_eq!(loaded.certificates.len(), 1);
        assert_eq!(loaded.certificates[0].origin.to_string(), "stdin: line 1");
        assert_eq!(loaded.files_read, 1);
        // Negative control: bytes that hold no certificate are a problem named the same way.
        let loaded = load(
            &[Source::Bytes {
                name: "stdin".into(),
                bytes: b"apiVersion: v1\nkind: Pod\n".to_vec(),
            }],
            &LoadOptions::default(),
        );
        assert!(loaded.certificates.is_empty());
        assert!(loaded.problems[0].to_string().starts_with("stdin: "));
    }

    #[test]
    fn origin_display() {
        let o = Origin {
            source: "cm.yaml".into(),
            detail: Some("document 2, ConfigMap ns/ca, key ca.crt".into()),
            position: Position {
                line: Some(3),
                index: None,
            },
        };
        assert_eq!(
            o.to_string(),
            "cm.yaml: document 2, ConfigMap ns/ca, key ca.crt: line 3"
        );
    }

    /// PEM and bundle size (issue 18): a file one byte over `MAX_SOURCE_BYTES` (sparse: no disk
    /// used) is one problem naming the file and the limit, refused by its size before a byte is
    /// read; a file at the limit is read (control, the first 64 KiB only: `read_bounded`), and
    /// standard input over the limit is refused too.
    #[test]
    fn a_source_over_the_size_limit_is_refused_unread() {
        let dir = anchorage_test_support::tempdir().unwrap();
        let path = dir.path().join("huge.pem");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_SOURCE_BYTES + 1).unwrap();
        let loaded = load(&[Source::Path(path.clone())], &LoadOptions::default());
        let [problem] = loaded.problems.as_slice() else {
            panic!("{:?}", loaded.problems);
        };
        assert_eq!(
            problem.error,
            LoadError::TooLarge {
                limit: MAX_SOURCE_BYTES
            }
        );
        let text = format!("{}: {}", problem.origin, problem.error);
        assert!(
            text.starts_with(&format!(
                "{}: larger than the limit of 268435456 bytes",
                path.display()
            )) && text.contains("MAX_SOURCE_BYTES"),
            "{text}"
        );
        let small = dir.path().join("small.pem");
        std::fs::File::create(&small)
            .unwrap()
            .set_len(64 * 1024)
            .unwrap();
        assert_eq!(read_bounded(&small, 64 * 1024).unwrap().len(), 64 * 1024);
        assert_eq!(
            read_bounded(&small, 64 * 1024 - 1),
            Err(LoadError::TooLarge {
                limit: 64 * 1024 - 1
            })
        );
        // Not a regular file: read up to the limit, then refused.
        assert_eq!(
            read_bounded(Path::new("/dev/zero"), 1024),
            Err(LoadError::TooLarge { limit: 1024 })
        );
    }

    /// Attack (issue 19, item 5) through `bundle build`: a keystore source whose scrypt asks for
    /// 1 GiB is a problem naming the file and the limit, reported without deriving anything
    /// (password-less, then with `changeit`, as an unconfigured source is tried).
    #[test]
    fn a_keystore_asking_for_a_huge_scrypt_is_a_problem_naming_the_file() {
        let dir = anchorage_test_support::tempdir().unwrap();
        let path = dir.path().join("truststore.p12");
        #[allow(clippy::disallowed_methods)] // a test input
        std::fs::write(
            &path,
            include_bytes!("../../keystore/testdata/scrypt-1gib.p12"),
        )
        .unwrap();
        for password in [None, Some(SecretString::from("changeit"))] {
            let options = LoadOptions {
                keystore_password: password,
                ..LoadOptions::default()
            };
            let loaded = load(&[Source::Path(path.clone())], &options);
            assert!(loaded.certificates.is_empty());
            let [problem] = loaded.problems.as_slice() else {
                panic!("{:?}", loaded.problems);
            };
            assert_eq!(problem.origin.source, path.display().to_string());
            assert!(
                matches!(
                    &problem.error,
                    LoadError::Keystore {
                        error: anchorage_keystore::KeystoreError::KdfLimit { .. },
                        ..
                    }
                ),
                "{:?}",
                problem.error
            );
            let text = problem.error.to_string();
            assert!(
                text.contains("scrypt N=1048576") && text.contains("64 MiB"),
                "{text}"
            );
        }
    }
}

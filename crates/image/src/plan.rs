//! The plan: which files the new layer holds, computed from what the image has and the CAs to
//! add. Pure: no layers are read here (that is [`crate::find`]) and nothing is written (that is
//! [`crate::write_layer`]).
//!
//! An image without any bundle gets one holding Mozilla's roots plus the new CAs (as
//! [`Mode::Replace`] writes), so public TLS keeps working.
//!
//! Adding is idempotent: a certificate already in a file (by SHA-256) is not added again, and a
//! file that would not change is left out of the plan, so running twice with the same CAs
//! plans nothing the second time.

use std::collections::{BTreeMap, BTreeSet};

use anchorage_bundle::{Bundle, Origin, PemOptions, render_jks, render_pem, render_pkcs12};
use anchorage_keystore::{KeystoreKind, Pkcs12Options, Pkcs12Profile, SecretString};
use anchorage_x509::{Certificate, Position, Sha256Fingerprint};

use crate::error::ImageError;
use crate::locations::{
    BUNDLE_PATHS, DEFAULT_BUNDLE_PATH, HASH_DIR, HASH_SLOTS, JAVA_GLOBS, JAVA_HOME_STORES,
    JAVA_PATHS, is_java_store,
};
use crate::oci::config_env;
use crate::read::{ImageFiles, Located, Lookup, Until, join, normalize, parent, sorted};

/// File name of the private-only PEM file written next to the bundle for variables that add to
/// a runtime's compiled-in roots (`NODE_EXTRA_CA_CERTS`).
pub const EXTRA_FILE_NAME: &str = "anchorage-extra-ca.pem";

/// How the bundle is produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Read the image's bundles and add the missing CAs.
    #[default]
    Merge,
    /// Read nothing: write Mozilla's roots plus the new CAs at these paths (real paths: nothing
    /// is resolved, so on an image where a parent is a link this would replace the link).
    Replace {
        /// Where to write the bundle; usually [`DEFAULT_BUNDLE_PATH`].
        paths: Vec<String>,
    },
}

/// Settings of [`plan`].
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Merge or replace.
    pub mode: Mode,
    /// The Java trust store password (Java's default is `changeit`).
    pub java_password: SecretString,
    /// Iterations for a re-encoded password-protected PKCS#12 `cacerts`.
    pub pkcs12_iterations: u32,
    /// Also plan the environment variables pointing runtimes at the stores (and the
    /// private-only file [`EXTRA_FILE_NAME`] for `NODE_EXTRA_CA_CERTS`).
    pub env: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Merge,
            java_password: SecretString::from("changeit"),
            pkcs12_iterations: anchorage_keystore::DEFAULT_ITERATIONS,
            env: false,
        }
    }
}

/// What a planned file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileRole {
    /// A PEM bundle (merged, replaced or created).
    Bundle,
    /// An OpenSSL `<hash>.<n>` entry holding one certificate.
    HashEntry,
    /// A Java trust store.
    JavaStore,
    /// The private-only PEM file for variables that add to compiled-in roots.
    Extra,
}

/// One file of the new layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    /// Absolute real path inside the image.
    pub path: String,
    /// What it is.
    pub role: FileRole,
    /// Its bytes.
    pub contents: Vec<u8>,
    /// How many certificates it gains (for a created or replaced file: all it holds).
    pub added: usize,
}

/// The new layer's files, the variables to set, and what was already up to date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to write, sorted by path.
    pub files: Vec<PlannedFile>,
    /// Existing stores that already hold every new CA (real paths).
    pub unchanged: Vec<String>,
    /// Environment variables (`NAME`, value), when [`PlanOptions::env`] asked for them.
    pub env: Vec<(String, String)>,
}

impl Plan {
    /// True when nothing needs writing: the image already trusts every CA.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// How far [`lookup_for`] lets [`crate::find`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    /// Stop at the layer where a bundle is found (the usual case: the distribution's
    /// certificate package writes the bundle, the hashed entries and the Java store in one
    /// layer). A Java store or a `<hash>.<n>` entry only in lower layers is then not seen: the
    /// Java store is not updated, and a new hash entry could shadow a lower one of the same
    /// number.
    #[default]
    UntilBundle,
    /// Read as far as every answer needs (every layer whenever something is absent, which is
    /// the common case for Java stores).
    Complete,
}

/// What an image's configuration says about where it keeps trust stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageHints {
    /// `JAVA_HOME` from the configuration's `Env` (normalized; only an absolute one: the
    /// runtime resolves a relative one against a working directory we cannot know).
    pub java_home: Option<String>,
}

impl ImageHints {
    /// The hints of one platform's image configuration (none when it is not JSON or has no
    /// `Env`: the hints only add places to look).
    pub fn from_config(config: &[u8]) -> Self {
        let java_home = config_env(config)
            .into_iter()
            .rev() // the last definition wins, as in `docker run`
            .find(|(name, _)| name == "JAVA_HOME")
            .map(|(_, value)| value)
            .filter(|v| v.starts_with('/'))
            .map(|v| normalize(&v));
        Self { java_home }
    }
}

/// What to ask [`crate::find`] for, to plan adding `new` in [`Mode::Merge`]: the bundle and
/// Java locations (the catalogue, every JDK under `/usr/lib/jvm`, and the stores under the
/// image's `JAVA_HOME`), the hashed directory, and its `<hash>.<n>` slots for each new CA.
pub fn lookup_for(new: &Bundle, hints: &ImageHints, depth: Depth) -> Lookup {
    let hashes: BTreeSet<String> = new
        .certificates()
        .map(|c| c.subject_hash().to_string())
        .collect();
    let mut paths: Vec<String> = BUNDLE_PATHS
        .iter()
        .chain(JAVA_PATHS)
        .chain(std::iter::once(&HASH_DIR))
        .map(|p| (*p).to_owned())
        .collect();
    // The private-only file written beside a bundle on an earlier run (see PlanOptions::env).
    paths.extend(
        BUNDLE_PATHS
            .iter()
            .map(|p| join(parent(p), EXTRA_FILE_NAME)),
    );
    for hash in &hashes {
        paths.extend((0..HASH_SLOTS).map(|n| format!("{HASH_DIR}/{hash}.{n}")));
    }
    if let Some(home) = &hints.java_home {
        paths.extend(JAVA_HOME_STORES.iter().map(|store| join(home, store)));
    }
    Lookup {
        paths: sorted(paths),
        hash_dirs: vec![HASH_DIR.to_owned()],
        globs: JAVA_GLOBS.iter().map(|g| (*g).to_owned()).collect(),
        until: match depth {
            Depth::UntilBundle => {
                Until::AnyFound(BUNDLE_PATHS.iter().map(|p| (*p).to_owned()).collect())
            }
            Depth::Complete => Until::AllKnown,
        },
    }
}

/// Plans the new layer adding `new` to the image whose files `found` describes (from
/// [`crate::find`] with [`lookup_for`]; ignored in [`Mode::Replace`]).
pub fn plan(found: &ImageFiles, new: &Bundle, options: &PlanOptions) -> Result<Plan, ImageError> {
    let mut plan = Plan::default();
    let bundle_paths = match &options.mode {
        Mode::Replace { paths } => {
            let all = mozilla_plus(new);
            let pem = render_pem(&all, &PemOptions::default()).into_bytes();
            for path in sorted(paths.iter().cloned()) {
                plan.files.push(PlannedFile {
                    path: path.clone(),
                    role: FileRole::Bundle,
                    contents: pem.clone(),
                    added: all.len(),
                });
            }
            sorted(paths.iter().cloned())
        }
        Mode::Merge => {
            let bundles = merge_bundles(found, new, &mut plan);
            hash_entries(found, new, &mut plan)?;
            java_stores(found, new, options, &mut plan)?;
            bundles
        }
    };

    if options.env {
        let extra = new.without_mozilla_roots();
        if let Some(bundle) = bundle_paths.first() {
            plan.env.push(("SSL_CERT_FILE".to_owned(), bundle.clone()));
            plan.env
                .push(("REQUESTS_CA_BUNDLE".to_owned(), bundle.clone()));
            if !extra.is_empty() {
                let path = join(parent(bundle), EXTRA_FILE_NAME);
                let contents = render_pem(&extra, &PemOptions::default()).into_bytes();
                let written_before = BUNDLE_PATHS
                    .iter()
                    .filter_map(|p| found.file(&join(parent(p), EXTRA_FILE_NAME)))
                    .any(|f| f.real_path == path && f.contents == contents);
                if written_before {
                    plan.unchanged.push(path.clone());
                } else {
                    plan.files.push(PlannedFile {
                        path: path.clone(),
                        role: FileRole::Extra,
                        contents,
                        added: extra.len(),
                    });
                }
                plan.env.push(("NODE_EXTRA_CA_CERTS".to_owned(), path));
            }
        }
        if found.hash_dirs.get(HASH_DIR) == Some(&true)
            && let Some(Located::Dir { real_path }) = found.paths.get(HASH_DIR)
        {
            plan.env
                .push(("SSL_CERT_DIR".to_owned(), real_path.clone()));
        }
        plan.env.sort();
    }
    plan.files.sort_by(|a, b| a.path.cmp(&b.path));
    plan.files.dedup_by(|a, b| a.path == b.path);
    Ok(plan)
}

/// Mozilla's roots plus `new`: what a replaced or created bundle holds.
fn mozilla_plus(new: &Bundle) -> Bundle {
    let mozilla = Origin {
        source: "Mozilla roots".to_owned(),
        detail: None,
        position: Position::default(),
    };
    Bundle::new(
        webpki_roots()
            .map(|c| (c, mozilla.clone()))
            .chain(new.entries().iter().map(|e| {
                let origin = e.origins.first().cloned().unwrap_or(mozilla.clone());
                (e.certificate.clone(), origin)
            })),
    )
}

fn webpki_roots() -> impl Iterator<Item = Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| Certificate::from_der(der).ok())
}

/// Adds the missing CAs to each real bundle file found (or creates the default one), and
/// returns the real bundle paths, first found first.
fn merge_bundles(found: &ImageFiles, new: &Bundle, plan: &mut Plan) -> Vec<String> {
    let mut real: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut order = Vec::new();
    for path in BUNDLE_PATHS {
        if let Some(file) = found.file(path)
            && real
                .insert(file.real_path.clone(), &file.contents)
                .is_none()
        {
            order.push(file.real_path.clone());
        }
    }
    if order.is_empty() {
        // Mozilla's roots too: a program that finds this file trusts only what it holds (Go
        // stops using its embedded x509roots/fallback once a system bundle exists), so a bundle
        // of the private CAs alone would break every public TLS connection of the image.
        let all = mozilla_plus(new);
        plan.files.push(PlannedFile {
            path: DEFAULT_BUNDLE_PATH.to_owned(),
            role: FileRole::Bundle,
            contents: render_pem(&all, &PemOptions::default()).into_bytes(),
            added: all.len(),
        });
        return vec![DEFAULT_BUNDLE_PATH.to_owned()];
    }
    for path in &order {
        let existing = real[path.as_str()];
        let have = fingerprints(existing);
        let missing: Vec<&Certificate> = new
            .certificates()
            .filter(|c| !have.contains(&c.sha256()))
            .collect();
        if missing.is_empty() {
            plan.unchanged.push(path.clone());
            continue;
        }
        let mut contents = existing.to_vec();
        if !contents.is_empty() && !contents.ends_with(b"\n") {
            contents.push(b'\n');
        }
        for cert in &missing {
            contents.extend_from_slice(cert.to_pem().as_bytes());
        }
        plan.files.push(PlannedFile {
            path: path.clone(),
            role: FileRole::Bundle,
            contents,
            added: missing.len(),
        });
    }
    order
}

fn fingerprints(bytes: &[u8]) -> BTreeSet<Sha256Fingerprint> {
    anchorage_x509::decode(bytes)
        .certificates
        .iter()
        .map(|f| f.certificate.sha256())
        .collect()
}

/// Writes a `<hash>.<n>` file for each new CA the hashed directory lacks, when the image keeps
/// such entries.
fn hash_entries(found: &ImageFiles, new: &Bundle, plan: &mut Plan) -> Result<(), ImageError> {
    if found.hash_dirs.get(HASH_DIR) != Some(&true) {
        return Ok(());
    }
    let Some(Located::Dir { real_path: dir }) = found.paths.get(HASH_DIR) else {
        return Ok(());
    };
    // Slots we fill ourselves, per hash.
    let mut taken: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for cert in new.certificates() {
        let hash = cert.subject_hash().to_string();
        let mut free = None;
        let mut present = false;
        for n in 0..HASH_SLOTS {
            if taken.get(&hash).is_some_and(|t| t.contains(&n)) {
                continue;
            }
            match found.paths.get(&format!("{HASH_DIR}/{hash}.{n}")) {
                Some(Located::File(file)) => {
                    if fingerprints(&file.contents).contains(&cert.sha256()) {
                        present = true;
                        break;
                    }
                }
                Some(Located::Missing | Located::Unread) | None => {
                    // OpenSSL stops at the first gap: the first free number is the one.
                    free.get_or_insert(n);
                    break;
                }
                Some(_) => {}
            }
        }
        if present {
            continue;
        }
        let Some(n) = free else {
            return Err(ImageError::HashSlotsExhausted {
                dir: dir.clone(),
                hash,
                last: HASH_SLOTS - 1,
            });
        };
        taken.entry(hash.clone()).or_default().insert(n);
        plan.files.push(PlannedFile {
            path: join(dir, &format!("{hash}.{n}")),
            role: FileRole::HashEntry,
            contents: cert.to_pem().into_bytes(),
            added: 1,
        });
    }
    Ok(())
}

/// Re-encodes each Java trust store found with the new CAs added, in its own format.
fn java_stores(
    found: &ImageFiles,
    new: &Bundle,
    options: &PlanOptions,
    plan: &mut Plan,
) -> Result<(), ImageError> {
    let mut done = BTreeSet::new();
    // Every store asked about, however it was reached (catalogue, glob, JAVA_HOME); a store
    // reached by several paths (Debian's links) is written once, at its real path.
    for (path, located) in &found.paths {
        let Located::File(file) = located else {
            continue;
        };
        if !is_java_store(path) {
            continue;
        }
        if !done.insert(file.real_path.clone()) {
            continue;
        }
        let real = &file.real_path;
        let store = anchorage_keystore::decode(&file.contents, Some(&options.java_password))
            .map_err(|source| ImageError::JavaStore {
                path: real.clone(),
                source,
            })?;
        refuse_if_any(
            real,
            "key entries",
            store
                .key_entries
                .iter()
                .map(|k| k.alias.as_deref().unwrap_or("?")),
        )?;
        refuse_if_any(
            real,
            "untrusted certificates",
            store
                .certificates
                .iter()
                .filter(|c| !c.trusted)
                .map(|c| c.alias.as_deref().unwrap_or("?")),
        )?;
        let mut existing = Vec::new();
        let mut bad = Vec::new();
        for stored in &store.certificates {
            match Certificate::from_der(&stored.der) {
                Ok(c) => existing.push(c),
                Err(_) => bad.push(stored.alias.as_deref().unwrap_or("?")),
            }
        }
        refuse_if_any(real, "undecodable certificates", bad)?;
        let have: BTreeSet<Sha256Fingerprint> = existing.iter().map(|c| c.sha256()).collect();
        let added = new
            .certificates()
            .filter(|c| !have.contains(&c.sha256()))
            .count();
        if added == 0 {
            plan.unchanged.push(real.clone());
            continue;
        }
        let origin = Origin {
            source: real.clone(),
            detail: None,
            position: Position::default(),
        };
        let merged = Bundle::new(
            existing
                .into_iter()
                .chain(new.certificates().cloned())
                .map(|c| (c, origin.clone())),
        );
        let encoded = match store.kind {
            KeystoreKind::Jks => render_jks(&merged, &options.java_password),
            _ => {
                let pkcs12 = if store.integrity_checked {
                    let mut o = Pkcs12Options::protected(
                        Pkcs12Profile::Modern2023,
                        options.java_password.clone(),
                    );
                    o.iterations = options.pkcs12_iterations;
                    o
                } else {
                    Pkcs12Options::unprotected()
                };
                render_pkcs12(&merged, &pkcs12)
            }
        }
        .map_err(|source| ImageError::JavaStoreEncode {
            path: real.clone(),
            source,
        })?;
        plan.files.push(PlannedFile {
            path: real.clone(),
            role: FileRole::JavaStore,
            contents: encoded,
            added,
        });
    }
    Ok(())
}

fn refuse_if_any<S: AsRef<str>>(
    path: &str,
    what: &'static str,
    aliases: impl IntoIterator<Item = S>,
) -> Result<(), ImageError> {
    let aliases: Vec<String> = aliases.into_iter().map(|a| a.as_ref().to_owned()).collect();
    if aliases.is_empty() {
        Ok(())
    } else {
        Err(ImageError::JavaStoreNotOnlyTrusted {
            path: path.to_owned(),
            what,
            aliases: aliases.join(", "),
        })
    }
}

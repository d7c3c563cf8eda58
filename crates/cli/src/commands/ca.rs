//! `anchorage ca`: the built-in CA kept in an embedded store: `init`, `issue`, `show`,
//! `export`, `import` (and `issue --backend vault`, from a Vault/OpenBao PKI role).
//!
//! This module resolves what was typed into library values (`InitOptions`,
//! `CertificateRequest`), opens the store in the data directory, loads and saves the CA through
//! [`anchorage_ca::persist`], writes files through [`anchorage_trust::atomic`] (keys 0600 from
//! the moment they exist), and picks exit codes and words. What a certificate contains, how a CA
//! is checked on import and how keys are stored belong to `anchorage-ca`.
//!
//! Keys never reach stdout unless asked for by `export` (and never a terminal), and never
//! reach an error message: the library's errors carry no key material, and Secret manifests are
//! walked here with messages of our own.

mod args;
mod issue;
mod rotate;
mod transfer;

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anchorage_ca::persist::{self, Kdf, Loaded, STORE_KEY, SaveOptions};
use anchorage_ca::{BuiltinCa, CaError, Clock as _, InitOptions, IntermediateOptions, KeyType};
use anchorage_store::{EmbeddedStore, Store as _};
use anchorage_x509::{Certificate, NameConstraints, NameSubtree, Sha256Fingerprint, Timestamp};
use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroize as _;

use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::{Globals, Run};
use crate::options::OutputFormat;
use crate::render::print_json;
use args::{CaAction, CaInitArgs, CaShowArgs};

pub(crate) use crate::options::{PASSPHRASE_ENV, parse_duration, read_passphrase};
pub(crate) use args::CaCommand;

/// `anchorage ca …`. With `--output json`, `main` prints a failure's `{ "schema", "error",
/// "exit_code" }` on stdout (the message goes to stderr too).
impl Run for CaCommand {
    fn json(&self) -> bool {
        let output = match &self.action {
            CaAction::Init(a) => a.output,
            CaAction::Issue(a) => a.output,
            CaAction::Show(a) => a.output,
            CaAction::Export(a) => a.output,
            CaAction::Import(a) => a.output,
            CaAction::Rotate(a) => a.output(),
        };
        output == OutputFormat::Json
    }

    /// `ca issue --backend vault` connects to OpenBao.
    fn connects_out(&self) -> bool {
        matches!(self.action, CaAction::Issue(_) | CaAction::Rotate(_))
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        run(self, globals)
    }
}

fn run(cmd: CaCommand, globals: &Globals) -> Result<Code, Failure> {
    let CaCommand {
        data_dir,
        passphrase_file,
        action,
    } = cmd;
    // `rotate` talks to a running serve: no store, no key here.
    let action = match action {
        CaAction::Rotate(a) => return rotate::run(a, data_dir, globals),
        other => other,
    };
    // CA keys are read (or made) by every action but `show`: no core dumps, no same-user
    // inspection, before any is.
    crate::harden::harden()
        .and_then(|()| Context::new(data_dir, passphrase_file.as_deref()))
        .and_then(|ctx| match action {
            CaAction::Init(a) => init(&ctx, &a),
            CaAction::Issue(a) => issue::issue(&ctx, &a, &globals.outbound),
            CaAction::Show(a) => show(&ctx, &a),
            CaAction::Export(a) => transfer::export(&ctx, &a),
            CaAction::Import(a) => transfer::import(&ctx, &a),
            CaAction::Rotate(_) => Err(Failure::new(
                Code::Failure,
                "ca rotate runs before the store is opened",
            )),
        })
}

/// Everything the CA commands share: where the store is, the passphrase, the global
/// `--tls-ca-path` list (for Vault), a runtime for the async APIs.
pub(crate) struct Context {
    /// `None` when neither the option, the variables nor HOME give one: only commands that
    /// open the store fail then.
    data_dir: Option<PathBuf>,
    passphrase: Option<SecretString>,
    /// Where the passphrase came from, for messages.
    passphrase_origin: String,
    runtime: tokio::runtime::Runtime,
}

/// A CA saved by `init` or `import`.
struct Saved {
    revision: u64,
    replaced: bool,
}

impl Context {
    fn new(data_dir: Option<PathBuf>, passphrase_file: Option<&Path>) -> Result<Self, Failure> {
        let data_dir = data_dir.or_else(persist::data_dir);
        let (passphrase, passphrase_origin) = read_passphrase(passphrase_file)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
        Ok(Self {
            data_dir,
            passphrase,
            passphrase_origin,
            runtime,
        })
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The store file (only meaningful once [`Context::open`] succeeded).
    fn store_path(&self) -> PathBuf {
        self.data_dir
            .as_deref()
            .unwrap_or(Path::new("."))
            .join(EmbeddedStore::FILE_NAME)
    }

    /// Opens the store. Without `create`, a missing store file is "no CA" (exit 8) and nothing
    /// is created.
    fn open(&self, create: bool) -> Result<EmbeddedStore, Failure> {
        let Some(data_dir) = &self.data_dir else {
            return Err(Failure::new(
                Code::Usage,
                "no data directory for the CA store: give --data-dir DIR or set ANCHORAGE_DATA_DIR (HOME is not set either)",
            ));
        };
        let path = self.store_path();
        if !create && !path.exists() {
            return Err(Failure::new(
                Code::CaMissing,
                format!(
                    "no CA in {}: there is no store file {}; run `anchorage ca init` or `anchorage ca import`, or point --data-dir (or ANCHORAGE_DATA_DIR) at the directory that holds the CA",
                    data_dir.display(),
                    path.display()
                ),
            ));
        }
        EmbeddedStore::open(&path).map_err(|e| store_failure(&e))
    }

    /// Whether the store holds a CA record (any, even a damaged one), and its revision.
    fn existing_revision(&self, store: &EmbeddedStore) -> Result<Option<u64>, Failure> {
        let entry = self
            .block_on(store.get(STORE_KEY))
            .map_err(|e| store_failure(&e))?;
        Ok(entry.map(|mut e| {
            // The record may hold a key in clear.
            e.value.zeroize();
            e.revision
        }))
    }

    /// Loads the CA, decrypting its keys with the passphrase when they are encrypted.
    fn load(&self, store: &EmbeddedStore) -> Result<Loaded, Failure> {
        self.block_on(persist::load(store, self.passphrase.as_ref()))
            .map_err(|e| self.load_failure(e))
    }

    /// Saves `ca`: creates the record, or with `force` replaces whatever record is there
    /// (compare-and-swap on the revision just read, so a concurrent change is not lost).
    fn save(&self, store: &EmbeddedStore, ca: &BuiltinCa, force: bool) -> Result<Saved, Failure> {
        let existing = if force {
            self.existing_revision(store)?
        } else {
            None
        };
        let options = SaveOptions {
            passphrase: self.passphrase.as_ref(),
            kdf: Kdf::default(),
            replace_revision: existing,
        };
        let revision = self
            .block_on(persist::save(store, ca, &options))
            .map_err(|e| match e {
                CaError::AlreadyInitialised { revision, .. } => self.exists_failure(revision),
                CaError::Store(ref s) if s.is_conflict() => Failure::new(
                    e.code(),
                    format!(
                        "the CA in {} changed while it was being replaced (another `ca init` or `ca import`?); run the command again",
                        self.store_path().display()
                    ),
                ),
                other => self.load_failure(other),
            })?;
        Ok(Saved {
            revision,
            replaced: existing.is_some(),
        })
    }

    fn exists_failure(&self, revision: u64) -> Failure {
        Failure::new(
            Code::CaExists,
            format!(
                "a CA already exists in {} (revision {revision}): add --force to replace it; certificates it issued stop validating once peers trust the new root only (keep a copy first: `anchorage ca export --format pem --out ca-backup/`)",
                self.store_path().display()
            ),
        )
    }

    /// Refuses early (before making keys) when a CA exists and `force` is not given.
    fn refuse_existing(&self, store: &EmbeddedStore, force: bool) -> Result<(), Failure> {
        if !force && let Some(revision) = self.existing_revision(store)? {
            return Err(self.exists_failure(revision));
        }
        Ok(())
    }

    /// An error loading or saving the stored CA.
    fn load_failure(&self, e: CaError) -> Failure {
        let store = self.store_path();
        let store = store.display();
        let code = e.code();
        match e {
            CaError::NotInitialised { .. } => Failure::new(
                code,
                format!(
                    "no CA in {store}: run `anchorage ca init` or `anchorage ca import`, or point --data-dir (or ANCHORAGE_DATA_DIR) at the directory that holds the CA"
                ),
            ),
            CaError::AlreadyInitialised { revision, .. } => self.exists_failure(revision),
            CaError::PassphraseRequired => Failure::new(
                code,
                format!(
                    "the CA key in {store} is encrypted: give its passphrase with --passphrase-file FILE or {PASSPHRASE_ENV}"
                ),
            ),
            CaError::WrongPassphrase => Failure::new(
                code,
                format!(
                    "the passphrase from {} does not decrypt the CA key in {store} (or the stored key is damaged): check the passphrase",
                    self.passphrase_origin
                ),
            ),
            CaError::Store(e) => store_failure(&e),
            CaError::Crypto { .. } => Failure::new(code, with_causes(&e)),
            // Anything else read back from the store means the record is damaged.
            other => Failure::new(
                code,
                format!(
                    "{store}: {}; replace the CA with `anchorage ca init --force` or `anchorage ca import --force`, or restore the data directory from a backup",
                    with_causes(&other)
                ),
            ),
        }
    }

    /// Warns that the key is stored in clear when no passphrase was given.
    fn warn_unencrypted(&self) {
        if self.passphrase.is_none() {
            warnln!(
                "no passphrase given (--passphrase-file or {PASSPHRASE_ENV}): the CA key is stored unencrypted in {}, protected only by the file's mode 0600",
                self.store_path().display()
            );
        }
    }
}

fn store_failure(e: &anchorage_store::StoreError) -> Failure {
    let mut message = with_causes(e);
    if message.contains("already open") || message.contains("lock") {
        message.push_str(
            "; is another anchorage process using this data directory? Wait for it to finish",
        );
    } else if let anchorage_store::StoreError::Database {
        action: "open",
        path,
        ..
    } = e
    {
        message.push_str(&format!(
            "; if the file is damaged, restore it from a backup, or move it aside and run `anchorage ca init` or `anchorage ca import` (a new store is created at {})",
            path.display()
        ));
    }
    Failure::new(e.code(), message)
}

/// `3650 days`, `5 hours`, `1 minute`.
pub(crate) fn human_seconds(seconds: u64) -> String {
    let (n, unit) = if seconds >= 2 * 86_400 {
        (seconds / 86_400, "day")
    } else if seconds >= 2 * 3_600 {
        (seconds / 3_600, "hour")
    } else if seconds >= 2 * 60 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// `89 days left`, `expired 3 days ago`, `not valid for another 2 hours`.
pub(crate) fn time_left(cert: &Certificate, now: Timestamp) -> String {
    let (nb, na, now) = (
        cert.not_before().unix(),
        cert.not_after().unix(),
        now.unix(),
    );
    if now < nb {
        format!("not valid for another {}", human_seconds(nb.abs_diff(now)))
    } else if now >= na {
        format!("expired {} ago", human_seconds(now.abs_diff(na)))
    } else {
        format!("{} left", human_seconds(na.abs_diff(now)))
    }
}

pub(crate) fn now() -> Timestamp {
    anchorage_ca::SystemClock.timestamp()
}

/// A file in an output directory.
pub(crate) struct OutFile<'a> {
    pub(crate) name: &'static str,
    pub(crate) contents: &'a [u8],
    /// Holds a private key: written 0600.
    pub(crate) private: bool,
}

/// A written file, as JSON shows it.
#[derive(Serialize)]
pub(crate) struct FileView {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) mode: &'static str,
}

impl FileView {
    pub(crate) fn new(path: &Path, private: bool) -> Self {
        Self {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.display().to_string(),
            mode: if private { "0600" } else { "0644" },
        }
    }
}

/// Refuses an output directory that cannot be replaced as a whole: a path without a final
/// name (`.`), something that is not a directory, a directory holding files other than
/// `ours`, or one where any of `ours` is not a regular file (a link, FIFO, device). Runs before anything is loaded or made, so a refusal changes nothing.
pub(crate) fn check_out_dir(dir: &Path, ours: &[&str], option: &str) -> Result<(), Failure> {
    let refuse =
        |why: String| Failure::new(Code::Output, format!("{option} {}: {why}", dir.display()));
    if dir.file_name().is_none() {
        return Err(refuse(
            "name a directory of its own (e.g. tls/): it is replaced as a whole".to_owned(),
        ));
    }
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot be read: {e}"))),
    };
    if !meta.is_dir() {
        return Err(refuse(
            "exists and is not a directory; give a directory to write into".to_owned(),
        ));
    }
    let entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(|e| refuse(format!("cannot be read: {e}")))?
        .filter_map(Result::ok)
        .collect();
    // One of our names as a link, FIFO or device: refused, not replaced, so that whoever put it
    // there learns that nothing (no key) went through it.
    for entry in &entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if ours.contains(&name.as_str()) && !kind.is_file() {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            };
            return Err(refuse(format!(
                "{name} is {what}: outputs (keys above all) are written only as regular files, never through a link or into a FIFO or device; remove it or give another directory"
            )));
        }
    }
    let mut foreign: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !ours.contains(&name.as_str()))
        .collect();
    if !foreign.is_empty() {
        foreign.sort();
        let shown = foreign.len().min(5);
        let more = if foreign.len() > shown {
            format!(" and {} more", foreign.len() - shown)
        } else {
            String::new()
        };
        return Err(refuse(format!(
            "holds other files ({}{more}); the directory is replaced as a whole, so give a new or empty one (it may hold only {})",
            foreign[..shown].join(", "),
            ours.join(", ")
        )));
    }
    Ok(())
}

/// Replaces `dir` with one holding exactly `files`, atomically: a failure leaves it as it was.
/// Keys are 0600 from the moment their file exists.
pub(crate) fn write_dir(dir: &Path, files: &[OutFile<'_>], option: &str) -> Result<(), Failure> {
    let ours: Vec<&str> = files.iter().map(|f| f.name).collect();
    check_out_dir(dir, &ours, option)?;
    anchorage_trust::atomic::replace_dir(dir, |tmp| {
        for file in files {
            let path = tmp.join(file.name);
            if file.private {
                anchorage_trust::atomic::write_private_file(&path, file.contents)?;
            } else {
                anchorage_trust::atomic::write_file(&path, file.contents)?;
            }
        }
        Ok(())
    })
    .map_err(|e| output_failure(option, dir, &e))
}

/// An output that could not be written, with what to do about the usual refusals.
pub(crate) fn output_failure(option: &str, path: &Path, e: &std::io::Error) -> Failure {
    let hint = match e.kind() {
        std::io::ErrorKind::CrossesDevices | std::io::ErrorKind::ResourceBusy => {
            "; it is a mount point, which cannot be swapped: write to a path inside it"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "; its parent directory must be writable: the new output is made beside it and swapped in"
        }
        _ => "",
    };
    Failure::new(
        Code::Output,
        format!(
            "{option} {}: could not be written: {e}{hint} (nothing was changed)",
            path.display()
        ),
    )
}

/// A CA certificate as `ca` commands show it.
#[derive(Serialize)]
pub(crate) struct CaCertView {
    subject: String,
    issuer: String,
    serial: String,
    sha256: Sha256Fingerprint,
    not_before: Timestamp,
    not_after: Timestamp,
    seconds_left: i64,
    time_left: String,
    key: String,
    /// The certificate's name constraints, when it has them (`ca init --permitted-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    name_constraints: Option<NameConstraints>,
}

impl CaCertView {
    fn new(cert: &Certificate, now: Timestamp) -> Self {
        Self {
            subject: cert.subject().to_owned(),
            issuer: cert.issuer().to_owned(),
            serial: cert.serial().to_owned(),
            sha256: cert.sha256(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            seconds_left: cert.not_after().unix() - now.unix(),
            time_left: time_left(cert, now),
            key: cert.public_key().to_string(),
            name_constraints: cert.name_constraints().cloned(),
        }
    }
}

/// The CA as `init`, `import` and `show` print it (docs/cli.md).
#[derive(Serialize)]
pub(crate) struct CaView {
    /// The root's subject, fingerprint and end (also in `root`).
    subject: String,
    sha256: Sha256Fingerprint,
    not_after: Timestamp,
    /// The signing key's type (`p256`, …), or the certificate's key description when it is
    /// none of ours.
    key_type: String,
    root: CaCertView,
    /// Intermediates leaves are sent with, the signing one first; empty when the root signs.
    intermediates: Vec<CaCertView>,
    /// The SHA-256 of the CA that signs leaves (`issuer_id` of issued certificates).
    signing_ca: Sha256Fingerprint,
    /// Roots peers should trust (the anchor first).
    validating_roots: Vec<Sha256Fingerprint>,
    /// Whether the root's key is held (always when the root signs).
    root_key_held: bool,
    lifetime_policy: anchorage_ca::LifetimePolicy,
    store: String,
    store_revision: u64,
    encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced: Option<bool>,
}

impl CaView {
    fn new(ctx: &Context, ca: &BuiltinCa, revision: u64, encrypted: bool) -> Self {
        Self::of(
            ctx,
            Facts {
                chain: ca.chain(),
                roots: ca.roots(),
                key_type: key_type_name(ca.signing_key().key_type(), ca.signing_certificate()),
                root_key_held: ca.chain().is_empty() || ca.root_key().is_some(),
                policy: ca.lifetime_policy(),
                revision,
                encrypted,
            },
        )
    }

    /// From the stored certificates alone (no key, so no passphrase needed).
    fn of_stored(ctx: &Context, stored: &persist::StoredCertificates) -> Self {
        let signing = stored.signing_certificate();
        Self::of(
            ctx,
            Facts {
                chain: &stored.chain,
                roots: &stored.roots,
                key_type: signing.map_or_else(String::new, |c| {
                    key_type_name(KeyType::of_certificate(c), c)
                }),
                root_key_held: stored.root_key_held,
                policy: stored.policy,
                revision: stored.revision,
                encrypted: stored.encrypted,
            },
        )
    }

    fn of(ctx: &Context, facts: Facts<'_>) -> Self {
        let now = now();
        // Both callers hold at least the anchor (the library refuses a record without one).
        let root = &facts.roots[0];
        let signing = facts.chain.first().unwrap_or(root);
        Self {
            subject: root.subject().to_owned(),
            sha256: root.sha256(),
            not_after: root.not_after(),
            key_type: facts.key_type,
            root: CaCertView::new(root, now),
            intermediates: facts
                .chain
                .iter()
                .map(|c| CaCertView::new(c, now))
                .collect(),
            signing_ca: signing.sha256(),
            validating_roots: facts.roots.iter().map(Certificate::sha256).collect(),
            root_key_held: facts.root_key_held,
            lifetime_policy: facts.policy,
            store: ctx.store_path().display().to_string(),
            store_revision: facts.revision,
            encrypted: facts.encrypted,
            replaced: None,
        }
    }

    fn print_text(&self, headline: Option<&str>) {
        if let Some(headline) = headline {
            outln!("{headline}");
        }
        let cert = |label: &str, c: &CaCertView| {
            outln!("{label:<14}{}", c.subject);
            outln!("  sha256:     {}", c.sha256);
            outln!(
                "  valid:      {} .. {} ({})",
                c.not_before,
                c.not_after,
                c.time_left
            );
            outln!("  key:        {}", c.key);
            if let Some(nc) = &c.name_constraints {
                outln!("  names:      {}", crate::render::constraints_text(nc));
            }
        };
        cert("root:", &self.root);
        for c in &self.intermediates {
            cert("intermediate:", c);
        }
        match self.intermediates.first() {
            Some(c) => outln!(
                "signs with:   the intermediate {} ({})",
                c.subject,
                self.key_type
            ),
            None => outln!("signs with:   the root ({})", self.key_type),
        }
        if !self.root_key_held {
            outln!("root key:     not held (only the intermediate's key is stored)");
        }
        if self.validating_roots.len() > 1 {
            outln!(
                "trusted by peers: {} roots (ca.pem holds them all)",
                self.validating_roots.len()
            );
        }
        let keys = if self.encrypted {
            "keys encrypted with the passphrase"
        } else {
            "keys NOT encrypted: protected by the file's mode 0600 only"
        };
        outln!(
            "store:        {} (revision {}; {keys})",
            self.store,
            self.store_revision
        );
    }
}

fn key_type_name(key_type: Option<KeyType>, cert: &Certificate) -> String {
    key_type.map_or_else(|| cert.public_key().to_string(), |k| k.as_str().to_owned())
}

/// Parses a `--key` value.
pub(crate) fn parse_key_type(text: &str) -> Result<KeyType, Failure> {
    text.parse()
        .map_err(|e| Failure::new(Code::Usage, format!("--key: {e}")))
}

fn duration_option(option: &str, text: &str) -> Result<Duration, Failure> {
    parse_duration(text).map_err(|e| Failure::new(Code::Usage, format!("{option}: {e}")))
}

/// What a [`CaView`] shows, from a loaded CA or from its stored certificates.
struct Facts<'a> {
    chain: &'a [Certificate],
    roots: &'a [Certificate],
    key_type: String,
    root_key_held: bool,
    policy: anchorage_ca::LifetimePolicy,
    revision: u64,
    encrypted: bool,
}

/// The `--permitted-*` options of `ca init`, parsed.
fn permitted_names(args: &CaInitArgs) -> Result<Vec<NameSubtree>, Failure> {
    let mut out = Vec::new();
    type Parse = fn(&str) -> Result<NameSubtree, String>;
    let kinds: [(&str, &[String], Parse); 3] = [
        ("--permitted-dns", &args.permitted_dns, NameSubtree::dns),
        ("--permitted-ip", &args.permitted_ip, NameSubtree::ip),
        ("--permitted-uri", &args.permitted_uri, NameSubtree::uri),
    ];
    for (option, values, parse) in kinds {
        for value in values {
            let subtree =
                parse(value).map_err(|e| Failure::new(Code::Usage, format!("{option}: {e}")))?;
            if !out.contains(&subtree) {
                out.push(subtree);
            }
        }
    }
    Ok(out)
}

/// `anchorage ca init`.
fn init(ctx: &Context, args: &CaInitArgs) -> Result<Code, Failure> {
    let options = InitOptions {
        common_name: args.cn.clone(),
        organization: args.org.clone(),
        key_type: parse_key_type(&args.key)?,
        lifetime: duration_option("--ttl", &args.ttl)?,
        intermediate: if args.intermediate {
            Some(IntermediateOptions {
                common_name: args.intermediate_cn.clone(),
                lifetime: duration_option("--intermediate-ttl", &args.intermediate_ttl)?,
            })
        } else {
            None
        },
        permitted_names: permitted_names(args)?,
    };
    options
        .validate()
        .map_err(|e| Failure::new(Code::Usage, e.to_string()))?;
    let store = ctx.open(true)?;
    // Before making keys (an RSA-4096 key takes seconds): the save checks again, atomically.
    ctx.refuse_existing(&store, args.force)?;
    let ca = BuiltinCa::init(&options).map_err(|e| match e {
        CaError::InvalidOptions { .. } => Failure::new(Code::Usage, e.to_string()),
        other => Failure::new(Code::Failure, with_causes(&other)),
    })?;
    let saved = ctx.save(&store, &ca, args.force)?;
    report_saved(
        ctx,
        &ca,
        &saved,
        args.output,
        ["created the CA", "replaced the CA with a new one"],
    )
}

/// After `init` or `import` saved `ca`: the unencrypted-key warning, then the CA as text (with
/// `headlines[0]` for a new CA, `[1]` for a replaced one) or JSON (with `replaced`).
fn report_saved(
    ctx: &Context,
    ca: &BuiltinCa,
    saved: &Saved,
    output: OutputFormat,
    headlines: [&str; 2],
) -> Result<Code, Failure> {
    ctx.warn_unencrypted();
    let mut view = CaView::new(ctx, ca, saved.revision, ctx.passphrase.is_some());
    view.replaced = Some(saved.replaced);
    match output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Text => view.print_text(Some(headlines[usize::from(saved.replaced)])),
    }
    Ok(Code::Ok)
}

/// `anchorage ca show`.
fn show(ctx: &Context, args: &CaShowArgs) -> Result<Code, Failure> {
    let store = ctx.open(false)?;
    // Certificates only: showing an encrypted CA needs no passphrase.
    let stored = ctx
        .block_on(persist::load_certificates(&store))
        .map_err(|e| ctx.load_failure(e))?;
    let view = CaView::of_stored(ctx, &stored);
    match args.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Text => view.print_text(None),
    }
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("10y"),
            Ok(Duration::from_secs(10 * 365 * 86_400))
        );
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(
            parse_duration("90 days"),
            Ok(Duration::from_secs(90 * 86_400))
        );
        for bad in ["", "24", "h", "5x", "-1d", "1.5h", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_seconds(1), "1 second");
        assert_eq!(human_seconds(90), "90 seconds");
        assert_eq!(human_seconds(3 * 3_600), "3 hours");
        assert_eq!(human_seconds(3_650 * 86_400), "3650 days");
    }
}

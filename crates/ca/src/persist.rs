//! Keeping the built-in CA in an [`anchorage_store::Store`], and where that store lives.
//!
//! The CA is one record under [`STORE_KEY`] (JSON: certificates in PEM, the keys in PEM), so a
//! save is one atomic write and two `ca init`s cannot both win: a first save uses the store's
//! `create`, a later one `update` with the revision it loaded.
//!
//! Keys are encrypted when a passphrase is given: PKCS#8 `EncryptedPrivateKeyInfo`, PBES2 with
//! scrypt (N = 2^15, r = 8, p = 1 by default, as RustCrypto and OpenSSL default) and
//! AES-256-CBC, readable by `openssl pkey`. Without a passphrase the keys are stored in clear
//! and protected by the store file's mode alone: [`anchorage_store::EmbeddedStore`] creates its
//! file `0600` in a directory created `0700`.
//!
//! It does not own the store's file format (`anchorage-store`) or the CLI flag for the data
//! directory (the CLI resolves it and may fall back to [`data_dir`]).

use std::ffi::OsString;
use std::path::PathBuf;

use anchorage_store::{Store, StoreError};
use base64::Engine as _;
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use crate::builtin::{BuiltinCa, CaError, LifetimePolicy};
use crate::issued::PrivateKey;
use crate::keys::{self, pem_blocks};

/// The store key the built-in CA is saved under.
pub const STORE_KEY: &str = "ca.builtin";

/// The environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "ANCHORAGE_DATA_DIR";

const RECORD_VERSION: u32 = 1;
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const PLAIN_LABEL: &str = "PRIVATE KEY";

/// The default data directory: `$ANCHORAGE_DATA_DIR` when set, else
/// `$XDG_DATA_HOME/anchorage` (when absolute), else `~/.local/share/anchorage`. `None` when
/// none of these can be found (no `HOME`).
pub fn data_dir() -> Option<PathBuf> {
    data_dir_from(|name| std::env::var_os(name))
}

/// [`data_dir`] with the environment given as a lookup function (for tests and callers that
/// resolve variables themselves).
pub fn data_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set(DATA_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = set("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Some(xdg.join("anchorage"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".local/share/anchorage"))
}

/// How a passphrase becomes the key-encryption key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kdf {
    /// scrypt with cost 2^`log_n`, block size `r`, parallelism `p`. The default is
    /// `log_n = 15, r = 8, p = 1` (32 MiB, about 0.1 s in an optimised build).
    Scrypt {
        /// log2 of the CPU/memory cost N.
        log_n: u8,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// PBKDF2 with HMAC-SHA-256 (for tools that lack scrypt).
    Pbkdf2Sha256 {
        /// Iteration count (OWASP suggests 600,000).
        iterations: u32,
    },
}

impl Default for Kdf {
    fn default() -> Self {
        Kdf::Scrypt {
            log_n: 15,
            r: 8,
            p: 1,
        }
    }
}

/// How [`save`] writes the CA.
#[derive(Clone, Copy, Debug, Default)]
pub struct SaveOptions<'a> {
    /// Encrypt the keys with this passphrase; `None` stores them in clear (protected by the
    /// store file's mode).
    pub passphrase: Option<&'a SecretString>,
    /// The key derivation for the passphrase.
    pub kdf: Kdf,
    /// `None`: create the record, refusing to replace an existing CA
    /// ([`CaError::AlreadyInitialised`]). `Some(revision)`: replace the record at that
    /// revision (from [`Loaded::revision`]); a concurrent change makes it fail with a conflict.
    pub replace_revision: Option<u64>,
}

/// A CA read back by [`load`].
#[derive(Debug)]
pub struct Loaded {
    /// The CA, ready to issue (with the lifetime policy it was saved with).
    pub ca: BuiltinCa,
    /// The record's store revision, for a later [`SaveOptions::replace_revision`].
    pub revision: u64,
    /// Whether the keys were stored encrypted.
    pub encrypted: bool,
}

/// The stored record. Key fields are wiped on drop.
#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    /// Validating roots, PEM, the anchor first.
    roots: String,
    /// Intermediates for leaves, PEM, signer first; empty when the root signs.
    chain: String,
    /// The signing CA's key, PEM (`PRIVATE KEY` or `ENCRYPTED PRIVATE KEY`).
    signing_key: KeyText,
    /// The root's key, when held and the root does not sign.
    root_key: Option<KeyText>,
    policy: LifetimePolicy,
}

/// A key's PEM text, wiped when dropped: also when a record fails to parse after this field
/// was read (a `Drop` on [`Record`] alone would not run then).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct KeyText(String);

impl Drop for KeyText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn corrupt(reason: impl Into<String>) -> CaError {
    CaError::CorruptRecord {
        key: STORE_KEY.to_owned(),
        reason: reason.into(),
    }
}

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let begin = format!("-----BEGIN {label}-----\n");
    let end = format!("-----END {label}-----\n");
    // Sized exactly: growing would leave partial copies of the key in freed memory.
    let size = begin.len() + b64.len() + b64.len().div_ceil(64) + end.len();
    let mut out = Zeroizing::new(String::with_capacity(size));
    out.push_str(&begin);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&end);
    out
}

/// Encrypts a PKCS#8 key with `passphrase` into `ENCRYPTED PRIVATE KEY` PEM.
pub fn encrypt_key(
    key: &PrivateKey,
    passphrase: &SecretString,
    kdf: Kdf,
) -> Result<SecretString, CaError> {
    use ring::rand::SecureRandom as _;
    let crypto = |message: String| CaError::Crypto {
        action: "encrypt the CA key".to_owned(),
        message,
    };
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    let rng = ring::rand::SystemRandom::new();
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut iv))
        .map_err(|_| crypto("the system random generator failed".to_owned()))?;
    let params = match kdf {
        Kdf::Scrypt { log_n, r, p } => {
            let sp = pkcs8::pkcs5::scrypt::Params::new(log_n, r, p, 32)
                .map_err(|e| crypto(format!("scrypt parameters: {e}")))?;
            pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(sp, &salt, &iv)
        }
        Kdf::Pbkdf2Sha256 { iterations } => {
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
        }
    }
    .map_err(|e| crypto(e.to_string()))?;
    let info = PrivateKeyInfo::try_from(key.pkcs8_der()).map_err(|e| crypto(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase.expose_secret().as_bytes())
        .map_err(|e| crypto(e.to_string()))?;
    let text = pem(ENCRYPTED_LABEL, doc.as_bytes());
    Ok(SecretString::from(text.as_str().to_owned()))
}

/// Reads a stored key: plain `PRIVATE KEY` PEM, or `ENCRYPTED PRIVATE KEY` PEM decrypted with
/// `passphrase`. Returns the key and whether it was encrypted.
fn decrypt_key(
    text: &str,
    passphrase: Option<&SecretString>,
    what: &str,
) -> Result<(rcgen::KeyPair, PrivateKey, bool), CaError> {
    let blocks = pem_blocks(text);
    let [block] = blocks.as_slice() else {
        return Err(corrupt(format!("the {what} is not one PEM block")));
    };
    let der = block
        .decode()
        .map_err(|_| corrupt(format!("the {what} PEM is not valid base64")))?;
    match block.label {
        ENCRYPTED_LABEL => {
            let passphrase = passphrase.ok_or(CaError::PassphraseRequired)?;
            let info = EncryptedPrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| corrupt(format!("the encrypted {what}: {e}")))?;
            let plain = info
                .decrypt(passphrase.expose_secret().as_bytes())
                .map_err(|_| CaError::WrongPassphrase)?;
            // A wrong passphrase can, rarely, pass the padding check and yield garbage.
            let (kp, key) = keys::load_der(keys::KeyForm::Pkcs8, plain.as_bytes())
                .map_err(|_| CaError::WrongPassphrase)?;
            Ok((kp, key, true))
        }
        PLAIN_LABEL => {
            let (kp, key) =
                keys::load_der(keys::KeyForm::Pkcs8, &der).map_err(|e| CaError::Key {
                    origin: format!("the stored {what}"),
                    source: e,
                })?;
            Ok((kp, key, false))
        }
        other => Err(corrupt(format!(
            "unexpected PEM label {other:?} for the {what}"
        ))),
    }
}

/// The record's JSON in one buffer sized up front (JSON escapes a PEM character in at most
/// six bytes), so no growth leaves a partial copy of a key in freed memory. The buffer goes to
/// the store, which wipes it once written (`EmbeddedStore`).
fn record_json(record: &Record) -> Result<Vec<u8>, CaError> {
    let text = |s: &str| s.len().saturating_mul(6);
    let size = text(&record.roots)
        + text(&record.chain)
        + text(&record.signing_key.0)
        + record.root_key.as_ref().map_or(0, |k| text(&k.0))
        + 1024;
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    serde_json::to_writer(&mut *out, record).map_err(|e| corrupt(e.to_string()))?;
    Ok(std::mem::take(&mut *out))
}

/// Saves `ca` under [`STORE_KEY`]. Returns the record's new revision.
pub async fn save(
    store: &dyn Store,
    ca: &BuiltinCa,
    options: &SaveOptions<'_>,
) -> Result<u64, CaError> {
    save_at(store, STORE_KEY, ca, options).await
}

/// Saves `ca` under `key` in the same record layout as [`save`] (a root rotation keeps the
/// incoming and outgoing CAs beside [`STORE_KEY`]). Returns the record's new revision.
pub async fn save_at(
    store: &dyn Store,
    key: &str,
    ca: &BuiltinCa,
    options: &SaveOptions<'_>,
) -> Result<u64, CaError> {
    let key_text = |key: &PrivateKey| -> Result<KeyText, CaError> {
        Ok(KeyText(match options.passphrase {
            Some(p) => encrypt_key(key, p, options.kdf)?.expose_secret().to_owned(),
            None => key.to_pkcs8_pem().expose_secret().to_owned(),
        }))
    };
    let record = Record {
        version: RECORD_VERSION,
        roots: ca.roots().iter().map(|c| c.to_pem()).collect(),
        chain: ca.chain().iter().map(|c| c.to_pem()).collect(),
        signing_key: key_text(ca.signing_key())?,
        root_key: ca.root_key().map(key_text).transpose()?,
        policy: ca.lifetime_policy(),
    };
    let value = record_json(&record)?;
    drop(record);
    let result = match options.replace_revision {
        None => store.create(key, value).await,
        Some(revision) => store.update(key, value, revision).await,
    };
    match result {
        Ok(revision) => Ok(revision),
        Err(StoreError::Conflict {
            expected: None,
            current: Some(revision),
            ..
        }) => Err(CaError::AlreadyInitialised {
            key: key.to_owned(),
            revision,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Loads the CA saved under [`STORE_KEY`]. A passphrase is needed when the keys were saved
/// encrypted ([`CaError::PassphraseRequired`], [`CaError::WrongPassphrase`]); it is ignored
/// otherwise. An expired CA loads (issuing with it fails with `CaNotValid`), so it can still be
/// shown and replaced.
pub async fn load(store: &dyn Store, passphrase: Option<&SecretString>) -> Result<Loaded, CaError> {
    load_from(store, STORE_KEY, passphrase).await
}

/// Loads a CA saved with [`save_at`] under `key` (as [`load`] does for [`STORE_KEY`]).
pub async fn load_from(
    store: &dyn Store,
    key: &str,
    passphrase: Option<&SecretString>,
) -> Result<Loaded, CaError> {
    let (record, revision) = read_record(store, key).await?;
    let (roots, chain) = record_certificates(&record)?;
    let Some(anchor) = roots.first().cloned() else {
        return Err(corrupt("no root certificate"));
    };
    let (key_pair, key, encrypted) = decrypt_key(&record.signing_key.0, passphrase, "CA key")?;
    let root_key = match &record.root_key {
        Some(text) => Some(decrypt_key(&text.0, passphrase, "root key")?.1),
        None => None,
    };
    let mut path = chain;
    path.push(anchor);
    let ca = BuiltinCa::assemble(path, (key_pair, key), root_key)?
        .with_extra_validating_roots(roots.into_iter().skip(1))
        .with_lifetime_policy(record.policy);
    Ok(Loaded {
        ca,
        revision,
        encrypted,
    })
}

/// The certificates of a saved CA, read without its keys.
#[derive(Debug)]
pub struct StoredCertificates {
    /// Validating roots, the anchor first.
    pub roots: Vec<anchorage_x509::Certificate>,
    /// Intermediates leaves are sent with, the signing one first; empty when the root signs.
    pub chain: Vec<anchorage_x509::Certificate>,
    /// Whether the root's key is held (always when the root signs).
    pub root_key_held: bool,
    /// Whether the keys are stored encrypted.
    pub encrypted: bool,
    /// The lifetime policy the CA was saved with.
    pub policy: LifetimePolicy,
    /// The record's store revision.
    pub revision: u64,
}

impl StoredCertificates {
    /// The certificate that signs leaves: the first intermediate, else the anchor.
    pub fn signing_certificate(&self) -> Option<&anchorage_x509::Certificate> {
        self.chain.first().or_else(|| self.roots.first())
    }
}

/// Reads the certificates of the CA saved under [`STORE_KEY`] without touching its keys, so no
/// passphrase is needed (for showing an encrypted CA).
pub async fn load_certificates(store: &dyn Store) -> Result<StoredCertificates, CaError> {
    let (record, revision) = read_record(store, STORE_KEY).await?;
    let (roots, chain) = record_certificates(&record)?;
    if roots.is_empty() {
        return Err(corrupt("no root certificate"));
    }
    let encrypted = record
        .signing_key
        .0
        .contains("-----BEGIN ENCRYPTED PRIVATE KEY-----");
    Ok(StoredCertificates {
        root_key_held: chain.is_empty() || record.root_key.is_some(),
        roots,
        chain,
        encrypted,
        policy: record.policy,
        revision,
    })
}

async fn read_record(store: &dyn Store, key: &str) -> Result<(Record, u64), CaError> {
    let entry = store
        .get(key)
        .await?
        .ok_or_else(|| CaError::NotInitialised {
            key: key.to_owned(),
        })?;
    let value = Zeroizing::new(entry.value);
    let record: Record = serde_json::from_slice(&value)
        .map_err(|e| corrupt(format!("not the expected JSON: {e}")))?;
    if record.version != RECORD_VERSION {
        return Err(corrupt(format!(
            "record version {} is not supported (expected {RECORD_VERSION}); upgrade anchorage",
            record.version
        )));
    }
    Ok((record, entry.revision))
}

type Certificates = Vec<anchorage_x509::Certificate>;

fn record_certificates(record: &Record) -> Result<(Certificates, Certificates), CaError> {
    let certs = |pem: &str, what: &str| -> Result<Certificates, CaError> {
        let decoded = anchorage_x509::decode(pem.as_bytes());
        if let Some(problem) = decoded.problems.first() {
            return Err(corrupt(format!("the stored {what}: {}", problem.error)));
        }
        Ok(decoded
            .certificates
            .into_iter()
            .map(|f| f.certificate)
            .collect())
    };
    let roots = certs(&record.roots, "roots")?;
    let chain = if record.chain.trim().is_empty() {
        Vec::new()
    } else {
        certs(&record.chain, "chain")?
    };
    Ok((roots, chain))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use anchorage_store::{EmbeddedStore, MemoryStore};

    use super::*;

    /// Key PEM and record buffers are allocated once at their final size: a buffer that grew
    /// would have left partial copies of the key in the memory it freed, which no `Zeroizing`
    /// reaches.
    #[test]
    fn key_buffers_are_sized_once() {
        for n in [0, 1, 47, 48, 49, 1219, 2375] {
            let text = pem(PLAIN_LABEL, &vec![7u8; n]);
            assert_eq!(text.len(), text.capacity(), "{n} bytes");
        }
        let record = Record {
            version: RECORD_VERSION,
            roots: "r\n".repeat(500),
            chain: String::new(),
            signing_key: KeyText("k\n\"".repeat(1000)),
            root_key: Some(KeyText("\u{1}".repeat(700))),
            policy: LifetimePolicy::default(),
        };
        let size = 6 * (1000 + 3000 + 700) + 1024;
        let json = record_json(&record).unwrap();
        assert_eq!(json.capacity(), size, "the record buffer grew");
        let back: Record = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.signing_key.0, record.signing_key.0);
    }
    use crate::KeyType;
    use crate::builtin::{InitOptions, IntermediateOptions};
    use crate::request::{CertKind, CertificateRequest, Identity};

    /// Cheap scrypt for debug-build tests.
    const FAST: Kdf = Kdf::Scrypt {
        log_n: 10,
        r: 8,
        p: 1,
    };

    fn leaf_issuer(ca: &BuiltinCa) -> Vec<u8> {
        let req = CertificateRequest::new(Identity::new("a.example").unwrap(), CertKind::Server);
        let issued = ca.issue_at(&req, crate::builtin::now_timestamp()).unwrap();
        issued.certificate.issuer_der().to_vec()
    }

    #[test]
    fn data_dir_follows_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        assert_eq!(
            data_dir_from(env(&[("ANCHORAGE_DATA_DIR", "/d"), ("HOME", "/h")])),
            Some(PathBuf::from("/d"))
        );
        assert_eq!(
            data_dir_from(env(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/anchorage"))
        );
        assert_eq!(
            data_dir_from(env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/share/anchorage"))
        );
        assert_eq!(
            data_dir_from(env(&[("ANCHORAGE_DATA_DIR", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/share/anchorage"))
        );
        assert_eq!(data_dir_from(env(&[])), None);
    }

    #[tokio::test]
    async fn encrypted_round_trip_in_an_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in(dir.path().join("data")).unwrap();
        let options = InitOptions {
            intermediate: Some(IntermediateOptions::default()),
            ..InitOptions::default()
        };
        let ca = BuiltinCa::init(&options).unwrap();
        let pass = SecretString::from("correct horse".to_owned());
        let rev = save(
            &store,
            &ca,
            &SaveOptions {
                passphrase: Some(&pass),
                kdf: FAST,
                replace_revision: None,
            },
        )
        .await
        .unwrap();

        // The record holds no clear key.
        let raw = store.get(STORE_KEY).await.unwrap().unwrap();
        let text = String::from_utf8(raw.value).unwrap();
        assert!(text.contains(ENCRYPTED_LABEL) && !text.contains("BEGIN PRIVATE KEY"));

        let loaded = load(&store, Some(&pass)).await.unwrap();
        assert!(loaded.encrypted);
        assert_eq!(loaded.revision, rev);
        assert_eq!(loaded.ca.id(), ca.id());
        assert_eq!(loaded.ca.roots(), ca.roots());
        assert_eq!(loaded.ca.chain(), ca.chain());
        assert!(loaded.ca.root_key().is_some());
        assert_eq!(
            loaded.ca.signing_key().pkcs8_der(),
            ca.signing_key().pkcs8_der()
        );
        assert_eq!(
            leaf_issuer(&loaded.ca),
            ca.signing_certificate().subject_der()
        );

        assert!(matches!(
            load(&store, None).await,
            Err(CaError::PassphraseRequired)
        ));
        let wrong = SecretString::from("wrong".to_owned());
        assert!(matches!(
            load(&store, Some(&wrong)).await,
            Err(CaError::WrongPassphrase)
        ));

        // A second init does not replace the first; a replace with the loaded revision does.
        let other = BuiltinCa::init(&InitOptions::default()).unwrap();
        let plain = SaveOptions::default();
        match save(&store, &other, &plain).await {
            Err(CaError::AlreadyInitialised { revision, .. }) => assert_eq!(revision, rev),
            other => panic!("{other:?}"),
        }
        let replaced = SaveOptions {
            replace_revision: Some(rev),
            ..SaveOptions::default()
        };
        save(&store, &other, &replaced).await.unwrap();
        assert!(
            save(&store, &other, &replaced).await.is_err(),
            "stale revision"
        );
        let loaded = load(&store, None).await.unwrap();
        assert!(!loaded.encrypted);
        assert_eq!(loaded.ca.id(), other.id());
    }

    #[tokio::test]
    async fn pbkdf2_keys_and_missing_or_damaged_records() {
        let store = MemoryStore::new();
        assert!(matches!(
            load(&store, None).await,
            Err(CaError::NotInitialised { .. })
        ));
        let ca = BuiltinCa::init(&InitOptions {
            key_type: KeyType::Ed25519,
            ..InitOptions::default()
        })
        .unwrap();
        let pass = SecretString::from("pw".to_owned());
        let encrypted = encrypt_key(
            ca.signing_key(),
            &pass,
            Kdf::Pbkdf2Sha256 { iterations: 1_000 },
        )
        .unwrap();
        let (_, key, was) = decrypt_key(encrypted.expose_secret(), Some(&pass), "key").unwrap();
        assert!(was);
        assert_eq!(key.pkcs8_der(), ca.signing_key().pkcs8_der());

        store.put(STORE_KEY, b"{not json".to_vec()).await.unwrap();
        let err = load(&store, None).await.unwrap_err();
        assert!(matches!(err, CaError::CorruptRecord { .. }), "{err}");
    }
}

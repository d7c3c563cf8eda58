//! The encryption key that seals values at rest, and where seeds come from.
//!
//! Values are sealed by the encryption xkey *to itself* (`xkv1` ‖ nonce ‖ NaCl box), exactly as
//! the reference `secrets-nats-kv` backend stores them, so a JetStream bucket it wrote reads back
//! here. A [`Keyring`] holds the current key and, during a rotation, the previous ones: values
//! are always sealed with the current key and opened with whichever key opens them. Seeds are
//! read here (the protocol crate takes them as text), from an environment variable or a file
//! ([`SeedSource`]), never from an argument, and live in [`SecretString`]s; no seed reaches
//! `Debug`, an error or a log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anchorage_secrets::{KeyError, SeedProvider, XKey};
use secrecy::SecretString;
use zeroize::Zeroizing;

/// Reads a seed file into a [`SecretString`] (surrounding whitespace trimmed; the bytes read
/// are wiped).
fn read_seed_file(path: &Path) -> Result<SecretString, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::ReadFile {
        path: path.to_owned(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::NotAnXkeySeed {
        origin: path.display().to_string(),
    })?;
    Ok(SecretString::from(text.trim()))
}

/// Where a seed is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedSource {
    /// An environment variable holding `SX…`.
    Env(String),
    /// A file holding `SX…` (surrounding whitespace ignored).
    File(PathBuf),
}

impl SeedSource {
    /// Reads the seed text.
    pub fn read(&self) -> Result<SecretString, KeyError> {
        match self {
            SeedSource::Env(var) => std::env::var(var)
                .map(SecretString::from)
                .map_err(|_| KeyError::MissingEnv { var: var.clone() }),
            SeedSource::File(path) => read_seed_file(path),
        }
    }

    /// Where the seed comes from, for messages.
    pub fn origin(&self) -> String {
        match self {
            SeedSource::Env(var) => format!("environment variable {var}"),
            SeedSource::File(path) => path.display().to_string(),
        }
    }
}

impl SeedProvider for SeedSource {
    fn read_seed(&self) -> Result<SecretString, KeyError> {
        self.read()
    }

    fn origin(&self) -> String {
        SeedSource::origin(self)
    }
}

/// Sealing a value failed (the NaCl box refused it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a value could not be sealed with the encryption key")]
pub struct SealFailed;

/// The current encryption key and, during a rotation, previous keys still accepted for reading.
///
/// The keys sit behind a lock so a running server can rotate ([`Keyring::rotate`]) while it
/// serves: a reader takes a snapshot of the ring, so a value sealed under either key opens.
pub struct Keyring {
    ring: RwLock<Arc<Ring>>,
}

struct Ring {
    current: Arc<XKey>,
    previous: Vec<Arc<XKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.snapshot();
        f.debug_struct("Keyring")
            .field("current", &ring.current.public_key())
            .field(
                "previous",
                &ring
                    .previous
                    .iter()
                    .map(|k| k.public_key())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring with one key.
    pub fn new(current: XKey) -> Self {
        Self {
            ring: RwLock::new(Arc::new(Ring {
                current: Arc::new(current),
                previous: Vec::new(),
            })),
        }
    }

    fn snapshot(&self) -> Arc<Ring> {
        Arc::clone(&self.ring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds a previous key, still used to open values sealed before a rotation.
    pub fn with_previous(self, previous: XKey) -> Self {
        {
            let mut guard = self.ring.write().unwrap_or_else(PoisonError::into_inner);
            if previous.public_key() != guard.current.public_key()
                && !guard
                    .previous
                    .iter()
                    .any(|k| k.public_key() == previous.public_key())
            {
                let mut keys = guard.previous.clone();
                keys.push(Arc::new(previous));
                *guard = Arc::new(Ring {
                    current: Arc::clone(&guard.current),
                    previous: keys,
                });
            }
        }
        self
    }

    /// The key values are sealed with.
    pub fn current(&self) -> Arc<XKey> {
        Arc::clone(&self.snapshot().current)
    }

    /// The current key's public key (`X…`).
    pub fn current_public(&self) -> String {
        self.snapshot().current.public_key().to_owned()
    }

    /// Makes `new` the current key; the old current key becomes the first previous key, so
    /// values sealed with it still open while they are re-sealed. Returns false (and changes
    /// nothing) when `new` already is the current key.
    pub fn rotate(&self, new: XKey) -> bool {
        let mut guard = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        if new.public_key() == guard.current.public_key() {
            return false;
        }
        let mut previous = vec![Arc::clone(&guard.current)];
        previous.extend(
            guard
                .previous
                .iter()
                .filter(|k| k.public_key() != new.public_key())
                .cloned(),
        );
        *guard = Arc::new(Ring {
            current: Arc::new(new),
            previous,
        });
        true
    }

    /// Seals with the current key.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealFailed> {
        self.snapshot()
            .current
            .seal_to_self(plain)
            .map_err(|_| SealFailed)
    }

    /// Opens with the current key, then each previous one; also says whether the current key
    /// opened it (false: the value still needs re-encryption).
    pub fn open(&self, sealed: &[u8]) -> Option<(Zeroizing<Vec<u8>>, bool)> {
        let ring = self.snapshot();
        if let Some(plain) = ring.current.open_from_self(sealed) {
            return Some((plain, true));
        }
        ring.previous
            .iter()
            .find_map(|k| k.open_from_self(sealed))
            .map(|plain| (plain, false))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn seals_to_itself_like_the_reference() {
        let ring = Keyring::new(XKey::generate());
        let sealed = ring.seal(b"hunter2").unwrap();
        assert!(sealed.starts_with(b"xkv1"));
        // The reference opens with `encryption_xkey.open(value, &encryption_xkey)`.
        let seed = ring.current().seed();
        let xkey = nkeys::XKey::from_seed(seed.expose_secret()).unwrap();
        assert_eq!(xkey.open(&sealed, &xkey).unwrap(), b"hunter2");
        assert!(!format!("{:?}", ring.current()).contains(seed.expose_secret()));
    }

    #[test]
    fn keyring_opens_with_previous_keys() {
        let old = XKey::generate();
        let sealed = old.seal_to_self(b"v").unwrap();
        let old_again = XKey::from_seed(&old.seed(), "t").unwrap();
        let ring = Keyring::new(XKey::generate()).with_previous(old_again);
        let (plain, current) = ring.open(&sealed).unwrap();
        assert_eq!(&*plain, b"v");
        assert!(!current);
        let fresh = ring.seal(b"w").unwrap();
        assert!(ring.open(&fresh).unwrap().1);
        assert!(Keyring::new(XKey::generate()).open(&sealed).is_none());
    }

    #[test]
    fn rotate_keeps_the_old_key_for_reading() {
        let ring = Keyring::new(XKey::generate());
        let old_public = ring.current_public();
        let sealed = ring.seal(b"v").unwrap();
        let new = XKey::generate();
        let new_public = new.public_key().to_owned();
        assert!(ring.rotate(new));
        assert_eq!(ring.current_public(), new_public);
        let (plain, current) = ring.open(&sealed).unwrap();
        assert_eq!((&plain[..], current), (&b"v"[..], false));
        assert!(!ring.rotate(XKey::from_seed(&ring.current().seed(), "t").unwrap()));
        let debug = format!("{ring:?}");
        assert!(debug.contains(&old_public) && debug.contains(&new_public));
        assert!(!debug.contains(ring.current().seed().expose_secret()));
    }

    #[test]
    fn seed_sources() {
        let err = SeedSource::Env("ANCHORAGE_SURELY_UNSET_SEED".into())
            .read()
            .unwrap_err();
        assert!(err.to_string().contains("ANCHORAGE_SURELY_UNSET_SEED"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let key = XKey::generate();
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(&path, format!("{}\n", key.seed().expose_secret())).unwrap();
        let loaded = XKey::load(&SeedSource::File(path)).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        // An unset variable is named (setting one needs `unsafe` in edition 2024, which the
        // workspace forbids; the CLI tests pass seeds through a child's environment).
        let var = format!("ANCHORAGE_TEST_UNSET_SEED_{}", std::process::id());
        let err = XKey::load(&SeedSource::Env(var.clone())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("environment variable {var} is not set")
        );
        // A missing file names the file and is a read error, not a seed error.
        let missing = dir.path().join("missing");
        let err = XKey::load(&SeedSource::File(missing.clone())).unwrap_err();
        assert!(
            matches!(&err, KeyError::ReadFile { path, .. } if *path == missing),
            "{err:?}"
        );
        // Not UTF-8: a seed error naming the file.
        let binary = dir.path().join("binary");
        #[allow(clippy::disallowed_methods)] // test fixture
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        let err = XKey::load(&SeedSource::File(binary.clone())).unwrap_err();
        assert!(
            matches!(&err, KeyError::NotAnXkeySeed { origin } if *origin == binary.display().to_string()),
            "{err:?}"
        );
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        let err = XKey::from_seed(&SecretString::from(account.clone()), "x").unwrap_err();
        assert!(!err.to_string().contains(&account));
    }
}

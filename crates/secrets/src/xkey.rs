//! Curve25519 "xkeys" as wasmCloud uses them: `xkv1` ‖ 24-byte nonce ‖ NaCl box (nkeys crate).
//!
//! [`TransitKey`] is the backend's long-lived key, loaded from a seed (`SX…`) so its public key
//! (`X…`, which hosts cache for their whole life) stays the same across restarts. Requests are
//! opened with it; every reply is sealed from a fresh one-time key. Seeds never appear in
//! `Debug` output or errors. This module reads the environment or a file only when asked to.

use std::path::{Path, PathBuf};

use nkeys::XKey;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Why a transit key could not be loaded. Never carries the seed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable {var} is not set")]
    MissingEnv {
        /// The variable's name.
        var: String,
    },
    /// The seed file could not be read.
    #[error("cannot read the seed file {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The text is not an xkey seed (`SX…`, 58 characters).
    #[error("{origin} does not hold a curve (xkey) seed starting with SX")]
    NotAnXkeySeed {
        /// Where the seed came from (variable or file name), never the seed.
        origin: String,
    },
}

/// Why a sealed message could not be opened or sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The peer's public key is not an xkey (`X…`).
    #[error("not a public xkey")]
    InvalidPublicKey,
    /// Wrong framing, wrong key or tampered ciphertext.
    #[error("the message cannot be opened with this key")]
    Open,
    /// Sealing failed.
    #[error("the message cannot be sealed")]
    Seal,
}

/// A public xkey (`X…`) of a peer, parsed and checked.
#[derive(Clone)]
pub struct PublicXKey(XKey);

impl PublicXKey {
    /// Parses `X…`.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let key = XKey::from_public_key(text.trim()).map_err(|_| SealError::InvalidPublicKey)?;
        Ok(Self(key))
    }

    /// The key as `X…`.
    pub fn as_string(&self) -> String {
        self.0.public_key()
    }
}

impl std::fmt::Debug for PublicXKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicXKey")
            .field(&self.0.public_key())
            .finish()
    }
}

/// Parses an xkey seed (`SX…`, surrounding whitespace ignored); `origin` names where it came
/// from (a variable or file name) for the error, which never holds the seed. Shared by the
/// transit key and the server's encryption keys.
pub fn xkey_from_seed(seed: &SecretString, origin: &str) -> Result<XKey, KeyError> {
    let text = seed.expose_secret().trim();
    let not_a_seed = || KeyError::NotAnXkeySeed {
        origin: origin.to_owned(),
    };
    if !text.starts_with("SX") {
        return Err(not_a_seed());
    }
    XKey::from_seed(text).map_err(|_| not_a_seed())
}

/// Reads a seed file into a [`SecretString`] (surrounding whitespace trimmed; the bytes read
/// are wiped).
pub fn read_seed_file(path: &Path) -> Result<SecretString, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::ReadFile {
        path: path.to_owned(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::NotAnXkeySeed {
        origin: path.display().to_string(),
    })?;
    Ok(SecretString::from(text.trim()))
}

/// The backend's transit key.
pub struct TransitKey {
    key: XKey,
    public: String,
}

impl std::fmt::Debug for TransitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl TransitKey {
    /// A new random key (for `init`-style commands and tests).
    pub fn generate() -> Self {
        Self::from_xkey(XKey::new())
    }

    fn from_xkey(key: XKey) -> Self {
        let public = key.public_key();
        Self { key, public }
    }

    /// Loads the key from its seed; `origin` names where it came from, for the error.
    pub fn from_seed(seed: &SecretString, origin: &str) -> Result<Self, KeyError> {
        xkey_from_seed(seed, origin).map(Self::from_xkey)
    }

    /// Loads the seed from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let seed = std::env::var(var).map_err(|_| KeyError::MissingEnv {
            var: var.to_owned(),
        })?;
        Self::from_seed(&SecretString::from(seed), var)
    }

    /// Loads the seed from a file (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_seed(&read_seed_file(path)?, &path.display().to_string())
    }

    /// The seed (`SX…`), for writing a newly generated key somewhere safe.
    pub fn seed(&self) -> SecretString {
        // A key built from a seed or generated always has one.
        SecretString::from(self.key.seed().unwrap_or_default())
    }

    /// The public key (`X…`) hosts seal requests to; the `server_xkey` reply.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Opens a request `sender` sealed to this key.
    pub fn open(
        &self,
        sealed: &[u8],
        sender: &PublicXKey,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.key
            .open(sealed, &sender.0)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }

    /// Seals `plaintext` to `recipient` from a fresh one-time key; returns that key's public
    /// half (the `Server-Response-Xkey` header) and the sealed bytes.
    pub fn seal_reply(
        plaintext: &[u8],
        recipient: &PublicXKey,
    ) -> Result<(String, Vec<u8>), SealError> {
        let one_time = XKey::new();
        let sealed = one_time
            .seal(plaintext, &recipient.0)
            .map_err(|_| SealError::Seal)?;
        Ok((one_time.public_key(), sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_keeps_public_key() {
        let key = TransitKey::generate();
        let seed = key.seed();
        assert!(seed.expose_secret().starts_with("SX"));
        let again = TransitKey::from_seed(&seed, "test").unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(key.public_key().starts_with('X'));
        let debug = format!("{key:?}");
        assert!(!debug.contains(seed.expose_secret()));
        assert!(debug.contains(key.public_key()));
    }

    #[test]
    fn refuses_other_seeds_without_echoing_them() {
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        let err = TransitKey::from_seed(&SecretString::from(account.clone()), "VAR").unwrap_err();
        assert!(!err.to_string().contains(&account));
        assert!(matches!(err, KeyError::NotAnXkeySeed { .. }));
        assert!(
            matches!(
                TransitKey::from_seed(&SecretString::from("SXnonsense"), "VAR"),
                Err(KeyError::NotAnXkeySeed { origin }) if origin == "VAR"
            ),
            "SXnonsense"
        );
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = TransitKey::from_env("ANCHORAGE_TEST_SURELY_UNSET_SEED").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable ANCHORAGE_TEST_SURELY_UNSET_SEED is not set"
        );
    }

    #[test]
    fn loads_from_file() {
        let key = TransitKey::generate();
        let path =
            std::env::temp_dir().join(format!("anchorage-secrets-{}.seed", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(
            &mut file,
            format!("{}\n", key.seed().expose_secret()).as_bytes(),
        )
        .unwrap();
        drop(file);
        let loaded = TransitKey::from_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(
            TransitKey::from_file(&path),
            Err(KeyError::ReadFile { .. })
        ));
    }

    #[test]
    fn open_and_seal() {
        let server = TransitKey::generate();
        let host = XKey::new();
        let sealed = host
            .seal(
                b"hello",
                &XKey::from_public_key(server.public_key()).unwrap(),
            )
            .unwrap();
        assert!(sealed.starts_with(b"xkv1"));
        let host_pub = PublicXKey::parse(&host.public_key()).unwrap();
        assert_eq!(&*server.open(&sealed, &host_pub).unwrap(), b"hello");

        let mut tampered = sealed;
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(server.open(&tampered, &host_pub), Err(SealError::Open));
        assert_eq!(server.open(b"xkv1", &host_pub), Err(SealError::Open));

        let (reply_pub, reply) = TransitKey::seal_reply(b"world", &host_pub).unwrap();
        assert_ne!(reply_pub, server.public_key());
        let opened = host
            .open(&reply, &XKey::from_public_key(&reply_pub).unwrap())
            .unwrap();
        assert_eq!(opened, b"world");
        assert!(matches!(
            PublicXKey::parse("not a key"),
            Err(SealError::InvalidPublicKey)
        ));
        // A seed is not a public key either (and is not accepted as one).
        assert!(matches!(
            PublicXKey::parse(server.seed().expose_secret()),
            Err(SealError::InvalidPublicKey)
        ));
    }
}

//! Curve25519 "xkeys" as wasmCloud uses them: `xkv1` ‖ 24-byte nonce ‖ NaCl box (nkeys crate).
//!
//! [`XKey`] is the one key type with a secret half, for both jobs a backend has for one:
//!
//! - the **transit key**, loaded from a seed (`SX…`) so its public key (`X…`,
//!   which hosts cache for their whole life) stays the same across restarts: requests are opened
//!   with it ([`XKey::open`]); every reply is sealed from a fresh one-time key
//!   ([`XKey::seal_reply`]);
//! - the **encryption key** of values at rest, which seals *to itself*
//!   ([`XKey::seal_to_self`], [`XKey::open_from_self`]), exactly as the reference
//!   `secrets-nats-kv` backend stores values.
//!
//! Seeds come in as [`SecretString`]s; this module reads no file and no environment variable:
//! [`XKey::load`] asks a [`SeedProvider`] (the server's seed file or variable) for the text.
//! Seeds never appear in `Debug` output or errors.

use nkeys::XKey as NkXKey;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The version prefix of nkeys' sealed boxes.
const XKV1: &[u8] = b"xkv1";
/// The XSalsa20 nonce that follows it.
const NONCE_LEN: usize = 24;

/// Why a key could not be loaded. Never carries the seed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The environment variable is not set (or not UTF-8); made by the [`SeedProvider`] that
    /// reads variables.
    #[error("environment variable {var} is not set")]
    MissingEnv {
        /// The variable's name.
        var: String,
    },
    /// The seed file could not be read; made by the [`SeedProvider`] that reads files.
    #[error("cannot read the seed file {}", path.display())]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
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

/// Where a seed's text comes from: implemented by whoever does the reading (the server crate's
/// `SeedSource` reads a file or an environment variable), so this crate stays free of I/O.
pub trait SeedProvider {
    /// The seed text (`SX…`; surrounding whitespace is ignored).
    fn read_seed(&self) -> Result<SecretString, KeyError>;
    /// Where the seed comes from, for messages (a variable or file name, never the seed).
    fn origin(&self) -> String;
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
pub struct PublicXKey(NkXKey, [u8; 32]);

impl PublicXKey {
    /// Parses `X…`.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let key = NkXKey::from_public_key(text).map_err(|_| SealError::InvalidPublicKey)?;
        let (_, raw) = nkeys::from_public_key(text).map_err(|_| SealError::InvalidPublicKey)?;
        Ok(Self(key, raw))
    }

    /// The key as `X…`.
    pub fn as_string(&self) -> String {
        self.0.public_key()
    }

    /// The raw 32-byte Curve25519 public key.
    fn raw(&self) -> [u8; 32] {
        self.1
    }
}

/// The nkeys text of a raw Curve25519 public key: base32 (no padding) of the curve prefix byte,
/// the key and their CRC-16 (XMODEM, little-endian), as nkeys' `XKey::public_key` writes it.
fn encode_public_xkey(raw: &[u8]) -> String {
    /// nkeys' prefix byte of curve keys (`X…`).
    const PREFIX_BYTE_CURVE: u8 = 23 << 3;
    let mut bytes = Vec::with_capacity(1 + raw.len() + 2);
    bytes.push(PREFIX_BYTE_CURVE);
    bytes.extend_from_slice(raw);
    let crc = bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    });
    bytes.extend_from_slice(&crc.to_le_bytes());
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

impl std::fmt::Debug for PublicXKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicXKey")
            .field(&self.0.public_key())
            .finish()
    }
}

/// Parses an xkey seed (`SX…`, surrounding whitespace ignored); `origin` names where it came
/// from for the error, which never holds the seed.
fn nkey_from_seed(seed: &SecretString, origin: &str) -> Result<NkXKey, KeyError> {
    let text = seed.expose_secret().trim();
    let not_a_seed = || KeyError::NotAnXkeySeed {
        origin: origin.to_owned(),
    };
    if !text.starts_with("SX") {
        return Err(not_a_seed());
    }
    NkXKey::from_seed(text).map_err(|_| not_a_seed())
}

/// An xkey with its secret half: the backend's transit key or an encryption key of values at
/// rest (see the module docs). `Debug` shows the public key only.
pub struct XKey {
    key: NkXKey,
    public: String,
    /// This key's NaCl box with itself, its X25519 shared secret computed once: values at rest
    /// are sealed to the key itself ([`XKey::open_from_self`]), so every read would otherwise
    /// redo the same scalar multiplication. crypto_box wipes it on drop.
    to_self: Option<crypto_box::SalsaBox>,
}

impl std::fmt::Debug for XKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl XKey {
    /// A new random key (for `keygen`-style commands and tests).
    pub fn generate() -> Self {
        Self::from_nkey(NkXKey::new())
    }

    fn from_nkey(key: NkXKey) -> Self {
        let public = key.public_key();
        let to_self = key.seed().ok().and_then(|seed| {
            let seed = Zeroizing::new(seed);
            let (_, raw) = nkeys::decode_seed(&seed).ok()?;
            let raw = Zeroizing::new(raw);
            let secret = crypto_box::SecretKey::from(*raw);
            Some(crypto_box::SalsaBox::new(&secret.public_key(), &secret))
        });
        Self {
            key,
            public,
            to_self,
        }
    }

    /// Loads the key from its seed (`SX…`); `origin` names where it came from, for the error.
    pub fn from_seed(seed: &SecretString, origin: &str) -> Result<Self, KeyError> {
        nkey_from_seed(seed, origin).map(Self::from_nkey)
    }

    /// Loads the key from the seed `source` gives (the reading is the provider's).
    pub fn load(source: &impl SeedProvider) -> Result<Self, KeyError> {
        Self::from_seed(&source.read_seed()?, &source.origin())
    }

    /// The seed (`SX…`), for writing a newly generated key somewhere safe.
    pub fn seed(&self) -> SecretString {
        // A key built from a seed or generated always has one.
        SecretString::from(self.key.seed().unwrap_or_default())
    }

    /// The public key (`X…`): what hosts seal requests to (the `server_xkey` reply), and what
    /// names an encryption key in messages.
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
    ///
    /// The same bytes nkeys' `XKey::new().seal(..)` makes (`xkv1` ‖ random nonce ‖
    /// XSalsa20-Poly1305 under HSalsa20 of the X25519 shared secret), but the one-time key and
    /// the Diffie-Hellman step are ring's ephemeral X25519 (assembly field arithmetic: the seal
    /// takes 0.55–0.85 of the time of nkeys' on curve25519-dalek, `benches/xkey_seal.rs`; the
    /// key never leaves ring and is consumed by the one agreement). ring refuses a recipient key of small order (the
    /// shared secret would be all zeros, so anyone could open the reply): that is
    /// [`SealError::Seal`], where nkeys sealed under a known key.
    pub fn seal_reply(
        plaintext: &[u8],
        recipient: &PublicXKey,
    ) -> Result<(String, Vec<u8>), SealError> {
        use crypto_secretbox::aead::{Aead as _, KeyInit as _};
        use crypto_secretbox::{Kdf as _, XSalsa20Poly1305};
        use ring::agreement::{self, X25519};
        use ring::rand::{SecureRandom as _, SystemRandom};

        let rng = SystemRandom::new();
        let one_time =
            agreement::EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| SealError::Seal)?;
        let public = one_time.compute_public_key().map_err(|_| SealError::Seal)?;
        let peer = recipient.raw();
        let cipher = agreement::agree_ephemeral(
            one_time,
            &agreement::UnparsedPublicKey::new(&X25519, &peer),
            |shared| {
                let shared = Zeroizing::new(crypto_secretbox::Key::clone_from_slice(shared));
                let key = Zeroizing::new(XSalsa20Poly1305::kdf(&shared, &Default::default()));
                XSalsa20Poly1305::new(&key)
            },
        )
        .map_err(|_| SealError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let boxed = cipher
            .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| SealError::Seal)?;
        let mut sealed = Vec::with_capacity(XKV1.len() + NONCE_LEN + boxed.len());
        sealed.extend_from_slice(XKV1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&boxed);
        Ok((encode_public_xkey(public.as_ref()), sealed))
    }

    /// Seals `plain` to this key itself (a value at rest, as the reference stores it).
    pub fn seal_to_self(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        self.key.seal(plain, &self.key).map_err(|_| SealError::Seal)
    }

    /// Opens what this key sealed to itself; `None` when this key did not seal it (or the bytes
    /// were tampered with).
    pub fn open_from_self(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        use crypto_box::aead::Aead as _;
        let Some(to_self) = &self.to_self else {
            return self.key.open(sealed, &self.key).ok().map(Zeroizing::new);
        };
        // nkeys' framing: `xkv1` ‖ 24-byte nonce ‖ box, with at least one byte of box.
        let rest = sealed.strip_prefix(XKV1)?;
        if rest.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, boxed) = rest.split_at(NONCE_LEN);
        to_self
            .decrypt(crypto_box::Nonce::from_slice(nonce), boxed)
            .ok()
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_keeps_public_key() {
        let key = XKey::generate();
        let seed = key.seed();
        assert!(seed.expose_secret().starts_with("SX"));
        let again = XKey::from_seed(&seed, "test").unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert!(key.public_key().starts_with('X'));
        let debug = format!("{key:?}");
        assert!(!debug.contains(seed.expose_secret()));
        assert!(debug.contains(key.public_key()));
    }

    #[test]
    fn refuses_other_seeds_without_echoing_them() {
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        let err = XKey::from_seed(&SecretString::from(account.clone()), "VAR").unwrap_err();
        assert!(!err.to_string().contains(&account));
        assert!(matches!(err, KeyError::NotAnXkeySeed { .. }));
        assert!(
            matches!(
                XKey::from_seed(&SecretString::from("SXnonsense"), "VAR"),
                Err(KeyError::NotAnXkeySeed { origin }) if origin == "VAR"
            ),
            "SXnonsense"
        );
    }

    /// A provider that hands over text it already holds, or a failure.
    struct Given(Option<String>);

    impl SeedProvider for Given {
        fn read_seed(&self) -> Result<SecretString, KeyError> {
            self.0
                .clone()
                .map(SecretString::from)
                .ok_or(KeyError::MissingEnv {
                    var: "GIVEN".into(),
                })
        }
        fn origin(&self) -> String {
            "given seed".into()
        }
    }

    #[test]
    fn load_takes_the_seed_from_the_provider_and_names_its_origin() {
        let key = XKey::generate();
        let seed = format!("  {}\n", key.seed().expose_secret());
        let loaded = XKey::load(&Given(Some(seed))).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(
            XKey::load(&Given(None)),
            Err(KeyError::MissingEnv { var }) if var == "GIVEN"
        ));
        let err = XKey::load(&Given(Some("SXnot-a-seed".into()))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "given seed does not hold a curve (xkey) seed starting with SX"
        );
    }

    #[test]
    fn seals_to_itself_like_the_reference() {
        let key = XKey::generate();
        let sealed = key.seal_to_self(b"hunter2").unwrap();
        assert!(sealed.starts_with(b"xkv1"));
        // The reference opens with `encryption_xkey.open(value, &encryption_xkey)`.
        let nk = NkXKey::from_seed(key.seed().expose_secret()).unwrap();
        assert_eq!(nk.open(&sealed, &nk).unwrap(), b"hunter2");
        assert_eq!(&*key.open_from_self(&sealed).unwrap(), b"hunter2");
        // Negative control: another key does not open it.
        assert!(XKey::generate().open_from_self(&sealed).is_none());
    }

    /// The precomputed box opens exactly what nkeys' own open does, and nothing else.
    #[test]
    fn open_from_self_matches_nkeys() {
        let key = XKey::generate();
        let nk = NkXKey::from_seed(key.seed().expose_secret()).unwrap();
        assert!(key.to_self.is_some());
        let sealed = nk.seal(b"value at rest", &nk).unwrap();
        let mut cases = vec![sealed.clone(), Vec::new(), b"xkv1".to_vec()];
        for i in [0, 3, 4, 27, 28, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            cases.push(t);
        }
        cases.push(sealed[..28].to_vec());
        cases.push(sealed[..29].to_vec());
        // Sealed to this key by another sender: not a value at rest of this key.
        cases.push(NkXKey::new().seal(b"x", &nk).unwrap());
        for case in &cases {
            assert_eq!(
                key.open_from_self(case).map(|p| p.to_vec()),
                nk.open(case, &nk).ok(),
                "{case:?}"
            );
        }
        assert_eq!(&*key.open_from_self(&sealed).unwrap(), b"value at rest");
    }

    /// The public key text matches nkeys' for random keys and the all-zero and all-ones keys.
    #[test]
    fn public_key_text_matches_nkeys() {
        for _ in 0..64 {
            let key = NkXKey::new();
            let (_, raw) = nkeys::from_public_key(&key.public_key()).unwrap();
            assert_eq!(encode_public_xkey(&raw), key.public_key());
            let parsed = PublicXKey::parse(&key.public_key()).unwrap();
            assert_eq!(parsed.raw(), raw);
        }
        for raw in [[0u8; 32], [0xff; 32]] {
            let text = encode_public_xkey(&raw);
            assert_eq!(nkeys::from_public_key(&text).unwrap().1, raw);
            assert_eq!(NkXKey::from_public_key(&text).unwrap().public_key(), text);
        }
    }

    /// A reply sealed by ring opens with nkeys (the wasmCloud client's own code) from the
    /// header key, byte for byte what was sealed; tampered, it does not; sealing to a
    /// small-order key is refused.
    #[test]
    fn seal_reply_opens_with_nkeys() {
        let host = NkXKey::new();
        let host_pub = PublicXKey::parse(&host.public_key()).unwrap();
        for plain in [&b""[..], b"x", &[7u8; 5000]] {
            let (reply_pub, reply) = XKey::seal_reply(plain, &host_pub).unwrap();
            assert!(reply.starts_with(XKV1));
            assert_eq!(reply.len(), XKV1.len() + NONCE_LEN + 16 + plain.len());
            let sender = NkXKey::from_public_key(&reply_pub).unwrap();
            assert_eq!(host.open(&reply, &sender).unwrap(), plain);
            let mut tampered = reply.clone();
            tampered[XKV1.len() + NONCE_LEN] ^= 1;
            assert!(host.open(&tampered, &sender).is_err());
            // Another host key cannot open it.
            assert!(NkXKey::new().open(&reply, &sender).is_err());
        }
        // Two replies use two one-time keys and two nonces.
        let (a, ra) = XKey::seal_reply(b"v", &host_pub).unwrap();
        let (b, rb) = XKey::seal_reply(b"v", &host_pub).unwrap();
        assert_ne!(a, b);
        assert_ne!(ra[4..28], rb[4..28]);
        // The all-zero point has small order: refused rather than sealed under a known key.
        let zero = PublicXKey::parse(&encode_public_xkey(&[0u8; 32])).unwrap();
        assert_eq!(XKey::seal_reply(b"v", &zero), Err(SealError::Seal));
    }

    #[test]
    fn open_and_seal() {
        let server = XKey::generate();
        let host = NkXKey::new();
        let sealed = host
            .seal(
                b"hello",
                &NkXKey::from_public_key(server.public_key()).unwrap(),
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

        let (reply_pub, reply) = XKey::seal_reply(b"world", &host_pub).unwrap();
        assert_ne!(reply_pub, server.public_key());
        let opened = host
            .open(&reply, &NkXKey::from_public_key(&reply_pub).unwrap())
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

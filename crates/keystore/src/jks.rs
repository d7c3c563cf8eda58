//! JKS, Sun's original keystore format, written and read by hand: no maintained crate does
//! either, and the format is small and frozen.
//!
//! ```text
//! u32 magic 0xFEEDFEED | u32 version 2 | u32 count
//! count × entry:
//!   u32 tag 2 (trusted certificate) | UTF alias | u64 created (ms) | UTF "X.509" | u32 len | DER
//!   u32 tag 1 (private key)         | UTF alias | u64 created | u32 len | key | u32 n | n × cert
//! 20 bytes SHA-1( password as UTF-16BE ‖ "Mighty Aphrodite" ‖ everything above )
//! ```
//!
//! `UTF` is Java's `DataOutput.writeUTF`: a u16 byte length and "modified UTF-8" (U+0000 as
//! `C0 80`, characters beyond the BMP as two 3-byte surrogates). Version 1 files omit the
//! certificate type strings. Java lowercases aliases when it loads a JKS, so the encoder writes
//! them lowercased.

use secrecy::{ExposeSecret as _, SecretString};
use sha1::{Digest as _, Sha1};
use zeroize::Zeroizing;

use crate::entry::{
    KeyEntry, Keystore, KeystoreKind, StoredCertificate, TrustedEntry, check_entries,
    check_password,
};
use crate::error::KeystoreError;

/// The first four bytes of a JKS file.
pub(crate) const MAGIC: u32 = 0xFEED_FEED;
/// The first four bytes of a JCEKS file.
pub(crate) const JCEKS_MAGIC: u32 = 0xCECE_CECE;

const VERSION_1: u32 = 1;
const VERSION_2: u32 = 2;
const TAG_PRIVATE_KEY: u32 = 1;
const TAG_TRUSTED_CERT: u32 = 2;
const TAG_SECRET_KEY: u32 = 3;
const CERT_TYPE: &str = "X.509";
/// Java's "pre-keyed hash" whitener, hashed after the password.
const WHITENER: &[u8] = b"Mighty Aphrodite";
const DIGEST_LEN: usize = 20;

/// Encodes `entries` as a JKS trust store (version 2, one trusted-certificate entry each, in
/// order), sealed with `password` (Java's default is `changeit`).
///
/// Aliases are written lowercased, as Java would store them; each entry's creation date is its
/// [`TrustedEntry::created_ms`], so the same entries give the same bytes.
pub fn encode_jks(
    entries: &[TrustedEntry],
    password: &SecretString,
) -> Result<Vec<u8>, KeystoreError> {
    let password = password.expose_secret();
    check_password(password)?;
    check_entries(entries, KeystoreKind::Jks)?;
    let count = u32::try_from(entries.len()).map_err(|_| KeystoreError::Encode {
        kind: KeystoreKind::Jks,
        reason: format!("{} entries do not fit a JKS count", entries.len()),
    })?;

    let size: usize = entries
        .iter()
        .map(|e| e.der.len() + e.alias.len() + 32)
        .sum();
    let mut out = Vec::with_capacity(12 + size + DIGEST_LEN);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION_2.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for entry in entries {
        out.extend_from_slice(&TAG_TRUSTED_CERT.to_be_bytes());
        let alias = entry.alias.to_lowercase();
        write_utf(&mut out, &alias).map_err(|reason| KeystoreError::InvalidAlias {
            alias: entry.alias.clone(),
            kind: KeystoreKind::Jks,
            reason,
        })?;
        out.extend_from_slice(&entry.created_ms.to_be_bytes());
        write_utf(&mut out, CERT_TYPE).map_err(|reason| KeystoreError::Encode {
            kind: KeystoreKind::Jks,
            reason: reason.to_owned(),
        })?;
        // `check_entries` made sure the length fits.
        let len = u32::try_from(entry.der.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&entry.der);
    }
    let digest = digest(password, &out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Decodes a JKS file.
///
/// With a password, the trailing digest is verified and a mismatch is
/// [`KeystoreError::WrongPassword`]; without one it is not checked (as Java does), and
/// [`Keystore::integrity_checked`] is false. Private-key entries are reported by alias, their
/// keys and chains skipped. A JCEKS file is [`KeystoreError::Jceks`].
pub fn decode_jks(
    bytes: &[u8],
    password: Option<&SecretString>,
) -> Result<Keystore, KeystoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.u32("magic")?;
    if magic == JCEKS_MAGIC {
        return Err(KeystoreError::Jceks);
    }
    if magic != MAGIC {
        return Err(KeystoreError::malformed(
            KeystoreKind::Jks,
            format!("magic 0x{magic:08X} at byte 0, expected 0xFEEDFEED"),
        ));
    }
    let version = r.u32("version")?;
    if version != VERSION_1 && version != VERSION_2 {
        return Err(KeystoreError::Unsupported {
            kind: KeystoreKind::Jks,
            what: "version (1 and 2 are read)",
            found: version.to_string(),
        });
    }
    let count = r.u32("entry count")?;
    let mut store = Keystore {
        kind: KeystoreKind::Jks,
        certificates: Vec::new(),
        key_entries: Vec::new(),
        integrity_checked: false,
    };
    for index in 0..count {
        let at = r.pos;
        match r.u32("entry tag")? {
            TAG_TRUSTED_CERT => {
                let alias = r.utf("alias")?;
                let created = r.i64("creation date")?;
                let der = r.certificate(version)?.to_vec();
                store.certificates.push(StoredCertificate {
                    alias: Some(alias),
                    der,
                    trusted: true,
                    created_ms: Some(created),
                });
            }
            TAG_PRIVATE_KEY => {
                let alias = r.utf("alias")?;
                r.i64("creation date")?;
                let key_len = r.u32("key length")?;
                r.take(key_len as usize, "protected key")?;
                let chain = r.u32("chain length")?;
                for _ in 0..chain {
                    r.certificate(version)?;
                }
                store.key_entries.push(KeyEntry { alias: Some(alias) });
            }
            TAG_SECRET_KEY => {
                return Err(KeystoreError::malformed(
                    KeystoreKind::Jks,
                    format!(
                        "entry {index} at byte {at} is a secret key (tag 3), which only JCEKS holds"
                    ),
                ));
            }
            tag => {
                return Err(KeystoreError::malformed(
                    KeystoreKind::Jks,
                    format!("entry {index} at byte {at} has unknown tag {tag}"),
                ));
            }
        }
    }
    let signed = r.pos;
    let stored = r.take(DIGEST_LEN, "digest")?;
    if r.pos != bytes.len() {
        return Err(KeystoreError::malformed(
            KeystoreKind::Jks,
            format!(
                "{} bytes after the digest that ends at byte {}",
                bytes.len() - r.pos,
                r.pos
            ),
        ));
    }
    if let Some(password) = password {
        if digest(password.expose_secret(), &bytes[..signed]) != stored {
            return Err(KeystoreError::WrongPassword {
                kind: KeystoreKind::Jks,
                check: "SHA-1 digest",
            });
        }
        store.integrity_checked = true;
    }
    Ok(store)
}

/// SHA-1 over the password's UTF-16BE code units, the whitener and `data`.
fn digest(password: &str, data: &[u8]) -> [u8; DIGEST_LEN] {
    let units: Zeroizing<Vec<u8>> =
        Zeroizing::new(password.encode_utf16().flat_map(u16::to_be_bytes).collect());
    let mut hash = Sha1::new();
    hash.update(&*units);
    hash.update(WHITENER);
    hash.update(data);
    hash.finalize().into()
}

/// Java's `DataOutput.writeUTF`.
fn write_utf(out: &mut Vec<u8>, text: &str) -> Result<(), &'static str> {
    let mut encoded = Vec::with_capacity(text.len());
    for unit in text.encode_utf16() {
        match unit {
            0x0001..=0x007F => encoded.push(unit as u8),
            0x0000 | 0x0080..=0x07FF => {
                encoded.push(0xC0 | (unit >> 6) as u8);
                encoded.push(0x80 | (unit & 0x3F) as u8);
            }
            _ => {
                encoded.push(0xE0 | (unit >> 12) as u8);
                encoded.push(0x80 | ((unit >> 6) & 0x3F) as u8);
                encoded.push(0x80 | (unit & 0x3F) as u8);
            }
        }
    }
    let len = u16::try_from(encoded.len())
        .map_err(|_| "longer than 65535 bytes in Java's modified UTF-8")?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&encoded);
    Ok(())
}

/// A cursor whose every read names what it wanted when the input runs out.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KeystoreError> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(KeystoreError::malformed(
                KeystoreKind::Jks,
                format!(
                    "truncated at byte {}: the {what} needs {n} bytes, {left} left",
                    self.pos
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KeystoreError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, KeystoreError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn i64(&mut self, what: &str) -> Result<i64, KeystoreError> {
        self.array(what).map(i64::from_be_bytes)
    }

    /// Java's `DataInput.readUTF`.
    fn utf(&mut self, what: &str) -> Result<String, KeystoreError> {
        let at = self.pos;
        let len = u16::from_be_bytes(self.array(what)?);
        let bytes = self.take(usize::from(len), what)?;
        let bad = || {
            KeystoreError::malformed(
                KeystoreKind::Jks,
                format!("the {what} at byte {at} is not modified UTF-8"),
            )
        };
        let mut units = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let cont = |k: usize| match bytes.get(i + k) {
                Some(&c) if c & 0xC0 == 0x80 => Ok(u16::from(c & 0x3F)),
                _ => Err(bad()),
            };
            let (unit, width) = match b >> 4 {
                0..=7 => (u16::from(b), 1),
                12 | 13 => ((u16::from(b & 0x1F) << 6) | cont(1)?, 2),
                14 => ((u16::from(b & 0x0F) << 12) | (cont(1)? << 6) | cont(2)?, 3),
                _ => return Err(bad()),
            };
            units.push(unit);
            i += width;
        }
        Ok(String::from_utf16_lossy(&units))
    }

    /// A certificate: its type (version 2) and length-prefixed bytes.
    fn certificate(&mut self, version: u32) -> Result<&'a [u8], KeystoreError> {
        if version == VERSION_2 {
            let at = self.pos;
            let kind = self.utf("certificate type")?;
            if kind != CERT_TYPE {
                return Err(KeystoreError::Unsupported {
                    kind: KeystoreKind::Jks,
                    what: "certificate type (only X.509 is read)",
                    found: format!("{kind:?} at byte {at}"),
                });
            }
        }
        let len = self.u32("certificate length")?;
        self.take(len as usize, "certificate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alias: &str, der: &[u8], created_ms: i64) -> TrustedEntry {
        TrustedEntry {
            alias: alias.to_owned(),
            der: der.to_vec(),
            created_ms,
        }
    }

    fn pw(p: &str) -> SecretString {
        SecretString::from(p)
    }

    /// A hand-checked vector: every field of a one-entry store, then the digest computed
    /// independently of `digest()`.
    #[test]
    fn byte_layout_of_a_small_store() {
        let bytes = encode_jks(&[entry("Ab", &[0x30, 0x00], 0x0102_0304_0506)], &pw("pw")).unwrap();
        let body: &[u8] = &[
            0xFE, 0xED, 0xFE, 0xED, // magic
            0, 0, 0, 2, // version
            0, 0, 0, 1, // count
            0, 0, 0, 2, // tag: trusted certificate
            0, 2, b'a', b'b', // alias, lowercased
            0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // created (ms)
            0, 5, b'X', b'.', b'5', b'0', b'9', // certificate type
            0, 0, 0, 2, 0x30, 0x00, // certificate
        ];
        assert_eq!(&bytes[..body.len()], body);
        let mut keyed = vec![0, b'p', 0, b'w'];
        keyed.extend_from_slice(b"Mighty Aphrodite");
        keyed.extend_from_slice(body);
        let expected: [u8; 20] = Sha1::digest(&keyed).into();
        assert_eq!(&bytes[body.len()..], &expected);
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let entries = [
            entry("one", b"\x30\x03\x02\x01\x01", 1000),
            entry("two", b"\x30\x00", -5),
        ];
        let bytes = encode_jks(&entries, &pw("changeit")).unwrap();
        let store = decode_jks(&bytes, Some(&pw("changeit"))).unwrap();
        assert!(store.integrity_checked);
        assert_eq!(store.certificates.len(), 2);
        for (got, want) in store.certificates.iter().zip(&entries) {
            assert_eq!(got.alias.as_deref(), Some(want.alias.as_str()));
            assert_eq!(got.der, want.der);
            assert_eq!(got.created_ms, Some(want.created_ms));
            assert!(got.trusted);
        }
        assert_eq!(
            decode_jks(&bytes, Some(&pw("changeme"))),
            Err(KeystoreError::WrongPassword {
                kind: KeystoreKind::Jks,
                check: "SHA-1 digest"
            })
        );
        let unchecked = decode_jks(&bytes, None).unwrap();
        assert!(!unchecked.integrity_checked);
        assert_eq!(unchecked.certificates, store.certificates);
        // Deterministic; the password changes only the digest.
        assert_eq!(bytes, encode_jks(&entries, &pw("changeit")).unwrap());
        let other = encode_jks(&entries, &pw("other")).unwrap();
        assert_eq!(bytes[..bytes.len() - 20], other[..other.len() - 20]);
        assert_ne!(bytes, other);
    }

    #[test]
    fn modified_utf8_aliases() {
        for alias in ["plain", "nul\0inside", "ümlaut", "中文", "clef 𝄞"] {
            let mut out = Vec::new();
            write_utf(&mut out, alias).unwrap();
            let mut r = Reader {
                bytes: &out,
                pos: 0,
            };
            assert_eq!(r.utf("alias").unwrap(), alias);
            assert_eq!(r.pos, out.len());
            assert!(!out[2..].contains(&0), "no raw NUL in modified UTF-8");
        }
        let mut out = Vec::new();
        write_utf(&mut out, "𝄞").unwrap();
        assert_eq!(out, [0, 6, 0xED, 0xA0, 0xB4, 0xED, 0xB4, 0x9E]);
        assert_eq!(
            write_utf(&mut Vec::new(), &"x".repeat(70_000)),
            Err("longer than 65535 bytes in Java's modified UTF-8")
        );
        // The limit itself still fits.
        assert!(write_utf(&mut Vec::new(), &"x".repeat(65_535)).is_ok());
    }

    #[test]
    fn private_keys_are_reported_and_skipped() {
        let mut body = Vec::new();
        body.extend_from_slice(&MAGIC.to_be_bytes());
        body.extend_from_slice(&VERSION_2.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&TAG_PRIVATE_KEY.to_be_bytes());
        write_utf(&mut body, "server").unwrap();
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&4u32.to_be_bytes());
        body.extend_from_slice(b"KEY!");
        body.extend_from_slice(&1u32.to_be_bytes());
        write_utf(&mut body, "X.509").unwrap();
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&[0x30, 0x00]);
        let sealed = digest("pw", &body);
        body.extend_from_slice(&sealed);
        let store = decode_jks(&body, Some(&pw("pw"))).unwrap();
        assert!(store.certificates.is_empty());
        assert_eq!(
            store.key_entries,
            [KeyEntry {
                alias: Some("server".into())
            }]
        );
    }

    #[test]
    fn damage_is_reported_clearly() {
        let bytes = encode_jks(&[entry("a", b"\x30\x00", 0)], &pw("changeit")).unwrap();
        let err = decode_jks(&bytes[..bytes.len() - 25], Some(&pw("changeit"))).unwrap_err();
        assert!(
            matches!(&err, KeystoreError::Malformed { reason, .. } if reason.starts_with("truncated at byte")),
            "{err}"
        );
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(
            decode_jks(&longer, None),
            Err(KeystoreError::Malformed { .. })
        ));
        assert_eq!(
            decode_jks(&[0xCE, 0xCE, 0xCE, 0xCE, 0, 0, 0, 2], None),
            Err(KeystoreError::Jceks)
        );
        let err = decode_jks(b"garbage!", None).unwrap_err();
        assert!(err.to_string().contains("expected 0xFEEDFEED"), "{err}");
        assert!(
            decode_jks(&[], None)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn empty_password_and_duplicate_aliases_are_refused() {
        let one = entry("a", b"\x30\x00", 0);
        assert_eq!(
            encode_jks(std::slice::from_ref(&one), &pw("")),
            Err(KeystoreError::EmptyPassword)
        );
        let upper = entry("A", b"\x30\x01", 0);
        assert!(matches!(
            encode_jks(&[one, upper], &pw("changeit")),
            Err(KeystoreError::DuplicateAlias { .. })
        ));
    }
}

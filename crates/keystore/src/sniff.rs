//! Recognising a keystore by its first bytes, and decoding whatever kind it is.

use secrecy::SecretString;

use crate::entry::{Keystore, KeystoreKind};
use crate::error::KeystoreError;
use crate::jks::{self, JCEKS_MAGIC, MAGIC};
use crate::p12;

/// What kind of keystore `bytes` holds, judged by content alone (no decoding, no password):
/// JKS and JCEKS by their magic numbers, PKCS#12 by the start of a DER `PFX` of version 3
/// (`SEQUENCE { INTEGER 3, SEQUENCE ...`). `None` for anything else, PEM and DER certificates
/// included.
pub fn sniff(bytes: &[u8]) -> Option<KeystoreKind> {
    let magic = bytes.get(..4)?;
    if magic == MAGIC.to_be_bytes() {
        return Some(KeystoreKind::Jks);
    }
    if magic == JCEKS_MAGIC.to_be_bytes() {
        return Some(KeystoreKind::Jceks);
    }
    // SEQUENCE with a length (short, 1 to 4 octets, or BER's indefinite form, which some
    // Windows exports use and which the decoder then reports as malformed)...
    if bytes[0] != 0x30 {
        return None;
    }
    let header = match bytes[1] {
        0x00..=0x80 => 2,
        0x81..=0x84 => 2 + usize::from(bytes[1] & 0x7F),
        _ => return None,
    };
    // ... then `INTEGER 3` and the authSafe `SEQUENCE`.
    (bytes.get(header..header + 4)? == [0x02, 0x01, 0x03, 0x30]).then_some(KeystoreKind::Pkcs12)
}

/// Decodes a JKS or PKCS#12 keystore, whichever `bytes` holds (see [`sniff`]).
///
/// See [`decode_pkcs12`](crate::decode_pkcs12) and [`decode_jks`](crate::decode_jks) for what
/// the password does; JCEKS is [`KeystoreError::Jceks`], anything else
/// [`KeystoreError::NotAKeystore`].
pub fn decode(bytes: &[u8], password: Option<&SecretString>) -> Result<Keystore, KeystoreError> {
    match sniff(bytes) {
        Some(KeystoreKind::Jks) => jks::decode_jks(bytes, password),
        Some(KeystoreKind::Pkcs12) => p12::decode_pkcs12(bytes, password),
        Some(KeystoreKind::Jceks) => Err(KeystoreError::Jceks),
        None => Err(KeystoreError::NotAKeystore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic_numbers_and_pfx_headers() {
        assert_eq!(
            sniff(&[0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2]),
            Some(KeystoreKind::Jks)
        );
        assert_eq!(sniff(&[0xCE, 0xCE, 0xCE, 0xCE]), Some(KeystoreKind::Jceks));
        assert_eq!(
            sniff(&[0x30, 0x82, 0x03, 0x12, 0x02, 0x01, 0x03, 0x30, 0x82]),
            Some(KeystoreKind::Pkcs12)
        );
        assert_eq!(
            sniff(&[0x30, 0x10, 0x02, 0x01, 0x03, 0x30]),
            Some(KeystoreKind::Pkcs12)
        );
        // A certificate: SEQUENCE { SEQUENCE (tbs) ... }.
        assert_eq!(
            sniff(&[0x30, 0x82, 0x01, 0x95, 0x30, 0x82, 0x01, 0x3b]),
            None
        );
        assert_eq!(sniff(b"-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(
            sniff(&[0x30, 0x80, 0x02, 0x01, 0x03, 0x30]),
            Some(KeystoreKind::Pkcs12),
            "BER indefinite length"
        );
        assert_eq!(sniff(&[0xFE, 0xED]), None);
        assert_eq!(sniff(&[]), None);
        assert_eq!(decode(b"hello", None), Err(KeystoreError::NotAKeystore));
        assert_eq!(decode(&[0xCE; 8], None), Err(KeystoreError::Jceks));
    }
}

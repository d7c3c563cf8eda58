//! OpenSSL's subject-name hash (`openssl x509 -subject_hash`, the `<hash>` in `<hash>.0`).
//!
//! OpenSSL (`x509_name_canon` and `asn1_string_canon` in `crypto/x509/x_name.c`) hashes a
//! canonical form of the name, not its DER:
//!
//! 1. each attribute value whose type is UTF8String, PrintableString, T61String, IA5String,
//!    VisibleString, UniversalString or BMPString is converted to UTF-8 (the one-byte types read as
//!    Latin-1), leading and trailing ASCII whitespace is removed, inner runs of whitespace become one
//!    space, ASCII letters are lower-cased (bytes >= 0x80 untouched), and the value is re-tagged as
//!    UTF8String; a BIT STRING is re-encoded as OpenSSL decodes it (unused bits cleared); values of
//!    any other type are kept as they are;
//! 2. each non-empty RDN is encoded as a DER `SET OF` its (canonical) attributes, sorted as DER
//!    requires (an empty RDN leaves nothing);
//! 3. the SETs are concatenated *without* the outer `SEQUENCE` header;
//! 4. SHA-1 of that, the first four bytes read little-endian.
//!
//! `crates/interop-tests/tests/openssl_hash.rs` checks this against `openssl x509 -subject_hash`
//! on generated names of every string type, multi-valued RDNs, e-mail and DC attributes. (OpenSSL
//! 3.0 refuses to decode a certificate whose name holds a VisibleString, OCTET STRING, INTEGER and
//! some other types; we still hash those names.)

use std::fmt;

use serde::{Serialize, Serializer};
use sha1::{Digest as _, Sha1};

use crate::der::{self, Tlv, tag};

/// The 32-bit OpenSSL subject-name hash; `Display` gives the eight lower-case hex digits OpenSSL
/// uses in `<hash>.<n>` file names.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectHash(u32);

impl SubjectHash {
    /// The hash as a number.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SubjectHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for SubjectHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectHash({self})")
    }
}

impl Serialize for SubjectHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Computes the OpenSSL hash of a DER-encoded X.501 `Name` (the full `SEQUENCE`).
///
/// Fails where OpenSSL fails: a malformed name or a string value that cannot be converted to UTF-8.
pub fn subject_hash_of_name(name_der: &[u8]) -> Result<SubjectHash, String> {
    let canon = canonical_name(name_der)?;
    let digest = Sha1::digest(&canon);
    Ok(SubjectHash(u32::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ])))
}

/// The canonical encoding OpenSSL hashes: the RDN SETs concatenated, without the outer SEQUENCE.
fn canonical_name(name_der: &[u8]) -> Result<Vec<u8>, String> {
    let (name, rest) = der::read(name_der).map_err(|e| e.to_string())?;
    if name.tag != tag::SEQUENCE || !rest.is_empty() {
        return Err("a Name must be one DER SEQUENCE".into());
    }
    let mut out = Vec::with_capacity(name.content.len());
    for rdn in der::children(name.content).map_err(|e| e.to_string())? {
        if rdn.tag != tag::SET {
            return Err("each RDN of a Name must be a SET".into());
        }
        let mut entries = der::children(rdn.content)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(canonical_entry)
            .collect::<Result<Vec<_>, _>>()?;
        // OpenSSL keeps a name as a list of entries numbered by RDN, so an empty RDN (invalid in
        // X.501, accepted by OpenSSL) leaves no SET in the canonical encoding.
        if entries.is_empty() {
            continue;
        }
        // DER orders the members of a SET OF by their encodings (OpenSSL's `der_cmp`: bytes first,
        // then the shorter one first).
        entries.sort();
        let body: Vec<u8> = entries.concat();
        der::write(tag::SET, &body, &mut out);
    }
    Ok(out)
}

/// One `AttributeTypeAndValue`, canonicalised and re-encoded.
fn canonical_entry(atv: Tlv<'_>) -> Result<Vec<u8>, String> {
    if atv.tag != tag::SEQUENCE {
        return Err("an attribute of a Name must be a SEQUENCE".into());
    }
    let parts = der::children(atv.content).map_err(|e| e.to_string())?;
    let [oid, value] = parts.as_slice() else {
        return Err("an attribute must hold exactly a type and a value".into());
    };
    if oid.tag != tag::OID {
        return Err("an attribute type must be an OBJECT IDENTIFIER".into());
    }
    let mut body = oid.raw.to_vec();
    match to_utf8(value)? {
        Some(text) => der::write(tag::UTF8_STRING, &canonical_text(&text), &mut body),
        None if value.tag == BIT_STRING => {
            der::write(BIT_STRING, &canonical_bits(value.content)?, &mut body);
        }
        None => body.extend_from_slice(value.raw),
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    der::write(tag::SEQUENCE, &body, &mut out);
    Ok(out)
}

const BIT_STRING: u8 = 0x03;

/// A BIT STRING as OpenSSL re-encodes it after decoding (`c2i`/`i2c_ASN1_BIT_STRING`): the unused
/// bits of the last byte cleared, and an unused-bit count of 0 when there are no bytes.
fn canonical_bits(content: &[u8]) -> Result<Vec<u8>, String> {
    match content {
        [] => Err("BIT STRING without its unused-bits octet".into()),
        [unused, ..] if *unused > 7 => Err("BIT STRING with more than 7 unused bits".into()),
        [_] => Ok(vec![0]),
        [unused, ..] => {
            let mut out = content.to_vec();
            if let Some(last) = out.last_mut() {
                *last &= 0xff << unused;
            }
            Ok(out)
        }
    }
}

/// Converts a string value to UTF-8 as `ASN1_STRING_to_UTF8` does; `None` for types OpenSSL does
/// not canonicalise.
fn to_utf8(value: &Tlv<'_>) -> Result<Option<String>, String> {
    let bytes = value.content;
    let text = match value.tag {
        tag::UTF8_STRING => std::str::from_utf8(bytes)
            .map_err(|_| "UTF8String holds invalid UTF-8".to_string())?
            .to_owned(),
        // One byte per character, read as Latin-1 (OpenSSL does not check the character sets).
        tag::PRINTABLE_STRING | tag::T61_STRING | tag::IA5_STRING | tag::VISIBLE_STRING => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        tag::BMP_STRING => {
            if !bytes.len().is_multiple_of(2) {
                return Err("BMPString length is not a multiple of 2".into());
            }
            bytes
                .chunks_exact(2)
                .map(|c| char::from_u32(u32::from(u16::from_be_bytes([c[0], c[1]]))))
                .collect::<Option<String>>()
                .ok_or("BMPString holds a surrogate code unit")?
        }
        tag::UNIVERSAL_STRING => {
            if !bytes.len().is_multiple_of(4) {
                return Err("UniversalString length is not a multiple of 4".into());
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or("UniversalString holds an invalid code point")?
        }
        _ => return Ok(None),
    };
    Ok(Some(text))
}

/// OpenSSL's `asn1_string_canon` on UTF-8 bytes.
fn canonical_text(text: &str) -> Vec<u8> {
    // OpenSSL's ossl_isspace: space, \t, \n, \v, \f, \r; never a byte >= 0x80.
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |i| i + 1);
    let mut out = Vec::with_capacity(end - start);
    let mut in_space = false;
    for &b in &bytes[start..end] {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.push(b.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (attribute OID content, value tag, value content)
    type Attr<'a> = (&'a [u8], u8, &'a [u8]);

    fn name(rdns: &[&[Attr<'_>]]) -> Vec<u8> {
        let mut body = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, t, v) in *rdn {
                let mut atv = Vec::new();
                der::write(tag::OID, oid, &mut atv);
                der::write(*t, v, &mut atv);
                der::write(tag::SEQUENCE, &atv, &mut set);
            }
            der::write(tag::SET, &set, &mut body);
        }
        let mut out = Vec::new();
        der::write(tag::SEQUENCE, &body, &mut out);
        out
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];

    #[test]
    fn canonical_text_follows_openssl() {
        assert_eq!(canonical_text("  Hello \t  World \r\n"), b"hello world");
        assert_eq!(canonical_text("ÄBC"), "Äbc".as_bytes());
        assert_eq!(canonical_text("   "), b"");
    }

    #[test]
    fn case_spacing_and_string_type_do_not_change_the_hash() {
        let a = name(&[&[(CN, tag::PRINTABLE_STRING, b"Example  CA ")]]);
        let b = name(&[&[(CN, tag::UTF8_STRING, b"example ca")]]);
        let c = name(&[&[(
            CN,
            tag::BMP_STRING,
            &[
                0, b'E', 0, b'x', 0, b'a', 0, b'm', 0, b'p', 0, b'l', 0, b'e', 0, b' ', 0, b'c', 0,
                b'A',
            ],
        )]]);
        let ha = subject_hash_of_name(&a).unwrap();
        assert_eq!(ha, subject_hash_of_name(&b).unwrap());
        assert_eq!(ha, subject_hash_of_name(&c).unwrap());
        let d = name(&[&[(CN, tag::UTF8_STRING, b"example cb")]]);
        assert_ne!(ha, subject_hash_of_name(&d).unwrap());
    }

    #[test]
    fn multi_valued_rdn_order_does_not_matter() {
        let a = name(&[&[(CN, tag::UTF8_STRING, b"x"), (O, tag::UTF8_STRING, b"y")]]);
        let b = name(&[&[(O, tag::UTF8_STRING, b"y"), (CN, tag::UTF8_STRING, b"x")]]);
        assert_eq!(
            subject_hash_of_name(&a).unwrap(),
            subject_hash_of_name(&b).unwrap()
        );
        let split = name(&[
            &[(CN, tag::UTF8_STRING, b"x")],
            &[(O, tag::UTF8_STRING, b"y")],
        ]);
        assert_ne!(
            subject_hash_of_name(&a).unwrap(),
            subject_hash_of_name(&split).unwrap()
        );
    }

    #[test]
    fn invalid_strings_fail_like_openssl() {
        assert!(subject_hash_of_name(&name(&[&[(CN, tag::UTF8_STRING, &[0xff])]])).is_err());
        assert!(subject_hash_of_name(&name(&[&[(CN, tag::BMP_STRING, &[0])]])).is_err());
        assert!(subject_hash_of_name(&[0x31, 0x00]).is_err());
    }

    #[test]
    fn empty_rdns_leave_no_trace() {
        // `openssl x509 -subject_hash` gives eea339da for `SEQUENCE { SET {} }`, and the same hash
        // with and without an empty RDN between two others (tests/openssl_hash.rs).
        assert_eq!(
            subject_hash_of_name(&name(&[&[]])).unwrap().to_string(),
            "eea339da"
        );
        let with_empty = name(&[
            &[(CN, tag::UTF8_STRING, b"x")],
            &[],
            &[(O, tag::UTF8_STRING, b"y")],
        ]);
        let without = name(&[
            &[(CN, tag::UTF8_STRING, b"x")],
            &[(O, tag::UTF8_STRING, b"y")],
        ]);
        assert_eq!(
            subject_hash_of_name(&with_empty).unwrap(),
            subject_hash_of_name(&without).unwrap()
        );
    }

    #[test]
    fn bit_strings_are_re_encoded_like_openssl() {
        const UNIQUE_ID: &[u8] = &[0x55, 0x04, 0x2d];
        let hash = |bits: &[u8]| subject_hash_of_name(&name(&[&[(UNIQUE_ID, BIT_STRING, bits)]]));
        // Unused bits are cleared: OpenSSL hashes 4 set padding bits as if they were clear.
        assert_eq!(
            hash(&[4, 0xab, 0xcf]).unwrap(),
            hash(&[4, 0xab, 0xc0]).unwrap()
        );
        assert_ne!(
            hash(&[0, 0xab, 0xcf]).unwrap(),
            hash(&[0, 0xab, 0xc0]).unwrap()
        );
        // No data bytes: the unused-bit count is dropped.
        assert_eq!(hash(&[5]).unwrap(), hash(&[0]).unwrap());
        // What OpenSSL cannot decode.
        assert!(hash(&[]).is_err());
        assert!(hash(&[8, 0]).is_err());
    }

    #[test]
    fn empty_name_hashes_empty_input() {
        // SHA-1("") = da39a3ee...; OpenSSL reads the first four bytes little-endian.
        assert_eq!(
            subject_hash_of_name(&[0x30, 0x00]).unwrap().to_string(),
            "eea339da"
        );
    }
}

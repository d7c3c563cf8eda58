//! A structure-aware DER generator: certificate-shaped trees built from the fuzzer's bytes,
//! then (sometimes) one x509-parser-style mutation: flip the constructed bit, replace a tag,
//! nudge a length by ±1.

use arbitrary::{Result, Unstructured};

/// One TLV with a DER length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// A DER PKCS#7 certs-only SignedData bundle (what `.p7b` files hold) around `certs`.
pub fn pkcs7_certs_only(certs: &[&[u8]]) -> Vec<u8> {
    let signed = seq(&[
        tlv(0x02, &[1]),
        tlv(0x31, &[]),
        seq(&[tlv(0x06, OID_DATA)]),
        tlv(0xa0, &certs.concat()),
        tlv(0x31, &[]),
    ]);
    seq(&[tlv(0x06, OID_SIGNED_DATA), tlv(0xa0, &signed)])
}

const ALGORITHMS: &[&[u8]] = &[
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01], // rsaEncryption
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],             // ecPublicKey
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],       // ecdsa-with-SHA256
    &[0x2b, 0x65, 0x70],                                     // Ed25519
];
const CURVES: &[&[u8]] = &[
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], // prime256v1
    &[0x2b, 0x81, 0x04, 0x00, 0x22],                   // secp384r1
];
const ATTRIBUTES: &[&[u8]] = &[
    &[0x55, 0x04, 0x03],                                     // CN
    &[0x55, 0x04, 0x0a],                                     // O
    &[0x55, 0x04, 0x0b],                                     // OU
    &[0x55, 0x04, 0x06],                                     // C
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01], // emailAddress
];
const STRING_TAGS: &[u8] = &[0x0c, 0x13, 0x14, 0x16, 0x1e, 0x1c, 0x12, 0x1a, 0x04];
const EXTENSIONS: &[&[u8]] = &[
    &[0x55, 0x1d, 0x13], // basicConstraints
    &[0x55, 0x1d, 0x0f], // keyUsage
    &[0x55, 0x1d, 0x11], // subjectAltName
    &[0x55, 0x1d, 0x1e], // nameConstraints
    &[0x55, 0x1d, 0x25], // extKeyUsage
    &[0x55, 0x1d, 0x0e], // subjectKeyIdentifier
    &[0x55, 0x1d, 0x23], // authorityKeyIdentifier
];
/// Tags a generic node may take: universal, then the context tags GeneralName and
/// NameConstraints use.
const TAGS: &[u8] = &[
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x30, 0x31, 0x80, 0x81, 0x82,
    0x86, 0x87, 0x88, 0xa0, 0xa1, 0xa3, 0xa4,
];

fn pick<'a, T>(u: &mut Unstructured<'_>, from: &'a [T]) -> Result<&'a T> {
    u.choose(from)
}

fn small_bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    Ok(u.bytes(len)?.to_vec())
}

/// A generic node: a leaf with arbitrary content, or a constructed one with children.
fn node(u: &mut Unstructured<'_>, depth: u32) -> Result<Vec<u8>> {
    let tag = *pick(u, TAGS)?;
    if tag & 0x20 != 0 && depth < 6 {
        let n = u.int_in_range(0..=3)?;
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(node(u, depth + 1)?);
        }
        return Ok(tlv(tag, &children.concat()));
    }
    let content = match tag {
        0x01 => vec![*pick(u, &[0x00u8, 0xff, 0x01])?],
        0x06 => pick(u, EXTENSIONS)?.to_vec(),
        0x17 => b"250101000000Z".to_vec(),
        0x18 => b"20500101000000Z".to_vec(),
        _ => small_bytes(u, 48)?,
    };
    Ok(tlv(tag & !0x20, &content))
}

fn algorithm(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let oid = tlv(0x06, pick(u, ALGORITHMS)?);
    Ok(match u.int_in_range(0..=2)? {
        0 => seq(&[oid]),
        1 => seq(&[oid, tlv(0x05, &[])]),
        _ => seq(&[oid, tlv(0x06, pick(u, CURVES)?)]),
    })
}

fn name(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut rdns = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let mut atvs = Vec::new();
        for _ in 0..u.int_in_range(1..=2)? {
            let value = if u.ratio(1, 8)? {
                node(u, 4)?
            } else {
                tlv(*pick(u, STRING_TAGS)?, &small_bytes(u, 24)?)
            };
            atvs.push(seq(&[tlv(0x06, pick(u, ATTRIBUTES)?), value]));
        }
        rdns.push(tlv(0x31, &atvs.concat()));
    }
    Ok(seq(&rdns))
}

fn time(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => tlv(0x17, b"250101000000Z"),
        1 => tlv(0x18, b"20991231235959Z"),
        2 => tlv(0x17, &small_bytes(u, 16)?),
        _ => tlv(0x18, &small_bytes(u, 18)?),
    })
}

fn extension(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut parts = vec![tlv(0x06, pick(u, EXTENSIONS)?)];
    if u.ratio(1, 3)? {
        parts.push(tlv(0x01, &[0xff]));
    }
    let value = node(u, 1)?;
    parts.push(tlv(0x04, &value));
    Ok(seq(&parts))
}

/// A certificate-shaped DER value, sometimes mutated once.
pub(crate) fn certificate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut tbs = Vec::new();
    if u.ratio(3, 4)? {
        tbs.push(tlv(0xa0, &tlv(0x02, &[*pick(u, &[0u8, 1, 2, 3])?])));
    }
    tbs.push(tlv(0x02, &small_bytes(u, 21)?));
    tbs.push(algorithm(u)?);
    tbs.push(name(u)?);
    tbs.push(seq(&[time(u)?, time(u)?]));
    tbs.push(name(u)?);
    let mut key = vec![0];
    key.extend(small_bytes(u, 70)?);
    tbs.push(seq(&[algorithm(u)?, tlv(0x03, &key)]));
    if u.ratio(3, 4)? {
        let mut exts = Vec::new();
        for _ in 0..u.int_in_range(0..=5)? {
            exts.push(extension(u)?);
        }
        tbs.push(tlv(0xa3, &seq(&exts)));
    }
    let mut signature = vec![0];
    signature.extend(small_bytes(u, 64)?);
    let mut der = seq(&[seq(&tbs), algorithm(u)?, tlv(0x03, &signature)]);
    if !der.is_empty() && u.ratio(1, 3)? {
        let at = u.choose_index(der.len())?;
        match u.int_in_range(0..=2)? {
            0 => der[at] ^= 0x20,
            1 => der[at] = *pick(u, TAGS)?,
            _ => {
                der[at] = if u.arbitrary()? {
                    der[at].wrapping_add(1)
                } else {
                    der[at].wrapping_sub(1)
                }
            }
        }
    }
    Ok(der)
}

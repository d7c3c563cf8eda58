//! A minimal DER TLV reader.
//!
//! Written by hand on purpose: the subject hash needs the exact bytes of each attribute value and
//! its tag, and sniffing a DER file (certificate? PKCS#7? private key?) needs only the outer shape.
//! `x509-parser` and `der` both decode into typed values and hide the raw spans we need here.

/// One tag-length-value element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    /// The identifier octet (class, constructed bit and tag number below 31).
    pub(crate) tag: u8,
    /// The value octets.
    pub(crate) content: &'a [u8],
    /// The whole element: identifier, length and value.
    pub(crate) raw: &'a [u8],
}

/// DER universal tags this crate looks at.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    pub(crate) const T61_STRING: u8 = 0x14;
    pub(crate) const IA5_STRING: u8 = 0x16;
    pub(crate) const VISIBLE_STRING: u8 = 0x1a;
    pub(crate) const UNIVERSAL_STRING: u8 = 0x1c;
    pub(crate) const BMP_STRING: u8 = 0x1e;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// Why a TLV could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlvError {
    Truncated,
    HighTagNumber,
    IndefiniteLength,
    LengthTooLarge,
}

impl std::fmt::Display for TlvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Truncated => "truncated DER element",
            Self::HighTagNumber => "DER tag numbers of 31 and above are not supported here",
            Self::IndefiniteLength => "indefinite length (BER) where DER is required",
            Self::LengthTooLarge => "DER length does not fit",
        })
    }
}

/// Reads one element from the front of `input`, returning it and the rest.
pub(crate) fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (&tag, rest) = input.split_first().ok_or(TlvError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(TlvError::HighTagNumber);
    }
    let (&first, mut rest) = rest.split_first().ok_or(TlvError::Truncated)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else if first == 0x80 {
        return Err(TlvError::IndefiniteLength);
    } else {
        let n = usize::from(first & 0x7f);
        if n > std::mem::size_of::<u32>() {
            return Err(TlvError::LengthTooLarge);
        }
        if rest.len() < n {
            return Err(TlvError::Truncated);
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(TlvError::Truncated);
    }
    let header_len = input.len() - rest.len();
    let (content, rest) = rest.split_at(len);
    Ok((
        Tlv {
            tag,
            content,
            raw: &input[..header_len + len],
        },
        rest,
    ))
}

/// Reads every element of a constructed value's content.
pub(crate) fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read(content)?;
        out.push(tlv);
        content = rest;
    }
    Ok(out)
}

/// Appends a DER element with a universal single-byte `tag` and the given content.
pub(crate) fn write(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let mut buf = Vec::new();
            write(tag::OCTET_STRING, &content, &mut buf);
            buf.push(0xff);
            let (tlv, rest) = read(&buf).unwrap();
            assert_eq!(tlv.tag, tag::OCTET_STRING);
            assert_eq!(tlv.content.len(), len);
            assert_eq!(tlv.raw.len(), buf.len() - 1);
            assert_eq!(rest, &[0xff]);
        }
    }

    #[test]
    fn rejects_truncation_and_ber() {
        assert_eq!(read(&[0x30, 0x05, 1, 2]).unwrap_err(), TlvError::Truncated);
        assert_eq!(
            read(&[0x30, 0x80, 0, 0]).unwrap_err(),
            TlvError::IndefiniteLength
        );
        assert_eq!(read(&[0x1f, 0x01, 0]).unwrap_err(), TlvError::HighTagNumber);
        assert_eq!(read(&[]).unwrap_err(), TlvError::Truncated);
    }
}

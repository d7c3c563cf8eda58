//! Turning a file's bytes into certificates: PEM, DER, PKCS#7, with every problem located.

use std::fmt;

use der::Decode as _;
use der::Encode as _;
use serde::Serialize;

use crate::certificate::Certificate;
use crate::der::{self as tlv, tag};
use crate::error::DecodeError;
use crate::pem::{self, BlockError};

/// Where in the input an item was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    /// 1-based line of the PEM `BEGIN` line; `None` for binary input.
    pub line: Option<usize>,
    /// 1-based index of the certificate inside a PKCS#7 bundle.
    pub index: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.index) {
            (Some(line), Some(index)) => write!(f, "line {line}, PKCS#7 certificate {index}"),
            (Some(line), None) => write!(f, "line {line}"),
            (None, Some(index)) => write!(f, "PKCS#7 certificate {index}"),
            (None, None) => Ok(()),
        }
    }
}

/// What kind of input was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// Text with PEM blocks.
    Pem,
    /// A single DER certificate.
    Der,
    /// A DER PKCS#7 / CMS SignedData bundle.
    Pkcs7,
    /// Nothing recognisable (see the problems).
    Unknown,
}

/// A certificate and where it was found.
#[derive(Clone, Debug)]
pub struct Found {
    /// Where in the input.
    pub position: Position,
    /// The certificate.
    pub certificate: Certificate,
}

/// A problem and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the input.
    pub position: Position,
    /// What went wrong.
    pub error: DecodeError,
}

/// Everything found in one input: certificates that decoded and problems with the rest.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// What the input looked like.
    pub input: Input,
    /// Certificates, in input order.
    pub certificates: Vec<Found>,
    /// Items that could not be used, in input order.
    pub problems: Vec<Problem>,
}

impl Decoded {
    /// True when a private key was among the items: the whole source must be refused.
    pub fn has_private_key(&self) -> bool {
        self.problems.iter().any(|p| p.error.is_private_key())
    }
}

/// The most items, certificates and problems together, that one input yields (issue 18: a bound
/// on certificates per source). Past it, one [`DecodeError::TooManyItems`] problem is added and
/// the rest of the input is not read: a 256 MiB file of minimal certificates or of empty PEM
/// blocks would otherwise become millions of owned values (gigabytes). Real bundles hold a few
/// hundred certificates (Mozilla's ~150; large corporate bundles a few thousand).
pub const MAX_ITEMS_PER_INPUT: usize = 100_000;

/// Decodes every certificate in `input`, which may be PEM text (any number of blocks, comments,
/// CRLF), one DER certificate, or a DER PKCS#7 certs-only bundle.
///
/// Never fails as a whole: bad items become [`Problem`]s and the rest is still returned, up to
/// [`MAX_ITEMS_PER_INPUT`] items.
pub fn decode(input: &[u8]) -> Decoded {
    decode_with_limit(input, MAX_ITEMS_PER_INPUT)
}

/// [`decode`] with another item limit (tests use small ones). An input past the limit is
/// refused whole: its one problem is [`DecodeError::TooManyItems`], no certificate is kept.
fn decode_with_limit(input: &[u8], max_items: usize) -> Decoded {
    let mut out = decode_items(input, max_items);
    if let Some(position) = out
        .problems
        .iter()
        .find(|p| matches!(p.error, DecodeError::TooManyItems { .. }))
        .map(|p| p.position)
    {
        out.certificates = Vec::new();
        out.problems = vec![Problem {
            position,
            error: DecodeError::TooManyItems { limit: max_items },
        }];
    }
    out
}

fn decode_items(input: &[u8], max_items: usize) -> Decoded {
    let mut out = Decoded {
        input: Input::Unknown,
        certificates: Vec::new(),
        problems: Vec::new(),
    };
    if input.iter().all(u8::is_ascii_whitespace) {
        out.problems.push(Problem {
            position: Position::default(),
            error: DecodeError::Empty,
        });
        return out;
    }
    if pem::looks_like_pem(input) {
        out.input = Input::Pem;
        for block in pem::scan(input) {
            if out.is_full(max_items, Some(block.line)) {
                break;
            }
            decode_block(block, max_items, &mut out);
        }
        return out;
    }
    if input.first() == Some(&tag::SEQUENCE) {
        decode_der(input, None, max_items, &mut out);
        return out;
    }
    out.problems.push(Problem {
        position: Position::default(),
        error: DecodeError::NotRecognized,
    });
    out
}

impl Decoded {
    /// True when `max_items` certificates and problems have been found; the first time, adds
    /// the [`DecodeError::TooManyItems`] problem (at `line`) that refuses the input.
    fn is_full(&mut self, max_items: usize, line: Option<usize>) -> bool {
        let items = self.certificates.len() + self.problems.len();
        if items < max_items {
            return false;
        }
        let already = self
            .problems
            .last()
            .is_some_and(|p| matches!(p.error, DecodeError::TooManyItems { .. }));
        if !already {
            self.problems.push(Problem {
                position: Position { line, index: None },
                error: DecodeError::TooManyItems { limit: max_items },
            });
        }
        true
    }
}

fn decode_block(block: pem::Block, max_items: usize, out: &mut Decoded) {
    let position = Position {
        line: Some(block.line),
        index: None,
    };
    let label = block.label.as_str();
    // Refuse keys before looking at the body: even a truncated key block is a key.
    if pem::is_private_key_label(label)
        || matches!(
            block.body,
            Err(BlockError::MalformedBegin { private_key: true })
        )
    {
        // A fixed description, never input text: a label is checked, but stay safe.
        let kind = match label {
            "PRIVATE KEY"
            | "RSA PRIVATE KEY"
            | "EC PRIVATE KEY"
            | "DSA PRIVATE KEY"
            | "ENCRYPTED PRIVATE KEY"
            | "OPENSSH PRIVATE KEY" => label,
            "" => "PEM private key on a malformed line",
            _ => "PEM private key",
        };
        let error = DecodeError::PrivateKey { kind: kind.into() };
        out.problems.push(Problem { position, error });
        return;
    }
    let body = match block.body {
        Ok(body) => body,
        Err(BlockError::Truncated) => {
            let error = DecodeError::TruncatedPem {
                label: label.to_owned(),
            };
            out.problems.push(Problem { position, error });
            return;
        }
        Err(BlockError::MalformedBegin { .. }) => {
            let error = DecodeError::MalformedPem;
            out.problems.push(Problem { position, error });
            return;
        }
        Err(BlockError::Base64 { line, reason }) => {
            let error = DecodeError::Base64 {
                label: label.to_owned(),
                line,
                reason,
            };
            out.problems.push(Problem { position, error });
            return;
        }
    };
    match label {
        "CERTIFICATE" | "X509 CERTIFICATE" => push(Certificate::from_der(&body), position, out),
        // OpenSSL's trusted form: the certificate followed by X509_CERT_AUX (trust settings,
        // alias). The certificate is the first DER element; the auxiliary data is not carried over.
        "TRUSTED CERTIFICATE" => match tlv::read(&body) {
            Ok((cert, _aux)) => push(Certificate::from_der(cert.raw), position, out),
            Err(e) => push(
                Err(DecodeError::Der {
                    reason: e.to_string(),
                }),
                position,
                out,
            ),
        },
        "PKCS7" | "CMS" | "PKCS #7 SIGNED DATA" => {
            decode_pkcs7(&body, Some(block.line), max_items, out);
        }
        other => {
            let hint = match other {
                "X509 CRL" => "a certificate revocation list",
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                    "a certificate signing request"
                }
                "PUBLIC KEY" | "RSA PUBLIC KEY" => "a bare public key",
                "DH PARAMETERS" | "EC PARAMETERS" => "key parameters",
                _ => "an unknown PEM type",
            };
            let error = DecodeError::UnexpectedBlock {
                label: other.to_owned(),
                hint,
            };
            out.problems.push(Problem { position, error });
        }
    }
}

fn push(result: Result<Certificate, DecodeError>, position: Position, out: &mut Decoded) {
    match result {
        Ok(certificate) => out.certificates.push(Found {
            position,
            certificate,
        }),
        Err(error) => out.problems.push(Problem { position, error }),
    }
}

/// Binary input: a certificate, a PKCS#7 bundle, or (refused) a private key.
fn decode_der(input: &[u8], line: Option<usize>, max_items: usize, out: &mut Decoded) {
    let position = Position { line, index: None };
    if let Some(kind) = private_key_kind(input) {
        out.problems.push(Problem {
            position,
            error: DecodeError::PrivateKey { kind: kind.into() },
        });
        return;
    }
    if is_pkcs7(input) {
        out.input = Input::Pkcs7;
        decode_pkcs7(input, line, max_items, out);
        return;
    }
    out.input = Input::Der;
    push(Certificate::from_der(input), position, out);
}

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ... }
fn is_pkcs7(input: &[u8]) -> bool {
    let Ok((outer, _)) = tlv::read(input) else {
        return false;
    };
    let Ok((oid, _)) = tlv::read(outer.content) else {
        return false;
    };
    oid.tag == tag::OID && oid.content == OID_SIGNED_DATA
}

fn decode_pkcs7(input: &[u8], line: Option<usize>, max_items: usize, out: &mut Decoded) {
    let position = Position { line, index: None };
    let fail = |reason: String, out: &mut Decoded| {
        out.problems.push(Problem {
            position,
            error: DecodeError::Pkcs7 { reason },
        });
    };
    let info = match cms::content_info::ContentInfo::from_der(input) {
        Ok(info) => info,
        Err(e) => {
            return fail(
                format!(
                    "{e} (BER-encoded bundles must be converted to DER, e.g. `openssl pkcs7 -inform DER -outform DER`)"
                ),
                out,
            );
        }
    };
    if info.content_type.as_bytes() != OID_SIGNED_DATA {
        return fail(
            format!("content type {} is not signedData", info.content_type),
            out,
        );
    }
    let signed: cms::signed_data::SignedData = match info.content.decode_as() {
        Ok(s) => s,
        Err(e) => return fail(e.to_string(), out),
    };
    let Some(certs) = signed.certificates else {
        return fail("the bundle holds no certificates".into(), out);
    };
    let mut index = 0;
    for choice in certs.0.iter() {
        if out.is_full(max_items, line) {
            return;
        }
        index += 1;
        let position = Position {
            line,
            index: Some(index),
        };
        match choice {
            cms::cert::CertificateChoices::Certificate(cert) => match cert.to_der() {
                Ok(der) => push(Certificate::from_der(&der), position, out),
                Err(e) => push(
                    Err(DecodeError::Der {
                        reason: e.to_string(),
                    }),
                    position,
                    out,
                ),
            },
            cms::cert::CertificateChoices::Other(_) => {
                let reason = "an `other` certificate format, not X.509".to_owned();
                out.problems.push(Problem {
                    position,
                    error: DecodeError::Pkcs7 { reason },
                });
            }
        }
    }
    if index == 0 {
        fail("the bundle holds no certificates".into(), out);
    }
}

/// Recognises the shapes of DER private keys without decoding them: PKCS#8 (plain and
/// encrypted), PKCS#1 RSA, SEC 1 EC. Returns a label for the error message.
fn private_key_kind(input: &[u8]) -> Option<&'static str> {
    let (outer, _) = tlv::read(input).ok()?;
    if outer.tag != tag::SEQUENCE {
        return None;
    }
    let items = tlv::children(outer.content).ok()?;
    let tags: Vec<u8> = items.iter().map(|t| t.tag).collect();
    let version = items
        .first()
        .filter(|t| t.tag == tag::INTEGER)
        .map(|t| t.content);
    match (version, tags.as_slice()) {
        // PrivateKeyInfo / OneAsymmetricKey: version, AlgorithmIdentifier, OCTET STRING, ...
        (Some([0] | [1]), [tag::INTEGER, tag::SEQUENCE, tag::OCTET_STRING, ..]) => Some("PKCS#8"),
        // ECPrivateKey: version 1, OCTET STRING, [0] params, [1] public key
        (Some([1]), [tag::INTEGER, tag::OCTET_STRING, ..]) => Some("SEC 1 EC private key"),
        // RSAPrivateKey: version 0 and eight INTEGERs
        (Some([0]), t) if t.len() >= 9 && t.iter().all(|&x| x == tag::INTEGER) => {
            Some("PKCS#1 RSA private key")
        }
        // EncryptedPrivateKeyInfo: AlgorithmIdentifier, OCTET STRING
        (None, [tag::SEQUENCE, tag::OCTET_STRING]) => {
            let alg = tlv::children(items[0].content).ok()?;
            let oid = alg.first()?;
            // pkcs5PBES2 (1.2.840.113549.1.5.13) or the PKCS#12 PBE family (1.2.840.113549.1.12.1.*).
            let pbes2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
            let pkcs12: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01];
            (oid.tag == tag::OID && (oid.content == pbes2 || oid.content.starts_with(pkcs12)))
                .then_some("encrypted PKCS#8")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_and_key_pem() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["decode.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// `depth` SEQUENCEs nested in each other, minimal DER lengths (built outside in, in one
    /// pass: no quadratic copying).
    fn nested_sequences(depth: usize) -> Vec<u8> {
        let mut headers = Vec::with_capacity(depth);
        let mut inner = 0usize;
        for _ in 0..depth {
            let mut header = vec![tag::SEQUENCE];
            if inner < 0x80 {
                header.push(inner as u8);
            } else {
                let bytes = inner.to_be_bytes();
                let skip = bytes.iter().take_while(|&&b| b == 0).count();
                header.push(0x80 | (bytes.len() - skip) as u8);
                header.extend_from_slice(&bytes[skip..]);
            }
            inner += header.len();
            headers.push(header);
        }
        headers.into_iter().rev().flatten().collect()
    }

    /// DER nesting depth (issue 18): a 200,000-deep SEQUENCE as a DER file, as a PEM
    /// certificate, as a `TRUSTED CERTIFICATE` and inside a PKCS#7 SignedData is one problem
    /// each, never a stack overflow (which would abort this test binary). Our DER walker reads
    /// one level at a time; x509-parser stops at der-parser's `MAX_RECURSION` (50); `cms`/`der`
    /// decode fixed schemas.
    #[test]
    fn deeply_nested_der_is_a_problem_not_a_stack_overflow() {
        use base64::Engine as _;
        let deep = nested_sequences(200_000);
        assert!(deep.len() > 600_000, "{}", deep.len());
        let der = decode(&deep);
        assert!(der.certificates.is_empty());
        assert_eq!(der.problems.len(), 1, "{:?}", der.problems);

        let b64 = base64::engine::general_purpose::STANDARD.encode(&deep);
        for label in ["CERTIFICATE", "TRUSTED CERTIFICATE", "PKCS7"] {
            let pem = format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n");
            let d = decode(pem.as_bytes());
            assert!(d.certificates.is_empty(), "{label}");
            assert_eq!(d.problems.len(), 1, "{label}: {:?}", d.problems);
        }

        // ContentInfo { signedData, [0] { deep } }: the SignedData itself is the deep tree.
        let mut wrapped = Vec::new();
        tlv::write(tag::OID, OID_SIGNED_DATA, &mut wrapped);
        let mut explicit = Vec::new();
        tlv::write(tag::SEQUENCE, &deep, &mut explicit);
        explicit[0] = 0xa0;
        wrapped.extend_from_slice(&explicit);
        let mut info = Vec::new();
        tlv::write(tag::SEQUENCE, &wrapped, &mut info);
        let p7 = decode(&info);
        assert!(p7.certificates.is_empty());
        assert_eq!(p7.problems.len(), 1, "{:?}", p7.problems);
    }

    /// Certificates per source (issue 18): past `max_items` the input is refused whole, with
    /// one problem naming the limit; at the limit, everything is kept (control).
    #[test]
    fn an_input_past_the_item_limit_is_refused_whole() {
        let (cert, _) = cert_and_key_pem();
        let five = cert.repeat(5);
        let at = decode_with_limit(five.as_bytes(), 5);
        assert_eq!((at.certificates.len(), at.problems.len()), (5, 0));
        let past = decode_with_limit(five.as_bytes(), 4);
        assert!(past.certificates.is_empty());
        let [problem] = past.problems.as_slice() else {
            panic!("{:?}", past.problems)
        };
        assert_eq!(problem.error, DecodeError::TooManyItems { limit: 4 });
        assert_eq!(problem.position.line, Some(1 + 4 * cert.lines().count()));
        let text = problem.error.to_string();
        assert!(text.contains("more than 4 ") && text.contains("MAX_ITEMS_PER_INPUT"));

        // Problems count too: bad blocks after good certificates; and a key past the limit
        // is never reached (the input is refused anyway).
        let mixed = format!("{cert}{cert}-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n");
        assert_eq!(decode_with_limit(mixed.as_bytes(), 3).problems.len(), 1);
        let refused = decode_with_limit(mixed.as_bytes(), 2);
        assert!(refused.certificates.is_empty());
        assert!(matches!(
            refused.problems.as_slice(),
            [Problem {
                error: DecodeError::TooManyItems { limit: 2 },
                ..
            }]
        ));
    }

    /// The real limit: 100,000 empty CRL blocks are 100,000 problems; one more refuses the
    /// input with one problem (3.4 MB of input that would otherwise become 100,001 values).
    #[test]
    fn the_default_item_limit_is_max_items_per_input() {
        let block = "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n";
        let at = block.repeat(MAX_ITEMS_PER_INPUT);
        assert_eq!(decode(at.as_bytes()).problems.len(), MAX_ITEMS_PER_INPUT);
        let past = format!("{at}{block}");
        let d = decode(past.as_bytes());
        assert_eq!(d.problems.len(), 1);
        assert_eq!(
            d.problems[0].error,
            DecodeError::TooManyItems {
                limit: MAX_ITEMS_PER_INPUT
            }
        );
    }

    #[test]
    fn a_key_folded_onto_one_line_is_refused_and_never_echoed() {
        let (cert, key) = cert_and_key_pem();
        let one_line = key.lines().collect::<Vec<_>>().join(" ");
        let input = format!("{cert}{one_line}\n");
        let decoded = decode(input.as_bytes());
        assert_eq!(decoded.certificates.len(), 1);
        let problem = decoded.problems.first().expect("the key is reported");
        assert!(problem.error.is_private_key(), "{:?}", problem.error);
        let shown = format!("{} {:?}", problem.error, problem.error);
        let secret = key.lines().nth(1).unwrap();
        assert!(!shown.contains(&secret[..20]), "key material in: {shown}");
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_certificate() {
        let (cert, _) = cert_and_key_pem();
        let decoded = decode(format!("\u{feff}{cert}").as_bytes());
        assert_eq!(decoded.certificates.len(), 1, "{:?}", decoded.problems);
        assert!(decoded.problems.is_empty());
    }

    #[test]
    fn a_begin_line_that_cannot_be_read_is_reported_not_skipped() {
        let (cert, _) = cert_and_key_pem();
        let glued = format!("# bundle\nsubject=x {cert}");
        let decoded = decode(glued.as_bytes());
        let errors: Vec<_> = decoded.problems.iter().map(|p| &p.error).collect();
        assert!(errors.contains(&&DecodeError::MalformedPem), "{errors:?}");
        assert_eq!(decoded.problems[0].position.line, Some(2));
    }
}

//! A private test PKI built with rcgen.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A certificate with its key, ready to sign others.
pub struct Issued {
    /// The certificate's PEM.
    pub pem: String,
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// The private key's PEM (PKCS#8).
    pub key_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Issued {
    /// An rcgen issuer for signing with this certificate.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Writes the certificate PEM to `dir/name` and returns the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        #[allow(clippy::disallowed_methods)] // test fixture, not an output
        std::fs::write(&path, &self.pem).expect("write test certificate");
        path
    }
}

fn ca_params(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Anchorage Test");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn finish(
    params: CertificateParams,
    key: KeyPair,
    issuer: Option<&Issuer<'_, &KeyPair>>,
) -> Issued {
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer),
        None => params.self_signed(&key),
    }
    .expect("sign test certificate");
    Issued {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        params,
        key,
    }
}

/// A self-signed root CA, valid from an hour ago for ten years, P-256.
pub fn root_ca(cn: &str) -> Issued {
    let now = OffsetDateTime::now_utc();
    let params = ca_params(cn, now - Duration::hours(1), now + Duration::days(3650));
    finish(params, KeyPair::generate().expect("generate key"), None)
}

/// A self-signed root CA whose validity ended a day ago.
pub fn expired_root_ca(cn: &str) -> Issued {
    let now = OffsetDateTime::now_utc();
    let params = ca_params(cn, now - Duration::days(400), now - Duration::days(1));
    finish(params, KeyPair::generate().expect("generate key"), None)
}

/// A CA certificate from explicit params (for awkward names): self-signed with a fresh P-256 key.
pub fn root_ca_with_name(dn: DistinguishedName) -> Issued {
    let now = OffsetDateTime::now_utc();
    let mut params = ca_params(
        "unused",
        now - Duration::hours(1),
        now + Duration::days(3650),
    );
    params.distinguished_name = dn;
    finish(params, KeyPair::generate().expect("generate key"), None)
}

/// An intermediate CA signed by `parent`.
pub fn intermediate_ca(cn: &str, parent: &Issued) -> Issued {
    let now = OffsetDateTime::now_utc();
    let mut params = ca_params(cn, now - Duration::hours(1), now + Duration::days(1825));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    finish(
        params,
        KeyPair::generate().expect("generate key"),
        Some(&parent.issuer()),
    )
}

/// A server leaf for the given DNS names (and `127.0.0.1`), signed by `parent`.
pub fn server_leaf(dns_names: &[&str], parent: &Issued) -> Issued {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns_names.first().copied().unwrap_or("localhost"),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = dns_names
        .iter()
        .map(|n| SanType::DnsName((*n).try_into().expect("valid DNS name")))
        .chain([SanType::IpAddress("127.0.0.1".parse().expect("ip"))])
        .collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(90);
    finish(
        params,
        KeyPair::generate().expect("generate key"),
        Some(&parent.issuer()),
    )
}

/// root → intermediate → `localhost` server leaf.
pub struct Pki {
    /// Self-signed root.
    pub root: Issued,
    /// Intermediate signed by the root.
    pub intermediate: Issued,
    /// Server leaf for `localhost` and 127.0.0.1, signed by the intermediate.
    pub leaf: Issued,
}

/// Files a TLS server needs, written by [`Pki::write_server_files`].
pub struct ServerFiles {
    /// Leaf certificate PEM.
    pub cert: PathBuf,
    /// Leaf key PEM.
    pub key: PathBuf,
    /// Intermediate PEM (the chain the server sends after the leaf).
    pub chain: PathBuf,
    /// Root PEM (what a client must trust).
    pub root: PathBuf,
    /// Leaf then intermediate in one PEM, for servers that take their chain in one file
    /// (`docker-registry`, `nats-server`).
    pub fullchain: PathBuf,
}

impl Pki {
    /// A fresh PKI whose root is named `name Root CA`.
    pub fn new(name: &str) -> Self {
        let root = root_ca(&format!("{name} Root CA"));
        let intermediate = intermediate_ca(&format!("{name} Intermediate CA"), &root);
        let leaf = server_leaf(&["localhost"], &intermediate);
        Self {
            root,
            intermediate,
            leaf,
        }
    }

    /// Writes the server's files into `dir`.
    #[allow(clippy::disallowed_methods)] // test fixtures, not outputs
    pub fn write_server_files(&self, dir: &Path) -> ServerFiles {
        let files = ServerFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            chain: dir.join("chain.pem"),
            root: dir.join("root.pem"),
            fullchain: dir.join("fullchain.pem"),
        };
        std::fs::write(&files.cert, &self.leaf.pem).expect("write");
        std::fs::write(&files.key, &self.leaf.key_pem).expect("write");
        std::fs::write(&files.chain, &self.intermediate.pem).expect("write");
        std::fs::write(&files.root, &self.root.pem).expect("write");
        std::fs::write(
            &files.fullchain,
            format!("{}{}", self.leaf.pem, self.intermediate.pem),
        )
        .expect("write");
        files
    }
}

/// One attribute of a hand-built X.501 `Name`: what rcgen cannot express (multi-valued RDNs,
/// VisibleString, NumericString, SETs in non-DER order, invalid encodings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAttribute {
    /// The attribute type, dotted (`2.5.4.3` is commonName).
    pub oid: String,
    /// The value's identifier octet (`0x0c` UTF8String, `0x13` PrintableString, ...).
    pub tag: u8,
    /// The value's content octets, exactly as they go on the wire.
    pub value: Vec<u8>,
}

impl RawAttribute {
    /// An attribute of type `oid` holding `value` under `tag`.
    pub fn new(oid: &str, tag: u8, value: impl Into<Vec<u8>>) -> Self {
        Self {
            oid: oid.to_owned(),
            tag,
            value: value.into(),
        }
    }
}

/// ASN.1 tags and attribute types used to build awkward names.
pub mod asn1 {
    /// UTF8String.
    pub const UTF8_STRING: u8 = 0x0c;
    /// NumericString.
    pub const NUMERIC_STRING: u8 = 0x12;
    /// PrintableString.
    pub const PRINTABLE_STRING: u8 = 0x13;
    /// T61String (TeletexString).
    pub const T61_STRING: u8 = 0x14;
    /// IA5String.
    pub const IA5_STRING: u8 = 0x16;
    /// VisibleString (ISO646String).
    pub const VISIBLE_STRING: u8 = 0x1a;
    /// UniversalString (UTF-32BE).
    pub const UNIVERSAL_STRING: u8 = 0x1c;
    /// BMPString (UCS-2BE).
    pub const BMP_STRING: u8 = 0x1e;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// BIT STRING.
    pub const BIT_STRING: u8 = 0x03;
    /// SEQUENCE (constructed).
    pub const SEQUENCE: u8 = 0x30;

    /// commonName.
    pub const CN: &str = "2.5.4.3";
    /// countryName.
    pub const C: &str = "2.5.4.6";
    /// organizationName.
    pub const O: &str = "2.5.4.10";
    /// organizationalUnitName.
    pub const OU: &str = "2.5.4.11";
    /// serialNumber (a PrintableString in X.520).
    pub const SERIAL_NUMBER: &str = "2.5.4.5";
    /// x500UniqueIdentifier (a BIT STRING in X.520).
    pub const UNIQUE_IDENTIFIER: &str = "2.5.4.45";
    /// emailAddress (PKCS #9, an IA5String).
    pub const EMAIL: &str = "1.2.840.113549.1.9.1";
    /// domainComponent (RFC 4519, an IA5String).
    pub const DC: &str = "0.9.2342.19200300.100.1.25";
    /// An attribute type no one defines (a private enterprise arc).
    pub const UNKNOWN: &str = "1.3.6.1.4.1.99999.1";

    /// UTF-16BE code units, as a BMPString holds them (characters beyond the BMP become
    /// surrogate pairs, which BMPString does not allow: use that to build invalid values).
    pub fn bmp(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    /// UTF-32BE, as a UniversalString holds it.
    pub fn universal(s: &str) -> Vec<u8> {
        s.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect()
    }

    /// Latin-1 bytes, as T61String is read in practice; panics on characters beyond U+00FF.
    pub fn latin1(s: &str) -> Vec<u8> {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
            .collect()
    }
}

fn der_push(tag: u8, content: &[u8], out: &mut Vec<u8>) {
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

/// Splits one DER element off the front of `input`: (identifier, content, whole element, rest).
/// Panics on malformed input: for tests walking DER they built themselves.
pub fn der_split(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        l if l < 0x80 => (usize::from(l), 2),
        l => {
            let n = usize::from(l & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + n)
        }
    };
    (
        tag,
        &input[header..header + len],
        &input[..header + len],
        &input[header + len..],
    )
}

fn oid_content(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().expect("numeric OID arc"))
        .collect();
    let mut out = Vec::new();
    let mut push_arc = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        out.extend(tmp.iter().rev());
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    arcs[2..].iter().copied().for_each(push_arc);
    out
}

/// The DER of a `Name` with the given RDNs, each a SET of attributes written in the order given
/// (not sorted as DER would: OpenSSL must sort them itself when it canonicalises).
pub fn raw_name_der(rdns: &[Vec<RawAttribute>]) -> Vec<u8> {
    let mut body = Vec::new();
    for rdn in rdns {
        let mut set = Vec::new();
        for attr in rdn {
            let mut atv = Vec::new();
            der_push(0x06, &oid_content(&attr.oid), &mut atv);
            der_push(attr.tag, &attr.value, &mut atv);
            der_push(0x30, &atv, &mut set);
        }
        der_push(0x31, &set, &mut body);
    }
    let mut out = Vec::new();
    der_push(0x30, &body, &mut out);
    out
}

/// `cert_der` with its subject replaced by `name_der` (any bytes: even an invalid `Name`).
///
/// The signature no longer verifies; for tests of name handling (hashing, `openssl rehash`),
/// which never check it.
pub fn with_subject(cert_der: &[u8], name_der: &[u8]) -> Vec<u8> {
    let (_, cert, _, _) = der_split(cert_der);
    let (_, tbs, _, mut after_tbs) = der_split(cert);
    let mut tbs_fields = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() {
        let (_, _, raw, next) = der_split(rest);
        tbs_fields.push(raw);
        rest = next;
    }
    // version [0] is optional; the subject follows serial, signature, issuer and validity.
    let subject = if tbs_fields[0][0] == 0xa0 { 5 } else { 4 };
    let mut new_tbs = Vec::new();
    for (i, field) in tbs_fields.iter().enumerate() {
        new_tbs.extend_from_slice(if i == subject { name_der } else { field });
    }
    let mut body = Vec::new();
    der_push(0x30, &new_tbs, &mut body);
    while !after_tbs.is_empty() {
        let (_, _, raw, next) = der_split(after_tbs);
        body.extend_from_slice(raw);
        after_tbs = next;
    }
    let mut out = Vec::new();
    der_push(0x30, &body, &mut out);
    out
}

/// A CA certificate (fresh P-256 key, issuer `placeholder subject`) whose subject is `name_der`.
pub fn ca_der_with_subject(name_der: &[u8]) -> Vec<u8> {
    with_subject(&root_ca("placeholder subject").der, name_der)
}

/// A subject name chosen to stress the OpenSSL subject-name hash.
#[derive(Clone, Debug)]
pub struct AwkwardName {
    /// What is awkward about it, for failure messages.
    pub label: String,
    /// The `Name` DER.
    pub der: Vec<u8>,
}

/// Awkward subject names: every string type OpenSSL canonicalises (and some it does not), case and
/// whitespace variants, non-ASCII text, multi-valued RDNs in non-DER order, e-mail and DC
/// attributes, empty values and names, values that are not strings, and invalid encodings.
///
/// Some are names OpenSSL refuses to decode; the tests find out which.
pub fn awkward_names() -> Vec<AwkwardName> {
    use asn1::*;
    fn a(oid: &str, tag: u8, value: impl Into<Vec<u8>>) -> RawAttribute {
        RawAttribute::new(oid, tag, value)
    }
    let one = |label: &str, attr: RawAttribute| (label.to_owned(), vec![vec![attr]]);
    let mut cases: Vec<(String, Vec<Vec<RawAttribute>>)> = vec![
        // Every string type, with case and spaces to fold.
        one("utf8", a(CN, UTF8_STRING, "  Hello   World  ")),
        one("utf8 folded", a(CN, UTF8_STRING, "hello world")),
        one("printable", a(CN, PRINTABLE_STRING, "Hello World")),
        one("t61 ascii", a(CN, T61_STRING, "HELLO world")),
        one("t61 latin-1", a(CN, T61_STRING, latin1("ÇA ÉTÉ  ÜBER ÿ"))),
        one(
            "utf8 as t61 latin-1 folds",
            a(CN, UTF8_STRING, "Ça ÉtÉ Über ÿ"),
        ),
        one(
            "utf8 non-ascii lower-cased",
            a(CN, UTF8_STRING, "ça été über ÿ"),
        ),
        one("ia5", a(CN, IA5_STRING, "Hello\tWorld")),
        one("visible", a(CN, VISIBLE_STRING, "Hello World")),
        one(
            "universal ascii",
            a(CN, UNIVERSAL_STRING, universal("Hello  World")),
        ),
        one(
            "universal beyond bmp",
            a(CN, UNIVERSAL_STRING, universal("Clef 𝄞 Ǆ Ω")),
        ),
        one("bmp ascii", a(CN, BMP_STRING, bmp(" HELLO WORLD "))),
        one("bmp greek", a(CN, BMP_STRING, bmp("Ελληνικά ΑΒΓ Ωmega"))),
        one("utf8 greek", a(CN, UTF8_STRING, "ελληνικά ΑΒΓ ωMEGA")),
        one(
            "utf8 non-ascii upper",
            a(CN, UTF8_STRING, "ÄÖÜ ÀÉ Straße İ"),
        ),
        one("utf8 cjk", a(CN, UTF8_STRING, "証明書 認証局")),
        // Not canonicalised: NumericString keeps its spaces.
        one("numeric", a(SERIAL_NUMBER, NUMERIC_STRING, "  12  34 ")),
        one("numeric trimmed", a(SERIAL_NUMBER, NUMERIC_STRING, "12 34")),
        // Which characters are spaces.
        one("space", a(CN, UTF8_STRING, " x  y ")),
        one("tab", a(CN, UTF8_STRING, "\tx\t\ty\t")),
        one("newline", a(CN, UTF8_STRING, "\nx\n\ny\n")),
        one("vertical tab", a(CN, UTF8_STRING, "\x0bx\x0b\x0by\x0b")),
        one("form feed", a(CN, UTF8_STRING, "\x0cx\x0c\x0cy\x0c")),
        one("carriage return", a(CN, UTF8_STRING, "\rx\r\ry\r")),
        one(
            "mixed spaces",
            a(CN, UTF8_STRING, " \t\r\n\x0b\x0cx \t\r\n\x0b\x0cy \t\r\n"),
        ),
        one("file separator 0x1c", a(CN, UTF8_STRING, "\x1cx\x1cy\x1c")),
        one("unit separator 0x1f", a(CN, UTF8_STRING, "\x1fx\x1fy\x1f")),
        one("nul", a(CN, UTF8_STRING, "\0x\0y\0")),
        one("del", a(CN, UTF8_STRING, "\x7fx\x7fy\x7f")),
        one(
            "nbsp utf8",
            a(CN, UTF8_STRING, "\u{a0}x\u{a0}\u{a0}y\u{a0}"),
        ),
        one(
            "nbsp t61",
            a(CN, T61_STRING, [0xa0, b'x', 0xa0, 0xa0, b'y', 0xa0]),
        ),
        one("nel utf8", a(CN, UTF8_STRING, "\u{85}x\u{85}y\u{85}")),
        one(
            "em space bmp",
            a(CN, BMP_STRING, bmp("\u{2003}x\u{2003}\u{2003}y")),
        ),
        one(
            "ideographic space",
            a(CN, UTF8_STRING, "\u{3000}x\u{3000}y\u{3000}"),
        ),
        one("tab in bmp", a(CN, BMP_STRING, bmp("\tX \t Y\t"))),
        one(
            "spaces in universal",
            a(CN, UNIVERSAL_STRING, universal("\r\nX  Y\n")),
        ),
        // Punctuation and characters a PrintableString or IA5String must not hold: OpenSSL does
        // not check character sets.
        one("printable with @_*", a(CN, PRINTABLE_STRING, "A@B_C*D")),
        one(
            "printable with latin-1",
            a(CN, PRINTABLE_STRING, [b'A', 0xe9, b'B']),
        ),
        one("ia5 with latin-1", a(CN, IA5_STRING, [b'A', 0xc9, b'B'])),
        one(
            "visible with latin-1",
            a(CN, VISIBLE_STRING, [b'A', 0xc9, b'B']),
        ),
        // Empty values.
        one("empty utf8", a(CN, UTF8_STRING, "")),
        one("empty printable", a(CN, PRINTABLE_STRING, "")),
        one("only spaces", a(CN, UTF8_STRING, " \t ")),
        one("empty bmp", a(CN, BMP_STRING, Vec::new())),
        // Lengths in the long form before canonicalisation and the short form after.
        one(
            "long value collapsing below 128 bytes",
            a(
                CN,
                UTF8_STRING,
                format!("A{}B{}C", " ".repeat(100), "\t".repeat(60)),
            ),
        ),
        one(
            "long value",
            a(O, PRINTABLE_STRING, "Long Organisation Name ".repeat(20)),
        ),
        // E-mail and DC.
        one("email", a(EMAIL, IA5_STRING, "Admin@Example.COM")),
        one("email utf8", a(EMAIL, UTF8_STRING, "admin@example.com")),
        (
            "dc".into(),
            vec![
                vec![a(DC, IA5_STRING, "Example")],
                vec![a(DC, IA5_STRING, "COM")],
                vec![a(CN, UTF8_STRING, "Directory CA")],
            ],
        ),
        (
            "dc folded".into(),
            vec![
                vec![a(DC, UTF8_STRING, "example")],
                vec![a(DC, PRINTABLE_STRING, "com")],
                vec![a(CN, BMP_STRING, bmp("directory  ca"))],
            ],
        ),
        // Multi-valued RDNs, members in non-DER order; sorted after canonicalisation.
        (
            "multi-valued cn+o".into(),
            vec![
                vec![a(C, PRINTABLE_STRING, "DE")],
                vec![a(O, UTF8_STRING, "Org"), a(CN, UTF8_STRING, "Name")],
            ],
        ),
        (
            "multi-valued o+cn".into(),
            vec![
                vec![a(C, PRINTABLE_STRING, "DE")],
                vec![a(CN, UTF8_STRING, "Name"), a(O, UTF8_STRING, "Org")],
            ],
        ),
        (
            "multi-valued, order flips when lower-cased".into(),
            vec![vec![a(OU, UTF8_STRING, "B"), a(OU, UTF8_STRING, "a")]],
        ),
        (
            "multi-valued, order flips when re-tagged".into(),
            vec![vec![
                a(OU, PRINTABLE_STRING, "b"),
                a(OU, UTF8_STRING, "a"),
                a(OU, BMP_STRING, bmp("C")),
            ]],
        ),
        (
            "multi-valued, shorter sorts first".into(),
            vec![vec![a(OU, UTF8_STRING, "aa"), a(OU, UTF8_STRING, "b")]],
        ),
        (
            "multi-valued, space-folding makes equal lengths".into(),
            vec![vec![a(OU, UTF8_STRING, "b   "), a(OU, UTF8_STRING, "aa")]],
        ),
        (
            "multi-valued email+dc+uid".into(),
            vec![vec![
                a(EMAIL, IA5_STRING, "X@Y.Z"),
                a(DC, IA5_STRING, "Corp"),
                a("0.9.2342.19200300.100.1.1", UTF8_STRING, "UID1"),
            ]],
        ),
        (
            "multi-valued with a non-string member".into(),
            vec![vec![
                a(UNKNOWN, OCTET_STRING, [1, 2]),
                a(CN, UTF8_STRING, "Z"),
            ]],
        ),
        (
            "repeated single-valued".into(),
            vec![vec![a(OU, UTF8_STRING, "B")], vec![a(OU, UTF8_STRING, "a")]],
        ),
        // Values that are not strings pass unchanged (if OpenSSL decodes them at all).
        one("octet string", a(UNKNOWN, OCTET_STRING, *b"Raw  BYTES")),
        one(
            "bit string",
            a(UNIQUE_IDENTIFIER, BIT_STRING, [0, 0xAB, 0xCD]),
        ),
        one(
            "bit string with padding",
            a(UNIQUE_IDENTIFIER, BIT_STRING, [4, 0xAB, 0xC0]),
        ),
        one(
            "bit string with set padding bits",
            a(UNIQUE_IDENTIFIER, BIT_STRING, [4, 0xAB, 0xCF]),
        ),
        one(
            "bit string, no data, unused count 5",
            a(UNIQUE_IDENTIFIER, BIT_STRING, [5]),
        ),
        one("bit string, no data", a(UNIQUE_IDENTIFIER, BIT_STRING, [0])),
        one("bit string, empty", a(UNIQUE_IDENTIFIER, BIT_STRING, [])),
        one(
            "bit string, 9 unused bits",
            a(UNIQUE_IDENTIFIER, BIT_STRING, [9, 0xff]),
        ),
        one(
            "sequence value",
            a(UNKNOWN, SEQUENCE, [UTF8_STRING, 2, b'A', b'B']),
        ),
        one("integer value", a(UNKNOWN, 0x02, [1])),
        one("object descriptor (tag 7)", a(UNKNOWN, 0x07, *b"Desc  X")),
        one("videotex string", a(CN, 0x15, *b"Video X")),
        one("graphic string", a(CN, 0x19, *b"Graphic X")),
        one("general string", a(CN, 0x1b, *b"General X")),
        one("utc time value", a(UNKNOWN, 0x17, *b"250101000000Z")),
        one("context-specific tag", a(UNKNOWN, 0x80, *b"ctx")),
        // Invalid encodings.
        one("utf8 invalid", a(CN, UTF8_STRING, [b'A', 0xff, b'B'])),
        one("utf8 surrogate", a(CN, UTF8_STRING, [0xed, 0xa0, 0x80])),
        one("utf8 overlong", a(CN, UTF8_STRING, [0xc1, 0x81])),
        one("bmp odd length", a(CN, BMP_STRING, [0, b'A', 0])),
        one("bmp surrogate pair", a(CN, BMP_STRING, bmp("𝄞"))),
        one(
            "universal not multiple of 4",
            a(CN, UNIVERSAL_STRING, [0, 0, 0, b'A', 0]),
        ),
        one(
            "universal beyond U+10FFFF",
            a(CN, UNIVERSAL_STRING, [0, 0x11, 0, 0]),
        ),
        one(
            "universal surrogate",
            a(CN, UNIVERSAL_STRING, [0, 0, 0xd8, 0]),
        ),
        // Empty names and RDNs.
        ("empty name".into(), vec![]),
        ("empty rdn".into(), vec![vec![]]),
        (
            "empty rdn between two".into(),
            vec![
                vec![a(CN, UTF8_STRING, "x")],
                vec![],
                vec![a(O, UTF8_STRING, "y")],
            ],
        ),
        (
            "two rdns".into(),
            vec![vec![a(CN, UTF8_STRING, "x")], vec![a(O, UTF8_STRING, "y")]],
        ),
    ];
    cases.extend(
        [
            ("utf8", UTF8_STRING),
            ("printable", PRINTABLE_STRING),
            ("t61", T61_STRING),
            ("ia5", IA5_STRING),
            ("visible", VISIBLE_STRING),
        ]
        .into_iter()
        .map(|(name, tag)| {
            one(
                &format!("{name}: same text, other case and spaces"),
                a(CN, tag, "  Awkward   CA "),
            )
        }),
    );
    cases.push(one(
        "bmp: same text, other case and spaces",
        a(CN, BMP_STRING, bmp("AWKWARD CA")),
    ));
    cases.push(one(
        "universal: same text, other case and spaces",
        a(CN, UNIVERSAL_STRING, universal("awkward\tca")),
    ));
    cases
        .into_iter()
        .map(|(label, rdns)| AwkwardName {
            label,
            der: raw_name_der(&rdns),
        })
        .collect()
}

/// A self-signed root CA (P-256) valid from an hour ago until `days_left` days from now: for
/// "the root expires soon" checks.
pub fn root_ca_expiring_in(cn: &str, days_left: i64) -> Issued {
    let now = OffsetDateTime::now_utc();
    let params = ca_params(
        cn,
        now - Duration::hours(1),
        now + Duration::days(days_left),
    );
    finish(params, KeyPair::generate().expect("generate key"), None)
}

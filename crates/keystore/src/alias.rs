//! Aliases: the names keystore entries go by (see [`aliases`] for the rules).

use std::collections::BTreeMap;

use anchorage_x509::Certificate;
use der::{Decode as _, Tag, Tagged as _};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;
use x509_cert::name::Name;

/// The longest slug, in characters (all ASCII).
pub const MAX_SLUG: usize = 40;

/// Hex digits of the fingerprint in an alias when nothing collides.
const SHORT_HEX: usize = 8;

const CN: &str = "2.5.4.3";
const OU: &str = "2.5.4.11";
const O: &str = "2.5.4.10";

/// Unique, stable, lowercase aliases for `certs`, in order.
///
/// An alias is `<slug>-<hex>`: a slug of the subject's common name (else its organisational unit,
/// organisation or first text attribute; else `cert`), made of `[a-z0-9-]` and at most
/// [`MAX_SLUG`] characters, then `-` and the first 8 hex digits of the certificate's SHA-256
/// fingerprint. It is
///
/// - **unique**: when two certificates would get the same alias (same slug and same first 8 hex
///   digits), both get 4 more hex digits until they differ; a certificate given twice gets `-2`,
///   `-3`... after its alias. Since the hex part holds no `-`, an alias names its slug and
///   fingerprint prefix unambiguously, so no two certificates can end up with the same alias;
/// - **predictable and stable**: a function of the certificate alone (its neighbours matter only
///   in the one-in-four-billion case above), so adding a CA to a bundle renames nothing;
/// - **lowercase**: Java looks aliases up ignoring case and `keytool -list` shows them
///   lowercased; JKS even stores them so, while PKCS#12 keeps the `friendlyName` as written.
///   Lowercase aliases read the same everywhere;
/// - **not the subject DN**: distinct CAs share DNs (re-keyed roots, cross-signs), and a DN full
///   of commas and `=` is awkward to type in `keytool -alias`.
///
/// ```
/// use anchorage_keystore::aliases;
/// use anchorage_x509::Certificate;
///
/// let root = anchorage_test_support::pki::root_ca("Example Root CA");
/// let cert = Certificate::from_der(&root.der)?;
/// let alias = &aliases([&cert])[0];
/// assert!(alias.starts_with("example-root-ca-"));
/// assert_eq!(alias.len(), "example-root-ca-".len() + 8);
/// # Ok::<(), anchorage_x509::DecodeError>(())
/// ```
pub fn aliases<'a>(certs: impl IntoIterator<Item = &'a Certificate>) -> Vec<String> {
    let certs: Vec<&Certificate> = certs.into_iter().collect();
    let slugs: Vec<String> = certs.iter().map(|c| slug(&label(c))).collect();
    let hexes: Vec<String> = certs.iter().map(|c| c.sha256().hex()).collect();

    // Certificates whose short aliases would be equal, by that alias.
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (slug, hex)) in slugs.iter().zip(&hexes).enumerate() {
        groups
            .entry((slug.as_str(), &hex[..SHORT_HEX]))
            .or_default()
            .push(i);
    }

    let mut out = vec![String::new(); certs.len()];
    for members in groups.values() {
        // Grow the fingerprint prefix until the distinct fingerprints of the group differ.
        let len = prefix_len(members.iter().map(|&i| hexes[i].as_str()).collect());
        // The same certificate given more than once: number the repeats.
        let mut repeats: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in members {
            let seen = repeats.entry(hexes[i].as_str()).or_default();
            *seen += 1;
            out[i] = match *seen {
                1 => format!("{}-{}", slugs[i], &hexes[i][..len]),
                n => format!("{}-{}-{n}", slugs[i], &hexes[i][..len]),
            };
        }
    }
    out
}

/// The shortest prefix (8, 12, 16... hex digits) on which the distinct fingerprints differ.
fn prefix_len(mut hexes: Vec<&str>) -> usize {
    hexes.sort_unstable();
    hexes.dedup();
    let full = hexes.iter().map(|h| h.len()).min().unwrap_or(SHORT_HEX);
    let mut len = SHORT_HEX.min(full);
    while len < full && hexes.windows(2).any(|w| w[0][..len] == w[1][..len]) {
        len = (len + 4).min(full);
    }
    len
}

/// The text an alias is made from: the subject's last CN in DER order (the most specific), else
/// its OU, else O, else the first attribute holding text; empty when there is none.
fn label(cert: &Certificate) -> String {
    let Ok(name) = Name::from_der(cert.subject_der()) else {
        return String::new();
    };
    let mut attrs: Vec<(String, String)> = Vec::new();
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if let Some(text) = text_of(atv.value.tag(), atv.value.value()) {
                attrs.push((atv.oid.to_string(), text));
            }
        }
    }
    [CN, OU, O]
        .iter()
        .find_map(|oid| attrs.iter().rev().find(|(o, _)| o == oid))
        .or_else(|| attrs.first())
        .map(|(_, text)| text.clone())
        .unwrap_or_default()
}

/// The text of a directory-string value, leniently decoded; `None` for values that are not text.
/// (A name holding a UniversalString, which `der` 0.7 cannot decode, gives no label at all.)
fn text_of(tag: Tag, bytes: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        // T61 in practice holds Latin-1.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// `[a-z0-9-]`, no leading, trailing or doubled `-`, at most [`MAX_SLUG`] characters (cut at a
/// word boundary when there is one in the second half); `cert` when
/// nothing is left. Accents are stripped (`Ü` → `u`, `İ` → `i`) so Latin names stay readable.
fn slug(label: &str) -> String {
    let mut out = String::with_capacity(MAX_SLUG);
    let mut pending_dash = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    };
    for c in label.nfd().filter(|&c| !is_combining_mark(c)) {
        // Letters that do not decompose into an ASCII letter and a mark.
        let folded = match c {
            'ı' => "i",
            'ł' | 'Ł' => "l",
            'ø' | 'Ø' => "o",
            'đ' | 'Đ' | 'ð' | 'Ð' => "d",
            'ß' => "ss",
            'æ' | 'Æ' => "ae",
            'œ' | 'Œ' => "oe",
            'þ' | 'Þ' => "th",
            _ => {
                push(c, &mut out);
                continue;
            }
        };
        folded.chars().for_each(|f| push(f, &mut out));
    }
    if out.len() > MAX_SLUG {
        // Cut at a word boundary when one is not too far back.
        let cut = out[..=MAX_SLUG]
            .rfind('-')
            .filter(|&i| i >= MAX_SLUG / 2)
            .unwrap_or(MAX_SLUG);
        out.truncate(cut);
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("cert");
    }
    out
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki::{self, RawAttribute, asn1};

    use super::*;

    fn cert_with_name(rdns: &[Vec<RawAttribute>]) -> Certificate {
        Certificate::from_der(&pki::ca_der_with_subject(&pki::raw_name_der(rdns))).unwrap()
    }

    #[test]
    fn slugs_are_lowercase_ascii_and_bounded() {
        assert_eq!(slug("Example Root CA"), "example-root-ca");
        assert_eq!(slug("  --Weird__  Name!! "), "weird-name");
        assert_eq!(
            slug("TÜBİTAK Kamu SM SSL Kök Sertifikası - Sürüm 1"),
            "tubitak-kamu-sm-ssl-kok-sertifikasi"
        );
        assert_eq!(
            slug("Autoridad de Certificacion Firmaprofesional CIF A62634068"),
            "autoridad-de-certificacion"
        );
        assert_eq!(slug(&"x".repeat(50)), "x".repeat(MAX_SLUG));
        assert_eq!(slug("Főtanúsítvány Łódź Øre"), "fotanusitvany-lodz-ore");
        assert_eq!(slug("中国 CA"), "ca");
        assert_eq!(slug("中国"), "cert");
        assert_eq!(slug(""), "cert");
        let long = slug(&"a ".repeat(100));
        assert!(long.len() <= MAX_SLUG && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn the_label_prefers_cn_then_ou_then_o() {
        use asn1::*;
        let a = |oid: &str, text: &str| vec![RawAttribute::new(oid, UTF8_STRING, text)];
        let with_cn = cert_with_name(&[a(O, "Org"), a(CN, "First"), a(CN, "Last Name")]);
        assert_eq!(label(&with_cn), "Last Name");
        let with_ou = cert_with_name(&[a(C, "US"), a(O, "Org"), a(OU, "Unit")]);
        assert_eq!(label(&with_ou), "Unit");
        let only_c = cert_with_name(&[a(C, "US")]);
        assert_eq!(label(&only_c), "US");
        let bmp = cert_with_name(&[vec![RawAttribute::new(CN, BMP_STRING, bmp("Bmp Ça"))]]);
        assert_eq!(label(&bmp), "Bmp Ça");
        let empty = cert_with_name(&[]);
        assert_eq!(aliases([&empty])[0].split('-').next(), Some("cert"));
    }

    #[test]
    fn identical_subjects_get_distinct_aliases() {
        let one = Certificate::from_der(&pki::root_ca("Same Name CA").der).unwrap();
        let two = Certificate::from_der(&pki::root_ca("Same Name CA").der).unwrap();
        assert_eq!(one.subject(), two.subject());
        let names = aliases([&one, &two]);
        assert_ne!(names[0], names[1]);
        assert_eq!(
            names[0],
            format!("same-name-ca-{}", &one.sha256().hex()[..8])
        );
        // Stable: each alias is the same alone as beside the other.
        assert_eq!(aliases([&two])[0], names[1]);
        // The same certificate twice: numbered.
        assert_eq!(
            aliases([&one, &one]),
            vec![names[0].clone(), format!("{}-2", names[0])]
        );
    }

    #[test]
    fn a_shared_fingerprint_prefix_extends_the_hex_part() {
        let a = "abcdef01234500aa".repeat(4);
        let b = "abcdef01234511aa".repeat(4);
        let c = "abcdef01ffff00aa".repeat(4);
        let d = "12345678ffff00aa".repeat(4);
        assert_eq!(prefix_len(vec![&d]), 8);
        assert_eq!(prefix_len(vec![&a, &c]), 12);
        assert_eq!(prefix_len(vec![&a, &b, &c]), 16);
        assert_eq!(
            prefix_len(vec![&a, &a]),
            8,
            "repeats are numbered, not extended"
        );
    }
}

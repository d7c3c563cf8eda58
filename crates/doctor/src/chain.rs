//! The chain as the server sent it, one [`ChainEntry`] per certificate, and how the certificates
//! link to each other.
//!
//! This module owns describing presented certificates (validity relative to a given `now`, key,
//! fingerprint, AIA URL) and finding the issuing path through them. It does not decide trust:
//! that is [`crate::diagnose`] with rustls.

use anchorage_x509::{Certificate, KeyKind, Sha256Fingerprint, Timestamp};
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// One presented certificate, described for a person and for JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    /// Position in the chain as sent (0 = the leaf).
    pub index: usize,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// Seconds from `now` to `not_after` (negative once expired).
    pub seconds_left: i64,
    /// `89 days left`, `expired 3 days ago`, `not valid for another 2 hours`.
    pub time_left: String,
    /// Subject alternative names (`DNS:localhost`, `IP:127.0.0.1`).
    pub subject_alt_names: Vec<String>,
    /// Key type and size, e.g. `EC P-256`, `RSA-2048`.
    pub key: String,
    /// Key size in bits, where it means something.
    pub key_bits: Option<u32>,
    /// Signature algorithm (by name, or OID).
    pub signature_algorithm: String,
    /// SHA-256 fingerprint (lower-case hex in JSON).
    pub sha256: Sha256Fingerprint,
    /// Basic constraints say `cA=TRUE`.
    pub is_ca: bool,
    /// Issuer equals subject (a root, or a self-signed leaf).
    pub self_issued: bool,
    /// Extended key usage purposes (`serverAuth`, …); empty when the extension is absent.
    pub extended_key_usage: Vec<String>,
    /// Authority information access caIssuers URLs: where the issuer can be downloaded.
    pub aia_ca_issuers: Vec<String>,
    /// A CA's name constraints (the names below it must lie in), when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<anchorage_x509::NameConstraints>,
    /// How this certificate relates to the next one sent, if there is a next one.
    pub next: Option<Link>,
}

/// Whether a certificate was issued by another (`child` → `parent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The child's issuer name equals the parent's subject name (byte for byte).
    pub name_matches: bool,
    /// The child's authority key id equals the parent's subject key id (`None`: one is absent).
    pub key_id_matches: Option<bool>,
    /// The child's signature verifies with the parent's key (`None`: unsupported algorithm, or
    /// an RSA key too short to check with).
    pub signature_verified: Option<bool>,
}

impl Link {
    /// Checks whether `parent` issued `child`.
    pub fn between(child: &Certificate, parent: &Certificate) -> Self {
        let name_matches = child.issuer_der() == parent.subject_der();
        let key_id_matches = match (child.authority_key_id(), parent.subject_key_id()) {
            (Some(aki), Some(ski)) => Some(aki == ski),
            _ => None,
        };
        let signature_verified = if name_matches {
            verify_signature(child, parent)
        } else {
            Some(false)
        };
        Self {
            name_matches,
            key_id_matches,
            signature_verified,
        }
    }

    /// Names match, key ids do not disagree, and the signature does not fail.
    pub fn links(&self) -> bool {
        self.name_matches
            && self.key_id_matches != Some(false)
            && self.signature_verified != Some(false)
    }
}

fn verify_signature(child: &Certificate, parent: &Certificate) -> Option<bool> {
    let weak_parent = weak_rsa(parent).is_some();
    let (_, child) = X509Certificate::from_der(child.der()).ok()?;
    let (_, parent) = X509Certificate::from_der(parent.der()).ok()?;
    match child.verify_signature(Some(parent.public_key())) {
        Ok(()) => Some(true),
        Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => None,
        // ring checks RSA signatures other than SHA-1 only with keys of 2048 bits or more: a
        // failure with a shorter key says nothing about the signature.
        Err(_) if weak_parent => None,
        Err(_) => Some(false),
    }
}

/// The caIssuers URLs of a certificate's authority information access extension.
pub(crate) fn aia_ca_issuers(cert: &Certificate) -> Vec<String> {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.der()) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in parsed.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for desc in &aia.accessdescs {
                if desc.access_method
                    == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                    && let GeneralName::URI(uri) = &desc.access_location
                {
                    urls.push((*uri).to_owned());
                }
            }
        }
    }
    urls
}

/// Describes each presented certificate relative to `now`.
pub(crate) fn describe(chain: &[Certificate], now: Timestamp) -> Vec<ChainEntry> {
    chain
        .iter()
        .enumerate()
        .map(|(index, cert)| {
            let seconds_left = cert.not_after().unix() - now.unix();
            ChainEntry {
                index,
                subject: cert.subject().to_owned(),
                issuer: cert.issuer().to_owned(),
                not_before: cert.not_before(),
                not_after: cert.not_after(),
                seconds_left,
                time_left: time_left(cert, now),
                subject_alt_names: cert
                    .subject_alt_names()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                key: cert.public_key().to_string(),
                key_bits: cert.public_key().bits,
                signature_algorithm: cert.signature_algorithm().to_owned(),
                sha256: cert.sha256(),
                is_ca: cert.is_ca(),
                self_issued: cert.is_self_issued(),
                extended_key_usage: cert.extended_key_usage().to_vec(),
                aia_ca_issuers: aia_ca_issuers(cert),
                name_constraints: cert.name_constraints().cloned(),
                next: chain.get(index + 1).map(|next| Link::between(cert, next)),
            }
        })
        .collect()
}

fn time_left(cert: &Certificate, now: Timestamp) -> String {
    if cert.is_not_yet_valid_at(now) {
        format!(
            "not valid for another {}",
            duration(cert.not_before().unix() - now.unix())
        )
    } else if cert.is_expired_at(now) {
        format!(
            "expired {} ago",
            duration(now.unix() - cert.not_after().unix())
        )
    } else {
        format!("{} left", duration(cert.not_after().unix() - now.unix()))
    }
}

/// A span of seconds in the largest unit that keeps it readable: `3 days`, `5 hours`,
/// `12 minutes`, `40 seconds`.
pub(crate) fn duration(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (n, unit) = match s {
        0..120 => (s, "second"),
        120..7_200 => (s / 60, "minute"),
        7_200..172_800 => (s / 3_600, "hour"),
        _ => (s / 86_400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The issuing path through the presented certificates, starting at the leaf (index 0), each
/// next element being the certificate that issued the previous one, wherever it was sent.
pub(crate) fn issuing_path(chain: &[Certificate]) -> Vec<usize> {
    let mut path = Vec::new();
    if chain.is_empty() {
        return path;
    }
    path.push(0);
    while let Some(&current) = path.last() {
        if chain[current].is_self_issued() {
            break;
        }
        let parent = (0..chain.len())
            .filter(|i| !path.contains(i))
            .find(|&i| Link::between(&chain[current], &chain[i]).links());
        match parent {
            Some(i) => path.push(i),
            None => break,
        }
    }
    path
}

/// True for an RSA key shorter than 2048 bits.
pub(crate) fn weak_rsa(cert: &Certificate) -> Option<u32> {
    match (&cert.public_key().kind, cert.public_key().bits) {
        (KeyKind::Rsa, Some(bits)) if bits < 2048 => Some(bits),
        _ => None,
    }
}

/// True when the signature algorithm uses SHA-1 or MD5.
pub(crate) fn weak_signature(cert: &Certificate) -> bool {
    let alg = cert.signature_algorithm().to_ascii_lowercase();
    alg.contains("sha1") || alg.contains("md5") || alg.contains("md2") || alg == "1.2.840.10040.4.3"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(59), "59 seconds");
        assert_eq!(duration(600), "10 minutes");
        assert_eq!(duration(3 * 3600), "3 hours");
        assert_eq!(duration(-3 * 86_400), "3 days");
        assert_eq!(duration(86_400 * 2), "2 days");
    }
}

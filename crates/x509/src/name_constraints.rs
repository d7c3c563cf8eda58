//! The name constraints extension (RFC 5280 §4.2.1.10): read from a CA certificate, written for
//! a new one, and checked against a name as a verifier checks it.
//!
//! Matching follows RFC 5280 as OpenSSL and webpki apply it:
//!
//! - **DNS**: `cluster.local` permits `cluster.local` and every name below it
//!   (`a.b.cluster.local`); `.cluster.local` only the names below it; the empty constraint all.
//!   A wildcard name (`*.cluster.local`) is judged by its labels, the `*` as one label.
//! - **IP**: an address is inside a subnet (address and prefix) of its own family.
//! - **URI**: the constraint applies to the host of the URI (`spiffe://cluster.local/ns/…` has
//!   the host `cluster.local`); `cluster.local` permits exactly that host, `.cluster.local` the
//!   hosts below it.
//!
//! A name is refused when an excluded subtree of its type matches it, or when the permitted
//! subtrees hold entries of its type and none matches. A name type without any permitted entry
//! is, for a verifier, unconstrained; [`NameConstraints::check_strict`] (what our CA issues
//! under) refuses it instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use x509_parser::prelude::GeneralName;

use crate::certificate::SubjectAltName;

/// The OID of the name constraints extension, 2.5.29.30, as its arcs.
pub const NAME_CONSTRAINTS_OID: [u64; 4] = [2, 5, 29, 30];

/// One base name of a permitted or excluded subtree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameSubtree {
    /// dNSName: a domain (`cluster.local`), or with a leading `.` the names below it only.
    Dns(String),
    /// iPAddress: a subnet.
    Ip {
        /// The network address (host bits zero).
        network: IpAddr,
        /// The prefix length in bits.
        prefix: u8,
    },
    /// uniformResourceIdentifier: a host, or with a leading `.` the hosts below it.
    Uri(String),
    /// rfc822Name (e-mail): a mailbox, host or domain.
    Email(String),
    /// Any other form, described; never matched by a name we check.
    Other(String),
}

impl NameSubtree {
    /// A DNS subtree from `cluster.local` or `.cluster.local`: labels of letters, digits, `-`
    /// and `_`, 1 to 63 characters, at most 253 in all; lower-cased; a trailing `.` dropped.
    pub fn dns(text: &str) -> Result<Self, String> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let body = lower.strip_prefix('.').unwrap_or(&lower);
        if !valid_domain(body) {
            return Err(format!(
                "{text:?} is not a DNS domain: labels of letters, digits and '-', 1-63 characters each, at most 253 in all (a leading '.' permits only the names below it)"
            ));
        }
        Ok(Self::Dns(lower))
    }

    /// An IP subtree from CIDR text, `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or
    /// /128). Host bits must be zero.
    pub fn ip(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not a CIDR subnet such as 10.0.0.0/8 or fd00::/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        if mask(network, prefix) != network {
            return Err(format!(
                "{text:?} has host bits set: give the network address ({}/{prefix})",
                mask(network, prefix)
            ));
        }
        Ok(Self::Ip { network, prefix })
    }

    /// A URI subtree: a host (`cluster.local`, a SPIFFE trust domain) or `.domain`; a
    /// `scheme://host/…` is taken down to its host.
    pub fn uri(text: &str) -> Result<Self, String> {
        let host = uri_host(text).unwrap_or(text).to_ascii_lowercase();
        let body = host.strip_prefix('.').unwrap_or(&host);
        if !valid_domain(body) {
            return Err(format!(
                "{text:?} is not a URI host constraint: give a domain such as cluster.local (exactly that host) or .cluster.local (the hosts below it)"
            ));
        }
        Ok(Self::Uri(host))
    }

    /// Whether `name` (of the same kind) lies inside this subtree; `None` when the kinds differ
    /// (the subtree says nothing about the name).
    fn covers(&self, name: &SubjectAltName) -> Option<bool> {
        match (self, name) {
            (Self::Dns(c), SubjectAltName::Dns(n)) => Some(dns_within(n, c)),
            (Self::Ip { network, prefix }, SubjectAltName::Ip(ip)) => {
                Some(network.is_ipv4() == ip.is_ipv4() && mask(*ip, *prefix) == *network)
            }
            (Self::Uri(c), SubjectAltName::Uri(uri)) => {
                Some(uri_host(uri).is_some_and(|host| uri_within(&host.to_ascii_lowercase(), c)))
            }
            (Self::Email(c), SubjectAltName::Email(mail)) => {
                let mail = mail.to_ascii_lowercase();
                Some(if c.contains('@') {
                    mail == *c
                } else {
                    mail.rsplit_once('@')
                        .is_some_and(|(_, host)| uri_within(host, c))
                })
            }
            _ => None,
        }
    }

    fn same_kind(&self, name: &SubjectAltName) -> bool {
        matches!(
            (self, name),
            (Self::Dns(_), SubjectAltName::Dns(_))
                | (Self::Ip { .. }, SubjectAltName::Ip(_))
                | (Self::Uri(_), SubjectAltName::Uri(_))
                | (Self::Email(_), SubjectAltName::Email(_))
        )
    }

    fn from_general_name(name: &GeneralName<'_>) -> Self {
        match name {
            GeneralName::DNSName(v) => Self::Dns(v.to_ascii_lowercase()),
            GeneralName::URI(v) => Self::Uri(v.to_ascii_lowercase()),
            GeneralName::RFC822Name(v) => Self::Email(v.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => ip_subtree(bytes)
                .unwrap_or_else(|| Self::Other(format!("IP:<{} bytes>", bytes.len()))),
            other => Self::Other(other.to_string()),
        }
    }

    /// The GeneralName's DER: `[2] dNSName`, `[6] uniformResourceIdentifier`, `[7] iPAddress`
    /// (address then mask), `[1] rfc822Name`; `None` for [`Self::Other`].
    fn general_name_der(&self) -> Option<Vec<u8>> {
        Some(match self {
            Self::Dns(v) => tlv(0x82, v.as_bytes()),
            Self::Uri(v) => tlv(0x86, v.as_bytes()),
            Self::Email(v) => tlv(0x81, v.as_bytes()),
            Self::Ip { network, prefix } => {
                let mut bytes = match network {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                };
                let mask = match mask_of(*network, *prefix) {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                };
                bytes.extend_from_slice(&mask);
                tlv(0x87, &bytes)
            }
            Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for NameSubtree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(v) => write!(f, "DNS:{v}"),
            Self::Ip { network, prefix } => write!(f, "IP:{network}/{prefix}"),
            Self::Uri(v) => write!(f, "URI:{v}"),
            Self::Email(v) => write!(f, "email:{v}"),
            Self::Other(v) => f.write_str(v),
        }
    }
}

/// As its text (`DNS:cluster.local`, `IP:10.0.0.0/8`).
impl Serialize for NameSubtree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A name constraints extension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NameConstraints {
    /// Whether the extension is marked critical (it must be, RFC 5280 says).
    pub critical: bool,
    /// permittedSubtrees.
    pub permitted: Vec<NameSubtree>,
    /// excludedSubtrees.
    pub excluded: Vec<NameSubtree>,
}

/// Why a name falls outside a CA's name constraints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An excluded subtree matches the name.
    Excluded(NameSubtree),
    /// Permitted subtrees of the name's type exist and none matches; they are listed.
    NotPermitted(Vec<NameSubtree>),
    /// (Strict check only) the constraints permit no name of this type.
    TypeNotPermitted,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Excluded(subtree) => write!(f, "it lies in the excluded subtree {subtree}"),
            Self::NotPermitted(permitted) => write!(
                f,
                "it lies outside the permitted subtrees {}",
                permitted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::TypeNotPermitted => f.write_str("the constraints permit no name of this type"),
        }
    }
}

impl NameConstraints {
    pub(crate) fn from_parsed(
        critical: bool,
        nc: &x509_parser::extensions::NameConstraints<'_>,
    ) -> Self {
        let convert = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            subtrees
                .iter()
                .flatten()
                .map(|s| NameSubtree::from_general_name(&s.base))
                .collect()
        };
        Self {
            critical,
            permitted: convert(&nc.permitted_subtrees),
            excluded: convert(&nc.excluded_subtrees),
        }
    }

    /// Checks `name` as a verifier does (RFC 5280): refused by a matching excluded subtree, or
    /// by permitted subtrees of its type none of which matches.
    pub fn check(&self, name: &SubjectAltName) -> Result<(), Violation> {
        if let Some(excluded) = self
            .excluded
            .iter()
            .find(|s| s.covers(name) == Some(true) || excluded_by_wildcard(s, name))
        {
            return Err(Violation::Excluded(excluded.clone()));
        }
        let of_kind: Vec<&NameSubtree> = self
            .permitted
            .iter()
            .filter(|s| s.same_kind(name))
            .collect();
        if !of_kind.is_empty() && !of_kind.iter().any(|s| s.covers(name) == Some(true)) {
            return Err(Violation::NotPermitted(
                of_kind.into_iter().cloned().collect(),
            ));
        }
        Ok(())
    }

    /// [`Self::check`], and when there are permitted subtrees at all, a name of a type none of
    /// them is about is refused too ([`Violation::TypeNotPermitted`]): what a CA holding to its
    /// constraints issues under.
    pub fn check_strict(&self, name: &SubjectAltName) -> Result<(), Violation> {
        self.check(name)?;
        if !self.permitted.is_empty() && !self.permitted.iter().any(|s| s.same_kind(name)) {
            return Err(Violation::TypeNotPermitted);
        }
        Ok(())
    }

    /// The extension's value (`NameConstraints ::= SEQUENCE { permittedSubtrees [0]
    /// GeneralSubtrees OPTIONAL, excludedSubtrees [1] GeneralSubtrees OPTIONAL }`), for a new
    /// CA certificate. Subtrees of [`NameSubtree::Other`] are left out.
    pub fn to_der(&self) -> Vec<u8> {
        let subtrees = |tag: u8, list: &[NameSubtree]| -> Vec<u8> {
            let body: Vec<u8> = list
                .iter()
                .filter_map(NameSubtree::general_name_der)
                .flat_map(|name| tlv(0x30, &name))
                .collect();
            if body.is_empty() {
                Vec::new()
            } else {
                tlv(tag, &body)
            }
        };
        let mut body = subtrees(0xa0, &self.permitted);
        body.extend(subtrees(0xa1, &self.excluded));
        tlv(0x30, &body)
    }
}

/// A wildcard name (`*.local`) spans names an excluded DNS subtree (`cluster.local`) may
/// match: refused then too.
fn excluded_by_wildcard(subtree: &NameSubtree, name: &SubjectAltName) -> bool {
    match (subtree, name) {
        (NameSubtree::Dns(c), SubjectAltName::Dns(n)) => n
            .to_ascii_lowercase()
            .strip_prefix("*.")
            .is_some_and(|base| dns_within(c.trim_start_matches('.'), base)),
        _ => false,
    }
}

/// One DER element with a short or long form length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Whether the DNS name `name` lies within the constraint `c`.
fn dns_within(name: &str, c: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let c = c.trim_end_matches('.').to_ascii_lowercase();
    if c.is_empty() {
        return true;
    }
    match c.strip_prefix('.') {
        Some(_) => name.ends_with(&c),
        None => name == c || name.ends_with(&format!(".{c}")),
    }
}

/// Whether the URI host (or mail domain) `host` lies within the constraint `c`: exactly the
/// host, or with a leading `.` any host below it.
fn uri_within(host: &str, c: &str) -> bool {
    let host = host.trim_end_matches('.');
    if c.starts_with('.') {
        host.ends_with(c)
    } else {
        host == c
    }
}

/// The host of `scheme://[user@]host[:port][/…]`.
fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split_once(']').map_or(v6, |(h, _)| h)
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `ip` with the bits past `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match (ip, mask_of(ip, prefix)) {
        (IpAddr::V4(a), IpAddr::V4(m)) => Ipv4Addr::from_bits(a.to_bits() & m.to_bits()).into(),
        (IpAddr::V6(a), IpAddr::V6(m)) => Ipv6Addr::from_bits(a.to_bits() & m.to_bits()).into(),
        _ => ip,
    }
}

/// The netmask of `prefix` bits in `ip`'s family.
fn mask_of(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::from_bits(
            u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0),
        )
        .into(),
        IpAddr::V6(_) => Ipv6Addr::from_bits(
            u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0),
        )
        .into(),
    }
}

/// An iPAddress constraint's bytes (address then a contiguous mask, 8 or 32 bytes).
fn ip_subtree(bytes: &[u8]) -> Option<NameSubtree> {
    let half = bytes.len() / 2;
    let (address, mask_bytes) = bytes.split_at(half);
    let (network, bits) = match half {
        4 => (
            IpAddr::from(<[u8; 4]>::try_from(address).ok()?),
            u128::from(u32::from_be_bytes(mask_bytes.try_into().ok()?)) << 96,
        ),
        16 => (
            IpAddr::from(<[u8; 16]>::try_from(address).ok()?),
            u128::from_be_bytes(mask_bytes.try_into().ok()?),
        ),
        _ => return None,
    };
    let prefix = bits.leading_ones();
    // A mask must be contiguous ones.
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return None;
    }
    let prefix = u8::try_from(prefix.min(if half == 4 { 32 } else { 128 })).ok()?;
    Some(NameSubtree::Ip {
        network: mask(network, prefix),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(n: &str) -> SubjectAltName {
        SubjectAltName::Dns(n.into())
    }

    #[test]
    fn subtrees_parse_and_refuse_bad_text() {
        assert_eq!(
            NameSubtree::dns("Cluster.Local.").unwrap(),
            NameSubtree::Dns("cluster.local".into())
        );
        assert!(NameSubtree::dns("*.cluster.local").is_err());
        assert!(NameSubtree::dns("").is_err());
        assert_eq!(
            NameSubtree::ip("10.0.0.0/8").unwrap().to_string(),
            "IP:10.0.0.0/8"
        );
        assert_eq!(
            NameSubtree::ip("fd00::/8").unwrap().to_string(),
            "IP:fd00::/8"
        );
        assert_eq!(
            NameSubtree::ip("10.1.2.3").unwrap().to_string(),
            "IP:10.1.2.3/32"
        );
        assert!(
            NameSubtree::ip("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(NameSubtree::ip("10.0.0.0/33").is_err());
        assert_eq!(
            NameSubtree::uri("spiffe://cluster.local/ns/x").unwrap(),
            NameSubtree::Uri("cluster.local".into())
        );
    }

    #[test]
    fn matching_follows_rfc_5280() {
        let nc = NameConstraints {
            critical: true,
            permitted: vec![
                NameSubtree::dns("cluster.local").unwrap(),
                NameSubtree::ip("10.0.0.0/8").unwrap(),
                NameSubtree::uri("cluster.local").unwrap(),
            ],
            excluded: vec![NameSubtree::dns("secret.cluster.local").unwrap()],
        };
        for ok in [
            "cluster.local",
            "a.b.cluster.local",
            "*.svc.cluster.local",
            "WEB.Cluster.Local",
        ] {
            assert_eq!(nc.check(&dns(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.com",
            "notcluster.local",
            "local",
            "*.com",
            "cluster.local.evil.com",
        ] {
            assert!(
                matches!(nc.check(&dns(bad)), Err(Violation::NotPermitted(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            nc.check(&dns("x.secret.cluster.local")),
            Err(Violation::Excluded(_))
        ));
        assert!(matches!(
            nc.check(&dns("*.cluster.local")),
            Err(Violation::Excluded(_))
        ));
        let ip = |t: &str| SubjectAltName::Ip(t.parse().unwrap());
        assert_eq!(nc.check(&ip("10.9.8.7")), Ok(()));
        assert!(nc.check(&ip("11.0.0.1")).is_err());
        // IPv4 and IPv6 are one name type: with only IPv4 permitted, no IPv6 address is (as
        // OpenSSL judges it).
        assert!(nc.check(&ip("::1")).is_err());
        let uri = |t: &str| SubjectAltName::Uri(t.into());
        assert_eq!(nc.check(&uri("spiffe://cluster.local/ns/a/sa/b")), Ok(()));
        assert!(nc.check(&uri("spiffe://evil.org/ns/a/sa/b")).is_err());
        assert!(
            nc.check(&uri("spiffe://x.cluster.local/ns/a")).is_err(),
            "exact host"
        );
        // Strict: a type nothing permits.
        let only_dns = NameConstraints {
            critical: true,
            permitted: vec![NameSubtree::dns("cluster.local").unwrap()],
            excluded: Vec::new(),
        };
        assert_eq!(only_dns.check(&ip("1.2.3.4")), Ok(()));
        assert_eq!(
            only_dns.check_strict(&ip("1.2.3.4")),
            Err(Violation::TypeNotPermitted)
        );
        assert_eq!(only_dns.check_strict(&dns("a.cluster.local")), Ok(()));
    }

    #[test]
    fn der_round_trips_through_x509_parser() {
        use x509_parser::prelude::FromDer as _;
        let nc = NameConstraints {
            critical: true,
            permitted: vec![
                NameSubtree::dns("cluster.local").unwrap(),
                NameSubtree::ip("10.0.0.0/8").unwrap(),
                NameSubtree::ip("fd00::/8").unwrap(),
                NameSubtree::uri(&"x".repeat(60)).unwrap(),
                NameSubtree::uri(&format!("{}.example", "y".repeat(60))).unwrap(),
            ],
            excluded: vec![
                NameSubtree::ip("0.0.0.0/0").unwrap(),
                NameSubtree::ip("::/0").unwrap(),
            ],
        };
        let der = nc.to_der();
        assert!(der.len() > 128, "long-form lengths exercised");
        let (rest, parsed) =
            x509_parser::extensions::NameConstraints::from_der(&der).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(NameConstraints::from_parsed(true, &parsed), nc);
    }
}

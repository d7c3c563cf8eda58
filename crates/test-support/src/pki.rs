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
        };
        std::fs::write(&files.cert, &self.leaf.pem).expect("write");
        std::fs::write(&files.key, &self.leaf.key_pem).expect("write");
        std::fs::write(&files.chain, &self.intermediate.pem).expect("write");
        std::fs::write(&files.root, &self.root.pem).expect("write");
        files
    }
}

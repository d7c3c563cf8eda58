//! The one check of an issued certificate against its request, and the one CSR builder.
//!
//! Every backend (the built-in CA, Vault/OpenBao PKI, cert-manager) hands back a certificate
//! that some other code made: a role's settings, an issuer's policy or a bug can drop a SAN, a
//! purpose or the requested key type. [`check_issued`] is the single place that compares what
//! came back with what was asked, so no backend can forget a comparison; each backend turns a
//! [`Mismatch`] into its own [`IssueError`] with the hint that fits it (a role setting, an
//! issuer's policy).
//!
//! [`csr_pem`] makes the PKCS#10 request the external backends send: `CN=<identity>` and every
//! SAN of [`CertificateRequest::all_sans`], nothing else (Vault takes purposes from its role and
//! cert-manager from `spec.usages`, and cert-manager refuses a CSR whose extensions disagree).

use anchorage_x509::{Certificate, SubjectAltName};

use crate::issuer::IssueError;
use crate::keys;
use crate::request::{CertKind, CertificateRequest, KeyType, San};

/// How an issued certificate differs from its request (the first difference found, in the
/// order: key, issuer, key type, purposes, names).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// The certificate does not certify the key of the request (another request's answer).
    #[error("the certificate does not hold the requested key")]
    Key,
    /// The certificate names another issuer than the CA that is said to have signed it.
    #[error("the certificate was issued by {issuer:?}, not by the issuing CA {ca:?}")]
    Issuer {
        /// The certificate's issuer name.
        issuer: String,
        /// The issuing CA's subject name.
        ca: String,
    },
    /// The certificate's key is not of the requested type.
    #[error("the certificate holds a {got} key, not the requested {wanted}")]
    KeyType {
        /// What was asked.
        wanted: KeyType,
        /// What the certificate holds (its public key's description when no [`KeyType`] fits).
        got: String,
    },
    /// The certificate's extended key usage leaves out a purpose the kind needs.
    #[error("the certificate lacks {purpose}, which a {kind} certificate needs")]
    Purpose {
        /// `serverAuth` or `clientAuth`.
        purpose: &'static str,
        /// The requested kind.
        kind: CertKind,
    },
    /// Requested SANs the certificate does not carry.
    #[error("the certificate lacks the requested names {}", .missing.join(", "))]
    Names {
        /// The missing SANs, as written in the request.
        missing: Vec<String>,
    },
}

/// Compares an issued `certificate` with its `request`: it holds `key`'s public key, names
/// `issuing_ca` as issuer (when known), has the requested key type, every purpose the kind
/// needs (no EKU extension, or `anyExtendedKeyUsage`, allows all) and every requested SAN
/// (DNS names without case).
pub fn check_issued(
    request: &CertificateRequest,
    certificate: &Certificate,
    key: &rcgen::KeyPair,
    issuing_ca: Option<&Certificate>,
) -> Result<(), Mismatch> {
    if !keys::matches_certificate(key, certificate.der()) {
        return Err(Mismatch::Key);
    }
    if let Some(ca) = issuing_ca
        && certificate.issuer_der() != ca.subject_der()
    {
        return Err(Mismatch::Issuer {
            issuer: certificate.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    let got = KeyType::of_certificate(certificate);
    if got != Some(request.key_type) {
        return Err(Mismatch::KeyType {
            wanted: request.key_type,
            got: got.map_or_else(|| certificate.public_key().to_string(), |k| k.to_string()),
        });
    }
    if let Some(purpose) = missing_purpose(request.kind, certificate) {
        return Err(Mismatch::Purpose {
            purpose,
            kind: request.kind,
        });
    }
    let missing = missing_sans(&request.all_sans(), certificate);
    if !missing.is_empty() {
        return Err(Mismatch::Names { missing });
    }
    Ok(())
}

/// The purpose a kind needs that the certificate's EKU leaves out.
fn missing_purpose(kind: CertKind, certificate: &Certificate) -> Option<&'static str> {
    let eku = certificate.extended_key_usage();
    if eku.is_empty() || eku.iter().any(|p| p == "any") {
        return None;
    }
    let has = |name: &str| eku.iter().any(|p| p == name);
    if kind.server_auth() && !has("serverAuth") {
        return Some("serverAuth");
    }
    if kind.client_auth() && !has("clientAuth") {
        return Some("clientAuth");
    }
    None
}

/// The requested SANs the certificate does not carry (DNS names compared without case).
fn missing_sans(wanted: &[San], certificate: &Certificate) -> Vec<String> {
    let has = certificate.subject_alt_names();
    wanted
        .iter()
        .filter(|san| {
            !has.iter().any(|got| match (san, got) {
                (San::Dns(a), SubjectAltName::Dns(b)) => a.eq_ignore_ascii_case(b),
                (San::Ip(a), SubjectAltName::Ip(b)) => a == b,
                (San::Uri(a), SubjectAltName::Uri(b)) => a == b,
                _ => false,
            })
        })
        .map(San::to_string)
        .collect()
}

/// A PEM PKCS#10 CSR for `request`, signed with `key`: subject `CN=<identity>` and every SAN
/// of [`CertificateRequest::all_sans`] (the identity as a DNS name when it is one, IPs, URIs
/// including SPIFFE IDs); no other extension.
pub fn csr_pem(request: &CertificateRequest, key: &rcgen::KeyPair) -> Result<String, IssueError> {
    let crypto = |action: &str, e: rcgen::Error| IssueError::Crypto {
        action: format!("{action} for {}", request.identity),
        message: e.to_string(),
    };
    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, request.identity.as_str());
    params.distinguished_name = name;
    params.subject_alt_names = request
        .all_sans()
        .iter()
        .map(|san| {
            let ia5 = |text: &str| {
                text.try_into()
                    .map_err(|e| crypto(&format!("encode the SAN {san} in the CSR"), e))
            };
            Ok(match san {
                San::Dns(name) => rcgen::SanType::DnsName(ia5(name)?),
                San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
                San::Uri(uri) => rcgen::SanType::URI(ia5(uri)?),
            })
        })
        .collect::<Result<_, IssueError>>()?;
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| crypto("sign the CSR", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Identity;

    /// A leaf for `name` with the given key and EKU, signed by a throwaway CA.
    fn leaf(
        key: &rcgen::KeyPair,
        sans: Vec<rcgen::SanType>,
        eku: Vec<rcgen::ExtendedKeyUsagePurpose>,
    ) -> (Certificate, Certificate) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Check CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = eku;
        let cert = params.signed_by(key, &issuer).unwrap();
        (
            Certificate::from_der(cert.der()).unwrap(),
            Certificate::from_der(ca.der()).unwrap(),
        )
    }

    fn request(kind: CertKind) -> CertificateRequest {
        let mut r = CertificateRequest::new(Identity::new("web.shop.svc").unwrap(), kind);
        r.key_type = KeyType::P256;
        r
    }

    #[test]
    fn every_difference_is_found_and_a_faithful_answer_passes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let dns = |n: &str| rcgen::SanType::DnsName(n.try_into().unwrap());
        let both = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let req = request(CertKind::Service);

        // Faithful (DNS case differs: still the same name).
        let (good, ca) = leaf(&key, vec![dns("WEB.shop.svc")], both.clone());
        assert_eq!(check_issued(&req, &good, &key, Some(&ca)), Ok(()));

        // Another key.
        let other = rcgen::KeyPair::generate().unwrap();
        assert_eq!(
            check_issued(&req, &good, &other, Some(&ca)),
            Err(Mismatch::Key)
        );
        // Another issuer (the leaf itself named as the issuing CA).
        assert!(matches!(
            check_issued(&req, &good, &key, Some(&good)),
            Err(Mismatch::Issuer { .. })
        ));
        // A missing purpose.
        let (server_only, _) = leaf(
            &key,
            vec![dns("web.shop.svc")],
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        );
        assert_eq!(
            check_issued(&req, &server_only, &key, None),
            Err(Mismatch::Purpose {
                purpose: "clientAuth",
                kind: CertKind::Service
            })
        );
        // A missing name.
        let (nameless, _) = leaf(&key, vec![dns("other.svc")], both);
        assert_eq!(
            check_issued(&req, &nameless, &key, None),
            Err(Mismatch::Names {
                missing: vec!["DNS:web.shop.svc".into()]
            })
        );
        // Another key type.
        let mut p384 = request(CertKind::Service);
        p384.key_type = KeyType::P384;
        assert!(matches!(
            check_issued(&p384, &good, &key, None),
            Err(Mismatch::KeyType {
                wanted: KeyType::P384,
                ..
            })
        ));
    }

    #[test]
    fn csr_carries_identity_and_sans_only() {
        let key = rcgen::KeyPair::generate().unwrap();
        let req = request(CertKind::Service);
        let pem = csr_pem(&req, &key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
    }
}

//! The classification: deciding the primary [`Diagnosis`] and the [`Finding`]s from the chain
//! and the verifier's answer.
//!
//! rustls's `WebPkiServerVerifier` ([`verify`]) gives the verdict; [`primary`] turns its answer
//! into the one diagnosis, explained from the certificates themselves (weak crypto rather than
//! a bad signature, a CA or self-signed certificate as the leaf, the issuer that is missing and
//! which candidate file holds it), and [`findings`] adds what rustls does not report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::{Certificate, Timestamp};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};

use super::DiagnoseParams;
use super::diagnosis::{Diagnosis, Finding};
use crate::chain::{self, Link};
use crate::danger::HandshakeSignature;

/// The primary diagnosis of `chain` from the verifier's `verdict` on it.
pub(super) fn primary(
    chain: &[Certificate],
    path: &[usize],
    params: &DiagnoseParams<'_>,
    verdict: &Result<(), rustls::Error>,
) -> Diagnosis {
    match verdict {
        _ if chain.is_empty() => Diagnosis::NoCertificate,
        // The path verifies, but a rustls client would refuse the server's handshake signature
        // made with this key, so the chain is not usable.
        Ok(()) if chain::weak_rsa(&chain[0]).is_some() => Diagnosis::WeakKey {
            certificate: 0,
            subject: chain[0].subject().to_owned(),
            bits: chain::weak_rsa(&chain[0]).unwrap_or_default(),
        },
        // The path verifies, but the server's handshake signature did not: no rustls client
        // completes this handshake.
        Ok(()) if let Some(failed) = failed_signature(params) => {
            Diagnosis::HandshakeSignatureFailed {
                scheme: failed.scheme.clone(),
                weak_scheme: failed.weak_scheme(),
                detail: failed.error.clone().unwrap_or_default(),
            }
        }
        Ok(()) => match trust_anchor(chain, path, params) {
            Some(anchor) => Diagnosis::Trusted {
                anchor: anchor.subject().to_owned(),
                anchor_is_intermediate: !anchor.is_self_issued(),
                anchor_issuer: (!anchor.is_self_issued()).then(|| anchor.issuer().to_owned()),
            },
            // An anchor the trust holds without its certificate (a bare RootCertStore): the
            // path's top names it.
            None => Diagnosis::Trusted {
                anchor: path
                    .last()
                    .map(|&i| {
                        if chain[i].is_self_issued() {
                            chain[i].subject().to_owned()
                        } else {
                            chain[i].issuer().to_owned()
                        }
                    })
                    .unwrap_or_default(),
                anchor_is_intermediate: false,
                anchor_issuer: None,
            },
        },
        Err(error) => classify(chain, path, params, error),
    }
}

/// The findings besides `primary`: those of the chain, then a failed handshake signature.
pub(super) fn findings(
    chain: &[Certificate],
    path: &[usize],
    params: &DiagnoseParams<'_>,
    primary: &Diagnosis,
) -> Vec<Finding> {
    let mut findings = if chain.is_empty() {
        Vec::new()
    } else {
        chain_findings(chain, path, params, primary)
    };
    // A failed handshake signature under another verdict is still said (unless the leaf's
    // short RSA key, already reported, explains it).
    if let Some(failed) = failed_signature(params)
        && !matches!(primary, Diagnosis::HandshakeSignatureFailed { .. })
        && chain
            .first()
            .is_none_or(|leaf| chain::weak_rsa(leaf).is_none())
    {
        findings.push(Finding::HandshakeSignatureFailed {
            scheme: failed.scheme.clone(),
            detail: failed.error.clone().unwrap_or_default(),
        });
    }
    findings
}

/// The handshake signature's record when its check failed.
fn failed_signature<'a>(params: &DiagnoseParams<'a>) -> Option<&'a HandshakeSignature> {
    params.handshake_signature.filter(|s| !s.verified)
}

fn unix_time(now: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now.unix()).unwrap_or(0)))
}

pub(super) fn verify(
    chain: &[Certificate],
    params: &DiagnoseParams<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<(), rustls::Error> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err(rustls::Error::NoCertificatesPresented);
    };
    let name = ServerName::try_from(params.server_name).map_err(|e| {
        rustls::Error::General(format!(
            "{:?} is not a server name: {e}",
            params.server_name
        ))
    })?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(params.roots.clone()), provider)
            .build()
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
    let intermediates: Vec<CertificateDer<'_>> =
        rest.iter().map(|c| CertificateDer::from(c.der())).collect();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.der()),
            &intermediates,
            &name,
            &[],
            unix_time(params.now),
        )
        .map(|_| ())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Candidate files holding a certificate that issued `child`.
fn candidate_files_for(child: &Certificate, params: &DiagnoseParams<'_>) -> Vec<(PathBuf, bool)> {
    params
        .candidates
        .iter()
        .filter_map(|(path, certs)| {
            certs
                .iter()
                .find(|c| Link::between(child, c).links())
                .map(|c| (path.clone(), c.is_self_issued()))
        })
        .collect()
}

/// The `Name` value without its SEQUENCE header, as webpki keeps a trust anchor's subject.
fn name_value(raw: &[u8]) -> &[u8] {
    match raw.get(1) {
        Some(&l) if l < 0x80 => raw.get(2..).unwrap_or_default(),
        Some(&l) => raw.get(2 + usize::from(l & 0x7f)..).unwrap_or_default(),
        None => raw,
    }
}

fn anchor_named(roots: &RootCertStore, issuer_der: &[u8]) -> bool {
    let value = name_value(issuer_der);
    roots
        .roots
        .iter()
        .any(|a| a.subject.as_ref() == value || a.subject.as_ref() == issuer_der)
}

fn expired_on_path(chain: &[Certificate], path: &[usize], now: Timestamp) -> Option<usize> {
    path.iter()
        .copied()
        .chain(0..chain.len())
        .find(|&i| chain[i].is_expired_at(now))
}

fn not_yet_valid_on_path(chain: &[Certificate], path: &[usize], now: Timestamp) -> Option<usize> {
    path.iter()
        .copied()
        .chain(0..chain.len())
        .find(|&i| chain[i].is_not_yet_valid_at(now))
}

fn sans(cert: &Certificate) -> Vec<String> {
    cert.subject_alt_names()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn lacks_server_auth(cert: &Certificate) -> bool {
    let eku = cert.extended_key_usage();
    !eku.is_empty()
        && !eku
            .iter()
            .any(|p| p == "serverAuth" || p == "anyExtendedKeyUsage" || p == "2.5.29.37.0")
}

fn classify(
    chain: &[Certificate],
    path: &[usize],
    params: &DiagnoseParams<'_>,
    error: &rustls::Error,
) -> Diagnosis {
    let now = params.now;
    let leaf = &chain[0];
    let rustls::Error::InvalidCertificate(cert_error) = error else {
        return Diagnosis::Untrusted {
            error: error.to_string(),
        };
    };
    match cert_error {
        CertificateError::UnknownIssuer => unknown_issuer(chain, path, params),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            match expired_on_path(chain, path, now) {
                Some(i) => Diagnosis::Expired {
                    certificate: i,
                    subject: chain[i].subject().to_owned(),
                    not_after: chain[i].not_after(),
                    seconds_ago: now.unix() - chain[i].not_after().unix(),
                },
                None => Diagnosis::Untrusted {
                    error: error.to_string(),
                },
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            match not_yet_valid_on_path(chain, path, now) {
                Some(i) => Diagnosis::NotYetValid {
                    certificate: i,
                    subject: chain[i].subject().to_owned(),
                    not_before: chain[i].not_before(),
                    seconds_until: chain[i].not_before().unix() - now.unix(),
                },
                None => Diagnosis::Untrusted {
                    error: error.to_string(),
                },
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Diagnosis::NameMismatch {
                asked: params.server_name.to_owned(),
                presented: sans(leaf),
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            let i = path
                .iter()
                .copied()
                .find(|&i| lacks_server_auth(&chain[i]))
                .unwrap_or(0);
            Diagnosis::WrongKeyUsage {
                certificate: i,
                subject: chain[i].subject().to_owned(),
                extended_key_usage: chain[i].extended_key_usage().to_vec(),
            }
        }
        #[allow(deprecated)] // older webpki errors still arrive as the context-free variant
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            if let Some(weak) = weak_on_path(chain, path) {
                return weak;
            }
            if let Some(&top) = path.last()
                && anchor_named(params.roots, chain[top].issuer_der())
                && path.windows(2).all(|w| {
                    Link::between(&chain[w[0]], &chain[w[1]]).signature_verified != Some(false)
                })
            {
                return unknown_issuer(chain, path, params);
            }
            let certificate = (0..chain.len().saturating_sub(1)).find(|&i| {
                Link::between(&chain[i], &chain[i + 1]).signature_verified == Some(false)
            });
            Diagnosis::BadSignature {
                certificate,
                detail: error.to_string(),
            }
        }
        // webpki's CaUsedAsEndEntity has no rustls variant of its own: it arrives as `Other`.
        // Validity is checked before basic constraints, so a CA leaf gets here only when it is
        // in its validity period.
        CertificateError::Other(_) if leaf.is_ca() => ca_as_leaf(chain, path, params),
        _ => Diagnosis::Untrusted {
            error: error.to_string(),
        },
    }
}

/// The first signature on the path made with SHA-1 or MD5, else the first issuer on the path
/// with an RSA key under 2048 bits (whose signature rustls cannot check). A self-issued
/// certificate's own signature is not judged: nothing verifies it.
fn weak_on_path(chain: &[Certificate], path: &[usize]) -> Option<Diagnosis> {
    let signed = path
        .iter()
        .copied()
        .find(|&i| !chain[i].is_self_issued() && chain::weak_signature(&chain[i]));
    if let Some(i) = signed {
        return Some(Diagnosis::WeakSignature {
            certificate: i,
            subject: chain[i].subject().to_owned(),
            algorithm: chain[i].signature_algorithm().to_owned(),
        });
    }
    path.iter().skip(1).copied().find_map(|i| {
        chain::weak_rsa(&chain[i]).map(|bits| Diagnosis::WeakKey {
            certificate: i,
            subject: chain[i].subject().to_owned(),
            bits,
        })
    })
}

/// A CA certificate (`cA=TRUE`) served as the leaf. Self-issued, that is a self-signed leaf
/// marked `is_ca` (trusted or not: rustls refuses it either way, so it must be reissued with
/// `cA=FALSE` or by a CA); issued by another CA, the server serves its CA's certificate.
fn ca_as_leaf(chain: &[Certificate], path: &[usize], params: &DiagnoseParams<'_>) -> Diagnosis {
    let leaf = &chain[0];
    if path.len() == 1 && leaf.is_self_issued() {
        return self_signed_leaf(leaf, params);
    }
    Diagnosis::CaUsedAsLeaf {
        subject: leaf.subject().to_owned(),
        issuer: leaf.issuer().to_owned(),
    }
}

fn self_signed_leaf(leaf: &Certificate, params: &DiagnoseParams<'_>) -> Diagnosis {
    Diagnosis::SelfSignedLeaf {
        subject: leaf.subject().to_owned(),
        sha256: leaf.sha256(),
        is_ca: leaf.is_ca(),
        in_trust: is_anchor(params.roots, leaf),
    }
}

/// `cert` as rustls keeps a trust anchor (subject, key, name constraints); `None` when rustls
/// would not take it as one.
fn anchor_of(cert: &Certificate) -> Option<TrustAnchor<'static>> {
    let mut store = RootCertStore::empty();
    store.add(CertificateDer::from(cert.der())).ok()?;
    store.roots.pop()
}

/// True when `roots` holds `cert` as a trust anchor.
pub(super) fn is_anchor(roots: &RootCertStore, cert: &Certificate) -> bool {
    anchor_of(cert).is_some_and(|anchor| roots.roots.contains(&anchor))
}

fn unknown_issuer(chain: &[Certificate], path: &[usize], params: &DiagnoseParams<'_>) -> Diagnosis {
    let leaf = &chain[0];
    let top_index = path.last().copied().unwrap_or(0);
    let top = &chain[top_index];
    if path.len() == 1 && leaf.is_self_issued() {
        return self_signed_leaf(leaf, params);
    }
    let candidates = candidate_files_for(top, params);
    let candidate_root = candidates.iter().any(|(_, self_issued)| *self_issued);
    let files: Vec<PathBuf> = candidates.into_iter().map(|(p, _)| p).collect();
    let authority_key_id = top.authority_key_id().map(hex);
    if path.len() == 1 && !candidate_root && !anchor_named(params.roots, top.issuer_der()) {
        return Diagnosis::MissingIntermediate {
            issuer: leaf.issuer().to_owned(),
            authority_key_id,
            aia_ca_issuers: chain::aia_ca_issuers(leaf),
            candidate_files: files,
        };
    }
    Diagnosis::UnknownIssuer {
        certificate: top_index,
        subject: top.subject().to_owned(),
        missing_issuer: top.issuer().to_owned(),
        authority_key_id,
        root_sent: top.is_self_issued(),
        same_name_trusted: anchor_named(params.roots, top.issuer_der()),
        candidate_files: files,
    }
}

fn chain_findings(
    chain: &[Certificate],
    path: &[usize],
    params: &DiagnoseParams<'_>,
    primary: &Diagnosis,
) -> Vec<Finding> {
    let now = params.now;
    let mut out = Vec::new();
    let primary_cert = match primary {
        Diagnosis::Expired { certificate, .. } | Diagnosis::NotYetValid { certificate, .. } => {
            Some(*certificate)
        }
        _ => None,
    };
    for &i in path {
        let cert = &chain[i];
        if Some(i) == primary_cert {
            continue;
        }
        if cert.is_expired_at(now) {
            out.push(Finding::Expired {
                certificate: i,
                subject: cert.subject().to_owned(),
                not_after: cert.not_after(),
            });
        } else if cert.is_not_yet_valid_at(now) {
            out.push(Finding::NotYetValid {
                certificate: i,
                subject: cert.subject().to_owned(),
                not_before: cert.not_before(),
            });
        }
    }
    let leaf = &chain[0];
    if !matches!(primary, Diagnosis::NameMismatch { .. }) && !name_ok(leaf, params.server_name) {
        out.push(Finding::NameMismatch {
            asked: params.server_name.to_owned(),
            presented: sans(leaf),
        });
    }
    if !matches!(primary, Diagnosis::WrongKeyUsage { .. }) && lacks_server_auth(leaf) {
        out.push(Finding::WrongKeyUsage {
            certificate: 0,
            extended_key_usage: leaf.extended_key_usage().to_vec(),
        });
    }
    let (weak_signature_primary, weak_key_primary) = match primary {
        Diagnosis::WeakSignature { certificate, .. } => (Some(*certificate), None),
        Diagnosis::WeakKey { certificate, .. } => (None, Some(*certificate)),
        _ => (None, None),
    };
    for (i, cert) in chain.iter().enumerate() {
        if Some(i) != weak_signature_primary
            && !cert.is_self_issued()
            && chain::weak_signature(cert)
        {
            out.push(Finding::WeakSignature {
                certificate: i,
                subject: cert.subject().to_owned(),
                algorithm: cert.signature_algorithm().to_owned(),
            });
        }
        if let Some(bits) = chain::weak_rsa(cert)
            && Some(i) != weak_key_primary
        {
            out.push(Finding::WeakKey {
                certificate: i,
                subject: cert.subject().to_owned(),
                bits,
            });
        }
    }
    if path.iter().enumerate().any(|(i, &p)| i != p) {
        out.push(Finding::ChainOutOfOrder {
            path: path.to_vec(),
        });
    }
    let extra: Vec<usize> = (0..chain.len()).filter(|i| !path.contains(i)).collect();
    if !extra.is_empty() {
        out.push(Finding::ExtraCertificates {
            subjects: extra
                .iter()
                .map(|&i| chain[i].subject().to_owned())
                .collect(),
            certificates: extra,
        });
    }
    let window = i64::try_from(params.expiry_window.as_secs()).unwrap_or(i64::MAX);
    for &i in path {
        let cert = &chain[i];
        let left = cert.not_after().unix() - now.unix();
        // A root (self-issued, not the leaf) is the root finding's, and only when trusted: a
        // root the server sends is not what a client checks against. A self-signed leaf's short
        // life is the server's own problem, trusted or not.
        if left > 0 && left <= window && (i == 0 || !cert.is_self_issued()) {
            out.push(Finding::ExpiresSoon {
                certificate: i,
                subject: cert.subject().to_owned(),
                not_after: cert.not_after(),
                seconds_left: left,
            });
        }
    }
    // A self-signed leaf that is its own trust anchor has its ExpiresSoon above.
    let leaf_is_root = path == [0] && chain[0].is_self_issued();
    if !leaf_is_root && let Some(root) = path_root(chain, path, params) {
        let left = root.not_after().unix() - now.unix();
        if left > 0 && left <= window {
            out.push(Finding::RootExpiresSoon {
                subject: root.subject().to_owned(),
                not_after: root.not_after(),
                seconds_left: left,
            });
        }
    }
    out
}

/// The certificate a verified path ends at as a trust anchor of `params.roots`: the first
/// certificate above the leaf on the issuing path that is itself an anchor (the verifier stops
/// at the first anchor it meets, so an intermediate the trust holds ends the path there), else
/// the anchor among the root certificates and the candidates that issued the top of the path.
/// `None` when the trust holds the anchor but no certificate of it is known here.
fn trust_anchor<'a>(
    chain: &'a [Certificate],
    path: &[usize],
    params: &'a DiagnoseParams<'_>,
) -> Option<&'a Certificate> {
    if let Some(&i) = path
        .iter()
        .skip(1)
        .find(|&&i| is_anchor(params.roots, &chain[i]))
    {
        return Some(&chain[i]);
    }
    let top = &chain[*path.last()?];
    if top.is_self_issued() && is_anchor(params.roots, top) {
        return Some(top);
    }
    params
        .root_certificates
        .iter()
        .chain(params.candidates.iter().flat_map(|(_, certs)| certs))
        .find(|c| Link::between(top, c).links() && is_anchor(params.roots, c))
}

/// The trusted root the path ends at: a trust anchor of `params.roots`, as the server sent it or
/// (preferably, for its validity dates) as the root certificates or the candidates (when the
/// caller put them in `roots`) hold it. `None` when the path ends at no trust anchor, for
/// example at a root the server sent that nobody trusts.
pub(super) fn path_root<'a>(
    chain: &'a [Certificate],
    path: &[usize],
    params: &'a DiagnoseParams<'_>,
) -> Option<&'a Certificate> {
    let top = &chain[*path.last()?];
    let mut known = params
        .root_certificates
        .iter()
        .chain(params.candidates.iter().flat_map(|(_, certs)| certs))
        .filter(|c| c.is_self_issued());
    let root = if top.is_self_issued() {
        let top_anchor = anchor_of(top)?;
        known
            .find(|c| {
                c.subject_der() == top.subject_der() && anchor_of(c).as_ref() == Some(&top_anchor)
            })
            .unwrap_or(top)
    } else {
        known.find(|c| Link::between(top, c).links())?
    };
    is_anchor(params.roots, root).then_some(root)
}

fn name_ok(leaf: &Certificate, server_name: &str) -> bool {
    let der = CertificateDer::from(leaf.der());
    let (Ok(name), Ok(parsed)) = (
        ServerName::try_from(server_name),
        ParsedCertificate::try_from(&der),
    ) else {
        return false;
    };
    verify_server_name(&parsed, &name).is_ok()
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki::{self, Pki};

    use super::*;
    use crate::diagnose::{DEFAULT_EXPIRY_WINDOW, Report, diagnose};

    fn cert(der: &[u8]) -> Certificate {
        Certificate::from_der(der).expect("decode")
    }

    fn store(certs: &[&Certificate]) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots
                .add(CertificateDer::from(c.der().to_vec()))
                .expect("anchor");
        }
        roots
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn judge(
        chain: &[Certificate],
        roots: &RootCertStore,
        root_certs: &[Certificate],
        window_days: u64,
    ) -> Report {
        let now = Timestamp::from_unix(chain.first().map_or(0, |c| c.not_before().unix() + 7200));
        let params = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots,
            root_certificates: root_certs,
            candidates: &[],
            now,
            expiry_window: Duration::from_secs(window_days * 86_400),
            handshake_signature: None,
        };
        diagnose(chain, &params, provider())
    }

    #[test]
    fn an_intermediate_given_as_the_anchor_is_named_and_openssl_warned_about() {
        let pki = Pki::new("Unit Intermediate Anchor");
        let root = cert(&pki.root.der);
        let intermediate = cert(&pki.intermediate.der);
        let chain = [cert(&pki.leaf.der), intermediate.clone()];
        let candidates = vec![(PathBuf::from("int.pem"), vec![intermediate.clone()])];
        let judge_with = |roots: &RootCertStore| {
            let params = DiagnoseParams {
                target: "localhost:443",
                server_name: "localhost",
                roots,
                root_certificates: &[],
                candidates: &candidates,
                now: Timestamp::from_unix(chain[0].not_before().unix() + 7200),
                expiry_window: Duration::from_secs(30 * 86_400),
                handshake_signature: None,
            };
            diagnose(&chain, &params, provider())
        };
        // The intermediate is the anchor (as `doctor --ca int.pem` judges it).
        let report = judge_with(&store(&[&intermediate]));
        assert!(report.trusted, "{}", report.primary);
        assert_eq!(
            report.primary,
            Diagnosis::Trusted {
                anchor: intermediate.subject().to_owned(),
                anchor_is_intermediate: true,
                anchor_issuer: Some(root.subject().to_owned()),
            }
        );
        let said = report.primary.to_string();
        assert!(
            said.contains("intermediate given as a trust anchor"),
            "{said}"
        );
        assert!(said.contains(intermediate.subject()), "{said}");
        assert!(
            !said.contains(root.subject()),
            "the root is not the anchor: {said}"
        );
        let fix = &report.fix.summary;
        assert!(
            fix.contains("partial-chain") && fix.contains("OpenSSL"),
            "{fix}"
        );
        assert!(
            fix.contains(root.subject()),
            "names the root to trust: {fix}"
        );
        assert!(!fix.contains("nothing to fix"), "{fix}");
        assert_eq!(
            report.fix.commands,
            ["anchorage bundle build int.pem --mozilla --pem ca-bundle.pem"]
        );

        // Negative control: with the root as the anchor, the root is named and no warning.
        let report = judge_with(&store(&[&root]));
        assert_eq!(
            report.primary,
            Diagnosis::Trusted {
                anchor: root.subject().to_owned(),
                anchor_is_intermediate: false,
                anchor_issuer: None,
            }
        );
        assert!(
            !report.fix.summary.contains("partial-chain"),
            "{}",
            report.fix.summary
        );
    }

    #[test]
    fn no_certificate_is_its_own_diagnosis() {
        let report = judge(&[], &RootCertStore::empty(), &[], 30);
        assert_eq!(report.primary, Diagnosis::NoCertificate);
        assert!(!report.trusted);
    }

    #[test]
    fn extra_and_out_of_order_certificates_are_findings() {
        let pki = Pki::new("Unit Order");
        let other = pki::root_ca("Unit Unrelated");
        let root = cert(&pki.root.der);
        let chain = [
            cert(&pki.leaf.der),
            cert(&other.der),
            cert(&pki.intermediate.der),
        ];
        let report = judge(&chain, &store(&[&root]), &[], 30);
        assert!(report.trusted, "{:?}", report.primary);
        assert_eq!(report.path, vec![0, 2]);
        assert!(
            report
                .findings
                .contains(&Finding::ChainOutOfOrder { path: vec![0, 2] })
        );
        assert!(report.findings.contains(&Finding::ExtraCertificates {
            certificates: vec![1],
            subjects: vec![chain[1].subject().to_owned()],
        }));
        assert!(!report.healthy);
    }

    #[test]
    fn a_root_expiring_within_the_window_is_a_finding() {
        let pki = Pki::new("Unit Window");
        let root = cert(&pki.root.der);
        let chain = [cert(&pki.leaf.der), cert(&pki.intermediate.der)];
        let roots = store(&[&root]);
        // The root lives ten years, the leaf 90 days: a 4000-day window catches all of them.
        let report = judge(&chain, &roots, std::slice::from_ref(&root), 4000);
        assert!(report.trusted);
        assert!(
            report.findings.iter().any(|f| matches!(f, Finding::RootExpiresSoon { subject, .. } if subject == root.subject())),
            "{:?}",
            report.findings
        );
        assert!(
            report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ExpiresSoon { certificate: 0, .. }))
        );
        let quiet = judge(&chain, &roots, std::slice::from_ref(&root), 30);
        assert!(quiet.healthy, "{:?}", quiet.findings);
    }

    #[test]
    fn a_trusted_root_with_the_name_but_another_key_is_an_unknown_issuer() {
        let pki = Pki::new("Unit Same Name");
        let impostor = pki::root_ca("Unit Same Name Root CA");
        let chain = [cert(&pki.leaf.der)];
        let report = judge(&chain, &store(&[&cert(&impostor.der)]), &[], 30);
        // The leaf's issuer is the intermediate, which no anchor is named after.
        assert!(
            matches!(report.primary, Diagnosis::MissingIntermediate { .. }),
            "{:?}",
            report.primary
        );
        let chain = [cert(&pki.leaf.der), cert(&pki.intermediate.der)];
        let report = judge(&chain, &store(&[&cert(&impostor.der)]), &[], 30);
        assert!(
            matches!(&report.primary, Diagnosis::UnknownIssuer { certificate: 1, missing_issuer, same_name_trusted: true, .. } if missing_issuer.contains("Unit Same Name Root CA")),
            "{:?}",
            report.primary
        );
    }

    #[test]
    fn a_self_signed_ca_served_as_the_leaf_is_a_self_signed_leaf_marked_ca() {
        let ca = cert(&pki::root_ca("Unit CA Leaf").der);
        // Trusted (the trust holds this very certificate): rustls still refuses it as the leaf,
        // because it is a CA certificate. Not "a CA used as leaf, issued by itself".
        let report = judge(std::slice::from_ref(&ca), &store(&[&ca]), &[], 30);
        assert_eq!(
            report.primary,
            Diagnosis::SelfSignedLeaf {
                subject: ca.subject().to_owned(),
                sha256: ca.sha256(),
                is_ca: true,
                in_trust: true,
            }
        );
        assert!(!report.trusted);
        let text = report.primary.to_string();
        assert!(!text.contains("issued by"), "{text}");
        assert!(
            text.contains("CA:TRUE") && text.contains("although the trust holds it"),
            "{text}"
        );
        let summary = &report.fix.summary;
        assert!(
            summary.contains("marked CA:TRUE")
                && summary.contains("even when it is trusted, as it is here")
                && summary.contains("-addext basicConstraints=critical,CA:FALSE")
                && summary.contains("issue it from your CA"),
            "{summary}"
        );
        // Not trusted: the same certificate is a self-signed leaf, and the fix says trusting it
        // would not help.
        let report = judge(std::slice::from_ref(&ca), &RootCertStore::empty(), &[], 30);
        let Diagnosis::SelfSignedLeaf {
            subject,
            is_ca: true,
            in_trust: false,
            ..
        } = &report.primary
        else {
            panic!("{:?}", report.primary);
        };
        assert_eq!(subject, ca.subject());
        assert!(
            report.fix.summary.contains("so trusting it would not help"),
            "{}",
            report.fix.summary
        );
        assert!(report.fix.commands.is_empty(), "{:?}", report.fix.commands);
        let json = serde_json::to_value(&report.primary).expect("json");
        assert_eq!(json["kind"], "self_signed_leaf");
        assert_eq!(json["is_ca"], true);
        assert_eq!(json["in_trust"], false);
    }

    /// A self-signed `localhost` certificate valid from an hour ago for `days` days.
    fn self_signed_localhost(days: i64, is_ca: rcgen::IsCa) -> Certificate {
        let now = time::OffsetDateTime::now_utc();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = is_ca;
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().expect("key");
        cert(params.self_signed(&key).expect("sign").der())
    }

    #[test]
    fn a_short_lived_self_signed_leaf_expires_soon_and_is_no_trusted_root() {
        let leaf = self_signed_localhost(5, rcgen::IsCa::ExplicitNoCa);
        // Untrusted, with a store of unrelated roots (as with --mozilla) and their certificates.
        let other = cert(&pki::root_ca("Unit Unrelated Root").der);
        let report = judge(
            std::slice::from_ref(&leaf),
            &store(&[&other]),
            std::slice::from_ref(&other),
            30,
        );
        assert!(
            matches!(
                report.primary,
                Diagnosis::SelfSignedLeaf {
                    is_ca: false,
                    in_trust: false,
                    ..
                }
            ),
            "{:?}",
            report.primary
        );
        assert!(
            !report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::RootExpiresSoon { .. })),
            "{:?}",
            report.findings
        );
        assert!(
            report.findings.iter().any(
                |f| matches!(f, Finding::ExpiresSoon { certificate: 0, subject, .. } if subject == "CN=localhost")
            ),
            "{:?}",
            report.findings
        );
        // Trusted (the trust holds it, CA:FALSE): trusted, and its short life is said once, as
        // the leaf's.
        let report = judge(
            std::slice::from_ref(&leaf),
            &store(&[&leaf]),
            std::slice::from_ref(&leaf),
            30,
        );
        assert!(report.trusted, "{:?}", report.primary);
        assert!(!report.healthy);
        assert!(
            matches!(
                report.findings.as_slice(),
                [Finding::ExpiresSoon { certificate: 0, .. }]
            ),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn a_root_the_server_sends_is_not_a_trusted_root_that_expires_soon() {
        let root = pki::root_ca_expiring_in("Unit Sent Soon Root", 10);
        let intermediate = pki::intermediate_ca("Unit Sent Soon Intermediate", &root);
        let leaf = pki::server_leaf(&["localhost"], &intermediate);
        let root = cert(&root.der);
        let chain = [cert(&leaf.der), cert(&intermediate.der), root.clone()];
        let other = cert(&pki::root_ca("Unit Sent Soon Other").der);
        let untrusted = judge(&chain, &store(&[&other]), std::slice::from_ref(&other), 30);
        assert!(
            matches!(
                untrusted.primary,
                Diagnosis::UnknownIssuer {
                    root_sent: true,
                    ..
                }
            ),
            "{:?}",
            untrusted.primary
        );
        assert!(
            !untrusted.findings.iter().any(|f| matches!(
                f,
                Finding::RootExpiresSoon { .. } | Finding::ExpiresSoon { .. }
            )),
            "{:?}",
            untrusted.findings
        );
        // Positive control: the same root, trusted, is a finding.
        let trusted = judge(&chain, &store(&[&root]), std::slice::from_ref(&root), 30);
        assert!(trusted.trusted, "{:?}", trusted.primary);
        assert!(
            matches!(
                trusted.findings.as_slice(),
                [Finding::RootExpiresSoon { subject, .. }] if subject == root.subject()
            ),
            "{:?}",
            trusted.findings
        );
    }

    #[test]
    fn a_candidate_root_expires_soon_only_in_the_trust_it_is_part_of() {
        let root = pki::root_ca_expiring_in("Unit Candidate Soon Root", 10);
        let leaf = pki::server_leaf(&["localhost"], &root);
        let root = cert(&root.der);
        let chain = [cert(&leaf.der)];
        let candidates = vec![(PathBuf::from("soon.pem"), vec![root.clone()])];
        let now = Timestamp::from_unix(chain[0].not_before().unix() + 7200);
        let empty = RootCertStore::empty();
        let base = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots: &empty,
            root_certificates: &[],
            candidates: &candidates,
            now,
            expiry_window: DEFAULT_EXPIRY_WINDOW,
            handshake_signature: None,
        };
        let report = diagnose(&chain, &base, provider());
        assert!(!report.trusted);
        assert!(
            !report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::RootExpiresSoon { .. })),
            "{:?}",
            report.findings
        );
        // Judged with the candidate in the trust (as the CLI does for --ca): now it is.
        let with = store(&[&root]);
        let report = diagnose(
            &chain,
            &DiagnoseParams {
                roots: &with,
                ..base
            },
            provider(),
        );
        assert!(report.trusted, "{:?}", report.primary);
        assert!(
            report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::RootExpiresSoon { subject, .. } if subject == root.subject())),
            "{:?}",
            report.findings
        );
    }
}

//! What Anchorage reads back: a `CertificateRequest`'s status turned into a [`Progress`] or an
//! [`IssueError`].
//!
//! The rules, in order (cert-manager's own order of precedence):
//!
//! 1. `Denied=True`: an approver refused; it never will be signed → [`IssueError::Refused`]
//!    with the approver (the condition's reason) and its message.
//! 2. `InvalidRequest=True`: the issuer refused the parameters → [`IssueError::Refused`].
//! 3. `Ready=False` with reason `Failed` or `Denied` → [`IssueError::Refused`] with the message.
//! 4. `Ready=True`: `status.certificate` is decoded (the first certificate is the leaf, the
//!    rest its chain) and `status.ca` gives the roots → [`Progress::Issued`].
//! 5. `status.failureTime` set without any of the above → [`IssueError::Refused`].
//! 6. Anything else (no status, `Approved` only, `Ready=False` reason `Pending`) →
//!    [`Progress::Pending`], with the `Ready` reason and message when there are some.
//!
//! A pure function of the object: no clock, no I/O.

use std::fmt;

use anchorage_ca::{CertificateRequest, IssueError, IssuedCertificate, IssuerId, PrivateKey, keys};
use anchorage_x509::{Certificate, decode};
use rcgen::KeyPair;
use x509_parser::prelude::FromDer as _;

use crate::issuer::BACKEND;
use crate::v1::{self, CertificateRequestCondition, condition, reason};

/// Where a request stands.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Not finished yet: waiting for approval or for the issuer.
    Pending {
        /// The `Ready` condition's reason (`Pending`, …), when set.
        reason: Option<String>,
        /// The `Ready` condition's message (`Referenced "ClusterIssuer" not found: …`), when set.
        message: Option<String>,
    },
    /// Signed.
    Issued(Box<Issued>),
}

impl fmt::Display for Progress {
    /// `pending` or `pending (Pending: Waiting on certificate issuance …)`; `issued`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Pending { reason, message } => {
                f.write_str("pending")?;
                match (reason, message) {
                    (Some(r), Some(m)) => write!(f, " ({r}: {m})"),
                    (Some(x), None) | (None, Some(x)) => write!(f, " ({x})"),
                    (None, None) => Ok(()),
                }
            }
            Progress::Issued(_) => f.write_str("issued"),
        }
    }
}

/// The certificates of a signed request, checked: the leaf, its chain, the roots, and which of
/// them signed the leaf (its signature verified).
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf, the first certificate of `status.certificate`.
    pub certificate: Certificate,
    /// The rest of `status.certificate`, nearest first, without any root also in
    /// [`roots`](Self::roots).
    pub chain: Vec<Certificate>,
    /// The certificates of `status.ca` (or, when the issuer left it empty, a self-signed root
    /// ending `status.certificate`).
    pub roots: Vec<Certificate>,
    /// The certificate that signed the leaf.
    pub issuer: IssuerId,
    /// True when the leaf is valid for more than a minute less than was asked (the issuer
    /// cut it, e.g. to end with its CA).
    pub lifetime_clamped: bool,
}

impl Issued {
    /// True when the leaf certifies `key`'s public key (so it is ours, not another request's).
    pub fn matches_key(&self, key: &KeyPair) -> bool {
        keys::matches_certificate(key, self.certificate.der())
    }

    /// The [`IssuedCertificate`] to hand out, with the key the CSR was made with.
    pub fn into_issued_certificate(self, private_key: PrivateKey) -> IssuedCertificate {
        IssuedCertificate {
            certificate: self.certificate,
            private_key: Some(private_key),
            chain: self.chain,
            validating_roots: self.roots,
            issuer: self.issuer,
            lifetime_clamped: self.lifetime_clamped,
        }
    }
}

/// Reads where `object` (the `CertificateRequest` made for `request`) stands; see the module
/// docs for the rules. Errors name the object and quote cert-manager's reason and message.
pub fn read_status(
    object: &v1::CertificateRequest,
    request: &CertificateRequest,
) -> Result<Progress, IssueError> {
    let name = describe(object);
    let refused = |reason: String| IssueError::Refused {
        backend: BACKEND,
        identity: request.identity.clone(),
        reason,
    };
    let Some(status) = &object.status else {
        return Ok(Progress::Pending {
            reason: None,
            message: None,
        });
    };
    let is_true = |c: &&CertificateRequestCondition| c.status == "True";

    if let Some(denied) = status.condition(condition::DENIED).filter(is_true) {
        return Err(refused(format!("{name} was denied{}", said(denied))));
    }
    if let Some(invalid) = status.condition(condition::INVALID_REQUEST).filter(is_true) {
        return Err(refused(format!(
            "{name} was found invalid by the issuer{}",
            said(invalid)
        )));
    }
    let ready = status.condition(condition::READY);
    if let Some(ready) = ready.filter(|c| c.status == "False") {
        match ready.reason.as_deref() {
            Some(reason::FAILED) => {
                return Err(refused(format!("{name} failed{}", said_message(ready))));
            }
            Some(reason::DENIED) => {
                return Err(refused(format!("{name} was denied{}", said_message(ready))));
            }
            _ => {}
        }
    }
    if ready.is_some_and(|c| c.status == "True") {
        return issued(&name, status, request).map(|i| Progress::Issued(Box::new(i)));
    }
    if let Some(time) = &status.failure_time {
        return Err(refused(format!(
            "{name} failed at {} without saying why",
            time.0
        )));
    }
    Ok(Progress::Pending {
        reason: ready.and_then(|c| c.reason.clone()),
        message: ready.and_then(|c| c.message.clone()),
    })
}

/// `CertificateRequest namespace/name` (or the `generateName` prefix before creation).
pub(crate) fn describe(object: &v1::CertificateRequest) -> String {
    let name = object
        .metadata
        .name
        .clone()
        .or_else(|| {
            object
                .metadata
                .generate_name
                .as_ref()
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_default();
    match &object.metadata.namespace {
        Some(ns) => format!("CertificateRequest {ns}/{name}"),
        None => format!("CertificateRequest {name}"),
    }
}

/// ` (reason): message`, ` (reason)`, `: message` or nothing.
fn said(condition: &CertificateRequestCondition) -> String {
    let reason = condition
        .reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("{reason}{}", said_message(condition))
}

/// `: message` or nothing.
fn said_message(condition: &CertificateRequestCondition) -> String {
    condition
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn backend(message: String) -> IssueError {
    IssueError::Backend {
        backend: BACKEND,
        message,
    }
}

/// Decodes every certificate of a PEM field; anything else in it is an error.
fn certificates(name: &str, field: &str, pem: &[u8]) -> Result<Vec<Certificate>, IssueError> {
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let decoded = decode(pem);
    if let Some(problem) = decoded.problems.first() {
        let at = problem
            .position
            .line
            .map(|l| format!(" at line {l}"))
            .unwrap_or_default();
        return Err(backend(format!(
            "{field} of {name} does not decode{at}: {}",
            problem.error
        )));
    }
    Ok(decoded
        .certificates
        .into_iter()
        .map(|found| found.certificate)
        .collect())
}

fn issued(
    name: &str,
    status: &v1::CertificateRequestStatus,
    request: &CertificateRequest,
) -> Result<Issued, IssueError> {
    let pem = status
        .certificate
        .as_ref()
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let mut certs = certificates(name, "status.certificate", pem)?.into_iter();
    let certificate = certs.next().ok_or_else(|| {
        backend(format!(
            "{name} is Ready but status.certificate holds no certificate"
        ))
    })?;
    let mut chain: Vec<Certificate> = certs.collect();
    let ca_pem = status
        .ca
        .as_ref()
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let mut roots = certificates(name, "status.ca", ca_pem)?;
    if roots.is_empty() && chain.last().is_some_and(Certificate::is_self_signed) {
        roots.extend(chain.pop());
    }
    chain.retain(|c| !roots.iter().any(|r| r.sha256() == c.sha256()));

    let signer = signer_of(&certificate, chain.iter().chain(&roots)).ok_or_else(|| {
        if chain.is_empty() && roots.is_empty() {
            backend(format!(
                "{name} holds no CA certificate: status.ca is empty (issuers set it on a best-effort basis) and status.certificate has no issuer certificate; use an issuer that publishes its CA, such as the CA or Vault issuers"
            ))
        } else {
            backend(format!(
                "the certificate in {name} ({}) is not signed by any certificate in status.certificate or status.ca (issuer {})",
                certificate.subject(),
                certificate.issuer()
            ))
        }
    })?;

    let lifetime = certificate.not_after().unix() - certificate.not_before().unix();
    let asked = i64::try_from(request.lifetime.as_secs()).unwrap_or(i64::MAX);
    Ok(Issued {
        issuer: IssuerId::of(signer),
        lifetime_clamped: lifetime.saturating_add(60) < asked,
        certificate,
        chain,
        roots,
    })
}

/// The first of `candidates` whose subject is the leaf's issuer and whose key verifies the
/// leaf's signature.
fn signer_of<'a>(
    leaf: &Certificate,
    candidates: impl Iterator<Item = &'a Certificate>,
) -> Option<&'a Certificate> {
    let (_, leaf_x509) = x509_parser::certificate::X509Certificate::from_der(leaf.der()).ok()?;
    candidates
        .filter(|c| c.subject_der() == leaf.issuer_der())
        .find(|c| {
            x509_parser::certificate::X509Certificate::from_der(c.der())
                .is_ok_and(|(_, ca)| leaf_x509.verify_signature(Some(ca.public_key())).is_ok())
        })
}

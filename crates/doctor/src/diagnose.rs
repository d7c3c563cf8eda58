//! Judging a presented chain: one primary [`Diagnosis`], secondary [`Finding`]s, and the [`Fix`].
//!
//! This module owns the verdict. Trust is decided by rustls's `WebPkiServerVerifier` against the
//! caller's `RootCertStore` (so the doctor agrees with every rustls client built from the same
//! trust); this module then explains that verdict from the certificates themselves (a refused
//! SHA-1 signature or short RSA key becomes a weak-crypto diagnosis rather than a bad signature,
//! webpki's `CaUsedAsEndEntity` a CA-as-leaf one, or a self-signed-leaf one marked `is_ca` when
//! the CA certificate is its own issuer; a leaf whose RSA key is too
//! short for rustls to check the handshake signature with is not trusted even when its chain
//! verifies) and looks for what rustls does not report (weak certificates off the path, order,
//! extra certificates, near expiry). Both [`Diagnosis`] and [`Finding`] display as one sentence
//! naming the certificate as `[index] subject`. It does no I/O: candidate CA files come in
//! already read.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::{Certificate, Sha256Fingerprint, Timestamp};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use serde::Serialize;

use crate::chain::{self, ChainEntry, Link};
use crate::danger::HandshakeSignature;

/// Everything [`diagnose`] judges a chain by, besides the chain. Plain data.
#[derive(Clone, Copy, Debug)]
pub struct DiagnoseParams<'a> {
    /// The target as the user typed it, for commands in the fix (`anchorage doctor TARGET …`).
    pub target: &'a str,
    /// The name the chain must be valid for (SNI / `--servername`).
    pub server_name: &'a str,
    /// The trust to verify against (e.g. from `anchorage_trust::tls::TrustConfig::root_store`).
    pub roots: &'a RootCertStore,
    /// Root certificates behind `roots`, when the caller has them: used only for the validity
    /// dates of the root a chain ends at, to warn that it expires soon (a `RootCertStore` keeps
    /// no validity dates). A root is warned about only when `roots` holds it as a trust anchor.
    pub root_certificates: &'a [Certificate],
    /// CA files the user offered (`--ca`), already read: which of them would fix the chain.
    pub candidates: &'a [(PathBuf, Vec<Certificate>)],
    /// The time to judge validity at.
    pub now: Timestamp,
    /// Warn when a certificate on the path expires within this window.
    pub expiry_window: Duration,
    /// The outcome of the real check of the server's handshake signature, from
    /// [`crate::Captured::handshake_signature`] (`None`: not known, e.g. a chain read from a
    /// file). A failed one is never trusted, whatever the chain.
    pub handshake_signature: Option<&'a HandshakeSignature>,
}

/// The default `expiry_window`: 30 days.
pub const DEFAULT_EXPIRY_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The one verdict on a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Diagnosis {
    /// rustls accepts the chain for the name.
    Trusted {
        /// Subject of the trust anchor the path ends at.
        anchor: String,
        /// True when that anchor is an intermediate CA (not self-issued) that was given as a
        /// trust anchor, e.g. `doctor --ca intermediate.pem`: rustls accepts the path, but
        /// OpenSSL-based clients need the root above it unless they set partial-chain.
        anchor_is_intermediate: bool,
        /// The issuer of that intermediate (the root OpenSSL clients would need), when
        /// [`Self::Trusted::anchor_is_intermediate`].
        #[serde(skip_serializing_if = "Option::is_none")]
        anchor_issuer: Option<String>,
    },
    /// The server sent no certificate.
    NoCertificate,
    /// The chain ends at an issuer the trust does not hold.
    UnknownIssuer {
        /// Index of the last certificate of the issuing path (its issuer is missing).
        certificate: usize,
        /// That certificate's subject.
        subject: String,
        /// The issuer name nobody trusted holds.
        missing_issuer: String,
        /// The authority key id of the missing issuer (hex), when the certificate names it.
        authority_key_id: Option<String>,
        /// True when the last certificate is a root the server sent itself.
        root_sent: bool,
        /// True when a trusted root carries the missing issuer's name but another key (a
        /// re-keyed or impostor CA): the certificate was not signed by the root you trust.
        same_name_trusted: bool,
        /// Candidate files holding the missing issuer.
        candidate_files: Vec<PathBuf>,
    },
    /// The server sent its leaf alone, and the leaf's issuer is not a trusted root.
    MissingIntermediate {
        /// The leaf's issuer: the intermediate the server should send.
        issuer: String,
        /// The leaf's authority key id (hex).
        authority_key_id: Option<String>,
        /// Where the leaf says its issuer can be downloaded (AIA caIssuers).
        aia_ca_issuers: Vec<String>,
        /// Candidate files holding the missing issuer.
        candidate_files: Vec<PathBuf>,
    },
    /// The leaf is self-signed (its own issuer), whether or not it is a CA certificate.
    ///
    /// A self-signed certificate with basic constraints `cA=FALSE` is trusted once the trust
    /// holds it, so this diagnosis means it is not in the trust. One marked `cA=TRUE` (as
    /// `openssl req -x509` makes by default) is refused by rustls/webpki as the server's
    /// certificate even when the trust holds it (`in_trust`): it must be reissued with `cA=FALSE`
    /// (or issued by a CA) before any rustls client accepts it.
    SelfSignedLeaf {
        /// Its subject.
        subject: String,
        /// Its SHA-256 fingerprint.
        sha256: Sha256Fingerprint,
        /// It is marked as a CA certificate (basic constraints `cA=TRUE`).
        is_ca: bool,
        /// The trust holds this very certificate as a root. That is enough for rustls only when
        /// it is not a CA certificate: with `is_ca` it is refused all the same.
        in_trust: bool,
    },
    /// A certificate on the path has expired.
    Expired {
        /// Its index in the chain as sent.
        certificate: usize,
        /// Its subject.
        subject: String,
        /// When it expired.
        not_after: Timestamp,
        /// How long ago, in seconds.
        seconds_ago: i64,
    },
    /// A certificate on the path is not valid yet.
    NotYetValid {
        /// Its index in the chain as sent.
        certificate: usize,
        /// Its subject.
        subject: String,
        /// When it becomes valid.
        not_before: Timestamp,
        /// In how many seconds.
        seconds_until: i64,
    },
    /// The leaf is not valid for the name asked for.
    NameMismatch {
        /// The name asked for.
        asked: String,
        /// The leaf's subject alternative names.
        presented: Vec<String>,
    },
    /// A certificate's (extended) key usage does not allow TLS server authentication.
    WrongKeyUsage {
        /// Its index in the chain as sent.
        certificate: usize,
        /// Its subject.
        subject: String,
        /// Its extended key usage purposes.
        extended_key_usage: Vec<String>,
    },
    /// A signature in the chain does not verify.
    BadSignature {
        /// The certificate whose signature fails, when known.
        certificate: Option<usize>,
        /// What rustls said.
        detail: String,
    },
    /// The server presents a CA certificate (basic constraints `cA=TRUE`) that is not
    /// self-issued as its own certificate: it is configured with its CA's certificate instead of
    /// the one issued to it. (A self-issued CA certificate as the leaf, trusted or not, is a
    /// [`Self::SelfSignedLeaf`] with `is_ca`.)
    CaUsedAsLeaf {
        /// The CA certificate's subject.
        subject: String,
        /// Its issuer.
        issuer: String,
    },
    /// A certificate on the path is signed with SHA-1 or MD5, which rustls refuses.
    WeakSignature {
        /// Its index in the chain as sent.
        certificate: usize,
        /// Its subject.
        subject: String,
        /// The signature algorithm (by name, or OID).
        algorithm: String,
    },
    /// A certificate on the path has an RSA key shorter than 2048 bits, which rustls refuses
    /// (to verify the signatures it makes, on certificates or in the handshake).
    WeakKey {
        /// Its index in the chain as sent.
        certificate: usize,
        /// Its subject.
        subject: String,
        /// The key size.
        bits: u32,
    },
    /// rustls refused the chain for another reason.
    Untrusted {
        /// What rustls said.
        error: String,
    },
    /// The chain verifies, but the server's handshake signature does not: made with a scheme
    /// rustls refuses (RSA or ECDSA with SHA-1), or not verifying with the leaf's key. Every
    /// rustls client refuses the server.
    HandshakeSignatureFailed {
        /// The signature scheme the server used, as rustls names it (e.g. `RSA_PKCS1_SHA1`).
        scheme: String,
        /// True when the scheme itself is refused (SHA-1, MD5), rather than the signature.
        weak_scheme: bool,
        /// What rustls said.
        detail: String,
    },
}

/// A secondary observation. Any finding makes a trusted chain not "healthy".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A certificate on the path has expired (besides the primary diagnosis).
    Expired {
        /// Index in the chain as sent.
        certificate: usize,
        /// Subject.
        subject: String,
        /// When it expired.
        not_after: Timestamp,
    },
    /// A certificate on the path is not valid yet (besides the primary diagnosis).
    NotYetValid {
        /// Index in the chain as sent.
        certificate: usize,
        /// Subject.
        subject: String,
        /// When it becomes valid.
        not_before: Timestamp,
    },
    /// The leaf is not valid for the name asked for (besides the primary diagnosis).
    NameMismatch {
        /// The name asked for.
        asked: String,
        /// The leaf's subject alternative names.
        presented: Vec<String>,
    },
    /// The leaf's extended key usage lacks serverAuth (besides the primary diagnosis).
    WrongKeyUsage {
        /// Index in the chain as sent.
        certificate: usize,
        /// Its extended key usage purposes.
        extended_key_usage: Vec<String>,
    },
    /// A certificate is signed with SHA-1 (or MD5).
    WeakSignature {
        /// Index in the chain as sent.
        certificate: usize,
        /// Subject.
        subject: String,
        /// The signature algorithm.
        algorithm: String,
    },
    /// An RSA key shorter than 2048 bits.
    WeakKey {
        /// Index in the chain as sent.
        certificate: usize,
        /// Subject.
        subject: String,
        /// Key size.
        bits: u32,
    },
    /// The server sent the issuing path in another order than leaf, issuer, issuer's issuer.
    ChainOutOfOrder {
        /// The path as indices into the chain as sent (`[0, 2, 1]`).
        path: Vec<usize>,
    },
    /// Certificates sent that are not on the issuing path.
    ExtraCertificates {
        /// Their indices in the chain as sent.
        certificates: Vec<usize>,
        /// Their subjects.
        subjects: Vec<String>,
    },
    /// A certificate on the path expires within the window.
    ExpiresSoon {
        /// Index in the chain as sent.
        certificate: usize,
        /// Subject.
        subject: String,
        /// When it expires.
        not_after: Timestamp,
        /// Seconds left.
        seconds_left: i64,
    },
    /// The trusted root the path ends at (a trust anchor of the verdict, not a root the server
    /// merely sent) expires within the window.
    RootExpiresSoon {
        /// The root's subject.
        subject: String,
        /// When it expires.
        not_after: Timestamp,
        /// Seconds left.
        seconds_left: i64,
    },
    /// The server's handshake signature did not verify (besides a primary diagnosis about the
    /// chain).
    HandshakeSignatureFailed {
        /// The signature scheme the server used.
        scheme: String,
        /// What rustls said.
        detail: String,
    },
}

/// What to do about the diagnosis: a sentence and the commands to run, if any. Never "disable
/// verification".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// What to do, in one or more sentences.
    pub summary: String,
    /// Commands that carry it out (shell syntax, paths quoted when needed).
    pub commands: Vec<String>,
}

/// The doctor's report on one chain. Serialises to the stable JSON of `--output json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The name the chain was judged for.
    pub server_name: String,
    /// The time it was judged at.
    pub now: Timestamp,
    /// True when a rustls client would accept the server: its verifier accepts the chain for
    /// the name, and the leaf's key is one rustls can check the handshake signature with.
    pub trusted: bool,
    /// Trusted and without findings.
    pub healthy: bool,
    /// The verdict.
    pub primary: Diagnosis,
    /// Secondary observations.
    pub findings: Vec<Finding>,
    /// The chain as sent.
    pub chain: Vec<ChainEntry>,
    /// The issuing path, as indices into `chain` starting at the leaf.
    pub path: Vec<usize>,
    /// The name constraints of the trusted root the path ends at, when it has them (a root
    /// made by `ca init --permitted-*`): the names it can vouch for. Constraints of
    /// certificates the server sent are on their [`ChainEntry`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_name_constraints: Option<anchorage_x509::NameConstraints>,
    /// What to do.
    pub fix: Fix,
}

/// `[i] subject`: how a sentence names a certificate of the chain.
struct Named<'a>(usize, &'a str);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.0, self.1)
    }
}

/// `DNS:a, IP:b`, or a note that there is none.
fn names_held(presented: &[String]) -> String {
    if presented.is_empty() {
        "no subjectAltName at all".to_owned()
    } else {
        presented.join(", ")
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One sentence: the kind of problem, then the certificate (`[index] subject`) and the facts.
impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trusted {
                anchor,
                anchor_is_intermediate: false,
                ..
            } => {
                write!(f, "trusted: the chain leads to the trusted root {anchor}")
            }
            Self::Trusted { anchor, .. } => write!(
                f,
                "trusted through an intermediate given as a trust anchor: the chain leads to {anchor}, an intermediate CA (not a root) that the trust holds as an anchor"
            ),
            Self::NoCertificate => f.write_str("no certificate: the server presented none"),
            Self::UnknownIssuer {
                certificate,
                subject,
                missing_issuer,
                authority_key_id,
                root_sent,
                same_name_trusted,
                candidate_files,
            } => {
                let key = authority_key_id
                    .as_ref()
                    .map(|k| format!(" (key id {k})"))
                    .unwrap_or_default();
                if *root_sent {
                    write!(
                        f,
                        "unknown issuer: the server sent its own root {}, which the trust does not hold",
                        Named(*certificate, subject)
                    )?;
                } else {
                    write!(
                        f,
                        "unknown issuer: {} is issued by {missing_issuer}{key}, which the trust does not hold",
                        Named(*certificate, subject)
                    )?;
                }
                if *same_name_trusted {
                    f.write_str(" (a trusted root has that name but another key)")?;
                }
                if !candidate_files.is_empty() {
                    write!(
                        f,
                        "; {} holds the missing issuer",
                        join_paths(candidate_files)
                    )?;
                }
                Ok(())
            }
            Self::MissingIntermediate {
                issuer,
                authority_key_id,
                aia_ca_issuers,
                candidate_files,
            } => {
                let key = authority_key_id
                    .as_ref()
                    .map(|k| format!(" (key id {k})"))
                    .unwrap_or_default();
                write!(
                    f,
                    "missing intermediate: the server sent only its leaf; its issuer {issuer}{key} was not sent"
                )?;
                if !aia_ca_issuers.is_empty() {
                    write!(f, " (download: {})", aia_ca_issuers.join(", "))?;
                }
                if !candidate_files.is_empty() {
                    write!(f, "; {} holds it", join_paths(candidate_files))?;
                }
                Ok(())
            }
            Self::SelfSignedLeaf {
                subject,
                sha256,
                is_ca: false,
                ..
            } => write!(
                f,
                "self-signed leaf: {} is its own issuer and not trusted (SHA-256 {sha256})",
                Named(0, subject)
            ),
            Self::SelfSignedLeaf {
                subject,
                sha256,
                is_ca: true,
                in_trust,
            } => write!(
                f,
                "self-signed leaf: {} is its own issuer and marked as a CA certificate (basicConstraints CA:TRUE), which rustls refuses as a server certificate {} (SHA-256 {sha256})",
                Named(0, subject),
                if *in_trust {
                    "although the trust holds it"
                } else {
                    "even when trusted; it is not trusted either"
                }
            ),
            Self::CaUsedAsLeaf { subject, issuer } => write!(
                f,
                "CA used as leaf: {} is a CA certificate (issued by {issuer}), served where the server's own certificate belongs",
                Named(0, subject)
            ),
            Self::Expired {
                certificate,
                subject,
                not_after,
                seconds_ago,
            } => write!(
                f,
                "expired: {} expired {} ago ({not_after})",
                Named(*certificate, subject),
                chain::duration(*seconds_ago)
            ),
            Self::NotYetValid {
                certificate,
                subject,
                not_before,
                seconds_until,
            } => write!(
                f,
                "not yet valid: {} is valid only from {not_before} (in {})",
                Named(*certificate, subject),
                chain::duration(*seconds_until)
            ),
            Self::NameMismatch { asked, presented } => write!(
                f,
                "name mismatch: asked for {asked}, the certificate holds {}",
                names_held(presented)
            ),
            Self::WrongKeyUsage {
                certificate,
                subject,
                extended_key_usage,
            } => write!(
                f,
                "wrong key usage: {} has extended key usage {} without serverAuth",
                Named(*certificate, subject),
                extended_key_usage.join(", ")
            ),
            Self::WeakSignature {
                certificate,
                subject,
                algorithm,
            } => write!(
                f,
                "weak signature: {} is signed with {algorithm}, which rustls refuses",
                Named(*certificate, subject)
            ),
            Self::WeakKey {
                certificate,
                subject,
                bits,
            } => write!(
                f,
                "weak key: {} has an RSA key of {bits} bits; rustls requires at least 2048",
                Named(*certificate, subject)
            ),
            Self::BadSignature {
                certificate: Some(i),
                detail,
            } => write!(
                f,
                "bad signature: the signature on [{i}] does not verify with the key of the certificate sent after it ({detail})"
            ),
            Self::BadSignature {
                certificate: None,
                detail,
            } => write!(
                f,
                "bad signature: a signature in the chain does not verify ({detail})"
            ),
            Self::Untrusted { error } => write!(f, "untrusted: rustls refused the chain: {error}"),
            Self::HandshakeSignatureFailed {
                scheme,
                weak_scheme: true,
                detail,
            } => write!(
                f,
                "handshake signature failed: the server signed the TLS handshake with {scheme}, which rustls refuses ({detail}); no rustls client connects, whatever the chain"
            ),
            Self::HandshakeSignatureFailed {
                scheme,
                weak_scheme: false,
                detail,
            } => write!(
                f,
                "handshake signature failed: the server's {scheme} handshake signature does not verify with the key of its certificate ({detail})"
            ),
        }
    }
}

/// One sentence, like [`Diagnosis`]'s.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired {
                certificate,
                subject,
                not_after,
            } => write!(
                f,
                "expired: {} expired at {not_after}",
                Named(*certificate, subject)
            ),
            Self::NotYetValid {
                certificate,
                subject,
                not_before,
            } => write!(
                f,
                "not yet valid: {} is valid only from {not_before}",
                Named(*certificate, subject)
            ),
            Self::NameMismatch { asked, presented } => write!(
                f,
                "name mismatch: asked for {asked}, the certificate holds {}",
                names_held(presented)
            ),
            Self::WrongKeyUsage {
                certificate,
                extended_key_usage,
            } => write!(
                f,
                "wrong key usage: [{certificate}] has extended key usage {} without serverAuth",
                extended_key_usage.join(", ")
            ),
            Self::WeakSignature {
                certificate,
                subject,
                algorithm,
            } => write!(
                f,
                "weak signature: {} is signed with {algorithm}",
                Named(*certificate, subject)
            ),
            Self::WeakKey {
                certificate,
                subject,
                bits,
            } => write!(
                f,
                "weak key: {} has an RSA key of only {bits} bits",
                Named(*certificate, subject)
            ),
            Self::ChainOutOfOrder { path } => {
                let order = path
                    .iter()
                    .map(|i| format!("[{i}]"))
                    .collect::<Vec<_>>()
                    .join(" → ");
                write!(
                    f,
                    "chain out of order: the issuing path is {order}, not the order sent"
                )
            }
            Self::ExtraCertificates {
                certificates,
                subjects,
            } => {
                let list = certificates
                    .iter()
                    .zip(subjects)
                    .map(|(&i, s)| Named(i, s).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let verb = if certificates.len() == 1 { "is" } else { "are" };
                write!(
                    f,
                    "extra certificates: {list} {verb} sent but not on the issuing path"
                )
            }
            Self::ExpiresSoon {
                certificate,
                subject,
                not_after,
                seconds_left,
            } => write!(
                f,
                "expires soon: {} expires in {} ({not_after})",
                Named(*certificate, subject),
                chain::duration(*seconds_left)
            ),
            Self::RootExpiresSoon {
                subject,
                not_after,
                seconds_left,
            } => write!(
                f,
                "root expires soon: the trusted root {subject} expires in {} ({not_after})",
                chain::duration(*seconds_left)
            ),
            Self::HandshakeSignatureFailed { scheme, detail } => write!(
                f,
                "handshake signature failed: the server signed the handshake with {scheme}, which does not verify ({detail})"
            ),
        }
    }
}

/// Judges `chain` (leaf first, as sent) with `provider`'s signature algorithms.
pub fn diagnose(
    chain: &[Certificate],
    params: &DiagnoseParams<'_>,
    provider: Arc<CryptoProvider>,
) -> Report {
    let now = params.now;
    let entries = chain::describe(chain, now);
    let path = chain::issuing_path(chain);
    let verdict = verify(chain, params, provider);
    tracing::debug!(server_name = params.server_name, ?verdict, "rustls verdict");
    let primary = match &verdict {
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
        Ok(()) => match trust_anchor(chain, &path, params) {
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
        Err(error) => classify(chain, &path, params, error),
    };
    let mut findings = if chain.is_empty() {
        Vec::new()
    } else {
        findings(chain, &path, params, &primary)
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
    let fix = fix(chain, params, &primary, &findings);
    let trusted = matches!(primary, Diagnosis::Trusted { .. });
    let root_name_constraints = path_root(chain, &path, params)
        .and_then(Certificate::name_constraints)
        .cloned();
    Report {
        server_name: params.server_name.to_owned(),
        now,
        trusted,
        healthy: trusted && findings.is_empty(),
        primary,
        findings,
        chain: entries,
        path,
        root_name_constraints,
        fix,
    }
}

/// The handshake signature's record when its check failed.
fn failed_signature<'a>(params: &DiagnoseParams<'a>) -> Option<&'a HandshakeSignature> {
    params.handshake_signature.filter(|s| !s.verified)
}

fn unix_time(now: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now.unix()).unwrap_or(0)))
}

fn verify(
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
fn is_anchor(roots: &RootCertStore, cert: &Certificate) -> bool {
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

fn findings(
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
fn path_root<'a>(
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

/// A path as a shell word: bare when it is plain, else in single quotes.
fn shell_quote(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    if !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',')
        })
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn bundle_command(file: &std::path::Path) -> String {
    format!(
        "anchorage bundle build {} --mozilla --pem ca-bundle.pem",
        shell_quote(file)
    )
}

fn save_chain_command(target: &str) -> String {
    format!("anchorage doctor {target} --save-chain presented-chain.pem")
}

fn fix(
    chain: &[Certificate],
    params: &DiagnoseParams<'_>,
    primary: &Diagnosis,
    findings: &[Finding],
) -> Fix {
    let fix = |summary: String, commands: Vec<String>| Fix { summary, commands };
    match primary {
        Diagnosis::Trusted {
            anchor,
            anchor_is_intermediate: true,
            anchor_issuer,
        } => {
            let root = anchor_issuer
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let holder = params.candidates.iter().find(|(_, certs)| {
                certs
                    .iter()
                    .any(|c| c.subject() == anchor && is_anchor(params.roots, c))
            });
            let mut summary = format!(
                "the chain is trusted through the intermediate {anchor}, given as a trust anchor: rustls (wasmCloud), Go, Java and Node.js accept that, but OpenSSL-based clients (curl, Python, Ruby, openssl) also need the root above it{root} unless they set partial-chain (X509_V_FLAG_PARTIAL_CHAIN, `openssl verify -partial_chain`); trust that root instead where you can"
            );
            if let Some((file, _)) = holder {
                summary.push_str(&format!(
                    ". To keep trusting {} as it is, the command below builds a bundle of it plus Mozilla's roots",
                    file.display()
                ));
            }
            if !findings.is_empty() {
                summary.push_str(
                    ". The findings above are for the server's operator to address before they become failures",
                );
            }
            fix(
                summary,
                holder
                    .map(|(file, _)| vec![bundle_command(file)])
                    .unwrap_or_default(),
            )
        }
        Diagnosis::Trusted { .. } if findings.is_empty() => {
            fix("nothing to fix: the chain is trusted and healthy".into(), Vec::new())
        }
        Diagnosis::Trusted { .. } => fix(
            "the chain is trusted; the findings above are for the server's operator to address before they become failures".into(),
            Vec::new(),
        ),
        Diagnosis::NoCertificate => fix(
            "the server presented no certificate: configure it with a certificate and key".into(),
            Vec::new(),
        ),
        Diagnosis::UnknownIssuer {
            missing_issuer,
            authority_key_id,
            root_sent,
            same_name_trusted,
            candidate_files,
            subject,
            ..
        } => {
            let key_note = if *same_name_trusted {
                " (a trusted root has that name but a different key: the CA got a new key, or this is not the CA you trust)"
            } else {
                ""
            };
            if let Some(first) = candidate_files.first() {
                let files = candidate_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                fix(
                    format!(
                        "{files} holds the missing issuer {missing_issuer}{key_note}: add it to the trust you use (the command below builds a bundle of it plus Mozilla's roots; point your client at ca-bundle.pem, or pass --ca {} to check again)",
                        shell_quote(first)
                    ),
                    vec![bundle_command(first)],
                )
            } else if *root_sent {
                fix(
                    format!(
                        "the server sent its root {subject}, which you do not trust{key_note}. Save the chain for review, confirm the root's SHA-256 fingerprint with its owner out of band, and trust it explicitly only if it is intended (anchorage bundle build <root file> --mozilla --pem ca-bundle.pem)"
                    ),
                    vec![save_chain_command(params.target)],
                )
            } else {
                let key = authority_key_id
                    .as_ref()
                    .map(|k| format!(" (key id {k})"))
                    .unwrap_or_default();
                fix(
                    format!(
                        "none of the trusted roots is {missing_issuer}{key}{key_note}. Get that CA certificate from your PKI team or the server's operator, check its fingerprint, then add it to your trust; pass it with --ca FILE to check first"
                    ),
                    vec!["anchorage bundle build <issuer file> --mozilla --pem ca-bundle.pem".into()],
                )
            }
        }
        Diagnosis::MissingIntermediate {
            issuer,
            aia_ca_issuers,
            candidate_files,
            ..
        } => {
            let mut summary = format!(
                "the server sent only its own certificate; it must also send the intermediate {issuer} (configure its certificate chain file: the leaf followed by the intermediate)"
            );
            if let Some(url) = aia_ca_issuers.first() {
                summary.push_str(&format!(
                    "; the leaf says the intermediate can be downloaded from {url}"
                ));
            }
            if let Some(file) = candidate_files.first() {
                summary.push_str(&format!(
                    "; {} holds it: append it to the server's chain file",
                    file.display()
                ));
            }
            summary.push_str(&format!(
                ". If {issuer} is your own root rather than an intermediate, trust it instead: anchorage bundle build <root file> --mozilla --pem ca-bundle.pem"
            ));
            fix(summary, Vec::new())
        }
        Diagnosis::SelfSignedLeaf {
            subject,
            sha256,
            is_ca: false,
            ..
        } => fix(
            format!(
                "the server presents a self-signed certificate {subject} (SHA-256 {sha256}). Better, have it issued by your CA. Otherwise save it for review, confirm the fingerprint with the server's operator, and trust that certificate explicitly only if that is intended"
            ),
            vec![save_chain_command(params.target)],
        ),
        Diagnosis::SelfSignedLeaf {
            subject,
            sha256,
            is_ca: true,
            in_trust,
        } => fix(
            format!(
                "the server's self-signed certificate {subject} (SHA-256 {sha256}) is marked CA:TRUE; rustls-based clients (and webpki) refuse a CA certificate as a server certificate even when it is trusted{}. Reissue it with basicConstraints CA:FALSE (openssl req -x509 … -addext basicConstraints=critical,CA:FALSE, with a subjectAltName for {}) or, better, issue it from your CA, and install the new certificate on the server{}",
                if *in_trust { ", as it is here" } else { ", so trusting it would not help" },
                params.server_name,
                if *in_trust {
                    "; then trust the new certificate (or your CA) instead of this one"
                } else {
                    "; then review it and trust it (or your CA) explicitly only if that is intended"
                }
            ),
            Vec::new(),
        ),
        Diagnosis::Expired {
            certificate,
            subject,
            not_after,
            seconds_ago,
        } => {
            let what = if *certificate == 0 {
                format!("the server's certificate {subject} expired {} ago ({not_after}): renew it and reload the server", chain::duration(*seconds_ago))
            } else {
                format!("certificate {certificate} of the chain, {subject}, expired {} ago ({not_after}): the server's chain file holds an old CA certificate; replace it with the current one from the CA", chain::duration(*seconds_ago))
            };
            fix(
                format!("{what}. If that date is wrong, check this machine's clock (now: {})", params.now),
                Vec::new(),
            )
        }
        Diagnosis::NotYetValid {
            subject,
            not_before,
            seconds_until,
            ..
        } => fix(
            format!(
                "{subject} is valid only from {not_before} (in {}): check this machine's clock (now: {}) and the clock of the CA that issued it",
                chain::duration(*seconds_until),
                params.now
            ),
            Vec::new(),
        ),
        Diagnosis::NameMismatch { asked, presented } => fix(
            format!(
                "the certificate is not valid for {asked}; it holds {}. Connect with a name it holds (or --servername one of them), or have it reissued with DNS:{asked} in its subjectAltName",
                if presented.is_empty() { "no subjectAltName at all".to_owned() } else { presented.join(", ") }
            ),
            Vec::new(),
        ),
        Diagnosis::WrongKeyUsage {
            subject,
            extended_key_usage,
            ..
        } => fix(
            format!(
                "{subject} may not be used by a TLS server: its extended key usage is {} without serverAuth. Have it reissued with extendedKeyUsage serverAuth",
                extended_key_usage.join(", ")
            ),
            Vec::new(),
        ),
        Diagnosis::BadSignature { certificate, .. } => fix(
            format!(
                "a signature in the chain does not verify{}: the server's chain file mixes certificates of different CAs or keys; reinstall the certificate and chain exactly as the CA issued them",
                certificate
                    .and_then(|i| chain.get(i).map(|c| format!(" ({} is not signed by the next certificate)", c.subject())))
                    .unwrap_or_default()
            ),
            Vec::new(),
        ),
        Diagnosis::CaUsedAsLeaf { subject, .. } => fix(
            format!(
                "the server is configured with its CA certificate {subject} instead of its own certificate: set its certificate file to the certificate issued to the server (for this name), followed by the intermediates; the CA certificate belongs in the trust of clients, not in the server's certificate slot"
            ),
            Vec::new(),
        ),
        Diagnosis::WeakSignature {
            certificate,
            subject,
            algorithm,
        } => fix(
            format!(
                "certificate {certificate} of the chain, {subject}, is signed with {algorithm}, which current clients refuse: have it reissued with a SHA-256 (or stronger) signature{}",
                if *certificate == 0 { " and install the new certificate on the server" } else { " and send the new CA certificate in the server's chain" }
            ),
            Vec::new(),
        ),
        Diagnosis::WeakKey {
            certificate,
            subject,
            bits,
        } => fix(
            format!(
                "certificate {certificate} of the chain, {subject}, has an RSA key of only {bits} bits, which current clients refuse: generate a new key (RSA 2048 bits or more, or ECDSA P-256) and have the certificate reissued for it{}",
                if *certificate == 0 { "" } else { "; every certificate that CA issued must be reissued too" }
            ),
            Vec::new(),
        ),
        Diagnosis::Untrusted { error } => fix(
            format!("rustls refused the chain: {error}; save it for review with --save-chain and compare it with what the CA issued"),
            vec![save_chain_command(params.target)],
        ),
        Diagnosis::HandshakeSignatureFailed {
            scheme,
            weak_scheme: true,
            ..
        } => fix(
            format!(
                "the server signs the TLS handshake with {scheme}, which current clients refuse: configure it to sign with SHA-256 or stronger (RSA-PSS, or RSA PKCS#1 / ECDSA with SHA-256): in OpenSSL-based servers remove the SHA-1 entries from the signature algorithms (SignatureAlgorithms, -sigalgs) and do not lower the security level to allow SHA-1; then run the doctor again"
            ),
            vec![format!("anchorage doctor {}", params.target)],
        ),
        Diagnosis::HandshakeSignatureFailed { scheme, .. } => fix(
            format!(
                "the server's {scheme} handshake signature does not verify with the key in its certificate: the server is configured with a private key that does not belong to its certificate (or something between it and us alters the handshake); install the key issued with the certificate"
            ),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki::{self, Pki};

    use super::*;

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
    fn diagnoses_read_as_one_sentence_naming_the_certificate() {
        let unknown = Diagnosis::UnknownIssuer {
            certificate: 1,
            subject: "CN=Corp Issuing CA".into(),
            missing_issuer: "CN=Corp Root CA".into(),
            authority_key_id: Some("ab12".into()),
            root_sent: false,
            same_name_trusted: false,
            candidate_files: Vec::new(),
        };
        assert_eq!(
            unknown.to_string(),
            "unknown issuer: [1] CN=Corp Issuing CA is issued by CN=Corp Root CA (key id ab12), which the trust does not hold"
        );
        let missing = Diagnosis::MissingIntermediate {
            issuer: "CN=Corp Issuing CA".into(),
            authority_key_id: None,
            aia_ca_issuers: vec!["http://pki.test.invalid/issuing.crt".into()],
            candidate_files: Vec::new(),
        };
        assert_eq!(
            missing.to_string(),
            "missing intermediate: the server sent only its leaf; its issuer CN=Corp Issuing CA was not sent (download: http://pki.test.invalid/issuing.crt)"
        );
        let expired = Diagnosis::Expired {
            certificate: 0,
            subject: "CN=localhost".into(),
            not_after: Timestamp::from_unix(1_800_000_000),
            seconds_ago: 3 * 86_400 + 5,
        };
        assert_eq!(
            expired.to_string(),
            format!(
                "expired: [0] CN=localhost expired 3 days ago ({})",
                Timestamp::from_unix(1_800_000_000)
            )
        );
        let name = Diagnosis::NameMismatch {
            asked: "foo.example".into(),
            presented: vec!["DNS:localhost".into(), "IP:127.0.0.1".into()],
        };
        assert_eq!(
            name.to_string(),
            "name mismatch: asked for foo.example, the certificate holds DNS:localhost, IP:127.0.0.1"
        );
    }

    #[test]
    fn findings_read_as_one_sentence_naming_the_certificate() {
        let extra = Finding::ExtraCertificates {
            certificates: vec![1, 3],
            subjects: vec!["CN=A".into(), "CN=B".into()],
        };
        assert_eq!(
            extra.to_string(),
            "extra certificates: [1] CN=A, [3] CN=B are sent but not on the issuing path"
        );
        let soon = Finding::RootExpiresSoon {
            subject: "CN=Root".into(),
            not_after: Timestamp::from_unix(1_800_000_000),
            seconds_left: 10 * 86_400,
        };
        assert!(
            soon.to_string()
                .starts_with("root expires soon: the trusted root CN=Root expires in 10 days ("),
            "{soon}"
        );
        assert_eq!(
            Finding::ChainOutOfOrder {
                path: vec![0, 2, 1]
            }
            .to_string(),
            "chain out of order: the issuing path is [0] → [2] → [1], not the order sent"
        );
    }

    /// One value of every variant; the `match` fails to compile when a variant is added, so
    /// the fix test below cannot miss one.
    fn every_diagnosis() -> Vec<Diagnosis> {
        let at = Timestamp::from_unix(1_800_000_000);
        let all = vec![
            Diagnosis::Trusted {
                anchor: "CN=Root".into(),
                anchor_is_intermediate: false,
                anchor_issuer: None,
            },
            Diagnosis::Trusted {
                anchor: "CN=Issuing".into(),
                anchor_is_intermediate: true,
                anchor_issuer: Some("CN=Root".into()),
            },
            Diagnosis::NoCertificate,
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Issuing".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: Some("ab12".into()),
                root_sent: false,
                same_name_trusted: true,
                candidate_files: Vec::new(),
            },
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Root".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: None,
                root_sent: true,
                same_name_trusted: false,
                candidate_files: Vec::new(),
            },
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Issuing".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: None,
                root_sent: false,
                same_name_trusted: false,
                candidate_files: vec![PathBuf::from("/etc/corp root.pem")],
            },
            Diagnosis::MissingIntermediate {
                issuer: "CN=Issuing".into(),
                authority_key_id: Some("ab12".into()),
                aia_ca_issuers: vec!["http://pki.test.invalid/issuing.crt".into()],
                candidate_files: vec![PathBuf::from("issuing.pem")],
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: false,
                in_trust: false,
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: true,
                in_trust: true,
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: true,
                in_trust: false,
            },
            Diagnosis::CaUsedAsLeaf {
                subject: "CN=Issuing".into(),
                issuer: "CN=Root".into(),
            },
            Diagnosis::Expired {
                certificate: 0,
                subject: "CN=localhost".into(),
                not_after: at,
                seconds_ago: 3 * 86_400,
            },
            Diagnosis::Expired {
                certificate: 1,
                subject: "CN=Issuing".into(),
                not_after: at,
                seconds_ago: 86_400,
            },
            Diagnosis::NotYetValid {
                certificate: 0,
                subject: "CN=localhost".into(),
                not_before: at,
                seconds_until: 2 * 86_400,
            },
            Diagnosis::NameMismatch {
                asked: "foo.example".into(),
                presented: vec!["DNS:localhost".into()],
            },
            Diagnosis::WrongKeyUsage {
                certificate: 0,
                subject: "CN=localhost".into(),
                extended_key_usage: vec!["clientAuth".into()],
            },
            Diagnosis::WeakSignature {
                certificate: 0,
                subject: "CN=localhost".into(),
                algorithm: "sha1WithRSAEncryption".into(),
            },
            Diagnosis::WeakKey {
                certificate: 1,
                subject: "CN=Issuing".into(),
                bits: 1024,
            },
            Diagnosis::BadSignature {
                certificate: Some(0),
                detail: "invalid peer certificate: BadSignature".into(),
            },
            Diagnosis::Untrusted {
                error: "invalid peer certificate: Other".into(),
            },
            Diagnosis::HandshakeSignatureFailed {
                scheme: "RSA_PKCS1_SHA1".into(),
                weak_scheme: true,
                detail: "peer misbehaved".into(),
            },
            Diagnosis::HandshakeSignatureFailed {
                scheme: "ECDSA_NISTP256_SHA256".into(),
                weak_scheme: false,
                detail: "invalid signature".into(),
            },
        ];
        for d in &all {
            match d {
                Diagnosis::Trusted { .. }
                | Diagnosis::NoCertificate
                | Diagnosis::UnknownIssuer { .. }
                | Diagnosis::MissingIntermediate { .. }
                | Diagnosis::SelfSignedLeaf { .. }
                | Diagnosis::CaUsedAsLeaf { .. }
                | Diagnosis::Expired { .. }
                | Diagnosis::NotYetValid { .. }
                | Diagnosis::NameMismatch { .. }
                | Diagnosis::WrongKeyUsage { .. }
                | Diagnosis::WeakSignature { .. }
                | Diagnosis::WeakKey { .. }
                | Diagnosis::BadSignature { .. }
                | Diagnosis::Untrusted { .. }
                | Diagnosis::HandshakeSignatureFailed { .. } => {}
            }
        }
        all
    }

    #[test]
    fn no_fix_ever_suggests_turning_verification_off() {
        let roots = RootCertStore::empty();
        let params = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots: &roots,
            root_certificates: &[],
            candidates: &[],
            now: Timestamp::from_unix(1_800_000_000),
            expiry_window: DEFAULT_EXPIRY_WINDOW,
            handshake_signature: None,
        };
        let finding = [Finding::ChainOutOfOrder {
            path: vec![0, 2, 1],
        }];
        for diagnosis in every_diagnosis() {
            for findings in [&[][..], &finding[..]] {
                let fix = fix(&[], &params, &diagnosis, findings);
                assert!(!fix.summary.is_empty(), "{diagnosis:?}");
                for text in std::iter::once(&fix.summary).chain(&fix.commands) {
                    let lower = text.to_ascii_lowercase();
                    for banned in ["insecure", "-k", "verify=false", "disable"] {
                        assert!(
                            !lower.contains(banned),
                            "{diagnosis:?}: fix mentions {banned:?}: {text}"
                        );
                    }
                    assert!(!text.contains("InsecureSkipVerify"), "{text}");
                }
            }
            // Every diagnosis reads as a sentence too.
            assert!(!diagnosis.to_string().is_empty());
        }
    }

    #[test]
    fn weak_crypto_fixes_say_what_to_reissue_with() {
        let params_roots = RootCertStore::empty();
        let params = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots: &params_roots,
            root_certificates: &[],
            candidates: &[],
            now: Timestamp::from_unix(1_800_000_000),
            expiry_window: DEFAULT_EXPIRY_WINDOW,
            handshake_signature: None,
        };
        let all = every_diagnosis();
        let weak_sig = all
            .iter()
            .find(|d| matches!(d, Diagnosis::WeakSignature { .. }))
            .expect("weak signature");
        assert!(fix(&[], &params, weak_sig, &[]).summary.contains("SHA-256"));
        let weak_key = all
            .iter()
            .find(|d| matches!(d, Diagnosis::WeakKey { .. }))
            .expect("weak key");
        let summary = fix(&[], &params, weak_key, &[]).summary;
        assert!(
            summary.contains("RSA 2048 bits or more") && summary.contains("P-256"),
            "{summary}"
        );
        let ca_leaf = all
            .iter()
            .find(|d| matches!(d, Diagnosis::CaUsedAsLeaf { .. }))
            .expect("ca as leaf");
        assert!(fix(&[], &params, ca_leaf, &[]).summary.contains(
            "configured with its CA certificate CN=Issuing instead of its own certificate"
        ));
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

    #[test]
    fn shell_quoting_leaves_plain_paths_bare() {
        assert_eq!(
            shell_quote(std::path::Path::new("/etc/ca.pem")),
            "/etc/ca.pem"
        );
        assert_eq!(
            shell_quote(std::path::Path::new("a b's.pem")),
            "'a b'\\''s.pem'"
        );
    }
}

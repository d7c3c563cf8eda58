//! The diagnosis types and their sentences: the primary [`Diagnosis`] and the secondary
//! [`Finding`]s, each displayed as one sentence naming the certificate as `[index] subject`.
//!
//! Plain data with `Display` and `Serialize` (the stable JSON of `--output json`); deciding
//! which one a chain gets is [`super::classify`]'s job, what to do about it [`super::fix`]'s.

use std::fmt;
use std::path::PathBuf;

use anchorage_x509::{Sha256Fingerprint, Timestamp};
use serde::Serialize;

use crate::chain;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

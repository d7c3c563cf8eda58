//! [`Policy`]: what goes into a bundle, and the [`Report`] of everything decided on the way.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anchorage_x509::{Sha256Fingerprint, Timestamp};
use serde::Serialize;

use crate::Bundle;
use crate::error::TrustError;
use crate::source::{Loaded, Origin, SourceProblem};

/// The rules that turn loaded certificates into a bundle.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The time validity is judged at.
    pub now: Timestamp,
    /// Keep expired certificates (reported either way). Default: drop them.
    pub keep_expired: bool,
    /// Make every problem and warning fatal.
    pub strict: bool,
}

impl Default for Policy {
    fn default() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            now: Timestamp::from_unix(now as i64),
            keep_expired: false,
            strict: false,
        }
    }
}

/// What the policy noticed about one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingKind {
    /// The same certificate was found again; the bundle holds it once.
    Duplicate {
        /// Where it was first found.
        first: Origin,
    },
    /// Validity ended.
    Expired {
        /// When.
        not_after: Timestamp,
        /// Whether it was dropped from the bundle.
        dropped: bool,
    },
    /// Validity has not begun (kept: clocks differ).
    NotYetValid {
        /// When it begins.
        not_before: Timestamp,
    },
    /// Neither a CA nor self-signed: a server or client certificate, which trusts nothing by itself
    /// in most clients (kept, as some pin leaves).
    LeafNotSelfSigned,
}

impl FindingKind {
    /// True for findings that `--strict` turns into errors.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Self::Duplicate { .. })
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Duplicate { first } => write!(f, "duplicate of the certificate from {first}"),
            Self::Expired { not_after, dropped: true } => {
                write!(f, "expired on {not_after}; dropped (pass --keep-expired to keep it)")
            }
            Self::Expired { not_after, dropped: false } => write!(f, "expired on {not_after}; kept"),
            Self::NotYetValid { not_before } => write!(f, "not valid before {not_before}; kept"),
            Self::LeafNotSelfSigned => f.write_str(
                "not a CA and not self-signed: a leaf certificate, which is not a trust anchor in most clients; kept — add its issuing CA instead",
            ),
        }
    }
}

/// A finding about one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Where the certificate was found.
    pub origin: Origin,
    /// Its subject.
    pub subject: String,
    /// Its SHA-256 fingerprint.
    pub sha256: Sha256Fingerprint,
    /// What was noticed.
    #[serde(flatten)]
    pub kind: FindingKind,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.origin, self.kind, self.subject)
    }
}

/// Everything noticed while building a bundle.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Sources or parts of sources that could not be used.
    pub problems: Vec<SourceProblem>,
    /// Findings about certificates that did load.
    pub findings: Vec<Finding>,
    /// Certificates read (duplicates included).
    pub certificates_read: usize,
    /// Files read.
    pub files_read: usize,
    /// Directory entries skipped by the name filter.
    pub files_skipped: usize,
}

impl Report {
    /// Problems plus warning findings: what `--strict` refuses.
    pub fn warning_count(&self) -> usize {
        self.problems.len() + self.findings.iter().filter(|f| f.kind.is_warning()).count()
    }

    /// Expired certificates the policy dropped.
    pub fn expired_dropped(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.kind, FindingKind::Expired { dropped: true, .. }))
            .count()
    }
}

impl Policy {
    /// Applies the policy. Fails on a private key (always), on any problem or warning in strict
    /// mode, and when nothing usable is left.
    pub fn apply(&self, loaded: Loaded) -> Result<(Bundle, Report), TrustError> {
        if let Some((problem, kind)) = loaded
            .problems
            .iter()
            .find_map(|p| p.error.private_key_kind().map(|k| (p, k)))
        {
            return Err(TrustError::PrivateKey {
                origin: problem.origin.clone(),
                kind: kind.into(),
            });
        }
        let mut report = Report {
            certificates_read: loaded.certificates.len(),
            files_read: loaded.files_read,
            files_skipped: loaded.files_skipped,
            ..Report::default()
        };
        let mut first_seen: HashMap<Sha256Fingerprint, Origin> = HashMap::new();
        let mut kept = Vec::with_capacity(loaded.certificates.len());
        for item in loaded.certificates {
            let cert = &item.certificate;
            let finding = |kind| Finding {
                origin: item.origin.clone(),
                subject: cert.subject().to_owned(),
                sha256: cert.sha256(),
                kind,
            };
            if let Some(first) = first_seen.get(&cert.sha256()) {
                report.findings.push(finding(FindingKind::Duplicate {
                    first: first.clone(),
                }));
                kept.push((item.certificate, item.origin));
                continue;
            }
            first_seen.insert(cert.sha256(), item.origin.clone());
            if cert.is_expired_at(self.now) {
                let dropped = !self.keep_expired;
                report.findings.push(finding(FindingKind::Expired {
                    not_after: cert.not_after(),
                    dropped,
                }));
                if dropped {
                    continue;
                }
            } else if cert.is_not_yet_valid_at(self.now) {
                report.findings.push(finding(FindingKind::NotYetValid {
                    not_before: cert.not_before(),
                }));
            }
            if !cert.is_ca() && !cert.is_self_signed() {
                report
                    .findings
                    .push(finding(FindingKind::LeafNotSelfSigned));
            }
            kept.push((item.certificate, item.origin));
        }
        // Duplicates of a dropped (expired) certificate must not bring it back.
        kept.retain(|(c, _)| self.keep_expired || !c.is_expired_at(self.now));
        report.problems = loaded.problems;

        if self.strict && report.warning_count() > 0 {
            let first = report
                .problems
                .first()
                .map(ToString::to_string)
                .or_else(|| {
                    report
                        .findings
                        .iter()
                        .find(|f| f.kind.is_warning())
                        .map(ToString::to_string)
                })
                .unwrap_or_default();
            return Err(TrustError::Strict {
                count: report.warning_count(),
                first,
                report: Box::new(report),
            });
        }
        let bundle = Bundle::new(kept);
        if bundle.is_empty() {
            return Err(TrustError::NoCertificates {
                report: Box::new(report),
            });
        }
        Ok((bundle, report))
    }
}

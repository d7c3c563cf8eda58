//! Turning library results into text and JSON. JSON shapes are documented in docs/cli.md and kept
//! stable: fields may be added, never renamed or removed.

use std::sync::atomic::{AtomicBool, Ordering};

use anchorage_trust::{Finding, Report, SourceProblem};

/// `-q/--quiet`: progress, notes and warnings are not printed (errors always are).
static QUIET: AtomicBool = AtomicBool::new(false);

/// `1 certificate`, `2 certificates`: a count with its noun in the right number (nouns that take
/// an `s`).
pub(crate) fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A JSON field as a table cell: strings as they are, `null` or absent as `-`, other values in
/// their JSON form.
pub(crate) fn json_cell(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// A text table of JSON objects: one column per `(header, key)`, cells from [`json_cell`],
/// columns padded to their widest cell and two spaces apart, trailing spaces trimmed. The header
/// line first.
pub(crate) fn json_table(columns: &[(&str, &str)], rows: &[serde_json::Value]) -> Vec<String> {
    let cells: Vec<Vec<String>> =
        std::iter::once(columns.iter().map(|(h, _)| (*h).to_owned()).collect())
            .chain(
                rows.iter()
                    .map(|r| columns.iter().map(|(_, k)| json_cell(r, k)).collect()),
            )
            .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    cells
        .iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// Sets `-q/--quiet` for the process (once, from `main`).
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// True under `-q/--quiet`.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}
use anchorage_x509::Certificate;
use serde::Serialize;

/// One certificate as `inspect` and `build --output json` show it.
#[derive(Serialize)]
pub(crate) struct CertificateView {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) serial: String,
    pub(crate) not_before: anchorage_x509::Timestamp,
    pub(crate) not_after: anchorage_x509::Timestamp,
    pub(crate) sha256: anchorage_x509::Sha256Fingerprint,
    pub(crate) sha1: anchorage_x509::Sha1Fingerprint,
    pub(crate) subject_hash: anchorage_x509::SubjectHash,
    pub(crate) ca: bool,
    pub(crate) self_signed: bool,
    pub(crate) key: String,
    pub(crate) signature_algorithm: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) subject_alt_names: Vec<String>,
    /// A CA's name constraints (the names the certificates it issues may carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name_constraints: Option<anchorage_x509::NameConstraints>,
    pub(crate) origins: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
}

impl CertificateView {
    pub(crate) fn new(cert: &Certificate, origins: Vec<String>, warnings: Vec<String>) -> Self {
        Self {
            subject: cert.subject().to_owned(),
            issuer: cert.issuer().to_owned(),
            serial: cert.serial().to_owned(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            sha256: cert.sha256(),
            sha1: cert.sha1(),
            subject_hash: cert.subject_hash(),
            ca: cert.is_ca(),
            self_signed: cert.is_self_signed(),
            key: cert.public_key().to_string(),
            signature_algorithm: cert.signature_algorithm().to_owned(),
            subject_alt_names: cert
                .subject_alt_names()
                .iter()
                .map(ToString::to_string)
                .collect(),
            name_constraints: cert.name_constraints().cloned(),
            origins,
            warnings,
        }
    }
}

/// A problem as JSON shows it.
#[derive(Serialize)]
pub(crate) struct ProblemView {
    pub(crate) origin: String,
    pub(crate) message: String,
}

impl From<&SourceProblem> for ProblemView {
    fn from(p: &SourceProblem) -> Self {
        Self {
            origin: p.origin.to_string(),
            message: p.error.to_string(),
        }
    }
}

/// Prints problems and warning findings on stderr, one line each.
pub(crate) fn warn_all(report: &Report) {
    warn_problems(&report.problems);
    for finding in report.findings.iter().filter(|f| f.kind.is_warning()) {
        warnln!("{finding}");
    }
}

/// Prints problems on stderr, one line each.
pub(crate) fn warn_problems(problems: &[SourceProblem]) {
    for problem in problems {
        warnln!("{problem}");
    }
}

/// Findings of the given certificate, as strings.
pub(crate) fn findings_for(findings: &[Finding], cert: &Certificate) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.sha256 == cert.sha256())
        .map(|f| f.kind.to_string())
        .collect()
}

/// The one printer of warnings: `anchorage: warning: …` on stderr, silent under `-q/--quiet`
/// (through the `warnln!` macro).
pub(crate) fn warning(message: std::fmt::Arguments<'_>) {
    diagln!("anchorage: warning: {message}");
}

/// The failure document of `--output json`, as [`print_failure_json`] prints it.
#[derive(Serialize)]
struct FailureDocument<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    error: &'a str,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ProblemView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    findings: Option<&'a [Finding]>,
}

/// The one printer of JSON failure documents: `{"schema", "error", "exit_code"}` with what the
/// command added ([`crate::exit::FailureJson`]), printed by `main` when a command that asked
/// for JSON failed (clap's usage errors too).
pub(crate) fn print_failure_json(failure: &crate::exit::Failure) {
    let report = failure.report.as_deref().filter(|_| failure.json.report);
    print_json(&FailureDocument {
        target: failure.json.target.as_deref(),
        error: &failure.message,
        exit_code: failure.code as u8,
        problems: failure.json.report.then(|| {
            report
                .map(|r| r.problems.iter().map(ProblemView::from).collect())
                .unwrap_or_default()
        }),
        findings: failure
            .json
            .report
            .then(|| report.map_or(&[][..], |r| &r.findings)),
    });
}

/// Prints a JSON document on stdout, with its `"schema"` field (see [`crate::io::print_json`]).
pub(crate) fn print_json<T: Serialize>(value: &T) {
    crate::io::print_json(value);
}

/// A name constraints extension in one line: `permitted DNS:cluster.local; excluded IP:…`.
pub(crate) fn constraints_text(nc: &anchorage_x509::NameConstraints) -> String {
    let list = |subtrees: &[anchorage_x509::NameSubtree]| {
        subtrees
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !nc.permitted.is_empty() {
        parts.push(format!("permitted {}", list(&nc.permitted)));
    }
    if !nc.excluded.is_empty() {
        parts.push(format!("excluded {}", list(&nc.excluded)));
    }
    format!(
        "{}{}",
        parts.join("; "),
        if nc.critical { "" } else { " (not critical)" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tables_pad_columns_and_show_absent_fields_as_a_dash() {
        let rows = [
            serde_json::json!({"consumer": "web-1", "bundle_version": 12, "missing": null}),
            serde_json::json!({"consumer": "a", "bundle_version": "3", "missing": "root B"}),
        ];
        let columns = [
            ("CONSUMER", "consumer"),
            ("BUNDLE", "bundle_version"),
            ("LEAF", "leaf"),
            ("MISSING", "missing"),
        ];
        assert_eq!(
            json_table(&columns, &rows),
            [
                "CONSUMER  BUNDLE  LEAF  MISSING",
                "web-1     12      -     -",
                "a         3       -     root B",
            ]
        );
        assert_eq!(
            json_table(&columns, &[]),
            ["CONSUMER  BUNDLE  LEAF  MISSING"]
        );
    }
}

//! `anchorage bundle inspect`.

use std::path::PathBuf;

use anchorage_trust::{Policy, TrustError, load};
use clap::Args;
use serde::Serialize;

use crate::exit::{Code, Failure};
use crate::globals::Globals;
use crate::options::{OutputFormat, ReadArgs};
use crate::render::{CertificateView, ProblemView, findings_for, print_json};

#[derive(Serialize)]
struct Inspection {
    path: String,
    certificates: Vec<CertificateView>,
    problems: Vec<ProblemView>,
}

/// `verbose`: the global `-v`; text output then shows every certificate in full, else one table
/// row each (a bundle of Mozilla's roots stays readable).
pub(crate) fn run(args: InspectArgs, globals: &Globals) -> Result<Code, Failure> {
    crate::io::check_input("PATH", &args.path)?;
    let source = crate::io::source("PATH", &args.path)?;
    let mut loaded = load(&[source], &args.read.load_options());
    let problems: Vec<ProblemView> = loaded.problems.iter().map(ProblemView::from).collect();
    let has_key = loaded
        .problems
        .iter()
        .any(|p| p.error.private_key_kind().is_some());
    // Inspect lists every certificate, expired ones included; a key is listed as a problem (by
    // location only) rather than stopping the listing.
    loaded
        .problems
        .retain(|p| p.error.private_key_kind().is_none());
    let policy = Policy {
        keep_expired: true,
        ..Policy::default()
    };
    let certificates: Vec<CertificateView> = match policy.apply(loaded) {
        Ok((bundle, report)) => bundle
            .entries()
            .iter()
            .map(|e| {
                let origins = e.origins.iter().map(ToString::to_string).collect();
                let warnings = findings_for(&report.findings, &e.certificate);
                CertificateView::new(&e.certificate, origins, warnings)
            })
            .collect(),
        Err(TrustError::NoCertificates { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let code = if has_key {
        Code::PrivateKey
    } else if certificates.is_empty() || !problems.is_empty() {
        Code::BadInput
    } else {
        Code::Ok
    };

    let inspection = Inspection {
        path: crate::io::display(&args.path),
        certificates,
        problems,
    };
    match args.output {
        OutputFormat::Json => print_json(&inspection),
        OutputFormat::Text if globals.verbose > 0 => print_text(&inspection),
        OutputFormat::Text => print_table(&inspection),
    }
    Ok(code)
}

/// One row per certificate: expiry, kind, fingerprint prefix and subject (last, so nothing is
/// cut), then the count and where the full detail is.
fn print_table(inspection: &Inspection) {
    if !inspection.certificates.is_empty() {
        outln!(
            "{:>4}  {:<10}  {:<5}  {:<16}  SUBJECT",
            "#",
            "NOT AFTER",
            "KIND",
            "SHA-256"
        );
    }
    for (i, c) in inspection.certificates.iter().enumerate() {
        let kind = match (c.ca, c.self_signed) {
            (true, true) => "root",
            (true, false) => "inter",
            (false, _) => "leaf",
        };
        let date = c.not_after.to_string();
        let sha = c.sha256.hex();
        let warnings = match c.warnings.len() {
            0 => String::new(),
            n => format!("  [{}]", crate::render::plural(n, "warning")),
        };
        outln!(
            "{:>4}  {:<10}  {:<5}  {:<16}  {}{warnings}",
            i + 1,
            date.get(..10).unwrap_or(&date),
            kind,
            sha.get(..16).unwrap_or(&sha),
            c.subject
        );
    }
    for p in &inspection.problems {
        diagln!("anchorage: problem: {}: {}", p.origin, p.message);
    }
    outln!(
        "{}, {} in {} (-v: every field; --output json: the schema of docs/cli.md)",
        crate::render::plural(inspection.certificates.len(), "certificate"),
        crate::render::plural(inspection.problems.len(), "problem"),
        inspection.path
    );
}

fn print_text(inspection: &Inspection) {
    for (i, c) in inspection.certificates.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        outln!("subject:      {}", c.subject);
        outln!("issuer:       {}", c.issuer);
        outln!("not after:    {}", c.not_after);
        outln!("sha256:       {}", c.sha256);
        outln!("subject hash: {}", c.subject_hash);
        let kind = match (c.ca, c.self_signed) {
            (true, true) => "CA, self-signed (root)",
            (true, false) => "CA (intermediate)",
            (false, true) => "not a CA, self-signed",
            (false, false) => "not a CA (leaf)",
        };
        outln!("kind:         {kind}; key {}", c.key);
        if let Some(nc) = &c.name_constraints {
            outln!("names:        {}", crate::render::constraints_text(nc));
        }
        for origin in &c.origins {
            outln!("found in:     {origin}");
        }
        for w in &c.warnings {
            outln!("warning:      {w}");
        }
    }
    for p in &inspection.problems {
        diagln!("anchorage: problem: {}: {}", p.origin, p.message);
    }
    outln!(
        "{}, {} in {}",
        crate::render::plural(inspection.certificates.len(), "certificate"),
        crate::render::plural(inspection.problems.len(), "problem"),
        inspection.path
    );
}

// The command line of this command.

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// A certificate file, bundle, directory or Kubernetes manifest; - for standard input.
    pub(crate) path: PathBuf,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

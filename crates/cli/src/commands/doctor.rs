//! `anchorage doctor`: connect, show the chain, diagnose, print the fix.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anchorage_doctor::{
    ConnectOptions, DEFAULT_EXPIRY_WINDOW, DiagnoseParams, DoctorError, Report, Target, connect,
    diagnose,
};
use anchorage_trust::tls::TrustConfig;
use anchorage_x509::{Certificate, Timestamp};
use serde::Serialize;

use crate::args::{DoctorArgs, OutputFormat};
use crate::exit::{Code, Failure};
use crate::render::print_json;

#[derive(Serialize)]
struct DoctorJson<'a> {
    target: &'a str,
    address: &'a str,
    protocol: Option<&'a str>,
    cipher_suite: Option<&'a str>,
    /// True when the chain is trusted only because of --ca files.
    trusted_only_with_ca: bool,
    #[serde(flatten)]
    report: &'a Report,
}

pub(crate) fn run(args: DoctorArgs, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    let target = Target::parse(&args.target)
        .map_err(|e| Failure::new(Code::Usage, format!("{}: {e}", args.target)))?;
    // The base trust, as a workload with these settings would have it.
    let explicit = args.system || args.mozilla;
    let base = match &args.bundle {
        Some(bundle) => TrustConfig {
            load_native_certs: false,
            load_webpki_certs: false,
            ssl_certs_file: Some(bundle.clone()),
            extra_ca_paths: tls_ca_paths.to_vec(),
        },
        None => TrustConfig {
            load_native_certs: !explicit || args.system,
            load_webpki_certs: !explicit || args.mozilla,
            ssl_certs_file: None,
            extra_ca_paths: tls_ca_paths.to_vec(),
        },
    };
    let candidates = args
        .ca
        .iter()
        .map(|p| {
            super::read_option_bundle(p, "--ca")
                .map(|b| (p.clone(), b.certificates().cloned().collect()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (base_roots, _) = base.root_store()?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let options = ConnectOptions {
        server_name: args.servername.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let captured = connect(&target, &options, provider.clone()).map_err(unreachable)?;
    if let Some(path) = &args.save_chain {
        let pem: String = captured.chain.iter().map(Certificate::to_pem).collect();
        anchorage_trust::write_file_if_changed(path, pem.as_bytes(), captured.chain.len())?;
    }
    let now = Timestamp::from_unix(time::OffsetDateTime::now_utc().unix_timestamp());
    let root_certificates = Vec::new();
    let params = |roots| DiagnoseParams {
        target: &args.target,
        server_name: &captured.server_name,
        roots,
        root_certificates: &root_certificates,
        candidates: &candidates,
        now,
        expiry_window: DEFAULT_EXPIRY_WINDOW,
    };
    // The base trust plus the --ca certificates already read: no second read of the OS store
    // or of the files. One rustls refuses as an anchor simply does not help.
    let ca_roots = (!candidates.is_empty()).then(|| {
        let mut roots = base_roots.clone();
        for c in candidates.iter().flat_map(|(_, certificates)| certificates) {
            let _ = roots.add(c.der().to_vec().into());
        }
        roots
    });
    let mut report = diagnose(&captured.chain, &params(&base_roots), provider.clone());
    let mut trusted_only_with_ca = false;
    if !report.trusted && !args.ca.is_empty() {
        let ca_roots = ca_roots.as_ref().unwrap_or(&base_roots);
        let with = diagnose(&captured.chain, &params(ca_roots), provider);
        if with.trusted {
            // Trusted through --ca: keep the fix that says how to make that permanent.
            trusted_only_with_ca = true;
            let fix = report.fix.clone();
            report = with;
            report.fix = fix;
        }
    }

    match args.output {
        OutputFormat::Json => print_json(&DoctorJson {
            target: &args.target,
            address: &captured.address,
            protocol: captured.protocol.as_deref(),
            cipher_suite: captured.cipher_suite.as_deref(),
            trusted_only_with_ca,
            report: &report,
        }),
        OutputFormat::Text => print_text(&captured, &report, trusted_only_with_ca),
    }
    Ok(if report.trusted && report.healthy {
        Code::Ok
    } else {
        Code::Untrusted
    })
}

fn unreachable(e: DoctorError) -> Failure {
    let code = match e {
        DoctorError::BadTarget { .. } | DoctorError::BadServerName { .. } => Code::Usage,
        DoctorError::Provider { .. } => Code::Failure,
        _ => Code::Unreachable,
    };
    Failure::new(code, e.to_string())
}

fn print_text(captured: &anchorage_doctor::Captured, report: &Report, with_ca: bool) {
    outln!(
        "connected to {} (SNI {}), {} {}",
        captured.address,
        captured.server_name,
        captured.protocol.as_deref().unwrap_or("?"),
        captured.cipher_suite.as_deref().unwrap_or("")
    );
    outln!("chain as sent ({} certificate(s)):", report.chain.len());
    for c in &report.chain {
        outln!("  [{}] {}", c.index, c.subject);
        outln!("      issuer:    {}", c.issuer);
        outln!(
            "      valid:     {} .. {} ({})",
            c.not_before.rfc3339(),
            c.not_after.rfc3339(),
            c.time_left
        );
        if !c.subject_alt_names.is_empty() {
            outln!("      SANs:      {}", c.subject_alt_names.join(", "));
        }
        outln!(
            "      key:       {}{}; signature {}; {}",
            c.key,
            c.key_bits
                .map(|b| format!(" ({b} bits)"))
                .unwrap_or_default(),
            c.signature_algorithm,
            if c.is_ca { "CA" } else { "not a CA" }
        );
        outln!("      sha256:    {}", c.sha256);
        if let Some(link) = &c.next {
            let ok = link.name_matches && link.signature_verified != Some(false);
            outln!(
                "      next:      {}",
                if ok {
                    "signed by the next certificate"
                } else {
                    "does NOT link to the next certificate"
                }
            );
        }
    }
    let primary = serde_json::to_value(&report.primary).unwrap_or_default();
    outln!(
        "diagnosis: {}{}",
        primary["kind"].as_str().unwrap_or("?").replace('_', " "),
        if with_ca {
            " (only with the --ca files)"
        } else {
            ""
        }
    );
    for (k, v) in primary.as_object().into_iter().flatten() {
        if k != "kind" {
            outln!("  {k}: {}", compact(v));
        }
    }
    for finding in &report.findings {
        let v = serde_json::to_value(finding).unwrap_or_default();
        outln!(
            "finding: {} {}",
            v["kind"].as_str().unwrap_or("?").replace('_', " "),
            v.as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "kind")
                .map(|(k, v)| format!("{k}={}", compact(v)))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    outln!("fix: {}", report.fix.summary);
    for command in &report.fix.commands {
        outln!("  $ {command}");
    }
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

//! `anchorage doctor`: connect, show the chain, diagnose, print the fix.
//!
//! The report goes to stdout (text or JSON); the only other thing printed is one progress line on
//! stderr, and only when stderr is a terminal.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anchorage_doctor::{
    Captured, ChainEntry, ConnectOptions, DEFAULT_EXPIRY_WINDOW, DiagnoseParams, DoctorError,
    Report, Target, connect, diagnose,
};
use anchorage_trust::tls::{TrustConfig, root_store_of};
use anchorage_x509::{Certificate, Timestamp};
use clap::Args;
use serde::Serialize;

use crate::exit::Classify as _;
use crate::exit::{Code, Failure};
use crate::globals::{Globals, Outbound, Run};
use crate::options::OutputFormat;
use crate::render::print_json;

/// The `--output json` document: where and how the handshake went, then the library's report.
#[derive(Serialize)]
struct DoctorJson<'a> {
    target: &'a str,
    address: &'a str,
    protocol: Option<&'a str>,
    cipher_suite: Option<&'a str>,
    /// True when the chain is trusted only because of --ca files.
    trusted_only_with_ca: bool,
    /// True when the server asked for a client certificate (mutual TLS); the doctor sends none.
    client_certificate_requested: bool,
    /// Set when the handshake failed after the chain was captured (e.g. the server then asked
    /// for a client certificate).
    handshake_error: Option<&'a str>,
    /// The server's handshake signature: its scheme and whether it verified (a failure is
    /// never trusted).
    handshake_signature: Option<&'a anchorage_doctor::HandshakeSignature>,
    #[serde(flatten)]
    report: &'a Report,
}

/// The command line resolved: what to connect to, the trust to judge by, the `--ca` files read.
struct Settings {
    target: Target,
    connect: ConnectOptions,
    trust: TrustConfig,
    candidates: Vec<(PathBuf, Vec<Certificate>)>,
}

impl Settings {
    fn resolve(args: &DoctorArgs, outbound: &Outbound) -> Result<Self, Failure> {
        let target =
            Target::parse(&args.target).map_err(|e| Failure::new(Code::Usage, e.to_string()))?;
        let inputs = || {
            args.ca
                .iter()
                .map(|p| ("--ca", p.as_path()))
                .chain(args.bundle.as_deref().map(|p| ("--bundle", p)))
        };
        if let Some(path) = &args.save_chain {
            let output = crate::io::Output {
                option: "--save-chain",
                path,
                dir: false,
            };
            crate::io::check_outputs(&[output], inputs())?;
        }
        crate::io::check_inputs(inputs())?;
        if args.bundle.as_deref().is_some_and(crate::io::is_stdin) {
            return Err(Failure::new(
                Code::Usage,
                "--bundle -: the bundle is read as a file here; give its path (--ca - reads standard input)",
            ));
        }
        // The base trust, as a workload with these settings would have it.
        let explicit = args.system || args.mozilla;
        let trust = outbound.over(match &args.bundle {
            Some(bundle) => TrustConfig {
                load_native_certs: false,
                load_webpki_certs: false,
                ssl_certs_file: Some(bundle.clone()),
                extra_ca_paths: Vec::new(),
            },
            None => TrustConfig {
                load_native_certs: !explicit || args.system,
                load_webpki_certs: !explicit || args.mozilla,
                ssl_certs_file: None,
                extra_ca_paths: Vec::new(),
            },
        });
        let candidates = args
            .ca
            .iter()
            .map(|p| {
                crate::io::read_option_bundle(p, "--ca")
                    .map(|b| (p.clone(), b.certificates().cloned().collect()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            target,
            connect: ConnectOptions {
                server_name: args.servername.clone(),
                timeout: Duration::from_secs(args.timeout.max(1)),
            },
            trust,
            candidates,
        })
    }
}

/// `anchorage doctor`. With `--output json`, a failure's document names the target.
impl Run for DoctorArgs {
    fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        doctor(&self, &globals.outbound).map_err(|f| f.with_json_target(&self.target))
    }
}

fn doctor(args: &DoctorArgs, outbound: &Outbound) -> Result<Code, Failure> {
    let settings = Settings::resolve(args, outbound)?;
    // The trust is read once (the OS store included): the certificates give the store and the
    // roots' validity, which a RootCertStore does not keep (for "root expires soon").
    let (root_certificates, _) = settings.trust.load()?;
    let base_roots = root_store_of(&root_certificates);

    let provider = outbound.provider();
    if std::io::stderr().is_terminal() {
        diagln!(
            "anchorage: connecting to {}{}...",
            settings.target,
            args.servername
                .as_deref()
                .map(|n| format!(" as {n}"))
                .unwrap_or_default()
        );
    }
    let captured =
        connect(&settings.target, &settings.connect, provider.clone()).map_err(unreachable)?;
    if let Some(path) = &args.save_chain {
        let pem: String = captured.chain.iter().map(Certificate::to_pem).collect();
        anchorage_trust::write_file_if_changed(path, pem.as_bytes(), captured.chain.len())?;
    }
    let now = Timestamp::from_unix(time::OffsetDateTime::now_utc().unix_timestamp());
    let candidates = &settings.candidates;
    let params = DiagnoseParams {
        target: &args.target,
        server_name: &captured.server_name,
        roots: &base_roots,
        root_certificates: &root_certificates,
        candidates,
        now,
        expiry_window: DEFAULT_EXPIRY_WINDOW,
        handshake_signature: captured.handshake_signature.as_ref(),
    };
    let mut report = diagnose(&captured.chain, &params, provider.clone());
    let mut trusted_only_with_ca = false;
    if !report.trusted && !candidates.is_empty() {
        // The base trust plus the --ca certificates already read: no second read of the OS
        // store or of the files. One rustls refuses as an anchor simply does not help.
        let mut ca_roots = base_roots.clone();
        ca_roots.add_parsable_certificates(
            candidates
                .iter()
                .flat_map(|(_, certificates)| certificates)
                .map(|c| c.der().to_vec().into()),
        );
        let with_ca = DiagnoseParams {
            roots: &ca_roots,
            ..params
        };
        let with = diagnose(&captured.chain, &with_ca, provider);
        if with.trusted {
            trusted_only_with_ca = true;
            let through_intermediate = matches!(
                with.primary,
                anchorage_doctor::Diagnosis::Trusted {
                    anchor_is_intermediate: true,
                    ..
                }
            );
            if through_intermediate {
                // Trusted through an intermediate given with --ca: the untrusted verdict's fix
                // (trust the missing root) would contradict it; its own fix names the
                // intermediate, warns about OpenSSL clients and makes it permanent.
                report = with;
            } else {
                // Trusted through --ca: keep the fix that says how to make that permanent.
                let fix = report.fix.clone();
                report = with;
                report.fix = fix;
            }
        }
    }

    match args.output {
        OutputFormat::Json => print_json(&DoctorJson {
            target: &args.target,
            address: &captured.address,
            protocol: captured.protocol.as_deref(),
            cipher_suite: captured.cipher_suite.as_deref(),
            trusted_only_with_ca,
            client_certificate_requested: captured.client_certificate_requested,
            handshake_error: captured.handshake_error.as_deref(),
            handshake_signature: captured.handshake_signature.as_ref(),
            report: &report,
        }),
        OutputFormat::Text => print_text(&captured, &report, trusted_only_with_ca),
    }
    // A handshake the server ended after sending its chain (under TLS 1.3, right after it, for
    // a missing client certificate) did not complete: whatever the chain's verdict, no client
    // without what the server asked for connects.
    Ok(if captured.handshake_error.is_some() {
        Code::Unreachable
    } else if report.trusted && report.healthy {
        Code::Ok
    } else {
        Code::Untrusted
    })
}

fn unreachable(e: DoctorError) -> Failure {
    let code = e.code();
    // The messages never repeat their source (the OS or rustls error): append it.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Failure::new(code, message)
}

use crate::render::plural;

fn print_text(captured: &Captured, report: &Report, with_ca: bool) {
    outln!(
        "connected to {} (SNI {}), {} {}",
        captured.address,
        captured.server_name,
        captured.protocol.as_deref().unwrap_or("?"),
        captured.cipher_suite.as_deref().unwrap_or("")
    );
    if captured.client_certificate_requested {
        outln!(
            "the server asked for a client certificate (mutual TLS): the doctor sends none and checks the server's chain only"
        );
    }
    if let Some(error) = &captured.handshake_error {
        outln!("the handshake then failed: {error}");
    }
    let path = report
        .path
        .iter()
        .map(|i| format!("[{i}]"))
        .collect::<Vec<_>>()
        .join(" -> ");
    outln!(
        "chain as sent ({}; issuing path {path}):",
        plural(report.chain.len(), "certificate")
    );
    for c in &report.chain {
        print_entry(c, report);
    }
    for (i, reason) in &captured.undecodable {
        outln!("  certificate {i} as sent could not be decoded and is left out: {reason}");
    }
    if let Some(nc) = &report.root_name_constraints {
        outln!(
            "trusted root's name constraints: {}",
            crate::render::constraints_text(nc)
        );
    }
    outln!(
        "diagnosis: {}{}",
        report.primary,
        if with_ca {
            " (only with the --ca files)"
        } else {
            ""
        }
    );
    for finding in &report.findings {
        outln!("finding: {finding}");
    }
    outln!("fix: {}", report.fix.summary);
    for command in &report.fix.commands {
        outln!("  $ {command}");
    }
}

fn print_entry(c: &ChainEntry, report: &Report) {
    let role = match report.path.iter().position(|&i| i == c.index) {
        Some(0) => "the server's certificate",
        Some(_) => "on the issuing path",
        None => "extra: not on the issuing path",
    };
    outln!("  [{}] {}  ({role})", c.index, c.subject);
    outln!("      issuer:    {}", c.issuer);
    outln!(
        "      valid:     {} .. {} ({})",
        c.not_before,
        c.not_after,
        c.time_left
    );
    if !c.subject_alt_names.is_empty() {
        outln!("      SANs:      {}", c.subject_alt_names.join(", "));
    }
    outln!(
        "      key:       {}; signature {}; {}",
        c.key,
        c.signature_algorithm,
        if c.is_ca { "CA" } else { "not a CA" }
    );
    outln!(
        "      EKU:       {}",
        if c.extended_key_usage.is_empty() {
            "any (no extended key usage extension)".to_owned()
        } else {
            c.extended_key_usage.join(", ")
        }
    );
    if let Some(nc) = &c.name_constraints {
        outln!("      names:     {}", crate::render::constraints_text(nc));
    }
    for url in &c.aia_ca_issuers {
        outln!("      AIA:       {url} (where its issuer can be downloaded)");
    }
    outln!("      sha256:    {}", c.sha256);
    if let Some(link) = &c.next {
        let text = if link.links() {
            "signed by the next certificate".to_owned()
        } else {
            let mut why = Vec::new();
            if !link.name_matches {
                why.push("its issuer is not the next certificate's subject");
            }
            if link.key_id_matches == Some(false) {
                why.push("the key ids differ");
            }
            if link.name_matches && link.signature_verified == Some(false) {
                why.push("the signature does not verify with the next certificate's key");
            }
            let mut text = format!("does NOT link to the next certificate: {}", why.join("; "));
            // Where its issuer was sent instead, when it was.
            let on_path = report.path.iter().position(|&i| i == c.index);
            if let Some(issuer) = on_path.and_then(|p| report.path.get(p + 1)) {
                text.push_str(&format!(" (its issuer was sent as [{issuer}])"));
            }
            text
        };
        outln!("      next:      {text}");
    }
}

// The command line of this command.

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// host:port, https://host[:port]/..., or an OCI reference (oci://registry/repo:tag).
    pub(crate) target: String,
    /// The name to send as SNI and to check the certificate against (default: the host).
    #[arg(long, value_name = "NAME")]
    pub(crate) servername: Option<String>,
    /// A CA file or directory to trust too (repeatable); the fix names the one that helps.
    #[arg(long, value_name = "PATH")]
    pub(crate) ca: Vec<PathBuf>,
    /// Trust the OS store (with --mozilla: only what is chosen).
    #[arg(long)]
    pub(crate) system: bool,
    /// Trust Mozilla's roots (with --system: only what is chosen).
    #[arg(long)]
    pub(crate) mozilla: bool,
    /// Trust exactly this bundle (what a workload using it would see).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["system", "mozilla"])]
    pub(crate) bundle: Option<PathBuf>,
    /// Write the chain the server sent to FILE (PEM, in the order sent), whatever the verdict,
    /// for review.
    #[arg(long, value_name = "FILE")]
    pub(crate) save_chain: Option<PathBuf>,
    /// Seconds allowed for the connection and the handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) timeout: u64,
    /// Output format: text (for people) or json (the stable schema of docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

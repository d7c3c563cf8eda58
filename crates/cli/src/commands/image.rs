//! `anchorage image`: add private CAs to container images without Docker.
//!
//! This module resolves what was typed (CA sources through the same loader and policy as
//! `bundle build`, the trust for registries from `--tls-ca-path`, platforms, references) into an
//! [`anchorage_registry::InjectRequest`], shows transfer progress on stderr, and renders the
//! report. The pipeline is `anchorage-registry`'s; what goes into the layer is
//! `anchorage-image`'s.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anchorage_image::{Depth, FileRole, Mode, PlanOptions, locations};
use anchorage_registry::{
    ClientSettings, Event, ImageRef, InjectReport, InjectRequest, Reach, RegistryError, inject,
    parse_platform,
};
use anchorage_trust::{Policy, Source, TrustError, load};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::{Globals, Outbound, Run};
use crate::options::{OutputFormat, ReadArgs};
use crate::render::{print_json, warn_all};

/// `anchorage image …`.
#[derive(Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Add private CAs to an image by appending one small layer, and push the result: no
    /// Docker daemon, no rebuild, any base image (distroless and scratch included).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage image inject registry.corp.example/mirror/nginx:1.27 \\\n",
            "    registry.corp.example/mirror/nginx:1.27-corp --ca corp-root.pem\n",
            "  anchorage image inject oci:./debian:12 oci:./debian:12-corp --ca corp/ --env\n",
            "  anchorage image inject ghcr.io/acme/app@sha256:4f1c... \\\n",
            "    registry.corp.example/acme/app:v3 --ca corp-root.pem --platform \\\n",
            "    linux/arm64\n",
            "  anchorage image inject localhost:5000/app:dev localhost:5000/app:dev-corp \\\n",
            "    --ca ca.pem --insecure-registry localhost:5000 --output json\n",
            "\n",
            "SOURCE and DEST are registry references (HOST[:PORT]/REPO:TAG or @sha256:...) or OCI layout\n",
            "directories (oci:PATH[:TAG]). For each platform the image's bundle is found by reading layers\n",
            "from the top only until it is found (RHEL's links are followed inside the image); the new CAs\n",
            "missing from it are appended, <hash>.<n> entries and Java cacerts updated where the image keeps\n",
            "them (fixed places, every JDK under /usr/lib/jvm, and the JAVA_HOME of the image config), and\n",
            "an image without a bundle gets /etc/ssl/certs/ca-certificates.crt (Mozilla's roots plus the\n",
            "new CAs). --replace reads nothing and writes Mozilla's roots plus the new CAs. An image that\n",
            "already trusts every CA gets no layer: it is left as it is (re-runs give the same digest), or\n",
            "with --env and variables missing, only its config changes.\n",
            "\n",
            "Only blobs the destination lacks are sent (originals are skipped or mounted within one\n",
            "registry); manifests go by digest and the tag moves last, so an interrupted run never moves it.\n",
            "Credentials come from Docker's config.json ($DOCKER_CONFIG, else ~/.docker). HTTPS is verified\n",
            "against the OS store, Mozilla's roots and --tls-ca-path; --insecure-registry HOST[:PORT]\n",
            "speaks plain HTTP to that host only. The new digest goes to stdout, progress to stderr.\n",
            "\n",
        ),
        &[
            (Code::Ok, "done (the new digest is printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, reference or platform"),
            (Code::BadInput, "bad input: no usable CA certificate, --tls-ca-path unusable, an invalid OCI layout"),
            (Code::PrivateKey, "a CA source holds a private key"),
            (Code::Output, "the destination layout could not be written"),
            (Code::Unreachable, "a registry could not be reached or its TLS certificate is not trusted"),
            (Code::NotFound, "the source image, tag or a named platform does not exist"),
            (Code::AuthFailed, "the registry refused the credentials"),
            (Code::Unsupported, "the image cannot be handled: a manifest or layer media type, a layer that is not a\nvalid tar or exceeds a reading limit (docs/limits.md), a Java store with keys or\nasking for too costly a key derivation"),
        ],
        "",
    ))]
    Inject(InjectArgs),
}

/// `anchorage image inject` arguments.
#[derive(Args, Debug)]
pub(crate) struct InjectArgs {
    /// The image to read: HOST[:PORT]/REPO[:TAG|@DIGEST] or oci:PATH[:TAG].
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Where to write it: HOST[:PORT]/REPO[:TAG] or oci:PATH[:TAG] (default tag latest).
    #[arg(value_name = "DEST")]
    destination: String,
    /// CA certificate files, directories or Kubernetes manifests to add. Repeatable.
    #[arg(long, value_name = "PATH")]
    ca: Vec<PathBuf>,
    /// Also add the operating system's trust store.
    #[arg(long)]
    system: bool,
    /// Also add Mozilla's root certificates.
    #[arg(long)]
    mozilla: bool,
    /// Keep expired CA certificates (they are reported either way).
    #[arg(long)]
    keep_expired: bool,
    /// Make any problem with the CA sources fatal (exit 3).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    read: ReadArgs,
    /// Do not read the image's bundle: write Mozilla's roots plus the new CAs to
    /// /etc/ssl/certs/ca-certificates.crt (no hash entries, no Java store; links are not
    /// followed, so not for images where /etc/ssl/certs is a link).
    #[arg(long)]
    replace: bool,
    /// Only these platforms of a multi-platform image (os/arch[/variant]; repeatable). Others
    /// are kept unchanged.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    platforms: Vec<String>,
    /// Also set SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE and NODE_EXTRA_CA_CERTS in the
    /// image config (on an image that already trusts every CA, only the config changes).
    #[arg(long)]
    env: bool,
    /// Read every layer, not just down to the bundle's: finds Java stores and hash entries kept
    /// in lower layers, at the cost of downloading them.
    #[arg(long, conflicts_with = "replace")]
    all_layers: bool,
    /// Password of the image's Java cacerts.
    #[arg(
        long,
        value_name = "PASSWORD",
        default_value = "changeit",
        conflicts_with = "replace"
    )]
    java_password: String,
    /// Speak plain HTTP to this registry (HOST[:PORT]); repeatable.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: OutputFormat,
}

impl ImageCommand {
    /// Whether `--output json` was asked for.
    pub(crate) fn json_output(&self) -> bool {
        match self {
            ImageCommand::Inject(a) => a.output == OutputFormat::Json,
        }
    }
}

impl Run for ImageCommand {
    fn json(&self) -> bool {
        self.json_output()
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        run(self, globals)
    }
}

/// Runs `anchorage image …`.
fn run(cmd: ImageCommand, globals: &Globals) -> Result<Code, Failure> {
    match cmd {
        // With --output json, `main` prints a failure's document.
        ImageCommand::Inject(args) => inject_cmd(&args, &globals.outbound),
    }
}

fn inject_cmd(args: &InjectArgs, outbound: &Outbound) -> Result<Code, Failure> {
    let usage = |e: RegistryError| Failure::new(Code::Usage, with_causes(&e));
    let source = ImageRef::parse(&args.source).map_err(usage)?;
    let destination = ImageRef::parse(&args.destination).map_err(usage)?;
    let platforms = args
        .platforms
        .iter()
        .map(|p| parse_platform(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;

    args.read
        .check_has_paths(!args.ca.is_empty(), "--ca PATH")?;
    let any_registry =
        matches!(source, ImageRef::Registry(_)) || matches!(destination, ImageRef::Registry(_));
    if !any_registry && !args.insecure_registry.is_empty() {
        return Err(Failure::new(
            Code::Usage,
            "--insecure-registry needs a registry SOURCE or DEST: both are OCI layouts (oci:PATH)",
        ));
    }
    if !any_registry && outbound.has_tls_ca_paths() {
        return Err(Failure::new(
            Code::Usage,
            "--tls-ca-path needs a registry SOURCE or DEST: OCI layouts (oci:PATH) make no TLS connection",
        ));
    }
    // Every --ca must be there and readable before anything is fetched or pushed.
    crate::io::check_inputs(args.ca.iter().map(|p| ("--ca", p.as_path())))?;
    let mut sources: Vec<Source> = args
        .ca
        .iter()
        .map(|p| crate::io::source("--ca", p))
        .collect::<Result<_, _>>()?;
    if args.system {
        sources.push(Source::System);
    }
    if args.mozilla {
        sources.push(Source::Mozilla);
    }
    if sources.is_empty() {
        return Err(Failure::new(
            Code::Usage,
            "no CA to add: give --ca PATH (repeatable), --system or --mozilla",
        ));
    }
    let policy = Policy {
        keep_expired: args.keep_expired,
        strict: args.strict,
        ..Policy::default()
    };
    let (cas, report) = policy
        .apply(load(&sources, &args.read.load_options()))
        .inspect_err(|e| {
            if let TrustError::NoCertificates { report } | TrustError::Strict { report, .. } = e {
                warn_all(report);
            }
        })?;
    warn_all(&report);

    // HTTPS trust: the OS store, Mozilla's roots and --tls-ca-path, as every anchorage client.
    let roots = if any_registry {
        let (certificates, _) = outbound.trust().load()?;
        certificates.iter().map(|c| c.der().to_vec()).collect()
    } else {
        Vec::new()
    };
    // The registry client (reqwest) takes the process default provider.
    outbound.install_process_default();

    let request = InjectRequest {
        source,
        destination,
        cas,
        plan: PlanOptions {
            mode: if args.replace {
                Mode::Replace {
                    paths: vec![locations::DEFAULT_BUNDLE_PATH.to_owned()],
                }
            } else {
                Mode::Merge
            },
            java_password: args.java_password.clone().into(),
            env: args.env,
            ..PlanOptions::default()
        },
        depth: if args.all_layers {
            Depth::Complete
        } else {
            Depth::UntilBundle
        },
        platforms,
        client: ClientSettings {
            roots,
            insecure_registries: args.insecure_registry.clone(),
            docker_config: true,
        },
    };
    let span = tracing::info_span!("image_inject", source = %request.source, destination = %request.destination);
    let _enter = span.enter();
    let mut progress = Progress::new();
    let report = inject(&request, &mut |e| progress.event(e)).map_err(failure)?;
    progress.done();
    render(args, &request, &report);
    Ok(Code::Ok)
}

/// Transfer progress: a bar per blob on a terminal, debug log lines otherwise.
struct Progress {
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start {
                direction,
                digest,
                size,
            } => {
                tracing::debug!(direction, %digest, ?size, "transfer");
                if self.terminal {
                    let bar = indicatif::ProgressBar::with_draw_target(
                        size,
                        indicatif::ProgressDrawTarget::stderr(),
                    );
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    let short: String = digest.chars().take(19).collect();
                    bar.set_message(format!("{direction} {short}"));
                    self.bar = Some(bar);
                }
            }
            Event::Advance(n) => {
                if let Some(bar) = &self.bar {
                    bar.inc(n);
                }
            }
            Event::Finish => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Note(note) => {
                tracing::info!("{note}");
                if self.terminal {
                    diagln!("anchorage: {note}");
                }
            }
        }
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn failure(e: RegistryError) -> Failure {
    use RegistryError as E;
    let code = e.code();
    let mut message = with_causes(&e);
    // The option that fixes what the TLS layer said.
    match &e {
        E::Unreachable {
            registry,
            reach: Reach::PlainHttp,
            ..
        } => message.push_str(&format!(
            "; {registry} answers plain HTTP, not TLS: if that is intended (a local or test registry), give --insecure-registry {registry}"
        )),
        E::Unreachable {
            registry,
            reach: Reach::UnknownIssuer,
            ..
        } => message.push_str(&format!(
            "; its certificate was issued by a CA anchorage does not trust: give that CA with --tls-ca-path FILE (`anchorage doctor {registry}` shows the chain and which CA is missing)"
        )),
        _ => {}
    }
    Failure::new(code, message)
}

#[derive(Serialize)]
struct ReportJson<'a> {
    source: String,
    destination: String,
    digest: &'a str,
    media_type: &'a str,
    source_digest: &'a str,
    changed: bool,
    cas: usize,
    platforms: Vec<PlatformJson<'a>>,
    bytes_uploaded: u64,
    blobs_uploaded: usize,
    blobs_mounted: usize,
    blobs_skipped: usize,
    bytes_downloaded: u64,
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    platform: Option<String>,
    source_digest: &'a str,
    digest: &'a str,
    changed: bool,
    layer: Option<LayerJson<'a>>,
    files: Vec<FileJson<'a>>,
    unchanged: &'a [String],
    env: Vec<String>,
    layers_read: usize,
}

#[derive(Serialize)]
struct LayerJson<'a> {
    digest: &'a str,
    diff_id: &'a str,
    size: u64,
}

#[derive(Serialize)]
struct FileJson<'a> {
    path: &'a str,
    role: &'static str,
    added: usize,
    size: usize,
}

fn role(role: FileRole) -> &'static str {
    match role {
        FileRole::Bundle => "bundle",
        FileRole::HashEntry => "hash_entry",
        FileRole::JavaStore => "java_store",
        FileRole::Extra => "extra",
    }
}

fn render(args: &InjectArgs, request: &InjectRequest, report: &InjectReport) {
    if args.output == OutputFormat::Json {
        print_json(&ReportJson {
            source: request.source.to_string(),
            destination: request.destination.to_string(),
            digest: report.digest.as_str(),
            media_type: &report.media_type,
            source_digest: report.source_digest.as_str(),
            changed: report.digest != report.source_digest,
            cas: request.cas.len(),
            platforms: report
                .platforms
                .iter()
                .map(|p| PlatformJson {
                    platform: p.platform.as_ref().map(ToString::to_string),
                    source_digest: p.source_digest.as_str(),
                    digest: p.digest.as_str(),
                    changed: p.digest != p.source_digest,
                    layer: p.layer.as_ref().map(|l| LayerJson {
                        digest: l.digest.as_str(),
                        diff_id: l.diff_id.as_str(),
                        size: l.size,
                    }),
                    files: p
                        .plan
                        .files
                        .iter()
                        .map(|f| FileJson {
                            path: &f.path,
                            role: role(f.role),
                            added: f.added,
                            size: f.contents.len(),
                        })
                        .collect(),
                    unchanged: &p.plan.unchanged,
                    env: p.plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    layers_read: p.layers_read,
                })
                .collect(),
            bytes_uploaded: report.bytes_uploaded,
            blobs_uploaded: report.blobs_uploaded,
            blobs_mounted: report.blobs_mounted,
            blobs_skipped: report.blobs_skipped,
            bytes_downloaded: report.bytes_downloaded,
        });
        return;
    }
    outln!("{}", report.digest);
    for p in &report.platforms {
        let name = p
            .platform
            .as_ref()
            .map_or_else(|| "image".to_owned(), ToString::to_string);
        match &p.layer {
            None if p.digest == p.source_digest => diagln!(
                "anchorage: {name}: already trusts every CA, unchanged ({})",
                p.digest
            ),
            None => diagln!(
                "anchorage: {name}: already trusts every CA; variables set, no new layer ({})",
                p.digest
            ),
            Some(layer) => {
                let files: Vec<String> = p
                    .plan
                    .files
                    .iter()
                    .map(|f| format!("{} (+{})", f.path, f.added))
                    .collect();
                diagln!(
                    "anchorage: {name}: {} with a {}-byte layer: {}",
                    p.digest,
                    layer.size,
                    files.join(", ")
                );
            }
        }
    }
    diagln!(
        "anchorage: {} -> {}@{}: {} bytes uploaded ({} blobs; {} mounted, {} already there)",
        request.source,
        request.destination,
        report.digest,
        report.bytes_uploaded,
        report.blobs_uploaded,
        report.blobs_mounted,
        report.blobs_skipped
    );
}

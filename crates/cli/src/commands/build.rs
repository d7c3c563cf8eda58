//! `anchorage bundle build`.

use std::path::{Path, PathBuf};

use anchorage_k8s::{
    Layout as K8sLayout, Object, ObjectName, cluster_trust_bundle, to_json, to_yaml,
    trust_configmap, trust_secret, wasmcloud_configmap,
};
use anchorage_trust::{DirLayout, Source};
use anchorage_trust::{
    FindingKind, OpensslDirOptions, PemOptions, Policy, Report, TrustError, Written, load,
    render_pem, write_openssl_dir, write_pem,
};
use anchorage_trust::{
    Pkcs12Options, Pkcs12Profile, write_file_if_changed, write_jks, write_pkcs12,
};
use clap::{Args, ValueEnum};
use secrecy::SecretString;
use serde::Serialize;

use crate::exit::{Code, Failure};
use crate::globals::Globals;
use crate::options::{ManifestFormat, OutputFormat, ReadArgs};
use crate::render::{CertificateView, ProblemView, findings_for, print_json, warn_all};

#[derive(Serialize)]
struct Summary {
    certificates: usize,
    certificates_read: usize,
    files_read: usize,
    duplicates: usize,
    expired_dropped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pem: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openssl_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pem_changed: Option<bool>,
    files_skipped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    openssl_dir_entries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openssl_dir_changed: Option<bool>,
    outputs: Vec<OutputView>,
    /// The PEM bundle, when no output was named (text mode prints it on stdout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pem_text: Option<String>,
    /// The Kubernetes objects, without --k8s-out (text mode prints them on stdout).
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s_objects: Option<String>,
    problems: Vec<ProblemView>,
    findings: Vec<anchorage_trust::Finding>,
    bundle: Vec<CertificateView>,
}

/// `anchorage bundle build`. With `--output json`, a failure's document carries the problems
/// and findings of the policy, when it got that far.
pub(crate) fn run(args: BuildArgs, _globals: &Globals) -> Result<Code, Failure> {
    build(args).map_err(Failure::with_json_report)
}

fn build(args: BuildArgs) -> Result<Code, Failure> {
    if args.sources.is_empty() && !args.system && !args.mozilla {
        return Err(Failure::new(
            Code::BadInput,
            "no sources: give certificate files or directories, --system or --mozilla (see --help)",
        ));
    }
    check_command_line(&args)?;
    // Every named path must be there and readable: a missing source is not a warning.
    crate::io::check_inputs(input_paths(&args))?;
    // Resolve the keystore options before reading anything: a usage mistake must not cost a load.
    let java = JavaSettings::resolve(&args)?;
    let sources = args.sources()?;
    let span = tracing::info_span!("bundle_build", sources = sources.len());
    let _enter = span.enter();
    let loaded = load(&sources, &args.read.load_options());
    let policy = Policy {
        keep_expired: args.keep_expired,
        strict: args.strict,
        ..Policy::default()
    };
    // When the policy refuses the whole build, list what it saw: a count alone does not say
    // which source to fix.
    let (bundle, report) = policy.apply(loaded).inspect_err(|e| match e {
        TrustError::NoCertificates { report } | TrustError::Strict { report, .. } => {
            warn_all(report);
        }
        _ => {}
    })?;

    // Kubernetes objects are built (names, keys and the 1 MiB limit checked) before anything is
    // written, so a bundle too big for a ConfigMap leaves every output as it was.
    let manifest = match k8s_wanted(&args) {
        true => Some(k8s_objects(&bundle, &args).map_err(|f| f.with_report(&report))?),
        false => None,
    };
    let mut outputs = Outputs::default();
    let mut k8s_manifest = None;
    let pem_options = PemOptions {
        comments: args.pem_comments,
    };
    let pem_written = match &args.pem {
        Some(path) => Some(outputs.write(&report, "pem", path, || {
            write_pem(&bundle, path, &pem_options)
        })?),
        None => None,
    };
    let dir_written = match &args.openssl_dir {
        Some(dir) => {
            let options = OpensslDirOptions {
                layout: args.layout(),
                bundle_file: args.openssl_dir_bundle.clone(),
            };
            Some(outputs.write(&report, "openssl_dir", dir, || {
                write_openssl_dir(&bundle, dir, &options)
            })?)
        }
        None => None,
    };
    if let Some(path) = &args.pkcs12 {
        let options = java.pkcs12_options();
        outputs.write(&report, "pkcs12", path, || {
            write_pkcs12(&bundle, path, &options)
        })?;
    }
    if let Some(path) = &args.jks {
        let password = java.jks_password();
        outputs.write(&report, "jks", path, || write_jks(&bundle, path, &password))?;
    }
    if let Some(manifest) = manifest {
        match &args.k8s_out {
            Some(path) => {
                outputs.write(&report, "k8s", path, || {
                    write_file_if_changed(path, manifest.as_bytes(), bundle.len())
                })?;
            }
            None => k8s_manifest = Some(manifest),
        }
    }
    if let Some(path) = &args.extra_pem {
        let extra = bundle.without_mozilla_roots();
        if extra.is_empty() {
            warnln!(
                "every certificate of the bundle is one of Mozilla's roots, so {} is empty: NODE_EXTRA_CA_CERTS has nothing to add",
                path.display()
            );
        }
        outputs.write(&report, "extra_pem", path, || {
            write_pem(&extra, path, &pem_options)
        })?;
    }
    // What stdout carries, if anything: the Kubernetes objects without --k8s-out, else the PEM
    // bundle when no output file was named. The summary then goes to stderr.
    let k8s_on_stdout = k8s_manifest.is_some();
    let payload = match k8s_manifest {
        Some(manifest) => Some(manifest),
        None if outputs.written.is_empty() => Some(render_pem(&bundle, &pem_options)),
        None => None,
    };
    let to_stdout = payload.is_some();
    let wanted_k8s_on_stdout = k8s_on_stdout;

    let duplicates = report
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::Duplicate { .. }))
        .count();
    let expired_dropped = report.expired_dropped();

    match args.output {
        OutputFormat::Json => {
            // One document on stdout: what text mode prints there goes inside it.
            let (pem_text, k8s_objects) = match payload {
                Some(p) if wanted_k8s_on_stdout => (None, Some(p)),
                Some(p) => (Some(p), None),
                None => (None, None),
            };
            let summary = Summary {
                certificates: bundle.len(),
                certificates_read: report.certificates_read,
                files_read: report.files_read,
                duplicates,
                expired_dropped,
                pem: args.pem.clone(),
                openssl_dir: args.openssl_dir,
                pem_changed: pem_written.map(|w| w.changed),
                files_skipped: report.files_skipped,
                openssl_dir_entries: dir_written.map(|w| w.entries),
                openssl_dir_changed: dir_written.map(|w| w.changed),
                outputs: outputs.written.clone(),
                pem_text,
                k8s_objects,
                problems: report.problems.iter().map(ProblemView::from).collect(),
                findings: report.findings.clone(),
                bundle: bundle
                    .entries()
                    .iter()
                    .map(|e| {
                        let origins = e.origins.iter().map(ToString::to_string).collect();
                        let warnings = findings_for(&report.findings, &e.certificate);
                        CertificateView::new(&e.certificate, origins, warnings)
                    })
                    .collect(),
            };
            print_json(&summary);
        }
        OutputFormat::Text => {
            warn_all(&report);
            if let Some(payload) = &payload {
                out!("{payload}");
            }
            let line = format!(
                "anchorage: bundle of {} from {} read ({}, {} expired dropped, {})",
                crate::render::plural(bundle.len(), "certificate"),
                report.certificates_read,
                crate::render::plural(duplicates, "duplicate"),
                expired_dropped,
                crate::render::plural(report.problems.len(), "problem")
            );
            // The summary goes to stderr when stdout carries the bundle.
            if to_stdout {
                diagln!("{line}");
            } else {
                outln!("{line}");
                for o in &outputs.written {
                    outln!(
                        "{} {} ({} {})",
                        verb(o.changed),
                        o.path.display(),
                        o.entries,
                        if o.kind == "openssl_dir" {
                            "hashed entries"
                        } else {
                            "certificates"
                        }
                    );
                }
            }
        }
    }
    Ok(Code::Ok)
}

/// The paths `bundle build` reads, by the option that names them.
fn input_paths(args: &BuildArgs) -> Vec<(&'static str, &Path)> {
    let mut inputs: Vec<(&'static str, &Path)> = args
        .sources
        .iter()
        .map(|p| ("SOURCE", p.as_path()))
        .collect();
    if let Some(file) = &args.store_password_file {
        inputs.push(("--store-password-file", file));
    }
    inputs
}

/// What clap cannot say about the command line: outputs that would overwrite each other or an
/// input (exit 2), and flags that would have no effect.
fn check_command_line(args: &BuildArgs) -> Result<(), Failure> {
    use crate::io::Output;
    args.read
        .check_has_paths(!args.sources.is_empty(), "a SOURCE path")?;
    fn file<'a>(option: &'a str, path: &'a Option<PathBuf>) -> Option<Output<'a>> {
        path.as_deref().map(|path| Output {
            option,
            path,
            dir: false,
        })
    }
    let outputs: Vec<Output<'_>> = [
        file("--pem", &args.pem),
        file("--extra-pem", &args.extra_pem),
        file("--pkcs12", &args.pkcs12),
        file("--jks", &args.jks),
        file("--k8s-out", &args.k8s_out),
        args.openssl_dir.as_deref().map(|path| Output {
            option: "--openssl-dir",
            path,
            dir: true,
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    crate::io::check_outputs(&outputs, input_paths(args))?;
    // --pem-comments shapes PEM text: --pem, --extra-pem, or the bundle on stdout when no
    // output is named at all.
    let pem_on_stdout = outputs.is_empty() && !k8s_wanted(args);
    if args.pem_comments && args.pem.is_none() && args.extra_pem.is_none() && !pem_on_stdout {
        return Err(Failure::new(
            Code::Usage,
            "--pem-comments needs --pem or --extra-pem (or no output at all, for the bundle on stdout): the outputs named hold no PEM text",
        ));
    }
    Ok(())
}

/// The Java trust-store options, resolved once from what was typed.
struct JavaSettings {
    password: Option<SecretString>,
    profile: Option<P12Profile>,
}

impl JavaSettings {
    fn resolve(args: &BuildArgs) -> Result<Self, Failure> {
        let password = match (&args.store_password, &args.store_password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Failure::new(
                        Code::BadInput,
                        format!("--store-password-file {}: {e}", file.display()),
                    )
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, None) => None,
        };
        if password.is_some() && args.pkcs12.is_none() && args.jks.is_none() {
            return Err(Failure::new(
                Code::Usage,
                "--store-password needs --pkcs12 or --jks",
            ));
        }
        if password.as_deref() == Some("") {
            return Err(Failure::new(
                Code::Usage,
                "the store password is empty: Java reads an empty trust-store password as none; give a password, or leave it out for a password-less PKCS#12",
            ));
        }
        match (args.pkcs12_profile, &password) {
            (Some(P12Profile::Unprotected), Some(_)) => Err(Failure::new(
                Code::Usage,
                "--pkcs12-profile unprotected takes no password: drop --store-password, or pick modern2023",
            )),
            (Some(p), None) if p != P12Profile::Unprotected && args.pkcs12.is_some() => {
                Err(Failure::new(
                    Code::Usage,
                    "an encrypted --pkcs12-profile needs --store-password or --store-password-file (Java's usual one is changeit)",
                ))
            }
            _ => Ok(Self {
                password: password.map(SecretString::from),
                profile: args.pkcs12_profile,
            }),
        }
    }

    fn pkcs12_options(&self) -> Pkcs12Options {
        match (&self.password, self.profile) {
            (None, _) => Pkcs12Options::unprotected(),
            (Some(password), profile) => {
                let profile = match profile.unwrap_or(P12Profile::Modern2023) {
                    P12Profile::Modern2023 | P12Profile::Unprotected => Pkcs12Profile::Modern2023,
                    P12Profile::LegacyDes => Pkcs12Profile::LegacyDes,
                    P12Profile::LegacyRc2 => Pkcs12Profile::LegacyRc2,
                };
                Pkcs12Options::protected(profile, password.clone())
            }
        }
    }

    /// Java's default keystore password when none was given.
    fn jks_password(&self) -> SecretString {
        self.password
            .clone()
            .unwrap_or_else(|| SecretString::from("changeit"))
    }
}

/// One output written by this run.
#[derive(Clone, Serialize)]
struct OutputView {
    /// `pem`, `openssl_dir`, `extra_pem`, `pkcs12`, `jks`, `k8s`.
    kind: &'static str,
    path: PathBuf,
    entries: usize,
    changed: bool,
}

/// The outputs written so far, in order: a later failure says which are already in place.
#[derive(Default)]
struct Outputs {
    written: Vec<OutputView>,
}

impl Outputs {
    fn write(
        &mut self,
        report: &Report,
        kind: &'static str,
        path: &Path,
        write: impl FnOnce() -> Result<Written, TrustError>,
    ) -> Result<Written, Failure> {
        let written = write().map_err(|e| {
            let mut failure = Failure::from(e).with_report(report);
            let done: Vec<String> = self
                .written
                .iter()
                .filter(|o| o.changed)
                .map(|o| o.path.display().to_string())
                .collect();
            if !done.is_empty() {
                failure.message.push_str(&format!(
                    " (note: already written with the new bundle: {})",
                    done.join(", ")
                ));
            }
            failure
        })?;
        self.written.push(OutputView {
            kind,
            path: path.to_path_buf(),
            entries: written.entries,
            changed: written.changed,
        });
        Ok(written)
    }
}

/// How the text summary names what happened to an output.
fn verb(changed: bool) -> &'static str {
    if changed { "wrote" } else { "unchanged" }
}

/// True when `bundle build` was asked for any Kubernetes object.
fn k8s_wanted(args: &BuildArgs) -> bool {
    args.k8s_configmap.is_some()
        || args.k8s_secret.is_some()
        || args.k8s_wasmcloud_configmap.is_some()
        || args.k8s_cluster_trust_bundle.is_some()
}

/// The objects `bundle build` was asked for, rendered, in a fixed order.
fn k8s_objects(bundle: &anchorage_trust::Bundle, args: &BuildArgs) -> Result<String, Failure> {
    // One copy of each namespaced object per --namespace (none: kubectl's current namespace).
    let namespaces: Vec<Option<&String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        let mut unique: Vec<Option<&String>> = Vec::new();
        for ns in &args.namespaces {
            if !unique.contains(&Some(ns)) {
                unique.push(Some(ns));
            }
        }
        unique
    };
    let named = |name: &String, ns: Option<&String>| {
        let meta = ObjectName::new(name.clone());
        match ns {
            Some(ns) => meta.in_namespace(ns.clone()),
            None => meta,
        }
    };
    let mut layout = if args.k8s_bundle_only {
        K8sLayout::bundle_only()
    } else {
        K8sLayout::default()
    };
    if args.k8s_rhel_aliases {
        layout = layout.with_rhel_aliases();
    }
    if args.k8s_extra_pem {
        layout = layout.with_extra();
    }
    if args.k8s_pkcs12 {
        layout = layout.with_pkcs12();
    }
    let mut objects: Vec<Object> = Vec::new();
    for ns in &namespaces {
        if let Some(name) = &args.k8s_configmap {
            objects.push(trust_configmap(bundle, &named(name, *ns), &layout)?.into());
        }
        if let Some(name) = &args.k8s_secret {
            objects.push(trust_secret(bundle, &named(name, *ns), &layout)?.into());
        }
        if let Some(name) = &args.k8s_wasmcloud_configmap {
            objects.push(wasmcloud_configmap(bundle, &named(name, *ns))?.into());
        }
    }
    if let Some(name) = &args.k8s_cluster_trust_bundle {
        // Cluster-scoped: --namespace does not apply.
        let ctb = cluster_trust_bundle(
            bundle,
            &ObjectName::new(name.clone()),
            args.k8s_signer.as_deref(),
        )?;
        objects.push(ctb.into());
    }
    Ok(match args.k8s_format {
        ManifestFormat::Yaml => to_yaml(&objects)?,
        ManifestFormat::Json => to_json(&objects)? + "\n",
    })
}

// The command line of this command.

/// PKCS#12 protection profile (as trust-manager names them).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum P12Profile {
    /// No encryption and no MAC: Java 17 loads it without a password.
    Unprotected,
    /// PBES2 AES-256-CBC with PBKDF2-HMAC-SHA256, HMAC-SHA256 MAC.
    Modern2023,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA1 MAC (JVMs before 8u301).
    LegacyDes,
    /// pbeWithSHAAnd40BitRC2-CBC, HMAC-SHA1 MAC (what old JVMs wrote).
    LegacyRc2,
}

/// Layout of the OpenSSL hashed directory.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Each <hash>.<n> is a real file (survives ConfigMaps and image layers).
    #[default]
    Files,
    /// <sha256>.pem files plus relative <hash>.<n> symbolic links.
    Links,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("k8s_object").multiple(true).args(["k8s_configmap", "k8s_secret", "k8s_wasmcloud_configmap", "k8s_cluster_trust_bundle"])))]
#[command(group(clap::ArgGroup::new("k8s_namespaced").multiple(true).args(["k8s_configmap", "k8s_secret", "k8s_wasmcloud_configmap"])))]
#[command(group(clap::ArgGroup::new("k8s_trust_layout").multiple(true).args(["k8s_configmap", "k8s_secret"])))]
#[command(group(clap::ArgGroup::new("java_store").multiple(true).args(["pkcs12", "jks"])))]
pub(crate) struct BuildArgs {
    /// Certificate files, directories or Kubernetes manifests; - for standard input.
    #[arg(value_name = "SOURCE")]
    pub(crate) sources: Vec<PathBuf>,
    /// Add the operating system's trust store.
    #[arg(long)]
    pub(crate) system: bool,
    /// Add Mozilla's root certificates (compiled in; works offline).
    #[arg(long)]
    pub(crate) mozilla: bool,
    /// Write the PEM bundle to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    pub(crate) pem: Option<PathBuf>,
    /// Also write the certificates Mozilla's roots lack (the private CAs) to FILE: what
    /// NODE_EXTRA_CA_CERTS and DENO_CERT must name (see `anchorage env`).
    #[arg(long, value_name = "FILE")]
    pub(crate) extra_pem: Option<PathBuf>,
    /// Write a Java PKCS#12 trust store to FILE (javax.net.ssl.trustStoreType=PKCS12).
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs12: Option<PathBuf>,
    /// Encryption of --pkcs12: unprotected (no password, the default without --store-password),
    /// modern2023 (AES-256, HMAC-SHA256; the default with a password; Java 8u301+/11.0.12+),
    /// legacy-des or legacy-rc2 (for older JVMs).
    #[arg(long, value_enum, requires = "pkcs12")]
    pub(crate) pkcs12_profile: Option<P12Profile>,
    /// Write a legacy Java JKS trust store to FILE (password: --store-password, default changeit).
    #[arg(long, value_name = "FILE")]
    pub(crate) jks: Option<PathBuf>,
    /// Password of --pkcs12/--jks. Visible to other local users in the process list: prefer
    /// --store-password-file.
    #[arg(
        long,
        value_name = "PASSWORD",
        conflicts_with = "store_password_file",
        requires = "java_store"
    )]
    pub(crate) store_password: Option<String>,
    /// Read the --pkcs12/--jks password from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "java_store")]
    pub(crate) store_password_file: Option<PathBuf>,
    /// Emit a ConfigMap NAME to mount over /etc/ssl/certs (ca-certificates.crt plus <hash>.<n>
    /// keys).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_configmap: Option<String>,
    /// Emit the same layout as a Secret NAME.
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_secret: Option<String>,
    /// Emit a ConfigMap NAME of <name>.crt keys for wasmCloud's operator
    /// (certificates.authorities).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_wasmcloud_configmap: Option<String>,
    /// Emit a ClusterTrustBundle NAME (certificates.k8s.io/v1beta1, Kubernetes 1.33+).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_cluster_trust_bundle: Option<String>,
    /// Signer name of the ClusterTrustBundle (its NAME must then start with the signer name,
    /// `/` replaced by `:`, and a `:`).
    #[arg(
        long,
        value_name = "SIGNER",
        requires = "k8s_cluster_trust_bundle",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_signer: Option<String>,
    /// Namespace of the ConfigMaps and Secret (none: kubectl's current namespace); needs one of
    /// them (a ClusterTrustBundle is cluster-scoped). Repeat it to emit one copy per namespace
    /// (a ConfigMap is mounted only in its own namespace).
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NS",
        requires = "k8s_namespaced",
        help_heading = "Kubernetes"
    )]
    pub(crate) namespaces: Vec<String>,
    /// Only the bundle key in the ConfigMap/Secret, no <hash>.<n> keys: half the size, but
    /// SSL_CERT_DIR / -CApath readers find nothing.
    #[arg(long, requires = "k8s_trust_layout", help_heading = "Kubernetes")]
    pub(crate) k8s_bundle_only: bool,
    /// Also repeat the bundle as ca-bundle.crt and tls-ca-bundle.pem (RHEL-family names).
    #[arg(long, requires = "k8s_trust_layout", help_heading = "Kubernetes")]
    pub(crate) k8s_rhel_aliases: bool,
    /// Also put the private CAs only (what Mozilla's roots lack) in the ConfigMap/Secret as
    /// extra-ca.pem, for NODE_EXTRA_CA_CERTS and DENO_CERT (`k8s patch --extra-pem`).
    #[arg(long, help_heading = "Kubernetes")]
    pub(crate) k8s_extra_pem: bool,
    /// Also put the bundle in the ConfigMap/Secret as truststore.p12, a password-less PKCS#12
    /// trust store for Java (`k8s patch --pkcs12`), as trust-manager's additionalFormats does.
    #[arg(long, help_heading = "Kubernetes")]
    pub(crate) k8s_pkcs12: bool,
    /// Write the Kubernetes objects to FILE (atomically) instead of stdout.
    #[arg(
        long,
        value_name = "FILE",
        requires = "k8s_object",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_out: Option<PathBuf>,
    /// Format of the Kubernetes objects.
    #[arg(
        long,
        value_enum,
        default_value_t,
        requires = "k8s_object",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_format: ManifestFormat,
    /// Put a `# subject` and SHA-256 comment before each certificate of the PEM bundle.
    #[arg(long)]
    pub(crate) pem_comments: bool,
    /// Write an OpenSSL hashed directory (<hash>.<n>) to DIR (swapped in atomically).
    #[arg(long, value_name = "DIR")]
    pub(crate) openssl_dir: Option<PathBuf>,
    /// Layout of --openssl-dir.
    #[arg(long, value_enum, default_value_t, requires = "openssl_dir")]
    pub(crate) openssl_dir_layout: Layout,
    /// Also write the PEM bundle inside --openssl-dir under this name (e.g. ca-certificates.crt).
    #[arg(long, value_name = "NAME", requires = "openssl_dir")]
    pub(crate) openssl_dir_bundle: Option<String>,
    /// Keep expired certificates (they are reported either way).
    #[arg(long)]
    pub(crate) keep_expired: bool,
    /// Make any problem or warning fatal (exit 3) and write nothing.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

impl BuildArgs {
    /// The sources in the order given: paths (`-` is standard input, read now), then the OS
    /// store, then Mozilla.
    pub(crate) fn sources(&self) -> Result<Vec<Source>, crate::exit::Failure> {
        let mut sources: Vec<Source> = self
            .sources
            .iter()
            .map(|p| crate::io::source("SOURCE", p))
            .collect::<Result<_, _>>()?;
        if self.system {
            sources.push(Source::System);
        }
        if self.mozilla {
            sources.push(Source::Mozilla);
        }
        Ok(sources)
    }

    pub(crate) fn layout(&self) -> DirLayout {
        match self.openssl_dir_layout {
            Layout::Files => DirLayout::Files,
            Layout::Links => DirLayout::Links,
        }
    }
}

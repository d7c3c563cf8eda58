//! `anchorage ca export` and `anchorage ca import`: the CA as PEM files, as the Flomesh/Open
//! Service Mesh `fsm-ca-bundle` Secret, or as a `kubernetes.io/tls` Secret.
//!
//! The layouts' contents come from `anchorage_ca::builtin::import` (`to_pem`,
//! `to_fsm_secret_data`, `from_pem`, …) and the Secret manifests around them from
//! `anchorage_k8s` (`write_ca_secret`, `read_ca_secret`: names, keys, base64, YAML/JSON, errors
//! that never echo a key); this module reads and writes the files and turns errors into exit
//! codes.

use std::io::IsTerminal as _;
use std::path::Path;

use anchorage_ca::builtin::import::Source;
use anchorage_ca::{BuiltinCa, CaError};
use anchorage_k8s::{CaSecret, CaSecretError, CaSecretLayout, K8sError, ObjectName};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use zeroize::Zeroizing;

use super::args::{CaExportArgs, CaFormat, CaImportArgs};
use super::{Context, FileView, OutFile, check_out_dir, now, output_failure, write_dir};
use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::options::{ManifestFormat, OutputFormat};
use crate::render::print_json;

/// The files `export --format pem` may write.
const PEM_FILES: [&str; 4] = ["ca.crt", "ca.key", "intermediate.crt", "intermediate.key"];

impl CaFormat {
    fn as_str(self) -> &'static str {
        match self {
            CaFormat::Pem => "pem",
            CaFormat::FsmSecret => "fsm-secret",
            CaFormat::K8sTlsSecret => "k8s-tls-secret",
        }
    }
}

/// The summary of `ca export --out` (docs/cli.md).
#[derive(Serialize)]
struct ExportView {
    format: &'static str,
    out: String,
    files: Vec<FileView>,
    root_sha256: anchorage_x509::Sha256Fingerprint,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<SecretView>,
}

#[derive(Serialize)]
struct SecretView {
    name: String,
    namespace: Option<String>,
    #[serde(rename = "type")]
    type_: &'static str,
    keys: Vec<String>,
}

/// The Secret's name and namespace, checked as Kubernetes would (exit 2 when refused).
fn secret_name(name: &str, namespace: Option<&str>) -> Result<ObjectName, Failure> {
    let mut object = ObjectName::new(name);
    if let Some(ns) = namespace {
        object = object.in_namespace(ns);
    }
    anchorage_k8s::check_ca_secret_name(&object).map_err(|e| {
        let option = match e {
            K8sError::InvalidNamespace { .. } => "--namespace",
            _ => "--name",
        };
        Failure::new(Code::Usage, format!("{option}: {e}"))
    })?;
    Ok(object)
}

impl CaFormat {
    /// The Secret layout of a Secret format.
    fn layout(self) -> Option<CaSecretLayout> {
        match self {
            CaFormat::Pem => None,
            CaFormat::FsmSecret => Some(CaSecretLayout::FsmCaBundle),
            CaFormat::K8sTlsSecret => Some(CaSecretLayout::KubernetesTls),
        }
    }
}

/// `anchorage ca export`.
pub(super) fn export(ctx: &Context, args: &CaExportArgs) -> Result<Code, Failure> {
    let secret_name = match args.format.layout() {
        None => {
            if args.name.is_some() || args.namespace.is_some() || args.k8s_format.is_some() {
                return Err(Failure::new(
                    Code::Usage,
                    "--name, --namespace and --k8s-format apply to the Secret formats (fsm-secret, k8s-tls-secret), not to pem",
                ));
            }
            None
        }
        Some(layout) => {
            let name = args.name.as_deref().unwrap_or(layout.default_name());
            Some((layout, secret_name(name, args.namespace.as_deref())?))
        }
    };
    match &args.out {
        None if std::io::stdout().is_terminal() => {
            return Err(Failure::new(
                Code::Usage,
                "refusing to print the CA's private key to a terminal: give --out PATH (written 0600), or pipe the output (e.g. `| kubectl apply -f -`)",
            ));
        }
        None if args.output == OutputFormat::Json => {
            return Err(Failure::new(
                Code::Usage,
                "--output json describes the files written: give --out PATH (without it the export itself goes to stdout)",
            ));
        }
        Some(out) if args.format == CaFormat::Pem => check_out_dir(out, &PEM_FILES, "--out")?,
        _ => {}
    }

    let store = ctx.open(false)?;
    let loaded = ctx.load(&store)?;
    let ca = &loaded.ca;

    let (files, secret) = match (args.format, secret_name) {
        (_, Some((layout, object))) => {
            let data = match layout {
                CaSecretLayout::FsmCaBundle => ca.to_fsm_secret_data().map_err(|e| match e {
                    CaError::Layout { .. } => Failure::new(Code::Usage, e.to_string()),
                    other => Failure::new(Code::Failure, with_causes(&other)),
                })?,
                _ => ca.to_tls_secret_data(),
            };
            let keys: Vec<String> = data.keys().cloned().collect();
            let format = match args.k8s_format.unwrap_or_default() {
                ManifestFormat::Yaml => anchorage_k8s::ManifestFormat::Yaml,
                ManifestFormat::Json => anchorage_k8s::ManifestFormat::Json,
            };
            let text =
                anchorage_k8s::write_ca_secret(layout, &object, data, format).map_err(|e| {
                    Failure::new(Code::Failure, format!("cannot render the Secret: {e}"))
                })?;
            let Some(out) = &args.out else {
                out!("{}", text.expose_secret());
                return Ok(Code::Ok);
            };
            anchorage_trust::atomic::write_private_file(out, text.expose_secret().as_bytes())
                .map_err(|e| output_failure("--out", out, &e))?;
            let secret = SecretView {
                name: object.name,
                namespace: object.namespace,
                type_: layout.secret_type(),
                keys,
            };
            (vec![FileView::new(out, true)], Some(secret))
        }
        _ => {
            let files = ca.to_pem().files();
            let Some(out) = &args.out else {
                for (_, text) in &files {
                    out!("{}", text.expose_secret());
                }
                return Ok(Code::Ok);
            };
            let out_files: Vec<OutFile<'_>> = files
                .iter()
                .map(|(name, text)| OutFile {
                    name,
                    contents: text.expose_secret().as_bytes(),
                    private: name.ends_with(".key"),
                })
                .collect();
            write_dir(out, &out_files, "--out")?;
            let views = out_files
                .iter()
                .map(|f| FileView::new(&out.join(f.name), f.private))
                .collect();
            (views, None)
        }
    };
    let Some(out) = &args.out else {
        return Ok(Code::Ok);
    };
    let view = ExportView {
        format: args.format.as_str(),
        out: out.display().to_string(),
        files,
        root_sha256: ca.root().sha256(),
        secret,
    };
    match args.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Text => {
            let names: Vec<String> = view
                .files
                .iter()
                .map(|f| format!("{} ({})", f.name, f.mode))
                .collect();
            match &view.secret {
                Some(s) => outln!(
                    "wrote the {} Secret {}{} ({}) to {}, mode 0600",
                    view.format,
                    s.namespace
                        .as_deref()
                        .map(|ns| format!("{ns}/"))
                        .unwrap_or_default(),
                    s.name,
                    s.keys.join(", "),
                    view.out
                ),
                None => outln!("wrote {}: {}", view.out, names.join(", ")),
            }
            outln!("root sha256: {}", ca.root().sha256());
        }
    }
    Ok(Code::Ok)
}

/// Reads a file named on the command line (`-`: standard input); its bytes are wiped when
/// dropped.
fn read_input(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    crate::io::read_input("FILE", path)
}

/// An import error, naming the file it came from.
fn import_failure(file: Option<&str>, e: CaError) -> Failure {
    let code = crate::exit::import_code(&e);
    let message = match file {
        Some(file) => format!("{file}: {}", with_causes(&e)),
        // The library's messages name the files already.
        None => with_causes(&e),
    };
    Failure::new(code, message)
}

/// A Secret manifest that cannot be read, or lacks a key of its layout; a missing key says
/// which format fits.
fn secret_failure(file: &str, e: &CaSecretError, secret: Option<&CaSecret>) -> Failure {
    let mut message = format!("{file}: {}", with_causes(e));
    if let (CaSecretError::MissingKey { .. }, Some(secret)) = (e, secret) {
        match CaSecretLayout::recognise(secret.keys()) {
            Some(CaSecretLayout::KubernetesTls) => message.push_str(
                "; this looks like a kubernetes.io/tls Secret: use --format k8s-tls-secret",
            ),
            Some(CaSecretLayout::FsmCaBundle) => message
                .push_str("; this looks like an fsm-ca-bundle Secret: use --format fsm-secret"),
            None => {}
        }
    }
    Failure::new(e.code(), message)
}

/// Builds the CA from the files of `ca import`.
fn imported_ca(args: &CaImportArgs) -> Result<BuiltinCa, Failure> {
    let now = now();
    match args.format {
        CaFormat::Pem => {
            let inputs: Vec<(String, Zeroizing<Vec<u8>>)> = args
                .files
                .iter()
                .map(|p| read_input(p).map(|b| (crate::io::display(p), b)))
                .collect::<Result<_, _>>()?;
            let mut certificates = Vec::new();
            let mut keys = Vec::new();
            for (origin, bytes) in &inputs {
                let decoded = anchorage_x509::decode(bytes);
                let has_certs = !decoded.certificates.is_empty();
                let has_key = decoded.has_private_key();
                if has_certs {
                    certificates.push(Source::new(origin, bytes));
                }
                if has_key {
                    keys.push(Source::new(origin, bytes));
                }
                if !has_certs && !has_key {
                    let why = decoded
                        .problems
                        .first()
                        .map(|p| format!(" ({})", p.error))
                        .unwrap_or_default();
                    return Err(Failure::new(
                        Code::BadInput,
                        format!("{origin}: holds neither a certificate nor a private key{why}"),
                    ));
                }
            }
            if certificates.is_empty() {
                return Err(Failure::new(
                    Code::BadInput,
                    "no certificate among the files: give the CA certificate file(s) too (the root, and any intermediates)",
                ));
            }
            if keys.is_empty() {
                return Err(Failure::new(
                    Code::BadInput,
                    "no private key among the files: give the CA's key file too (PEM PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
                ));
            }
            BuiltinCa::from_pem(&certificates, &keys, now).map_err(|e| import_failure(None, e))
        }
        CaFormat::FsmSecret | CaFormat::K8sTlsSecret => {
            let [path] = args.files.as_slice() else {
                return Err(Failure::new(
                    Code::Usage,
                    format!(
                        "--format {} reads one Secret manifest; {} files were given",
                        args.format.as_str(),
                        args.files.len()
                    ),
                ));
            };
            let secret = anchorage_k8s::read_ca_secret(&read_input(path)?)
                .map_err(|e| secret_failure(&crate::io::display(path), &e, None))?;
            let file = match secret.name() {
                Some(name) => format!("{} (Secret {name})", crate::io::display(path)),
                None => crate::io::display(path),
            };
            if let Some(layout) = args.format.layout() {
                secret
                    .require(layout)
                    .map_err(|e| secret_failure(&file, &e, Some(&secret)))?;
            }
            let result = if args.format == CaFormat::FsmSecret {
                BuiltinCa::from_fsm_secret_data(secret.data(), now)
            } else {
                BuiltinCa::from_tls_secret_data(secret.data(), now)
            };
            result.map_err(|e| import_failure(Some(&file), e))
        }
    }
}

/// `anchorage ca import`.
pub(super) fn import(ctx: &Context, args: &CaImportArgs) -> Result<Code, Failure> {
    let ca = imported_ca(args)?;
    let store = ctx.open(true)?;
    let saved = ctx.save(&store, &ca, args.force)?;
    super::report_saved(
        ctx,
        &ca,
        &saved,
        args.output,
        [
            "imported the CA",
            "imported the CA, replacing the previous one",
        ],
    )
}

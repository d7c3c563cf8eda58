//! `anchorage ca export` and `anchorage ca import`: the CA as PEM files, as the Flomesh/Open
//! Service Mesh `fsm-ca-bundle` Secret, or as a `kubernetes.io/tls` Secret.
//!
//! The layouts' contents come from `anchorage_ca::builtin::import` (`to_pem`,
//! `to_fsm_secret_data`, `from_pem`, …); this module reads and writes the files and the Secret
//! manifests around them. Secret manifests are walked as generic JSON values with messages of
//! our own, so no parser error can echo a key.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::Path;

use anchorage_ca::builtin::import::{FSM_SECRET_NAME, Source};
use anchorage_ca::{BuiltinCa, CaError};
use anchorage_k8s::{MANAGED_BY, MANAGED_BY_LABEL, Object, to_json, to_yaml};
use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};
use serde::Serialize;
use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use super::{Context, FileView, OutFile, check_out_dir, now, output_failure, write_dir};
use crate::args::{CaExportArgs, CaFormat, CaImportArgs, ManifestFormat, OutputFormat};
use crate::exit::{Code, Failure, with_causes};
use crate::render::print_json;

/// Default name of the `kubernetes.io/tls` Secret.
const TLS_SECRET_NAME: &str = "anchorage-ca";

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

/// A DNS-1123 subdomain (Secret names) or, with `label`, a DNS-1123 label (namespaces).
fn check_k8s_name(option: &str, value: &str, label: bool) -> Result<(), Failure> {
    let max = if label { 63 } else { 253 };
    let ok = !value.is_empty()
        && value.len() <= max
        && value.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.')
        })
        && value.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if ok {
        return Ok(());
    }
    let rule = if label {
        "a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    } else {
        "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit"
    };
    Err(Failure::new(
        Code::Usage,
        format!("{option} {value:?}: Kubernetes would refuse it; it must be {rule}"),
    ))
}

/// The Secret manifest holding `data`, as YAML or JSON. The copies of the key held by the
/// object are wiped once it is rendered.
fn secret_manifest(
    name: &str,
    namespace: Option<&str>,
    type_: &str,
    data: BTreeMap<String, SecretSlice<u8>>,
    format: ManifestFormat,
) -> Result<SecretString, Failure> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.expose_secret().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    let mut objects = [Object::Secret(secret)];
    let rendered = match format {
        ManifestFormat::Yaml => to_yaml(&objects),
        ManifestFormat::Json => to_json(&objects),
    };
    if let [Object::Secret(secret)] = &mut objects
        && let Some(data) = secret.data.as_mut()
    {
        for value in data.values_mut() {
            value.0.zeroize();
        }
    }
    let text = rendered
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render the Secret: {e}")))?;
    Ok(SecretString::from(text))
}

/// `anchorage ca export`.
pub(super) fn export(ctx: &Context, args: &CaExportArgs) -> Result<Code, Failure> {
    let secret_name = match args.format {
        CaFormat::Pem => {
            if args.name.is_some() || args.namespace.is_some() || args.k8s_format.is_some() {
                return Err(Failure::new(
                    Code::Usage,
                    "--name, --namespace and --k8s-format apply to the Secret formats (fsm-secret, k8s-tls-secret), not to pem",
                ));
            }
            None
        }
        CaFormat::FsmSecret | CaFormat::K8sTlsSecret => {
            let default = if args.format == CaFormat::FsmSecret {
                FSM_SECRET_NAME
            } else {
                TLS_SECRET_NAME
            };
            let name = args.name.clone().unwrap_or_else(|| default.to_owned());
            check_k8s_name("--name", &name, false)?;
            if let Some(ns) = &args.namespace {
                check_k8s_name("--namespace", ns, true)?;
            }
            Some(name)
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
        (CaFormat::FsmSecret | CaFormat::K8sTlsSecret, Some(name)) => {
            let (type_, data) = if args.format == CaFormat::FsmSecret {
                let data = ca.to_fsm_secret_data().map_err(|e| match e {
                    CaError::Layout { .. } => Failure::new(Code::Usage, e.to_string()),
                    other => Failure::new(Code::Failure, with_causes(&other)),
                })?;
                ("Opaque", data)
            } else {
                ("kubernetes.io/tls", ca.to_tls_secret_data())
            };
            let keys: Vec<String> = data.keys().cloned().collect();
            let text = secret_manifest(
                &name,
                args.namespace.as_deref(),
                type_,
                data,
                args.k8s_format.unwrap_or_default(),
            )?;
            let Some(out) = &args.out else {
                out!("{}", text.expose_secret());
                return Ok(Code::Ok);
            };
            anchorage_trust::atomic::write_private_file(out, text.expose_secret().as_bytes())
                .map_err(|e| output_failure("--out", out, &e))?;
            let secret = SecretView {
                name,
                namespace: args.namespace.clone(),
                type_,
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

/// Decoded Secret data, wiped when dropped.
struct SecretData(BTreeMap<String, Vec<u8>>);

impl Drop for SecretData {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

/// The one Secret in a manifest (YAML or JSON, a single object, a stream, or a v1 List), as
/// `kubectl get secret -o yaml|json` prints it: `data` (base64) overlaid with `stringData`.
fn read_secret(path: &Path) -> Result<(SecretData, Option<String>), Failure> {
    let file = crate::io::display(path);
    let bad = |why: String| Failure::new(Code::BadInput, format!("{file}: {why}"));
    let bytes = read_input(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| bad("not UTF-8 text; give a Secret manifest in YAML or JSON".to_owned()))?;
    let mut documents: Vec<Value> = Vec::new();
    if text.trim_start().starts_with('{') {
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        documents.push(value);
    } else {
        use serde::Deserialize as _;
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(document)
                .map_err(|e| bad(format!("not valid YAML: {e}")))?;
            if value.is_null() {
                continue;
            }
            let value = serde_json::to_value(&value).map_err(|_| {
                bad(
                    "a YAML document has keys that are not strings; it is not a Kubernetes object"
                        .to_owned(),
                )
            })?;
            documents.push(value);
        }
    }
    let mut secrets: Vec<Value> = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    for document in documents {
        let items = match document.get("kind").and_then(Value::as_str) {
            Some("List") | Some("SecretList") => match document.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
            _ => vec![document],
        };
        for item in items {
            match item.get("kind").and_then(Value::as_str) {
                Some("Secret") => secrets.push(item),
                Some(other) => kinds.push(other.to_owned()),
                None => kinds.push("an object without kind".to_owned()),
            }
        }
    }
    let secret = match secrets.len() {
        1 => secrets.swap_remove(0),
        0 if kinds.is_empty() => return Err(bad("holds no Kubernetes object".to_owned())),
        0 => {
            return Err(bad(format!(
                "holds no Secret (found {}); export it with `kubectl get secret NAME -o yaml`",
                kinds.join(", ")
            )));
        }
        n => return Err(bad(format!("holds {n} Secrets; give a file with one"))),
    };
    let name = secret
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut data = SecretData(BTreeMap::new());
    if let Some(map) = secret.get("data").filter(|v| !v.is_null()) {
        let Some(map) = map.as_object() else {
            return Err(bad(
                "the Secret's data is not a map of keys to base64 values".to_owned(),
            ));
        };
        for (key, value) in map {
            let encoded = match value {
                Value::String(s) => s.as_str(),
                Value::Null => "",
                _ => {
                    return Err(bad(format!(
                        "the Secret's data.{key} is not a base64 string"
                    )));
                }
            };
            let compact: Zeroizing<String> =
                Zeroizing::new(encoded.chars().filter(|c| !c.is_whitespace()).collect());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| bad(format!("the Secret's data.{key} is not valid base64")))?;
            data.0.insert(key.clone(), decoded);
        }
    }
    if let Some(map) = secret.get("stringData").filter(|v| !v.is_null()) {
        let Some(map) = map.as_object() else {
            return Err(bad(
                "the Secret's stringData is not a map of keys to strings".to_owned(),
            ));
        };
        for (key, value) in map {
            let Some(text) = value.as_str() else {
                return Err(bad(format!(
                    "the Secret's stringData.{key} is not a string"
                )));
            };
            // As the API server does: stringData wins over data.
            if let Some(mut old) = data.0.insert(key.clone(), text.as_bytes().to_vec()) {
                old.zeroize();
            }
        }
    }
    wipe(secret);
    Ok((data, name))
}

/// Wipes the strings of a parsed manifest (they may hold a key).
fn wipe(value: Value) {
    match value {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(map) => map.into_iter().for_each(|(_, v)| wipe(v)),
        _ => {}
    }
}

/// An import error, naming the file it came from; a missing entry says which format fits.
fn import_failure(file: Option<&str>, e: CaError, found_keys: Option<&[String]>) -> Failure {
    let code = match e {
        CaError::Crypto { .. } => Code::Failure,
        _ => Code::BadInput,
    };
    let mut message = match file {
        Some(file) => format!("{file}: {}", with_causes(&e)),
        // The library's messages name the files already.
        None => with_causes(&e),
    };
    if let (CaError::MissingEntry { .. }, Some(keys)) = (&e, found_keys) {
        if keys.iter().any(|k| k == "tls.key") {
            message.push_str(
                "; this looks like a kubernetes.io/tls Secret: use --format k8s-tls-secret",
            );
        } else if keys.iter().any(|k| k == "private.key") {
            message.push_str("; this looks like an fsm-ca-bundle Secret: use --format fsm-secret");
        }
    }
    Failure::new(code, message)
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
            BuiltinCa::from_pem(&certificates, &keys, now)
                .map_err(|e| import_failure(None, e, None))
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
            let (data, secret_name) = read_secret(path)?;
            let file = match &secret_name {
                Some(name) => format!("{} (Secret {name})", crate::io::display(path)),
                None => crate::io::display(path),
            };
            let keys: Vec<String> = data.0.keys().cloned().collect();
            let result = if args.format == CaFormat::FsmSecret {
                BuiltinCa::from_fsm_secret_data(&data.0, now)
            } else {
                BuiltinCa::from_tls_secret_data(&data.0, now)
            };
            result.map_err(|e| import_failure(Some(&file), e, Some(&keys)))
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

//! `anchorage env`: the environment variables that point each runtime at the trust files.
//!
//! The catalogue (who reads what, replaces or adds) lives in [`anchorage_trust::env`]; this module
//! checks the files the variables will name and prints them in the chosen syntax.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anchorage_trust::env::{
    EnvRequest, IGNORE_ALL, JavaStoreType, JavaTrustStore, Variable, omitted, variables,
};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::render::print_json;

#[derive(Serialize)]
struct EnvJson<'a> {
    variables: &'a [Variable],
    omitted: Vec<Omitted>,
    warnings: &'a [String],
    ignore_all: Vec<Ignorer>,
}

#[derive(Serialize)]
struct Omitted {
    name: &'static str,
    option: &'static str,
}

#[derive(Serialize)]
struct Ignorer {
    what: &'static str,
    why: &'static str,
}

impl Run for EnvArgs {
    fn json(&self) -> bool {
        self.format == EnvFormat::Json
    }

    fn run(self, _: &Globals) -> Result<Code, Failure> {
        run(self)
    }
}

fn run(args: EnvArgs) -> Result<Code, Failure> {
    let in_container = args.in_container || args.format == EnvFormat::K8s;
    let resolve = |p: &Path| -> Result<PathBuf, Failure> {
        if in_container {
            if p.is_absolute() {
                Ok(p.to_path_buf())
            } else {
                Err(Failure::new(
                    Code::BadInput,
                    format!(
                        "{}: paths inside a container must be absolute (a workload would resolve a relative one against its own working directory)",
                        p.display()
                    ),
                ))
            }
        } else {
            std::path::absolute(p).map_err(|e| {
                Failure::new(
                    Code::BadInput,
                    format!("cannot resolve {}: {e}", p.display()),
                )
            })
        }
    };
    let request = EnvRequest {
        bundle: resolve(&args.bundle)?,
        dir: args.dir.as_deref().map(resolve).transpose()?,
        extra: args.extra.as_deref().map(resolve).transpose()?,
        java: match &args.java_truststore {
            Some(path) => Some(JavaTrustStore {
                path: resolve(path)?,
                store_type: match args.java_truststore_type {
                    JavaStoreKind::Pkcs12 => JavaStoreType::Pkcs12,
                    JavaStoreKind::Jks => JavaStoreType::Jks,
                },
                password: args.java_truststore_password.clone(),
            }),
            None => None,
        },
    };
    let warnings = if in_container {
        Vec::new()
    } else {
        check_files(&request)?
    };

    let vars = variables(&request);
    for v in &vars {
        if v.value.contains(['\n', '\r', '\0']) {
            return Err(Failure::new(
                Code::BadInput,
                format!(
                    "{}: a path with a line break cannot be put in the environment",
                    v.name
                ),
            ));
        }
    }
    let left_out = omitted(&request);
    for w in &warnings {
        warnln!("{w}");
    }
    match args.format {
        EnvFormat::Shell => {
            for (spec, option) in &left_out {
                outln!("# {} not set: give {option}", spec.name);
            }
            for v in &vars {
                outln!("export {}={}", v.name, shell_quote(&v.value));
            }
        }
        EnvFormat::Dotenv => {
            for (spec, option) in &left_out {
                outln!("# {} not set: give {option}", spec.name);
            }
            // Unquoted: docker --env-file takes the rest of the line literally, quotes included.
            for v in &vars {
                outln!("{}={}", v.name, v.value);
            }
        }
        EnvFormat::K8s => {
            let env: Vec<k8s_openapi::api::core::v1::EnvVar> = vars
                .iter()
                .map(|v| k8s_openapi::api::core::v1::EnvVar {
                    name: v.name.to_string(),
                    value: Some(v.value.clone()),
                    ..Default::default()
                })
                .collect();
            let yaml = serde_yaml_ng::to_string(&env)
                .map_err(|e| Failure::new(Code::Failure, format!("cannot render YAML: {e}")))?;
            out!("{yaml}");
        }
        EnvFormat::Json => print_json(&EnvJson {
            variables: &vars,
            omitted: left_out
                .iter()
                .map(|(spec, option)| Omitted {
                    name: spec.name,
                    option,
                })
                .collect(),
            warnings: &warnings,
            ignore_all: IGNORE_ALL
                .iter()
                .map(|(what, why)| Ignorer { what, why })
                .collect(),
        }),
    }
    if matches!(args.format, EnvFormat::Shell)
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        diagln!("anchorage: these ignore every variable above:");
        for (what, why) in IGNORE_ALL {
            diagln!("  {what}: {why}");
        }
    }
    Ok(Code::Ok)
}

/// Checks the files the variables will name, so a typo fails here rather than in every workload.
/// Returns warnings for what works but is probably not what the user meant.
fn check_files(request: &EnvRequest) -> Result<Vec<String>, Failure> {
    let mut warnings = Vec::new();
    let bundle = crate::io::read_option_bundle(&request.bundle, "--bundle")?;
    let private = bundle.without_mozilla_roots();
    if private.len() == bundle.len() {
        warnings.push(format!(
            "{} holds no public (Mozilla) roots: SSL_CERT_FILE, REQUESTS_CA_BUNDLE and the other variables that replace a runtime's store would make public sites untrusted; build it with --mozilla or --system",
            request.bundle.display()
        ));
    }
    if let Some(dir) = &request.dir {
        let hashed = std::fs::read_dir(dir)
            .map_err(|e| {
                Failure::new(
                    Code::BadInput,
                    format!(
                        "--dir {}: {e}; build it with `anchorage bundle build ... --openssl-dir DIR`",
                        dir.display()
                    ),
                )
            })?
            .filter_map(Result::ok)
            .filter(|e| anchorage_trust::is_openssl_hash_name(&e.file_name().to_string_lossy()))
            .count();
        if hashed == 0 {
            return Err(Failure::new(
                Code::BadInput,
                format!(
                    "--dir {} has no <hash>.<n> entries, so SSL_CERT_DIR readers would find nothing; build it with `anchorage bundle build ... --openssl-dir DIR`",
                    dir.display()
                ),
            ));
        }
    }
    if let Some(extra) = &request.extra {
        let extra_bundle = crate::io::read_option_bundle(extra, "--extra")?;
        let public = extra_bundle.len() - extra_bundle.without_mozilla_roots().len();
        if public > 0 {
            warnings.push(format!(
                "{} holds {}: NODE_EXTRA_CA_CERTS and DENO_CERT need only the private CAs (`anchorage bundle build ... --extra-pem FILE`)",
                extra.display(),
                crate::render::plural(public, "Mozilla root")
            ));
        }
        let in_bundle: BTreeSet<_> = bundle.certificates().map(|c| c.sha256()).collect();
        let missing = extra_bundle
            .certificates()
            .filter(|c| !in_bundle.contains(&c.sha256()))
            .count();
        if missing > 0 {
            warnings.push(format!(
                "{} of {} {} not in {}: runtimes reading the combined bundle will not trust {}",
                crate::render::plural(missing, "certificate"),
                extra.display(),
                if missing == 1 { "is" } else { "are" },
                request.bundle.display(),
                if missing == 1 { "it" } else { "them" }
            ));
        }
    }
    if let Some(java) = &request.java
        && !java.path.is_file()
    {
        return Err(Failure::new(
            Code::BadInput,
            format!(
                "--java-truststore {} is not a file; build it with `anchorage bundle build ... --pkcs12 FILE` or `--jks FILE`",
                java.path.display()
            ),
        ));
    }
    Ok(warnings)
}

/// Single-quotes `value` for POSIX shells (a `'` becomes `'\''`).
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

// The command line of this command.

/// How `anchorage env` prints the variables.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum EnvFormat {
    /// `export NAME='value'` lines for sh/bash/zsh (`eval "$(anchorage env ...)"`).
    #[default]
    Shell,
    /// `NAME=value` lines, unquoted, as docker --env-file and compose env_file read them.
    Dotenv,
    /// A JSON document with each variable, its effect and its readers.
    Json,
    /// A Kubernetes container `env:` list (EnvVar objects, YAML).
    K8s,
}

/// Keystore type named in JAVA_TOOL_OPTIONS.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum JavaStoreKind {
    /// PKCS#12.
    #[default]
    Pkcs12,
    /// Legacy JKS.
    Jks,
}

#[derive(Args, Debug)]
pub(crate) struct EnvArgs {
    /// The combined PEM bundle (public roots plus private CAs).
    #[arg(long, value_name = "FILE")]
    pub(crate) bundle: PathBuf,
    /// The OpenSSL hashed directory (for SSL_CERT_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The private CAs only (for NODE_EXTRA_CA_CERTS and DENO_CERT; without it they name
    /// --bundle).
    #[arg(long, value_name = "FILE")]
    pub(crate) extra: Option<PathBuf>,
    /// A Java trust store holding the combined bundle (for JAVA_TOOL_OPTIONS).
    #[arg(long, value_name = "FILE")]
    pub(crate) java_truststore: Option<PathBuf>,
    /// Type of --java-truststore.
    #[arg(long, value_enum, default_value_t, requires = "java_truststore")]
    pub(crate) java_truststore_type: JavaStoreKind,
    /// Password of --java-truststore, passed in JAVA_TOOL_OPTIONS (not needed for a
    /// password-less PKCS#12; a trust store's password guards integrity, not secrecy).
    #[arg(long, value_name = "PASSWORD", requires = "java_truststore")]
    pub(crate) java_truststore_password: Option<String>,
    /// The paths are inside a container or pod: print them as given, do not check them here.
    #[arg(long)]
    pub(crate) in_container: bool,
    /// Output format (`--output` and `-o` are accepted too).
    #[arg(long, short = 'o', alias = "output", value_enum, default_value_t)]
    pub(crate) format: EnvFormat,
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

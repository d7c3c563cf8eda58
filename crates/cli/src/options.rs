//! Option values and option groups shared by several commands (`--output`, how sources are
//! read, the manifest format, the CA passphrase, durations). A leaf: it names no command.

use std::path::Path;
use std::time::Duration;

use anchorage_trust::{KeyFilter, LoadOptions, NameFilter};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::exit::{Code, Failure};
use clap::{Args, ValueEnum};

/// How results are printed.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Which files of a directory to read.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum DirFilter {
    /// .crt .pem .cer .der .p7b .p7c and <hash>.<n> files.
    #[default]
    Certs,
    /// Only *.crt (as wasmCloud's operator reads them).
    Crt,
    /// Every file; non-certificates are reported.
    All,
}

/// Which keys of a ConfigMap/Secret to read.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum K8sKeys {
    /// Only keys ending in .crt (wasmCloud's operator).
    #[default]
    Crt,
    /// Every key (a private key is refused).
    All,
}

/// Serialization of Kubernetes objects.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ManifestFormat {
    /// A YAML stream, one document per object.
    #[default]
    Yaml,
    /// JSON (one object, or a v1 List).
    Json,
}

/// Options shared by commands that read sources.
#[derive(Args, Debug)]
pub(crate) struct ReadArgs {
    /// Which files of a directory to read [default: certs].
    #[arg(long, value_enum)]
    pub(crate) dir_filter: Option<DirFilter>,
    /// Which keys of a Kubernetes ConfigMap/Secret to read [default: crt].
    #[arg(long, value_enum)]
    pub(crate) k8s_keys: Option<K8sKeys>,
    /// Password of JKS/PKCS#12 keystore sources (e.g. a JDK's cacerts). Without it a JKS is
    /// read without its integrity check, as Java does, and a PKCS#12 is tried password-less,
    /// then with changeit.
    #[arg(long, value_name = "PASSWORD")]
    pub(crate) source_password: Option<String>,
}

impl ReadArgs {
    /// Refuses (exit 2) these options when no path is read (only --system/--mozilla): they
    /// shape how files are read and would have no effect.
    pub(crate) fn check_has_paths(
        &self,
        has_paths: bool,
        paths: &str,
    ) -> Result<(), crate::exit::Failure> {
        let given = [
            ("--dir-filter", self.dir_filter.is_some()),
            ("--k8s-keys", self.k8s_keys.is_some()),
            ("--source-password", self.source_password.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((option, _)) if !has_paths => Err(crate::exit::Failure::new(
                crate::exit::Code::Usage,
                format!("{option} needs {paths}: it says how files are read, and none is named"),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn load_options(&self) -> LoadOptions {
        LoadOptions {
            name_filter: match self.dir_filter.unwrap_or_default() {
                DirFilter::Certs => NameFilter::CertificateLike,
                DirFilter::Crt => NameFilter::Suffix(".crt".into()),
                DirFilter::All => NameFilter::All,
            },
            key_filter: match self.k8s_keys.unwrap_or_default() {
                K8sKeys::Crt => KeyFilter::Suffix(".crt".into()),
                K8sKeys::All => KeyFilter::All,
            },
            keystore_password: self.source_password.clone().map(Into::into),
        }
    }
}

/// The environment variable holding the CA key's passphrase (after `--passphrase-file`).
pub(crate) const PASSPHRASE_ENV: &str = "ANCHORAGE_CA_PASSPHRASE";

/// The passphrase from `--passphrase-file` (its first line), else from the environment.
pub(crate) fn read_passphrase(
    file: Option<&Path>,
) -> Result<(Option<SecretString>, String), Failure> {
    if let Some(path) = file {
        let origin = format!("--passphrase-file {}", path.display());
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Failure::new(Code::BadInput, format!("{origin}: cannot be read: {e}"))
            })?);
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(Failure::new(
                Code::BadInput,
                format!("{origin}: the first line is empty; it must hold the passphrase"),
            ));
        }
        return Ok((Some(SecretString::from(line.to_owned())), origin));
    }
    let from_env = std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from);
    Ok((from_env, PASSPHRASE_ENV.to_owned()))
}

/// Parses a lifetime: numbers with units, e.g. `24h`, `90d`, `10y`, `1h30m` (s, m, h, d, w,
/// y = 365 days).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: give a number and a unit (s, m, h, d, w, y), e.g. 24h, 90d, 10y"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let seconds: u64 = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            "y" | "year" | "years" => 365 * 86_400,
            _ => return Err(bad()),
        };
        total = number
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    Ok(Duration::from_secs(total))
}

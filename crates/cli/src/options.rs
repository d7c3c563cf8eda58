//! Option values and option groups shared by several commands (`--output`, how sources are
//! read, the manifest format). A leaf: it names no command.

use anchorage_trust::{KeyFilter, LoadOptions, NameFilter};
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

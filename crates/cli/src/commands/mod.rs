//! One module per command: resolve arguments, call the library, render.

pub(crate) mod build;
pub(crate) mod ca;
pub(crate) mod doctor;
pub(crate) mod env;
pub(crate) mod image;
pub(crate) mod inspect;
pub(crate) mod k8s;
pub(crate) mod secrets;
pub(crate) mod tls;
pub(crate) mod trust;

use std::path::Path;

use anchorage_trust::{Bundle, LoadOptions, Policy, Source, TrustError, load};

use crate::exit::Failure;

/// Reads the certificate file or directory an option names (`--bundle`, `--extra`, `--ca`) into a
/// bundle, with the default policy. Errors name the option: a key is exit 4 even when nothing
/// else loaded, and "no usable certificates" gives the first problem, which says more.
pub(crate) fn read_option_bundle(path: &Path, option: &str) -> Result<Bundle, Failure> {
    let loaded = load(&[Source::Path(path.to_path_buf())], &LoadOptions::default());
    let first_problem = loaded.problems.first().map(ToString::to_string);
    // The policy first: a private key is refused (exit 4) even when nothing else loaded.
    let (bundle, _report) = Policy::default().apply(loaded).map_err(|e| {
        let no_certificates = matches!(e, TrustError::NoCertificates { .. });
        let mut f = Failure::from(e);
        f.message = match (&first_problem, no_certificates) {
            // The problem names the file already; it says more than "no usable certificates".
            (Some(problem), true) => format!("{option}: {problem}"),
            _ => format!("{option} {}: {}", path.display(), f.message),
        };
        f
    })?;
    Ok(bundle)
}

//! The served bundle checked, merged with local sources as `bundle build` merges them, and
//! written with `bundle build`'s writers (same bytes, same unchanged detection).
//!
//! Refusals come first, before any file is touched: a served bundle that fails to parse, that
//! holds no CA, or (unless serve marks it as a deliberate rotation step) that drops every root
//! the agent's own certificate chains to.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anchorage_trust::{
    Bundle, LoadOptions, Policy, Source, Written, load, write_file_if_changed, write_jks,
    write_openssl_dir, write_pem, write_pkcs12,
};

use crate::config::TrustOutputs;
use crate::error::AgentError;

/// Why a bundle was refused (the old files stay).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Part of the served bundle did not decode.
    #[error("bundle version {version} does not parse: {detail}")]
    Unparseable {
        /// The version.
        version: u64,
        /// The first problem.
        detail: String,
    },
    /// The served bundle holds no CA at all.
    #[error(
        "bundle version {version} holds no CA certificate: installing it would remove every CA"
    )]
    Empty {
        /// The version.
        version: u64,
    },
    /// The merged bundle is refused by the policy (`bundle build` would fail too).
    #[error("bundle version {version} is refused by the policy: {detail}")]
    Policy {
        /// The version.
        version: u64,
        /// The policy's words.
        detail: String,
    },
    /// The bundle drops every root the agent's own certificate chains to.
    #[error(
        "bundle version {version} drops {root}, the root this agent's own certificate chains to (serve did not mark it as a deliberate rotation step)"
    )]
    DropsOwnRoot {
        /// The version.
        version: u64,
        /// The root's subject.
        root: String,
    },
}

/// A served bundle, accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The version.
    pub version: u64,
    /// The merged bundle.
    pub bundle: Bundle,
}

/// Checks the served PEM and merges the local sources into it.
///
/// `own_roots` are the roots the agent's identity chains to (empty without an identity).
pub fn evaluate(
    version: u64,
    served: &[u8],
    local: &[Source],
    load_options: &LoadOptions,
    policy: &Policy,
    own_roots: &[anchorage_x509::Certificate],
    rotation: bool,
) -> Result<Accepted, Refusal> {
    let mut loaded = load(
        &[Source::Bytes {
            name: format!("serve bundle v{version}"),
            bytes: served.to_vec(),
        }],
        &LoadOptions::default(),
    );
    let has_blocks = served.windows(11).any(|w| w == b"-----BEGIN ");
    if loaded.certificates.is_empty() && !has_blocks {
        return Err(Refusal::Empty { version });
    }
    if let Some(problem) = loaded.problems.first() {
        return Err(Refusal::Unparseable {
            version,
            detail: problem.to_string(),
        });
    }
    if loaded.certificates.is_empty() {
        return Err(Refusal::Empty { version });
    }
    if !local.is_empty() {
        let more = load(local, load_options);
        loaded.certificates.extend(more.certificates);
        loaded.problems.extend(more.problems);
        loaded.files_read += more.files_read;
        loaded.files_skipped += more.files_skipped;
    }
    let (bundle, _report) = policy.apply(loaded).map_err(|e| Refusal::Policy {
        version,
        detail: e.to_string(),
    })?;
    if !rotation && !own_roots.is_empty() {
        let kept = own_roots
            .iter()
            .any(|r| bundle.certificates().any(|c| c.sha256() == r.sha256()));
        if !kept {
            return Err(Refusal::DropsOwnRoot {
                version,
                root: own_roots
                    .iter()
                    .map(|r| r.subject().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(Accepted { version, bundle })
}

/// One output written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutputWritten {
    /// `pem`, `openssl_dir`, `extra_pem`, `pkcs12`, `jks`, `crl`, `wasmcloud_dir`.
    pub kind: &'static str,
    /// The path.
    pub path: PathBuf,
    /// Entries written.
    pub entries: usize,
    /// False when the output already held exactly these bytes.
    pub changed: bool,
}

fn out(path: &Path) -> impl Fn(anchorage_trust::TrustError) -> AgentError + '_ {
    move |e| AgentError::Output {
        path: path.to_owned(),
        message: with_sources(&e),
    }
}

/// An error and its sources: the OS's reason ("No space left on device") is a source of
/// `TrustError::Output`, and was lost with `to_string` alone.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Writes every trust output asked for (`crl`: the PEM CRL already fetched).
pub fn write_outputs(
    bundle: &Bundle,
    outputs: &TrustOutputs,
    crl: Option<&[u8]>,
) -> Result<Vec<OutputWritten>, AgentError> {
    let mut written = Vec::new();
    let mut record = |kind, path: &Path, w: Written| {
        written.push(OutputWritten {
            kind,
            path: path.to_owned(),
            entries: w.entries,
            changed: w.changed,
        });
    };
    if let Some(path) = &outputs.pem {
        let w = write_pem(bundle, path, &outputs.pem_options).map_err(out(path))?;
        record("pem", path, w);
    }
    if let Some(dir) = &outputs.openssl_dir {
        let w = write_openssl_dir(bundle, dir, &outputs.openssl_dir_options).map_err(out(dir))?;
        record("openssl_dir", dir, w);
    }
    if let Some(path) = &outputs.extra_pem {
        let extra = bundle.without_mozilla_roots();
        let w = write_pem(&extra, path, &outputs.pem_options).map_err(out(path))?;
        record("extra_pem", path, w);
    }
    if let Some((path, options)) = &outputs.pkcs12 {
        let w = write_pkcs12(bundle, path, options).map_err(out(path))?;
        record("pkcs12", path, w);
    }
    if let Some((path, password)) = &outputs.jks {
        let w = write_jks(bundle, path, password).map_err(out(path))?;
        record("jks", path, w);
    }
    if let (Some(path), Some(crl)) = (&outputs.crl, crl) {
        let w = write_file_if_changed(path, crl, 1).map_err(out(path))?;
        record("crl", path, w);
    }
    if let Some(dir) = &outputs.wasmcloud_dir {
        let w = write_wasmcloud_dir(bundle, dir)?;
        record("wasmcloud_dir", dir, w);
    }
    Ok(written)
}

/// The wasmCloud `--tls-ca-path` directory: one `<slug>_<sha256 prefix>.crt` per CA (the keys
/// of `bundle build --k8s-wasmcloud-configmap`), replaced atomically, left alone when it
/// already holds exactly these files.
pub fn write_wasmcloud_dir(bundle: &Bundle, dir: &Path) -> Result<Written, AgentError> {
    let files: Vec<(String, String)> = anchorage_k8s::wasmcloud_keys(bundle)
        .into_iter()
        .zip(
            bundle
                .certificates()
                .map(anchorage_x509::Certificate::to_pem),
        )
        .collect();
    let entries = files.len();
    if dir_holds(dir, &files) {
        return Ok(Written {
            entries,
            changed: false,
        });
    }
    anchorage_trust::atomic::replace_dir(dir, |tmp| {
        for (name, pem) in &files {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(tmp.join(name))?;
            f.write_all(pem.as_bytes())?;
        }
        Ok(())
    })
    .map_err(|e| AgentError::Output {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Written {
        entries,
        changed: true,
    })
}

fn dir_holds(dir: &Path, files: &[(String, String)]) -> bool {
    let Ok(read) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut names: Vec<String> = read
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    want.sort_unstable();
    names == want
        && files
            .iter()
            .all(|(n, pem)| anchorage_trust::atomic::file_holds(&dir.join(n), pem.as_bytes()))
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki;
    use anchorage_x509::Certificate;

    use super::*;

    fn cert(issued: &pki::Issued) -> Certificate {
        Certificate::from_der(&issued.der).unwrap()
    }

    fn eval(served: &str, own: &[Certificate], rotation: bool) -> Result<Accepted, Refusal> {
        evaluate(
            7,
            served.as_bytes(),
            &[],
            &LoadOptions::default(),
            &Policy::default(),
            own,
            rotation,
        )
    }

    #[test]
    fn dropping_the_own_root_is_refused_unless_marked_as_rotation() {
        let (a, b) = (
            pki::root_ca("Agent Own Root"),
            pki::root_ca("Agent Other Root"),
        );
        let own = [cert(&a)];
        // Negative control: a bundle that keeps the own root (or an agent without identity).
        assert_eq!(
            eval(&format!("{}{}", a.pem, b.pem), &own, false)
                .unwrap()
                .bundle
                .len(),
            2
        );
        assert!(eval(&b.pem, &[], false).is_ok());
        let refused = eval(&b.pem, &own, false).unwrap_err();
        assert!(
            matches!(&refused, Refusal::DropsOwnRoot { version: 7, root } if root.contains("Agent Own Root")),
            "{refused:?}"
        );
        // A deliberate rotation step may drop it.
        assert_eq!(eval(&b.pem, &own, true).unwrap().bundle.len(), 1);
    }

    #[test]
    fn empty_and_unparseable_bundles_are_refused() {
        assert!(matches!(eval("", &[], false), Err(Refusal::Empty { .. })));
        assert!(matches!(
            eval("# nothing\n", &[], false),
            Err(Refusal::Empty { .. })
        ));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            eval(broken, &[], false),
            Err(Refusal::Unparseable { .. })
        ));
        // A good CA next to a broken block: still refused (serve never sends a broken block).
        let a = pki::root_ca("Agent Mixed Root");
        assert!(matches!(
            eval(&format!("{}{broken}", a.pem), &[], false),
            Err(Refusal::Unparseable { .. })
        ));
        // Only expired CAs: the policy leaves nothing, as `bundle build` would refuse.
        let old = pki::expired_root_ca("Agent Expired Root");
        assert!(matches!(
            eval(&old.pem, &[], false),
            Err(Refusal::Policy { .. })
        ));
    }

    #[test]
    fn the_wasmcloud_dir_is_left_alone_when_unchanged() {
        let a = pki::root_ca("Agent Wasm Root");
        let accepted = eval(&a.pem, &[], false).unwrap();
        let tmp = anchorage_test_support::tempdir().unwrap();
        let dir = tmp.path().join("wasm");
        assert!(write_wasmcloud_dir(&accepted.bundle, &dir).unwrap().changed);
        assert!(!write_wasmcloud_dir(&accepted.bundle, &dir).unwrap().changed);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, anchorage_k8s::wasmcloud_keys(&accepted.bundle));
        // A stray file makes it differ (and is removed by the rewrite).
        std::fs::File::create(dir.join("stray.crt")).unwrap();
        assert!(write_wasmcloud_dir(&accepted.bundle, &dir).unwrap().changed);
        assert!(!dir.join("stray.crt").exists());
    }
}

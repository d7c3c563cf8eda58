//! A PEM bundle (`ca-certificates.crt`, `tls-ca-bundle.pem`, `--cacert`) written to a file; the
//! rendering is `anchorage_bundle::render_pem`.

use std::path::Path;

use anchorage_bundle::{PemOptions, render_pem};

use crate::Bundle;
use crate::error::TrustError;
use crate::output::Written;

/// Writes the PEM bundle to `path` atomically (mode 0644), unless `path` already holds exactly
/// these bytes as a regular file with mode 0644: then it is left alone (`changed: false`).
pub fn write_pem(
    bundle: &Bundle,
    path: &Path,
    options: &PemOptions,
) -> Result<Written, TrustError> {
    let pem = render_pem(bundle, options);
    super::write_file_if_changed(path, pem.as_bytes(), bundle.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use anchorage_test_support::pki;
    use anchorage_x509::{Certificate, Position};

    use super::*;
    use crate::Origin;

    #[test]
    fn an_identical_file_is_left_alone_and_a_narrowed_mode_is_repaired() {
        let cert = Certificate::from_der(&pki::root_ca("Pem Same").der).unwrap();
        let origin = Origin {
            source: "test".into(),
            detail: None,
            position: Position::default(),
        };
        let b = Bundle::new([(cert, origin)]);
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("b.pem");
        let opts = PemOptions::default();
        assert!(write_pem(&b, &path, &opts).unwrap().changed);
        let ino = std::fs::metadata(&path).unwrap().ino();
        assert!(!write_pem(&b, &path, &opts).unwrap().changed);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "not rewritten"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(write_pem(&b, &path, &opts).unwrap().changed);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        // Comments change the bytes.
        let commented = PemOptions { comments: true };
        assert!(write_pem(&b, &path, &commented).unwrap().changed);
    }

    /// Copies `path` to a new inode with the same bytes and mode 0644, owned by `nobody`
    /// (65534): what another user with write access to the directory could plant.
    pub(crate) fn plant_foreign_copy(path: &std::path::Path) {
        let planted = path.with_extension("planted");
        #[allow(clippy::disallowed_methods)] // test fixture, not an output
        std::fs::write(&planted, std::fs::read(path).unwrap()).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&planted, Some(65_534), Some(65_534)).unwrap();
        std::fs::rename(&planted, path).unwrap();
    }

    /// Issue 19 item 8: the unchanged check kept a file with the right bytes that another user
    /// owns (who could rewrite it later), or that has another name elsewhere (through which it
    /// can be rewritten). Both are rewritten now; our own file is still left alone.
    #[test]
    fn a_planted_or_extra_linked_file_is_rewritten_never_kept() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: planting a file owned by another user needs root");
            return;
        }
        let cert = Certificate::from_der(&pki::root_ca("Pem Planted").der).unwrap();
        let origin = Origin {
            source: "test".into(),
            detail: None,
            position: Position::default(),
        };
        let b = Bundle::new([(cert, origin)]);
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("b.pem");
        let opts = PemOptions::default();
        assert!(write_pem(&b, &path, &opts).unwrap().changed);

        // Negative control: our own unchanged output is left alone.
        let ours = std::fs::metadata(&path).unwrap().ino();
        assert!(!write_pem(&b, &path, &opts).unwrap().changed);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ours);

        // The attack: the same bytes, owned by nobody.
        plant_foreign_copy(&path);
        let planted = std::fs::metadata(&path).unwrap();
        assert_eq!(planted.uid(), 65_534);
        assert!(
            write_pem(&b, &path, &opts).unwrap().changed,
            "a file owned by another user must be rewritten"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), planted.ino(), "a new inode");
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());

        // The same bytes with a second name elsewhere (the other name stays writable to
        // whoever made it).
        let other = tmp.path().join("elsewhere");
        std::fs::hard_link(&path, &other).unwrap();
        assert!(
            write_pem(&b, &path, &opts).unwrap().changed,
            "a file with an extra hard link must be rewritten"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), std::fs::metadata(&other).unwrap().ino());
        assert_eq!(meta.nlink(), 1);
        assert!(!write_pem(&b, &path, &opts).unwrap().changed);
    }
}

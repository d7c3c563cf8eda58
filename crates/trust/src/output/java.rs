//! Java trust stores (`javax.net.ssl.trustStore`): PKCS#12 and JKS files rendered by
//! `anchorage_bundle::{render_pkcs12, render_jks}`.
//!
//! The encoders are deterministic, so an unchanged bundle leaves the file alone
//! (`changed: false`). Files are mode 0644: a trust store holds public certificates,
//! and its password guards integrity, not secrecy.

use std::path::Path;

use anchorage_bundle::{Pkcs12Options, render_jks, render_pkcs12};
use secrecy::SecretString;

use crate::Bundle;
use crate::error::TrustError;
use crate::output::Written;

/// Writes the bundle as a PKCS#12 trust store to `path` atomically (mode 0644), unless `path`
/// already holds exactly these bytes: then it is left alone (`changed: false`).
pub fn write_pkcs12(
    bundle: &Bundle,
    path: &Path,
    options: &Pkcs12Options,
) -> Result<Written, TrustError> {
    let bytes = render_pkcs12(bundle, options).map_err(|source| TrustError::Keystore {
        path: path.to_owned(),
        source,
    })?;
    write(bundle, path, &bytes)
}

/// Writes the bundle as a JKS trust store to `path` atomically (mode 0644), unless `path`
/// already holds exactly these bytes: then it is left alone (`changed: false`).
pub fn write_jks(
    bundle: &Bundle,
    path: &Path,
    password: &SecretString,
) -> Result<Written, TrustError> {
    let bytes = render_jks(bundle, password).map_err(|source| TrustError::Keystore {
        path: path.to_owned(),
        source,
    })?;
    write(bundle, path, &bytes)
}

fn write(bundle: &Bundle, path: &Path, bytes: &[u8]) -> Result<Written, TrustError> {
    super::write_file_if_changed(path, bytes, bundle.len())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use anchorage_bundle::Pkcs12Profile;
    use anchorage_keystore::{KeystoreError, KeystoreKind, decode_jks, decode_pkcs12};
    use anchorage_test_support::pki;
    use anchorage_x509::{Certificate, Position};

    use super::*;
    use crate::Origin;

    fn bundle(names: &[&str]) -> Bundle {
        Bundle::new(names.iter().map(|n| {
            let cert = Certificate::from_der(&pki::root_ca(n).der).unwrap();
            let origin = Origin {
                source: "test".into(),
                detail: None,
                position: Position::default(),
            };
            (cert, origin)
        }))
    }

    fn fast(profile: Pkcs12Profile, password: Option<&str>) -> Pkcs12Options {
        Pkcs12Options {
            profile,
            password: password.map(SecretString::from),
            iterations: 100,
        }
    }

    #[test]
    fn pkcs12_is_written_once_and_then_left_alone() {
        let b = bundle(&["Java Writer A CA", "Java Writer B CA"]);
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("sub/truststore.p12");
        let opts = fast(Pkcs12Profile::Modern2023, Some("changeit"));
        let first = write_pkcs12(&b, &path, &opts).unwrap();
        assert_eq!(
            first,
            Written {
                entries: 2,
                changed: true
            }
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert!(!write_pkcs12(&b, &path, &opts).unwrap().changed);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            meta.ino(),
            "not rewritten"
        );

        let read = decode_pkcs12(&std::fs::read(&path).unwrap(), opts.password.as_ref()).unwrap();
        let ders: Vec<&[u8]> = read.certificates.iter().map(|c| c.der.as_slice()).collect();
        let want: Vec<&[u8]> = b.certificates().map(Certificate::der).collect();
        assert_eq!(ders, want, "bundle order");

        // Another password or profile changes the bytes, so the file is rewritten.
        let other = fast(Pkcs12Profile::Modern2023, Some("another"));
        assert!(write_pkcs12(&b, &path, &other).unwrap().changed);
        assert!(
            write_pkcs12(&b, &path, &fast(Pkcs12Profile::Unprotected, None))
                .unwrap()
                .changed
        );
    }

    #[test]
    fn jks_is_written_once_and_then_left_alone() {
        let b = bundle(&["Java Writer JKS CA"]);
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("truststore.jks");
        let password = SecretString::from("changeit");
        assert!(write_jks(&b, &path, &password).unwrap().changed);
        assert!(!write_jks(&b, &path, &password).unwrap().changed);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, render_jks(&b, &password).unwrap());
        let read = decode_jks(&bytes, Some(&password)).unwrap();
        assert_eq!(read.kind, KeystoreKind::Jks);
        let cert = b.certificates().next().unwrap();
        assert_eq!(
            read.certificates[0].created_ms,
            Some(cert.not_before().unix() * 1000)
        );
    }

    #[test]
    fn a_keystore_error_names_the_path_and_writes_nothing() {
        let b = bundle(&["Java Writer Error CA"]);
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("never.p12");
        let err = write_pkcs12(&b, &path, &fast(Pkcs12Profile::LegacyDes, None)).unwrap_err();
        assert!(
            matches!(&err, TrustError::Keystore { path: p, source: KeystoreError::PasswordRequired { .. } } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("never.p12"));
        assert!(!path.exists());
        let err = write_jks(&b, &path, &SecretString::from("")).unwrap_err();
        assert!(matches!(
            err,
            TrustError::Keystore {
                source: KeystoreError::EmptyPassword,
                ..
            }
        ));
        assert!(!path.exists());
    }
}

//! Image references as typed on the command line: `registry/repo:tag`, `registry/repo@sha256:…`
//! or `oci:PATH[:tag]` for an OCI image layout directory.

use std::fmt;
use std::path::PathBuf;

use oci_client::Reference;

use crate::error::RegistryError;

/// Where an image lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// In a registry (OCI distribution API).
    Registry(Reference),
    /// In an OCI image layout directory; `tag` is the `org.opencontainers.image.ref.name`
    /// annotation of its `index.json` entry (none: the only entry, for a source; `latest`
    /// for a destination).
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
}

impl ImageRef {
    /// Parses `oci:PATH[:tag]` or a registry reference. A registry reference needs a registry
    /// host (`host[:port]/repo…`): an image is never silently looked up on Docker Hub.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let refuse = |reason: &str| RegistryError::Reference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = text.strip_prefix("oci:") {
            // The tag follows the last ':' when no '/' comes after it (paths may hold ':').
            let (path, tag) = match rest.rfind(':') {
                Some(i) if !rest[i + 1..].contains('/') && i > 0 => {
                    (&rest[..i], Some(rest[i + 1..].to_owned()))
                }
                _ => (rest, None),
            };
            if path.is_empty() {
                return Err(refuse("oci: needs a directory"));
            }
            if tag.as_deref() == Some("") {
                return Err(refuse("empty tag"));
            }
            return Ok(Self::Layout {
                path: PathBuf::from(path),
                tag,
            });
        }
        let first = text.split('/').next().unwrap_or_default();
        let has_host = text.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if !has_host {
            return Err(refuse(
                "name the registry (host[:port]/repository:tag), or use oci:PATH for a layout directory",
            ));
        }
        let reference: Reference = text.parse().map_err(|e| refuse(&format!("{e}")))?;
        Ok(Self::Registry(reference))
    }

    /// The registry host, for a registry reference.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Self::Registry(r) => Some(r.resolve_registry()),
            Self::Layout { .. } => None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => write!(f, "{}", r.whole()),
            Self::Layout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layouts_and_registries() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/a:b/img:v1").unwrap(),
            ImageRef::Layout {
                path: "/tmp/a:b/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:img").unwrap(),
            ImageRef::Layout {
                path: "img".into(),
                tag: None
            }
        );
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1.2").unwrap();
        assert_eq!(r.registry(), Some("127.0.0.1:5000"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:1.2");
        for (bad, why) in [
            (
                "debian:12",
                "name the registry (host[:port]/repository:tag), or use oci:PATH for a layout directory",
            ),
            ("oci:", "oci: needs a directory"),
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                matches!(
                    &err,
                    RegistryError::Reference { reference, reason }
                        if reference == bad && reason == why
                ),
                "{bad}: {err:?}"
            );
        }
    }
}

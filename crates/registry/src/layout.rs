//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`), as `umoci`,
//! `skopeo copy oci:…` and BuildKit's `type=oci` exporter write them.
//!
//! Owns reading and writing one layout: resolving a tag through the
//! `org.opencontainers.image.ref.name` annotation, blobs by digest (checked on write), and
//! moving a tag. Every file is written beside its target and renamed into place, and
//! `index.json` is rewritten last, so an interrupted write never moves a tag.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anchorage_image::{Descriptor, Digest, DigestAlgorithm};
use serde_json::{Map, Value, json};

use crate::error::RegistryError;

/// The annotation naming an `index.json` entry's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One OCI image layout directory.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    path: PathBuf,
}

impl Layout {
    /// An existing layout (it must have an `index.json`).
    pub(crate) fn open(path: &Path) -> Result<Self, RegistryError> {
        let layout = Self {
            path: path.to_owned(),
        };
        layout.index()?;
        Ok(layout)
    }

    /// A layout to write to: created (with `oci-layout` and an empty index) when absent.
    pub(crate) fn create(path: &Path) -> Result<Self, RegistryError> {
        let layout = Self {
            path: path.to_owned(),
        };
        std::fs::create_dir_all(layout.path.join("blobs/sha256"))
            .map_err(RegistryError::layout(path, "creating blobs/sha256"))?;
        if !layout.path.join("oci-layout").exists() {
            anchorage_trust::atomic::write_file(
                &layout.path.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )
            .map_err(RegistryError::layout(path, "writing oci-layout"))?;
        }
        if !layout.path.join("index.json").exists() {
            let empty = json!({
                "schemaVersion": 2,
                "mediaType": anchorage_image::media_type::OCI_INDEX,
                "manifests": [],
            });
            anchorage_trust::atomic::write_file(
                &layout.path.join("index.json"),
                empty.to_string().as_bytes(),
            )
            .map_err(RegistryError::layout(path, "writing index.json"))?;
        }
        Ok(layout)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn invalid(&self, problem: impl Into<String>) -> RegistryError {
        RegistryError::InvalidLayout {
            path: self.path.display().to_string(),
            problem: problem.into(),
        }
    }

    fn index(&self) -> Result<Map<String, Value>, RegistryError> {
        let bytes = std::fs::read(self.path.join("index.json")).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RegistryError::NotFound {
                    what: format!("OCI layout {} (no index.json)", self.path.display()),
                }
            } else {
                RegistryError::layout(&self.path, "reading index.json")(e)
            }
        })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) if map.get("manifests").is_some_and(Value::is_array) => Ok(map),
            Ok(_) => Err(self.invalid("index.json has no manifests list")),
            Err(e) => Err(self.invalid(format!("index.json: {e}"))),
        }
    }

    /// The descriptor tagged `tag` (none: the only entry of `index.json`).
    pub(crate) fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, RegistryError> {
        let index = self.index()?;
        let entries: Vec<&Value> = index
            .get("manifests")
            .and_then(Value::as_array)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        let chosen = match tag {
            Some(tag) => entries.iter().find(|e| ref_name(e) == Some(tag)).copied(),
            None if entries.len() == 1 => entries.first().copied(),
            None if entries.is_empty() => None,
            None => {
                return Err(self.invalid(format!(
                    "index.json has {} entries: name one with oci:{}:TAG",
                    entries.len(),
                    self.path.display()
                )));
            }
        };
        let Some(entry) = chosen else {
            return Err(RegistryError::NotFound {
                what: format!(
                    "tag {} in OCI layout {}",
                    tag.unwrap_or("(any)"),
                    self.path.display()
                ),
            });
        };
        anchorage_image::parse_descriptor("index", "an index.json entry", entry).map_err(
            |e| match e {
                e @ anchorage_image::ImageError::InvalidDigest { .. } => {
                    RegistryError::InvalidDigest {
                        origin: format!("OCI layout {} (index.json)", self.path.display()),
                        source: e,
                    }
                }
                e => self.invalid(e.to_string()),
            },
        )
    }

    /// `blobs/<algorithm>/<hex>`: a [`Digest`] is only ever `sha256`/`sha512` with its exact
    /// number of hex digits, so this never leaves the layout.
    fn blob_path(&self, digest: &Digest) -> Result<PathBuf, RegistryError> {
        Ok(self.blob_dir(digest).join(digest.hex()))
    }

    fn blob_dir(&self, digest: &Digest) -> PathBuf {
        self.path.join("blobs").join(match digest.algorithm() {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        })
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Opens a blob for reading.
    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<File, RegistryError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RegistryError::NotFound {
                    what: format!("blob {digest} in OCI layout {}", self.path.display()),
                }
            } else {
                RegistryError::layout(&self.path, format!("reading blob {digest}"))(e)
            }
        })
    }

    /// Reads a whole blob (manifests, configs), checking its digest.
    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(RegistryError::layout(
                &self.path,
                format!("reading blob {digest}"),
            ))?;
        check_digest(digest, &bytes)?;
        Ok(bytes)
    }

    /// Writes a blob from `reader` (checked against `digest`); returns the bytes written.
    pub(crate) fn write_blob(
        &self,
        digest: &Digest,
        reader: &mut dyn Read,
    ) -> Result<u64, RegistryError> {
        let target = self.blob_path(digest)?;
        let dir = self.blob_dir(digest);
        std::fs::create_dir_all(&dir).map_err(RegistryError::layout(
            &self.path,
            format!("creating {}", dir.display()),
        ))?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(RegistryError::layout(&self.path, "creating a blob"))?;
        let mut hasher = digest.hasher();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(RegistryError::layout(
                &self.path,
                format!("copying blob {digest}"),
            ))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            temp.write_all(&buf[..n]).map_err(RegistryError::layout(
                &self.path,
                format!("writing blob {digest}"),
            ))?;
            total += n as u64;
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        temp.as_file().sync_all().map_err(RegistryError::layout(
            &self.path,
            format!("writing blob {digest}"),
        ))?;
        temp.persist(&target).map_err(|e| {
            RegistryError::layout(&self.path, format!("writing blob {digest}"))(e.error)
        })?;
        Ok(total)
    }

    /// Points `tag` at `descriptor` in `index.json` (an entry with the same tag is replaced,
    /// other entries and fields are kept). Written last, atomically.
    pub(crate) fn set_tag(&self, tag: &str, descriptor: &Descriptor) -> Result<(), RegistryError> {
        let mut index = self.index()?;
        if let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) {
            manifests.retain(|e| ref_name(e) != Some(tag));
            manifests.push(json!({
                "mediaType": descriptor.media_type,
                "digest": descriptor.digest.to_string(),
                "size": descriptor.size,
                "annotations": { REF_NAME: tag },
            }));
        }
        let bytes = serde_json::to_vec(&Value::Object(index))
            .map_err(|e| self.invalid(format!("index.json: {e}")))?;
        anchorage_trust::atomic::write_file(&self.path.join("index.json"), &bytes)
            .map_err(RegistryError::layout(&self.path, "writing index.json"))
    }
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry
        .get("annotations")
        .and_then(|a| a.get(REF_NAME))
        .and_then(Value::as_str)
}

/// Refuses bytes whose hash (with `digest`'s algorithm) is not `digest`.
pub(crate) fn check_digest(digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut hasher = digest.hasher();
    hasher.update(bytes);
    let actual = hasher.finish();
    if &actual == digest {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
        })
    }
}

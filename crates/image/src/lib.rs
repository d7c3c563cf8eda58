//! Container images: add private CAs to an image by appending one small, reproducible layer.
//!
//! This crate is the pure core of `anchorage image inject` (no registry access yet, no async):
//!
//! - [`find`] reads an image's layers **top down** through a [`LayerSource`], honouring OCI
//!   whiteouts and opaque directories, resolving symbolic links inside the image (RHEL's
//!   `/etc/pki/tls/certs/ca-bundle.crt` is one), and stops as soon as every answer is known.
//!   [`lookup_for`] says what to ask, from the catalogue in [`locations`] (fixed paths, every
//!   JDK under `/usr/lib/jvm` as a directory glob, and the stores under the `JAVA_HOME` of the
//!   image configuration, [`ImageHints`]), and by default stops at the layer holding the
//!   bundle ([`Depth`]). Layers are read entry by entry within [`LayerLimits`] (tar extension
//!   headers, path length, decompressed bytes per layer, index size; see `docs/limits.md`), so a
//!   hostile layer is refused with a typed error rather than read into memory.
//! - [`plan`] computes the new layer's files: each real bundle with the missing CAs appended
//!   (idempotent: an image that already trusts them plans nothing), OpenSSL `<hash>.<n>` entries
//!   where the image keeps them, Java `cacerts` (JKS or PKCS#12) re-encoded, a new
//!   `/etc/ssl/certs/ca-certificates.crt` (Mozilla's roots plus the new CAs) for images with
//!   none, or with [`Mode::Replace`]
//!   Mozilla's roots plus the new CAs without reading anything.
//! - [`write_layer`] encodes the files as a reproducible tar+gzip [`Layer`] with its digests.
//! - [`update_config`], [`update_manifest`], [`index_entries`] and [`update_index`] edit the
//!   JSON documents, keeping every field they do not know (with no layer at all when only
//!   `--env` variables are missing from an image that already trusts every CA).
//!
//! ```
//! use anchorage_image::{
//!     Depth, ImageHints, LayerFile, PlanOptions, find, lookup_for, plan, write_layer,
//! };
//! use anchorage_bundle::{Bundle, Origin};
//! use anchorage_x509::{Certificate, Position};
//!
//! let root = anchorage_test_support::pki::root_ca("Example Corp Root CA");
//! let origin = Origin { source: "corp.pem".into(), detail: None, position: Position::default() };
//! let new = Bundle::new([(Certificate::from_der(&root.der)?, origin)]);
//!
//! // A scratch image: one empty layer.
//! let mut layers = vec![tar::Builder::new(Vec::new()).into_inner()?];
//! let found = find(&mut layers, &lookup_for(&new, &ImageHints::default(), Depth::UntilBundle))?;
//! let plan = plan(&found, &new, &PlanOptions::default())?;
//! assert_eq!(plan.files[0].path, "/etc/ssl/certs/ca-certificates.crt");
//!
//! let files: Vec<LayerFile> = plan
//!     .files
//!     .iter()
//!     .map(|f| LayerFile { path: f.path.clone(), contents: f.contents.clone() })
//!     .collect();
//! let layer = write_layer(&files)?;
//! assert_eq!(layer.digest, write_layer(&files)?.digest, "reproducible");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod layer;
pub mod locations;
mod oci;
mod plan;
mod read;
mod tarball;
#[cfg(test)]
mod testing;

pub use error::ImageError;
pub use layer::{
    DIR_MODE, Digest, DigestAlgorithm, DigestHasher, FILE_MODE, Layer, LayerFile, write_layer,
};
pub use oci::{
    Descriptor, EntryKind, HISTORY_CREATED, HISTORY_CREATED_BY, IndexEntry, ManifestBlobs,
    Platform, config_env, config_has_env, index_entries, manifest_blobs, media_type,
    parse_descriptor, update_config, update_index, update_manifest,
};
pub use plan::{
    Depth, EXTRA_FILE_NAME, FileRole, ImageHints, Mode, Plan, PlanOptions, PlannedFile, lookup_for,
    plan,
};
pub use read::{
    FoundFile, ImageFiles, LayerSource, Located, Lookup, MAX_FILE_SIZE, Until, find,
    find_with_limits,
};
pub use tarball::{
    INDEX_ENTRY_OVERHEAD, LayerLimits, MAX_INDEX_BYTES, MAX_LAYER_BYTES, MAX_TAR_EXTENSION,
    MAX_TAR_PATH,
};

//! The inject pipeline: fetch the manifest or index, per platform read layers top down
//! (lazily, only as far as the plan needs), plan and write the new layer, update the config,
//! manifest and index, and push what the destination lacks, the tag last.
//!
//! Push order: every blob first (originals skipped when present, mounted within one registry,
//! copied otherwise; the new config and layer uploaded), then each platform manifest by
//! digest, then the index by digest, and only then the tag. An interrupted run leaves the tag
//! where it was; what it pushed before is unreferenced and harmless.

use std::collections::BTreeMap;
use std::io::{Read, Seek as _, SeekFrom};

use anchorage_image::{
    Depth, Descriptor, Digest, DigestAlgorithm, EntryKind, ImageError, ImageHints, LayerFile,
    LayerSource, Mode, Plan, PlanOptions, Platform, config_has_env, find, index_entries,
    lookup_for, manifest_blobs, media_type, parse_descriptor, plan, update_config, update_index,
    update_manifest, write_layer,
};
use anchorage_trust::Bundle;
use bytes::Bytes;
use oci_client::Reference;
use serde_json::Value;

use crate::error::RegistryError;
use crate::layout::{Layout, check_digest};
use crate::reference::ImageRef;
use crate::remote::{ClientSettings, Remote};

/// What to add and where.
#[derive(Clone, Debug)]
pub struct InjectRequest {
    /// The image to read.
    pub source: ImageRef,
    /// Where to write the result (a tag; for a layout, `latest` when none is given).
    pub destination: ImageRef,
    /// The CAs to add.
    pub cas: Bundle,
    /// Merge or replace, Java password, `--env`.
    pub plan: PlanOptions,
    /// How far layers are read when merging.
    pub depth: Depth,
    /// Platforms to inject into (empty: every image manifest of an index).
    pub platforms: Vec<Platform>,
    /// How registries are reached.
    pub client: ClientSettings,
}

/// A transfer, as it happens (for progress bars and log lines; the library never prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A blob download or upload starts.
    Start {
        /// `download` or `upload`.
        direction: &'static str,
        /// The blob's digest.
        digest: String,
        /// Its size, when known.
        size: Option<u64>,
    },
    /// Bytes of the current transfer went through.
    Advance(u64),
    /// The current transfer is done.
    Finish,
    /// A line worth showing (`mounted sha256:…`, `linux/arm64: bundle unchanged`).
    Note(String),
}

/// What happened to one platform's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformResult {
    /// The platform (from the index, or from the config of a single manifest).
    pub platform: Option<Platform>,
    /// The manifest read.
    pub source_digest: Digest,
    /// The manifest written (equal to `source_digest` when nothing changed).
    pub digest: Digest,
    /// The new layer, when one was added.
    pub layer: Option<LayerInfo>,
    /// The plan (files with their roles and counts, stores already up to date, variables).
    pub plan: Plan,
    /// Layers read from the top to find the stores.
    pub layers_read: usize,
}

/// The layer added to one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Compressed size in bytes.
    pub size: u64,
}

/// The outcome of [`inject`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectReport {
    /// What the destination tag now names: the new index or manifest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// What the source named.
    pub source_digest: Digest,
    /// One entry per image injected into.
    pub platforms: Vec<PlatformResult>,
    /// Blob and manifest bytes sent to the destination.
    pub bytes_uploaded: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs mounted from the source repository.
    pub blobs_mounted: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blob bytes downloaded (layers read, configs, blobs copied).
    pub bytes_downloaded: u64,
}

/// Runs the whole pipeline. `progress` receives transfer events.
pub fn inject(
    request: &InjectRequest,
    progress: &mut dyn FnMut(Event),
) -> Result<InjectReport, RegistryError> {
    let needs_remote = matches!(request.source, ImageRef::Registry(_))
        || matches!(request.destination, ImageRef::Registry(_));
    let remote = if needs_remote {
        Some(Remote::new(&request.client)?)
    } else {
        None
    };
    let source = Endpoint::source(&request.source, remote.as_ref())?;
    let destination = Endpoint::destination(&request.destination, remote.as_ref())?;
    let temp = tempfile::tempdir().map_err(RegistryError::Temp)?;
    let mut run = Run {
        source,
        destination,
        temp: temp.path().to_owned(),
        cache: BTreeMap::new(),
        progress,
        stats: Stats::default(),
    };
    run.inject(request)
}

#[derive(Default)]
struct Stats {
    bytes_uploaded: u64,
    blobs_uploaded: usize,
    blobs_mounted: usize,
    blobs_skipped: usize,
    bytes_downloaded: u64,
}

enum Endpoint<'r> {
    Registry {
        remote: &'r Remote,
        reference: Reference,
    },
    Layout {
        layout: Layout,
        tag: Option<String>,
    },
}

impl<'r> Endpoint<'r> {
    fn source(image: &ImageRef, remote: Option<&'r Remote>) -> Result<Self, RegistryError> {
        Ok(match (image, remote) {
            (ImageRef::Registry(reference), Some(remote)) => Self::Registry {
                remote,
                reference: reference.clone(),
            },
            (ImageRef::Layout { path, tag }, _) => Self::Layout {
                layout: Layout::open(path)?,
                tag: tag.clone(),
            },
            (ImageRef::Registry(_), None) => return Err(no_client()),
        })
    }

    fn destination(image: &ImageRef, remote: Option<&'r Remote>) -> Result<Self, RegistryError> {
        Ok(match (image, remote) {
            (ImageRef::Registry(reference), Some(remote)) => {
                if reference.digest().is_some() {
                    return Err(RegistryError::Reference {
                        reference: image.to_string(),
                        reason: "a destination needs a tag, not a digest (the new image has a new digest)".into(),
                    });
                }
                Self::Registry {
                    remote,
                    reference: reference.clone(),
                }
            }
            (ImageRef::Layout { path, tag }, _) => Self::Layout {
                layout: Layout::create(path)?,
                tag: Some(tag.clone().unwrap_or_else(|| "latest".to_owned())),
            },
            (ImageRef::Registry(_), None) => return Err(no_client()),
        })
    }

    fn name(&self) -> String {
        match self {
            Self::Registry { reference, .. } => reference.whole(),
            Self::Layout { layout, tag } => match tag {
                Some(tag) => format!("oci:{}:{tag}", layout.path().display()),
                None => format!("oci:{}", layout.path().display()),
            },
        }
    }

    fn at_digest(reference: &Reference, digest: &Digest) -> Reference {
        Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            digest.to_string(),
        )
    }

    /// The root document: bytes and digest.
    fn root(&self) -> Result<(Bytes, Digest), RegistryError> {
        match self {
            Self::Registry { remote, reference } => remote.manifest(reference),
            Self::Layout { layout, tag } => {
                let descriptor = layout.resolve(tag.as_deref())?;
                let bytes = layout.read_blob(&descriptor.digest)?;
                Ok((Bytes::from(bytes), descriptor.digest))
            }
        }
    }

    /// A manifest by digest (exact bytes, checked).
    fn manifest(&self, digest: &Digest) -> Result<Bytes, RegistryError> {
        match self {
            Self::Registry { remote, reference } => {
                let (bytes, got) = remote.manifest(&Self::at_digest(reference, digest))?;
                if &got != digest {
                    return Err(RegistryError::DigestMismatch {
                        expected: digest.to_string(),
                        actual: got.to_string(),
                    });
                }
                check_digest(digest, &bytes)?;
                Ok(bytes)
            }
            Self::Layout { layout, .. } => Ok(Bytes::from(layout.read_blob(digest)?)),
        }
    }

    fn has_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        match self {
            Self::Registry { remote, reference } => remote.blob_exists(reference, digest),
            Self::Layout { layout, .. } => layout.has_blob(digest),
        }
    }
}

/// A registry endpoint without a client: `inject` creates one whenever either side is a
/// registry, so this is a bug, reported rather than panicking.
fn no_client() -> RegistryError {
    RegistryError::Registry {
        registry: "-".into(),
        operation: "reading a blob".into(),
        detail: "no registry client (a bug in anchorage)".into(),
    }
}

struct Run<'r, 'p> {
    source: Endpoint<'r>,
    destination: Endpoint<'r>,
    temp: std::path::PathBuf,
    /// Blobs downloaded from a registry source, by digest, in temporary files.
    cache: BTreeMap<Digest, std::path::PathBuf>,
    progress: &'p mut dyn FnMut(Event),
    stats: Stats,
}

/// What the root document is.
enum Kind {
    Index,
    Manifest,
}

fn kind_of(bytes: &[u8], what: &str) -> Result<(Kind, String), RegistryError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: format!("(not JSON: {e})"),
        })?;
    let declared = value.get("mediaType").and_then(Value::as_str);
    let media = match declared {
        Some(m) => m.to_owned(),
        None if value.get("schemaVersion").and_then(Value::as_u64) == Some(1) => {
            "application/vnd.docker.distribution.manifest.v1+json".to_owned()
        }
        // OCI documents may leave mediaType out: tell them apart by shape.
        None if value.get("manifests").is_some() => media_type::OCI_INDEX.to_owned(),
        None if value.get("layers").is_some() => media_type::OCI_MANIFEST.to_owned(),
        None => "(none)".to_owned(),
    };
    match media.as_str() {
        media_type::OCI_INDEX | media_type::DOCKER_LIST => Ok((Kind::Index, media)),
        media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => Ok((Kind::Manifest, media)),
        _ => Err(RegistryError::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: media,
        }),
    }
}

/// Layer media types whose contents `find` can read (plain, gzip or zstd tar, told apart by
/// their magic number).
fn readable_layer(media: &str) -> bool {
    media.contains("tar") || media.contains("rootfs.diff")
}

impl Run<'_, '_> {
    fn inject(&mut self, request: &InjectRequest) -> Result<InjectReport, RegistryError> {
        let (root, source_digest) = self.source.root()?;
        let (kind, root_type) = kind_of(&root, &self.source.name())?;
        let mut platforms = Vec::new();
        let (bytes, media) = match kind {
            Kind::Manifest => {
                let (result, bytes) = self.manifest(request, &root, &source_digest, None)?;
                platforms.push(result);
                (bytes, root_type)
            }
            Kind::Index => {
                let entries = index_entries(&root).map_err(|source| RegistryError::Image {
                    platform: "index".into(),
                    source,
                })?;
                let images: Vec<_> = entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Image)
                    .collect();
                for wanted in &request.platforms {
                    if !images
                        .iter()
                        .any(|e| e.platform.as_ref().is_some_and(|p| matches(p, wanted)))
                    {
                        return Err(RegistryError::PlatformNotFound {
                            platform: wanted.to_string(),
                            available: images
                                .iter()
                                .filter_map(|e| e.platform.as_ref().map(ToString::to_string))
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
                let mut replaced = Vec::new();
                let mut kept = Vec::new();
                for entry in &entries {
                    let selected = entry.kind == EntryKind::Image
                        && (request.platforms.is_empty()
                            || entry
                                .platform
                                .as_ref()
                                .is_some_and(|p| request.platforms.iter().any(|w| matches(p, w))));
                    if !selected {
                        kept.push(entry.descriptor.clone());
                        continue;
                    }
                    let manifest = self.source.manifest(&entry.descriptor.digest)?;
                    let (result, new) = self.manifest(
                        request,
                        &manifest,
                        &entry.descriptor.digest,
                        entry.platform.clone(),
                    )?;
                    if result.digest != entry.descriptor.digest || !self.same_repository() {
                        self.push_manifest_by_digest(
                            &result.digest,
                            &new,
                            &entry.descriptor.media_type,
                        )?;
                    }
                    if result.digest != entry.descriptor.digest {
                        replaced.push((
                            entry.descriptor.digest.clone(),
                            Descriptor {
                                media_type: entry.descriptor.media_type.clone(),
                                digest: result.digest.clone(),
                                size: new.len() as u64,
                            },
                        ));
                    }
                    platforms.push(result);
                }
                // Entries not injected into (other platforms, attestations, artifacts) are kept
                // and copied, except attestations of a replaced manifest, which update_index
                // drops: they vouch for an image that is no longer the one tagged.
                let dropped = dropped_attestations(&root, &replaced);
                for descriptor in kept {
                    if dropped.contains(&descriptor.digest) {
                        continue;
                    }
                    self.copy_manifest(&descriptor, 0)?;
                }
                let bytes = if replaced.is_empty() {
                    root.to_vec()
                } else {
                    update_index(&root, &replaced).map_err(|source| RegistryError::Image {
                        platform: "index".into(),
                        source,
                    })?
                };
                (bytes, root_type)
            }
        };
        let digest = Digest::sha256(&bytes);
        self.tag(&digest, &bytes, &media)?;
        Ok(InjectReport {
            digest,
            media_type: media,
            source_digest,
            platforms,
            bytes_uploaded: self.stats.bytes_uploaded,
            blobs_uploaded: self.stats.blobs_uploaded,
            blobs_mounted: self.stats.blobs_mounted,
            blobs_skipped: self.stats.blobs_skipped,
            bytes_downloaded: self.stats.bytes_downloaded,
        })
    }
}

impl Run<'_, '_> {
    /// Injects into one image manifest; returns the result and the manifest bytes to push
    /// (the source's own bytes when nothing changed). Every blob the manifest names is at the
    /// destination when this returns.
    fn manifest(
        &mut self,
        request: &InjectRequest,
        manifest: &[u8],
        digest: &Digest,
        platform: Option<Platform>,
    ) -> Result<(PlatformResult, Vec<u8>), RegistryError> {
        if let (Kind::Index, media) = kind_of(manifest, &format!("manifest {digest}"))? {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!("manifest {digest} (an index inside an index)"),
                media_type: media,
            });
        }
        let label = platform
            .as_ref()
            .map_or_else(|| "image".to_owned(), ToString::to_string);
        let image_error = |source| RegistryError::Image {
            platform: label.clone(),
            source,
        };
        let blobs = manifest_blobs(manifest).map_err(image_error)?;
        for layer in &blobs.layers {
            if !readable_layer(&layer.media_type) {
                return Err(RegistryError::UnsupportedMediaType {
                    what: format!("layer {} of {label}", layer.digest),
                    media_type: layer.media_type.clone(),
                });
            }
        }
        let config = self.fetch_config(&blobs.config)?;
        let platform = platform.or_else(|| platform_of_config(&config));
        if platform.is_some() && !request.platforms.is_empty() {
            let p = platform.as_ref();
            if p.is_some_and(|p| !request.platforms.iter().any(|w| matches(p, w))) {
                return Err(RegistryError::PlatformNotFound {
                    platform: request
                        .platforms
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    available: p.map(ToString::to_string).unwrap_or_default(),
                });
            }
        }

        let (found, layers_read) = match request.plan.mode {
            Mode::Replace { .. } => (Default::default(), 0),
            Mode::Merge => {
                // JAVA_HOME is per platform: each image's own configuration says where its JDK is.
                let hints = ImageHints::from_config(&config);
                let lookup = lookup_for(&request.cas, &hints, request.depth);
                // Top layer first.
                let descriptors: Vec<Descriptor> = blobs.layers.iter().rev().cloned().collect();
                let mut source = Layers {
                    run: self,
                    descriptors,
                };
                let found = find(&mut source, &lookup).map_err(|source| RegistryError::Image {
                    platform: label.clone(),
                    source,
                })?;
                let read = found.layers_read;
                (found, read)
            }
        };
        let plan =
            plan(&found, &request.cas, &request.plan).map_err(|source| RegistryError::Image {
                platform: label.clone(),
                source,
            })?;
        for original in std::iter::once(&blobs.config).chain(&blobs.layers) {
            self.ensure_blob(original)?;
        }
        // An image that already trusts every CA gets no layer; with `--env` it may still lack
        // the variables, and then only its configuration changes.
        let env_only = plan.is_empty() && !config_has_env(&config, &plan.env);
        if plan.is_empty() && !env_only {
            (self.progress)(Event::Note(format!(
                "{label}: already trusts every CA; unchanged"
            )));
            return Ok((
                PlatformResult {
                    platform,
                    source_digest: digest.clone(),
                    digest: digest.clone(),
                    layer: None,
                    plan,
                    layers_read,
                },
                manifest.to_vec(),
            ));
        }
        let layer = if env_only {
            (self.progress)(Event::Note(format!(
                "{label}: already trusts every CA; setting the variables only"
            )));
            None
        } else {
            let files: Vec<LayerFile> = plan
                .files
                .iter()
                .map(|f| LayerFile {
                    path: f.path.clone(),
                    contents: f.contents.clone(),
                })
                .collect();
            Some(write_layer(&files).map_err(image_error)?)
        };
        let new_config = update_config(&config, layer.as_ref().map(|l| &l.diff_id), &plan.env)
            .map_err(image_error)?;
        let config_descriptor = Descriptor {
            media_type: blobs.config.media_type.clone(),
            digest: Digest::sha256(&new_config),
            size: new_config.len() as u64,
        };
        let new_manifest =
            update_manifest(manifest, &config_descriptor, layer.as_ref()).map_err(image_error)?;
        self.upload(&config_descriptor.digest, Bytes::from(new_config))?;
        if let Some(layer) = &layer {
            self.upload(&layer.digest, Bytes::from(layer.blob.clone()))?;
        }
        Ok((
            PlatformResult {
                platform,
                source_digest: digest.clone(),
                digest: Digest::sha256(&new_manifest),
                layer: layer.map(|layer| LayerInfo {
                    digest: layer.digest,
                    diff_id: layer.diff_id,
                    size: layer.size,
                }),
                plan,
                layers_read,
            },
            new_manifest,
        ))
    }

    /// Copies a manifest (or nested index) the result keeps unchanged, with everything it
    /// names, to the destination.
    fn copy_manifest(
        &mut self,
        descriptor: &Descriptor,
        depth: usize,
    ) -> Result<(), RegistryError> {
        if self.same_repository() {
            return Ok(());
        }
        if depth > 4 {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!("manifest {} (indexes nested too deep)", descriptor.digest),
                media_type: descriptor.media_type.clone(),
            });
        }
        let bytes = self.source.manifest(&descriptor.digest)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let what = format!("manifest {}", descriptor.digest);
        if let Some(children) = value.get("manifests").and_then(Value::as_array) {
            for child in children {
                let child = descriptor_of(child, &what)?;
                self.copy_manifest(&child, depth + 1)?;
            }
        } else {
            let blobs: Vec<Descriptor> = value
                .get("config")
                .into_iter()
                .chain(
                    value
                        .get("layers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                )
                .map(|blob| descriptor_of(blob, &what))
                .collect::<Result<_, _>>()?;
            for blob in &blobs {
                self.ensure_blob(blob)?;
            }
        }
        self.push_manifest_by_digest(&descriptor.digest, &bytes, &descriptor.media_type)
    }

    /// Makes sure the destination holds an original blob: skipped when present, mounted
    /// within one registry, copied otherwise.
    /// Whether source and destination are one repository of one registry (or one layout):
    /// everything the source references is then at the destination already.
    fn same_repository(&self) -> bool {
        match (&self.source, &self.destination) {
            (
                Endpoint::Registry {
                    reference: from, ..
                },
                Endpoint::Registry { reference: to, .. },
            ) => {
                from.resolve_registry() == to.resolve_registry()
                    && from.repository() == to.repository()
            }
            (Endpoint::Layout { layout: from, .. }, Endpoint::Layout { layout: to, .. }) => {
                from.path() == to.path()
            }
            _ => false,
        }
    }

    fn ensure_blob(&mut self, blob: &Descriptor) -> Result<(), RegistryError> {
        // Within one repository the source manifest's blobs are there by definition: no
        // request at all, so the cost of a run does not grow with the number of layers.
        if self.same_repository() {
            self.stats.blobs_skipped += 1;
            return Ok(());
        }
        if self.destination.has_blob(&blob.digest)? {
            self.stats.blobs_skipped += 1;
            return Ok(());
        }
        if let (
            Endpoint::Registry {
                remote,
                reference: from,
            },
            Endpoint::Registry { reference: to, .. },
        ) = (&self.source, &self.destination)
            && from.resolve_registry() == to.resolve_registry()
            && remote.mount(to, from, &blob.digest)?
        {
            self.stats.blobs_mounted += 1;
            (self.progress)(Event::Note(format!("mounted {}", blob.digest)));
            return Ok(());
        }
        match &self.source {
            Endpoint::Layout { layout, .. } => {
                let file = layout.open_blob(&blob.digest)?;
                self.send(&blob.digest, blob.size, Blob::File(file))
            }
            Endpoint::Registry { .. } => {
                let path = self.cached(&blob.digest, blob.size)?;
                let file = std::fs::File::open(&path).map_err(RegistryError::Temp)?;
                self.send(&blob.digest, blob.size, Blob::File(file))
            }
        }
    }

    /// Uploads a blob made here (new config, new layer) unless the destination has it.
    fn upload(&mut self, digest: &Digest, bytes: Bytes) -> Result<(), RegistryError> {
        if self.destination.has_blob(digest)? {
            self.stats.blobs_skipped += 1;
            return Ok(());
        }
        let size = bytes.len() as u64;
        self.send(digest, size, Blob::Memory(bytes))
    }

    fn send(&mut self, digest: &Digest, size: u64, blob: Blob) -> Result<(), RegistryError> {
        (self.progress)(Event::Start {
            direction: "upload",
            digest: digest.to_string(),
            size: Some(size),
        });
        let sent = match (&self.destination, blob) {
            (Endpoint::Layout { layout, .. }, Blob::Memory(bytes)) => {
                layout.write_blob(digest, &mut &bytes[..])?
            }
            (Endpoint::Layout { layout, .. }, Blob::File(mut file)) => {
                layout.write_blob(digest, &mut file)?
            }
            (Endpoint::Registry { remote, reference }, Blob::Memory(bytes)) => {
                let len = bytes.len() as u64;
                remote.push_blob(reference, digest, bytes)?;
                len
            }
            // Streamed from the file: an original layer crossing registries is never held
            // in memory whole.
            (Endpoint::Registry { remote, reference }, Blob::File(file)) => {
                remote.push_blob_file(reference, digest, file, size)?;
                size
            }
        };
        (self.progress)(Event::Advance(sent));
        (self.progress)(Event::Finish);
        self.stats.bytes_uploaded += sent;
        self.stats.blobs_uploaded += 1;
        Ok(())
    }

    fn push_manifest_by_digest(
        &mut self,
        digest: &Digest,
        bytes: &[u8],
        media: &str,
    ) -> Result<(), RegistryError> {
        match &self.destination {
            Endpoint::Layout { layout, .. } => {
                if !layout.has_blob(digest)? {
                    self.stats.bytes_uploaded += layout.write_blob(digest, &mut &bytes[..])?;
                }
            }
            Endpoint::Registry { remote, reference } => {
                remote.push_manifest(&Endpoint::at_digest(reference, digest), bytes, media)?;
                self.stats.bytes_uploaded += bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// Writes the root document and moves the tag: the last step.
    fn tag(&mut self, digest: &Digest, bytes: &[u8], media: &str) -> Result<(), RegistryError> {
        match &self.destination {
            Endpoint::Layout { layout, tag } => {
                if !layout.has_blob(digest)? {
                    self.stats.bytes_uploaded += layout.write_blob(digest, &mut &bytes[..])?;
                }
                let descriptor = Descriptor {
                    media_type: media.to_owned(),
                    digest: digest.clone(),
                    size: bytes.len() as u64,
                };
                layout.set_tag(tag.as_deref().unwrap_or("latest"), &descriptor)
            }
            Endpoint::Registry { remote, reference } => {
                remote.push_manifest(reference, bytes, media)?;
                self.stats.bytes_uploaded += bytes.len() as u64;
                Ok(())
            }
        }
    }

    /// An image configuration from the source, digest checked, at most
    /// [`crate::MAX_CONFIG_BYTES`] (it is read into memory whole).
    fn fetch_config(&mut self, config: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        if config.size > crate::remote::MAX_CONFIG_BYTES {
            return Err(RegistryError::TooLarge {
                registry: self.source.name(),
                what: format!(
                    "config {} (its descriptor says {} bytes)",
                    config.digest, config.size
                ),
                limit: crate::remote::MAX_CONFIG_BYTES,
            });
        }
        match &self.source {
            Endpoint::Layout { layout, .. } => layout.read_blob(&config.digest),
            Endpoint::Registry { .. } => {
                let path = self.cached(&config.digest, config.size)?;
                std::fs::read(path).map_err(RegistryError::Temp)
            }
        }
    }

    /// Downloads a blob of a registry source into a temporary file once, refusing more than
    /// `size` bytes.
    ///
    /// The file is named by the digest's algorithm and hex alone (a parsed [`Digest`] holds
    /// nothing else) inside the run's private 0700 directory, and created with `create_new`
    /// and `O_NOFOLLOW`: it never follows a link nor reuses a file it did not create.
    fn cached(&mut self, digest: &Digest, size: u64) -> Result<std::path::PathBuf, RegistryError> {
        if let Some(path) = self.cache.get(digest) {
            return Ok(path.clone());
        }
        let Endpoint::Registry { remote, reference } = &self.source else {
            return Err(no_client());
        };
        let algorithm = match digest.algorithm() {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        };
        let path = self.temp.join(format!("{algorithm}-{}", digest.hex()));
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(RegistryError::Temp)?
        };
        (self.progress)(Event::Start {
            direction: "download",
            digest: digest.to_string(),
            size: Some(size),
        });
        let progress = &mut *self.progress;
        let total = remote.blob_into(reference, digest, size, &mut file, &mut |n| {
            progress(Event::Advance(n));
        })?;
        (self.progress)(Event::Finish);
        self.stats.bytes_downloaded += total;
        self.cache.insert(digest.clone(), path.clone());
        Ok(path)
    }
}

/// Bytes to send: made here (small), or an original blob in a file.
enum Blob {
    Memory(Bytes),
    File(std::fs::File),
}

/// The source's layers for `find`, top first, fetched only when opened.
struct Layers<'a, 'r, 'p> {
    run: &'a mut Run<'r, 'p>,
    descriptors: Vec<Descriptor>,
}

impl LayerSource for Layers<'_, '_, '_> {
    fn layer_count(&self) -> usize {
        self.descriptors.len()
    }

    fn open(&mut self, index: usize) -> std::io::Result<Box<dyn Read + '_>> {
        let descriptor = &self.descriptors[index];
        let file = match &self.run.source {
            Endpoint::Layout { layout, .. } => layout.open_blob(&descriptor.digest),
            Endpoint::Registry { .. } => {
                let (digest, size) = (descriptor.digest.clone(), descriptor.size);
                self.run
                    .cached(&digest, size)
                    .and_then(|path| std::fs::File::open(path).map_err(RegistryError::Temp))
            }
        };
        let mut file = file.map_err(std::io::Error::other)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

/// A descriptor of a manifest or index being copied; a malformed one (a bad digest above
/// all) is an error, never skipped.
fn descriptor_of(value: &Value, what: &str) -> Result<Descriptor, RegistryError> {
    parse_descriptor("manifest", "a descriptor", value).map_err(|source| match source {
        source @ ImageError::InvalidDigest { .. } => RegistryError::InvalidDigest {
            origin: what.to_owned(),
            source,
        },
        source => RegistryError::Image {
            platform: what.to_owned(),
            source,
        },
    })
}

fn platform_of_config(config: &[u8]) -> Option<Platform> {
    let value: Value = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: value.get("os")?.as_str()?.to_owned(),
        architecture: value.get("architecture")?.as_str()?.to_owned(),
        variant: value
            .get("variant")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Digests of the index entries `update_index` drops (attestations of replaced manifests).
fn dropped_attestations(index: &[u8], replaced: &[(Digest, Descriptor)]) -> Vec<Digest> {
    let value: Value = serde_json::from_slice(index).unwrap_or(Value::Null);
    value
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            let of = m
                .get("annotations")
                .and_then(|a| a.get("vnd.docker.reference.digest"))
                .and_then(Value::as_str);
            replaced.iter().any(|(old, _)| Some(old.as_str()) == of)
        })
        .filter_map(|m| {
            m.get("digest")
                .and_then(Value::as_str)
                .and_then(|d| Digest::parse(d).ok())
        })
        .collect()
}

/// Whether `platform` is the one `wanted` names (a variant is compared only when named).
pub fn matches(platform: &Platform, wanted: &Platform) -> bool {
    platform.os == wanted.os
        && platform.architecture == wanted.architecture
        && (wanted.variant.is_none() || platform.variant == wanted.variant)
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(text: &str) -> Result<Platform, RegistryError> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: (*os).to_owned(),
            architecture: (*arch).to_owned(),
            variant: None,
        }),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            })
        }
        _ => Err(RegistryError::Reference {
            reference: text.to_owned(),
            reason: "a platform is os/arch or os/arch/variant (linux/arm64/v8)".into(),
        }),
    }
}

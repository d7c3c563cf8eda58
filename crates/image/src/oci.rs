//! Image configuration, manifest and index edits that keep every field we do not know.
//!
//! Documents are handled as `serde_json::Value`, not typed structs: a registry, builder or
//! signer may add fields (and annotations) we have never heard of, and dropping one would
//! change the image's meaning. This module owns those edits and the index walk that picks the
//! image manifests out of an index; it does not fetch or push anything.
//!
//! Output is compact JSON. Object keys come out sorted while serde_json's `preserve_order`
//! feature is off (as in this workspace today) and in input order if a dependency turns it on:
//! deterministic for one build either way, but a change of that feature changes new digests.

use serde_json::{Map, Value, json};

use crate::error::ImageError;
use crate::layer::{Digest, Layer};

/// `created` of the history entry we add: fixed, so the config (and its digest) is reproducible.
pub const HISTORY_CREATED: &str = "1970-01-01T00:00:00Z";
/// `created_by` of the history entry we add.
pub const HISTORY_CREATED_BY: &str = "anchorage image inject";

/// Media types we read and write.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// A content descriptor: what a manifest or index points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's length.
    pub size: u64,
}

fn bad(document: &'static str, problem: impl Into<String>) -> ImageError {
    ImageError::Json {
        document,
        problem: problem.into(),
    }
}

fn parse(document: &'static str, bytes: &[u8]) -> Result<Map<String, Value>, ImageError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad(document, "not a JSON object")),
        Err(e) => Err(bad(document, e.to_string())),
    }
}

fn render(document: &'static str, map: Map<String, Value>) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(&Value::Object(map)).map_err(|e| bad(document, e.to_string()))
}

/// Adds the layer with `diff_id` to an image configuration: appends it to `rootfs.diff_ids`,
/// adds a history entry (fixed `created`, `created_by` [`HISTORY_CREATED_BY`]), and sets `env`
/// (replacing a variable of the same name). Every other field is kept.
///
/// Without a layer (`diff_id` `None`: the image already trusts every CA and only variables
/// change) `rootfs` is left alone and the history entry is marked `empty_layer`, as a
/// Dockerfile `ENV` line is.
pub fn update_config(
    config: &[u8],
    diff_id: Option<&Digest>,
    env: &[(String, String)],
) -> Result<Vec<u8>, ImageError> {
    const DOC: &str = "config";
    let mut map = parse(DOC, config)?;
    let diff_ids = map
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad(DOC, "rootfs.diff_ids is missing"))?;
    if let Some(diff_id) = diff_id {
        diff_ids.push(Value::String(diff_id.to_string()));
    }

    let history = map
        .entry("history")
        .or_insert_with(|| Value::Array(Vec::new()));
    let entry = match diff_id {
        Some(_) => json!({
            "created": HISTORY_CREATED,
            "created_by": HISTORY_CREATED_BY,
            "comment": "private CA certificates",
        }),
        None => json!({
            "created": HISTORY_CREATED,
            "created_by": HISTORY_CREATED_BY,
            "comment": "trust store environment variables",
            "empty_layer": true,
        }),
    };
    history
        .as_array_mut()
        .ok_or_else(|| bad(DOC, "history is not a list"))?
        .push(entry);

    if !env.is_empty() {
        let runtime = map
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if runtime.is_null() {
            *runtime = Value::Object(Map::new());
        }
        let runtime = runtime
            .as_object_mut()
            .ok_or_else(|| bad(DOC, "config is not an object"))?;
        let vars = runtime
            .entry("Env")
            .or_insert_with(|| Value::Array(Vec::new()));
        if vars.is_null() {
            *vars = Value::Array(Vec::new());
        }
        let vars = vars
            .as_array_mut()
            .ok_or_else(|| bad(DOC, "config.Env is not a list"))?;
        for (name, value) in env {
            let prefix = format!("{name}=");
            vars.retain(|v| !v.as_str().is_some_and(|s| s.starts_with(&prefix)));
            vars.push(Value::String(format!("{name}={value}")));
        }
    }
    render(DOC, map)
}

/// The runtime variables of an image configuration (`config.Env`), as `(NAME, value)` in order;
/// empty when there are none or the document is not a configuration.
pub fn config_env(config: &[u8]) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_slice::<Value>(config) else {
        return Vec::new();
    };
    value
        .get("config")
        .and_then(|c| c.get("Env"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|var| var.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Whether the configuration already sets every variable of `env` to its value (the last
/// definition of a name counting, as at run time).
pub fn config_has_env(config: &[u8], env: &[(String, String)]) -> bool {
    let vars = config_env(config);
    env.iter().all(|(name, value)| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, v)| v == value)
    })
}

/// Appends `layer` (when there is one) to an image manifest and points it at the new `config`.
/// The layer's media type follows the manifest's (Docker schema 2 or OCI); every other field
/// and annotation is kept.
pub fn update_manifest(
    manifest: &[u8],
    config: &Descriptor,
    layer: Option<&Layer>,
) -> Result<Vec<u8>, ImageError> {
    const DOC: &str = "manifest";
    let mut map = parse(DOC, manifest)?;
    let docker = map.get("mediaType").and_then(Value::as_str) == Some(media_type::DOCKER_MANIFEST);
    let layer_type = if docker {
        media_type::DOCKER_LAYER_GZIP
    } else {
        media_type::OCI_LAYER_GZIP
    };
    let old = map
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad(DOC, "config descriptor is missing"))?;
    old.insert("digest".into(), Value::String(config.digest.to_string()));
    old.insert("size".into(), Value::from(config.size));
    old.insert("mediaType".into(), Value::String(config.media_type.clone()));
    let layers = map
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad(DOC, "layers is missing"))?;
    if let Some(layer) = layer {
        layers.push(json!({
            "mediaType": layer_type,
            "digest": layer.digest.to_string(),
            "size": layer.size,
        }));
    }
    render(DOC, map)
}

/// The parts of a manifest needed to find its blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestBlobs {
    /// The config descriptor.
    pub config: Descriptor,
    /// Layer descriptors, bottom layer first (as in the manifest).
    pub layers: Vec<Descriptor>,
}

/// Reads the config and layer descriptors of an image manifest.
pub fn manifest_blobs(manifest: &[u8]) -> Result<ManifestBlobs, ImageError> {
    const DOC: &str = "manifest";
    let map = parse(DOC, manifest)?;
    let config = map
        .get("config")
        .ok_or_else(|| bad(DOC, "config descriptor is missing"))
        .and_then(|c| parse_descriptor(DOC, "config descriptor", c))?;
    let layers = map
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(DOC, "layers is missing"))?
        .iter()
        .map(|l| parse_descriptor(DOC, "a layer descriptor", l))
        .collect::<Result<_, _>>()?;
    Ok(ManifestBlobs { config, layers })
}

/// A descriptor: media type, size and a digest that [`Digest::parse`] accepts (a malformed
/// digest is an error, never skipped: it would otherwise name a file or URL).
pub fn parse_descriptor(
    document: &'static str,
    what: &str,
    value: &Value,
) -> Result<Descriptor, ImageError> {
    let malformed = || bad(document, format!("{what} is malformed"));
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?
        .to_owned();
    let digest = value
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?;
    let size = value
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(malformed)?;
    Ok(Descriptor {
        media_type,
        digest: Digest::parse(digest)?,
        size,
    })
}

/// A platform of an index entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, or `unknown` for attestations.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ...
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What an index entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// An image manifest to inject into.
    Image,
    /// A BuildKit attestation manifest (`vnd.docker.reference.type: attestation-manifest`, or an
    /// `unknown/unknown` platform): skipped.
    Attestation,
    /// Something else (a nested index, an artifact): skipped.
    Other,
}

/// One entry of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The manifest descriptor.
    pub descriptor: Descriptor,
    /// Its platform, if the index names one.
    pub platform: Option<Platform>,
    /// Whether to inject into it.
    pub kind: EntryKind,
}

/// The entries of an image index (or Docker manifest list), in index order.
pub fn index_entries(index: &[u8]) -> Result<Vec<IndexEntry>, ImageError> {
    const DOC: &str = "index";
    let map = parse(DOC, index)?;
    let manifests = map
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(DOC, "manifests is missing"))?;
    manifests
        .iter()
        .map(|m| {
            let descriptor = parse_descriptor(DOC, "a manifest descriptor", m)?;
            let platform = m.get("platform").and_then(|p| {
                Some(Platform {
                    os: p.get("os")?.as_str()?.to_owned(),
                    architecture: p.get("architecture")?.as_str()?.to_owned(),
                    variant: p.get("variant").and_then(Value::as_str).map(str::to_owned),
                })
            });
            let attestation = m
                .get("annotations")
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .and_then(Value::as_str)
                == Some("attestation-manifest")
                || platform
                    .as_ref()
                    .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown");
            let image = matches!(
                descriptor.media_type.as_str(),
                media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST
            );
            let kind = match (image, attestation) {
                (true, false) => EntryKind::Image,
                (_, true) => EntryKind::Attestation,
                (false, false) => EntryKind::Other,
            };
            Ok(IndexEntry {
                descriptor,
                platform,
                kind,
            })
        })
        .collect()
}

/// Points an index at new manifests: each `(old, new)` replaces the digest and size of the
/// entry whose digest is `old` (platform, annotations and unknown fields kept). Attestation
/// manifests that describe a replaced manifest (`vnd.docker.reference.digest: old`) are
/// dropped: they vouch for an image that is no longer the one tagged.
pub fn update_index(
    index: &[u8],
    replaced: &[(Digest, Descriptor)],
) -> Result<Vec<u8>, ImageError> {
    const DOC: &str = "index";
    let mut map = parse(DOC, index)?;
    let manifests = map
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad(DOC, "manifests is missing"))?;
    let is_replaced =
        |digest: Option<&str>| replaced.iter().any(|(old, _)| Some(old.as_str()) == digest);
    manifests.retain(|m| {
        !is_replaced(
            m.get("annotations")
                .and_then(|a| a.get("vnd.docker.reference.digest"))
                .and_then(Value::as_str),
        )
    });
    for m in manifests.iter_mut() {
        let digest = m.get("digest").and_then(Value::as_str).map(str::to_owned);
        if let Some((_, new)) = replaced
            .iter()
            .find(|(old, _)| Some(old.as_str()) == digest.as_deref())
            && let Some(obj) = m.as_object_mut()
        {
            obj.insert("digest".into(), Value::String(new.digest.to_string()));
            obj.insert("size".into(), Value::from(new.size));
            obj.insert("mediaType".into(), Value::String(new.media_type.clone()));
        }
    }
    render(DOC, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid digest named by `name` (the SHA-256 of the name).
    fn d(name: &str) -> String {
        Digest::sha256(name.as_bytes()).as_str().to_owned()
    }

    fn layer() -> Layer {
        crate::write_layer(&[crate::LayerFile {
            path: "/etc/ssl/certs/ca-certificates.crt".into(),
            contents: b"x".to_vec(),
        }])
        .unwrap()
    }

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn config_gains_the_layer_history_and_env_and_keeps_unknown_fields() {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "x-vendor": {"keep": [1, 2, 3]},
            "config": {"Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/old"], "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": [d("aaaa")]},
            "history": [{"created_by": "base"}],
        });
        let diff_id = Digest::sha256(b"bbbb");
        let env = vec![(
            "SSL_CERT_FILE".to_owned(),
            "/etc/ssl/certs/ca-certificates.crt".to_owned(),
        )];
        let out =
            value(&update_config(config.to_string().as_bytes(), Some(&diff_id), &env).unwrap());
        assert_eq!(out["x-vendor"], config["x-vendor"]);
        assert_eq!(out["created"], config["created"]);
        assert_eq!(out["config"]["Labels"], config["config"]["Labels"]);
        assert_eq!(out["rootfs"]["diff_ids"], json!([d("aaaa"), d("bbbb")]));
        assert_eq!(out["history"][1]["created"], HISTORY_CREATED);
        assert_eq!(out["history"][1]["created_by"], HISTORY_CREATED_BY);
        assert_eq!(
            out["config"]["Env"],
            json!([
                "PATH=/usr/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
            ])
        );
    }

    #[test]
    fn config_of_scratch_image_without_runtime_config_gets_one_for_env() {
        let config = json!({"rootfs": {"type": "layers", "diff_ids": []}, "config": null});
        let env = vec![("A".to_owned(), "b".to_owned())];
        let d = Digest::sha256(b"cc");
        let out = value(&update_config(config.to_string().as_bytes(), Some(&d), &env).unwrap());
        assert_eq!(out["config"]["Env"], json!(["A=b"]));
        assert_eq!(out["history"].as_array().unwrap().len(), 1);

        let err = update_config(b"{\"os\":\"linux\"}", Some(&d), &[]).unwrap_err();
        assert!(err.to_string().contains("rootfs.diff_ids"), "{err}");
    }

    #[test]
    fn variables_alone_change_env_and_history_but_not_the_layers() {
        let config = json!({
            "config": {"Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/old"]},
            "rootfs": {"type": "layers", "diff_ids": [d("aaaa")]},
            "history": [{"created_by": "base"}],
        });
        let bytes = config.to_string().into_bytes();
        let env = vec![("SSL_CERT_FILE".to_owned(), "/new".to_owned())];
        assert!(!config_has_env(&bytes, &env));
        assert!(config_has_env(&bytes, &[]));
        let out = update_config(&bytes, None, &env).unwrap();
        assert!(config_has_env(&out, &env));
        assert_eq!(
            out,
            update_config(&bytes, None, &env).unwrap(),
            "reproducible"
        );
        let out = value(&out);
        assert_eq!(out["rootfs"], config["rootfs"]);
        assert_eq!(out["history"][1]["empty_layer"], true);
        assert_eq!(out["history"][1]["created"], HISTORY_CREATED);
        assert_eq!(
            config_env(&serde_json::to_vec(&out).unwrap()),
            [
                ("PATH".to_owned(), "/usr/bin".to_owned()),
                ("SSL_CERT_FILE".to_owned(), "/new".to_owned())
            ]
        );

        let manifest = json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("o"), "size": 1},
            "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": d("l1"), "size": 5}]});
        let descriptor = Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: Digest::sha256(b"new"),
            size: 2,
        };
        let out =
            value(&update_manifest(manifest.to_string().as_bytes(), &descriptor, None).unwrap());
        assert_eq!(out["layers"], manifest["layers"]);
        assert_eq!(out["config"]["digest"], d("new"));
    }

    #[test]
    fn manifest_gains_the_layer_and_new_config_and_keeps_the_rest() {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": d("old"), "size": 10, "annotations": {"k": "v"}},
            "layers": [{"mediaType": media_type::DOCKER_LAYER_GZIP, "digest": d("l1"),
                        "size": 5, "urls": ["https://example.invalid/l1"]}],
            "annotations": {"org.opencontainers.image.source": "https://example.invalid"},
            "x-unknown": true,
        });
        let layer = layer();
        let config = Descriptor {
            media_type: "application/vnd.docker.container.image.v1+json".into(),
            digest: Digest::sha256(b"new"),
            size: 20,
        };
        let out = value(
            &update_manifest(manifest.to_string().as_bytes(), &config, Some(&layer)).unwrap(),
        );
        assert_eq!(out["annotations"], manifest["annotations"]);
        assert_eq!(out["x-unknown"], true);
        assert_eq!(out["config"]["digest"], d("new"));
        assert_eq!(out["config"]["size"], 20);
        assert_eq!(out["config"]["annotations"], json!({"k": "v"}));
        assert_eq!(out["layers"][0], manifest["layers"][0]);
        assert_eq!(out["layers"][1]["mediaType"], media_type::DOCKER_LAYER_GZIP);
        assert_eq!(out["layers"][1]["digest"], layer.digest.as_str());
        assert_eq!(out["layers"][1]["size"], layer.size);

        let blobs = manifest_blobs(&serde_json::to_vec(&out).unwrap()).unwrap();
        assert_eq!(blobs.layers.len(), 2);
        assert_eq!(blobs.config, config);

        let oci = json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("o"), "size": 1},
            "layers": []});
        let out =
            value(&update_manifest(oci.to_string().as_bytes(), &config, Some(&layer)).unwrap());
        assert_eq!(out["layers"][0]["mediaType"], media_type::OCI_LAYER_GZIP);
    }

    fn index() -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "annotations": {"keep": "me"},
            "manifests": [
                {"mediaType": media_type::OCI_MANIFEST, "digest": d("amd"), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media_type::OCI_MANIFEST, "digest": d("arm"), "size": 2,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                 "annotations": {"x": "y"}},
                {"mediaType": media_type::OCI_MANIFEST, "digest": d("att"), "size": 3,
                 "platform": {"os": "unknown", "architecture": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                 "vnd.docker.reference.digest": d("amd")}},
                {"mediaType": "application/vnd.example.artifact", "digest": d("sig"), "size": 4},
            ],
        })
    }

    #[test]
    fn index_walker_tells_images_from_attestations_and_others() {
        let entries = index_entries(index().to_string().as_bytes()).unwrap();
        let kinds: Vec<_> = entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::Image,
                EntryKind::Image,
                EntryKind::Attestation,
                EntryKind::Other
            ]
        );
        assert_eq!(
            entries[1].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn index_update_replaces_digests_and_drops_stale_attestations() {
        let new = Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256(b"amd2"),
            size: 9,
        };
        let out = value(
            &update_index(
                index().to_string().as_bytes(),
                &[(Digest::sha256(b"amd"), new)],
            )
            .unwrap(),
        );
        assert_eq!(out["annotations"], json!({"keep": "me"}));
        let manifests = out["manifests"].as_array().unwrap();
        assert_eq!(
            manifests.len(),
            3,
            "the attestation of the old amd64 image is gone"
        );
        assert_eq!(manifests[0]["digest"], d("amd2"));
        assert_eq!(manifests[0]["size"], 9);
        assert_eq!(
            manifests[0]["platform"],
            json!({"os": "linux", "architecture": "amd64"})
        );
        assert_eq!(manifests[1], index()["manifests"][1]);
    }
}

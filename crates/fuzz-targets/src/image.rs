//! Targets over anchorage-image: the layer reader (tar, gzip, zstd, whiteouts, links), the
//! layer writer, and the config/manifest/index editors.

use anchorage_image::{
    Descriptor, Digest, Layer, LayerFile, LayerLimits, Located, Lookup, Until, config_env,
    config_has_env, find, find_with_limits, index_entries, manifest_blobs, update_config,
    update_index, update_manifest, write_layer,
};
use arbitrary::Unstructured;

/// The paths every image lookup asks for: the usual bundle files, a Java store reached through
/// a glob, and the OpenSSL hash directory.
fn lookup() -> Lookup {
    Lookup {
        paths: vec![
            "/etc/ssl/certs/ca-certificates.crt".into(),
            "/etc/pki/tls/certs/ca-bundle.crt".into(),
            "/etc/ssl/cert.pem".into(),
            "/etc/ssl/certs/java/cacerts".into(),
            "/a/b".into(),
        ],
        hash_dirs: vec!["/etc/ssl/certs".into()],
        globs: vec!["/usr/lib/jvm/*/lib/security/cacerts".into()],
        until: Until::AllKnown,
    }
}

/// Frames layers (top first) the way [`image_layers`] splits its input: a count byte, then a
/// 4-byte big-endian length before every layer but the last, which takes the rest.
pub fn frame_layers(layers: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![layers.len().saturating_sub(1) as u8];
    for (i, layer) in layers.iter().enumerate() {
        if i + 1 < layers.len() {
            out.extend_from_slice(&(layer.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(layer);
    }
    out
}

fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let Some((count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(count % 3) + 1;
    let mut layers = Vec::with_capacity(count);
    for _ in 1..count {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = (u32::from_be_bytes(*len) as usize).min(tail.len());
        layers.push(&tail[..len]);
        rest = &tail[len..];
    }
    layers.push(rest);
    layers
}

/// `find_with_limits` over one to three layers (plain, gzip or zstd tar) split from the input,
/// with a 16 MiB decompressed-size cap per layer (well above any corpus file).
pub fn image_layers(data: &[u8]) {
    let mut layers = split_layers(data);
    let limits = LayerLimits {
        max_layer_bytes: 16 << 20,
        ..LayerLimits::default()
    };
    if let Ok(files) = find_with_limits(&mut layers, &lookup(), limits) {
        for located in files.paths.values() {
            if let Located::File(file) = located {
                assert!(file.layer < layers.len(), "a file's layer index is a layer");
            }
        }
    }
}

const COMPONENTS: &[&str] = &[
    "etc",
    "ssl",
    "certs",
    "ca-certificates.crt",
    "cert.pem",
    "java",
    "cacerts",
    "usr",
    "lib",
    "jvm",
    "security",
    "a",
    "b",
    ".wh.a",
    "..",
    ".",
];

/// Files built from the fuzzer's bytes written with `write_layer`, then read back with `find`:
/// each path must hold the last contents given for it; a path with a `.wh.` component is
/// refused, and nothing else is for that reason.
pub fn image_write_layer(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut files = Vec::new();
    let Ok(count) = u.int_in_range(0..=6) else {
        return;
    };
    for _ in 0..count {
        let Ok(depth) = u.int_in_range(1..=4) else {
            return;
        };
        let mut path = String::new();
        for _ in 0..depth {
            let Ok(part) = u.choose(COMPONENTS) else {
                return;
            };
            path.push('/');
            path.push_str(part);
        }
        let Ok(len) = u.int_in_range(0..=64) else {
            return;
        };
        let Ok(contents) = u.bytes(len) else {
            return;
        };
        files.push(LayerFile {
            path,
            contents: contents.to_vec(),
        });
    }
    // A `.wh.` component is refused (it would be a whiteout), and only then.
    let whiteout = files
        .iter()
        .any(|f| f.path.split('/').any(|c| c.starts_with(".wh.")));
    let layer = match write_layer(&files) {
        Ok(layer) => layer,
        Err(anchorage_image::ImageError::WhiteoutPath { .. }) => {
            assert!(whiteout, "refused as a whiteout without a .wh. component");
            return;
        }
        Err(_) => return,
    };
    assert!(!whiteout, "a .wh. component was written");
    assert!(layer.digest.matches(&layer.blob), "layer digest");
    assert_eq!(layer.size, layer.blob.len() as u64);
    let lookup = Lookup {
        paths: files.iter().map(|f| f.path.clone()).collect(),
        ..Lookup::default()
    };
    let found = find(&mut vec![layer.blob.as_slice()], &lookup).expect("a layer we wrote reads");
    for file in &files {
        let path = normalize(&file.path);
        // `/a/./b` and `/a/b` name one file: the last one written wins.
        let last = files
            .iter()
            .rev()
            .find(|f| normalize(&f.path) == path)
            .map(|f| &f.contents);
        // A path written as a file and also as a parent directory is not a file.
        let dir = format!("{path}/");
        if path == "/" || files.iter().any(|f| normalize(&f.path).starts_with(&dir)) {
            continue;
        }
        if let Some(got) = found.file(&file.path) {
            assert_eq!(Some(&got.contents), last, "write_layer → find round trip");
        }
    }
}

/// Lexical normalisation: `.` dropped, `..` pops (never above the root).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

fn digest(text: &str) -> Digest {
    Digest::sha256(text.as_bytes())
}

/// The OCI editors: the first byte picks the document (config, manifest, index), the rest is
/// its JSON. Each edit that succeeds must be visible to the matching reader.
pub fn image_oci(data: &[u8]) {
    let Some((kind, doc)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let _ = config_env(doc);
            let env = vec![("SSL_CERT_FILE".to_owned(), "/etc/ssl/x.pem".to_owned())];
            for diff in [Some(digest("layer")), None] {
                if let Ok(out) = update_config(doc, diff.as_ref(), &env) {
                    assert!(config_has_env(&out, &env), "update_config sets the env");
                }
            }
        }
        1 => {
            let config = Descriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                digest: digest("config"),
                size: 6,
            };
            let layer = Layer {
                blob: b"layer".to_vec(),
                diff_id: digest("diff"),
                digest: digest("layer"),
                size: 5,
            };
            // An edit keeps every other descriptor as it was, so only a manifest whose blobs
            // read before must read after.
            let before = manifest_blobs(doc);
            if let (Ok(_), Ok(out)) = (&before, update_manifest(doc, &config, Some(&layer))) {
                let blobs = manifest_blobs(&out).expect("an updated manifest lists its blobs");
                assert_eq!(blobs.config.digest, config.digest, "manifest config");
                assert_eq!(
                    blobs.layers.last().map(|l| &l.digest),
                    Some(&layer.digest),
                    "manifest layer appended"
                );
            }
        }
        _ => {
            let Ok(entries) = index_entries(doc) else {
                return;
            };
            let Some(first) = entries.first() else {
                return;
            };
            let new = Descriptor {
                media_type: first.descriptor.media_type.clone(),
                digest: digest("new manifest"),
                size: 12,
            };
            let old = first.descriptor.digest.clone();
            // An entry annotated as an attestation of itself is dropped with the manifest it
            // vouches for (update_index drops attestations of replaced manifests): only other
            // entries must show the new digest.
            let self_attesting = serde_json::from_slice::<serde_json::Value>(doc)
                .ok()
                .and_then(|v| v.get("manifests")?.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|m| {
                    m.get("digest").and_then(|d| d.as_str()) == Some(old.as_str())
                        && m.get("annotations")
                            .and_then(|a| a.get("vnd.docker.reference.digest"))
                            .and_then(|d| d.as_str())
                            == Some(old.as_str())
                });
            if let Ok(out) = update_index(doc, &[(old.clone(), new.clone())]) {
                let again = index_entries(&out).expect("an updated index reads");
                assert!(
                    self_attesting || again.iter().any(|e| e.descriptor.digest == new.digest),
                    "index entry replaced"
                );
                assert!(
                    again.iter().all(|e| e.descriptor.digest != old),
                    "old index entry gone"
                );
            }
        }
    }
}

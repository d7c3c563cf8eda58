//! The reproducible layer writer: the same files always give the same bytes and digests.
//!
//! Owns the tar and gzip encoding of the new layer: sorted entries, parent directories
//! included, fixed modes (0644 files, 0755 directories), owner 0:0 (`root`), mtime 0, plain
//! ustar headers (no PAX records with times or ids), gzip without a name or time. It does not
//! decide what goes in (see [`crate::plan`]) nor upload anything.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use sha2::{Digest as _, Sha256};

use crate::error::ImageError;
use crate::read::{normalize, parent};

/// A content digest: `sha256:<64 hex digits>` or `sha512:<128 hex digits>`, lowercase.
///
/// Digests come from manifests and indexes written by whoever controls a registry or a layout,
/// and they name files (cache files, layout blobs) and URLs. So a `Digest` can only be made by
/// hashing bytes or by [`Digest::parse`], which accepts the OCI image spec's registered
/// algorithms with their exact encoded length and nothing else: no separators, no `..`, no
/// upper case, nothing a path or URL could be steered with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// A digest algorithm this crate accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `sha256`: 64 hex digits.
    Sha256,
    /// `sha512`: 128 hex digits.
    Sha512,
}

/// The longest digest text echoed in an error (a hostile one may be megabytes).
const MAX_ECHOED: usize = 100;

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        let hash = Sha256::digest(bytes);
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// Parses a digest read from a manifest, an index, a header or a layout: `sha256:` with
    /// exactly 64 lowercase hex digits, or `sha512:` with exactly 128. Anything else is refused
    /// with [`ImageError::InvalidDigest`] (the text quoted, escaped and cut short).
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let refuse = |reason: &'static str| {
            let mut shown: String = text.chars().take(MAX_ECHOED).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            ImageError::InvalidDigest {
                digest: shown,
                reason,
            }
        };
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| refuse("no `algorithm:` prefix"))?;
        let want = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(refuse("the algorithm is not sha256 or sha512")),
        };
        if hex.len() != want {
            return Err(refuse(
                "the hex part has the wrong length for its algorithm",
            ));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(refuse(
                "the hex part holds characters other than 0-9 and a-f",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The digest as written in manifests.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        if self.0.starts_with("sha512:") {
            DigestAlgorithm::Sha512
        } else {
            DigestAlgorithm::Sha256
        }
    }

    /// The hex part alone: safe as a file name (only `0-9a-f`, fixed length).
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, hex)| hex)
    }

    /// Whether `bytes` hash to this digest (with this digest's algorithm).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.hasher().chain(bytes).finish() == *self
    }

    /// An incremental hasher of this digest's algorithm, for streamed bytes.
    pub fn hasher(&self) -> DigestHasher {
        DigestHasher::new(self.algorithm())
    }
}

/// Hashes streamed bytes into a [`Digest`] of a given algorithm.
#[derive(Clone, Debug)]
pub enum DigestHasher {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    fn chain(mut self, bytes: &[u8]) -> Self {
        self.update(bytes);
        self
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        let (prefix, hash) = match self {
            Self::Sha256(h) => ("sha256:", h.finalize().to_vec()),
            Self::Sha512(h) => ("sha512:", h.finalize().to_vec()),
        };
        let mut s = String::with_capacity(prefix.len() + hash.len() * 2);
        s.push_str(prefix);
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One file to put in the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFile {
    /// Absolute path inside the image.
    pub path: String,
    /// Its bytes.
    pub contents: Vec<u8>,
}

/// A finished layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The gzip-compressed tar, as uploaded.
    pub blob: Vec<u8>,
    /// SHA-256 of the uncompressed tar (`rootfs.diff_ids` in the config).
    pub diff_id: Digest,
    /// SHA-256 of [`Layer::blob`] (the descriptor in the manifest).
    pub digest: Digest,
    /// Length of [`Layer::blob`].
    pub size: u64,
}

/// Mode of every regular file written.
pub const FILE_MODE: u32 = 0o644;
/// Mode of every directory written.
pub const DIR_MODE: u32 = 0o755;

/// Writes `files` as a reproducible gzip-compressed tar layer. A path given twice keeps the
/// last contents. A path with a component starting with `.wh.` is refused
/// ([`ImageError::WhiteoutPath`]): readers and runtimes would take it for a whiteout.
pub fn write_layer(files: &[LayerFile]) -> Result<Layer, ImageError> {
    // Relative tar paths; directories end in '/' and sort before their contents.
    let mut entries: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
    for file in files {
        let path = normalize(&file.path);
        if let Some(component) = path.split('/').find(|c| c.starts_with(".wh.")) {
            return Err(ImageError::WhiteoutPath {
                path: file.path.clone(),
                component: component.to_owned(),
            });
        }
        let mut dir = parent(&path);
        while dir != "/" {
            entries.insert(format!("{}/", &dir[1..]), None);
            dir = parent(dir);
        }
        entries.insert(path[1..].to_owned(), Some(&file.contents));
    }

    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header
            .set_username("root")
            .and_then(|()| header.set_groupname("root"))
            .map_err(ImageError::Write)?;
        header.set_mtime(0);
        let data: &[u8] = match contents {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(FILE_MODE);
                bytes
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(DIR_MODE);
                &[]
            }
        };
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .map_err(ImageError::Write)?;
    }
    let tar = builder.into_inner().map_err(ImageError::Write)?;

    // GzBuilder writes mtime 0, no file name, no comment: only the content varies.
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).map_err(ImageError::Write)?;
    let blob = gz.finish().map_err(ImageError::Write)?;
    Ok(Layer {
        diff_id: Digest::sha256(&tar),
        digest: Digest::sha256(&blob),
        size: blob.len() as u64,
        blob,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn a_path_with_a_whiteout_component_is_refused() {
        let file = |path: &str| LayerFile {
            path: path.to_owned(),
            contents: b"x".to_vec(),
        };
        for (path, component) in [
            (
                "/etc/ssl/certs/.wh.ca-certificates.crt",
                ".wh.ca-certificates.crt",
            ),
            ("/etc/.wh.ssl/cert.pem", ".wh.ssl"),
            ("/etc/ssl/.wh..wh..opq", ".wh..wh..opq"),
            ("/etc/./.wh.x/../y", ".wh.x"),
        ] {
            let err = write_layer(&[file("/etc/ok.pem"), file(path)]).unwrap_err();
            assert!(
                matches!(&err, ImageError::WhiteoutPath { path: p, component: c }
                    if p == path && c == component),
                "{path}: {err:?}"
            );
            assert!(err.to_string().contains("reserve for whiteouts"), "{err}");
        }
        // Control: `.wh.` only inside a component, or without its leading dot, is a name.
        for path in ["/etc/ssl/a.wh.b", "/etc/wh.x/c.pem", "/etc/..wh.x"] {
            let layer = write_layer(&[file(path)]).unwrap();
            let found = crate::find(
                &mut vec![layer.blob.as_slice()],
                &crate::Lookup {
                    paths: vec![path.to_owned()],
                    ..crate::Lookup::default()
                },
            )
            .unwrap();
            assert_eq!(
                found.file(path).map(|f| f.contents.as_slice()),
                Some(&b"x"[..]),
                "{path}: {found:?}"
            );
        }
    }

    #[test]
    fn digests_are_parsed_strictly() {
        let good = Digest::sha256(b"x");
        assert_eq!(Digest::parse(good.as_str()).unwrap(), good);
        assert_eq!(good.hex().len(), 64);
        let long = format!("sha512:{}", "ab".repeat(64));
        let parsed = Digest::parse(&long).unwrap();
        assert_eq!(parsed.algorithm(), DigestAlgorithm::Sha512);
        // Path escapes, absolute paths, wrong lengths, upper case, other algorithms, URL tricks.
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:/etc/passwd",
            "/etc/passwd",
            "sha256:",
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha256:{}", "a".repeat(65)),
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/", "a".repeat(63)),
            &format!("md5:{}", "a".repeat(32)),
            &format!("sha256+b64u:{}", "a".repeat(64)),
            &format!("sha256:{}?x=1", "a".repeat(59)),
            "",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidDigest { .. }),
                "{bad:?} gave {err:?}"
            );
        }
        // A hostile digest is not echoed whole.
        let huge = format!("sha256:{}", "/".repeat(10_000));
        let message = Digest::parse(&huge).unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn digest_matches_its_own_algorithm() {
        let d = Digest::sha256(b"abc");
        assert!(d.matches(b"abc"));
        assert!(!d.matches(b"abd"));
        let mut h = DigestHasher::new(DigestAlgorithm::Sha512);
        h.update(b"abc");
        let d512 = h.finish();
        assert!(d512.as_str().starts_with("sha512:") && d512.hex().len() == 128);
        assert!(Digest::parse(d512.as_str()).unwrap().matches(b"abc"));
    }

    fn files() -> Vec<LayerFile> {
        vec![
            LayerFile {
                path: "/etc/ssl/certs/ca-certificates.crt".into(),
                contents: b"bundle".to_vec(),
            },
            LayerFile {
                path: "/etc/pki/java/cacerts".into(),
                contents: b"store".to_vec(),
            },
        ]
    }

    #[test]
    fn same_files_give_the_same_digest_whatever_the_order() {
        let a = write_layer(&files()).unwrap();
        let mut reversed = files();
        reversed.reverse();
        let b = write_layer(&reversed).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, a.blob.len() as u64);
        assert_eq!(a.digest, Digest::sha256(&a.blob));
        assert!(a.digest.as_str().starts_with("sha256:") && a.digest.as_str().len() == 71);

        let mut other = files();
        other[0].contents.push(b'!');
        assert_ne!(write_layer(&other).unwrap().digest, a.digest);
    }

    #[test]
    fn entries_are_sorted_with_parents_fixed_owner_mode_and_time() {
        let layer = write_layer(&files()).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(layer.diff_id, Digest::sha256(&tar));
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert!(
                matches!(h, _ if h.as_ustar().is_some()),
                "plain ustar headers"
            );
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
            let dir = h.entry_type() == tar::EntryType::Directory;
            assert_eq!(h.mode().unwrap(), if dir { DIR_MODE } else { FILE_MODE });
            seen.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            seen,
            [
                "etc/",
                "etc/pki/",
                "etc/pki/java/",
                "etc/pki/java/cacerts",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca-certificates.crt",
            ]
        );
    }
}

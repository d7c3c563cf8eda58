//! [`ImageError`]: everything that can go wrong in this crate.

use anchorage_keystore::KeystoreError;

/// What failed, with the facts needed to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A digest in a manifest, index or layout is not `sha256:<64 hex>` or
    /// `sha512:<128 hex>`: refused before it names any file or URL.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The digest as given (cut short when long).
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A layer could not be read (not a tar stream, truncated gzip, I/O failure).
    #[error("layer {layer} could not be read")]
    Layer {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// What the reader said.
        #[source]
        source: std::io::Error,
    },
    /// A layer is compressed with something we do not decompress (none today: plain tar,
    /// gzip and zstd are all read; kept for formats still to come).
    #[error("layer {layer} has an unsupported media type ({compression})")]
    UnsupportedMediaType {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// The compression recognised by its magic number.
        compression: &'static str,
    },
    /// A GNU long-name/long-link record or PAX extended header larger than the limit
    /// (`MAX_TAR_EXTENSION`): refused before it is read, since it would be held in memory.
    #[error(
        "layer {layer} has a {what} header of {size} bytes, more than the {limit}-byte limit for tar extension headers; the layer is malformed or hostile"
    )]
    TarExtensionTooLarge {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// Which extension (`GNU long-name`, `GNU long-link`, `PAX extended`, `PAX global
        /// extended`).
        what: &'static str,
        /// The size its header gives.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A path or link target longer than the limit (`MAX_TAR_PATH`, Linux's `PATH_MAX`).
    #[error(
        "layer {layer} has an entry whose {what} is {length} bytes long, more than the {limit}-byte limit; no runtime could extract it"
    )]
    TarPathTooLong {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// `path` or `link target`.
        what: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A layer whose decompressed tar stream runs past the limit (`MAX_LAYER_BYTES`).
    #[error(
        "layer {layer} decompresses to more than {limit} bytes, the limit for one layer; refusing to read further"
    )]
    LayerTooLarge {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// The limit.
        limit: u64,
    },
    /// The index of the layers read (every path, implied directories included) grew past the
    /// limit (`MAX_INDEX_BYTES`): too many entries, or deep paths implying many directories.
    #[error(
        "layer {layer} brings the index of the image's paths past {limit} bytes, the limit for one image; too many entries or too deep paths"
    )]
    LayerIndexTooLarge {
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// The limit.
        limit: u64,
    },
    /// A file we need is larger than we are willing to hold in memory.
    #[error("{path} in layer {layer} is {size} bytes, more than the {limit}-byte limit")]
    FileTooLarge {
        /// The path inside the image.
        path: String,
        /// Index of the layer, 0 being the top.
        layer: usize,
        /// The size the tar header gives.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Symbolic links inside the image loop (or chain more than 40 times, as Linux allows).
    #[error("too many levels of symbolic links resolving {path} inside the image")]
    SymlinkLoop {
        /// The path being resolved.
        path: String,
    },
    /// A hard link in a layer names a file the layer does not hold.
    #[error("hard link {path} in layer {layer} points at {target}, which the layer lacks")]
    DanglingHardLink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
        /// Index of the layer, 0 being the top.
        layer: usize,
    },
    /// The image's Java trust store could not be read.
    #[error("java trust store {path} could not be read")]
    JavaStore {
        /// The real path inside the image.
        path: String,
        /// What the keystore decoder said.
        #[source]
        source: KeystoreError,
    },
    /// The image's Java trust store could not be re-encoded.
    #[error("java trust store {path} could not be written")]
    JavaStoreEncode {
        /// The real path inside the image.
        path: String,
        /// What the keystore encoder said.
        #[source]
        source: KeystoreError,
    },
    /// The Java trust store holds something other than trusted certificates; rewriting it
    /// would drop them.
    #[error(
        "java trust store {path} holds {what} ({aliases}); refusing to rewrite it and lose them"
    )]
    JavaStoreNotOnlyTrusted {
        /// The real path inside the image.
        path: String,
        /// `key entries`, `untrusted certificates` or `undecodable certificates`.
        what: &'static str,
        /// The aliases concerned, comma-separated.
        aliases: String,
    },
    /// Every `<hash>.<n>` slot we probe for one subject hash is taken by other certificates.
    #[error("{dir}/{hash}.0 to .{last} are all taken by other certificates")]
    HashSlotsExhausted {
        /// The hashed directory (real path).
        dir: String,
        /// The subject hash.
        hash: String,
        /// The last number probed.
        last: usize,
    },
    /// The image configuration, manifest or index is not the JSON we expect.
    #[error("{document} is not a valid image {document}: {problem}")]
    Json {
        /// `config`, `manifest` or `index`.
        document: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Writing the layer failed (in memory; only a bug or exhausted memory gets here).
    #[error("the new layer could not be written")]
    Write(#[source] std::io::Error),
    /// A path to write has a component starting with `.wh.`: in a layer that is a whiteout
    /// (it deletes the name after the prefix, or with `.wh..wh..opq` a directory's lower
    /// contents), so the file would not be there and something else would vanish.
    #[error(
        "cannot write {path}: its component {component:?} starts with \".wh.\", which image \
         layers reserve for whiteouts (the file would be read as deleting another); the path \
         comes from a trust-store location or a link in the image: check them"
    )]
    WhiteoutPath {
        /// The path as given.
        path: String,
        /// The offending component.
        component: String,
    },
}

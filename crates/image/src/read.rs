//! Reading an image's file system from its layers, top down, only as far as needed.
//!
//! This module owns the merged view of OCI layers: whiteouts (`.wh.<name>`), opaque directories
//! (`.wh..wh..opq`), implicit parent directories, hard links, symbolic links resolved inside
//! the image (absolute and relative, chained, loops refused), and directory globs
//! (`/usr/lib/jvm/*/lib/security/cacerts`) expanded over the merged listing. It does not know
//! which files matter (see [`crate::locations`]) nor fetch blobs (the caller's [`LayerSource`]
//! does).
//!
//! Layers are read one at a time from the top; after each one every query is tried against the
//! layers read so far, and reading stops as soon as none needs a lower layer. A file's contents
//! are kept only for paths a query asked for or a link led to; when a link leads to a file of a
//! layer already passed, that one layer is opened again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};

use crate::error::ImageError;
use crate::tarball::{Entries, INDEX_ENTRY_OVERHEAD, LayerLimits};

/// Files larger than this are refused rather than held in memory (a CA bundle is a few hundred
/// kilobytes, a Java `cacerts` about the same).
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Symbolic links followed while resolving one path before giving up (Linux's `MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// The layers of one image, **top layer first**, each a tar stream (plain, gzip or zstd). A
/// layer may be opened more than once.
pub trait LayerSource {
    /// Number of layers.
    fn layer_count(&self) -> usize;
    /// Opens layer `index` (0 is the top layer) from its start.
    fn open(&mut self, index: usize) -> std::io::Result<Box<dyn Read + '_>>;
}

/// Layers held in memory, top layer first.
impl<T: AsRef<[u8]>> LayerSource for Vec<T> {
    fn layer_count(&self) -> usize {
        self.len()
    }

    fn open(&mut self, index: usize) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self[index].as_ref()))
    }
}

/// What to look for in an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Paths to resolve (files or directories), absolute inside the image.
    pub paths: Vec<String>,
    /// Directories to check for OpenSSL `<hash>.<n>` entries.
    pub hash_dirs: Vec<String>,
    /// Paths with one `*` component standing for every entry of that directory
    /// (`/usr/lib/jvm/*/lib/security/cacerts`). The directory is listed in the merged view of
    /// the layers read (whiteouts and opaque directories honoured, links leading to it
    /// followed), and each entry gives a path answered in [`ImageFiles::paths`] like one asked
    /// for. Expansion is final only once no lower layer can add an entry; until then it grows
    /// layer by layer. A pattern without exactly one `*` component expands to nothing.
    pub globs: Vec<String>,
    /// When reading may stop.
    pub until: Until,
}

/// When [`find`] stops reading layers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Until {
    /// Every question is answered exactly. Proving that a file is absent takes every layer,
    /// so a lookup with any absent path reads the whole image.
    #[default]
    AllKnown,
    /// Stop at the end of the first layer after which one of these paths is known to be a
    /// regular file. Questions still open are then [`Located::Unread`] (and missing from
    /// [`ImageFiles::hash_dirs`]): what lower layers hold there was not looked at.
    AnyFound(Vec<String>),
}

/// A regular file found in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFile {
    /// The path after following every link.
    pub real_path: String,
    /// The symbolic links followed on the way, in order.
    pub links: Vec<String>,
    /// The layer holding the file (0 is the top layer).
    pub layer: usize,
    /// The file's bytes.
    pub contents: Vec<u8>,
}

/// What a path is in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// A regular file (or a hard link to one).
    File(FoundFile),
    /// A directory, at this real path.
    Dir {
        /// The path after following every link.
        real_path: String,
    },
    /// Something else: a device, FIFO or socket.
    Special {
        /// The path after following every link.
        real_path: String,
    },
    /// Nothing: absent, whited out, or below something that is not a directory.
    Missing,
    /// Not answered: the layers read say nothing, and reading stopped early ([`Until::AnyFound`]).
    Unread,
}

/// The answers to a [`Lookup`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFiles {
    /// Each requested path (and each path a glob expanded to) and what it is.
    pub paths: BTreeMap<String, Located>,
    /// Each glob and the paths it expanded to, sorted (those of the layers read, when reading
    /// stopped early).
    pub globs: BTreeMap<String, Vec<String>>,
    /// Each requested directory and whether it holds a visible `<hash>.<n>` entry (absent when
    /// reading stopped before it was known).
    pub hash_dirs: BTreeMap<String, bool>,
    /// How many layers were read from the top (lower ones were not needed).
    pub layers_read: usize,
}

impl ImageFiles {
    /// The regular file at `path`, if the lookup found one.
    pub fn file(&self, path: &str) -> Option<&FoundFile> {
        match self.paths.get(path) {
            Some(Located::File(f)) => Some(f),
            _ => None,
        }
    }
}

/// Answers `lookup` by reading `layers` from the top, stopping as soon as no answer depends on a
/// lower layer. Layers are read within the default [`LayerLimits`].
pub fn find(layers: &mut dyn LayerSource, lookup: &Lookup) -> Result<ImageFiles, ImageError> {
    find_with_limits(layers, lookup, LayerLimits::default())
}

/// [`find`] within the given bounds on tar extension headers, path length, decompressed bytes
/// per layer and index size.
pub fn find_with_limits(
    layers: &mut dyn LayerSource,
    lookup: &Lookup,
    limits: LayerLimits,
) -> Result<ImageFiles, ImageError> {
    let count = layers.layer_count();
    let mut view = View {
        limits,
        ..View::default()
    };
    let mut wanted: HashSet<String> = lookup.paths.iter().map(|p| normalize(p)).collect();
    let mut answers = ImageFiles::default();
    let mut pending_paths: Vec<String> = lookup.paths.clone();
    let mut pending_dirs: Vec<&String> = lookup.hash_dirs.iter().collect();
    let mut pending_globs: Vec<Glob<'_>> = lookup
        .globs
        .iter()
        .filter_map(|pattern| Glob::parse(pattern))
        .collect();
    // Every path asked about so far, so that a glob adds each of its paths once.
    let mut asked: HashSet<String> = lookup.paths.iter().cloned().collect();

    loop {
        let complete = view.layers.len() == count;
        // Expand the globs over the layers read; a new path is resolved below like one asked
        // for (its contents are already kept: `keep` matches the globs).
        let mut still = Vec::new();
        for glob in pending_globs {
            let (names, last) = view.children_of(&glob.dir, complete)?;
            let expanded = answers.globs.entry(glob.pattern.to_owned()).or_default();
            for name in names {
                let path = format!("{}/{name}{}", glob.dir_path(), glob.rest);
                if asked.insert(path.clone()) {
                    wanted.insert(path.clone());
                    pending_paths.push(path.clone());
                }
                if !expanded.contains(&path) {
                    expanded.push(path);
                }
            }
            expanded.sort();
            if !last {
                still.push(glob);
            }
        }
        pending_globs = still;

        // Resolve what we can; links may name new paths whose contents we then want.
        let mut still = Vec::new();
        for path in pending_paths {
            match view.resolve(&path, complete)? {
                Resolved::Unknown(seen) => {
                    wanted.extend(seen);
                    still.push(path);
                }
                Resolved::File {
                    real_path,
                    links,
                    layer,
                    content_path,
                } => {
                    let key = (layer, content_path.clone());
                    if !view.contents.contains_key(&key) {
                        reread(layers, &mut view, layer, &content_path)?;
                    }
                    let contents = view.contents.get(&key).cloned().ok_or_else(|| {
                        ImageError::DanglingHardLink {
                            path: real_path.clone(),
                            target: content_path.clone(),
                            layer,
                        }
                    })?;
                    answers.paths.insert(
                        path.clone(),
                        Located::File(FoundFile {
                            real_path,
                            links,
                            layer,
                            contents,
                        }),
                    );
                }
                Resolved::Dir(real_path) => {
                    answers
                        .paths
                        .insert(path.clone(), Located::Dir { real_path });
                }
                Resolved::Special(real_path) => {
                    answers
                        .paths
                        .insert(path.clone(), Located::Special { real_path });
                }
                Resolved::Missing => {
                    answers.paths.insert(path.clone(), Located::Missing);
                }
            }
        }
        pending_paths = still;

        let mut still = Vec::new();
        for dir in pending_dirs {
            match view.has_hash_entries(dir, complete)? {
                Some(yes) => {
                    answers.hash_dirs.insert(dir.clone(), yes);
                }
                None => still.push(dir),
            }
        }
        pending_dirs = still;

        let satisfied = match &lookup.until {
            Until::AllKnown => false,
            Until::AnyFound(paths) => paths.iter().any(|p| answers.file(p).is_some()),
        };
        if (pending_paths.is_empty() && pending_dirs.is_empty() && pending_globs.is_empty())
            || complete
            || satisfied
        {
            break;
        }
        let index = view.layers.len();
        let mut index_bytes = view.index_bytes;
        let layer = read_layer(
            layers,
            index,
            |path| wanted.contains(path) || pending_globs.iter().any(|g| g.matches(path)),
            &mut view.contents,
            view.limits,
            &mut index_bytes,
        )?;
        view.index_bytes = index_bytes;
        view.layers.push(layer);
    }
    for path in pending_paths {
        answers.paths.insert(path, Located::Unread);
    }
    answers.layers_read = view.layers.len();
    Ok(answers)
}

/// A [`Lookup::globs`] pattern split at its `*` component.
struct Glob<'a> {
    pattern: &'a str,
    /// The directory listed, normalized (`/usr/lib/jvm`).
    dir: String,
    /// What follows the `*`, with its leading `/` (`/lib/security/cacerts`), or empty.
    rest: String,
}

impl<'a> Glob<'a> {
    /// `None` for a pattern without exactly one `*` component (nothing to expand).
    fn parse(pattern: &'a str) -> Option<Self> {
        let normalized = normalize(pattern);
        let parts: Vec<&str> = components(&normalized).collect();
        let stars: Vec<usize> = (0..parts.len()).filter(|&i| parts[i] == "*").collect();
        let [star] = stars.as_slice() else {
            return None;
        };
        let dir = normalize(&parts[..*star].join("/"));
        let rest: String = parts[star + 1..].iter().map(|c| format!("/{c}")).collect();
        Some(Self { pattern, dir, rest })
    }

    /// The directory as a prefix to append `/<name>` to (empty for the root).
    fn dir_path(&self) -> &str {
        if self.dir == "/" { "" } else { &self.dir }
    }

    /// Whether a normalized layer path is one this glob stands for, without following links.
    fn matches(&self, path: &str) -> bool {
        let Some(below) = path
            .strip_prefix(self.dir_path())
            .and_then(|p| p.strip_prefix('/'))
        else {
            return false;
        };
        let (name, tail) = below.split_once('/').unwrap_or((below, ""));
        !name.is_empty() && tail == self.rest.strip_prefix('/').unwrap_or("")
    }
}

/// Opens layer `index` again and keeps the contents of `path`.
fn reread(
    layers: &mut dyn LayerSource,
    view: &mut View,
    index: usize,
    path: &str,
) -> Result<(), ImageError> {
    // The index built again is dropped; it counts against the budget only while it lives.
    let mut index_bytes = view.index_bytes;
    read_layer(
        layers,
        index,
        |p| p == path,
        &mut view.contents,
        view.limits,
        &mut index_bytes,
    )?;
    Ok(())
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File,
    Dir,
    /// A directory no entry names, implied by an entry below it.
    ImplicitDir,
    Symlink(String),
    /// A hard link to another path of the same layer.
    HardLink(String),
    Special,
    Whiteout,
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self, Node::Dir | Node::ImplicitDir)
    }
}

#[derive(Default)]
struct LayerIndex {
    entries: HashMap<String, Node>,
    opaque: HashSet<String>,
}

#[derive(Default)]
struct View {
    /// The layers read so far, top first.
    layers: Vec<LayerIndex>,
    /// Contents kept, by (layer, path).
    contents: HashMap<(usize, String), Vec<u8>>,
    /// The bounds on reading.
    limits: LayerLimits,
    /// What the indexes of `layers` count for against [`LayerLimits::max_index_bytes`].
    index_bytes: u64,
}

enum Top<'a> {
    Entry(usize, &'a Node),
    Absent,
    Unknown,
}

enum Resolved {
    File {
        real_path: String,
        links: Vec<String>,
        layer: usize,
        content_path: String,
    },
    Dir(String),
    Special(String),
    Missing,
    /// A lower layer is needed; these are the paths reached so far.
    Unknown(Vec<String>),
}

impl View {
    /// The topmost entry at `path` in the merged view of the layers read.
    fn top(&self, path: &str, complete: bool) -> Top<'_> {
        for (l, layer) in self.layers.iter().enumerate() {
            if let Some(node) = layer.entries.get(path) {
                return match node {
                    Node::Whiteout => Top::Absent,
                    node => Top::Entry(l, node),
                };
            }
            // Lower layers are hidden below an opaque directory, a whiteout or a non-directory.
            for ancestor in ancestors(path) {
                if layer.opaque.contains(ancestor)
                    || layer.entries.get(ancestor).is_some_and(|n| !n.is_dir())
                {
                    return Top::Absent;
                }
            }
        }
        if complete { Top::Absent } else { Top::Unknown }
    }

    fn resolve(&self, path: &str, complete: bool) -> Result<Resolved, ImageError> {
        let mut todo: Vec<String> = components(path).rev().map(str::to_owned).collect();
        let mut current = String::from("/");
        let mut links = Vec::new();
        let mut seen = vec![normalize(path)];
        while let Some(component) = todo.pop() {
            if component == ".." {
                current = parent(&current).to_owned();
                continue;
            }
            let next = join(&current, &component);
            match self.top(&next, complete) {
                Top::Unknown => {
                    seen.push(rest(&next, &todo));
                    return Ok(Resolved::Unknown(seen));
                }
                Top::Absent => return Ok(Resolved::Missing),
                Top::Entry(_, node) if node.is_dir() => current = next,
                Top::Entry(_, Node::Symlink(target)) => {
                    links.push(next.clone());
                    if links.len() > MAX_LINK_HOPS {
                        return Err(ImageError::SymlinkLoop {
                            path: normalize(path),
                        });
                    }
                    if target.starts_with('/') {
                        current = String::from("/");
                    }
                    todo.extend(components(target).rev().map(str::to_owned));
                    seen.push(rest(&current, &todo));
                }
                Top::Entry(layer, node) => {
                    if !todo.is_empty() {
                        // A file where a directory should be: ENOTDIR.
                        return Ok(Resolved::Missing);
                    }
                    return Ok(match node {
                        Node::File => Resolved::File {
                            content_path: next.clone(),
                            real_path: next,
                            links,
                            layer,
                        },
                        Node::HardLink(target) => Resolved::File {
                            real_path: next,
                            content_path: target.clone(),
                            links,
                            layer,
                        },
                        _ => Resolved::Special(next),
                    });
                }
            }
        }
        Ok(Resolved::Dir(current))
    }

    /// The names visible in the directory at `dir` (links to it followed) over the layers read,
    /// and whether that list is final (no lower layer can add to it).
    fn children_of(
        &self,
        dir: &str,
        complete: bool,
    ) -> Result<(BTreeSet<String>, bool), ImageError> {
        let mut names = BTreeSet::new();
        let real = match self.resolve(dir, complete)? {
            Resolved::Dir(real) => real,
            Resolved::Unknown(_) => return Ok((names, false)),
            _ => return Ok((names, true)),
        };
        let mut hidden = HashSet::new();
        for layer in &self.layers {
            // Below a layer where the directory (or a parent) is something else, nothing of
            // the lower layers shows.
            if layer.entries.get(&real).is_some_and(|n| !n.is_dir())
                || ancestors(&real).any(|a| layer.entries.get(a).is_some_and(|n| !n.is_dir()))
            {
                return Ok((names, true));
            }
            for (path, node) in &layer.entries {
                if path.len() <= real.len() || parent(path) != real {
                    continue;
                }
                let name = file_name(path);
                if *node == Node::Whiteout {
                    hidden.insert(name.to_owned());
                } else if !hidden.contains(name) {
                    names.insert(name.to_owned());
                }
            }
            if layer.opaque.contains(&real) || ancestors(&real).any(|a| layer.opaque.contains(a)) {
                return Ok((names, true));
            }
        }
        Ok((names, complete))
    }

    /// Whether the directory at `dir` holds a visible `<hash>.<n>` entry; `None` when a lower
    /// layer must be read to know.
    fn has_hash_entries(&self, dir: &str, complete: bool) -> Result<Option<bool>, ImageError> {
        let real = match self.resolve(dir, complete)? {
            Resolved::Dir(real) => real,
            Resolved::Unknown(_) => return Ok(None),
            _ => return Ok(Some(false)),
        };
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.entries.get(&real).is_some_and(|n| !n.is_dir()) {
                return Ok(Some(false));
            }
            let visible = layer.entries.iter().any(|(path, node)| {
                *node != Node::Whiteout
                    && parent(path) == real
                    && anchorage_bundle::is_openssl_hash_name(file_name(path))
                    && !self.layers[..l]
                        .iter()
                        .any(|upper| upper.entries.get(path) == Some(&Node::Whiteout))
            });
            if visible {
                return Ok(Some(true));
            }
            if layer.opaque.contains(&real) {
                return Ok(Some(false));
            }
        }
        Ok(if complete { Some(false) } else { None })
    }
}

/// The magic number of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream of one or more frames (`zstd:chunked` layers are many frames, with skippable
/// frames of metadata between them), decoded with the pure-Rust `ruzstd`.
struct ZstdFrames<R: BufRead> {
    /// The frame being decoded; `None` between frames.
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
    /// The source between frames (and a decoder to reuse).
    idle: Option<(R, ruzstd::decoding::FrameDecoder)>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        Self {
            frame: None,
            idle: Some((source, ruzstd::decoding::FrameDecoder::new())),
        }
    }

    /// Starts the next frame, skipping skippable ones; `false` at the end of the stream.
    fn next_frame(&mut self) -> std::io::Result<bool> {
        let Some((mut source, decoder)) = self.idle.take() else {
            return Ok(false);
        };
        loop {
            let mut head = [0u8; 8];
            let available = source.fill_buf()?;
            if available.is_empty() {
                return Ok(false);
            }
            if available.len() >= 4
                && available[1..4] == [0x2a, 0x4d, 0x18]
                && available[0] & 0xf0 == 0x50
            {
                // A skippable frame: magic 0x184D2A5?, a little-endian length, the payload.
                source.read_exact(&mut head)?;
                let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                std::io::copy(
                    &mut (&mut source).take(u64::from(length)),
                    &mut std::io::sink(),
                )?;
                continue;
            }
            let frame = ruzstd::decoding::StreamingDecoder::new_with_decoder(source, decoder)
                .map_err(std::io::Error::other)?;
            self.frame = Some(frame);
            return Ok(true);
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if let Some(frame) = self.frame.take() {
                    self.idle = Some(frame.into_parts());
                }
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

/// Reads one layer's index, keeping the contents of the paths `keep` accepts, within `limits`;
/// `index_bytes` is what the indexes count for so far (see [`LayerLimits::max_index_bytes`]).
fn read_layer(
    layers: &mut dyn LayerSource,
    index: usize,
    keep: impl Fn(&str) -> bool,
    contents: &mut HashMap<(usize, String), Vec<u8>>,
    limits: LayerLimits,
    index_bytes: &mut u64,
) -> Result<LayerIndex, ImageError> {
    let io = |source| ImageError::Layer {
        layer: index,
        source,
    };
    let raw = layers.open(index).map_err(io)?;
    let mut raw = BufReader::new(raw);
    let magic = raw.fill_buf().map_err(io)?;
    let stream: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(raw))
    } else if magic.starts_with(&ZSTD_MAGIC) {
        Box::new(ZstdFrames::new(raw))
    } else {
        Box::new(raw)
    };
    let mut entries = Entries::new(stream, index, limits);
    let mut layer = LayerIndex::default();
    // Counts a new index entry against the budget.
    let mut grow = |path: &str| -> Result<(), ImageError> {
        *index_bytes = index_bytes.saturating_add(path.len() as u64 + INDEX_ENTRY_OVERHEAD);
        if *index_bytes > limits.max_index_bytes {
            return Err(ImageError::LayerIndexTooLarge {
                layer: index,
                limit: limits.max_index_bytes,
            });
        }
        Ok(())
    };
    while let Some(entry) = entries.next()? {
        let path = normalize(&entry.path);
        if path == "/" {
            continue;
        }
        for ancestor in ancestors(&path) {
            if !layer.entries.contains_key(ancestor) {
                grow(ancestor)?;
                layer.entries.insert(ancestor.to_owned(), Node::ImplicitDir);
            }
        }
        let name = file_name(&path);
        if name == ".wh..wh..opq" {
            let dir = parent(&path);
            if !layer.opaque.contains(dir) {
                grow(dir)?;
                layer.opaque.insert(dir.to_owned());
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden = join(parent(&path), hidden);
            if let std::collections::hash_map::Entry::Vacant(slot) = layer.entries.entry(hidden) {
                grow(slot.key())?;
                slot.insert(Node::Whiteout);
            }
            continue;
        }
        let link = || entry.link.clone().unwrap_or_default();
        let node = match entry.kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => Node::File,
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Symlink => Node::Symlink(link()),
            tar::EntryType::Link => Node::HardLink(normalize(&link())),
            _ => Node::Special,
        };
        if node == Node::File && keep(&path) {
            let size = entry.size;
            if size > MAX_FILE_SIZE {
                return Err(ImageError::FileTooLarge {
                    path,
                    layer: index,
                    size,
                    limit: MAX_FILE_SIZE,
                });
            }
            let bytes = entries.read_data()?;
            contents.insert((index, path.clone()), bytes);
        }
        // An explicit entry wins over an implied directory; a later duplicate wins, as when
        // the layer is extracted.
        if !layer.entries.contains_key(&path) {
            grow(&path)?;
        }
        layer.entries.insert(path, node);
    }
    Ok(layer)
}

/// `/a/b/c` from `a/b/c`, `./a//b/./c/`, `/a/b/c`. `..` is kept (resolved against links).
pub(crate) fn normalize(path: &str) -> String {
    let mut out = String::new();
    for c in components(path) {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        String::from("/")
    } else {
        out
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// The proper ancestors of a normalized path, nearest first, `/` excluded.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut current = path;
    std::iter::from_fn(move || {
        let p = parent(current);
        if p == "/" || p == current {
            return None;
        }
        current = p;
        Some(p)
    })
}

pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `base` followed by the remaining components (stored reversed in `todo`), for the wanted set.
fn rest(base: &str, todo: &[String]) -> String {
    let mut out = base.to_owned();
    for c in todo.iter().rev() {
        if c == ".." {
            out = parent(&out).to_owned();
        } else {
            out = join(&out, c);
        }
    }
    out
}

/// Paths of a lookup, de-duplicated and sorted (a convenience for callers building one).
pub(crate) fn sorted(paths: impl IntoIterator<Item = String>) -> Vec<String> {
    paths
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{E, gzip, tar};

    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

    fn lookup(paths: &[&str]) -> Lookup {
        Lookup {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            hash_dirs: vec!["/etc/ssl/certs".to_owned()],
            globs: Vec::new(),
            until: Until::AllKnown,
        }
    }

    fn file<'a>(found: &'a ImageFiles, path: &str) -> &'a FoundFile {
        found
            .file(path)
            .unwrap_or_else(|| panic!("{path}: {:?}", found.paths.get(path)))
    }

    #[test]
    fn whiteout_in_an_upper_layer_hides_the_bundle() {
        let lower = tar(&[
            E::Dir("etc/"),
            E::File("etc/ssl/certs/ca-certificates.crt", b"old"),
        ]);
        let upper = tar(&[E::File("etc/ssl/certs/.wh.ca-certificates.crt", b"")]);
        let mut layers = vec![upper.clone(), lower.clone()];
        let found = find(&mut layers, &lookup(&[BUNDLE])).unwrap();
        assert_eq!(found.paths[BUNDLE], Located::Missing);

        // Re-created above the whiteout: found in the top layer, the lower ones unread.
        let top = tar(&[E::File("./etc/ssl/certs/ca-certificates.crt", b"new")]);
        let mut layers = vec![top, upper, lower];
        let found = find(&mut layers, &lookup(&[BUNDLE])).unwrap();
        let f = file(&found, BUNDLE);
        assert_eq!((f.layer, f.contents.as_slice()), (0, &b"new"[..]));
    }

    #[test]
    fn whiteout_of_a_parent_directory_hides_everything_below() {
        let lower = tar(&[E::File("etc/ssl/certs/ca-certificates.crt", b"old")]);
        let upper = tar(&[E::File("etc/.wh.ssl", b"")]);
        let mut layers = vec![upper, lower];
        let found = find(&mut layers, &lookup(&[BUNDLE])).unwrap();
        assert_eq!(found.paths[BUNDLE], Located::Missing);
    }

    #[test]
    fn opaque_directory_hides_lower_contents_but_not_its_own() {
        let lower = tar(&[
            E::File("etc/ssl/certs/ca-certificates.crt", b"old"),
            E::File("etc/ssl/certs/12345678.0", b"x"),
        ]);
        let upper = tar(&[
            E::Dir("etc/ssl/certs/"),
            E::File("etc/ssl/certs/.wh..wh..opq", b""),
            E::File("etc/ssl/certs/mine.pem", b"mine"),
        ]);
        let mut layers = vec![upper, lower];
        let found = find(&mut layers, &lookup(&[BUNDLE, "/etc/ssl/certs/mine.pem"])).unwrap();
        assert_eq!(found.paths[BUNDLE], Located::Missing);
        assert_eq!(file(&found, "/etc/ssl/certs/mine.pem").contents, b"mine");
        assert!(
            !found.hash_dirs["/etc/ssl/certs"],
            "hidden by the opaque dir"
        );
    }

    #[test]
    fn rhel_symlink_chain_is_resolved_inside_the_image() {
        let real = "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem";
        let base = tar(&[
            E::File("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", b"base"),
            E::Link(
                "etc/pki/tls/certs/ca-bundle.crt",
                "../../ca-trust/extracted/pem/tls-ca-bundle.pem",
            ),
            E::Link("etc/ssl/certs", "../pki/tls/certs"),
            E::Link("etc/ssl/cert.pem", "/etc/ssl/certs/ca-bundle.crt"),
        ]);
        // The bundle was regenerated in a layer above the links: read before the links were
        // seen, so that layer is opened again for the contents.
        let update = gzip(&tar(&[E::File(
            "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            b"updated",
        )]));
        let mut layers = vec![update, base];
        let paths = ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];
        let found = find(&mut layers, &lookup(&paths)).unwrap();
        for path in paths {
            let f = file(&found, path);
            assert_eq!(f.real_path, real);
            assert_eq!((f.layer, f.contents.as_slice()), (0, &b"updated"[..]));
        }
        assert_eq!(
            file(&found, "/etc/ssl/cert.pem").links,
            [
                "/etc/ssl/cert.pem",
                "/etc/ssl/certs",
                "/etc/pki/tls/certs/ca-bundle.crt"
            ]
        );
        assert!(!found.hash_dirs["/etc/ssl/certs"]);
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let layer = tar(&[
            E::Link("etc/ssl/certs/ca-certificates.crt", "loop-a"),
            E::Link("etc/ssl/certs/loop-a", "/etc/ssl/certs/loop-b"),
            E::Link("etc/ssl/certs/loop-b", "ca-certificates.crt"),
        ]);
        let err = find(&mut vec![layer], &lookup(&[BUNDLE])).unwrap_err();
        assert!(matches!(err, ImageError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn stops_reading_once_everything_is_known() {
        let top = tar(&[
            E::File("etc/ssl/certs/ca-certificates.crt", b"top"),
            E::Link("etc/ssl/certs/abcdef01.0", "x.pem"),
        ]);
        // Reading this would fail.
        let garbage = vec![0x42_u8; 4096];
        let mut layers = vec![top, garbage];
        let found = find(&mut layers, &lookup(&[BUNDLE])).unwrap();
        assert_eq!(found.layers_read, 1);
        assert_eq!(file(&found, BUNDLE).contents, b"top");
        assert!(found.hash_dirs["/etc/ssl/certs"]);
    }

    #[test]
    fn any_found_stops_at_the_bundle_and_leaves_the_rest_unread() {
        let top = tar(&[E::File("app/run", b"x")]);
        let certs = tar(&[E::File("etc/ssl/certs/ca-certificates.crt", b"bundle")]);
        let garbage = vec![0x42_u8; 4096];
        let mut layers = vec![top, certs, garbage];
        let mut l = lookup(&[BUNDLE, "/etc/pki/java/cacerts"]);
        l.until = Until::AnyFound(vec![BUNDLE.to_owned()]);
        let found = find(&mut layers, &l).unwrap();
        assert_eq!(found.layers_read, 2);
        assert_eq!(file(&found, BUNDLE).layer, 1);
        assert_eq!(found.paths["/etc/pki/java/cacerts"], Located::Unread);
        assert!(!found.hash_dirs.contains_key("/etc/ssl/certs"));

        // Exact answers need the broken bottom layer.
        l.until = Until::AllKnown;
        // Layer 2, the garbage, is what fails.
        let err = find(&mut layers, &l).unwrap_err();
        assert!(matches!(err, ImageError::Layer { layer: 2, .. }), "{err:?}");
    }

    #[test]
    fn a_missing_file_needs_every_layer_and_bad_layers_are_reported() {
        let top = tar(&[E::File("etc/hostname", b"x")]);
        let garbage = gzip(&[0x42_u8; 4096]);
        let err = find(&mut vec![top, garbage], &lookup(&[BUNDLE])).unwrap_err();
        assert!(matches!(err, ImageError::Layer { layer: 1, .. }), "{err}");
    }

    #[test]
    fn zstd_layers_are_read_frame_by_frame() {
        let layer = tar(&[E::File("etc/ssl/certs/ca-certificates.crt", b"bundle")]);
        let compress = |bytes: &[u8]| {
            ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
        };
        // One frame.
        let found = find(&mut vec![compress(&layer)], &lookup(&[BUNDLE])).unwrap();
        assert_eq!(found.file(BUNDLE).unwrap().contents, b"bundle");
        // Two frames with a skippable frame between them, as zstd:chunked writes.
        let (a, b) = layer.split_at(700);
        let mut chunked = compress(a);
        chunked.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        chunked.extend_from_slice(&compress(b));
        let found = find(&mut vec![chunked], &lookup(&[BUNDLE])).unwrap();
        assert_eq!(found.file(BUNDLE).unwrap().contents, b"bundle");
        // A truncated frame is a bad layer, not a panic.
        let broken = vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
        let err = find(&mut vec![broken], &lookup(&[BUNDLE])).unwrap_err();
        assert!(matches!(err, ImageError::Layer { .. }), "{err}");
    }

    #[test]
    fn hard_links_give_their_target_contents() {
        let layer = tar(&[
            E::File("usr/share/ca.crt", b"shared"),
            E::Hard("etc/ssl/certs/ca-certificates.crt", "usr/share/ca.crt"),
        ]);
        let found = find(&mut vec![layer], &lookup(&[BUNDLE])).unwrap();
        assert_eq!(file(&found, BUNDLE).contents, b"shared");
    }

    #[test]
    fn distroless_without_certificates_has_nothing() {
        let mut layers = vec![
            tar(&[E::File("etc/passwd", b"root:x:0:0")]),
            gzip(&tar(&[E::Dir("etc/"), E::Dir("tmp/")])),
        ];
        let found = find(&mut layers, &lookup(&[BUNDLE, "/etc/ssl/certs"])).unwrap();
        assert_eq!(found.layers_read, 2);
        assert_eq!(found.paths[BUNDLE], Located::Missing);
        assert_eq!(found.paths["/etc/ssl/certs"], Located::Missing);
        assert!(!found.hash_dirs["/etc/ssl/certs"]);
    }

    #[test]
    fn whited_out_hash_entries_do_not_count() {
        let lower = tar(&[E::File("etc/ssl/certs/abcdef01.0", b"x")]);
        let upper = tar(&[E::File("etc/ssl/certs/.wh.abcdef01.0", b"")]);
        let found = find(&mut vec![upper, lower], &lookup(&[])).unwrap();
        assert!(!found.hash_dirs["/etc/ssl/certs"]);
    }

    const JVM: &str = "/usr/lib/jvm/*/lib/security/cacerts";

    fn glob_lookup() -> Lookup {
        Lookup {
            globs: vec![JVM.to_owned()],
            ..Lookup::default()
        }
    }

    #[test]
    fn directory_glob_honours_whiteouts_and_follows_links() {
        let lower = tar(&[
            E::File("usr/lib/jvm/java-11/lib/security/cacerts", b"11"),
            E::File("usr/lib/jvm/java-17/lib/security/cacerts", b"17"),
            E::File("usr/lib/jvm/jre-only/bin/java", b"x"),
        ]);
        let upper = tar(&[
            E::File("usr/lib/jvm/.wh.java-11", b""),
            E::File("etc/ssl/certs/java/cacerts", b"shared"),
            E::Link(
                "usr/lib/jvm/java-21/lib/security/cacerts",
                "/etc/ssl/certs/java/cacerts",
            ),
            E::Link("usr/lib/jvm/default-java", "java-21"),
        ]);
        let found = find(&mut vec![upper, lower], &glob_lookup()).unwrap();
        let at = |jdk: &str| format!("/usr/lib/jvm/{jdk}/lib/security/cacerts");
        assert_eq!(
            found.globs[JVM],
            [
                at("default-java"),
                at("java-17"),
                at("java-21"),
                at("jre-only")
            ]
        );
        assert!(!found.paths.contains_key(&at("java-11")), "whited out");
        assert_eq!(found.paths[&at("jre-only")], Located::Missing);
        let f17 = file(&found, &at("java-17"));
        assert_eq!((f17.layer, f17.contents.as_slice()), (1, &b"17"[..]));
        for jdk in ["default-java", "java-21"] {
            let f = file(&found, &at(jdk));
            assert_eq!(f.real_path, "/etc/ssl/certs/java/cacerts");
            assert_eq!(f.contents, b"shared");
        }
    }

    #[test]
    fn directory_glob_stops_at_an_opaque_directory() {
        let lower = tar(&[E::File("usr/lib/jvm/java-17/lib/security/cacerts", b"17")]);
        let upper = tar(&[
            E::File("usr/lib/jvm/.wh..wh..opq", b""),
            E::File("usr/lib/jvm/java-21/lib/security/cacerts", b"21"),
        ]);
        // The lower layer is never needed (reading it would fail).
        let garbage = vec![0x42_u8; 4096];
        let found = find(&mut vec![upper, garbage, lower], &glob_lookup()).unwrap();
        assert_eq!(found.layers_read, 1);
        assert_eq!(
            found.globs[JVM],
            ["/usr/lib/jvm/java-21/lib/security/cacerts"]
        );
        let glob = Glob::parse(JVM).unwrap();
        assert!(glob.matches("/usr/lib/jvm/x/lib/security/cacerts"));
        assert!(!glob.matches("/usr/lib/jvm/x/y/lib/security/cacerts"));
        assert!(!glob.matches("/usr/lib/jvm/lib/security/cacerts"));
        assert!(Glob::parse("/usr/lib/jvm/java").is_none());
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./etc//ssl/./certs/"), "/etc/ssl/certs");
        assert_eq!(normalize(""), "/");
        assert_eq!(parent("/etc"), "/");
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a"]);
    }

    /// Attack (issue 19, item 6): a ~100 KB gzip layer whose GNU long name (or long link, or
    /// PAX header, local or global) claims 100 MiB of zeros. Refused at the default limits when
    /// its header is read, before the record is.
    #[test]
    fn a_giant_extension_header_is_refused_unread() {
        use crate::testing::layer_with_extension;
        use tar::EntryType as T;
        const HUGE: u64 = 100 * 1024 * 1024;
        for (kind, what) in [
            (T::GNULongName, "GNU long-name"),
            (T::GNULongLink, "GNU long-link"),
            (T::XHeader, "PAX extended"),
            (T::XGlobalHeader, "PAX global extended"),
        ] {
            let layer = layer_with_extension(kind, HUGE);
            assert!(layer.len() < 200 * 1024, "{what}: {} bytes", layer.len());
            let err = find(&mut vec![layer], &lookup(&[BUNDLE])).unwrap_err();
            match &err {
                ImageError::TarExtensionTooLarge {
                    layer: 0,
                    what: w,
                    size: HUGE,
                    limit: crate::MAX_TAR_EXTENSION,
                } if w == &what => {}
                other => panic!("{what}: {other:?}"),
            }
            assert!(err.to_string().contains("layer 0"), "{err}");
        }
        // Just under the limit: read (and then the zero-filled name is too long a path).
        let layer = layer_with_extension(T::GNULongName, crate::MAX_TAR_EXTENSION);
        assert!(matches!(
            find(&mut vec![layer], &lookup(&[BUNDLE])),
            Err(ImageError::TarPathTooLong {
                layer: 0,
                what: "path",
                ..
            })
        ));
    }

    /// A path beyond `PATH_MAX`, by GNU long name or PAX record, is refused; one just under it
    /// (and a PAX link target) is read (negative control).
    #[test]
    fn paths_are_bounded_and_long_legitimate_ones_read() {
        let deep = |len: usize| {
            let mut p = String::from("etc/");
            while p.len() + 9 < len {
                p.push_str("long-dir/");
            }
            while p.len() < len {
                p.push('f');
            }
            assert_eq!(p.len(), len);
            p
        };
        let ok = deep(crate::MAX_TAR_PATH - 1);
        let too_long = deep(crate::MAX_TAR_PATH + 1);

        // GNU long names, as the tar crate's builder writes them.
        let gnu = |path: &str| gzip(&tar(&[E::File(path, b"long")]));
        let ok_path = format!("/{ok}");
        let found = find(&mut vec![gnu(&ok)], &lookup(&[ok_path.as_str()])).unwrap();
        assert_eq!(file(&found, &ok_path).contents, b"long");
        let err = find(&mut vec![gnu(&too_long)], &lookup(&[BUNDLE])).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TarPathTooLong { layer: 0, what: "path", length, limit: 4096 }
                    if length == too_long.len()
            ),
            "{err:?}"
        );

        // PAX `path` and `linkpath` records.
        let pax = |path: &str, link: &str| {
            let mut b = ::tar::Builder::new(Vec::new());
            b.append_pax_extensions([("path", path.as_bytes()), ("linkpath", link.as_bytes())])
                .unwrap();
            let mut h = ::tar::Header::new_ustar();
            h.set_entry_type(::tar::EntryType::Symlink);
            h.set_path("short").unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
            gzip(&b.into_inner().unwrap())
        };
        let target = format!("/{}", deep(3000));
        let found = find(&mut vec![pax(&ok, &target)], &lookup(&[ok_path.as_str()])).unwrap();
        assert_eq!(
            found.paths[&ok_path],
            Located::Missing,
            "a link to a file the image lacks"
        );
        assert!(matches!(
            find(&mut vec![pax(&ok, &too_long)], &lookup(&[BUNDLE])),
            Err(ImageError::TarPathTooLong {
                what: "link target",
                ..
            })
        ));
    }

    /// A layer that decompresses past the per-layer limit is refused when the limit is reached
    /// (a small limit here; the default is 64 GiB); one within it is read.
    #[test]
    fn a_layer_beyond_the_byte_limit_is_refused() {
        let limits = LayerLimits {
            max_layer_bytes: 1024 * 1024,
            ..LayerLimits::default()
        };
        let big = vec![0u8; 2 * 1024 * 1024];
        let layer = gzip(&tar(&[
            E::File("var/big", &big),
            E::File("etc/ssl/certs/ca-certificates.crt", b"pem"),
        ]));
        let err =
            find_with_limits(&mut vec![layer.clone()], &lookup(&[BUNDLE]), limits).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::LayerTooLarge {
                    layer: 0,
                    limit: 1_048_576
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("1048576"), "{err}");
        // Also when the stream is zeros only (a bomb with no valid tar inside past a header).
        let bomb = crate::testing::layer_with_extension(::tar::EntryType::XHeader, 900 * 1024);
        let limits = LayerLimits {
            max_layer_bytes: 512 * 1024,
            ..LayerLimits::default()
        };
        assert!(matches!(
            find_with_limits(&mut vec![bomb], &lookup(&[BUNDLE]), limits),
            Err(ImageError::LayerTooLarge { .. })
        ));
        // Within the default limit, the same layer is read.
        let found = find(&mut vec![layer], &lookup(&[BUNDLE])).unwrap();
        assert_eq!(file(&found, BUNDLE).contents, b"pem");
    }

    /// Deep paths imply one directory per component: the index they build is bounded.
    #[test]
    fn the_index_is_bounded() {
        let limits = LayerLimits {
            max_index_bytes: 256 * 1024,
            ..LayerLimits::default()
        };
        let deep: Vec<String> = (0..100)
            .map(|i| format!("top{i}/{}", "a/".repeat(1500)) + "f")
            .collect();
        let entries: Vec<E<'_>> = deep.iter().map(|p| E::File(p, b"")).collect();
        let layer = gzip(&tar(&entries));
        assert!(layer.len() < 100 * 1024, "{}", layer.len());
        assert!(matches!(
            find_with_limits(&mut vec![layer], &lookup(&[BUNDLE]), limits),
            Err(ImageError::LayerIndexTooLarge {
                layer: 0,
                limit: 262_144
            })
        ));
        // Within the default limit.
        let few = gzip(&tar(&entries[..5]));
        find(&mut vec![few], &lookup(&[BUNDLE])).unwrap();
    }

    /// A PAX `size` record overrides the header's (as Go's archive/tar, which runtimes use,
    /// reads it), and the entries after it are found where they are.
    #[test]
    fn a_pax_size_record_overrides_the_header() {
        let mut raw = Vec::new();
        let record = b"12 size=700\n";
        raw.extend(crate::testing::header(
            ::tar::EntryType::XHeader,
            "pax",
            record.len() as u64,
        ));
        let mut padded = record.to_vec();
        padded.resize(512, 0);
        raw.extend(padded);
        // The header says 0 bytes (as Go writes beyond 8 GiB); 700 follow.
        raw.extend(crate::testing::header(
            ::tar::EntryType::Regular,
            "var/blob",
            0,
        ));
        raw.extend(vec![b'z'; 1024]);
        raw.extend(tar(&[E::File("etc/ssl/certs/ca-certificates.crt", b"pem")]));
        let found = find(&mut vec![gzip(&raw)], &lookup(&[BUNDLE, "/var/blob"])).unwrap();
        assert_eq!(file(&found, BUNDLE).contents, b"pem");
        assert_eq!(file(&found, "/var/blob").contents, vec![b'z'; 700]);
    }
}

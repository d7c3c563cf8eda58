//! A layer's tar stream read entry by entry with bounded memory: [`Entries`], [`LayerLimits`].
//!
//! The `tar` crate's own iterator reads every GNU long-name, long-link and PAX extended header
//! whole into memory, whatever size its header claims, so a 400 KB gzip layer whose long name is
//! hundreds of megabytes of zeros costs gigabytes. Here the iteration is ours (the `tar` crate
//! still parses each 512-byte header and the PAX records) so that each size is checked before
//! anything is read:
//!
//! - an extension header (GNU `L`/`K`, PAX `x`/`g`) larger than
//!   [`LayerLimits::max_extension`] is refused ([`ImageError::TarExtensionTooLarge`]);
//! - a path or link target longer than [`LayerLimits::max_path`] is refused
//!   ([`ImageError::TarPathTooLong`]);
//! - a layer whose tar stream runs past [`LayerLimits::max_layer_bytes`] is refused
//!   ([`ImageError::LayerTooLarge`]): a decompression bomb ends there, in time as in memory.
//!
//! File data is skipped unless the caller reads it ([`Entries::read_data`]). The semantics are
//! the `tar` crate's (and Go's `archive/tar`, which container runtimes use): a PAX `size` record
//! overrides the header's size, `path`/`linkpath` records and GNU long names override the
//! header's names, extension headers are honoured only in ustar or GNU headers, GNU sparse
//! headers are followed by their extension blocks, and the archive ends at the first zero block.

use std::io::Read;

use crate::error::ImageError;

/// The largest GNU long-name or long-link record, or PAX extended header (local or global), a
/// layer may hold: 1 MiB. Real ones hold one path or a few extended attributes (SELinux labels,
/// capabilities): a few kilobytes at most.
pub const MAX_TAR_EXTENSION: u64 = 1024 * 1024;

/// The longest path or link target (in bytes) a layer entry may have: 4096, Linux's `PATH_MAX`,
/// so no runtime could extract a longer one anyway.
pub const MAX_TAR_PATH: usize = 4096;

/// The most bytes a layer's tar stream (decompressed) may hold: 64 GiB. Generous for the
/// largest layers seen in practice (model weights), while bounding what a small compressed blob
/// can make us decompress.
pub const MAX_LAYER_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// The most memory the index of the layers read may take, counted as the length of every path
/// it holds (implied parent directories included) plus [`INDEX_ENTRY_OVERHEAD`] per entry:
/// 256 MiB, about two million entries of ordinary length, across the image.
pub const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;

/// What one index entry is counted as beyond its path's length (hash-table slot, string and
/// node headers).
pub const INDEX_ENTRY_OVERHEAD: u64 = 64;

/// The bounds applied while reading layers; [`Default`] gives the documented constants. Tests
/// use smaller ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerLimits {
    /// See [`MAX_TAR_EXTENSION`].
    pub max_extension: u64,
    /// See [`MAX_TAR_PATH`].
    pub max_path: usize,
    /// See [`MAX_LAYER_BYTES`].
    pub max_layer_bytes: u64,
    /// See [`MAX_INDEX_BYTES`].
    pub max_index_bytes: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        Self {
            max_extension: MAX_TAR_EXTENSION,
            max_path: MAX_TAR_PATH,
            max_layer_bytes: MAX_LAYER_BYTES,
            max_index_bytes: MAX_INDEX_BYTES,
        }
    }
}

const BLOCK: u64 = 512;

/// One entry, extensions applied.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The path (lossy UTF-8), as the archive gives it.
    pub(crate) path: String,
    /// The link target, for links.
    pub(crate) link: Option<String>,
    /// The entry type.
    pub(crate) kind: tar::EntryType,
    /// The size of the entry's data.
    pub(crate) size: u64,
}

/// The entries of one layer's tar stream.
pub(crate) struct Entries<R> {
    inner: R,
    layer: usize,
    limits: LayerLimits,
    /// Bytes consumed so far.
    consumed: u64,
    /// Data of the current entry not yet read, then its padding.
    data_left: u64,
    padding: u64,
    done: bool,
}

impl<R: Read> Entries<R> {
    pub(crate) fn new(inner: R, layer: usize, limits: LayerLimits) -> Self {
        Self {
            inner,
            layer,
            limits,
            consumed: 0,
            data_left: 0,
            padding: 0,
            done: false,
        }
    }

    fn io(&self, source: std::io::Error) -> ImageError {
        ImageError::Layer {
            layer: self.layer,
            source,
        }
    }

    fn malformed(&self, what: &str) -> ImageError {
        self.io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            what.to_owned(),
        ))
    }

    /// Counts `n` more bytes against the per-layer limit, before they are read.
    fn account(&mut self, n: u64) -> Result<(), ImageError> {
        match self.consumed.checked_add(n) {
            Some(total) if total <= self.limits.max_layer_bytes => {
                self.consumed = total;
                Ok(())
            }
            _ => Err(ImageError::LayerTooLarge {
                layer: self.layer,
                limit: self.limits.max_layer_bytes,
            }),
        }
    }

    /// Reads one block; `false` at a clean end of stream.
    fn block(&mut self, buf: &mut [u8; BLOCK as usize]) -> Result<bool, ImageError> {
        self.account(BLOCK)?;
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(self.malformed("a tar header cut short")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(true)
    }

    /// Reads exactly `n` bytes (already checked against a limit by the caller).
    fn exact(&mut self, n: u64) -> Result<Vec<u8>, ImageError> {
        self.account(n)?;
        let mut bytes = Vec::new();
        let read = (&mut self.inner)
            .take(n)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(e))?;
        if read as u64 != n {
            return Err(self.malformed("tar entry data cut short"));
        }
        Ok(bytes)
    }

    fn skip(&mut self, n: u64) -> Result<(), ImageError> {
        if n == 0 {
            return Ok(());
        }
        self.account(n)?;
        let skipped = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| self.io(e))?;
        if skipped != n {
            return Err(self.malformed("tar entry data cut short"));
        }
        Ok(())
    }

    /// The data of the entry [`Entries::next`] returned last (call at most once per entry,
    /// after checking its size).
    pub(crate) fn read_data(&mut self) -> Result<Vec<u8>, ImageError> {
        let n = std::mem::take(&mut self.data_left);
        self.exact(n)
    }

    /// The next entry, its extension headers applied; `None` at the end of the archive.
    pub(crate) fn next(&mut self) -> Result<Option<Entry>, ImageError> {
        if self.done {
            return Ok(None);
        }
        let rest = std::mem::take(&mut self.data_left) + std::mem::take(&mut self.padding);
        self.skip(rest)?;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK as usize];
        loop {
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if !self.block(&mut block)? || block.iter().all(|&b| b == 0) {
                self.done = true;
                if pending {
                    return Err(self.malformed(
                        "extension headers describing a member, but no member follows",
                    ));
                }
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            let sum: u32 = block[..148]
                .iter()
                .chain(&block[156..])
                .map(|&b| u32::from(b))
                .sum::<u32>()
                + 8 * 32;
            if header.cksum().map_err(|e| self.io(e))? != sum {
                return Err(self.malformed("archive header checksum mismatch"));
            }
            let kind = header.entry_type();
            let extension = kind.is_gnu_longname()
                || kind.is_gnu_longlink()
                || kind.is_pax_local_extensions()
                || kind.is_pax_global_extensions();
            let mut size = header.entry_size().map_err(|e| self.io(e))?;
            if !extension && let Some(value) = pax.as_deref().and_then(|p| pax_value(p, "size")) {
                size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| self.malformed("a PAX size record that is not a number"))?;
            }
            let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
            if extension && recognized {
                let what = if kind.is_gnu_longname() {
                    "GNU long-name"
                } else if kind.is_gnu_longlink() {
                    "GNU long-link"
                } else if kind.is_pax_local_extensions() {
                    "PAX extended"
                } else {
                    "PAX global extended"
                };
                if size > self.limits.max_extension {
                    return Err(ImageError::TarExtensionTooLarge {
                        layer: self.layer,
                        what,
                        size,
                        limit: self.limits.max_extension,
                    });
                }
                if !kind.is_pax_global_extensions() {
                    let data = self.exact(size)?;
                    self.skip(padding(size))?;
                    let slot = if kind.is_gnu_longname() {
                        &mut long_name
                    } else if kind.is_gnu_longlink() {
                        &mut long_link
                    } else {
                        &mut pax
                    };
                    if slot.replace(data).is_some() {
                        return Err(
                            self.malformed("two extension headers of one kind for a member")
                        );
                    }
                    continue;
                }
                // A global header is returned as an entry of its own, as the `tar` crate does.
            }
            if kind.is_gnu_sparse() {
                let gnu = header.as_gnu().ok_or_else(|| {
                    self.malformed("sparse entry type in a header that is not GNU")
                })?;
                if gnu.is_extended() {
                    let mut ext = [0u8; BLOCK as usize];
                    loop {
                        if !self.block(&mut ext)? {
                            return Err(self.malformed("a GNU sparse header cut short"));
                        }
                        // `isextended` of a GnuExtSparseHeader.
                        if ext[504] != 1 {
                            break;
                        }
                    }
                }
            }

            let path = trim_nul(long_name.as_deref())
                .or_else(|| pax.as_deref().and_then(|p| pax_value(p, "path")))
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let link = trim_nul(long_link.as_deref())
                .or_else(|| pax.as_deref().and_then(|p| pax_value(p, "linkpath")))
                .map(<[u8]>::to_vec)
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
            for (what, bytes) in [("path", Some(&path)), ("link target", link.as_ref())] {
                if let Some(bytes) = bytes
                    && bytes.len() > self.limits.max_path
                {
                    return Err(ImageError::TarPathTooLong {
                        layer: self.layer,
                        what,
                        length: bytes.len(),
                        limit: self.limits.max_path,
                    });
                }
            }
            self.data_left = size;
            self.padding = padding(size);
            return Ok(Some(Entry {
                path: String::from_utf8_lossy(&path).into_owned(),
                link: link.map(|l| String::from_utf8_lossy(&l).into_owned()),
                kind,
                size,
            }));
        }
    }
}

/// The zero bytes after `size` bytes of data, up to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// A GNU long name or link without its terminating NUL.
fn trim_nul(bytes: Option<&[u8]>) -> Option<&[u8]> {
    bytes.map(|b| b.strip_suffix(&[0]).unwrap_or(b))
}

/// The value of the PAX record `key`, the last one winning as in Go's `archive/tar` (what
/// container runtimes extract with), so a record repeated to mislead resolves as the runtime
/// sees it; malformed records are skipped, as the `tar` crate does.
fn pax_value<'a>(pax: &'a [u8], key: &str) -> Option<&'a [u8]> {
    tar::PaxExtensions::new(pax)
        .filter_map(Result::ok)
        .filter(|e| e.key_bytes() == key.as_bytes())
        .last()
        .map(|e| e.value_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Vec<(String, Option<String>, tar::EntryType, Option<u64>)>;

    /// What our iterator sees (sizes of sparse files left out: the `tar` crate gives their
    /// expanded size, we skip their stored data).
    fn ours(bytes: &[u8]) -> Seen {
        let mut entries = Entries::new(bytes, 0, LayerLimits::default());
        let mut seen = Vec::new();
        while let Some(e) = entries.next().unwrap() {
            let size = (!e.kind.is_gnu_sparse()).then_some(e.size);
            seen.push((e.path, e.link, e.kind, size));
        }
        seen
    }

    /// What the `tar` crate's own iterator sees.
    fn theirs(bytes: &[u8]) -> Seen {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let kind = e.header().entry_type();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                    kind,
                    (!kind.is_gnu_sparse()).then_some(e.size()),
                )
            })
            .collect()
    }

    fn gnu(kind: tar::EntryType, path: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// Appends `header` and `data`, padded to a block.
    fn push(raw: &mut Vec<u8>, header: &tar::Header, data: &[u8]) {
        raw.extend(header.as_bytes());
        raw.extend(data);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
    }

    /// PAX records, each `<len> key=value\n`.
    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while len.to_string().len() + rest.len() != len {
                len += 1;
            }
            out.extend(format!("{len}{rest}").into_bytes());
        }
        out
    }

    fn ext(kind: tar::EntryType, data: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_path(if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            "././@LongLink"
        } else {
            "pax"
        })
        .unwrap();
        h.set_size(data.len() as u64);
        h.set_cksum();
        h
    }

    /// Differential: on an archive using every extension we handle, our iterator and the `tar`
    /// crate's agree on every entry.
    #[test]
    fn entries_match_the_tar_crate() {
        use tar::EntryType as T;
        let mut raw = Vec::new();
        // GNU long name and long link.
        let long = format!("usr/{}/file", "d".repeat(300));
        let name = format!("{long}\0");
        push(
            &mut raw,
            &ext(T::GNULongName, name.as_bytes()),
            name.as_bytes(),
        );
        push(&mut raw, &gnu(T::Regular, "x", 5), b"hello");
        let target = format!("/{}\0", "t".repeat(200));
        push(
            &mut raw,
            &ext(T::GNULongLink, target.as_bytes()),
            target.as_bytes(),
        );
        push(&mut raw, &gnu(T::Symlink, "etc/link", 0), b"");
        // PAX path and size (the header says 0; 700 bytes follow).
        let records = pax(&[("path", "var/pax-named"), ("size", "700")]);
        push(&mut raw, &ext(T::XHeader, &records), &records);
        push(&mut raw, &gnu(T::Regular, "short", 0), &[b'z'; 700]);
        // PAX linkpath.
        let records = pax(&[("linkpath", "/pax/target")]);
        push(&mut raw, &ext(T::XHeader, &records), &records);
        push(&mut raw, &gnu(T::Symlink, "etc/pax-link", 0), b"");
        // A global PAX header: an entry of its own.
        let records = pax(&[("comment", "x")]);
        let mut global = ext(T::XGlobalHeader, &records);
        global.set_path("pax_global_header").unwrap();
        global.set_cksum();
        push(&mut raw, &global, &records);
        // A GNU sparse file with one extension block, 512 bytes stored.
        let mut sparse = gnu(T::GNUSparse, "var/sparse", 512);
        {
            let g = sparse.as_gnu_mut().unwrap();
            g.sparse[0].offset = *b"00000001000\0";
            g.sparse[0].numbytes = *b"00000000000\0";
            g.isextended[0] = 1;
            g.realsize = *b"00000002000\0";
        }
        sparse.set_cksum();
        raw.extend(sparse.as_bytes());
        let mut block = [0u8; 512];
        block[..12].copy_from_slice(b"00000001000\0");
        block[12..24].copy_from_slice(b"00000001000\0");
        raw.extend(block);
        raw.extend([b's'; 512]);
        push(&mut raw, &gnu(T::Regular, "etc/last", 3), b"end");
        raw.extend([0u8; 1024]);

        let seen = ours(&raw);
        assert_eq!(seen, theirs(&raw));
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                long.as_str(),
                "etc/link",
                "var/pax-named",
                "etc/pax-link",
                "pax_global_header",
                "var/sparse",
                "etc/last"
            ]
        );
        assert_eq!(seen[1].1.as_deref(), Some(&target[..target.len() - 1]));
        assert_eq!(seen[2].3, Some(700));
        assert_eq!(seen[3].1.as_deref(), Some("/pax/target"));
    }

    /// The data of an entry is what follows its header, whatever was skipped before it.
    #[test]
    fn data_is_read_after_skipped_entries() {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("a", &b"first"[..]),
            ("b", &[7u8; 1000][..]),
            ("c", b"third"),
        ] {
            let mut h = gnu(tar::EntryType::Regular, path, data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        }
        let archive = b.into_inner().unwrap();
        let mut entries = Entries::new(archive.as_slice(), 0, LayerLimits::default());
        let mut kept = Vec::new();
        while let Some(e) = entries.next().unwrap() {
            if e.path != "b" {
                kept.push(entries.read_data().unwrap());
            }
        }
        assert_eq!(kept, [b"first".to_vec(), b"third".to_vec()]);
    }

    /// A damaged header is an error, not a silent end.
    #[test]
    fn a_bad_checksum_is_an_error() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = gnu(tar::EntryType::Regular, "a", 1);
        b.append_data(&mut h, "a", &b"x"[..]).unwrap();
        let mut archive = b.into_inner().unwrap();
        archive[0] ^= 1;
        let err = Entries::new(archive.as_slice(), 3, LayerLimits::default())
            .next()
            .unwrap_err();
        assert!(
            matches!(&err, ImageError::Layer { layer: 3, source } if source.to_string().contains("checksum")),
            "{err:?}"
        );
    }
}

//! Test helpers: layers built in memory with the `tar` crate.

use std::io::Write as _;

/// One entry of a test layer.
pub(crate) enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// An uncompressed tar stream of `entries`, in the order given.
pub(crate) fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            E::File(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            E::Link(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Hard(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A bare header block: `kind`, `path`, `size`, checksum set (ustar for PAX kinds, GNU else).
pub(crate) fn header(kind: tar::EntryType, path: &str, size: u64) -> Vec<u8> {
    let mut h = if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
        tar::Header::new_ustar()
    } else {
        tar::Header::new_gnu()
    };
    h.set_entry_type(kind);
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// `n` zero bytes as concatenated gzip members (one of each MiB, compressed once): a layer
/// that decompresses to far more than it weighs, built fast.
pub(crate) fn gzip_zeros(n: u64) -> Vec<u8> {
    const MIB: u64 = 1024 * 1024;
    let best = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let member = best(&vec![0; MIB as usize]);
    let mut out = Vec::new();
    for _ in 0..n / MIB {
        out.extend_from_slice(&member);
    }
    out.extend_from_slice(&gzip(&vec![0; (n % MIB) as usize]));
    out
}

/// A gzip layer: an extension header of `kind` claiming `size` bytes, that many zero bytes
/// (padded), then a regular file `etc/x` and the end of the archive.
pub(crate) fn layer_with_extension(kind: tar::EntryType, size: u64) -> Vec<u8> {
    let name = if kind.is_gnu_longname() || kind.is_gnu_longlink() {
        "././@LongLink"
    } else {
        "pax_header"
    };
    let mut out = gzip(&header(kind, name, size));
    out.extend(gzip_zeros(size.div_ceil(512) * 512));
    out.extend(gzip(&tar(&[E::File("etc/x", b"x")])));
    out
}

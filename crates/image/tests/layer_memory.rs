//! Peak memory while reading hostile layers (issue 19, item 6): a ~100 KB gzip layer whose
//! GNU long name or PAX header claims 100 MiB (the `tar` crate's iterator read such records
//! whole: a 400 KB layer made `inject` use 1.25 GB), and a layer of many extension headers
//! each just within the limit.
//!
//! Its own test binary, with one test, so that nothing else runs in the process while the peak
//! resident size (`VmHWM`) is measured.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::Write as _;

use anchorage_image::{ImageError, Lookup, MAX_TAR_EXTENSION, find};

const MIB: u64 = 1024 * 1024;

/// How much the peak resident size may grow while reading the hostile layers.
const ALLOWED_GROWTH: u64 = 64 * MIB;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn header(kind: tar::EntryType, path: &str, size: u64) -> Vec<u8> {
    let mut h = if kind.is_pax_local_extensions() {
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

/// `n` zero bytes (a multiple of 512) as concatenated gzip members, one per MiB.
fn zeros(n: u64, member: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n / MIB {
        out.extend_from_slice(member);
    }
    out.extend(gzip(&vec![0; (n % MIB) as usize]));
    out
}

/// A file entry and the end of the archive.
fn tail() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "etc/ssl/certs/ca-certificates.crt", &b"x"[..])
        .unwrap();
    gzip(&b.into_inner().unwrap())
}

/// Peak resident set size of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

#[test]
fn hostile_extension_headers_do_not_raise_peak_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: peak memory not measured");
        return;
    }
    let member = gzip(&vec![0; MIB as usize]);
    let lookup = Lookup {
        paths: vec!["/etc/ssl/certs/ca-certificates.crt".to_owned()],
        ..Lookup::default()
    };

    // One giant record per kind, each a ~100 KB layer claiming 100 MiB.
    let mut giants = Vec::new();
    for (kind, name) in [
        (tar::EntryType::GNULongName, "././@LongLink"),
        (tar::EntryType::GNULongLink, "././@LongLink"),
        (tar::EntryType::XHeader, "pax_header"),
    ] {
        let mut layer = gzip(&header(kind, name, 100 * MIB));
        layer.extend(zeros(100 * MIB, &member));
        layer.extend(tail());
        assert!(layer.len() < 200 * 1024, "{}", layer.len());
        giants.push(layer);
    }
    // Many PAX headers each just within the limit, with ordinary entries between them: read one
    // at a time, so memory does not add up (32 MiB of records in all).
    let mut many = Vec::new();
    let record = {
        // One valid record padding the header to the limit: "<len> comment=<zeros>\n".
        let len = MAX_TAR_EXTENSION as usize;
        let digits = len.to_string();
        let mut r = format!("{digits} comment=").into_bytes();
        r.resize(len - 1, b'0');
        r.push(b'\n');
        assert_eq!(r.len(), len);
        gzip(&r)
    };
    for i in 0..32 {
        many.extend(gzip(&header(
            tar::EntryType::XHeader,
            "pax_header",
            MAX_TAR_EXTENSION,
        )));
        many.extend_from_slice(&record);
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("var/f{i}")).unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        many.extend(gzip(h.as_bytes()));
    }
    many.extend(tail());

    let before = vm_hwm();
    for layer in giants {
        let err = find(&mut vec![layer], &lookup).unwrap_err();
        assert!(
            matches!(err, ImageError::TarExtensionTooLarge { size, .. } if size == 100 * MIB),
            "{err:?}"
        );
    }
    let found = find(&mut vec![many], &lookup).unwrap();
    assert!(found.file("/etc/ssl/certs/ca-certificates.crt").is_some());
    let after = vm_hwm();

    let growth = after.saturating_sub(before);
    assert!(
        growth < ALLOWED_GROWTH,
        "peak resident size grew by {} MiB (from {} to {} MiB), more than {} MiB",
        growth / MIB,
        before / MIB,
        after / MIB,
        ALLOWED_GROWTH / MIB
    );
}

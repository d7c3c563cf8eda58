//! The image size guard: a file the lookup needs that is larger than [`MAX_FILE_SIZE`] is
//! refused from its tar header ([`ImageError::FileTooLarge`] naming the path, layer, size and
//! limit) instead of being held in memory; a file of exactly the limit is read whole, and a file
//! over the limit that no query needs is streamed past.
//!
//! The layers are streamed (a header, then zeros from `io::repeat`), so the oversized case
//! allocates nothing of its size.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::io::{Read, repeat};

use anchorage_image::{ImageError, LayerSource, Lookup, MAX_FILE_SIZE, find};

const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One layer, a plain tar stream: each `(path, size)` a regular file of zeros.
struct Streamed(Vec<(&'static str, u64)>);

fn header(path: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

impl LayerSource for Streamed {
    fn layer_count(&self) -> usize {
        1
    }

    fn open(&mut self, index: usize) -> std::io::Result<Box<dyn Read + '_>> {
        assert_eq!(index, 0);
        let mut stream: Box<dyn Read> = Box::new(std::io::empty());
        for &(path, size) in &self.0 {
            let padding = (512 - size % 512) % 512;
            stream = Box::new(
                stream
                    .chain(std::io::Cursor::new(header(path, size)))
                    .chain(repeat(0).take(size + padding)),
            );
        }
        // The end of the archive: two zero blocks.
        Ok(Box::new(stream.chain(repeat(0).take(1024))))
    }
}

fn bundle_lookup() -> Lookup {
    Lookup {
        paths: vec![BUNDLE.to_owned()],
        ..Lookup::default()
    }
}

#[test]
fn a_needed_file_over_the_limit_is_refused_naming_path_size_and_limit() {
    let mut layers = Streamed(vec![(
        "etc/ssl/certs/ca-certificates.crt",
        MAX_FILE_SIZE + 1,
    )]);
    let err = find(&mut layers, &bundle_lookup()).unwrap_err();
    let ImageError::FileTooLarge {
        path,
        layer,
        size,
        limit,
    } = &err
    else {
        panic!("expected FileTooLarge, got {err:?}");
    };
    assert_eq!(path, BUNDLE);
    assert_eq!(
        (*layer, *size, *limit),
        (0, MAX_FILE_SIZE + 1, MAX_FILE_SIZE)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{path} in layer 0 is {} bytes, more than the {MAX_FILE_SIZE}-byte limit",
            MAX_FILE_SIZE + 1
        )
    );
}

#[test]
fn a_needed_file_of_exactly_the_limit_is_read_whole() {
    // Negative control for the refusal above: the limit itself is allowed.
    let mut layers = Streamed(vec![("etc/ssl/certs/ca-certificates.crt", MAX_FILE_SIZE)]);
    let files = find(&mut layers, &bundle_lookup()).unwrap();
    let found = files.file(BUNDLE).expect("the bundle is found");
    assert_eq!(found.contents.len() as u64, MAX_FILE_SIZE);
    assert!(found.contents.iter().all(|&b| b == 0));
}

#[test]
fn an_unneeded_file_over_the_limit_is_streamed_past() {
    // The guard applies to what a query keeps, not to every file in the layer.
    let mut layers = Streamed(vec![
        ("var/lib/big.img", MAX_FILE_SIZE + 1),
        ("etc/ssl/certs/ca-certificates.crt", 3),
    ]);
    let files = find(&mut layers, &bundle_lookup()).unwrap();
    assert_eq!(files.file(BUNDLE).expect("found").contents, vec![0, 0, 0]);
}

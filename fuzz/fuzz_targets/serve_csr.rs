#![no_main]
//! See `anchorage_fuzz_targets::serve_csr`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::serve_csr(data));

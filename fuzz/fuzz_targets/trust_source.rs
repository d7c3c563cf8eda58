#![no_main]
//! See `anchorage_fuzz_targets::trust_source`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::trust_source(data));

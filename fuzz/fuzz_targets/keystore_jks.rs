#![no_main]
//! See `anchorage_fuzz_targets::keystore_jks`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::keystore_jks(data));

#![no_main]
//! See `anchorage_fuzz_targets::keystore_pkcs12`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::keystore_pkcs12(data));

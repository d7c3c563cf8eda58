#![no_main]
//! See `anchorage_fuzz_targets::secrets_jwt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::secrets_jwt(data));

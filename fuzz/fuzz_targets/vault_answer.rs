#![no_main]
//! See `anchorage_fuzz_targets::vault_answer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::vault_answer(data));

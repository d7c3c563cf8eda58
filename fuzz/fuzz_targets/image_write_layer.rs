#![no_main]
//! See `anchorage_fuzz_targets::image_write_layer`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::image_write_layer(data));

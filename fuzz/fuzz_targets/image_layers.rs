#![no_main]
//! See `anchorage_fuzz_targets::image_layers`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::image_layers(data));

#![no_main]
//! See `anchorage_fuzz_targets::serve_request_body`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::serve_request_body(data));

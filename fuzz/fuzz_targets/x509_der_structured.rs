#![no_main]
//! See `anchorage_fuzz_targets::x509_der_structured`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::x509_der_structured(data));

#![no_main]
//! See `anchorage_fuzz_targets::x509_pkcs7`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::x509_pkcs7(data));

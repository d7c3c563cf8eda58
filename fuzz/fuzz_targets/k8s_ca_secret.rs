#![no_main]
//! See `anchorage_fuzz_targets::k8s_ca_secret`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| anchorage_fuzz_targets::k8s_ca_secret(data));

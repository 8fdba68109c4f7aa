#![no_main]
//! See `bandsync_fuzz::http_routing` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::http_routing::check(data));

#![no_main]
//! See `bandsync_fuzz::deflate_reader` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::deflate_reader::check(data));

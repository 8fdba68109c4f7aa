#![no_main]
//! See `bandsync_fuzz::frame_decoder` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::frame_decoder::check(data));

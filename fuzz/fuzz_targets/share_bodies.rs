#![no_main]
//! See `bandsync_fuzz::share_bodies` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::share_bodies::check(data));

#![no_main]
//! See `bandsync_fuzz::inflater` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::inflater::check(data));

#![no_main]
//! See `bandsync_fuzz::last_event_id` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::last_event_id::check(data));

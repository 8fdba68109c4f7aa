#![no_main]
//! See `bandsync_fuzz::socketio_packets` for what this target checks beyond "no panic".

libfuzzer_sys::fuzz_target!(|data: &[u8]| bandsync_fuzz::socketio_packets::check(data));

//! The logic of each fuzz target, one module per target, each with a `check(data)` that
//! panics when an invariant breaks (a panic inside the server code counts too).
//!
//! The same files serve two builds: `cargo fuzz run <target>` links them into libFuzzer
//! binaries (`fuzz_targets/*.rs`), and the root package's `tests/fuzz_targets.rs` compiles
//! them on stable to replay every checked-in corpus file and to run property tests, so
//! CI exercises exactly what the fuzzer exercised.

pub mod deflate_reader;
pub mod frame_decoder;
pub mod harness;
pub mod http_routing;
pub mod inflater;
pub mod last_event_id;
pub mod share_bodies;
pub mod socketio_packets;

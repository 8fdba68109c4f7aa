//! The library half of `bandsync-bench`: the pure logic its scenarios share, kept out of the
//! binary so it is unit-tested without a server (`cargo test -p bandsync-bench`).

pub mod bench_stats;

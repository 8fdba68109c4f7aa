//! bandsync server library.

//! Clients for a bandsync server, shared by the `bandsync-cli` tool and the server's
//! integration tests (so the tests exercise the same code paths real tools use).
//!
//! - [`WsClient`]: one WebSocket connection to `GET /ws`: typed requests with ids, replies
//!   matched by id, everything else delivered in arrival order, close codes surfaced.
//! - [`SseClient`]: one `GET /sse/{sessionId}` listener stream, with `Last-Event-ID`.
//! - [`repo::RepoStream`] / [`repo::post_test`]: a repository stream (`GET /stream/{repoId}`,
//!   compositions as `audio_buffer` messages) and its test route.
//! - [`ClockEstimator`] / [`ServerClock`]: server time from `heartbeat` round trips.
//! - [`Timeline`]: the session position between events, extrapolated from the transport.
//! - [`TickStats`]: lost ticks, jitter and lag of a `scroll_tick` stream.
//! - [`Credentials`] / [`token`]: what a client presents to a server that checks access,
//!   and minting the authenticated mode's tokens.
//!
//! Nothing here spawns tasks: each client is driven by its owner's calls, which keeps the
//! order of events and every timeout visible in the calling code.

pub mod args;
pub mod click;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod metronome;
pub mod repo;
pub mod sse;
pub mod stats;
pub mod timeline;
pub mod token;
pub mod ws;

pub use clock::{server_now, wall_clock_ms, ClockEstimate, ClockEstimator, ServerClock};
pub use credentials::Credentials;
pub use error::{ClientError, Result};
pub use sse::{SseClient, SseEvent};
pub use stats::{Percentiles, TickStats, TickSummary};
pub use timeline::Timeline;
pub use ws::{Incoming, WsClient, DEFAULT_REQUEST_TIMEOUT};

/// The protocol crate, re-exported so users of the client need only one dependency.
pub use bandsync_protocol as protocol;

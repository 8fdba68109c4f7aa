//! bandsync: a realtime sync server for bands.
//!
//! Where a message enters, is decided, and leaves:
//! - `server`: accept loop, routing, CORS and security headers, graceful shutdown.
//! - `ws`: the WebSocket upgrade and each socket's reader and writer; `sse`: listeners.
//! - `http`: health, metrics, session info and the browser page (warp).
//! - `share`: the Music Share relay API (`/api/share/...`): sharers post audio and metadata.
//! - `repo`: repository streams (`/stream/{repoId}`): compositions from GitHub activity,
//!   mapped by `github`, rendered offline by the `bandsync-render` crate, broadcast to
//!   SSE and WebSocket listeners.
//! - `engine`: the one thread that owns every session and decides every event; it
//!   encodes each broadcast once and produces the 16 ms ticks.
//! - `outbox`: each connection's bounded queue and the slow-consumer policy.
//! - `store`: where session state outlives its connections (memory now, Redis later).
//! - `net`: the accept loop, connection caps, header and idle timeouts; `limits`: the
//!   client address and every per-address limit.
//! - `auth`: the `Origin` rule, the authenticated mode's JWTs, share-receive authorization.
//! - `github`: GitHub webhook deliveries (signature, headers, payload) mapped to the musical
//!   parameters of a repository stream, and the set of deliveries already played.
//! - `ops`: the monitor (alerts raised and cleared every `METRICS_INTERVAL`, listed in
//!   `/health`, counted in `/metrics`, streamed to operators at `/alerts/stream`).
//! - `config`, `clock`, `metrics`, `frames`, `context`: the shared pieces.

pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod context;
pub mod deflate;
pub mod engine;
pub mod frames;
pub mod github;
pub mod history;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod outbox;
pub mod repo;
pub mod server;
pub mod service;
pub mod share;
pub mod socketio;
pub mod sse;
pub mod store;
pub mod stream_manager;
pub mod tick_grid;
pub mod ws;

pub use config::Config;
pub use server::run;

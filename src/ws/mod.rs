//! The WebSocket transport at `GET /ws`: our own HTTP upgrade (where permessage-deflate is
//! negotiated), then one task per socket that reads it; what the server sends is written
//! straight into the socket by whoever queued it (`socket`, `outbox::write`). Every byte
//! a client sends passes the frame guard (`guard`), whose output `/ws` reads as messages
//! (`messages`) and the other WebSocket endpoints read through tungstenite (`guarded_io`).

pub mod budget;
mod connection;
pub mod guard;
pub mod guarded_io;
mod incoming;
mod messages;
pub mod metrics;
mod ratelimit;
pub mod socket;
pub mod upgrade;

pub use connection::close_frame;

pub use ratelimit::{shared_clock, SocketRateLimit, Verdict};

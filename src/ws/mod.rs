//! The WebSocket transport at `GET /ws`: our own HTTP upgrade (where permessage-deflate is
//! negotiated), then one task per socket that reads it and writes its outbox. Every byte a
//! client sends passes the frame guard (`guard`) before tungstenite reads it.

pub mod budget;
mod connection;
pub mod guard;
pub mod guarded_io;
mod incoming;
mod outgoing;
mod ratelimit;
pub mod upgrade;

pub use connection::close_frame;

pub use ratelimit::{SocketRateLimit, Verdict};

//! The WebSocket transport at `GET /ws`: our own HTTP upgrade (where permessage-deflate is
//! negotiated), then one reader and one writer per socket.

mod connection;
pub mod deflate;
mod ratelimit;
pub mod upgrade;

pub use ratelimit::{SocketRateLimit, Verdict};

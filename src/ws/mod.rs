//! The WebSocket transport at `GET /ws`: our own HTTP upgrade (so later extensions such as
//! permessage-deflate can be negotiated here), then one reader and one writer per socket.

mod connection;
mod ratelimit;
pub mod upgrade;

pub use ratelimit::{SocketRateLimit, Verdict};

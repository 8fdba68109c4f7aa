//! The WebSocket transport at `GET /ws`: our own HTTP upgrade (where permessage-deflate is
//! negotiated), then one task per socket that reads it and writes its outbox.

mod connection;
pub mod deflate;
mod incoming;
mod outgoing;
mod ratelimit;
pub mod upgrade;

pub use ratelimit::{SocketRateLimit, Verdict};

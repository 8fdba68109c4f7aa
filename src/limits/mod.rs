//! Per-client-address limits and the client address itself: what keeps one client (or one
//! flood) from using up what the bands need.
//!
//! - `client_ip`: who the client is (TCP peer, or `X-Forwarded-For` from a trusted proxy).
//! - `conns`: the cap on all TCP connections and on those of one address.
//! - `rate`: token buckets per address (share creation, share posts per session).
//! - `auth`: failed authentications per address, and bans.
//! - `table`: the bounded map under all of them (addresses are attacker-chosen).

pub mod auth;
pub mod client_ip;
pub mod config;
pub mod conns;
pub mod rate;
pub mod table;

pub use auth::{AuthFailures, AuthLimits, RetryAfter};
pub use client_ip::{AddrKey, ClientIp, TrustedProxies};
pub use conns::{ConnLimits, ConnPermit, Refused};

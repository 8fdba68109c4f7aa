//! The bandsync wire protocol, shared by the server, the clients and the tests.
//!
//! Every message on every transport is one JSON envelope
//! `{"type": .., "id"?: .., "timestamp"?: .., "data"?: {..}}` (see `protocol/PROTOCOL.md`).
//! This crate owns the typed events, their validation, the error and close codes, and the
//! timeline model (`beat + (t - anchorTime) * tempo / 60000`). It knows nothing of sockets:
//! no tokio, warp or tungstenite, so any client can depend on it.

pub mod audio;
pub mod client;
pub mod close;
pub mod envelope;
pub mod error;
pub mod repo;
pub mod schedule;
pub mod server;
pub mod socketio;
pub mod stream_manager;
pub mod timeline;
pub mod validate;

pub use client::{ClientEvent, JoinSession, Role};
pub use envelope::{
    decode_client_event, decode_client_frame, encode_client_frame, encode_server_frame,
    ClientFrame, DecodeFailure, RequestId, ServerFrame,
};
pub use error::{ErrorCode, ProtocolError};
pub use server::ServerEvent;
pub use timeline::Transport;

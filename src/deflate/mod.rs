//! permessage-deflate (RFC 7692) for `/ws`, around tungstenite, which has no extensions.
//!
//! - [`negotiate()`]: the handshake. We answer the first acceptable offer with
//!   `server_no_context_takeover; client_no_context_takeover`.
//! - [`codec`]: DEFLATE per message. [`Deflater`] compresses a broadcast once, in the
//!   engine, for every receiver that negotiated deflate; [`Inflater`] inflates one
//!   incoming message under the `MAX_FRAME_BYTES` cap.
//! - The read side is the frame guard (`ws/guard.rs`), which every client byte passes
//!   through before tungstenite: it inflates compressed client messages into plain frames.
//!
//! The write side needs no adapter: the writer sends a compressed message as a
//! `Message::Frame` with RSV1 set, which tungstenite writes as it is.

pub mod codec;
pub mod negotiate;

pub use codec::{Deflater, InflateError, Inflater};
pub use negotiate::{negotiate, Agreement};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

/// A compressed text message, ready for tungstenite to write: one final frame with RSV1
/// set (RFC 7692 6.1) carrying `payload` as [`Deflater`] made it.
pub fn compressed_text(payload: Bytes) -> Message {
    let header = FrameHeader {
        is_final: true,
        rsv1: true,
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload))
}

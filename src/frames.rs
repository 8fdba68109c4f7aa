//! Pre-encoded frames: what the engine hands to transports.
//!
//! A broadcast is encoded once into a [`Utf8Bytes`] (a reference-counted buffer); every
//! WebSocket recipient gets a clone of the handle, not of the bytes. SSE recipients get
//! the same JSON wrapped once per session in `id:`/`data:` lines. A large broadcast is
//! also compressed once (permessage-deflate) when a recipient negotiated it; each writer
//! picks the form its connection speaks.

use crate::outbox::Frame;
use bandsync_protocol::RequestId;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One frame queued for a WebSocket.
#[derive(Debug, Clone)]
pub enum WsFrame {
    /// An encoded envelope, possibly shared with other recipients.
    Text(Utf8Bytes),
    /// An encoded envelope with its permessage-deflate payload, both made once and shared:
    /// writers of connections that negotiated deflate send `deflated` (RSV1 set), the
    /// others `text`.
    Deflated { text: Utf8Bytes, deflated: Bytes },
    /// A broadcast already in its Socket.IO form (`42["type",{...}]`), converted once and
    /// shared by the broadcast's Socket.IO recipients; only their outboxes get it.
    Packet(Utf8Bytes),
    /// A binary audio frame (header + samples), made once per chunk and shared. Sent
    /// uncompressed: PCM barely deflates (see BENCHMARKS.md), so it is not worth the CPU.
    Binary(Bytes),
    /// A `heartbeat_response` whose `t2` is stamped by the writer at send time, so it is as
    /// close to the real send instant as the server can make it.
    Heartbeat {
        id: Option<RequestId>,
        t0: f64,
        t1: f64,
    },
}

impl Frame for WsFrame {
    fn byte_len(&self) -> usize {
        match self {
            // The plain size: an upper bound on what any recipient's writer sends.
            WsFrame::Text(text) | WsFrame::Deflated { text, .. } | WsFrame::Packet(text) => {
                text.len()
            }
            WsFrame::Binary(bytes) => bytes.len(),
            WsFrame::Heartbeat { .. } => 96,
        }
    }
}

impl WsFrame {
    /// `text`, with its compressed form when `deflated` is given.
    pub fn shared(text: Utf8Bytes, deflated: Option<Bytes>) -> Self {
        match deflated {
            Some(deflated) => WsFrame::Deflated { text, deflated },
            None => WsFrame::Text(text),
        }
    }
}

/// Wraps an encoded envelope as one SSE event: `id: <n>\ndata: <json>\n\n`.
///
/// The JSON never contains a raw newline (serde_json escapes them), so one `data:` line
/// always carries the whole envelope.
pub fn sse_event(id: u64, json: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(json.len() + 32);
    buf.put_slice(b"id: ");
    buf.put_slice(id.to_string().as_bytes());
    buf.put_slice(b"\ndata: ");
    buf.put_slice(json.as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// The SSE keep-alive: a comment line, ignored by `EventSource`.
pub const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_have_an_id_and_one_data_line() {
        let e = sse_event(42, r#"{"type":"room_stats"}"#);
        assert_eq!(&e[..], b"id: 42\ndata: {\"type\":\"room_stats\"}\n\n");
    }
}

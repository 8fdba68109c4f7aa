//! Pre-encoded frames: what the engine hands to transports.
//!
//! A broadcast is encoded once, and framed once: [`EncodedText`] holds the JSON (for SSE
//! and Socket.IO, which wrap it their own way) and the whole WebSocket frame, header and
//! payload, which is the same bytes for every `/ws` recipient because a server's frames
//! are unmasked. Every recipient gets a clone of the handles, not of the bytes. A large
//! broadcast is also compressed once (permessage-deflate) when a recipient negotiated it,
//! and framed once in that form too; each connection's writer picks the form it speaks.

use crate::clock::ServerClock;
use crate::outbox::{Frame, WireFrame};
use bandsync_protocol::server::HeartbeatResponse;
use bandsync_protocol::{encode_server_frame, RequestId, ServerEvent};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded envelope, and the same JSON as one whole WebSocket text frame.
///
/// Both sit behind one `Arc`: a broadcast clones it once per recipient, and one reference
/// count costs less to clone and drop than the two `Bytes` handles (each a call through
/// their vtable and an atomic), and keeps a queued frame small.
#[derive(Debug, Clone)]
pub struct EncodedText(Arc<Encoded>);

#[derive(Debug)]
struct Encoded {
    json: Utf8Bytes,
    wire: Bytes,
}

impl EncodedText {
    pub fn new(json: String) -> Self {
        let wire = frame(OpCode::Data(Data::Text), false, json.as_bytes());
        Self(Arc::new(Encoded {
            json: Utf8Bytes::from(json),
            wire,
        }))
    }

    /// The JSON envelope.
    pub fn json(&self) -> &Utf8Bytes {
        &self.0.json
    }

    /// The whole frame, header included.
    pub fn wire(&self) -> &Bytes {
        &self.0.wire
    }
}

/// One frame queued for a WebSocket.
#[derive(Debug, Clone)]
pub enum WsFrame {
    /// An encoded envelope, possibly shared with other recipients.
    Text(EncodedText),
    /// An encoded envelope with its permessage-deflate frame (RSV1 set), both made once and
    /// shared: connections that negotiated deflate get `deflated`, the others `text`.
    Deflated { text: EncodedText, deflated: Bytes },
    /// A broadcast already in its Socket.IO form (`42["type",{...}]`), converted once and
    /// shared by the broadcast's Socket.IO recipients; only their outboxes get it.
    Packet(Utf8Bytes),
    /// A whole binary audio frame (WebSocket header, audio header, samples), made once per
    /// chunk and shared. Sent uncompressed: PCM barely deflates (see BENCHMARKS.md), so it
    /// is not worth the CPU.
    Binary(Bytes),
    /// A `heartbeat_response` whose `t2` is stamped when it is written, so it is as close
    /// to the real send instant as the server can make it.
    Heartbeat {
        id: Option<RequestId>,
        t0: f64,
        t1: f64,
    },
    /// Bytes framed for this one connection, written as they are: what is left of a frame
    /// the socket took only part of (`message`), or a control frame (ping, pong, close).
    Raw { bytes: Bytes, message: bool },
}

impl Frame for WsFrame {
    fn byte_len(&self) -> usize {
        match self {
            // The plain size: an upper bound on what any recipient's writer sends.
            WsFrame::Text(text) | WsFrame::Deflated { text, .. } => text.json().len(),
            WsFrame::Packet(text) => text.len(),
            WsFrame::Binary(bytes) | WsFrame::Raw { bytes, .. } => bytes.len(),
            WsFrame::Heartbeat { .. } => 96,
        }
    }
}

/// What [`WireFrame::wire`] returns for a frame not yet prepared (never written as such).
static UNPREPARED: Bytes = Bytes::new();

impl WireFrame for WsFrame {
    fn prepare(&mut self, _deflate: bool, clock: &ServerClock) {
        let bytes = match self {
            WsFrame::Heartbeat { id, t0, t1 } => {
                let t2 = clock.now_ms();
                let reply = ServerEvent::HeartbeatResponse(HeartbeatResponse {
                    t0: *t0,
                    t1: *t1,
                    t2,
                });
                let json = encode_server_frame(&reply, id.as_ref(), t2);
                frame(OpCode::Data(Data::Text), false, json.as_bytes())
            }
            // Socket.IO packets go to Socket.IO outboxes only; framed here should one not.
            WsFrame::Packet(packet) => frame(OpCode::Data(Data::Text), false, packet.as_bytes()),
            _ => return,
        };
        *self = WsFrame::Raw {
            bytes,
            message: true,
        };
    }

    fn wire(&self, deflate: bool) -> &Bytes {
        match self {
            WsFrame::Deflated { deflated, .. } if deflate => deflated,
            WsFrame::Text(text) | WsFrame::Deflated { text, .. } => text.wire(),
            WsFrame::Binary(bytes) | WsFrame::Raw { bytes, .. } => bytes,
            WsFrame::Packet(_) | WsFrame::Heartbeat { .. } => &UNPREPARED,
        }
    }

    fn compressed(&self, deflate: bool) -> bool {
        deflate && matches!(self, WsFrame::Deflated { .. })
    }

    fn is_message(&self) -> bool {
        !matches!(self, WsFrame::Raw { message: false, .. })
    }

    fn rest(bytes: Bytes, message: bool) -> Self {
        WsFrame::Raw { bytes, message }
    }
}

impl WsFrame {
    /// An encoded envelope, with its compressed form when `deflated` (the raw DEFLATE
    /// payload) is given.
    pub fn shared(json: String, deflated: Option<Bytes>) -> Self {
        let text = EncodedText::new(json);
        match deflated {
            Some(deflated) => WsFrame::Deflated {
                text,
                deflated: frame(OpCode::Data(Data::Text), true, &deflated),
            },
            None => WsFrame::Text(text),
        }
    }

    /// A control frame (ping, pong, close) already framed for the wire.
    pub fn control(bytes: Bytes) -> Self {
        WsFrame::Raw {
            bytes,
            message: false,
        }
    }
}

/// One whole, final, unmasked frame: what a server sends (RFC 6455 section 5.2), built
/// with tungstenite's own header encoder.
fn frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        rsv1,
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut buf = Vec::with_capacity(header.len(len) + payload.len());
    header
        .format(len, &mut buf)
        .expect("writing into a Vec cannot fail");
    buf.extend_from_slice(payload);
    Bytes::from(buf)
}

/// A whole binary frame carrying `payload`.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    frame(OpCode::Data(Data::Binary), false, payload)
}

/// The payload of a whole unmasked frame made by this module.
pub fn payload_of(wire: &Bytes) -> Bytes {
    let header = match wire.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    wire.slice(header.min(wire.len())..)
}

/// An empty ping, the keep-alive the server sends every `SOCKET_PING_INTERVAL`: the same
/// two bytes every time, so none are made per ping.
pub static PING_FRAME: Bytes = Bytes::from_static(&[0x89, 0x00]);

/// A pong answering a ping with `payload` (at most 125 bytes, which the guard checked).
pub fn pong_frame(payload: &[u8]) -> Bytes {
    frame(OpCode::Control(Control::Pong), false, payload)
}

/// A close frame without a code: the answer to a peer's empty close.
pub fn close_frame_empty() -> Bytes {
    Bytes::from_static(&[0x88, 0x00])
}

/// A close frame with `code` and `reason` (at most 123 bytes, as a control frame allows).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OpCode::Control(Control::Close), false, &payload)
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

    /// Every outbox holds room for one frame inline (see `outbox::queue`), and every
    /// recipient of a broadcast holds a clone: the frame's size is paid per connection.
    /// 48 bytes: a `Bytes` handle and a flag, or a heartbeat's stamps.
    #[test]
    fn a_queued_frame_stays_small() {
        assert!(std::mem::size_of::<WsFrame>() <= 48);
    }

    #[test]
    fn frames_are_whole_unmasked_and_their_payload_is_recoverable() {
        let text = EncodedText::new("{\"type\":\"x\"}".into());
        assert_eq!(&text.wire()[..2], &[0x81, 12]);
        assert_eq!(&text.wire()[2..], text.json().as_bytes());
        let big = binary_frame(&[7u8; 300]);
        assert_eq!(&big[..4], &[0x82, 126, 1, 44]);
        assert_eq!(payload_of(&big), Bytes::from(vec![7u8; 300]));
        let huge = binary_frame(&vec![1u8; 70_000]);
        assert_eq!(huge[1], 127);
        assert_eq!(payload_of(&huge).len(), 70_000);
        let deflated = WsFrame::shared("{}".into(), Some(Bytes::from_static(b"ab")));
        assert_eq!(&deflated.wire(true)[..], &[0xc1, 2, b'a', b'b']);
        assert_eq!(&deflated.wire(false)[..], &[0x81, 2, b'{', b'}']);
        assert_eq!(
            PING_FRAME,
            frame(OpCode::Control(Control::Ping), false, &[])
        );
        assert_eq!(
            &close_frame(4001, "slow")[..],
            &[0x88, 6, 0x0f, 0xa1, b's', b'l', b'o', b'w']
        );
        assert_eq!(close_frame(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
    }

    #[test]
    fn a_heartbeat_reply_is_stamped_when_prepared() {
        let mut beat = WsFrame::Heartbeat {
            id: None,
            t0: 1.0,
            t1: 2.0,
        };
        assert!(beat.wire(false).is_empty());
        beat.prepare(false, &ServerClock::shared());
        let wire = beat.wire(false).clone();
        let json: serde_json::Value = serde_json::from_slice(&payload_of(&wire)).unwrap();
        assert_eq!(json["type"], "heartbeat_response");
        assert!(json["data"]["t2"].as_f64().unwrap() > 2.0);
    }

    #[test]
    fn sse_events_have_an_id_and_one_data_line() {
        let e = sse_event(42, r#"{"type":"room_stats"}"#);
        assert_eq!(&e[..], b"id: 42\ndata: {\"type\":\"room_stats\"}\n\n");
    }
}

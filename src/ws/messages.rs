//! Reading a `/ws` socket as messages. The socket's bytes go through the frame guard, which
//! parses, checks, assembles and inflates every client frame (`guard.rs`), and what it lets
//! through is taken as messages directly.
//!
//! The other WebSocket endpoints read through tungstenite behind the same guard
//! (`guarded_io.rs`). Here that would parse the guard's output a second time and keep
//! tungstenite's state, read buffer and two waker proxies, about 640 bytes in every
//! connection; `/ws` holds most of a server's connections, most of them idle.
//!
//! What tungstenite checked besides the framing is checked here the same way: text must be
//! UTF-8 (`Error::Utf8`), a close frame's payload is one code and a UTF-8 reason (one byte
//! alone is a protocol error), and nothing is read after a close. Answering pings and the
//! peer's close is the connection's (`connection.rs`).

use super::guard::{oversize_marker, Checked, FrameGuard};
use super::guarded_io::poll_read_into;
use bytes::{Bytes, BytesMut};
use prometheus::IntCounter;
use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::tcp::OwnedReadHalf;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// One message read, or why reading stopped.
pub type Read = Result<Message, WsError>;

/// The read half of a `/ws` socket, through the frame guard.
pub struct MessageReader {
    read: OwnedReadHalf,
    guard: FrameGuard,
    /// Read from the socket, not yet through the guard (at most a partial frame header or
    /// control frame plus one read). Empty, and unallocated, between messages.
    input: BytesMut,
    /// Through the guard, not yet handed on. Unallocated when empty.
    ready: VecDeque<Read>,
    /// End of stream, a failure or the peer's close: nothing more is read.
    done: bool,
    /// Counts compressed messages inflated.
    inflated: IntCounter,
}

impl MessageReader {
    /// Reads `read` through `guard`, starting with `early` (what was read past the
    /// handshake before this reader took the socket over).
    pub fn new(
        read: OwnedReadHalf,
        early: BytesMut,
        guard: FrameGuard,
        inflated: IntCounter,
    ) -> Self {
        Self {
            read,
            guard,
            input: early,
            ready: VecDeque::new(),
            done: false,
            inflated,
        }
    }

    /// When the message the client is sending now began, if it is partway through one.
    pub fn partial_since(&self) -> Option<Instant> {
        self.guard.partial_since()
    }

    /// The next message; `None` after the end of the stream, a failure or a close.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        loop {
            if let Some(read) = self.ready.pop_front() {
                if self.ready.is_empty() {
                    self.ready = VecDeque::new();
                }
                return Poll::Ready(Some(read));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let before = self.guard.inflated;
            let checked = self
                .guard
                .process(&mut self.input, &mut Messages(&mut self.ready));
            self.inflated.inc_by(self.guard.inflated - before);
            self.stop_after_close();
            if let Err(error) = checked {
                // What came through before the refusal (a ping, say) still goes first.
                let error = io::Error::new(io::ErrorKind::InvalidData, error);
                self.ready.push_back(Err(WsError::Io(error)));
                self.done = true;
                continue;
            }
            if !self.ready.is_empty() {
                continue;
            }
            match poll_read_into(&mut self.read, cx, &mut self.input) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    self.ready.push_back(Err(WsError::Io(error)));
                    self.done = true;
                }
                // The end of the stream; an incomplete frame before it is dropped.
                Poll::Ready(Ok(0)) => self.done = true,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    /// Nothing after the peer's close frame is read (RFC 6455 5.5.1).
    fn stop_after_close(&mut self) {
        let close = self
            .ready
            .iter()
            .position(|read| matches!(read, Ok(Message::Close(_))));
        if let Some(close) = close {
            self.ready.truncate(close + 1);
            self.done = true;
        }
    }
}

/// The guard's output taken as messages.
struct Messages<'a>(&'a mut VecDeque<Read>);

impl Checked for Messages<'_> {
    fn control(&mut self, opcode: u8, _: &[u8], payload: &[u8]) {
        let payload = Bytes::copy_from_slice(payload);
        self.0.push_back(match opcode {
            OP_CLOSE => close(&payload),
            OP_PING => Ok(Message::Ping(payload)),
            // The guard lets through no other control frame than a pong.
            _ => Ok(Message::Pong(payload)),
        });
    }

    fn message(&mut self, opcode: u8, payload: &[u8]) {
        let payload = Bytes::copy_from_slice(payload);
        self.0.push_back(match opcode {
            OP_TEXT => Utf8Bytes::try_from(payload)
                .map(Message::Text)
                .map_err(|e| WsError::Utf8(e.to_string())),
            _ => Ok(Message::Binary(payload)),
        });
    }

    fn oversize(&mut self, compressed: bool, size: u64) {
        let marker = oversize_marker(compressed, size);
        self.0.push_back(Ok(Message::Pong(Bytes::from(marker))));
    }
}

/// A close frame's payload: nothing, or a code and a UTF-8 reason.
fn close(payload: &Bytes) -> Read {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(WsError::Protocol(ProtocolError::InvalidCloseSequence)),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = Utf8Bytes::try_from(payload.slice(2..))
                .map_err(|e| WsError::Utf8(e.to_string()))?;
            Ok(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason,
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(take: impl FnOnce(&mut Messages<'_>)) -> Vec<Read> {
        let mut ready = VecDeque::new();
        take(&mut Messages(&mut ready));
        ready.into_iter().collect()
    }

    #[test]
    fn text_must_be_utf8_and_binary_need_not() {
        let read = messages(|m| {
            m.message(OP_TEXT, "héllo".as_bytes());
            m.message(OP_TEXT, &[0xff, 0xfe]);
            m.message(0x2, &[0xff, 0xfe]);
        });
        assert!(matches!(&read[0], Ok(Message::Text(t)) if t.as_str() == "héllo"));
        assert!(matches!(&read[1], Err(WsError::Utf8(_))));
        assert!(matches!(&read[2], Ok(Message::Binary(b)) if b[..] == [0xff, 0xfe]));
    }

    #[test]
    fn a_masked_ping_through_the_guard_is_a_ping_with_its_payload() {
        use super::super::budget::PartialBudget;
        use super::super::guard::GuardLimits;
        let mask = [1, 2, 3, 4];
        let mut frame = vec![0x89, 0x80 | 5];
        frame.extend_from_slice(&mask);
        frame.extend(b"ping!".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        let limits = GuardLimits {
            text: 1024,
            hard: 1024,
            deflate: false,
        };
        let mut guard = FrameGuard::new(limits, std::sync::Arc::new(PartialBudget::new(1 << 20)));
        let mut ready = VecDeque::new();
        let mut input = BytesMut::from(&frame[..]);
        guard
            .process(&mut input, &mut Messages(&mut ready))
            .unwrap();
        assert!(input.is_empty());
        assert!(matches!(ready.front(), Some(Ok(Message::Ping(p))) if &p[..] == b"ping!"));
    }

    #[test]
    fn a_close_payload_is_a_code_and_a_utf8_reason() {
        assert!(matches!(close(&Bytes::new()), Ok(Message::Close(None))));
        assert!(matches!(
            close(&Bytes::from_static(&[0x03])),
            Err(WsError::Protocol(ProtocolError::InvalidCloseSequence))
        ));
        assert!(matches!(
            close(&Bytes::from_static(&[0x03, 0xe8, 0xff])),
            Err(WsError::Utf8(_))
        ));
        let Ok(Message::Close(Some(frame))) = close(&Bytes::from_static(b"\x03\xe8bye")) else {
            panic!("a close with a code and a reason");
        };
        assert_eq!(u16::from(frame.code), 1000);
        assert_eq!(frame.reason.as_str(), "bye");
    }

    #[test]
    fn an_oversized_message_is_the_marker_pong_the_reader_knows() {
        let read = messages(|m| m.oversize(true, 99));
        let Ok(Message::Pong(payload)) = &read[0] else {
            panic!("a marker pong");
        };
        assert_eq!(
            super::super::guard::parse_oversize_marker(payload),
            Some((true, 99))
        );
    }
}

//! The frame guard: every byte a client sends passes through it before it is read as
//! messages (by `messages` on `/ws`, by tungstenite on the other endpoints).
//!
//! tungstenite assembles messages itself and knows no extensions, so on its own it would
//! hold a half-sent message of up to `MAX_FRAME_BYTES` per socket for as long as the client
//! cares to dribble it (finding: 500 sockets held 536 MB), refuse RSV1 frames, and drop the
//! TCP connection on a framing error without a close frame. So the guard parses the
//! client's frames first and hands tungstenite only whole, final, checked messages:
//!
//! - **Assembly with bounds.** A data message (all its fragments) is assembled here: text
//!   up to `MAX_MESSAGE_BYTES`, binary (audio) up to `MAX_FRAME_BYTES`. A text message
//!   over its limit but within `MAX_FRAME_BYTES` is discarded as it arrives (nothing of it
//!   is kept) and reported, at its end, by an [`OVERSIZE_MARKER`] pong in its place, so the reader
//!   answers `INVALID_MESSAGE` and the socket stays open, as the contract says. Past
//!   `MAX_FRAME_BYTES` the socket is closed (1009).
//! - **permessage-deflate.** A compressed message (RSV1 on its first frame, RFC 7692) is
//!   inflated under the same bounds (its compressed bytes count too) and handed on as a
//!   plain frame.
//! - **A budget.** Every byte held in assembly is also taken from the server-wide
//!   [`PartialBudget`]; a connection that cannot get more fails with [`GuardError::Busy`]
//!   (close 1013).
//! - **A deadline.** [`FrameGuard::partial_since`] tells when the message in assembly began,
//!   so the connection can close one that takes longer than `MESSAGE_TIMEOUT_MS` (4003).
//! - **Framing rules** (RFC 6455 5.2-5.5): client frames must be masked; reserved opcodes,
//!   RSV2/RSV3, RSV1 without deflate (or on control and continuation frames), fragmented or
//!   oversized control frames, and continuations out of place are
//!   [`GuardError::Protocol`], which the connection answers with close 1002.
//!
//! Control frames are passed on at once, even between the fragments of a message, as RFC
//! 6455 allows; messages when they are whole ([`Checked`]). For tungstenite they are
//! frames again, under the all-zero mask: it insists that client frames are masked, and
//! XOR with zero changes nothing.
//!
//! Pure and synchronous: [`super::guarded_io::GuardedStream`] and `/ws`'s message reader
//! feed it what they read; tests and the fuzz targets feed it anything.

use super::budget::PartialBudget;
use crate::deflate::codec::{InflateError, Inflater};
use bytes::{Buf, BufMut, BytesMut};
use std::sync::Arc;
use std::time::Instant;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_PONG: u8 = 0xA;
/// RFC 6455 5.5: control frames carry at most 125 bytes.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The start of the payload of the pong the guard puts in place of a discarded oversized
/// text message. It is followed by `p` (plain) or `c` (compressed) and the size in decimal
/// (for a compressed message, the size at which it was refused). A client could send such
/// a pong itself; all it would get is an `INVALID_MESSAGE` error of its own.
pub const OVERSIZE_MARKER: &[u8] = b"\0bandsync:oversize:";

/// Why the guard refused a client's stream. The connection answers each with an `error`
/// event and a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A frame or message over `MAX_FRAME_BYTES`. Close 1009.
    #[error("frame or message of {size} bytes exceeds MAX_FRAME_BYTES ({limit})")]
    TooBig { size: u64, limit: usize },
    /// A compressed message inflating past `MAX_FRAME_BYTES` (a deflate bomb). Close 1009.
    #[error("compressed message inflates beyond MAX_FRAME_BYTES ({limit} bytes)")]
    InflatedTooBig { limit: usize },
    /// A compressed message that is not DEFLATE data. Close 1007.
    #[error("compressed message is not valid DEFLATE data")]
    Corrupt,
    /// The frames broke RFC 6455 or RFC 7692. Close 1002.
    #[error("WebSocket framing violated: {0}")]
    Protocol(&'static str),
    /// The server-wide budget for partially received messages is spent. Close 1013.
    #[error("the server is holding too many partially received messages; try again later")]
    Busy,
}

/// The guard's limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Largest text message handled (`MAX_MESSAGE_BYTES`); larger ones are discarded.
    pub text: usize,
    /// Largest frame or message of any kind (`MAX_FRAME_BYTES`); larger ones close 1009.
    pub hard: usize,
    /// permessage-deflate was negotiated: RSV1 marks compressed messages.
    pub deflate: bool,
}

#[derive(Clone, Copy)]
enum State {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// This many payload bytes of a data frame are still to come.
    Payload {
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
        fin: bool,
    },
}

/// The data message in assembly.
struct Assembly {
    opcode: u8,
    compressed: bool,
    /// Payload bytes declared by its frames so far (compressed bytes, if compressed).
    wire_len: u64,
    /// The plain payload so far (unused when compressed: the inflater holds the output).
    body: BytesMut,
    /// Over its limit: the rest is dropped as it arrives.
    discarding: bool,
    started: Instant,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    rsv1: bool,
    /// RSV2 or RSV3: no negotiated extension defines them.
    rsv23: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Bytes the header took on the wire.
    size: usize,
}

/// Parses a header at the start of `buf`, or `None` if more bytes are needed.
fn parse_header(buf: &[u8]) -> Option<Header> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut size) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let key: [u8; 4] = buf.get(size..size + 4)?.try_into().ok()?;
        size += 4;
        Some(key)
    } else {
        None
    };
    Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv23: b0 & 0x30 != 0,
        opcode: b0 & 0x0f,
        mask,
        len,
        size,
    })
}

/// Appends a final, zero-masked frame carrying `payload`.
fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 14);
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(0x80 | len as u8),
        126..=0xffff => {
            out.put_u8(0x80 | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(0x80 | 127);
            out.put_u64(len as u64);
        }
    }
    out.put_slice(&[0; 4]);
    out.put_slice(payload);
}

/// The payload of the pong that stands for a discarded oversized text message.
pub fn oversize_marker(compressed: bool, size: u64) -> Vec<u8> {
    let mut payload = OVERSIZE_MARKER.to_vec();
    payload.push(if compressed { b'c' } else { b'p' });
    payload.extend_from_slice(size.to_string().as_bytes());
    payload
}

/// Where the guard puts what it lets through, in order.
pub trait Checked {
    /// A control frame, whole and checked: the frame as it came, and its payload unmasked.
    fn control(&mut self, opcode: u8, frame: &[u8], payload: &[u8]);
    /// A data message, whole, unmasked and inflated.
    fn message(&mut self, opcode: u8, payload: &[u8]);
    /// A text message over its limit, discarded: `size` bytes (compressed: the size at
    /// which it was refused).
    fn oversize(&mut self, compressed: bool, size: u64);
}

/// The checked stream as frames again, for tungstenite (`guarded_io`): messages under the
/// all-zero mask, control frames as they came, an oversized message as a marker pong.
impl Checked for BytesMut {
    fn control(&mut self, _: u8, frame: &[u8], _: &[u8]) {
        self.extend_from_slice(frame);
    }

    fn message(&mut self, opcode: u8, payload: &[u8]) {
        put_frame(self, opcode, payload);
    }

    fn oversize(&mut self, compressed: bool, size: u64) {
        put_frame(self, OP_PONG, &oversize_marker(compressed, size));
    }
}

/// Removes a client's mask from `bytes`, which start `offset` bytes into the payload.
fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) % 4];
    }
}

/// Reads an [`OVERSIZE_MARKER`] pong's payload back: (compressed, size).
pub fn parse_oversize_marker(payload: &[u8]) -> Option<(bool, u64)> {
    let rest = payload.strip_prefix(OVERSIZE_MARKER)?;
    let (&kind, digits) = rest.split_first()?;
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((kind == b'c', size))
}

/// The client-to-server frame guard of one connection.
pub struct FrameGuard {
    state: State,
    /// Boxed: it exists only while a message is arriving, and an idle connection would
    /// otherwise carry its 64 bytes.
    message: Option<Box<Assembly>>,
    /// Made at the first compressed message and kept: boxed, so a connection that never
    /// compresses does not carry its 72 bytes.
    inflater: Option<Box<Inflater>>,
    limits: GuardLimits,
    budget: Arc<PartialBudget>,
    /// Bytes this connection has taken from the budget.
    reserved: usize,
    /// Compressed messages inflated so far.
    pub inflated: u64,
}

impl FrameGuard {
    pub fn new(limits: GuardLimits, budget: Arc<PartialBudget>) -> Self {
        Self {
            state: State::Header,
            message: None,
            inflater: None,
            limits,
            budget,
            reserved: 0,
            inflated: 0,
        }
    }

    /// When the message now in assembly began, if one is.
    pub fn partial_since(&self) -> Option<Instant> {
        self.message.as_ref().map(|m| m.started)
    }

    /// Consumes what it can of `input` (leaving an incomplete header or control frame
    /// there) and appends the checked stream to `out`. After an error the guard must not be
    /// used again.
    pub fn process(
        &mut self,
        input: &mut BytesMut,
        out: &mut impl Checked,
    ) -> Result<(), GuardError> {
        loop {
            match self.state {
                State::Header => {
                    let Some(header) = parse_header(input) else {
                        return Ok(());
                    };
                    if !self.start_frame(&header, input, out)? {
                        return Ok(());
                    }
                }
                State::Payload {
                    remaining,
                    mask,
                    offset,
                    fin,
                } => {
                    if input.is_empty() && remaining > 0 {
                        return Ok(());
                    }
                    let n = remaining.min(input.len() as u64) as usize;
                    let mut chunk = input.split_to(n);
                    unmask(&mut chunk, mask, offset);
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Header
                    } else {
                        State::Payload {
                            remaining,
                            mask,
                            offset: offset + n,
                            fin,
                        }
                    };
                    self.take_payload(&chunk)?;
                    if remaining == 0 && fin {
                        self.finish_message(out)?;
                    }
                }
            }
        }
    }

    /// Checks the frame whose header starts `input` and consumes its header (a control
    /// frame: the whole frame). Returns false when more bytes are needed first.
    fn start_frame(
        &mut self,
        h: &Header,
        input: &mut BytesMut,
        out: &mut impl Checked,
    ) -> Result<bool, GuardError> {
        use GuardError::Protocol;
        if h.rsv23 {
            return Err(Protocol("RSV2 or RSV3 set"));
        }
        let Some(mask) = h.mask else {
            return Err(Protocol("client frames must be masked"));
        };
        if h.rsv1 && !self.limits.deflate {
            return Err(Protocol(
                "RSV1 set, but permessage-deflate was not negotiated",
            ));
        }
        match h.opcode {
            0x8..=0xA => {
                if h.rsv1 {
                    return Err(Protocol("RSV1 set on a control frame"));
                }
                if !h.fin {
                    return Err(Protocol("fragmented control frame"));
                }
                if h.len > MAX_CONTROL_PAYLOAD {
                    return Err(Protocol("control frame over 125 bytes"));
                }
                let total = h.size + h.len as usize;
                if input.len() < total {
                    return Ok(false);
                }
                // Whole and valid: the reader answers pings and closes.
                let mut payload = [0u8; MAX_CONTROL_PAYLOAD as usize];
                let payload = &mut payload[..h.len as usize];
                payload.copy_from_slice(&input[h.size..total]);
                unmask(payload, mask, 0);
                out.control(h.opcode, &input[..total], payload);
                input.advance(total);
                return Ok(true);
            }
            OP_CONTINUATION => {
                if h.rsv1 {
                    return Err(Protocol("RSV1 set on a continuation frame"));
                }
                let Some(message) = self.message.as_mut() else {
                    return Err(Protocol("continuation frame with no message to continue"));
                };
                message.wire_len = message.wire_len.saturating_add(h.len);
            }
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(Protocol("a new message began inside a fragmented one"));
                }
                let compressed = h.rsv1;
                if compressed {
                    let keep = self.limit_for(h.opcode);
                    let hard = self.limits.hard;
                    self.inflater
                        .get_or_insert_with(|| Box::new(Inflater::new(hard)))
                        .begin_with(keep, hard);
                }
                self.message = Some(Box::new(Assembly {
                    opcode: h.opcode,
                    compressed,
                    wire_len: h.len,
                    body: BytesMut::new(),
                    discarding: false,
                    started: Instant::now(),
                }));
            }
            _ => return Err(Protocol("reserved opcode")),
        }
        let limit = self.limit_for(h.opcode);
        let hard = self.limits.hard;
        let message = self.message.as_mut().expect("a data frame has a message");
        if message.wire_len > hard as u64 {
            return Err(GuardError::TooBig {
                size: message.wire_len,
                limit: hard,
            });
        }
        if !message.compressed && !message.discarding && message.wire_len > limit as u64 {
            // Over MAX_MESSAGE_BYTES: keep none of it, read on, and say so at its end
            // (unless it grows past MAX_FRAME_BYTES first, which closes the socket).
            message.discarding = true;
            message.body = BytesMut::new();
            self.account()?;
        }
        input.advance(h.size);
        self.state = State::Payload {
            remaining: h.len,
            mask: h.mask.expect("checked above"),
            offset: 0,
            fin: h.fin,
        };
        Ok(true)
    }

    /// The largest message of this opcode's kind that is handled rather than refused.
    fn limit_for(&self, opcode: u8) -> usize {
        let message_opcode = match (&self.message, opcode) {
            (Some(m), OP_CONTINUATION) => m.opcode,
            _ => opcode,
        };
        if message_opcode == OP_TEXT {
            self.limits.text
        } else {
            self.limits.hard
        }
    }

    /// The inflater of the compressed message in assembly (made when it began).
    fn inflater_mut(&mut self) -> &mut Inflater {
        self.inflater
            .as_mut()
            .expect("a compressed message's inflater is made when it begins")
    }

    /// Adds unmasked payload bytes to the message in assembly.
    fn take_payload(&mut self, chunk: &[u8]) -> Result<(), GuardError> {
        let message = self.message.as_mut().expect("payload belongs to a message");
        if message.compressed {
            self.inflater_mut().push(chunk).map_err(|e| match e {
                InflateError::TooBig { limit } => GuardError::InflatedTooBig { limit },
                _ => GuardError::Corrupt,
            })?;
            // Past `MAX_MESSAGE_BYTES` the inflater only counts, so that a bomb is still
            // recognised as one (1009); the marker waits for the message's end.
        } else if !message.discarding {
            message.body.extend_from_slice(chunk);
        }
        self.account()
    }

    /// Hands the finished message on (or, discarded, what stands for it).
    fn finish_message(&mut self, out: &mut impl Checked) -> Result<(), GuardError> {
        let message = self.message.take().expect("a final frame ends a message");
        if message.compressed {
            let inflater = self.inflater_mut();
            let inflated = inflater.finish().map_err(|e| match e {
                InflateError::TooBig { limit } => GuardError::InflatedTooBig { limit },
                _ => GuardError::Corrupt,
            });
            inflater.abandon();
            let overflowed = inflater.overflowed();
            let inflated = inflated?;
            if overflowed {
                out.oversize(true, self.limits.text as u64 + 1);
            } else {
                out.message(message.opcode, &inflated);
                self.inflated += 1;
            }
        } else if message.discarding {
            out.oversize(false, message.wire_len);
        } else {
            out.message(message.opcode, &message.body);
        }
        drop(message);
        self.account()
    }

    /// Brings this connection's share of the budget in line with what it holds now.
    fn account(&mut self) -> Result<(), GuardError> {
        let held = match &self.message {
            None => 0,
            Some(m) if m.compressed => self.inflater.as_ref().map_or(0, |i| i.held()),
            Some(m) => m.body.capacity(),
        };
        if held > self.reserved {
            if !self.budget.try_reserve(held - self.reserved) {
                return Err(GuardError::Busy);
            }
        } else {
            self.budget.release(self.reserved - held);
        }
        self.reserved = held;
        Ok(())
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
pub(crate) mod tests;

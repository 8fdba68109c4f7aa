//! Rewrites the client's frame stream so tungstenite, which knows no extensions, reads
//! compressed messages as plain ones.
//!
//! Input is the raw bytes from the client; output is an equivalent byte stream in which
//! every compressed message (RSV1 on its first frame, RFC 7692 6.1) is replaced by one
//! uncompressed, final, masked frame carrying the inflated payload. Everything else
//! (uncompressed data frames, control frames, their fragments) is copied through
//! unchanged and streamed, never buffered whole, so tungstenite still applies its own
//! frame and message limits to them. Control frames that arrive between the fragments of
//! a compressed message are passed on at once: they come out before the message they
//! interrupted, as they would without compression.
//!
//! The rewritten frame is masked with the all-zero key: tungstenite insists that client
//! frames are masked, and XOR with zero leaves the payload as it is.

use super::codec::{InflateError, Inflater};
use bytes::{Buf, BufMut, BytesMut};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

enum State {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Copying this many payload bytes of a frame we do not touch.
    Forward { remaining: u64 },
    /// Unmasking and inflating this many payload bytes of a compressed message's frame.
    Inflate {
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
        fin: bool,
    },
}

/// The compressed message being collected.
struct Compressed {
    opcode: u8,
    /// Compressed bytes so far, over all its frames.
    wire_len: u64,
}

/// The client-to-server frame rewriter. Pure and synchronous: [`super::InflateStream`]
/// feeds it what it reads, the fuzz-style tests feed it anything.
pub struct Rewriter {
    state: State,
    message: Option<Compressed>,
    /// An uncompressed data message is between its fragments.
    plain_fragmented: bool,
    inflater: Inflater,
    limit: usize,
    /// Compressed messages inflated so far.
    pub inflated: u64,
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

/// Appends a final, zero-masked frame header for a `len`-byte payload.
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
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
}

impl Rewriter {
    /// A rewriter refusing compressed messages that inflate beyond `limit` bytes (or whose
    /// compressed frames alone exceed it).
    pub fn new(limit: usize) -> Self {
        Self {
            state: State::Header,
            message: None,
            plain_fragmented: false,
            inflater: Inflater::new(limit),
            limit,
            inflated: 0,
        }
    }

    /// Consumes what it can of `input` (leaving an incomplete header there) and appends
    /// the rewritten stream to `out`. After an error the rewriter must not be used again.
    pub fn process(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        loop {
            match &mut self.state {
                State::Header => {
                    let Some(header) = parse_header(input) else {
                        return Ok(());
                    };
                    self.start_frame(&header, input, out)?;
                }
                State::Forward { remaining } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..n]);
                    input.advance(n);
                    *remaining -= n as u64;
                    if *remaining > 0 {
                        return Ok(());
                    }
                    self.state = State::Header;
                }
                State::Inflate {
                    remaining,
                    mask,
                    offset,
                    fin,
                } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    let mut chunk = input.split_to(n);
                    for (i, byte) in chunk.iter_mut().enumerate() {
                        *byte ^= mask[(*offset + i) % 4];
                    }
                    *offset += n;
                    *remaining -= n as u64;
                    self.inflater.push(&chunk)?;
                    if *remaining > 0 {
                        return Ok(());
                    }
                    if *fin {
                        let opcode = self.message.take().map_or(OP_TEXT, |m| m.opcode);
                        let payload = self.inflater.finish()?;
                        put_header(out, opcode, payload.len());
                        out.extend_from_slice(&payload);
                        self.inflated += 1;
                    }
                    self.state = State::Header;
                }
            }
        }
    }

    /// Decides what to do with the frame whose header starts `input`.
    fn start_frame(
        &mut self,
        h: &Header,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        let control = h.opcode & 0x08 != 0;
        let data = h.opcode == OP_TEXT || h.opcode == OP_BINARY;
        let continues_compressed = h.opcode == OP_CONTINUATION && self.message.is_some();
        if h.rsv23 {
            return Err(InflateError::Protocol("RSV2 or RSV3 set"));
        }
        if h.rsv1 && control {
            return Err(InflateError::Protocol("RSV1 set on a control frame"));
        }
        if h.rsv1 && h.opcode == OP_CONTINUATION {
            return Err(InflateError::Protocol("RSV1 set on a continuation frame"));
        }
        if data && self.message.is_some() {
            return Err(InflateError::Protocol(
                "a new message began inside a fragmented compressed one",
            ));
        }
        let compressed = (h.rsv1 && data) || continues_compressed;
        if !compressed {
            // Not ours: tungstenite judges it (and refuses RSV1 on unknown opcodes).
            if data {
                self.plain_fragmented = !h.fin;
            } else if h.opcode == OP_CONTINUATION && h.fin {
                self.plain_fragmented = false;
            }
            out.extend_from_slice(&input[..h.size]);
            input.advance(h.size);
            self.state = State::Forward { remaining: h.len };
            return Ok(());
        }
        if self.plain_fragmented {
            return Err(InflateError::Protocol(
                "a compressed message began inside a fragmented one",
            ));
        }
        let Some(mask) = h.mask else {
            return Err(InflateError::Protocol("client frames must be masked"));
        };
        let wire_len = match &self.message {
            Some(m) => m.wire_len.saturating_add(h.len),
            None => h.len,
        };
        if wire_len > self.limit as u64 {
            return Err(InflateError::TooBig { limit: self.limit });
        }
        match &mut self.message {
            Some(m) => m.wire_len = wire_len,
            None => {
                self.inflater.begin();
                self.message = Some(Compressed {
                    opcode: h.opcode,
                    wire_len,
                });
            }
        }
        input.advance(h.size);
        self.state = State::Inflate {
            remaining: h.len,
            mask,
            offset: 0,
            fin: h.fin,
        };
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ws::deflate::codec::Deflater;
    use flate2::Compression;

    /// A client frame: FIN, RSV1, opcode, masked with `mask`.
    pub(crate) fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = BytesMut::new();
        out.put_u8(u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode);
        match payload.len() {
            n @ 0..=125 => out.put_u8(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.put_u8(0x80 | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(0x80 | 127);
                out.put_u64(n as u64);
            }
        }
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out.to_vec()
    }

    pub(crate) fn deflated(message: &[u8]) -> Vec<u8> {
        Deflater::new(Compression::default(), 0).deflate_always(message)
    }

    /// Decoded output frames: (fin, rsv1, opcode, unmasked payload).
    fn frames(mut bytes: &[u8]) -> Vec<(bool, bool, u8, Vec<u8>)> {
        let mut found = Vec::new();
        while let Some(h) = parse_header(bytes) {
            let end = h.size + h.len as usize;
            let mask = h.mask.unwrap_or([0; 4]);
            let payload = bytes[h.size..end]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            found.push((h.fin, h.rsv1, h.opcode, payload));
            bytes = &bytes[end..];
        }
        assert!(bytes.is_empty(), "trailing bytes in the output");
        found
    }

    fn run(input: &[u8], limit: usize) -> (Result<(), InflateError>, Vec<u8>) {
        let mut r = Rewriter::new(limit);
        let mut inp = BytesMut::from(input);
        let mut out = BytesMut::new();
        let result = r.process(&mut inp, &mut out);
        (result, out.to_vec())
    }

    #[test]
    fn a_compressed_text_frame_becomes_a_plain_masked_one() {
        let text = br#"{"type":"update_message","data":{"text":"hello hello hello"}}"#;
        let (result, out) = run(&client_frame(true, true, OP_TEXT, &deflated(text)), 1 << 20);
        result.unwrap();
        assert_eq!(out[1] & 0x80, 0x80, "masked");
        assert_eq!(frames(&out), vec![(true, false, OP_TEXT, text.to_vec())]);
    }

    #[test]
    fn plain_frames_and_control_frames_pass_through_byte_for_byte() {
        let mut input = client_frame(true, false, OP_TEXT, b"plain");
        input.extend(client_frame(true, false, 0x9, b"ping"));
        input.extend(client_frame(false, false, OP_BINARY, b"part 1"));
        input.extend(client_frame(true, false, OP_CONTINUATION, b"part 2"));
        let (result, out) = run(&input, 1 << 20);
        result.unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn fragments_with_interleaved_pings_are_reassembled_after_the_pings() {
        let message = "fragmented and compressed ".repeat(200);
        let payload = deflated(message.as_bytes());
        let (a, rest) = payload.split_at(payload.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut input = client_frame(false, true, OP_TEXT, a);
        input.extend(client_frame(true, false, 0x9, b"p1"));
        input.extend(client_frame(false, false, OP_CONTINUATION, b));
        input.extend(client_frame(true, false, 0xA, b"p2"));
        input.extend(client_frame(true, false, OP_CONTINUATION, c));
        input.extend(client_frame(true, false, OP_TEXT, b"after"));
        // Fed one byte at a time: partial headers and payloads everywhere.
        let mut r = Rewriter::new(1 << 20);
        let (mut inp, mut out) = (BytesMut::new(), BytesMut::new());
        for byte in input {
            inp.put_u8(byte);
            r.process(&mut inp, &mut out).unwrap();
        }
        assert_eq!(
            frames(&out),
            vec![
                (true, false, 0x9, b"p1".to_vec()),
                (true, false, 0xA, b"p2".to_vec()),
                (true, false, OP_TEXT, message.into_bytes()),
                (true, false, OP_TEXT, b"after".to_vec()),
            ]
        );
    }

    #[test]
    fn an_empty_compressed_message_and_empty_fragments_work() {
        let mut input = client_frame(true, true, OP_BINARY, &[0x00]);
        input.extend(client_frame(false, true, OP_TEXT, &[]));
        input.extend(client_frame(true, false, OP_CONTINUATION, &deflated(b"x")));
        let (result, out) = run(&input, 100);
        result.unwrap();
        assert_eq!(
            frames(&out),
            vec![
                (true, false, OP_BINARY, vec![]),
                (true, false, OP_TEXT, b"x".to_vec())
            ]
        );
    }

    #[test]
    fn a_bomb_is_refused_at_the_cap() {
        let bomb = deflated(&vec![b'{'; 2 << 20]);
        assert!(bomb.len() < 4096);
        let (result, out) = run(&client_frame(true, true, OP_TEXT, &bomb), 1 << 20);
        assert_eq!(result, Err(InflateError::TooBig { limit: 1 << 20 }));
        assert!(out.is_empty());
    }

    #[test]
    fn compressed_frames_over_the_cap_are_refused_before_inflating() {
        // Noise deflates to stored blocks: two valid halves, 120 bytes on the wire.
        let noise: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
        let payload = deflated(&noise);
        let mut input = client_frame(false, true, OP_TEXT, &payload[..60]);
        input.extend(client_frame(
            true,
            false,
            OP_CONTINUATION,
            &payload[60..120],
        ));
        assert_eq!(run(&input, 100).0, Err(InflateError::TooBig { limit: 100 }));
    }

    #[test]
    fn corrupt_data_and_misplaced_rsv1_are_refused() {
        let corrupt = client_frame(true, true, OP_TEXT, &[0xff, 0xff, 0xff]);
        assert_eq!(run(&corrupt, 100).0, Err(InflateError::Corrupt));
        let ping = client_frame(true, true, 0x9, b"");
        assert!(matches!(run(&ping, 100).0, Err(InflateError::Protocol(_))));
        let mut rsv2 = client_frame(true, true, OP_TEXT, &[0x00]);
        rsv2[0] |= 0x20;
        assert!(matches!(run(&rsv2, 100).0, Err(InflateError::Protocol(_))));
        let mut cont = client_frame(false, true, OP_TEXT, &[]);
        cont.extend(client_frame(true, true, OP_CONTINUATION, &[0x00]));
        assert!(matches!(run(&cont, 100).0, Err(InflateError::Protocol(_))));
        let mut nested = client_frame(false, true, OP_TEXT, &[]);
        nested.extend(client_frame(true, true, OP_TEXT, &[0x00]));
        assert!(matches!(
            run(&nested, 100).0,
            Err(InflateError::Protocol(_))
        ));
        let mut inside_plain = client_frame(false, false, OP_TEXT, b"a");
        inside_plain.extend(client_frame(true, true, OP_TEXT, &[0x00]));
        assert!(matches!(
            run(&inside_plain, 100).0,
            Err(InflateError::Protocol(_))
        ));
        let mut unmasked = client_frame(true, true, OP_TEXT, &[0x00]);
        unmasked[1] &= 0x7f;
        unmasked.drain(2..6);
        assert!(matches!(
            run(&unmasked, 100).0,
            Err(InflateError::Protocol(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic_and_output_stays_bounded() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7692);
        let valid = client_frame(true, true, OP_TEXT, &deflated(&[b'a'; 3000]));
        for round in 0..3000 {
            let len = rng.random_range(0..512);
            let mut input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if round % 3 == 0 {
                // Mutate a valid compressed frame instead: reaches deeper states.
                input = valid.clone();
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(0..input.len());
                    input[i] = rng.random();
                }
            }
            let mut r = Rewriter::new(4096);
            let (mut out, mut inp) = (BytesMut::new(), BytesMut::new());
            for chunk in input.chunks(rng.random_range(1..64)) {
                inp.extend_from_slice(chunk);
                if r.process(&mut inp, &mut out).is_err() {
                    break;
                }
                // Forwarded bytes, plus at most the cap (and a header) per compressed
                // frame, each of which takes at least 6 bytes of input.
                assert!(out.len() <= input.len() + (input.len() / 6 + 1) * (4096 + 14));
            }
        }
    }
}

//! The DEFLATE side of permessage-deflate (RFC 7692 section 7.2): compress one message
//! for every receiver, inflate one message under a hard size cap.
//!
//! Both directions run without context takeover: every message is a fresh DEFLATE stream
//! whose back-references stay inside the message. That is what lets the engine compress a
//! broadcast once and send the same bytes to every receiver, and what lets a connection
//! inflate without keeping a 32 KiB window between messages.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with. RFC 7692 7.2.1: the sender removes it,
/// the receiver appends it again before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// First growth step of an output buffer; later steps double it.
const MIN_GROWTH: usize = 4 * 1024;

/// The level the server compresses at: 1, the fastest. On our JSON it comes within 1-10 %
/// of the default level 6's size for 1.5-9x less CPU (`cargo bench --bench deflate`), and
/// the compressor runs on the engine thread, which must keep 16 ms tick deadlines: a
/// 1000-member snapshot (70 KB) takes about 0.1 ms at level 1 and 0.8 ms at level 6.
pub const LEVEL: Compression = Compression::fast();

/// Compresses whole messages, each as its own DEFLATE stream (`server_no_context_takeover`).
///
/// One per engine thread: the compressor's state (a few hundred KiB in miniz_oxide) is
/// reused through `reset()` rather than allocated per message.
pub struct Deflater {
    compress: Compress,
    threshold: usize,
}

impl Deflater {
    /// A compressor at `level` for messages longer than `threshold` bytes.
    pub fn new(level: Compression, threshold: usize) -> Self {
        Self {
            // Raw DEFLATE: permessage-deflate carries no zlib header or checksum.
            compress: Compress::new(level, false),
            threshold,
        }
    }

    /// Whether a message of `len` bytes is worth compressing at all.
    pub fn worthwhile(&self, len: usize) -> bool {
        len > self.threshold
    }

    /// The compressed payload of `message` (tail removed), or `None` when the message is
    /// at most the threshold or would not get smaller: RFC 7692 lets each message be sent
    /// compressed or not, so incompressible data simply goes out plain.
    pub fn deflate(&mut self, message: &[u8]) -> Option<Bytes> {
        if !self.worthwhile(message.len()) {
            return None;
        }
        let out = self.deflate_always(message);
        (out.len() < message.len()).then(|| Bytes::from(out))
    }

    /// The compressed payload of `message` with the trailing `00 00 ff ff` removed, no
    /// matter its size or ratio. An empty message becomes the single byte `00`.
    pub fn deflate_always(&mut self, message: &[u8]) -> Vec<u8> {
        self.compress.reset();
        let mut out = Vec::with_capacity(message.len() / 2 + 64);
        let mut input = message;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(MIN_GROWTH));
            }
            let before = self.compress.total_in();
            // A sync flush ends the message on a byte boundary with an empty stored block,
            // and never sets BFINAL, as RFC 7692 7.2.1 describes.
            self.compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflate into a buffer with spare room cannot fail");
            let consumed = (self.compress.total_in() - before) as usize;
            input = &input[consumed..];
            // Done once all input is in and the flush fitted with room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    }
}

/// Why an incoming compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The message inflates (or its compressed form alone grows) beyond the cap: a deflate
    /// bomb, or simply too big. Close 1009.
    #[error("compressed message inflates beyond MAX_FRAME_BYTES ({limit} bytes)")]
    TooBig { limit: usize },
    /// The payload is not valid DEFLATE data. Close 1007.
    #[error("compressed message is not valid DEFLATE data")]
    Corrupt,
    /// The frames broke permessage-deflate's rules (RSV1 on a control or continuation
    /// frame, an unmasked compressed frame, a new message inside a fragmented one).
    /// Close 1002.
    #[error("permessage-deflate framing violated: {0}")]
    Protocol(&'static str),
}

/// Inflates one message at a time, fed in pieces (fragments, partial reads), and refuses
/// to produce more than `limit` bytes: a small compressed frame never becomes a large
/// allocation, because the output buffer grows only up to `limit + 1` bytes.
///
/// With a smaller `keep` ([`Inflater::begin_with`]), output past `keep` bytes is no longer
/// kept, only counted against `limit`: a text message over `MAX_MESSAGE_BYTES` is refused
/// with an error while the socket stays open, yet a deflate bomb past `MAX_FRAME_BYTES` is
/// still recognised as one, and memory stays at `keep`.
pub struct Inflater {
    /// Exists only while a message is being inflated. Browsers compress every message, so
    /// keeping the ~40 KiB of inflate state between messages would cost each idle browser
    /// connection that much; allocating it per message costs well under a microsecond
    /// (`cargo bench --bench deflate`).
    state: Option<Decompress>,
    out: Vec<u8>,
    /// Output bytes kept; past them the message has overflowed and is only counted.
    keep: usize,
    limit: usize,
    overflowed: bool,
    /// The stream had a final block; whatever follows (the appended tail) is ignored, as
    /// zlib does.
    ended: bool,
}

impl Inflater {
    pub fn new(limit: usize) -> Self {
        Self {
            state: None,
            out: Vec::new(),
            keep: limit,
            limit,
            overflowed: false,
            ended: false,
        }
    }

    /// Starts a new message with a fresh DEFLATE state (`client_no_context_takeover`).
    pub fn begin(&mut self) {
        self.begin_with(self.limit, self.limit);
    }

    /// Starts a new message that keeps at most `keep` inflated bytes and may inflate to at
    /// most `limit` (`keep <= limit`).
    pub fn begin_with(&mut self, keep: usize, limit: usize) {
        self.state = Some(Decompress::new(false));
        self.out = Vec::new();
        self.keep = keep.min(limit);
        self.limit = limit;
        self.overflowed = false;
        self.ended = false;
    }

    /// Whether the message inflated past `keep`: its output is gone, only its size counted.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes of memory the message holds right now (output buffer, and the inflate state
    /// while a message is open), for the server's budget of partial messages.
    pub fn held(&self) -> usize {
        self.out.capacity() + if self.state.is_some() { STATE_BYTES } else { 0 }
    }

    /// Drops the message being inflated, and its memory.
    pub fn abandon(&mut self) {
        self.state = None;
        self.out = Vec::new();
    }

    /// Inflates the next piece of the message's (unmasked) compressed payload.
    pub fn push(&mut self, mut input: &[u8]) -> Result<(), InflateError> {
        let state = self.state.get_or_insert_with(|| Decompress::new(false));
        loop {
            if self.ended {
                return Ok(());
            }
            if self.overflowed {
                // Counting only: inflate into the same buffer over and over.
                self.out.clear();
                if self.out.capacity() == 0 {
                    self.out.reserve_exact(MIN_GROWTH.min(self.keep + 1));
                }
            } else if self.out.len() == self.out.capacity() {
                // Grow by doubling, but never past one byte over `keep`: that byte is how
                // we notice it was crossed without allocating further.
                let room = self.keep + 1 - self.out.len().min(self.keep + 1);
                let step = self.out.capacity().max(MIN_GROWTH).min(room);
                self.out.reserve_exact(step);
            }
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state
                .decompress_vec(input, &mut self.out, FlushDecompress::None)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (state.total_in() - in_before) as usize;
            let produced = state.total_out() - out_before;
            input = &input[consumed..];
            if state.total_out() > self.limit as u64 {
                return Err(InflateError::TooBig { limit: self.limit });
            }
            if self.out.len() > self.keep {
                self.overflowed = true;
            }
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            let spare = self.out.capacity() - self.out.len();
            if input.is_empty() && spare > 0 {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && spare > 0 {
                // No progress with input and room available: the decoder is stuck on data
                // it cannot use. Refuse rather than spin.
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Ends the message: appends the `00 00 ff ff` tail and returns the inflated bytes
    /// (meaningless when [`Self::overflowed`]).
    pub fn finish(&mut self) -> Result<Vec<u8>, InflateError> {
        self.push(&TAIL)?;
        self.state = None;
        Ok(std::mem::take(&mut self.out))
    }
}

/// What one inflate state costs while a compressed message is open (miniz_oxide's
/// `InflateState`, about 43 KB), counted in the server's budget for partial messages.
pub const STATE_BYTES: usize = 44 * 1024;

/// Inflates one complete compressed payload (tail removed) with a cap. For tests and
/// benchmarks; the connection path feeds [`Inflater`] piece by piece.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Inflater::new(limit);
    inflater.begin();
    inflater.push(payload)?;
    inflater.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(len: usize) -> Vec<u8> {
        let unit = br#"{"type":"state_update","data":{"tempo":120,"playing":true},"#;
        unit.iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn round_trips_and_strips_the_tail() {
        let mut d = Deflater::new(Compression::default(), 0);
        let message = json_like(5000);
        let out = d.deflate_always(&message);
        assert!(!out.ends_with(&TAIL), "the tail is removed");
        assert!(out.len() < message.len() / 4);
        assert_eq!(inflate(&out, 1 << 20).unwrap(), message);
    }

    #[test]
    fn an_empty_message_is_one_zero_byte_and_inflates_to_nothing() {
        let mut d = Deflater::new(Compression::default(), 0);
        assert_eq!(d.deflate_always(b""), vec![0x00]);
        assert_eq!(inflate(&[0x00], 100).unwrap(), b"");
        // Other encoders send an empty fixed-Huffman block, or nothing at all.
        assert_eq!(inflate(&[0x02, 0x00], 100).unwrap(), b"");
        assert_eq!(inflate(&[], 100).unwrap(), b"");
    }

    #[test]
    fn each_message_is_independent() {
        // server_no_context_takeover: the second message must inflate on its own, so the
        // same bytes can go to a receiver that never saw the first.
        let mut d = Deflater::new(Compression::default(), 0);
        let message = json_like(3000);
        let first = d.deflate_always(&message);
        let second = d.deflate_always(&message);
        assert_eq!(first, second);
        assert_eq!(inflate(&second, 1 << 20).unwrap(), message);
    }

    #[test]
    fn small_or_incompressible_messages_stay_plain() {
        let mut d = Deflater::new(Compression::default(), 1024);
        assert!(
            d.deflate(&json_like(1024)).is_none(),
            "at the threshold: plain"
        );
        assert!(d.deflate(&json_like(1025)).is_some(), "over it: compressed");
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(d.deflate(&noise).is_none(), "noise does not shrink");
    }

    #[test]
    fn input_fed_in_any_pieces_inflates_the_same() {
        let mut d = Deflater::new(Compression::default(), 0);
        let message = json_like(20_000);
        let payload = d.deflate_always(&message);
        for piece in [1, 2, 3, 7, 64, 1000] {
            let mut inflater = Inflater::new(1 << 20);
            inflater.begin();
            for chunk in payload.chunks(piece) {
                inflater.push(chunk).unwrap();
            }
            assert_eq!(inflater.finish().unwrap(), message, "pieces of {piece}");
        }
    }

    #[test]
    fn a_final_block_from_the_sender_is_accepted() {
        // RFC 7692 7.2.3.4: a sender may end with BFINAL set instead of a sync flush.
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(256);
        c.compress_vec(b"hello hello hello", &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(inflate(&out, 100).unwrap(), b"hello hello hello");
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let mut d = Deflater::new(Compression::best(), 0);
        let bomb = d.deflate_always(&vec![b'a'; 4 << 20]);
        assert!(
            bomb.len() < 8 * 1024,
            "4 MiB of 'a' is a few KiB compressed"
        );
        assert_eq!(
            inflate(&bomb, 1 << 20),
            Err(InflateError::TooBig { limit: 1 << 20 })
        );
        // Exactly at the cap is fine; one byte over is not.
        let exact = d.deflate_always(&vec![b'a'; 1000]);
        assert_eq!(inflate(&exact, 1000).unwrap().len(), 1000);
        assert!(inflate(&exact, 999).is_err());
    }

    #[test]
    fn the_inflater_never_allocates_much_past_the_cap() {
        let mut d = Deflater::new(Compression::best(), 0);
        let bomb = d.deflate_always(&vec![0u8; 8 << 20]);
        let mut inflater = Inflater::new(64 * 1024);
        inflater.begin();
        assert!(inflater.push(&bomb).is_err());
        assert!(inflater.out.capacity() <= 64 * 1024 + 64);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        // BTYPE 11 is reserved: invalid in any DEFLATE stream.
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 100),
            Err(InflateError::Corrupt)
        );
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u8
                })
                .collect();
            let _ = inflate(&junk, 4096);
        }
    }
}

//! Target: the reader beneath tungstenite, the frame guard's `FrameGuard::process`
//! (framing checks, bounded message assembly, permessage-deflate), fed an arbitrary client
//! byte stream split at arbitrary points.
//!
//! Input layout: byte 0 picks the limits (the hard cap 64 B to 8 KiB, so bombs hit it
//! quickly; the text limit that or a fraction of it; deflate negotiated or not), byte 1
//! seeds the split points, the rest is the stream. Beyond "no panic":
//! - the answer does not depend on how the stream was split: fed whole and fed in pieces,
//!   the guard writes the same bytes, and accepts or refuses the same streams;
//! - at most an incomplete header or control frame stays unconsumed (< 14 + 125 bytes);
//! - the output is bounded: control frames as they came, plus at most one cap-sized frame
//!   (or an oversize marker) per data message, each of which took at least 6 input bytes;
//! - every byte taken from the budget of partial messages is given back when the guard is
//!   dropped, and what it held never exceeded the text limit (or, for binary, the hard
//!   cap) plus the inflate state.
//!
//! Kept small on purpose: when the guard's API changes, only [`run`] changes.

use bandsync::deflate::codec::STATE_BYTES;
use bandsync::ws::budget::PartialBudget;
use bandsync::ws::guard::{FrameGuard, GuardError, GuardLimits};
use bytes::BytesMut;
use std::sync::Arc;

/// The checked stream and the verdict, feeding `stream` in pieces of the given sizes.
fn run(
    limits: GuardLimits,
    stream: &[u8],
    mut sizes: impl FnMut() -> usize,
) -> (Vec<u8>, Result<(), GuardError>) {
    let budget = Arc::new(PartialBudget::new(usize::MAX));
    let mut guard = FrameGuard::new(limits, budget.clone());
    let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
    let mut rest = stream;
    let mut verdict = Ok(());
    // Growth of a buffer doubles, so what is held may reach twice the bytes kept.
    let most_held = 2 * limits.hard + 2 * 4096 + STATE_BYTES;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(sizes().clamp(1, rest.len()));
        rest = tail;
        input.extend_from_slice(piece);
        verdict = guard.process(&mut input, &mut out);
        assert!(
            budget.used() <= most_held,
            "{} bytes held in assembly",
            budget.used()
        );
        if verdict.is_err() {
            break;
        }
        assert!(
            input.len() < 14 + 125,
            "{} bytes left unconsumed",
            input.len()
        );
    }
    drop(guard);
    assert_eq!(budget.used(), 0, "the budget is given back");
    (out.to_vec(), verdict)
}

/// Splits `data` into (limits, split seed, stream) and checks the guard on it.
pub fn check(data: &[u8]) {
    let [cap, seed, stream @ ..] = data else {
        return;
    };
    let hard = 64usize << (cap % 8);
    let limits = GuardLimits {
        hard,
        text: hard >> ((cap >> 3) % 4),
        deflate: cap & 0x80 == 0,
    };
    let (whole, whole_verdict) = run(limits, stream, || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let (pieces, pieces_verdict) = run(limits, stream, || {
        // xorshift: piece sizes 1..=32, reproducible from the seed byte.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 32) as usize + 1
    });
    // Which refusal comes first may depend on where the pieces end (a corrupt block past
    // the cap is seen first when it arrives in the same read); whether the stream is
    // refused may not, nor what came out before.
    assert_eq!(
        whole_verdict.is_ok(),
        pieces_verdict.is_ok(),
        "acceptance depends on the split: {whole_verdict:?} / {pieces_verdict:?}"
    );
    assert_eq!(whole, pieces, "output depends on the split");
    let messages = stream.len() as u64 / 6 + 1;
    let bound = stream.len() as u64 + messages * (hard as u64 + 14);
    assert!(
        whole.len() as u64 <= bound,
        "output {} > {bound}",
        whole.len()
    );
}

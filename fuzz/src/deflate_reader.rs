//! Target: the permessage-deflate reader beneath tungstenite, `Rewriter::process`, fed an
//! arbitrary client byte stream split at arbitrary points.
//!
//! Input layout: byte 0 picks the inflate cap (64 B to 8 KiB, so bombs hit it quickly),
//! byte 1 seeds the split points, the rest is the stream. Beyond "no panic":
//! - the answer does not depend on how the stream was split: fed whole and fed in pieces,
//!   the rewriter writes the same bytes, and accepts or refuses the same streams;
//! - the output is bounded: forwarded bytes plus at most one cap-sized frame per
//!   compressed message it inflated.
//!
//! Kept small on purpose: when the rewriter's API changes, only [`run`] changes.

use bandsync::ws::deflate::{InflateError, Rewriter};
use bytes::BytesMut;

/// The rewritten stream and the verdict, feeding `stream` in pieces of the given sizes.
fn run(
    limit: usize,
    stream: &[u8],
    mut sizes: impl FnMut() -> usize,
) -> (Vec<u8>, Result<(), InflateError>, u64) {
    let mut rewriter = Rewriter::new(limit);
    let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
    let mut rest = stream;
    let mut verdict = Ok(());
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(sizes().clamp(1, rest.len()));
        rest = tail;
        input.extend_from_slice(piece);
        verdict = rewriter.process(&mut input, &mut out);
        if verdict.is_err() {
            break;
        }
        // Only an incomplete frame header may stay unconsumed (at most 14 bytes).
        assert!(input.len() < 14, "{} bytes left unconsumed", input.len());
    }
    (out.to_vec(), verdict, rewriter.inflated)
}

/// Splits `data` into (cap, split seed, stream) and checks the rewriter on it.
pub fn check(data: &[u8]) {
    let [cap, seed, stream @ ..] = data else {
        return;
    };
    let limit = 64usize << (cap % 8);
    let (whole, whole_verdict, inflated) = run(limit, stream, || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let (pieces, pieces_verdict, _) = run(limit, stream, || {
        // xorshift: piece sizes 1..=32, reproducible from the seed byte.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 32) as usize + 1
    });
    // Which refusal (`TooBig` or `Corrupt`) comes first may depend on where the pieces
    // end: a corrupt block past the cap is seen first when it arrives in the same read.
    // Whether the stream is refused may not, nor what came out before.
    assert_eq!(
        whole_verdict.is_ok(),
        pieces_verdict.is_ok(),
        "acceptance depends on the split: {whole_verdict:?} / {pieces_verdict:?}"
    );
    // Output grows only by forwarded bytes or at the end of an inflated message, so even
    // after an error both runs wrote the same bytes.
    assert_eq!(whole, pieces, "output depends on the split");
    let bound = stream.len() as u64 + inflated * (limit as u64 + 14);
    assert!(
        whole.len() as u64 <= bound,
        "output {} > {bound}",
        whole.len()
    );
}

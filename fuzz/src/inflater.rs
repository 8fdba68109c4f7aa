//! Target: the permessage-deflate inflater (`deflate/codec.rs`), one message's payload
//! fed in arbitrary pieces under a cap.
//!
//! Input layout: byte 0 picks the cap (64 B to 8 KiB), byte 1 seeds the piece sizes, the
//! rest is the compressed payload (tail removed, as on the wire). Beyond "no panic":
//! - output never exceeds the cap, and a refusal over the cap says `TooBig`;
//! - pieces and one shot accept the same payloads and inflate them the same;
//! - the payload read as *plain* text deflates with our `Deflater` and inflates back to
//!   itself whenever it fits under the cap.

use bandsync::deflate::codec::{inflate, Deflater, Inflater};
use bandsync::deflate::InflateError;

/// Splits `data` into (cap, split seed, payload) and checks the inflater on it.
pub fn check(data: &[u8]) {
    let [cap, seed, payload @ ..] = data else {
        return;
    };
    let limit = 64usize << (cap % 8);
    let whole = inflate(payload, limit);
    if let Ok(out) = &whole {
        assert!(
            out.len() <= limit,
            "{} bytes over a {limit}-byte cap",
            out.len()
        );
    }
    let mut inflater = Inflater::new(limit);
    inflater.begin();
    let mut rest = payload;
    let mut x = u32::from(*seed) | 0x100;
    let mut pieces = Ok(());
    while !rest.is_empty() && pieces.is_ok() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let (piece, tail) = rest.split_at((x as usize % 64 + 1).min(rest.len()));
        rest = tail;
        pieces = inflater.push(piece);
    }
    let pieces = pieces.and_then(|()| inflater.finish());
    // As in `deflate_reader`: the kind of refusal may depend on the pieces (a corrupt
    // block past the cap), the outcome may not.
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "one shot and pieces inflate differently"),
        (Err(_), Err(_)) => {}
        _ => panic!("one shot {whole:?}, pieces {pieces:?}"),
    }
    for refusal in [&whole, &pieces] {
        if let Err(InflateError::Protocol(why)) = refusal {
            panic!("the inflater alone refused with a framing error: {why}");
        }
    }

    let compressed = Deflater::new(bandsync::deflate::codec::LEVEL, 0).deflate_always(payload);
    match inflate(&compressed, limit) {
        Ok(back) => assert_eq!(back, payload, "deflate/inflate round trip changed bytes"),
        Err(InflateError::TooBig { .. }) => assert!(payload.len() > limit),
        Err(e) => panic!("our own deflate output refused: {e}"),
    }
}

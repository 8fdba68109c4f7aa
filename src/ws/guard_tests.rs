use super::*;
use crate::deflate::codec::Deflater;
use flate2::Compression;

/// A client frame: FIN, RSV1, opcode, masked with a fixed key.
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

fn limits(text: usize, hard: usize) -> GuardLimits {
    GuardLimits {
        text,
        hard,
        deflate: true,
    }
}

fn guard(text: usize, hard: usize) -> FrameGuard {
    FrameGuard::new(limits(text, hard), Arc::new(PartialBudget::new(usize::MAX)))
}

fn run_with(mut g: FrameGuard, input: &[u8]) -> (Result<(), GuardError>, Vec<u8>) {
    let mut inp = BytesMut::from(input);
    let mut out = BytesMut::new();
    let result = g.process(&mut inp, &mut out);
    (result, out.to_vec())
}

fn run(input: &[u8], limit: usize) -> (Result<(), GuardError>, Vec<u8>) {
    run_with(guard(limit, limit), input)
}

fn marker(compressed: bool, size: u64) -> (bool, bool, u8, Vec<u8>) {
    let mut payload = OVERSIZE_MARKER.to_vec();
    payload.push(if compressed { b'c' } else { b'p' });
    payload.extend_from_slice(size.to_string().as_bytes());
    (true, false, OP_PONG, payload)
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
fn control_frames_pass_through_byte_for_byte_and_whole_messages_unmasked() {
    let mut input = client_frame(true, false, OP_TEXT, b"plain");
    let ping = client_frame(true, false, 0x9, b"ping");
    input.extend(&ping);
    let (result, out) = run(&input, 1 << 20);
    result.unwrap();
    assert!(out.ends_with(&ping), "the ping goes on as it came");
    assert_eq!(
        frames(&out),
        vec![
            (true, false, OP_TEXT, b"plain".to_vec()),
            (true, false, 0x9, b"ping".to_vec())
        ]
    );
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
    input.extend(client_frame(false, false, OP_BINARY, b"plain "));
    input.extend(client_frame(true, false, 0x9, b"p3"));
    input.extend(client_frame(true, false, OP_CONTINUATION, b"fragments"));
    input.extend(client_frame(true, false, OP_TEXT, b"after"));
    // Fed one byte at a time: partial headers and payloads everywhere.
    let mut g = guard(1 << 20, 1 << 20);
    let (mut inp, mut out) = (BytesMut::new(), BytesMut::new());
    for byte in input {
        inp.put_u8(byte);
        g.process(&mut inp, &mut out).unwrap();
    }
    assert_eq!(
        frames(&out),
        vec![
            (true, false, 0x9, b"p1".to_vec()),
            (true, false, 0xA, b"p2".to_vec()),
            (true, false, OP_TEXT, message.into_bytes()),
            (true, false, 0x9, b"p3".to_vec()),
            (true, false, OP_BINARY, b"plain fragments".to_vec()),
            (true, false, OP_TEXT, b"after".to_vec()),
        ]
    );
}

#[test]
fn an_empty_compressed_message_and_empty_fragments_work() {
    let mut input = client_frame(true, true, OP_BINARY, &[0x00]);
    input.extend(client_frame(false, true, OP_TEXT, &[]));
    input.extend(client_frame(true, false, OP_CONTINUATION, &deflated(b"x")));
    input.extend(client_frame(false, false, OP_TEXT, &[]));
    input.extend(client_frame(true, false, OP_CONTINUATION, &[]));
    let (result, out) = run(&input, 100);
    result.unwrap();
    assert_eq!(
        frames(&out),
        vec![
            (true, false, OP_BINARY, vec![]),
            (true, false, OP_TEXT, b"x".to_vec()),
            (true, false, OP_TEXT, vec![]),
        ]
    );
}

#[test]
fn a_bomb_is_refused_at_the_hard_cap() {
    let bomb = deflated(&vec![b'{'; 2 << 20]);
    assert!(bomb.len() < 4096);
    let (result, out) = run(&client_frame(true, true, OP_TEXT, &bomb), 1 << 20);
    assert_eq!(result, Err(GuardError::InflatedTooBig { limit: 1 << 20 }));
    assert!(out.is_empty());
    // Even when text over 16 KiB is only counted, not kept.
    let (result, out) = run_with(
        guard(16 * 1024, 1 << 20),
        &client_frame(true, true, OP_TEXT, &bomb),
    );
    assert_eq!(result, Err(GuardError::InflatedTooBig { limit: 1 << 20 }));
    assert!(
        out.is_empty(),
        "a bomb is reported as a bomb, not as an oversized message"
    );
}

#[test]
fn frames_and_messages_over_the_hard_cap_are_refused_from_their_headers() {
    let (result, _) = run(&client_frame(true, false, OP_BINARY, &[0; 101]), 100);
    assert_eq!(
        result,
        Err(GuardError::TooBig {
            size: 101,
            limit: 100
        })
    );
    let mut input = client_frame(false, false, OP_BINARY, &[0; 60]);
    input.extend(client_frame(false, false, OP_CONTINUATION, &[0; 60]));
    let (result, _) = run(&input, 100);
    assert_eq!(
        result,
        Err(GuardError::TooBig {
            size: 120,
            limit: 100
        })
    );
    // Compressed bytes count too, before anything is inflated.
    let noise: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
    let payload = deflated(&noise);
    let mut input = client_frame(false, true, OP_TEXT, &payload[..60]);
    input.extend(client_frame(
        true,
        false,
        OP_CONTINUATION,
        &payload[60..120],
    ));
    assert!(matches!(run(&input, 100).0, Err(GuardError::TooBig { .. })));
}

#[test]
fn text_over_the_message_limit_is_discarded_with_a_marker_and_reading_goes_on() {
    let mut g = guard(100, 10_000);
    let mut input = client_frame(true, false, OP_TEXT, &[b'x'; 150]);
    input.extend(client_frame(false, false, OP_TEXT, &[b'y'; 60]));
    input.extend(client_frame(true, false, OP_CONTINUATION, &[b'y'; 60]));
    input.extend(client_frame(true, true, OP_TEXT, &deflated(&[b'z'; 500])));
    input.extend(client_frame(true, false, OP_BINARY, &[7; 500]));
    input.extend(client_frame(true, false, OP_TEXT, b"next"));
    let (mut inp, mut out) = (BytesMut::from(&input[..]), BytesMut::new());
    g.process(&mut inp, &mut out).unwrap();
    assert_eq!(
        frames(&out),
        vec![
            marker(false, 150),
            marker(false, 120),
            marker(true, 101),
            (true, false, OP_BINARY, vec![7; 500]),
            (true, false, OP_TEXT, b"next".to_vec()),
        ],
        "binary (audio) may be up to the hard cap; text only up to its own"
    );
}

#[test]
fn an_oversize_marker_reads_back() {
    let mut out = BytesMut::new();
    out.oversize(true, 16385);
    let payload = &frames(&out)[0].3;
    assert!(payload.len() <= 125);
    assert_eq!(parse_oversize_marker(payload), Some((true, 16385)));
    assert_eq!(parse_oversize_marker(b"ordinary pong"), None);
}

#[test]
fn framing_violations_are_protocol_errors() {
    let protocol = |input: &[u8], deflate: bool| {
        let g = FrameGuard::new(
            GuardLimits {
                text: 1000,
                hard: 1000,
                deflate,
            },
            Arc::new(PartialBudget::new(usize::MAX)),
        );
        matches!(run_with(g, input).0, Err(GuardError::Protocol(_)))
    };
    let mut unmasked = client_frame(true, false, OP_TEXT, b"hi");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    assert!(protocol(&unmasked, false), "unmasked");
    assert!(
        protocol(&client_frame(true, false, 0x3, b""), false),
        "reserved data opcode"
    );
    assert!(
        protocol(&client_frame(true, false, 0xB, b""), false),
        "reserved control opcode"
    );
    assert!(
        protocol(&client_frame(true, false, 0x9, &[0; 126]), false),
        "control over 125"
    );
    assert!(
        protocol(&client_frame(false, false, 0x9, b""), false),
        "fragmented control"
    );
    assert!(
        protocol(&client_frame(true, true, OP_TEXT, &deflated(b"x")), false),
        "RSV1 without deflate"
    );
    assert!(
        protocol(&client_frame(true, true, 0x9, b""), true),
        "RSV1 on a ping"
    );
    assert!(
        protocol(&client_frame(true, false, OP_CONTINUATION, b"x"), true),
        "lone continuation"
    );
    let mut rsv2 = client_frame(true, false, OP_TEXT, b"x");
    rsv2[0] |= 0x20;
    assert!(protocol(&rsv2, true), "RSV2");
    let mut cont = client_frame(false, true, OP_TEXT, &[]);
    cont.extend(client_frame(true, true, OP_CONTINUATION, &[0x00]));
    assert!(protocol(&cont, true), "RSV1 on a continuation");
    let mut nested = client_frame(false, false, OP_TEXT, b"a");
    nested.extend(client_frame(true, true, OP_TEXT, &[0x00]));
    assert!(protocol(&nested, true), "a message inside another");
}

#[test]
fn corrupt_data_is_refused() {
    let corrupt = client_frame(true, true, OP_TEXT, &[0xff, 0xff, 0xff]);
    assert_eq!(run(&corrupt, 100).0, Err(GuardError::Corrupt));
}

#[test]
fn held_bytes_come_from_the_budget_and_go_back_to_it() {
    let budget = Arc::new(PartialBudget::new(1000));
    let mut g = FrameGuard::new(limits(10_000, 10_000), budget.clone());
    let (mut inp, mut out) = (BytesMut::new(), BytesMut::new());
    // Half of a 600-byte frame: held, and counted.
    let frame = client_frame(true, false, OP_BINARY, &[1; 600]);
    inp.extend_from_slice(&frame[..300]);
    g.process(&mut inp, &mut out).unwrap();
    assert!(budget.used() >= 292, "{}", budget.used());
    assert!(g.partial_since().is_some());
    // A second connection cannot take what the first holds.
    let mut other = FrameGuard::new(limits(10_000, 10_000), budget.clone());
    let mut other_in = BytesMut::from(&client_frame(true, false, OP_BINARY, &[2; 900])[..]);
    assert_eq!(
        other.process(&mut other_in, &mut BytesMut::new()),
        Err(GuardError::Busy)
    );
    // The first one finishes its message: everything goes back.
    inp.extend_from_slice(&frame[300..]);
    g.process(&mut inp, &mut out).unwrap();
    assert_eq!(frames(&out), vec![(true, false, OP_BINARY, vec![1; 600])]);
    assert!(g.partial_since().is_none());
    drop(other);
    assert_eq!(budget.used(), 0);
    // A connection dropped mid-message gives its share back too.
    inp.extend_from_slice(&frame[..300]);
    g.process(&mut inp, &mut out).unwrap();
    assert!(budget.used() > 0);
    drop(g);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_compressed_message_in_assembly_counts_its_inflate_state() {
    let budget = Arc::new(PartialBudget::new(usize::MAX));
    let mut g = FrameGuard::new(limits(10_000, 10_000), budget.clone());
    let payload = deflated(&[b'a'; 3000]);
    let mut inp = BytesMut::from(&client_frame(false, true, OP_TEXT, &payload)[..]);
    g.process(&mut inp, &mut BytesMut::new()).unwrap();
    assert!(budget.used() >= crate::deflate::codec::STATE_BYTES);
    let mut inp = BytesMut::from(&client_frame(true, false, OP_CONTINUATION, &[])[..]);
    let mut out = BytesMut::new();
    g.process(&mut inp, &mut out).unwrap();
    assert_eq!(frames(&out), vec![(true, false, OP_TEXT, vec![b'a'; 3000])]);
    assert_eq!(budget.used(), 0);
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
        let budget = Arc::new(PartialBudget::new(1 << 20));
        let mut g = FrameGuard::new(limits(1024, 4096), budget.clone());
        let (mut out, mut inp) = (BytesMut::new(), BytesMut::new());
        for chunk in input.chunks(rng.random_range(1..64)) {
            inp.extend_from_slice(chunk);
            if g.process(&mut inp, &mut out).is_err() {
                break;
            }
            // Control frames as they came, plus at most the cap (and a header) per data
            // message or marker, each of which takes at least 6 bytes of input.
            assert!(out.len() <= input.len() + (input.len() / 6 + 1) * (4096 + 14));
        }
        drop(g);
        assert_eq!(budget.used(), 0, "every reservation is given back");
    }
}

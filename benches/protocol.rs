//! Decode + validate of client events, and encode of server envelopes.
//! `cargo bench --bench protocol`

use bandsync_protocol::server::{ScrollTick, SessionState};
use bandsync_protocol::{decode_client_frame, encode_server_frame, ServerEvent, Transport};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let set_tempo =
        r#"{"type":"set_tempo","id":"r42","timestamp":1732190000123.456,"data":{"tempo":128}}"#;
    let join = r#"{"type":"join_session","id":1,"data":{"sessionId":"owner/repo","name":"Ada","role":"leader"}}"#;
    let garbage = r#"{"type":"set_tempo","data":{"tempo":"fast"}}"#;
    c.bench_function("decode/set_tempo", |b| {
        b.iter(|| decode_client_frame(black_box(set_tempo)))
    });
    c.bench_function("decode/join_session", |b| {
        b.iter(|| decode_client_frame(black_box(join)))
    });
    c.bench_function("decode/invalid", |b| {
        b.iter(|| decode_client_frame(black_box(garbage)))
    });
}

fn encode(c: &mut Criterion) {
    let now = 1_732_190_000_123.456;
    let tick = ServerEvent::ScrollTick(ScrollTick {
        session_id: "my-band".into(),
        seq: 123_456,
        beat: 245.123_456_789,
        tempo: 128.0,
        playing: true,
        version: 42,
        server_time: now,
    });
    let update = ServerEvent::StateUpdate(SessionState {
        session_id: "my-band".into(),
        transport: Transport::new(now),
        message: "Verse 2, then chorus twice".into(),
        leader_id: Some("c0123456789abcdef".into()),
        version: 42,
        server_time: now,
        replayed: false,
        scheduled: None,
    });
    c.bench_function("encode/scroll_tick", |b| {
        b.iter(|| encode_server_frame(black_box(&tick), None, now))
    });
    c.bench_function("encode/state_update", |b| {
        b.iter(|| encode_server_frame(black_box(&update), None, now))
    });
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);

//! Fan-out of one encoded event to N in-process subscribers' outboxes, as the engine does
//! it: one encode and framing, one handle clone and one queue push per recipient, then
//! draining as a task-written transport (Socket.IO, SSE) would. `cargo bench --bench fanout`

use bandsync::frames::{EncodedText, WsFrame};
use bandsync::outbox::{Outbox, OutboxLimits};
use bandsync_protocol::server::ScrollTick;
use bandsync_protocol::{encode_server_frame, ServerEvent};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;

fn fanout(c: &mut Criterion) {
    let limits = OutboxLimits {
        max_frames: 1024,
        max_bytes: 4 << 20,
        max_audio_frames: 64,
    };
    let mut group = c.benchmark_group("fanout");
    for n in [100usize, 1_000, 10_000] {
        let outboxes: Vec<Arc<Outbox<WsFrame>>> =
            (0..n).map(|_| Arc::new(Outbox::new(limits))).collect();
        let mut drained = Vec::with_capacity(4);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("state_event", n), &n, |b, _| {
            b.iter(|| {
                let event = ServerEvent::ScrollTick(ScrollTick {
                    session_id: "my-band".into(),
                    seq: 1,
                    beat: 1.5,
                    tempo: 120.0,
                    playing: true,
                    version: 1,
                    server_time: 1.0,
                });
                let text = EncodedText::new(encode_server_frame(&event, None, 1.0));
                for outbox in &outboxes {
                    let _ = outbox.push(WsFrame::Text(text.clone()));
                }
                for outbox in &outboxes {
                    drained.clear();
                    outbox.drain_into(&mut drained);
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("tick_latest_wins", n), &n, |b, _| {
            let text = EncodedText::new(String::from(r#"{"type":"scroll_tick"}"#));
            b.iter(|| {
                for outbox in &outboxes {
                    let _ = outbox.push_tick(WsFrame::Text(text.clone()));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

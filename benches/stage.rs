//! Stream Manager fan-out: one layer change to N stream clients, as the server does it
//! (encode once, one shared `Utf8Bytes` through the stream's broadcast channel, each client
//! taking it) against encoding it once per client. `cargo bench --bench stage`

use bandsync::stream_manager::hub::{encode, Pushed, StageHub};
use bandsync_protocol::stream_manager::events::LayerChange;
use bandsync_protocol::stream_manager::layers::default_layers;
use bandsync_protocol::stream_manager::StageEvent;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

fn event() -> StageEvent {
    let layer = default_layers(1_732_190_000_123.4).remove(1);
    StageEvent::LayerUpdate(LayerChange::upserted(layer))
}

fn stage(c: &mut Criterion) {
    let mut group = c.benchmark_group("stage_fanout");
    for n in [10usize, 100, 1_000] {
        let hub = Arc::new(StageHub::default());
        let viewers: Vec<_> = (0..n as u64)
            .map(|conn| hub.join("band", conn, 256))
            .collect();
        let mut receivers: Vec<_> = viewers
            .iter()
            .map(|v| v.channel.events.subscribe())
            .collect();
        let event = event();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("encode_once_shared", n), &n, |b, _| {
            let mut version = 0;
            b.iter(|| {
                version += 1;
                let frame = encode(&event, 1.0, Some(version));
                let frame = Utf8Bytes::try_from(frame).expect("JSON text");
                hub.push(
                    "band",
                    [Pushed {
                        version,
                        frame,
                        whole: false,
                    }],
                );
                for rx in &mut receivers {
                    let pushed = rx.try_recv().expect("one event each");
                    std::hint::black_box(pushed.frame.len());
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("encode_per_client", n), &n, |b, _| {
            b.iter(|| {
                for _ in 0..n {
                    let frame = encode(&event, 1.0, Some(1));
                    std::hint::black_box(Utf8Bytes::try_from(frame).expect("JSON text"));
                }
            })
        });
        drop(viewers);
    }
    group.finish();
}

criterion_group!(benches, stage);
criterion_main!(benches);

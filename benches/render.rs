//! Render speed of a 5-second stereo composition, per instrument type.
//! `cargo bench --bench render`
//!
//! Two compositions per instrument: a typical one (120 BPM, a seven-note scale, three steps in
//! four sounding, arpeggio) and the worst case the protocol allows per second (240 BPM, every
//! step sounding a sixteen-note chord). Criterion's throughput is in frames per second; after
//! the runs a table gives the median milliseconds per render and times realtime
//! (realtime = 44,100 frames per second).

use bandsync_protocol::repo::{InstrumentType, MusicalParams, Pattern, SAMPLE_RATE};
use bandsync_render::render;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Instant;

fn typical(instrument: InstrumentType) -> MusicalParams {
    MusicalParams {
        tempo: 120.0,
        scale: ["C4", "D4", "E4", "F4", "G4", "A4", "B4"]
            .map(String::from)
            .to_vec(),
        instrument_type: instrument,
        duration: 5.0,
        density: 0.75,
        pattern: Pattern::Arpeggio,
        seed: 7,
    }
}

fn worst(instrument: InstrumentType) -> MusicalParams {
    let scale = [
        "C3", "D3", "E3", "G3", "A3", "C4", "D4", "E4", "G4", "A4", "C5", "D5", "E5", "G5", "A5",
        "C6",
    ];
    MusicalParams {
        tempo: 240.0,
        scale: scale.map(String::from).to_vec(),
        density: 1.0,
        pattern: Pattern::Chord,
        ..typical(instrument)
    }
}

fn bench_renders(c: &mut Criterion) {
    for (name, make) in [
        ("typical", typical as fn(InstrumentType) -> MusicalParams),
        ("worst", worst),
    ] {
        let mut group = c.benchmark_group(format!("render_5s/{name}"));
        group.sample_size(20);
        for instrument in InstrumentType::ALL {
            let params = make(instrument);
            group.throughput(Throughput::Elements(params.frames() as u64));
            group.bench_function(instrument.as_str(), |b| {
                b.iter(|| render(black_box(&params)))
            });
        }
        group.finish();
    }
    summary();
}

/// Median of 15 renders per composition, as a table for BENCHMARKS.md.
fn summary() {
    println!("\ncomposition  instrument  ms/render  x realtime");
    for (name, make) in [
        ("typical", typical as fn(InstrumentType) -> MusicalParams),
        ("worst", worst),
    ] {
        for instrument in InstrumentType::ALL {
            let params = make(instrument);
            let mut times: Vec<f64> = (0..15)
                .map(|_| {
                    let start = Instant::now();
                    black_box(render(black_box(&params)));
                    start.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let seconds = params.frames() as f64 / f64::from(SAMPLE_RATE);
            println!(
                "{name:<12} {:<11} {:>9.2} {:>11.0}",
                instrument.as_str(),
                median * 1e3,
                seconds / median
            );
        }
    }
}

criterion_group!(benches, bench_renders);
criterion_main!(benches);

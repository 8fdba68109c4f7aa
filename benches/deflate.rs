//! permessage-deflate: compression ratio and CPU time per KB for PCM audio (f32 and i16,
//! synthetic: a sine with and without noise) and for real JSON envelopes.
//! `cargo bench --bench deflate`
//!
//! First prints a table (ratio and µs per KB of plain input, to compress and to inflate,
//! at flate2's default level 6 and at level 1, which the server uses: `codec::LEVEL`), then
//! runs criterion on the same inputs at both levels. Each message is compressed the way the
//! server does it: its own DEFLATE stream (no context takeover), sync flush, tail removed.

use bandsync::deflate::{codec, Deflater, Inflater};
use bandsync_protocol::server::{Member, ScrollTick, SessionState, Snapshot};
use bandsync_protocol::{encode_server_frame, Role, ServerEvent, Transport};
use criterion::{Criterion, Throughput};
use flate2::Compression;
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: f64 = 1_732_190_000_123.456;
/// 20 ms of 48 kHz stereo: a typical audio packet.
const FRAMES: usize = 960;
const CHANNELS: usize = 2;

/// Deterministic noise in [-1, 1).
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(((self.next() + 1.0) * 8.0) as u32 % 16, 16).unwrap())
            .collect()
    }
}

/// A 440 Hz sine at -6 dBFS plus white noise at `noise` amplitude (0.01 ≈ -40 dBFS).
fn pcm(noise: f32) -> Vec<f32> {
    let mut rng = Noise(0x2545_f491_4f6c_dd1d);
    (0..FRAMES * CHANNELS)
        .map(|i| {
            let t = (i / CHANNELS) as f32 / 48_000.0;
            0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + noise * rng.next()
        })
        .collect()
}

fn f32_bytes(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn i16_bytes(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}

fn transport() -> Transport {
    Transport {
        playing: true,
        tempo: 128.0,
        beat: 245.123_456_789,
        anchor_time: NOW - 1234.5,
    }
}

fn state_update() -> Vec<u8> {
    let event = ServerEvent::StateUpdate(SessionState {
        session_id: "my-band".into(),
        transport: transport(),
        message: "Verse 2 from bar 17, then the chorus twice; watch the ritardando. ".repeat(14)
            [..900]
            .to_owned(),
        leader_id: Some("c3f9a01b27d4e8c56".into()),
        version: 42,
        server_time: NOW,
        replayed: false,
        scheduled: None,
    });
    encode_server_frame(&event, None, NOW).into_bytes()
}

fn snapshot(members: usize) -> Vec<u8> {
    let mut rng = Noise(0x9e37_79b9_7f4a_7c15);
    let event = ServerEvent::Snapshot(Snapshot {
        session_id: "my-band".into(),
        client_id: format!("c{}", rng.hex(16)),
        role: Role::Follower,
        resume_token: rng.hex(43),
        leader_id: Some(format!("c{}", rng.hex(16))),
        members: (0..members)
            .map(|i| Member {
                client_id: format!("c{}", rng.hex(16)),
                name: Some(format!("Player {i}")),
                role: if i == 0 { Role::Leader } else { Role::Follower },
            })
            .collect(),
        transport: transport(),
        message: "Verse 2 from bar 17".into(),
        version: 42,
        server_time: NOW,
        resumed: false,
        members_truncated: false,
        replay_count: 0,
        scheduled: None,
        sheet: None,
    });
    encode_server_frame(&event, Some(&"j1".into()), NOW).into_bytes()
}

fn scroll_tick() -> Vec<u8> {
    let event = ServerEvent::ScrollTick(ScrollTick {
        session_id: "my-band".into(),
        seq: 123_456,
        beat: 245.123_456_789,
        tempo: 128.0,
        playing: true,
        version: 42,
        server_time: NOW,
    });
    encode_server_frame(&event, None, NOW).into_bytes()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let noisy = pcm(0.01);
    let clean = pcm(0.0);
    vec![
        ("f32 PCM, sine+noise", f32_bytes(&noisy)),
        ("f32 PCM, pure sine", f32_bytes(&clean)),
        ("i16 PCM, sine+noise", i16_bytes(&noisy)),
        ("i16 PCM, pure sine", i16_bytes(&clean)),
        ("JSON state_update", state_update()),
        ("JSON snapshot, 20 members", snapshot(20)),
        ("JSON snapshot, 1000 members", snapshot(1000)),
        ("JSON scroll_tick", scroll_tick()),
    ]
}

/// Inflates the way a connection does: fresh inflate state per message.
fn inflate(inflater: &mut Inflater, payload: &[u8]) -> Vec<u8> {
    inflater.begin();
    inflater.push(payload).unwrap();
    inflater.finish().unwrap()
}

/// Mean time of `f` over about `budget`, after a short warm-up.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn table(inputs: &[(&str, Vec<u8>)]) {
    let budget = Duration::from_millis(150);
    println!();
    println!(
        "{:<28} {:>8} | {:>10} {:>7} {:>9} {:>10} | {:>7} {:>9}",
        "", "", "level 6", "", "", "", "level 1", "(server)"
    );
    println!(
        "{:<28} {:>8} | {:>10} {:>7} {:>9} {:>10} | {:>7} {:>9}",
        "input", "bytes", "compressed", "ratio", "µs/KB in", "µs/KB out", "ratio", "µs/KB in"
    );
    for (name, plain) in inputs {
        let kb = plain.len() as f64 / 1024.0;
        let mut d6 = Deflater::new(Compression::default(), 0);
        let mut d1 = Deflater::new(codec::LEVEL, 0);
        let mut inflater = Inflater::new(1 << 24);
        let c6 = d6.deflate_always(plain);
        let c1 = d1.deflate_always(plain);
        assert_eq!(&inflate(&mut inflater, &c6), plain);
        let t6 = time(budget, || {
            black_box(d6.deflate_always(black_box(plain)));
        });
        let t1 = time(budget, || {
            black_box(d1.deflate_always(black_box(plain)));
        });
        let ti = time(budget, || {
            black_box(inflate(&mut inflater, black_box(&c6)));
        });
        let per_kb = |t: Duration| t.as_secs_f64() * 1e6 / kb;
        println!(
            "{:<28} {:>8} | {:>10} {:>7.3} {:>9.2} {:>10.2} | {:>7.3} {:>9.2}",
            name,
            plain.len(),
            c6.len(),
            c6.len() as f64 / plain.len() as f64,
            per_kb(t6),
            per_kb(ti),
            c1.len() as f64 / plain.len() as f64,
            per_kb(t1),
        );
    }
    println!(
        "ratio = compressed / plain (lower is better); µs/KB in = compress, out = inflate, \
         per KB of plain input, one thread.\n"
    );
}

fn criterion_benches(c: &mut Criterion, inputs: &[(&str, Vec<u8>)]) {
    let mut group = c.benchmark_group("deflate");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut level6 = Deflater::new(Compression::default(), 0);
    let mut level1 = Deflater::new(codec::LEVEL, 0);
    let mut inflater = Inflater::new(1 << 24);
    for (name, plain) in inputs {
        let compressed = level1.deflate_always(plain);
        group.throughput(Throughput::Bytes(plain.len() as u64));
        group.bench_function(format!("compress-6/{name}"), |b| {
            b.iter(|| level6.deflate_always(black_box(plain)))
        });
        group.bench_function(format!("compress-1/{name}"), |b| {
            b.iter(|| level1.deflate_always(black_box(plain)))
        });
        group.bench_function(format!("inflate/{name}"), |b| {
            b.iter(|| inflate(&mut inflater, black_box(&compressed)))
        });
    }
    group.finish();
}

fn main() {
    let inputs = inputs();
    let mut criterion = Criterion::default().configure_from_args();
    // `cargo test --benches` runs each benchmark once; the table is for `cargo bench`.
    if std::env::args().any(|a| a == "--bench") {
        table(&inputs);
    }
    criterion_benches(&mut criterion, &inputs);
    criterion.final_summary();
}

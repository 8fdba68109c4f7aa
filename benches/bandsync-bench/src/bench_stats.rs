//! Pure logic behind `bandsync-bench`, kept in the library so it is unit-tested and usable
//! from other tools: the unique-tempo scheme that ties a delivery to its send, per-stream
//! `seq` accounting, percentile summaries, and for the audio relay scenario: share ids,
//! real-time chunk schedules, PCM and REST bodies, sequence sets and send instants by
//! (session, sequence).
//!
//! Why not [`bandsync_client::TickStats`] per connection: it holds two HDR histograms (about 280 KiB)
//! per stream, which is 2.8 GiB at 10,000 connections. The bench keeps one small
//! [`SeqTracker`] per connection and records into a few shared [`ShardedHistogram`]s.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest value the histograms hold, in µs (60 s); larger values saturate.
pub const MAX_RECORDED_US: u64 = 60_000_000;

// ---------------------------------------------------------------------------------------
// Unique tempos
// ---------------------------------------------------------------------------------------

/// Tempos are sent on a 0.001 BPM grid from 20.001 to 400.000, skipping 120.000 (the
/// default tempo of a new session, which `play` and leader changes broadcast too).
const TEMPO_MIN_MILLI: u64 = 20_000;
const TEMPO_MAX_MILLI: u64 = 400_000;
const DEFAULT_TEMPO_OFFSET: u64 = 120_000 - TEMPO_MIN_MILLI;

/// How many distinct tempos [`bench_tempo`] can hand out: one run may send at most this
/// many `set_tempo`s, so every one is unique and every one changes the state.
pub const TEMPO_CAPACITY: u64 = TEMPO_MAX_MILLI - TEMPO_MIN_MILLI - 1;

/// The tempo of the `index`-th `set_tempo` of a run (from 0), `None` past
/// [`TEMPO_CAPACITY`]. Distinct indexes give distinct tempos, all valid (20..=400), never
/// 120, and each is the nearest double to a decimal with three places, so it survives a
/// JSON round trip exactly.
pub fn bench_tempo(index: u64) -> Option<f64> {
    if index >= TEMPO_CAPACITY {
        return None;
    }
    let mut offset = index + 1;
    if offset >= DEFAULT_TEMPO_OFFSET {
        offset += 1;
    }
    Some((TEMPO_MIN_MILLI + offset) as f64 / 1000.0)
}

/// The index whose [`bench_tempo`] is `tempo`, `None` for a tempo the scheme never sends
/// (off the grid, out of range, or the default 120).
pub fn bench_tempo_index(tempo: f64) -> Option<u64> {
    if !tempo.is_finite() {
        return None;
    }
    let milli = (tempo * 1000.0).round();
    if (milli / 1000.0 - tempo).abs() > 1e-9 || milli < 0.0 {
        return None;
    }
    let offset = (milli as u64).checked_sub(TEMPO_MIN_MILLI)?;
    match offset {
        0 => None,
        o if o < DEFAULT_TEMPO_OFFSET => Some(o - 1),
        DEFAULT_TEMPO_OFFSET => None,
        o if o <= TEMPO_MAX_MILLI - TEMPO_MIN_MILLI => Some(o - 2),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Tick sequences
// ---------------------------------------------------------------------------------------

/// What one tick told about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickObservation {
    /// Ticks skipped in `seq` just before this one.
    pub missing: u64,
    /// `seq` did not increase (a duplicate or a restarted numbering; becomes the baseline).
    pub out_of_order: bool,
    /// `|arrival delta - step * interval|` in µs; `None` for the first tick and after an
    /// out-of-order one.
    pub jitter_us: Option<u64>,
}

/// Per-connection `seq` and arrival bookkeeping: 32 bytes, so 10,000 of them are nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqTracker {
    last_seq: Option<u64>,
    last_at: Option<Instant>,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a tick with sequence number `seq` that arrived at `at`; the server sends
    /// one every `interval`. The expected gap is `interval` times the `seq` step, so a
    /// dropped tick counts as missing, not as jitter.
    pub fn observe(&mut self, seq: u64, at: Instant, interval: Duration) -> TickObservation {
        let mut obs = TickObservation {
            missing: 0,
            out_of_order: false,
            jitter_us: None,
        };
        match self.last_seq {
            Some(last) if seq > last => {
                let step = seq - last;
                obs.missing = step - 1;
                if let Some(prev) = self.last_at {
                    let delta = at.saturating_duration_since(prev).as_micros() as i128;
                    let expected = interval.as_micros() as i128 * i128::from(step);
                    obs.jitter_us =
                        Some(u64::try_from((delta - expected).abs()).unwrap_or(u64::MAX));
                }
            }
            Some(_) => obs.out_of_order = true,
            None => {}
        }
        self.last_seq = Some(seq);
        self.last_at = Some(at);
        obs
    }
}

// ---------------------------------------------------------------------------------------
// Histograms and percentiles
// ---------------------------------------------------------------------------------------

/// An empty µs histogram, 1 µs to [`MAX_RECORDED_US`], 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_RECORDED_US, 3).expect("static bounds are valid")
}

/// A histogram that many tasks record into: one `Mutex<Histogram>` per shard, picked by
/// the caller's hint (its connection number), so threads rarely meet on the same lock.
/// A std `Mutex`: held for one `record`, never across an `.await`.
#[derive(Debug)]
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(histogram()))
                .collect(),
        }
    }

    /// Records `value_us` (saturating at [`MAX_RECORDED_US`]).
    pub fn record(&self, hint: usize, value_us: u64) {
        let shard = &self.shards[hint % self.shards.len()];
        let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(value_us.min(MAX_RECORDED_US));
    }

    /// All shards added up.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// Percentiles of one distribution, in µs, as the JSON report shows them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    /// `None` for an empty histogram. Quantiles are HDR's: exact to 3 significant digits.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Audio relay (Music Share)
// ---------------------------------------------------------------------------------------

/// How many 6-digit share session ids there are.
pub const SHARE_ID_SPACE: u64 = 1_000_000;

/// splitmix64: a fixed, well-mixed permutation of `u64`, so nearby seeds (pids, clocks)
/// start far apart.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` distinct 6-digit share session ids for one run: consecutive numbers (wrapping
/// past 999999) from a start derived from `seed` (the bench's pid, clock and run number).
/// Distinct as long as `count` is at most [`SHARE_ID_SPACE`].
pub fn share_ids(seed: u64, count: usize) -> Vec<String> {
    let start = mix(seed) % SHARE_ID_SPACE;
    (0..count as u64)
        .map(|i| format!("{:06}", (start + i) % SHARE_ID_SPACE))
        .collect()
}

/// One sharer's real-time schedule: chunk `k` is due at `phase + k * period` after the
/// start (absolute deadlines, so a late send does not delay the ones after it), for the
/// chunks due before `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSchedule {
    pub period: Duration,
    pub phase: Duration,
    pub duration: Duration,
}

impl ChunkSchedule {
    /// When chunk `k` is due, after the start.
    pub fn due(&self, k: u64) -> Duration {
        self.phase + self.period * u32::try_from(k).unwrap_or(u32::MAX)
    }

    /// How many chunks are due before `duration`.
    pub fn count(&self) -> u64 {
        if self.phase >= self.duration || self.period.is_zero() {
            return 0;
        }
        let span = (self.duration - self.phase).as_nanos();
        span.div_ceil(self.period.as_nanos()) as u64
    }

    /// Phase of sharer `index` of `sharers`: spread evenly over one period, so that the
    /// sessions do not all post at the same instant (real sharers are not synchronized).
    pub fn spread(period: Duration, index: u64, sharers: u64) -> Duration {
        period.mul_f64(index as f64 / sharers.max(1) as f64)
    }
}

/// Frames (one sample per channel) in a chunk of `chunk_ms` at `sample_rate`, rounded to
/// the nearest whole frame.
pub fn frames_per_chunk(sample_rate: u32, chunk_ms: u32) -> u64 {
    (u64::from(sample_rate) * u64::from(chunk_ms) + 500) / 1000
}

/// A 440 Hz sine, interleaved over `channels`, as little-endian f32 (`i16 == false`) or
/// i16 samples: real-looking PCM (it does not compress to nothing).
pub fn sine_pcm(frames: u64, channels: u16, sample_rate: u32, i16: bool) -> Vec<u8> {
    let bytes = if i16 { 2 } else { 4 };
    let mut out = Vec::with_capacity(frames as usize * usize::from(channels) * bytes);
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(sample_rate.max(1));
    for f in 0..frames {
        let v = (step * f as f64).sin() * 0.5;
        for _ in 0..channels {
            if i16 {
                out.extend_from_slice(&((v * 32767.0) as i16).to_le_bytes());
            } else {
                out.extend_from_slice(&(v as f32).to_le_bytes());
            }
        }
    }
    out
}

/// The body of `POST /api/share/{id}/audio`, as the seed's client sends it: base64 of the
/// f32 samples, and an integer `timestamp` (ms).
pub fn rest_chunk_body(
    data_base64: &str,
    sample_rate: u32,
    channels: u16,
    timestamp_ms: u64,
    sequence: i64,
) -> String {
    let mut body = String::with_capacity(data_base64.len() + 120);
    body.push_str("{\"data\":\"");
    body.push_str(data_base64);
    body.push_str(&format!(
        "\",\"sampleRate\":{sample_rate},\"channels\":{channels},\"timestamp\":{timestamp_ms},\"sequenceNumber\":{sequence}}}"
    ));
    body
}

/// Bytes that the (padded, standard) base64 text `b64` decodes to, without decoding it.
pub fn base64_decoded_len(b64: &str) -> usize {
    let padding = b64.bytes().rev().take(2).filter(|&b| b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(padding)
}

/// What [`SeqSet::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqInsert {
    /// First time seen; `out_of_order` when a higher sequence came before it.
    New {
        out_of_order: bool,
    },
    Duplicate,
    /// Negative, or beyond the capacity: not a sequence this run sent.
    OutOfRange,
}

/// Which sequence numbers `0..capacity` one stream has seen (a bitset: 13 KB for an hour
/// of 100 ms chunks), to count unique deliveries, duplicates and what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    bits: Vec<u64>,
    capacity: u64,
    len: u64,
    highest: Option<u64>,
}

impl SeqSet {
    pub fn new(capacity: u64) -> Self {
        Self {
            bits: vec![0; capacity.div_ceil(64) as usize],
            capacity,
            len: 0,
            highest: None,
        }
    }

    pub fn insert(&mut self, seq: i64) -> SeqInsert {
        let Ok(seq) = u64::try_from(seq) else {
            return SeqInsert::OutOfRange;
        };
        if seq >= self.capacity {
            return SeqInsert::OutOfRange;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits[word] & bit != 0 {
            return SeqInsert::Duplicate;
        }
        self.bits[word] |= bit;
        self.len += 1;
        let out_of_order = self.highest.is_some_and(|h| h > seq);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        SeqInsert::New { out_of_order }
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq < self.capacity && self.bits[(seq / 64) as usize] & (1u64 << (seq % 64)) != 0
    }

    /// Distinct sequences seen.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many sequences of `expected` this set lacks.
    pub fn missing_from(&self, expected: &SeqSet) -> u64 {
        expected
            .bits
            .iter()
            .enumerate()
            .map(|(i, &want)| {
                let have = self.bits.get(i).copied().unwrap_or(0);
                u64::from((want & !have).count_ones())
            })
            .sum()
    }
}

/// When each chunk of each session was sent, for latency by `(session, sequence)`: one
/// atomic per chunk, written once by the sharer just before sending, read by every
/// receiver (one process, one monotonic clock).
#[derive(Debug)]
pub struct SendBook {
    base: Instant,
    per_session: u64,
    /// ns since `base`, plus one (0 = not sent).
    slots: Box<[std::sync::atomic::AtomicU64]>,
}

impl SendBook {
    pub fn new(sessions: usize, per_session: u64) -> Self {
        let n = sessions as u64 * per_session;
        Self {
            base: Instant::now(),
            per_session,
            slots: (0..n)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, session: usize, seq: i64) -> Option<&std::sync::atomic::AtomicU64> {
        let seq = u64::try_from(seq).ok().filter(|&s| s < self.per_session)?;
        self.slots
            .get(usize::try_from(session as u64 * self.per_session + seq).ok()?)
    }

    /// Stamps chunk `seq` of `session` as sent at `at`. False when out of range.
    pub fn mark(&self, session: usize, seq: i64, at: Instant) -> bool {
        let Some(slot) = self.slot(session, seq) else {
            return false;
        };
        let ns = at.saturating_duration_since(self.base).as_nanos() as u64 + 1;
        slot.store(ns, std::sync::atomic::Ordering::Release);
        true
    }

    /// When chunk `seq` of `session` was sent, if it was.
    pub fn sent_at(&self, session: usize, seq: i64) -> Option<Instant> {
        let ns = self
            .slot(session, seq)?
            .load(std::sync::atomic::Ordering::Acquire);
        (ns != 0).then(|| self.base + Duration::from_nanos(ns - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tempos_are_unique_valid_and_round_trip_through_json() {
        let mut seen = std::collections::HashSet::new();
        let mut prev = None;
        for index in 0..TEMPO_CAPACITY {
            let tempo = bench_tempo(index).unwrap();
            assert!((20.0..=400.0).contains(&tempo), "{index}: {tempo}");
            assert_ne!(tempo, 120.0);
            assert_ne!(Some(tempo), prev, "consecutive tempos must differ");
            assert!(seen.insert(tempo.to_bits()), "{index}: {tempo} repeated");
            assert_eq!(bench_tempo_index(tempo), Some(index));
            prev = Some(tempo);
        }
        assert_eq!(bench_tempo(TEMPO_CAPACITY), None);
        assert_eq!(bench_tempo(0), Some(20.001));
        assert_eq!(bench_tempo(TEMPO_CAPACITY - 1), Some(400.0));
        // Through the wire format and back, exactly.
        for index in [0, 1, 99_998, 99_999, 123_456, TEMPO_CAPACITY - 1] {
            let tempo = bench_tempo(index).unwrap();
            let wire = serde_json::to_string(&tempo).unwrap();
            assert!(wire.len() <= 7, "{wire}");
            let back: f64 = serde_json::from_str(&wire).unwrap();
            assert_eq!(bench_tempo_index(back), Some(index), "{wire}");
        }
    }

    #[test]
    fn foreign_tempos_have_no_index() {
        for tempo in [120.0, 20.0, 19.999, 400.001, 128.0005, f64::NAN, -5.0] {
            assert_eq!(bench_tempo_index(tempo), None, "{tempo}");
        }
        // 128 is on the grid: a foreign sender could collide, so runs use fresh sessions.
        assert!(bench_tempo_index(128.0).is_some());
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn seq_gaps_regressions_and_jitter() {
        let start = Instant::now();
        let iv = Duration::from_millis(16);
        let mut t = SeqTracker::new();
        let o = t.observe(10, at(start, 0), iv);
        assert_eq!((o.missing, o.out_of_order, o.jitter_us), (0, false, None));
        let o = t.observe(11, at(start, 18), iv);
        assert_eq!((o.missing, o.jitter_us), (0, Some(2_000)));
        // 12 and 13 lost: 48 ms expected, 46 seen.
        let o = t.observe(14, at(start, 64), iv);
        assert_eq!((o.missing, o.jitter_us), (2, Some(2_000)));
        let o = t.observe(14, at(start, 65), iv);
        assert!(o.out_of_order);
        assert_eq!((o.missing, o.jitter_us), (0, None));
        // Restarted numbering: a new baseline, then normal accounting.
        let o = t.observe(3, at(start, 80), iv);
        assert!(o.out_of_order);
        let o = t.observe(4, at(start, 96), iv);
        assert_eq!(
            (o.missing, o.out_of_order, o.jitter_us),
            (0, false, Some(0))
        );
    }

    #[test]
    fn percentiles_from_shards() {
        let h = ShardedHistogram::new(4);
        assert_eq!(LatencySummary::of(&h.merged()), None);
        for v in 1..=1000u64 {
            h.record(v as usize, v);
        }
        h.record(0, u64::MAX); // saturates at the bound
        let s = LatencySummary::of(&h.merged()).unwrap();
        assert_eq!(s.count, 1001);
        assert_eq!(s.min, 1);
        assert_eq!(s.p50, 501);
        assert_eq!(s.p90, 901);
        assert_eq!(s.p99, 991);
        assert_eq!(s.p999, 1000);
        assert!(s.max >= MAX_RECORDED_US && s.max < MAX_RECORDED_US + MAX_RECORDED_US / 1000);
    }
    #[test]
    fn share_ids_are_distinct_six_digit_and_wrap() {
        for seed in [0, 1, 42, u64::MAX] {
            let ids = share_ids(seed, 50);
            assert_eq!(ids.len(), 50);
            let set: std::collections::HashSet<_> = ids.iter().collect();
            assert_eq!(set.len(), 50, "{seed}");
            assert!(ids
                .iter()
                .all(|id| id.len() == 6 && id.bytes().all(|b| b.is_ascii_digit())));
        }
        assert_eq!(share_ids(7, 3), share_ids(7, 3), "deterministic");
        assert_ne!(share_ids(7, 1), share_ids(8, 1));
        // The whole space, wrapping past 999999: still all distinct.
        let all = share_ids(3, SHARE_ID_SPACE as usize);
        let set: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), SHARE_ID_SPACE as usize);
    }

    #[test]
    fn chunk_schedules_use_absolute_deadlines() {
        let s = ChunkSchedule {
            period: Duration::from_millis(100),
            phase: Duration::ZERO,
            duration: Duration::from_secs(10),
        };
        assert_eq!(s.count(), 100);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(99), Duration::from_millis(9900));
        let late = ChunkSchedule {
            phase: Duration::from_millis(50),
            ..s
        };
        assert_eq!(late.count(), 100, "50, 150, ..., 9950");
        assert_eq!(late.due(1), Duration::from_millis(150));
        let odd = ChunkSchedule {
            period: Duration::from_millis(30),
            ..s
        };
        assert_eq!(odd.count(), 334, "0, 30, ..., 9990");
        assert_eq!(
            ChunkSchedule {
                phase: Duration::from_secs(11),
                ..s
            }
            .count(),
            0
        );
        assert_eq!(
            ChunkSchedule::spread(Duration::from_millis(100), 3, 10),
            Duration::from_millis(30)
        );
        assert_eq!(
            ChunkSchedule::spread(Duration::from_millis(100), 0, 0),
            Duration::ZERO
        );
    }

    #[test]
    fn pcm_sizes_and_rest_bodies() {
        assert_eq!(frames_per_chunk(44_100, 100), 4410);
        assert_eq!(frames_per_chunk(44_100, 93), 4101);
        assert_eq!(frames_per_chunk(48_000, 20), 960);
        let f = sine_pcm(4410, 2, 44_100, false);
        assert_eq!(f.len(), 4410 * 2 * 4);
        let first: Vec<f32> = f
            .chunks_exact(4)
            .take(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(first[0], 0.0);
        assert_eq!(first[0], first[1], "interleaved: both channels alike");
        assert!(first[2] > 0.0 && first[2] < 0.5);
        assert_eq!(sine_pcm(10, 1, 8000, true).len(), 20);

        let body = rest_chunk_body("AAAAAA==", 44_100, 2, 1_732_190_000_123, 42);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"], "AAAAAA==");
        assert_eq!(v["sampleRate"], 44_100);
        assert_eq!(v["channels"], 2);
        assert_eq!(v["timestamp"], 1_732_190_000_123u64);
        assert_eq!(v["sequenceNumber"], 42);

        for n in 0..10usize {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
            assert_eq!(base64_decoded_len(&b64), n, "{b64}");
        }
    }

    #[test]
    fn seq_sets_count_unique_duplicates_and_missing() {
        let mut s = SeqSet::new(130);
        assert!(s.is_empty());
        assert_eq!(
            s.insert(0),
            SeqInsert::New {
                out_of_order: false
            }
        );
        assert_eq!(
            s.insert(5),
            SeqInsert::New {
                out_of_order: false
            }
        );
        assert_eq!(s.insert(3), SeqInsert::New { out_of_order: true });
        assert_eq!(s.insert(5), SeqInsert::Duplicate);
        assert_eq!(
            s.insert(129),
            SeqInsert::New {
                out_of_order: false
            }
        );
        assert_eq!(s.insert(130), SeqInsert::OutOfRange);
        assert_eq!(s.insert(-1), SeqInsert::OutOfRange);
        assert_eq!(s.len(), 4);
        assert!(s.contains(129) && !s.contains(128) && !s.contains(1000));

        let mut sent = SeqSet::new(130);
        for seq in 0..=129 {
            sent.insert(seq);
        }
        assert_eq!(s.missing_from(&sent), 126);
        assert_eq!(sent.missing_from(&s), 0);
        assert_eq!(SeqSet::new(0).missing_from(&sent), 130);
    }

    #[test]
    fn send_book_keys_by_session_and_sequence() {
        let book = SendBook::new(2, 10);
        let t = Instant::now() + Duration::from_millis(5);
        assert_eq!(book.sent_at(1, 3), None);
        assert!(book.mark(1, 3, t));
        assert!(!book.mark(1, 10, t), "beyond the session's chunks");
        assert!(!book.mark(0, -1, t));
        let back = book.sent_at(1, 3).unwrap();
        assert!(back <= t && t - back < Duration::from_micros(1));
        assert_eq!(book.sent_at(0, 3), None, "another session");
        assert_eq!(book.sent_at(2, 0), None, "no such session");
    }
}

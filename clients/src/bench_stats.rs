//! Pure logic behind `bandsync-bench`, kept in the library so it is unit-tested and usable
//! from other tools: the unique-tempo scheme that ties a delivery to its send, per-stream
//! `seq` accounting, and percentile summaries.
//!
//! Why not [`crate::TickStats`] per connection: it holds two HDR histograms (about 280 KiB)
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
}

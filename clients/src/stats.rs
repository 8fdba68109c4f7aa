//! Statistics over received `scroll_tick`s: how many, how many lost, how regular, how late.
//!
//! - *Missing*: gaps in `seq` (the server numbers ticks per session, +1 each).
//! - *Jitter*: `|arrival delta - expected delta|`, where the expected delta is the tick
//!   interval times the `seq` step, so a dropped tick does not count as jitter twice.
//!   Arrival times are monotonic [`Instant`]s, immune to wall-clock steps.
//! - *Lag*: `receive wall clock + clock offset - serverTime`: how long after the server
//!   stamped a tick the client had it. It is only as good as the offset (its error bound
//!   is half the heartbeat round trip), so negative values are possible and counted apart.
//!
//! Percentiles come from HDR histograms in microseconds: constant memory however long a
//! run lasts, 3 significant digits.

use hdrhistogram::Histogram;
use std::fmt;
use std::time::Instant;

/// Largest value the histograms hold, in µs (60 s); larger values saturate.
const MAX_RECORDED_US: u64 = 60_000_000;

/// Running tick statistics for one stream.
#[derive(Debug, Clone)]
pub struct TickStats {
    interval_ms: f64,
    received: u64,
    missing: u64,
    out_of_order: u64,
    last_seq: Option<u64>,
    last_arrival: Option<Instant>,
    jitter_us: Histogram<u64>,
    lag_us: Histogram<u64>,
    negative_lag: u64,
    min_lag_ms: f64,
}

/// p50, p99 and max of one distribution, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The state of a [`TickStats`] at one moment, for printing or asserting.
#[derive(Debug, Clone, PartialEq)]
pub struct TickSummary {
    pub received: u64,
    /// Ticks skipped in `seq` (lost or dropped by the server for this client).
    pub missing: u64,
    /// Ticks whose `seq` did not increase (a duplicate, or the session restarted).
    pub out_of_order: u64,
    /// `None` until two consecutive ticks arrived.
    pub jitter_ms: Option<Percentiles>,
    /// `None` when no tick had a clock offset to compare with.
    pub lag_ms: Option<Percentiles>,
    /// Lags below zero (offset error larger than the true lag); recorded as 0 above.
    pub negative_lag: u64,
    /// The smallest lag seen, possibly negative.
    pub min_lag_ms: Option<f64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_RECORDED_US, 3).expect("static bounds are valid")
}

fn ms_to_us(ms: f64) -> u64 {
    // `as` saturates for floats: negative and NaN become 0, huge values u64::MAX.
    (ms * 1000.0).round() as u64
}

fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    let ms = |us: u64| us as f64 / 1000.0;
    (!h.is_empty()).then(|| Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    })
}

impl TickStats {
    /// Statistics for ticks expected every `interval_ms` (the server's
    /// `SCROLL_TICK_INTERVAL`, 16 by default).
    pub fn new(interval_ms: f64) -> Self {
        Self {
            interval_ms,
            received: 0,
            missing: 0,
            out_of_order: 0,
            last_seq: None,
            last_arrival: None,
            jitter_us: histogram(),
            lag_us: histogram(),
            negative_lag: 0,
            min_lag_ms: f64::INFINITY,
        }
    }

    /// Records one tick: its `seq` and `serverTime`, when it arrived (`received_at`
    /// monotonic, `wall_ms` wall clock), and the clock offset if one is known.
    ///
    /// A `seq` that does not increase counts as out of order and becomes the new baseline:
    /// one connection delivers in order, so it means the numbering restarted (a new
    /// session or server), and gaps are then counted from there.
    pub fn record(
        &mut self,
        seq: u64,
        server_time: f64,
        received_at: Instant,
        wall_ms: f64,
        offset: Option<f64>,
    ) {
        self.received += 1;
        match self.last_seq {
            Some(last) if seq > last => {
                let step = seq - last;
                self.missing += step - 1;
                if let Some(prev) = self.last_arrival {
                    let delta_ms = received_at.saturating_duration_since(prev).as_secs_f64() * 1e3;
                    let expected_ms = step as f64 * self.interval_ms;
                    self.jitter_us
                        .saturating_record(ms_to_us((delta_ms - expected_ms).abs()));
                }
            }
            Some(_) => self.out_of_order += 1,
            None => {}
        }
        self.last_seq = Some(seq);
        self.last_arrival = Some(received_at);

        if let Some(offset) = offset {
            let lag_ms = wall_ms + offset - server_time;
            if lag_ms.is_finite() {
                if lag_ms < 0.0 {
                    self.negative_lag += 1;
                }
                self.min_lag_ms = self.min_lag_ms.min(lag_ms);
                self.lag_us.saturating_record(ms_to_us(lag_ms));
            }
        }
    }

    /// Forgets the previous arrival time, so the next tick records no jitter. Call it when
    /// the tick stream pauses on purpose (a `pause`, then `play` much later), which is not
    /// jitter. Sequence accounting continues.
    pub fn break_arrivals(&mut self) {
        self.last_arrival = None;
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn summary(&self) -> TickSummary {
        TickSummary {
            received: self.received,
            missing: self.missing,
            out_of_order: self.out_of_order,
            jitter_ms: percentiles(&self.jitter_us),
            lag_ms: percentiles(&self.lag_us),
            negative_lag: self.negative_lag,
            min_lag_ms: self.min_lag_ms.is_finite().then_some(self.min_lag_ms),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.p50, self.p99, self.max
        )
    }
}

impl fmt::Display for TickSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ticks received: {}, missing seq: {}, out of order: {}",
            self.received, self.missing, self.out_of_order
        )?;
        match &self.jitter_ms {
            Some(p) => writeln!(f, "inter-arrival jitter: {p}")?,
            None => writeln!(f, "inter-arrival jitter: n/a (fewer than 2 ticks)")?,
        }
        match (&self.lag_ms, self.min_lag_ms) {
            (Some(p), Some(min)) => write!(
                f,
                "tick lag: {p}, min {min:.3} ms ({} negative, clamped to 0)",
                self.negative_lag
            ),
            _ => write!(f, "tick lag: n/a (no clock offset)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn counts_gaps_and_regressions() {
        let start = Instant::now();
        let mut s = TickStats::new(16.0);
        // 3 and 4 lost, 6 repeated, then the session restarted its numbering.
        for (i, seq) in [1, 2, 5, 6, 6, 0, 1].into_iter().enumerate() {
            s.record(seq, 0.0, at(start, i as u64 * 16), 0.0, None);
        }
        let sum = s.summary();
        assert_eq!(sum.received, 7);
        assert_eq!(sum.missing, 2, "3 and 4 skipped");
        assert_eq!(sum.out_of_order, 2, "the repeated 6 and the restart at 0");
        assert_eq!(sum.lag_ms, None);
    }

    #[test]
    fn jitter_accounts_for_skipped_ticks() {
        let start = Instant::now();
        let mut s = TickStats::new(16.0);
        s.record(1, 0.0, at(start, 0), 0.0, None);
        s.record(2, 0.0, at(start, 18), 0.0, None); // 2 ms late
        s.record(4, 0.0, at(start, 50), 0.0, None); // 32 expected, 32 seen: 0
        s.record(5, 0.0, at(start, 60), 0.0, None); // 6 ms early
        let j = s.summary().jitter_ms.unwrap();
        assert!((j.max - 6.0).abs() < 0.01, "{j:?}");
        assert!((j.p50 - 2.0).abs() < 0.01, "{j:?}");
    }

    #[test]
    fn break_arrivals_skips_one_jitter_sample() {
        let start = Instant::now();
        let mut s = TickStats::new(16.0);
        s.record(1, 0.0, at(start, 0), 0.0, None);
        s.break_arrivals();
        s.record(2, 0.0, at(start, 10_000), 0.0, None);
        assert_eq!(s.summary().jitter_ms, None);
        s.record(3, 0.0, at(start, 10_016), 0.0, None);
        assert_eq!(s.summary().jitter_ms.unwrap().max, 0.0);
    }

    #[test]
    fn lag_uses_the_offset_and_counts_negatives() {
        let start = Instant::now();
        let mut s = TickStats::new(16.0);
        // Local clock 100 ms behind the server.
        s.record(1, 1_000.0, start, 905.0, Some(100.0)); // lag 5
        s.record(2, 1_016.0, at(start, 16), 913.0, Some(100.0)); // lag -3
        let sum = s.summary();
        let lag = sum.lag_ms.unwrap();
        assert!((lag.max - 5.0).abs() < 0.01);
        assert_eq!(sum.negative_lag, 1);
        assert!((sum.min_lag_ms.unwrap() + 3.0).abs() < 1e-9);
        let text = sum.to_string();
        assert!(text.contains("ticks received: 2"), "{text}");
        assert!(text.contains("1 negative"), "{text}");
    }
}

//! Sampling a long run (`mixed --sample-every`, the soak): the server's resident memory and
//! open file descriptors, and the latency of the interval just ended, at the start, every
//! `every`, and at the end. A leak shows as growth between the first and last samples.
//!
//! Interval percentiles come from the difference between two snapshots of the run's
//! cumulative latency histogram, so each sample describes its own interval, not the run
//! so far (which would hide a late slowdown behind the early minutes).

use crate::procfs::{read_fd_count, read_rss_kib};
use crate::recorder::Recorder;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the window opened.
    pub t_s: f64,
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
    /// Deliveries and tempo latency percentiles (µs) since the previous sample.
    pub deliveries: u64,
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    pub latency_max_us: Option<u64>,
    /// Ticks received since the previous sample, and seq gaps among them.
    pub ticks: u64,
    pub missing_seq: u64,
}

/// Takes samples from `start` every `every` until `until` (one at each end), and returns
/// them. Runs beside the scenario; reads only the recorder and `/proc`.
pub async fn sample(
    rec: Arc<Recorder>,
    pid: Option<u32>,
    start: Instant,
    every: Duration,
    until: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut prev = rec.latency.merged();
    let (mut prev_ticks, mut prev_missing) = (0, 0);
    let mut at = start;
    loop {
        tokio::time::sleep_until(at).await;
        let now = rec.latency.merged();
        let interval = difference(&now, &prev);
        let (ticks, missing) = (rec.ticks.load(Relaxed), rec.missing.load(Relaxed));
        samples.push(Sample {
            t_s: (Instant::now() - start).as_secs_f64().round(),
            rss_kib: pid.and_then(|p| read_rss_kib(Some(p))),
            fds: pid.and_then(read_fd_count),
            deliveries: interval.len(),
            latency_p50_us: (!interval.is_empty()).then(|| interval.value_at_quantile(0.5)),
            latency_p99_us: (!interval.is_empty()).then(|| interval.value_at_quantile(0.99)),
            latency_max_us: (!interval.is_empty()).then(|| interval.max()),
            ticks: ticks - prev_ticks,
            missing_seq: missing - prev_missing,
        });
        (prev, prev_ticks, prev_missing) = (now, ticks, missing);
        if at >= until {
            return samples;
        }
        at = (at + every).min(until);
    }
}

/// The server's resident memory (KiB) and open file descriptors before and after.
#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub rss_kib_before: Option<u64>,
    pub rss_kib_after: Option<u64>,
    pub fds_before: Option<u64>,
    pub fds_after: Option<u64>,
}

impl Resources {
    /// One line for the summary.
    pub fn human(&self) -> String {
        let show = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        format!(
            "   server RSS {} -> {} KiB, open fds {} -> {}\n",
            show(self.rss_kib_before),
            show(self.rss_kib_after),
            show(self.fds_before),
            show(self.fds_after)
        )
    }

    pub fn between(before: (Option<u64>, Option<u64>), after: (Option<u64>, Option<u64>)) -> Self {
        Self {
            rss_kib_before: before.0,
            rss_kib_after: after.0,
            fds_before: before.1,
            fds_after: after.1,
        }
    }
}

/// A line per sample for the summary.
pub fn human(samples: &[Sample]) -> String {
    let mut out = String::new();
    for s in samples {
        let _ = writeln!(
            out,
            "   t={:>5}s RSS {} KiB, fds {}, latency p99 {} µs ({} deliveries), missing seq {}",
            s.t_s,
            s.rss_kib.map_or("?".into(), |v| v.to_string()),
            s.fds.map_or("?".into(), |v| v.to_string()),
            s.latency_p99_us.map_or("n/a".into(), |v| v.to_string()),
            s.deliveries,
            s.missing_seq
        );
    }
    out
}

/// `now - before` for two snapshots of one growing histogram.
fn difference(now: &Histogram<u64>, before: &Histogram<u64>) -> Histogram<u64> {
    let mut d = now.clone();
    if d.subtract(before).is_err() {
        // Not a snapshot of the same histogram: report the whole instead of a wrong part.
        return now.clone();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_bench::bench_stats::histogram;

    #[test]
    fn an_interval_is_what_the_histogram_gained_since_the_last_sample() {
        let mut h = histogram();
        for v in 1..=100 {
            h.record(v).unwrap();
        }
        let before = h.clone();
        for _ in 0..100 {
            h.record(5_000).unwrap();
        }
        let d = difference(&h, &before);
        assert_eq!(d.len(), 100);
        assert!(d.min() >= 4_990, "the early fast ones are gone");
        assert!(
            h.value_at_quantile(0.5) < 4_990,
            "the cumulative view hides it"
        );
    }
}

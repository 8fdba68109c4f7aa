//! The figures the monitor evaluates, read from what the server already records: the
//! `fanout_latency_seconds` histogram and the counters of `src/metrics.rs`, plus resident
//! memory and CPU time from `/proc`. Nothing here is on a hot path: the engine and the
//! connections keep updating their atomics as before, and once per `METRICS_INTERVAL` the
//! [`Sampler`] takes differences from its previous look.

use super::alerts::{AlertKind, Reading};
use super::config::OpsConfig;
use crate::metrics::Metrics;
use prometheus::core::Collector;
use prometheus::IntCounterVec;
use std::time::Instant;

/// Remembers the totals of the previous evaluation, to report each interval on its own.
pub struct Sampler {
    /// Cumulative counts of `fanout_latency_seconds`, one per finite bucket, then the total.
    latency: Vec<u64>,
    connection_errors: u64,
    violations: u64,
    /// Process CPU seconds and when they were read.
    cpu: Option<(f64, Instant)>,
    /// CPUs this process may use: the 100% of `ALERT_CPU_PERCENT`.
    cpus: f64,
}

impl Sampler {
    /// Takes the baselines, so the first evaluation covers one interval from now.
    pub fn new(metrics: &Metrics) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Sampler {
            latency: latency_counts(metrics).1,
            connection_errors: connection_errors(metrics),
            violations: metrics.rate_limit_violations.get(),
            cpu: process_cpu_seconds().map(|s| (s, Instant::now())),
            cpus: cpus as f64,
        }
    }

    /// CPUs the process may use (`available_parallelism`, which follows cgroup quotas).
    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    /// One reading per alert, covering the time since the previous call.
    pub fn sample(&mut self, metrics: &Metrics, config: &OpsConfig) -> [Reading; 5] {
        let (bounds, latency) = latency_counts(metrics);
        let p99 = interval_quantile(&bounds, &self.latency, &latency, 0.99);
        self.latency = latency;
        let errors = connection_errors(metrics);
        let new_errors = errors.saturating_sub(self.connection_errors);
        self.connection_errors = errors;
        let violations = metrics.rate_limit_violations.get();
        let new_violations = violations.saturating_sub(self.violations);
        self.violations = violations;
        let cpu = self.cpu_percent();
        let memory = crate::http::resident_mb();
        [
            Reading {
                kind: AlertKind::Latency,
                value: p99.map(|s| s * 1000.0),
                threshold: config.latency_threshold_ms(),
            },
            Reading {
                kind: AlertKind::Memory,
                // 0 means /proc could not be read: no figure, not "no memory".
                value: (memory > 0.0).then_some(memory),
                threshold: config.alert_memory_mb as f64,
            },
            Reading {
                kind: AlertKind::Cpu,
                value: cpu,
                threshold: config.alert_cpu_percent,
            },
            Reading {
                kind: AlertKind::ConnectionErrors,
                value: Some(new_errors as f64),
                threshold: config.alert_connection_errors as f64,
            },
            Reading {
                kind: AlertKind::RateLimitViolations,
                value: Some(new_violations as f64),
                threshold: config.alert_rate_limit_violations as f64,
            },
        ]
    }

    /// CPU used since the previous call, as a percentage of the CPUs available.
    fn cpu_percent(&mut self) -> Option<f64> {
        let now = Instant::now();
        let seconds = process_cpu_seconds()?;
        let (before, then) = self.cpu.replace((seconds, now))?;
        let wall = now.duration_since(then).as_secs_f64();
        (wall > 0.0).then(|| (seconds - before).max(0.0) / wall / self.cpus * 100.0)
    }
}

/// Connection errors so far: connections refused or failed at accept, refused at
/// `MAX_CONNECTIONS`, disconnected as slow consumers, and WebSockets closed by the frame
/// guard. Not the HTTP header and idle timeouts: closing an idle keep-alive connection is
/// routine, not an error. Not `oversize` refusals: that socket stays open.
pub fn connection_errors(metrics: &Metrics) -> u64 {
    metrics.accept_errors.get()
        + metrics.connections_rejected.get()
        + metrics.slow_client_disconnects.get()
        + sum(&metrics.connections_refused, &[])
        + sum(&metrics.ws_messages_refused, &["oversize"])
}

/// The sum of a counter vector's series whose single label is not in `except`.
fn sum(vec: &IntCounterVec, except: &[&str]) -> u64 {
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter(|m| m.get_label().iter().all(|l| !except.contains(&l.value())))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// The finite upper bounds of `fanout_latency_seconds` and its cumulative counts (one per
/// bound, then the total, which is the `+Inf` bucket).
fn latency_counts(metrics: &Metrics) -> (Vec<f64>, Vec<u64>) {
    let families = metrics.fanout_latency.collect();
    let Some(h) = families
        .first()
        .and_then(|f| f.get_metric().first())
        .map(|m| m.get_histogram())
    else {
        return (Vec::new(), Vec::new());
    };
    let bounds = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
    let mut counts: Vec<u64> = h
        .get_bucket()
        .iter()
        .map(|b| b.cumulative_count())
        .collect();
    counts.push(h.get_sample_count());
    (bounds, counts)
}

/// The `q` quantile of the observations made between two readings of a histogram's
/// cumulative counts, interpolated linearly within its bucket as Prometheus'
/// `histogram_quantile` does (so the server and the rules file agree). `Some(0)` when
/// nothing was observed; beyond the last finite bound, that bound (a lower estimate).
pub fn interval_quantile(bounds: &[f64], before: &[u64], after: &[u64], q: f64) -> Option<f64> {
    if after.len() != bounds.len() + 1 {
        return None;
    }
    let delta = |i: usize| after[i].saturating_sub(before.get(i).copied().unwrap_or(0));
    let total = delta(bounds.len());
    if total == 0 {
        return Some(0.0);
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &upper) in bounds.iter().enumerate() {
        let cumulative = delta(i);
        if cumulative as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let in_bucket = cumulative.saturating_sub(below);
            if in_bucket == 0 {
                return Some(upper);
            }
            let into = (rank - below as f64) / in_bucket as f64;
            return Some(lower + (upper - lower) * into);
        }
        below = cumulative;
    }
    bounds.last().copied()
}

/// User plus system CPU time of this process, seconds (`None` off Linux or without
/// `/proc`).
fn process_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        Some((stat.utime + stat.stime) as f64 / ticks)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantile_covers_only_the_interval_and_interpolates_within_a_bucket() {
        let bounds = [0.01, 0.1, 1.0];
        // Before: 1000 fast observations. During the interval: 100 more, 50 of them in
        // (0.01, 0.1] and 50 in (0.1, 1.0].
        let before = [1000, 1000, 1000, 1000];
        let after = [1000, 1050, 1100, 1100];
        let p99 = interval_quantile(&bounds, &before, &after, 0.99).unwrap();
        // Rank 99 of 100: 49 into the 50 of the (0.1, 1.0] bucket.
        assert!((p99 - (0.1 + 0.9 * 49.0 / 50.0)).abs() < 1e-9, "{p99}");
        let p50 = interval_quantile(&bounds, &before, &after, 0.5).unwrap();
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
    }

    #[test]
    fn an_empty_interval_is_zero_and_the_overflow_bucket_reports_the_last_bound() {
        let bounds = [0.01, 0.1];
        assert_eq!(
            interval_quantile(&bounds, &[5, 5, 5], &[5, 5, 5], 0.99),
            Some(0.0)
        );
        assert_eq!(
            interval_quantile(&bounds, &[0, 0, 0], &[0, 0, 10], 0.99),
            Some(0.1)
        );
        assert_eq!(interval_quantile(&bounds, &[], &[1, 2], 0.99), None);
    }

    #[test]
    fn the_sampler_reports_each_interval_on_its_own() {
        let metrics = Metrics::new();
        let config = crate::Config::defaults().ops;
        metrics.rate_limit_violations.inc_by(7);
        metrics.accept_errors.inc();
        let mut sampler = Sampler::new(&metrics);
        metrics.rate_limit_violations.inc_by(3);
        metrics
            .connections_refused
            .with_label_values(&["per_address"])
            .inc_by(2);
        metrics
            .ws_messages_refused
            .with_label_values(&["oversize"])
            .inc();
        metrics
            .ws_messages_refused
            .with_label_values(&["protocol"])
            .inc();
        metrics.fanout_latency.observe(0.3);
        let readings = sampler.sample(&metrics, &config);
        let value = |kind| readings.iter().find(|r| r.kind == kind).unwrap().value;
        assert_eq!(value(AlertKind::RateLimitViolations), Some(3.0));
        assert_eq!(value(AlertKind::ConnectionErrors), Some(3.0));
        let p99 = value(AlertKind::Latency).unwrap();
        assert!(p99 > 250.0 && p99 <= 500.0, "{p99}");
        assert!(value(AlertKind::Memory).unwrap() > 0.0);
        assert!(value(AlertKind::Cpu).unwrap() >= 0.0);
        let again = sampler.sample(&metrics, &config);
        assert_eq!(again[3].value, Some(0.0));
        assert_eq!(again[4].value, Some(0.0));
        assert_eq!(again[0].value, Some(0.0));
    }
}

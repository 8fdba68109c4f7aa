//! The monitor's options: how often it looks, and the threshold of each alert. The names
//! `SYNC_TARGET_LATENCY` and `METRICS_INTERVAL` (and their defaults) are the seed's; the
//! `ALERT_*` thresholds default to the seed's figures where it names one.

use clap::Args;
use std::time::Duration;

/// Shortest `METRICS_INTERVAL`: each evaluation reads `/proc` and the histograms, cheap but
/// not free, and alerts that flip every few milliseconds would help nobody.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest `METRICS_INTERVAL` (an hour): past it the alerts would be too late to act on.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Args)]
pub struct OpsConfig {
    /// Target fan-out latency, ms (may be fractional). The `latency` alert is raised when the
    /// p99 over one `METRICS_INTERVAL` exceeds twice this.
    #[arg(long, env = "SYNC_TARGET_LATENCY", default_value_t = 50.0)]
    pub sync_target_latency: f64,
    /// How often the monitor evaluates its figures and raises or clears alerts, ms
    /// (100 to 3,600,000).
    #[arg(long, env = "METRICS_INTERVAL", default_value_t = 10_000)]
    pub metrics_interval: u64,
    /// The `memory` alert: resident memory above this many MB.
    #[arg(long, env = "ALERT_MEMORY_MB", default_value_t = 500)]
    pub alert_memory_mb: u64,
    /// The `cpu` alert: process CPU over one interval above this percentage of the CPUs the
    /// process may use (100: every one of them busy), 0 < value <= 100.
    #[arg(long, env = "ALERT_CPU_PERCENT", default_value_t = 80.0)]
    pub alert_cpu_percent: f64,
    /// The `connection_errors` alert: more than this many connection errors (refused,
    /// failed, timed out or cut as slow) in one interval.
    #[arg(long, env = "ALERT_CONNECTION_ERRORS", default_value_t = 10)]
    pub alert_connection_errors: u64,
    /// The `rate_limit_violations` alert: more than this many events dropped by the
    /// per-socket rate limits in one interval.
    #[arg(long, env = "ALERT_RATE_LIMIT_VIOLATIONS", default_value_t = 100)]
    pub alert_rate_limit_violations: u64,
}

impl OpsConfig {
    /// Checks what clap cannot, naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        let latency = self.sync_target_latency;
        if !(latency.is_finite() && latency > 0.0 && latency <= 60_000.0) {
            return Err(format!(
                "SYNC_TARGET_LATENCY must be a number of ms above 0 and at most 60000 (got {latency})"
            ));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.metrics_interval) {
            return Err(format!(
                "METRICS_INTERVAL must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} ms (got {})",
                self.metrics_interval
            ));
        }
        if self.alert_memory_mb == 0 {
            return Err("ALERT_MEMORY_MB must be greater than 0".into());
        }
        let cpu = self.alert_cpu_percent;
        if !(cpu.is_finite() && cpu > 0.0 && cpu <= 100.0) {
            return Err(format!(
                "ALERT_CPU_PERCENT must be above 0 and at most 100 (got {cpu})"
            ));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.metrics_interval)
    }

    /// The latency alert's threshold, ms: twice the target (the seed's rule).
    pub fn latency_threshold_ms(&self) -> f64 {
        2.0 * self.sync_target_latency
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use clap::Parser;

    #[test]
    fn the_seed_defaults_apply_and_validate() {
        let c = Config::defaults();
        assert_eq!(c.ops.sync_target_latency, 50.0);
        assert_eq!(c.ops.latency_threshold_ms(), 100.0);
        assert_eq!(c.ops.metrics_interval, 10_000);
        assert_eq!(c.ops.alert_memory_mb, 500);
        assert_eq!(c.ops.alert_cpu_percent, 80.0);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn each_bad_value_is_refused_by_its_name() {
        let cases: &[(&str, &str, &str)] = &[
            ("--sync-target-latency", "0", "SYNC_TARGET_LATENCY"),
            ("--sync-target-latency", "NaN", "SYNC_TARGET_LATENCY"),
            ("--sync-target-latency", "-5", "SYNC_TARGET_LATENCY"),
            ("--metrics-interval", "99", "METRICS_INTERVAL"),
            ("--metrics-interval", "3600001", "METRICS_INTERVAL"),
            ("--alert-memory-mb", "0", "ALERT_MEMORY_MB"),
            ("--alert-cpu-percent", "0", "ALERT_CPU_PERCENT"),
            ("--alert-cpu-percent", "100.5", "ALERT_CPU_PERCENT"),
        ];
        for (flag, value, name) in cases {
            let c = Config::try_parse_from(["bandsync".to_owned(), format!("{flag}={value}")])
                .unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
            let error = c.validate().unwrap_err();
            assert!(error.contains(name), "{flag} {value}: {error}");
        }
        let c = Config::parse_from([
            "bandsync",
            "--sync-target-latency",
            "0.5",
            "--metrics-interval",
            "100",
            "--alert-connection-errors",
            "0",
        ]);
        assert!(c.validate().is_ok());
        assert_eq!(c.ops.latency_threshold_ms(), 1.0);
    }
}

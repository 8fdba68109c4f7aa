//! The operator's metrics in `/metrics`: how often each alert was raised, which are raised
//! now, the CPU count that `ALERT_CPU_PERCENT` is a percentage of (so a Prometheus rule can
//! say the same), and the process's own resources (CPU, memory, file descriptors).

use super::alerts::AlertKind;
use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

pub struct AlertMetrics {
    /// Alerts raised since start, by type.
    pub raised: IntCounterVec,
    /// 1 while an alert of that type is raised, else 0.
    pub active: IntGaugeVec,
    /// CPUs this process may use.
    pub cpus: IntGauge,
}

impl AlertMetrics {
    pub fn new() -> Self {
        let m = AlertMetrics {
            raised: IntCounterVec::new(
                Opts::new(
                    "alerts_raised_total",
                    "Alerts raised by the monitor, by type",
                ),
                &["type"],
            )
            .unwrap(),
            active: IntGaugeVec::new(
                Opts::new("alerts_active", "1 while an alert of this type is raised"),
                &["type"],
            )
            .unwrap(),
            cpus: IntGauge::new(
                "process_cpus_available",
                "CPUs this process may use: the 100% of ALERT_CPU_PERCENT",
            )
            .unwrap(),
        };
        // Every type is present from the start (at 0), so `rate()` and `== 1` rules work
        // before the first alert.
        for kind in AlertKind::ALL {
            m.raised.with_label_values(&[kind.as_str()]);
            m.active.with_label_values(&[kind.as_str()]);
        }
        m
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.raised.clone()),
            Box::new(self.active.clone()),
            Box::new(self.cpus.clone()),
        ]
    }
}

impl Default for AlertMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU seconds, resident and virtual memory, open and maximum file descriptors, threads and
/// start time of this process (`bandsync_process_*`: the registry's prefix applies). Read
/// from `/proc` at each scrape, so only on Linux. Its CPU counter counts whole seconds (the
/// crate's choice): `rate()` over a minute or more is what to graph.
pub fn process_collector() -> Vec<Box<dyn prometheus::core::Collector>> {
    #[cfg(target_os = "linux")]
    {
        vec![Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )]
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

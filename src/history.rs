//! The metrics history: one rollup of the key figures a minute, the last 24 hours, read
//! at `GET /metrics/history`. Kept in memory; with `REDIS_URL` each instance also stores
//! its rollups in Redis (`{prefix}:instance:{id}:history`), so any instance answers for the
//! whole cluster (the seed's "time-series metrics storage in Redis").

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Rollups kept: 24 hours of minutes.
pub const MINUTES_KEPT: usize = 1440;

/// One minute of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollup {
    /// The end of the minute (ms since the Unix epoch).
    pub at: f64,
    /// WebSocket and SSE connections open at the end of the minute.
    pub connections: i64,
    /// Sessions live on this instance at the end of the minute.
    pub sessions: i64,
    /// During the minute:
    pub messages_in: u64,
    pub messages_out: u64,
    pub ticks_sent: u64,
    pub slow_disconnects: u64,
    pub errors_sent: u64,
    /// Resident memory at the end of the minute, MB.
    pub memory_mb: f64,
}

/// Counter totals at the last rollup, to take differences from.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    ticks_sent: u64,
    slow_disconnects: u64,
    errors_sent: u64,
}

impl Totals {
    fn of(metrics: &Metrics) -> Self {
        let sum = |v: &prometheus::IntCounterVec| -> u64 {
            use prometheus::core::Collector;
            v.collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        Self {
            messages_in: metrics.messages_in.get(),
            messages_out: sum(&metrics.messages_out),
            ticks_sent: metrics.ticks_sent.get(),
            slow_disconnects: metrics.slow_client_disconnects.get(),
            errors_sent: sum(&metrics.errors_sent),
        }
    }
}

#[derive(Default)]
pub struct MetricsHistory {
    inner: Mutex<(VecDeque<Rollup>, Totals)>,
}

impl MetricsHistory {
    /// Closes the minute ending at `now_ms`; returns its rollup.
    pub fn record(&self, metrics: &Metrics, now_ms: f64, memory_mb: f64) -> Rollup {
        let totals = Totals::of(metrics);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let last = inner.1;
        let rollup = Rollup {
            at: now_ms,
            connections: metrics.open_connections(),
            sessions: metrics.sessions.get(),
            messages_in: totals.messages_in.saturating_sub(last.messages_in),
            messages_out: totals.messages_out.saturating_sub(last.messages_out),
            ticks_sent: totals.ticks_sent.saturating_sub(last.ticks_sent),
            slow_disconnects: totals
                .slow_disconnects
                .saturating_sub(last.slow_disconnects),
            errors_sent: totals.errors_sent.saturating_sub(last.errors_sent),
            memory_mb,
        };
        inner.1 = totals;
        if inner.0.len() == MINUTES_KEPT {
            inner.0.pop_front();
        }
        inner.0.push_back(rollup.clone());
        rollup
    }

    /// The rollups kept, oldest first.
    pub fn minutes(&self) -> Vec<Rollup> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_minute_counts_its_own_messages_and_the_history_is_bounded() {
        let metrics = Metrics::new();
        let history = MetricsHistory::default();
        metrics.messages_in.inc_by(10);
        assert_eq!(history.record(&metrics, 60_000.0, 50.0).messages_in, 10);
        metrics.messages_in.inc_by(3);
        assert_eq!(history.record(&metrics, 120_000.0, 50.0).messages_in, 3);
        for minute in 0..MINUTES_KEPT {
            history.record(&metrics, minute as f64, 50.0);
        }
        assert_eq!(history.minutes().len(), MINUTES_KEPT);
    }
}

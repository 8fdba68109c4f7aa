//! `GET /health`: liveness and the headline numbers.

use crate::context::AppContext;
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    status: &'static str,
    /// Seconds since start.
    uptime: f64,
    active_sessions: i64,
    /// Session records kept for their retention window (`MAX_RETAINED_SESSIONS` bounds it).
    retained_sessions: i64,
    connections: i64,
    memory_usage: MemoryUsage,
    timestamp: f64,
    version: &'static str,
}

/// Megabytes: `used` is this process's resident set, `total` the machine's memory.
#[derive(Debug, Serialize)]
pub struct MemoryUsage {
    used: f64,
    total: f64,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.status == "healthy"
    }
}

/// `healthy` while the engine thread runs; `unhealthy` (served with 503) once it stopped.
pub fn report(ctx: &AppContext) -> Health {
    Health {
        status: if ctx.engine.is_alive() {
            "healthy"
        } else {
            "unhealthy"
        },
        uptime: ctx.clock.uptime_secs(),
        active_sessions: ctx.metrics.sessions.get(),
        retained_sessions: ctx.metrics.retained_sessions.get(),
        connections: ctx.metrics.open_connections(),
        memory_usage: MemoryUsage {
            used: proc_kib("/proc/self/status", "VmRSS:") / 1024.0,
            total: proc_kib("/proc/meminfo", "MemTotal:") / 1024.0,
        },
        timestamp: ctx.clock.now_ms(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// Reads a `Name:   1234 kB` line from a /proc file; 0 where /proc is unavailable.
fn proc_kib(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields_on_linux() {
        assert!(proc_kib("/proc/self/status", "VmRSS:") > 0.0);
        assert_eq!(proc_kib("/nonexistent", "VmRSS:"), 0.0);
    }
}

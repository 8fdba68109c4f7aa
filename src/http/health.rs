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
    /// With `REDIS_URL`: `up` while Redis answers, `down` while this instance serves its
    /// members alone (absent without `REDIS_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'static str>,
    /// With `REDIS_URL`: instances alive in the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<i64>,
    memory_usage: MemoryUsage,
    /// The raised alerts (`type`, `message`, `value`, `threshold`, `unit`, `since`); empty
    /// when all is well. Alerts do not make the server unhealthy: it still serves.
    alerts: Vec<crate::ops::alerts::Alert>,
    timestamp: f64,
    version: &'static str,
    // The repository streams' figures, named as the original streaming server names them.
    /// Listeners of repository streams.
    active_clients: usize,
    /// Repositories with at least one listener.
    active_repos: usize,
    /// Compositions broadcast since start.
    total_buffers_created: u64,
    /// Renders waiting for a render thread.
    render_queue: usize,
    /// The listeners (at most 100 are listed; `activeClients` counts them all).
    clients: Vec<crate::repo::hub::ClientDetail>,
}

/// Megabytes: `used` is this process's resident set, `total` the machine's memory; `rss`
/// is the resident set in bytes (as Node's `process.memoryUsage()` reports it).
#[derive(Debug, Serialize)]
pub struct MemoryUsage {
    used: f64,
    total: f64,
    rss: u64,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.status == "healthy"
    }
}

/// Repository listeners listed in `clients` at most.
const MAX_LISTED_CLIENTS: usize = 100;

/// `healthy` while the engine thread runs; `unhealthy` (served with 503) once it stopped.
pub fn report(ctx: &AppContext) -> Health {
    Health {
        status: if ctx.engine.is_alive() {
            "healthy"
        } else {
            "unhealthy"
        },
        uptime: ctx.clock.uptime_secs(),
        active_sessions: active_sessions(ctx),
        retained_sessions: ctx.metrics.retained_sessions.get(),
        connections: ctx.metrics.open_connections(),
        redis: redis_up(ctx).map(|up| if up { "up" } else { "down" }),
        instances: redis_up(ctx).map(|_| ctx.metrics.cluster.instances.get()),
        memory_usage: MemoryUsage {
            used: resident_mb(),
            total: proc_kib("/proc/meminfo", "MemTotal:") / 1024.0,
            rss: (resident_mb() * 1024.0 * 1024.0) as u64,
        },
        alerts: ctx.ops.active(),
        timestamp: ctx.clock.now_ms(),
        version: env!("CARGO_PKG_VERSION"),
        active_clients: ctx.repo.hub.active_clients(),
        active_repos: ctx.repo.hub.active_repos(),
        total_buffers_created: ctx.repo.hub.buffers_created(),
        render_queue: ctx.repo.render_queue(),
        clients: ctx
            .repo
            .hub
            .details(None, ctx.clock.now_ms() as u64, MAX_LISTED_CLIENTS),
    }
}

fn redis_up(ctx: &AppContext) -> Option<bool> {
    ctx.config
        .redis_url
        .as_ref()
        .map(|_| ctx.metrics.cluster.redis_up.get() == 1)
}

/// Sessions live here, or, while Redis answers, on any instance of the cluster.
fn active_sessions(ctx: &AppContext) -> i64 {
    let local = ctx.metrics.sessions.get();
    match redis_up(ctx) {
        Some(true) => local.max(ctx.metrics.cluster.active_sessions.get()),
        _ => local,
    }
}

/// This process's resident set, MB (0 where /proc is unavailable).
pub fn resident_mb() -> f64 {
    proc_kib("/proc/self/status", "VmRSS:") / 1024.0
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

//! The monitor task: every `METRICS_INTERVAL` it samples the figures and applies them to the
//! alert board through [`super::Ops::apply`]. A plain tokio task: the work is a few atomic
//! reads and one `/proc` read, far below a millisecond, so it needs no thread of its own.

use super::figures::Sampler;
use crate::context::AppContext;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;

/// Runs until aborted (at shutdown).
pub async fn run(ctx: Arc<AppContext>) {
    let config = &ctx.config.ops;
    let interval = config.interval();
    let mut sampler = Sampler::new(&ctx.metrics);
    ctx.metrics.alerts.cpus.set(sampler.cpus() as i64);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A late evaluation (a starved runtime) covers the longer span; never two at once.
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::debug!(interval_ms = config.metrics_interval, "monitor started");
    loop {
        every.tick().await;
        let readings = sampler.sample(&ctx.metrics, config);
        ctx.ops.apply(&readings, ctx.clock.now_ms());
    }
}

//! What repository streams count (`bandsync_repo_*`, `bandsync_webhooks_total`).

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub struct RepoMetrics {
    pub compositions: IntCounter,
    pub render_seconds: Histogram,
    pub renders_busy: IntCounter,
    pub listeners_swept: IntCounter,
    /// Webhook deliveries by outcome: `played`, `ignored`, `duplicate`, `pong`, `refused`, `busy`.
    pub webhooks: IntCounterVec,
}

impl RepoMetrics {
    pub fn new() -> Self {
        RepoMetrics {
            compositions: IntCounter::new(
                "repo_compositions_total",
                "Compositions broadcast to repository listeners (rendered here or elsewhere)",
            )
            .unwrap(),
            render_seconds: Histogram::with_opts(
                HistogramOpts::new("repo_render_seconds", "Time to render one composition")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            )
            .unwrap(),
            renders_busy: IntCounter::new(
                "repo_renders_busy_total",
                "Render requests refused with 503 because the render queue was full",
            )
            .unwrap(),
            listeners_swept: IntCounter::new(
                "repo_listeners_swept_total",
                "Repository listeners disconnected for taking nothing for REPO_IDLE_TIMEOUT_MS",
            )
            .unwrap(),
            webhooks: IntCounterVec::new(
                Opts::new("webhooks_total", "GitHub webhook deliveries, by outcome"),
                &["outcome"],
            )
            .unwrap(),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.compositions.clone()),
            Box::new(self.render_seconds.clone()),
            Box::new(self.renders_busy.clone()),
            Box::new(self.listeners_swept.clone()),
            Box::new(self.webhooks.clone()),
        ]
    }
}

impl Default for RepoMetrics {
    fn default() -> Self {
        Self::new()
    }
}

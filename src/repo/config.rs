//! Options of the repository streams (`/stream/{repoId}`, `/webhooks/github`).

use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct RepoConfig {
    /// Secret of the GitHub webhook (`X-Hub-Signature-256`). Unset: deliveries are accepted
    /// unsigned (a warning is logged at start); set it on any server reachable from the internet.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,
    /// Largest webhook body accepted, bytes (GitHub caps its payloads at 25 MB; push payloads
    /// list at most 20 commits and are far smaller).
    #[arg(long, env = "MAX_WEBHOOK_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_webhook_body_bytes: usize,
    /// Heartbeat message interval on repository streams, ms (the original server's 30 s).
    #[arg(long, env = "REPO_HEARTBEAT_MS", default_value_t = 30_000)]
    pub repo_heartbeat_ms: u64,
    /// A listener that has taken nothing from its queue for this long is disconnected, ms
    /// (the original server's 5 minutes).
    #[arg(long, env = "REPO_IDLE_TIMEOUT_MS", default_value_t = 300_000)]
    pub repo_idle_timeout_ms: u64,
    /// How often idle listeners are looked for, ms (the original server's 60 s).
    #[arg(long, env = "REPO_CLEANUP_INTERVAL_MS", default_value_t = 60_000)]
    pub repo_cleanup_interval_ms: u64,
    /// Threads that render compositions (0: one per core). Never the engine thread or a
    /// tokio worker.
    #[arg(long, env = "RENDER_THREADS", default_value_t = 0)]
    pub render_threads: usize,
    /// Renders that may wait for a thread; beyond it a request is answered 503 `RENDER_BUSY`.
    #[arg(long, env = "RENDER_QUEUE", default_value_t = 16)]
    pub render_queue: usize,
    /// Memory the latest composition of each repository may take in all, MB (each is kept
    /// for listeners that connect later; the least recently played go first).
    #[arg(long, env = "REPO_RETAINED_MB", default_value_t = 256)]
    pub repo_retained_mb: usize,
    /// Compositions a slow listener may have waiting; an older unsent one is dropped for a
    /// newer one beyond it.
    #[arg(long, env = "REPO_LISTENER_QUEUE", default_value_t = 2)]
    pub repo_listener_queue: usize,
    /// Test renders (`POST /stream/{repoId}/test`) one client address may ask for per
    /// minute (a burst of that many, refilled over the minute); beyond it 429 `RATE_LIMITED`.
    #[arg(long, env = "REPO_TESTS_PER_MINUTE", default_value_t = 30)]
    pub repo_tests_per_minute: u32,
    /// Webhook deliveries remembered for de-duplication (`X-GitHub-Delivery`), and for how long, ms.
    #[arg(long, env = "WEBHOOK_DEDUPE_CAPACITY", default_value_t = 10_000)]
    pub webhook_dedupe_capacity: usize,
    #[arg(long, env = "WEBHOOK_DEDUPE_TTL_MS", default_value_t = 24 * 3_600_000)]
    pub webhook_dedupe_ttl_ms: u64,
}

impl RepoConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("REPO_HEARTBEAT_MS", self.repo_heartbeat_ms),
            ("REPO_IDLE_TIMEOUT_MS", self.repo_idle_timeout_ms),
            ("REPO_CLEANUP_INTERVAL_MS", self.repo_cleanup_interval_ms),
            ("RENDER_QUEUE", self.render_queue as u64),
            (
                "REPO_TESTS_PER_MINUTE",
                u64::from(self.repo_tests_per_minute),
            ),
            ("REPO_LISTENER_QUEUE", self.repo_listener_queue as u64),
            (
                "WEBHOOK_DEDUPE_CAPACITY",
                self.webhook_dedupe_capacity as u64,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        Ok(())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.repo_heartbeat_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.repo_idle_timeout_ms)
    }
    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_millis(self.repo_cleanup_interval_ms)
    }
    /// Render threads: as configured, or one per core.
    pub fn threads(&self) -> usize {
        match self.render_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
    pub fn retained_bytes(&self) -> usize {
        self.repo_retained_mb.saturating_mul(1024 * 1024)
    }
}

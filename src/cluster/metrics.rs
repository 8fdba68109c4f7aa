//! What the cluster seam counts (`bandsync_cluster_*`, `bandsync_redis_*`).

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

pub struct ClusterMetrics {
    /// 1 while Redis answers, 0 while it does not (absent without `REDIS_URL`).
    pub redis_up: IntGauge,
    pub redis_outages: IntCounter,
    /// Redis round trips by what they were for (commit, load, presence, ...).
    pub redis_commands: IntCounterVec,
    pub redis_errors: IntCounter,
    pub local_commits: IntCounter,
    pub rejected_proposals: IntCounter,
    /// Activations of a scheduled change refused because another instance applied it
    /// first (or a newer commit replaced it): normal in a cluster, not an error.
    pub activations_lost: IntCounter,
    pub remote_resumes: IntCounter,
    pub gaps_recovered: IntCounter,
    /// Sessions live on any instance (`/health` `activeSessions` in a cluster).
    pub active_sessions: IntGauge,
    pub instances: IntGauge,
}

impl ClusterMetrics {
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).unwrap();
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).unwrap();
        Self {
            redis_up: gauge("redis_up", "1 while Redis answers, 0 while it does not"),
            redis_outages: counter("redis_outages_total", "Times Redis became unreachable"),
            redis_commands: IntCounterVec::new(
                Opts::new("redis_commands_total", "Redis round trips, by purpose"),
                &["purpose"],
            )
            .unwrap(),
            redis_errors: counter("redis_errors_total", "Redis calls that failed"),
            local_commits: counter(
                "cluster_local_commits_total",
                "Session changes committed in this instance only, while Redis was unreachable",
            ),
            rejected_proposals: counter(
                "cluster_rejected_proposals_total",
                "Proposed changes refused by the leader check (a seat taken or still held elsewhere)",
            ),
            activations_lost: counter(
                "cluster_activations_lost_total",
                "Scheduled-change activations refused because another instance applied the change first",
            ),
            remote_resumes: counter(
                "cluster_remote_resumes_total",
                "Resumes of an identity issued by another instance",
            ),
            gaps_recovered: counter(
                "cluster_gaps_recovered_total",
                "Version gaps in a session's delivery filled from its Redis Stream",
            ),
            active_sessions: gauge(
                "cluster_active_sessions",
                "Sessions live on any instance of the cluster",
            ),
            instances: gauge("cluster_instances", "Instances alive in the cluster"),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.redis_up.clone()),
            Box::new(self.redis_outages.clone()),
            Box::new(self.redis_commands.clone()),
            Box::new(self.redis_errors.clone()),
            Box::new(self.local_commits.clone()),
            Box::new(self.rejected_proposals.clone()),
            Box::new(self.activations_lost.clone()),
            Box::new(self.remote_resumes.clone()),
            Box::new(self.gaps_recovered.clone()),
            Box::new(self.active_sessions.clone()),
            Box::new(self.instances.clone()),
        ]
    }
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

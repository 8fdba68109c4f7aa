//! Repository streams: compositions rendered from a repository's GitHub activity, broadcast
//! to everyone listening to that repository over Server-Sent Events.
//!
//! The flow: a trigger (a webhook delivery mapped to musical parameters by [`crate::github`],
//! or `POST /stream/{repoId}/test`) asks [`RepoStreams::play`]; the [`pool`] renders the
//! parameters once ([`crate::render`]) on a render thread, [`composition`] serializes the
//! result once per encoding on that same thread, and the [`hub`] queues the shared bytes
//! for every listener of the repository and keeps them as its latest composition. With
//! `REDIS_URL`, the composition is also published to the other instances
//! ([`crate::cluster::redis::repo`]), which serialize and broadcast it without rendering.

pub mod composition;
pub mod config;
pub mod hub;
pub mod listen;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod routes;
pub mod socket;

use crate::cluster::redis::repo::RepoCluster;
use crate::github::RecentDeliveries;
use crate::limits::rate::KeyedRate;
use crate::limits::AddrKey;
use crate::metrics::Metrics;
use crate::outbox::OutboxLimits;
use bandsync_protocol::repo::{MusicalParams, Trigger};
use bandsync_render::Rendered;
use composition::{Composition, Meta};
use config::RepoConfig;
use hub::Hub;
use pool::{Busy, RenderPool};
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a play did, as `POST /stream/{repoId}/test` and the webhook answer it.
pub type Played = bandsync_protocol::repo::PlayAnswer;

/// Repository streams of this instance: listeners, the render pool, recent webhook
/// deliveries, the cluster link.
pub struct RepoStreams {
    pub hub: Hub,
    pool: RenderPool,
    pub deliveries: RecentDeliveries,
    /// Test renders per client address: the render pool is shared by every repository,
    /// so one client must not keep it busy.
    pub test_rate: KeyedRate<AddrKey>,
    cluster: OnceLock<Arc<RepoCluster>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RepoStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoStreams").finish_non_exhaustive()
    }
}

impl RepoStreams {
    /// Starts the render threads.
    pub fn new(
        config: &RepoConfig,
        tracked_addresses: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let limits = OutboxLimits {
            // Small messages only (`connected`, heartbeats, errors): a listener 32 behind
            // on them has not read for a quarter of an hour.
            max_frames: 32,
            max_bytes: 64 * 1024,
            max_audio_frames: config.repo_listener_queue,
        };
        let capacity =
            NonZeroUsize::new(config.webhook_dedupe_capacity).unwrap_or(NonZeroUsize::MIN);
        Ok(RepoStreams {
            hub: Hub::new(limits, config.retained_bytes()),
            pool: RenderPool::new(config.threads(), config.render_queue)?,
            deliveries: RecentDeliveries::new(
                capacity,
                Duration::from_millis(config.webhook_dedupe_ttl_ms),
            ),
            test_rate: KeyedRate::new(
                config.repo_tests_per_minute,
                Duration::from_secs(60),
                tracked_addresses,
            ),
            cluster: OnceLock::new(),
            metrics,
        })
    }

    /// Starts the render threads and, with `REDIS_URL`, the link to the other instances.
    pub fn start(
        config: &crate::config::Config,
        metrics: Arc<Metrics>,
        instance: &str,
    ) -> anyhow::Result<Arc<RepoStreams>> {
        use anyhow::Context as _;
        let tracked = config.limits.tracked_addresses;
        let streams = RepoStreams::new(&config.repo, tracked, metrics.clone())
            .context("starting the render threads")?;
        let streams = Arc::new(streams);
        if let Some(url) = config.redis_url.as_deref() {
            let cluster = crate::cluster::redis::repo::spawn(
                url,
                &config.redis_prefix,
                instance,
                &streams,
                metrics,
            )
            .context("REDIS_URL")?;
            streams.set_cluster(cluster);
        }
        if config.repo.github_webhook_secret.is_none() {
            tracing::warn!(
                "GITHUB_WEBHOOK_SECRET is not set: POST /webhooks/github accepts unsigned deliveries"
            );
        }
        Ok(streams)
    }

    /// With `REDIS_URL`: compositions played here go to the other instances too.
    pub fn set_cluster(&self, cluster: Arc<RepoCluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<RepoCluster>> {
        self.cluster.get()
    }

    /// Renders `params` (validated) for `repo_id`, serializes and broadcasts the result.
    /// The receiver resolves once it is queued for every listener, or with the render's
    /// error (which the listeners also get, as an `error` message). `Err(Busy)` when the
    /// render queue is full.
    pub fn play(
        self: &Arc<Self>,
        repo_id: &str,
        params: MusicalParams,
        trigger: Trigger,
        now_ms: u64,
    ) -> Result<oneshot::Receiver<Result<Played, String>>, Busy> {
        let (reply, answer) = oneshot::channel();
        let streams = self.clone();
        let repo = repo_id.to_owned();
        let meta_params = params.clone();
        let then = Box::new(move |outcome: pool::RenderOutcome, shared_render: bool| {
            let played = match outcome {
                Ok((audio, render_ms)) => {
                    let meta = Meta {
                        repo_id: repo.clone(),
                        params: meta_params,
                        trigger,
                        timestamp_ms: now_ms,
                        render_ms,
                    };
                    Ok(streams.publish(audio, meta, shared_render))
                }
                Err(message) => {
                    streams
                        .hub
                        .broadcast_error(&repo, "RENDER_ERROR", &message, now_ms);
                    Err(message)
                }
            };
            let _ = reply.send(played);
        });
        if let Err(busy) = self.pool.render(params, then) {
            self.metrics.repo.renders_busy.inc();
            return Err(busy);
        }
        Ok(answer)
    }

    /// Serializes a rendered composition, broadcasts it here and (with Redis) to the other
    /// instances. Runs on a render thread.
    fn publish(&self, audio: Arc<Rendered>, meta: Meta, shared_render: bool) -> Played {
        self.metrics
            .repo
            .render_seconds
            .observe(meta.render_ms / 1000.0);
        let composition = Arc::new(Composition::encode(audio, meta));
        let listeners_notified = self.hub.broadcast(composition.clone());
        self.metrics.repo.compositions.inc();
        if let Some(cluster) = self.cluster.get() {
            cluster.publish(composition.clone());
        }
        let frames = composition.frames();
        Played {
            repo_id: composition.meta.repo_id.clone(),
            composition_id: composition.id.clone(),
            params: composition.meta.params.clone(),
            duration: frames as f64 / f64::from(bandsync_protocol::repo::SAMPLE_RATE),
            samples: frames,
            sample_rate: bandsync_protocol::repo::SAMPLE_RATE,
            number_of_channels: bandsync_protocol::repo::CHANNELS,
            render_time_ms: composition.meta.render_ms,
            listeners_notified,
            shared_render,
        }
    }

    /// A composition another instance rendered: serialized here (on a render thread) and
    /// broadcast to this instance's listeners only.
    pub fn receive_remote(self: &Arc<Self>, audio: Rendered, meta: Meta) {
        let streams = self.clone();
        let task = move || {
            let composition = Arc::new(Composition::encode(Arc::new(audio), meta));
            streams.hub.broadcast(composition);
            streams.metrics.repo.compositions.inc();
        };
        if self.pool.spawn(task).is_err() {
            tracing::warn!("render queue full: a composition from another instance was skipped");
        }
    }

    /// Keeps a composition another instance rendered as the latest of its repository
    /// without broadcasting it (for a late listener, the first to connect here). Resolves
    /// once it is kept.
    pub fn adopt_latest(
        self: &Arc<Self>,
        audio: Rendered,
        meta: Meta,
    ) -> Result<oneshot::Receiver<()>, Busy> {
        let streams = self.clone();
        let (done, kept) = oneshot::channel();
        self.pool.spawn(move || {
            let composition = Arc::new(Composition::encode(Arc::new(audio), meta));
            streams.hub.keep_latest(composition);
            let _ = done.send(());
        })?;
        Ok(kept)
    }

    /// Jobs waiting for a render thread.
    pub fn render_queue(&self) -> usize {
        self.pool.queued()
    }
}

/// Repository streams' lifecycle, as the original streaming server has it: a `heartbeat`
/// every `REPO_HEARTBEAT_MS` (30 s), and every `REPO_CLEANUP_INTERVAL_MS` (60 s) listeners
/// that took nothing for `REPO_IDLE_TIMEOUT_MS` (5 min) are disconnected.
pub async fn upkeep(ctx: Arc<crate::context::AppContext>) {
    let start = tokio::time::Instant::now();
    let repo = &ctx.config.repo;
    let mut heartbeat = tokio::time::interval_at(start + repo.heartbeat(), repo.heartbeat());
    let mut cleanup =
        tokio::time::interval_at(start + repo.cleanup_interval(), repo.cleanup_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => ctx.repo.hub.heartbeat(ctx.clock.now_ms() as u64),
            _ = cleanup.tick() => {
                let swept = ctx.repo.hub.sweep(repo.idle_timeout());
                if swept > 0 {
                    ctx.metrics.repo.listeners_swept.inc_by(swept as u64);
                    tracing::info!(swept, "idle repository listeners disconnected");
                }
            }
        }
    }
}

//! Assembling the server and running it: the engine and what it works with (store, cluster,
//! share registry), the background tasks, the accept loop over the HTTP service
//! (`crate::service`), and graceful shutdown.

use crate::auth::Auth;
use crate::clock::ServerClock;
use crate::config::Config;
use crate::context::AppContext;
use crate::engine::ShareNotice;
use crate::engine::{self, Inbound};
use crate::limits::AuthFailures;
use crate::metrics::Metrics;
use crate::repo;
use crate::share::replica::ShareChange;
use crate::share::ShareRegistry;
use crate::store::{MemoryStore, SessionStore, StoreMetrics};
use anyhow::Context as _;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Runs the server on `listener` until `shutdown` resolves, then closes every WebSocket
/// with 1001, ends every SSE stream with a final `shutdown` event, and waits for them (at
/// most `SHUTDOWN_TIMEOUT_MS`).
pub async fn run(
    listener: TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    apply_fd_budget(&mut config);
    let (ctx, engine_run) = assemble(config, Arc::new(Metrics::new()))?;
    let sweeper = tokio::spawn(sweep_share_sessions(ctx.clone()));
    let historian = tokio::spawn(record_history(ctx.clone()));
    let monitor = tokio::spawn(crate::ops::monitor::run(ctx.clone()));
    let repo_upkeep = tokio::spawn(repo::upkeep(ctx.clone()));
    let service = crate::service::service(ctx.clone());
    let graceful = GracefulShutdown::new();
    tracing::info!(
        addr = %listener.local_addr()?,
        max_tcp_connections = ctx.conn_limits.max_total(),
        max_connections = ctx.config.max_connections,
        "bandsync listening"
    );

    tokio::pin!(shutdown);
    let direct = crate::service::direct_route(ctx.clone());
    crate::net::accept_loop(
        &listener,
        &ctx,
        service,
        direct,
        &graceful,
        shutdown.as_mut(),
    )
    .await;

    tracing::info!("shutting down");
    drop(listener);
    sweeper.abort();
    historian.abort();
    monitor.abort();
    repo_upkeep.abort();
    ctx.repo.hub.close_all();
    ctx.shutdown.cancel();
    let _ = ctx.engine.send(Inbound::Shutdown).await;
    ctx.tracker.close();
    let drained = tokio::time::timeout(ctx.config.shutdown_timeout(), async {
        tokio::join!(graceful.shutdown(), ctx.tracker.wait());
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown deadline passed with connections still open");
    }
    engine_run.finished().await;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the open-file limit and keeps `MAX_TCP_CONNECTIONS` and `MAX_CONNECTIONS` under
/// it (see [`crate::net::fds`]), with a warning for each value lowered.
fn apply_fd_budget(config: &mut Config) {
    let nofile = crate::net::fds::raise_nofile_limit();
    let limits = &config.limits;
    let budget = crate::net::fds::plan(
        nofile,
        limits.fd_reserve,
        limits.max_tcp_connections,
        config.max_connections,
    );
    if budget.tcp_clamped {
        tracing::warn!(
            configured = limits.max_tcp_connections,
            clamped = budget.tcp,
            nofile,
            "MAX_TCP_CONNECTIONS exceeds the open-file limit minus FD_RESERVE; lowered"
        );
    }
    if budget.realtime_clamped {
        tracing::warn!(
            configured = config.max_connections,
            clamped = budget.realtime,
            nofile,
            "MAX_CONNECTIONS leaves no room for plain HTTP under the TCP connection cap; lowered"
        );
    }
    config.limits.max_tcp_connections = budget.tcp;
    config.max_connections = budget.realtime;
}

/// Everything a server is made of but the listener: the store, the share registry, access
/// control, the engine (its thread, or its task when called on a runtime that places it
/// there: `ENGINE_PLACEMENT`) and the context every route and connection shares. `run`
/// serves it; the fuzz harness serves it over in-memory pipes, so both build it the same
/// way. `metrics` is passed in so that a process running many servers (the fuzzer) can
/// share one registry.
pub fn assemble(
    config: Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<AppContext>, crate::engine::EngineRun)> {
    let clock = ServerClock::shared();
    // The sockets' rate-limit clock, made now so that the first joiner does not wait for
    // its calibration (about 0.6 ms here).
    crate::ws::shared_clock();
    let store: Arc<dyn SessionStore> = Arc::new(
        MemoryStore::new(config.max_retained_sessions).with_metrics(StoreMetrics {
            retained: metrics.retained_sessions.clone(),
            evicted: metrics.retained_sessions_evicted.clone(),
        }),
    );
    let share = Arc::new(
        ShareRegistry::new(config.share.settings()).with_address_limits(
            config
                .limits
                .share_sessions_per_ip_under(config.share.max_share_sessions),
            config.limits.share_starts_per_minute,
            config.limits.tracked_addresses,
        ),
    );
    let auth_failures = Arc::new(AuthFailures::new(
        crate::context::auth_limits(&config),
        metrics.clone(),
    ));
    let auth = Arc::new(Auth::from_config(&config)?);
    if auth.authenticated() {
        tracing::info!("authenticated mode: joining, listening and session reads need a token");
    }
    let (cluster_events, cluster_inbox) = tokio::sync::mpsc::channel(CLUSTER_EVENT_QUEUE);
    let broker = broker(&config, store, cluster_events, &metrics)?;
    let instance = broker.instance().to_string();
    let (share_claims, claim_inbox) = match config.redis_url {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::channel(SHARE_CLAIM_QUEUE);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let collaborators = engine::Collaborators {
        broker,
        share: share.clone(),
        auth_failures: auth_failures.clone(),
        auth: auth.clone(),
        share_claims,
    };
    let (engine, engine_run) = engine::spawn(&config, clock, metrics.clone(), collaborators)
        .context("starting the engine")?;
    if config.redis_url.is_some() {
        tokio::spawn(forward_cluster_events(cluster_inbox, engine.clone()));
    }
    let share_cluster = share_replication(&config, &share, &engine, &metrics, &instance)?;
    if let (Some(cluster), Some(inbox)) = (&share_cluster, claim_inbox) {
        tokio::spawn(claim_shares(inbox, cluster.clone(), engine.clone()));
    }
    let repo = crate::repo::RepoStreams::start(&config, metrics.clone(), &instance)?;
    let stage_cluster = match config.redis_url.as_deref() {
        Some(url) => Some(
            crate::cluster::redis::stage::spawn(url, &config.redis_prefix, &instance, &metrics)
                .context("REDIS_URL")?,
        ),
        None => None,
    };
    let stream_manager = crate::stream_manager::StreamManager::open(
        &config.stream_manager,
        metrics.clone(),
        engine.clone(),
        stage_cluster.clone(),
    )?;
    if let Some(cluster) = stage_cluster {
        cluster.deliver_to(stream_manager.clone());
    }
    let socket_io =
        Arc::new(crate::socketio::SocketIo::new(&config, &metrics).context("REDIS_URL")?);
    let ctx = Arc::new(
        AppContext::new(
            config,
            clock,
            metrics,
            engine,
            share,
            auth,
            crate::context::Features {
                repo,
                stream_manager,
                socket_io,
            },
        )
        .with_auth_failures(auth_failures)
        .with_share_cluster(share_cluster),
    );
    Ok((ctx, engine_run))
}

/// Cluster events queued for the engine at most (the link waits beyond it).
const CLUSTER_EVENT_QUEUE: usize = 4096;

/// The memory broker, or with `REDIS_URL` the Redis one (its link task starts on the
/// current runtime and connects in the background: an unreachable Redis never stops the
/// server from starting).
fn broker(
    config: &Config,
    store: Arc<dyn SessionStore>,
    events: tokio::sync::mpsc::Sender<crate::cluster::ClusterEvent>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Box<dyn crate::cluster::Broker>> {
    let Some(url) = config.redis_url.clone() else {
        let broker = crate::cluster::memory::MemoryBroker::new(store, config.session_retention());
        return Ok(Box::new(broker));
    };
    let settings = crate::cluster::redis::RedisSettings {
        url,
        prefix: config.redis_prefix.clone(),
        retention: config.session_retention(),
        stream_length: config.resume_history.max(16),
        recovery_window: config.recovery_window(),
    };
    let broker =
        crate::cluster::redis::spawn(settings, events, metrics.clone()).context("REDIS_URL")?;
    tracing::info!(prefix = %config.redis_prefix, "REDIS_URL set: sessions are shared through Redis");
    Ok(Box::new(broker))
}

/// With `REDIS_URL`, Music Share sessions are claimed and replicated through Redis; the
/// other instances' changes reach this one's push receivers like local posts.
fn share_replication(
    config: &Config,
    share: &Arc<ShareRegistry>,
    engine: &engine::EngineHandle,
    metrics: &Arc<Metrics>,
    instance: &str,
) -> anyhow::Result<Option<Arc<crate::cluster::redis::share::ShareCluster>>> {
    let Some(url) = config.redis_url.as_deref() else {
        return Ok(None);
    };
    let engine = engine.clone();
    let deliver = Arc::new(move |change: ShareChange| {
        // As for a local post: a full queue only delays push receivers; pollers have it.
        let _ = engine.try_send(Inbound::Share(ShareNotice::Change(change)));
    });
    let cluster = crate::cluster::redis::share::spawn(
        url,
        &config.redis_prefix,
        instance,
        share.clone(),
        deliver,
        metrics.clone(),
    )
    .context("REDIS_URL")?;
    Ok(Some(cluster))
}

/// WebSocket sharers' claims waiting for Redis at most (past it they are decided locally).
const SHARE_CLAIM_QUEUE: usize = 256;

/// Claims WebSocket sharers' starts in Redis for the engine, which cannot wait on it.
async fn claim_shares(
    mut inbox: tokio::sync::mpsc::Receiver<engine::ShareClaim>,
    cluster: Arc<crate::cluster::redis::share::ShareCluster>,
    engine: engine::EngineHandle,
) {
    while let Some(claim) = inbox.recv().await {
        if claim.release {
            cluster.release(&claim.session).await;
            continue;
        }
        let outcome = cluster.claim(&claim.session, claim.now_ms).await;
        let answer = Inbound::Share(ShareNotice::Claimed { claim, outcome });
        if engine.send(answer).await.is_err() {
            return;
        }
    }
}

/// Hands the Redis link's events to the engine, in order, waiting while its queue is full.
async fn forward_cluster_events(
    mut inbox: tokio::sync::mpsc::Receiver<crate::cluster::ClusterEvent>,
    engine: engine::EngineHandle,
) {
    while let Some(event) = inbox.recv().await {
        if engine.send(Inbound::Cluster(event)).await.is_err() {
            return;
        }
    }
}

/// Closes a minute of the metrics history every `METRICS_HISTORY_INTERVAL_MS` (and, with
/// `REDIS_URL`, stores it in Redis for the whole cluster to read).
async fn record_history(ctx: Arc<AppContext>) {
    let interval = Duration::from_millis(ctx.config.metrics_history_interval_ms.max(100));
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        every.tick().await;
        let memory_mb = crate::http::resident_mb();
        let rollup = ctx
            .history
            .record(&ctx.metrics, ctx.clock.now_ms(), memory_mb);
        if let Some(cluster) = &ctx.share_cluster {
            cluster.store_rollup(&rollup).await;
        }
    }
}

/// Ends idle share sessions and forgets ended ones, once a second.
async fn sweep_share_sessions(ctx: Arc<AppContext>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for session in ctx.share.sweep() {
            let ended = ShareNotice::Change(ShareChange::Ended {
                id: session,
                reason: "timeout",
            });
            let _ = ctx.engine.send(Inbound::Share(ended)).await;
        }
    }
}

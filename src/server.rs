//! The accept loop, the router in front of warp, and graceful shutdown.
//!
//! `/ws` (our own upgrade) and `/sse/...` (streams fed by the engine) are routed here;
//! everything else goes to warp. CORS and security headers wrap all of it.

use crate::auth::Auth;
use crate::clock::ServerClock;
use crate::config::Config;
use crate::context::AppContext;
use crate::engine::ShareNotice;
use crate::engine::{self, Inbound};
use crate::http::errors::Body;
use crate::limits::AuthFailures;
use crate::metrics::Metrics;
use crate::share::replica::ShareChange;
use crate::share::ShareRegistry;
use crate::store::{MemoryStore, SessionStore, StoreMetrics};
use crate::{http as routes, repo, sse, ws};
use anyhow::Context as _;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

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
    let (ctx, engine_thread) = assemble(config, Arc::new(Metrics::new()))?;
    let sweeper = tokio::spawn(sweep_share_sessions(ctx.clone()));
    let historian = tokio::spawn(record_history(ctx.clone()));
    let monitor = tokio::spawn(crate::ops::monitor::run(ctx.clone()));
    let repo_upkeep = tokio::spawn(repo::upkeep(ctx.clone()));
    let service = service(ctx.clone());
    let graceful = GracefulShutdown::new();
    tracing::info!(
        addr = %listener.local_addr()?,
        max_tcp_connections = ctx.conn_limits.max_total(),
        max_connections = ctx.config.max_connections,
        "bandsync listening"
    );

    tokio::pin!(shutdown);
    let direct = direct_route(ctx.clone());
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
    let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
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
/// control, the engine thread and the context every route and connection shares. `run`
/// serves it; the fuzz harness serves it over in-memory pipes, so both build it the same
/// way. `metrics` is passed in so that a process running many servers (the fuzzer) can
/// share one registry.
pub fn assemble(
    config: Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<AppContext>, std::thread::JoinHandle<()>)> {
    let clock = ServerClock::shared();
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
    let (engine, engine_thread) = engine::spawn(&config, clock, metrics.clone(), collaborators)
        .context("starting the engine thread")?;
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
    Ok((ctx, engine_thread))
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

fn cors(config: &Config) -> CorsLayer {
    let origin = if config.cors_origin.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origin
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
        // `Vary` is set by `layered` from a constant: the CORS layer would build the same
        // value anew for every response (two allocations).
        .vary([])
}

/// The request headers a response varies with under CORS (the CORS layer's own default).
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";

/// The whole HTTP service: router plus CORS and security headers, all of it counted and
/// timed by the outermost layer (`bandsync_http_*`).
///
/// Public so the HTTP fuzz target and the routing property tests can serve requests
/// through exactly this stack over an in-memory pipe, without the accept loop.
pub fn service(
    ctx: Arc<AppContext>,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    let warp_service = warp::service(routes::routes(ctx.clone()));
    let handler_ctx = ctx.clone();
    layered(
        &ctx,
        tower::service_fn(move |req: Request<Incoming>| {
            let ctx = handler_ctx.clone();
            let warp_service = warp_service.clone();
            async move { Ok::<_, Infallible>(route(req, ctx, warp_service).await) }
        }),
    )
}

/// `/ws` behind the same layers as [`service`], for a handshake the accept loop answers
/// without hyper (`net::first_request`).
pub fn direct_route(
    ctx: Arc<AppContext>,
) -> crate::net::DirectRoute<
    impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
> {
    let handler_ctx = ctx.clone();
    let service = layered(
        &ctx,
        tower::service_fn(move |req: Request<()>| {
            let ctx = handler_ctx.clone();
            async move { Ok::<_, Infallible>(ws::upgrade::handle(req, ctx)) }
        }),
    );
    crate::net::DirectRoute {
        path: WS_PATH,
        service,
    }
}

/// The path of the sync WebSocket.
const WS_PATH: &str = "/ws";

/// `inner` behind every response's layers: counted and timed (outermost), CORS, security
/// headers.
fn layered<S, B>(
    ctx: &AppContext,
    inner: S,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    let secure = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    ServiceBuilder::new()
        .layer(routes::observe::ObserveLayer::new(ctx.metrics.clone()))
        // Outside the CORS layer, so its preflight answers get it too.
        .layer(SetResponseHeaderLayer::appending(
            header::VARY,
            HeaderValue::from_static(CORS_VARY),
        ))
        .layer(cors(&ctx.config))
        .layer(secure("x-content-type-options", "nosniff"))
        .layer(secure("x-frame-options", "DENY"))
        .layer(secure("referrer-policy", "no-referrer"))
        .layer(secure(
            "content-security-policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .service(inner)
}

async fn route<S>(req: Request<Incoming>, ctx: Arc<AppContext>, warp_service: S) -> Response<Body>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    let path = req.uri().path().to_owned();
    if path == WS_PATH {
        return ws::upgrade::handle(req, ctx);
    }
    if path == crate::ops::stream::PATH {
        return crate::ops::stream::handle(req, ctx);
    }
    if path == "/socket.io/" || path == "/socket.io" {
        return crate::socketio::handle(req, ctx).await;
    }
    if let Some(session_id) = path.strip_prefix("/sse/") {
        return sse::handle(req, ctx, session_id).await;
    }
    if let Some(route) = crate::stream_manager::routes::StageRoute::of(&path) {
        return route.serve(req, ctx).await;
    }
    if let Some(route) = repo::routes::RepoRoute::of(req.method() == Method::POST, &path) {
        return route.serve(req, ctx).await;
    }
    // The share API reads larger bodies (1 MB audio chunks, 5 MB metadata) and checks
    // them itself, after the bearer token.
    let limit = if path.starts_with("/api/share/") {
        u64::MAX
    } else {
        ctx.config.max_http_body_bytes
    };
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limit);
    if too_large {
        return crate::http::errors::error_response(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body too large",
        );
    }
    match warp_service.oneshot(req).await {
        Ok(response) => response.map(|body| body.map_err(|e| Box::new(e) as _).boxed_unsync()),
        Err(never) => match never {},
    }
}

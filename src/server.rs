//! The accept loop, the router in front of warp, and graceful shutdown.
//!
//! `/ws` (our own upgrade) and `/sse/...` (streams fed by the engine) are routed here;
//! everything else goes to warp. CORS and security headers wrap all of it.

use crate::clock::ServerClock;
use crate::config::Config;
use crate::context::AppContext;
use crate::engine::ShareNotice;
use crate::engine::{self, Inbound};
use crate::http::errors::Body;
use crate::metrics::Metrics;
use crate::share::api::RemoteAddr;
use crate::share::ShareRegistry;
use crate::store::{MemoryStore, SessionStore};
use crate::{http as routes, sse, ws};
use anyhow::Context as _;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
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
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    if config.redis_url.is_some() {
        tracing::warn!("REDIS_URL is set, but this build keeps sessions in memory only");
    }
    let clock = ServerClock::shared();
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let share = Arc::new(ShareRegistry::new(config.share.settings()));
    let (engine, engine_thread) =
        engine::spawn(&config, clock, metrics.clone(), store, share.clone())
            .context("starting the engine thread")?;
    let ctx = Arc::new(AppContext::new(config, clock, metrics, engine, share));
    let sweeper = tokio::spawn(sweep_share_sessions(ctx.clone()));
    let service = service(ctx.clone());
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tracing::info!(addr = %listener.local_addr()?, "bandsync listening");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(
                        service.clone().map_request(move |mut req: Request<Incoming>| {
                            req.extensions_mut().insert(RemoteAddr(peer));
                            req
                        }),
                    );
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "http connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down");
    drop(listener);
    sweeper.abort();
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

/// Ends idle share sessions and forgets ended ones, once a second.
async fn sweep_share_sessions(ctx: Arc<AppContext>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for session in ctx.share.sweep() {
            let ended = ShareNotice::Ended {
                session,
                reason: "timeout",
            };
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
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The whole HTTP service: router plus CORS and security headers.
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
    let secure = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    ServiceBuilder::new()
        .layer(cors(&ctx.config))
        .layer(secure("x-content-type-options", "nosniff"))
        .layer(secure("x-frame-options", "DENY"))
        .layer(secure("referrer-policy", "no-referrer"))
        .layer(secure(
            "content-security-policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .service_fn(move |req: Request<Incoming>| {
            let ctx = ctx.clone();
            let warp_service = warp_service.clone();
            async move { Ok::<_, Infallible>(route(req, ctx, warp_service).await) }
        })
}

async fn route<S>(req: Request<Incoming>, ctx: Arc<AppContext>, warp_service: S) -> Response<Body>
where
    S: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>,
{
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return ws::upgrade::handle(req, ctx);
    }
    if let Some(session_id) = path.strip_prefix("/sse/") {
        return sse::handle(req, ctx, session_id).await;
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

//! The HTTP service every connection is served by: the router in front of warp, wrapped in
//! the layers every answer gets (counted and timed, CORS, security headers); and the `/ws`
//! route behind the same layers, for a handshake the accept loop answers without hyper
//! (`net::first_request`).
//!
//! `/ws` (our own upgrade), `/sse/...` (streams fed by the engine) and the other routes with
//! their own handlers are routed here; everything else goes to warp.

use crate::config::Config;
use crate::context::AppContext;
use crate::http::errors::Body;
use crate::{http as routes, repo, sse, ws};
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

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

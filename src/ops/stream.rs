//! `GET /alerts/stream`: operators subscribe to alerts as Server-Sent Events.
//!
//! Why SSE: alerts flow one way, an operator's tool (curl, a chat bridge, a browser page)
//! reads SSE with no library, and the server already serves SSE with the headers proxies
//! need. The route is guarded like `/metrics` (open in the open mode; a server-wide token in
//! the authenticated mode), since alerts say as much about the server as `/metrics` does.
//!
//! The stream: first an `alerts` event with every raised alert (the whole state, so a
//! reconnecting operator needs no `Last-Event-ID`), then one `alert` event per change
//! (`state`: `raised` or `cleared`), keep-alive comments while quiet, and a final `shutdown`
//! event when the server stops. Bounded: [`MAX_SUBSCRIBERS`] streams at once, each counted
//! in `MAX_CONNECTIONS`, each with a queue of [`super::SUBSCRIBER_QUEUE`] events; one that
//! falls behind gets a fresh `alerts` list instead of what it missed.

use crate::auth::credentials::Presented;
use crate::context::{AppContext, ConnectionPermit};
use crate::frames::SSE_KEEPALIVE;
use crate::http::errors::{error_response, Body};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Frame;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// The route's path.
pub const PATH: &str = "/alerts/stream";

/// Operators' streams at once: alerts are for the few people who run the server.
pub const MAX_SUBSCRIBERS: usize = 64;

struct StreamState {
    first: Option<Bytes>,
    events: broadcast::Receiver<Bytes>,
    keepalive: tokio::time::Interval,
    shutdown: std::pin::Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
    ctx: Arc<AppContext>,
    _slots: (ConnectionPermit, OwnedSemaphorePermit, GaugeGuard),
}

/// `bandsync_connections{transport="alerts"}` for the stream's life.
struct GaugeGuard(prometheus::IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

async fn next_chunk(mut st: StreamState) -> Option<(Chunk, StreamState)> {
    if let Some(first) = st.first.take() {
        return Some((Ok(Frame::data(first)), st));
    }
    if st.done {
        return None;
    }
    let frame = tokio::select! {
        biased;
        () = st.shutdown.as_mut() => {
            st.done = true;
            let reason = serde_json::json!({"reason": "server shutting down"});
            super::sse_frame("shutdown", st.ctx.clock.now_ms(), &reason)
        }
        event = st.events.recv() => match event {
            Ok(frame) => frame,
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "alert subscriber fell behind; sending the list");
                st.ctx.ops.list(st.ctx.clock.now_ms())
            }
            Err(RecvError::Closed) => return None,
        },
        _ = st.keepalive.tick() => Bytes::from_static(SSE_KEEPALIVE),
    };
    Some((Ok(Frame::data(frame)), st))
}

pub fn handle<B>(req: Request<B>, ctx: Arc<AppContext>) -> Response<Body> {
    if req.method() != Method::GET {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET to subscribe",
        );
    }
    let client_ip = crate::limits::ClientIp::of_request(&req);
    if ctx.auth.authenticated() {
        if let Some(banned) = crate::auth::bans::banned_response(&ctx, client_ip) {
            return banned;
        }
    }
    let presented = Presented::of(req.uri(), req.headers());
    if let Err(e) = crate::http::authorize(&ctx, presented, None) {
        return crate::auth::bans::refuse(&ctx, client_ip, "http", &e);
    }
    let busy = || {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "too many alert subscribers or connections; retry later",
        )
    };
    let Ok(slot) = ctx.ops.subscriber_slots.clone().try_acquire_owned() else {
        return busy();
    };
    let Some(permit) = ctx.try_acquire_connection() else {
        return busy();
    };
    let gauge = ctx.metrics.connections.with_label_values(&["alerts"]);
    gauge.inc();
    ctx.metrics
        .connections_total
        .with_label_values(&["alerts"])
        .inc();
    let (first, events) = ctx.ops.subscribe(ctx.clock.now_ms());
    let every = ctx.config.sse_keepalive();
    let state = StreamState {
        first: Some(first),
        events,
        keepalive: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        shutdown: Box::pin(ctx.shutdown.clone().cancelled_owned()),
        done: false,
        ctx,
        _slots: (permit, slot, GaugeGuard(gauge)),
    };
    crate::sse::event_stream(futures_util::stream::unfold(state, next_chunk))
}

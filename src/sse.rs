//! The Server-Sent Events transport at `GET /sse/{sessionId}`: listen-only followers.
//!
//! The engine queues pre-framed `id:`/`data:` events in the listener's outbox; this stream
//! drains whatever is queued into one chunk per wake-up (one write), and sends a keep-alive
//! comment when idle. `Last-Event-ID` resumes from the session's history when it can.

use crate::auth::credentials::Presented;
use crate::auth::AuthError;
use crate::context::{AppContext, ConnectionPermit};
use crate::engine::{Access, ConnKey, EngineHandle, Inbound};
use crate::frames::SSE_KEEPALIVE;
use crate::http::errors::{error_response, Body};
use crate::outbox::Outbox;
use bandsync_protocol::{validate, ErrorCode};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Tells the engine when the stream is dropped (client gone, or server done), and frees
/// the connection slot.
struct ListenerGuard {
    key: ConnKey,
    engine: EngineHandle,
    gauge: prometheus::IntGauge,
    _permit: ConnectionPermit,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Err(msg) = self.engine.try_send(Inbound::ClosedSse { key: self.key }) {
            // The queue is full right now; deliver it as soon as there is room.
            let engine = self.engine.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { engine.send(*msg).await });
            }
        }
    }
}

struct StreamState {
    outbox: Arc<Outbox<Bytes>>,
    keepalive: tokio::time::Interval,
    frames: Vec<Bytes>,
    done: bool,
    ctx: Arc<AppContext>,
    _guard: ListenerGuard,
}

/// The next chunk to write: everything queued, or a keep-alive.
async fn next_chunk(
    mut st: StreamState,
) -> Option<(Result<Frame<Bytes>, std::io::Error>, StreamState)> {
    loop {
        if st.done {
            return None;
        }
        tokio::select! {
            () = st.outbox.ready() => {}
            _ = st.keepalive.tick() => {
                return Some((Ok(Frame::data(Bytes::from_static(SSE_KEEPALIVE))), st));
            }
        }
        let drained = st.outbox.drain_into(&mut st.frames);
        st.done = drained.closed.is_some();
        if drained.dropped_ticks > 0 {
            st.ctx.metrics.ticks_dropped.inc_by(drained.dropped_ticks);
        }
        if drained.dropped_audio > 0 {
            st.ctx.metrics.audio_dropped.inc_by(drained.dropped_audio);
        }
        if !st.frames.is_empty() {
            let mut chunk = BytesMut::with_capacity(st.frames.iter().map(Bytes::len).sum());
            for frame in st.frames.drain(..) {
                chunk.extend_from_slice(&frame);
            }
            st.ctx
                .metrics
                .messages_out
                .with_label_values(&["sse"])
                .inc();
            st.ctx
                .metrics
                .bytes_out
                .with_label_values(&["sse"])
                .inc_by(chunk.len() as u64);
            return Some((Ok(Frame::data(chunk.freeze())), st));
        }
    }
}

/// Who may listen, and whether they get the session's share data. Authenticated mode: a
/// token for the session (`?token=` or `Authorization: Bearer`), which also opens the
/// share. Share token: `?shareToken=`, or in the open mode the `Authorization` header (as
/// the share REST API takes it); a wrong one is refused, a missing one only withholds the
/// share's metadata and audio.
fn admit<B>(req: &Request<B>, ctx: &AppContext, session_id: &str) -> Result<Access, AuthError> {
    let presented = Presented::of(req.uri(), req.headers())?;
    let grant = ctx.auth.admit(presented.jwt(), session_id)?;
    let share_ok = match presented.share_token(ctx.auth.authenticated()) {
        Some(token) => ctx.auth.share_token_ok(token).map(|()| true)?,
        None => grant.is_some(),
    };
    Ok(Access {
        grant: grant.map(Box::new),
        share_ok,
    })
}

/// The event id a reconnecting listener last saw, from its `Last-Event-ID` header.
///
/// Anything that is not a decimal `u64` (surrounding whitespace allowed) counts as no id:
/// the listener then gets a fresh snapshot, which is always a correct start. Public so the
/// fuzz target and the property tests call exactly what the route calls.
pub fn last_event_id(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

pub async fn handle<B>(req: Request<B>, ctx: Arc<AppContext>, session_id: &str) -> Response<Body> {
    if req.method() != Method::GET {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET to listen",
        );
    }
    if let Err(e) = validate::session_id(session_id) {
        return error_response(StatusCode::BAD_REQUEST, e.code.as_str(), &e.message);
    }
    if !ctx.auth.origin_allowed(req.headers(), &ctx.metrics, "sse") {
        return crate::auth::origin_refusal();
    }
    let client_ip = crate::limits::ClientIp::of_request(&req);
    if ctx.auth.authenticated() || ctx.share.settings().bearer_token.is_some() {
        if let Some(banned) = crate::auth::bans::banned_response(&ctx, client_ip) {
            return banned;
        }
    }
    let access = match admit(&req, &ctx, session_id) {
        Ok(access) => access,
        Err(e) => return crate::auth::bans::refuse(&ctx, client_ip, "sse", &e),
    };
    let Some(permit) = ctx.try_acquire_connection() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        );
    };
    let last_event_id = last_event_id(req.headers());
    let key = ctx.next_key();
    let outbox = Arc::new(Outbox::new(ctx.outbox_limits()));
    let (reply, answer) = oneshot::channel();
    let open = Inbound::OpenSse {
        key,
        session_id: session_id.to_owned(),
        last_event_id,
        outbox: outbox.clone(),
        access,
        reply,
    };
    let unavailable = || {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down",
        )
    };
    if ctx.engine.send(open).await.is_err() {
        return unavailable();
    }
    match answer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let status = match e.code {
                ErrorCode::InvalidSessionId => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return error_response(status, e.code.as_str(), &e.message);
        }
        Err(_) => return unavailable(),
    }
    let gauge = ctx.metrics.connections.with_label_values(&["sse"]);
    gauge.inc();
    ctx.metrics
        .connections_total
        .with_label_values(&["sse"])
        .inc();
    let every = ctx.config.sse_keepalive();
    let state = StreamState {
        outbox,
        keepalive: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        frames: Vec::with_capacity(16),
        done: false,
        ctx: ctx.clone(),
        _guard: ListenerGuard {
            key,
            engine: ctx.engine.clone(),
            gauge,
            _permit: permit,
        },
    };
    event_stream(futures_util::stream::unfold(state, next_chunk))
}

/// A `text/event-stream` response whose body is `frames`, with the headers every stream
/// of this server carries: no caching or transformation, no proxy buffering (nginx's
/// `X-Accel-Buffering`). Shared by session listeners and repository listeners.
pub fn event_stream<S>(frames: S) -> Response<Body>
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + 'static,
{
    let body = StreamBody::new(frames.boxed())
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync();
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

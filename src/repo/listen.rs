//! `GET /stream/{repoId}`: one SSE listener of a repository.
//!
//! The hub queues shared frames in the listener's outbox; this stream hands them to hyper
//! one by one, without copying (a composition is megabytes, queued for every listener as
//! the same `Bytes`). Each time it takes the queue the listener counts as active; one that
//! takes nothing for `REPO_IDLE_TIMEOUT_MS` is disconnected by the periodic sweep.

use super::hub::{Listener, RepoFrame};
use super::RepoStreams;
use crate::context::{AppContext, ConnectionPermit};
use crate::http::errors::{error_response, Body};
use crate::net::io::ConnAbort;
use bandsync_protocol::repo::Encoding;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Longest `clientId` a listener may choose.
const MAX_CLIENT_ID_CHARS: usize = 64;
/// How long a late listener waits for another instance's latest composition.
const REMOTE_LATEST_WAIT: Duration = Duration::from_secs(2);

/// A listener of a repository, SSE or WebSocket. Unsubscribes when dropped (client gone,
/// or server done) and frees the connection slot.
pub struct Subscription {
    streams: Arc<RepoStreams>,
    pub listener: Arc<Listener>,
    gauge: prometheus::IntGauge,
    _permit: ConnectionPermit,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.gauge.dec();
        self.streams.hub.unsubscribe(&self.listener);
    }
}

struct StreamState {
    sub: Subscription,
    pending: VecDeque<RepoFrame>,
    drained: Vec<RepoFrame>,
    ctx: Arc<AppContext>,
}

async fn next_frame(
    mut st: StreamState,
) -> Option<(Result<Frame<Bytes>, std::io::Error>, StreamState)> {
    loop {
        if let Some(frame) = st.pending.pop_front() {
            let frame = match frame {
                RepoFrame::Message(bytes) => bytes,
                RepoFrame::Composition(c) => c.sse_frame(st.sub.listener.encoding).clone(),
            };
            let metrics = &st.ctx.metrics;
            metrics
                .bytes_out
                .with_label_values(&["repo"])
                .inc_by(frame.len() as u64);
            metrics.messages_out.with_label_values(&["repo"]).inc();
            return Some((Ok(Frame::data(frame)), st));
        }
        let outbox = &st.sub.listener.outbox;
        let drained = outbox.drain_into(&mut st.drained);
        st.sub.listener.touch();
        st.pending.extend(st.drained.drain(..));
        if drained.dropped_audio > 0 {
            st.ctx.metrics.audio_dropped.inc_by(drained.dropped_audio);
        }
        if !st.pending.is_empty() {
            continue;
        }
        if drained.closed.is_some() {
            return None;
        }
        outbox.ready().await;
    }
}

/// The listener's query: `clientId` (or one made up), `encoding` (default `json` over SSE,
/// `f32` over WebSocket, where the samples travel as binary).
fn parse_query(query: Option<&str>, websocket: bool) -> Result<(String, Encoding), String> {
    let mut client_id = None;
    let mut encoding = if websocket {
        Encoding::F32
    } else {
        Encoding::Json
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "clientId" => {
                let ok = !value.is_empty()
                    && value.chars().count() <= MAX_CLIENT_ID_CHARS
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !ok {
                    return Err(format!(
                        "clientId must be 1-{MAX_CLIENT_ID_CHARS} characters of A-Z a-z 0-9 _ - ."
                    ));
                }
                client_id = Some(value.into_owned());
            }
            "encoding" => encoding = value.parse()?,
            _ => {}
        }
    }
    let client_id =
        client_id.unwrap_or_else(|| format!("client_{:012x}", rand::random::<u64>() >> 16));
    Ok((client_id, encoding))
}

pub async fn handle<B: Send + 'static>(
    req: Request<B>,
    ctx: Arc<AppContext>,
    repo: String,
) -> Response<Body> {
    if req.method() != Method::GET {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET to listen, POST /stream/{repoId}/test to play a test composition",
        );
    }
    if !ctx.auth.origin_allowed(req.headers(), &ctx.metrics, "repo") {
        return crate::auth::origin_refusal();
    }
    let websocket = crate::ws::upgrade::wants_websocket(req.headers());
    let accept = match websocket.then(|| crate::ws::upgrade::check_handshake(&req)) {
        Some(Err(response)) => return *response,
        Some(Ok(accept)) => Some(accept),
        None => None,
    };
    let (client_id, encoding) = match parse_query(req.uri().query(), websocket) {
        Ok(parsed) => parsed,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, "INVALID_QUERY", &message),
    };
    let Some(permit) = ctx.try_acquire_connection() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        );
    };
    let streams = ctx.repo.clone();
    fetch_remote_latest(&streams, &repo).await;
    let abort = req.extensions().get::<ConnAbort>().cloned();
    let now_ms = ctx.clock.now_ms() as u64;
    let listener = streams
        .hub
        .subscribe(&repo, client_id, encoding, now_ms, abort);
    let gauge = ctx.metrics.connections.with_label_values(&["repo"]);
    gauge.inc();
    ctx.metrics
        .connections_total
        .with_label_values(&["repo"])
        .inc();
    let sub = Subscription {
        streams,
        listener,
        gauge,
        _permit: permit,
    };
    if let Some(accept) = accept {
        return super::socket::serve_upgrade(req, ctx, &accept, sub);
    }
    let state = StreamState {
        sub,
        pending: VecDeque::new(),
        drained: Vec::new(),
        ctx,
    };
    let stream = futures_util::stream::unfold(state, next_frame).boxed();
    let body = StreamBody::new(stream)
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
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// With `REDIS_URL`, the first listener of a repository on this instance gets the latest
/// composition played anywhere in the cluster (this instance may have started since).
async fn fetch_remote_latest(streams: &Arc<RepoStreams>, repo: &str) {
    let Some(cluster) = streams.cluster() else {
        return;
    };
    if streams.hub.latest_of(repo).is_some() {
        return;
    }
    let fetched = tokio::time::timeout(REMOTE_LATEST_WAIT, async {
        let (audio, meta) = cluster.latest(repo).await?;
        streams.adopt_latest(audio, meta).ok()?.await.ok()
    });
    let _ = fetched.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_picks_client_id_and_encoding() {
        let (id, enc) = parse_query(Some("clientId=abc-1&encoding=i16"), false).unwrap();
        assert_eq!((id.as_str(), enc), ("abc-1", Encoding::I16));
        let (id, enc) = parse_query(None, false).unwrap();
        assert!(id.starts_with("client_"));
        assert_eq!(enc, Encoding::Json);
        assert_eq!(parse_query(None, true).unwrap().1, Encoding::F32);
        assert!(parse_query(Some("encoding=mp3"), false).is_err());
        assert!(parse_query(Some("clientId="), false).is_err());
        assert!(parse_query(Some("clientId=%3Cscript%3E"), false).is_err());
        let long = format!("clientId={}", "a".repeat(65));
        assert!(parse_query(Some(&long), false).is_err());
    }
}

//! `GET /ws/stream`: the stream clients' WebSocket (overlays, operator pages, a preview
//! producer), in the seed's envelope `{"type", "payload"}`.
//!
//! A client gets a `streamState` first, then every change of its stream in version order
//! (from the stream's broadcast channel, encoded once for all), and the producer's latest
//! preview. It may ask for `status`, `ping`, authenticate with `auth`, and as a writer set
//! the `quality` or send `preview` frames.

use super::access::{admit, authorize_read, bearer_ok};
use super::document::Action;
use super::hub::{encode, Viewer};
use super::{StreamKey, StreamManager};
use crate::context::{AppContext, ConnectionPermit};
use crate::http::errors::{error_response, Body};
use crate::share::auth::Denied;
use crate::ws::guard::{GuardLimits, OVERSIZE_MARKER};
use crate::ws::upgrade::{check_handshake, spawn_upgraded_with, switching_protocols, ServerSocket};
use bandsync_protocol::stream_manager::events::{
    MessageError, Pong, PreviewFrame, SocketStatus, StageError,
};
use bandsync_protocol::stream_manager::{ClientMessage, StageEvent};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{header, Request, Response, StatusCode};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Messages a client may send per second, and in a burst.
const MESSAGES_PER_SECOND: u32 = 60;
const MESSAGE_BURST: u32 = 120;
/// A client that cannot take one message in this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room in a preview message beyond its base64.
const ENVELOPE_ROOM: usize = 4096;

type Sink = SplitSink<ServerSocket, Message>;

/// Checks the upgrade (handshake, origin, stream, read rule, connection budget) and
/// serves the socket.
pub fn handle<B: Send + 'static>(mut req: Request<B>, ctx: Arc<AppContext>) -> Response<Body> {
    if !crate::ws::upgrade::wants_websocket(req.headers()) {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            "UPGRADE_REQUIRED",
            "/ws/stream is a WebSocket: send Upgrade: websocket",
        );
    }
    let accept = match check_handshake(&req) {
        Ok(accept) => accept,
        Err(response) => return *response,
    };
    if !ctx
        .auth
        .origin_allowed(req.headers(), &ctx.metrics, "stream")
    {
        return crate::auth::origin_refusal();
    }
    let (client, stream) = match admit(&ctx, &req) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let query = req.uri().query();
    if let Err(response) = authorize_read(&ctx, query, req.headers(), &stream, client) {
        return *response;
    }
    let authorization = req.headers().get(header::AUTHORIZATION);
    let writer = bearer_ok(&ctx, authorization.map(|v| v.as_bytes())).is_ok();
    let Some(permit) = ctx.try_acquire_connection() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_FULL",
            "the server holds its maximum number of connections; retry later",
        );
    };
    let size = ctx.stream_manager.config.stream_preview_max_bytes + ENVELOPE_ROOM;
    // A message over `text` is discarded as it arrives and answered with an error; only one
    // over twice that (a client that is not playing by the rules) closes the socket.
    let limits = GuardLimits {
        text: size,
        hard: size * 2,
        deflate: false,
    };
    let client = Client {
        stream,
        conn: ctx.next_key(),
        writer,
        address: client,
        _permit: permit,
    };
    spawn_upgraded_with(&mut req, &ctx, limits, move |socket, ctx| async move {
        client.serve(socket, ctx).await;
    });
    switching_protocols(&accept, None)
}

/// One connected stream client.
struct Client {
    stream: StreamKey,
    conn: u64,
    /// Whether it presented the bearer token (at the upgrade or with `auth`).
    writer: bool,
    address: IpAddr,
    _permit: ConnectionPermit,
}

/// Counts the client in `stream_clients` while it is connected.
struct Counted(prometheus::IntGauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn text(frame: Utf8Bytes) -> Message {
    Message::Text(frame)
}

fn utf8(bytes: bytes::Bytes) -> Utf8Bytes {
    Utf8Bytes::try_from(bytes).expect("frames are JSON text")
}

impl Client {
    async fn serve(mut self, socket: ServerSocket, ctx: Arc<AppContext>) {
        let manager = ctx.stream_manager.clone();
        let metrics = &manager.metrics.stream_manager;
        metrics.clients.inc();
        let _counted = Counted(metrics.clients.clone());
        let queue = manager.config.stream_client_queue;
        let viewer = manager.hub.join(self.stream.key(), self.conn, queue);
        let mut events = viewer.channel.events.subscribe();
        let mut previews = viewer.channel.preview.subscribe();
        previews.mark_changed();
        let (mut sink, mut incoming) = socket.split();
        let Some(mut seen) = self.send_state(&mut sink, &manager).await else {
            return;
        };
        let quota = Quota::per_second(NonZeroU32::new(MESSAGES_PER_SECOND).expect("nonzero"))
            .allow_burst(NonZeroU32::new(MESSAGE_BURST).expect("nonzero"));
        let limiter = RateLimiter::direct_with_clock(quota, crate::ws::shared_clock());
        let (interval, timeout) = (ctx.config.ping_interval(), ctx.config.ping_timeout());
        let mut pings = tokio::time::interval(interval);
        let mut heard = Instant::now();
        loop {
            let outgoing = tokio::select! {
                () = ctx.shutdown.cancelled() => {
                    let frame = CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() };
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
                message = incoming.next() => {
                    let Some(Ok(message)) = message else { return };
                    heard = Instant::now();
                    match self.on_message(message, &ctx, &viewer, &limiter).await {
                        Some(Reply::Send(message)) => message,
                        Some(Reply::Close) => return,
                        None => continue,
                    }
                }
                pushed = events.recv() => match pushed {
                    Ok(pushed) if pushed.version <= seen => continue,
                    Ok(pushed) if pushed.version == seen + 1 || pushed.whole => {
                        seen = pushed.version;
                        text(pushed.frame)
                    }
                    // A gap (the publisher bridges the gaps it knows of with a streamState;
                    // this is the last line of defence): the client resyncs rather than miss
                    // a change, exactly as when it lags.
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        metrics.resyncs.inc();
                        match self.send_state(&mut sink, &manager).await {
                            Some(version) => { seen = version; continue }
                            None => return,
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = previews.changed() => {
                    if changed.is_err() { return }
                    let latest = previews.borrow_and_update().clone();
                    match latest {
                        Some(frame) if !viewer.channel.is_producer(self.conn) => text(frame),
                        _ => continue,
                    }
                }
                _ = pings.tick() => {
                    if heard.elapsed() > interval + timeout {
                        return;
                    }
                    Message::Ping(bytes::Bytes::new())
                }
            };
            if !send(&mut sink, outgoing, &manager).await {
                return;
            }
        }
    }

    /// Sends the stream's whole state; its version, or `None` when the client is gone.
    async fn send_state(&self, sink: &mut Sink, manager: &StreamManager) -> Option<u64> {
        let now = crate::http::errors::now_ms();
        let (viewers, producer) = manager.hub.counts(self.stream.key());
        let (event, version) = match manager.read(&self.stream).await {
            Ok(doc) => (
                StageEvent::StreamState(doc.snapshot(now, viewers, producer)),
                Some(doc.version),
            ),
            Err(e) => (error_event(e.code(), &e.to_string()), None),
        };
        let frame = utf8(encode(&event, now, version));
        if send(sink, text(frame), manager).await {
            version
        } else {
            None
        }
    }

    async fn on_message(
        &mut self,
        message: Message,
        ctx: &AppContext,
        viewer: &Viewer,
        limiter: &DefaultDirectRateLimiter,
    ) -> Option<Reply> {
        let manager = &ctx.stream_manager;
        let body = match message {
            Message::Text(body) => body,
            Message::Close(_) => return Some(Reply::Close),
            Message::Pong(payload) if payload.starts_with(OVERSIZE_MARKER) => {
                let limit = manager.config.stream_preview_max_bytes;
                let message =
                    format!("messages are at most {limit} bytes of preview plus its envelope");
                return Some(reply(error_event("PAYLOAD_TOO_LARGE", &message)));
            }
            Message::Binary(_) => {
                return Some(reply(error_event(
                    "INVALID_MESSAGE",
                    "send JSON text messages",
                )));
            }
            _ => return None,
        };
        manager
            .metrics
            .stream_manager
            .messages
            .with_label_values(&["in"])
            .inc();
        if limiter.check().is_err() {
            ctx.metrics.rate_limit_violations.inc();
            return Some(reply(error_event(
                "RATE_LIMITED",
                "too many messages; slow down",
            )));
        }
        let decoded = match ClientMessage::decode(body.as_str()) {
            Ok(decoded) => decoded,
            Err(MessageError { code, message }) => return Some(reply(error_event(code, &message))),
        };
        let now = crate::http::errors::now_ms();
        let event = match decoded {
            ClientMessage::Ping(echo) => StageEvent::Pong(Pong {
                timestamp: now,
                echo,
            }),
            ClientMessage::Status => self.status(manager, viewer).await,
            ClientMessage::Auth { token } => {
                if let Some(refusal) = self.authenticate(ctx, &token) {
                    refusal
                } else {
                    self.status(manager, viewer).await
                }
            }
            ClientMessage::Quality(_) | ClientMessage::Preview(_) if !self.writer => {
                error_event("UNAUTHORIZED", "send auth with the bearer token first")
            }
            ClientMessage::Quality(quality) => {
                match manager
                    .change(&self.stream, Action::SetQuality(quality))
                    .await
                {
                    Ok(_) => return None,
                    Err(e) => error_event(e.code(), &e.to_string()),
                }
            }
            ClientMessage::Preview(frame) => self.preview(manager, viewer, frame, now)?,
        };
        Some(reply(event))
    }

    fn authenticate(&mut self, ctx: &AppContext, token: &str) -> Option<StageEvent> {
        if ctx.auth_failures.check(self.address).is_err() {
            return Some(error_event(
                "RATE_LIMITED",
                "too many failed authentications; retry later",
            ));
        }
        match bearer_ok(ctx, Some(token.as_bytes())) {
            Ok(()) => {
                self.writer = true;
                None
            }
            Err(denied) => {
                if denied == Denied::Wrong {
                    ctx.auth_failures.record_failure(self.address, "ws");
                }
                Some(error_event("UNAUTHORIZED", denied.message()))
            }
        }
    }

    async fn status(&self, manager: &StreamManager, viewer: &Viewer) -> StageEvent {
        match manager.read(&self.stream).await {
            Ok(doc) => StageEvent::Status(SocketStatus {
                viewers: viewer.channel.viewers(),
                producer: viewer.channel.has_producer(),
                authorized: self.writer,
                state: doc.state,
            }),
            Err(e) => error_event(e.code(), &e.to_string()),
        }
    }

    /// Relays a preview to every viewer, latest-wins; `None` when all went well (the
    /// producer gets no echo).
    fn preview(
        &self,
        manager: &StreamManager,
        viewer: &Viewer,
        frame: PreviewFrame,
        now: f64,
    ) -> Option<StageEvent> {
        let limit = manager.config.stream_preview_max_bytes;
        if frame.data.len() > limit {
            let message = format!("preview data is at most {limit} bytes of base64");
            return Some(error_event("PAYLOAD_TOO_LARGE", &message));
        }
        if !is_base64(&frame.data) {
            return Some(error_event(
                "INVALID_PAYLOAD",
                "preview data must be base64",
            ));
        }
        if !viewer.channel.claim_producer(self.conn) {
            return Some(error_event(
                "PRODUCER_BUSY",
                "another client is sending this stream's previews",
            ));
        }
        let encoded = utf8(encode(&StageEvent::Preview(frame), now, None));
        viewer.channel.preview.send_replace(Some(encoded));
        manager.metrics.stream_manager.previews.inc();
        None
    }
}

enum Reply {
    Send(Message),
    Close,
}

fn reply(event: StageEvent) -> Reply {
    let frame = encode(&event, crate::http::errors::now_ms(), None);
    Reply::Send(text(utf8(frame)))
}

fn error_event(code: &str, message: &str) -> StageEvent {
    StageEvent::Error(StageError {
        code: code.into(),
        message: message.into(),
    })
}

/// Standard base64 with padding, checked without decoding (a preview is relayed as sent).
fn is_base64(data: &str) -> bool {
    let bytes = data.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    body.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Writes one message within [`WRITE_TIMEOUT`]; false when the client is gone.
async fn send(sink: &mut Sink, message: Message, manager: &StreamManager) -> bool {
    let is_data = message.is_text();
    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => {
            if is_data {
                manager
                    .metrics
                    .stream_manager
                    .messages
                    .with_label_values(&["out"])
                    .inc();
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_base64;

    #[test]
    fn base64_is_checked_without_decoding() {
        assert!(is_base64(""));
        assert!(is_base64("aGk="));
        assert!(is_base64("aGVsbG8gd29ybGQ="));
        assert!(is_base64("/+Aa"));
        assert!(!is_base64("aGk"));
        assert!(!is_base64("a=Gk"));
        assert!(!is_base64("aG k"));
        assert!(!is_base64("aGk\"}"));
    }
}

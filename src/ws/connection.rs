//! One `/ws` connection, served by one task: it reads the socket, answers what needs no
//! session state on the spot (`incoming`), and queues the rest for the engine.
//!
//! It writes only what the engine could not: frames are written directly into the socket
//! by whoever queued them (the engine at the end of a batch, this task after a read; see
//! `outbox::write`), and this task is woken only to finish a write the socket did not
//! take at once (it then waits until the socket is writable, reading on meanwhile), to send
//! the close, or because the socket failed.

use super::guarded_io::GuardedStream;
use super::incoming::{Flow, Reader};
use super::socket::{WireIo, WsSink};
use crate::context::{AppContext, ConnectionPermit};
use crate::engine::Inbound;
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::close;
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

pub(super) type Socket = WebSocketStream<GuardedStream<WireIo>>;

/// How long we wait, once the outbox is closed, for what is queued and our close frame to
/// go out and for the peer's half of the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A connection's own parts: its outbox and the socket's write half (the same one the
/// outbox writes), whether permessage-deflate was negotiated, who the client is (for the
/// engine's per-address limits) and what a `?token=` on the URL grants.
pub(super) struct Conn {
    pub(super) outbox: Arc<Outbox<WsFrame>>,
    pub(super) sink: Arc<WsSink>,
    pub(super) deflate: bool,
    pub(super) client_ip: std::net::IpAddr,
    pub(super) url_grant: Option<crate::auth::jwt::Grant>,
}

/// Serves one upgraded socket.
///
/// The socket comes boxed: an async fn keeps its arguments twice (as captured and as
/// locals), and this future lives as long as the connection, so every byte of it counts
/// in the memory of each idle connection.
pub(super) async fn serve(
    socket: Box<Socket>,
    conn: Conn,
    ctx: Arc<AppContext>,
    permit: ConnectionPermit,
) {
    let key = ctx.next_key();
    // Debug level: a span the log subscriber keeps for the life of every connection would
    // cost memory per idle connection at the default level. `session` is recorded at the join.
    let span = tracing::debug_span!(
        "ws",
        conn = key,
        session = tracing::field::Empty,
        deflate = conn.deflate
    );
    async move {
        let _permit = permit;
        let open = Inbound::OpenWs {
            key,
            outbox: conn.outbox.clone(),
            client_ip: conn.client_ip,
            url_grant: conn.url_grant,
        };
        if ctx.engine.send(open).await.is_err() {
            return;
        }
        let gauge = ctx.metrics.connections.with_label_values(&["ws"]);
        gauge.inc();
        ctx.metrics
            .connections_total
            .with_label_values(&["ws"])
            .inc();
        tracing::debug!("websocket open");
        run(socket, key, &conn.outbox, &conn.sink, &ctx).await;
        let _ = ctx.engine.send(Inbound::ClosedWs { key }).await;
        gauge.dec();
        tracing::debug!("websocket closed");
    }
    .instrument(span)
    .await
}

/// The connection's loop: read, finish writes, ping, and close.
async fn run(
    mut socket: Box<Socket>,
    key: crate::engine::ConnKey,
    outbox: &Outbox<WsFrame>,
    sink: &WsSink,
    ctx: &AppContext,
) {
    let mut reader = Reader::new(key, ctx);
    let ping_every = ctx.config.ping_interval();
    let ping_timeout = ctx.config.ping_timeout();
    let message_timeout = ctx.config.message_timeout();
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mut last_seen = Instant::now();
    // The socket did not take everything queued: wait until it is writable.
    let mut blocked = false;
    // Set once the outbox is closed: what is queued, then our close frame, then the peer's
    // close must all happen by then. Boxed, and only then: a timer in every idle
    // connection's future would cost its size in each.
    let mut closing_until: Option<Pin<Box<Sleep>>> = None;
    let mut close_sent = false;
    loop {
        tokio::select! {
            // Biased, outbox first: a wake-up for queued frames then polls nothing else.
            // Reading cannot starve: the outbox is ready only when something was queued
            // that its writer could not write at once.
            biased;
            () = outbox.ready(), if closing_until.is_none() => {}
            writable = sink.writable(), if blocked => {
                if writable.is_err() {
                    return;
                }
            }
            message = socket.next() => {
                let Some(message) = message else {
                    // The close handshake is over: tungstenite queued its reply to the
                    // peer's close (in the outbox, see `WireIo`) on this last read.
                    outbox.write(&ctx.clock).count(&ctx.metrics);
                    return;
                };
                last_seen = Instant::now();
                if closing_until.is_some() {
                    if message.is_err() {
                        return;
                    }
                } else if Box::pin(reader.on_message(message, outbox, ctx)).await == Flow::Stop {
                    // Keeps a reason the reader set (its close frame goes out below);
                    // otherwise the peer is gone and there is nothing left to write.
                    outbox.close(CloseReason::PeerGone);
                }
            }
            _ = ping.tick(), if closing_until.is_none() => {
                let unfinished = socket
                    .get_ref()
                    .partial_since()
                    .is_some_and(|since| since.elapsed() > message_timeout);
                if unfinished {
                    // Pongs keep `last_seen` fresh, but a message begun and never finished
                    // holds memory: the deadline is for the message, not the socket.
                    tracing::info!("message not finished within MESSAGE_TIMEOUT_MS; closing (4003)");
                    ctx.metrics.ws_messages_refused.with_label_values(&["timeout"]).inc();
                    outbox.close(CloseReason::MessageTimeout);
                } else if last_seen.elapsed() > ping_timeout {
                    tracing::debug!("ping timeout");
                    outbox.close(CloseReason::PingTimeout);
                } else {
                    let _ = outbox.push(WsFrame::control(crate::frames::PING_FRAME.clone()));
                }
            }
            () = &mut shutdown, if !outbox.is_closed() => outbox.close(CloseReason::Shutdown),
            () = std::future::poll_fn(|cx| closing_until.as_mut().map_or(Poll::Pending, |s| s.as_mut().poll(cx))), if closing_until.is_some() => return,
        }
        if close_sent {
            continue;
        }
        let written = outbox.write(&ctx.clock);
        written.count(&ctx.metrics);
        if written.failed {
            return;
        }
        blocked = written.pending;
        let Some(reason) = written.closed else {
            continue;
        };
        if reason == CloseReason::PeerGone {
            return;
        }
        closing_until.get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        if !written.pending {
            if let Some(frame) = close_frame(reason) {
                let bytes = crate::frames::close_frame(u16::from(frame.code), &frame.reason);
                // Best effort: a socket with no room for a close frame is dropped anyway.
                let _ = sink.try_write(&bytes);
            }
            close_sent = true;
            blocked = false;
        }
    }
}

/// The close frame for `reason`; none when the peer is already gone.
pub fn close_frame(reason: CloseReason) -> Option<CloseFrame> {
    let (code, text) = match reason {
        CloseReason::SlowConsumer => (close::SLOW_CONSUMER, "slow consumer: reconnect and resume"),
        CloseReason::Shutdown => (close::GOING_AWAY, "server shutting down"),
        CloseReason::Replaced => (close::REPLACED, "resumed on another connection"),
        CloseReason::RateLimited => (close::POLICY_VIOLATION, "rate limit exceeded repeatedly"),
        CloseReason::PingTimeout => (close::PING_TIMEOUT, "no pong within SOCKET_PING_TIMEOUT"),
        CloseReason::FrameTooBig => (close::MESSAGE_TOO_BIG, "frame exceeds MAX_FRAME_BYTES"),
        CloseReason::InflatedTooBig => (
            close::MESSAGE_TOO_BIG,
            "compressed message inflates beyond MAX_FRAME_BYTES",
        ),
        CloseReason::CorruptCompression => (close::INVALID_PAYLOAD, "invalid compressed data"),
        CloseReason::ProtocolViolation => (close::PROTOCOL_ERROR, "WebSocket framing violated"),
        CloseReason::MessageTimeout => (
            close::MESSAGE_TIMEOUT,
            "message not finished within MESSAGE_TIMEOUT_MS",
        ),
        CloseReason::ServerBusy => (
            close::TRY_AGAIN_LATER,
            "too many partially received messages: try again later",
        ),
        CloseReason::InvalidPayload => (close::INVALID_PAYLOAD, "text frame is not valid UTF-8"),
        CloseReason::PeerGone => return None,
    };
    Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(text),
    })
}

//! One WebSocket connection, served by one task: it reads the socket, and when the outbox
//! has frames it drains them all, feeds them and flushes once (`outgoing`). Reading
//! (`incoming`) answers what needs no session state on the spot and queues the rest for
//! the engine.
//!
//! One task and an unsplit socket, rather than a reader and a writer task around a split
//! socket: no lock between the two halves on every read and write, one wake-up per batch,
//! and a smaller future per connection (memory per idle connection counts at 10,000).
//! While it waits for room in the engine queue it does not write; that wait is the
//! backpressure the socket needs anyway.

use super::guarded_io::GuardedStream;
use super::incoming::{Flow, Reader};
use super::outgoing::write_pending;
use crate::context::{AppContext, ConnectionPermit};
use crate::engine::Inbound;
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::close;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

pub(super) type Socket = WebSocketStream<GuardedStream<TokioIo<Upgraded>>>;

/// How long we wait for the peer's half of the close handshake after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one upgraded socket; `deflate` says whether permessage-deflate was negotiated,
/// `client_ip` who the client is (for the engine's per-address limits).
/// `url_grant` what a `?token=` on the URL grants (authenticated mode).
pub async fn serve(
    socket: Socket,
    ctx: Arc<AppContext>,
    permit: ConnectionPermit,
    deflate: bool,
    client_ip: std::net::IpAddr,
    url_grant: Option<crate::auth::jwt::Grant>,
) {
    let key = ctx.next_key();
    let span = tracing::debug_span!("ws", conn = key, deflate);
    async move {
        let _permit = permit;
        let outbox = Arc::new(Outbox::new(ctx.outbox_limits()).with_deflate(deflate));
        let open = Inbound::OpenWs {
            key,
            outbox: outbox.clone(),
            client_ip,
            url_grant,
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
        run(socket, Reader::new(key, &ctx), &outbox, &ctx).await;
        let _ = ctx.engine.send(Inbound::ClosedWs { key }).await;
        gauge.dec();
        tracing::debug!("websocket closed");
    }
    .instrument(span)
    .await
}

/// The connection's loop: read, write what is queued, ping, and close.
async fn run(mut socket: Socket, mut reader: Reader, outbox: &Outbox<WsFrame>, ctx: &AppContext) {
    let ping_every = ctx.config.ping_interval();
    let ping_timeout = ctx.config.ping_timeout();
    let message_timeout = ctx.config.message_timeout();
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mut frames: Vec<WsFrame> = Vec::new();
    let mut last_seen = Instant::now();
    // Set once our close frame is out: from then on we only wait for the peer's.
    let mut closing_until: Option<Instant> = None;
    loop {
        let mut fed_ping = false;
        tokio::select! {
            // Biased, outbox first: a wake-up for queued frames (the common case under load)
            // then polls nothing else, instead of the socket, the ping timer and the
            // shutdown signal too. Reading cannot starve: the outbox is ready only when the
            // engine queued something since the last drain.
            biased;
            () = outbox.ready(), if closing_until.is_none() => {}
            message = socket.next() => {
                let Some(message) = message else { return };
                last_seen = Instant::now();
                if closing_until.is_some() {
                    if message.is_err() {
                        return;
                    }
                    continue;
                }
                if reader.on_message(message, outbox, ctx).await == Flow::Stop {
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
                } else if socket.feed(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                } else {
                    fed_ping = true;
                }
            }
            () = &mut shutdown, if !outbox.is_closed() => outbox.close(CloseReason::Shutdown),
            () = tokio::time::sleep_until(closing_until.unwrap_or_else(Instant::now)), if closing_until.is_some() => return,
        }
        if closing_until.is_some() || (!fed_ping && !outbox.has_work()) {
            continue;
        }
        match write_pending(&mut socket, outbox, ctx, &mut frames).await {
            Ok(None) => {}
            Ok(Some(CloseReason::PeerGone)) | Err(_) => return,
            Ok(Some(_)) => closing_until = Some(Instant::now() + CLOSE_GRACE),
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

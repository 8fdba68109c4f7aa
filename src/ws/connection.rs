//! One WebSocket connection: a reader that decodes, rate-limits and forwards events, and a
//! writer that drains the outbox, feeds every frame and flushes once.
//!
//! The reader answers what needs no session state on the spot (decode errors, rate-limit
//! replies, heartbeats, so `t1` is stamped at the read), and queues the rest for the
//! engine. The writer is the only task that writes to the socket.

use super::deflate::{self, InflateError, InflateStream};
use super::ratelimit::{SocketRateLimit, Verdict};
use crate::context::{AppContext, ConnectionPermit};
use crate::engine::{ConnKey, Inbound};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::client::ClientEvent;
use bandsync_protocol::server::{ErrorEvent, HeartbeatResponse, RateLimitExceeded};
use bandsync_protocol::{
    close, decode_client_frame, encode_server_frame, ErrorCode, RequestId, ServerEvent,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

type Socket = WebSocketStream<InflateStream<TokioIo<Upgraded>>>;

/// How long we wait for the peer's half of the close handshake after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Milliseconds since the server started, for the liveness check.
fn elapsed_ms(ctx: &AppContext) -> u64 {
    (ctx.clock.uptime_secs() * 1000.0) as u64
}

/// Serves one upgraded socket; `deflate` says whether permessage-deflate was negotiated.
pub async fn serve(socket: Socket, ctx: Arc<AppContext>, permit: ConnectionPermit, deflate: bool) {
    let key = ctx.next_key();
    let span = tracing::debug_span!("ws", conn = key, deflate);
    async move {
        let _permit = permit;
        let outbox = Arc::new(Outbox::new(ctx.outbox_limits()).with_deflate(deflate));
        let open = Inbound::OpenWs {
            key,
            outbox: outbox.clone(),
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

        let last_seen = AtomicU64::new(elapsed_ms(&ctx));
        let (sink, stream) = socket.split();
        let writer = write_loop(sink, &outbox, &ctx, &last_seen);
        let reader = read_loop(stream, key, &outbox, &ctx, &last_seen);
        tokio::pin!(writer, reader);
        tokio::select! {
            () = &mut writer => {
                // We sent a close (or the socket failed): give the peer a moment to answer.
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
            }
            () = &mut reader => {
                // The reader ended: either it closed the outbox with a reason (rate limit,
                // frame too big) that the writer must still send as a close frame, or the
                // peer is gone and the writer just stops.
                outbox.close(CloseReason::PeerGone);
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
            }
        }
        let _ = ctx.engine.send(Inbound::ClosedWs { key }).await;
        gauge.dec();
        tracing::debug!("websocket closed");
    }
    .instrument(span)
    .await
}

/// The close frame for `reason`; none when the peer is already gone.
fn close_frame(reason: CloseReason) -> Option<CloseFrame> {
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
        CloseReason::ProtocolViolation => (close::PROTOCOL_ERROR, "permessage-deflate violation"),
        CloseReason::InvalidPayload => (close::INVALID_PAYLOAD, "text frame is not valid UTF-8"),
        CloseReason::PeerGone => return None,
    };
    Some(CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(text),
    })
}

async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    outbox: &Outbox<WsFrame>,
    ctx: &AppContext,
    last_seen: &AtomicU64,
) {
    let ping_every = ctx.config.ping_interval();
    let ping_timeout = ctx.config.ping_timeout().as_millis() as u64;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mut frames: Vec<WsFrame> = Vec::with_capacity(16);
    let sent = ctx.metrics.messages_out.with_label_values(&["ws"]);
    let sent_bytes = ctx.metrics.bytes_out.with_label_values(&["ws"]);
    let sent_deflated = ctx.metrics.deflate_messages.with_label_values(&["out"]);
    let deflate = outbox.deflate();
    loop {
        tokio::select! {
            () = outbox.ready() => {}
            _ = ping.tick() => {
                if elapsed_ms(ctx).saturating_sub(last_seen.load(Ordering::Relaxed)) > ping_timeout {
                    tracing::debug!("ping timeout");
                    outbox.close(CloseReason::PingTimeout);
                } else if sink.feed(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    return;
                }
            }
            () = &mut shutdown, if !outbox.is_closed() => outbox.close(CloseReason::Shutdown),
        }
        let drained = outbox.drain_into(&mut frames);
        let (mut count, mut bytes, mut deflated_count) = (0u64, 0u64, 0u64);
        for frame in frames.drain(..) {
            // Bytes counts the payload as written: compressed when it went out compressed.
            let message = match frame {
                WsFrame::Deflated { deflated, .. } if deflate => {
                    deflated_count += 1;
                    bytes += deflated.len() as u64;
                    deflate::compressed_text(deflated)
                }
                WsFrame::Text(text) | WsFrame::Deflated { text, .. } => {
                    bytes += text.len() as u64;
                    Message::Text(text)
                }
                WsFrame::Binary(audio) => {
                    bytes += audio.len() as u64;
                    Message::Binary(audio)
                }
                WsFrame::Heartbeat { id, t0, t1 } => {
                    let t2 = ctx.clock.now_ms();
                    let reply = ServerEvent::HeartbeatResponse(HeartbeatResponse { t0, t1, t2 });
                    let text = Utf8Bytes::from(encode_server_frame(&reply, id.as_ref(), t2));
                    bytes += text.len() as u64;
                    Message::Text(text)
                }
            };
            count += 1;
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        sent.inc_by(count);
        sent_bytes.inc_by(bytes);
        if deflated_count > 0 {
            sent_deflated.inc_by(deflated_count);
        }
        if drained.dropped_ticks > 0 {
            ctx.metrics.ticks_dropped.inc_by(drained.dropped_ticks);
        }
        if drained.dropped_audio > 0 {
            ctx.metrics.audio_dropped.inc_by(drained.dropped_audio);
        }
        if let Some(reason) = drained.closed {
            if let Some(frame) = close_frame(reason) {
                let _ = sink.send(Message::Close(Some(frame))).await;
            }
            return;
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Queues a reply from the reader itself and wakes the writer at once.
fn reply(outbox: &Outbox<WsFrame>, ctx: &AppContext, event: &ServerEvent, id: Option<&RequestId>) {
    let json = encode_server_frame(event, id, ctx.clock.now_ms());
    if outbox.push(WsFrame::Text(Utf8Bytes::from(json))).is_ok() {
        outbox.wake();
    }
}

fn reply_error(
    outbox: &Outbox<WsFrame>,
    ctx: &AppContext,
    code: ErrorCode,
    message: String,
    id: Option<&RequestId>,
) {
    ctx.metrics
        .errors_sent
        .with_label_values(&[code.as_str()])
        .inc();
    reply(
        outbox,
        ctx,
        &ServerEvent::Error(ErrorEvent { code, message }),
        id,
    );
}

/// Ends a connection whose compressed message was refused: an `error` event saying why,
/// then close 1009 (inflates beyond `MAX_FRAME_BYTES`), 1007 (not DEFLATE data) or 1002
/// (RSV1 where it is not allowed). Only this socket is affected.
fn refuse_compressed(error: &std::io::Error, outbox: &Outbox<WsFrame>, ctx: &AppContext) {
    let Some(failure) = deflate::inflate_error(error) else {
        return;
    };
    let reason = match failure {
        InflateError::TooBig { .. } => CloseReason::InflatedTooBig,
        InflateError::Corrupt => CloseReason::CorruptCompression,
        InflateError::Protocol(_) => CloseReason::ProtocolViolation,
    };
    let code = close_frame(reason).map_or(0, |f| u16::from(f.code));
    tracing::info!(%failure, code, "refusing a compressed message; closing");
    let message = format!("{failure}; closing ({code})");
    reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
    outbox.close(reason);
}

/// Applies the rate limit to one incoming frame. Returns false when the socket must close.
fn admit(
    limit: &mut SocketRateLimit,
    outbox: &Outbox<WsFrame>,
    ctx: &AppContext,
    id: Option<&RequestId>,
) -> Option<bool> {
    match limit.check() {
        Verdict::Allowed => Some(true),
        Verdict::Limited { retry_after_ms } => {
            ctx.metrics.rate_limit_violations.inc();
            let event = ServerEvent::RateLimitExceeded(RateLimitExceeded { retry_after_ms });
            reply(outbox, ctx, &event, id);
            Some(false)
        }
        Verdict::Close => {
            ctx.metrics.rate_limit_violations.inc();
            ctx.metrics.rate_limit_disconnects.inc();
            tracing::info!("closing socket for repeated rate-limit violations (1008)");
            outbox.close(CloseReason::RateLimited);
            None
        }
    }
}

async fn read_loop(
    mut stream: SplitStream<Socket>,
    key: ConnKey,
    outbox: &Outbox<WsFrame>,
    ctx: &AppContext,
    last_seen: &AtomicU64,
) {
    let cfg = &ctx.config;
    let mut limit = SocketRateLimit::new(
        cfg.rate_limit_max_requests,
        cfg.rate_limit_window(),
        cfg.rate_limit_close_after,
    );
    while let Some(message) = stream.next().await {
        let received = Instant::now();
        last_seen.store(elapsed_ms(ctx), Ordering::Relaxed);
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(data)) => {
                ctx.metrics.messages_in.inc();
                ctx.metrics.bytes_in.inc_by(data.len() as u64);
                match admit(&mut limit, outbox, ctx, None) {
                    None => return,
                    Some(false) => continue,
                    Some(true) => {}
                }
                // Binary frames are audio (protocol/src/audio.rs); the engine checks that
                // this connection is an authorized sharer and decodes the header.
                if ctx
                    .engine
                    .send(Inbound::AudioIn { key, frame: data })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            // Pings are answered by tungstenite; a Close is answered on the next poll,
            // after which the stream ends.
            Ok(_) => continue,
            Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                tracing::info!(size, max_size, "frame over MAX_FRAME_BYTES; closing (1009)");
                let message = format!(
                    "frame of {size} bytes exceeds MAX_FRAME_BYTES ({max_size}); closing (1009)"
                );
                reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
                outbox.close(CloseReason::FrameTooBig);
                return;
            }
            Err(WsError::Utf8(_)) => {
                // tungstenite cannot read past an invalid text frame: say why, then 1007.
                let message = "text frame is not valid UTF-8; closing (1007)".to_owned();
                reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
                outbox.close(CloseReason::InvalidPayload);
                return;
            }
            Err(WsError::Io(error)) if deflate::inflate_error(&error).is_some() => {
                refuse_compressed(&error, outbox, ctx);
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "websocket read ended");
                return;
            }
        };
        ctx.metrics.messages_in.inc();
        ctx.metrics.bytes_in.inc_by(text.len() as u64);
        if text.len() > cfg.max_message_bytes {
            match admit(&mut limit, outbox, ctx, None) {
                None => return,
                Some(false) => continue,
                Some(true) => {}
            }
            let message = format!(
                "frame of {} bytes exceeds MAX_MESSAGE_BYTES ({})",
                text.len(),
                cfg.max_message_bytes
            );
            reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
            continue;
        }
        let decoded = decode_client_frame(&text);
        let id = match &decoded {
            Ok(frame) => frame.id.as_ref(),
            Err(failure) => failure.id.as_ref(),
        };
        match admit(&mut limit, outbox, ctx, id) {
            None => return,
            Some(false) => continue,
            Some(true) => {}
        }
        match decoded {
            Err(failure) => {
                let error = failure.error;
                reply_error(outbox, ctx, error.code, error.message, failure.id.as_ref());
            }
            Ok(frame) => {
                if let ClientEvent::Heartbeat(hb) = frame.event {
                    let beat = WsFrame::Heartbeat {
                        id: frame.id,
                        t0: hb.t0,
                        t1: ctx.clock.at(received),
                    };
                    if outbox.push(beat).is_ok() {
                        outbox.wake();
                    }
                    continue;
                }
                let command = Inbound::Command {
                    key,
                    id: frame.id,
                    event: frame.event,
                    received,
                };
                if ctx.engine.send(command).await.is_err() {
                    return;
                }
            }
        }
    }
}

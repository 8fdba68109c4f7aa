//! Reading one WebSocket: decode, validate, rate-limit, answer what needs no session state
//! on the spot (decode errors, rate-limit replies, heartbeats, so `t1` is stamped at the
//! read), and forward the rest to the engine.

use super::guard::{self, GuardError};
use super::guarded_io::guard_error;
use super::ratelimit::{SocketRateLimit, Verdict};
use crate::context::AppContext;
use crate::engine::{ConnKey, EngineStopped, Inbound, Sending, WaitingForRoom};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::client::ClientEvent;
use bandsync_protocol::server::{ErrorEvent, RateLimitExceeded};
use bandsync_protocol::{
    decode_client_frame, encode_server_frame, ErrorCode, RequestId, ServerEvent,
};
use futures_util::future::Either;
use std::time::Instant;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::Message;

/// Whether the connection reads on after a message.
pub(super) enum Flow {
    Continue,
    /// Stop reading: the socket failed, or the outbox was closed with a reason to send.
    Stop,
    /// The engine's queue was full: the message waits for room in this, and nothing more
    /// is read until it has gone (backpressure reaches the socket, not a queue of ours).
    Wait(WaitingForRoom),
}

impl Flow {
    /// The flow after handing a message to the engine.
    fn forwarded(sending: Sending) -> Self {
        match sending {
            Either::Left(sent) => match sent.into_inner() {
                Ok(()) => Flow::Continue,
                Err(EngineStopped) => Flow::Stop,
            },
            Either::Right(waiting) => Flow::Wait(waiting),
        }
    }
}

/// The reading side's state: who we are and the socket's rate limit.
pub(super) struct Reader {
    key: ConnKey,
    limit: SocketRateLimit,
}

impl Reader {
    pub(super) fn new(key: ConnKey, ctx: &AppContext) -> Self {
        let cfg = &ctx.config;
        Self {
            key,
            limit: SocketRateLimit::new(
                cfg.rate_limit_max_requests,
                cfg.rate_limit_window(),
                cfg.rate_limit_close_after,
            ),
        }
    }

    pub(super) fn key(&self) -> ConnKey {
        self.key
    }

    /// Handles one message (or read error) from the socket.
    pub(super) fn on_message(
        &mut self,
        message: Result<Message, WsError>,
        outbox: &Outbox<WsFrame>,
        ctx: &AppContext,
    ) -> Flow {
        let received = Instant::now();
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(data)) => {
                ctx.metrics.messages_in.inc();
                ctx.metrics.bytes_in.inc_by(data.len() as u64);
                match admit(&mut self.limit, outbox, ctx, None) {
                    None => return Flow::Stop,
                    Some(false) => return Flow::Continue,
                    Some(true) => {}
                }
                // Binary frames are audio (protocol/src/audio.rs); the engine checks that
                // this connection is an authorized sharer and decodes the header.
                return Flow::forwarded(ctx.engine.send(Inbound::AudioIn {
                    key: self.key,
                    frame: data,
                }));
            }
            Ok(Message::Pong(payload)) => {
                let Some((compressed, size)) = guard::parse_oversize_marker(&payload) else {
                    return Flow::Continue;
                };
                // The guard discarded a text message over MAX_MESSAGE_BYTES in its place.
                ctx.metrics.messages_in.inc();
                match admit(&mut self.limit, outbox, ctx, None) {
                    None => return Flow::Stop,
                    Some(false) => return Flow::Continue,
                    Some(true) => {}
                }
                ctx.metrics
                    .ws_messages_refused
                    .with_label_values(&["oversize"])
                    .inc();
                let limit = ctx.config.max_message_bytes;
                let message = if compressed {
                    format!(
                        "compressed message inflates beyond MAX_MESSAGE_BYTES ({limit}); discarded"
                    )
                } else {
                    format!(
                        "message of {size} bytes exceeds MAX_MESSAGE_BYTES ({limit}); discarded"
                    )
                };
                reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
                return Flow::Continue;
            }
            // The connection answered pings and the peer's close before they came here.
            Ok(_) => return Flow::Continue,
            Err(WsError::Utf8(_)) => {
                // A text message (or a close reason) that is not UTF-8: say why, then 1007.
                let message = "text frame is not valid UTF-8; closing (1007)".to_owned();
                reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
                outbox.close(CloseReason::InvalidPayload);
                return Flow::Stop;
            }
            Err(WsError::Io(error)) if guard_error(&error).is_some() => {
                refuse(&error, outbox, ctx);
                return Flow::Stop;
            }
            Err(error) => {
                tracing::debug!(%error, "websocket read ended");
                return Flow::Stop;
            }
        };
        ctx.metrics.messages_in.inc();
        ctx.metrics.bytes_in.inc_by(text.len() as u64);
        if text.len() > ctx.config.max_message_bytes {
            match admit(&mut self.limit, outbox, ctx, None) {
                None => return Flow::Stop,
                Some(false) => return Flow::Continue,
                Some(true) => {}
            }
            let message = format!(
                "frame of {} bytes exceeds MAX_MESSAGE_BYTES ({})",
                text.len(),
                ctx.config.max_message_bytes
            );
            reply_error(outbox, ctx, ErrorCode::InvalidMessage, message, None);
            return Flow::Continue;
        }
        let decoded = decode_client_frame(&text);
        let id = match &decoded {
            Ok(frame) => frame.id.as_ref(),
            Err(failure) => failure.id.as_ref(),
        };
        match admit(&mut self.limit, outbox, ctx, id) {
            None => return Flow::Stop,
            Some(false) => return Flow::Continue,
            Some(true) => {}
        }
        match decoded {
            Err(failure) => {
                let error = failure.error;
                reply_error(outbox, ctx, error.code, error.message, failure.id.as_ref());
            }
            Ok(frame) => {
                if let ClientEvent::JoinSession(join) = &frame.event {
                    tracing::Span::current().record("session", join.session_id.as_str());
                }
                if let ClientEvent::Heartbeat(hb) = frame.event {
                    let beat = WsFrame::Heartbeat {
                        id: frame.id,
                        t0: hb.t0,
                        t1: ctx.clock.at(received),
                    };
                    let _ = outbox.push(beat);
                    return Flow::Continue;
                }
                let verified = ctx.auth.verify_join(&frame.event);
                let command = Inbound::Command {
                    key: self.key,
                    id: frame.id,
                    event: frame.event,
                    received,
                    verified,
                    ack: false,
                };
                return Flow::forwarded(ctx.engine.send(command));
            }
        }
        Flow::Continue
    }
}

/// Queues a reply from the reading side itself; the connection writes it after this read.
fn reply(outbox: &Outbox<WsFrame>, ctx: &AppContext, event: &ServerEvent, id: Option<&RequestId>) {
    let json = encode_server_frame(event, id, ctx.clock.now_ms());
    let _ = outbox.push(WsFrame::shared(json, None));
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

/// Ends a connection whose stream the frame guard refused: an `error` event saying why,
/// then close 1009 (over `MAX_FRAME_BYTES`, or inflating beyond it), 1007 (not DEFLATE
/// data), 1002 (framing rules broken) or 1013 (the server's budget for partial messages is
/// spent). Only this socket is affected.
fn refuse(error: &std::io::Error, outbox: &Outbox<WsFrame>, ctx: &AppContext) {
    let Some(failure) = guard_error(error) else {
        return;
    };
    let (reason, label) = match failure {
        GuardError::TooBig { .. } => (CloseReason::FrameTooBig, "too_big"),
        GuardError::InflatedTooBig { .. } => (CloseReason::InflatedTooBig, "too_big"),
        GuardError::Corrupt => (CloseReason::CorruptCompression, "corrupt"),
        GuardError::Protocol(_) => (CloseReason::ProtocolViolation, "protocol"),
        GuardError::Busy => (CloseReason::ServerBusy, "budget"),
    };
    ctx.metrics
        .ws_messages_refused
        .with_label_values(&[label])
        .inc();
    let code = super::connection::close_frame(reason).map_or(0, |f| u16::from(f.code));
    tracing::info!(%failure, code, "refusing a client's frames; closing");
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

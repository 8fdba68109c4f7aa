//! One `/ws` connection, served by one task: it reads the socket, answers what needs no
//! session state on the spot (`incoming`), and queues the rest for the engine.
//!
//! It writes only what the engine could not: frames are written directly into the socket
//! by whoever queued them (the engine at the end of a batch, this task after a read; see
//! `outbox::write`), and this task is woken only to finish a write the socket did not
//! take at once (it then waits until the socket is writable, reading on meanwhile), to send
//! a ping (the engine's ping sweep says when), to send the close, or because the socket
//! failed.
//!
//! The task's future is [`Connection`], a struct polled by hand rather than an `async fn`
//! around `select!`: it lives as long as the connection, so its size is paid by every idle
//! connection, and a hand-written future holds only its fields (the `async` version held
//! every branch's future and every argument twice, 1.9 KB a task; see BENCHMARKS.md).

use super::incoming::{Flow, Reader};
use super::messages::{MessageReader, Read};
use super::socket::WsSink;
use crate::context::{AppContext, ConnectionPermit};
use crate::engine::{EngineStopped, Inbound, Sending, WaitingForRoom};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::close;
use futures_util::FutureExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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

/// Serves one upgraded socket until it closes: registers it with the engine, runs it, and
/// tells the engine it is gone.
pub(super) fn serve(
    messages: MessageReader,
    conn: Conn,
    ctx: Arc<AppContext>,
    permit: ConnectionPermit,
) -> impl Future<Output = ()> + Send {
    let key = ctx.next_key();
    // Debug level: a span the log subscriber keeps for the life of every connection would
    // cost memory per idle connection at the default level (and a disabled one is not
    // kept at all). `session` is recorded at the join.
    let span = tracing::debug_span!(
        "ws",
        conn = key,
        session = tracing::field::Empty,
        deflate = conn.deflate
    );
    let open = Inbound::OpenWs {
        key,
        outbox: conn.outbox.clone(),
        client_ip: conn.client_ip,
        url_grant: conn.url_grant,
    };
    let opening = ctx.engine.send(open);
    let last_seen = Instant::now();
    conn.outbox.heard(ctx.clock.at(last_seen.into_std()) as u64);
    Connection {
        reader: Reader::new(key, &ctx),
        messages,
        outbox: conn.outbox,
        sink: conn.sink,
        ctx,
        _permit: permit,
        phase: Phase::Opening(opening),
        span: (!span.is_disabled()).then(|| Box::new(span)),
        last_seen,
        unfinished_told: false,
        closing_until: None,
        blocked: false,
        close_sent: false,
    }
}

/// Where a connection is in its life.
enum Phase {
    /// Its `OpenWs` is on the way to the engine (waiting only if the engine's queue is full).
    Opening(Sending),
    /// Registered. While the engine's queue is full, the message read last waits here for
    /// room, and nothing more is read until it is taken (backpressure reaches the socket).
    Open(Option<WaitingForRoom>),
    /// Over; its `ClosedWs` is on the way to the engine.
    Ending(Sending),
}

/// One connection's task: reads, finishes writes, pings, and closes.
struct Connection {
    messages: MessageReader,
    outbox: Arc<Outbox<WsFrame>>,
    sink: Arc<WsSink>,
    ctx: Arc<AppContext>,
    reader: Reader,
    _permit: ConnectionPermit,
    phase: Phase,
    /// The connection's log span, entered while it is polled; none when debug logs are
    /// off (boxed: a `Span` is 40 bytes, in every connection's task).
    span: Option<Box<tracing::Span>>,
    /// When the peer was last heard from (any frame, pongs included). Also told to the
    /// outbox, with whether a message is unfinished (`unfinished_told`, what it was told
    /// last), so that the engine's ping sweep can ping a live peer without waking this task.
    last_seen: Instant,
    unfinished_told: bool,
    /// Set once the outbox is closed: what is queued, then our close frame, then the peer's
    /// close must all happen by then. Boxed, and only then: a timer in every idle
    /// connection would cost its size in each.
    closing_until: Option<Pin<Box<Sleep>>>,
    /// The socket did not take everything queued: wait until it is writable.
    blocked: bool,
    close_sent: bool,
}

/// What one event asks of the loop.
enum Step {
    /// Write what is queued (and the close, once the outbox is closed).
    Write,
    /// The connection is over.
    End,
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // A handle on the span (no allocation), so the fields stay free to borrow.
        let span = this.span.as_deref().cloned();
        let _entered = span.as_ref().map(tracing::Span::enter);
        loop {
            match &mut this.phase {
                Phase::Opening(opening) => match ready!(opening.poll_unpin(cx)) {
                    Ok(()) => {
                        this.ctx.metrics.ws.connections.inc();
                        this.ctx.metrics.ws.connections_total.inc();
                        tracing::debug!("websocket open");
                        this.phase = Phase::Open(None);
                    }
                    // The engine has stopped: the connection was never registered.
                    Err(EngineStopped) => return Poll::Ready(()),
                },
                Phase::Open(_) => {
                    ready!(this.poll_open(cx));
                    let key = this.reader.key();
                    this.phase = Phase::Ending(this.ctx.engine.send(Inbound::ClosedWs { key }));
                }
                Phase::Ending(ending) => {
                    let _ = ready!(ending.poll_unpin(cx));
                    this.ctx.metrics.ws.connections.dec();
                    tracing::debug!("websocket closed");
                    return Poll::Ready(());
                }
            }
        }
    }
}

impl Connection {
    /// Runs the open connection: each event, then the writes it calls for. Ready when the
    /// connection is over.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Step::End = ready!(self.poll_event(cx)) {
                return Poll::Ready(());
            }
            if self.close_sent {
                continue;
            }
            if let Step::End = self.write_queued() {
                return Poll::Ready(());
            }
        }
    }

    /// The next event, in this order: a message waiting for the engine's queue; the
    /// outbox's wakes (frames to finish, a close, a ping due); the socket writable again
    /// after a partial write; a read; the end of the close's grace period. The outbox comes
    /// first, so a wake for queued frames polls nothing else; reading cannot starve, as the
    /// outbox is woken only for what its writer could not write at once.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        if let Phase::Open(Some(waiting)) = &mut self.phase {
            let forwarded = ready!(waiting.poll_unpin(cx));
            self.phase = Phase::Open(None);
            if forwarded.is_err() {
                self.outbox.close(CloseReason::PeerGone);
            }
            return Poll::Ready(Step::Write);
        }
        if self.closing_until.is_none() {
            if let Poll::Ready(wakes) = self.outbox.poll_wakes(cx) {
                if wakes.ping {
                    self.ping();
                }
                return Poll::Ready(Step::Write);
            }
        }
        if self.blocked {
            if let Poll::Ready(writable) = self.sink.poll_writable(cx) {
                return Poll::Ready(match writable {
                    Ok(()) => Step::Write,
                    Err(_) => Step::End,
                });
            }
        }
        if let Poll::Ready(message) = self.messages.poll_next(cx) {
            return Poll::Ready(self.on_read(message));
        }
        let unfinished = self.messages.partial_since().is_some();
        if unfinished != self.unfinished_told {
            self.unfinished_told = unfinished;
            self.outbox.set_unfinished(unfinished);
        }
        if let Some(until) = &mut self.closing_until {
            if until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::End);
            }
        }
        Poll::Pending
    }

    fn on_read(&mut self, message: Option<Read>) -> Step {
        let Some(message) = message else {
            // Nothing more will be read: the peer closed (our reply to its close is
            // queued) or went away. What is queued goes out, then the connection ends.
            self.outbox.write(&self.ctx.clock).count(&self.ctx.metrics);
            return Step::End;
        };
        self.last_seen = Instant::now();
        self.outbox
            .heard(self.ctx.clock.at(self.last_seen.into_std()) as u64);
        if self.closing_until.is_some() {
            return match message {
                Ok(_) => Step::Write,
                Err(_) => Step::End,
            };
        }
        let reply = match &message {
            Ok(Message::Ping(payload)) => Some(crate::frames::pong_frame(&payload[..])),
            Ok(Message::Close(close)) => Some(close_reply(close.as_ref())),
            _ => None,
        };
        if let Some(reply) = reply {
            // Queued like any frame, so it never cuts into a frame written in part.
            let _ = self.outbox.push(WsFrame::control(reply));
            return Step::Write;
        }
        match self.reader.on_message(message, &self.outbox, &self.ctx) {
            Flow::Continue => {}
            // Keeps a reason the reader set (its close frame goes out below); otherwise
            // the peer is gone and there is nothing left to write.
            Flow::Stop => self.outbox.close(CloseReason::PeerGone),
            Flow::Wait(waiting) => self.phase = Phase::Open(Some(waiting)),
        }
        Step::Write
    }

    /// The ping sweep came round: close a connection that went quiet or left a message
    /// unfinished too long, or ping it.
    fn ping(&mut self) {
        let config = &self.ctx.config;
        let unfinished = self
            .messages
            .partial_since()
            .is_some_and(|since| since.elapsed() > config.message_timeout());
        if unfinished {
            // Pongs keep `last_seen` fresh, but a message begun and never finished holds
            // memory: the deadline is for the message, not the socket.
            tracing::info!("message not finished within MESSAGE_TIMEOUT_MS; closing (4003)");
            self.ctx
                .metrics
                .ws_messages_refused
                .with_label_values(&["timeout"])
                .inc();
            self.outbox.close(CloseReason::MessageTimeout);
        } else if self.last_seen.elapsed() > config.ping_timeout() {
            tracing::debug!("ping timeout");
            self.outbox.close(CloseReason::PingTimeout);
        } else {
            let _ = self
                .outbox
                .push(WsFrame::control(crate::frames::PING_FRAME.clone()));
        }
    }

    /// Writes what is queued; once the outbox is closed and drained, the close frame.
    fn write_queued(&mut self) -> Step {
        let written = self.outbox.write(&self.ctx.clock);
        written.count(&self.ctx.metrics);
        if written.failed {
            return Step::End;
        }
        self.blocked = written.pending;
        let Some(reason) = written.closed else {
            return Step::Write;
        };
        if reason == CloseReason::PeerGone {
            return Step::End;
        }
        self.closing_until
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        if !written.pending {
            if let Some(frame) = close_frame(reason) {
                let bytes = crate::frames::close_frame(u16::from(frame.code), &frame.reason);
                // Best effort: a socket with no room for a close frame is dropped anyway.
                let _ = self.sink.try_write(&bytes);
            }
            self.close_sent = true;
            self.blocked = false;
        }
        Step::Write
    }
}

/// The answer to the peer's close: its own code echoed (RFC 6455 5.5.1), or 1002 for a code
/// no endpoint may send, or an empty close for an empty one.
fn close_reply(close: Option<&CloseFrame>) -> bytes::Bytes {
    match close {
        None => crate::frames::close_frame_empty(),
        Some(frame) if frame.code.is_allowed() => {
            crate::frames::close_frame(u16::from(frame.code), &frame.reason)
        }
        Some(_) => crate::frames::close_frame(close::PROTOCOL_ERROR, "Protocol violation"),
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

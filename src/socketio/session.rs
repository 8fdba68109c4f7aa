//! One Engine.IO session, served by one task whatever its transport: long-polling requests
//! hand it their packets and wait for its answer, a WebSocket is read and written by it
//! directly, and the upgrade from one to the other happens here. It pings, enforces the
//! ping timeout, writes what the engine queued (as Socket.IO packets, see `socket`) and,
//! when the session ends for a reason a client recovers from, leaves the recovery record.

use super::packets::{self, EngineError, EnginePacket, SEPARATOR};
use super::socket::{Next, Pending, Socket};
use crate::context::{AppContext, ConnectionPermit};
use crate::limits::ConnPermit;
use crate::outbox::CloseReason;
use crate::ws::guard;
use crate::ws::upgrade::ServerSocket;
use bandsync_protocol::close;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Requests from the HTTP side to a session's task.
pub(super) enum ToSession {
    /// A long-polling `GET`: answer with the packets waiting (or when some arrive).
    Poll(oneshot::Sender<PollAnswer>),
    /// The packets of a long-polling `POST` body.
    Packets(Vec<String>),
    /// A WebSocket that finished the probe: the transport to upgrade to.
    Upgrade(Box<ServerSocket>),
}

pub(super) enum PollAnswer {
    Payload(String),
    Refused(EngineError),
}

/// The transport a session starts on.
pub(super) enum Start {
    Polling,
    Websocket(Box<ServerSocket>),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client disconnected its socket (`41`).
    ClientLeft,
    /// The transport closed or failed, or the client closed Engine.IO (`1`).
    Dropped,
    PingTimeout,
    /// The engine disconnected the socket as a slow consumer.
    SlowConsumer,
    Shutdown,
    /// The server disconnected the socket (`41` sent): rate limit, or its member resumed on
    /// another connection.
    Expelled,
    /// The client broke the Engine.IO rules (two polls at once).
    Violation,
}

impl End {
    /// Reasons a Socket.IO server keeps the socket's state for (the reference server's
    /// recoverable disconnect reasons: transport error or close, ping timeout, shutdown).
    fn recoverable(self) -> bool {
        matches!(
            self,
            End::Dropped | End::PingTimeout | End::SlowConsumer | End::Shutdown
        )
    }

    fn of(reason: CloseReason) -> Self {
        match reason {
            CloseReason::SlowConsumer => End::SlowConsumer,
            CloseReason::Shutdown => End::Shutdown,
            CloseReason::Replaced | CloseReason::RateLimited => End::Expelled,
            CloseReason::PingTimeout => End::PingTimeout,
            _ => End::Dropped,
        }
    }

    fn close_frame(self) -> CloseFrame {
        let (code, reason) = match self {
            End::SlowConsumer => (close::SLOW_CONSUMER, "slow consumer: reconnect"),
            End::Shutdown => (close::GOING_AWAY, "server shutting down"),
            End::PingTimeout => (close::PING_TIMEOUT, "ping timeout"),
            End::Violation => (close::POLICY_VIOLATION, "Engine.IO protocol violated"),
            End::ClientLeft | End::Dropped | End::Expelled => (1000, "disconnected"),
        };
        CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        }
    }
}

/// What woke the task.
enum Wake {
    Outbox,
    Request(Option<ToSession>),
    Socket(Option<Result<Message, WsError>>),
    /// The ping is due, or (while one waits for its pong) the pong is overdue.
    Timer,
    Shutdown,
}

/// How long the WebSocket half of a closing session waits for the peer's close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

struct Session {
    ctx: Arc<AppContext>,
    sid: Arc<str>,
    socket: Socket,
    out: Pending,
    poll: Option<oneshot::Sender<PollAnswer>>,
    ws: Option<Box<ServerSocket>>,
    /// A probed WebSocket waits for the client's `5` before it carries packets.
    upgrading: bool,
    next_ping: Instant,
    pong_due: Option<Instant>,
    /// `bandsync_messages_out_total` and `bytes_out_total` of `transport="socketio"`,
    /// looked up once rather than at every flush.
    messages_out: prometheus::IntCounter,
    bytes_out: prometheus::IntCounter,
}

/// What a session holds while it lives: its `MAX_CONNECTIONS` slot and, for a long-polling
/// one, its slot under the per-address cap. Held for their `Drop`, which gives them back.
pub(super) struct Slots {
    pub(super) _permit: ConnectionPermit,
    pub(super) _address: Option<ConnPermit>,
}

/// Serves Engine.IO session `sid` until it ends.
pub(super) async fn run(
    ctx: Arc<AppContext>,
    sid: Arc<str>,
    mut requests: mpsc::Receiver<ToSession>,
    start: Start,
    socket: Socket,
    slots: Slots,
) {
    let _slots = slots;
    let gauge = ctx.metrics.connections.with_label_values(&["socketio"]);
    gauge.inc();
    ctx.metrics
        .connections_total
        .with_label_values(&["socketio"])
        .inc();
    let mut session = Session {
        sid: sid.clone(),
        next_ping: Instant::now() + ctx.config.ping_interval(),
        ctx: ctx.clone(),
        socket,
        out: Pending::new(),
        poll: None,
        ws: None,
        upgrading: false,
        pong_due: None,
        messages_out: ctx.metrics.messages_out.with_label_values(&["socketio"]),
        bytes_out: ctx.metrics.bytes_out.with_label_values(&["socketio"]),
    };
    if let Start::Websocket(ws) = start {
        session.ws = Some(ws);
        let open = super::open_packet(&ctx, &sid, packets::TransportKind::Websocket);
        session.out.push_back(Utf8Bytes::from(open));
    }
    let end = session.serve(&mut requests).await;
    ctx.socket_io.forget(&sid);
    requests.close();
    session.finish(end).await;
    gauge.dec();
}

impl Session {
    async fn serve(&mut self, requests: &mut mpsc::Receiver<ToSession>) -> End {
        // The shutdown signal and the ping timer live across iterations: re-creating them at
        // every wake would register and drop a waiter and a timer entry per packet sent.
        let shutdown = self.ctx.shutdown.clone();
        let shutdown = shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut armed = self.timer_deadline();
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            let deadline = self.timer_deadline();
            if deadline != armed {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
            let connected = self.socket.is_connected();
            // Only a polling (or upgrading) session has requests to take: a WebSocket one
            // is refused at the door (`SocketIo::polling_session`), so its channel stays
            // empty and is not polled at every wake.
            let polling = self.ws.is_none() || self.upgrading;
            let wake = {
                let outbox = self.socket.outbox();
                let ws = &mut self.ws;
                tokio::select! {
                    biased;
                    () = outbox.ready(), if connected => Wake::Outbox,
                    request = requests.recv(), if polling => Wake::Request(request),
                    message = next_message(ws) => Wake::Socket(message),
                    () = &mut timer => Wake::Timer,
                    () = &mut shutdown => Wake::Shutdown,
                }
            };
            let outcome = match wake {
                Wake::Outbox => self.socket.drain(&mut self.out).map(End::of),
                Wake::Request(None) => Some(End::Dropped),
                Wake::Request(Some(request)) => self.on_request(request).await,
                Wake::Socket(message) => self.on_ws_message(message).await,
                Wake::Timer if self.pong_due.is_some() => Some(End::PingTimeout),
                Wake::Timer => {
                    self.out.push_back(Utf8Bytes::from_static(packets::PING));
                    self.pong_due = Some(Instant::now() + self.ctx.config.ping_timeout());
                    None
                }
                Wake::Shutdown => Some(End::Shutdown),
            };
            if let Some(end) = outcome {
                return end;
            }
        }
    }

    /// When the timer fires next: the pong deadline while a ping waits, else the next ping.
    fn timer_deadline(&self) -> Instant {
        self.pong_due.unwrap_or(self.next_ping)
    }

    async fn on_request(&mut self, request: ToSession) -> Option<End> {
        match request {
            ToSession::Poll(answer) => {
                if self.ws.is_some() && !self.upgrading {
                    let _ = answer.send(PollAnswer::Refused(EngineError::BadRequest));
                    return None;
                }
                if self.upgrading {
                    // A poll still in flight when the upgrade began: it ends with a noop,
                    // as the reference server ends it, so the client can switch.
                    let _ = answer.send(PollAnswer::Payload(packets::NOOP.to_owned()));
                    return None;
                }
                if self.poll.as_ref().is_some_and(|held| !held.is_closed()) {
                    // Two polls at once: the client is not following Engine.IO. The
                    // reference server closes too.
                    let _ = answer.send(PollAnswer::Refused(EngineError::BadRequest));
                    return Some(End::Violation);
                }
                self.poll = Some(answer);
                None
            }
            ToSession::Packets(packets) => {
                for text in packets {
                    if let Some(end) = self.on_engine_packet(&text).await {
                        return Some(end);
                    }
                }
                None
            }
            ToSession::Upgrade(ws) => {
                if self.ws.is_some() {
                    return None; // a second upgrade: the new socket is dropped
                }
                self.ws = Some(ws);
                self.upgrading = true;
                // The client paused polling; its last poll ends with a noop.
                if let Some(poll) = self.poll.take() {
                    let _ = poll.send(PollAnswer::Payload(packets::NOOP.to_owned()));
                }
                None
            }
        }
    }

    async fn on_ws_message(&mut self, message: Option<Result<Message, WsError>>) -> Option<End> {
        let message = match message {
            Some(Ok(Message::Close(_)) | Err(_)) | None if self.upgrading => {
                // The client gave up the upgrade: it goes on polling.
                self.ws = None;
                self.upgrading = false;
                return None;
            }
            Some(Ok(message)) => message,
            _ => return Some(End::Dropped),
        };
        match message {
            Message::Text(text) => self.on_engine_packet(&text).await,
            Message::Pong(payload) => {
                // The frame guard discarded a message over MAX_MESSAGE_BYTES in its place.
                let (_, size) = guard::parse_oversize_marker(&payload)?;
                self.ctx
                    .metrics
                    .ws_messages_refused
                    .with_label_values(&["oversize"])
                    .inc();
                let limit = self.ctx.config.max_message_bytes;
                let why = format!(
                    "message of {size} bytes exceeds MAX_MESSAGE_BYTES ({limit}); discarded"
                );
                ended_by(self.socket.refuse(&why, None, &mut self.out))
            }
            Message::Binary(_) => {
                let why = "binary frames are not accepted: events are JSON text";
                ended_by(self.socket.refuse(why, None, &mut self.out))
            }
            Message::Close(_) => Some(End::Dropped),
            Message::Ping(_) | Message::Frame(_) => None,
        }
    }

    async fn on_engine_packet(&mut self, text: &str) -> Option<End> {
        match EnginePacket::parse(text) {
            EnginePacket::Message(payload) => {
                let next = self.socket.on_packet(payload, &mut self.out).await;
                ended_by(next)
            }
            EnginePacket::Pong(_) => {
                self.pong_due = None;
                self.next_ping = Instant::now() + self.ctx.config.ping_interval();
                None
            }
            EnginePacket::Ping(data) => {
                self.out.push_back(Utf8Bytes::from(format!("3{data}")));
                None
            }
            EnginePacket::Upgrade if self.upgrading => {
                self.upgrading = false;
                self.ctx.socket_io.upgraded(&self.sid);
                None
            }
            EnginePacket::Close => Some(End::Dropped),
            EnginePacket::Invalid if self.socket.is_connected() => {
                let why = "not an Engine.IO text packet (binary payloads are not accepted)";
                ended_by(self.socket.refuse(why, None, &mut self.out))
            }
            EnginePacket::Upgrade | EnginePacket::Noop | EnginePacket::Invalid => None,
        }
    }

    /// Sends what is waiting: over the WebSocket once upgraded, else into the poll that
    /// waits (if one does).
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (count, bytes) = (
            self.out.len() as u64,
            self.out.iter().map(|p| p.len() as u64).sum(),
        );
        match (&mut self.ws, self.upgrading) {
            (Some(ws), false) => {
                for packet in self.out.drain(..) {
                    ws.feed(Message::Text(packet))
                        .await
                        .map_err(|_| End::Dropped)?;
                }
                ws.flush().await.map_err(|_| End::Dropped)?;
            }
            _ => {
                let Some(poll) = self.poll.take() else {
                    return Ok(());
                };
                let _ = poll.send(PollAnswer::Payload(join(self.out.drain(..))));
            }
        }
        self.messages_out.inc_by(count);
        self.bytes_out.inc_by(bytes);
        Ok(())
    }

    /// Writes the last packets and closes the transport, leaves the recovery record when
    /// the client may recover, and tells the engine.
    async fn finish(mut self, end: End) {
        tracing::debug!(?end, "Socket.IO session ended");
        if end == End::Shutdown || end == End::SlowConsumer {
            // Engine.IO `close`: the client reconnects (and recovers) by itself.
            self.out.push_back(Utf8Bytes::from_static(packets::CLOSE));
        }
        match (self.ws.take(), self.upgrading) {
            (Some(mut ws), false) => {
                if end != End::Dropped {
                    let _ = self.flush_into(&mut ws).await;
                    // Then the close handshake: what the client sent meanwhile is read and
                    // discarded until its close arrives (bounded). Closing with its frames
                    // unread would make the kernel reset the connection, and the client
                    // would lose the packets above (the `41` telling it why).
                    let handshake = async {
                        ws.send(Message::Close(Some(end.close_frame()))).await?;
                        while let Some(message) = ws.next().await {
                            if message?.is_close() {
                                break;
                            }
                        }
                        Ok::<(), WsError>(())
                    };
                    let _ = tokio::time::timeout(CLOSE_GRACE, handshake).await;
                }
            }
            _ => {
                if let Some(poll) = self.poll.take() {
                    self.out.push_back(Utf8Bytes::from_static(packets::CLOSE));
                    let _ = poll.send(PollAnswer::Payload(join(self.out.drain(..))));
                }
            }
        }
        if end.recoverable() {
            if let Some((pid, record)) = self.socket.recovery_record() {
                let window = self.ctx.config.recovery_window();
                self.ctx.socket_io.recovery.save(&pid, record, window).await;
            }
        }
        self.socket.close(end == End::ClientLeft).await;
    }

    async fn flush_into(&mut self, ws: &mut ServerSocket) -> Result<(), WsError> {
        for packet in self.out.drain(..) {
            ws.feed(Message::Text(packet)).await?;
        }
        ws.flush().await
    }
}

fn ended_by(next: Next) -> Option<End> {
    match next {
        Next::Continue => None,
        Next::ClientLeft => Some(End::ClientLeft),
        Next::Expel => Some(End::Expelled),
    }
}

/// A long-polling body: the packets separated by `\x1e`.
fn join(packets: impl Iterator<Item = Utf8Bytes>) -> String {
    let mut body = String::new();
    for packet in packets {
        if !body.is_empty() {
            body.push(SEPARATOR);
        }
        body.push_str(&packet);
    }
    body
}

async fn next_message(ws: &mut Option<Box<ServerSocket>>) -> Option<Result<Message, WsError>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

//! One Socket.IO socket on the main namespace, whatever carries it: `CONNECT` (with
//! recovery), client events to the engine (rate limit, request ids, acknowledgements) and
//! the engine's frames turned into Socket.IO packets. The engine sees the socket as one
//! more WebSocket member (`Inbound::OpenWs` with an outbox marked Socket.IO), so it shares
//! sessions, leader rules and broadcasts with `/ws` and SSE.

mod outgoing;

use super::acks::Acks;
use super::packets::{self, SocketPacket, MAIN_NAMESPACE};
use super::recovery::{ConnectAuth, Membership, Record};
use crate::auth::jwt::Grant;
use crate::auth::AuthError;
use crate::context::AppContext;
use crate::engine::{ConnKey, Inbound};
use crate::frames::WsFrame;
use crate::outbox::Outbox;
use crate::ws::{SocketRateLimit, Verdict};
use bandsync_protocol::server::{ErrorEvent, HeartbeatResponse, RateLimitExceeded};
use bandsync_protocol::socketio::{self as wire, Envelope};
use bandsync_protocol::{
    decode_client_event, encode_server_frame, ClientEvent, ErrorCode, RequestId, ServerEvent,
};
use outgoing::emit;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Packets waiting for the transport, in order.
pub(super) type Pending = VecDeque<Utf8Bytes>;

/// What reading one packet means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    /// The client disconnected the socket (`41`): it left on purpose; no recovery.
    ClientLeft,
    /// The rate limit was broken repeatedly: `41` is queued; end after writing it.
    Expel,
}

/// The socket once the client sent `CONNECT`.
struct Connected {
    pid: String,
    sid: String,
    membership: Option<Membership>,
}

pub(super) struct Socket {
    key: ConnKey,
    ctx: Arc<AppContext>,
    outbox: Arc<Outbox<WsFrame>>,
    client_ip: std::net::IpAddr,
    /// Authenticated mode: the grant of a `?token=` on the handshake URL, or why it did not
    /// verify (the `CONNECT` is then refused, unless its `auth` brings a good token).
    url_grant: Result<Option<Grant>, AuthError>,
    limit: SocketRateLimit,
    acks: Acks,
    connected: Option<Connected>,
    /// A recovering socket's `CONNECT` answer, sent once the engine answered its rejoin.
    awaiting_rejoin: Option<Utf8Bytes>,
    /// Set when the rejoin was answered: the `CONNECT` answer to send before `held`.
    rejoined: Option<Utf8Bytes>,
    /// Packets that arrived while the rejoin was awaited (at most `OUTBOX_MAX_FRAMES`).
    held: Pending,
    /// Reused between drains.
    frames: Vec<WsFrame>,
}

impl Socket {
    pub(super) fn new(
        ctx: Arc<AppContext>,
        client_ip: std::net::IpAddr,
        url_grant: Result<Option<Grant>, AuthError>,
    ) -> Self {
        let cfg = &ctx.config;
        let limit = SocketRateLimit::new(
            cfg.rate_limit_max_requests,
            cfg.rate_limit_window(),
            cfg.rate_limit_close_after,
        );
        let outbox = Outbox::new(ctx.outbox_limits()).for_socket_io();
        Self {
            key: ctx.next_key(),
            outbox: Arc::new(outbox),
            ctx,
            client_ip,
            url_grant,
            limit,
            acks: Acks::default(),
            connected: None,
            awaiting_rejoin: None,
            rejoined: None,
            held: Pending::new(),
            frames: Vec::new(),
        }
    }

    pub(super) fn outbox(&self) -> &Arc<Outbox<WsFrame>> {
        &self.outbox
    }

    pub(super) fn is_connected(&self) -> bool {
        self.connected.is_some()
    }

    /// Handles one Socket.IO packet (the payload of an Engine.IO message).
    pub(super) async fn on_packet(&mut self, text: &str, out: &mut Pending) -> Next {
        let received = Instant::now();
        let metrics = &self.ctx.metrics;
        metrics.messages_in.inc();
        metrics.bytes_in.inc_by(text.len() as u64);
        match SocketPacket::parse(text) {
            SocketPacket::Connect { namespace, auth } => {
                self.connect(namespace, auth, out).await;
                Next::Continue
            }
            // Packets for a namespace this socket has not joined are ignored, as Socket.IO
            // servers do.
            _ if self.connected.is_none() => Next::Continue,
            SocketPacket::Disconnect { namespace } if namespace == MAIN_NAMESPACE => {
                Next::ClientLeft
            }
            SocketPacket::Disconnect { .. } | SocketPacket::Ack => Next::Continue,
            SocketPacket::Event { namespace, .. } if namespace != MAIN_NAMESPACE => Next::Continue,
            SocketPacket::Event { ack, args, .. } => {
                self.on_event(ack, args, text.len(), received, out).await
            }
            SocketPacket::Binary => self.refuse(
                "binary attachments are not accepted: events are JSON",
                None,
                out,
            ),
            SocketPacket::Invalid(why) => self.refuse(why, None, out),
        }
    }

    /// A message that could not be read: an `error`, counted against the rate limit.
    pub(super) fn refuse(&mut self, why: &str, ack: Option<u64>, out: &mut Pending) -> Next {
        if let Some(next) = self.admit(None, ack, out) {
            return next;
        }
        let error = invalid(why.to_owned());
        self.emit_direct(&error, None, ack, out);
        Next::Continue
    }

    /// `CONNECT` on a namespace: the main one is served (recovering the socket the client
    /// had, when it names one within its window); others are refused.
    async fn connect(&mut self, namespace: &str, auth: Option<&str>, out: &mut Pending) {
        if namespace != MAIN_NAMESPACE {
            out.push_back(packet(packets::connect_error_packet(
                namespace,
                "INVALID_NAMESPACE",
                "Invalid namespace: bandsync serves the main namespace `/` only",
            )));
            return;
        }
        if self.connected.is_some() {
            return; // the main namespace again on the same connection: already there
        }
        let auth = ConnectAuth::parse(auth);
        if self.ctx.auth.authenticated() && self.ctx.auth_failures.check(self.client_ip).is_err() {
            out.push_back(packet(packets::connect_error_packet(
                MAIN_NAMESPACE,
                "RATE_LIMITED",
                "too many failed authentications from this address; retry later",
            )));
            return;
        }
        let verified = match (&self.ctx.auth.jwt, auth.token.as_deref()) {
            (Some(verifier), Some(token)) => verifier.verify(token).map(Some),
            _ => self.url_grant.clone(),
        };
        let grant = match verified {
            Ok(grant) => grant,
            Err(error) => {
                if crate::auth::bans::is_guess(&error) {
                    self.ctx
                        .auth_failures
                        .record_failure(self.client_ip, "socketio");
                }
                let message = format!("token refused: {error}");
                out.push_back(packet(packets::connect_error_packet(
                    MAIN_NAMESPACE,
                    "UNAUTHORIZED",
                    &message,
                )));
                return;
            }
        };
        let recovered = match auth.pid.as_deref() {
            Some(pid) => self.ctx.socket_io.recovery.take(pid).await,
            None => None,
        };
        let open = Inbound::OpenWs {
            key: self.key,
            outbox: self.outbox.clone(),
            client_ip: self.client_ip,
            url_grant: grant,
        };
        if self.ctx.engine.send(open).await.is_err() {
            return;
        }
        let last_version = auth.last_version();
        let (sid, pid) = match (&recovered, auth.pid) {
            (Some(record), Some(pid)) => (record.sid.clone(), pid),
            _ => (super::random_id(), super::random_id()),
        };
        let connect = packet(packets::connect_packet(&sid, &pid));
        let membership = recovered.and_then(|record| record.membership);
        self.connected = Some(Connected {
            pid,
            sid,
            membership: membership.clone(),
        });
        let Some(membership) = membership else {
            out.push_back(connect);
            return;
        };
        // The answer waits for the rejoin: the client sends its next events only once
        // connected, and they must find it back in its session (a rejoin loads the
        // session first when it lives on another instance).
        self.ctx.metrics.socket_io_recoveries.inc();
        self.awaiting_rejoin = Some(connect);
        if !self.resume(membership, last_version).await {
            out.extend(self.awaiting_rejoin.take());
        }
    }

    /// Rejoins the session of a recovered socket with its resume token: the engine
    /// restores its member id and role, and replays the state events after `last_version`.
    /// Returns whether the rejoin went to the engine (its answer is then awaited).
    async fn resume(&mut self, membership: Membership, last_version: Option<u64>) -> bool {
        let join = serde_json::json!({
            "sessionId": membership.session_id,
            "resumeToken": membership.resume_token,
            "lastVersion": last_version,
        });
        let Ok(event) = decode_client_event("join_session", Some(&join.to_string())) else {
            return false;
        };
        let id = self.acks.recovery(last_version);
        self.forward(event, Some(id), false, Instant::now()).await
    }

    async fn on_event(
        &mut self,
        ack: Option<u64>,
        args: &str,
        size: usize,
        received: Instant,
        out: &mut Pending,
    ) -> Next {
        let limit = self.ctx.config.max_message_bytes;
        if size > limit {
            let why = format!("message of {size} bytes exceeds MAX_MESSAGE_BYTES ({limit})");
            return self.refuse(&why, ack, out);
        }
        let decoded = wire::decode_event_array(args);
        let id = match &decoded {
            Ok(event) => event.id.clone(),
            Err(failure) => failure.id.clone(),
        };
        if let Some(next) = self.admit(id.as_ref(), ack, out) {
            return next;
        }
        let event = match decoded {
            Ok(event) => event,
            Err(failure) => {
                let error = ServerEvent::Error(ErrorEvent {
                    code: failure.error.code,
                    message: failure.error.message,
                });
                self.count_error(failure.error.code);
                self.emit_direct(&error, failure.id.as_ref(), ack, out);
                return Next::Continue;
            }
        };
        if let ClientEvent::Heartbeat(hb) = event.event {
            let t1 = self.ctx.clock.at(received);
            let reply = HeartbeatResponse {
                t0: hb.t0,
                t1,
                t2: self.ctx.clock.now_ms(),
            };
            let reply = ServerEvent::HeartbeatResponse(reply);
            self.emit_direct(&reply, event.id.as_ref(), ack, out);
            return Next::Continue;
        }
        if matches!(event.event, ClientEvent::LeaveSession) {
            if let Some(connected) = &mut self.connected {
                connected.membership = None;
            }
        }
        let id = match ack {
            Some(ack) => {
                let broadcast_only = answered_by_broadcast(&event.event);
                Some(self.acks.expect(ack, event.id, broadcast_only))
            }
            None => event.id,
        };
        self.forward(event.event, id, ack.is_some(), received).await;
        Next::Continue
    }

    /// Queues an event for the engine; false if the engine has stopped.
    async fn forward(
        &mut self,
        event: ClientEvent,
        id: Option<RequestId>,
        ack: bool,
        received: Instant,
    ) -> bool {
        let verified = self.ctx.auth.verify_join(&event);
        let command = Inbound::Command {
            key: self.key,
            id,
            event,
            received,
            verified,
            ack,
        };
        self.ctx.engine.send(command).await.is_ok()
    }

    /// The rate limit for one message; `Some` when the message must not be processed.
    fn admit(
        &mut self,
        id: Option<&RequestId>,
        ack: Option<u64>,
        out: &mut Pending,
    ) -> Option<Next> {
        let metrics = &self.ctx.metrics;
        match self.limit.check() {
            Verdict::Allowed => None,
            Verdict::Limited { retry_after_ms } => {
                metrics.rate_limit_violations.inc();
                let event = ServerEvent::RateLimitExceeded(RateLimitExceeded { retry_after_ms });
                self.emit_direct(&event, id, ack, out);
                Some(Next::Continue)
            }
            Verdict::Close => {
                metrics.rate_limit_violations.inc();
                metrics.rate_limit_disconnects.inc();
                tracing::info!(
                    "disconnecting a Socket.IO socket for repeated rate-limit violations"
                );
                out.push_back(Utf8Bytes::from_static(packets::DISCONNECT));
                Some(Next::Expel)
            }
        }
    }

    fn count_error(&self, code: ErrorCode) {
        self.ctx
            .metrics
            .errors_sent
            .with_label_values(&[code.as_str()])
            .inc();
    }

    /// Emits a reply made by the connection itself (never through the engine).
    fn emit_direct(
        &mut self,
        event: &ServerEvent,
        id: Option<&RequestId>,
        ack: Option<u64>,
        out: &mut Pending,
    ) {
        if let ServerEvent::Error(error) = event {
            self.count_error(error.code);
        }
        let json = encode_server_frame(event, id, self.ctx.clock.now_ms());
        let Ok(envelope) = Envelope::parse(&json) else {
            return;
        };
        emit(&envelope, envelope.id(), ack, out);
    }

    /// The record a recoverable drop leaves, if the socket had connected.
    pub(super) fn recovery_record(&self) -> Option<(String, Record)> {
        let connected = self.connected.as_ref()?;
        Some((
            connected.pid.clone(),
            Record {
                sid: connected.sid.clone(),
                membership: connected.membership.clone(),
            },
        ))
    }

    /// Tells the engine the socket is gone; a client that disconnected on purpose leaves
    /// its session first (a dropped one keeps its seat for the recovery window).
    pub(super) async fn close(&mut self, left_on_purpose: bool) {
        if self.connected.is_none() {
            return;
        }
        if left_on_purpose {
            self.forward(ClientEvent::LeaveSession, None, false, Instant::now())
                .await;
        }
        let _ = self
            .ctx
            .engine
            .send(Inbound::ClosedWs { key: self.key })
            .await;
    }
}

/// Events whose contract answer on success is a broadcast, not a direct reply: their
/// acknowledgement gets the resulting state, which is not also emitted as an event.
fn answered_by_broadcast(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::SetTempo(_)
            | ClientEvent::Play(_)
            | ClientEvent::Pause(_)
            | ClientEvent::Seek(_)
            | ClientEvent::UpdateMessage(_)
            | ClientEvent::SetSheet(_)
            | ClientEvent::SetRole(_)
            | ClientEvent::LeaveSession
    )
}

fn invalid(message: String) -> ServerEvent {
    ServerEvent::Error(ErrorEvent {
        code: ErrorCode::InvalidMessage,
        message,
    })
}

fn packet(text: String) -> Utf8Bytes {
    Utf8Bytes::from(text)
}

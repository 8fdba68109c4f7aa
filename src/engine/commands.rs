//! What each client event does to a session, and the leader rules.

use super::commit::AfterCommit;
use super::membership::Departure;
use super::session::Session;
use super::{ConnKey, Engine, Peer};
use crate::cluster::LeaderCheck;
use bandsync_protocol::client::{SetSheet, UpdateMessage};
use bandsync_protocol::server::{ErrorEvent, HeartbeatResponse, SessionState};
use bandsync_protocol::{ClientEvent, ErrorCode, ProtocolError, RequestId, Role, ServerEvent};
use std::sync::Arc;

impl Engine {
    /// Applies one decoded, validated event from connection `key`. `ack`: the sender
    /// (a Socket.IO client's acknowledgement callback) wants an answer even where the
    /// contract has no direct reply; it then gets a `sync_response` once the event applied.
    pub(super) fn command(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        event: ClientEvent,
        verified: Option<super::inbound::Verified>,
        ack: bool,
    ) {
        let Some(conn) = self.conns.get(&key) else {
            return; // closed while the event was queued
        };
        if matches!(conn.peer, Peer::Sse(_)) {
            return;
        }
        let session_id = conn.session.clone();
        let role = conn.role;
        let event = match event {
            ClientEvent::JoinSession(join) => return self.join(key, id, join, verified),
            ClientEvent::Heartbeat(hb) => {
                // Connections answer heartbeats themselves; this path only serves callers
                // that route everything through the engine.
                let now = self.clock.now_ms();
                let reply = HeartbeatResponse {
                    t0: hb.t0,
                    t1: now,
                    t2: now,
                };
                return self.send_to(key, &ServerEvent::HeartbeatResponse(reply), id.as_ref());
            }
            other => other,
        };
        let Some(session_id) = session_id else {
            let error = ProtocolError::new(ErrorCode::NotInSession, "join a session first");
            return self.reply_error(key, id.as_ref(), error);
        };
        if event.leader_only() && role != Role::Leader {
            let message = format!("only the leader may send `{}`", event.type_name());
            return self.reply_error(
                key,
                id.as_ref(),
                ProtocolError::new(ErrorCode::NotLeader, message),
            );
        }
        match event {
            ClientEvent::LeaveSession => {
                if ack {
                    self.reply_state(key, id, &session_id);
                }
                self.leave(key, Departure::Left);
            }
            ClientEvent::SetRole(request) => {
                self.set_role(key, id, &session_id, request.role, ack);
            }
            ClientEvent::SyncRequest => self.reply_state(key, id, &session_id),
            ClientEvent::ShareStart(start) => self.share_start(key, id, &session_id, &start.token),
            ClientEvent::ShareStop => self.share_stop(key, id),
            ClientEvent::SetSheet(SetSheet { text }) => {
                if self.sessions[&session_id].sheet == text {
                    return self.reply_state(key, id, &session_id);
                }
                // Broadcast as a `sheet` event with the commit (`apply_committed`).
                let (check, then) = self.as_leader(key, id, ack);
                self.change(&session_id, check, None, then, |s| s.sheet = text);
            }
            ClientEvent::UpdateMessage(UpdateMessage { text }) => {
                if self.sessions[&session_id].message == text {
                    return self.reply_state(key, id, &session_id);
                }
                // Any member may write the message: the commit does not depend on the seat
                // (a leader check here refused followers in a cluster, where it is enforced).
                let then = match ack {
                    true => AfterCommit::Acknowledge { key, id },
                    false => AfterCommit::Nothing,
                };
                self.change(&session_id, LeaderCheck::Any, None, then, |s| {
                    s.message = text
                });
            }
            transport_event => self.transport(key, id, &session_id, transport_event, ack),
        }
    }

    fn set_role(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        wanted: Role,
        ack: bool,
    ) {
        let conn = &self.conns[&key];
        let client_id = conn.client_id.clone();
        let current = conn.role;
        if current == Role::Follower && wanted == Role::Leader {
            if let Err(e) = self.check_may_lead(key) {
                return self.reply_error(key, id.as_ref(), e);
            }
        }
        let session = self.sessions.get_mut(session_id).unwrap();
        match (current, wanted) {
            (Role::Follower, Role::Leader) => {
                if let Some(leader) = &session.leader {
                    let message = format!("the session is led by {leader}");
                    return self.reply_error(
                        key,
                        id.as_ref(),
                        ProtocolError::new(ErrorCode::LeaderTaken, message),
                    );
                }
                // The seat is ours only once the claim commits (atomically, cluster-wide).
                let then = AfterCommit::RoleClaim { key, id, ack };
                self.change(session_id, LeaderCheck::Is(None), None, then, |s| {
                    s.leader = Some(client_id);
                });
            }
            (Role::Leader, Role::Follower) => {
                session.leader_key = None;
                let conn = self.conns.get_mut(&key).unwrap();
                conn.role = wanted;
                if let Some(token) = conn.resume_token.clone() {
                    self.resume.set_role(&token, wanted);
                    self.save_resume(&token);
                }
                let check = LeaderCheck::Is(Some(String::from(&*client_id)));
                self.change(session_id, check, None, AfterCommit::Nothing, |s| {
                    s.leader = None;
                });
                self.stats_changed(session_id);
                if ack {
                    self.reply_state(key, id, session_id);
                }
            }
            _ => self.reply_state(key, id, session_id),
        }
    }

    /// The leader check and follow-up of a leader's command: it commits only while the
    /// sender still holds the seat.
    pub(super) fn as_leader(
        &self,
        key: ConnKey,
        id: Option<RequestId>,
        ack: bool,
    ) -> (LeaderCheck, AfterCommit) {
        let holder = self.conns.get(&key).map(|c| String::from(&*c.client_id));
        (
            LeaderCheck::Is(holder),
            AfterCommit::LeaderCommand { key, id, ack },
        )
    }

    /// The state as of now: a pending change whose instant has come shows as applied,
    /// even before its activation commits.
    pub(super) fn session_state(&self, session: &Session) -> SessionState {
        let now = self.clock.now_ms();
        let (transport, _, scheduled) = session.effective(now, self.tick_ms());
        SessionState {
            session_id: String::from(&*session.id),
            transport,
            message: session.message.clone(),
            leader_id: session.leader.as_deref().map(str::to_owned),
            version: session.version,
            server_time: now,
            replayed: false,
            scheduled,
        }
    }

    /// Answers `sync_request` (and no-op commands) with the current state.
    pub(super) fn reply_state(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
    ) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let event = ServerEvent::SyncResponse(self.session_state(session));
        self.send_to(key, &event, id.as_ref());
    }

    pub(super) fn reply_error(
        &mut self,
        key: ConnKey,
        id: Option<&RequestId>,
        error: ProtocolError,
    ) {
        self.metrics
            .errors_sent
            .with_label_values(&[error.code.as_str()])
            .inc();
        let event = ServerEvent::Error(ErrorEvent {
            code: error.code,
            message: error.message,
        });
        self.send_to(key, &event, id);
    }
}

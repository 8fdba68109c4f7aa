//! What each client event does to a session, and the leader rules.

use super::membership::Departure;
use super::session::Session;
use super::{ConnKey, Engine, Peer};
use bandsync_protocol::client::{Play, Seek, SetTempo, UpdateMessage};
use bandsync_protocol::server::{ErrorEvent, HeartbeatResponse, SessionState};
use bandsync_protocol::{ClientEvent, ErrorCode, ProtocolError, RequestId, Role, ServerEvent};
use std::sync::Arc;

impl Engine {
    /// Applies one decoded, validated event from connection `key`.
    pub(super) fn command(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        event: ClientEvent,
        verified: Option<super::inbound::Verified>,
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
            ClientEvent::LeaveSession => self.leave(key, Departure::Left),
            ClientEvent::SetRole(request) => self.set_role(key, id, &session_id, request.role),
            ClientEvent::SyncRequest => self.reply_state(key, id, &session_id),
            ClientEvent::ShareStart(start) => self.share_start(key, id, &session_id, &start.token),
            ClientEvent::ShareStop => self.share_stop(key, id),
            ClientEvent::UpdateMessage(UpdateMessage { text }) => {
                let session = self.sessions.get_mut(&session_id).unwrap();
                if session.message == text {
                    return self.reply_state(key, id, &session_id);
                }
                session.message = text;
                session.version += 1;
                self.state_changed(&session_id, None);
            }
            transport_event => self.transport(key, id, &session_id, transport_event),
        }
    }

    /// `set_tempo`, `play`, `pause`, `seek`, from the leader.
    fn transport(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        event: ClientEvent,
    ) {
        let now = self.clock.now_ms();
        let transport = &mut self.sessions.get_mut(session_id).unwrap().transport;
        let changed = match event {
            ClientEvent::SetTempo(SetTempo { tempo }) => transport.set_tempo(now, tempo),
            ClientEvent::Play(Play { beat }) => transport.play(now, beat),
            ClientEvent::Pause => transport.pause(now),
            ClientEvent::Seek(Seek { beat }) => transport.seek(now, beat),
            _ => unreachable!("only transport events are routed here"),
        };
        if changed {
            self.sessions.get_mut(session_id).unwrap().version += 1;
            self.state_changed(session_id, None);
        } else {
            // Nothing changed (e.g. `pause` while paused): no broadcast, no new version,
            // but the sender still gets an answer.
            self.reply_state(key, id, session_id);
        }
    }

    fn set_role(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        session_id: &Arc<str>,
        wanted: Role,
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
                session.leader = Some(client_id);
                session.leader_key = Some(key);
            }
            (Role::Leader, Role::Follower) => {
                session.leader = None;
                session.leader_key = None;
            }
            _ => return self.reply_state(key, id, session_id),
        }
        session.version += 1;
        let conn = self.conns.get_mut(&key).unwrap();
        conn.role = wanted;
        if let Some(token) = &conn.resume_token {
            self.resume.set_role(token, wanted);
        }
        self.state_changed(session_id, None);
        self.stats_changed(session_id);
    }

    pub(super) fn session_state(&self, session: &Session) -> SessionState {
        SessionState {
            session_id: session.id.to_string(),
            transport: session.transport,
            message: session.message.clone(),
            leader_id: session.leader.as_deref().map(str::to_owned),
            version: session.version,
            server_time: self.clock.now_ms(),
            replayed: false,
        }
    }

    /// Persists the session and broadcasts its new state to everyone but `except`.
    pub(super) fn state_changed(&mut self, session_id: &Arc<str>, except: Option<ConnKey>) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        self.store.save(&session.record(), self.settings.retention);
        let state = self.session_state(session);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.states.record(state.clone());
        }
        self.broadcast(session_id, &ServerEvent::StateUpdate(state), except);
    }

    /// Answers `sync_request` (and no-op commands) with the current state.
    fn reply_state(&mut self, key: ConnKey, id: Option<RequestId>, session_id: &Arc<str>) {
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

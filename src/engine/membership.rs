//! Who is in which session: joining, resuming, leaving, dropping, listening over SSE. What
//! a session looks like from outside (snapshot, member list) is in `views.rs`.

use super::access::Access;
use super::resume::{new_token, ResumeEntry};
use super::session::Session;
use super::{Conn, ConnKey, Engine, Peer};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::server::SessionState;
use bandsync_protocol::{
    encode_server_frame, ErrorCode, JoinSession, ProtocolError, RequestId, Role, ServerEvent,
};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// How a member stops being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// `leave_session`, or joining another session: identity and leadership released.
    Left,
    /// The socket dropped: identity (and a leader's seat) held for the recovery window.
    Dropped,
    /// Another connection resumed this identity.
    Replaced,
}

fn new_client_id() -> Arc<str> {
    format!("c{}", &new_token()[..16]).into()
}

impl Engine {
    pub(super) fn open_ws(
        &mut self,
        key: ConnKey,
        outbox: Arc<Outbox<WsFrame>>,
        client_ip: std::net::IpAddr,
        url_grant: Option<crate::auth::jwt::Grant>,
    ) {
        self.conns.insert(
            key,
            Conn {
                client_id: new_client_id(),
                name: None,
                role: Role::Follower,
                session: None,
                peer: Peer::Ws(outbox),
                resume_token: None,
                sharing: None,
                client_ip,
                url_grant,
                access: Access::default(),
            },
        );
    }

    /// The live session, revived from the store, or new (within `MAX_SYNC_SESSIONS`).
    fn session_for_join(&mut self, session_id: &str) -> Result<Arc<str>, ProtocolError> {
        if let Some((id, _)) = self.sessions.get_key_value(session_id) {
            return Ok(id.clone());
        }
        if self.sessions.len() >= self.settings.max_sync_sessions {
            return Err(ProtocolError::new(
                ErrorCode::SessionLimit,
                "the server holds its maximum number of sessions",
            ));
        }
        let cap = self.settings.sse_history;
        let session = match self.store.load(session_id) {
            Some(record) => Session::from_record(record, cap),
            None => Session::new(session_id.into(), self.clock.now_ms(), cap),
        }
        .with_state_log(self.settings.resume_history);
        let id = session.id.clone();
        self.sessions.insert(id.clone(), session);
        self.metrics.sessions.set(self.sessions.len() as i64);
        Ok(id)
    }

    fn check_capacity(&mut self, session_id: &Arc<str>) -> Result<(), ProtocolError> {
        if self.sessions[session_id].audience() >= self.settings.max_session_members {
            self.retire_if_abandoned(session_id);
            return Err(ProtocolError::new(
                ErrorCode::SessionFull,
                "the session is full",
            ));
        }
        Ok(())
    }

    pub(super) fn join(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        join: JoinSession,
        verified: Option<super::inbound::Verified>,
    ) {
        let access = match self.admit_join(key, &join, verified) {
            Ok(access) => access,
            Err(e) => return self.reply_error(key, id.as_ref(), e),
        };
        if self.conns.get(&key).is_some_and(|c| c.session.is_some()) {
            self.leave(key, Departure::Left);
        }
        let session_id = match self
            .session_for_join(&join.session_id)
            .and_then(|s| self.check_capacity(&s).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => return self.reply_error(key, id.as_ref(), e),
        };
        let now = Instant::now();
        let claim = join.resume_token.as_deref().and_then(|token| {
            let entry = self.resume.claimable(token, &session_id, now)?.clone();
            Some((token.to_owned(), entry))
        });
        let resumed = claim.is_some();
        let mut seat_released = false;
        let (client_id, mut role, name) = match claim {
            Some((token, entry)) => {
                self.resume.revoke(&token);
                match entry.live {
                    Some(old_key) if old_key != key => self.replace(old_key),
                    Some(_) => {}
                    None => {
                        let session = self.sessions.get_mut(&session_id).unwrap();
                        session.ghosts = session.ghosts.saturating_sub(1);
                    }
                }
                let session = self.sessions.get_mut(&session_id).unwrap();
                let held_seat = entry.role == Role::Leader
                    && session.leader.as_deref() == Some(&*entry.client_id);
                // A resume never grants more than the presented token: a leader identity
                // resumed with a follower token gives its seat up.
                if held_seat && access.may_lead().is_err() {
                    session.leader = None;
                    seat_released = true;
                }
                let role = if held_seat && !seat_released {
                    Role::Leader
                } else {
                    Role::Follower
                };
                (entry.client_id, role, join.name.clone().or(entry.name))
            }
            None => (
                self.conns[&key].client_id.clone(),
                Role::Follower,
                join.name.clone(),
            ),
        };
        let session = self.sessions.get_mut(&session_id).unwrap();
        if role == Role::Follower && join.role == Some(Role::Leader) && session.leader.is_none() {
            role = Role::Leader;
        }
        let leader_changed = seat_released
            || (role == Role::Leader && session.leader.as_deref() != Some(&*client_id));
        let Some(Peer::Ws(outbox)) = self.conns.get(&key).map(|c| &c.peer) else {
            return;
        };
        session.members.insert(key, outbox.clone());
        if role == Role::Leader {
            session.leader = Some(client_id.clone());
            session.leader_key = Some(key);
        }
        if leader_changed {
            session.version += 1;
        }
        let token = self.resume.issue(ResumeEntry {
            client_id: client_id.clone(),
            session_id: session_id.clone(),
            name: name.clone(),
            role,
            live: Some(key),
            expires: None,
            identity: access.grant.as_ref().map(crate::auth::jwt::Grant::identity),
        });
        let conn = self.conns.get_mut(&key).unwrap();
        conn.client_id = client_id;
        conn.name = name;
        conn.role = role;
        conn.session = Some(session_id.clone());
        conn.resume_token = Some(token.clone());
        conn.access = access;
        let replayed = match join.last_version {
            Some(last) if resumed => self.replay_missed(key, &session_id, last),
            _ => 0,
        };
        let mut snapshot = self.snapshot(key, &session_id, token, resumed);
        snapshot.replay_count = replayed;
        self.send_to(key, &ServerEvent::Snapshot(snapshot), id.as_ref());
        if leader_changed {
            self.state_changed(&session_id, Some(key));
        }
        self.stats_changed(&session_id);
        self.share_burst(key, &session_id);
        tracing::debug!(session = %session_id, resumed, ?role, "joined");
    }

    /// Sends a resuming client the `state_update`s after version `last`, marked `replayed`,
    /// in order, when the session's log still holds every one of them and they fit the
    /// replay budget; returns how many. Otherwise (or when `last` is not a version of this
    /// session) nothing is sent and the snapshot that follows brings the client up to date
    /// on its own.
    fn replay_missed(&mut self, key: ConnKey, session_id: &str, last: u64) -> u64 {
        let session = &self.sessions[session_id];
        let budget = self.settings.replay_budget_frames;
        let missed = session.states.after(last, session.version);
        let Some(states) = missed.filter(|states| states.len() <= budget) else {
            self.metrics
                .resume_replays
                .with_label_values(&["snapshot"])
                .inc();
            return 0;
        };
        let events: Vec<ServerEvent> = states
            .into_iter()
            .map(|state| {
                ServerEvent::StateUpdate(SessionState {
                    replayed: true,
                    ..state.clone()
                })
            })
            .collect();
        let now_ms = self.clock.now_ms();
        let bytes: usize = events
            .iter()
            .map(|e| encode_server_frame(e, None, now_ms).len())
            .sum();
        if bytes > self.settings.replay_budget_bytes {
            self.metrics
                .resume_replays
                .with_label_values(&["snapshot"])
                .inc();
            return 0;
        }
        self.metrics
            .resume_replays
            .with_label_values(&["replayed"])
            .inc();
        self.metrics
            .resume_replayed_events
            .inc_by(events.len() as u64);
        for event in &events {
            self.send_to(key, event, None);
        }
        events.len() as u64
    }

    /// Detaches a connection whose identity another connection just resumed.
    fn replace(&mut self, old_key: ConnKey) {
        self.leave(old_key, Departure::Replaced);
        if let Some(Peer::Ws(outbox)) = self.conns.get(&old_key).map(|c| &c.peer) {
            outbox.close(CloseReason::Replaced);
        }
    }

    pub(super) fn leave(&mut self, key: ConnKey, departure: Departure) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let Some(session_id) = conn.session.take() else {
            return;
        };
        let token = conn.resume_token.take();
        let was_leader = std::mem::replace(&mut conn.role, Role::Follower) == Role::Leader;
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        session.members.swap_remove(&key);
        if was_leader {
            session.leader_key = None;
        }
        let mut leader_vacated = false;
        match (departure, token) {
            (Departure::Dropped, Some(token)) => {
                self.resume
                    .mark_dropped(&token, Instant::now() + self.settings.recovery_window);
                session.ghosts += 1;
            }
            (Departure::Replaced, _) => {}
            (_, token) => {
                if let Some(token) = token {
                    self.resume.revoke(&token);
                }
                if was_leader {
                    session.leader = None;
                    session.version += 1;
                    leader_vacated = true;
                }
            }
        }
        if leader_vacated {
            self.state_changed(&session_id, None);
        }
        self.stats_changed(&session_id);
        // A replaced member's identity lives on in the connection that resumed it, which is
        // joining this very session right now: it must not be retired in between.
        if departure != Departure::Replaced {
            self.retire_if_abandoned(&session_id);
        }
    }

    /// A dropped member's recovery window closed: release its seat for good.
    pub(super) fn lapse_dropped_member(&mut self, entry: ResumeEntry) {
        let Some(session) = self.sessions.get_mut(&entry.session_id) else {
            return;
        };
        session.ghosts = session.ghosts.saturating_sub(1);
        if session.leader_key.is_none() && session.leader.as_deref() == Some(&*entry.client_id) {
            session.leader = None;
            session.version += 1;
            self.state_changed(&entry.session_id, None);
            self.stats_changed(&entry.session_id);
        }
        self.retire_if_abandoned(&entry.session_id);
    }

    /// A socket or stream ended.
    pub(super) fn closed(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        if let Peer::Sse(_) = conn.peer {
            if let Some(session_id) = conn.session.clone() {
                if let Some(session) = self.sessions.get_mut(&session_id) {
                    session.listeners.swap_remove(&key);
                }
                self.stats_changed(&session_id);
                self.retire_if_abandoned(&session_id);
            }
        } else {
            self.leave(key, Departure::Dropped);
        }
        self.conns.remove(&key);
    }

    /// Saves an abandoned session to the store (for the retention window) and drops it.
    fn retire_if_abandoned(&mut self, session_id: &Arc<str>) {
        if !self
            .sessions
            .get(session_id)
            .is_some_and(Session::is_abandoned)
        {
            return;
        }
        if let Some(session) = self.sessions.remove(session_id) {
            self.report_push_audience(session_id, 0);
            self.store.save(&session.record(), self.settings.retention);
            self.stats_dirty.remove(session_id);
            self.metrics.sessions.set(self.sessions.len() as i64);
        }
    }

    pub(super) fn open_sse(
        &mut self,
        key: ConnKey,
        session_id: &str,
        last_event_id: Option<u64>,
        outbox: Arc<Outbox<Bytes>>,
        access: Access,
    ) -> Result<(), ProtocolError> {
        bandsync_protocol::validate::session_id(session_id)?;
        let session_id = self.session_for_join(session_id)?;
        self.check_capacity(&session_id)?;
        self.conns.insert(
            key,
            Conn {
                client_id: new_client_id(),
                name: None,
                role: Role::Listener,
                session: Some(session_id.clone()),
                peer: Peer::Sse(outbox.clone()),
                resume_token: None,
                sharing: None,
                // Listen-only: no per-address decision is ever made for it.
                client_ip: std::net::IpAddr::from([0, 0, 0, 0]),
                url_grant: None,
                access,
            },
        );
        let replay = last_event_id.and_then(|last| self.sessions[&session_id].replay_after(last));
        match replay {
            Some(events) => {
                for sse in events {
                    let _ = outbox.push(sse);
                }
                outbox.wake();
            }
            None => {
                let snapshot = self.snapshot(key, &session_id, String::new(), false);
                self.send_to(key, &ServerEvent::Snapshot(snapshot), None);
            }
        }
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.listeners.insert(key, outbox);
        }
        self.stats_changed(&session_id);
        self.share_burst(key, &session_id);
        Ok(())
    }
}

//! Who is in which session: joining, resuming, leaving, dropping, listening over SSE. What
//! a session looks like from outside (snapshot, member list) is in `views.rs`.

use super::access::Access;
use super::commit::AfterCommit;
use super::resume::{new_token, ResumeEntry};
use super::session::Session;
use super::{Conn, ConnKey, Engine, Peer, SessionInfo};
use crate::cluster::{LeaderCheck, Loaded, ResumeGrant};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::server::SessionState;
use bandsync_protocol::{
    encode_server_frame, ErrorCode, JoinSession, ProtocolError, RequestId, Role, ServerEvent,
};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long another instance may resume a connected member's token after this instance
/// last refreshed it (every `LIVE_TOKEN_REFRESH`): past it, a member whose instance died
/// starts over with a fresh identity.
pub(super) const LIVE_TOKEN_TTL: Duration = Duration::from_secs(180);
pub(super) const LIVE_TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A join decided up to its snapshot: what [`Engine::finish_join`] needs once the seat
/// claim (if any) is decided.
pub(super) struct JoinParts {
    key: ConnKey,
    id: Option<RequestId>,
    session_id: Arc<str>,
    client_id: Arc<str>,
    name: Option<String>,
    role: Role,
    resumed: bool,
    last_version: Option<u64>,
    access: Access,
}

/// What waits for a session to load from the cluster.
pub(super) enum PendingLoad {
    Join {
        key: ConnKey,
        id: Option<RequestId>,
        join: Box<JoinSession>,
        access: Access,
    },
    Sse(Box<SseOpen>),
    Query {
        session_id: String,
        reply: oneshot::Sender<Option<SessionInfo>>,
    },
}

/// An SSE listener waiting to be let in.
pub(super) struct SseOpen {
    pub key: ConnKey,
    pub session_id: String,
    pub last_event_id: Option<u64>,
    pub outbox: Arc<Outbox<Bytes>>,
    pub access: Access,
    pub reply: oneshot::Sender<Result<(), ProtocolError>>,
}

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

    /// The live session, revived from `record`, or new (within `MAX_SYNC_SESSIONS`).
    fn session_for_join(
        &mut self,
        session_id: &str,
        loaded: Loaded,
    ) -> Result<Arc<str>, ProtocolError> {
        if let Some((id, _)) = self.sessions.get_key_value(session_id) {
            return Ok(id.clone());
        }
        self.check_session_room()?;
        let cap = self.settings.sse_history;
        let mut session = match loaded.record {
            Some(record) => Session::from_record(record, cap),
            None => Session::new(session_id.into(), self.clock.now_ms(), cap),
        }
        .with_state_log(self.settings.resume_history);
        if let Some(tag) = self.sse_id_tag {
            session = session.with_id_tag(tag, self.clock.now_ms());
        }
        session.remote.extend(loaded.presence);
        let id = session.id.clone();
        self.sessions.insert(id.clone(), session);
        self.metrics.sessions.set(self.sessions.len() as i64);
        Ok(id)
    }

    fn check_session_room(&self) -> Result<(), ProtocolError> {
        if self.sessions.len() >= self.settings.max_sync_sessions {
            return Err(ProtocolError::new(
                ErrorCode::SessionLimit,
                "the server holds its maximum number of sessions",
            ));
        }
        Ok(())
    }

    fn check_capacity(&mut self, session_id: &Arc<str>) -> Result<(), ProtocolError> {
        if self.sessions[session_id].cluster_audience() >= self.settings.max_session_members {
            self.retire_if_abandoned(session_id);
            return Err(ProtocolError::new(
                ErrorCode::SessionFull,
                "the session is full",
            ));
        }
        Ok(())
    }

    /// Loads what a join or a listener needs from the cluster (the session when it is not
    /// live here; a resume token issued elsewhere), then continues with `next`: at once
    /// with the memory broker, when the answer arrives with Redis.
    pub(super) fn load_then(
        &mut self,
        session_id: &str,
        resume_token: Option<&str>,
        next: PendingLoad,
    ) {
        let live = self.sessions.contains_key(session_id);
        let token = resume_token.filter(|t| self.broker.is_shared() && !self.resume.contains(t));
        if live && token.is_none() {
            return self.loaded(next, Loaded::default());
        }
        if !live {
            if let Err(e) = self.check_session_room() {
                return self.refuse_load(next, e);
            }
        }
        let ticket = self.next_ticket();
        match self.broker.load(ticket, session_id, token) {
            Some(loaded) => self.loaded(next, loaded),
            None => {
                self.pending_loads.insert(ticket, next);
            }
        }
    }

    /// A load's answer: the waiting join, listener or query goes on.
    pub(super) fn loaded(&mut self, next: PendingLoad, loaded: Loaded) {
        match next {
            PendingLoad::Join {
                key,
                id,
                join,
                access,
            } => self.join_loaded(key, id, *join, access, loaded),
            PendingLoad::Sse(open) => {
                if open.reply.is_closed() {
                    return; // the listener left while the session loaded
                }
                let reply = open.reply;
                let result = self.open_sse(
                    open.key,
                    &open.session_id,
                    open.last_event_id,
                    open.outbox,
                    open.access,
                    loaded,
                );
                let _ = reply.send(result);
            }
            PendingLoad::Query { session_id, reply } => {
                let _ = reply.send(self.session_info(&session_id, loaded));
            }
        }
    }

    fn refuse_load(&mut self, next: PendingLoad, error: ProtocolError) {
        match next {
            PendingLoad::Join { key, id, .. } => self.reply_error(key, id.as_ref(), error),
            PendingLoad::Sse(open) => {
                let _ = open.reply.send(Err(error));
            }
            PendingLoad::Query { reply, .. } => {
                let _ = reply.send(None);
            }
        }
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
        let session_id = join.session_id.clone();
        let token = join.resume_token.clone();
        let next = PendingLoad::Join {
            key,
            id,
            join: Box::new(join),
            access,
        };
        self.load_then(&session_id, token.as_deref(), next);
    }

    /// The resume identity a join claims: one of ours, or one another instance issued
    /// (`grant`, already taken out of the cluster). `None`: a fresh identity.
    fn claim_identity(
        &mut self,
        key: ConnKey,
        token: Option<&str>,
        session_id: &Arc<str>,
        grant: Option<ResumeGrant>,
    ) -> Option<ResumeEntry> {
        let token = token?;
        if let Some(grant) = grant.filter(|g| *g.session_id == **session_id) {
            self.metrics.cluster.remote_resumes.inc();
            return Some(ResumeEntry {
                client_id: grant.client_id.into(),
                session_id: session_id.clone(),
                name: grant.name,
                role: grant.role,
                live: None,
                expires: None,
                identity: grant.identity,
            });
        }
        let entry = self
            .resume
            .claimable(token, session_id, Instant::now())?
            .clone();
        self.resume.revoke(token);
        self.broker.resume_revoked(token);
        match entry.live {
            Some(old_key) if old_key != key => self.replace(old_key),
            Some(_) => {}
            None => {
                let session = self.sessions.get_mut(session_id).unwrap();
                session.ghosts = session.ghosts.saturating_sub(1);
            }
        }
        Some(entry)
    }

    fn join_loaded(
        &mut self,
        key: ConnKey,
        id: Option<RequestId>,
        join: JoinSession,
        access: Access,
        loaded: Loaded,
    ) {
        if !self.conns.contains_key(&key) {
            return; // closed while the session loaded
        }
        let grant = loaded.resume.clone();
        if grant
            .as_ref()
            .is_some_and(|g| g.identity.as_deref() != access.identity().as_deref())
        {
            let e = crate::auth::AuthError::ResumeIdentity;
            let error = crate::auth::deny(&self.metrics, "ws", &e);
            return self.reply_error(key, id.as_ref(), error);
        }
        let session_id = match self
            .session_for_join(&join.session_id, loaded)
            .and_then(|s| self.check_capacity(&s).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => return self.reply_error(key, id.as_ref(), e),
        };
        let claim = self.claim_identity(key, join.resume_token.as_deref(), &session_id, grant);
        let resumed = claim.is_some();
        let session = &self.sessions[&session_id];
        let previous_leader = session.leader.clone();
        let mut seat_released = false;
        let (client_id, mut role, name) = match claim {
            Some(entry) => {
                let held_seat = entry.role == Role::Leader
                    && session.leader.as_deref() == Some(&*entry.client_id);
                // A resume never grants more than the presented token: a leader identity
                // resumed with a follower token gives its seat up.
                if held_seat && access.may_lead().is_err() {
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
        if role == Role::Follower && join.role == Some(Role::Leader) && session.leader.is_none() {
            role = Role::Leader;
        }
        let leader_changed = seat_released
            || (role == Role::Leader && session.leader.as_deref() != Some(&*client_id));
        let parts = JoinParts {
            key,
            id,
            session_id: session_id.clone(),
            client_id: client_id.clone(),
            name,
            role,
            resumed,
            last_version: join.last_version,
            access,
        };
        if !leader_changed {
            return self.finish_join(parts, true);
        }
        let check = LeaderCheck::Is(previous_leader.as_deref().map(str::to_owned));
        let new_leader = (role == Role::Leader).then_some(client_id);
        let then = AfterCommit::FinishJoin(Box::new(parts));
        self.change(&session_id, check, Some(key), then, |s| {
            s.leader = new_leader;
        });
    }

    /// Makes the joiner a member and sends its snapshot, once its claim on the seat (if
    /// any) is decided: a refused claim joins as a follower, as when the seat was taken.
    pub(super) fn finish_join(&mut self, parts: JoinParts, _committed: bool) {
        let JoinParts {
            key,
            id,
            session_id,
            client_id,
            name,
            mut role,
            resumed,
            last_version,
            access,
        } = parts;
        let identity = access.identity();
        let Some(Peer::Ws(outbox)) = self.conns.get(&key).map(|c| &c.peer) else {
            return; // closed meanwhile
        };
        let outbox = outbox.clone();
        let Some(session) = self.sessions.get_mut(&session_id) else {
            let error = ProtocolError::new(ErrorCode::NotInSession, "the session closed");
            return self.reply_error(key, id.as_ref(), error);
        };
        if role == Role::Leader && session.leader.as_deref() != Some(&*client_id) {
            role = Role::Follower;
        }
        session.members.insert(key, outbox);
        if role == Role::Leader {
            session.leader_key = Some(key);
            session.dropped_leader = None;
        }
        let token = self.resume.issue(ResumeEntry {
            client_id: client_id.clone(),
            session_id: session_id.clone(),
            name: name.clone(),
            role,
            live: Some(key),
            expires: None,
            identity,
        });
        let conn = self.conns.get_mut(&key).unwrap();
        conn.client_id = client_id;
        conn.name = name;
        conn.role = role;
        conn.session = Some(session_id.clone());
        conn.resume_token = Some(token.clone());
        conn.access = access;
        self.save_resume(&token);
        let replayed = match last_version {
            Some(last) if resumed => self.replay_missed(key, &session_id, last),
            _ => 0,
        };
        let mut snapshot = self.snapshot(key, &session_id, token, resumed);
        snapshot.replay_count = replayed;
        self.send_to(key, &ServerEvent::Snapshot(snapshot), id.as_ref());
        self.stats_changed(&session_id);
        self.share_burst(key, &session_id);
        tracing::debug!(session = %session_id, resumed, ?role, "joined");
    }

    /// Shares a resume token's identity with the cluster, so another instance can resume
    /// it: while the member is connected for `LIVE_TOKEN_TTL` (refreshed), once it dropped
    /// for its recovery window.
    pub(super) fn save_resume(&mut self, token: &str) {
        if !self.broker.is_shared() {
            return;
        }
        let Some(entry) = self.resume.get(token) else {
            return;
        };
        let ttl = match entry.expires {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => LIVE_TOKEN_TTL,
        };
        let grant = ResumeGrant {
            client_id: entry.client_id.to_string(),
            session_id: entry.session_id.to_string(),
            name: entry.name.clone(),
            role: entry.role,
            identity: entry.identity.clone(),
        };
        self.broker.resume_saved(token, &grant, ttl);
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
        let client_id = conn.client_id.clone();
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
                if was_leader {
                    session.dropped_leader = Some(client_id.clone());
                }
                self.save_resume(&token);
            }
            (Departure::Replaced, _) => {}
            (_, token) => {
                if let Some(token) = token {
                    self.resume.revoke(&token);
                    self.broker.resume_revoked(&token);
                }
                leader_vacated = was_leader;
            }
        }
        if leader_vacated {
            let check = LeaderCheck::Is(Some(client_id.to_string()));
            self.change(&session_id, check, None, AfterCommit::Nothing, |s| {
                s.leader = None;
            });
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
        if session.dropped_leader.as_deref() == Some(&*entry.client_id) {
            session.dropped_leader = None;
        }
        if session.leader_key.is_none() && session.leader.as_deref() == Some(&*entry.client_id) {
            self.release_lapsed_seat(&entry.session_id, &entry.client_id);
        }
        self.retire_if_abandoned(&entry.session_id);
    }

    /// Releases the seat of a leader no instance holds any more. In a cluster the seat
    /// goes only once its lease lapsed in Redis (its holder may have resumed elsewhere).
    pub(super) fn release_lapsed_seat(&mut self, session_id: &Arc<str>, holder: &str) {
        if !self.broker.is_shared() {
            let check = LeaderCheck::Is(Some(holder.to_owned()));
            return self.change(session_id, check, None, AfterCommit::Nothing, |s| {
                s.leader = None;
            });
        }
        // Unlike a claim, the release is not projected: most are refused (the holder is
        // alive elsewhere), and until one commits every snapshot here must show the seat
        // held.
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let mut record = session.record();
        record.leader = None;
        session.pending += 1;
        let ticket = self.next_ticket();
        self.propose_pending(
            ticket,
            record,
            LeaderCheck::Lapsed(holder.to_owned()),
            session_id.clone(),
        );
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

    /// Retires an abandoned session: the broker keeps its record for the retention window
    /// (and, in a cluster, tells the others this instance's audience is gone).
    pub(super) fn retire_if_abandoned(&mut self, session_id: &Arc<str>) {
        if !self
            .sessions
            .get(session_id)
            .is_some_and(Session::is_abandoned)
        {
            return;
        }
        if let Some(session) = self.sessions.remove(session_id) {
            self.report_push_audience(session_id, 0);
            self.broker
                .retire(&session.record(), self.settings.retention);
            self.stats_dirty.remove(session_id);
            self.presence_dirty.remove(session_id);
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
        loaded: Loaded,
    ) -> Result<(), ProtocolError> {
        let session_id = self.session_for_join(session_id, loaded)?;
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

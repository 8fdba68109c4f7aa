//! Joining a session: admission, claiming a resume identity (ours or another
//! instance's), the leader seat claim, and the snapshot once the claim is decided.

use super::access::Access;
use super::commit::AfterCommit;
use super::loading::PendingLoad;
use super::membership::Departure;
use super::resume::ResumeEntry;
use super::{ConnKey, Engine, Peer};
use crate::cluster::{LeaderCheck, Loaded, ResumeGrant};
use bandsync_protocol::server::SessionState;
use bandsync_protocol::{
    encode_server_frame, ErrorCode, JoinSession, ProtocolError, RequestId, Role, ServerEvent,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

impl Engine {
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

    pub(super) fn join_loaded(
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
            return self.finish_join(parts);
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
    pub(super) fn finish_join(&mut self, parts: JoinParts) {
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
            client_id: String::from(&*entry.client_id),
            session_id: String::from(&*entry.session_id),
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
}

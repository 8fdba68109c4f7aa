//! What the engine shows of a session: the member list, a joiner's `snapshot`, and the
//! `/sessions/{id}` info (live, or read back from the store). Read-only views, kept apart
//! from the membership changes in `membership.rs`.

use super::session::Session;
use super::{ConnKey, Engine, SessionInfo};
use crate::cluster::Loaded;
use bandsync_protocol::server::{Member, Snapshot};

impl Engine {
    /// The first `limit` members connected to this instance.
    pub(super) fn local_members(&self, session: &Session, limit: usize) -> Vec<Member> {
        session
            .members
            .keys()
            .take(limit)
            .filter_map(|key| self.conns.get(key))
            .map(|c| Member {
                client_id: String::from(&*c.client_id),
                name: c.name.clone(),
                role: c.role,
            })
            .collect()
    }

    /// The first `limit` members on every instance: this one's first, then the others'
    /// as they last told.
    pub(super) fn members(&self, session: &Session, limit: usize) -> Vec<Member> {
        let mut members = self.local_members(session, limit);
        for presence in session.remote.values() {
            let room = limit.saturating_sub(members.len());
            members.extend(presence.list.iter().take(room).cloned());
        }
        members
    }

    pub(super) fn snapshot(
        &self,
        key: ConnKey,
        session_id: &str,
        resume_token: String,
        resumed: bool,
    ) -> Snapshot {
        let session = &self.sessions[session_id];
        let conn = &self.conns[&key];
        let limit = self.settings.snapshot_member_limit;
        let state = self.session_state(session);
        let (member_count, _, _) = session.totals();
        Snapshot {
            session_id: state.session_id,
            client_id: String::from(&*conn.client_id),
            role: conn.role,
            resume_token,
            leader_id: state.leader_id,
            members: self.members(session, limit),
            transport: state.transport,
            message: state.message,
            version: state.version,
            server_time: state.server_time,
            resumed,
            members_truncated: member_count as usize > limit,
            replay_count: 0,
            scheduled: state.scheduled,
            sheet: sheet_of(session),
        }
    }

    /// `GET /sessions/{id}`: the live session, or what the cluster knows of it (`loaded`).
    pub(super) fn session_info(&self, session_id: &str, loaded: Loaded) -> Option<SessionInfo> {
        let limit = self.settings.snapshot_member_limit;
        if let Some(session) = self.sessions.get(session_id) {
            let (member_count, followers, listeners) = session.totals();
            return Some(SessionInfo {
                state: self.session_state(session),
                members: self.members(session, limit),
                member_count: member_count as usize,
                followers: followers as usize,
                listeners: listeners as usize,
                live: true,
                sheet: sheet_of(session),
            });
        }
        let mut session = Session::from_record(loaded.record?, 0);
        session.remote.extend(loaded.presence);
        let (member_count, followers, listeners) = session.totals();
        Some(SessionInfo {
            state: self.session_state(&session),
            members: self.members(&session, limit),
            member_count: member_count as usize,
            followers: followers as usize,
            listeners: listeners as usize,
            live: member_count + listeners > 0,
            sheet: sheet_of(&session),
        })
    }
}

/// The sheet as the contract shows it: absent while none is set.
fn sheet_of(session: &Session) -> Option<String> {
    (!session.sheet.is_empty()).then(|| session.sheet.clone())
}

//! What the engine shows of a session: the member list, a joiner's `snapshot`, and the
//! `/sessions/{id}` info (live, or read back from the store). Read-only views, kept apart
//! from the membership changes in `membership.rs`.

use super::session::Session;
use super::{ConnKey, Engine, SessionInfo};
use bandsync_protocol::server::{Member, Snapshot};

impl Engine {
    pub(super) fn members(&self, session: &Session, limit: usize) -> Vec<Member> {
        session
            .members
            .keys()
            .take(limit)
            .filter_map(|key| self.conns.get(key))
            .map(|c| Member {
                client_id: c.client_id.to_string(),
                name: c.name.clone(),
                role: c.role,
            })
            .collect()
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
        Snapshot {
            session_id: state.session_id,
            client_id: conn.client_id.to_string(),
            role: conn.role,
            resume_token,
            leader_id: state.leader_id,
            members: self.members(session, limit),
            transport: state.transport,
            message: state.message,
            version: state.version,
            server_time: state.server_time,
            resumed,
            members_truncated: session.members.len() > limit,
            replay_count: 0,
        }
    }

    pub(super) fn session_info(&self, session_id: &str) -> Option<SessionInfo> {
        if let Some(session) = self.sessions.get(session_id) {
            return Some(SessionInfo {
                state: self.session_state(session),
                members: self.members(session, self.settings.snapshot_member_limit),
                member_count: session.members.len(),
                followers: session.followers(),
                listeners: session.listeners.len(),
                live: true,
            });
        }
        let record = self.store.load(session_id)?;
        let session = Session::from_record(record, 0);
        Some(SessionInfo {
            state: self.session_state(&session),
            members: Vec::new(),
            member_count: 0,
            followers: 0,
            listeners: 0,
            live: false,
        })
    }
}

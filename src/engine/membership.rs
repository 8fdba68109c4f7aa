//! Who is in which session: joining, resuming, leaving, dropping, listening over SSE. What
//! a session looks like from outside (snapshot, member list) is in `views.rs`.

use super::access::Access;
use super::commit::AfterCommit;
use super::resume::ResumeEntry;
use super::{Conn, ConnKey, Engine, Peer};
use crate::cluster::{LeaderCheck, Loaded};
use crate::frames::WsFrame;
use crate::outbox::{CloseReason, Outbox};
use bandsync_protocol::{ProtocolError, Role, ServerEvent};
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

/// `c` and 64 random bits in hex: unique among a session's members, and not a resume token.
fn new_client_id() -> Arc<str> {
    let mut id = *b"c0000000000000000";
    hex::encode_to_slice(rand::random::<u64>().to_le_bytes(), &mut id[1..])
        .expect("8 bytes fill 16 hex digits");
    std::str::from_utf8(&id).expect("ascii").into()
}

impl Engine {
    pub(super) fn open_ws(
        &mut self,
        key: ConnKey,
        outbox: Arc<Outbox<WsFrame>>,
        client_ip: std::net::IpAddr,
        url_grant: Option<crate::auth::jwt::Grant>,
    ) {
        if self.stopping {
            outbox.close(crate::outbox::CloseReason::Shutdown);
            return;
        }
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
                url_grant: url_grant.map(Box::new),
                access: Access::default(),
            },
        );
    }

    /// Detaches a connection whose identity another connection just resumed.
    pub(super) fn replace(&mut self, old_key: ConnKey) {
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
            let check = LeaderCheck::Is(Some(String::from(&*client_id)));
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
            .is_some_and(|session| session.is_abandoned())
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

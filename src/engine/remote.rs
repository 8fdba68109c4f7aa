//! What the engine does with news from the other instances (through the broker): their
//! audiences, identities resumed elsewhere, instances that died, the cluster coming back;
//! and what it tells them: this instance's audiences, the seats and tokens it holds.

use super::joining::{LIVE_TOKEN_REFRESH, LIVE_TOKEN_TTL};
use super::membership::Departure;
use super::{ConnKey, Engine, Peer};
use crate::cluster::{ClusterEvent, Presence};
use crate::outbox::CloseReason;
use std::sync::Arc;
use std::time::Instant;

impl Engine {
    pub(super) fn cluster_event(&mut self, event: ClusterEvent) {
        match event {
            ClusterEvent::Committed {
                record,
                origin,
                local_only,
            } => {
                if local_only {
                    self.metrics.cluster.local_commits.inc();
                    if let Some(session) = self.sessions.get_mut(record.session_id.as_str()) {
                        session.diverged = true;
                    }
                }
                self.committed(record, origin);
            }
            ClusterEvent::Rejected {
                ticket,
                current,
                unreachable,
            } => self.rejected(ticket, current, unreachable),
            ClusterEvent::Loaded { ticket, loaded } => {
                if let Some(next) = self.pending_loads.remove(&ticket) {
                    self.loaded(next, loaded);
                }
            }
            ClusterEvent::Presence {
                session_id,
                instance,
                presence,
            } => self.remote_presence(&session_id, instance, presence),
            ClusterEvent::Claimed {
                session_id,
                client_id,
            } => self.claimed_elsewhere(&session_id, &client_id),
            ClusterEvent::Instances { alive } => self.instances_alive(&alive),
            ClusterEvent::Reconnected => self.reconcile(),
        }
    }

    fn remote_presence(&mut self, session_id: &str, instance: Arc<str>, presence: Presence) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if presence.members + presence.listeners == 0 {
            session.remote.remove(&instance);
        } else {
            session.remote.insert(instance, presence);
        }
        let id = session.id.clone();
        self.stats_dirty.insert(id);
    }

    /// Another instance resumed `client_id`: a connection holding it here is replaced, a
    /// dropped identity waiting here is forgotten (its seat is not released: it lives on).
    fn claimed_elsewhere(&mut self, session_id: &str, client_id: &str) {
        let live: Option<ConnKey> = self.sessions.get(session_id).and_then(|s| {
            s.members
                .keys()
                .find(|k| {
                    self.conns
                        .get(k)
                        .is_some_and(|c| &*c.client_id == client_id)
                })
                .copied()
        });
        if let Some(key) = live {
            // Its seat moves with it: no release, no vacancy broadcast.
            if let Some(session) = self.sessions.get_mut(session_id) {
                if session.leader_key == Some(key) {
                    session.leader_key = None;
                }
            }
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.role = bandsync_protocol::Role::Follower;
                conn.resume_token = None;
            }
            self.leave(key, Departure::Replaced);
            if let Some(Peer::Ws(outbox)) = self.conns.get(&key).map(|c| &c.peer) {
                outbox.close(CloseReason::Replaced);
            }
        } else if self.resume.take_client(session_id, client_id).is_some() {
            if let Some(session) = self.sessions.get_mut(session_id) {
                session.ghosts = session.ghosts.saturating_sub(1);
            }
        }
        if let Some(id) = self
            .sessions
            .get_key_value(session_id)
            .map(|(k, _)| k.clone())
        {
            self.retire_if_abandoned(&id);
        }
    }

    /// Forgets the audiences of instances that stopped refreshing their heartbeat.
    fn instances_alive(&mut self, alive: &[Arc<str>]) {
        for session in self.sessions.values_mut() {
            let before = session.remote.len();
            session
                .remote
                .retain(|instance, _| alive.contains(instance));
            if session.remote.len() != before {
                self.stats_dirty.insert(session.id.clone());
            }
        }
    }

    /// Tells the cluster this instance's audience of every session whose audience changed.
    pub(super) fn publish_presence(&mut self) {
        if self.presence_dirty.is_empty() {
            return;
        }
        let limit = self.settings.snapshot_member_limit;
        for session_id in std::mem::take(&mut self.presence_dirty) {
            let Some(session) = self.sessions.get(&session_id) else {
                continue;
            };
            let presence = Presence {
                members: session.members.len() as u64,
                followers: session.followers() as u64,
                listeners: session.listeners.len() as u64,
                list: self.local_members(session, limit),
            };
            self.broker.presence(&session_id, &presence);
        }
    }

    /// Once a second in a cluster: keeps the seats of connected leaders held, refreshes
    /// connected members' tokens, and releases seats whose holder no instance keeps.
    pub(super) fn cluster_housekeeping(&mut self, now: Instant) {
        if !self.broker.is_shared() {
            return;
        }
        let seats: Vec<(Arc<str>, Arc<str>)> = self
            .sessions
            .values()
            .filter(|s| s.leader_key.is_some())
            .filter_map(|s| Some((s.id.clone(), s.leader.clone()?)))
            .collect();
        self.broker
            .hold_seats(&seats, self.settings.recovery_window);
        // Changes a full command queue kept local: out again once the cluster answers.
        if self.broker.link_up() == Some(true) && self.sessions.values().any(|s| s.diverged) {
            self.reconcile();
        }
        if now >= self.next_token_refresh {
            self.next_token_refresh = now + LIVE_TOKEN_REFRESH;
            let tokens: Vec<String> = self.resume.live_tokens().map(str::to_owned).collect();
            self.broker.resume_touch(&tokens, LIVE_TOKEN_TTL);
        }
        // A seat whose holder is neither connected nor dropped here, nor listed as leading
        // by a live instance: held by one that died (or one that dropped it). The release
        // commits only if its lease lapsed, so asking costs one refused script at worst.
        // Never while Redis is out of reach: no lease can be read, and a local release
        // would take the seat from a leader alive on another instance.
        if self.broker.link_up() != Some(true) {
            return;
        }
        let orphaned: Vec<(Arc<str>, Arc<str>)> = self
            .sessions
            .values()
            .filter(|s| s.leader_key.is_none() && s.pending == 0)
            .filter(|s| s.dropped_leader.is_none() || s.dropped_leader != s.leader)
            .filter_map(|s| Some((s, s.leader.clone()?)))
            .filter(|(s, holder)| !led_elsewhere(s, holder))
            .map(|(s, holder)| (s.id.clone(), holder))
            .collect();
        for (session_id, holder) in orphaned {
            self.release_lapsed_seat(&session_id, &holder);
        }
    }
}

/// Whether a live instance lists `holder` among its members as the leader.
fn led_elsewhere(session: &super::session::Session, holder: &str) -> bool {
    session.remote.values().any(|p| {
        p.list
            .iter()
            .any(|m| m.client_id == holder && m.role == bandsync_protocol::Role::Leader)
    })
}

//! The one chokepoint for a session's state: every change (transport, message, leader)
//! goes through [`Engine::change`], which proposes the whole new state to the broker; every
//! committed state, proposed here or on another instance, goes through
//! [`Engine::apply_committed`], which assigns the version, records it for resume and fans
//! it out locally. A grep for the version finds these two functions and nothing else.
//!
//! The memory broker commits inline, so a change is applied and broadcast before
//! `change` returns, exactly as a single process always did. The Redis broker commits in
//! Redis and the result comes back later through the inbound queue, in version order. In
//! the meantime the session's fields already hold the proposed state (its *projection*), so
//! a leader's next command builds on its last one; the version and every broadcast follow
//! the committed order only.

use super::fanout::Audience;
use super::joining::JoinParts;
use super::session::Session;
use super::{ConnKey, Engine};
use crate::cluster::{LeaderCheck, Proposal, ProposalKind, Proposed, Ticket};
use crate::store::SessionRecord;
use bandsync_protocol::server::{SessionState, Sheet};
use bandsync_protocol::{ErrorCode, ProtocolError, RequestId, Role, ServerEvent};
use std::sync::Arc;

/// What a change's proposer does once the outcome is known.
pub(super) enum AfterCommit {
    Nothing,
    /// A join that claimed or gave up the seat: send its snapshot.
    FinishJoin(Box<JoinParts>),
    /// `set_role leader`: take the seat, or answer `LEADER_TAKEN`.
    RoleClaim {
        key: ConnKey,
        id: Option<RequestId>,
        /// Answer a granted claim with the state (a Socket.IO acknowledgement).
        ack: bool,
    },
    /// A leader's command: answer `NOT_LEADER` if the seat was lost elsewhere meanwhile,
    /// and the committed state if `ack` asks for an answer.
    LeaderCommand {
        key: ConnKey,
        id: Option<RequestId>,
        ack: bool,
    },
    /// A member's change that a Socket.IO acknowledgement waits for: answer the state.
    Acknowledge {
        key: ConnKey,
        id: Option<RequestId>,
    },
    /// A scheduled change's activation (this instance's timer fired).
    Activation,
}

/// A proposal waiting for the cluster's answer.
pub(super) struct PendingCommit {
    pub session_id: Arc<str>,
    pub except: Option<ConnKey>,
    pub then: AfterCommit,
}

impl Engine {
    /// Changes a session: applies `mutate` to its projection and proposes the result,
    /// committed only if `check` holds of the leader seat. `except` misses the broadcast
    /// (a joiner that gets a snapshot instead); `then` runs when the outcome is known.
    pub(super) fn change(
        &mut self,
        session_id: &Arc<str>,
        check: LeaderCheck,
        except: Option<ConnKey>,
        then: AfterCommit,
        mutate: impl FnOnce(&mut Session),
    ) {
        self.change_as(
            ProposalKind::Change,
            session_id,
            check,
            except,
            then,
            mutate,
        );
    }

    /// [`Self::change`], proposed as `kind` (a scheduled change's activation).
    ///
    /// A pending change whose instant has come is folded into the projection first, so
    /// every proposal carries the state in effect now: one proposed by a member at the
    /// instant never brings back the transport from before it.
    pub(super) fn change_as(
        &mut self,
        kind: ProposalKind,
        session_id: &Arc<str>,
        check: LeaderCheck,
        except: Option<ConnKey>,
        then: AfterCommit,
        mutate: impl FnOnce(&mut Session),
    ) {
        let now_ms = self.clock.now_ms();
        let tick_ms = self.tick_ms();
        let ticket = self.next_ticket();
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        session.settle(now_ms, tick_ms);
        let was_playing = session.transport.playing;
        mutate(session);
        let playing = session.transport.playing;
        session.ticks.follow(was_playing, playing, now_ms, tick_ms);
        let proposal = Proposal {
            ticket,
            record: session.record(),
            check,
            kind,
        };
        self.arm(session_id);
        match self.broker.propose(proposal) {
            Proposed::Committed(record) => self.apply_committed(record, except, then, true),
            Proposed::CommittedLocally(record) => {
                self.metrics.cluster.local_commits.inc();
                if let Some(session) = self.sessions.get_mut(session_id) {
                    session.diverged = true;
                }
                self.apply_committed(record, except, then, true);
            }
            Proposed::Pending => {
                session_pending(&mut self.sessions, session_id, 1);
                let pending = PendingCommit {
                    session_id: session_id.clone(),
                    except,
                    then,
                };
                self.pending_commits.insert(ticket, pending);
            }
        }
    }

    /// Proposes `record` without touching the projection (a seat release that may well
    /// be refused); the outcome arrives like any other.
    pub(super) fn propose_pending(
        &mut self,
        ticket: Ticket,
        record: SessionRecord,
        check: LeaderCheck,
        session_id: Arc<str>,
    ) {
        let proposal = Proposal {
            ticket,
            record,
            check,
            kind: ProposalKind::Change,
        };
        let pending = PendingCommit {
            session_id: session_id.clone(),
            except: None,
            then: AfterCommit::Nothing,
        };
        match self.broker.propose(proposal) {
            Proposed::Pending => {
                self.pending_commits.insert(ticket, pending);
            }
            Proposed::Committed(record) | Proposed::CommittedLocally(record) => {
                session_pending(&mut self.sessions, &session_id, -1);
                self.apply_committed(record, None, AfterCommit::Nothing, true);
            }
        }
    }

    pub(super) fn next_ticket(&mut self) -> Ticket {
        self.last_ticket += 1;
        self.last_ticket
    }

    /// A committed state from the cluster: ours (`origin`) or another instance's.
    pub(super) fn committed(&mut self, record: SessionRecord, origin: Option<Ticket>) {
        let pending = origin.and_then(|t| self.pending_commits.remove(&t));
        let (except, then, own) = match pending {
            Some(p) => {
                session_pending(&mut self.sessions, &p.session_id, -1);
                (p.except, p.then, true)
            }
            None => (None, AfterCommit::Nothing, false),
        };
        self.apply_committed(record, except, then, own);
    }

    /// A proposal failed its leader check: the projection takes the state that made it
    /// fail, and the proposer is answered.
    pub(super) fn rejected(
        &mut self,
        ticket: Ticket,
        current: Option<SessionRecord>,
        unreachable: bool,
    ) {
        let Some(pending) = self.pending_commits.remove(&ticket) else {
            return;
        };
        session_pending(&mut self.sessions, &pending.session_id, -1);
        if let Some(session) = self.sessions.get_mut(&pending.session_id) {
            match current {
                Some(current) if session.pending == 0 => session.project(&current),
                _ => {}
            }
            // Unanswered (a reconciliation while the cluster is out of reach): the
            // session stays to be reconciled.
            session.diverged |= unreachable;
        }
        // A refused activation that was only stale is proposed again from the state that
        // refused it (a later commit that still carries the change).
        self.arm(&pending.session_id);
        self.demote_displaced(&pending.session_id);
        if !matches!(pending.then, AfterCommit::Activation) {
            self.metrics.cluster.rejected_proposals.inc();
        }
        self.after_commit(pending.then, false);
    }

    /// Takes a committed state: the version, the resume log, the local fan-out.
    pub(super) fn apply_committed(
        &mut self,
        record: SessionRecord,
        except: Option<ConnKey>,
        then: AfterCommit,
        own: bool,
    ) {
        let Some(session) = self.sessions.get_mut(record.session_id.as_str()) else {
            return self.after_commit(then, false);
        };
        if record.version <= session.version {
            // Already applied (a duplicate delivery): nothing new to tell anyone.
            return self.after_commit(then, true);
        }
        let leader_changed = session.committed_leader.as_deref() != record.leader.as_deref();
        session.committed_leader = record.leader.as_deref().map(Arc::from);
        session.version = record.version;
        // Our own later proposals are still in flight: the projection is ahead of this
        // state and stays; otherwise it follows what was committed.
        if !own || session.pending == 0 {
            session.project(&record);
        }
        let session_id = session.id.clone();
        let state = state_of(&record, self.clock.now_ms());
        let sheet_changed = session.committed_sheet != record.sheet;
        if sheet_changed {
            // A replay of bare `state_update`s would skip the new sheet: a resume from
            // before this version gets the snapshot (which has the sheet) instead.
            session.states.restart();
            session.committed_sheet.clone_from(&record.sheet);
        } else {
            session.states.record(state.clone());
        }
        let audience = Audience::Everyone { except };
        self.broadcast(&session_id, &ServerEvent::StateUpdate(state), audience);
        if sheet_changed {
            let sheet = ServerEvent::Sheet(Sheet {
                session_id: session_id.to_string(),
                text: record.sheet.clone(),
                version: record.version,
            });
            self.broadcast(&session_id, &sheet, audience);
        }
        self.arm(&session_id);
        if leader_changed {
            self.demote_displaced(&session_id);
            self.stats_changed(&session_id);
        }
        self.after_commit(then, true);
    }

    /// A local leader whose seat the committed state gave to someone else is a follower.
    fn demote_displaced(&mut self, session_id: &Arc<str>) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let Some(key) = session.leader_key else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if session.leader.as_deref() == Some(&*conn.client_id) {
            return;
        }
        session.leader_key = None;
        conn.role = Role::Follower;
        if let Some(token) = conn.resume_token.clone() {
            self.resume.set_role(&token, Role::Follower);
        }
    }

    fn after_commit(&mut self, then: AfterCommit, committed: bool) {
        match then {
            AfterCommit::Nothing => {}
            // Whether the claim committed shows in the seat itself (see `finish_join`).
            AfterCommit::FinishJoin(parts) => self.finish_join(*parts),
            AfterCommit::RoleClaim { key, id, ack } => {
                self.finish_role_claim(key, id, committed, ack);
            }
            AfterCommit::LeaderCommand { key, id, .. } if !committed => {
                let error = ProtocolError::new(
                    ErrorCode::NotLeader,
                    "the leader seat was taken on another instance",
                );
                self.reply_error(key, id.as_ref(), error);
            }
            AfterCommit::LeaderCommand { key, id, ack: true }
            | AfterCommit::Acknowledge { key, id } => {
                if let Some(session_id) = self.conns.get(&key).and_then(|c| c.session.clone()) {
                    self.reply_state(key, id, &session_id);
                }
            }
            AfterCommit::LeaderCommand { ack: false, .. } => {}
            AfterCommit::Activation if committed => {}
            // Another instance activated it first (or a newer command replaced it): the
            // normal outcome in a cluster, counted, not an error.
            AfterCommit::Activation => self.metrics.cluster.activations_lost.inc(),
        }
    }

    /// `set_role leader` was decided: the claimant leads, or hears who does.
    fn finish_role_claim(&mut self, key: ConnKey, id: Option<RequestId>, granted: bool, ack: bool) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let client_id = conn.client_id.clone();
        let Some(session_id) = conn.session.clone() else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        if granted && session.leader.as_deref() == Some(&*client_id) {
            session.leader_key = Some(key);
            let conn = self.conns.get_mut(&key).unwrap();
            conn.role = Role::Leader;
            if let Some(token) = conn.resume_token.clone() {
                self.resume.set_role(&token, Role::Leader);
                self.save_resume(&token);
            }
            self.stats_changed(&session_id);
            if ack {
                self.reply_state(key, id, &session_id);
            }
        } else {
            let holder = session.leader.as_deref().unwrap_or("another member");
            let message = format!("the session is led by {holder}");
            let error = ProtocolError::new(ErrorCode::LeaderTaken, message);
            self.reply_error(key, id.as_ref(), error);
        }
    }

    /// The cluster is back: the sessions changed meanwhile are proposed again, the others
    /// written back if the cluster lost them (the rules are in `cluster::redis::scripts`),
    /// and every audience is told again.
    pub(super) fn reconcile(&mut self) {
        let live: Vec<(Arc<str>, bool)> = self
            .sessions
            .values()
            .map(|s| (s.id.clone(), s.diverged))
            .collect();
        for (session_id, diverged) in live {
            self.presence_dirty.insert(session_id.clone());
            let ticket = self.next_ticket();
            let session = self.sessions.get_mut(&session_id).unwrap();
            session.diverged = false;
            let kind = if diverged {
                ProposalKind::Reconcile
            } else {
                ProposalKind::Seed
            };
            let proposal = Proposal {
                ticket,
                record: session.record(),
                check: LeaderCheck::Any,
                kind,
            };
            match self.broker.propose(proposal) {
                Proposed::Pending => {
                    session.pending += 1;
                    let pending = PendingCommit {
                        session_id,
                        except: None,
                        then: AfterCommit::Nothing,
                    };
                    self.pending_commits.insert(ticket, pending);
                }
                Proposed::CommittedLocally(_) | Proposed::Committed(_) => {
                    // Out of reach again (nothing was committed for a reconciliation): it
                    // stays diverged for the next reconnection.
                    session.diverged = diverged;
                }
            }
        }
    }
}

fn session_pending(
    sessions: &mut std::collections::HashMap<Arc<str>, Box<Session>>,
    session_id: &str,
    delta: i32,
) {
    if let Some(session) = sessions.get_mut(session_id) {
        session.pending = session.pending.saturating_add_signed(delta);
    }
}

/// The `state_update` of a committed record, as in effect at `now_ms`: a record whose
/// pending change is already due (committed just before the instant, delivered after it)
/// shows the change applied, so a client that ignores `scheduled` is never sent the
/// transport from before an instant that has passed.
pub(super) fn state_of(record: &SessionRecord, now_ms: f64) -> SessionState {
    let (transport, scheduled) = match record.scheduled {
        Some(change) if now_ms >= change.at => (change.transport, None),
        pending => (record.transport, pending),
    };
    SessionState {
        session_id: record.session_id.clone(),
        transport,
        message: record.message.clone(),
        leader_id: record.leader.clone(),
        version: record.version,
        server_time: now_ms,
        replayed: false,
        scheduled,
    }
}

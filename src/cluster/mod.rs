//! The seam between the engine and the other instances of a cluster: the [`Broker`].
//!
//! The engine changes a session in exactly one place (`engine/commit.rs`): it proposes the
//! whole new state to the broker, and applies and fans out the state the broker commits.
//! The broker decides the version:
//! - [`memory::MemoryBroker`] (no `REDIS_URL`, today's single process) commits at once,
//!   inline, with the next version, and keeps retired sessions in the memory store;
//! - [`redis::RedisBroker`] assigns versions atomically in Redis, orders every session's
//!   changes through one Redis Stream and pub/sub channel, and hands the results back later
//!   as [`ClusterEvent`]s. The engine thread never waits for it: every call returns at once,
//!   and what needs the network comes back through the engine's inbound queue.
//!
//! This module knows nothing of the engine thread, WebSocket or HTTP: it speaks in session
//! records, presence and resume grants.

pub mod memory;
pub mod metrics;
pub mod redis;

use crate::store::SessionRecord;
use bandsync_protocol::server::Member;
use bandsync_protocol::Role;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The engine's handle on an answer it is waiting for.
pub type Ticket = u64;

/// What must hold of the leader seat for a proposal to commit. Leadership is claimed and
/// released only through this check, atomically where the version is assigned, so two
/// instances can never both hand the seat out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "clientId")]
pub enum LeaderCheck {
    /// Anything (a change that leaves the seat as it is, from its holder).
    Any,
    /// The seat is held by exactly this client (or vacant, for `None`).
    Is(Option<String>),
    /// The seat is held by this client and its lease lapsed: no instance keeps it alive.
    Lapsed(String),
}

/// A change the engine asks to commit.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub ticket: Ticket,
    /// The whole new state; its `version` is the last committed version the engine knew.
    pub record: SessionRecord,
    pub check: LeaderCheck,
    pub kind: ProposalKind,
}

/// What a proposal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalKind {
    /// A change: committed with the next version.
    Change,
    /// The activation of the scheduled change with this id (every instance holding the
    /// session proposes one at its instant): committed like a change, but only while that
    /// change is still the pending one and no other commit came after the proposer's
    /// version, so exactly one instance's activation commits. Refused otherwise, which is
    /// the normal outcome for every instance but the first.
    Activate(u64),
    /// A state changed while the cluster was out of reach, published again (the rule is
    /// in `cluster::redis::scripts`).
    Reconcile,
    /// A live session the cluster lost (Redis restarted empty): written back as it is,
    /// with its version, if the cluster has nothing newer. Publishes nothing.
    Seed,
}

/// What [`Broker::propose`] did.
#[derive(Debug)]
pub enum Proposed {
    /// Committed now, with this record (its version assigned).
    Committed(SessionRecord),
    /// Committed in this instance only, because the cluster is out of reach: the session
    /// must be reconciled when it is back.
    CommittedLocally(SessionRecord),
    /// The outcome will arrive as [`ClusterEvent::Committed`] or [`ClusterEvent::Rejected`].
    Pending,
}

/// One instance's audience of a session, as the others see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub members: u64,
    pub followers: u64,
    pub listeners: u64,
    /// The first members (up to the snapshot limit), for snapshots on other instances.
    pub list: Vec<Member>,
}

/// A resume token's identity, as stored for another instance to claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeGrant {
    pub client_id: String,
    pub session_id: String,
    pub name: Option<String>,
    pub role: Role,
    pub identity: Option<String>,
}

/// What a load found: the session's record, a claimed resume identity, and the audience
/// on other instances.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub record: Option<SessionRecord>,
    pub resume: Option<ResumeGrant>,
    pub presence: Vec<(Arc<str>, Presence)>,
    /// The session's recent commits, oldest first (for resume replay on this instance).
    pub log: Vec<SessionRecord>,
}

/// Answers and news from the cluster, delivered to the engine's inbound queue, in order.
#[derive(Debug)]
pub enum ClusterEvent {
    /// A committed change of a session, from any instance. `origin` is the proposal's
    /// ticket when this instance proposed it. Delivered in version order per session.
    Committed {
        record: SessionRecord,
        origin: Option<Ticket>,
        /// Committed in this instance only: Redis failed before it answered.
        local_only: bool,
    },
    /// A proposal did not commit: its leader check failed (`current` is the state that
    /// made it fail), it was a seed with nothing to do, or (`unreachable`) the cluster
    /// could not be asked.
    Rejected {
        ticket: Ticket,
        current: Option<SessionRecord>,
        unreachable: bool,
    },
    Loaded {
        ticket: Ticket,
        loaded: Loaded,
    },
    /// Another instance's audience of a session changed.
    Presence {
        session_id: String,
        instance: Arc<str>,
        presence: Presence,
    },
    /// A member's identity was resumed on another instance: close it here.
    Claimed {
        session_id: String,
        client_id: String,
    },
    /// The instances alive now (their audience counts; the others' are dropped).
    Instances {
        alive: Vec<Arc<str>>,
    },
    /// The cluster came back after an outage: reconcile what changed meanwhile.
    Reconnected,
}

/// The engine's view of the cluster. Every method returns at once.
pub trait Broker: Send {
    /// This instance's name in the cluster.
    fn instance(&self) -> &Arc<str>;
    /// False for the memory broker: nothing is shared, every answer is immediate.
    fn is_shared(&self) -> bool;
    /// Proposes a change (see [`Proposed`]).
    fn propose(&mut self, proposal: Proposal) -> Proposed;
    /// Loads a session (and claims `resume_token`): `Some` when the answer is at hand,
    /// otherwise it arrives as [`ClusterEvent::Loaded`] with `ticket`.
    fn load(
        &mut self,
        ticket: Ticket,
        session_id: &str,
        resume_token: Option<&str>,
    ) -> Option<Loaded>;
    /// The session is no longer live on this instance: keep its record for `ttl`.
    fn retire(&mut self, record: &SessionRecord, ttl: Duration);
    /// This instance's audience of a session changed.
    fn presence(&mut self, session_id: &str, presence: &Presence);
    /// A resume token was issued or its identity changed; claimable for `ttl`.
    fn resume_saved(&mut self, token: &str, grant: &ResumeGrant, ttl: Duration);
    /// Connected members' tokens stay claimable for `ttl` more.
    fn resume_touch(&mut self, tokens: &[String], ttl: Duration);
    /// A resume token was used up or revoked.
    fn resume_revoked(&mut self, token: &str);
    /// The connected leaders on this instance, once a second: their seats stay held
    /// for a recovery window past the last refresh.
    fn hold_seats(&mut self, seats: &[(Arc<str>, Arc<str>)], window: Duration);
    /// Periodic upkeep (expired records).
    fn housekeeping(&mut self);
    /// Whether the cluster is reachable (`/health` `redis`); `None` for the memory broker.
    fn link_up(&self) -> Option<bool>;
}

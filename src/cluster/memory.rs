//! The single-process broker: today's behaviour behind the [`Broker`] seam. Every change
//! commits inline with the next version; retired sessions wait in the memory store for
//! their retention window. Nothing is shared, so presence, resume tokens and seats are the
//! engine's own business and these calls do nothing.

use super::{Broker, Loaded, Presence, Proposal, Proposed, ResumeGrant, Ticket};
use crate::store::{SessionRecord, SessionStore};
use std::sync::Arc;
use std::time::Duration;

pub struct MemoryBroker {
    instance: Arc<str>,
    store: Arc<dyn SessionStore>,
    retention: Duration,
}

impl MemoryBroker {
    pub fn new(store: Arc<dyn SessionStore>, retention: Duration) -> Self {
        Self {
            instance: "local".into(),
            store,
            retention,
        }
    }
}

/// The version after `record`'s, which every broker assigns to a committed change.
pub fn next_version(mut record: SessionRecord) -> SessionRecord {
    record.version += 1;
    record
}

impl Broker for MemoryBroker {
    fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn propose(&mut self, proposal: Proposal) -> Proposed {
        // One process: the engine's own view is the truth, so its leader check already
        // decided, and so did its activation rule (it proposes `ProposalKind::Activate`
        // only while that change is the pending one, and nothing can commit in between). Saved on every change so a restart of the session within its retention
        // window finds the latest state.
        let record = next_version(proposal.record);
        self.store.save(&record, self.retention);
        Proposed::Committed(record)
    }

    fn load(&mut self, _: Ticket, session_id: &str, _: Option<&str>) -> Option<Loaded> {
        Some(Loaded {
            record: self.store.load(session_id),
            ..Loaded::default()
        })
    }

    fn retire(&mut self, record: &SessionRecord, ttl: Duration) {
        self.store.save(record, ttl);
    }

    fn presence(&mut self, _: &str, _: &Presence) {}

    fn resume_saved(&mut self, _: &str, _: &ResumeGrant, _: Duration) {}

    fn resume_revoked(&mut self, _: &str) {}

    fn resume_touch(&mut self, _: &[String], _: Duration) {}

    fn hold_seats(&mut self, _: &[(Arc<str>, Arc<str>)], _: Duration) {}

    fn housekeeping(&mut self) {
        self.store.purge_expired();
    }

    fn link_up(&self) -> Option<bool> {
        None
    }
}

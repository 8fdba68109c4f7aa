//! The messages on a session's channel (and in its stream), as JSON envelopes.

use crate::cluster::{Presence, Ticket};
use crate::store::SessionRecord;
use serde::Deserialize;
use std::sync::Arc;

/// One message of a session's channel.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Envelope {
    /// A committed change (written by the commit script). Boxed: a record is several
    /// times the size of the other variants.
    Commit(Box<Commit>),
    /// An instance's audience (empty: it has none any more).
    #[serde(rename_all = "camelCase")]
    Presence {
        instance: Arc<str>,
        presence: Presence,
    },
    /// An identity was resumed (by the instance that claimed its token).
    #[serde(rename_all = "camelCase")]
    Claimed {
        client_id: String,
        instance: Arc<str>,
    },
}

#[derive(Debug, Deserialize)]
pub struct Commit {
    pub v: u64,
    pub after: u64,
    pub epoch: String,
    pub origin: String,
    pub ticket: Ticket,
    pub record: SessionRecord,
}

impl Commit {
    /// The committed record, with its version, and the ticket if `instance` proposed it.
    pub fn into_parts(mut self, instance: &str) -> (SessionRecord, Option<Ticket>) {
        self.record.version = self.v;
        let origin = (self.origin == instance).then_some(self.ticket);
        (self.record, origin)
    }
}

/// The presence envelope this instance publishes.
pub fn presence(instance: &str, presence: &Presence) -> String {
    serde_json::json!({"kind": "presence", "instance": instance, "presence": presence}).to_string()
}

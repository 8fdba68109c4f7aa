//! Where a session's durable state lives while no one is connected to it, behind a trait.
//!
//! The engine keeps live sessions in memory. When the last member and listener leave, it
//! saves the session's record here and drops the live structures; a later join within the
//! retention window (`SESSION_RETENTION_MS`, default 5 minutes) loads it back with its
//! transport, message, version and sequence counters intact. The engine also saves after
//! every change, so a store shared between instances (Redis, a later issue) always has the
//! current state. Implementations must not block: the engine thread calls them inline.

use bandsync_protocol::Transport;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The durable part of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: String,
    pub transport: Transport,
    pub message: String,
    pub version: u64,
    /// Last SSE event id used, so ids stay monotonic across the session's lives.
    pub event_seq: u64,
    /// Last `scroll_tick` seq used.
    pub tick_seq: u64,
}

pub trait SessionStore: Send + Sync + 'static {
    /// Records the session's current state; it expires `ttl` after the last save.
    fn save(&self, record: &SessionRecord, ttl: Duration);
    /// The record saved for `session_id`, unless it expired.
    fn load(&self, session_id: &str) -> Option<SessionRecord>;
    /// Forgets expired records (called periodically by the engine).
    fn purge_expired(&self);
}

/// The in-memory store: the default when `REDIS_URL` is unset.
#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, (SessionRecord, Instant)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SessionRecord, Instant)>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemoryStore {
    fn save(&self, record: &SessionRecord, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.lock()
            .insert(record.session_id.clone(), (record.clone(), expires));
    }

    fn load(&self, session_id: &str) -> Option<SessionRecord> {
        let now = Instant::now();
        let mut records = self.lock();
        match records.get(session_id) {
            Some((record, expires)) if *expires > now => Some(record.clone()),
            Some(_) => {
                records.remove(session_id);
                None
            }
            None => None,
        }
    }

    fn purge_expired(&self) {
        let now = Instant::now();
        self.lock().retain(|_, (_, expires)| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            transport: Transport::new(0.0),
            message: "hello".into(),
            version: 7,
            event_seq: 30,
            tick_seq: 12,
        }
    }

    #[test]
    fn saved_records_load_until_they_expire() {
        let store = MemoryStore::new();
        store.save(&record("a"), Duration::from_secs(60));
        store.save(&record("b"), Duration::ZERO);
        assert_eq!(store.load("a").unwrap().version, 7);
        assert!(store.load("b").is_none());
        assert!(store.load("c").is_none());
        store.purge_expired();
        assert_eq!(store.lock().len(), 1);
    }
}

//! The durable state of a session ([`SessionRecord`]: what every broker commits, persists
//! and, in a cluster, publishes), and where the memory broker keeps it while no one is
//! connected to the session.
//!
//! The engine keeps live sessions in memory. When the last member and listener leave, the
//! broker keeps the session's record and the engine drops the live structures; a later
//! join within the retention window (`SESSION_RETENTION_MS`, default 5 minutes) loads it
//! back with its transport, message, version, leader and tick count intact. The memory
//! broker also saves after every change. With Redis the record lives in Redis instead
//! (`cluster::redis`). Implementations must not block: the engine thread calls them inline.

use crate::tick_grid::TickCount;
use bandsync_protocol::server::ScheduledChange;
use bandsync_protocol::Transport;
use lru::LruCache;
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The durable part of a session: what is persisted, and what a change publishes to the
/// other instances (the whole state, so a receiver never needs the one before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub session_id: String,
    pub transport: Transport,
    pub message: String,
    pub version: u64,
    /// The leader's `clientId` (held through its recovery window).
    #[serde(default)]
    pub leader: Option<String>,
    /// Last SSE event id used, so ids stay monotonic across the session's lives.
    pub event_seq: u64,
    /// How `scroll_tick` seqs are numbered (see `tick_grid`).
    #[serde(default)]
    pub ticks: TickCount,
    /// The transport change waiting for its instant: part of the state, so it survives
    /// retention and every instance holding the session live arms its own timer for it.
    /// Absent from records written before scheduling existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledChange>,
    /// The chord sheet (ChordPro; empty: none). Kept with the state so that it survives
    /// retention and crosses instances like the message does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sheet: String,
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
///
/// Bounded: a client that joins a new session, leaves, and does it again creates a record
/// each time (finding: 20 sockets made 20,000 in 32 s, about 3.7 KB each). So at most
/// `capacity` records are kept, and saving one more forgets the one saved longest ago
/// (least recently saved first: a session that still changes is saved often and stays).
/// A forgotten session that is joined again starts fresh, as after its retention window.
pub struct MemoryStore {
    records: Mutex<LruCache<String, (SessionRecord, Instant)>>,
    metrics: Option<StoreMetrics>,
}

/// Where the store reports its size and its evictions.
pub struct StoreMetrics {
    pub retained: IntGauge,
    pub evicted: IntCounter,
}

impl MemoryStore {
    /// A store keeping at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            records: Mutex::new(LruCache::new(capacity)),
            metrics: None,
        }
    }

    /// Reports the number of records and the evictions through `metrics`.
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records held now, expired or not.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, (SessionRecord, Instant)>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, records: &LruCache<String, (SessionRecord, Instant)>, evicted: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.retained.set(records.len() as i64);
            if evicted {
                metrics.evicted.inc();
            }
        }
    }
}

impl SessionStore for MemoryStore {
    fn save(&self, record: &SessionRecord, ttl: Duration) {
        let expires = Instant::now() + ttl;
        let mut records = self.lock();
        let evicted = match records.get_mut(record.session_id.as_str()) {
            Some(entry) => {
                *entry = (record.clone(), expires);
                false
            }
            None => records
                .push(record.session_id.clone(), (record.clone(), expires))
                .is_some(),
        };
        self.report(&records, evicted);
    }

    fn load(&self, session_id: &str) -> Option<SessionRecord> {
        let now = Instant::now();
        let mut records = self.lock();
        match records.peek(session_id) {
            Some((record, expires)) if *expires > now => Some(record.clone()),
            Some(_) => {
                records.pop(session_id);
                self.report(&records, false);
                None
            }
            None => None,
        }
    }

    fn purge_expired(&self) {
        let now = Instant::now();
        let mut records = self.lock();
        let expired: Vec<String> = records
            .iter()
            .filter(|(_, (_, expires))| *expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            records.pop(&id);
        }
        self.report(&records, false);
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
            leader: None,
            event_seq: 30,
            ticks: TickCount::default(),
            scheduled: None,
            sheet: String::new(),
        }
    }

    #[test]
    fn a_record_from_before_schedules_and_sheets_still_loads() {
        let old = r#"{"sessionId":"a","transport":{"playing":false,"tempo":120.0,"beat":0.0,"anchorTime":0.0},"message":"","version":3,"eventSeq":9}"#;
        let record: SessionRecord = serde_json::from_str(old).unwrap();
        assert_eq!((record.scheduled, record.sheet.as_str()), (None, ""));
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            !json.contains("scheduled") && !json.contains("sheet"),
            "{json}"
        );
    }

    #[test]
    fn saved_records_load_until_they_expire() {
        let store = MemoryStore::new(100);
        store.save(&record("a"), Duration::from_secs(60));
        store.save(&record("b"), Duration::ZERO);
        assert_eq!(store.load("a").unwrap().version, 7);
        assert!(store.load("b").is_none());
        assert!(store.load("c").is_none());
        store.purge_expired();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn at_capacity_the_record_saved_longest_ago_is_forgotten_and_counted() {
        let metrics = StoreMetrics {
            retained: IntGauge::new("retained", "r").unwrap(),
            evicted: IntCounter::new("evicted", "e").unwrap(),
        };
        let (retained, evicted) = (metrics.retained.clone(), metrics.evicted.clone());
        let store = MemoryStore::new(2).with_metrics(metrics);
        let hour = Duration::from_secs(3600);
        store.save(&record("a"), hour);
        store.save(&record("b"), hour);
        store.save(&record("a"), hour); // saved again: now b is the oldest
        assert_eq!(evicted.get(), 0, "updating a record evicts nothing");
        store.save(&record("c"), hour);
        assert_eq!(evicted.get(), 1);
        assert_eq!(retained.get(), 2);
        assert!(store.load("b").is_none());
        assert!(store.load("a").is_some() && store.load("c").is_some());
        for i in 0..1000 {
            store.save(&record(&format!("churn-{i}")), hour);
        }
        assert_eq!(store.len(), 2, "never more than the capacity");
        assert_eq!(evicted.get(), 1001);
    }
}

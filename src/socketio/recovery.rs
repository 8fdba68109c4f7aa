//! Connection state recovery, as Socket.IO 4.6+ clients expect it.
//!
//! At `CONNECT` every socket gets a private id (`pid`). When a socket drops for a reason a
//! client may recover from (its transport closed, a ping timeout, a slow consumer, a
//! shutdown), the server keeps a [`Record`] under its `pid` for `RECOVERY_WINDOW_MS`: the
//! socket id and the session membership (session id and the member's current resume
//! token). A client that reconnects within the window sends `{pid, offset}` in its
//! `CONNECT`; the server takes the record (once), answers with the same socket id and
//! `pid` (the client then sets `socket.recovered`), and resumes the membership through the
//! engine with the resume token and `lastVersion = offset`, which replays the state
//! events the client missed. Without Redis the records live in this process (bounded);
//! with `REDIS_URL` in Redis, so a socket recovers on any instance.

use crate::cluster::redis::sockets::SocketRecords;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a dropped socket leaves for its recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The socket id the client had (`socket.id`).
    pub sid: String,
    /// The session the socket was a member of, if any.
    pub membership: Option<Membership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub session_id: String,
    pub resume_token: String,
}

/// Where the records are kept.
pub enum RecoveryStore {
    /// One process: an LRU of at most `capacity` records (a record per dropped socket; the
    /// oldest is forgotten first when more sockets drop within one window than it holds).
    Memory(Mutex<lru::LruCache<String, (Record, Instant)>>),
    Redis(SocketRecords),
}

impl RecoveryStore {
    pub fn memory(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least 1");
        RecoveryStore::Memory(Mutex::new(lru::LruCache::new(capacity)))
    }

    /// Keeps `record` under `pid` for `window`.
    pub async fn save(&self, pid: &str, record: Record, window: Duration) {
        match self {
            RecoveryStore::Memory(records) => {
                let deadline = Instant::now() + window;
                records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(pid.to_owned(), (record, deadline));
            }
            RecoveryStore::Redis(redis) => {
                let json = serde_json::to_string(&record).expect("records serialize");
                redis.save(pid, &json, window).await;
            }
        }
    }

    /// Takes the record of `pid`, if it is still within its window.
    pub async fn take(&self, pid: &str) -> Option<Record> {
        match self {
            RecoveryStore::Memory(records) => {
                let (record, deadline) =
                    records.lock().unwrap_or_else(|e| e.into_inner()).pop(pid)?;
                (Instant::now() < deadline).then_some(record)
            }
            RecoveryStore::Redis(redis) => {
                let json = redis.take(pid).await?;
                serde_json::from_str(&json)
                    .inspect_err(|error| tracing::warn!(%error, "a recovery record does not parse"))
                    .ok()
            }
        }
    }
}

/// What a recovering client sends in its `CONNECT` (Socket.IO puts `pid` and `offset`
/// next to the app's own `auth` fields).
#[derive(Debug, Default, Deserialize)]
pub struct ConnectAuth {
    #[serde(default)]
    pub pid: Option<String>,
    #[serde(default)]
    pub offset: Option<String>,
    /// Authenticated mode: the JWT, as `io(url, { auth: { token } })` sends it.
    #[serde(default)]
    pub token: Option<String>,
}

impl ConnectAuth {
    /// Reads the `CONNECT` payload; anything but an object with string fields reads as
    /// empty (a fresh socket), as an unknown `pid` does.
    pub fn parse(json: Option<&str>) -> Self {
        json.and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }

    /// The offset as the version it stands for (see `bandsync_protocol::socketio`).
    pub fn last_version(&self) -> Option<u64> {
        self.offset.as_deref()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sid: &str) -> Record {
        Record {
            sid: sid.into(),
            membership: Some(Membership {
                session_id: "band".into(),
                resume_token: "t".repeat(32),
            }),
        }
    }

    #[tokio::test]
    async fn a_record_recovers_once_and_only_within_its_window() {
        let store = RecoveryStore::memory(4);
        store
            .save("p1", record("s1"), Duration::from_secs(30))
            .await;
        assert_eq!(store.take("p1").await, Some(record("s1")));
        assert_eq!(store.take("p1").await, None, "taken once");
        store.save("p2", record("s2"), Duration::ZERO).await;
        assert_eq!(store.take("p2").await, None, "expired");
        assert_eq!(store.take("unknown").await, None);
    }

    #[tokio::test]
    async fn the_memory_store_is_bounded() {
        let store = RecoveryStore::memory(2);
        for i in 0..3 {
            let pid = format!("p{i}");
            store
                .save(&pid, record(&pid), Duration::from_secs(30))
                .await;
        }
        assert_eq!(store.take("p0").await, None, "the oldest is forgotten");
        assert!(store.take("p2").await.is_some());
    }

    #[test]
    fn connect_payloads_are_read_leniently() {
        let auth = ConnectAuth::parse(Some(r#"{"pid":"abc","offset":"17","token":"x"}"#));
        assert_eq!(auth.pid.as_deref(), Some("abc"));
        assert_eq!(auth.last_version(), Some(17));
        assert_eq!(auth.token.as_deref(), Some("x"));
        assert!(ConnectAuth::parse(Some("[1]")).pid.is_none());
        assert!(ConnectAuth::parse(Some(r#"{"pid":5}"#)).pid.is_none());
        assert_eq!(
            ConnectAuth::parse(Some(r#"{"offset":"x"}"#)).last_version(),
            None
        );
        assert!(ConnectAuth::parse(None).pid.is_none());
    }
}

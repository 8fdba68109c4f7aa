//! Stream Manager streams across instances: each stream's document lives in Redis, a
//! change is committed with a compare-and-set on its version (so two instances never
//! overwrite each other's writes) and published with its events in the same script, so
//! every instance pushes every change to its own clients in commit order.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p}:stage:default`, `{p}:stage:s:{session}` | HASH `version`, `doc` | a stream's document |
//! | `{p}:stages` | SET | the streams with a document (the cluster-wide cap) |
//! | `{p}:stage` | channel | every change: `{origin, key, doc, events}` |
//!
//! While Redis is out of reach, writes answer `503 STORE_UNAVAILABLE` (a scene on air must
//! not fork between instances) and reads serve what this instance has cached.

use super::keys::Keys;
use crate::metrics::Metrics;
use crate::stream_manager::document::StreamDoc;
use crate::stream_manager::store::CommitError;
use crate::stream_manager::StreamManager;
use bandsync_protocol::stream_manager::StageEvent;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Commits a document if the stored version is the expected one, keeps the stream count
/// under its cap, and publishes the change: 1 committed, 0 version conflict, -1 cap.
const COMMIT: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[1])
if current ~= expected then return 0 end
if expected == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[7]) == 0 then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
  redis.call('SADD', KEYS[2], ARGV[7])
end
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'doc', ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

#[derive(Serialize, Deserialize)]
struct Change<'a> {
    origin: &'a str,
    key: &'a str,
    doc: StreamDoc,
    events: Vec<StageEvent>,
}

pub struct StageCluster {
    client: redis::Client,
    keys: Keys,
    instance: String,
    conn: Mutex<Option<ConnectionManager>>,
    /// Set once the link has connected for the first time: until then (the instance just
    /// started) a request waits for it briefly rather than failing at once.
    connected: tokio::sync::watch::Sender<bool>,
    script: Script,
    manager: OnceLock<Weak<StreamManager>>,
    metrics: Arc<Metrics>,
}

/// Starts the link (it connects in the background; until it does, writes answer 503).
pub fn spawn(
    url: &str,
    prefix: &str,
    instance: &str,
    metrics: &Arc<Metrics>,
) -> RedisResult<Arc<StageCluster>> {
    let cluster = Arc::new(StageCluster {
        client: redis::Client::open(url)?,
        keys: Keys::new(prefix),
        instance: instance.to_owned(),
        conn: Mutex::new(None),
        connected: tokio::sync::watch::Sender::new(false),
        script: Script::new(COMMIT),
        manager: OnceLock::new(),
        metrics: metrics.clone(),
    });
    tokio::spawn(cluster.clone().run());
    Ok(cluster)
}

impl StageCluster {
    /// Where the other instances' changes go (held weakly: the link ends with the server).
    pub fn deliver_to(&self, manager: Arc<StreamManager>) {
        let _ = self.manager.set(Arc::downgrade(&manager));
    }

    /// The command connection. Right after start it waits (at most [`FIRST_CONNECT_WAIT`])
    /// for the link's first connection; later, while Redis is out of reach, it answers
    /// `None` at once.
    async fn connection(&self) -> Option<ConnectionManager> {
        let mut connected = self.connected.subscribe();
        let _ = tokio::time::timeout(FIRST_CONNECT_WAIT, connected.wait_for(|up| *up)).await;
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count(&self) {
        self.metrics
            .cluster
            .redis_commands
            .with_label_values(&["stage"])
            .inc();
    }

    pub async fn load(&self, key: &str) -> Result<Option<StreamDoc>, CommitError> {
        let mut conn = self.connection().await.ok_or_else(down)?;
        self.count();
        let stored: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.stage(key))
            .arg("doc")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        match stored.map(|bytes| serde_json::from_slice::<StreamDoc>(&bytes)) {
            None => Ok(None),
            Some(Ok(doc)) => Ok(Some(doc)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "a stream document in Redis does not parse");
                Err(CommitError::Unavailable(
                    "a stored stream document is damaged".into(),
                ))
            }
        }
    }

    pub async fn commit(
        &self,
        key: &str,
        expected: u64,
        doc: &StreamDoc,
        events: &[StageEvent],
        max_streams: usize,
    ) -> Result<(), CommitError> {
        let mut conn = self.connection().await.ok_or_else(down)?;
        let change = Change {
            origin: &self.instance,
            key,
            doc: doc.clone(),
            events: events.to_vec(),
        };
        let message = serde_json::to_vec(&change).expect("changes always serialize");
        let stored = serde_json::to_vec(doc).expect("documents always serialize");
        self.count();
        let outcome: i64 = self
            .script
            .key(self.keys.stage(key))
            .key(self.keys.stages())
            .arg(expected)
            .arg(stored)
            .arg(doc.version)
            .arg(max_streams)
            .arg(self.keys.stage_channel())
            .arg(message)
            .arg(key)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        match outcome {
            1 => Ok(()),
            0 => Err(CommitError::Conflict),
            _ => Err(CommitError::StreamLimit),
        }
    }

    fn failed(&self, error: redis::RedisError) -> CommitError {
        self.metrics.cluster.redis_errors.inc();
        tracing::warn!(%error, "a Stream Manager Redis command failed");
        CommitError::Unavailable("Redis is out of reach".into())
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = super::BACKOFF_MIN;
        loop {
            if let Ok((conn, mut messages)) = self.connect().await {
                backoff = super::BACKOFF_MIN;
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                self.connected.send_replace(true);
                // What was cached while the link was down may have been changed elsewhere.
                if let Some(manager) = self.manager.get().and_then(Weak::upgrade) {
                    manager.forget_all();
                }
                while let Some(message) = messages.next().await {
                    self.receive(message.get_payload_bytes());
                }
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            if self.manager.get().is_some_and(|m| m.strong_count() == 0) {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = super::next_backoff(backoff);
        }
    }

    fn receive(&self, payload: &[u8]) {
        let Some(manager) = self.manager.get().and_then(Weak::upgrade) else {
            return;
        };
        match serde_json::from_slice::<Change>(payload) {
            Ok(change) if change.origin == self.instance => {}
            Ok(change) => {
                let key = change.key.to_owned();
                manager.receive_remote(&key, change.doc, change.events);
            }
            Err(e) => {
                self.metrics.cluster.redis_errors.inc();
                tracing::warn!(error = %e, "a malformed Stream Manager change was skipped");
            }
        }
    }

    async fn connect(&self) -> RedisResult<(ConnectionManager, redis::aio::PubSubStream)> {
        let (conn, mut pubsub) = super::connect(&self.client).await?;
        pubsub.subscribe(self.keys.stage_channel()).await?;
        Ok((conn, pubsub.into_on_message()))
    }
}

/// How long a request made just after start waits for the link's first connection.
const FIRST_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn down() -> CommitError {
    CommitError::Unavailable("Redis is out of reach".into())
}

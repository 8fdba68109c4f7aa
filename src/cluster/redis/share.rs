//! Music Share across instances, in Redis by the seed's schema:
//!
//! | key | type | TTL | what |
//! |---|---|---|---|
//! | `{p}:share:{id}` | HASH `active`, `startTime`, `lastActivity`, `listenerCount`, and `listeners:<instance>` (each instance's receivers, written every second) | 15 min, refreshed on activity | the session |
//! | `{p}:share:{id}:metadata` | HASH of the metadata's fields, plus `json` as posted | 30 s | now playing |
//! | `{p}:share:{id}:audio` | STREAM `seq`, `data` (the binary audio frame), `sampleRate`, `channels`, `timestamp` | 10 s, capped near `AUDIO_BUFFER_MAX_CHUNKS` | the last seconds of audio |
//! | `{p}:shares` | ZSET id -> last activity (ms) | entries older than 15 min dropped | the cluster-wide cap and `409` |
//! | `{p}:share` | channel | | every change, to every instance |
//!
//! A start is claimed atomically (`CLAIM`): one session per id and at most
//! `MAX_SESSIONS` active in the whole cluster. Every local change the registry makes is
//! queued here (bounded: past it, changes are dropped and counted), written to Redis and
//! published; every instance applies the others' changes to its mirror of the session
//! and pushes them to its receivers. While Redis is out of reach, shares are local.

use super::keys::Keys;
use crate::metrics::Metrics;
use crate::share::replica::ShareChange;
use crate::share::{ShareError, ShareRegistry};
use bandsync_protocol::audio::decode_audio_frame;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Local changes waiting to be written (about 4 s of audio from 50 sharers).
const CHANGE_QUEUE: usize = 2048;
const METADATA_TTL_MS: i64 = 30_000;
const AUDIO_TTL_MS: i64 = 10_000;

/// KEYS: session hash, active set. ARGV: id, now ms, timeout ms, max sessions.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now, timeout = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - timeout)
if redis.call('HGET', KEYS[1], 'active') == '1' and redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 'conflict'
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 'full'
end
redis.call('HSET', KEYS[1], 'active', '1', 'startTime', ARGV[2], 'lastActivity', ARGV[2], 'listenerCount', 0)
redis.call('PEXPIRE', KEYS[1], timeout)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return 'ok'
"#,
    )
});

/// The header of a message on the share channel; the body follows a newline.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    origin: String,
    kind: String,
    id: String,
    #[serde(default)]
    start_time_ms: f64,
    #[serde(default)]
    reason: String,
}

pub struct ShareCluster {
    client: redis::Client,
    pub(super) keys: Keys,
    pub(super) instance: String,
    session_timeout: Duration,
    max_sessions: usize,
    conn: Mutex<Option<ConnectionManager>>,
    metrics: Arc<Metrics>,
}

/// Starts replicating `registry` through Redis at `url`; `deliver` gets the changes of
/// other instances (for push receivers) once they are applied here.
pub fn spawn(
    url: &str,
    prefix: &str,
    instance: &str,
    registry: Arc<ShareRegistry>,
    deliver: Arc<dyn Fn(ShareChange) + Send + Sync>,
    metrics: Arc<Metrics>,
) -> RedisResult<Arc<ShareCluster>> {
    let settings = registry.settings().clone();
    let cluster = Arc::new(ShareCluster {
        client: redis::Client::open(url)?,
        keys: Keys::new(prefix),
        instance: instance.to_owned(),
        session_timeout: settings.session_timeout,
        max_sessions: settings.max_sessions,
        conn: Mutex::new(None),
        metrics,
    });
    let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
    let dropped = cluster.metrics.cluster.redis_errors.clone();
    registry.set_replicator(Box::new(move |change| {
        if tx.try_send(change).is_err() {
            dropped.inc();
        }
    }));
    tokio::spawn(cluster.clone().run(rx, registry, deliver));
    Ok(cluster)
}

impl ShareCluster {
    pub(super) fn connection(&self) -> Option<ConnectionManager> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Claims `id` cluster-wide before a local start: `409` if it is active anywhere,
    /// `TooManySessions` past the cluster's cap. Without Redis the local checks decide.
    pub async fn claim(&self, id: &str, now_ms: f64) -> Result<(), ShareError> {
        let Some(mut conn) = self.connection() else {
            return Ok(());
        };
        let outcome: RedisResult<String> = CLAIM
            .key(self.keys.share(id))
            .key(self.keys.shares())
            .arg(id)
            .arg(now_ms as u64)
            .arg(self.session_timeout.as_millis() as u64)
            .arg(self.max_sessions)
            .invoke_async(&mut conn)
            .await;
        match outcome.as_deref() {
            Ok("conflict") => Err(ShareError::Conflict),
            Ok("full") => Err(ShareError::TooManySessions(self.max_sessions)),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "share claim failed: deciding locally");
                Ok(())
            }
        }
    }

    /// The listeners of share `id` on the other instances (each instance writes its own
    /// count, `listeners:<instance>` in the session hash, every second); 0 without Redis.
    pub async fn remote_listeners(&self, id: &str) -> usize {
        let Some(mut conn) = self.connection() else {
            return 0;
        };
        let fields: RedisResult<Vec<(String, String)>> = redis::cmd("HGETALL")
            .arg(self.keys.share(id))
            .query_async(&mut conn)
            .await;
        let own = format!("listeners:{}", self.instance);
        fields
            .unwrap_or_default()
            .iter()
            .filter(|(field, _)| field.starts_with("listeners:") && *field != own)
            .filter_map(|(_, count)| count.parse::<usize>().ok())
            .sum()
    }

    /// Writes this instance's listener count of every active share.
    async fn write_listeners(
        &self,
        conn: &mut ConnectionManager,
        registry: &ShareRegistry,
    ) -> RedisResult<()> {
        let counts = registry.listener_counts();
        if counts.is_empty() {
            return Ok(());
        }
        let field = format!("listeners:{}", self.instance);
        let timeout = self.session_timeout.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (id, count) in counts {
            pipe.hset(self.keys.share(&id), &field, count)
                .ignore()
                .pexpire(self.keys.share(&id), timeout)
                .ignore();
        }
        pipe.query_async(conn).await
    }

    /// Gives back a claim whose local start was refused.
    pub async fn release(&self, id: &str) {
        if let Some(mut conn) = self.connection() {
            let mut pipe = redis::pipe();
            pipe.del(self.keys.share(id)).zrem(self.keys.shares(), id);
            let _: RedisResult<()> = pipe.query_async(&mut conn).await;
        }
    }

    async fn run(
        self: Arc<Self>,
        mut changes: mpsc::Receiver<ShareChange>,
        registry: Arc<ShareRegistry>,
        deliver: Arc<dyn Fn(ShareChange) + Send + Sync>,
    ) {
        let mut backoff = super::BACKOFF_MIN;
        loop {
            if let Ok((conn, mut messages)) = self.connect().await {
                backoff = super::BACKOFF_MIN;
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                let mut conn = conn;
                let mut listeners = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = listeners.tick() => {
                            if self.write_listeners(&mut conn, &registry).await.is_err() {
                                self.metrics.cluster.redis_errors.inc();
                                break;
                            }
                        }
                        change = changes.recv() => match change {
                            Some(change) => {
                                if self.write(&mut conn, &change).await.is_err() {
                                    self.metrics.cluster.redis_errors.inc();
                                    break;
                                }
                            }
                            None => return,
                        },
                        message = messages.next() => match message {
                            Some(message) => self.apply(&message, &registry, &deliver),
                            None => break,
                        },
                    }
                }
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            // Out of reach: local changes are not replicated meanwhile.
            if !super::sit_out(backoff, &mut changes).await {
                return;
            }
            backoff = super::next_backoff(backoff);
        }
    }

    async fn connect(&self) -> RedisResult<(ConnectionManager, redis::aio::PubSubStream)> {
        let (conn, mut pubsub) = super::connect(&self.client).await?;
        pubsub.subscribe(self.keys.share_channel()).await?;
        Ok((conn, pubsub.into_on_message()))
    }

    /// Stores a local change by the seed's schema and publishes it.
    async fn write(&self, conn: &mut ConnectionManager, change: &ShareChange) -> RedisResult<()> {
        self.metrics
            .cluster
            .redis_commands
            .with_label_values(&["share"])
            .inc();
        let id = change.id();
        let now = crate::clock::ServerClock::shared().now_ms() as u64;
        let timeout = self.session_timeout.as_millis() as i64;
        let session = self.keys.share(id);
        let mut header = Header {
            origin: self.instance.clone(),
            kind: String::new(),
            id: id.to_owned(),
            start_time_ms: 0.0,
            reason: String::new(),
        };
        let mut pipe = redis::pipe();
        let body = match change {
            ShareChange::Started { start_time_ms, .. } => {
                header.kind = "started".into();
                header.start_time_ms = *start_time_ms;
                Bytes::new()
            }
            ShareChange::Metadata { json, .. } => {
                header.kind = "metadata".into();
                let metadata = self.keys.share_metadata(id);
                let value: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
                let mut fields: Vec<(String, String)> = value
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                fields.push(("json".into(), String::from_utf8_lossy(json).into_owned()));
                pipe.del(&metadata)
                    .ignore()
                    .hset_multiple(&metadata, &fields)
                    .ignore()
                    .pexpire(&metadata, METADATA_TTL_MS)
                    .ignore();
                json.clone()
            }
            ShareChange::Audio { chunk, .. } => {
                header.kind = "audio".into();
                let audio = self.keys.share_audio(id);
                let frame = chunk.ws_frame();
                pipe.cmd("XADD")
                    .arg(&audio)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(256)
                    .arg("*")
                    .arg("seq")
                    .arg(chunk.sequence())
                    .arg("data")
                    .arg(frame.as_ref())
                    .arg("sampleRate")
                    .arg(chunk.header.sample_rate)
                    .arg("channels")
                    .arg(chunk.header.channels)
                    .arg("timestamp")
                    .arg(chunk.header.timestamp)
                    .ignore()
                    .pexpire(&audio, AUDIO_TTL_MS)
                    .ignore();
                frame
            }
            ShareChange::Ended { reason, .. } => {
                header.kind = "ended".into();
                header.reason = (*reason).to_owned();
                pipe.hset(&session, "active", "0")
                    .ignore()
                    .zrem(self.keys.shares(), id)
                    .ignore()
                    .del(self.keys.share_audio(id))
                    .ignore();
                Bytes::new()
            }
        };
        if !matches!(change, ShareChange::Ended { .. }) {
            pipe.hset(&session, "lastActivity", now)
                .ignore()
                .zadd(self.keys.shares(), id, now)
                .ignore();
        }
        pipe.pexpire(&session, timeout).ignore();
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut message = BytesMut::with_capacity(header.len() + 1 + body.len());
        message.put_slice(&header);
        message.put_u8(b'\n');
        message.put_slice(&body);
        pipe.publish(self.keys.share_channel(), message.as_ref())
            .ignore();
        pipe.query_async(conn).await
    }

    /// Applies another instance's change here and hands it on to the push receivers.
    fn apply(
        &self,
        message: &redis::Msg,
        registry: &ShareRegistry,
        deliver: &Arc<dyn Fn(ShareChange) + Send + Sync>,
    ) {
        let payload = message.get_payload_bytes();
        let Some(split) = payload.iter().position(|b| *b == b'\n') else {
            return;
        };
        let Ok(header) = serde_json::from_slice::<Header>(&payload[..split]) else {
            return;
        };
        if header.origin == self.instance {
            return;
        }
        let body = Bytes::copy_from_slice(&payload[split + 1..]);
        let change = match header.kind.as_str() {
            "started" => ShareChange::Started {
                id: header.id,
                start_time_ms: header.start_time_ms,
            },
            "metadata" => ShareChange::Metadata {
                id: header.id,
                json: body,
            },
            "audio" => {
                let Ok((audio_header, samples)) = decode_audio_frame(&body) else {
                    return;
                };
                let chunk = crate::share::audio::AudioChunk::from_frame(
                    audio_header,
                    Bytes::copy_from_slice(samples),
                );
                ShareChange::Audio {
                    id: header.id,
                    chunk: Arc::new(chunk),
                }
            }
            "ended" => ShareChange::Ended {
                id: header.id,
                reason: if header.reason == "timeout" {
                    "timeout"
                } else {
                    "stopped"
                },
            },
            _ => return,
        };
        if registry.apply_remote(&change) {
            deliver(change);
        }
    }
}

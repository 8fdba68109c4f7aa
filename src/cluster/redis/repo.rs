//! Repository streams across instances: a composition is rendered once, on the instance
//! that got the trigger, and published with its samples; every other instance serializes
//! it for its own listeners. A webhook delivery is claimed in Redis (`SET NX`) so that
//! GitHub's retries, or a delivery reaching two instances behind a balancer, play once.
//!
//! | key | type | TTL | what |
//! |---|---|---|---|
//! | `{p}:repo` | channel | | every composition: a JSON header line, then the samples |
//! | `{p}:repo:{repo}:latest` | STRING | 1 h | the latest composition, as published |
//! | `{p}:repo:delivery:{id}` | STRING | 24 h | the instance that played a delivery |
//!
//! While Redis is out of reach, compositions play on this instance only and deliveries
//! are de-duplicated here only.

use super::keys::Keys;
use crate::metrics::Metrics;
use crate::repo::composition::{Composition, Meta};
use crate::repo::path::repo_key;
use crate::repo::RepoStreams;
use bandsync_protocol::repo::{MusicalParams, Trigger, CHANNELS, MAX_DURATION, SAMPLE_RATE};
use bandsync_render::Rendered;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::RedisResult;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

/// Compositions waiting to be published (each a few MB): past it they play here only.
const PUBLISH_QUEUE: usize = 8;
const LATEST_TTL_MS: u64 = 3_600_000;
const DELIVERY_TTL_MS: u64 = 24 * 3_600_000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    origin: String,
    repo_id: String,
    params: MusicalParams,
    trigger: Trigger,
    timestamp_ms: u64,
    render_ms: f64,
    frames: usize,
}

pub struct RepoCluster {
    client: redis::Client,
    keys: Keys,
    instance: String,
    conn: Mutex<Option<ConnectionManager>>,
    /// Set once the link has connected for the first time: until then (the instance just
    /// started) a late listener waits for it rather than missing the cluster's latest.
    connected: tokio::sync::watch::Sender<bool>,
    outbox: mpsc::Sender<Arc<Composition>>,
    metrics: Arc<Metrics>,
}

/// Starts the link for `streams` (held weakly: the link ends with the server).
pub fn spawn(
    url: &str,
    prefix: &str,
    instance: &str,
    streams: &Arc<RepoStreams>,
    metrics: Arc<Metrics>,
) -> RedisResult<Arc<RepoCluster>> {
    let (outbox, inbox) = mpsc::channel(PUBLISH_QUEUE);
    let cluster = Arc::new(RepoCluster {
        client: redis::Client::open(url)?,
        keys: Keys::new(prefix),
        instance: instance.to_owned(),
        conn: Mutex::new(None),
        connected: tokio::sync::watch::Sender::new(false),
        outbox,
        metrics,
    });
    tokio::spawn(cluster.clone().run(inbox, Arc::downgrade(streams)));
    Ok(cluster)
}

/// One published composition: the header, a newline, the samples (f32 LE, left then right).
fn envelope(instance: &str, composition: &Composition) -> Vec<u8> {
    let header = Header {
        origin: instance.to_owned(),
        repo_id: composition.meta.repo_id.clone(),
        params: composition.meta.params.clone(),
        trigger: composition.meta.trigger.clone(),
        timestamp_ms: composition.meta.timestamp_ms,
        render_ms: composition.meta.render_ms,
        frames: composition.frames(),
    };
    let mut out = serde_json::to_vec(&header).expect("headers always serialize");
    out.push(b'\n');
    out.reserve(composition.frames() * CHANNELS * 4);
    for channel in &composition.audio.channels {
        for sample in channel {
            out.extend_from_slice(&sample.to_le_bytes());
        }
    }
    out
}

/// Reads an envelope back; `None` for anything malformed or over the duration bound.
fn parse_envelope(bytes: &[u8]) -> Option<(String, Rendered, Meta)> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).ok()?;
    let samples = &bytes[newline + 1..];
    let max_frames = (MAX_DURATION * f64::from(SAMPLE_RATE)) as usize;
    if header.frames > max_frames || samples.len() != header.frames * CHANNELS * 4 {
        return None;
    }
    let channel = |n: usize| -> Vec<f32> {
        samples[n * header.frames * 4..(n + 1) * header.frames * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let audio = Rendered {
        channels: [channel(0), channel(1)],
    };
    let meta = Meta {
        repo_id: header.repo_id,
        params: header.params,
        trigger: header.trigger,
        timestamp_ms: header.timestamp_ms,
        render_ms: header.render_ms,
    };
    Some((header.origin, audio, meta))
}

impl RepoCluster {
    fn connection(&self) -> Option<ConnectionManager> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues a composition rendered here for the other instances (never waits).
    pub fn publish(&self, composition: Arc<Composition>) {
        if self.outbox.try_send(composition).is_err() {
            self.metrics.cluster.redis_errors.inc();
            tracing::warn!(
                "repository publish queue full: a composition played on this instance only"
            );
        }
    }

    /// Claims a webhook delivery for this instance: `false` if another instance (or an
    /// earlier delivery here) has it. Without Redis, `true` (the local check decided).
    pub async fn claim_delivery(&self, delivery: &str) -> bool {
        let Some(mut conn) = self.connection() else {
            return true;
        };
        let claimed: RedisResult<Option<String>> = redis::cmd("SET")
            .arg(self.keys.repo_delivery(delivery))
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(DELIVERY_TTL_MS)
            .query_async(&mut conn)
            .await;
        match claimed {
            Ok(reply) => reply.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "delivery claim failed: deciding locally");
                true
            }
        }
    }

    /// Gives a claim back (the delivery could not be played, so a redelivery should).
    pub async fn release_delivery(&self, delivery: &str) {
        if let Some(mut conn) = self.connection() {
            let _: RedisResult<()> = redis::cmd("DEL")
                .arg(self.keys.repo_delivery(delivery))
                .query_async(&mut conn)
                .await;
        }
    }

    /// The latest composition of `repo` published by any instance. Right after start it
    /// waits for the link's first connection (the caller bounds the wait); later, while
    /// Redis is out of reach, it answers `None` at once.
    pub async fn latest(&self, repo: &str) -> Option<(Rendered, Meta)> {
        let _ = self.connected.subscribe().wait_for(|up| *up).await;
        let mut conn = self.connection()?;
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.keys.repo_latest(&repo_key(repo)))
            .query_async(&mut conn)
            .await
            .ok()?;
        let (_, audio, meta) = parse_envelope(&bytes?)?;
        Some((audio, meta))
    }

    async fn write(
        &self,
        conn: &mut ConnectionManager,
        composition: &Composition,
    ) -> RedisResult<()> {
        self.metrics
            .cluster
            .redis_commands
            .with_label_values(&["repo"])
            .inc();
        let envelope = envelope(&self.instance, composition);
        let latest = self.keys.repo_latest(&repo_key(&composition.meta.repo_id));
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&latest)
            .arg(&envelope)
            .arg("PX")
            .arg(LATEST_TTL_MS)
            .ignore()
            .publish(self.keys.repo_channel(), &envelope)
            .ignore();
        pipe.query_async(conn).await
    }

    async fn run(
        self: Arc<Self>,
        mut inbox: mpsc::Receiver<Arc<Composition>>,
        streams: Weak<RepoStreams>,
    ) {
        let mut backoff = super::BACKOFF_MIN;
        loop {
            if let Ok((conn, mut messages)) = self.connect().await {
                backoff = super::BACKOFF_MIN;
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                self.connected.send_replace(true);
                let mut conn = conn;
                loop {
                    tokio::select! {
                        composition = inbox.recv() => match composition {
                            Some(composition) => {
                                if self.write(&mut conn, &composition).await.is_err() {
                                    self.metrics.cluster.redis_errors.inc();
                                    break;
                                }
                            }
                            None => return,
                        },
                        message = messages.next() => match message {
                            Some(message) => {
                                let Some(streams) = streams.upgrade() else { return };
                                self.receive(message.get_payload_bytes(), &streams);
                            }
                            None => break,
                        },
                    }
                }
                *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            if !super::sit_out(backoff, &mut inbox).await {
                return;
            }
            backoff = super::next_backoff(backoff);
        }
    }

    fn receive(&self, payload: &[u8], streams: &Arc<RepoStreams>) {
        match parse_envelope(payload) {
            Some((origin, _, _)) if origin == self.instance => {}
            Some((_, audio, meta)) => streams.receive_remote(audio, meta),
            None => {
                self.metrics.cluster.redis_errors.inc();
                tracing::warn!("a malformed composition on the repository channel was skipped");
            }
        }
    }

    async fn connect(&self) -> RedisResult<(ConnectionManager, redis::aio::PubSubStream)> {
        let (conn, mut pubsub) = super::connect(&self.client).await?;
        pubsub.subscribe(self.keys.repo_channel()).await?;
        Ok((conn, pubsub.into_on_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_rejects_damage() {
        let audio = Arc::new(Rendered {
            channels: [vec![0.25, -0.5, 1.0], vec![0.0, 0.125, -1.0]],
        });
        let meta = Meta {
            repo_id: "octocat/hello-world".into(),
            params: MusicalParams::default(),
            trigger: Trigger::test("t"),
            timestamp_ms: 42,
            render_ms: 1.5,
        };
        let composition = Composition::encode(audio.clone(), meta);
        let bytes = envelope("i1", &composition);
        let (origin, back, meta) = parse_envelope(&bytes).unwrap();
        assert_eq!(origin, "i1");
        assert_eq!(back.channels, audio.channels);
        assert_eq!(meta.timestamp_ms, 42);
        assert!(parse_envelope(&bytes[..bytes.len() - 1]).is_none());
        assert!(parse_envelope(b"{}\n").is_none());
        assert!(parse_envelope(b"no header").is_none());
    }
}

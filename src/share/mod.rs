//! The Music Share relay (`/api/share/...`): a sharer streams PCM chunks and now-playing
//! metadata; receivers poll them, or get them pushed over WebSocket and SSE because a share
//! session is also the bandsync session with the same id.
//!
//! The registry is shared state behind a std `Mutex`: every operation is a short, non-async
//! critical section (no `.await` inside), called from the HTTP handlers directly; polling
//! needs no trip through the session engine.

pub mod audio;
pub mod auth;

pub mod config;
mod error;
pub mod replica;
mod session;
pub mod wire;

pub use error::ShareError;

use crate::limits::rate::KeyedRate;
use crate::limits::AddrKey;
use audio::{AudioChunk, ChunkBody};
use bandsync_protocol::audio::AudioHeader;
use bytes::Bytes;
use session::{Metadata, MetadataSummary, ShareSession};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most chunks a `since` poll returns.
pub const POLL_LIMIT: usize = 10;
/// Largest decoded audio chunk.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest metadata body (large thumbnails).
pub const MAX_METADATA_BYTES: usize = 5 * 1024 * 1024;

/// Share settings, from the configuration.
#[derive(Debug, Clone)]
pub struct ShareSettings {
    pub bearer_token: Option<String>,
    pub max_sessions: usize,
    pub limits: SessionLimitsConfig,
    pub session_timeout: Duration,
    pub metadata_ttl: Duration,
    pub ended_retention: Duration,
}

pub type SessionLimitsConfig = session::SessionLimits;

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub active: bool,
    pub start_time_ms: f64,
    pub listener_count: usize,
    pub metadata: Option<MetadataSummary>,
}

pub struct ShareRegistry {
    settings: ShareSettings,
    /// Most active sessions started from one address (`SHARE_SESSIONS_PER_IP`).
    per_address: usize,
    /// Session starts per address (`SHARE_STARTS_PER_MINUTE`).
    start_rate: KeyedRate<AddrKey>,
    starts_per_minute: u32,
    sessions: Mutex<HashMap<String, ShareSession>>,
    /// WebSocket members + SSE listeners per 6-digit session, kept whether or not a share
    /// is running: receivers often arrive before the sharer starts.
    push_audience: Mutex<HashMap<String, usize>>,
    /// Where local changes go for the other instances (set with `REDIS_URL`).
    replicator: std::sync::OnceLock<replica::Replicator>,
}

/// A share session id: exactly six ASCII digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 6 && id.bytes().all(|b| b.is_ascii_digit())
}

impl ShareRegistry {
    pub fn new(settings: ShareSettings) -> Self {
        Self {
            per_address: settings.max_sessions,
            start_rate: KeyedRate::new(u32::MAX, Duration::from_secs(60), 1),
            starts_per_minute: u32::MAX,
            settings,
            sessions: Mutex::new(HashMap::new()),
            push_audience: Mutex::new(HashMap::new()),
            replicator: std::sync::OnceLock::new(),
        }
    }

    /// Limits what one client address may start: `per_address` active sessions, and
    /// `per_minute` starts a minute, remembered for up to `tracked` addresses.
    pub fn with_address_limits(
        mut self,
        per_address: usize,
        per_minute: u32,
        tracked: usize,
    ) -> Self {
        self.per_address = per_address;
        self.start_rate = KeyedRate::new(per_minute, Duration::from_secs(60), tracked);
        self.starts_per_minute = per_minute;
        self
    }

    pub fn settings(&self) -> &ShareSettings {
        &self.settings
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, ShareSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_active<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut ShareSession) -> Result<T, ShareError>,
    ) -> Result<T, ShareError> {
        let mut sessions = self.lock();
        match sessions.get_mut(id) {
            Some(s) if s.active => f(s),
            Some(_) => Err(ShareError::Ended),
            None => Err(ShareError::NotFound),
        }
    }

    /// Starts session `id` for `client`. The per-address cap is checked before the global
    /// one, so one address is told about its own limit and can never fill the server.
    pub fn start(&self, id: &str, now_ms: f64, client: IpAddr) -> Result<(), ShareError> {
        if !valid_id(id) {
            return Err(ShareError::InvalidSessionId);
        }
        let mut sessions = self.lock();
        if sessions.get(id).is_some_and(|s| s.active) {
            return Err(ShareError::Conflict);
        }
        let owner = AddrKey::of(client);
        let mine = sessions
            .values()
            .filter(|s| s.active && s.owner == owner)
            .count();
        if mine >= self.per_address {
            return Err(ShareError::AddressLimit(self.per_address));
        }
        let active = sessions.values().filter(|s| s.active).count();
        if active >= self.settings.max_sessions {
            return Err(ShareError::TooManySessions(self.settings.max_sessions));
        }
        self.start_rate
            .check(owner)
            .map_err(|wait| ShareError::RateLimited {
                what: "share start",
                per: "minute per address",
                limit: self.starts_per_minute,
                retry_after_ms: wait.as_millis().max(1) as u64,
            })?;
        let session = ShareSession::new(
            id.to_owned(),
            Instant::now(),
            now_ms,
            self.settings.limits,
            owner,
        );
        sessions.insert(id.to_owned(), session);
        drop(sessions);
        tracing::info!(session = id, "share session started");
        self.replicate(replica::ShareChange::Started {
            id: id.to_owned(),
            start_time_ms: now_ms,
        });
        Ok(())
    }

    /// Stores new metadata (checked by [`wire::check_metadata`]); returns how many
    /// receivers it reaches, and the metadata as stored (serialized once, for push
    /// receivers and the other instances).
    pub fn post_metadata(
        &self,
        id: &str,
        body: serde_json::Value,
        client: IpAddr,
    ) -> Result<(usize, Bytes), ShareError> {
        let object = wire::check_metadata(body)?;
        let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let summary = MetadataSummary {
            title: text("title"),
            artist: text("artist"),
        };
        let limit = self.settings.limits.metadata_per_sec;
        let push_audience = self.push_audience(id);
        let (reached, json) = self.with_active(id, |s| {
            check_rate(&s.metadata_limit, client, "metadata", limit)?;
            let now = Instant::now();
            let json =
                Bytes::from(serde_json::to_vec(&object).expect("a JSON map always serializes"));
            s.metadata = Some(Metadata {
                json: json.clone(),
                summary,
                stored: now,
            });
            s.last_activity = now;
            Ok((s.recent_pollers(now) + push_audience, json))
        })?;
        self.replicate(replica::ShareChange::Metadata {
            id: id.to_owned(),
            json: json.clone(),
        });
        Ok((reached, json))
    }

    /// Buffers one chunk; returns it for push delivery.
    pub fn post_audio(
        &self,
        id: &str,
        body: ChunkBody,
        client: IpAddr,
    ) -> Result<Arc<AudioChunk>, ShareError> {
        let samples = audio::decode_chunk(&body)?;
        self.buffer_chunk(id, client, || AudioChunk::from_rest(body, samples))
    }

    /// Buffers one chunk that a WebSocket sharer sent as a binary frame.
    pub fn post_audio_frame(
        &self,
        id: &str,
        header: AudioHeader,
        samples: Bytes,
        client: IpAddr,
    ) -> Result<Arc<AudioChunk>, ShareError> {
        if samples.len() > MAX_CHUNK_BYTES {
            return Err(ShareError::TooLarge(format!(
                "audio chunks are at most {MAX_CHUNK_BYTES} bytes"
            )));
        }
        self.buffer_chunk(id, client, || AudioChunk::from_frame(header, samples))
    }

    /// The audio rate limit, then the buffer: what both ways in (REST, WebSocket) share.
    fn buffer_chunk(
        &self,
        id: &str,
        client: IpAddr,
        chunk: impl FnOnce() -> AudioChunk,
    ) -> Result<Arc<AudioChunk>, ShareError> {
        let limit = self.settings.limits.audio_per_sec;
        let chunk = self.with_active(id, |s| {
            check_rate(&s.audio_limit, client, "audio", limit)?;
            let chunk = Arc::new(chunk());
            s.push_chunk(chunk.clone(), Instant::now());
            Ok(chunk)
        })?;
        self.replicate(replica::ShareChange::Audio {
            id: id.to_owned(),
            chunk: chunk.clone(),
        });
        Ok(chunk)
    }

    /// Lets a WebSocket sharer (already authorized by token) share into `id`: joins the
    /// active share session, or starts one.
    pub fn attach_or_start(&self, id: &str, now_ms: f64, client: IpAddr) -> Result<(), ShareError> {
        match self.start(id, now_ms, client) {
            Err(ShareError::Conflict) => Ok(()),
            other => other,
        }
    }

    /// Every active session's listeners here (recent pollers and push receivers), for
    /// the other instances' `listenerCount`.
    pub fn listener_counts(&self) -> Vec<(String, usize)> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let polled: Vec<(String, usize)> = sessions
            .values_mut()
            .filter(|s| s.active)
            .map(|s| (s.id.clone(), s.recent_pollers(now)))
            .collect();
        drop(sessions);
        polled
            .into_iter()
            .map(|(id, pollers)| {
                let push = self.push_audience(&id);
                (id, pollers + push)
            })
            .collect()
    }

    /// Whether share session `id` is active here (started here or mirrored).
    pub fn is_active(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|s| s.active)
    }

    /// The latest metadata of an active session, for a push receiver that just joined.
    pub fn current_metadata(&self, id: &str) -> Option<Bytes> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let s = sessions.get_mut(id).filter(|s| s.active)?;
        s.expire_metadata(now, self.settings.metadata_ttl);
        s.metadata.as_ref().map(|m| m.json.clone())
    }

    /// Ends the session; returns (duration in seconds, bytes of audio transferred).
    pub fn stop(&self, id: &str) -> Result<(f64, u64), ShareError> {
        let totals = self.with_active(id, |s| {
            let now = Instant::now();
            s.end(now);
            tracing::info!(
                session = id,
                bytes = s.bytes_transferred,
                "share session stopped"
            );
            Ok((
                now.duration_since(s.started).as_secs_f64(),
                s.bytes_transferred,
            ))
        })?;
        self.replicate(replica::ShareChange::Ended {
            id: id.to_owned(),
            reason: "stopped",
        });
        Ok(totals)
    }

    pub fn status(&self, id: &str) -> Result<Status, ShareError> {
        let push_audience = self.push_audience(id);
        let mut sessions = self.lock();
        let s = sessions.get_mut(id).ok_or(ShareError::NotFound)?;
        let now = Instant::now();
        Ok(Status {
            active: s.active,
            start_time_ms: s.start_time_ms,
            listener_count: if s.active {
                s.recent_pollers(now) + push_audience
            } else {
                0
            },
            metadata: s.metadata.as_ref().map(|m| m.summary.clone()),
        })
    }

    /// The latest metadata as posted, for a receiver that polls (and counts as listening).
    pub fn metadata(&self, id: &str, poller: Option<SocketAddr>) -> Result<Bytes, ShareError> {
        self.with_active(id, |s| {
            let now = Instant::now();
            s.saw_poller(poller, now);
            s.expire_metadata(now, self.settings.metadata_ttl);
            s.metadata
                .as_ref()
                .map(|m| m.json.clone())
                .ok_or(ShareError::NoMetadata)
        })
    }

    /// Up to [`POLL_LIMIT`] chunks after `since`.
    pub fn audio_since(
        &self,
        id: &str,
        since: i64,
        poller: Option<SocketAddr>,
    ) -> Result<Vec<Arc<AudioChunk>>, ShareError> {
        self.with_active(id, |s| {
            s.saw_poller(poller, Instant::now());
            Ok(s.audio.since(since, POLL_LIMIT))
        })
    }

    /// The last `secs` of audio of an active session, for a push receiver that just joined.
    pub fn recent_audio(&self, id: &str, secs: f64) -> Vec<Arc<AudioChunk>> {
        self.lock()
            .get(id)
            .filter(|s| s.active)
            .map(|s| s.audio.recent(secs))
            .unwrap_or_default()
    }

    /// Records how many WebSocket members and SSE listeners the same-id session has.
    pub fn set_push_audience(&self, id: &str, audience: usize) {
        let mut audiences = self.push_audience.lock().unwrap_or_else(|e| e.into_inner());
        if audience == 0 {
            audiences.remove(id);
        } else {
            audiences.insert(id.to_owned(), audience);
        }
    }

    fn push_audience(&self, id: &str) -> usize {
        let audiences = self.push_audience.lock().unwrap_or_else(|e| e.into_inner());
        audiences.get(id).copied().unwrap_or(0)
    }

    /// Ends sessions idle past the timeout and forgets ended ones past the retention.
    /// Returns the ids it ended, so their receivers can be told.
    pub fn sweep(&self) -> Vec<String> {
        let now = Instant::now();
        let mut timed_out: Vec<(String, bool)> = Vec::new();
        let mut sessions = self.lock();
        for s in sessions.values_mut() {
            if s.active && now.duration_since(s.last_activity) > self.settings.session_timeout {
                tracing::info!(session = %s.id, "share session timed out");
                s.end(now);
                timed_out.push((s.id.clone(), s.mirror));
            } else if s.active {
                s.expire_metadata(now, self.settings.metadata_ttl);
            }
        }
        let retention = self.settings.ended_retention;
        sessions.retain(|_, s| s.ended.is_none_or(|t| now.duration_since(t) <= retention));
        drop(sessions);
        timed_out
            .into_iter()
            .map(|(id, mirror)| {
                if !mirror {
                    self.replicate(replica::ShareChange::Ended {
                        id: id.clone(),
                        reason: "timeout",
                    });
                }
                id
            })
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.lock().values().filter(|s| s.active).count()
    }
}

/// Counts one request against a session's limit for `client`; over it, `RateLimited` with
/// the wait.
fn check_rate(
    limiter: &KeyedRate<AddrKey>,
    client: IpAddr,
    what: &'static str,
    limit: u32,
) -> Result<(), ShareError> {
    limiter
        .check(AddrKey::of(client))
        .map_err(|wait| ShareError::RateLimited {
            what,
            per: "second per session and address",
            limit,
            retry_after_ms: wait.as_millis().max(1) as u64,
        })
}

//! One Music Share session: who shares, what plays, the audio buffer, the limits.

use super::audio::{AudioChunk, AudioRing};
use crate::limits::rate::KeyedRate;
use crate::limits::AddrKey;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a poller counts as a listener after its last poll.
pub const POLLER_SEEN_WINDOW: Duration = Duration::from_secs(5);

/// Most pollers a session remembers (connections are attacker-controlled keys).
pub const MAX_POLLERS: usize = 4096;

/// What a session reports of the latest metadata in `status`.
#[derive(Debug, Clone, Default)]
pub struct MetadataSummary {
    pub title: Option<String>,
    pub artist: Option<String>,
}

#[derive(Debug)]
pub struct Metadata {
    /// The object as posted, serialized once for every `GET .../metadata`.
    pub json: Bytes,
    pub summary: MetadataSummary,
    pub stored: Instant,
}

pub struct ShareSession {
    pub id: String,
    pub active: bool,
    /// Wall-clock ms at start (`startTime`).
    pub start_time_ms: f64,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub last_activity: Instant,
    pub metadata: Option<Metadata>,
    pub audio: AudioRing,
    pub bytes_transferred: u64,
    /// The metadata and audio rate limits, per client address: a stranger holding the token
    /// cannot use up the sharer's budget.
    pub metadata_limit: KeyedRate<AddrKey>,
    pub audio_limit: KeyedRate<AddrKey>,
    /// Who started the session, for `SHARE_SESSIONS_PER_IP`.
    pub owner: AddrKey,
    /// Pollers by connection, with when each last polled.
    pollers: HashMap<SocketAddr, Instant>,
    /// Another instance owns it: this one only mirrors what it publishes.
    pub mirror: bool,
}

/// Client addresses each session's rate limits remember: a band's sharers are a few.
const ADDRESSES_PER_SESSION: usize = 64;

/// `n` a second, with a burst of `n`, per address.
fn per_second(n: u32) -> KeyedRate<AddrKey> {
    KeyedRate::new(n, Duration::from_secs(1), ADDRESSES_PER_SESSION)
}

/// Per-session limits and sizes, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub buffer_secs: f64,
    pub buffer_max_chunks: usize,
    pub metadata_per_sec: u32,
    pub audio_per_sec: u32,
}

impl ShareSession {
    pub fn new(
        id: String,
        now: Instant,
        start_time_ms: f64,
        limits: SessionLimits,
        owner: AddrKey,
    ) -> Self {
        Self {
            owner,
            id,
            active: true,
            start_time_ms,
            started: now,
            ended: None,
            last_activity: now,
            metadata: None,
            audio: AudioRing::new(limits.buffer_secs, limits.buffer_max_chunks),
            bytes_transferred: 0,
            metadata_limit: per_second(limits.metadata_per_sec),
            audio_limit: per_second(limits.audio_per_sec),
            pollers: HashMap::new(),
            mirror: false,
        }
    }

    /// Marks the session ended: buffer cleared, the record kept to report "ended".
    pub fn end(&mut self, now: Instant) {
        self.active = false;
        self.ended = Some(now);
        self.audio.clear();
        self.metadata = None;
    }

    /// Notes a poll. Each connection is a new key, so the map is pruned when it reaches
    /// [`MAX_POLLERS`]; if every entry is still recent, the poll is not counted (the
    /// listener count saturates instead of the map growing).
    pub fn saw_poller(&mut self, addr: Option<SocketAddr>, now: Instant) {
        let Some(addr) = addr else { return };
        if self.pollers.len() >= MAX_POLLERS && !self.pollers.contains_key(&addr) {
            self.pollers
                .retain(|_, seen| now.duration_since(*seen) <= POLLER_SEEN_WINDOW);
            if self.pollers.len() >= MAX_POLLERS {
                return;
            }
        }
        self.pollers.insert(addr, now);
    }

    /// Pollers seen within [`POLLER_SEEN_WINDOW`].
    pub fn recent_pollers(&mut self, now: Instant) -> usize {
        self.pollers
            .retain(|_, seen| now.duration_since(*seen) <= POLLER_SEEN_WINDOW);
        self.pollers.len()
    }

    pub fn push_chunk(&mut self, chunk: Arc<AudioChunk>, now: Instant) {
        self.bytes_transferred += chunk.samples.len() as u64;
        self.last_activity = now;
        self.audio.push(chunk);
    }

    /// Drops metadata older than `ttl` (the seed's 30 s Redis TTL).
    pub fn expire_metadata(&mut self, now: Instant, ttl: Duration) {
        if self
            .metadata
            .as_ref()
            .is_some_and(|m| now.duration_since(m.stored) > ttl)
        {
            self.metadata = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ShareSession {
        let limits = SessionLimits {
            buffer_secs: 1.0,
            buffer_max_chunks: 8,
            metadata_per_sec: 2,
            audio_per_sec: 10,
        };
        let owner = AddrKey::of([192, 0, 2, 1].into());
        ShareSession::new("123456".into(), Instant::now(), 0.0, limits, owner)
    }

    #[test]
    fn the_poller_map_stays_bounded_and_forgets_old_pollers() {
        let mut s = session();
        let t0 = Instant::now();
        let addr = |n: usize| SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 1));
        for n in 0..MAX_POLLERS + 100 {
            s.saw_poller(Some(addr(n)), t0);
        }
        assert_eq!(s.recent_pollers(t0), MAX_POLLERS);
        let later = t0 + POLLER_SEEN_WINDOW + Duration::from_secs(1);
        s.saw_poller(Some(addr(MAX_POLLERS + 200)), later);
        assert_eq!(s.recent_pollers(later), 1);
    }
}

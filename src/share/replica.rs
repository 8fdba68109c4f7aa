//! Share sessions across instances. Every change a sharer makes here (start, metadata,
//! audio, end) is handed to the replicator (the Redis share link, when `REDIS_URL` is set),
//! which stores it in Redis by the seed's schema and publishes it; the other instances
//! apply it to a *mirror* of the session, so their pollers, WebSocket members and SSE
//! listeners receive the share as if the sharer posted to them. Applied changes are never
//! replicated again, so a sharer may post to any instance that knows the session; mirrors
//! end when told or after the inactivity timeout (never announced: the owner decides).

use super::audio::AudioChunk;
use super::session::{Metadata, MetadataSummary, ShareSession};
use super::ShareRegistry;
use crate::limits::AddrKey;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// A change of a share session, as it travels between instances.
#[derive(Debug, Clone)]
pub enum ShareChange {
    Started {
        id: String,
        start_time_ms: f64,
    },
    Metadata {
        id: String,
        json: Bytes,
    },
    Audio {
        id: String,
        chunk: Arc<AudioChunk>,
    },
    /// `reason`: `stopped` or `timeout`.
    Ended {
        id: String,
        reason: &'static str,
    },
}

impl ShareChange {
    pub fn id(&self) -> &str {
        match self {
            Self::Started { id, .. }
            | Self::Metadata { id, .. }
            | Self::Audio { id, .. }
            | Self::Ended { id, .. } => id,
        }
    }
}

/// Where local changes go (non-blocking: it queues them).
pub type Replicator = Box<dyn Fn(ShareChange) + Send + Sync>;

impl ShareRegistry {
    /// Hands every local change to `replicator` from now on.
    pub fn set_replicator(&self, replicator: Replicator) {
        let _ = self.replicator.set(replicator);
    }

    pub(super) fn replicate(&self, change: ShareChange) {
        if let Some(replicator) = self.replicator.get() {
            replicator(change);
        }
    }

    /// Applies another instance's change to this instance's copy of the session (a mirror,
    /// or, for a sharer posting to several instances, the session it started here).
    /// Returns false when it does not apply (unknown or ended session, a stale start).
    pub fn apply_remote(&self, change: &ShareChange) -> bool {
        let now = Instant::now();
        let mut sessions = self.lock();
        match change {
            ShareChange::Started { id, start_time_ms } => {
                if sessions.get(id).is_some_and(|s| s.active) {
                    return false; // already known (the cluster claim allows one start)
                }
                let mut session = ShareSession::new(
                    id.clone(),
                    now,
                    *start_time_ms,
                    self.settings.limits,
                    AddrKey::of(std::net::IpAddr::from([0, 0, 0, 0])),
                );
                session.mirror = true;
                sessions.insert(id.clone(), session);
                true
            }
            ShareChange::Metadata { id, json } => match sessions.get_mut(id) {
                Some(s) if s.active => {
                    let value: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
                    let text =
                        |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                    s.metadata = Some(Metadata {
                        json: json.clone(),
                        summary: MetadataSummary {
                            title: text("title"),
                            artist: text("artist"),
                        },
                        stored: now,
                    });
                    s.last_activity = now;
                    true
                }
                _ => false,
            },
            ShareChange::Audio { id, chunk } => match sessions.get_mut(id) {
                Some(s) if s.active => {
                    s.push_chunk(chunk.clone(), now);
                    true
                }
                _ => false,
            },
            ShareChange::Ended { id, .. } => match sessions.get_mut(id) {
                Some(s) if s.active => {
                    s.end(now);
                    true
                }
                _ => false,
            },
        }
    }
}

//! Events the server sends. Field names are camelCase on the wire.

use crate::client::Role;
use crate::error::ErrorCode;
use crate::timeline::Transport;
use serde::{Deserialize, Serialize};

/// Every server-to-client event, tagged like client events: `{"type", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerEvent {
    Snapshot(Snapshot),
    StateUpdate(SessionState),
    ScrollTick(ScrollTick),
    SyncResponse(SessionState),
    RoomStats(RoomStats),
    HeartbeatResponse(HeartbeatResponse),
    Error(ErrorEvent),
    RateLimitExceeded(RateLimitExceeded),
    Shutdown(Shutdown),
    ShareStarted(ShareStarted),
    ShareMetadata(ShareMetadata),
    ShareEnded(ShareEnded),
    AudioChunk(AudioChunk),
    /// Extension: a change of the Stream Manager stream of the same id, as its WebSocket
    /// sends it (`{"type", "payload", "timestamp", "version"}`; PROTOCOL.md section 17).
    StreamEvent(serde_json::Value),
    /// Extension: the session's chord sheet changed (PROTOCOL.md section 6).
    Sheet(Sheet),
}

impl ServerEvent {
    /// The wire `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerEvent::Snapshot(_) => "snapshot",
            ServerEvent::StateUpdate(_) => "state_update",
            ServerEvent::ScrollTick(_) => "scroll_tick",
            ServerEvent::SyncResponse(_) => "sync_response",
            ServerEvent::RoomStats(_) => "room_stats",
            ServerEvent::HeartbeatResponse(_) => "heartbeat_response",
            ServerEvent::Error(_) => "error",
            ServerEvent::RateLimitExceeded(_) => "rate_limit_exceeded",
            ServerEvent::Shutdown(_) => "shutdown",
            ServerEvent::ShareStarted(_) => "share_started",
            ServerEvent::ShareMetadata(_) => "share_metadata",
            ServerEvent::ShareEnded(_) => "share_ended",
            ServerEvent::AudioChunk(_) => "audio_chunk",
            ServerEvent::StreamEvent(_) => "stream_event",
            ServerEvent::Sheet(_) => "sheet",
        }
    }
}

/// One member as listed in a `snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub client_id: String,
    pub name: Option<String>,
    pub role: Role,
}

/// The whole session as one connection sees it: the reply to `join_session`, and the first
/// event of every SSE stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub session_id: String,
    pub client_id: String,
    pub role: Role,
    /// Secret that reclaims this identity after a drop (empty for SSE listeners, which
    /// resume with `Last-Event-ID` instead).
    pub resume_token: String,
    pub leader_id: Option<String>,
    /// Connected members, capped at `SNAPSHOT_MEMBER_LIMIT` (see `members_truncated`).
    pub members: Vec<Member>,
    pub transport: Transport,
    pub message: String,
    pub version: u64,
    pub server_time: f64,
    /// Extension: whether `resume_token` restored an earlier identity.
    #[serde(default)]
    pub resumed: bool,
    /// Extension: true when `members` was cut to the cap; `room_stats` has exact counts.
    #[serde(default)]
    pub members_truncated: bool,
    /// Extension: how many `state_update`s (marked `replayed`) were sent just before this
    /// snapshot because the join resumed with a `lastVersion` (0 otherwise).
    #[serde(default)]
    pub replay_count: u64,
    /// Extension: the transport change waiting for its instant, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledChange>,
    /// Extension: the session's chord and lyric sheet (ChordPro); absent while none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
}

/// Body of `state_update` and `sync_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub session_id: String,
    pub transport: Transport,
    pub message: String,
    pub leader_id: Option<String>,
    pub version: u64,
    pub server_time: f64,
    /// Extension: true on a `state_update` re-sent to a resuming client that missed it
    /// (`join_session` with `lastVersion`); `serverTime` is then when it was first sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// Extension: the transport change waiting for its instant, if any. `transport` holds
    /// until `scheduled.at`, `scheduled.transport` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledChange>,
}

/// Extension: a transport command the leader scheduled (`at` or `quantum`), announced as
/// soon as it is accepted so that clients can prepare, and applied by the server at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledChange {
    /// Identifies this change (a later announcement of the same change has the same id).
    pub id: u64,
    /// The command: `play`, `pause`, `seek` or `set_tempo`.
    pub action: ScheduledAction,
    /// Server time (ms) at which it takes effect.
    pub at: f64,
    /// The transport from `at` on (anchored at `at`).
    pub transport: Transport,
}

impl ScheduledChange {
    /// The transport in effect at server time `t`, given the one before the change.
    pub fn transport_at(&self, before: &Transport, t: f64) -> Transport {
        if t >= self.at {
            self.transport
        } else {
            *before
        }
    }
}

/// Which command a [`ScheduledChange`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledAction {
    Play,
    Pause,
    Seek,
    SetTempo,
}

/// Extension: the session's chord and lyric sheet, sent to every member and listener when
/// the leader sets it (joiners find it in their `snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sheet {
    pub session_id: String,
    /// ChordPro text; empty when the leader cleared the sheet.
    pub text: String,
    /// The session `version` of the change that set it.
    pub version: u64,
}

/// The position every `SCROLL_TICK_INTERVAL` ms while playing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrollTick {
    pub session_id: String,
    /// Per session, +1 each tick; a gap means ticks were dropped for this client.
    pub seq: u64,
    pub beat: f64,
    pub tempo: f64,
    pub playing: bool,
    pub version: u64,
    pub server_time: f64,
}

/// Exact counts of a session's audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStats {
    pub session_id: String,
    /// Connected WebSocket members (leader and followers).
    pub members: u64,
    pub followers: u64,
    /// SSE listeners.
    pub listeners: u64,
    pub leader_id: Option<String>,
}

/// Reply to `heartbeat`: `t0` echoed, `t1` server receive time, `t2` server send time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub t0: f64,
    pub t1: f64,
    pub t2: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitExceeded {
    /// How long until the next event would be accepted.
    pub retry_after_ms: u64,
}

/// Extension: the server is going away; sent to SSE listeners (WebSockets get close 1001).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shutdown {
    pub reason: String,
}

/// Extension: reply to `share_start`: this connection may now send binary audio frames
/// into its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareStarted {
    pub session_id: String,
}

/// Extension: the sharer's now-playing metadata, as posted (title, artist, lyrics, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareMetadata {
    pub session_id: String,
    pub metadata: serde_json::Value,
}

/// Extension: the share ended (`stopped` by the sharer, or `timeout` after inactivity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareEnded {
    pub session_id: String,
    pub reason: String,
    /// Seconds the share lasted; in the reply to the sharer's own `share_stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<f64>,
    /// Bytes of audio relayed; in the reply to the sharer's own `share_stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_transferred: Option<u64>,
}

/// Extension, SSE only: one audio chunk as JSON (WebSocket receivers get binary frames,
/// see `crate::audio`). `data` is base64 of interleaved little-endian samples in `format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioChunk {
    pub session_id: String,
    pub sequence_number: i64,
    pub sample_rate: u32,
    pub channels: u16,
    /// `f32` or `i16`.
    pub format: String,
    pub timestamp: f64,
    pub data: String,
}

//! Events a client sends to the server.

use serde::{Deserialize, Serialize};

/// A connection's role in a session. Clients may ask for `Leader` or `Follower`; the server
/// gives SSE connections `Listener`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Listener,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Listener => "listener",
        }
    }
}

/// Every client-to-server event. Serialized as `{"type": "<snake_case>", "data": {..}}`;
/// the server decodes with [`crate::decode_client_frame`], which also validates values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ClientEvent {
    JoinSession(JoinSession),
    LeaveSession,
    SetRole(SetRole),
    SetTempo(SetTempo),
    Play(Play),
    Pause(Pause),
    Seek(Seek),
    SyncRequest,
    UpdateMessage(UpdateMessage),
    Heartbeat(Heartbeat),
    ShareStart(ShareStart),
    ShareStop,
    SetSheet(SetSheet),
}

impl ClientEvent {
    /// The wire `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientEvent::JoinSession(_) => "join_session",
            ClientEvent::LeaveSession => "leave_session",
            ClientEvent::SetRole(_) => "set_role",
            ClientEvent::SetTempo(_) => "set_tempo",
            ClientEvent::Play(_) => "play",
            ClientEvent::Pause(_) => "pause",
            ClientEvent::Seek(_) => "seek",
            ClientEvent::SyncRequest => "sync_request",
            ClientEvent::UpdateMessage(_) => "update_message",
            ClientEvent::Heartbeat(_) => "heartbeat",
            ClientEvent::ShareStart(_) => "share_start",
            ClientEvent::ShareStop => "share_stop",
            ClientEvent::SetSheet(_) => "set_sheet",
        }
    }

    /// Whether only the session's leader may send this event.
    pub fn leader_only(&self) -> bool {
        matches!(
            self,
            ClientEvent::SetTempo(_)
                | ClientEvent::Play(_)
                | ClientEvent::Pause(_)
                | ClientEvent::Seek(_)
                | ClientEvent::SetSheet(_)
        )
    }

    /// The schedule of a transport command (`set_tempo`, `play`, `pause`, `seek`); `None`
    /// for every other event.
    pub fn schedule(&self) -> Option<Schedule> {
        match self {
            ClientEvent::SetTempo(e) => Some(e.schedule),
            ClientEvent::Play(e) => Some(e.schedule),
            ClientEvent::Pause(e) => Some(e.schedule),
            ClientEvent::Seek(e) => Some(e.schedule),
            _ => None,
        }
    }
}

/// Extension: when a transport command takes effect. Both absent: at once, as the
/// contract's commands always did. At most one of the two may be given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Server time (ms since the Unix epoch) at which the change takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    /// Takes effect at the next bar boundary of this many beats (Ableton Link's quantized
    /// start): the first instant after the scheduling lead at which the position is a
    /// whole multiple of `quantum`. PROTOCOL.md section 6 has the rule while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantum: Option<f64>,
}

impl Schedule {
    /// Whether the command waits for an instant (rather than taking effect at once).
    pub fn is_scheduled(&self) -> bool {
        self.at.is_some() || self.quantum.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinSession {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `leader` or `follower` (default). Asking for `leader` when the seat is taken joins
    /// as follower; the snapshot says which role was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// From an earlier `snapshot`: reclaims that client's id and role within the recovery
    /// window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// Extension: the highest `version` this client saw before it dropped. With a
    /// `resume_token` that resumes, the server first replays the `state_update`s after it
    /// (marked `replayed`), when it still holds all of them, then sends the snapshot.
    /// Without it a resume gets the snapshot alone, as a client unaware of replay expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_version: Option<u64>,
    /// Extension, authenticated mode (`JWT_SECRET` / `JWT_PUBLIC_KEY`): a JWT whose claims
    /// allow this session (and the leader seat, for `role: leader`). Overrides a `?token=`
    /// given on the `/ws` URL for this join. Ignored in the open mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Extension: the Music Share API's bearer token. When this session is an active share,
    /// only members who present it (or, in the authenticated mode, a JWT for the session)
    /// receive its metadata and audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRole {
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetTempo {
    pub tempo: f64,
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Play {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beat: Option<f64>,
    #[serde(flatten)]
    pub schedule: Schedule,
}

impl SetTempo {
    /// A tempo change that takes effect at once.
    pub fn new(tempo: f64) -> Self {
        Self {
            tempo,
            schedule: Schedule::default(),
        }
    }
}

impl Play {
    /// A start that takes effect at once, from `beat` when given.
    pub fn new(beat: Option<f64>) -> Self {
        Self {
            beat,
            schedule: Schedule::default(),
        }
    }
}

impl Seek {
    /// A jump that takes effect at once.
    pub fn new(beat: f64) -> Self {
        Self {
            beat,
            schedule: Schedule::default(),
        }
    }
}

/// `pause`: its data is optional; only a scheduled pause has any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seek {
    pub beat: f64,
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateMessage {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The client's clock when it sent the heartbeat, in ms.
    pub t0: f64,
}

/// Extension: become the sharer of the current session (its id must be a 6-digit share id),
/// authorized by the Music Share API's bearer token; then send binary audio frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareStart {
    pub token: String,
}

/// Extension: the session's chord and lyric sheet, in ChordPro, set by the leader. An
/// empty `text` clears it. At most [`crate::validate::MAX_SHEET_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetSheet {
    pub text: String,
}

//! The Stream Manager's wire types: the scene of a band's live stream (state machine,
//! layers, assets) and the events its WebSocket pushes (`protocol/PROTOCOL.md`, section 17).
//!
//! The REST bodies and the pushed payloads share these types, so an overlay that renders a
//! `GET /stream/layers` answer renders a `layerUpdate` the same way.

pub mod events;
pub mod layers;

pub use events::{ClientMessage, StageEvent};
pub use layers::{Layer, LayerContent, LayerCreate, LayerUpdate};

use serde::{Deserialize, Serialize};

/// Where a stream is in its life; see the transition table in `PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    #[default]
    Idle,
    Live,
    Paused,
    Stopped,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Idle => "idle",
            StreamState::Live => "live",
            StreamState::Paused => "paused",
            StreamState::Stopped => "stopped",
        }
    }
}

/// The operator's stream controls (`POST /stream/{start|pause|stop|reset}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Pause,
    Stop,
    Reset,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Start => "start",
            Control::Pause => "pause",
            Control::Stop => "stop",
            Control::Reset => "reset",
        }
    }

    /// The state `self` leads to from `from`, or `None` when the transition is invalid.
    /// `reset` is valid from every state; `start` resumes a paused stream.
    pub fn next(self, from: StreamState) -> Option<StreamState> {
        use StreamState::*;
        match (self, from) {
            (Control::Reset, _) => Some(Idle),
            (Control::Start, Idle | Paused | Stopped) => Some(Live),
            (Control::Pause, Live) => Some(Paused),
            (Control::Stop, Live | Paused) => Some(Stopped),
            _ => None,
        }
    }
}

/// Preview and stream quality, as the seed names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    #[default]
    High,
}

/// A stream's status: the answer of `GET /stream/status` and the control routes, and the
/// `stateUpdate` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The sync session the stream belongs to; `None` for the default stream.
    pub session: Option<String>,
    pub state: StreamState,
    pub quality: Quality,
    /// When the stream last went live from idle or stopped (a resume keeps it).
    pub started_at: Option<f64>,
    pub paused_at: Option<f64>,
    pub stopped_at: Option<f64>,
    pub updated_at: f64,
    /// Milliseconds spent live since `started_at`, up to the answer.
    pub live_ms: u64,
    /// Increases by one with every change of the stream; orders the pushed events.
    pub version: u64,
    pub layers: usize,
    pub visible_layers: usize,
    pub assets: usize,
    /// Connected stream WebSockets on the answering instance.
    pub viewers: usize,
    /// Whether a producer is sending previews (on the answering instance).
    pub producer: bool,
}

/// An uploaded asset's info (`GET /stream/assets/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetInfo {
    /// `ast_` and 32 hex digits.
    pub id: String,
    /// The uploader's file name, for display only.
    pub name: String,
    /// The type detected from the content.
    #[serde(rename = "type")]
    pub mime: String,
    pub size: u64,
    pub sha256: String,
    /// Where the bytes are served.
    pub url: String,
    pub created_at: f64,
    pub session: Option<String>,
}

impl AssetInfo {
    pub fn is_image(&self) -> bool {
        self.mime.starts_with("image/")
    }
}

/// The content URL of an asset.
pub fn asset_url(id: &str) -> String {
    format!("/stream/assets/{id}/content")
}

/// A request field that failed validation: its dotted path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table() {
        use StreamState::*;
        let table = [
            (Idle, [Some(Live), None, None, Some(Idle)]),
            (Live, [None, Some(Paused), Some(Stopped), Some(Idle)]),
            (Paused, [Some(Live), None, Some(Stopped), Some(Idle)]),
            (Stopped, [Some(Live), None, None, Some(Idle)]),
        ];
        let controls = [
            Control::Start,
            Control::Pause,
            Control::Stop,
            Control::Reset,
        ];
        for (from, expected) in table {
            for (control, want) in controls.iter().zip(expected) {
                assert_eq!(
                    control.next(from),
                    want,
                    "{} from {}",
                    control.as_str(),
                    from.as_str()
                );
            }
        }
    }
}

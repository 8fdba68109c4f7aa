//! What a repository stream sends: the messages (`connected`, `audio_buffer`, `heartbeat`,
//! `error`), the buffer in each encoding, why a composition was played, and what the test
//! route answers.

use super::MusicalParams;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Why a composition was played: a webhook delivery or a test request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `webhook` or `test`.
    pub kind: String,
    /// The GitHub event (`push`, `pull_request`, ...), for webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The payload's `action` (`opened`, `completed`, ...), where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `X-GitHub-Delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// The account that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// One line for people: "3 commits to main (+120 -4)".
    pub summary: String,
}

impl Trigger {
    /// A composition asked for with `POST /stream/{repoId}/test`.
    pub fn test(summary: impl Into<String>) -> Trigger {
        Trigger {
            kind: "test".into(),
            event: None,
            action: None,
            delivery: None,
            sender: None,
            summary: summary.into(),
        }
    }
}

/// What a play did: the answer of `POST /stream/{repoId}/test` (and, with a few more
/// fields, of a played webhook delivery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayAnswer {
    pub repo_id: String,
    pub composition_id: String,
    pub params: MusicalParams,
    /// Seconds of audio.
    pub duration: f64,
    /// Frames (samples per channel).
    pub samples: usize,
    pub sample_rate: u32,
    pub number_of_channels: usize,
    pub render_time_ms: f64,
    /// Listeners on the answering instance the composition was queued for.
    pub listeners_notified: usize,
    /// The same parameters were being rendered already: this play shared that render.
    #[serde(default)]
    pub shared_render: bool,
}

/// How `audio_buffer` carries the samples. `json` (the default) is the original server's
/// arrays of numbers; `f32` and `i16` are base64 strings of little-endian samples, one per
/// channel (`buffer.encoding` says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    F32,
    I16,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Json, Encoding::F32, Encoding::I16];

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::F32 => "f32",
            Encoding::I16 => "i16",
        }
    }
}

impl FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Encoding::Json),
            "f32" => Ok(Encoding::F32),
            "i16" => Ok(Encoding::I16),
            _ => Err("encoding must be json, f32 or i16".into()),
        }
    }
}

/// `buffer` of an `audio_buffer` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializedBuffer {
    pub sample_rate: u32,
    pub length: usize,
    pub duration: f64,
    pub number_of_channels: usize,
    /// Absent for `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    pub channels: Channels,
}

/// Per channel: numbers (`json`) or base64 little-endian samples (`f32`, `i16`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Channels {
    Samples(Vec<Vec<f32>>),
    Base64(Vec<String>),
}

/// `data` of an `audio_buffer` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioBufferData {
    pub buffer: SerializedBuffer,
    pub params: MusicalParams,
    pub repo_id: String,
    /// bandsync: why this composition was played.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// bandsync: the composition's id (the same parameters give the same id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedData {
    pub message: String,
    pub client_id: String,
    pub repo_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamErrorData {
    pub message: String,
    pub code: String,
}

/// One message of a repository stream, as a listener parses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    Connected {
        timestamp: f64,
        data: ConnectedData,
    },
    AudioBuffer {
        timestamp: f64,
        data: Box<AudioBufferData>,
    },
    Heartbeat {
        timestamp: f64,
    },
    Error {
        timestamp: f64,
        data: StreamErrorData,
    },
}

//! The stream WebSocket's messages (`GET /ws/stream`), in the seed's envelope
//! `{"type", "payload"}`. The server adds `timestamp` and, on changes, `version`.

use super::{AssetInfo, Layer, Quality, StreamState, StreamStatus};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Everything the server pushes to stream clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "camelCase")]
pub enum StageEvent {
    /// The whole stream: on connect, after `reset`, and to a client that fell behind.
    StreamState(StreamSnapshot),
    StateUpdate(StreamStatus),
    LayerUpdate(LayerChange),
    LayerVisibility(VisibilityChange),
    AssetUpdate(AssetChange),
    Quality(QualityChange),
    Status(SocketStatus),
    Preview(PreviewFrame),
    Pong(Pong),
    Error(StageError),
}

impl StageEvent {
    /// Whether sync-session members get this event too (`stream_event`): the stream's
    /// changes, not one socket's answers or the heavy previews.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            StageEvent::StreamState(_)
                | StageEvent::StateUpdate(_)
                | StageEvent::LayerUpdate(_)
                | StageEvent::LayerVisibility(_)
                | StageEvent::AssetUpdate(_)
                | StageEvent::Quality(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    pub status: StreamStatus,
    pub layers: Vec<Layer>,
    pub assets: Vec<AssetInfo>,
}

/// A created or updated layer (every field), or a deleted one (`id`, `visible: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerChange {
    Upserted {
        #[serde(flatten)]
        layer: Box<Layer>,
        deleted: bool,
    },
    Deleted {
        id: String,
        visible: bool,
        deleted: bool,
    },
}

impl LayerChange {
    pub fn upserted(layer: Layer) -> Self {
        LayerChange::Upserted {
            layer: Box::new(layer),
            deleted: false,
        }
    }

    pub fn deleted(id: String) -> Self {
        LayerChange::Deleted {
            id,
            visible: false,
            deleted: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisibilityChange {
    pub id: String,
    pub visible: bool,
}

/// An uploaded asset (every field), or a deleted one (`id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AssetChange {
    Added {
        #[serde(flatten)]
        asset: Box<AssetInfo>,
        deleted: bool,
    },
    Deleted {
        id: String,
        deleted: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityChange {
    pub quality: Quality,
}

/// One socket's view of the stream (`status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketStatus {
    pub viewers: usize,
    pub producer: bool,
    /// Whether this socket may write (`auth` accepted).
    pub authorized: bool,
    pub state: StreamState,
}

/// A preview frame as the producer sent it, relayed latest-wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewFrame {
    /// Base64 of the encoded frame.
    pub data: String,
    pub timestamp: f64,
    pub quality: Quality,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub timestamp: f64,
    #[serde(default)]
    pub echo: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageError {
    pub code: String,
    pub message: String,
}

/// What a stream client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Ping(Option<serde_json::Value>),
    Status,
    Auth { token: String },
    Quality(Quality),
    Preview(PreviewFrame),
}

/// Why a client message was refused; `code` is the `error` event's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthPayload {
    token: String,
}

impl ClientMessage {
    /// Decodes one text frame.
    pub fn decode(text: &str) -> Result<ClientMessage, MessageError> {
        let invalid = |code: &'static str, message: String| MessageError { code, message };
        let envelope: Envelope = serde_json::from_str(text)
            .map_err(|e| invalid("INVALID_MESSAGE", format!("not a JSON object: {e}")))?;
        let kind = envelope
            .kind
            .ok_or_else(|| invalid("INVALID_MESSAGE", "the message has no type".into()))?;
        let payload = envelope.payload.map_or("null", RawValue::get);
        fn parse<T: for<'de> Deserialize<'de>>(kind: &str, raw: &str) -> Result<T, MessageError> {
            serde_json::from_str(raw).map_err(|e| MessageError {
                code: "INVALID_PAYLOAD",
                message: format!("bad {kind} payload: {e}"),
            })
        }
        Ok(match kind.as_str() {
            "ping" => ClientMessage::Ping(parse::<Option<serde_json::Value>>(&kind, payload)?),
            "status" => ClientMessage::Status,
            "auth" => ClientMessage::Auth {
                token: parse::<AuthPayload>(&kind, payload)?.token,
            },
            "quality" => ClientMessage::Quality(parse::<QualityChange>(&kind, payload)?.quality),
            "preview" => {
                let frame: PreviewFrame = parse(&kind, payload)?;
                if !frame.timestamp.is_finite() {
                    return Err(invalid(
                        "INVALID_PAYLOAD",
                        "timestamp must be a number".into(),
                    ));
                }
                ClientMessage::Preview(frame)
            }
            _ => {
                let shown: String = kind.chars().take(64).collect();
                return Err(invalid(
                    "UNKNOWN_TYPE",
                    format!("unknown message type {shown:?}"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_use_the_seed_envelope() {
        let event = StageEvent::LayerVisibility(VisibilityChange {
            id: "host".into(),
            visible: false,
        });
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"type": "layerVisibility", "payload": {"id": "host", "visible": false}})
        );
        let deleted = StageEvent::LayerUpdate(LayerChange::deleted("x".into()));
        assert_eq!(
            serde_json::to_value(&deleted).unwrap(),
            json!({"type": "layerUpdate", "payload": {"id": "x", "visible": false, "deleted": true}})
        );
        let layer = crate::stream_manager::layers::default_layers(5.0).remove(1);
        let value =
            serde_json::to_value(StageEvent::LayerUpdate(LayerChange::upserted(layer))).unwrap();
        assert_eq!(value["payload"]["id"], "overlay");
        assert_eq!(value["payload"]["visible"], true);
        assert_eq!(value["payload"]["content"]["type"], "text");
        assert_eq!(value["payload"]["deleted"], false);
    }

    #[test]
    fn client_messages_decode_or_say_why_not() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping","payload":{"t":1}}"#),
            Ok(ClientMessage::Ping(Some(json!({"t": 1}))))
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping(None))
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"status"}"#),
            Ok(ClientMessage::Status)
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"quality","payload":{"quality":"low"}}"#),
            Ok(ClientMessage::Quality(Quality::Low))
        );
        let code = |text: &str| ClientMessage::decode(text).unwrap_err().code;
        assert_eq!(code("nope"), "INVALID_MESSAGE");
        assert_eq!(code("{}"), "INVALID_MESSAGE");
        assert_eq!(code(r#"{"type":"dance"}"#), "UNKNOWN_TYPE");
        assert_eq!(
            code(r#"{"type":"quality","payload":{"quality":"ultra"}}"#),
            "INVALID_PAYLOAD"
        );
        assert_eq!(
            code(r#"{"type":"preview","payload":{"data":1}}"#),
            "INVALID_PAYLOAD"
        );
        assert_eq!(code(r#"{"type":"auth"}"#), "INVALID_PAYLOAD");
    }
}

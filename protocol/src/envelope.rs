//! The envelope: `{"type", "id"?, "timestamp"?, "data"?}`, decoding and encoding.
//!
//! Decoding a client frame is two steps on purpose: first the envelope (so a reply can echo
//! `id` even when `data` is wrong), then `data` by `type`. Each failure maps to exactly one
//! contract error code, and nothing here can panic on hostile input.

use crate::client::*;
use crate::error::{ErrorCode, ProtocolError};
use crate::server::ServerEvent;
use crate::validate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Write as _;

/// A client's request id, echoed on every direct reply: a string or a number, kept exactly
/// as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(serde_json::Number),
    Text(String),
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::Text(s.to_owned())
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId::Number(n.into())
    }
}

/// One decoded, validated client request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub id: Option<RequestId>,
    pub event: ClientEvent,
}

/// Why a frame was refused, with the request id when the envelope had a usable one.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeFailure {
    pub id: Option<RequestId>,
    pub error: ProtocolError,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidMessage, message)
}

/// Decodes and validates one client text frame.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeFailure> {
    let fail = |id: Option<RequestId>, error| DecodeFailure { id, error };
    let raw: RawEnvelope = serde_json::from_str(text).map_err(|e| {
        let why = if e.is_syntax() || e.is_eof() {
            format!("frame is not valid JSON: {e}")
        } else {
            format!("frame must be a JSON object: {e}")
        };
        fail(None, invalid(why))
    })?;
    // serde also reads a struct from a JSON array, by position: `["sync_request", 7]` would
    // pass as a request with id 7. A frame is an object; serde has checked it is valid JSON.
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(fail(
            None,
            invalid("frame must be a JSON object, not an array"),
        ));
    }
    let id = match raw.id {
        None => None,
        Some(raw_id) if raw_id.get() == "null" => None,
        Some(raw_id) => Some(
            serde_json::from_str::<RequestId>(raw_id.get())
                .map_err(|_| fail(None, invalid("id must be a string or a number")))?,
        ),
    };
    let kind: Cow<str> = match raw.kind {
        None => return Err(fail(id, invalid("missing field `type`"))),
        Some(kind) => serde_json::from_str(kind.get())
            .map_err(|_| fail(id.clone(), invalid("`type` must be a string")))?,
    };
    let data = raw.data.map(RawValue::get).filter(|d| *d != "null");
    let event = decode_event(&kind, data).map_err(|error| fail(id.clone(), error))?;
    validate_event(&event).map_err(|error| fail(id.clone(), error))?;
    Ok(ClientFrame { id, event })
}

/// Decodes and validates one client event given as its name and its `data` JSON (`None`
/// or `"null"` for none): what transports that carry the name and the data apart (the
/// Socket.IO endpoint's `emit(type, data)`) use instead of [`decode_client_frame`], with
/// the same rules and the same errors.
pub fn decode_client_event(kind: &str, data: Option<&str>) -> Result<ClientEvent, ProtocolError> {
    let data = data.filter(|d| d.trim() != "null");
    let event = decode_event(kind, data)?;
    validate_event(&event)?;
    Ok(event)
}

fn data_of<T: DeserializeOwned>(kind: &str, data: Option<&str>) -> Result<T, ProtocolError> {
    serde_json::from_str(data.unwrap_or("{}"))
        .map_err(|e| invalid(format!("invalid data for `{kind}`: {e}")))
}

fn decode_event(kind: &str, data: Option<&str>) -> Result<ClientEvent, ProtocolError> {
    // A data-less event still rejects a `data` that is not an object: a mistyped field.
    let no_data = |kind: &str| -> Result<(), ProtocolError> {
        data_of::<serde_json::Map<String, serde_json::Value>>(kind, data).map(drop)
    };
    Ok(match kind {
        "join_session" => ClientEvent::JoinSession(data_of(kind, data)?),
        "leave_session" => {
            no_data(kind)?;
            ClientEvent::LeaveSession
        }
        "set_role" => ClientEvent::SetRole(data_of(kind, data)?),
        "set_tempo" => ClientEvent::SetTempo(data_of(kind, data)?),
        "play" => ClientEvent::Play(data_of(kind, data)?),
        "pause" => ClientEvent::Pause(data_of(kind, data)?),
        "seek" => ClientEvent::Seek(data_of(kind, data)?),
        "sync_request" => {
            no_data(kind)?;
            ClientEvent::SyncRequest
        }
        "update_message" => ClientEvent::UpdateMessage(data_of(kind, data)?),
        "heartbeat" => ClientEvent::Heartbeat(data_of(kind, data)?),
        "share_start" => ClientEvent::ShareStart(data_of(kind, data)?),
        "share_stop" => {
            no_data(kind)?;
            ClientEvent::ShareStop
        }
        "set_sheet" => ClientEvent::SetSheet(data_of(kind, data)?),
        other => {
            let mut shown: String = other.chars().take(64).collect();
            if shown.len() < other.len() {
                shown.push('…');
            }
            return Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown event type `{shown}`"),
            ));
        }
    })
}

/// The value rules of the contract, applied once at the edge so the session logic only
/// ever sees valid events.
fn validate_event(event: &ClientEvent) -> Result<(), ProtocolError> {
    match event {
        ClientEvent::JoinSession(join) => {
            validate::session_id(&join.session_id)?;
            if let Some(name) = &join.name {
                validate::name(name)?;
            }
            if join.role == Some(Role::Listener) {
                return Err(invalid("role must be `leader` or `follower`"));
            }
            if let Some(token) = &join.token {
                validate::credential("token", token)?;
            }
            if let Some(token) = &join.share_token {
                validate::credential("shareToken", token)?;
            }
            Ok(())
        }
        ClientEvent::SetRole(SetRole { role }) if *role == Role::Listener => {
            Err(invalid("role must be `leader` or `follower`"))
        }
        ClientEvent::SetTempo(SetTempo { tempo, schedule }) => {
            validate::tempo(*tempo)?;
            validate::schedule(schedule.at, schedule.quantum)
        }
        ClientEvent::Play(Play { beat, schedule }) => {
            if let Some(beat) = beat {
                validate::beat(*beat)?;
            }
            validate::schedule(schedule.at, schedule.quantum)
        }
        ClientEvent::Seek(Seek { beat, schedule }) => {
            validate::beat(*beat)?;
            validate::schedule(schedule.at, schedule.quantum)
        }
        ClientEvent::Pause(Pause { schedule }) => validate::schedule(schedule.at, schedule.quantum),
        ClientEvent::SetSheet(SetSheet { text }) => validate::sheet_text(text),
        ClientEvent::UpdateMessage(UpdateMessage { text }) => validate::message_text(text),
        ClientEvent::Heartbeat(Heartbeat { t0 }) if !t0.is_finite() => {
            Err(invalid("t0 must be a finite number"))
        }
        _ => Ok(()),
    }
}

/// Encodes a client request (used by clients and tests).
pub fn encode_client_frame(event: &ClientEvent, id: Option<&RequestId>) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        event: &'a ClientEvent,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RequestId>,
    }
    serde_json::to_string(&Out { event, id }).expect("client events always serialize")
}

/// Encodes a server event as an envelope: `{"type","id"?,"timestamp","data"}`.
///
/// Written field by field rather than through a flattened struct: this runs once per
/// broadcast and once per tick, and the direct form is several times cheaper. The data is
/// serialized into the envelope's own buffer, not into a `String` of its own that grows and
/// is then copied in; a snapshot, which lists the session's members, starts with more room.
pub fn encode_server_frame(event: &ServerEvent, id: Option<&RequestId>, timestamp: f64) -> String {
    let capacity = match event {
        ServerEvent::Snapshot(_) => 1024,
        _ => 256,
    };
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(event.type_name().as_bytes());
    out.push(b'"');
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        serde_json::to_writer(&mut out, id).expect("ids always serialize");
    }
    // f64 timestamps are always finite here (they come from the server clock).
    let _ = write!(out, ",\"timestamp\":{}", JsonNumber(timestamp));
    out.extend_from_slice(b",\"data\":");
    let data = &mut out;
    let written = match event {
        ServerEvent::Snapshot(d) => serde_json::to_writer(data, d),
        ServerEvent::StateUpdate(d) | ServerEvent::SyncResponse(d) => {
            serde_json::to_writer(data, d)
        }
        ServerEvent::ScrollTick(d) => serde_json::to_writer(data, d),
        ServerEvent::RoomStats(d) => serde_json::to_writer(data, d),
        ServerEvent::HeartbeatResponse(d) => serde_json::to_writer(data, d),
        ServerEvent::Error(d) => serde_json::to_writer(data, d),
        ServerEvent::RateLimitExceeded(d) => serde_json::to_writer(data, d),
        ServerEvent::Shutdown(d) => serde_json::to_writer(data, d),
        ServerEvent::ShareStarted(d) => serde_json::to_writer(data, d),
        ServerEvent::ShareMetadata(d) => serde_json::to_writer(data, d),
        ServerEvent::ShareEnded(d) => serde_json::to_writer(data, d),
        ServerEvent::AudioChunk(d) => serde_json::to_writer(data, d),
        ServerEvent::StreamEvent(d) => serde_json::to_writer(data, d),
        ServerEvent::Sheet(d) => serde_json::to_writer(data, d),
    };
    written.expect("server events always serialize");
    out.push(b'}');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Formats an f64 the way serde_json does (shortest round-trip form).
struct JsonNumber(f64);

impl std::fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::Number::from_f64(self.0) {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("null"),
        }
    }
}

/// A server message as a client decodes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerFrame {
    #[serde(default)]
    pub id: Option<RequestId>,
    #[serde(default)]
    pub timestamp: f64,
    #[serde(flatten)]
    pub event: ServerEvent,
}

impl ServerFrame {
    /// Decodes one server text frame (or SSE `data:` payload).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::*;
    use crate::timeline::Transport;

    fn code_of(text: &str) -> ErrorCode {
        decode_client_frame(text).unwrap_err().error.code
    }

    #[test]
    fn an_array_is_refused_even_when_its_items_would_fit_the_envelope() {
        // Found by the frame_decoder fuzz target: positional struct decoding.
        for text in [r#"["sync_request", 7]"#, r#" ["pause"]"#, "[1,2,3]", "[]"] {
            let failure = decode_client_frame(text).unwrap_err();
            assert_eq!(failure.error.code, ErrorCode::InvalidMessage, "{text}");
            assert_eq!(failure.id, None, "{text}: nothing to echo");
        }
        assert!(decode_client_frame("\n\t {\"type\":\"pause\"}").is_ok());
    }

    #[test]
    fn decodes_the_contract_example() {
        let f = decode_client_frame(
            r#"{"type": "set_tempo", "id": "r42", "timestamp": 1732190000123.456, "data": {"tempo": 128}}"#,
        )
        .unwrap();
        assert_eq!(f.id, Some(RequestId::from("r42")));
        assert_eq!(f.event, ClientEvent::SetTempo(SetTempo::new(128.0)));
    }

    #[test]
    fn data_may_be_omitted_when_empty_and_unknown_fields_are_ignored() {
        let f = decode_client_frame(r#"{"type":"pause","extra":1}"#).unwrap();
        assert_eq!(f.event, ClientEvent::Pause(Pause::default()));
        let f = decode_client_frame(r#"{"type":"play","id":7,"data":{"x":true}}"#).unwrap();
        assert_eq!(f.event, ClientEvent::Play(Play::new(None)));
        assert_eq!(f.id, Some(RequestId::from(7)));
    }

    #[test]
    fn transport_commands_carry_an_optional_schedule() {
        let f = decode_client_frame(
            r#"{"type":"set_tempo","data":{"tempo":140,"at":1732190004012.871}}"#,
        )
        .unwrap();
        assert_eq!(f.event.schedule().unwrap().at, Some(1_732_190_004_012.871));
        let f = decode_client_frame(r#"{"type":"play","data":{"beat":8,"quantum":4}}"#).unwrap();
        assert_eq!(f.event.schedule().unwrap().quantum, Some(4.0));
        let f = decode_client_frame(r#"{"type":"pause","data":{"quantum":4}}"#).unwrap();
        assert!(f.event.schedule().unwrap().is_scheduled());
        assert!(decode_client_frame(r#"{"type":"sync_request"}"#)
            .unwrap()
            .event
            .schedule()
            .is_none());
        for bad in [
            r#"{"type":"seek","data":{"beat":1,"at":1,"quantum":4}}"#,
            r#"{"type":"pause","data":{"quantum":0}}"#,
            r#"{"type":"set_tempo","data":{"tempo":120,"at":-1}}"#,
        ] {
            assert_eq!(code_of(bad), ErrorCode::InvalidSchedule, "{bad}");
        }
        assert_eq!(
            code_of(r#"{"type":"pause","data":{"at":"soon"}}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"type":"play","data":{"beat":-1,"quantum":4}}"#),
            ErrorCode::InvalidBeat
        );
    }

    #[test]
    fn each_bad_shape_maps_to_its_code() {
        assert_eq!(code_of("not json"), ErrorCode::InvalidMessage);
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(code_of(r#"{"data":{}}"#), ErrorCode::InvalidMessage);
        assert_eq!(code_of(r#"{"type":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(code_of(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code_of(r#"{"type":"set_tempo","data":{"tempo":"fast"}}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"type":"set_tempo"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"type":"pause","data":[1]}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"type":"set_tempo","data":{"tempo":401}}"#),
            ErrorCode::InvalidTempo
        );
        assert_eq!(
            code_of(r#"{"type":"seek","data":{"beat":-1}}"#),
            ErrorCode::InvalidBeat
        );
        assert_eq!(
            code_of(r#"{"type":"play","data":{"beat":-1}}"#),
            ErrorCode::InvalidBeat
        );
        assert_eq!(
            code_of(r#"{"type":"join_session","data":{"sessionId":"a b"}}"#),
            ErrorCode::InvalidSessionId
        );
        assert_eq!(
            code_of(r#"{"type":"join_session","data":{"sessionId":"a","role":"listener"}}"#),
            ErrorCode::InvalidMessage
        );
        let long = format!(
            r#"{{"type":"update_message","data":{{"text":"{}"}}}}"#,
            "x".repeat(1001)
        );
        assert_eq!(code_of(&long), ErrorCode::MessageTooLong);
    }

    #[test]
    fn failures_echo_a_valid_id() {
        let failure =
            decode_client_frame(r#"{"type":"seek","id":"q1","data":{"beat":"x"}}"#).unwrap_err();
        assert_eq!(failure.id, Some(RequestId::from("q1")));
        let failure = decode_client_frame(r#"{"type":"seek","id":{"no":1}}"#).unwrap_err();
        assert_eq!(failure.id, None);
    }

    #[test]
    fn client_events_round_trip_through_the_server_decoder() {
        let events = [
            ClientEvent::JoinSession(JoinSession {
                session_id: "owner/repo".into(),
                name: Some("Ada".into()),
                role: Some(Role::Leader),
                resume_token: None,
                last_version: None,
                token: Some("eyJ.a.b".into()),
                share_token: Some("Bearer Token".into()),
            }),
            ClientEvent::LeaveSession,
            ClientEvent::SetRole(SetRole {
                role: Role::Follower,
            }),
            ClientEvent::SetTempo(SetTempo::new(96.5)),
            ClientEvent::Play(Play::new(Some(8.0))),
            ClientEvent::Play(Play::default()),
            ClientEvent::Pause(Pause::default()),
            ClientEvent::Seek(Seek::new(0.0)),
            ClientEvent::SyncRequest,
            ClientEvent::UpdateMessage(UpdateMessage {
                text: "Verse 2".into(),
            }),
            ClientEvent::Heartbeat(Heartbeat { t0: 12.5 }),
            ClientEvent::ShareStart(ShareStart {
                token: "Bearer Token".into(),
            }),
            ClientEvent::ShareStop,
            ClientEvent::SetTempo(SetTempo {
                tempo: 140.0,
                schedule: Schedule {
                    at: Some(1_732_190_004_012.871),
                    quantum: None,
                },
            }),
            ClientEvent::Pause(Pause {
                schedule: Schedule {
                    at: None,
                    quantum: Some(4.0),
                },
            }),
            ClientEvent::SetSheet(SetSheet {
                text: "{title: Blue}\n[G]Hello".into(),
            }),
        ];
        for event in events {
            let text = encode_client_frame(&event, Some(&RequestId::from(3)));
            let back = decode_client_frame(&text).unwrap();
            assert_eq!(back.event, event, "{text}");
            assert_eq!(back.id, Some(RequestId::from(3)));
        }
    }

    #[test]
    fn server_frames_round_trip_with_id_and_timestamp() {
        let event = ServerEvent::StateUpdate(SessionState {
            session_id: "s".into(),
            transport: Transport::new(1.5),
            message: "hi".into(),
            leader_id: None,
            version: 3,
            server_time: 1_732_190_000_123.456,
            replayed: false,
            scheduled: None,
        });
        let text = encode_server_frame(&event, Some(&RequestId::from("r1")), 1_732_190_000_123.456);
        assert!(text.starts_with(
            r#"{"type":"state_update","id":"r1","timestamp":1732190000123.456,"data":{"#
        ));
        let frame = ServerFrame::decode(&text).unwrap();
        assert_eq!(frame.event, event);
        assert_eq!(frame.id, Some(RequestId::from("r1")));
        assert_eq!(frame.timestamp, 1_732_190_000_123.456);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"]["transport"]["anchorTime"], 1.5);
        assert_eq!(v["data"]["leaderId"], serde_json::Value::Null);
    }

    #[test]
    fn error_codes_use_the_contract_spelling() {
        let event = ServerEvent::Error(ErrorEvent {
            code: ErrorCode::LeaderTaken,
            message: "taken".into(),
        });
        let text = encode_server_frame(&event, None, 1.0);
        assert!(text.contains(r#""code":"LEADER_TAKEN""#), "{text}");
        assert!(!text.contains(r#""id""#));
    }

    #[test]
    fn hostile_input_never_panics() {
        for text in [
            "",
            "{",
            "null",
            "\"x\"",
            "{\"type\":null}",
            "{\"type\":\"seek\",\"data\":null}",
            "{\"type\":\"heartbeat\",\"data\":{\"t0\":1e999}}",
        ] {
            assert!(decode_client_frame(text).is_err(), "{text:?}");
        }
    }
}

//! The Socket.IO form of the contract (protocol v5 over Engine.IO v4), for the apps of the
//! Socket.IO server bandsync replaces.
//!
//! A client `emit(type, data)` is the contract's client event `type` with `data`; the
//! server emits each server event under its name with one argument, the contract's `data`
//! plus `timestamp` (and `id` on a direct reply to a request that had one). Events that
//! carry a `version` get a second argument, the connection-state-recovery offset, which
//! Socket.IO 4.6+ clients record and send back when they reconnect.
//!
//! The server form is made from the encoded envelope (the one encoding every transport
//! starts from), by splicing, not by a second serialization: a broadcast is converted once
//! and the result shared by all its Socket.IO recipients.

use crate::envelope::RequestId;
use crate::{decode_client_event, ClientEvent, ErrorCode, ProtocolError};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// An encoded server envelope, taken apart without copying.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: &'a RawValue,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The only field of `data` the conversion reads: `version`, which is the offset.
#[derive(Deserialize)]
struct Versioned {
    #[serde(default)]
    version: Option<u64>,
}

/// Events whose `version` is the recovery offset: the ones that say "you have the
/// session's state up to this version". Ticks carry a version too, but a tick may overtake
/// the `state_update` of its version in a writer's queue (ticks are latest-wins), so an
/// offset taken from a tick could skip an event on recovery.
const OFFSET_EVENTS: [&str; 3] = ["snapshot", "state_update", "sync_response"];

impl<'a> Envelope<'a> {
    /// Reads an envelope as the server encodes it (`encode_server_frame`).
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The event name (`type`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The request id the envelope carries, as JSON.
    pub fn id(&self) -> Option<&'a str> {
        self.id.map(RawValue::get)
    }

    /// The event's `data` object, as JSON.
    pub fn data(&self) -> &'a str {
        self.data.get()
    }

    /// The recovery offset of this event, if it is one that carries it.
    pub fn offset(&self) -> Option<u64> {
        if !OFFSET_EVENTS.contains(&self.kind()) {
            return None;
        }
        serde_json::from_str::<Versioned>(self.data.get())
            .ok()
            .and_then(|v| v.version)
    }

    /// The one argument a Socket.IO client receives: `data` with `timestamp` and, when
    /// `id` (raw JSON) is given, `id` added.
    pub fn argument(&self, id: Option<&str>) -> String {
        let data = self.data.get().trim_end();
        let body = data.strip_suffix('}').unwrap_or(data);
        let mut out = String::with_capacity(data.len() + 48);
        out.push_str(body);
        if !body.trim_end().ends_with('{') {
            out.push(',');
        }
        out.push_str("\"timestamp\":");
        out.push_str(self.timestamp.get());
        if let Some(id) = id {
            out.push_str(",\"id\":");
            out.push_str(id);
        }
        out.push('}');
        out
    }
}

/// `42["name",argument(,"offset")]`: an Engine.IO message carrying a Socket.IO event.
pub fn event_packet(kind: &str, argument: &str, offset: Option<u64>) -> String {
    let mut out = String::with_capacity(argument.len() + kind.len() + 32);
    out.push_str("42[");
    out.push_str(&serde_json::to_string(kind).expect("a string always serializes"));
    out.push(',');
    out.push_str(argument);
    if let Some(offset) = offset {
        out.push_str(",\"");
        out.push_str(&offset.to_string());
        out.push('"');
    }
    out.push(']');
    out
}

/// `43<ack>[argument]`: the answer to an event the client sent with an acknowledgement.
pub fn ack_packet(ack: u64, argument: &str) -> String {
    format!("43{ack}[{argument}]")
}

/// The event packet of a broadcast envelope (no request id), made once and shared by every
/// Socket.IO recipient. `None` only for a string that is not an envelope of ours.
pub fn broadcast_packet(envelope_json: &str) -> Option<String> {
    let envelope = Envelope::parse(envelope_json).ok()?;
    let argument = envelope.argument(None);
    Some(event_packet(envelope.kind(), &argument, envelope.offset()))
}

/// A client event from a Socket.IO `EVENT` packet's JSON array.
#[derive(Debug)]
pub struct SocketIoEvent {
    pub event: ClientEvent,
    /// `data.id`, the request id (a string or a number), if any.
    pub id: Option<RequestId>,
}

/// The failure of one client event: the error to answer, and the request id, when it
/// could be read, to answer it with.
#[derive(Debug)]
pub struct EventFailure {
    pub error: ProtocolError,
    pub id: Option<RequestId>,
}

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidMessage, message)
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Decodes `["type", data, ...]`: the name must be a string and `data` an object, `null`
/// or absent; arguments after `data` are ignored (a client may pass more, as Socket.IO
/// allows). The same rules and errors as a `/ws` frame apply to `type` and `data`.
pub fn decode_event_array(json: &str) -> Result<SocketIoEvent, EventFailure> {
    let fail = |id, error| EventFailure { error, id };
    let args: Vec<&RawValue> = serde_json::from_str(json)
        .map_err(|e| fail(None, invalid(format!("event is not a JSON array: {e}"))))?;
    let Some(name) = args.first() else {
        return Err(fail(None, invalid("event has no name")));
    };
    let kind: Cow<str> = serde_json::from_str(name.get())
        .map_err(|_| fail(None, invalid("the event name must be a string")))?;
    let data = args.get(1).map(|d| d.get());
    let id = match data.filter(|d| d.trim_start().starts_with('{')) {
        None => None,
        Some(data) => {
            let raw = serde_json::from_str::<IdOnly>(data)
                .map_err(|e| fail(None, invalid(format!("invalid data for `{kind}`: {e}"))))?;
            match raw.id.map(RawValue::get) {
                None | Some("null") => None,
                Some(raw) => Some(
                    serde_json::from_str::<RequestId>(raw)
                        .map_err(|_| fail(None, invalid("id must be a string or a number")))?,
                ),
            }
        }
    };
    let event = decode_client_event(&kind, data).map_err(|error| fail(id.clone(), error))?;
    Ok(SocketIoEvent { event, id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_server_frame;
    use crate::server::{ErrorEvent, RoomStats, ServerEvent, SessionState};
    use crate::Transport;

    fn state(version: u64) -> ServerEvent {
        ServerEvent::StateUpdate(SessionState {
            session_id: "band".into(),
            transport: Transport::new(0.0),
            message: "a \"quoted\" }] message".into(),
            leader_id: None,
            version,
            server_time: 12.5,
            replayed: false,
            scheduled: None,
        })
    }

    #[test]
    fn a_broadcast_becomes_one_event_with_timestamp_and_offset() {
        let json = encode_server_frame(&state(7), None, 1000.25);
        let packet = broadcast_packet(&json).unwrap();
        assert!(packet.starts_with("42[\"state_update\",{"), "{packet}");
        let args: Vec<serde_json::Value> = serde_json::from_str(&packet[2..]).unwrap();
        assert_eq!(args.len(), 3);
        assert_eq!(args[0], "state_update");
        assert_eq!(args[1]["timestamp"], 1000.25);
        assert_eq!(args[1]["version"], 7);
        assert_eq!(args[1]["message"], "a \"quoted\" }] message");
        assert!(args[1].get("id").is_none());
        assert_eq!(args[2], "7");
    }

    #[test]
    fn events_without_a_version_get_no_offset() {
        let stats = ServerEvent::RoomStats(RoomStats {
            session_id: "band".into(),
            members: 2,
            followers: 1,
            listeners: 0,
            leader_id: Some("c1".into()),
        });
        let packet = broadcast_packet(&encode_server_frame(&stats, None, 5.0)).unwrap();
        let args: Vec<serde_json::Value> = serde_json::from_str(&packet[2..]).unwrap();
        assert_eq!(args.len(), 2);
        assert_eq!(args[1]["members"], 2);
        assert_eq!(args[1]["timestamp"], 5.0);
    }

    #[test]
    fn a_direct_reply_carries_the_id_given_and_an_ack_the_same_argument() {
        let error = ServerEvent::Error(ErrorEvent {
            code: ErrorCode::NotLeader,
            message: "no".into(),
        });
        let json = encode_server_frame(&error, Some(&RequestId::from(99)), 3.0);
        let envelope = Envelope::parse(&json).unwrap();
        assert_eq!(envelope.id(), Some("99"));
        let argument = envelope.argument(Some("\"r1\""));
        let value: serde_json::Value = serde_json::from_str(&argument).unwrap();
        assert_eq!(value["id"], "r1");
        assert_eq!(value["code"], "NOT_LEADER");
        assert_eq!(ack_packet(4, &argument), format!("434[{argument}]"));
    }

    #[test]
    fn an_empty_data_object_gets_just_the_timestamp() {
        let envelope = Envelope::parse(r#"{"type":"x","timestamp":1.5,"data":{}}"#).unwrap();
        assert_eq!(envelope.argument(None), r#"{"timestamp":1.5}"#);
    }

    #[test]
    fn client_events_decode_with_the_contract_rules() {
        let ok = decode_event_array(r#"["set_tempo",{"tempo":128,"id":"r9"}]"#).unwrap();
        assert!(matches!(ok.event, ClientEvent::SetTempo(t) if t.tempo == 128.0));
        assert_eq!(ok.id, Some(RequestId::from("r9")));
        let bare = decode_event_array(r#"["pause"]"#).unwrap();
        assert!(matches!(bare.event, ClientEvent::Pause(_)));
        let null = decode_event_array(r#"["sync_request",null,"extra"]"#).unwrap();
        assert!(matches!(null.event, ClientEvent::SyncRequest));
        let bad = decode_event_array(r#"["set_tempo",{"tempo":9999,"id":3}]"#).unwrap_err();
        assert_eq!(bad.error.code, ErrorCode::InvalidTempo);
        assert_eq!(bad.id, Some(RequestId::from(3)));
        for (input, code) in [
            ("{}", ErrorCode::InvalidMessage),
            ("[]", ErrorCode::InvalidMessage),
            ("[5]", ErrorCode::InvalidMessage),
            (r#"["nope",{}]"#, ErrorCode::UnknownType),
            (r#"["seek",{"beat":1,"id":[1]}]"#, ErrorCode::InvalidMessage),
            (r#"["seek","not an object"]"#, ErrorCode::InvalidMessage),
        ] {
            let failure = decode_event_array(input).unwrap_err();
            assert_eq!(failure.error.code, code, "{input}");
        }
    }
}

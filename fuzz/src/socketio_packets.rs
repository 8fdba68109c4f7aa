//! Target: what a Socket.IO client sends to `/socket.io/`, from a long-polling body down to
//! the contract's client event: Engine.IO packets (`bandsync::socketio::packets`), the
//! Socket.IO packet in a message, a `CONNECT`'s recovery payload, and an event's array
//! (`bandsync_protocol::socketio::decode_event_array`).
//!
//! Beyond "no panic": an acknowledgement id is at most 15 digits; an event decodes only
//! from a JSON array whose first element is its contract type name (a first libFuzzer run
//! found that such an array need not parse into `serde_json::Value`: a lone surrogate
//! escaped in an ignored field is valid JSON, kept as a corpus file); a failure always says
//! why; a recovery offset is read only when it is a decimal `u64`.

use bandsync::socketio::packets::{EnginePacket, SocketPacket, SEPARATOR};
use bandsync::socketio::recovery::ConnectAuth;
use bandsync_protocol::socketio::decode_event_array;
use serde_json::value::RawValue;

/// Reads `data` as a long-polling body (`\x1e`-separated Engine.IO packets).
pub fn check(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for packet in body.split(SEPARATOR) {
        if let EnginePacket::Message(payload) = EnginePacket::parse(packet) {
            socket_packet(payload);
        }
    }
}

fn socket_packet(payload: &str) {
    match SocketPacket::parse(payload) {
        SocketPacket::Connect { auth, .. } => {
            let auth = ConnectAuth::parse(auth);
            if let Some(version) = auth.last_version() {
                let offset = auth
                    .offset
                    .as_deref()
                    .expect("a version comes from the offset");
                assert_eq!(offset.parse::<u64>().ok(), Some(version), "{offset:?}");
            }
        }
        SocketPacket::Event { ack, args, .. } => {
            if let Some(ack) = ack {
                assert!(ack < 10u64.pow(15), "ack id {ack}");
            }
            match decode_event_array(args) {
                Ok(event) => {
                    // Raw values: JSON may escape a lone surrogate (`"\ud83c"`) in a field the
                    // event ignores, which is valid JSON but no Rust `String`.
                    let array: Vec<&RawValue> =
                        serde_json::from_str(args).expect("a decoded event is a JSON array");
                    let name: String =
                        serde_json::from_str(array[0].get()).expect("its name is a string");
                    assert_eq!(name, event.event.type_name(), "{args}");
                }
                Err(failure) => assert!(!failure.error.message.is_empty(), "{args}"),
            }
        }
        _ => {}
    }
}

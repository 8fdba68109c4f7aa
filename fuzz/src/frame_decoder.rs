//! Target: the client frame decoder, `bandsync_protocol::decode_client_frame` (the JSON
//! envelope decode and the validation of every event's values).
//!
//! Beyond "no panic": a refused frame carries a contract error code and a message, and
//! echoes the request id whenever the envelope had a usable one; an accepted frame
//! re-encodes (`encode_client_frame`) to a frame that decodes to the same event and id.

use bandsync_protocol::{decode_client_frame, encode_client_frame};
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Runs the decoder on `data` as a text frame and checks its answer.
pub fn check(data: &[u8]) {
    // A WebSocket text frame is UTF-8 by the time the decoder sees it (tungstenite checks).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_client_frame(text) {
        Ok(frame) => {
            let again = encode_client_frame(&frame.event, frame.id.as_ref());
            let back = decode_client_frame(&again)
                .unwrap_or_else(|f| panic!("re-encoded frame refused: {again} -> {f:?}"));
            assert_eq!(back, frame, "round trip changed the frame: {again}");
        }
        Err(failure) => {
            assert!(
                !failure.error.code.as_str().is_empty(),
                "error without a code"
            );
            assert!(!failure.error.message.is_empty(), "error without a message");
            if let Some(id) = failure.id {
                // An echoed id is the one the client sent, never one made up.
                // Raw values: `data` may hold numbers a `Value` cannot (1e400).
                let sent = serde_json::from_str::<HashMap<String, Box<RawValue>>>(text)
                    .ok()
                    .and_then(|envelope| envelope.get("id").map(|raw| raw.get().to_owned()))
                    .and_then(|raw| serde_json::from_str::<serde_json::Value>(&raw).ok());
                let echoed = serde_json::to_value(&id).expect("an id serializes");
                assert_eq!(sent, Some(echoed), "echoed id {id:?} was not sent");
            }
        }
    }
}

//! The Music Share client's response models, field by field as its specification shows
//! them, for a strictly typed client: `i64` where the model reads a `long` (epoch
//! milliseconds, byte counts, sequence numbers), `i32` for an `int` (counts, sample rates),
//! `f64` for a `double`, `bool`, and `String` for text. `Option` only where the model can
//! hold `null` and the server may send it: the metadata texts (`thumbnailData` is "or
//! null"; a sharer may leave any text out) and `currentMetadata`.
//!
//! Unknown fields are ignored, as `System.Text.Json` ignores them. Missing fields are
//! refused, nullable ones too (`System.Text.Json` would fill in a default): every field
//! the specification shows must be there.
//!
//! serde refuses a fraction for an integer type (`1.5`, and `1.0` too) exactly where
//! `System.Text.Json` refuses it for `long` and `int`; [`self_check`] proves it for each
//! integer field, so a test passing here means the real client parses the answer.

#![allow(dead_code)]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// A field that may be `null` but must be present (serde makes a bare `Option` optional).
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `POST /api/share/start`, 200.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    pub success: bool,
    pub session_id: String,
    pub timestamp: i64,
}

/// `POST /api/share/{id}/metadata`, 200.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataAccepted {
    pub success: bool,
    pub listeners_notified: i32,
}

/// `POST /api/share/{id}/audio`, 200.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioAccepted {
    pub success: bool,
    pub buffered: bool,
}

/// `POST /api/share/{id}/stop`, 200.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopResponse {
    pub success: bool,
    pub session_duration: f64,
    pub bytes_transferred: i64,
}

/// `GET /api/share/{id}/status`, 200.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub is_active: bool,
    pub start_time: i64,
    pub listener_count: i32,
    #[serde(deserialize_with = "nullable")]
    pub current_metadata: Option<CurrentMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentMetadata {
    #[serde(deserialize_with = "nullable")]
    pub title: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub artist: Option<String>,
}

/// `GET /api/share/{id}/status`, 404.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusNotFound {
    pub is_active: bool,
    pub error: String,
}

/// `GET /api/share/{id}/metadata`, 200 (and the body of `POST .../metadata`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(deserialize_with = "nullable")]
    pub title: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub artist: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub lyrics: Option<String>,
    pub has_synced_lyrics: bool,
    pub elapsed_seconds: f64,
    pub total_seconds: f64,
    #[serde(deserialize_with = "nullable")]
    pub thumbnail_data: Option<String>,
    pub timestamp: i64,
}

/// One element of `GET /api/share/{id}/audio`'s 200 array (and the body of `POST .../audio`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioChunk {
    pub data: String,
    pub sample_rate: i32,
    pub channels: i32,
    pub timestamp: i64,
    pub sequence_number: i64,
}

/// Every error: `{"success": false, "error", "code", "timestamp"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub success: bool,
    pub error: String,
    pub code: String,
    pub timestamp: i64,
}

/// Parses `body` into `T` as the strict client would; the error names the model and body.
pub fn strict<T: DeserializeOwned>(what: &str, body: &[u8]) -> T {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{what}: a strict client cannot read {} as {}: {e}",
            String::from_utf8_lossy(body),
            std::any::type_name::<T>()
        )
    })
}

/// Whether `value` parses as `T`.
fn parses<T: DeserializeOwned>(value: &Value) -> bool {
    serde_json::from_value::<T>(value.clone()).is_ok()
}

/// Proves the models are strict where it matters: each valid example of the specification
/// parses, and the same example with one integer field made fractional (`.5`, or `.0`
/// written as a float, the server's old answers) or one field left out does not.
pub fn self_check() {
    fn check<T: DeserializeOwned>(example: Value, integers: &[&str]) {
        let name = std::any::type_name::<T>();
        assert!(
            parses::<T>(&example),
            "{name}: the example parses: {example}"
        );
        let object = example.as_object().unwrap();
        for field in integers {
            let n = example[field].as_i64().unwrap();
            for fraction in [json!(n as f64 + 0.5), json!(1_795_987_760_689.057_4)] {
                let mut bad = example.clone();
                bad[field] = fraction;
                assert!(
                    !parses::<T>(&bad),
                    "{name}: fractional {field} parsed: {bad}"
                );
            }
            let text = serde_json::to_string(&example).unwrap();
            let written_as_float =
                text.replace(&format!("\"{field}\":{n}"), &format!("\"{field}\":{n}.0"));
            assert_ne!(
                text, written_as_float,
                "{name}: {field} not found in {text}"
            );
            assert!(
                serde_json::from_str::<T>(&written_as_float).is_err(),
                "{name}: {field} written as a float parsed: {written_as_float}"
            );
        }
        for field in object.keys() {
            let mut missing = example.clone();
            missing.as_object_mut().unwrap().remove(field);
            assert!(!parses::<T>(&missing), "{name}: parsed without {field}");
        }
    }
    check::<StartResponse>(
        json!({"success": true, "sessionId": "123456", "timestamp": 1_234_567_890_123_i64}),
        &["timestamp"],
    );
    check::<MetadataAccepted>(
        json!({"success": true, "listenersNotified": 3}),
        &["listenersNotified"],
    );
    check::<AudioAccepted>(json!({"success": true, "buffered": true}), &[]);
    check::<StopResponse>(
        json!({"success": true, "sessionDuration": 125.3, "bytesTransferred": 22_118_400}),
        &["bytesTransferred"],
    );
    check::<StatusResponse>(
        json!({"isActive": true, "startTime": 1_234_567_890_123_i64, "listenerCount": 5,
               "currentMetadata": {"title": "Song Title", "artist": "Artist Name"}}),
        &["startTime", "listenerCount"],
    );
    check::<StatusNotFound>(
        json!({"isActive": false, "error": "Session not found"}),
        &[],
    );
    check::<Metadata>(
        json!({"title": "Song Title", "artist": "Artist Name", "lyrics": "[00:12.50]Lyrics line 1",
               "hasSyncedLyrics": true, "elapsedSeconds": 45.2, "totalSeconds": 180.5,
               "thumbnailData": "base64_jpeg_or_null", "timestamp": 1_234_567_890_123_i64}),
        &["timestamp"],
    );
    check::<AudioChunk>(
        json!({"data": "AAAAAA==", "sampleRate": 44100, "channels": 2,
               "timestamp": 1_234_567_890_123_i64, "sequenceNumber": 43}),
        &["sampleRate", "channels", "timestamp", "sequenceNumber"],
    );
    check::<ErrorResponse>(
        json!({"success": false, "error": "Human-readable error message", "code": "ERROR_CODE",
               "timestamp": 1_234_567_890_123_i64}),
        &["timestamp"],
    );
    // A type the model does not take is refused too: text for a number, a number for a flag.
    assert!(!parses::<StartResponse>(
        &json!({"success": true, "sessionId": "123456", "timestamp": "1234567890123"})
    ));
    assert!(!parses::<AudioAccepted>(
        &json!({"success": true, "buffered": 1})
    ));
}

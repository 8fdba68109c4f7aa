//! What a receiver gets, whatever the transport: audio chunks, metadata, the end.
//!
//! Three encodings arrive here: the REST poll's JSON chunk (`{"data": base64 float32,
//! "sampleRate", "channels", "timestamp", "sequenceNumber"}`), the SSE `audio_chunk` event
//! (the same fields plus `"format": "f32" | "i16"`), and the WebSocket binary audio frame
//! (`protocol/src/audio.rs`). Each becomes one [`Chunk`].

use crate::share_ws::{error_of, type_of};
use crate::wav::Pcm;
use anyhow::Context as _;
use bandsync_client::protocol::audio::{decode_audio_frame, SampleFormat};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// One chunk of received audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub seq: i64,
    /// The sharer's wall clock when it sent the chunk, ms since the Unix epoch.
    pub timestamp: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub pcm: Pcm,
    /// Our wall clock when it arrived.
    pub received_ms: f64,
}

impl Chunk {
    pub fn frames(&self) -> usize {
        self.pcm.len() / usize::from(self.channels.max(1))
    }
}

/// A chunk as JSON (REST poll and SSE).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkJson {
    pub data: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub timestamp: f64,
    pub sequence_number: i64,
    /// SSE only; the REST API's chunks are always f32.
    #[serde(default)]
    pub format: Option<String>,
}

impl ChunkJson {
    pub fn into_chunk(self, received_ms: f64) -> anyhow::Result<Chunk> {
        let seq = self.sequence_number;
        let format = match self.format.as_deref() {
            None | Some("f32") => SampleFormat::F32,
            Some("i16") => SampleFormat::I16,
            Some(other) => anyhow::bail!("chunk #{seq}: unknown sample format {other:?}"),
        };
        anyhow::ensure!(
            (1..=384_000).contains(&self.sample_rate) && (1..=32).contains(&self.channels),
            "chunk #{seq}: {} Hz, {} channels is not a valid stream",
            self.sample_rate,
            self.channels
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .with_context(|| format!("chunk #{seq}: data is not base64"))?;
        let frame = format.bytes_per_sample() * usize::from(self.channels);
        anyhow::ensure!(
            bytes.len() % frame == 0,
            "chunk #{seq}: {} bytes are not whole frames of {} {} samples",
            bytes.len(),
            self.channels,
            format.as_str()
        );
        Ok(Chunk {
            seq,
            timestamp: self.timestamp,
            sample_rate: self.sample_rate,
            channels: self.channels,
            pcm: Pcm::from_le_bytes(&bytes, format),
            received_ms,
        })
    }
}

/// A binary WebSocket audio frame.
pub fn chunk_of_frame(frame: &[u8], received_ms: f64) -> anyhow::Result<Chunk> {
    let (header, samples) = decode_audio_frame(frame).context("a bad audio frame")?;
    Ok(Chunk {
        seq: header.sequence,
        timestamp: header.timestamp,
        sample_rate: header.sample_rate,
        channels: header.channels,
        pcm: Pcm::from_le_bytes(samples, header.format),
        received_ms,
    })
}

/// One entry of a `GET /api/share/{id}/audio` answer: its sequence number when readable
/// (so the next poll asks after it even if the chunk is bad) and the chunk.
pub fn chunk_of_poll_entry(entry: Value, received_ms: f64) -> (Option<i64>, anyhow::Result<Chunk>) {
    let seq = entry.get("sequenceNumber").and_then(Value::as_i64);
    let chunk = serde_json::from_value::<ChunkJson>(entry)
        .context("an audio poll entry without the chunk fields")
        .and_then(|c| c.into_chunk(received_ms));
    (seq, chunk)
}

/// A pushed JSON event (WebSocket text frame or SSE `data:`), by what it means here.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Audio(Chunk),
    Metadata(Value),
    /// The share ended (`share_ended`) or the server is going away (`shutdown`).
    Ended(String),
    /// An `error` event: `code: message`.
    Error(String),
    /// Anything else of the session (snapshot, ticks, room stats).
    Other,
}

/// Classifies one envelope `{"type", "data"}`.
pub fn event_of(value: &Value, received_ms: f64) -> anyhow::Result<Event> {
    let data = value.get("data").cloned().unwrap_or(Value::Null);
    Ok(match type_of(value) {
        "audio_chunk" => {
            let chunk: ChunkJson =
                serde_json::from_value(data).context("an audio_chunk event without its fields")?;
            Event::Audio(chunk.into_chunk(received_ms)?)
        }
        // The metadata as posted, or wrapped with the session id around it.
        "share_metadata" => Event::Metadata(match data.get("metadata") {
            Some(inner) if inner.is_object() => inner.clone(),
            _ => data,
        }),
        "share_ended" => {
            let reason = data.get("reason").and_then(Value::as_str);
            Event::Ended(reason.unwrap_or("the sharer stopped").to_owned())
        }
        "shutdown" => Event::Ended("the server is shutting down".into()),
        "error" => {
            let (code, message) = error_of(value).unwrap_or_default();
            Event::Error(format!("{code}: {message}"))
        }
        _ => Event::Other,
    })
}

/// What receivers print about metadata: the fields whose change is news.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NowPlaying {
    pub title: String,
    pub artist: String,
    pub total_seconds: Option<f64>,
}

impl NowPlaying {
    pub fn of(metadata: &Value) -> Self {
        let text = |k: &str| {
            metadata
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Self {
            title: text("title"),
            artist: text("artist"),
            total_seconds: metadata.get("totalSeconds").and_then(Value::as_f64),
        }
    }

    /// `now playing "Title" by Artist (180.5 s)`.
    pub fn describe(&self) -> String {
        let mut out = format!("now playing {:?}", self.title);
        if !self.artist.is_empty() {
            out.push_str(&format!(" by {}", self.artist));
        }
        if let Some(total) = self.total_seconds {
            out.push_str(&format!(" ({total:.1} s)"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_client::protocol::audio::AudioHeader;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn poll_answers_are_f32_chunks() {
        let data = b64(&Pcm::F32(vec![0.5, -0.5]).to_le_bytes(SampleFormat::F32));
        let entry = json!({"data": data, "sampleRate": 8000, "channels": 2, "timestamp": 1000,
            "sequenceNumber": 3});
        let (seq, chunk) = chunk_of_poll_entry(entry, 1010.0);
        let c = chunk.unwrap();
        assert_eq!(seq, Some(3));
        assert_eq!((c.seq, c.sample_rate, c.channels), (3, 8000, 2));
        assert_eq!(c.pcm, Pcm::F32(vec![0.5, -0.5]));
        assert_eq!(c.frames(), 1);
        assert_eq!(c.received_ms - c.timestamp, 10.0);
        // A bad entry still says where it was, so polling moves past it.
        let (seq, chunk) = chunk_of_poll_entry(json!({"sequenceNumber": 4, "data": "!"}), 0.0);
        assert_eq!(seq, Some(4));
        assert!(chunk.is_err());
    }

    #[test]
    fn sse_audio_chunks_name_their_format() {
        let data = b64(&Pcm::I16(vec![1, 2, 3]).to_le_bytes(SampleFormat::I16));
        let event = json!({"type": "audio_chunk", "data": {
            "sessionId": "123456", "sequenceNumber": 9, "sampleRate": 22050, "channels": 1,
            "format": "i16", "timestamp": 5.5, "data": data}});
        let Event::Audio(c) = event_of(&event, 6.0).unwrap() else {
            panic!("not audio")
        };
        assert_eq!((c.seq, c.sample_rate), (9, 22050));
        assert_eq!(c.pcm, Pcm::I16(vec![1, 2, 3]));
    }

    #[test]
    fn bad_chunks_are_errors_not_garbage() {
        let partial = json!({"type": "audio_chunk", "data": {"sequenceNumber": 1,
            "sampleRate": 8000, "channels": 2, "timestamp": 0, "data": b64(&[0; 6])}});
        let err = event_of(&partial, 0.0).unwrap_err().to_string();
        assert!(err.contains("whole frames"), "{err}");
        let odd = json!({"type": "audio_chunk", "data": {"sequenceNumber": 1, "format": "u8",
            "sampleRate": 8000, "channels": 1, "timestamp": 0, "data": ""}});
        assert!(event_of(&odd, 0.0).is_err());
        assert!(chunk_of_frame(b"BSA1", 0.0).is_err());
    }

    #[test]
    fn binary_frames_decode_to_chunks() {
        let header = AudioHeader {
            sequence: 4,
            timestamp: 100.25,
            sample_rate: 48_000,
            channels: 2,
            format: SampleFormat::I16,
        };
        let frame = header.encode(&Pcm::I16(vec![-1, 1]).to_le_bytes(SampleFormat::I16));
        let c = chunk_of_frame(&frame, 101.0).unwrap();
        assert_eq!((c.seq, c.timestamp, c.channels), (4, 100.25, 2));
        assert_eq!(c.pcm, Pcm::I16(vec![-1, 1]));
    }

    #[test]
    fn events_are_classified() {
        let meta = json!({"type": "share_metadata", "data": {"title": "T", "artist": "A", "totalSeconds": 3.0}});
        let Event::Metadata(m) = event_of(&meta, 0.0).unwrap() else {
            panic!("not metadata")
        };
        assert_eq!(
            NowPlaying::of(&m).describe(),
            r#"now playing "T" by A (3.0 s)"#
        );
        let wrapped = json!({"type": "share_metadata", "data": {"sessionId": "1", "metadata": {"title": "W"}}});
        let Event::Metadata(m) = event_of(&wrapped, 0.0).unwrap() else {
            panic!("not metadata")
        };
        assert_eq!(NowPlaying::of(&m).title, "W");
        assert_eq!(
            event_of(
                &json!({"type": "share_ended", "data": {"sessionId": "1"}}),
                0.0
            )
            .unwrap(),
            Event::Ended("the sharer stopped".into())
        );
        assert!(matches!(
            event_of(&json!({"type": "shutdown", "data": {}}), 0.0).unwrap(),
            Event::Ended(_)
        ));
        assert_eq!(
            event_of(
                &json!({"type": "error", "data": {"code": "X", "message": "y"}}),
                0.0
            )
            .unwrap(),
            Event::Error("X: y".into())
        );
        assert_eq!(
            event_of(&json!({"type": "scroll_tick"}), 0.0).unwrap(),
            Event::Other
        );
    }
}

//! Audio chunks as the Music Share API carries them, and the per-session circular buffer.

use super::{ShareError, MAX_CHUNK_BYTES};
use bandsync_protocol::audio::{i16_to_f32_bytes, AudioHeader, SampleFormat};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

/// Bytes per sample of the REST API's audio: IEEE 754 float32, interleaved.
pub const F32_BYTES: usize = 4;

/// One chunk as POSTed to `/api/share/{id}/audio` and returned by polling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkBody {
    /// Base64 of interleaved little-endian float32 samples.
    pub data: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Any JSON number when posted; polls answer it as whole milliseconds (the seed's
    /// model reads a `long`), see [`super::wire::whole_ms`].
    pub timestamp: serde_json::Number,
    pub sequence_number: i64,
}

/// A buffered chunk: its samples in the format they arrived in, and each wire form it is
/// sent in, each made once on first use and shared by every receiver after that.
#[derive(Debug)]
pub struct AudioChunk {
    pub header: AudioHeader,
    /// Interleaved little-endian samples in `header.format`.
    pub samples: Bytes,
    /// Base64 of `samples` (the REST body's `data` when it came over REST).
    base64: OnceLock<String>,
    /// The polling API's JSON object (always float32, as the seed specifies).
    poll_json: OnceLock<Bytes>,
    /// The whole binary WebSocket frame: its frame header, then the audio frame (audio
    /// header + samples). One allocation serves both forms (see [`AudioChunk::ws_frame`]).
    wire_frame: OnceLock<Bytes>,
    /// The timestamp as polls answer it: whole milliseconds (an integer posted comes
    /// back exactly). The push forms keep `header.timestamp` as it arrived.
    timestamp_ms: i64,
}

impl AudioChunk {
    /// A chunk POSTed to the REST API (and accepted by [`decode_chunk`], which checked
    /// that its timestamp fits whole milliseconds): float32, base64 already at hand.
    pub fn from_rest(body: ChunkBody, samples: Bytes) -> Self {
        let timestamp_ms = super::wire::whole_ms(&body.timestamp).unwrap_or_default();
        let header = AudioHeader {
            sequence: body.sequence_number,
            timestamp: body.timestamp.as_f64().unwrap_or(0.0),
            sample_rate: body.sample_rate,
            channels: body.channels,
            format: SampleFormat::F32,
        };
        Self {
            header,
            samples,
            base64: OnceLock::from(body.data),
            poll_json: OnceLock::new(),
            wire_frame: OnceLock::new(),
            timestamp_ms,
        }
    }

    /// A chunk that arrived as a binary WebSocket frame (f32 or i16).
    pub fn from_frame(header: AudioHeader, samples: Bytes) -> Self {
        let timestamp_ms = super::wire::frame_ms(header.timestamp);
        Self {
            header,
            samples,
            base64: OnceLock::new(),
            poll_json: OnceLock::new(),
            wire_frame: OnceLock::new(),
            timestamp_ms,
        }
    }

    pub fn sequence(&self) -> i64 {
        self.header.sequence
    }

    /// Seconds of audio in this chunk.
    pub fn duration_secs(&self) -> f64 {
        self.header.duration_secs(self.samples.len())
    }

    /// Base64 of the samples in their own format (for SSE `audio_chunk` events).
    pub fn base64(&self) -> &str {
        self.base64
            .get_or_init(|| base64::engine::general_purpose::STANDARD.encode(&self.samples))
    }

    /// The chunk as the polling API returns it: one JSON object, float32 samples.
    pub fn json(&self) -> &Bytes {
        self.poll_json.get_or_init(|| {
            let data = match self.header.format {
                SampleFormat::F32 => self.base64().to_owned(),
                SampleFormat::I16 => base64::engine::general_purpose::STANDARD
                    .encode(i16_to_f32_bytes(&self.samples)),
            };
            let body = ChunkBody {
                data,
                sample_rate: self.header.sample_rate,
                channels: self.header.channels,
                timestamp: self.timestamp_ms.into(),
                sequence_number: self.header.sequence,
            };
            Bytes::from(serde_json::to_vec(&body).expect("chunks always serialize"))
        })
    }

    /// The whole binary WebSocket frame for push receivers, made once and written as it is
    /// to every one of them.
    pub fn wire_frame(&self) -> &Bytes {
        self.wire_frame
            .get_or_init(|| crate::frames::binary_frame(&self.header.encode(&self.samples)))
    }

    /// The audio frame (audio header + samples): the binary message's payload.
    pub fn ws_frame(&self) -> Bytes {
        crate::frames::payload_of(self.wire_frame())
    }
}

/// The last `capacity_secs` of a session's audio, oldest first.
///
/// Bounded by duration (what the seed specifies: "~5 seconds of audio"), and also by a
/// chunk count so that a sharer sending tiny chunks cannot grow it without bound.
#[derive(Debug)]
pub struct AudioRing {
    chunks: VecDeque<Arc<AudioChunk>>,
    held_secs: f64,
    capacity_secs: f64,
    max_chunks: usize,
    /// Chunks pushed out before anyone could have polled them all (wrap-around).
    pub overflowed: u64,
}

impl AudioRing {
    pub fn new(capacity_secs: f64, max_chunks: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            held_secs: 0.0,
            capacity_secs,
            max_chunks,
            overflowed: 0,
        }
    }

    /// Appends a chunk, dropping the oldest beyond the window. A chunk whose sequence is
    /// not above the newest held one is a replay or reordering; it is kept in order of
    /// arrival, since pollers ask by sequence number anyway.
    pub fn push(&mut self, chunk: Arc<AudioChunk>) {
        self.held_secs += chunk.duration_secs();
        self.chunks.push_back(chunk);
        while self.chunks.len() > 1
            && (self.held_secs > self.capacity_secs + 1e-9 || self.chunks.len() > self.max_chunks)
        {
            if let Some(old) = self.chunks.pop_front() {
                self.held_secs -= old.duration_secs();
                self.overflowed += 1;
            }
        }
    }

    /// Up to `limit` chunks with a sequence number above `since`, oldest first.
    pub fn since(&self, since: i64, limit: usize) -> Vec<Arc<AudioChunk>> {
        self.chunks
            .iter()
            .filter(|c| c.sequence() > since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The most recent chunks covering at least `secs` (for a late joiner's burst).
    ///
    /// Durations are summed as floats, and sums of durations such as 0.1 s fall a hair
    /// short (ten of them make 0.9999999999999999): a microsecond of slack keeps that from
    /// costing a whole extra chunk.
    pub fn recent(&self, secs: f64) -> Vec<Arc<AudioChunk>> {
        const SLACK_SECS: f64 = 1e-6;
        let mut covered = 0.0;
        let mut start = self.chunks.len();
        while start > 0 && covered + SLACK_SECS < secs {
            start -= 1;
            covered += self.chunks[start].duration_secs();
        }
        self.chunks.iter().skip(start).cloned().collect()
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.held_secs = 0.0;
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Decodes and checks a chunk's samples (and that its timestamp fits whole milliseconds).
pub fn decode_chunk(body: &ChunkBody) -> Result<Bytes, ShareError> {
    if !(1..=384_000).contains(&body.sample_rate) {
        return Err(ShareError::InvalidBody(
            "sampleRate must be 1 to 384000".into(),
        ));
    }
    if !(1..=32).contains(&body.channels) {
        return Err(ShareError::InvalidBody("channels must be 1 to 32".into()));
    }
    if super::wire::whole_ms(&body.timestamp).is_none() {
        return Err(ShareError::InvalidBody(
            "timestamp must be epoch milliseconds that fit 64 bits".into(),
        ));
    }
    // base64 is 4/3 of the data: refuse an oversized chunk before decoding it.
    if body.data.len() / 4 * 3 > MAX_CHUNK_BYTES + 3 {
        return Err(ShareError::TooLarge(format!(
            "audio chunks are at most {MAX_CHUNK_BYTES} bytes"
        )));
    }
    let samples = base64::engine::general_purpose::STANDARD
        .decode(body.data.as_bytes())
        .map_err(|e| ShareError::InvalidBody(format!("data is not valid base64: {e}")))?;
    if samples.len() > MAX_CHUNK_BYTES {
        return Err(ShareError::TooLarge(format!(
            "audio chunks are at most {MAX_CHUNK_BYTES} bytes"
        )));
    }
    let frame = F32_BYTES * usize::from(body.channels);
    if samples.len() % frame != 0 {
        return Err(ShareError::InvalidBody(format!(
            "data must be whole frames of {} float32 samples",
            body.channels
        )));
    }
    Ok(Bytes::from(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of `frames` stereo frames at 1000 Hz (so 100 frames = 0.1 s).
    fn chunk(seq: i64, frames: usize) -> Arc<AudioChunk> {
        let body = ChunkBody {
            data: String::new(),
            sample_rate: 1000,
            channels: 2,
            timestamp: 0.into(),
            sequence_number: seq,
        };
        Arc::new(AudioChunk::from_rest(
            body,
            Bytes::from(vec![0u8; frames * 2 * F32_BYTES]),
        ))
    }

    #[test]
    fn duration_follows_rate_channels_and_f32() {
        assert!((chunk(1, 100).duration_secs() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn wraps_around_at_the_time_window() {
        let mut ring = AudioRing::new(0.5, 1000);
        for seq in 1..=8 {
            ring.push(chunk(seq, 100));
        }
        assert_eq!(ring.len(), 5, "0.5 s of 0.1 s chunks");
        assert_eq!(ring.overflowed, 3);
        let seqs: Vec<i64> = ring.since(-1, 10).iter().map(|c| c.sequence()).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    }

    #[test]
    fn since_returns_at_most_the_limit_above_the_sequence() {
        let mut ring = AudioRing::new(100.0, 1000);
        for seq in 0..30 {
            ring.push(chunk(seq, 10));
        }
        let got: Vec<i64> = ring.since(4, 10).iter().map(|c| c.sequence()).collect();
        assert_eq!(got, (5..15).collect::<Vec<_>>());
        assert!(ring.since(29, 10).is_empty());
    }

    #[test]
    fn the_chunk_count_is_bounded_too() {
        let mut ring = AudioRing::new(100.0, 4);
        for seq in 0..10 {
            ring.push(chunk(seq, 1));
        }
        assert_eq!(ring.len(), 4);
    }

    #[test]
    fn a_single_oversized_chunk_is_kept() {
        let mut ring = AudioRing::new(0.05, 10);
        ring.push(chunk(1, 100));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn recent_covers_the_burst_window() {
        let mut ring = AudioRing::new(5.0, 1000);
        for seq in 0..20 {
            ring.push(chunk(seq, 100));
        }
        let burst: Vec<i64> = ring.recent(0.3).iter().map(|c| c.sequence()).collect();
        assert_eq!(burst, vec![17, 18, 19]);
    }

    #[test]
    fn ten_tenth_second_chunks_cover_a_second_despite_float_sums() {
        let mut ring = AudioRing::new(5.0, 1000);
        for seq in 0..20 {
            ring.push(chunk(seq, 100));
        }
        let burst: Vec<i64> = ring.recent(1.0).iter().map(|c| c.sequence()).collect();
        assert_eq!(burst, (10..20).collect::<Vec<_>>());
    }

    #[test]
    fn i16_chunks_poll_as_f32_and_push_as_i16() {
        let header = AudioHeader {
            sequence: 7,
            timestamp: 1.0,
            sample_rate: 8000,
            channels: 1,
            format: SampleFormat::I16,
        };
        let samples = Bytes::from(
            [16384i16, -32768]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let c = AudioChunk::from_frame(header, samples.clone());
        let v: serde_json::Value = serde_json::from_slice(c.json()).unwrap();
        let f32s = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(f32s, i16_to_f32_bytes(&samples));
        let payload = c.ws_frame();
        let (back, body) = bandsync_protocol::audio::decode_audio_frame(&payload).unwrap();
        assert_eq!(back, header);
        assert_eq!(body, &samples[..]);
        assert_eq!(
            c.base64(),
            base64::engine::general_purpose::STANDARD.encode(&samples)
        );
    }

    #[test]
    fn polls_answer_whole_milliseconds_whatever_the_sharer_sent() {
        let header = AudioHeader {
            sequence: 1,
            timestamp: 1_732_190_000_123.456,
            sample_rate: 8000,
            channels: 1,
            format: SampleFormat::F32,
        };
        let framed = AudioChunk::from_frame(header, Bytes::from(vec![0u8; 4]));
        let body = ChunkBody {
            data: base64::engine::general_purpose::STANDARD.encode([0u8; 4]),
            sample_rate: 8000,
            channels: 1,
            timestamp: serde_json::Number::from_f64(1_700_000_000_000.9).unwrap(),
            sequence_number: 2,
        };
        let samples = decode_chunk(&body).unwrap();
        let posted = AudioChunk::from_rest(body, samples);
        for (chunk, whole) in [(framed, 1_732_190_000_123_i64), (posted, 1_700_000_000_000)] {
            let v: serde_json::Value = serde_json::from_slice(chunk.json()).unwrap();
            assert_eq!(v["timestamp"].as_i64(), Some(whole), "{v}");
        }
    }

    #[test]
    fn a_timestamp_no_long_holds_is_refused() {
        let body = ChunkBody {
            data: String::new(),
            sample_rate: 8000,
            channels: 1,
            timestamp: serde_json::Number::from_f64(1e300).unwrap(),
            sequence_number: 1,
        };
        assert_eq!(decode_chunk(&body).unwrap_err().code(), "INVALID_REQUEST");
    }

    #[test]
    fn poll_json_is_the_seed_shape() {
        let c = chunk(42, 1);
        let v: serde_json::Value = serde_json::from_slice(c.json()).unwrap();
        assert_eq!(v["sequenceNumber"], 42);
        assert_eq!(v["sampleRate"], 1000);
        assert!(v["data"].is_string());
    }
}

//! A rendered composition, serialized once per encoding for every listener.
//!
//! The SSE frames (`data: {...}\n\n`) are built on a render thread right after the render,
//! then shared by reference: a broadcast to a thousand listeners queues the same `Bytes`
//! a thousand times and copies nothing.

use bandsync_protocol::audio::{AudioHeader, SampleFormat};
use bandsync_protocol::repo::{Encoding, MusicalParams, Trigger, CHANNELS, SAMPLE_RATE};
use bandsync_render::Rendered;
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use sha1::{Digest, Sha1};
use std::sync::Arc;

/// What a composition is besides its samples.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The repository as the trigger named it (webhook `full_name`, or the test route's path).
    pub repo_id: String,
    pub params: MusicalParams,
    pub trigger: Trigger,
    /// When it was composed, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// How long the render took, ms (0 when it came rendered from another instance).
    pub render_ms: f64,
}

pub struct Composition {
    pub id: String,
    pub meta: Meta,
    /// The samples, kept to publish to other instances.
    pub audio: Arc<Rendered>,
    /// The SSE frame of each encoding, indexed like [`Encoding::ALL`].
    sse: [Bytes; 3],
    /// WebSocket listeners of `f32` and `i16`: the `audio_buffer` message without samples
    /// (a text frame), then the samples as one binary audio frame (`BSA1`).
    ws: [(Bytes, Bytes); 2],
}

impl std::fmt::Debug for Composition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composition")
            .field("id", &self.id)
            .field("repo_id", &self.meta.repo_id)
            .field("frames", &self.frames())
            .finish()
    }
}

/// The id of a composition: the same parameters give the same id on every instance.
pub fn composition_id(params: &MusicalParams) -> String {
    let canonical = serde_json::to_vec(params).expect("parameters always serialize");
    let digest = Sha1::digest(&canonical);
    hex::encode(&digest[..8])
}

impl Composition {
    /// Serializes `audio` in every encoding. CPU-heavy (milliseconds per second of audio):
    /// call it on a render thread, never on a tokio worker.
    pub fn encode(audio: Arc<Rendered>, meta: Meta) -> Composition {
        let id = composition_id(&meta.params);
        let sse = Encoding::ALL.map(|encoding| sse_frame(&audio, &meta, &id, encoding));
        let ws =
            [Encoding::F32, Encoding::I16].map(|encoding| ws_frames(&audio, &meta, &id, encoding));
        Composition {
            id,
            meta,
            audio,
            sse,
            ws,
        }
    }

    /// The `data: ...\n\n` frame for listeners that chose `encoding`.
    pub fn sse_frame(&self, encoding: Encoding) -> &Bytes {
        &self.sse[encoding_index(encoding)]
    }

    /// The JSON of the `audio_buffer` message (the SSE frame without `data: ` and the
    /// blank line), shared.
    pub fn json(&self, encoding: Encoding) -> Bytes {
        frame_json(self.sse_frame(encoding))
    }

    /// For a WebSocket listener of `f32` or `i16`: the text frame, then the binary frame.
    /// `None` for `json`, which goes as one text frame ([`Composition::json`]).
    pub fn ws_frames(&self, encoding: Encoding) -> Option<&(Bytes, Bytes)> {
        match encoding {
            Encoding::Json => None,
            Encoding::F32 => Some(&self.ws[0]),
            Encoding::I16 => Some(&self.ws[1]),
        }
    }

    pub fn frames(&self) -> usize {
        self.audio.channels[0].len()
    }

    /// Bytes this composition holds (samples and every encoding), for the retention budget.
    pub fn retained_bytes(&self) -> usize {
        let samples = self.audio.channels.iter().map(Vec::len).sum::<usize>() * 4;
        let ws: usize = self
            .ws
            .iter()
            .map(|(text, binary)| text.len() + binary.len())
            .sum();
        samples + self.sse.iter().map(Bytes::len).sum::<usize>() + ws
    }
}

fn encoding_index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 0,
        Encoding::F32 => 1,
        Encoding::I16 => 2,
    }
}

#[derive(Serialize)]
struct Message<'a> {
    r#type: &'static str,
    timestamp: u64,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    buffer: Buffer<'a>,
    params: &'a MusicalParams,
    repo_id: &'a str,
    trigger: &'a Trigger,
    composition_id: &'a str,
    /// WebSocket only: the samples follow in a binary frame of this format.
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Buffer<'a> {
    sample_rate: u32,
    length: usize,
    duration: f64,
    number_of_channels: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<Encoding>,
    channels: ChannelData<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChannelData<'a> {
    Samples(&'a [Vec<f32>; CHANNELS]),
    Base64([String; CHANNELS]),
    /// In a binary frame of their own (`[]` here).
    Elsewhere([u8; 0]),
}

const SSE_PREFIX: &[u8] = b"data: ";
const SSE_SUFFIX: &[u8] = b"\n\n";

fn sse_frame(audio: &Rendered, meta: &Meta, id: &str, encoding: Encoding) -> Bytes {
    let base64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let channels = match encoding {
        Encoding::Json => ChannelData::Samples(&audio.channels),
        Encoding::F32 => {
            ChannelData::Base64(audio.channels.each_ref().map(|c| base64(f32_bytes(c))))
        }
        Encoding::I16 => {
            ChannelData::Base64(audio.channels.each_ref().map(|c| base64(i16_bytes(c))))
        }
    };
    let length = audio.channels[0].len();
    // About 11 bytes a sample as JSON numbers, 5.4 as base64 f32.
    let mut out = Vec::with_capacity(64 + length * CHANNELS * 12);
    out.extend_from_slice(SSE_PREFIX);
    write_message(&mut out, audio, meta, id, encoding, channels, None);
    out.extend_from_slice(SSE_SUFFIX);
    Bytes::from(out)
}

/// The text and binary frames of a WebSocket listener of `encoding` (`f32` or `i16`).
fn ws_frames(audio: &Rendered, meta: &Meta, id: &str, encoding: Encoding) -> (Bytes, Bytes) {
    let mut text = Vec::with_capacity(1024);
    let channels = ChannelData::Elsewhere([]);
    write_message(&mut text, audio, meta, id, encoding, channels, Some("BSA1"));
    let format = match encoding {
        Encoding::I16 => SampleFormat::I16,
        _ => SampleFormat::F32,
    };
    let interleaved = interleave(audio, format);
    let header = AudioHeader {
        sequence: 0,
        timestamp: meta.timestamp_ms as f64,
        sample_rate: SAMPLE_RATE,
        channels: CHANNELS as u16,
        format,
    };
    (Bytes::from(text), Bytes::from(header.encode(&interleaved)))
}

/// The samples interleaved (L, R, L, R, ...) as the audio frame carries them.
fn interleave(audio: &Rendered, format: SampleFormat) -> Vec<u8> {
    let [left, right] = &audio.channels;
    let mut out = Vec::with_capacity(left.len() * CHANNELS * format.bytes_per_sample());
    for (l, r) in left.iter().zip(right) {
        for sample in [*l, *r] {
            match format {
                SampleFormat::F32 => out.extend_from_slice(&sample.to_le_bytes()),
                SampleFormat::I16 => out.extend_from_slice(&to_i16(sample).to_le_bytes()),
            }
        }
    }
    out
}

fn f32_bytes(channel: &[f32]) -> Vec<u8> {
    channel.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn i16_bytes(channel: &[f32]) -> Vec<u8> {
    channel
        .iter()
        .flat_map(|s| to_i16(*s).to_le_bytes())
        .collect()
}

fn write_message(
    out: &mut Vec<u8>,
    audio: &Rendered,
    meta: &Meta,
    id: &str,
    encoding: Encoding,
    channels: ChannelData<'_>,
    binary: Option<&'static str>,
) {
    let length = audio.channels[0].len();
    let message = Message {
        r#type: "audio_buffer",
        timestamp: meta.timestamp_ms,
        data: Data {
            buffer: Buffer {
                sample_rate: SAMPLE_RATE,
                length,
                duration: length as f64 / f64::from(SAMPLE_RATE),
                number_of_channels: CHANNELS,
                encoding: (encoding != Encoding::Json).then_some(encoding),
                channels,
            },
            params: &meta.params,
            repo_id: &meta.repo_id,
            trigger: &meta.trigger,
            composition_id: id,
            binary,
        },
    };
    serde_json::to_writer(out, &message).expect("a composition always serializes");
}

/// A sample as 16-bit PCM (clamped, rounded to nearest).
pub fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// A small message of the stream (`connected`, `heartbeat`, `error`) as an SSE frame.
pub fn small_frame(message: &serde_json::Value) -> Bytes {
    let mut out = SSE_PREFIX.to_vec();
    serde_json::to_writer(&mut out, message).expect("JSON values always serialize");
    out.extend_from_slice(SSE_SUFFIX);
    Bytes::from(out)
}

/// The JSON inside an SSE frame made by this module (for WebSocket text frames).
pub fn frame_json(frame: &Bytes) -> Bytes {
    frame.slice(SSE_PREFIX.len()..frame.len() - SSE_SUFFIX.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::repo::{Channels, StreamMessage};

    fn sample_composition() -> Composition {
        let left: Vec<f32> = (0..441).map(|i| (i as f32 / 441.0) * 2.0 - 1.0).collect();
        let right: Vec<f32> = left.iter().map(|s| -s * 0.5).collect();
        let audio = Arc::new(Rendered {
            channels: [left, right],
        });
        let meta = Meta {
            repo_id: "octocat/hello-world".into(),
            params: MusicalParams::default(),
            trigger: Trigger::test("a test"),
            timestamp_ms: 1_700_000_000_000,
            render_ms: 1.0,
        };
        Composition::encode(audio, meta)
    }

    fn parse(frame: &Bytes) -> StreamMessage {
        let text = std::str::from_utf8(frame).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert!(!json.contains('\n'), "one data line per message");
        serde_json::from_str(json).unwrap()
    }

    fn decode_base64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn every_encoding_carries_the_same_samples() {
        let c = sample_composition();
        let StreamMessage::AudioBuffer { timestamp, data } = parse(c.sse_frame(Encoding::Json))
        else {
            panic!("not an audio_buffer")
        };
        assert_eq!(timestamp, 1_700_000_000_000.0);
        assert_eq!(data.buffer.sample_rate, 44_100);
        assert_eq!(data.buffer.length, 441);
        assert_eq!(data.buffer.number_of_channels, 2);
        assert!((data.buffer.duration - 0.01).abs() < 1e-12);
        assert_eq!(data.repo_id, "octocat/hello-world");
        assert_eq!(data.composition_id.as_deref(), Some(c.id.as_str()));
        let Channels::Samples(json) = data.buffer.channels else {
            panic!("json carries arrays of numbers")
        };
        // Bit-exact: JSON numbers round-trip f32.
        assert_eq!(json, c.audio.channels.to_vec());

        let StreamMessage::AudioBuffer { data, .. } = parse(c.sse_frame(Encoding::F32)) else {
            panic!()
        };
        assert_eq!(data.buffer.encoding, Some(Encoding::F32));
        let Channels::Base64(f32s) = data.buffer.channels else {
            panic!()
        };
        let right: Vec<f32> = decode_base64(&f32s[1])
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(right, c.audio.channels[1]);

        let StreamMessage::AudioBuffer { data, .. } = parse(c.sse_frame(Encoding::I16)) else {
            panic!()
        };
        let Channels::Base64(i16s) = data.buffer.channels else {
            panic!()
        };
        let left: Vec<i16> = decode_base64(&i16s[0])
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(left[0], -32767);
        assert_eq!(left.len(), 441);
        assert!(c.sse_frame(Encoding::I16).len() < c.sse_frame(Encoding::F32).len());
        assert!(c.sse_frame(Encoding::F32).len() < c.sse_frame(Encoding::Json).len());
    }

    #[test]
    fn ids_follow_the_parameters() {
        let a = MusicalParams::default();
        let b = MusicalParams {
            seed: 1,
            ..MusicalParams::default()
        };
        assert_eq!(composition_id(&a), composition_id(&a.clone()));
        assert_ne!(composition_id(&a), composition_id(&b));
        assert_eq!(composition_id(&a).len(), 16);
    }
}

//! Audio over WebSocket: one binary frame per chunk, a fixed 28-byte header followed by
//! interleaved little-endian samples.
//!
//! ```text
//! offset size field
//!  0      4   magic "BSA1" (bandsync audio, version 1)
//!  4      8   sequence number, i64 LE (the sharer's, as in the REST API)
//! 12      8   timestamp, f64 LE (the sharer's clock, ms)
//! 20      4   sample rate, u32 LE (Hz, 1..=384000)
//! 24      2   channels, u16 LE (1..=32)
//! 26      1   sample format: 1 = f32 LE, 2 = i16 LE
//! 27      1   reserved, 0
//! 28      …   samples, interleaved (L, R, L, R, …), whole frames only
//! ```
//!
//! The same frame goes both ways: a sharer sends it instead of a base64 POST, and the server
//! pushes it to WebSocket receivers (encoded once per chunk, shared by every receiver).

/// First four bytes of every audio frame.
pub const MAGIC: &[u8; 4] = b"BSA1";
/// Header length in bytes.
pub const HEADER_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    F32,
    I16,
}

impl SampleFormat {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::F32 => 4,
            SampleFormat::I16 => 2,
        }
    }

    fn code(self) -> u8 {
        match self {
            SampleFormat::F32 => 1,
            SampleFormat::I16 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SampleFormat::F32),
            2 => Some(SampleFormat::I16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SampleFormat::F32 => "f32",
            SampleFormat::I16 => "i16",
        }
    }
}

/// The header of one audio frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioHeader {
    pub sequence: i64,
    pub timestamp: f64,
    pub sample_rate: u32,
    pub channels: u16,
    pub format: SampleFormat,
}

impl AudioHeader {
    /// Bytes of one frame (one sample per channel).
    pub fn frame_bytes(&self) -> usize {
        self.format.bytes_per_sample() * usize::from(self.channels)
    }

    /// Seconds of audio in `sample_bytes` bytes of samples.
    pub fn duration_secs(&self, sample_bytes: usize) -> f64 {
        let frames = sample_bytes / self.frame_bytes().max(1);
        frames as f64 / f64::from(self.sample_rate.max(1))
    }

    /// Writes the header and the samples into one frame.
    pub fn encode(&self, samples: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + samples.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.push(self.format.code());
        out.push(0);
        out.extend_from_slice(samples);
        out
    }
}

/// Why a binary frame is not a valid audio frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioFrameError {
    #[error("audio frame shorter than its {HEADER_LEN}-byte header")]
    TooShort,
    #[error("audio frame does not start with \"BSA1\"")]
    BadMagic,
    #[error("unknown sample format {0} (1 = f32, 2 = i16)")]
    BadFormat(u8),
    #[error("sample rate must be 1 to 384000 Hz")]
    BadSampleRate,
    #[error("channels must be 1 to 32")]
    BadChannels,
    #[error("samples are not whole frames of the declared channels and format")]
    PartialFrame,
}

/// Splits a binary frame into its header and samples, validating both.
pub fn decode_audio_frame(frame: &[u8]) -> Result<(AudioHeader, &[u8]), AudioFrameError> {
    if frame.len() < HEADER_LEN {
        return Err(AudioFrameError::TooShort);
    }
    if &frame[0..4] != MAGIC {
        return Err(AudioFrameError::BadMagic);
    }
    let u32_at = |i: usize| u32::from_le_bytes(frame[i..i + 4].try_into().expect("4 bytes"));
    let header = AudioHeader {
        sequence: i64::from_le_bytes(frame[4..12].try_into().expect("8 bytes")),
        timestamp: f64::from_le_bytes(frame[12..20].try_into().expect("8 bytes")),
        sample_rate: u32_at(20),
        channels: u16::from_le_bytes(frame[24..26].try_into().expect("2 bytes")),
        format: SampleFormat::from_code(frame[26]).ok_or(AudioFrameError::BadFormat(frame[26]))?,
    };
    if !(1..=384_000).contains(&header.sample_rate) {
        return Err(AudioFrameError::BadSampleRate);
    }
    if !(1..=32).contains(&header.channels) {
        return Err(AudioFrameError::BadChannels);
    }
    let samples = &frame[HEADER_LEN..];
    if !samples.len().is_multiple_of(header.frame_bytes()) {
        return Err(AudioFrameError::PartialFrame);
    }
    Ok((header, samples))
}

/// Converts interleaved i16 LE samples to f32 LE (the REST API's format), scaling by 1/32768.
pub fn i16_to_f32_bytes(samples: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for pair in samples.chunks_exact(2) {
        let v = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(format: SampleFormat) -> AudioHeader {
        AudioHeader {
            sequence: -1i64.wrapping_add(43),
            timestamp: 1_732_190_000_123.456,
            sample_rate: 44_100,
            channels: 2,
            format,
        }
    }

    #[test]
    fn frames_round_trip() {
        for format in [SampleFormat::F32, SampleFormat::I16] {
            let h = header(format);
            let samples: Vec<u8> = (0..h.frame_bytes() * 10).map(|i| i as u8).collect();
            let frame = h.encode(&samples);
            assert_eq!(frame.len(), HEADER_LEN + samples.len());
            let (back, body) = decode_audio_frame(&frame).unwrap();
            assert_eq!(back, h);
            assert_eq!(body, &samples[..]);
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        let h = header(SampleFormat::F32);
        let good = h.encode(&[0u8; 16]);
        assert_eq!(
            decode_audio_frame(&good[..10]),
            Err(AudioFrameError::TooShort)
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode_audio_frame(&bad), Err(AudioFrameError::BadMagic));
        let mut bad = good.clone();
        bad[26] = 9;
        assert_eq!(decode_audio_frame(&bad), Err(AudioFrameError::BadFormat(9)));
        let mut bad = good.clone();
        bad[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_audio_frame(&bad),
            Err(AudioFrameError::BadSampleRate)
        );
        let mut bad = good.clone();
        bad[24..26].copy_from_slice(&33u16.to_le_bytes());
        assert_eq!(decode_audio_frame(&bad), Err(AudioFrameError::BadChannels));
        let partial = h.encode(&[0u8; 12]);
        assert_eq!(
            decode_audio_frame(&partial),
            Err(AudioFrameError::PartialFrame)
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode_audio_frame(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode_audio_frame(&framed);
        }
    }

    #[test]
    fn i16_converts_to_scaled_f32() {
        let samples: Vec<u8> = [i16::MIN, 0, 16384]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let f = i16_to_f32_bytes(&samples);
        let values: Vec<f32> = f
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, vec![-1.0, 0.0, 0.5]);
    }

    #[test]
    fn duration_counts_frames() {
        let h = header(SampleFormat::I16);
        assert!((h.duration_secs(44_100 * 4) - 1.0).abs() < 1e-12);
    }
}

//! An `audio_buffer`'s samples, whatever the encoding the listener chose.
//!
//! `json` carries the numbers themselves; `f32` base64 of little-endian f32 (bit-exact);
//! `i16` base64 of little-endian i16, which the server made as `round(clamp(x) * 32767)`,
//! so it is read back as `v / 32767` (a full-scale sample is exactly ±1.0 again).

use bandsync_protocol::repo::{
    Channels, Encoding, SerializedBuffer, CHANNELS, MAX_DURATION, SAMPLE_RATE,
};
use base64::Engine as _;

/// The most frames a valid composition has (the longest duration, rounded up).
pub const MAX_FRAMES: usize = (MAX_DURATION as usize + 1) * SAMPLE_RATE as usize;

/// Why a buffer's samples cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("numberOfChannels is {declared} with {found} channels; repository streams are stereo")]
    NotStereo { declared: usize, found: usize },
    #[error("length {0} is past the longest composition ({MAX_FRAMES} frames)")]
    TooLong(usize),
    #[error("encoding is {declared} but the channels are {found}")]
    WrongForm {
        declared: &'static str,
        found: &'static str,
    },
    #[error("channel {channel} is not base64: {reason}")]
    Base64 { channel: usize, reason: String },
    #[error("channel {channel} holds {found} samples; length says {length}")]
    Length {
        channel: usize,
        found: usize,
        length: usize,
    },
}

/// The two channels of `buffer` as f32 samples, checked against its `length`.
pub fn decode_channels(buffer: &SerializedBuffer) -> Result<[Vec<f32>; 2], AudioError> {
    let found = match &buffer.channels {
        Channels::Samples(c) => c.len(),
        Channels::Base64(c) => c.len(),
    };
    if buffer.number_of_channels != CHANNELS || found != CHANNELS {
        return Err(AudioError::NotStereo {
            declared: buffer.number_of_channels,
            found,
        });
    }
    let length = buffer.length;
    if length > MAX_FRAMES {
        return Err(AudioError::TooLong(length));
    }
    let encoding = buffer.encoding.unwrap_or(Encoding::Json);
    let decoded: Vec<Vec<f32>> = match (&buffer.channels, encoding) {
        (Channels::Samples(c), Encoding::Json) => c.clone(),
        (Channels::Base64(c), Encoding::F32) => c
            .iter()
            .enumerate()
            .map(|(channel, text)| {
                let bytes = base64_bytes(channel, text, length * 4)?;
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            })
            .collect::<Result<_, AudioError>>()?,
        (Channels::Base64(c), Encoding::I16) => c
            .iter()
            .enumerate()
            .map(|(channel, text)| {
                let bytes = base64_bytes(channel, text, length * 2)?;
                Ok(bytes
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32767.0)
                    .collect())
            })
            .collect::<Result<_, AudioError>>()?,
        (channels, declared) => {
            return Err(AudioError::WrongForm {
                declared: declared.as_str(),
                found: match channels {
                    Channels::Samples(_) => "arrays of numbers",
                    Channels::Base64(_) => "base64 strings",
                },
            })
        }
    };
    for (channel, samples) in decoded.iter().enumerate() {
        if samples.len() != length {
            return Err(AudioError::Length {
                channel,
                found: samples.len(),
                length,
            });
        }
    }
    let mut decoded = decoded.into_iter();
    Ok([
        decoded.next().unwrap_or_default(),
        decoded.next().unwrap_or_default(),
    ])
}

/// Decodes one channel's base64, refusing it unless it is exactly `expected` bytes (checked
/// on the text's length first, so a lying `length` never makes a huge allocation).
fn base64_bytes(channel: usize, text: &str, expected: usize) -> Result<Vec<u8>, AudioError> {
    // An upper bound: whole 3-byte groups, so at most 2 above the exact size.
    let decoded_len = base64::decoded_len_estimate(text.len());
    if decoded_len > expected + 2 {
        return Err(AudioError::Length {
            channel,
            found: decoded_len,
            length: expected,
        });
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| AudioError::Base64 {
            channel,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(encoding: Option<Encoding>, channels: Channels, length: usize) -> SerializedBuffer {
        SerializedBuffer {
            sample_rate: SAMPLE_RATE,
            length,
            duration: length as f64 / f64::from(SAMPLE_RATE),
            number_of_channels: 2,
            encoding,
            channels,
        }
    }

    fn b64(bytes: Vec<u8>) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn every_encoding_decodes_to_the_same_samples() {
        let left = vec![0.5f32, -0.25, 1.0];
        let right = vec![-1.0f32, 0.0, 0.125];
        let json = buffer(
            None,
            Channels::Samples(vec![left.clone(), right.clone()]),
            3,
        );
        assert_eq!(
            decode_channels(&json).unwrap(),
            [left.clone(), right.clone()]
        );

        let f32s = |c: &[f32]| b64(c.iter().flat_map(|v| v.to_le_bytes()).collect());
        let f32_buffer = buffer(
            Some(Encoding::F32),
            Channels::Base64(vec![f32s(&left), f32s(&right)]),
            3,
        );
        assert_eq!(
            decode_channels(&f32_buffer).unwrap(),
            [left.clone(), right.clone()]
        );

        // The server's i16: round(clamp(x) * 32767).
        let i16s = |c: &[f32]| {
            b64(c
                .iter()
                .flat_map(|v| ((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
                .collect())
        };
        let i16_buffer = buffer(
            Some(Encoding::I16),
            Channels::Base64(vec![i16s(&left), i16s(&right)]),
            3,
        );
        let [l, r] = decode_channels(&i16_buffer).unwrap();
        assert_eq!((l[2], r[0], r[1]), (1.0, -1.0, 0.0), "full scale is exact");
        for (got, want) in l.iter().chain(&r).zip(left.iter().chain(&right)) {
            assert!((got - want).abs() <= 0.5 / 32767.0, "{got} vs {want}");
        }
    }

    #[test]
    fn inconsistent_buffers_are_refused() {
        let two = || Channels::Samples(vec![vec![0.0; 2], vec![0.0; 2]]);
        assert!(matches!(
            decode_channels(&buffer(None, two(), 3)),
            Err(AudioError::Length {
                length: 3,
                found: 2,
                ..
            })
        ));
        let mono = buffer(None, Channels::Samples(vec![vec![0.0; 2]]), 2);
        assert!(matches!(
            decode_channels(&mono),
            Err(AudioError::NotStereo { found: 1, .. })
        ));
        assert!(matches!(
            decode_channels(&buffer(Some(Encoding::F32), two(), 2)),
            Err(AudioError::WrongForm {
                declared: "f32",
                ..
            })
        ));
        let junk = Channels::Base64(vec!["!!!!".into(), "AAAA".into()]);
        assert!(matches!(
            decode_channels(&buffer(Some(Encoding::I16), junk, 1)),
            Err(AudioError::Base64 { channel: 0, .. })
        ));
        // Too many bytes for the length is refused before decoding.
        let long = Channels::Base64(vec![b64(vec![0; 400]), b64(vec![0; 400])]);
        assert!(matches!(
            decode_channels(&buffer(Some(Encoding::F32), long, 10)),
            Err(AudioError::Length { channel: 0, .. })
        ));
        assert!(matches!(
            decode_channels(&buffer(None, two(), MAX_FRAMES + 1)),
            Err(AudioError::TooLong(_))
        ));
    }
}

//! WAV files written and read by hand (RIFF is small), independently of the CLI's own
//! `hound`, so reading what the CLI wrote also checks that it is a standard file.

use std::path::Path;

/// Samples of a WAV file, the way the receiver compares them.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

#[derive(Debug)]
pub struct Wav {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Samples,
}

/// A canonical WAV: `fmt ` (PCM 16-bit, or IEEE float 32-bit) then `data`.
pub fn write_wav(path: &Path, wav: &Wav) {
    let (tag, bits, data): (u16, u16, Vec<u8>) = match &wav.samples {
        Samples::I16(s) => (1, 16, s.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Samples::F32(s) => (3, 32, s.iter().flat_map(|v| v.to_le_bytes()).collect()),
    };
    let block = wav.channels * bits / 8;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&wav.channels.to_le_bytes());
    out.extend_from_slice(&wav.sample_rate.to_le_bytes());
    out.extend_from_slice(&(wav.sample_rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// Reads any chunk layout; the format tag may be `WAVE_FORMAT_EXTENSIBLE`.
pub fn read_wav(path: &Path) -> Wav {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let (mut fmt, mut data) = (None, None);
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let len = u32_at(&bytes, i + 4) as usize;
        let body = &bytes[i + 8..(i + 8 + len).min(bytes.len())];
        match &bytes[i..i + 4] {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        i += 8 + len + (len & 1);
    }
    let (fmt, data) = (fmt.expect("a fmt chunk"), data.expect("a data chunk"));
    let mut tag = u16_at(fmt, 0);
    if tag == 0xFFFE {
        tag = u16_at(fmt, 24); // the sub-format GUID starts with the plain tag
    }
    let samples = match (tag, u16_at(fmt, 14)) {
        (1, 16) => Samples::I16(
            data.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ),
        (3, 32) => Samples::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        other => panic!("unexpected format {other:?}"),
    };
    Wav {
        sample_rate: u32_at(fmt, 4),
        channels: u16_at(fmt, 2),
        samples,
    }
}

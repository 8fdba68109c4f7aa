//! PCM in memory and WAV files in and out, for `share` and `receive`.
//!
//! Two sample formats only, the two the audio frames carry (`SampleFormat`): 16-bit integer
//! and 32-bit float, interleaved. Conversions are the REST API's: i16 to f32 divides by
//! 32768, so -32768 is exactly -1.0 and every i16 has an exact f32 (a receiver of the f32
//! stream can get the sharer's i16 back bit for bit).
//!
//! Files are read in chunks rather than loaded whole, so a long track costs one chunk of
//! memory, and `--loop` rewinds instead of keeping a copy.

use anyhow::Context as _;
use bandsync_client::protocol::audio::SampleFormat;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Interleaved samples (L, R, L, R, …) in one of the two supported formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Pcm {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

/// The REST API's i16 -> f32 conversion.
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

/// The inverse of [`i16_to_f32`], rounding and clamping what is out of range.
pub fn f32_to_i16(sample: f32) -> i16 {
    // The clamp makes the cast exact; NaN casts to 0.
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

impl Pcm {
    pub fn format(&self) -> SampleFormat {
        match self {
            Pcm::I16(_) => SampleFormat::I16,
            Pcm::F32(_) => SampleFormat::F32,
        }
    }

    /// Samples (not frames).
    pub fn len(&self) -> usize {
        match self {
            Pcm::I16(s) => s.len(),
            Pcm::F32(s) => s.len(),
        }
    }

    /// Bytes these samples take in their own format.
    pub fn byte_len(&self) -> usize {
        self.len() * self.format().bytes_per_sample()
    }

    /// Little-endian bytes in `format`, converting if it is not the samples' own.
    pub fn to_le_bytes(&self, format: SampleFormat) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * format.bytes_per_sample());
        match (self, format) {
            (Pcm::I16(s), SampleFormat::I16) => s.iter().for_each(|v| out.extend(v.to_le_bytes())),
            (Pcm::F32(s), SampleFormat::F32) => s.iter().for_each(|v| out.extend(v.to_le_bytes())),
            (Pcm::I16(s), SampleFormat::F32) => s
                .iter()
                .for_each(|v| out.extend(i16_to_f32(*v).to_le_bytes())),
            (Pcm::F32(s), SampleFormat::I16) => s
                .iter()
                .for_each(|v| out.extend(f32_to_i16(*v).to_le_bytes())),
        }
        out
    }

    /// Samples from little-endian bytes (a trailing partial sample is ignored; callers
    /// check for whole frames first).
    pub fn from_le_bytes(bytes: &[u8], format: SampleFormat) -> Pcm {
        match format {
            SampleFormat::I16 => Pcm::I16(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            SampleFormat::F32 => Pcm::F32(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
        }
    }

    /// As f32, for the sound card.
    #[cfg_attr(not(feature = "playback"), allow(dead_code))]
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Pcm::I16(s) => s.iter().map(|v| i16_to_f32(*v)).collect(),
            Pcm::F32(s) => s.clone(),
        }
    }

    /// `frames` frames of silence of `channels` channels.
    pub fn silence(format: SampleFormat, channels: u16, frames: usize) -> Pcm {
        let n = frames * usize::from(channels);
        match format {
            SampleFormat::I16 => Pcm::I16(vec![0; n]),
            SampleFormat::F32 => Pcm::F32(vec![0.0; n]),
        }
    }
}

/// A WAV file being read chunk by chunk.
pub struct WavSource {
    reader: hound::WavReader<BufReader<File>>,
    pub sample_rate: u32,
    pub channels: u16,
    pub format: SampleFormat,
    /// Frames in the file.
    pub total_frames: u64,
}

impl WavSource {
    /// Opens a 16-bit integer or 32-bit float WAV of 1 to 32 channels (the audio frame's
    /// limit) with at least one frame.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader = hound::WavReader::open(path)
            .with_context(|| format!("reading WAV file {}", path.display()))?;
        let spec = reader.spec();
        let format =
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Int, 16) => SampleFormat::I16,
                (hound::SampleFormat::Float, 32) => SampleFormat::F32,
                (kind, bits) => {
                    anyhow::bail!(
                "{}: {bits}-bit {} samples are not supported; use 16-bit PCM or 32-bit float",
                path.display(),
                if kind == hound::SampleFormat::Int { "integer" } else { "float" }
            )
                }
            };
        anyhow::ensure!(
            (1..=32).contains(&spec.channels),
            "{}: {} channels; 1 to 32 are supported",
            path.display(),
            spec.channels
        );
        let total_frames = u64::from(reader.duration());
        anyhow::ensure!(total_frames > 0, "{}: holds no audio", path.display());
        Ok(Self {
            reader,
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            format,
            total_frames,
        })
    }

    /// Seconds of audio in the file.
    pub fn duration_secs(&self) -> f64 {
        self.total_frames as f64 / f64::from(self.sample_rate)
    }

    /// The next `frames` frames (fewer at the end of the file), `None` once it is read.
    pub fn read(&mut self, frames: usize) -> anyhow::Result<Option<Pcm>> {
        let n = frames * usize::from(self.channels);
        let pcm = match self.format {
            SampleFormat::I16 => Pcm::I16(
                self.reader
                    .samples::<i16>()
                    .take(n)
                    .collect::<Result<_, _>>()?,
            ),
            SampleFormat::F32 => Pcm::F32(
                self.reader
                    .samples::<f32>()
                    .take(n)
                    .collect::<Result<_, _>>()?,
            ),
        };
        // A file cut mid-frame ends at its last whole frame.
        let whole = pcm.len() - pcm.len() % usize::from(self.channels);
        Ok(match pcm {
            _ if whole == 0 => None,
            Pcm::I16(mut s) => {
                s.truncate(whole);
                Some(Pcm::I16(s))
            }
            Pcm::F32(mut s) => {
                s.truncate(whole);
                Some(Pcm::F32(s))
            }
        })
    }

    /// Back to the first frame (for `--loop`).
    pub fn rewind(&mut self) -> anyhow::Result<()> {
        self.reader.seek(0).context("rewinding the WAV file")
    }
}

/// A WAV file being written chunk by chunk; [`WavSink::finish`] writes the final sizes.
pub struct WavSink {
    writer: hound::WavWriter<std::io::BufWriter<File>>,
    channels: u16,
    format: SampleFormat,
    frames: u64,
}

impl WavSink {
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        format: SampleFormat,
    ) -> anyhow::Result<Self> {
        let (bits_per_sample, sample_format) = match format {
            SampleFormat::I16 => (16, hound::SampleFormat::Int),
            SampleFormat::F32 => (32, hound::SampleFormat::Float),
        };
        let spec = hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample,
            sample_format,
        };
        let writer = hound::WavWriter::create(path, spec)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            writer,
            channels,
            format,
            frames: 0,
        })
    }

    /// Appends samples, converting them to the file's format if they differ.
    pub fn write(&mut self, pcm: &Pcm) -> anyhow::Result<()> {
        match (pcm, self.format) {
            (Pcm::I16(s), SampleFormat::I16) => {
                for v in s {
                    self.writer.write_sample(*v)?;
                }
            }
            (Pcm::F32(s), SampleFormat::F32) => {
                for v in s {
                    self.writer.write_sample(*v)?;
                }
            }
            (other, format) => {
                let bytes = other.to_le_bytes(format);
                return self.write(&Pcm::from_le_bytes(&bytes, format));
            }
        }
        self.frames += (pcm.len() / usize::from(self.channels)) as u64;
        Ok(())
    }

    /// Frames written so far.
    #[cfg(test)]
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the header's sizes and closes the file; returns the frames written.
    pub fn finish(self) -> anyhow::Result<u64> {
        let frames = self.frames;
        self.writer.finalize().context("finishing the WAV file")?;
        Ok(frames)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh path in the temp directory, removed on drop.
    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn new(name: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            Self(std::env::temp_dir().join(format!("bandsync-cli-{pid}-{n}-{name}")))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write_wav(path: &Path, rate: u32, channels: u16, pcm: &Pcm) {
        let mut sink = WavSink::create(path, rate, channels, pcm.format()).unwrap();
        sink.write(pcm).unwrap();
        sink.finish().unwrap();
    }

    fn read_all(source: &mut WavSource, chunk: usize) -> Vec<Pcm> {
        std::iter::from_fn(|| source.read(chunk).unwrap()).collect()
    }

    #[test]
    fn i16_to_f32_is_the_rest_apis_scaling_and_exact() {
        assert_eq!(i16_to_f32(i16::MIN), -1.0);
        assert_eq!(i16_to_f32(0), 0.0);
        assert_eq!(i16_to_f32(16384), 0.5);
        assert_eq!(i16_to_f32(i16::MAX), 32767.0 / 32768.0);
        for v in [i16::MIN, -12345, -1, 0, 1, 777, i16::MAX] {
            assert_eq!(f32_to_i16(i16_to_f32(v)), v);
        }
        assert_eq!(f32_to_i16(1.5), i16::MAX);
        assert_eq!(f32_to_i16(-3.0), i16::MIN);
        // Same bytes as the protocol crate's converter, which the server uses.
        let pcm = Pcm::I16(vec![i16::MIN, -3, 0, 9, i16::MAX]);
        let ours = pcm.to_le_bytes(SampleFormat::F32);
        let theirs =
            bandsync_client::protocol::audio::i16_to_f32_bytes(&pcm.to_le_bytes(SampleFormat::I16));
        assert_eq!(ours, theirs);
    }

    #[test]
    fn bytes_round_trip_in_both_formats() {
        let i = Pcm::I16(vec![-2, 0, 300, i16::MAX]);
        let bytes = i.to_le_bytes(SampleFormat::I16);
        assert_eq!(bytes.len(), i.byte_len());
        assert_eq!(Pcm::from_le_bytes(&bytes, SampleFormat::I16), i);
        let f = Pcm::F32(vec![-0.25, 0.0, 1e-7, 0.999]);
        let bytes = f.to_le_bytes(SampleFormat::F32);
        assert_eq!(bytes.len(), 16);
        assert_eq!(Pcm::from_le_bytes(&bytes, SampleFormat::F32), f);
    }

    #[test]
    fn reads_i16_in_chunks_and_rewinds() {
        let path = TempPath::new("i16.wav");
        let samples: Vec<i16> = (0..2 * 1000).map(|i| (i * 7 - 5000) as i16).collect();
        write_wav(&path.0, 8000, 2, &Pcm::I16(samples.clone()));
        let mut source = WavSource::open(&path.0).unwrap();
        assert_eq!(
            (source.sample_rate, source.channels, source.format),
            (8000, 2, SampleFormat::I16)
        );
        assert_eq!(source.total_frames, 1000);
        assert!((source.duration_secs() - 0.125).abs() < 1e-12);
        let chunks = read_all(&mut source, 300);
        let lens: Vec<usize> = chunks.iter().map(Pcm::len).collect();
        assert_eq!(lens, vec![600, 600, 600, 200]);
        let joined: Vec<i16> = chunks
            .iter()
            .flat_map(|c| match c {
                Pcm::I16(s) => s.clone(),
                Pcm::F32(_) => panic!("format changed"),
            })
            .collect();
        assert_eq!(joined, samples);
        source.rewind().unwrap();
        assert_eq!(
            source.read(1).unwrap(),
            Some(Pcm::I16(samples[..2].to_vec()))
        );
    }

    #[test]
    fn reads_f32_of_many_channels() {
        let path = TempPath::new("f32.wav");
        let samples: Vec<f32> = (0..8 * 50).map(|i| i as f32 / 400.0 - 0.5).collect();
        write_wav(&path.0, 44_100, 8, &Pcm::F32(samples.clone()));
        let mut source = WavSource::open(&path.0).unwrap();
        assert_eq!(
            (source.channels, source.format, source.total_frames),
            (8, SampleFormat::F32, 50)
        );
        assert_eq!(read_all(&mut source, 1000), vec![Pcm::F32(samples)]);
    }

    #[test]
    fn refuses_unsupported_files_with_a_reason() {
        let path = TempPath::new("24.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path.0, spec).unwrap();
        w.write_sample(1i32).unwrap();
        w.finalize().unwrap();
        let err = WavSource::open(&path.0).err().unwrap().to_string();
        assert!(err.contains("24-bit integer"), "{err}");

        let empty = TempPath::new("empty.wav");
        write_wav(&empty.0, 8000, 1, &Pcm::I16(Vec::new()));
        let err = WavSource::open(&empty.0).err().unwrap().to_string();
        assert!(err.contains("no audio"), "{err}");
        assert!(WavSource::open(Path::new("/nonexistent/x.wav")).is_err());
    }

    #[test]
    fn the_sink_converts_and_counts_frames() {
        let path = TempPath::new("out.wav");
        let mut sink = WavSink::create(&path.0, 8000, 2, SampleFormat::F32).unwrap();
        sink.write(&Pcm::I16(vec![16384, -16384])).unwrap();
        sink.write(&Pcm::silence(SampleFormat::F32, 2, 2)).unwrap();
        assert_eq!(sink.frames(), 3);
        assert_eq!(sink.finish().unwrap(), 3);
        let mut source = WavSource::open(&path.0).unwrap();
        assert_eq!(
            source.read(10).unwrap(),
            Some(Pcm::F32(vec![0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
        );
    }
}

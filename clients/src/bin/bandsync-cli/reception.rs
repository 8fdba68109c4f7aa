//! What `receive` does with what arrives, whatever the transport: put chunks in sequence
//! order (dropping repeats, counting gaps), write them to the WAV file and the sound card,
//! print metadata changes, and sum it all up at the end.
//!
//! The WAV file is the stream in sequence order: with nothing lost it equals the shared
//! audio sample for sample. A gap is filled with silence as long as the chunk before it
//! (chunks are of one length but the last), so the recording keeps its timing.

use crate::chunk::{Chunk, NowPlaying};
use crate::output::emit;
use crate::playback::Player;
use crate::wav::{Pcm, WavSink};
use bandsync_client::protocol::audio::SampleFormat;
use hdrhistogram::Histogram;
use serde_json::Value;
use std::path::PathBuf;

/// Largest latency the histogram holds, µs (10 minutes); larger values saturate.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Where a chunk goes, by its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next one in order; `lost` chunks before it never came (0 normally).
    Next { lost: u64 },
    /// At or below the last one taken: a repeat (a join burst overlapping the live stream,
    /// a poll answering again, a sharer's resend) or too late to place. Dropped.
    Stale,
}

/// Sequence numbers seen so far: dedupe and gap detection.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    first: Option<i64>,
    last: Option<i64>,
    pub taken: u64,
    pub lost: u64,
    pub stale: u64,
}

impl SeqTracker {
    pub fn accept(&mut self, seq: i64) -> Verdict {
        match self.last {
            Some(last) if seq <= last => {
                self.stale += 1;
                Verdict::Stale
            }
            last => {
                // Chunks before the first one taken are not lost: they were shared before
                // this receiver came.
                let lost = last.map_or(0, |l| seq.abs_diff(l) - 1);
                self.first.get_or_insert(seq);
                self.last = Some(seq);
                self.taken += 1;
                self.lost += lost;
                Verdict::Next { lost }
            }
        }
    }

    pub fn first(&self) -> Option<i64> {
        self.first
    }

    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

/// (sample rate, channels, format): a stream's shape, fixed by its first chunk.
type Shape = (u32, u16, SampleFormat);

pub struct Reception {
    tracker: SeqTracker,
    out: Option<PathBuf>,
    wav: Option<WavSink>,
    player: Option<Player>,
    shape: Option<Shape>,
    /// Frames of the last chunk taken: the length of a lost one, for the silence.
    last_frames: usize,
    /// Chunks of another shape than the first (dropped), or that did not decode.
    mismatched: u64,
    invalid: u64,
    bytes: u64,
    frames: u64,
    /// Sharer timestamp to arrival, µs; constant memory however long the run.
    latency: Histogram<u64>,
    /// Arrivals stamped before they were sent: the clocks differ (another host).
    negative_latency: u64,
    now_playing: Option<NowPlaying>,
    metadata_changes: u64,
}

impl Reception {
    pub fn new(out: Option<PathBuf>, player: Option<Player>) -> Self {
        Self {
            tracker: SeqTracker::default(),
            out,
            wav: None,
            player,
            shape: None,
            last_frames: 0,
            mismatched: 0,
            invalid: 0,
            bytes: 0,
            frames: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static bounds are valid"),
            negative_latency: 0,
            now_playing: None,
            metadata_changes: 0,
        }
    }

    /// The last sequence number taken.
    #[cfg(test)]
    pub fn last_seq(&self) -> Option<i64> {
        self.tracker.last()
    }

    /// A chunk that could not be decoded: reported and counted; it shows as a gap.
    pub fn invalid(&mut self, error: &anyhow::Error) {
        self.invalid += 1;
        emit(format!("dropped a bad chunk: {error:#}"));
    }

    pub fn take(&mut self, chunk: Chunk) -> anyhow::Result<()> {
        let shape = (chunk.sample_rate, chunk.channels, chunk.pcm.format());
        match self.shape {
            None => {
                self.shape = Some(shape);
                let (rate, channels, format) = shape;
                emit(format!(
                    "audio: {rate} Hz, {channels} ch, {}",
                    format.as_str()
                ));
                if let Some(path) = &self.out {
                    self.wav = Some(WavSink::create(path, rate, channels, format)?);
                    emit(format!("recording to {}", path.display()));
                }
            }
            Some(first) if first != shape => {
                self.mismatched += 1;
                if self.mismatched == 1 {
                    emit(format!(
                        "chunk #{} is {} Hz, {} ch, {}, not the stream's shape; dropping such chunks",
                        chunk.seq,
                        shape.0,
                        shape.1,
                        shape.2.as_str()
                    ));
                }
                return Ok(());
            }
            Some(_) => {}
        }
        let lost = match self.tracker.accept(chunk.seq) {
            Verdict::Stale => return Ok(()),
            Verdict::Next { lost } => lost,
        };
        if self.tracker.taken == 1 && chunk.seq > 0 {
            emit(format!(
                "joined at chunk #{} (the earlier ones were shared before this receiver came)",
                chunk.seq
            ));
        }
        if lost > 0 {
            let frames = usize::try_from(lost).unwrap_or(usize::MAX) * self.last_frames;
            emit(format!(
                "lost {lost} chunk(s) before #{}; {frames} frames of silence in their place",
                chunk.seq
            ));
            if let Some(wav) = &mut self.wav {
                wav.write(&Pcm::silence(shape.2, shape.1, frames))?;
            }
        }
        let latency_ms = chunk.received_ms - chunk.timestamp;
        if latency_ms < 0.0 {
            self.negative_latency += 1;
        }
        self.latency
            .saturating_record((latency_ms.max(0.0) * 1000.0) as u64);
        self.bytes += chunk.pcm.byte_len() as u64;
        self.frames += chunk.frames() as u64;
        self.last_frames = chunk.frames();
        if let Some(wav) = &mut self.wav {
            wav.write(&chunk.pcm)?;
        }
        if let Some(player) = &mut self.player {
            player.play(&chunk);
        }
        Ok(())
    }

    /// Prints the metadata when what it names changed (not for every elapsed-time tick).
    pub fn metadata(&mut self, metadata: &Value) {
        let now = NowPlaying::of(metadata);
        if self.now_playing.as_ref() != Some(&now) {
            emit(now.describe());
            self.metadata_changes += 1;
            self.now_playing = Some(now);
        }
    }

    /// Finishes the WAV file and the playback; returns the summary line.
    pub async fn finish(mut self) -> anyhow::Result<String> {
        let written = match self.wav.take() {
            Some(wav) => Some(wav.finish()?),
            None => None,
        };
        if let Some(player) = self.player.take() {
            player.drain().await;
        }
        Ok(self.summary(written))
    }

    fn summary(&self, written: Option<u64>) -> String {
        let t = &self.tracker;
        let range = match (t.first(), t.last()) {
            (Some(a), Some(b)) => format!(" (#{a}-#{b})"),
            _ => String::new(),
        };
        let secs = match self.shape {
            Some((rate, ..)) => self.frames as f64 / f64::from(rate),
            None => 0.0,
        };
        let mut out = format!(
            "summary: {} chunks{range}, {} lost, {} repeated, {} bad; {secs:.3} s of audio, {} bytes",
            t.taken,
            t.lost,
            t.stale,
            self.invalid + self.mismatched,
            self.bytes
        );
        if let (Some(frames), Some(path)) = (written, &self.out) {
            out.push_str(&format!("; {frames} frames written to {}", path.display()));
        }
        if !self.latency.is_empty() {
            let q = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
            out.push_str(&format!(
                "; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (sharer's clock to ours: \
                 meaningful on one host)",
                q(0.5),
                q(0.99),
                self.latency.max() as f64 / 1000.0
            ));
            if self.negative_latency > 0 {
                out.push_str(&format!(
                    ", {} negative: the clocks differ",
                    self.negative_latency
                ));
            }
        }
        out.push_str(&format!("; {} metadata changes", self.metadata_changes));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::tests::TempPath;
    use crate::wav::WavSource;

    #[test]
    fn in_order_chunks_are_taken() {
        let mut t = SeqTracker::default();
        for seq in 0..5 {
            assert_eq!(t.accept(seq), Verdict::Next { lost: 0 });
        }
        assert_eq!((t.taken, t.lost, t.stale), (5, 0, 0));
        assert_eq!((t.first(), t.last()), (Some(0), Some(4)));
    }

    #[test]
    fn repeats_are_dropped_and_gaps_counted() {
        let mut t = SeqTracker::default();
        assert_eq!(t.accept(10), Verdict::Next { lost: 0 }, "a late joiner");
        assert_eq!(t.accept(11), Verdict::Next { lost: 0 });
        assert_eq!(t.accept(11), Verdict::Stale);
        assert_eq!(t.accept(9), Verdict::Stale);
        assert_eq!(t.accept(14), Verdict::Next { lost: 2 });
        assert_eq!(t.accept(13), Verdict::Stale, "too late to place");
        assert_eq!(t.accept(15), Verdict::Next { lost: 0 });
        assert_eq!((t.taken, t.lost, t.stale), (4, 2, 3));
        assert_eq!(t.first(), Some(10));
    }

    fn chunk(seq: i64, pcm: Pcm) -> Chunk {
        Chunk {
            seq,
            timestamp: 1000.0,
            sample_rate: 8000,
            channels: 1,
            pcm,
            received_ms: 1012.5,
        }
    }

    #[test]
    fn the_recording_is_the_stream_in_order_with_silence_for_gaps() {
        let path = TempPath::new("rec.wav");
        let mut r = Reception::new(Some(path.0.clone()), None);
        r.take(chunk(0, Pcm::I16(vec![1, 2]))).unwrap();
        r.take(chunk(0, Pcm::I16(vec![1, 2]))).unwrap(); // a repeat
        r.take(chunk(2, Pcm::I16(vec![5, 6]))).unwrap(); // #1 lost
        r.take(chunk(3, Pcm::F32(vec![0.5]))).unwrap(); // another shape: a gap too
        r.take(chunk(4, Pcm::I16(vec![7]))).unwrap();
        let summary = futures_util::FutureExt::now_or_never(r.finish())
            .unwrap()
            .unwrap();
        assert!(
            summary.starts_with("summary: 3 chunks (#0-#4), 2 lost, 1 repeated, 1 bad"),
            "{summary}"
        );
        assert!(summary.contains("latency p50 12.5 ms"), "{summary}");
        let mut wav = WavSource::open(&path.0).unwrap();
        assert_eq!(wav.format, SampleFormat::I16);
        assert_eq!(
            wav.read(100).unwrap(),
            Some(Pcm::I16(vec![1, 2, 0, 0, 5, 6, 0, 0, 7]))
        );
    }

    #[test]
    fn metadata_is_printed_on_change_only() {
        let mut r = Reception::new(None, None);
        let m = |title: &str, elapsed: f64| serde_json::json!({"title": title, "artist": "A", "elapsedSeconds": elapsed, "totalSeconds": 9.0});
        r.metadata(&m("One", 0.0));
        r.metadata(&m("One", 0.5));
        r.metadata(&m("Two", 0.0));
        assert_eq!(r.metadata_changes, 2);
    }
}

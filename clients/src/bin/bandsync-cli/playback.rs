//! `receive --play`: the received audio on the default sound output, through rodio.
//!
//! Behind the `playback` cargo feature (off by default) because rodio's backend, cpal,
//! links the platform's sound library (ALSA on Linux): the default build needs none. Without
//! the feature, [`Player::open`] fails with a message saying how to get it.
//!
//! Playback starts once [`PREBUFFER_SECS`] of audio are queued, so arrival jitter (polling
//! every 100 ms, chunks of 200 ms) does not become gaps in the sound; after that chunks are
//! queued as they come.

use crate::chunk::Chunk;

/// Audio queued before playback starts.
#[cfg_attr(not(feature = "playback"), allow(dead_code))]
const PREBUFFER_SECS: f64 = 0.5;

#[cfg(feature = "playback")]
pub struct Player {
    // Dropping the stream stops the sound: it lives as long as the sink.
    _stream: rodio::OutputStream,
    sink: rodio::Sink,
    queued_secs: f64,
}

#[cfg(feature = "playback")]
impl Player {
    pub fn open() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut stream = rodio::OutputStreamBuilder::open_default_stream()
            .context("--play: opening the default sound output")?;
        stream.log_on_drop(false);
        let sink = rodio::Sink::connect_new(stream.mixer());
        sink.pause();
        Ok(Self {
            _stream: stream,
            sink,
            queued_secs: 0.0,
        })
    }

    pub fn play(&mut self, chunk: &Chunk) {
        let samples = chunk.pcm.to_f32();
        self.queued_secs += chunk.frames() as f64 / f64::from(chunk.sample_rate.max(1));
        self.sink.append(rodio::buffer::SamplesBuffer::new(
            chunk.channels,
            chunk.sample_rate,
            samples,
        ));
        if self.sink.is_paused() && self.queued_secs >= PREBUFFER_SECS {
            self.sink.play();
        }
    }

    /// Plays out what is queued (a short share may never have reached the prebuffer).
    pub async fn drain(self) {
        self.sink.play();
        while !self.sink.empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[cfg(not(feature = "playback"))]
pub struct Player(());

#[cfg(not(feature = "playback"))]
impl Player {
    pub fn open() -> anyhow::Result<Self> {
        anyhow::bail!(
            "--play: this bandsync-cli was built without the playback feature; rebuild with \
             `cargo build -p bandsync-client --features playback` (needs the ALSA headers on \
             Linux: libasound2-dev)"
        )
    }

    pub fn play(&mut self, _chunk: &Chunk) {}

    pub async fn drain(self) {}
}

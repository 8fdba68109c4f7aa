//! `follow --click`: the click's sound output, through rodio.
//!
//! The network side (`bars.rs`) hands each click over ahead of time through a bounded
//! crossbeam channel, because the audio side runs on the sound card's own thread and must
//! never wait for the network; the source renders them with
//! [`bandsync_client::click::ClickRenderer`] at the samples [`bandsync_client::click::SampleClock`] maps to their
//! wall-clock times. Behind the `playback` feature, like `receive --play`.

use bandsync_client::click::ClickCommand;
#[cfg(feature = "playback")]
use bandsync_client::click::{ClickRenderer, SampleClock, MAX_QUEUED_CLICKS, SAMPLE_RATE};

#[cfg(feature = "playback")]
pub use device::ClickOutput;

#[cfg(feature = "playback")]
mod device {
    use super::*;
    use crossbeam_channel::{Receiver, Sender, TrySendError};
    use std::time::Duration;

    /// The click's rodio source: pulls commands, renders samples, reads the clock.
    struct ClickSource {
        commands: Receiver<ClickCommand>,
        renderer: ClickRenderer,
        clock: SampleClock,
        n: u64,
    }

    impl Iterator for ClickSource {
        type Item = f32;

        fn next(&mut self) -> Option<f32> {
            if self.clock.wants_reading(self.n) {
                while let Ok(command) = self.commands.try_recv() {
                    self.renderer.command(command);
                }
                self.clock.reading(self.n, bandsync_client::wall_clock_ms());
            }
            let at = self.clock.time_of(self.n).unwrap_or(0.0);
            let sample = self.renderer.sample(at, self.clock.period_ms());
            self.n += 1;
            Some(sample)
        }
    }

    impl rodio::Source for ClickSource {
        fn current_span_len(&self) -> Option<usize> {
            None
        }
        fn channels(&self) -> rodio::ChannelCount {
            1
        }
        fn sample_rate(&self) -> rodio::SampleRate {
            SAMPLE_RATE
        }
        fn total_duration(&self) -> Option<Duration> {
            None
        }
    }

    /// The open sound output with the click playing (silent until clicks arrive).
    pub struct ClickOutput {
        _stream: rodio::OutputStream,
        commands: Sender<ClickCommand>,
    }

    impl ClickOutput {
        /// Opens the default output; `delay_ms` is the output latency plus calibration.
        pub fn open(delay_ms: f64) -> anyhow::Result<Self> {
            use anyhow::Context as _;
            let mut stream = rodio::OutputStreamBuilder::open_default_stream()
                .context("--click: opening the default sound output")?;
            stream.log_on_drop(false);
            let (commands, receiver) = crossbeam_channel::bounded(MAX_QUEUED_CLICKS);
            stream.mixer().add(ClickSource {
                commands: receiver,
                renderer: ClickRenderer::default(),
                clock: SampleClock::new(SAMPLE_RATE, delay_ms),
                n: 0,
            });
            Ok(Self {
                _stream: stream,
                commands,
            })
        }

        /// Hands a command to the audio thread; a full queue drops it (the audio side is
        /// more than a second behind: a click lost is better than a network side blocked).
        pub fn send(&self, command: ClickCommand) -> bool {
            !matches!(
                self.commands.try_send(command),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            )
        }
    }
}

/// Without the `playback` feature there is no sound output.
#[cfg(not(feature = "playback"))]
pub struct ClickOutput(());

#[cfg(not(feature = "playback"))]
impl ClickOutput {
    pub fn open(_delay_ms: f64) -> anyhow::Result<Self> {
        anyhow::bail!(
            "--click: this bandsync-cli was built without the playback feature; rebuild with \
             `cargo build -p bandsync-client --features playback` (needs the ALSA headers on \
             Linux: libasound2-dev)"
        )
    }

    pub fn send(&self, _command: ClickCommand) -> bool {
        false
    }
}

//! A metronome click rendered sample by sample at given wall-clock times.
//!
//! A client that sounds a click in step with the band knows when each beat falls in server
//! time (`crate::metronome`) and turns that into its own wall-clock time with the clock
//! offset. What is left is the audio side, here: [`ClickRenderer`] starts each click at the
//! sample whose wall-clock time is the click's, so the click is as exact as the mapping
//! from samples to wall-clock time ([`SampleClock`]), not as late as a timer wake-up. It is
//! pure (no sound device), so it is tested sample-exact; `bandsync-cli follow --click`
//! plays it through rodio.
//!
//! The mapping: a sound library that does not pass on the device's playback timestamps
//! (rodio does not) leaves the client to anchor sample 0 at the wall clock of the first
//! pull plus the output latency (the device buffer) plus a per-device calibration. The
//! clock then follows the sound card: every [`REANCHOR_SAMPLES`] samples it reads the wall
//! clock, and the earliest pull of each buffer (the latest `wall − n/rate`) tells where
//! that buffer started; the anchor moves a fraction toward it once a second, so the
//! device clock's drift against the system clock (tens of ppm) never adds up.

use std::collections::VecDeque;

/// The rate clicks are rendered at (rodio converts to the device's rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// Length of one click.
const CLICK_MS: f64 = 25.0;
/// Pitch of the first beat of a bar, and of the others.
const ACCENT_HZ: f64 = 1_760.0;
const BEAT_HZ: f64 = 880.0;
/// Loudness of the accented and plain clicks (of full scale).
const ACCENT_GAIN: f32 = 0.6;
const BEAT_GAIN: f32 = 0.35;
/// How many clicks may wait in the queue: more than a second ahead at 400 bpm.
pub const MAX_QUEUED_CLICKS: usize = 64;
/// How often the audio side re-reads the wall clock, in samples (10 ms at 48 kHz).
pub const REANCHOR_SAMPLES: u64 = 480;
/// The share of the measured error the anchor absorbs per second: slow enough that the
/// jitter of the audio thread's wake-ups averages out, fast enough for any real drift.
const REANCHOR_RATE: f64 = 0.1;

/// One click, at a time on this machine's wall clock (ms since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Click {
    pub local_ms: f64,
    pub accent: bool,
}

/// What the network side tells the audio side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClickCommand {
    /// Sound this click.
    Add(Click),
    /// Forget the queued clicks at or after this wall-clock time (the timeline changed
    /// without notice: a tempo change that was not scheduled).
    ClearFrom(f64),
}

/// Renders queued clicks into samples at their wall-clock times. Pure: the caller says
/// which wall-clock time each sample stands for.
#[derive(Debug, Default)]
pub struct ClickRenderer {
    queue: VecDeque<Click>,
    /// The click sounding now: its pitch, gain and how far in (ms).
    voice: Option<Voice>,
}

#[derive(Debug, Clone, Copy)]
struct Voice {
    hz: f64,
    gain: f32,
    elapsed_ms: f64,
}

impl ClickRenderer {
    /// Applies a command. A click earlier than the last queued one is dropped (the network
    /// side hands them over in order); the queue holds at most [`MAX_QUEUED_CLICKS`].
    pub fn command(&mut self, command: ClickCommand) {
        match command {
            ClickCommand::Add(click) => {
                let in_order = self
                    .queue
                    .back()
                    .is_none_or(|c| c.local_ms < click.local_ms);
                if in_order && self.queue.len() < MAX_QUEUED_CLICKS && click.local_ms.is_finite() {
                    self.queue.push_back(click);
                }
            }
            ClickCommand::ClearFrom(from) => self.queue.retain(|c| c.local_ms < from),
        }
    }

    /// The sample for wall-clock time `at_ms`, one sample period `period_ms` long. A click
    /// starts at the first sample whose time reaches it; one whose time has passed by more
    /// than a click's length (the audio thread stalled) is skipped, not sounded late.
    pub fn sample(&mut self, at_ms: f64, period_ms: f64) -> f32 {
        while let Some(next) = self.queue.front().copied() {
            if at_ms + period_ms <= next.local_ms {
                break;
            }
            self.queue.pop_front();
            if at_ms - next.local_ms < CLICK_MS {
                let (hz, gain) = match next.accent {
                    true => (ACCENT_HZ, ACCENT_GAIN),
                    false => (BEAT_HZ, BEAT_GAIN),
                };
                self.voice = Some(Voice {
                    hz,
                    gain,
                    // The click began this far before this sample (less than one period
                    // when on time): its phase starts there, so onsets are sample-exact.
                    elapsed_ms: (at_ms - next.local_ms).max(0.0),
                });
            }
        }
        let Some(voice) = &mut self.voice else {
            return 0.0;
        };
        let t = voice.elapsed_ms / 1000.0;
        // A sine with a fast exponential decay: a short, clear tick.
        let envelope = (-voice.elapsed_ms / (CLICK_MS / 5.0)).exp() as f32;
        let value = (std::f64::consts::TAU * voice.hz * t).sin() as f32 * voice.gain * envelope;
        voice.elapsed_ms += period_ms;
        if voice.elapsed_ms >= CLICK_MS {
            self.voice = None;
        }
        value
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a click is sounding (after the last sample rendered).
    pub fn sounding(&self) -> bool {
        self.voice.is_some()
    }
}

/// Maps sample numbers to wall-clock times, following the sound card's clock.
#[derive(Debug, Clone)]
pub struct SampleClock {
    period_ms: f64,
    /// Wall-clock time (ms) at which sample 0 is heard.
    anchor_ms: Option<f64>,
    /// Output latency plus calibration, added to what the pulls measure.
    delay_ms: f64,
    /// The latest `wall − n·period` seen since the last re-anchor.
    latest_start: f64,
}

impl SampleClock {
    pub fn new(sample_rate: u32, delay_ms: f64) -> Self {
        Self {
            period_ms: 1000.0 / f64::from(sample_rate.max(1)),
            anchor_ms: None,
            delay_ms,
            latest_start: f64::NEG_INFINITY,
        }
    }

    pub fn period_ms(&self) -> f64 {
        self.period_ms
    }

    /// Whether sample `n` is one at which the wall clock should be read.
    pub fn wants_reading(&self, n: u64) -> bool {
        self.anchor_ms.is_none() || n.is_multiple_of(REANCHOR_SAMPLES)
    }

    /// Takes a wall-clock reading made when sample `n` was pulled.
    pub fn reading(&mut self, n: u64, wall_ms: f64) {
        let start = wall_ms - n as f64 * self.period_ms;
        let Some(anchor) = self.anchor_ms else {
            self.anchor_ms = Some(start + self.delay_ms);
            return;
        };
        self.latest_start = self.latest_start.max(start);
        // Once a second, move toward where the buffers say sample 0 is heard.
        let samples_per_second = (1000.0 / self.period_ms) as u64;
        if n % samples_per_second.max(REANCHOR_SAMPLES) < REANCHOR_SAMPLES
            && self.latest_start.is_finite()
        {
            let measured = self.latest_start + self.delay_ms;
            self.anchor_ms = Some(anchor + (measured - anchor) * REANCHOR_RATE);
            self.latest_start = f64::NEG_INFINITY;
        }
    }

    /// The wall-clock time at which sample `n` is heard (`None` before the first reading).
    pub fn time_of(&self, n: u64) -> Option<f64> {
        self.anchor_ms.map(|a| a + n as f64 * self.period_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: f64 = 1_700_000_000_000.0;

    /// Renders `n` samples starting at wall-clock time `start` and returns the indices of
    /// the samples at which a click began.
    fn onsets(renderer: &mut ClickRenderer, start: f64, n: usize) -> Vec<usize> {
        let period = 1000.0 / f64::from(SAMPLE_RATE);
        let mut out = Vec::new();
        for i in 0..n {
            let was = renderer.sounding();
            renderer.sample(start + i as f64 * period, period);
            if renderer.sounding() && !was {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn clicks_begin_at_the_sample_of_their_wall_clock_time() {
        let mut r = ClickRenderer::default();
        r.command(ClickCommand::Add(Click {
            local_ms: T + 100.0,
            accent: true,
        }));
        r.command(ClickCommand::Add(Click {
            local_ms: T + 600.0,
            accent: false,
        }));
        let found = onsets(&mut r, T, SAMPLE_RATE as usize);
        // 100 ms and 600 ms at 48 kHz.
        assert_eq!(found, vec![4_800, 28_800]);
        assert_eq!(r.queued(), 0);
    }

    #[test]
    fn accents_are_louder_and_clicks_end() {
        let mut r = ClickRenderer::default();
        let period = 1000.0 / f64::from(SAMPLE_RATE);
        r.command(ClickCommand::Add(Click {
            local_ms: T,
            accent: true,
        }));
        let peak_accent = (0..2_400)
            .map(|i| r.sample(T + i as f64 * period, period).abs())
            .fold(0.0f32, f32::max);
        r.command(ClickCommand::Add(Click {
            local_ms: T + 100.0,
            accent: false,
        }));
        let peak_beat = (0..2_400)
            .map(|i| r.sample(T + 90.0 + i as f64 * period, period).abs())
            .fold(0.0f32, f32::max);
        assert!(peak_accent > peak_beat && peak_beat > 0.1);
        assert_eq!(r.sample(T + 1_000.0, period), 0.0, "a click fades out");
    }

    #[test]
    fn late_clicks_are_skipped_and_out_of_order_ones_refused() {
        let mut r = ClickRenderer::default();
        let period = 1000.0 / f64::from(SAMPLE_RATE);
        r.command(ClickCommand::Add(Click {
            local_ms: T,
            accent: false,
        }));
        r.command(ClickCommand::Add(Click {
            local_ms: T - 5.0,
            accent: false,
        }));
        assert_eq!(r.queued(), 1);
        // The audio thread comes back 200 ms late: the click is dropped, not sounded.
        assert_eq!(r.sample(T + 200.0, period), 0.0);
        assert_eq!(r.queued(), 0);
    }

    #[test]
    fn clear_forgets_the_clicks_after_a_time() {
        let mut r = ClickRenderer::default();
        for i in 0..4 {
            r.command(ClickCommand::Add(Click {
                local_ms: T + f64::from(i) * 500.0,
                accent: false,
            }));
        }
        r.command(ClickCommand::ClearFrom(T + 1_000.0));
        assert_eq!(r.queued(), 2);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut r = ClickRenderer::default();
        for i in 0..(MAX_QUEUED_CLICKS + 10) {
            r.command(ClickCommand::Add(Click {
                local_ms: T + i as f64,
                accent: false,
            }));
        }
        assert_eq!(r.queued(), MAX_QUEUED_CLICKS);
    }

    #[test]
    fn the_sample_clock_anchors_at_the_first_pull_plus_the_delay_and_follows_drift() {
        let mut c = SampleClock::new(SAMPLE_RATE, 40.0);
        assert_eq!(c.time_of(0), None);
        c.reading(0, T);
        assert_eq!(c.time_of(0), Some(T + 40.0));
        assert_eq!(c.time_of(48_000), Some(T + 1_040.0));
        // The card runs 100 ppm slow against the system clock: each pull comes later than
        // the nominal rate says. After a minute the anchor has followed most of the way.
        let ppm = 100e-6;
        for n in (REANCHOR_SAMPLES..48_000 * 60).step_by(REANCHOR_SAMPLES as usize) {
            let wall = T + n as f64 * c.period_ms() * (1.0 + ppm);
            c.reading(n, wall);
        }
        let n = 48_000 * 60;
        let truth = T + 40.0 + n as f64 * c.period_ms() * (1.0 + ppm);
        let error = (c.time_of(n).unwrap() - truth).abs();
        assert!(error < 1.0, "{error} ms off after a minute of drift");
    }
}

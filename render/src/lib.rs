//! bandsync-render: the offline renderer of repository streams: musical parameters in, stereo 44.1 kHz out.
//!
//! - `score`: which sixteenth-note steps sound and what they play (seeded, exact).
//! - `instruments`: the eight instruments as fundsp graphs, one per note.
//! - here: the note loop, the final level rule and the content hash.
//!
//! Guarantees:
//! - **Deterministic.** The same parameters give bit-identical samples: the only randomness is
//!   the score's ChaCha8 stream seeded by `params.seed` and the per-note hashes it draws; no
//!   clock, no threads, no global generator, no hash-map order. (Bit-identity holds per build:
//!   fundsp's SIMD maths is fixed at compile time, so two binaries built for different CPU
//!   features may differ in the last bits. Identify compositions by their parameters.)
//! - **Bounded.** Peak at most [`PEAK`] (below 1.0), never NaN or infinite.
//! - **Proportional cost.** Each note is rendered only for its gate plus release and mixed in
//!   at its onset, so cost follows the notes played, not notes times buffer length.
//!
//! Rendering is CPU work with no realtime constraint: callers run it off the engine thread and
//! off the async workers.

mod instruments;
mod score;
#[cfg(test)]
mod tests;
mod voices;

use bandsync_protocol::repo::{MusicalParams, SAMPLE_RATE};
use sha1::{Digest, Sha1};

/// Every composition's peak after the level rule: -1 dBFS, headroom for a browser's resampler.
pub const PEAK: f32 = 0.891;

/// The last this many seconds fade out linearly, so a note cut by the end does not click.
const END_FADE_SECONDS: f64 = 0.01;

/// A rendered composition: stereo f32 at 44.1 kHz, planar.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Left, right; each `params.frames()` long.
    pub channels: [Vec<f32>; 2],
}

impl Rendered {
    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels[0].len()
    }

    /// Seconds.
    pub fn duration(&self) -> f64 {
        self.frames() as f64 / f64::from(SAMPLE_RATE)
    }

    /// SHA-1 of the samples' bits (left then right, little-endian): equal exactly when the
    /// audio is bit-identical.
    pub fn content_hash(&self) -> [u8; 20] {
        let mut hasher = Sha1::new();
        for channel in &self.channels {
            for s in channel {
                hasher.update(s.to_bits().to_le_bytes());
            }
        }
        hasher.finalize().into()
    }
}

/// Renders `params` (already validated: see [`MusicalParams::validate`]). Out-of-range values
/// are still bounded (the duration to the protocol's maximum), never trusted.
pub fn render(params: &MusicalParams) -> Rendered {
    let frames = params.frames().min(max_frames());
    let instrument = params.instrument_type;
    let voicing = instruments::voicing(instrument);
    let score = score::score(params, frames, voicing.triads);
    let mut channels = [vec![0.0f32; frames], vec![0.0f32; frames]];
    let release = (voicing.release * SAMPLE_RATE as f32).ceil() as usize;
    let gates: Vec<usize> = score
        .notes
        .iter()
        .map(|note| match voicing.hold_steps {
            Some(steps) => (steps * score.step_frames).round() as usize,
            None => note.until_next,
        })
        .collect();
    let onsets: Vec<usize> = score.notes.iter().map(|n| n.onset).collect();
    let mut lengths: Vec<usize> = gates.iter().map(|g| g + release).collect();
    let cut = voices::limit(&onsets, &mut lengths, voices::MAX_VOICES);
    for (k, note) in score.notes.iter().enumerate() {
        let sound = instruments::Sound {
            gate: gates[k],
            length: lengths[k],
            fade_out: if cut[k] { voices::STEAL_FADE } else { 0 },
        };
        instruments::play(instrument, note, sound, voicing, &mut channels);
    }
    level(&mut channels);
    Rendered { channels }
}

fn max_frames() -> usize {
    (bandsync_protocol::repo::MAX_DURATION * f64::from(SAMPLE_RATE)).round() as usize
}

/// The level rule, fixed and deterministic: anything not finite becomes silence (no fundsp
/// graph here produces it; this is a guarantee, not a repair), then one gain brings the peak of
/// both channels to [`PEAK`] (louder or quieter: every composition arrives at the same level,
/// whatever the instrument or the number of voices), then the end fades out. A silent
/// composition (density 0) stays silent.
fn level(channels: &mut [Vec<f32>; 2]) {
    let mut peak = 0.0f32;
    for s in channels.iter_mut().flat_map(|c| c.iter_mut()) {
        if !s.is_finite() {
            *s = 0.0;
        }
        peak = peak.max(s.abs());
    }
    // Below this a composition is silence plus rounding, not something to amplify.
    if peak > 1e-6 {
        let gain = PEAK / peak;
        for s in channels.iter_mut().flat_map(|c| c.iter_mut()) {
            *s *= gain;
        }
    }
    let fade = (END_FADE_SECONDS * f64::from(SAMPLE_RATE)) as usize;
    for channel in channels.iter_mut() {
        let n = channel.len();
        let start = n.saturating_sub(fade);
        for (k, s) in channel[start..].iter_mut().enumerate() {
            *s *= (n - start - k) as f32 / (fade as f32 + 1.0);
        }
    }
}

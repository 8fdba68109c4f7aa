//! The score: which sixteenth-note steps sound, which notes each plays, how loud and where.
//!
//! Every random choice comes from one ChaCha8 stream seeded by `params.seed`, drawn in a fixed
//! order (step choice, then notes, then placement), so the same parameters always give the same
//! score. Nothing here touches audio: [`super::instruments`] turns each [`NoteEvent`] into sound.

use bandsync_protocol::repo::{MusicalParams, Pattern, SAMPLE_RATE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Steps per beat: the score's grid is sixteenth notes.
pub(crate) const STEPS_PER_BEAT: usize = 4;

/// One note to play.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NoteEvent {
    /// First frame of the note.
    pub onset: usize,
    /// Frames until the next sounding step starts (or the composition ends): how long a legato
    /// instrument holds the note.
    pub until_next: usize,
    /// MIDI note number.
    pub midi: u8,
    /// 0 to 1: accents on the bar and the beat.
    pub velocity: f32,
    /// -1 (left) to 1 (right), kept within about ±0.6: gentle placement, never hard-panned.
    pub pan: f32,
    /// Seeds the voice's own randomness (noise, a plucked string's excitation).
    pub seed: u64,
}

/// The grid of a composition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Score {
    /// Frames per sixteenth-note step (fractional: onsets are rounded per step, never
    /// accumulated, so they do not drift from the tempo).
    pub step_frames: f64,
    pub notes: Vec<NoteEvent>,
}

/// Frame of step `i`'s onset.
pub(crate) fn step_onset(step_frames: f64, i: usize) -> usize {
    (i as f64 * step_frames).round() as usize
}

/// Builds the score of a composition `frames` long (the caller bounds it). `triads` makes every
/// non-chord step a triad of the scale and holds a chord through the steps that repeat it (the
/// pad). Call with validated parameters; an out-of-range tempo is still clamped here, so a bad
/// caller costs nothing extra.
pub(crate) fn score(params: &MusicalParams, frames: usize, triads: bool) -> Score {
    use bandsync_protocol::repo::{MAX_TEMPO, MIN_TEMPO};
    let tempo = if params.tempo.is_finite() {
        params.tempo.clamp(MIN_TEMPO, MAX_TEMPO)
    } else {
        MIN_TEMPO
    };
    let step_frames = 60.0 / tempo / STEPS_PER_BEAT as f64 * f64::from(SAMPLE_RATE);
    let steps = (0..)
        .take_while(|&i| step_onset(step_frames, i) < frames)
        .count();
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(params.seed));

    let sounding = choose_steps(steps, params.density, &mut rng);
    let scale = sorted_scale(params);
    let mut notes = Vec::new();
    if scale.is_empty() {
        return Score { step_frames, notes };
    }
    // Each sounding step and its notes, drawn in step order.
    let steps_played: Vec<(usize, Vec<u8>)> = sounding
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .enumerate()
        .map(|(played, (i, _))| {
            (
                i,
                pick_notes(params.pattern, &scale, played, triads, &mut rng),
            )
        })
        .collect();
    for (k, (i, chord)) in steps_played.iter().enumerate() {
        // Held chords (`triads`) carry on through steps that repeat them.
        if triads && k > 0 && steps_played[k - 1].1 == *chord {
            continue;
        }
        let onset = step_onset(step_frames, *i);
        let next = steps_played[k + 1..]
            .iter()
            .find(|(_, c)| !triads || c != chord)
            .map_or(frames, |(j, _)| step_onset(step_frames, *j));
        for &midi in chord {
            notes.push(NoteEvent {
                onset,
                until_next: next - onset,
                midi,
                velocity: accent(*i),
                pan: placement(midi, &scale, &mut rng),
                seed: rng.random(),
            });
        }
    }
    Score { step_frames, notes }
}

/// Which of `steps` sound: `density` of them (rounded), always including every beat (each
/// fourth step) when density is above zero, so the onsets mark the tempo. The off-beat steps
/// are a seeded partial shuffle, so the count is exact rather than a coin toss per step.
fn choose_steps(steps: usize, density: f64, rng: &mut ChaCha8Rng) -> Vec<bool> {
    let mut sounding = vec![false; steps];
    // NaN counts as zero.
    if density.is_nan() || density <= 0.0 {
        return sounding;
    }
    let density = density.min(1.0);
    let mut off_beats = Vec::with_capacity(steps);
    for (i, s) in sounding.iter_mut().enumerate() {
        if i.is_multiple_of(STEPS_PER_BEAT) {
            *s = true;
        } else {
            off_beats.push(i);
        }
    }
    let beats = steps - off_beats.len();
    let target = (density * steps as f64).round() as usize;
    let extra = target.saturating_sub(beats).min(off_beats.len());
    for k in 0..extra {
        let j = rng.random_range(k..off_beats.len());
        off_beats.swap(k, j);
        sounding[off_beats[k]] = true;
    }
    sounding
}

/// The scale's distinct notes, low to high.
fn sorted_scale(params: &MusicalParams) -> Vec<u8> {
    let mut scale: Vec<u8> = params.notes().iter().map(|n| n.midi).collect();
    scale.sort_unstable();
    scale.dedup();
    scale
}

/// The notes of the `played`-th sounding step.
fn pick_notes(
    pattern: Pattern,
    scale: &[u8],
    played: usize,
    triads: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let n = scale.len();
    let index = match pattern {
        Pattern::Chord => return scale.to_vec(),
        Pattern::Ascending => played % n,
        Pattern::Descending => n - 1 - played % n,
        Pattern::Arpeggio if n == 1 => 0,
        Pattern::Arpeggio => {
            // Up and back down without repeating the turning notes: 0 1 2 1 0 1 2 ...
            let k = played % (2 * n - 2);
            if k < n {
                k
            } else {
                2 * n - 2 - k
            }
        }
        Pattern::Random => rng.random_range(0..n),
    };
    if !triads {
        return vec![scale[index]];
    }
    // A triad built in the scale: the note, the scale note two above and four above, an octave
    // up where that runs past the top of the scale.
    let mut chord: Vec<u8> = [0, 2, 4]
        .iter()
        .filter_map(|offset| {
            let k = index + offset;
            let octaves = u8::try_from(k / n).ok()?;
            scale[k % n].checked_add(octaves.checked_mul(12)?)
        })
        .filter(|m| *m <= 127)
        .collect();
    chord.sort_unstable();
    chord.dedup();
    chord
}

/// Accents: the bar's first step loudest, then beats, then eighths.
fn accent(step: usize) -> f32 {
    if step.is_multiple_of(4 * STEPS_PER_BEAT) {
        1.0
    } else if step.is_multiple_of(STEPS_PER_BEAT) {
        0.85
    } else if step.is_multiple_of(2) {
        0.7
    } else {
        0.6
    }
}

/// Low notes lean left, high notes right, with a little seeded spread so even a one-note scale
/// gives two different channels.
fn placement(midi: u8, scale: &[u8], rng: &mut ChaCha8Rng) -> f32 {
    let rank = scale
        .iter()
        .position(|m| *m >= midi)
        .unwrap_or(scale.len() - 1);
    let spread = if scale.len() > 1 {
        rank as f32 / (scale.len() - 1) as f32 * 2.0 - 1.0
    } else {
        0.0
    };
    (spread * 0.4 + rng.random_range(-0.2f32..0.2)).clamp(-0.6, 0.6)
}

//! The polyphony limit: at most [`MAX_VOICES`] notes sound at once. When a note starts with
//! the limit reached, the oldest sounding note is cut at that onset (with a short fade, so it
//! does not click), as a hardware synthesizer steals a voice.
//!
//! Why: each note costs the renderer its whole length, so the notes sounding at once are
//! what a composition costs. Dense chords of ringing instruments (a plucked string holds
//! three steps and rings on) would otherwise stack up 25 voices at 240 BPM, and the worst
//! case the parameters allow would render slower than 100 times realtime.

/// Notes that may sound at once (Tone.js's `PolySynth` allows 32 by default; twelve cover a
/// held triad under two chords of six).
pub(crate) const MAX_VOICES: usize = 12;

/// Frames over which a stolen note fades out (5 ms).
pub(crate) const STEAL_FADE: usize = 220;

/// Cuts `lengths` (each note's frames, in the order of `onsets`, which ascend) so that at
/// most `max` notes sound at any frame. Returns, per note, whether it was cut.
pub(crate) fn limit(onsets: &[usize], lengths: &mut [usize], max: usize) -> Vec<bool> {
    let mut cut = vec![false; onsets.len()];
    // Sounding notes, oldest first.
    let mut sounding: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for (i, &onset) in onsets.iter().enumerate() {
        sounding.retain(|&j| onsets[j] + lengths[j] > onset);
        while sounding.len() >= max.max(1) {
            let Some(oldest) = sounding.pop_front() else {
                break;
            };
            lengths[oldest] = (onset - onsets[oldest] + STEAL_FADE).min(lengths[oldest]);
            cut[oldest] = true;
        }
        sounding.push_back(i);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sounding_at(onsets: &[usize], lengths: &[usize], frame: usize) -> usize {
        onsets
            .iter()
            .zip(lengths)
            .filter(|(o, l)| **o <= frame && frame < **o + **l)
            .count()
    }

    #[test]
    fn the_oldest_note_is_cut_when_a_new_one_would_pass_the_limit() {
        // Six notes every 100 frames, each 1,000 long: at most three may sound.
        let onsets: Vec<usize> = (0..6).map(|i| i * 1_000).collect();
        let mut lengths = vec![5_000; 6];
        let cut = limit(&onsets, &mut lengths, 3);
        assert_eq!(cut, [true, true, true, false, false, false]);
        assert_eq!(lengths[0], 3_000 + STEAL_FADE);
        for frame in (0..10_000).step_by(50) {
            // The fade of a stolen note overlaps the new one by STEAL_FADE frames.
            let limit = if frame % 1_000 < STEAL_FADE { 4 } else { 3 };
            assert!(sounding_at(&onsets, &lengths, frame) <= limit, "at {frame}");
        }
    }

    #[test]
    fn notes_within_the_limit_are_left_alone() {
        let onsets = [0, 0, 0, 500, 500, 500];
        let mut lengths = [400; 6];
        assert!(limit(&onsets, &mut lengths, 3).iter().all(|c| !c));
        assert_eq!(lengths, [400; 6]);
    }
}

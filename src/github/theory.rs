//! The small amount of music theory and arithmetic the mapper needs: modes as intervals,
//! note names, a stable hash for keys and seeds, and the curves that turn unbounded counts
//! into bounded parameters. Everything here is deterministic across platforms and Rust
//! releases (no `DefaultHasher`, whose output may change between releases).

/// Semitone steps above the root. Scales span an octave (or a little more for the
/// pentatonics, so they still have eight notes); the seventh chords are four notes, for
/// the pad's `chord` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Major,
    Minor,
    MajorPentatonic,
    MinorPentatonic,
    /// Minor with a flattened second: the darkest of the church modes, for failures.
    Phrygian,
    Major7,
    Minor7,
}

impl Mode {
    pub fn intervals(self) -> &'static [u8] {
        match self {
            Mode::Major => &[0, 2, 4, 5, 7, 9, 11, 12],
            Mode::Minor => &[0, 2, 3, 5, 7, 8, 10, 12],
            Mode::MajorPentatonic => &[0, 2, 4, 7, 9, 12, 14, 16],
            Mode::MinorPentatonic => &[0, 3, 5, 7, 10, 12, 15, 17],
            Mode::Phrygian => &[0, 1, 3, 5, 7, 8, 10, 12],
            Mode::Major7 => &[0, 4, 7, 11],
            Mode::Minor7 => &[0, 3, 7, 10],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Major => "major",
            Mode::Minor => "minor",
            Mode::MajorPentatonic => "major pentatonic",
            Mode::MinorPentatonic => "minor pentatonic",
            Mode::Phrygian => "phrygian",
            Mode::Major7 => "major seventh chord",
            Mode::Minor7 => "minor seventh chord",
        }
    }
}

const PITCH_CLASSES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// Lowest and highest octave the mapper roots a scale in: with at most 17 semitones above
/// the root, every note stays between `C2` and `E7`, names the note parser accepts.
pub const MIN_OCTAVE: u8 = 2;
pub const MAX_OCTAVE: u8 = 5;

/// `C4` for MIDI 60; sharps, never flats.
pub fn note_name(midi: u8) -> String {
    let octave = i32::from(midi / 12) - 1;
    format!("{}{octave}", PITCH_CLASSES[usize::from(midi % 12)])
}

/// The note names of `mode` on pitch class `root` (0 = C) in `octave` (clamped to
/// [`MIN_OCTAVE`]..=[`MAX_OCTAVE`]).
pub fn scale(root: u8, octave: u8, mode: Mode) -> Vec<String> {
    let octave = octave.clamp(MIN_OCTAVE, MAX_OCTAVE);
    let base = (octave + 1) * 12 + root % 12;
    mode.intervals()
        .iter()
        .map(|step| note_name(base + step))
        .collect()
}

/// 32-bit FNV-1a: a fixed, documented hash, so the same repository is in the same key and
/// the same delivery has the same seed on every machine and every build.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// 0 for `n = 0` rising to 1 at `n = full` (and staying there): `ln(1+n) / ln(1+full)`.
/// Counts on GitHub span orders of magnitude (one commit or fifty, ten lines or ten
/// thousand), so equal ratios give equal steps.
pub fn log_curve(n: u64, full: u64) -> f64 {
    let full = full.max(1);
    let n = n.min(full) as f64;
    (n.ln_1p() / (full as f64).ln_1p()).clamp(0.0, 1.0)
}

/// `min(n, full) / full`: for counts whose steps should sound equal.
pub fn linear(n: u64, full: u64) -> f64 {
    let full = full.max(1);
    n.min(full) as f64 / full as f64
}

/// `lo` at `t = 0`, `hi` at `t = 1`.
pub fn lerp(lo: f64, hi: f64, t: f64) -> f64 {
    lo + (hi - lo) * t.clamp(0.0, 1.0)
}

/// Untrusted text for a one-line summary: control characters (newlines, tabs, bidi
/// overrides) become spaces, runs of spaces collapse, and at most `max_chars` characters
/// are kept (an ellipsis marks a cut).
pub fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        if chars == max_chars {
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
        last_space = c == ' ';
        out.push(c);
        chars += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::repo::Note;

    #[test]
    fn note_names_round_trip_through_the_protocol_parser() {
        for midi in 12..=119u8 {
            let name = note_name(midi);
            assert_eq!(name.parse::<Note>().map(|n| n.midi), Ok(midi), "{name}");
        }
        assert_eq!(note_name(60), "C4");
        assert_eq!(note_name(69), "A4");
    }

    #[test]
    fn scales_start_on_the_root_in_the_asked_octave() {
        assert_eq!(
            scale(0, 4, Mode::Major),
            ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
        );
        assert_eq!(scale(9, 3, Mode::Minor7), ["A3", "C4", "E4", "G4"]);
        assert_eq!(
            scale(14, 9, Mode::Minor)[0],
            "D5",
            "root and octave are clamped"
        );
    }

    #[test]
    fn fnv_matches_the_reference_values() {
        // The FNV reference test vectors (draft-eastlake-fnv).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn curves_are_bounded_and_monotonic() {
        assert_eq!(log_curve(0, 20), 0.0);
        assert_eq!(log_curve(20, 20), 1.0);
        assert_eq!(log_curve(u64::MAX, 20), 1.0);
        assert!(log_curve(3, 20) > log_curve(2, 20));
        assert_eq!(log_curve(5, 0), 1.0);
        assert_eq!(linear(25, 50), 0.5);
        assert_eq!(linear(u64::MAX, 50), 1.0);
        assert_eq!(lerp(3.0, 8.0, 2.0), 8.0);
    }

    #[test]
    fn one_line_strips_controls_and_bounds_length() {
        assert_eq!(one_line("fix:\n\tthe  bug\u{202e}", 100), "fix: the bug");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("ab  cdef", 3), "ab…");
        assert_eq!(one_line("   ", 10), "");
        assert_eq!(one_line("éé", 2), "éé");
    }
}

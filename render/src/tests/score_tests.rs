//! The score: which steps sound and which notes they play.

use super::*;

#[test]
fn the_score_sounds_the_density_share_of_steps_and_every_beat() {
    let p = MusicalParams {
        duration: 8.0,
        ..params(InstrumentType::Synth, &["C4"])
    };
    let steps = 64; // 8 s at 120 BPM in sixteenths
    for density in [0.1, 0.25, 0.5, 0.8, 1.0] {
        let q = MusicalParams {
            density,
            ..p.clone()
        };
        let s = score(&q, q.frames(), false);
        let expected = ((density * steps as f64).round() as usize).max(steps / 4);
        assert_eq!(s.notes.len(), expected, "density {density}");
        for beat in (0..steps).step_by(4) {
            let onset = step_onset(s.step_frames, beat);
            assert!(s.notes.iter().any(|n| n.onset == onset), "beat {beat}");
        }
    }
    let silent = score(&MusicalParams { density: 0.0, ..p }, 100_000, false);
    assert!(silent.notes.is_empty());
}

#[test]
fn patterns_order_the_scale_as_named() {
    // Out of order on purpose: patterns go by pitch, not by listing.
    let triad = ["G4", "C4", "E4"];
    let midi = |pattern, scale: &[&str], triads| {
        let p = MusicalParams {
            density: 1.0,
            pattern,
            ..params(InstrumentType::Synth, scale)
        };
        let s = score(&p, p.frames(), triads);
        let mut by_onset: Vec<Vec<u8>> = Vec::new();
        let mut last = None;
        for n in &s.notes {
            if last != Some(n.onset) {
                by_onset.push(Vec::new());
                last = Some(n.onset);
            }
            by_onset.last_mut().unwrap().push(n.midi);
        }
        by_onset.truncate(6);
        by_onset
    };
    let one = |v: &[u8]| v.iter().map(|m| vec![*m]).collect::<Vec<_>>();
    let ascending = midi(Pattern::Ascending, &triad, false);
    assert_eq!(ascending, one(&[60, 64, 67, 60, 64, 67]));
    let descending = midi(Pattern::Descending, &triad, false);
    assert_eq!(descending, one(&[67, 64, 60, 67, 64, 60]));
    let arpeggio = midi(Pattern::Arpeggio, &triad, false);
    assert_eq!(arpeggio, one(&[60, 64, 67, 64, 60, 64]));
    assert_eq!(
        midi(Pattern::Chord, &triad, false),
        vec![vec![60, 64, 67]; 6]
    );
    // A chord of a long scale: six notes, spread from its lowest to its highest.
    let chromatic: Vec<String> = ["C4", "C#4", "D4", "D#4", "E4", "F4", "F#4", "G4"]
        .iter()
        .chain(&["G#4", "A4", "A#4", "B4", "C5", "C#5", "D5", "D#5"])
        .map(|s| s.to_string())
        .collect();
    let chromatic: Vec<&str> = chromatic.iter().map(String::as_str).collect();
    assert_eq!(
        midi(Pattern::Chord, &chromatic, false)[0],
        vec![60, 63, 66, 69, 72, 75]
    );
    // The pad's triads: the note, two and four scale notes above, wrapping up an octave.
    let major = ["C4", "D4", "E4", "F4", "G4", "A4", "B4"];
    assert_eq!(
        midi(Pattern::Descending, &major, true)[..3],
        [vec![71, 74, 77], vec![69, 72, 76], vec![67, 71, 74]]
    );
    let random = midi(Pattern::Random, &triad, false);
    assert!(random.iter().flatten().all(|m| [60, 64, 67].contains(m)));
}

//! The renderer sounds like what it claims: reproducible, on the scale's notes, on the tempo's
//! grid, neither silent nor clipped, and each instrument its own sound.

use super::score::{score, step_onset};
use super::*;
use bandsync_protocol::repo::{InstrumentType, Pattern};
use rustfft::{num_complex::Complex, FftPlanner};

const SR: f64 = SAMPLE_RATE as f64;

/// The instruments whose notes have a definite pitch.
const PITCHED: [InstrumentType; 6] = [
    InstrumentType::Synth,
    InstrumentType::Fm,
    InstrumentType::Am,
    InstrumentType::Pluck,
    InstrumentType::Pad,
    InstrumentType::Membrane,
];

fn params(instrument: InstrumentType, scale: &[&str]) -> MusicalParams {
    MusicalParams {
        tempo: 120.0,
        scale: scale.iter().map(|s| s.to_string()).collect(),
        instrument_type: instrument,
        duration: 2.0,
        density: 0.5,
        pattern: Pattern::Arpeggio,
        seed: 42,
    }
}

fn mono(r: &Rendered) -> Vec<f32> {
    let [l, r] = &r.channels;
    l.iter().zip(r).map(|(a, b)| 0.5 * (a + b)).collect()
}

fn hz(name: &str) -> f64 {
    name.parse::<bandsync_protocol::repo::Note>()
        .unwrap()
        .frequency()
}

/// Welch's average magnitude spectrum: 8192-point Hann frames (5.4 Hz bins) every 2048
/// samples. Averaging magnitudes over frames smooths out the comb that repeated notes with
/// different phases leave in one long transform. Returns the spectrum and the bin width in Hz.
fn spectrum(x: &[f32]) -> (Vec<f64>, f64) {
    const N: usize = 8192;
    let fft = FftPlanner::new().plan_fft_forward(N);
    let mut total = vec![0.0; N / 2];
    let window: Vec<f64> = (0..N)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos())
        .collect();
    for start in (0..x.len().saturating_sub(N - 1)).step_by(N / 4) {
        let mut buf: Vec<Complex<f64>> = x[start..start + N]
            .iter()
            .zip(&window)
            .map(|(s, w)| Complex::new(f64::from(*s) * w, 0.0))
            .collect();
        fft.process(&mut buf);
        for (t, c) in total.iter_mut().zip(&buf) {
            *t += c.norm();
        }
    }
    (total, SR / N as f64)
}

/// Cents from `f` to the nearest of `notes` or one of their octaves (two below to three above).
fn cents_off_scale(f: f64, notes: &[f64]) -> f64 {
    notes
        .iter()
        .flat_map(|n| (-2..=3).map(move |k| n * 2f64.powi(k)))
        .map(|target| (1200.0 * (f / target).log2()).abs())
        .fold(f64::INFINITY, f64::min)
}

/// The `count` strongest spectral peaks (above 40 Hz), each at least a semitone from the others.
fn strongest_peaks(x: &[f32], count: usize) -> Vec<f64> {
    let (mags, bin) = spectrum(x);
    let mut order: Vec<usize> = (1..mags.len() - 1)
        .filter(|&i| i as f64 * bin > 40.0 && mags[i] >= mags[i - 1] && mags[i] >= mags[i + 1])
        .collect();
    order.sort_by(|a, b| mags[*b].total_cmp(&mags[*a]));
    let mut peaks: Vec<f64> = Vec::new();
    for i in order {
        // A parabola through the log magnitudes of the peak and its neighbours places the
        // peak between bins.
        let (a, b, c) = (mags[i - 1].ln(), mags[i].ln(), mags[i + 1].ln());
        let shift = if a - 2.0 * b + c < 0.0 {
            0.5 * (a - c) / (a - 2.0 * b + c)
        } else {
            0.0
        };
        let f = (i as f64 + shift) * bin;
        if peaks
            .iter()
            .all(|p| (1200.0 * (f / p).log2()).abs() > 100.0)
        {
            peaks.push(f);
            if peaks.len() == count {
                break;
            }
        }
    }
    peaks
}

/// Energy-envelope onset detector: short-window energy (5.8 ms windows every 1.45 ms); an
/// onset is where the energy exceeds 1.6 times the loudest window of the 10 to 30 ms before
/// (the span is longer than the beating of two notes a few semitones apart, so beating is not
/// taken for an attack) and reaches 2% of the loudest window, then nothing for 40 ms. Returns
/// seconds (the centre of the window where the rise began).
fn onsets(x: &[f32]) -> Vec<f64> {
    const HOP: usize = 64;
    const WINDOW: usize = 256;
    let near = (0.010 * SR) as usize / HOP;
    let far = (0.030 * SR) as usize / HOP;
    // Silence before the first sample, so a note at time zero is a rise like any other.
    let lead = far * HOP;
    let x: Vec<f32> = std::iter::repeat_n(0.0, lead)
        .chain(x.iter().copied())
        .collect();
    let energy: Vec<f64> = (0..x.len().saturating_sub(WINDOW) / HOP)
        .map(|k| {
            x[k * HOP..k * HOP + WINDOW]
                .iter()
                .map(|s| f64::from(*s).powi(2))
                .sum()
        })
        .collect();
    let loudest = energy.iter().copied().fold(0.0, f64::max);
    let refractory = (0.040 * SR) as usize / HOP;
    let mut found = Vec::new();
    let mut k = far;
    while k < energy.len() {
        let before = energy[k - far..=k - near]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        if energy[k] > 1.6 * before + 1e-12 && energy[k] > 0.02 * loudest {
            // Walk back to where the rise began, so the onset is not late by the window.
            let mut start = k;
            while start > k - near && energy[start - 1] < energy[start] {
                start -= 1;
            }
            found.push(((start * HOP + WINDOW / 2) as f64 - lead as f64) / SR);
            k += refractory;
        } else {
            k += 1;
        }
    }
    found
}

fn peak(r: &Rendered) -> f32 {
    r.channels
        .iter()
        .flatten()
        .fold(0.0f32, |m, s| m.max(s.abs()))
}

fn rms(r: &Rendered) -> f64 {
    let n = (2 * r.frames()) as f64;
    (r.channels
        .iter()
        .flatten()
        .map(|s| f64::from(*s).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[test]
fn the_same_parameters_render_bit_identical_audio_and_another_seed_does_not() {
    for instrument in InstrumentType::ALL {
        let p = params(instrument, &["C4", "E4", "G4", "B4"]);
        let first = render(&p);
        let second = render(&p.clone());
        assert_eq!(first.frames(), p.frames(), "{instrument}");
        assert_eq!(first.channels[1].len(), p.frames(), "{instrument}");
        assert_eq!(first.content_hash(), second.content_hash(), "{instrument}");
        let reseeded = render(&MusicalParams { seed: 43, ..p });
        assert_ne!(
            first.content_hash(),
            reseeded.content_hash(),
            "{instrument}"
        );
        assert_ne!(first.channels[0], first.channels[1], "{instrument}: stereo");
    }
}

#[test]
fn a_one_note_scale_sounds_at_that_note() {
    for instrument in PITCHED {
        for note in ["A3", "C4", "F#4"] {
            let r = render(&params(instrument, &[note]));
            let [strongest] = strongest_peaks(&mono(&r), 1)[..] else {
                panic!("{instrument} {note}: no peak");
            };
            let off = cents_off_scale(strongest, &[hz(note)]);
            assert!(
                off < 15.0,
                "{instrument} {note}: strongest peak {strongest:.1} Hz is {off:.0} cents off"
            );
        }
    }
}

#[test]
fn the_strongest_pitches_of_a_melody_are_its_scale_notes() {
    let scale = ["C4", "E4", "G4"];
    let notes: Vec<f64> = scale.iter().map(|n| hz(n)).collect();
    for instrument in PITCHED {
        let r = render(&MusicalParams {
            density: 1.0,
            ..params(instrument, &scale)
        });
        for f in strongest_peaks(&mono(&r), 3) {
            let off = cents_off_scale(f, &notes);
            assert!(
                off < 15.0,
                "{instrument}: peak {f:.1} Hz is {off:.0} cents from the scale"
            );
        }
    }
}

#[test]
fn onsets_fall_on_the_sixteenth_note_grid_of_the_tempo() {
    for instrument in [
        InstrumentType::Synth,
        InstrumentType::Pluck,
        InstrumentType::Membrane,
        InstrumentType::Metal,
    ] {
        let p = params(instrument, &["C4", "E4", "G4"]);
        let r = render(&p);
        let grid = score(&p, p.frames(), false);
        let detected = onsets(&mono(&r));
        let step = grid.step_frames / SR;
        for t in &detected {
            let off = (t / step - (t / step).round()).abs() * step;
            assert!(
                off < 0.010,
                "{instrument}: onset at {t:.4} s is {off:.4} s off the grid"
            );
        }
        // Every beat is heard as an onset. An off-beat note may be masked by a louder one still
        // ringing (a soft pluck under an accented one), which no energy detector can hear, so
        // of all notes three in four must be found.
        let found = |n: &&super::score::NoteEvent| {
            let t = n.onset as f64 / SR;
            detected.iter().any(|d| (d - t).abs() < 0.010)
        };
        let beat = |n: &&super::score::NoteEvent| {
            let steps = n.onset as f64 / grid.step_frames;
            (steps.round() as usize).is_multiple_of(4)
        };
        let missed: Vec<_> = grid
            .notes
            .iter()
            .filter(beat)
            .filter(|n| !found(n))
            .collect();
        assert!(
            missed.is_empty(),
            "{instrument}: beats not detected: {missed:?}"
        );
        let hits = grid.notes.iter().filter(found).count();
        assert!(
            hits * 4 >= grid.notes.len() * 3,
            "{instrument}: {hits} of {} notes detected",
            grid.notes.len()
        );
    }
}

#[test]
fn onset_spacing_scales_with_the_tempo() {
    // Density 0.25 sounds exactly the beats.
    let spacing = |tempo: f64| {
        let p = MusicalParams {
            tempo,
            density: 0.25,
            duration: 4.0,
            ..params(InstrumentType::Pluck, &["A3"])
        };
        let detected = onsets(&mono(&render(&p)));
        let mut gaps: Vec<f64> = detected.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 4, "{tempo} BPM: {detected:?}");
        gaps.sort_by(f64::total_cmp);
        gaps[gaps.len() / 2]
    };
    let slow = spacing(90.0);
    let fast = spacing(180.0);
    assert!((slow - 60.0 / 90.0).abs() < 0.010, "90 BPM: {slow}");
    assert!((fast - 60.0 / 180.0).abs() < 0.010, "180 BPM: {fast}");
    assert!((slow / fast - 2.0).abs() < 0.05, "{slow} / {fast}");
}

#[test]
fn every_instrument_is_audible_and_unclipped_even_at_full_density_with_sixteen_note_chords() {
    let scale = [
        "C2", "G2", "C3", "E3", "G3", "Bb3", "C4", "D4", "E4", "F#4", "G4", "A4", "C5", "E5", "G5",
        "B8",
    ];
    for instrument in InstrumentType::ALL {
        let p = MusicalParams {
            density: 1.0,
            pattern: Pattern::Chord,
            tempo: 240.0,
            duration: 1.0,
            ..params(instrument, &scale)
        };
        let r = render(&p);
        assert!(
            r.channels.iter().flatten().all(|s| s.is_finite()),
            "{instrument}"
        );
        assert!(peak(&r) <= 1.0, "{instrument}: peak {}", peak(&r));
        assert!(rms(&r) > 0.02, "{instrument}: rms {}", rms(&r));
    }
}

#[test]
fn extreme_notes_and_tempi_stay_finite_and_bounded() {
    for instrument in InstrumentType::ALL {
        for (scale, tempo) in [(["C0"], 40.0), (["B8"], 240.0)] {
            let r = render(&MusicalParams {
                tempo,
                density: 1.0,
                ..params(instrument, &scale)
            });
            assert!(
                r.channels.iter().flatten().all(|s| s.is_finite()),
                "{instrument}"
            );
            assert!(peak(&r) <= 1.0, "{instrument} {scale:?}");
            assert!(rms(&r) > 0.001, "{instrument} {scale:?}: rms {}", rms(&r));
        }
    }
}

#[test]
fn density_zero_is_silence_and_an_overlong_duration_is_bounded() {
    let r = render(&MusicalParams {
        density: 0.0,
        ..params(InstrumentType::Synth, &["C4"])
    });
    assert!(r.channels.iter().flatten().all(|s| *s == 0.0));
    let r = render(&MusicalParams {
        duration: 1e9,
        density: 0.0,
        ..params(InstrumentType::Synth, &["C4"])
    });
    assert_eq!(r.frames(), max_frames());
}

/// Average magnitude spectrum over 2048-point frames, in bins up to 11 kHz, summing to 1.
fn spectral_shape(x: &[f32]) -> Vec<f64> {
    const N: usize = 2048;
    let fft = FftPlanner::new().plan_fft_forward(N);
    let mut total = vec![0.0; N / 4];
    for frame in x.chunks_exact(N) {
        let mut buf: Vec<Complex<f64>> = frame
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos();
                Complex::new(f64::from(*s) * w, 0.0)
            })
            .collect();
        fft.process(&mut buf);
        for (t, c) in total.iter_mut().zip(&buf) {
            *t += c.norm();
        }
    }
    let sum: f64 = total.iter().sum();
    total.iter().map(|t| t / sum).collect()
}

#[test]
fn every_two_instruments_differ_in_spectrum() {
    let shapes: Vec<(InstrumentType, Vec<f64>)> = InstrumentType::ALL
        .iter()
        .map(|&i| {
            let r = render(&params(i, &["C4", "E4", "G4"]));
            (i, spectral_shape(&mono(&r)))
        })
        .collect();
    for (a, (ia, sa)) in shapes.iter().enumerate() {
        for (ib, sb) in &shapes[a + 1..] {
            // Half the L1 distance of two distributions: 0 identical, 1 disjoint.
            let distance: f64 = sa.iter().zip(sb).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0;
            assert!(
                distance > 0.25,
                "{ia} and {ib} are too alike: {distance:.3}"
            );
        }
    }
}

mod score_tests;

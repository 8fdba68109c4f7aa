//! The eight instruments: one fundsp graph per note, rendered only for the note's own length
//! (gate plus release) and mixed into the composition at its onset.
//!
//! Each graph is a static fundsp type (no `Net`, no boxing), so every note compiles to straight
//! block processing; building one costs a few small allocations (a plucked string's delay line),
//! far below the cost of its samples.

use super::score::NoteEvent;
use bandsync_protocol::repo::{InstrumentType, SAMPLE_RATE};
use fundsp::prelude32 as dsp;
use fundsp::prelude32::{An, AudioNode, BufferArray, BufferRef, U0, U2};

const SR: f32 = SAMPLE_RATE as f32;
/// Filters and partials stay below this: a state-variable filter tuned at or above Nyquist is
/// unstable, and a partial above it only aliases.
const MAX_HZ: f32 = SR * 0.45;

/// How an instrument holds its notes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Voicing {
    /// Gate length in steps; `None` holds each note until the next sounding step (legato).
    pub hold_steps: Option<f64>,
    /// Seconds the note takes to fade after its gate closes.
    pub release: f32,
    /// Plays a triad of the scale on every step, and holds a chord on through following
    /// steps that would sound it again (the pad: a slow attack struck anew each sixteenth
    /// never reaches its level).
    pub triads: bool,
}

pub(crate) fn voicing(instrument: InstrumentType) -> Voicing {
    let hold = |steps, release| Voicing {
        hold_steps: Some(steps),
        release,
        triads: false,
    };
    match instrument {
        InstrumentType::Synth => hold(0.8, 0.12),
        InstrumentType::Fm => hold(0.8, 0.15),
        InstrumentType::Am => hold(0.9, 0.15),
        // A string rings on after it is plucked; its own decay shapes it.
        InstrumentType::Pluck => hold(3.0, 0.08),
        InstrumentType::Membrane => hold(2.0, 0.05),
        InstrumentType::Metal => hold(2.0, 0.1),
        InstrumentType::Noise => hold(0.5, 0.03),
        InstrumentType::Pad => Voicing {
            hold_steps: None,
            release: 0.2,
            triads: true,
        },
    }
}

/// Attack-decay-sustain-release as a pure function of time since the onset.
///
/// Why not fundsp's `adsr_live`: it is driven by a live gate signal through shared atomics,
/// never attacks if the gate is already open at its first sample, and releases from the sustain
/// level even when the gate closes mid-attack (a click). Offline, each note's gate length is
/// known in advance, so the shape is a function of `t` that fundsp's `envelope` samples.
#[derive(Debug, Clone, Copy)]
struct Adsr {
    attack: f32,
    decay: f32,
    sustain: f32,
    release: f32,
    /// Seconds the gate is open.
    gate: f32,
}

impl Adsr {
    /// Attack, decay and sustain, ignoring the gate.
    fn held(&self, t: f32) -> f32 {
        if t < self.attack {
            t / self.attack
        } else if t < self.attack + self.decay {
            1.0 - (1.0 - self.sustain) * (t - self.attack) / self.decay
        } else {
            self.sustain
        }
    }

    fn level(&self, t: f32) -> f32 {
        if t < self.gate {
            self.held(t)
        } else {
            // Release from wherever the gate closed, down to zero.
            let from = self.held(self.gate);
            (from * (1.0 - (t - self.gate) / self.release)).max(0.0)
        }
    }
}

/// An exponential decay (struck and plucked sounds) that fades to zero over `release` once the
/// gate closes.
#[derive(Debug, Clone, Copy)]
struct Strike {
    /// Seconds for the level to fall by 1/e.
    decay: f32,
    release: f32,
    gate: f32,
}

impl Strike {
    fn level(&self, t: f32) -> f32 {
        // A 1 ms attack: a jump from silence to full level is a click, not part of the sound.
        let attack = (t / 0.001).min(1.0);
        let fade = if t < self.gate {
            1.0
        } else {
            (1.0 - (t - self.gate) / self.release).max(0.0)
        };
        attack * (-t / self.decay).exp() * fade
    }
}

/// Renders `note` on `instrument` and adds it into `out` from its onset. `gate` is in frames.
/// How long one note sounds, in frames: its gate, all it renders (gate and release, or less
/// where the polyphony limit stole its voice), and the fade at the end of a stolen note.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sound {
    pub gate: usize,
    pub length: usize,
    pub fade_out: usize,
}

pub(crate) fn play(
    instrument: InstrumentType,
    note: &NoteEvent,
    sound: Sound,
    voicing: Voicing,
    out: &mut [Vec<f32>; 2],
) {
    let f = note_hz(note.midi);
    let gate_s = sound.gate as f32 / SR;
    let release = voicing.release;
    let len = (sound.length, sound.fade_out);
    let p = note.pan;
    let adsr = |attack, decay, sustain| Adsr {
        attack,
        decay,
        sustain,
        release,
        gate: gate_s,
    };
    let strike = |decay| Strike {
        decay,
        release,
        gate: gate_s,
    };
    let (onset, seed, gain) = (note.onset, note.seed, note.velocity);
    match instrument {
        InstrumentType::Synth => {
            // Tone.Synth's default: a triangle wave.
            let env = adsr(0.005, 0.08, 0.6);
            let graph = (dsp::envelope(move |t| env.level(t)) * dsp::triangle_hz(f)) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Fm => {
            // Modulator at three times the note (Tone.FMSynth's harmonicity), so the first
            // sidebands fall on 2f and 4f, octaves; its index falls from 2.5 to 0.6 over the
            // first 50 ms: a bright, bell-like attack settling on the note.
            let env = adsr(0.005, 0.1, 0.7);
            let fm = 3.0 * f;
            let index = dsp::envelope(move |t: f32| (0.6 + 1.9 * (-t / 0.05).exp()) * fm);
            let carrier = ((dsp::sine_hz(fm) * index) + f) >> dsp::sine();
            let graph = (dsp::envelope(move |t| env.level(t)) * carrier) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Am => {
            // Modulator at three times the note: the sidebands land on 2f and 4f, octaves.
            let env = adsr(0.01, 0.1, 0.8);
            let modulator = (dsp::sine_hz(3.0 * f) * 0.45) + 0.55;
            let graph =
                (dsp::envelope(move |t| env.level(t)) * dsp::sine_hz(f) * modulator) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Pluck => {
            // Karplus-Strong, excited by the seeded noise fundsp fills the delay line with, then
            // a low-pass at three times the note (the body: Tone.PluckSynth's dampening), so a
            // chance-bright excitation does not outweigh the string's fundamental.
            let env = strike(10.0);
            let string = (dsp::zero() >> dsp::pluck(f, 0.2, 0.5))
                >> dsp::lowpass_hz((3.0 * f).min(MAX_HZ), 0.6);
            let graph = (string * dsp::envelope(move |t| env.level(t)) * 2.0) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Membrane => {
            // A sine swept down from three times the note onto it within ~30 ms
            // (Tone.MembraneSynth's pitch drop), then ringing at the note.
            let env = strike(0.18);
            let top = (3.0 * f).min(MAX_HZ).max(f);
            let pitch = dsp::envelope(move |t: f32| f + (top - f) * (-t / 0.008).exp());
            let graph =
                ((pitch >> dsp::sine()) * dsp::envelope(move |t| env.level(t))) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Metal => {
            // The inharmonic modes of a free metal bar (1 : 2.76 : 5.40 : 8.93), brightest
            // first; modes above the usable band are left out.
            let env = strike(0.12);
            let mode = |ratio: f32, level: f32| {
                let hz = f * ratio;
                dsp::sine_hz(hz.min(MAX_HZ)) * if hz <= MAX_HZ { level } else { 0.0 }
            };
            let partials = mode(1.0, 0.5) + mode(2.756, 0.8) + mode(5.404, 0.6) + mode(8.933, 0.4);
            let graph = (partials * dsp::envelope(move |t| env.level(t))) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Noise => {
            // White noise through a band-pass at the note: a pitched hiss.
            let env = strike(0.06);
            let noise = dsp::white() >> dsp::bandpass_hz(f.min(MAX_HZ), 6.0);
            let graph = (noise * dsp::envelope(move |t| env.level(t)) * 4.0) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
        InstrumentType::Pad => {
            // Two saws 10 cents apart (the slow beating is the pad's shimmer) through a
            // low-pass at three times the note, slow attack. PolyBLEP saws: band-limited like
            // the wavetable saw at half its cost per sample, which matters here, where every
            // note of every triad is held legato.
            let env = adsr(0.15, 0.3, 0.8);
            let detune = 0.003;
            let saws = dsp::poly_saw_hz(f * (1.0 - detune)) + dsp::poly_saw_hz(f * (1.0 + detune));
            let filtered = saws >> dsp::lowpass_hz((3.0 * f).min(MAX_HZ), 0.7);
            let graph = (filtered * dsp::envelope(move |t| env.level(t)) * 0.5) >> dsp::pan(p);
            mix(graph, seed, onset, len, gain, out);
        }
    }
}

/// Equal temperament, A4 = 440 Hz.
fn note_hz(midi: u8) -> f32 {
    440.0 * ((f32::from(midi) - 69.0) / 12.0).exp2()
}

/// Runs `graph` for `len.0` frames (cut at the end of the composition) in fundsp's 64-frame
/// blocks and adds it, times `gain`, into `out` from `onset`; the last `len.1` frames fade
/// out linearly (a stolen voice, see `voices`).
fn mix<X>(
    mut graph: An<X>,
    seed: u64,
    onset: usize,
    len: (usize, usize),
    gain: f32,
    out: &mut [Vec<f32>; 2],
) where
    X: AudioNode<Inputs = U0, Outputs = U2>,
{
    let (len, fade_out) = len;
    // The hash seeds every random part of the graph (oscillator phases, noise, the string's
    // excitation, envelope sample jitter): fixed per note, so the output is reproducible.
    graph.set_hash(seed);
    graph.set_sample_rate(f64::from(SAMPLE_RATE));
    graph.allocate();
    let note_end = onset.saturating_add(len);
    let end = note_end.min(out[0].len());
    let fade_from = note_end.saturating_sub(fade_out);
    let mut block = BufferArray::<U2>::new();
    let mut pos = onset;
    while pos < end {
        let n = (end - pos).min(fundsp::MAX_BUFFER_SIZE);
        graph.process(n, &BufferRef::empty(), &mut block.buffer_mut());
        for (ch, channel) in out.iter_mut().enumerate() {
            let samples = &block.channel_f32(ch)[..n];
            for (k, (o, s)) in channel[pos..pos + n].iter_mut().zip(samples).enumerate() {
                let frame = pos + k;
                let fade = if frame >= fade_from {
                    (note_end - frame) as f32 / (fade_out as f32 + 1.0)
                } else {
                    1.0
                };
                *o += s * gain * fade;
            }
        }
        pos += n;
    }
}

//! Repository streams (`GET /stream/{repoId}`): compositions rendered from a repository's
//! GitHub activity, their musical parameters, and the messages a listener receives.
//!
//! The messages keep the exact shapes of the original streaming server, so its browser
//! client works unchanged: `{"type", "timestamp", "data"?}` with `type` one of `connected`,
//! `audio_buffer`, `heartbeat`, `error`. bandsync adds fields (never removes or renames):
//! `params` carries every parameter the renderer used, and `audio_buffer` carries a
//! `trigger` saying why the composition was played.

mod messages;

pub use messages::{
    AudioBufferData, Channels, ConnectedData, Encoding, PlayAnswer, SerializedBuffer,
    StreamErrorData, StreamMessage, Trigger,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Every composition is stereo at 44.1 kHz (what the browser's `AudioContext` plays natively).
pub const SAMPLE_RATE: u32 = 44_100;
pub const CHANNELS: usize = 2;

/// Bounds of the parameters a client (or the mapper) may ask for.
pub const MIN_TEMPO: f64 = 40.0;
pub const MAX_TEMPO: f64 = 240.0;
pub const MIN_DURATION: f64 = 0.25;
/// Longest composition, seconds: 20 s of stereo is 1.76 M samples, about 20 MB as the
/// default JSON, which bounds what one render can cost every listener.
pub const MAX_DURATION: f64 = 20.0;
pub const MAX_SCALE_NOTES: usize = 16;
/// Longest repository id: GitHub's 39-character owner, `/`, 100-character name.
pub const MAX_REPO_ID_CHARS: usize = 140;

/// The instrument families of the original server's Tone.js instruments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstrumentType {
    /// A plain oscillator with an envelope (Tone.Synth).
    Synth,
    /// Frequency modulation (Tone.FMSynth).
    Fm,
    /// Amplitude modulation (Tone.AMSynth).
    Am,
    /// A plucked string (Tone.PluckSynth).
    Pluck,
    /// A pitched membrane drum (Tone.MembraneSynth).
    Membrane,
    /// Inharmonic metallic partials (Tone.MetalSynth).
    Metal,
    /// Filtered noise bursts (Tone.NoiseSynth).
    Noise,
    /// Detuned chords with slow envelopes (Tone.PolySynth).
    Pad,
}

impl InstrumentType {
    pub const ALL: [InstrumentType; 8] = [
        InstrumentType::Synth,
        InstrumentType::Fm,
        InstrumentType::Am,
        InstrumentType::Pluck,
        InstrumentType::Membrane,
        InstrumentType::Metal,
        InstrumentType::Noise,
        InstrumentType::Pad,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentType::Synth => "synth",
            InstrumentType::Fm => "fm",
            InstrumentType::Am => "am",
            InstrumentType::Pluck => "pluck",
            InstrumentType::Membrane => "membrane",
            InstrumentType::Metal => "metal",
            InstrumentType::Noise => "noise",
            InstrumentType::Pad => "pad",
        }
    }
}

impl FromStr for InstrumentType {
    type Err = String;

    /// The short names, and Tone.js's class names in any case (`FMSynth`, `polysynth`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let name = lower.strip_suffix("synth").filter(|n| !n.is_empty());
        Ok(match name.unwrap_or(&lower) {
            "synth" => InstrumentType::Synth,
            "fm" => InstrumentType::Fm,
            "am" => InstrumentType::Am,
            "pluck" => InstrumentType::Pluck,
            "membrane" => InstrumentType::Membrane,
            "metal" => InstrumentType::Metal,
            "noise" => InstrumentType::Noise,
            "pad" | "poly" => InstrumentType::Pad,
            _ => {
                return Err(format!(
                    "instrumentType must be one of {}",
                    InstrumentType::ALL.map(InstrumentType::as_str).join(", ")
                ))
            }
        })
    }
}

impl fmt::Display for InstrumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the notes of the scale are laid over the beats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Up and down the scale, one note per step.
    Arpeggio,
    Ascending,
    Descending,
    /// Notes of the scale drawn from the seed.
    Random,
    /// The whole scale at once, on every step (at most 6 notes of it, spread from its
    /// lowest to its highest).
    Chord,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Arpeggio => "arpeggio",
            Pattern::Ascending => "ascending",
            Pattern::Descending => "descending",
            Pattern::Random => "random",
            Pattern::Chord => "chord",
        }
    }
}

/// A note name: a letter `A`-`G`, an optional `#` or `b`, an octave `0`-`8` (`C4` is middle C,
/// `A4` is 440 Hz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Note {
    /// MIDI note number (`C4` = 60, `A4` = 69).
    pub midi: u8,
}

impl Note {
    /// Equal temperament, `A4` = 440 Hz.
    pub fn frequency(self) -> f64 {
        440.0 * ((f64::from(self.midi) - 69.0) / 12.0).exp2()
    }
}

impl FromStr for Note {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a note name such as C4, F#3 or Bb5");
        let mut chars = s.chars();
        let letter = chars.next().ok_or_else(bad)?;
        let step: i32 = match letter.to_ascii_uppercase() {
            'C' => 0,
            'D' => 2,
            'E' => 4,
            'F' => 5,
            'G' => 7,
            'A' => 9,
            'B' => 11,
            _ => return Err(bad()),
        };
        let rest = chars.as_str();
        let (accidental, octave) = match rest.as_bytes().first() {
            Some(b'#') => (1, &rest[1..]),
            Some(b'b') => (-1, &rest[1..]),
            _ => (0, rest),
        };
        let octave: i32 = match octave {
            o if o.len() == 1 && o.as_bytes()[0].is_ascii_digit() && o != "9" => {
                i32::from(o.as_bytes()[0] - b'0')
            }
            _ => return Err(bad()),
        };
        let midi = (octave + 1) * 12 + step + accidental;
        u8::try_from(midi)
            .ok()
            .filter(|m| *m <= 127)
            .map(|midi| Note { midi })
            .ok_or_else(bad)
    }
}

/// Everything the renderer needs. Identical parameters render bit-identical audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MusicalParams {
    /// Beats per minute, 40 to 240.
    pub tempo: f64,
    /// Note names, 1 to 16 of them; the notes the composition plays.
    pub scale: Vec<String>,
    #[serde(with = "instrument_serde")]
    pub instrument_type: InstrumentType,
    /// Seconds, 0.25 to 20.
    pub duration: f64,
    /// 0 to 1: the share of steps (sixteenth notes) that sound.
    pub density: f64,
    pub pattern: Pattern,
    /// Chooses the random parts (which steps sound, random notes) reproducibly.
    pub seed: u32,
}

impl Default for MusicalParams {
    fn default() -> Self {
        MusicalParams {
            tempo: 120.0,
            scale: vec!["C4".into(), "E4".into(), "G4".into()],
            instrument_type: InstrumentType::Synth,
            duration: 5.0,
            density: 0.5,
            pattern: Pattern::Arpeggio,
            seed: 0,
        }
    }
}

/// A parameter out of range: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl MusicalParams {
    /// Checks every bound; the renderer only ever sees parameters that passed.
    pub fn validate(&self) -> Result<(), ParamError> {
        let err = |field, message: String| Err(ParamError { field, message });
        if !(MIN_TEMPO..=MAX_TEMPO).contains(&self.tempo) {
            return err(
                "tempo",
                format!("tempo must be between {MIN_TEMPO} and {MAX_TEMPO} beats per minute"),
            );
        }
        if !(MIN_DURATION..=MAX_DURATION).contains(&self.duration) {
            return err(
                "duration",
                format!("duration must be between {MIN_DURATION} and {MAX_DURATION} seconds"),
            );
        }
        if !(0.0..=1.0).contains(&self.density) {
            return err("density", "density must be between 0 and 1".into());
        }
        if self.scale.is_empty() || self.scale.len() > MAX_SCALE_NOTES {
            return err(
                "scale",
                format!("scale must hold 1 to {MAX_SCALE_NOTES} note names"),
            );
        }
        for name in &self.scale {
            if let Err(message) = name.parse::<Note>() {
                return err("scale", message);
            }
        }
        Ok(())
    }

    /// The scale as notes. Call after [`MusicalParams::validate`]; invalid names are skipped.
    pub fn notes(&self) -> Vec<Note> {
        self.scale.iter().filter_map(|n| n.parse().ok()).collect()
    }

    /// Frames (samples per channel) of the rendered composition.
    pub fn frames(&self) -> usize {
        (self.duration * f64::from(SAMPLE_RATE)).round() as usize
    }
}

mod instrument_serde {
    use super::InstrumentType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &InstrumentType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<InstrumentType, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The body of `POST /stream/{repoId}/test`: every field optional (defaults as in
/// [`MusicalParams::default`]); unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_instrument"
    )]
    pub instrument_type: Option<InstrumentType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
}

impl TestRequest {
    /// The request over the defaults.
    pub fn params(&self) -> MusicalParams {
        let d = MusicalParams::default();
        MusicalParams {
            tempo: self.tempo.unwrap_or(d.tempo),
            scale: self.scale.clone().unwrap_or(d.scale),
            instrument_type: self.instrument_type.unwrap_or(d.instrument_type),
            duration: self.duration.unwrap_or(d.duration),
            density: self.density.unwrap_or(d.density),
            pattern: self.pattern.unwrap_or(d.pattern),
            seed: self.seed.unwrap_or(d.seed),
        }
    }
}

mod optional_instrument {
    use super::InstrumentType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<InstrumentType>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(t.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<InstrumentType>, D::Error> {
        let name = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        name.map(|n| n.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Checks a repository id as the routes take it (after percent-decoding): one segment, or
/// `owner/name`, each 1-100 characters of `A-Z a-z 0-9 . _ -`, neither `.` nor `..`.
pub fn validate_repo_id(id: &str) -> Result<(), String> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let segments: Vec<&str> = id.split('/').collect();
    if id.len() > MAX_REPO_ID_CHARS || segments.len() > 2 || !segments.iter().all(|s| segment_ok(s))
    {
        return Err(
            "repoId must be `name` or `owner/name`: segments of 1-100 characters of A-Z a-z 0-9 . _ -"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names_parse_to_midi_numbers() {
        let midi = |s: &str| s.parse::<Note>().map(|n| n.midi);
        assert_eq!(midi("C4"), Ok(60));
        assert_eq!(midi("A4"), Ok(69));
        assert_eq!(midi("F#3"), Ok(54));
        assert_eq!(midi("Bb5"), Ok(82));
        assert_eq!(midi("c0"), Ok(12));
        for bad in ["", "H4", "C", "C#", "C10", "C-1", "C9", "Cb", "C#4x", "4C"] {
            assert!(midi(bad).is_err(), "{bad} should not parse");
        }
        assert!((Note { midi: 69 }.frequency() - 440.0).abs() < 1e-9);
    }

    #[test]
    fn instrument_names_accept_tone_class_names() {
        assert_eq!("FMSynth".parse(), Ok(InstrumentType::Fm));
        assert_eq!("synth".parse(), Ok(InstrumentType::Synth));
        assert_eq!("PolySynth".parse(), Ok(InstrumentType::Pad));
        assert_eq!("membrane".parse(), Ok(InstrumentType::Membrane));
        assert!("piano".parse::<InstrumentType>().is_err());
    }

    #[test]
    fn the_seed_body_parses_and_validates() {
        let body = r#"{"tempo": 120, "duration": 5, "instrumentType": "synth"}"#;
        let request: TestRequest = serde_json::from_str(body).unwrap();
        let params = request.params();
        assert_eq!(params.validate(), Ok(()));
        assert_eq!(params.frames(), 220_500);
        let bad: Result<TestRequest, _> = serde_json::from_str(r#"{"tempo": "fast"}"#);
        assert!(bad.is_err());
        let bad: Result<TestRequest, _> = serde_json::from_str(r#"{"instrumentType": "kazoo"}"#);
        assert!(bad.is_err());
        let slow = TestRequest {
            tempo: Some(10.0),
            ..TestRequest::default()
        };
        assert_eq!(slow.params().validate().unwrap_err().field, "tempo");
    }

    #[test]
    fn repo_ids_are_one_or_two_github_segments() {
        assert!(validate_repo_id("octocat/hello-world").is_ok());
        assert!(validate_repo_id("solo").is_ok());
        assert!(validate_repo_id("a/b/c").is_err());
        assert!(validate_repo_id("../x").is_err());
        assert!(validate_repo_id("a/").is_err());
        assert!(validate_repo_id("a b").is_err());
    }
}

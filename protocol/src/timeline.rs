//! The shared timeline: where a session is, in beats, at any server time.
//!
//! A session's transport is four numbers. The position at server time `t` (ms since the
//! Unix epoch) is `beat + (playing ? (t - anchorTime) * tempo / 60000 : 0)`. Every change
//! re-anchors at the moment it happens, so the position is continuous across tempo changes
//! and a client can extrapolate it per animation frame from the last state it saw.

use crate::validate::DEFAULT_TEMPO;
use serde::{Deserialize, Serialize};

/// Milliseconds in a minute: converts beats per minute into beats per millisecond.
const MS_PER_MINUTE: f64 = 60_000.0;

/// Transport state of one session, as sent in `transport` objects.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transport {
    pub playing: bool,
    /// Beats per minute, 20 to 400.
    pub tempo: f64,
    /// Position in beats at `anchor_time`.
    pub beat: f64,
    /// Server time (ms since the Unix epoch) at which `beat` holds.
    pub anchor_time: f64,
}

impl Transport {
    /// A stopped transport at beat 0, default tempo, anchored at `now`.
    pub fn new(now: f64) -> Self {
        Self {
            playing: false,
            tempo: DEFAULT_TEMPO,
            beat: 0.0,
            anchor_time: now,
        }
    }

    /// The position in beats at server time `t`.
    pub fn position_at(&self, t: f64) -> f64 {
        if self.playing {
            self.beat + (t - self.anchor_time) * self.tempo / MS_PER_MINUTE
        } else {
            self.beat
        }
    }

    /// Moves the anchor to `now` without changing the position.
    fn reanchor(&mut self, now: f64) {
        self.beat = self.position_at(now);
        self.anchor_time = now;
    }

    /// Changes tempo at `now`, keeping the position continuous. Returns whether anything
    /// changed.
    pub fn set_tempo(&mut self, now: f64, tempo: f64) -> bool {
        if tempo == self.tempo {
            return false;
        }
        self.reanchor(now);
        self.tempo = tempo;
        true
    }

    /// Starts playing at `now`, from `beat` when given, else from the current position.
    /// Returns whether anything changed (play while playing with no beat changes nothing).
    pub fn play(&mut self, now: f64, beat: Option<f64>) -> bool {
        if self.playing && beat.is_none() {
            return false;
        }
        match beat {
            Some(beat) => {
                self.beat = beat;
                self.anchor_time = now;
            }
            None => self.reanchor(now),
        }
        self.playing = true;
        true
    }

    /// Stops at the position reached at `now`. Returns whether anything changed.
    pub fn pause(&mut self, now: f64) -> bool {
        if !self.playing {
            return false;
        }
        self.reanchor(now);
        self.playing = false;
        true
    }

    /// Jumps to `beat` at `now`, playing on if playing. Always a change.
    pub fn seek(&mut self, now: f64, beat: f64) -> bool {
        self.beat = beat;
        self.anchor_time = now;
        true
    }
}

/// A client's estimate of the server clock from one `heartbeat` round trip (NTP style).
///
/// `t0` is the client's send time, `t1`/`t2` the server's receive/send times, `t3` the
/// client's receive time, all in ms. `offset` is what to add to the client clock to get
/// server time; `round_trip` excludes the server's own processing time. One sample's
/// offset is off by up to half its round trip; the client library's estimator
/// (`bandsync_client::ClockEstimator`, PROTOCOL.md section 7) filters many of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub offset: f64,
    pub round_trip: f64,
}

impl ClockSample {
    pub fn from_heartbeat(t0: f64, t1: f64, t2: f64, t3: f64) -> Self {
        Self {
            offset: ((t1 - t0) + (t2 - t3)) / 2.0,
            round_trip: (t3 - t0) - (t2 - t1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_700_000_000_000.0;

    #[test]
    fn stopped_transport_stays_put() {
        let t = Transport::new(T0);
        assert_eq!(t.position_at(T0 + 60_000.0), 0.0);
    }

    #[test]
    fn playing_advances_tempo_beats_per_minute() {
        let mut t = Transport::new(T0);
        assert!(t.play(T0, None));
        assert!((t.position_at(T0 + 60_000.0) - 120.0).abs() < 1e-9);
        assert!((t.position_at(T0 + 500.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn tempo_change_keeps_position_continuous() {
        let mut t = Transport::new(T0);
        t.play(T0, Some(4.0));
        let before = t.position_at(T0 + 1_000.0);
        assert!(t.set_tempo(T0 + 1_000.0, 60.0));
        assert!((t.position_at(T0 + 1_000.0) - before).abs() < 1e-9);
        // One more second at 60 bpm is one more beat.
        assert!((t.position_at(T0 + 2_000.0) - (before + 1.0)).abs() < 1e-9);
    }

    #[test]
    fn pause_freezes_the_reached_position() {
        let mut t = Transport::new(T0);
        t.play(T0, None);
        assert!(t.pause(T0 + 1_500.0));
        assert!((t.beat - 3.0).abs() < 1e-9);
        assert_eq!(t.position_at(T0 + 10_000.0), t.beat);
        assert!(!t.pause(T0 + 2_000.0), "pausing twice changes nothing");
    }

    #[test]
    fn no_op_commands_report_no_change() {
        let mut t = Transport::new(T0);
        assert!(!t.set_tempo(T0, 120.0));
        t.play(T0, None);
        assert!(!t.play(T0 + 10.0, None));
        assert!(
            t.play(T0 + 10.0, Some(0.0)),
            "play with a beat always seeks"
        );
    }

    #[test]
    fn seek_while_playing_keeps_playing() {
        let mut t = Transport::new(T0);
        t.play(T0, None);
        t.seek(T0 + 1_000.0, 16.0);
        assert!(t.playing);
        assert!((t.position_at(T0 + 1_500.0) - 17.0).abs() < 1e-9);
    }

    #[test]
    fn clock_sample_recovers_a_symmetric_offset() {
        // Client clock is 250 ms behind the server; one-way delay 5 ms; server took 1 ms.
        let (t0, t1, t2, t3) = (1_000.0, 1_255.0, 1_256.0, 1_011.0 - 5.0 + 5.0);
        let s = ClockSample::from_heartbeat(t0, t1, t2, t3);
        assert!((s.offset - 250.0).abs() < 1e-9);
        assert!((s.round_trip - 10.0).abs() < 1e-9);
    }
}

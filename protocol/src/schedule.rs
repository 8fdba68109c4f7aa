//! Scheduled transport changes: when a scheduled command takes effect, and what the
//! transport is from then on (PROTOCOL.md section 6, "Scheduled changes").
//!
//! Pure functions of the transport and the server clock, kept here rather than in the
//! server so that a client can compute the same instant the server will announce (a page
//! that wants to show "starts in 1.2 s" before the announcement arrives, or a test).

use crate::client::{Play, Schedule, Seek, SetTempo};
use crate::server::ScheduledAction;
use crate::{ClientEvent, ErrorCode, ProtocolError, Transport};

/// Milliseconds in a minute: converts beats per minute into ms per beat.
const MS_PER_MINUTE: f64 = 60_000.0;

/// A transport command, without its schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TransportCommand {
    SetTempo(f64),
    Play(Option<f64>),
    Pause,
    Seek(f64),
}

impl TransportCommand {
    /// The command and schedule of `set_tempo`, `play`, `pause` or `seek`; `None` for
    /// every other event.
    pub fn of(event: &ClientEvent) -> Option<(Self, Schedule)> {
        Some(match event {
            ClientEvent::SetTempo(SetTempo { tempo, schedule }) => {
                (Self::SetTempo(*tempo), *schedule)
            }
            ClientEvent::Play(Play { beat, schedule }) => (Self::Play(*beat), *schedule),
            ClientEvent::Pause(pause) => (Self::Pause, pause.schedule),
            ClientEvent::Seek(Seek { beat, schedule }) => (Self::Seek(*beat), *schedule),
            _ => return None,
        })
    }

    /// Which command this is, as a [`crate::server::ScheduledChange`] names it.
    pub fn action(&self) -> ScheduledAction {
        match self {
            Self::SetTempo(_) => ScheduledAction::SetTempo,
            Self::Play(_) => ScheduledAction::Play,
            Self::Pause => ScheduledAction::Pause,
            Self::Seek(_) => ScheduledAction::Seek,
        }
    }

    /// Applies the command to `transport` at server time `t`, as the contract's immediate
    /// commands always did. Returns whether anything changed.
    pub fn apply(&self, transport: &mut Transport, t: f64) -> bool {
        match *self {
            Self::SetTempo(tempo) => transport.set_tempo(t, tempo),
            Self::Play(beat) => transport.play(t, beat),
            Self::Pause => transport.pause(t),
            Self::Seek(beat) => transport.seek(t, beat),
        }
    }

    /// The transport from `at` on, had the command been sent at `at` to a session whose
    /// transport was `before`. Always anchored at `at` (even when the command changes
    /// nothing, e.g. `pause` while paused), so a client reads the instant of the change in
    /// `anchorTime` and the position is continuous there unless the command jumps.
    pub fn transport_from(&self, before: &Transport, at: f64) -> Transport {
        let mut after = Transport {
            beat: before.position_at(at),
            anchor_time: at,
            ..*before
        };
        self.apply(&mut after, at);
        after
    }
}

/// The server's bounds on scheduled instants (`SCHEDULE_*` options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleLimits {
    /// How far in the past `at` may be and still be applied (at once), ms.
    pub past_tolerance_ms: f64,
    /// How far ahead of the server clock a change may be scheduled, ms.
    pub max_ahead_ms: f64,
    /// The least notice a quantized change gives, ms: clients get the announcement at
    /// least this long before the bar it lands on.
    pub quantum_lead_ms: f64,
}

impl Default for ScheduleLimits {
    fn default() -> Self {
        Self {
            past_tolerance_ms: 50.0,
            max_ahead_ms: 60_000.0,
            quantum_lead_ms: 100.0,
        }
    }
}

/// When a transport command takes effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// At once, as an unscheduled command.
    Now,
    /// At this server time (strictly after the time it was resolved at).
    At(f64),
}

/// Decides when a command with `schedule` takes effect, received at server time `now` by a
/// session whose transport is `transport`. Errors are `INVALID_SCHEDULE`, saying by how
/// much the instant misses the bounds.
pub fn resolve(
    schedule: &Schedule,
    transport: &Transport,
    now: f64,
    limits: &ScheduleLimits,
) -> Result<Effect, ProtocolError> {
    let invalid = |message: String| ProtocolError::new(ErrorCode::InvalidSchedule, message);
    let at = match (schedule.at, schedule.quantum) {
        (None, None) => return Ok(Effect::Now),
        (Some(at), _) => {
            let late = now - at;
            if late > limits.past_tolerance_ms {
                return Err(invalid(format!(
                    "at is {late:.1} ms in the past; the server applies an instant at most {} ms late",
                    limits.past_tolerance_ms
                )));
            }
            if at <= now {
                return Ok(Effect::Now);
            }
            at
        }
        (None, Some(quantum)) => quantum_instant(transport, quantum, now + limits.quantum_lead_ms),
    };
    let ahead = at - now;
    if ahead > limits.max_ahead_ms {
        return Err(invalid(format!(
            "the change would take effect {ahead:.1} ms from now, {:.1} ms beyond the {} ms the server schedules ahead",
            ahead - limits.max_ahead_ms,
            limits.max_ahead_ms
        )));
    }
    Ok(Effect::At(at))
}

/// The first instant at or after `earliest` on a bar boundary of `quantum` beats.
///
/// Playing: the first `t >= earliest` at which the position is a whole multiple of
/// `quantum` (Ableton Link's quantized launch). Paused: the bars keep running at the
/// tempo from the pause, `anchorTime + k * quantum * 60000 / tempo` for the smallest whole
/// `k >= 0` at or after `earliest`.
pub fn quantum_instant(transport: &Transport, quantum: f64, earliest: f64) -> f64 {
    let ms_per_beat = MS_PER_MINUTE / transport.tempo;
    if transport.playing {
        let bars = (transport.position_at(earliest) / quantum).ceil();
        transport.anchor_time + (bars * quantum - transport.beat) * ms_per_beat
    } else {
        let period = quantum * ms_per_beat;
        let k = ((earliest - transport.anchor_time) / period)
            .ceil()
            .max(0.0);
        transport.anchor_time + k * period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_700_000_000_000.0;

    fn playing(beat: f64, tempo: f64, anchor: f64) -> Transport {
        Transport {
            playing: true,
            tempo,
            beat,
            anchor_time: anchor,
        }
    }

    fn at(at: f64) -> Schedule {
        Schedule {
            at: Some(at),
            quantum: None,
        }
    }

    fn quantum(q: f64) -> Schedule {
        Schedule {
            at: None,
            quantum: Some(q),
        }
    }

    #[test]
    fn a_quantized_change_while_playing_lands_on_the_next_bar_after_the_lead() {
        // 120 bpm: 500 ms a beat. At T0 the position is beat 5; the lead ends at beat 5.2.
        let t = playing(5.0, 120.0, T0);
        let when = quantum_instant(&t, 4.0, T0 + 100.0);
        assert_eq!(when, T0 + 1500.0); // beat 8
        assert_eq!(t.position_at(when), 8.0);
        // Exactly on a boundary at the end of the lead: that boundary.
        assert_eq!(quantum_instant(&t, 4.0, T0 + 1500.0), T0 + 1500.0);
        // Just past it: the next bar.
        assert_eq!(quantum_instant(&t, 4.0, T0 + 1501.0), T0 + 3500.0);
        // A fractional quantum (half a beat).
        let when = quantum_instant(&t, 0.5, T0 + 100.0);
        assert_eq!(t.position_at(when), 5.5);
    }

    #[test]
    fn a_quantized_change_while_paused_counts_bars_from_the_pause() {
        // Paused at beat 3 (not on a bar) at T0, 60 bpm: a 4-beat bar lasts 4000 ms.
        let t = Transport {
            playing: false,
            tempo: 60.0,
            beat: 3.0,
            anchor_time: T0,
        };
        assert_eq!(quantum_instant(&t, 4.0, T0 + 9000.0), T0 + 12_000.0);
        assert_eq!(quantum_instant(&t, 4.0, T0 + 8000.0), T0 + 8000.0);
        // A pause anchored after the earliest instant: its own anchor.
        assert_eq!(quantum_instant(&t, 4.0, T0 - 50.0), T0);
    }

    #[test]
    fn an_instant_in_the_tolerance_is_now_and_one_beyond_it_is_refused() {
        let t = Transport::new(T0);
        let limits = ScheduleLimits::default();
        assert_eq!(resolve(&at(T0 - 50.0), &t, T0, &limits), Ok(Effect::Now));
        assert_eq!(resolve(&at(T0), &t, T0, &limits), Ok(Effect::Now));
        assert_eq!(
            resolve(&at(T0 + 0.5), &t, T0, &limits),
            Ok(Effect::At(T0 + 0.5))
        );
        assert_eq!(
            resolve(&Schedule::default(), &t, T0, &limits),
            Ok(Effect::Now)
        );
        let late = resolve(&at(T0 - 80.0), &t, T0, &limits).unwrap_err();
        assert_eq!(late.code, ErrorCode::InvalidSchedule);
        assert!(
            late.message.contains("80.0 ms in the past"),
            "{}",
            late.message
        );
    }

    #[test]
    fn an_instant_beyond_the_horizon_is_refused_with_the_excess() {
        let t = Transport::new(T0);
        let limits = ScheduleLimits::default();
        assert_eq!(
            resolve(&at(T0 + 60_000.0), &t, T0, &limits),
            Ok(Effect::At(T0 + 60_000.0))
        );
        let far = resolve(&at(T0 + 61_000.0), &t, T0, &limits).unwrap_err();
        assert_eq!(far.code, ErrorCode::InvalidSchedule);
        assert!(far.message.contains("1000.0 ms beyond"), "{}", far.message);
        // 64 beats at 20 bpm while paused from now: the next bar is 192 s away.
        let slow = Transport {
            tempo: 20.0,
            ..Transport::new(T0)
        };
        let err = resolve(&quantum(64.0), &slow, T0 + 1.0, &limits).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidSchedule);
    }

    #[test]
    fn a_quantum_resolves_to_an_instant_at_least_the_lead_ahead() {
        let t = playing(0.0, 120.0, T0);
        let limits = ScheduleLimits::default();
        // At T0 + 1950 the position is 3.9; the lead reaches 4.1, so beat 8 at T0 + 4000.
        let when = resolve(&quantum(4.0), &t, T0 + 1950.0, &limits).unwrap();
        assert_eq!(when, Effect::At(T0 + 4000.0));
    }

    #[test]
    fn the_transport_after_a_change_is_anchored_at_its_instant() {
        let before = playing(2.0, 120.0, T0);
        let at = T0 + 1000.0; // beat 4
        let tempo = TransportCommand::SetTempo(90.0).transport_from(&before, at);
        assert_eq!(
            (tempo.beat, tempo.anchor_time, tempo.tempo),
            (4.0, at, 90.0)
        );
        assert!(tempo.playing);
        // No jump across the change: the old position at `at` is the new one.
        assert_eq!(before.position_at(at), tempo.position_at(at));
        let pause = TransportCommand::Pause.transport_from(&before, at);
        assert_eq!(
            (pause.beat, pause.playing, pause.anchor_time),
            (4.0, false, at)
        );
        let seek = TransportCommand::Seek(16.0).transport_from(&before, at);
        assert_eq!((seek.beat, seek.playing), (16.0, true));
        let stopped = TransportCommand::Pause.transport_from(&pause, at + 500.0);
        assert_eq!((stopped.beat, stopped.anchor_time), (4.0, at + 500.0));
        let play = TransportCommand::Play(None).transport_from(&pause, at + 500.0);
        assert_eq!((play.beat, play.playing), (4.0, true));
        let from = TransportCommand::Play(Some(8.0)).transport_from(&pause, at + 500.0);
        assert_eq!(from.position_at(at + 1000.0), 9.0);
    }

    #[test]
    fn only_transport_events_are_commands() {
        let (command, schedule) =
            TransportCommand::of(&ClientEvent::SetTempo(SetTempo::new(100.0))).unwrap();
        assert_eq!(command, TransportCommand::SetTempo(100.0));
        assert!(!schedule.is_scheduled());
        assert_eq!(command.action(), ScheduledAction::SetTempo);
        assert!(TransportCommand::of(&ClientEvent::SyncRequest).is_none());
    }
}

//! Where the beats and bars of a session fall on the shared timeline, in server time.
//!
//! A click that every member hears together is a click sounded at the server time of each
//! whole beat, so this module turns a transport (and the change scheduled after it, if
//! any) into the list of whole beats in a window of server time. It is pure: the CLI's
//! bar printer and its audio click both read it, and it is tested without a server.
//!
//! Beats are counted from beat 0 of the session; beat `b` is the first beat of a bar when
//! `b` is a whole multiple of the beats per bar. A scheduled change splits the window at its
//! instant: before `at` the old transport's beats, from `at` on the new one's (a beat that
//! falls exactly on `at` is counted once, from the new transport), so a tempo change
//! scheduled at a bar boundary changes the interval exactly at that bar.

use bandsync_protocol::server::ScheduledChange;
use bandsync_protocol::Transport;

/// Milliseconds in a minute: beats per minute into ms per beat.
const MS_PER_MINUTE: f64 = 60_000.0;

/// Upper bound on the beats one call returns, whatever the window: at 400 bpm a minute
/// holds 400, so this covers any window a client asks ahead for, and a hostile transport
/// cannot make a caller allocate without bound.
pub const MAX_BEATS_PER_CALL: usize = 1024;

/// One whole beat of the session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// The beat number (a whole number), counted from the session's beat 0.
    pub beat: f64,
    /// Server time (ms since the Unix epoch) at which the position reaches `beat`.
    pub server_time: f64,
    /// The bar it starts or lies in (`floor(beat / beats_per_bar)`).
    pub bar: i64,
    /// Whether it is the first beat of its bar (the accented click).
    pub downbeat: bool,
}

/// The whole beats whose server time lies in `[from, until)`, in order, for a session whose
/// transport is `transport` until `scheduled.at` and `scheduled.transport` from then on.
/// A paused segment has no beats. At most [`MAX_BEATS_PER_CALL`].
pub fn beats_between(
    transport: &Transport,
    scheduled: Option<&ScheduledChange>,
    from: f64,
    until: f64,
    beats_per_bar: u32,
) -> Vec<Beat> {
    let mut beats = Vec::new();
    // Also refuses NaN bounds (every comparison with NaN is false).
    if from.partial_cmp(&until) != Some(std::cmp::Ordering::Less) {
        return beats;
    }
    match scheduled {
        Some(change) if change.at < until => {
            let split = change.at.max(from);
            segment(transport, from, split, beats_per_bar, &mut beats);
            segment(&change.transport, split, until, beats_per_bar, &mut beats);
        }
        _ => segment(transport, from, until, beats_per_bar, &mut beats),
    }
    beats
}

/// The first whole beat at or after server time `from` (within `horizon_ms`), if the
/// session plays then.
pub fn next_beat(
    transport: &Transport,
    scheduled: Option<&ScheduledChange>,
    from: f64,
    horizon_ms: f64,
    beats_per_bar: u32,
) -> Option<Beat> {
    beats_between(transport, scheduled, from, from + horizon_ms, beats_per_bar)
        .into_iter()
        .next()
}

/// The beats of one transport in `[from, until)`.
fn segment(transport: &Transport, from: f64, until: f64, beats_per_bar: u32, out: &mut Vec<Beat>) {
    let tempo_positive = transport.tempo.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater);
    if !transport.playing || from >= until || !tempo_positive {
        return;
    }
    let ms_per_beat = MS_PER_MINUTE / transport.tempo;
    let per_bar = f64::from(beats_per_bar.max(1));
    let mut beat = transport.position_at(from).ceil();
    loop {
        if out.len() >= MAX_BEATS_PER_CALL {
            return;
        }
        let server_time = transport.anchor_time + (beat - transport.beat) * ms_per_beat;
        // `ceil` of a position computed in floating point can land one beat early when the
        // position is a hair below a whole number: skip a beat that falls before `from`.
        if server_time < from {
            beat += 1.0;
            continue;
        }
        if server_time >= until {
            return;
        }
        let bar = (beat / per_bar).floor();
        out.push(Beat {
            beat,
            server_time,
            bar: bar as i64,
            downbeat: beat == bar * per_bar,
        });
        beat += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandsync_protocol::server::ScheduledAction;

    const T: f64 = 1_700_000_000_000.0;

    fn playing(tempo: f64, beat: f64, anchor: f64) -> Transport {
        Transport {
            playing: true,
            tempo,
            beat,
            anchor_time: anchor,
        }
    }

    #[test]
    fn beats_of_a_playing_transport_fall_every_60000_over_tempo_ms() {
        let beats = beats_between(&playing(120.0, 0.0, T), None, T, T + 2_000.0, 4);
        let times: Vec<f64> = beats.iter().map(|b| b.server_time - T).collect();
        assert_eq!(times, vec![0.0, 500.0, 1_000.0, 1_500.0]);
        assert!(beats[0].downbeat && !beats[1].downbeat);
        assert_eq!(
            beats.iter().map(|b| b.bar).collect::<Vec<_>>(),
            [0, 0, 0, 0]
        );
    }

    #[test]
    fn a_window_starting_mid_beat_begins_at_the_next_whole_beat() {
        let beats = beats_between(&playing(120.0, 6.5, T), None, T, T + 1_100.0, 4);
        assert_eq!(beats[0].beat, 7.0);
        assert!((beats[0].server_time - (T + 250.0)).abs() < 1e-6);
        assert_eq!(beats[1].beat, 8.0);
        assert!(beats[1].downbeat);
        assert_eq!(beats[1].bar, 2);
    }

    #[test]
    fn paused_has_no_beats() {
        let mut t = playing(120.0, 0.0, T);
        t.playing = false;
        assert!(beats_between(&t, None, T, T + 10_000.0, 4).is_empty());
        assert!(next_beat(&t, None, T, 10_000.0, 4).is_none());
    }

    #[test]
    fn a_tempo_change_scheduled_at_a_bar_changes_the_interval_exactly_there() {
        let before = playing(120.0, 0.0, T);
        // Bar 2 (beat 8) at 120 bpm is at T + 4000; from there 240 bpm.
        let change = ScheduledChange {
            id: 1,
            action: ScheduledAction::SetTempo,
            at: T + 4_000.0,
            transport: playing(240.0, 8.0, T + 4_000.0),
        };
        let beats = beats_between(&before, Some(&change), T, T + 6_000.0, 4);
        let gaps: Vec<f64> = beats
            .windows(2)
            .map(|w| w[1].server_time - w[0].server_time)
            .collect();
        let eighth = beats.iter().position(|b| b.beat == 8.0).unwrap();
        assert!(gaps[..eighth].iter().all(|g| (g - 500.0).abs() < 1e-6));
        assert!(gaps[eighth..].iter().all(|g| (g - 250.0).abs() < 1e-6));
        assert_eq!(
            beats.iter().filter(|b| b.beat == 8.0).count(),
            1,
            "the beat on the instant is counted once"
        );
        assert!(beats[eighth].downbeat);
    }

    #[test]
    fn a_scheduled_pause_ends_the_beats_and_a_scheduled_start_begins_them() {
        let change = ScheduledChange {
            id: 2,
            action: ScheduledAction::Pause,
            at: T + 1_000.0,
            transport: Transport {
                playing: false,
                tempo: 120.0,
                beat: 2.0,
                anchor_time: T + 1_000.0,
            },
        };
        let beats = beats_between(&playing(120.0, 0.0, T), Some(&change), T, T + 5_000.0, 4);
        assert_eq!(beats.last().unwrap().beat, 1.0);

        let mut paused = playing(120.0, 0.0, T);
        paused.playing = false;
        let start = ScheduledChange {
            id: 3,
            action: ScheduledAction::Play,
            at: T + 2_000.0,
            transport: playing(120.0, 0.0, T + 2_000.0),
        };
        let first = next_beat(&paused, Some(&start), T, 10_000.0, 4).unwrap();
        assert_eq!(first.server_time, T + 2_000.0);
        assert!(first.downbeat);
    }

    #[test]
    fn a_change_already_in_effect_applies_to_the_whole_window() {
        let change = ScheduledChange {
            id: 4,
            action: ScheduledAction::Seek,
            at: T - 1_000.0,
            transport: playing(60.0, 100.0, T - 1_000.0),
        };
        let beats = beats_between(&playing(120.0, 0.0, T), Some(&change), T, T + 2_500.0, 4);
        assert_eq!(beats[0].beat, 101.0);
        assert_eq!(beats.len(), 3);
    }

    #[test]
    fn the_count_is_bounded_and_empty_windows_are_empty() {
        let t = playing(400.0, 0.0, T);
        assert_eq!(
            beats_between(&t, None, T, T + 3_600_000.0, 4).len(),
            MAX_BEATS_PER_CALL
        );
        assert!(beats_between(&t, None, T, T, 4).is_empty());
        assert!(beats_between(&t, None, T, f64::NAN, 4).is_empty());
    }
}

//! `follow --bars` and `follow --click`: the session's bars and beats, as this client hears
//! them on the shared timeline.
//!
//! Every beat's server time comes from the transport (and a change scheduled after it:
//! `bandsync_client::metronome`), so it is the same on every member's machine; the only
//! per-machine part is the clock offset that turns it into local wall-clock time. `--bars`
//! wakes at each bar boundary and prints how far this client's estimate of server time is
//! from the boundary when it gets there: the wake-up's lateness plus nothing else, since
//! both sides use the same offset. `--click` hands every beat, [`LOOKAHEAD_MS`] ahead, to
//! the sound card's thread (`click.rs`), which sounds it at its sample.

use crate::click::ClickOutput;
use bandsync_client::click::{Click, ClickCommand};
use bandsync_client::metronome::{beats_between, Beat};
use bandsync_client::{wall_clock_ms, ClockEstimate, Timeline};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How far ahead clicks are handed to the audio thread: above one wake-up's worst delay on a
/// busy machine, below the time in which a tempo change sent without scheduling should be
/// heard.
const LOOKAHEAD_MS: f64 = 300.0;
/// How often the click queue is topped up while playing.
const REFILL_EVERY_MS: f64 = 100.0;
/// A queued click whose local time moved by more than this (a better clock estimate, or a
/// change that was not scheduled) is taken back and queued again.
const REQUEUE_BEYOND_MS: f64 = 0.5;
/// Past a printed bar by this much, the next one is looked for (well below a beat at 400
/// bpm, well above the rounding of ms timestamps).
const BAR_EPSILON_MS: f64 = 1e-3;
/// How far ahead the next bar is looked for (a bar at 20 bpm in 16/4 is 48 s).
const BAR_HORIZON_MS: f64 = 60_000.0;

/// What to do with the beats.
#[derive(Debug, Clone, Copy)]
pub struct BarOptions {
    pub beats_per_bar: u32,
    pub print_bars: bool,
    pub json: bool,
}

pub struct Metronome {
    options: BarOptions,
    click: Option<ClickOutput>,
    /// The next bar boundary to print, in server time.
    next_bar: Option<Beat>,
    /// Clicks handed over and not yet due: (server time, local time).
    queued: VecDeque<(f64, f64)>,
    /// Server time up to which beats have been handed over.
    queued_until: f64,
    /// The last bar printed: a better clock estimate can move "now" back before it, and it
    /// must not be printed twice.
    printed_until: f64,
}

impl Metronome {
    pub fn new(options: BarOptions, click: Option<ClickOutput>) -> Self {
        Self {
            options,
            click,
            next_bar: None,
            queued: VecDeque::new(),
            queued_until: f64::NEG_INFINITY,
            printed_until: f64::NEG_INFINITY,
        }
    }

    /// Re-plans after the timeline or the clock offset changed: the next bar, and the
    /// queued clicks that no longer fall where they should.
    pub fn replan(&mut self, timeline: &Timeline, offset: f64) {
        let now = wall_clock_ms() + offset;
        // From the bar planned next if it came due but was not printed yet (an event that
        // arrived with it, like the activation of a change scheduled on that very bar,
        // must not skip it), else from now; never again a bar already printed.
        let planned = self.next_bar.map_or(now, |b| b.server_time.min(now));
        let from = planned.max(self.printed_until + BAR_EPSILON_MS);
        self.next_bar = next_bar(timeline, from, self.options.beats_per_bar);
        let Some(click) = &self.click else {
            return;
        };
        self.queued.retain(|(server, _)| *server >= now);
        let beats = beats_of(timeline, now, self.queued_until, self.options.beats_per_bar);
        let still_right = beats.len() == self.queued.len()
            && self.queued.iter().zip(&beats).all(|(q, b)| {
                (q.0 - b.server_time).abs() <= REQUEUE_BEYOND_MS
                    && (q.1 - (b.server_time - offset)).abs() <= REQUEUE_BEYOND_MS
            });
        if !still_right {
            // Take back every click not yet due and hand them over again.
            click.send(ClickCommand::ClearFrom(now - offset));
            self.queued.clear();
            self.queued_until = now;
        }
        self.refill(timeline, offset);
    }

    /// When [`Self::on_wake`] should run next: the next bar to print, or the next top-up of
    /// the click queue while playing.
    pub fn next_wake(&self, timeline: &Timeline, offset: f64) -> Option<Instant> {
        let now = wall_clock_ms() + offset;
        let bar = self
            .next_bar
            .filter(|_| self.options.print_bars)
            .map(|b| b.server_time - now);
        let refill = (self.click.is_some() && timeline.transport_at(now).is_some())
            .then_some(REFILL_EVERY_MS);
        let wait_ms = match (bar, refill) {
            (Some(b), Some(r)) => b.min(r),
            (b, r) => b.or(r)?,
        };
        Some(Instant::now() + Duration::from_secs_f64(wait_ms.max(0.0) / 1000.0))
    }

    /// Prints the bar that came due, tops up the clicks, and plans the next bar.
    pub fn on_wake(&mut self, timeline: &Timeline, clock: Option<&ClockEstimate>) {
        let offset = clock.map_or(0.0, |c| c.offset);
        let now = wall_clock_ms() + offset;
        if let Some(bar) = self.next_bar.filter(|b| b.server_time <= now) {
            if self.options.print_bars {
                let tempo = timeline.transport_at(bar.server_time).map(|t| t.tempo);
                print_bar(&bar, now - bar.server_time, clock, tempo, self.options.json);
            }
            self.printed_until = bar.server_time;
            let after = bar.server_time + BAR_EPSILON_MS;
            self.next_bar = next_bar(timeline, after, self.options.beats_per_bar);
        }
        self.refill(timeline, offset);
    }

    /// Hands over the beats up to [`LOOKAHEAD_MS`] from now.
    fn refill(&mut self, timeline: &Timeline, offset: f64) {
        let Some(click) = &self.click else {
            return;
        };
        let now = wall_clock_ms() + offset;
        let from = self.queued_until.max(now);
        let until = now + LOOKAHEAD_MS;
        for beat in beats_of(timeline, from, until, self.options.beats_per_bar) {
            let local_ms = beat.server_time - offset;
            let accent = beat.downbeat;
            if click.send(ClickCommand::Add(Click { local_ms, accent })) {
                self.queued.push_back((beat.server_time, local_ms));
            }
        }
        self.queued_until = self.queued_until.max(until);
        self.queued.retain(|(server, _)| *server >= now);
    }
}

fn beats_of(timeline: &Timeline, from: f64, until: f64, beats_per_bar: u32) -> Vec<Beat> {
    match timeline.transport() {
        Some(t) => beats_between(&t, timeline.scheduled(), from, until, beats_per_bar),
        None => Vec::new(),
    }
}

/// The first bar boundary at or after `from`.
fn next_bar(timeline: &Timeline, from: f64, beats_per_bar: u32) -> Option<Beat> {
    // A bar is at most `beats_per_bar` beats, and `beats_between` caps its answer; walk
    // the horizon in steps so a slow tempo and a long bar still find the boundary.
    let mut start = from;
    while start < from + BAR_HORIZON_MS {
        let end = start + 10_000.0;
        let beats = beats_of(timeline, start, end, beats_per_bar);
        if let Some(bar) = beats.into_iter().find(|b| b.downbeat) {
            return Some(bar);
        }
        start = end;
    }
    None
}

/// `bar 17 beat 68 at 1732190004012.871 error +0.412 ms (clock ±0.250 ms) tempo 120`.
fn print_bar(
    bar: &Beat,
    error_ms: f64,
    clock: Option<&ClockEstimate>,
    tempo: Option<f64>,
    json: bool,
) {
    if json {
        let line = serde_json::json!({
            "type": "bar",
            "bar": bar.bar,
            "beat": bar.beat,
            "serverTime": bar.server_time,
            "errorMs": error_ms,
            "clockErrorMs": clock.map(|c| c.error_bound),
            "tempo": tempo,
        });
        println!("{line}");
    } else {
        let bound = clock.map_or_else(
            || "no clock estimate yet".to_owned(),
            |c| format!("clock ±{:.3} ms", c.error_bound),
        );
        println!(
            "bar {} beat {} at {:.3} error {:+.3} ms ({bound}) tempo {}",
            bar.bar,
            bar.beat,
            bar.server_time,
            error_ms,
            tempo.map_or_else(|| "-".to_owned(), |t| t.to_string())
        );
    }
}

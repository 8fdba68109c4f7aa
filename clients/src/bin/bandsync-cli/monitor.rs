//! What `follow` and `listen` share: printing each frame, keeping the timeline and the
//! tick statistics, and the end-of-run summary. The transports differ only in how frames
//! arrive and where the clock offset comes from.

use crate::output::{clock_json, describe, emit, frame_json, stamp, summary_json};
use bandsync_client::protocol::server::ServerEvent;
use bandsync_client::protocol::ServerFrame;
use bandsync_client::{server_now, ClockEstimate, TickStats, Timeline};
use std::time::Instant;

/// Output options common to the watching subcommands.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Print frames as envelope JSON instead of one-line descriptions.
    pub json: bool,
    /// Do not print `scroll_tick`s (they still count in the statistics).
    pub hide_ticks: bool,
}

pub struct Monitor {
    start: Instant,
    view: View,
    timeline: Timeline,
    stats: TickStats,
}

impl Monitor {
    pub fn new(start: Instant, view: View, tick_interval_ms: f64) -> Self {
        Self {
            start,
            view,
            timeline: Timeline::new(),
            stats: TickStats::new(tick_interval_ms),
        }
    }

    /// The session's timeline as the frames so far told it.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Accounts for and prints one frame. `offset` is the clock offset to judge tick lag
    /// with; `sse_id` the SSE event id, shown in the human form.
    pub fn on_frame(
        &mut self,
        frame: &ServerFrame,
        received_at: Instant,
        wall_ms: f64,
        offset: Option<f64>,
        sse_id: Option<&str>,
    ) {
        let is_tick = match &frame.event {
            ServerEvent::ScrollTick(tick) => {
                self.stats
                    .record(tick.seq, tick.server_time, received_at, wall_ms, offset);
                true
            }
            ServerEvent::Snapshot(_)
            | ServerEvent::StateUpdate(_)
            | ServerEvent::SyncResponse(_) => {
                // Ticks stop while paused; the gap before the first tick after `play` is
                // not jitter.
                let was_playing = self.timeline.is_playing();
                self.timeline.apply(&frame.event);
                if !(was_playing && self.timeline.is_playing()) {
                    self.stats.break_arrivals();
                }
                false
            }
            _ => false,
        };
        if is_tick {
            self.timeline.apply(&frame.event);
            if self.view.hide_ticks {
                return;
            }
        }
        if self.view.json {
            emit(frame_json(frame));
        } else {
            let id = sse_id.map(|id| format!("<{id}> ")).unwrap_or_default();
            emit(format_args!(
                "{}{id}{}",
                stamp(self.start, received_at),
                describe(frame)
            ));
        }
    }

    /// Prints a new clock estimate.
    pub fn on_clock(&self, estimate: &ClockEstimate, samples: usize) {
        if self.view.json {
            emit(clock_json(estimate, samples));
        } else {
            emit(format_args!(
                "{}{}",
                stamp(self.start, Instant::now()),
                crate::output::clock_text(estimate, samples)
            ));
        }
    }

    /// Prints a line of the tool's own (not an event), such as a close notice.
    pub fn note(&self, text: &str) {
        if self.view.json {
            emit(serde_json::json!({"type": "note", "text": text}));
        } else {
            emit(format_args!("{}{text}", stamp(self.start, Instant::now())));
        }
    }

    /// Prints the tick statistics, the final clock estimate when there is one, and the
    /// position now (server time = local clock + `offset`).
    pub fn print_summary(&self, clock: Option<&ClockEstimate>, offset: f64) {
        let summary = self.stats.summary();
        if self.view.json {
            emit(summary_json(&summary, clock));
            return;
        }
        emit("--- summary");
        if let Some(c) = clock {
            emit(format_args!(
                "clock offset: {:+.3} ms ±{:.3} ms",
                c.offset, c.error_bound
            ));
        }
        emit(&summary);
        if let Some(position) = self.timeline.position_at(server_now(offset)) {
            emit(format_args!(
                "position now: beat {position:.3} ({}, session version {})",
                if self.timeline.is_playing() {
                    "playing"
                } else {
                    "paused"
                },
                self.timeline.version()
            ));
        }
    }
}

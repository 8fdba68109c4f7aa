//! The tick grid: every instance ticks at the same wall-clock deadlines and numbers each
//! tick from the shared session state alone, so two instances emit the same `seq` for the
//! same deadline and a client that moves between them sees one sequence.
//!
//! Deadline `k` falls at `k x TICK_INTERVAL_MS` milliseconds after the Unix epoch (the
//! server clock is wall-clock anchored). A session counts only the deadlines during which
//! it played: [`TickCount`] is part of the session's durable record and changes only when
//! playback starts or stops, so while it plays `seq` rises by one per deadline, across
//! pauses it continues where it stopped, and a deadline skipped under load leaves a gap.

use serde::{Deserialize, Serialize};

/// The index of the last deadline at or before `ms` on a grid of `interval_ms`.
pub fn deadline_at_or_before(ms: f64, interval_ms: f64) -> u64 {
    (ms.max(0.0) / interval_ms).floor() as u64
}

/// A session's tick numbering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TickCount {
    /// Ticks counted before the current run of playback.
    pub base: u64,
    /// While playing: the first deadline of the current run.
    pub from: Option<u64>,
}

impl TickCount {
    /// Playback started at `at_ms`: the run counts from the first deadline after it.
    pub fn started(&mut self, at_ms: f64, interval_ms: f64) {
        if self.from.is_none() {
            self.from = Some(deadline_at_or_before(at_ms, interval_ms) + 1);
        }
    }

    /// Playback stopped at `at_ms`: the deadlines of the run up to then are counted.
    pub fn stopped(&mut self, at_ms: f64, interval_ms: f64) {
        if let Some(from) = self.from.take() {
            let last = deadline_at_or_before(at_ms, interval_ms);
            self.base += (last + 1).saturating_sub(from);
        }
    }

    /// The `seq` of the tick at deadline `k`, or `None` while stopped or before the run.
    pub fn seq_at(&self, k: u64) -> Option<u64> {
        let from = self.from?;
        (k >= from).then(|| self.base + (k - from) + 1)
    }

    /// Follows the transport from `was_playing` to `playing`, at `at_ms`.
    pub fn follow(&mut self, was_playing: bool, playing: bool, at_ms: f64, interval_ms: f64) {
        match (was_playing, playing) {
            (false, true) => self.started(at_ms, interval_ms),
            (true, false) => self.stopped(at_ms, interval_ms),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_rises_by_one_per_deadline_and_continues_after_a_pause() {
        let mut t = TickCount::default();
        t.started(1000.5, 16.0); // deadline 62 is at 992, 63 at 1008
        assert_eq!(t.seq_at(62), None);
        assert_eq!(t.seq_at(63), Some(1));
        assert_eq!(t.seq_at(65), Some(3));
        t.stopped(1041.0, 16.0); // deadlines 63, 64, 65 (1040) were played
        assert_eq!(t.base, 3);
        assert_eq!(t.seq_at(70), None);
        t.started(2000.0, 16.0); // 2000 is deadline 125 exactly: the run starts at 126
        assert_eq!(t.seq_at(126), Some(4));
    }

    #[test]
    fn two_instances_agree_from_the_record_alone() {
        let mut a = TickCount::default();
        a.follow(false, true, 5003.0, 16.0);
        let b = a; // another instance receives the same record
        assert_eq!(a.seq_at(400), b.seq_at(400));
    }

    #[test]
    fn a_stop_before_the_first_deadline_counts_nothing() {
        let mut t = TickCount::default();
        t.started(1001.0, 16.0);
        t.stopped(1002.0, 16.0);
        assert_eq!(t.base, 0);
        assert_eq!(t.from, None);
    }
}
